"""Shared test helpers: a full snapshot of a buddy allocator, to prove errors change nothing."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings

from kmem import BuddyAllocator

if os.environ.get("KMEM_MUTANTS"):
    # Mutation testing (tools/mutants.py): the same examples every run, so a kill repeats.
    settings.register_profile("mutants", derandomize=True, database=None)
    settings.load_profile("mutants")


def buddy_snapshot(buddy: BuddyAllocator) -> tuple[Any, ...]:
    """Everything observable about the allocator: frame states, lists in order, counters."""
    mem_map = buddy.mem_map
    return (
        bytes(mem_map.state),
        bytes(mem_map.owner),
        buddy.nr_free,
        tuple(tuple(buddy.free_blocks(order)) for order in range(buddy.max_order + 1)),
        buddy.stats(),
    )
