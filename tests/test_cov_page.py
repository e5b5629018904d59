"""The zone rules of kmem.page that the machine's other tests do not reach: the highatomic
reserve (taken and given back), watermark boosting on a fallback, claiming and stealing from
fragmented pageblocks, and the invariant checker catching each kind of corruption.

Every scenario is driven through PageMachine's public calls (alloc_pages, free_pages) and its
results are read as Linux's counters name them (nr_reserved_highatomic, watermark_boost, the
pageblock's migratetype); each ends with machine.check().
"""

from __future__ import annotations

import re
from collections.abc import Callable
from math import isqrt
from typing import Any

import pytest

from kmem.errors import InvalidArgumentError, InvalidTypeError, OutOfMemoryError
from kmem.page.buddy import BuddyAllocator
from kmem.page.counters import Counter, Flag, field_names
from kmem.page.errors import NoSuchCpuError, PfnNotInZoneError, UnknownZoneError
from kmem.page.gfp import UnknownGfpFlagError, gfp_flags_text, parse_gfp_flags
from kmem.page.layout import MachineLayout, ZoneLayout
from kmem.page.machine import PageMachine
from kmem.page.mem_map import ALLOCATED, FREE, PCP, RESERVED
from kmem.page.migratetype import migratetype_is_mergeable
from kmem.page.size import parse_size
from kmem.page.watermarks import gfp_pfmemalloc_flags, gfp_to_alloc_flags
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


# -- PageMachine's argument errors: each names what is wrong, and nothing is built or changed --

@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"watermark_scale_factor": 0}, InvalidArgumentError, "watermark_scale_factor must be in"),
    ({"watermark_scale_factor": 3001}, InvalidArgumentError, "watermark_scale_factor must be in"),
    ({"lowmem_reserve_ratio": (256, 32)}, InvalidArgumentError, "lowmem_reserve_ratio needs"),
    ({"lowmem_reserve_ratio": (256, 32, -1, 0, 0)}, InvalidArgumentError,
     "lowmem_reserve_ratio needs"),
    ({"percpu_pagelist_high_fraction": 7}, InvalidArgumentError,
     "percpu_pagelist_high_fraction must be 0 or >= 8"),
    ({"min_free_kbytes": -1}, InvalidArgumentError, "min_free_kbytes must be >= 0, got -1"),
    ({"pcp_batch": 0}, InvalidArgumentError, "pcp_batch must be >= 1, got 0"),
    ({"pcp_high": 0}, InvalidArgumentError, "pcp_high must be >= 1, got 0"),
    ({"layout": "1G"}, InvalidTypeError, "layout must be a MachineLayout, not str"),
])
def test_bad_machine_arguments_are_named(arguments: dict[str, Any], error: type[Exception],
                                         message: str) -> None:
    with pytest.raises(error, match=message):
        PageMachine(**arguments)


def test_bad_allocation_and_query_arguments_leave_the_machine_as_it_was() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=2)
    before = machine.buddyinfo()
    with pytest.raises(InvalidArgumentError, match="gfp flags must be >= 0, got -1"):
        machine.alloc_pages(0, -1)
    with pytest.raises(InvalidArgumentError, match=r"order must be in 0\.\.10, got 11"):
        machine.alloc_pages(11)
    with pytest.raises(NoSuchCpuError, match=r"cpu 2 is not in 0\.\.1"):
        machine.alloc_pages(0, cpu=2)
    with pytest.raises(PfnNotInZoneError, match="lies outside this machine's frames"):
        machine.block_at(machine.nr_pages)
    with pytest.raises(InvalidArgumentError, match="warm_pcp needs count >= 0"):
        machine.warm_pcp(0, -1)
    with pytest.raises(InvalidArgumentError, match="warm_pcp needs count >= 0"):
        machine.warm_pcp(0, 1, order=4)  # (the pcp keeps orders 0..3 and the THP order)
    with pytest.raises(InvalidArgumentError, match="a migratetype with pcp lists"):
        machine.warm_pcp(0, 1, migratetype=HIGHATOMIC)
    with pytest.raises(InvalidArgumentError, match="gfp flags must be >= 0"):
        machine.preferred_zone(-4)
    assert machine.buddyinfo() == before
    machine.check()


