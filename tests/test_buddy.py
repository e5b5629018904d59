"""The buddy allocator's rules, one by one, and against a plain model of Linux's on random runs."""

from __future__ import annotations

import random
import threading

import pytest

from conftest import buddy_snapshot
from kmem import BuddyAllocator, OutOfMemoryError, get_order
from kmem.errors import InvalidArgumentError, InvalidTypeError
from linux_buddy_model import LinuxBuddyModel

KiB = 1024


def test_boot_carves_largest_aligned_blocks_lowest_first() -> None:
    # 13 pages: 0-7 (order 3), 8-11 (order 2), 12 (order 0).
    buddy = BuddyAllocator(13 * 4 * KiB, max_order=10)
    assert buddy.nr_free == (1, 0, 1, 1) + (0,) * 7
    assert buddy.free_blocks(3) == [0]
    # With max_order 2, the same memory is three order-2 blocks in ascending order, then one page.
    capped = BuddyAllocator(13 * 4 * KiB, max_order=2)
    assert capped.free_blocks(2) == [0, 4, 8]
    assert capped.free_blocks(0) == [12]
    assert capped.alloc_pages(2) == 0  # the first allocation takes the lowest address
    capped.check()


def test_free_blocks_limit_takes_the_head_of_the_list() -> None:
    buddy = BuddyAllocator(13 * 4 * KiB, max_order=2)
    assert buddy.free_blocks(2, 2) == [0, 4]
    assert buddy.free_blocks(2, 0) == []
    assert buddy.free_blocks(2, 5) == buddy.free_blocks(2) == [0, 4, 8]
    assert buddy.free_blocks(1, 3) == []
    with pytest.raises(InvalidArgumentError, match="limit must be >= 0, got -1"):
        buddy.free_blocks(2, -1)
    with pytest.raises(InvalidTypeError):
        buddy.free_blocks(2, 1.5)  # type: ignore[arg-type]


def test_split_keeps_lower_half_and_puts_upper_halves_at_list_heads() -> None:
    buddy = BuddyAllocator(64 * 4 * KiB)
    assert buddy.alloc_pages(3) == 0
    assert [buddy.free_blocks(order) for order in (3, 4, 5)] == [[8], [16], [32]]
    # A second order-3 request takes the head of list 3 without splitting.
    assert buddy.alloc_pages(3) == 8
    # An order-0 request splits the order-4 block at 16: 17, 18-19, 20-23 go free.
    assert buddy.alloc_pages(0) == 16
    assert buddy.free_blocks(0) == [17]
    assert buddy.free_blocks(1) == [18]
    assert buddy.free_blocks(2) == [20]
    buddy.check()


def test_allocation_takes_the_head_of_the_list() -> None:
    buddy = BuddyAllocator(64 * 4 * KiB)
    pages = [buddy.alloc_pages(0) for _ in range(4)]  # 0, 1, 2, 3
    buddy.free_pages(pages[0], 0)  # page 0 (buddy 1 busy) goes to the head of list 0
    buddy.free_pages(pages[2], 0)  # page 2 (buddy 3 busy) goes to the head, before 0
    assert buddy.free_blocks(0) == [2, 0]
    assert buddy.alloc_pages(0) == 2


def test_free_coalesces_back_to_the_whole_segment() -> None:
    buddy = BuddyAllocator(256 * KiB)
    address = buddy.alloc(21 * KiB)
    buddy.free(address)
    assert buddy.nr_free == (0,) * 6 + (1,) + (0,) * 4
    stats = buddy.stats()
    assert (stats.splits, stats.merges) == (3, 3)


def test_merged_block_goes_to_tail_when_its_parent_buddy_is_free() -> None:
    # 16 pages, max_order 4: free 0-3 and 8-15 around an allocated 4-7 block.
    buddy = BuddyAllocator(16 * 4 * KiB, max_order=4)
    a = buddy.alloc_pages(2)  # 0-3; free: 4-7 (o2), 8-15 (o3)
    b = buddy.alloc_pages(2)  # 4-7
    c = buddy.alloc_pages(0)  # 8; free: 9 (o0), 10-11 (o1), 12-15 (o2)
    d = buddy.alloc_pages(1)  # 10-11
    buddy.free_pages(a, 2)
    # 0-3's buddy 4-7 is busy; its parent 0-7 has buddy 8-15, not free at order 3: head.
    assert buddy.free_blocks(2) == [0, 12]
    buddy.free_pages(d, 1)
    # 10-11 merges with nothing (8-9 not free as an order-1 block); parent 8-11's buddy 12-15
    # is free at order 2: merge likely, so it goes to the tail of list 1.
    assert buddy.free_blocks(1) == [10]
    e = buddy.alloc_pages(0)  # 9 is the head of list 0
    assert e == 9
    buddy.free_pages(e, 0)
    # 9: buddy 8 busy; parent 8-9's buddy 10-11 is free at order 1: tail of list 0.
    assert buddy.free_blocks(0) == [9]
    del b, c
    buddy.check()


