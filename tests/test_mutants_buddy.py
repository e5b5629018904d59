"""Tests written against the surviving mutants of kmem.page.buddy (make mutants MODULES=page/buddy).

Block positions and counts are Linux's buddy rules worked by hand (mm/page_alloc.c: expand()
splits once per order, __free_one_page merges once per order) or taken from the independent
model (tests/linux_buddy_model.py); the error tests hold the messages that name the bad
argument or say why a free is wrong, which a caller reads to know what to fix. The allocator's
wiring of the compiled core is run in the mutation tool's pure run as well (_on_core). Run on
both cores (KMEM_PURE=1 for the pure one).
"""

from __future__ import annotations

import random
import re
import sys
import threading
from typing import Any

import pytest

from core_twins import compiled_module, on_core
from kmem.errors import (
    DoubleFreeError,
    InvalidArgumentError,
    InvalidFreeError,
    InvalidTypeError,
    OutOfMemoryError,
    WrongOrderError,
)
from kmem.page.buddy import BuddyAllocator
from kmem.page.errors import HostMemoryError, MemoryClosedError, UnknownZoneError
from kmem.page.mem_map import MAX_PAGES, metadata_bytes
from kmem.page.memory import PhysicalMemory
from linux_buddy_model import LinuxBuddyModel

PAGE = 4096