def test_an_order_given_as_an_index_type_is_taken() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)

    class Index:  # anything with __index__ (a numpy integer) is an int argument
        def __init__(self, value: int) -> None:
            self.value = value

        def __index__(self) -> int:
            return self.value

    pfn = machine.alloc_pages(Index(3))  # type: ignore[arg-type]
    assert machine.block_at(pfn) == (pfn, 3, "allocated")
    machine.free_pages(Index(pfn), Index(3))  # type: ignore[arg-type]
    assert machine.block_at(pfn)[2] != "allocated"
    with pytest.raises(InvalidArgumentError, match=r"order must be in 0\.\.10, got 12"):
        machine.alloc_pages(Index(12))  # type: ignore[arg-type]
    machine.check()


def test_the_zone_a_gfp_prefers_and_the_pcp_list_it_takes_from() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"DMA32": 64 << 20, "Normal": 64 << 20}),
                          nr_cpus=1)
    # gfp_zone(): no zone modifier -> Normal first; __GFP_DMA32 -> DMA32.
    assert machine.preferred_zone("GFP_KERNEL").name == "Normal"
    assert machine.preferred_zone("GFP_KERNEL|__GFP_DMA32").name == "DMA32"
    # gfp_migratetype(): the pcp list each request takes from (MIGRATE_* values of Linux).
    assert machine.gfp_pcp_migratetype("GFP_KERNEL") == UNMOVABLE
    assert machine.gfp_pcp_migratetype("GFP_HIGHUSER_MOVABLE") == MOVABLE
    assert machine.gfp_pcp_migratetype("GFP_KERNEL|__GFP_RECLAIMABLE") == RECLAIMABLE


def test_a_cpus_events_count_what_it_did_and_serialise_by_name() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=2)
    machine.alloc_pages(0, cpu=1)  # an empty pcp: one refill from the buddy lists
    events = machine.events(1)
    assert events.cpu == 1 and events.refills == 1
    assert events.to_json() == {
        "mm_page_alloc_zone_locked": events.mm_page_alloc_zone_locked,
        "mm_page_pcpu_drain": events.mm_page_pcpu_drain,
        "mm_page_alloc_extfrag": events.mm_page_alloc_extfrag,
        "refills": 1, "zone_lock": events.zone_lock}
    assert machine.events(0).refills == 0


def test_watermarks_of_a_zone_are_its_min_low_high_and_promo() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    marks = machine.watermarks_of("Normal")
    assert tuple(marks) == machine.zone("Normal").watermark
    assert marks[0] < marks[1] < marks[2] <= marks[3]


# -- the zone's own rules, called as the allocator calls them --------------------------------

# mm/internal.h's ALLOC_* bits (literals, not kmem's constants).
ALLOC_OOM, ALLOC_NON_BLOCK, ALLOC_MIN_RESERVE, ALLOC_HIGHATOMIC = 0x08, 0x10, 0x20, 0x200


@pytest.mark.parametrize(("flags", "floor"), [
    (0, 1000),
    (ALLOC_MIN_RESERVE, 500),  # __GFP_HIGH: half the mark
    (ALLOC_MIN_RESERVE | ALLOC_NON_BLOCK, 375),  # and atomic: a quarter less again
    (ALLOC_OOM, 500),  # the OOM victim: half
    (ALLOC_OOM | ALLOC_MIN_RESERVE, 250),
])
def test_zone_watermark_ok_lowers_the_mark_for_each_reserve_a_request_may_use(
        flags: int, floor: int) -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    zone = machine.zone("Normal")
    own = zone.index  # lowmem_reserve[own zone] is 0
    # __zone_watermark_ok: the request passes when free pages exceed the lowered mark.
    assert not zone.zone_watermark_ok(0, 1000, own, flags, floor)
    assert zone.zone_watermark_ok(0, 1000, own, flags, floor + 1)


def test_zone_watermark_fast_retries_an_order_0_high_request_without_the_boost() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    min_mark = zone.watermark[0]
    # A boost so big that even half the boosted min (__GFP_HIGH's floor) is above every
    # free page.
    zone.watermark_boost = 3 * zone.free_pages
    boosted = zone.wmark(0)
    assert boosted == min_mark + 3 * zone.free_pages
    # A plain request at the boosted mark fails; __GFP_HIGH (ALLOC_MIN_RESERVE) at WMARK_MIN
    # is checked again against the unboosted min (zone_watermark_fast), and passes.
    assert not zone.zone_watermark_fast(0, boosted, zone.index, 0)
    assert zone.zone_watermark_fast(0, boosted, zone.index, ALLOC_MIN_RESERVE)
    # Not at an order above 0, nor at the low mark.
    assert not zone.zone_watermark_fast(1, boosted, zone.index, ALLOC_MIN_RESERVE)
    assert not zone.zone_watermark_fast(0, boosted, zone.index, ALLOC_MIN_RESERVE | 1)


