"""The step-by-step explanation of buddy allocations and frees, and the terminal memory map."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from kmem.errors import DoubleFreeError, InvalidArgumentError, OutOfMemoryError
from kmem.page.buddy import BuddyAllocator
from kmem.show.explain import Step, alloc_steps, format_size, free_steps, sentence
from kmem.show.memory_map import iter_blocks, legend, render

KB = 1024


def test_seed_allocation_splits_256k_down_to_32k() -> None:
    # 64 pages start as one order-6 block; order 3 is reached by splitting 6 -> 5 -> 4 -> 3,
    # keeping the low half each time, so the upper halves are [32-63], [16-31], [8-15].
    buddy = BuddyAllocator(256 * KB)
    pfn, steps = alloc_steps(buddy, 3, size=21 * KB)
    assert pfn == 0
    assert [s.kind for s in steps] == ["round", "take", "split", "split", "split", "alloc"]
    assert [(s.pfn, s.order) for s in steps if s.kind == "split"] == [(0, 6), (0, 5), (0, 4)]
    assert steps[0].text == "21 KB rounds up to 32 KB (order 3)"
    assert "split 256 KB [0-63] into two 128 KB buddies" in steps[2].text
    assert "[32-63] on free list 5" in steps[2].text
    assert buddy.free_blocks(5) == [32] and buddy.free_blocks(4) == [16]
    assert buddy.free_blocks(3) == [8]


def test_seed_free_coalesces_back_to_256k() -> None:
    buddy = BuddyAllocator(256 * KB)
    pfn, _ = alloc_steps(buddy, 3)
    steps = free_steps(buddy, pfn, 3)
    assert [s.kind for s in steps] == ["free", "merge", "merge", "merge", "place"]
    assert [(s.pfn, s.order) for s in steps[1:4]] == [(0, 4), (0, 5), (0, 6)]
    assert "its buddy [8-15] is free" in steps[1].text
    assert steps[-1].text.endswith("put 256 KB [0-63] at the head of free list 6")
    assert buddy.nr_free[6] == 1
    buddy.check()


def test_free_without_free_buddy_places_at_order() -> None:
    buddy = BuddyAllocator(256 * KB)
    a, _ = alloc_steps(buddy, 3)
    b, _ = alloc_steps(buddy, 3)  # takes [8-15], a's buddy
    steps = free_steps(buddy, a, 3)
    assert [s.kind for s in steps] == ["free", "place"]
    assert steps[-1].text.startswith("no free buddy")
    assert (steps[-1].pfn, steps[-1].order) == (a, 3)
    assert b == 8


def test_errors_produce_no_steps_and_change_nothing() -> None:
    buddy = BuddyAllocator(32 * KB)
    pfn, _ = alloc_steps(buddy, 3)
    before = (buddy.nr_free, bytes(buddy.mem_map.state))
    with pytest.raises(OutOfMemoryError):
        alloc_steps(buddy, 0)
    free_steps(buddy, pfn, 3)
    before = (buddy.nr_free, bytes(buddy.mem_map.state))
    with pytest.raises(DoubleFreeError):
        free_steps(buddy, pfn, 3)
    assert (buddy.nr_free, bytes(buddy.mem_map.state)) == before


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4)), max_size=40))
def test_steps_match_the_allocator(ops: list[tuple[bool, int]]) -> None:
    # The steps must account exactly for the change of nr_free: an allocation taking order h
    # for order o removes one block at h and adds one at each of o..h-1; a free of order o
    # merging up to order m removes one block at each of o..m-1 and adds one at m.
    buddy = BuddyAllocator(128 * KB)
    live: list[tuple[int, int]] = []
    for do_alloc, order in ops:
        before = list(buddy.nr_free)
        if do_alloc or not live:
            try:
                pfn, steps = alloc_steps(buddy, order)
            except OutOfMemoryError:
                continue
            take = next(s for s in steps if s.kind == "take")
            splits = [s for s in steps if s.kind == "split"]
            assert len(splits) == take.order - order
            before[take.order] -= 1
            for s in splits:
                before[s.order - 1] += 1
            live.append((pfn, order))
        else:
            pfn, order = live.pop(order % len(live))
            steps = free_steps(buddy, pfn, order)
            merges = [s for s in steps if s.kind == "merge"]
            place = steps[-1]
            assert place.kind == "place" and place.order == order + len(merges)
            for s in merges:
                before[s.order - 1] -= 1
            before[place.order] += 1
            assert place.pfn in buddy.free_blocks(place.order)
        assert tuple(before) == buddy.nr_free
        buddy.check()


def test_sentence_and_sizes() -> None:
    assert sentence([]) == ""
    assert sentence([Step("free", 0, 0, "free it"), Step("place", 0, 0, "list it")]) == (
        "Free it; list it."
    )
    assert format_size(256 * KB) == "256 KB"
    assert format_size(4 * KB * KB) == "4 MB"
    assert format_size(100) == "100 B"
    assert format_size(21 * KB + 512) == "21.5 KB"


def test_memory_map_marks_blocks() -> None:
    buddy = BuddyAllocator(256 * KB)
    pfn, _ = alloc_steps(buddy, 3)
    assert list(iter_blocks(buddy)) == [
        (0, 3, "allocated"), (8, 3, "free"), (16, 4, "free"), (32, 5, "free"),
    ]
    text = render(buddy, highlight=[pfn], labels={pfn: "A"})
    row = text.plain.split("\n")[0].split(" ")[-1]
    assert row == "A" + "█" * 7 + "3" + "·" * 7 + "4" + "·" * 15 + "5" + "·" * 31
    highlighted = [span for span in text.spans if "reverse" in str(span.style)]
    assert highlighted and text.plain[highlighted[0].start:highlighted[0].end] == "A" + "█" * 7
    assert "A" in legend({pfn: "A"}).plain


def test_memory_map_groups_pages_on_big_memory() -> None:
    buddy = BuddyAllocator(1 << 30)  # 262144 pages: 256 per cell in 64 x 16 cells
    text = render(buddy, width=64, max_rows=16)
    lines = text.plain.split("\n")
    assert len(lines) == 17 and "one cell = 256 pages" in lines[-1]
    assert all(len(line.split(" ")[-1]) == 64 for line in lines[:16])


@pytest.mark.parametrize(("width", "max_rows"), [(0, 16), (-3, 16), (64, 0)])
def test_memory_map_rejects_an_empty_grid(width: int, max_rows: int) -> None:
    # It used to loop forever (kmem run --width 0) doubling the pages per cell.
    with pytest.raises(InvalidArgumentError, match="width and max_rows"):
        render(BuddyAllocator(256 * KB), width=width, max_rows=max_rows)
