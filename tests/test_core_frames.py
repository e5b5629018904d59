"""The page builder's buddy reads from the compiled core (kmem._core.changed_stretches and
walk_blocks) give what their pure twins in kmem.show.snapshot give, on random buddy states,
owners and labels, and on arbitrary bytes; and hand anything they do not know back to Python
(NotImplemented), never misreading it."""

from __future__ import annotations

import contextlib
from array import array
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from core_twins import FUZZ_EXAMPLES, needs_compiled
from kmem import BuddyAllocator
from kmem._compiled import core
from kmem.errors import KmemError
from kmem.show.snapshot import (
    LABEL_BASE,
    LabelTable,
    _changed_stretches_pure,
    _walk_blocks_pure,
)

pytestmark = needs_compiled

LABELS = st.sampled_from(["A", "slab:pcb", "kmalloc:large", "", None, "B"])
OPS = st.lists(st.tuples(st.booleans(), st.integers(0, 4), st.integers(0, 1000)),
               max_size=120)


def _buddy_state(ops: list[tuple[bool, int, int]], reserved: bool) -> BuddyAllocator:
    buddy = BuddyAllocator(256 * 4096, max_order=4,
                           reserved=[(17 * 4096, 3 * 4096)] if reserved else [])
    held: list[tuple[int, int]] = []
    for allocate, order, pick in ops:
        if allocate or not held:
            with contextlib.suppress(KmemError):  # (memory full: the state stays)
                held.append((buddy.alloc_pages(order), order))
        else:
            pfn, order = held.pop(pick % len(held))
            buddy.free_pages(pfn, order)
    return buddy


def _table(names: list[str]) -> LabelTable:
    table = LabelTable()
    for name in names:
        table.code(name)
    return table


def _both_walks(state: Any, owner: Any, start: int, end: int, labels: dict[int, Any],
                owner_labels: dict[int, Any], known: list[str]) -> None:
    compiled_table, pure_table = _table(known), _table(known)
    try:
        want: Any = _walk_blocks_pure(state, owner, start, end, labels, owner_labels,
                                      pure_table)
    except IndexError:
        want = IndexError
    assert core is not None
    got = core.walk_blocks(state, owner, start, end, labels, owner_labels,
                           compiled_table._index, compiled_table.labels, LABEL_BASE)
    if want is IndexError:
        assert got is NotImplemented
        return
    assert got == want
    assert compiled_table.labels == pure_table.labels
    assert compiled_table._index == pure_table._index


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(ops=OPS, reserved=st.booleans(), data=st.data())
def test_walk_blocks_is_the_pure_walk(ops: list[tuple[bool, int, int]], reserved: bool,
                                      data: st.DataObject) -> None:
    buddy = _buddy_state(ops, reserved)
    mem_map = buddy.mem_map
    nr_pages = buddy.nr_pages
    owners = data.draw(st.lists(st.integers(0, 5), min_size=nr_pages, max_size=nr_pages))
    owner = array("I", owners)
    labels = data.draw(st.dictionaries(st.integers(-2, nr_pages + 3), LABELS, max_size=12))
    owner_labels = data.draw(st.dictionaries(st.integers(0, 6), LABELS, max_size=6))
    known = data.draw(st.lists(st.sampled_from(["A", "B", "slab:pcb", "C"]), unique=True))
    stretch = 1 << buddy.max_order
    for start in range(0, nr_pages, stretch):
        end = min(start + stretch, nr_pages)
        _both_walks(mem_map.state, owner, start, end, labels, owner_labels, known)
        _both_walks(mem_map.state, None, start, end, labels, owner_labels, known)
    _both_walks(mem_map.state, owner, 0, nr_pages, labels, owner_labels, known)


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(state=st.binary(max_size=80), owners=st.lists(st.integers(0, 3), max_size=80),
       start=st.integers(0, 90), length=st.integers(0, 90),
       labels=st.dictionaries(st.integers(0, 90), LABELS, max_size=8))