def test_a_zone_with_no_high_watermark_is_not_boosted() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    zone = machine.zone("Normal")
    zone.watermark = (0, 0, 0, 0)
    assert not zone.boost_watermark()  # boost_watermark: max_boost 0 -> no boost
    assert zone.watermark_boost == 0


@pytest.mark.parametrize(("attribute", "values", "message"), [
    ("watermark", (1, 2, 3), "a zone has 4 watermarks"),
    ("lowmem_reserve", (0, 0), "lowmem_reserve has 5 values, one per zone"),
])
def test_a_zones_marks_are_set_whole_or_not_at_all(attribute: str, values: tuple[int, ...],
                                                   message: str) -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    zone = machine.zone("Normal")
    before = getattr(zone, attribute)
    with pytest.raises(ValueError, match=message):
        setattr(zone, attribute, values)
    assert getattr(zone, attribute) == before


@pytest.mark.parametrize(("where", "message"), [
    ("outside", "outside the zone"),
    ("misaligned", "misaligned"),
    ("tail", "bad tail"),
])
def test_check_lists_catches_a_misplaced_free_block(where: str, message: str) -> None:
    machine = PageMachine(MachineLayout.from_sizes({"DMA32": 64 << 20, "Normal": 64 << 20}),
                          nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    head = zone.free_list(MOVABLE, 10)[0]
    nxt, prv = machine.mem_map.next, machine.mem_map.prev
    if where == "outside":
        # Normal's first order-10 block relinked to a pfn of DMA32.
        other = machine.zone("DMA32").free_list(MOVABLE, 10)[0]
        list_head = prv[head]
        nxt[list_head], prv[other], nxt[other] = other, list_head, nxt[head]
        prv[nxt[head]] = other
    elif where == "misaligned":
        # The second order-10 block's state moved one frame up, and that frame listed in
        # its place: a free block that does not start on its order's boundary.
        block = zone.free_list(MOVABLE, 10)[1]
        before, after = prv[block], nxt[block]
        machine.mem_map.state[block], machine.mem_map.state[block + 1] = 0, FREE | 10
        nxt[before], prv[block + 1], nxt[block + 1], prv[after] = block + 1, before, after, \
            block + 1
    else:
        list_head = prv[head]
        prv[list_head] = head  # the list's last entry is not its head's prev
    with pytest.raises(AssertionError, match=message):
        zone.check_lists()


def test_check_lists_catches_a_free_list_that_cycles() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    first, second = zone.free_list(MOVABLE, 10)[:2]
    machine.mem_map.next[second] = first  # first -> second -> first -> ... never the head
    # The walk stops at the first pfn it meets twice: its prev link names the list's head.
    with pytest.raises(AssertionError, match=f"pfn {first:#x}: broken prev link"):
        zone.check_lists()


def test_a_corrupt_mem_map_is_named_when_a_block_is_looked_up() -> None:
    machine = _small_machine()
    pfn = machine.alloc_pages(2)
    machine.mem_map.state[pfn] = 0  # its block's first frame forgot it
    with pytest.raises(AssertionError, match=f"pfn {pfn + 1:#x} lies in no block"):
        machine.block_at(pfn + 1)


# -- BuddyAllocator ---------------------------------------------------------------------------

def _buddy() -> BuddyAllocator:
    """64 frames with frame 0 allocated: one free block of each order 0..5 (pfns 1, 2, 4...)."""
    buddy = BuddyAllocator(64 * 4096, max_order=6)
    assert buddy.alloc_pages(0) == 0
    assert buddy.nr_free == (1, 1, 1, 1, 1, 1, 0)
    buddy.check()
    return buddy


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"node": 1024}, InvalidArgumentError, r"node must be in 0\.\.1023, got 1024"),
    ({"zone": 2}, InvalidTypeError, "zone must be a str, not int"),
])
def test_bad_buddy_arguments_are_named(arguments: dict[str, Any], error: type[Exception],
                                       message: str) -> None:
    with pytest.raises(error, match=message):
        BuddyAllocator(64 * 4096, **arguments)


def test_an_order_bigger_than_memory_is_refused_and_nothing_changes() -> None:
    buddy = BuddyAllocator(64 * 4096)  # max_order 10, but only 64 frames
    with pytest.raises(InvalidArgumentError,
                       match="order 7 is 128 pages, more than the 64 pages of memory"):
        buddy.alloc_pages(7)
    assert buddy.nr_free_pages == 64
    buddy.check()