def test_no_merge_beyond_the_end_of_memory() -> None:
    # 12 pages: blocks 0-7 and 8-11; the buddy of 8-11 (12-15) does not exist.
    buddy = BuddyAllocator(12 * 4 * KiB)
    pfn = buddy.alloc_pages(2)
    assert pfn == 8
    buddy.free_pages(pfn, 2)
    assert buddy.free_blocks(2) == [8]
    assert buddy.free_blocks(3) == [0]
    buddy.check()


def test_reserved_holes_are_never_handed_out() -> None:
    page = 4 * KiB
    # Reserve page 5 and pages 9-10 (a byte range that straddles them).
    buddy = BuddyAllocator(16 * page, reserved=[(5 * page, 100), (9 * page + 1, page)])
    # Free runs 0-4, 6-8, 11-15 in aligned blocks: 0-3, 4 | 6-7, 8 | 11, 12-15.
    assert buddy.free_blocks(2) == [0, 12]
    assert buddy.free_blocks(1) == [6]
    assert buddy.free_blocks(0) == [4, 8, 11]
    taken = []
    while True:
        try:
            taken.append(buddy.alloc_pages(0))
        except OutOfMemoryError:
            break
    assert sorted(taken) == [p for p in range(16) if p not in (5, 9, 10)]
    assert buddy.stats().reserved_pages == 3
    buddy.check()


def test_alloc_rounds_bytes_up_to_a_power_of_two_of_pages() -> None:
    buddy = BuddyAllocator(1024 * KiB)
    sizes = {1: 0, 4096: 0, 4097: 1, 8192: 1, 21 * KiB: 3, 32 * KiB: 3, 33 * KiB: 4}
    for size, order in sizes.items():
        assert get_order(size) == order
        before = buddy.nr_free_pages
        address = buddy.alloc(size)
        assert before - buddy.nr_free_pages == 1 << order
        assert len(buddy.view(address)) == 4096 << order
        buddy.free(address)
    assert buddy.nr_free_pages == 256


def test_out_of_memory_is_a_memory_error_and_changes_nothing() -> None:
    buddy = BuddyAllocator(8 * 4 * KiB, max_order=3)
    buddy.alloc_pages(2)
    buddy.alloc_pages(1)
    snapshot = buddy_snapshot(buddy)
    with pytest.raises(MemoryError):
        buddy.alloc_pages(2)
    # Only the failure counter moved: every frame, list and count is as it was.
    after = buddy_snapshot(buddy)
    assert after[:4] == snapshot[:4]
    assert after[4].failures == snapshot[4].failures + 1


def test_non_power_of_two_page_sizes_are_rejected_and_others_work() -> None:
    for page_size in (16, 512, 8192, 65536):
        buddy = BuddyAllocator(page_size * 40, page_size=page_size, max_order=4)
        address = buddy.alloc(page_size * 3)
        assert address % (page_size * 4) == 0
        assert len(buddy.view(address)) == page_size * 4
        buddy.check()


def test_buddyinfo_has_procfs_line_format() -> None:
    buddy = BuddyAllocator(256 * KiB, node=1, zone="DMA32")
    buddy.alloc(21 * KiB)
    counts = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    expected = "Node 1, zone    DMA32 " + "".join(str(c).rjust(6) + " " for c in counts) + "\n"
    assert buddy.buddyinfo() == expected


def _random_run(size_pages: int, max_order: int, steps: int, seed: int,
                reserved: set[int] | None = None, thread_safe: bool = True) -> None:
    rng = random.Random(seed)
    page = 4096
    ranges = [(p * page, page) for p in sorted(reserved or ())]
    buddy = BuddyAllocator(size_pages * page, max_order=max_order, reserved=ranges,
                           thread_safe=thread_safe)
    model = LinuxBuddyModel(size_pages, max_order, reserved)
    assert buddy.nr_free == model.nr_free
    for order in range(max_order + 1):
        assert buddy.free_blocks(order) == model.free_lists[order]
    live: list[tuple[int, int]] = []
    for step in range(steps):
        if live and rng.random() < 0.45:
            pfn, order = live.pop(rng.randrange(len(live)))
            buddy.free_pages(pfn, order)
            model.free_pages(pfn, order)
        else:
            # Orders the memory could hold at all: larger ones are bad input, not OOM.
            order = min(rng.choice((0, 0, 0, 1, 1, 2, 3, 4, 5)), max_order,
                        size_pages.bit_length() - 1)
            expected = model.alloc_pages(order)
            if expected is None:
                with pytest.raises(OutOfMemoryError):
                    buddy.alloc_pages(order)
            else:
                assert buddy.alloc_pages(order) == expected, f"step {step}"
                live.append((expected, order))
        assert buddy.nr_free == model.nr_free, f"step {step}"
    for order in range(max_order + 1):
        assert buddy.free_blocks(order) == model.free_lists[order]
    buddy.check()


