"""The page builder's reads from the compiled core (kmem._core.changed_stretches, walk_blocks,
slab_rows and count_event_lines) give what their pure twins in kmem.show.snapshot give, on
random buddy states, owners and labels, random slab rows, and arbitrary bytes; and hand
anything they do not know back to Python (NotImplemented), never misreading it."""

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
    _USED_CHARS,
    _USED_CHARS_SHEAVES,
    LABEL_BASE,
    MAX_OBJECT_BITS,
    MAX_SLABS_LISTED,
    LabelTable,
    _changed_stretches_pure,
    _event_lines_pure,
    _slab_rows_pure,
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


ROWS = st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 70), st.integers(0, 2**50),
                          st.binary(max_size=70).map(lambda b: bytes(x % 4 for x in b))),
                max_size=70)


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(rows=ROWS, total=st.integers(1, 80), page_size=st.sampled_from([4096, 65536]),
       sheaves=st.booleans(), keep=st.lists(st.booleans(), max_size=70),
       with_now=st.booleans())
def test_slab_rows_is_the_pure_rows(rows: list[tuple[int, int, int, bytes]], total: int,
                                    page_size: int, sheaves: bool, keep: list[bool],
                                    with_now: bool) -> None:
    assert core is not None
    chars = _USED_CHARS_SHEAVES if sheaves else _USED_CHARS
    # (rows of a previous entry, as lists of their own: taken, never remade)
    before = {row: [row[0], "kept"] for row, kept in zip(rows, keep, strict=False) if kept}
    pure_now: dict[Any, list[Any]] | None = {} if with_now else None
    compiled_now: dict[Any, list[Any]] | None = {} if with_now else None
    want = _slab_rows_pure(rows, before, pure_now, total, page_size, chars)
    got = core.slab_rows(rows, before, compiled_now, total, page_size, chars,
                         MAX_SLABS_LISTED, MAX_OBJECT_BITS)
    assert got == want
    assert compiled_now == pure_now
    for made, row in zip(got[0], rows, strict=False):
        assert (made is before[row]) if row in before else made not in before.values()


def test_slab_rows_hands_back_what_it_does_not_know() -> None:
    assert core is not None
    row = (3, 1, 3 << 12, bytes([0, 1, 2]))
    args: list[Any] = [[row], {}, {}, 4, 4096, _USED_CHARS, MAX_SLABS_LISTED,
                       MAX_OBJECT_BITS]
    assert core.slab_rows(*args) == ([[3, 1, 4, 3 << 12, "0100"]], 1, 0, 0)
    assert core.slab_rows([(3, 0, 9, b"")], {}, None, 2, 4096, _USED_CHARS, 48, 64) == (
        [[3, 0, 2, 3 << 12, "00"]], 0, 0, 1)
    assert core.slab_rows([(3, 0, 9, b"")], {}, None, 2, 4096, _USED_CHARS, 48, 1) == (
        [[3, 0, 2, 3 << 12]], 0, 0, 1)  # (more objects than max_bits: no used string)
    high = bytes([ord("0"), 200]) + bytes(254)
    for place, odd in ((0, (row,)), (0, [list(row)]), (0, [(3, 1, 3 << 12)]),
                       (0, [(3, 1.0, 3 << 12, b"")]), (0, [(3, 1, 3 << 12, bytearray(1))]),
                       (0, [("3", 1, 3 << 12, b"")]), (0, [(3, 2**70, 0, b"")]),
                       (1, None), (2, []), (3, 4.0), (5, _USED_CHARS[:255]),
                       (5, bytearray(_USED_CHARS)), (5, high), (6, None), (7, 2**70)):
        bad = list(args)
        bad[place] = odd
        if place == 5 and odd is high:
            bad[0] = [(3, 1, 3 << 12, bytes([1]))]
        assert core.slab_rows(*bad) is NotImplemented, (place, odd)
    assert args[2] == {row: [3, 1, 4, 3 << 12, "0100"]}  # (the first call's; none since)
    assert core.slab_rows(*args[:7]) is NotImplemented


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(chunk=st.lists(st.sampled_from([b"\n", b"\t", b"a", b"\r", b"\n\n\n", b"\t\n"]),
                      max_size=40).map(b"".join) | st.binary(max_size=300),
       start=st.integers(0, 7), end=st.integers(0, 7))
def test_count_event_lines_is_the_pure_count(chunk: bytes, start: int, end: int) -> None:
    # Runs of newlines (pairs that bytes.count does not overlap), tabs after them, and any
    # bytes; a memoryview of a slice too (the C scan must stop at the view's end).
    assert core is not None
    assert core.count_event_lines(chunk) == _event_lines_pure(chunk)
    with memoryview(chunk)[start:len(chunk) - end] as view:
        assert core.count_event_lines(view) == _event_lines_pure(bytes(view))


def test_count_event_lines_hands_back_what_is_no_bytes() -> None:
    assert core is not None
    for value in ("a\nb", None, 3, array("I", [10, 10])):  # (a str, no buffer, 4-byte items)
        assert core.count_event_lines(value) is NotImplemented
    assert core.count_event_lines() is NotImplemented