def _relink(buddy: BuddyAllocator, old: int, new: int) -> None:
    """Put frame ``new`` in ``old``'s place on its free list (state moved along)."""
    nxt, prv, state = buddy.mem_map.next, buddy.mem_map.prev, buddy.mem_map.state
    before, after = prv[old], nxt[old]
    if new < buddy.nr_pages:
        state[new], state[old] = state[old], 0
    nxt[before], prv[new], nxt[new], prv[after] = new, before, after, new


@pytest.mark.parametrize(("where", "message"), [
    ("prev", "free list 5: prev of pfn 0x20 is wrong"),
    ("outside", "free list 5: pfn 0x40 outside memory"),
    ("state", "free list 5: pfn 0x20 has state 0x44"),
    ("misaligned", "free list 5: pfn 0x21 is misaligned"),
    ("unmerged", "free buddies pfn 0x1 and 0x0 at order 0 not merged"),
    ("tail", "free list 5: tail link is wrong"),
    ("count", "nr_free\\[5\\] is 2 but its list holds 1"),
    ("mask", "non-empty mask bit 5 disagrees with list 5"),
    ("no block", "pfn 0x0 has state 0x0 but starts no block"),
    ("out of place", "block at pfn 0x0 of order 7 is out of place"),
    ("overlap", "block at pfn 0x0 overlaps another block"),
    ("reserved", "1 reserved frames, 0 expected"),
    ("padding", "the padding past the last frame was overwritten"),
])
def test_the_buddy_check_catches_each_corruption(where: str, message: str) -> None:
    buddy = _buddy()
    state, prv = buddy.mem_map.state, buddy.mem_map.prev
    if where == "prev":
        prv[32] = 32
    elif where == "outside":
        _relink(buddy, 32, 64)  # (frame 64 is the padding past the last frame)
    elif where == "state":
        state[32] = FREE | 4
    elif where == "misaligned":
        _relink(buddy, 32, 33)
    elif where == "unmerged":
        state[0] = FREE | 0  # the allocated frame 0 marked free, off every list
    elif where == "tail":
        prv[~5] = ~5  # (the order-o list's head is ~o)
    elif where == "count":
        buddy._counters[5] += 1
    elif where == "mask":
        buddy._counters[buddy._NONEMPTY] ^= 1 << 5
    elif where == "no block":
        state[0] = 0
    elif where == "out of place":
        state[0] = ALLOCATED | 7
    elif where == "overlap":
        state[0] = ALLOCATED | 1
    elif where == "reserved":
        state[0] = RESERVED
    else:
        buddy = BuddyAllocator(63 * 4096, max_order=6)  # padded with one frame to 64
        buddy.mem_map.state[63] = 0
    with pytest.raises(AssertionError, match=message):
        buddy.check()


# -- gfp flags, alloc flags, sizes --------------------------------------------------------------

ALLOC_CPUSET, ALLOC_KSWAPD, ALLOC_NO_WATERMARKS = 0x40, 0x800, 0x04  # mm/internal.h


@pytest.mark.parametrize(("gfp", "order", "expected"), [
    # gfp_to_alloc_flags (mm/page_alloc.c): WMARK_MIN (0), __GFP_HIGH and
    # __GFP_KSWAPD_RECLAIM copied, the cpuset honoured unless a non-reclaiming __GFP_HIGH.
    ("GFP_KERNEL", 0, ALLOC_CPUSET | ALLOC_KSWAPD),
    ("GFP_NOWAIT", 0, ALLOC_CPUSET | ALLOC_KSWAPD | ALLOC_NON_BLOCK),
    ("GFP_ATOMIC", 0, ALLOC_MIN_RESERVE | ALLOC_KSWAPD | ALLOC_NON_BLOCK),
    ("GFP_ATOMIC", 1, ALLOC_MIN_RESERVE | ALLOC_KSWAPD | ALLOC_NON_BLOCK | ALLOC_HIGHATOMIC),
    # __GFP_NOMEMALLOC: not non-blocking, so no highatomic either.
    ("GFP_ATOMIC|__GFP_NOMEMALLOC", 1, ALLOC_MIN_RESERVE | ALLOC_KSWAPD),
])
def test_the_slow_paths_alloc_flags_follow_the_gfp_flags(gfp: str, order: int,
                                                          expected: int) -> None:
    assert gfp_to_alloc_flags(parse_gfp_flags(gfp), order) == expected


