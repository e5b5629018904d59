"""Buddy allocations and frees told step by step, in words.

The allocator does its work in one call; a learner wants to see it: which free block was taken,
how it was split, which buddies merged on the way back. This module performs the call and derives
those steps from what the allocator publicly shows, never from its internals:

* an allocation of order ``o`` changes ``nr_free`` by -1 at the order ``h`` of the block it took
  and by +1 at every order ``o..h-1`` (each split leaves one free upper half there), so the
  difference of ``nr_free`` before and after names ``h``; the returned pfn is the kept low half;
* a free of the order-``o`` block at ``pfn`` ends in one free block, found with
  ``block_at(pfn)``; if it has order ``m``, the block merged with its buddy at every order
  ``o..m-1``; ``free_blocks(m)`` tells whether it went to the head or the tail of its list.

API (the terminal demo, ``kmem run`` and the HTML page use it):

    pfn, steps = alloc_steps(buddy, order, size=None)   # allocates, returns the steps
    steps = free_steps(buddy, pfn, order)               # frees, returns the steps
    describe_alloc(buddy, nr_free_before, pfn, order)   # steps of an allocation made by
    describe_free(buddy, pfn, order)                    # ... or a free made by another layer
    sentence(steps) -> str                              # the steps as one sentence
    clause(steps) -> str                                # the same, to go inside a sentence
    format_size(nbytes) -> "32 KB"

``Step`` is a frozen dataclass ``(kind, pfn, order, text)``; ``kind`` is one of

    "round"  the request size rounds up to a block of 2**order pages (only when size is given)
    "take"   the block at pfn of that order is taken off its free list
    "split"  the block at pfn of that order is split into two buddies of order - 1
    "alloc"  the block at pfn of that order is handed out
    "free"   the block at pfn of that order is given back
    "merge"  a block merged with its free buddy into the block at pfn of that order
    "place"  the (merged) free block at pfn of that order is put on its free list

Errors (out of memory, a bad free) are raised by the allocator before it changes anything; no
step is produced then.

>>> from kmem.page.buddy import BuddyAllocator
>>> buddy = BuddyAllocator(256 * 1024)
>>> pfn, steps = alloc_steps(buddy, 3, size=21 * 1024)
>>> print(sentence(steps))  # doctest: +NORMALIZE_WHITESPACE
21 KB rounds up to 32 KB (order 3); take the free 256 KB block [pfn 0-63] from free list 6;
split 256 KB [0-63] into two 128 KB buddies: keep [0-31], put [32-63] on free list 5;
split 128 KB [0-31] into two 64 KB buddies: keep [0-15], put [16-31] on free list 4;
split 64 KB [0-15] into two 32 KB buddies: keep [0-7], put [8-15] on free list 3;
allocate the 32 KB block [pfn 0-7] at address 0x0.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kmem.page.buddy import BuddyAllocator

# The kinds of step (module docstring): a Literal, so that mypy checks every comparison with one.
StepKind = Literal["round", "take", "split", "alloc", "free", "merge", "place"]


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the allocator did: ``kind`` (see the module docstring) on a block, in words."""

    kind: StepKind
    pfn: int
    order: int
    text: str


@functools.lru_cache(maxsize=4096)  # block sizes repeat: every split names two of them
def format_size(nbytes: int) -> str:
    """A byte count as people say it: "256 KB", "4 MB", "100 B", "21.5 KB"."""
    for unit, shift in (("GB", 30), ("MB", 20), ("KB", 10)):
        if nbytes >= 1 << shift:
            value = nbytes / (1 << shift)
            return f"{value:.0f} {unit}" if value.is_integer() else f"{value:.1f} {unit}"
    return f"{nbytes} B"


def _span(pfn: int, order: int) -> str:
    last = pfn + (1 << order) - 1
    return f"[{pfn}-{last}]" if order else f"[{pfn}]"


def _block_size(buddy: BuddyAllocator, order: int) -> str:
    return format_size(buddy.page_size << order)


