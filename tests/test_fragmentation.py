"""Linux's unusable free space index and extfrag index, by mm/vmstat.c's integer arithmetic."""

from __future__ import annotations

from kmem import BuddyAllocator, extfrag_index, unusable_index
from kmem.page.fragmentation import format_index, fragmentation_report


def test_unusable_index_counts_free_pages_in_too_small_blocks() -> None:
    nr_free = [4, 2, 0, 1]  # 4 + 4 + 8 = 16 free pages
    assert unusable_index(nr_free, 0) == 0
    assert unusable_index(nr_free, 1) == 4 * 1000 // 16  # the 4 single pages are unusable
    assert unusable_index(nr_free, 2) == 8 * 1000 // 16
    assert unusable_index(nr_free, 3) == 8 * 1000 // 16
    assert unusable_index([0, 0, 0], 0) == 1000  # nothing free: nothing usable


def test_extfrag_index_when_the_request_would_fail() -> None:
    nr_free = [8, 4, 0]  # 16 free pages in 12 blocks, none of order 2
    assert extfrag_index(nr_free, 1) == -1000  # an order-1 request succeeds
    # 1000 - (1000 + 16 * 1000 / 4) / 12 = 1000 - 5000 // 12 = 584
    assert extfrag_index(nr_free, 2) == 584
    assert extfrag_index([0, 0, 0], 2) == 0


def test_kernel_print_format() -> None:
    assert format_index(584) == "0.584"
    assert format_index(-1000, 2) == "-1.000"
    assert format_index(1000) == "1.000"


def test_report_of_a_fragmented_zone() -> None:
    buddy = BuddyAllocator(16 * 4096, max_order=4)
    pages = [buddy.alloc_pages(0) for _ in range(16)]
    for pfn in pages[::2]:  # free every other page: 8 free pages, no two adjacent
        buddy.free_pages(pfn, 0)
    report = buddy.fragmentation()
    assert report.free_pages == 8
    assert report.largest_free_order == 0
    assert report.unusable[1] == 1000
    assert report.extfrag[1] == 1000 - (1000 + 8 * 1000 // 2) // 8
    line = report.unusable_index_line()
    assert line.startswith("Node 0, zone   Normal 0.000 1.000 ")


def test_extfrag_index_line_is_the_kernels() -> None:
    # mm/vmstat.c extfrag_show_print: "Node %d, zone %8s " then "%2d.%03d " per order.
    report = fragmentation_report([8, 4, 0])
    assert report.extfrag == (-1000, -1000, 584)
    assert report.extfrag_index_line(1, "DMA32") == "Node 1, zone    DMA32 -1.000 -1.000  0.584 \n"


def test_report_is_the_indices_of_every_order() -> None:
    # fragmentation_report's one pass against unusable_index and extfrag_index order by order
    import random

    rng = random.Random(12)
    cases = [[], [0], [0, 0, 0], [1], [0, 0, 1], [3, 0, 0, 0], [8, 4, 0]]
    cases += [[rng.choice((0, 0, 1, 2, 7, 300)) for _ in range(rng.randint(1, 12))]
              for _ in range(300)]
    for nr_free in cases:
        report = fragmentation_report(nr_free)
        orders = range(len(nr_free))
        assert report.unusable == tuple(unusable_index(nr_free, o) for o in orders), nr_free
        assert report.extfrag == tuple(extfrag_index(nr_free, o) for o in orders), nr_free
        assert report.free_pages == sum(n << o for o, n in enumerate(nr_free))
        assert report.largest_free_order == max((o for o in orders if nr_free[o]), default=-1)
