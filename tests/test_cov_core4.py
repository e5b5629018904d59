"""Lines of the core layers (kmem.page, kmem.slab, kmem.trace) that no other test reached
(issue #18's coverage item): each test asserts what a user relies on there, as Linux's rules
give it, not merely that the line runs."""

from __future__ import annotations

import io
from array import array
from typing import Any

import pytest

from kmem.errors import InvalidFreeError, OutOfMemoryError
from kmem.page import mem_map, vmstat
from kmem.page.buddy import BuddyAllocator
from kmem.page.layout import MachineLayout, ZoneLayout
from kmem.page.machine import PageMachine
from kmem.page.pcp import PerCpuPages
from kmem.page.watermarks import ALLOC_HIGHATOMIC, ALLOC_MIN_RESERVE
from kmem.page.zone import Zone

# Linux's values (include/linux/mmzone.h, pageblock-flags.h), not kmem's constants.
UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC, ISOLATE = 0, 1, 2, 3, 4
PAGEBLOCK_PAGES = 512  # pageblock_order 9 with 4 KiB pages


def _fill_to_low_mark(machine: PageMachine, zone: Zone) -> None:
    """Allocate movable memory until the zone is just under its low watermark, so the next
    allocations take the slow path (min watermark, the reserves their flags allow)."""
    while zone.free_pages > zone.watermark[1] + 600:
        machine.alloc_pages(9, "GFP_HIGHUSER_MOVABLE")
    while zone.free_pages >= zone.watermark[1]:
        machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")


# -- kmem.page ------------------------------------------------------------------------------

class _Index:
    """Anything with __index__ (a numpy integer) is an int argument."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def test_a_buddy_order_given_as_an_index_type_is_taken() -> None:
    buddy = BuddyAllocator(16 << 20)
    pfn = buddy.alloc_pages(_Index(2))  # type: ignore[arg-type]
    block = buddy.block_at(pfn)
    assert (block.pfn, block.order, block.state) == (pfn, 2, "allocated")
    buddy.free_pages(pfn, 2)
    buddy.check()


def test_freeing_a_frame_inside_an_allocated_block_is_refused_and_changes_nothing() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    pfn = machine.alloc_pages(3)
    before = (bytes(machine.mem_map.state), machine.buddyinfo(), machine.frees)
    with pytest.raises(InvalidFreeError, match=(
            rf"pfn {pfn + 1:#x} is not the start of an allocated block \(it lies inside the"
            rf" order-3 block allocated at pfn {pfn:#x}\)")):
        machine.free_pages(pfn + 1, 0)
    assert (bytes(machine.mem_map.state), machine.buddyinfo(), machine.frees) == before
    machine.free_pages(pfn, 3)
    machine.check()


def test_check_catches_a_frame_in_use_past_the_last_zone() -> None:
    # An empty Movable zone placed above Normal: the frames between are the machine's but no
    # zone's, reserved for good.
    machine = PageMachine(MachineLayout((ZoneLayout("Normal", 0, 4096, 4096, 4096),
                                         ZoneLayout("Movable", 8192, 0, 0, 0))), nr_cpus=1)
    assert machine.nr_pages == 8192
    machine.check()
    assert machine.block_at(8191) == (8191, 0, "reserved")
    machine.mem_map.state[8191] = machine.mem_map.state[machine.alloc_pages(0)]
    with pytest.raises(AssertionError, match="a frame past the last zone is in use"):
        machine.check()


def _isolate(machine: PageMachine, zone: Zone, block: int, mt: int) -> int:
    """What set_migratetype_isolate (or a highatomic reserve) does to a pageblock: its free
    blocks move to mt's lists and the pageblock takes the type. Returns the pages moved."""
    moved = zone.move_freepages(block * PAGEBLOCK_PAGES, machine.pageblock_mt[block], mt)
    machine.pageblock_mt[block] = mt
    return moved


def test_a_page_freed_into_an_isolated_pageblock_skips_the_pcp_and_is_not_free() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    zone = machine.zone("Normal")
    pcp = machine.pcp("Normal", 0)
    pfn = machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")
    block = pfn // PAGEBLOCK_PAGES
    first = block * PAGEBLOCK_PAGES
    # Its buddy pageblock held, so that the pageblock freed whole below has nothing to merge
    # with when it is given back to the movable lists.
    assert machine.alloc_pages(9, "GFP_HIGHUSER_MOVABLE") == first ^ PAGEBLOCK_PAGES
    machine.drain_all_pages()  # the pcp's other pages back to the buddy lists
    free_before = zone.free_pages
    moved = _isolate(machine, zone, block, ISOLATE)
    assert moved == PAGEBLOCK_PAGES - 1  # every page of the pageblock but the one held
    # account_freepages: isolated pages are not free pages.
    assert zone.free_pages == free_before - moved
    assert zone.free_pages_mt[ISOLATE] == moved
    machine.check()
    # free_frozen_pages: an isolated pageblock's page goes straight to the buddy (never the
    # pcp), merging with the isolated rest into one whole free pageblock.
    machine.free_pages(pfn, 0)
    assert pcp.count == 0
    assert zone.free_pages == free_before - moved
    assert zone.free_pages_mt[ISOLATE] == PAGEBLOCK_PAGES
    assert zone.free_list(ISOLATE, 9) == [first]
    machine.check()
    # undo_isolate_page_range: the whole free pageblock goes back to the movable lists and
    # counts as free again (the free pages in pageblock-sized blocks too).
    blocks_before = zone.free_pages_blocks
    zone.move_to_free_list(first, 9, ISOLATE, MOVABLE)
    machine.pageblock_mt[block] = MOVABLE
    assert zone.free_pages == free_before + 1
    assert zone.free_pages_blocks == blocks_before + PAGEBLOCK_PAGES
    machine.check()


