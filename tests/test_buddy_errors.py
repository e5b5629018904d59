"""Every bad input gets its own KmemError subclass and leaves the allocator exactly as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from conftest import buddy_snapshot
from kmem import (
    BuddyAllocator,
    DoubleFreeError,
    HostMemoryError,
    InvalidArgumentError,
    InvalidFreeError,
    InvalidTypeError,
    KmemError,
    MemoryClosedError,
    PhysicalMemory,
    WrongOrderError,
)
from kmem.page import mem_map
from kmem.page.mem_map import MemMap

KiB = 1024


@pytest.fixture
def buddy() -> BuddyAllocator:
    """68 pages, 64-67 reserved; blocks live at pfn 0 (order 3), 8 (order 0), 12 (order 2)."""
    buddy = BuddyAllocator(68 * 4 * KiB, reserved=[(64 * 4 * KiB, 4 * 4 * KiB)])
    assert buddy.alloc_pages(3) == 0
    assert buddy.alloc_pages(0) == 8
    buddy.free_pages(buddy.alloc_pages(0), 0)  # leave history in the counters
    assert buddy.alloc_pages(2) == 12
    return buddy


# The callable takes Any so that the wrong-type cases type-check.
CASES: list[tuple[str, Callable[[Any], object], type[KmemError], str]] = [
    ("double free", lambda b: b.free_pages(9, 0), DoubleFreeError, "already free"),
    ("double free inside a merged block", lambda b: b.free_pages(40, 0), DoubleFreeError,
     "already free"),
    ("free of an interior page", lambda b: b.free_pages(2, 0), InvalidFreeError,
     "not the start"),
    ("wrong order", lambda b: b.free_pages(0, 2), WrongOrderError, "allocated at order 3"),
    ("free beyond memory", lambda b: b.free_pages(68, 0), InvalidFreeError, "outside memory"),
    ("free of negative pfn", lambda b: b.free_pages(-1, 0), InvalidFreeError, "outside memory"),
    ("free of reserved page", lambda b: b.free_pages(65, 0), InvalidFreeError, "reserved"),
    ("free order out of range", lambda b: b.free_pages(0, 11), InvalidArgumentError, "order"),
    # Orders whose ALLOCATED + order spells another state: the padding past the end (BEYOND),
    # a free frame (FREE), a reserved one (RESERVED).
    ("free in the padding, order naming its state", lambda b: b.free_pages(100, 0x7F),
     InvalidFreeError, "outside memory"),
    ("free of a free frame, order naming its state", lambda b: b.free_pages(9, -0x40),
     InvalidArgumentError, "order must be"),
    ("free of a reserved frame, order naming its state", lambda b: b.free_pages(65, -0x60),
     InvalidArgumentError, "order must be"),
    ("free misaligned address", lambda b: b.free(4096 + 12), InvalidFreeError, "not page aligned"),
    ("free address beyond memory", lambda b: b.free(68 * 4 * KiB), InvalidFreeError,
     "outside memory"),
    ("free address never allocated", lambda b: b.free(40 * 4096), DoubleFreeError,
     "already free"),
    ("alloc negative order", lambda b: b.alloc_pages(-1), InvalidArgumentError, "order must be"),
    ("alloc order beyond max_order", lambda b: b.alloc_pages(11), InvalidArgumentError,
     "order must be"),
    ("alloc zero bytes", lambda b: b.alloc(0), InvalidArgumentError, "positive"),
    ("alloc negative bytes", lambda b: b.alloc(-5), InvalidArgumentError, "positive"),
    ("alloc beyond max_order", lambda b: b.alloc(5 << 20), InvalidArgumentError, "max_order"),
    ("alloc order beyond memory", lambda b: b.alloc_pages(7), InvalidArgumentError,
     "more than the 68 pages"),
    ("alloc bytes beyond memory", lambda b: b.alloc(512 * KiB), InvalidArgumentError,
     "largest block"),
    ("float order", lambda b: b.alloc_pages(1.0), InvalidTypeError, "must be an int"),
    ("bool order", lambda b: b.alloc_pages(True), InvalidTypeError, "must be an int"),
    ("string size", lambda b: b.alloc("4096"), InvalidTypeError, "must be an int"),
    ("None pfn", lambda b: b.free_pages(None, 0), InvalidTypeError, "must be an int"),
    ("float address", lambda b: b.free(0.0), InvalidTypeError, "must be an int"),
    ("view of a free block", lambda b: b.view(40 * 4096), DoubleFreeError, "already free"),
]


@pytest.mark.parametrize(("what", "call", "error", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_specific_error_and_changes_nothing(
    buddy: BuddyAllocator,
    what: str,
    call: Callable[[Any], object],
    error: type[KmemError],
    message: str,
) -> None:
    before = buddy_snapshot(buddy)
    with pytest.raises(error, match=message):
        call(buddy)
    assert buddy_snapshot(buddy) == before, what
    buddy.check()


def test_errors_are_also_the_builtin_kinds_callers_expect() -> None:
    assert issubclass(InvalidTypeError, TypeError)
    assert issubclass(InvalidArgumentError, ValueError)
    assert issubclass(DoubleFreeError, InvalidFreeError)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"size": 100}, InvalidArgumentError),  # smaller than a page
        ({"size": 1 << 20, "page_size": 3000}, InvalidArgumentError),
        ({"size": 1 << 20, "page_size": 4096.0}, InvalidTypeError),
        ({"size": 1 << 20, "max_order": -1}, InvalidArgumentError),
        ({"size": 1 << 20, "max_order": 40}, InvalidArgumentError),
        ({"size": "1M"}, InvalidTypeError),
        ({"size": 1 << 20, "reserved": [(1 << 20, 4096)]}, InvalidArgumentError),
        ({"size": 1 << 20, "backing": 42}, InvalidTypeError),
        ({}, InvalidArgumentError),
        ({"size": 1 << 20, "memory": PhysicalMemory(1 << 16)}, InvalidArgumentError),
        ({"size": 1 << 20, "node": "0"}, InvalidTypeError),
        ({"size": 1 << 20, "zone": 3}, InvalidTypeError),
        # issue 12: malformed reserved ranges and memory objects get their own errors
        ({"size": 1 << 20, "reserved": [(0, 10, 3)]}, InvalidTypeError),
        ({"size": 1 << 20, "reserved": [5]}, InvalidTypeError),
        ({"size": 1 << 20, "reserved": None}, InvalidTypeError),
        ({"size": 1 << 20, "reserved": [(0.5, 4096)]}, InvalidTypeError),
        ({"memory": b"\0" * 8192}, InvalidTypeError),
        ({"size": 2**100}, InvalidArgumentError),
    ],
)
def test_bad_construction_arguments(kwargs: dict[str, object], error: type[KmemError]) -> None:
    with pytest.raises(error):
        BuddyAllocator(**kwargs)  # type: ignore[arg-type]


def test_messages_name_the_argument_and_the_limits(buddy: BuddyAllocator) -> None:
    size = buddy.memory.size
    cases: list[tuple[Callable[[], object], type[KmemError], str]] = [
        (lambda: buddy.free(cast(Any, 1.5)), InvalidTypeError, "address must be an int, not float"),
        (lambda: buddy.view(cast(Any, 1.5)), InvalidTypeError, "address must be an int, not float"),
        (lambda: buddy.block_at(cast(Any, 1.5)), InvalidTypeError, "pfn must be an int, not float"),
        (lambda: buddy.block_at(68), InvalidArgumentError,
         r"pfn 0x44 lies outside memory \[0, 0x44\)"),
        (lambda: buddy.block_at(-1), InvalidArgumentError,
         r"pfn -0x1 lies outside memory \[0, 0x44\)"),
        (lambda: buddy.free(size), InvalidFreeError,
         rf"address {size:#x} lies outside memory \[0, {size:#x}\)"),
        (lambda: buddy.free(8 * 4096 + 2), InvalidFreeError,
         r"address 0x8002 is not page aligned \(page size 4096\)"),
        (lambda: buddy.view(8 * 4096 + 4095), InvalidFreeError,
         r"address 0x8fff is not page aligned \(page size 4096\)"),
        (lambda: buddy.alloc_pages(7), InvalidArgumentError,
         "order 7 is 128 pages, more than the 68 pages of memory"),
    ]
    for call, error, message in cases:
        before = buddy_snapshot(buddy)
        with pytest.raises(error, match=f"^{message}$"):
            call()
        assert buddy_snapshot(buddy) == before


def test_edges_that_are_valid() -> None:
    buddy = BuddyAllocator(64 * 4 * KiB, max_order=6)
    assert buddy.alloc_pages(6) == 0  # order == the largest that fits: allowed
    assert buddy.view(0).nbytes == 64 * 4096  # address 0 is a block's start
    buddy.free(0)  # (free(0) as well)
    assert buddy.block_at(0) == (0, 6, "free")
    assert buddy.alloc_pages(6) == 0
    buddy.free_pages(0, 6)  # order == max_order


def test_block_at_names_the_block_of_every_frame() -> None:
    """64 frames, 60-63 reserved: [0-31] allocated, [32-47] free, [48-55] allocated,
    [56-59] free, then the reserved frames one by one."""
    buddy = BuddyAllocator(64 * 4 * KiB, max_order=6, reserved=[(60 * 4 * KiB, 4 * 4 * KiB)])
    assert buddy.alloc_pages(5) == 0
    assert buddy.alloc_pages(3) == 48
    expected = ([(0, 5, "allocated")] * 32 + [(32, 4, "free")] * 16
                + [(48, 3, "allocated")] * 8 + [(56, 2, "free")] * 4
                + [(pfn, 0, "reserved") for pfn in range(60, 64)])
    assert [tuple(buddy.block_at(pfn)) for pfn in range(64)] == expected
    assert [tuple(b) for b in buddy.blocks()] == sorted(set(expected))
    assert buddy.block_tuples() == sorted(set(expected))


def test_a_size_the_host_cannot_hold_is_refused_before_anything_is_made() -> None:
    """1 TiB of 4 KiB pages needs 3.4 GB of page metadata: refused at once, not after seconds
    of filling arrays (or the host's OOM killer)."""
    with pytest.raises(HostMemoryError, match=r"268435456 pages needs \d+ bytes of page metadata"):
        BuddyAllocator(1 << 40)
    with pytest.raises(HostMemoryError, match="page metadata"):
        MemMap(1 << 28, 11)


def test_the_state_columns_padding_counts_against_the_host(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """A mem_map's state column is padded to whole top-order blocks: one page under max_order
    24 is a 16 MiB column, which the host check counts (it counted 13 bytes for the page)."""
    need = 12 + (1 << 24) + 8 * 25
    assert mem_map.metadata_bytes(1, 25, 1 << 24) == need
    monkeypatch.setattr(mem_map, "host_memory_available", lambda: 2 * need - 2)
    for build in (lambda: BuddyAllocator(4096, max_order=24), lambda: MemMap(1, 25)):
        with pytest.raises(HostMemoryError, match=f"1 pages needs {need} bytes of page metadata"):
            build()
    monkeypatch.setattr(mem_map, "host_memory_available", lambda: 2 * need)
    assert len(BuddyAllocator(4096, max_order=24).mem_map.state) == 1 << 24


def test_half_of_the_hosts_available_memory_is_the_limit(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(mem_map, "host_memory_available", lambda: 40 * 13 * 1024)
    BuddyAllocator(10 * 1024 * 4096)  # 10240 frames: 133 KB, under half of 532 KB
    with pytest.raises(HostMemoryError, match="MemAvailable"):
        BuddyAllocator(30 * 1024 * 4096)


def test_closed_memory_refuses_every_change_on_both_cores(buddy: BuddyAllocator) -> None:
    before = buddy_snapshot(buddy)
    buddy.memory.close()
    for call in (lambda: buddy.alloc_pages(0), lambda: buddy.alloc(4096),
                 lambda: buddy.free_pages(0, 3), lambda: buddy.free(0),
                 lambda: buddy.view(0)):
        with pytest.raises(MemoryClosedError, match="physical memory was closed"):
            call()
    assert buddy_snapshot(buddy) == before
    buddy.check()
    with pytest.raises(MemoryClosedError):
        BuddyAllocator(memory=buddy.memory)


def test_a_replay_of_7_tib_is_refused_before_any_metadata_is_built() -> None:
    """kmem replay --memory 7T died of MemoryError or the OOM killer: now a HostMemoryError
    (the CLI's exit status 2) before the first array is filled."""
    from kmem.trace.replay import Replayer

    with pytest.raises(HostMemoryError, match="1879048192 pages needs"):
        Replayer(memory=7 << 40)