@pytest.mark.parametrize("seed", range(6))
def test_same_pfns_and_nr_free_as_linux_rules(seed: int) -> None:
    _random_run(1024, 10, 3000, seed)


@pytest.mark.parametrize(("size_pages", "max_order"), [(1000, 10), (777, 6), (4097, 10), (3, 2)])
def test_same_as_linux_rules_on_sizes_not_powers_of_two(size_pages: int, max_order: int) -> None:
    _random_run(size_pages, max_order, 2000, size_pages)


def test_without_the_lock_the_same_rules_hold() -> None:
    _random_run(512, 9, 2000, 11, thread_safe=False)


def test_same_as_linux_rules_with_reserved_holes() -> None:
    _random_run(300, 5, 2000, 7, reserved={0, 1, 64, 65, 66, 200, 299})


def test_threads_allocating_and_freeing_lose_nothing() -> None:
    buddy = BuddyAllocator(4096 * 4096, max_order=10)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        live: list[tuple[int, int]] = []
        try:
            for _ in range(5000):
                if live and rng.random() < 0.5:
                    buddy.free_pages(*live.pop(rng.randrange(len(live))))
                else:
                    order = rng.randrange(4)
                    live.append((buddy.alloc_pages(order), order))
            for pfn, order in live:
                buddy.free_pages(pfn, order)
        except BaseException as error:  # reported to the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert buddy.nr_free_pages == 4096
    assert buddy.nr_free[10] == 4
    stats = buddy.stats()
    assert stats.allocations == stats.frees
    buddy.check()


def test_64_gib_of_pages_fits_in_compact_metadata() -> None:
    buddy = BuddyAllocator(64 << 30)
    assert buddy.nr_pages == 16_777_216
    assert buddy.mem_map.bytes_per_page <= 16
    assert buddy.nr_free[10] == 16_384
    pfn = buddy.alloc_pages(0)
    view = buddy.view_pages(pfn)
    view[:5] = b"hello"
    buddy.free_pages(pfn, 0)
    assert buddy.nr_free[10] == 16_384


def test_blocks_lists_every_block_in_address_order() -> None:
    page = 4 * KiB
    buddy = BuddyAllocator(16 * page, max_order=4, reserved=[(15 * page, page)])
    # Boot: 0-7, 8-11, 12-13, 14 free; the order-1 request takes 12-13, the smallest fit.
    assert buddy.alloc_pages(1) == 12
    listed = [(b.pfn, b.order, b.state) for b in buddy.blocks()]
    assert listed == [
        (0, 3, "free"), (8, 2, "free"), (12, 1, "allocated"), (14, 0, "free"),
        (15, 0, "reserved"),
    ]
    # Together they cover memory exactly once.
    assert sum(1 << order for _, order, _ in listed) == 16


@pytest.mark.parametrize(("nr_pages", "max_order"), [(100, 3), (64, 6), (1, 0), (1000, 10)])
def test_mem_map_columns_at_boot(nr_pages: int, max_order: int) -> None:
    """The mem_map's documented shape: one entry a frame, the state column padded with BEYOND
    to a whole max-order block (so a buddy lookup needs no bounds check), no owner yet."""
    from kmem.page.mem_map import BEYOND

    mem_map = BuddyAllocator(nr_pages * 4096, max_order=max_order).mem_map
    top = 1 << max_order
    padded = -(-nr_pages // top) * top
    assert (mem_map.nr_pages, mem_map.nr_orders) == (nr_pages, max_order + 1)
    assert len(mem_map.state) == padded
    assert bytes(mem_map.state[nr_pages:]) == bytes([BEYOND]) * (padded - nr_pages)
    assert len(mem_map.owner) == nr_pages and not any(mem_map.owner)
    assert len(mem_map.next) == len(mem_map.prev) == nr_pages + max_order + 1