def test_a_page_freed_into_a_highatomic_pageblock_waits_on_the_movable_pcp_list() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    zone = machine.zone("Normal")
    pcp = machine.pcp("Normal", 0)
    pfn = machine.alloc_pages(0, "GFP_KERNEL")
    machine.drain_all_pages()
    _isolate(machine, zone, pfn // PAGEBLOCK_PAGES, HIGHATOMIC)
    zone.nr_reserved_highatomic += PAGEBLOCK_PAGES
    machine.check()
    machine.free_pages(pfn, 0)
    # free_frozen_pages: highatomic pages are freed to the pcp's movable list.
    assert pcp.list(MOVABLE) == [pfn]
    assert machine.block_at(pfn) == (pfn, 0, "pcp")
    machine.check()


def test_a_wrong_value_buffer_is_refused_by_a_zone_and_a_pcp() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    zone = machine.zone("Normal")
    mm = machine.mem_map
    for values in (memoryview(array("i", [0] * 64)), memoryview(array("q", [0] * 2))):
        with pytest.raises(ValueError, match=r"a zone needs [0-9]+ int64 values"):
            Zone(zone.index, None, mm.state, mm.next, mm.prev, machine.pageblock_mt,
                 bytearray(machine.nr_pages), 0, values)
        with pytest.raises(ValueError, match=r"a pcp needs [0-9]+ int64 values"):
            PerCpuPages(zone, 0, 0, mm.next, mm.prev, mm.state, machine.pageblock_mt, values)


def test_a_pcp_whose_high_is_its_batch_never_drains_on_free() -> None:
    # nr_pcp_free leaves at least batch pages: clamp(free_count, batch, high - batch) is 0
    # when high == batch, so a free that reaches high gives nothing back.
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1,
                          pcp_batch=4, pcp_high=4)
    pcp = machine.pcp("Normal", 0)
    pages = [machine.alloc_pages(0, "GFP_KERNEL") for _ in range(12)]
    drained = pcp.count
    locks = machine.zone("Normal").lock_count
    for pfn in pages:
        machine.free_pages(pfn, 0)
    assert pcp.count == drained + 12
    assert machine.zone("Normal").lock_count == locks  # no free_pcppages_bulk took the lock
    machine.check()


def test_pagetypeinfo_stops_counting_a_long_list_at_its_cap(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1, pcp=False)
    held = [machine.alloc_pages(0, "GFP_HIGHUSER_MOVABLE") for _ in range(8)]
    for pfn in held[::2]:  # four free order-0 blocks, none with a free buddy
        machine.free_pages(pfn, 0)
    row = next(line for line in machine.pagetypeinfo().splitlines()
               if "zone   Normal, type      Movable" in line)
    assert row.split()[6] == "4"  # order 0's column
    # Linux's pagetypeinfo_showfree_print stops at 100000 entries and prints ">100000".
    monkeypatch.setattr(vmstat, "PAGETYPEINFO_LIST_CAP", 3)
    row = next(line for line in machine.pagetypeinfo().splitlines()
               if "zone   Normal, type      Movable" in line)
    assert row.split()[6] == ">"
    assert row.split()[7] == "3"


