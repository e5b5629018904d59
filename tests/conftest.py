"""Shared test helpers: a full snapshot of a buddy allocator, to prove errors change nothing."""

from __future__ import annotations

from typing import Any

from kmem import BuddyAllocator


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
