"""The zone rules of kmem.page that the machine's other tests do not reach: the highatomic
reserve (taken and given back), watermark boosting on a fallback, claiming and stealing from
fragmented pageblocks, and the invariant checker catching each kind of corruption.

Every scenario is driven through PageMachine's public calls (alloc_pages, free_pages) and its
results are read as Linux's counters name them (nr_reserved_highatomic, watermark_boost, the
pageblock's migratetype); each ends with machine.check().
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kmem.errors import OutOfMemoryError
from kmem.page.layout import MachineLayout, ZoneLayout
from kmem.page.machine import PageMachine
from kmem.page.mem_map import ALLOCATED, FREE, PCP
from kmem.page.zone import Zone

# Linux's values (include/linux/mmzone.h, pageblock-flags.h), not kmem's constants.
UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC = 0, 1, 2, 3
PAGEBLOCK_PAGES = 512  # pageblock_order 9 with 4 KiB pages


def _fill_to_low_mark(machine: PageMachine, zone: Zone) -> list[tuple[int, int]]:
    """Allocate movable memory until the zone is just under its low watermark."""
    held = []
    while zone.free_pages > zone.watermark[1] + 600:
        held.append((machine.alloc_pages(9, "GFP_HIGHUSER_MOVABLE"), 9))
    while zone.free_pages >= zone.watermark[1]:
        held.append((machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE"), 0))
    return held


def test_a_high_order_atomic_allocation_under_the_low_mark_reserves_its_pageblock() -> None:
    machine = PageMachine(nr_cpus=1, pcp=False)  # 1 GiB: 512 pageblocks
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine, zone)
    pfn = machine.alloc_pages(2, "GFP_ATOMIC")
    # reserve_highatomic_pageblock: the whole pageblock becomes MIGRATE_HIGHATOMIC, its free
    # pages (the 508 left beside the order-2 block) counted apart.
    assert machine.pageblock_mt[pfn // PAGEBLOCK_PAGES] == HIGHATOMIC
    assert zone.nr_reserved_highatomic == PAGEBLOCK_PAGES
    assert zone.nr_free_highatomic == PAGEBLOCK_PAGES - 4
    # The next atomic one comes from the reserve, which does not grow for it.
    second = machine.alloc_pages(2, "GFP_ATOMIC")
    assert second // PAGEBLOCK_PAGES == pfn // PAGEBLOCK_PAGES
    assert zone.nr_reserved_highatomic == PAGEBLOCK_PAGES
    # Ordinary allocations may not count the reserve as free.
    assert not zone.zone_watermark_ok(0, zone.free_pages - zone.nr_free_highatomic,
                                      0, 0)
    machine.check()


def test_a_zone_under_100_pageblocks_keeps_no_highatomic_reserve() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine, zone)
    pfn = machine.alloc_pages(2, "GFP_ATOMIC")
    assert machine.pageblock_mt[pfn // PAGEBLOCK_PAGES] != HIGHATOMIC
    assert zone.nr_reserved_highatomic == 0 and zone.nr_free_highatomic == 0
    machine.check()


def test_when_memory_runs_out_a_reclaiming_allocation_gets_a_reserved_pageblock_back() -> None:
    machine = PageMachine(nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine, zone)
    first = machine.alloc_pages(2, "GFP_ATOMIC")
    # Use up the first reserved pageblock, so that the next atomic request reserves another.
    while zone.nr_free_highatomic:
        machine.alloc_pages(2, "GFP_ATOMIC")
    machine.alloc_pages(2, "GFP_ATOMIC")
    assert zone.nr_reserved_highatomic == 2 * PAGEBLOCK_PAGES
    second = next(b for b in range(len(machine.pageblock_mt))
                  if machine.pageblock_mt[b] == HIGHATOMIC and b != first // PAGEBLOCK_PAGES)
    # Take every other free page: GFP_KERNEL may not touch the reserve...
    while True:
        try:
            machine.alloc_pages(0, "GFP_KERNEL")
        except OutOfMemoryError:
            break
        if zone.nr_reserved_highatomic < 2 * PAGEBLOCK_PAGES:
            break
    # ...until direct reclaim finds nothing: then unreserve_highatomic_pageblock gives the
    # reserve with free pages back (one pageblock, keeping the last one).
    assert zone.nr_reserved_highatomic == PAGEBLOCK_PAGES
    assert machine.pageblock_mt[second] == UNMOVABLE
    assert machine.pageblock_mt[first // PAGEBLOCK_PAGES] == HIGHATOMIC
    machine.check()


def _fragment(machine: PageMachine, order: int, keep_free: Callable[[int], bool]) -> None:
    """Allocate every free page (__GFP_MEMALLOC: the reserves too) as movable blocks of
    ``order``, then free those keep_free picks (by their index within their pageblock)."""
    held = []
    while True:
        try:
            held.append(machine.alloc_pages(order, "GFP_HIGHUSER_MOVABLE|__GFP_MEMALLOC"))
        except OutOfMemoryError:
            break
    for pfn in held:
        if keep_free((pfn % PAGEBLOCK_PAGES) >> order):
            machine.free_pages(pfn, order)


def test_an_unmovable_fallback_claims_a_half_free_movable_pageblock_and_boosts() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 256 << 20}), nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    _fragment(machine, 8, lambda index: index == 0)  # the first half of each pageblock free
    assert zone.watermark_boost == 0
    pfn = machine.alloc_pages(0, "GFP_KERNEL")
    # try_to_claim_block: half the pageblock free, so it changes type; the fallback raised
    # the watermarks by one pageblock (boost_watermark), and the allocation, which may wake
    # kswapd, ended the boost as kswapd's boosted reclaim would.
    block = pfn // PAGEBLOCK_PAGES
    assert machine.pageblock_mt[block] == UNMOVABLE
    assert zone.claims == 1 and zone.extfrag == 1
    assert zone.watermark_boost == 0 and not zone.boosted_watermark
    # A reclaimable request that may not wake kswapd falls back too (claiming another
    # pageblock) and keeps its boost: nothing would reclaim it.
    other = machine.alloc_pages(0, "__GFP_IO|__GFP_FS|__GFP_RECLAIMABLE")
    assert machine.pageblock_mt[other // PAGEBLOCK_PAGES] == RECLAIMABLE
    assert zone.claims == 2
    assert zone.watermark_boost == PAGEBLOCK_PAGES and not zone.boosted_watermark
    machine.check()


def test_an_unmovable_fallback_steals_from_a_mostly_used_pageblock_without_retyping_it() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 256 << 20}), nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    _fragment(machine, 3, lambda index: index < 8)  # 64 of 512 pages free per pageblock
    pfn = machine.alloc_pages(0, "GFP_KERNEL")
    # Too little of any pageblock is free to claim it: __rmqueue_steal takes the smallest
    # fitting block and the pageblock stays movable (an extfrag event, no claim).
    assert machine.pageblock_mt[pfn // PAGEBLOCK_PAGES] == MOVABLE
    assert zone.claims == 0 and zone.extfrag == 1
    assert machine.block_at(pfn) == (pfn, 0, "allocated")
    machine.check()


def _corrupt_nr_free(zone: Zone) -> None:
    zone.nr_free[10] += 1


def _corrupt_free_pages(zone: Zone) -> None:
    zone.free_pages -= 1


def _corrupt_boost(zone: Zone) -> None:
    zone.watermark_boost = -1


@pytest.mark.parametrize(("corrupt", "message"), [
    (_corrupt_nr_free, "nr_free is"),
    (_corrupt_free_pages, "free_pages is"),
    (_corrupt_boost, "negative reserve or boost"),
])
def test_check_lists_catches_a_wrong_counter(corrupt: Callable[[Zone], None],
                                             message: str) -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    corrupt(machine.zone("Normal"))
    with pytest.raises(AssertionError, match=message):
        machine.check()


def _free_head(machine: PageMachine) -> int:
    zone = machine.zone("Normal")
    return zone.free_list(MOVABLE, 10)[0]


@pytest.mark.parametrize(("where", "message"), [
    ("state", "state 0x"),
    ("pageblock", "its pageblock is of another type"),
    ("prev", "broken prev link"),
    ("unmerged", "was not merged"),
])
def test_check_lists_catches_a_corrupt_free_list(where: str, message: str) -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    pfn = _free_head(machine)
    if where == "state":
        machine.mem_map.state[pfn] = FREE | 9
    elif where == "pageblock":
        machine.pageblock_mt[pfn // PAGEBLOCK_PAGES] = UNMOVABLE
    elif where == "prev":
        machine.mem_map.prev[pfn] = pfn
    else:
        # Two free order-9 buddies listed apart (as if free_one_page forgot to merge).
        zone = machine.zone("Normal")
        zone.del_page_from_free_list(pfn, 10, MOVABLE)
        zone.free_boot_block(pfn, 9)
        zone.free_boot_block(pfn + PAGEBLOCK_PAGES, 9)
    with pytest.raises(AssertionError, match=message):
        machine.check()


def _small_machine() -> PageMachine:
    """16 MiB of Normal whose first 1024 frames are present but not managed (reserved)."""
    return PageMachine(MachineLayout((ZoneLayout("Normal", 0, 4096, 4096, 3072),)), nr_cpus=1,
                       pcp=False)


@pytest.mark.parametrize(("where", "message"), [
    ("reserved in use", "below zone Normal's managed pages is in use"),
    ("no block", "starts no block"),
    ("misaligned", "is out of place"),
    ("overlap", "overlaps another block"),
    ("padding", "padding past the last frame"),
    ("pcp frame", "frames are in pcp blocks"),
    ("pageblock type", "no valid migratetype"),
])
def test_check_catches_a_corrupt_mem_map(where: str, message: str) -> None:
    machine = _small_machine()
    state = machine.mem_map.state
    first, second = (machine.alloc_pages(0) for _ in range(2))
    assert second == first + 1 and not first & 1  # split off one block, lowest first
    whole = machine.alloc_pages(9)
    machine.check()
    if where == "reserved in use":
        state[0] = ALLOCATED
    elif where == "no block":
        state[first] = 0
    elif where == "misaligned":
        state[second] = ALLOCATED | 1
    elif where == "overlap":
        state[first] = ALLOCATED | 1
    elif where == "padding":
        state.append(0)  # (the padding is the bytes past nr_pages)
    elif where == "pcp frame":
        state[first] = PCP  # a pcp block on no pcp list
    else:
        machine.pageblock_mt[whole // PAGEBLOCK_PAGES] = 7
    with pytest.raises(AssertionError, match=message):
        machine.check()


@pytest.mark.parametrize(("where", "message"), [
    ("count", "count is"),
    ("prev", "broken prev link"),
    ("state", "does not belong"),
    ("high", "below high_min"),
    ("alloc_factor", "alloc_factor or free_count out of range"),
])
def test_the_pcp_check_catches_a_corrupt_pcp(where: str, message: str) -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    assert machine.warm_pcp(0, 8) == 8
    pcp = machine.pcp("Normal", 0)
    head = pcp.list(MOVABLE)[0]  # (order 0's lists are indexed by migratetype)
    if where == "count":
        pcp.count += 1
    elif where == "prev":
        machine.mem_map.prev[head] = head
    elif where == "state":
        machine.mem_map.state[head] = PCP | 1
    elif where == "high":
        pcp.high = 1
        pcp.high_min = 5
    else:
        pcp.alloc_factor = 99
    with pytest.raises(AssertionError, match=message):
        pcp.check()