class _Index:
    """Anything with __index__ (a numpy integer) is an int argument."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def _exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


# -- defaults and attributes -----------------------------------------------------------------


def test_an_allocator_is_node_0_locked_and_allocates_order_0_by_default() -> None:
    buddy = BuddyAllocator(16 * PAGE, max_order=4)
    assert (buddy.node, buddy.zone, buddy.thread_safe) == (0, "Normal", True)
    assert buddy.buddyinfo().startswith("Node 0, zone   Normal ")
    pfn = buddy.alloc_pages()
    assert buddy.block_at(pfn) == (0, 0, "allocated")
    assert BuddyAllocator(16 * PAGE, thread_safe=False).thread_safe is False


def test_an_allocator_on_a_given_physical_memory_takes_its_size() -> None:
    memory = PhysicalMemory(32 * PAGE)
    buddy = BuddyAllocator(memory=memory)
    assert (buddy.nr_pages, buddy.nr_free_pages, buddy.memory) == (32, 32, memory)
    assert BuddyAllocator(32 * PAGE, memory=PhysicalMemory(32 * PAGE)).nr_pages == 32


# -- counters: one split per order split, one merge per order merged ------------------------------


def test_stats_count_every_allocation_free_failure_split_and_merge() -> None:
    # 16 frames, frames 12-15 reserved: boot frees 0-7 (order 3) and 8-11 (order 2).
    buddy = BuddyAllocator(16 * PAGE, max_order=4, reserved=[(12 * PAGE, 4 * PAGE)])
    assert buddy.alloc_pages(0) == 8   # list 0 and 1 empty: 8-11 split twice (10-11, 9)
    assert buddy.alloc_pages(0) == 9   # list 0's head
    assert buddy.alloc_pages(1) == 10  # list 1's head
    assert buddy.alloc_pages(0) == 0   # 0-7 split three times (4-7, 2-3, 1)
    with pytest.raises(OutOfMemoryError):
        buddy.alloc_pages(3)
    with pytest.raises(OutOfMemoryError):
        buddy.alloc_pages(3)
    buddy.free_pages(0, 0)  # merges with 1, 2-3 and 4-7: three merges, 0-7 whole again
    buddy.free_pages(9, 0)  # its buddy 8 is allocated: no merge
    buddy.free_pages(8, 0)  # merges with 9 (its order-1 buddy 10 is allocated): one more
    stats = buddy.stats()
    assert (stats.allocations, stats.frees, stats.failures) == (4, 3, 2)
    assert (stats.splits, stats.merges) == (5, 4)
    assert (stats.nr_pages, stats.free_pages, stats.allocated_pages, stats.reserved_pages) == (
        16, 10, 2, 4)
    assert stats.nr_free == (0, 1, 0, 1, 0) == buddy.nr_free


# -- boot and reserved ranges ---------------------------------------------------------------------


def test_a_reserved_frame_in_the_middle_leaves_every_other_frame_allocatable() -> None:
    buddy = BuddyAllocator(16 * PAGE, max_order=4, reserved=[(5 * PAGE, PAGE)])
    model = LinuxBuddyModel(16, 4, {5})
    assert buddy.nr_free == model.nr_free
    taken = []
    while buddy.nr_free_pages:
        taken.append(buddy.alloc_pages(0))
        assert taken[-1] == model.alloc_pages(0)
    assert sorted(taken) == [p for p in range(16) if p != 5]
    buddy.check()


def test_one_reserved_byte_reserves_its_whole_frame() -> None:
    buddy = BuddyAllocator(8 * PAGE, max_order=3, reserved=[(0, 1)])
    assert buddy.block_at(0) == (0, 0, "reserved")
    assert buddy.stats().reserved_pages == 1


@pytest.mark.parametrize("reserved", [(0, 0), (-PAGE, 2 * PAGE), (7 * PAGE, 2 * PAGE)])
def test_a_reserved_range_outside_memory_or_empty_is_refused(reserved: tuple[int, int]) -> None:
    start, size = reserved
    message = (f"reserved range start={start:#x} size={size:#x} is not inside memory"
               f" [0, {8 * PAGE:#x})")
    with pytest.raises(InvalidArgumentError, match=_exactly(message)):
        BuddyAllocator(8 * PAGE, max_order=3, reserved=[reserved])


# -- the limits of the memory and of max_order ----------------------------------------------------


def test_memory_up_to_max_pages_is_refused_by_the_host_check_beyond_by_the_size_check() -> None:
    # MAX_PAGES frames (and a part of one more) pass the size check; their mem_map of 11 free
    # lists (orders 0..10) is then more than kmem's metadata limit, refused before any memory.
    need = metadata_bytes(MAX_PAGES, 11, 1 << 10)  # (the state column padded to order 10)
    message = (f"memory of {MAX_PAGES} pages needs {need} bytes of page metadata, more than"
               " kmem's limit of 2147483648 bytes (larger pages need fewer frames)")
    for size in (MAX_PAGES * PAGE, MAX_PAGES * PAGE + 1):
        with pytest.raises(HostMemoryError, match=_exactly(message)):
            BuddyAllocator(size)
    size = (MAX_PAGES + 1) * PAGE
    with pytest.raises(InvalidArgumentError,
                       match=_exactly(f"memory of {size} bytes exceeds {MAX_PAGES} pages")):
        BuddyAllocator(size)


class _MemMapReached(Exception):
    pass


@pytest.mark.parametrize("max_order", [29, 30])
def test_max_order_up_to_30_passes_the_argument_checks(
        max_order: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The state column is padded to a whole max-order block (2**30 bytes at 30): the test
    # stops where the allocator builds its mem_map, after every argument check passed.
    def reached(nr_pages: int, nr_orders: int) -> None:
        assert (nr_pages, nr_orders) == (1, max_order + 1)
        raise _MemMapReached

    monkeypatch.setattr(sys.modules["kmem.page.buddy"], "MemMap", reached)
    with pytest.raises(_MemMapReached):
        BuddyAllocator(PAGE, max_order=max_order)


def test_max_order_31_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match=_exactly("max_order must be in 0..30, got 31")):
        BuddyAllocator(PAGE, max_order=31)


# -- every refused argument and free says what is wrong -------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, InvalidArgumentError, "give the memory size in bytes, or a PhysicalMemory"),
        ({"size": "65536"}, InvalidTypeError, "size must be an int, not str"),
        ({"size": 4095}, InvalidArgumentError,
         "memory size 4095 is smaller than one page (4096 bytes)"),
        ({"memory": bytearray(4096)}, InvalidTypeError,
         "memory must be a PhysicalMemory, not bytearray"),
        ({"size": "8192", "memory": "given"}, InvalidTypeError, "size must be an int, not str"),
        ({"size": 4 * PAGE, "memory": "given"}, InvalidArgumentError,
         "size 16384 disagrees with the given memory's 8192 bytes"),
        ({"size": 8 * PAGE, "node": "0"}, InvalidTypeError, "node must be an int, not str"),
        ({"size": 8 * PAGE, "zone": "High"}, UnknownZoneError,
         "unknown zone 'High' (Linux's zones: DMA, DMA32, Normal, Movable, Device)"),
        ({"size": 8 * PAGE, "max_order": "3"}, InvalidTypeError,
         "max_order must be an int, not str"),
        ({"size": 8 * PAGE, "reserved": "0-4096"}, InvalidTypeError,
         "reserved must be an iterable of (start, size) pairs, not str"),
        ({"size": 8 * PAGE, "reserved": [(0, 1, 2)]}, InvalidTypeError,
         "a reserved range must be a (start, size) pair, not (0, 1, 2)"),
        ({"size": 8 * PAGE, "reserved": [("0", 1)]}, InvalidTypeError,
         "reserved start must be an int, not str"),
        ({"size": 8 * PAGE, "reserved": [(0, 1.0)]}, InvalidTypeError,
         "reserved size must be an int, not float"),
    ],
)
def test_each_refused_constructor_argument_is_named(
        kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    if kwargs.get("memory") == "given":
        kwargs = {**kwargs, "memory": PhysicalMemory(2 * PAGE)}
    with pytest.raises(error, match=_exactly(message)):
        BuddyAllocator(**kwargs)


def test_a_closed_memory_refuses_to_build_an_allocator_and_to_change_one() -> None:
    memory = PhysicalMemory(8 * PAGE)
    buddy = BuddyAllocator(memory=memory)
    memory.close()
    refused = "cannot allocate or free: the physical memory was closed"
    for call in (lambda: buddy.alloc_pages(0), lambda: buddy.free_pages(0, 0),
                 lambda: buddy.alloc(PAGE), lambda: buddy.free(0)):
        with pytest.raises(MemoryClosedError, match=_exactly(refused)):
            call()
    with pytest.raises(MemoryClosedError, match=_exactly(
            "cannot build an allocator: the physical memory was closed")):
        BuddyAllocator(memory=memory)


def _buddy() -> BuddyAllocator:
    return BuddyAllocator(64 * PAGE, max_order=4)  # four order-4 blocks


def test_the_call_arguments_are_named_when_they_are_no_ints() -> None:
    buddy: Any = _buddy()  # (the calls below break the annotations on purpose)
    cases: list[tuple[Any, str]] = [
        (lambda: buddy.alloc("4096"), "size must be an int, not str"),
        (lambda: buddy.alloc_pages("1"), "order must be an int, not str"),
        (lambda: buddy.free_pages("0", 0), "pfn must be an int, not str"),
        (lambda: buddy.free_pages(0, "0"), "order must be an int, not str"),
        (lambda: buddy.view_pages("0"), "pfn must be an int, not str"),
        (lambda: buddy.free_blocks(0, "2"), "limit must be an int, not str"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidTypeError, match=_exactly(message)):
            call()
    assert buddy.stats().allocations == 0


def test_index_type_arguments_are_taken_as_their_ints() -> None:
    buddy = _buddy()
    top = buddy.alloc_pages(_Index(4))  # type: ignore[arg-type]  # the largest order
    assert buddy.block_at(top) == (top, 4, "allocated")
    pfn = buddy.alloc_pages(1)
    buddy.free_pages(_Index(pfn), _Index(1))  # type: ignore[arg-type]
    buddy.free_pages(top, _Index(4))  # type: ignore[arg-type]
    assert buddy.nr_free == (0, 0, 0, 0, 4)
    buddy.check()


def test_too_large_requests_say_how_large_a_block_can_be() -> None:
    buddy = _buddy()
    with pytest.raises(InvalidArgumentError, match=_exactly(
            "131072 bytes needs order 5, above max_order 4 (largest block 65536 bytes)")):
        buddy.alloc(32 * PAGE)
    small = BuddyAllocator(6 * PAGE, max_order=4)  # 6 frames: order 2 at most
    with pytest.raises(InvalidArgumentError, match=_exactly(
            "32768 bytes needs order 3, but the largest block 6 pages of memory can hold is"
            " 16384 bytes")):
        small.alloc(8 * PAGE)


def test_out_of_memory_says_what_is_left() -> None:
    buddy = _buddy()
    for _ in range(3):
        buddy.alloc_pages(4)
    buddy.alloc_pages(2)
    with pytest.raises(OutOfMemoryError, match=_exactly(
            "no free block of order 4 or larger (12 pages free, largest block order 3)")):
        buddy.alloc_pages(4)


def test_a_free_at_a_wrong_place_or_order_is_refused_with_its_reason() -> None:
    buddy = _buddy()
    pfn = buddy.alloc_pages(0)
    assert pfn == 0
    with pytest.raises(WrongOrderError, match=_exactly(
            "pfn 0x0 was allocated at order 0, freed at order 4")):
        buddy.free_pages(0, 4)  # max_order itself is a valid order: the block's is another
    with pytest.raises(InvalidArgumentError, match=_exactly("order must be in 0..4, got 5")):
        buddy.free_pages(0, 5)
    for far in (10**9, -(10**9)):  # past the padded end: refused like any pfn outside memory
        with pytest.raises(InvalidFreeError, match=_exactly(
                f"pfn {far:#x} lies outside memory [0, 0x40)")):
            buddy.free_pages(far, 0)
    with pytest.raises(DoubleFreeError):
        buddy.free_pages(1, 0)
    for bad in (1, 2, PAGE // 2, PAGE - 1):  # an address inside the first page
        with pytest.raises(InvalidFreeError, match=_exactly(
                f"address {bad:#x} is not page aligned (page size 4096)")):
            buddy.free(bad)
        with pytest.raises(InvalidFreeError, match=_exactly(
                f"address {bad:#x} is not page aligned (page size 4096)")):
            buddy.view(bad)
    assert buddy.block_at(0) == (0, 0, "allocated")
    end = 64 * PAGE
    with pytest.raises(InvalidFreeError, match=_exactly(
            f"address {end:#x} lies outside memory [0, {end:#x})")):
        buddy.view(end)


def test_view_pages_is_the_view_of_the_pages_address() -> None:
    buddy = _buddy()
    buddy.alloc_pages(0)
    pfn = buddy.alloc_pages(0)
    assert pfn == 1
    buddy.view_pages(pfn)[:5] = b"frame"
    assert bytes(buddy.view(PAGE)[:5]) == b"frame"
    assert bytes(buddy.view(0)[:5]) != b"frame"


# -- check() names the broken invariant -----------------------------------------------------------


def test_check_finds_a_misaligned_block_inside_memory() -> None:
    buddy = BuddyAllocator(4 * PAGE, max_order=2)
    for _ in range(4):
        buddy.alloc_pages(0)
    state = buddy.mem_map.state
    state[1], state[2] = state[1] + 1, 0  # an order-1 block at pfn 1: frames 1-2
    message = "block at pfn 0x1 of order 1 is out of place"
    with pytest.raises(AssertionError, match=_exactly(message)):
        buddy.check()


def test_check_finds_a_block_past_the_last_frame() -> None:
    buddy = BuddyAllocator(6 * PAGE, max_order=2)  # blocks 0-3 and 4-5
    buddy.alloc_pages(2)
    pfn = buddy.alloc_pages(1)
    assert pfn == 4
    buddy.mem_map.state[4] += 1  # an order-2 block at pfn 4 would end at 8, past frame 5
    message = "block at pfn 0x4 of order 2 is out of place"
    with pytest.raises(AssertionError, match=_exactly(message)):
        buddy.check()


def test_check_finds_overwritten_padding() -> None:
    buddy = BuddyAllocator(6 * PAGE, max_order=2)  # state padded to 8 frames
    buddy.mem_map.state[7] = 0
    with pytest.raises(AssertionError, match=_exactly(
            "the padding past the last frame was overwritten")):
        buddy.check()


# -- the compiled core's wiring (__init__ and _use_compiled_core hand it the buffers) -------------




needs_core = pytest.mark.skipif(compiled_module() is None, reason="kmem._core is not built")


@needs_core
@pytest.mark.parametrize(("nr_pages", "max_order", "thread_safe"),
                         [(300, 6, True), (64, 4, False)])
def test_an_allocator_on_the_compiled_core_follows_the_linux_model(
        nr_pages: int, max_order: int, thread_safe: bool) -> None:
    module = compiled_module()
    with on_core(module):
        buddy = BuddyAllocator(nr_pages * PAGE, max_order=max_order, thread_safe=thread_safe,
                               reserved=[(PAGE, PAGE)])
    assert buddy.compiled_core is module
    assert type(buddy.alloc_pages).__name__ == "builtin_function_or_method"
    model = LinuxBuddyModel(nr_pages, max_order, {1})
    rng = random.Random(nr_pages)
    live: list[tuple[int, int]] = []
    failures = 0
    for _ in range(1500):
        if live and rng.random() < 0.45:
            pfn, order = live.pop(rng.randrange(len(live)))
            if rng.random() < 0.5:
                buddy.free_pages(pfn, order)
            else:
                buddy.free(pfn * PAGE)
            model.free_pages(pfn, order)
        else:
            order = rng.choice((0, 0, 1, 2, 3, max_order))
            expected = model.alloc_pages(order)
            if expected is None:
                failures += 1
                with pytest.raises(OutOfMemoryError):  # the pure slow path's error
                    buddy.alloc_pages(order)
            else:
                if rng.random() < 0.3:
                    assert buddy.alloc(PAGE << order) == expected * PAGE
                else:
                    assert buddy.alloc_pages(order) == expected
                live.append((expected, order))
        assert buddy.nr_free == model.nr_free
    for order in range(max_order + 1):
        assert buddy.free_blocks(order) == model.free_lists[order]
    assert failures and buddy.stats().failures == failures
    buddy.check()
    # The fast paths hand what they do not handle to the pure methods, which raise.
    with pytest.raises(InvalidArgumentError, match="order must be in"):
        buddy.alloc_pages(max_order + 1)
    with pytest.raises(InvalidArgumentError, match="above max_order"):
        buddy.alloc(PAGE << (max_order + 1))
    with pytest.raises(InvalidFreeError, match="reserved memory"):
        buddy.free_pages(1, 0)
    with pytest.raises(InvalidFreeError, match="not page aligned"):
        buddy.free(PAGE + 1)
    assert buddy.block_at(1) == (1, 0, "reserved")


@needs_core
def test_the_zone_lock_holds_off_the_compiled_fast_paths() -> None:
    with on_core(compiled_module()):
        buddy = BuddyAllocator(16 * PAGE, max_order=4)
    assert buddy.thread_safe is True
    done = threading.Event()

    def allocate() -> None:
        buddy.alloc_pages(4)
        done.set()

    with buddy._lock:  # Linux's zone->lock, held as a pure slow path holds it
        worker = threading.Thread(target=allocate)
        worker.start()
        assert not done.wait(0.2)  # the fast path waits for the lock
    worker.join(5)
    assert done.is_set()