def test_a_meminfo_without_memavailable_gives_no_host_memory(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    def fake_open(path: str, *args: Any, **kwargs: Any) -> io.StringIO:
        assert path == "/proc/meminfo"
        return io.StringIO("MemTotal:       16384000 kB\nMemFree:         8192000 kB\n")

    monkeypatch.setattr(mem_map, "open", fake_open, raising=False)
    assert mem_map.host_memory_available() is None


def test_a_highatomic_reserve_stops_growing_at_about_1_percent_of_the_zone() -> None:
    # 200 MiB, 51200 managed pages: the reserve's limit is 512 pages, one pageblock. A high
    # watermark_scale_factor leaves room between the low and min marks for the atomic
    # allocations below.
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 200 << 20}), nr_cpus=1,
                          pcp=False, watermark_scale_factor=3000)
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine, zone)
    first = machine.alloc_pages(2, "GFP_ATOMIC")
    reserved = first // PAGEBLOCK_PAGES
    assert machine.pageblock_mt[reserved] == HIGHATOMIC
    assert zone.nr_reserved_highatomic == PAGEBLOCK_PAGES
    # The reserve's other 508 pages are 127 order-2 blocks, taken by the next atomic ones.
    for _ in range(127):
        assert machine.alloc_pages(2, "GFP_ATOMIC") // PAGEBLOCK_PAGES == reserved
    assert zone.nr_free_highatomic == 0
    beyond = machine.alloc_pages(2, "GFP_ATOMIC")
    # From another pageblock, which the full reserve does not take.
    assert beyond // PAGEBLOCK_PAGES != reserved
    assert machine.pageblock_mt[beyond // PAGEBLOCK_PAGES] != HIGHATOMIC
    assert zone.nr_reserved_highatomic == PAGEBLOCK_PAGES
    machine.check()


def test_a_non_blocking_allocation_takes_the_highatomic_reserve_as_a_last_resort() -> None:
    # A small min_free_kbytes: the atomic floor (min - min/2 - min/4) is below the reserve.
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 200 << 20}), nr_cpus=1,
                          pcp=False, min_free_kbytes=128)
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine, zone)
    reserved = machine.alloc_pages(2, "GFP_ATOMIC") // PAGEBLOCK_PAGES
    assert machine.pageblock_mt[reserved] == HIGHATOMIC
    while zone.free_pages > zone.nr_free_highatomic:  # every other free page taken
        assert machine.alloc_pages(0, "GFP_ATOMIC") // PAGEBLOCK_PAGES != reserved
    free = zone.free_pages
    assert free > 0
    # __zone_watermark_ok: a high-order request may count the reserve's blocks only with
    # ALLOC_HIGHATOMIC (or ALLOC_OOM); with another reserve flag it sees none.
    assert zone.zone_watermark_ok(2, 0, zone.index, ALLOC_HIGHATOMIC)
    assert not zone.zone_watermark_ok(2, 0, zone.index, ALLOC_MIN_RESERVE)
    # rmqueue_buddy: an order-0 GFP_ATOMIC (ALLOC_NON_BLOCK) finds no block of its type nor
    # a fallback, and takes one from the reserve.
    pfn = machine.alloc_pages(0, "GFP_ATOMIC")
    assert pfn // PAGEBLOCK_PAGES == reserved
    assert zone.free_pages == zone.nr_free_highatomic == free - 1
    # A blocking one may not: it fails once direct reclaim (nothing to reclaim) is done.
    with pytest.raises(OutOfMemoryError):
        machine.alloc_pages(0, "GFP_NOIO")
    machine.check()


def test_a_pageblock_across_the_zone_start_is_never_reserved() -> None:
    # Normal starts at pfn 256, mid-pageblock: pfns 256..511 are its first, partial pageblock.
    pages = 256 + 120 * PAGEBLOCK_PAGES
    machine = PageMachine(MachineLayout((ZoneLayout("Normal", 256, pages, pages, pages),)),
                          nr_cpus=1, pcp=False, min_free_kbytes=128)
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine, zone)
    pfn = machine.alloc_pages(2, "GFP_ATOMIC")
    # The smallest free blocks were in the partial pageblock (an order-8 block at boot), so the
    # allocation splits one of them; move_freepages_block refuses a pageblock the zone does not
    # wholly span, and reserve_highatomic_pageblock gives up.
    assert pfn < PAGEBLOCK_PAGES
    assert machine.pageblock_mt[0] == MOVABLE
    assert zone.nr_reserved_highatomic == 0
    machine.check()


def test_a_full_highatomic_reserve_has_nothing_to_give_back() -> None:
    # 1 GiB: room for a reserve of six pageblocks; two are reserved and filled.
    machine = PageMachine(nr_cpus=1, pcp=False, watermark_scale_factor=3000)
    zone = machine.zone("Normal")
    _fill_to_low_mark(machine, zone)
    reserved = set()
    for _ in range(2):
        block = machine.alloc_pages(2, "GFP_ATOMIC") // PAGEBLOCK_PAGES
        reserved.add(block)
        for _ in range(127):
            assert machine.alloc_pages(2, "GFP_ATOMIC") // PAGEBLOCK_PAGES == block
    assert len(reserved) == 2
    assert zone.nr_reserved_highatomic == 2 * PAGEBLOCK_PAGES
    assert zone.nr_free_highatomic == 0
    # A failing GFP_KERNEL allocation asks unreserve_highatomic_pageblock for a pageblock
    # back: with more than one reserved it may give one, but neither has a free page to move.
    with pytest.raises(OutOfMemoryError):
        while True:
            machine.alloc_pages(9, "GFP_KERNEL")
    assert zone.nr_reserved_highatomic == 2 * PAGEBLOCK_PAGES
    assert all(machine.pageblock_mt[block] == HIGHATOMIC for block in reserved)
    machine.check()
