"""Zone rules that the mutation run of kmem.page.zone (tools/mutants.py page/zone) found
untested: when a fallback boosts the watermarks and how far (boost_watermark), how big the
highatomic reserve may grow (reserve_highatomic_pageblock's ALIGN(managed / 100)), and how
many times the zone lock is taken.

The expected values are Linux's rules (mm/page_alloc.c), worked out by hand, not read back
from kmem. Zone methods named after Linux's are called directly where the machine would need
a long set-up to reach them; each test runs on the compiled core and on KMEM_PURE=1 alike.
"""

from __future__ import annotations

from array import array

import pytest

from kmem.errors import OutOfMemoryError
from kmem.page.layout import MachineLayout, ZoneLayout
from kmem.page.machine import PageMachine
from kmem.page.watermarks import ALLOC_HIGHATOMIC, ALLOC_MIN_RESERVE, ALLOC_NON_BLOCK, ALLOC_OOM
from kmem.page.zone import ZONE_NR_VALUES, Zone

PAGEBLOCK_PAGES = 512  # pageblock_order 9 with 4 KiB pages
UNMOVABLE, MOVABLE, HIGHATOMIC, ISOLATE = 0, 1, 3, 4


def _bare_zone(managed: int, high: int, boost_factor: int = 15000) -> Zone:
    """A Normal zone of ``managed`` pages with no free lists, its high watermark ``high``."""
    pages = managed + PAGEBLOCK_PAGES
    values = memoryview(array("q", bytes(8 * ZONE_NR_VALUES)))
    zone = Zone(2, ZoneLayout("Normal", 0, managed, managed, managed), bytearray(pages),
                array("q", bytes(8 * pages)), array("q", bytes(8 * pages)),
                bytearray(pages // PAGEBLOCK_PAGES + 1), bytearray(pages), 0, values)
    zone.watermark = (high // 3, high * 2 // 3, high, high)
    zone.watermark_boost_factor = boost_factor
    return zone


def test_a_zone_of_exactly_four_pageblocks_is_boosted_by_a_pageblock() -> None:
    # boost_watermark: no boost only when 4 pageblocks are more than the managed pages.
    zone = _bare_zone(4 * PAGEBLOCK_PAGES, 1000)
    assert zone.boost_watermark()
    assert zone.watermark_boost == PAGEBLOCK_PAGES
    smaller = _bare_zone(4 * PAGEBLOCK_PAGES - 1, 1000)
    assert not smaller.boost_watermark()
    assert smaller.watermark_boost == 0
    between = _bare_zone(4 * PAGEBLOCK_PAGES + 300, 1000)
    assert between.boost_watermark()
    assert between.watermark_boost == PAGEBLOCK_PAGES


def test_a_boost_factor_of_0_turns_boosting_off_in_any_zone() -> None:
    zone = _bare_zone(1 << 18, 1000, boost_factor=0)
    assert not zone.boost_watermark()
    assert zone.watermark_boost == 0


def test_the_boost_stops_at_the_factor_times_the_high_mark() -> None:
    # max_boost = mult_frac(high, watermark_boost_factor, 10000): 1000 * 15000 / 10000 = 1500;
    # each fallback adds a pageblock until the boost reaches it.
    zone = _bare_zone(1 << 18, 1000)
    boosts = []
    for _ in range(4):
        assert zone.boost_watermark()
        boosts.append(zone.watermark_boost)
    assert boosts == [512, 1024, 1500, 1500]
    assert zone.wmark(2) == 1000 + 1500
    # 1001 * 15000 / 10000 = 1501.5, rounded down.
    odd = _bare_zone(1 << 18, 1001)
    for _ in range(3):
        odd.boost_watermark()
    assert odd.watermark_boost == 1501
    # A factor of 10000 caps the boost at high itself.
    same = _bare_zone(1 << 18, 1000, boost_factor=10000)
    for _ in range(3):
        same.boost_watermark()
    assert same.watermark_boost == 1000


def _normal_machine() -> tuple[PageMachine, Zone]:
    """A machine of 64 MiB of Normal from pfn 0, one CPU, no pcp lists, and its zone."""
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1, pcp=False)
    return machine, machine.zone("Normal")


def _fill_to_low_mark(machine: PageMachine) -> None:
    zone = machine.zone("Normal")
    while zone.free_pages > zone.watermark[1] + 600:
        machine.alloc_pages(9, "GFP_HIGHUSER_MOVABLE")
    while zone.free_pages >= zone.watermark[1]:
        machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")


def test_the_highatomic_limit_is_1_percent_of_the_zone_rounded_down_then_to_a_pageblock() -> None:
    # 51250 managed pages: 51250 / 100 = 512 (integer division), aligned up to a pageblock:
    # 512. One pageblock is reserved; the atomic allocations past it take no second one.
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 51250 << 12}), nr_cpus=1,
                          pcp=False, watermark_scale_factor=3000)
    zone = machine.zone("Normal")
    assert zone.managed == 51250
    _fill_to_low_mark(machine)
    first = machine.alloc_pages(2, "GFP_ATOMIC")
    assert machine.pageblock_mt[first // PAGEBLOCK_PAGES] == HIGHATOMIC
    assert zone.nr_reserved_highatomic == PAGEBLOCK_PAGES
    for _ in range(127):  # the reserve's other 508 pages
        machine.alloc_pages(2, "GFP_ATOMIC")
    beyond = machine.alloc_pages(2, "GFP_ATOMIC")
    assert machine.pageblock_mt[beyond // PAGEBLOCK_PAGES] != HIGHATOMIC
    assert zone.nr_reserved_highatomic == PAGEBLOCK_PAGES
    machine.check()


def test_each_buddy_allocation_and_free_takes_the_zone_lock_once() -> None:
    # Without pcp lists every allocation is rmqueue_buddy (spin_lock_irqsave(&zone->lock)
    # once) and every free is free_one_page (once, however many pageblocks it splits into).
    machine, zone = _normal_machine()
    before = zone.lock_count
    pfns = [machine.alloc_pages(0) for _ in range(3)]
    assert zone.lock_count == before + 3
    big = machine.alloc_pages(10, "GFP_HIGHUSER_MOVABLE")
    assert zone.lock_count == before + 4
    for pfn in pfns:
        machine.free_pages(pfn, 0)
    assert zone.lock_count == before + 7
    machine.free_pages(big, 10)  # two pageblocks, one lock
    assert zone.lock_count == before + 8
    machine.check()


def test_each_reserve_a_request_may_use_lowers_the_min_mark_by_its_fraction() -> None:
    # __zone_watermark_ok, order 0, an odd mark of 101: __GFP_HIGH (ALLOC_MIN_RESERVE) keeps
    # min - min / 2 = 51; non-blocking on top of it 51 - 51 / 4 = 39; an OOM victim
    # 101 - 101 / 2 = 51, or 51 - 51 / 2 = 26 with __GFP_HIGH too. The check passes only when
    # the free pages are above that floor.
    zone = _bare_zone(1 << 18, 1000)
    for flags, floor in ((0, 101), (ALLOC_MIN_RESERVE, 51),
                         (ALLOC_MIN_RESERVE | ALLOC_NON_BLOCK, 39), (ALLOC_OOM, 51),
                         (ALLOC_MIN_RESERVE | ALLOC_OOM, 26),
                         (ALLOC_MIN_RESERVE | ALLOC_NON_BLOCK | ALLOC_OOM, 20)):
        assert not zone.zone_watermark_ok(0, 101, zone.index, flags, floor), (flags, floor)
        assert zone.zone_watermark_ok(0, 101, zone.index, flags, floor + 1), (flags, floor)


def test_a_single_highatomic_pageblock_is_kept_unless_forced() -> None:
    # unreserve_highatomic_pageblock: a zone whose reserve is one pageblock or less keeps it
    # when the caller does not force it, and says it gave nothing back.
    zone = _bare_zone(1 << 18, 1000)
    zone.nr_reserved_highatomic = PAGEBLOCK_PAGES
    assert not zone.unreserve_highatomic_pageblock(MOVABLE, False)
    assert zone.nr_reserved_highatomic == PAGEBLOCK_PAGES


def test_a_forced_unreserve_gives_a_whole_two_pageblock_block_back() -> None:
    # A free order-10 highatomic block is two pageblocks of the reserve: unreserving it
    # takes both (min(max(pageblock_nr_pages, 1 << order), nr_reserved_highatomic)), retypes
    # both and answers that it gave some back.
    machine = PageMachine(nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine)
    big = machine.alloc_pages(10, "GFP_ATOMIC")
    assert zone.nr_reserved_highatomic == 2 * PAGEBLOCK_PAGES
    machine.free_pages(big, 10)
    assert zone.nr_free_highatomic == 2 * PAGEBLOCK_PAGES
    assert zone.unreserve_highatomic_pageblock(MOVABLE, True)
    assert zone.nr_reserved_highatomic == 0
    assert zone.nr_free_highatomic == 0
    blocks = [machine.pageblock_mt[big // PAGEBLOCK_PAGES + i] for i in (0, 1)]
    assert blocks == [MOVABLE, MOVABLE]
    assert not zone.unreserve_highatomic_pageblock(MOVABLE, True)  # nothing left
    machine.check()


def test_a_steal_traces_mm_page_alloc_extfrag_with_the_block_it_took_from() -> None:
    # Every pageblock movable, its first 64 pages free (one order-6 block), the rest in use:
    # an unmovable order-0 request can claim none, so __rmqueue_steal splits the smallest
    # fitting fallback block. trace_mm_page_alloc_extfrag(page, order, current_order,
    # start_migratetype, fallback_mt): alloc order 0, fallback order 6, unmovable from
    # movable, fragmenting (6 < pageblock_order), no change of ownership.
    events: list[tuple[str, int, int, int, int, tuple[int, ...]]] = []
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1, pcp=False,
                          tracer=lambda *event: events.append(event))
    held = []
    while True:
        try:
            held.append(machine.alloc_pages(6, "GFP_HIGHUSER_MOVABLE|__GFP_MEMALLOC"))
        except OutOfMemoryError:
            break
    for pfn in held:
        if pfn % PAGEBLOCK_PAGES == 0:
            machine.free_pages(pfn, 6)
    events.clear()
    pfn = machine.alloc_pages(0, "GFP_KERNEL")
    extfrag = [event for event in events if event[0] == "mm_page_alloc_extfrag"]
    assert extfrag == [("mm_page_alloc_extfrag", 0, pfn, 0, UNMOVABLE, (6, MOVABLE, 1, 0))]
    assert pfn % PAGEBLOCK_PAGES == 0
    assert machine.pageblock_mt[pfn // PAGEBLOCK_PAGES] == MOVABLE
    machine.check()


def test_only_non_blocking_or_oom_requests_fall_back_to_the_highatomic_reserve() -> None:
    # rmqueue_buddy: when __rmqueue finds nothing, only ALLOC_OOM or ALLOC_NON_BLOCK requests
    # take from the highatomic lists. A blocking __GFP_MEMALLOC request ignores the
    # watermarks (ALLOC_NO_WATERMARKS) but has neither flag: it fails.
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 200 << 20}), nr_cpus=1,
                          pcp=False, min_free_kbytes=128)
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine)
    reserved = machine.alloc_pages(2, "GFP_ATOMIC") // PAGEBLOCK_PAGES
    assert machine.pageblock_mt[reserved] == HIGHATOMIC
    while zone.free_pages > zone.nr_free_highatomic:
        machine.alloc_pages(0, "GFP_ATOMIC")
    free = zone.free_pages
    assert free > 0
    with pytest.raises(OutOfMemoryError):
        machine.alloc_pages(0, "GFP_KERNEL|__GFP_MEMALLOC")
    assert zone.free_pages == zone.nr_free_highatomic == free
    pfn = machine.alloc_pages(0, "GFP_ATOMIC|__GFP_MEMALLOC")
    assert pfn // PAGEBLOCK_PAGES == reserved
    assert zone.free_pages == free - 1
    machine.check()