def alloc_steps(
    buddy: BuddyAllocator, order: int, size: int | None = None
) -> tuple[int, list[Step]]:
    """Allocate an order-``order`` block from ``buddy``; return its pfn and the steps taken.

    ``size``, when given, is the byte size the caller asked for (it only adds a "round" step).
    """
    before = buddy.nr_free
    pfn = buddy.alloc_pages(order)
    return pfn, describe_alloc(buddy, before, pfn, order, size)


def describe_alloc(
    buddy: BuddyAllocator, before: Sequence[int], pfn: int, order: int, size: int | None = None
) -> list[Step]:
    """The steps of an allocation someone else made: ``before`` is nr_free before it.

    For a layer above (a slab cache taking a new slab) that allocates through its own path.
    """
    after = buddy.nr_free
    taken = [o for o in range(len(before)) if after[o] < before[o]]
    # Another thread may change the lists in between: then say only what is sure.
    high = taken[0] if len(taken) == 1 else order
    steps: list[Step] = []
    if size is not None:
        steps.append(
            Step("round", pfn, order, f"{format_size(size)} rounds up to "
                 f"{_block_size(buddy, order)} (order {order})")
        )
    steps.append(
        Step("take", pfn, high, f"take the free {_block_size(buddy, high)} block "
             f"[pfn {_span(pfn, high)[1:]} from free list {high}")
    )
    for split in range(high, order, -1):
        half = split - 1
        upper = pfn + (1 << half)
        steps.append(
            Step("split", pfn, split,
                 f"split {_block_size(buddy, split)} {_span(pfn, split)} into two "
                 f"{_block_size(buddy, half)} buddies: keep {_span(pfn, half)}, "
                 f"put {_span(upper, half)} on free list {half}")
        )
    steps.append(
        Step("alloc", pfn, order, f"allocate the {_block_size(buddy, order)} block "
             f"[pfn {_span(pfn, order)[1:]} at address {pfn << buddy.page_shift:#x}")
    )
    return steps


def free_steps(buddy: BuddyAllocator, pfn: int, order: int) -> list[Step]:
    """Free the order-``order`` block at ``pfn``; return the steps: free, merges, place."""
    buddy.free_pages(pfn, order)
    return describe_free(buddy, pfn, order)


def describe_free(buddy: BuddyAllocator, pfn: int, order: int) -> list[Step]:
    """The steps of a free someone else made of the order-``order`` block at ``pfn``."""
    merged = buddy.block_at(pfn)
    steps = [
        Step("free", pfn, order, f"free the {_block_size(buddy, order)} block "
             f"[pfn {_span(pfn, order)[1:]}")
    ]
    if merged.state != "free":  # reallocated in between: nothing more is sure
        return steps
    current = pfn
    final_order = merged.order
    for level in range(order, final_order):
        buddy_pfn = current ^ (1 << level)
        parent = current & ~(1 << level)
        steps.append(
            Step("merge", parent, level + 1,
                 f"its buddy {_span(buddy_pfn, level)} is free: merge into "
                 f"{_block_size(buddy, level + 1)} {_span(parent, level + 1)}")
        )
        current = parent
    heads = buddy.free_blocks(merged.order)
    where = "head" if heads and heads[0] == merged.pfn else "tail"
    if final_order == order:
        reason = "no free buddy"
    elif final_order == buddy.max_order:
        reason = "it has the largest order"
    elif merged.pfn ^ (1 << final_order) >= buddy.nr_pages:
        reason = "its buddy would lie outside memory"
    else:
        reason = f"buddy {_span(merged.pfn ^ (1 << final_order), final_order)} is not free"
    steps.append(
        Step("place", merged.pfn, merged.order,
             f"{reason}; put {_block_size(buddy, merged.order)} "
             f"{_span(merged.pfn, merged.order)} at the {where} of free list {merged.order}")
    )
    return steps


def clause(steps: Sequence[Step]) -> str:
    """The steps' texts joined with "; ", to go inside a longer sentence."""
    return "; ".join(step.text for step in steps)


def sentence(steps: Sequence[Step]) -> str:
    """The steps' texts joined into one sentence, capitalised and ending with a full stop."""
    if not steps:
        return ""
    text = clause(steps)
    return text[0].upper() + text[1:] + "."