def test_walk_blocks_of_any_bytes(state: bytes, owners: list[int], start: int, length: int,
                                  labels: dict[int, Any]) -> None:
    # (arbitrary states: orders up to 31, walks off the end of the state or the owners)
    owner_labels = {0: "", 1: "slab:x", 2: None, 3: "slab:y"}
    for owner in (array("I", owners), None):
        _both_walks(bytearray(state), owner, start, start + length, labels, owner_labels, [])


def test_walk_blocks_hands_back_what_it_does_not_know() -> None:
    assert core is not None
    table = LabelTable()
    state = bytearray(BuddyAllocator(64 * 4096, max_order=3).mem_map.state)
    args: list[Any] = [state, None, 0, 64, {}, {}, table._index, table.labels, LABEL_BASE]
    assert core.walk_blocks(*args) == _walk_blocks_pure(state, None, 0, 64, {}, {}, table)
    for place, odd in ((0, [1, 2]), (1, array("H", [0] * 64)), (1, b"x" * 10), (2, 1.0),
                       (4, [(0, "A")]), (6, None), (7, ()), (8, "3")):
        bad = list(args)
        bad[place] = odd
        assert core.walk_blocks(*bad) is NotImplemented, (place, odd)
    allocated = BuddyAllocator(64 * 4096, max_order=3)
    pfn = allocated.alloc_pages(0)
    state = allocated.mem_map.state
    for label in (3, b"A"):  # (a label that is no str: Python's table interns it)
        assert core.walk_blocks(state, None, 0, 64, {pfn: label}, {}, {}, [],
                                LABEL_BASE) is NotImplemented
    assert core.walk_blocks(*args[:8]) is NotImplemented
    assert table.labels == []


def _both_stretches(before: Any, now: Any, nr: int, shift: int) -> None:
    want: set[int] = set()
    _changed_stretches_pure(before, now, nr, shift, want)
    assert core is not None
    got = core.changed_stretches(before, now, nr, shift)
    assert got == sorted(want)


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(data=st.binary(min_size=1, max_size=600), shift=st.integers(0, 6),
       flips=st.lists(st.integers(0, 599), max_size=6), cut=st.integers(0, 63))
def test_changed_stretches_is_the_pure_comparison(data: bytes, shift: int, flips: list[int],
                                                  cut: int) -> None:
    now = bytearray(data)
    for place in flips:
        if place < len(now):
            now[place] ^= 1 + place % 255
    nr = -(-len(data) // (1 << shift))
    before = bytearray(data)
    with memoryview(now) as view:
        _both_stretches(before, view, nr, shift)
        _both_stretches(before, view, max(1, nr - cut), shift)  # (fewer stretches than bytes)
    owner = array("I", data[: len(data) // 4 * 4])
    if owner:
        with memoryview(owner) as items, items.cast("B") as view:
            changed = bytearray(view)
            changed[flips[0] % len(changed) if flips else 0] ^= 0x80
            nr = -(-len(changed) // (1 << shift))
            _both_stretches(changed, view, nr, shift)


def test_changed_stretches_hands_back_what_it_does_not_know() -> None:
    assert core is not None
    before = bytearray(64)
    assert core.changed_stretches(before, bytearray(64), 4, 4) == []
    assert core.changed_stretches(before, bytearray(b"\1" * 64), 4, 4) == [0, 1, 2, 3]
    assert core.changed_stretches(before, bytearray(64), 0, 4) == []
    for args in ((before, bytearray(63), 4, 4), (before, bytearray(64), 5, 4),
                 (before, array("I", [0] * 16), 4, 4), (before, bytearray(64), -1, 4),
                 (before, bytearray(64), 4, -1), (before, bytearray(64), 4.0, 4),
                 (before, [0] * 64, 4, 4), (before, bytearray(64), 2**70, 4)):
        assert core.changed_stretches(*args) is NotImplemented, args
    assert core.changed_stretches(before) is NotImplemented