@pytest.mark.parametrize(("corrupt", "message"), [
    ("nr_free_highatomic", "zone Normal: nr_free_highatomic is 1, the lists hold 0"),
    ("free_pages_blocks", "zone Normal: free_pages_blocks is 16385, the lists hold 16384"),
    ("free_pages_mt", r"zone Normal: free_pages_mt is \[1, 16384, 0, 0, 0\], the lists hold"
                      r" \[0, 16384, 0, 0, 0\]"),
])
def test_check_lists_names_each_wrong_counter(corrupt: str, message: str) -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    zone = machine.zone("Normal")
    if corrupt == "nr_free_highatomic":
        zone.nr_free_highatomic += 1
    elif corrupt == "free_pages_blocks":
        zone.free_pages_blocks += 1
    else:
        zone.free_pages_mt[UNMOVABLE] += 1
    with pytest.raises(AssertionError, match=message):
        zone.check_lists()


def test_a_free_page_at_a_zones_first_pfn_is_sound_until_its_pageblock_is_retyped() -> None:
    # The first two pages of Normal (pfn 0x4000, after 64 MiB of DMA32) allocated, the first
    # freed: an order-0 free block at the zone's first pfn, which is a pageblock's first.
    machine = PageMachine(MachineLayout.from_sizes({"DMA32": 64 << 20, "Normal": 64 << 20}),
                          nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    first = machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")
    machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")
    assert first == zone.start_pfn == 0x4000
    machine.free_pages(first, 0)
    assert zone.free_list(MOVABLE, 0) == [first]
    machine.check()
    machine.pageblock_mt[first // PAGEBLOCK_PAGES] = UNMOVABLE
    with pytest.raises(AssertionError, match=r"free_list\[1\]\[0\] pfn 0x4000: its pageblock"
                                             " is of another type"):
        zone.check_lists()


def test_a_pcp_refill_takes_the_zone_lock_once_for_its_whole_batch() -> None:
    # rmqueue_bulk: one spin_lock_irqsave(&zone->lock) for the batch; the allocations the
    # refilled list then serves take no zone lock.
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    zone = machine.zone("Normal")
    before = zone.lock_count
    machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")
    assert zone.lock_count == before + 1
    listed = machine.pcp("Normal", 0).count
    assert listed > 1  # the refill brought more than the one page it handed out
    for _ in range(listed):
        machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")
    assert zone.lock_count == before + 1
    machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")  # the list is empty: another refill
    assert zone.lock_count == before + 2


def test_isolating_a_free_pageblock_sized_block_takes_it_out_of_the_free_block_count() -> None:
    # move_to_free_list: NR_FREE_PAGES_BLOCKS counts blocks of pageblock order or more that
    # are not isolated, so moving one to MIGRATE_ISOLATE lowers it and moving it back
    # raises it, as NR_FREE_PAGES.
    machine, zone = _normal_machine()
    total = zone.free_pages_blocks
    assert total == zone.free_pages == 16384
    pfn = zone.free_list(MOVABLE, 10)[0]
    zone.move_to_free_list(pfn, 10, MOVABLE, ISOLATE)
    zone.change_pageblock_range(pfn, 10, ISOLATE)
    assert zone.free_pages_blocks == zone.free_pages == total - 1024
    zone.check_lists()
    zone.move_to_free_list(pfn, 10, ISOLATE, MOVABLE)
    zone.change_pageblock_range(pfn, 10, MOVABLE)
    assert zone.free_pages_blocks == zone.free_pages == total
    machine.check()


@pytest.mark.parametrize("mt", [MOVABLE, HIGHATOMIC])
def test_check_lists_names_free_pageblock_buddies_of_one_type_left_unmerged(mt: int) -> None:
    # __free_one_page merges two free pageblock-order buddies of the same type, highatomic
    # ones too (only a pair of different types, one of them not mergeable, stays apart).
    _machine, zone = _normal_machine()
    pfn = zone.free_list(MOVABLE, 10)[0]
    zone.del_page_from_free_list(pfn, 10, MOVABLE)
    zone.change_pageblock_range(pfn, 10, mt)
    zone.free_boot_block(pfn, 9)
    zone.free_boot_block(pfn + PAGEBLOCK_PAGES, 9)
    with pytest.raises(AssertionError, match=rf"free_list\[{mt}\]\[9\] pfn {pfn:#x}: its free"
                                             rf" buddy {pfn + PAGEBLOCK_PAGES:#x} was not"):
        zone.check_lists()


def test_a_pageblocks_free_pages_are_counted_past_its_reserved_frames() -> None:
    # prep_move_freepages_block on a zone whose first frame is reserved (present, not
    # managed): the pageblock of any of its pfns starts at 0, the reserved frame counts as
    # neither free nor movable, the 511 boot-freed frames after it (blocks of orders 0..8)
    # as free; a pageblock that runs past the zone's end (its last frame, 4095, is not in a
    # zone of 4095 frames) is not worked on.
    machine = PageMachine(MachineLayout((ZoneLayout("Normal", 0, 4095, 4095, 4094),)),
                          nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    assert machine.block_at(0)[2] == "reserved"
    for pfn in (0, 1, 2, 511):
        assert zone.prep_move_freepages_block(pfn) == (0, 511, 0)
    assert zone.prep_move_freepages_block(3584) is None
    assert zone.prep_move_freepages_block(4094) is None
    assert zone.prep_move_freepages_block(3583) == (3072, 512, 0)


def test_pages_waiting_on_a_pcp_list_are_not_counted_as_movable_pages_in_use() -> None:
    # prep_move_freepages_block counts as movable the pages in use that are on the LRU (the
    # movable allocations); pages freed back to a per-CPU list are neither free nor in use.
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    zone = machine.zone("Normal")
    first = machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")
    listed = machine.pcp("Normal", 0).count
    held = [machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE") for _ in range(listed)]
    assert all(pfn // PAGEBLOCK_PAGES == first // PAGEBLOCK_PAGES for pfn in held)
    start, free, movable = zone.prep_move_freepages_block(first) or (0, 0, 0)
    assert movable == listed + 1 and free == PAGEBLOCK_PAGES - movable
    for pfn in held:
        machine.free_pages(pfn, 0)
    assert machine.pcp("Normal", 0).count == listed
    assert zone.prep_move_freepages_block(first) == (start, free, 1)


def test_a_freed_movable_pageblock_does_not_merge_with_a_free_highatomic_buddy() -> None:
    # __free_one_page: buddies of pageblock order or more and of different types merge only
    # when both types are mergeable (the pcp types); MIGRATE_HIGHATOMIC is not.
    machine, zone = _normal_machine()
    pfn = zone.free_list(MOVABLE, 10)[0]
    buddy = pfn + PAGEBLOCK_PAGES
    zone.del_page_from_free_list(pfn, 10, MOVABLE)
    zone.change_pageblock_range(buddy, 9, HIGHATOMIC)
    zone.free_boot_block(buddy, 9)
    zone.free_one_page(pfn, 9, MOVABLE)
    assert zone.free_list(MOVABLE, 9) == [pfn]
    assert zone.free_list(HIGHATOMIC, 9) == [buddy]
    assert [machine.pageblock_mt[b // PAGEBLOCK_PAGES] for b in (pfn, buddy)] == \
        [MOVABLE, HIGHATOMIC]
    assert zone.nr_free_highatomic == PAGEBLOCK_PAGES
    zone.check_lists()


def test_check_lists_names_a_free_block_that_starts_before_its_zone() -> None:
    # DMA32 of 62 MiB (pfns up to 0x3dff), Normal from 0x3e00: an order-10 block at 0x3c00,
    # listed on Normal's lists, ends inside Normal but starts in DMA32.
    machine = PageMachine(MachineLayout.from_sizes({"DMA32": 62 << 20, "Normal": 64 << 20}),
                          nr_cpus=1, pcp=False)
    dma32, normal = machine.zone("DMA32"), machine.zone("Normal")
    assert normal.start_pfn == 0x3E00
    dma32.del_page_from_free_list(0x3C00, 9, MOVABLE)
    normal.del_page_from_free_list(0x3E00, 9, MOVABLE)
    normal.free_boot_block(0x3C00, 10)
    with pytest.raises(AssertionError, match=r"free_list\[1\]\[10\] pfn 0x3c00: outside the"
                                             " zone"):
        normal.check_lists()


def _highatomic_at_pfn_0() -> tuple[PageMachine, Zone]:
    """64 MiB of Normal from pfn 0 whose only free memory is a highatomic order-9 block at
    pfn 0 (pageblock 0 reserved); the other free blocks taken off the lists."""
    machine, zone = _normal_machine()
    for pfn in zone.free_list(MOVABLE, 10):
        zone.del_page_from_free_list(pfn, 10, MOVABLE)
    zone.change_pageblock_range(0, 9, HIGHATOMIC)
    zone.free_boot_block(0, 9)
    zone.nr_reserved_highatomic = PAGEBLOCK_PAGES
    assert zone.free_list(HIGHATOMIC, 9) == [0] and zone.free_pages == PAGEBLOCK_PAGES
    return machine, zone


def test_a_highatomic_block_at_pfn_0_is_seen_taken_and_given_back() -> None:
    # The rules hold for pfn 0 as for any other pfn (kmem's zones may start there).
    machine, zone = _highatomic_at_pfn_0()
    # __zone_watermark_ok: an ALLOC_HIGHATOMIC request may count the highatomic block.
    assert zone.zone_watermark_ok(9, 0, zone.index, ALLOC_HIGHATOMIC)
    # unreserve_highatomic_pageblock finds it and gives it back.
    assert zone.unreserve_highatomic_pageblock(MOVABLE, True)
    assert zone.nr_reserved_highatomic == 0 and machine.pageblock_mt[0] == MOVABLE
    machine, zone = _highatomic_at_pfn_0()
    # rmqueue_buddy, ALLOC_HIGHATOMIC: the highatomic block comes first, and is the answer.
    assert zone.rmqueue_buddy(2, UNMOVABLE, ALLOC_HIGHATOMIC) == 0
    assert zone.free_pages == PAGEBLOCK_PAGES - 4


def test_a_non_blocking_request_served_at_pfn_0_takes_nothing_more() -> None:
    # rmqueue_buddy: the highatomic last resort runs only when __rmqueue found nothing.
    _machine, zone = _normal_machine()
    free = zone.free_pages
    assert zone.rmqueue_buddy(0, MOVABLE, ALLOC_NON_BLOCK) == 0
    assert zone.free_pages == free - 1


def test_two_isolated_pageblocks_merge_and_stay_out_of_the_free_block_count() -> None:
    # __free_one_page merges buddies of one type, MIGRATE_ISOLATE too; isolated pages count
    # in neither NR_FREE_PAGES nor NR_FREE_PAGES_BLOCKS, before the merge or after it.
    _machine, zone = _normal_machine()
    total = zone.free_pages_blocks
    pfn = zone.free_list(MOVABLE, 10)[0]
    zone.del_page_from_free_list(pfn, 10, MOVABLE)
    zone.change_pageblock_range(pfn, 10, ISOLATE)
    zone.free_boot_block(pfn + PAGEBLOCK_PAGES, 9)
    zone.free_one_page(pfn, 9, ISOLATE)
    assert zone.free_list(ISOLATE, 10) == [pfn] and zone.free_list(ISOLATE, 9) == []
    assert zone.free_pages_blocks == zone.free_pages == total - 1024
    zone.check_lists()