def test_gfp_memalloc_ignores_watermarks_unless_nomemalloc_forbids_it() -> None:
    assert gfp_pfmemalloc_flags(parse_gfp_flags("GFP_KERNEL|__GFP_MEMALLOC")) == \
        ALLOC_NO_WATERMARKS
    assert gfp_pfmemalloc_flags(parse_gfp_flags("GFP_KERNEL|__GFP_MEMALLOC|__GFP_NOMEMALLOC")) \
        == 0
    assert gfp_pfmemalloc_flags(parse_gfp_flags("GFP_KERNEL")) == 0


@pytest.mark.parametrize(("text", "error", "message"), [
    (0x400, InvalidTypeError, "gfp flags must be given as text, not int"),
    ("  ", InvalidArgumentError, "empty gfp flags text"),
    ("GFP_KERNEL|__GFP_BOGUS", UnknownGfpFlagError,
     "unknown gfp flag '__GFP_BOGUS' in 'GFP_KERNEL|__GFP_BOGUS'"),
    ("0xzz", UnknownGfpFlagError, "unknown gfp flag '0xzz'"),
])
def test_bad_gfp_texts_are_named(text: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        parse_gfp_flags(text)


def test_gfp_texts_read_and_print_as_ftrace_does() -> None:
    kernel = parse_gfp_flags("GFP_KERNEL")
    assert parse_gfp_flags("none") == parse_gfp_flags("0") == 0
    # A bit ftrace has no name for is printed, and read back, in hexadecimal.
    assert parse_gfp_flags("GFP_KERNEL|0x10000000000") == kernel | 1 << 40
    assert gfp_flags_text(kernel | 1 << 40) == "GFP_KERNEL|0x10000000000"
    assert gfp_flags_text(1 << 40) == "0x10000000000"
    assert gfp_flags_text(0) == "none"
    assert gfp_flags_text(parse_gfp_flags("GFP_KERNEL|__GFP_ZERO")) == "GFP_KERNEL|__GFP_ZERO"
    with pytest.raises(InvalidTypeError, match="gfp flags must be an int, not bool"):
        gfp_flags_text(True)
    with pytest.raises(InvalidArgumentError, match="gfp flags must be >= 0, not -1"):
        gfp_flags_text(-1)


@pytest.mark.parametrize(("token", "message"), [
    ("1" * 5000, "(too many digits)"),
    ("0.5", "is not a positive whole number of bytes"),
    ("0K", "is not a positive whole number of bytes"),
])
def test_bad_sizes_are_named(token: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        parse_size(token)


def test_a_fractional_size_with_a_unit_is_exact() -> None:
    assert parse_size("1.5K") == 1536
    assert parse_size("0.5M") == 512 << 10


def test_only_the_pcp_types_merge_across_pageblocks() -> None:
    assert [migratetype_is_mergeable(mt) for mt in range(5)] == [True, True, True, False, False]


def test_a_zones_buffer_fields_are_named_after_their_attributes() -> None:
    # Read on the class, a field is its descriptor (what field_names lists).
    assert isinstance(Zone.free_pages, Counter) and Zone.free_pages.name == "free_pages"
    assert isinstance(Zone.below_high, Flag) and Zone.below_high.name == "below_high"
    assert {"free_pages", "below_high"} <= set(field_names(Zone))


def test_without_thp_min_free_kbytes_is_the_square_root_rule() -> None:
    machine = PageMachine(nr_cpus=2, thp=False)
    lowmem_kbytes = sum(zone.managed for zone in machine.zones) * 4
    # calculate_min_free_kbytes: int_sqrt(lowmem_kbytes * 16), within [128, 262144]; without
    # THP khugepaged does not raise it.
    assert machine.min_free_kbytes == min(max(isqrt(lowmem_kbytes * 16), 128), 262144)
    assert PageMachine(nr_cpus=2).min_free_kbytes > machine.min_free_kbytes


def test_a_percpu_pagelist_high_fraction_fixes_each_pcps_high() -> None:
    machine = PageMachine(nr_cpus=2, percpu_pagelist_high_fraction=8)
    zone = machine.zone("Normal")
    pcp = machine.pcp("Normal", 0)
    # zone_highsize with the sysctl set: managed / fraction, split over the node's CPUs; no
    # auto-tuning, so high_min and high_max are the same.
    assert pcp.high_min == pcp.high_max == zone.managed // 8 // 2


def test_whole_pageblock_atomic_blocks_are_reserved_and_given_back_whole() -> None:
    machine = PageMachine(nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine, zone)
    # reserve_highatomic_pageblock, order >= pageblock_order: the pageblocks of the block
    # itself change type and the reserve grows by the block's size.
    pfn = machine.alloc_pages(9, "GFP_ATOMIC")
    assert machine.pageblock_mt[pfn // PAGEBLOCK_PAGES] == HIGHATOMIC
    assert zone.nr_reserved_highatomic == PAGEBLOCK_PAGES and zone.nr_free_highatomic == 0
    big = machine.alloc_pages(10, "GFP_ATOMIC")
    assert [machine.pageblock_mt[big // PAGEBLOCK_PAGES + i] for i in (0, 1)] == \
        [HIGHATOMIC, HIGHATOMIC]
    assert zone.nr_reserved_highatomic == 3 * PAGEBLOCK_PAGES
    machine.free_pages(pfn, 9)
    machine.free_pages(big, 10)
    assert zone.nr_free_highatomic == 3 * PAGEBLOCK_PAGES
    # The reserve not counted as free, the zone is under its min mark: GFP_KERNEL's direct
    # reclaim finds nothing and
    # unreserve_highatomic_pageblock gives back the first free reserved block it meets
    # (lowest order first: the order-9 one), typed as the request (unmovable).
    machine.alloc_pages(0, "GFP_KERNEL")
    assert machine.pageblock_mt[pfn // PAGEBLOCK_PAGES] == UNMOVABLE
    assert zone.nr_reserved_highatomic == 2 * PAGEBLOCK_PAGES
    assert machine.pageblock_mt[big // PAGEBLOCK_PAGES] == HIGHATOMIC
    machine.check()


def test_a_freed_highatomic_pageblock_does_not_merge_with_its_free_buddy() -> None:
    machine = PageMachine(nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine, zone)
    pfn = machine.alloc_pages(9, "GFP_ATOMIC")  # a whole pageblock, now highatomic
    buddy = pfn ^ PAGEBLOCK_PAGES
    assert machine.block_at(buddy) == (buddy, 9, "free")
    assert machine.pageblock_mt[buddy // PAGEBLOCK_PAGES] != HIGHATOMIC
    machine.free_pages(pfn, 9)
    # __free_one_page: above pageblock_order, a highatomic (or isolated) block merges only
    # with a buddy of its own type, so both stay order-9 blocks.
    assert machine.block_at(pfn) == (pfn, 9, "free")
    assert machine.block_at(buddy) == (buddy, 9, "free")
    assert zone.nr_free_highatomic == PAGEBLOCK_PAGES
    machine.check()


def test_an_unknown_zone_name_is_refused() -> None:
    with pytest.raises(UnknownZoneError, match="unknown zone 'normal'"):
        BuddyAllocator(64 * 4096, zone="normal")  # (Linux's name is Normal)


def test_a_buddy_block_lookup_names_a_corrupt_mem_map() -> None:
    buddy = _buddy()
    buddy.mem_map.state[4] = 0  # the order-2 block at pfn 4 forgot its first frame
    with pytest.raises(AssertionError, match="pfn 0x5 lies in no block"):
        buddy.block_at(5)


@pytest.mark.parametrize(("where", "message"), [
    ("misaligned", "list 4: pfn 0x[0-9a-f]+ misaligned"),
    ("tail", "list 1: bad tail link"),
])
def test_the_pcp_check_catches_a_misplaced_block(where: str, message: str) -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    pcp = machine.pcp("Normal", 0)
    nxt, prv, state = machine.mem_map.next, machine.mem_map.prev, machine.mem_map.state
    if where == "misaligned":
        # order_to_pindex: order 1's movable list is pindex 1 * MIGRATE_PCPTYPES + 1 = 4.
        assert machine.warm_pcp(0, 2, order=1) == 2
        block = pcp.list(4)[0]
        before, after = prv[block], nxt[block]
        state[block], state[block + 1] = 0, state[block]
        nxt[before], prv[block + 1], nxt[block + 1], prv[after] = block + 1, before, after, \
            block + 1
    else:
        assert machine.warm_pcp(0, 3) == 3
        prv[pcp._heads[MOVABLE]] = pcp.list(MOVABLE)[0]  # the tail link names the first
    with pytest.raises(AssertionError, match=message):
        pcp.check()
