"""Lines of the core layers (kmem.page, kmem.slab, kmem.trace) that no other test reached
(issue #18's coverage item): each test asserts what a user relies on there, as Linux's rules
give it, not merely that the line runs."""

from __future__ import annotations

import io
import linecache
import sys
import threading
from array import array
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import kmem.trace.sweep as sweep_module
from kmem import sweep
from kmem.errors import InvalidFreeError, OutOfMemoryError
from kmem.page import mem_map, vmstat
from kmem.page.buddy import BuddyAllocator
from kmem.page.gfp import GFP_ATOMIC
from kmem.page.layout import MachineLayout, ZoneLayout
from kmem.page.machine import PageMachine
from kmem.page.pcp import PerCpuPages
from kmem.page.watermarks import ALLOC_HIGHATOMIC, ALLOC_MIN_RESERVE
from kmem.page.zone import Zone
from kmem.slab.allocator import SlabAllocator
from kmem.slab.flags import SLAB_CACHE_DMA, SLAB_RECLAIM_ACCOUNT, SLAB_TYPESAFE_BY_RCU
from kmem.slab.machine_pages import MachinePages
from kmem.slab.report import SlabtopRow, slabtop_summary
from kmem.slab.sheaves import sheaf_size
from kmem.slab.slabinfo_tool import (
    SysfsEntry,
    SysfsSnapshot,
    _Tool,
    slabinfo_report,
    slabinfo_totals,
    snapshot_from_allocator,
)
from kmem.slab.slabs import ON_NODE_PARTIAL
from test_cov_slab2 import _another_task, _boot, _exhaust, _places
from test_cov_trace3 import ONE_TRACE, _sweep_spec

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


# -- kmem.slab ------------------------------------------------------------------------------

def _machine_slab(size: int = 64 << 20, **zones: int) -> tuple[SlabAllocator, PageMachine]:
    machine = PageMachine(MachineLayout.from_sizes(zones or {"Normal": size}), nr_cpus=1,
                          pcp=False)
    return SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=1, machine=machine), machine


def test_a_reclaimable_caches_slabs_come_from_reclaimable_pageblocks() -> None:
    slab, machine = _machine_slab()
    cache = slab.kmem_cache_create("dentry-like", 192, flags=SLAB_RECLAIM_ACCOUNT)
    cache.alloc(0)
    # allocate_slab asks with __GFP_RECLAIMABLE: with no reclaimable free block, the
    # fallback claims a whole free order-10 block (two pageblocks) for the type.
    assert machine.pageblock_mt.count(RECLAIMABLE) == 2
    assert isinstance(slab.pages, MachinePages)
    ((own, order),) = slab.pages._machine_pfn.values()
    assert machine.pageblock_mt[own // PAGEBLOCK_PAGES] == RECLAIMABLE
    assert machine.block_at(own) == (own, order, "allocated")
    slab.check()


def test_a_dma_caches_slabs_come_from_zone_dma() -> None:
    slab, machine = _machine_slab(DMA=16 << 20, Normal=64 << 20)
    dma, normal = machine.zone("DMA"), machine.zone("Normal")
    dma_free, normal_free = dma.free_pages, normal.free_pages
    cache = slab.kmem_cache_create("floppy", 512, flags=SLAB_CACHE_DMA)
    cache.alloc(0)
    # __GFP_DMA: the slab's 2**order pages leave zone DMA, none leave Normal.
    assert dma.free_pages == dma_free - (1 << cache.order)
    assert normal.free_pages == normal_free
    slab.check()


@pytest.mark.parametrize("where", ["buddy", "machine"])
def test_the_machine_pages_check_catches_a_slab_block_freed_behind_its_back(where: str) -> None:
    slab, machine = _machine_slab()
    cache = slab.kmem_cache_create("victim", 256)
    cache.alloc(0)
    assert isinstance(slab.pages, MachinePages)
    ((pfn, (own, order)),) = slab.pages._machine_pfn.items()
    slab.check()
    if where == "buddy":
        slab.buddy.free_pages(pfn, order)
        message = f"slab block at pfn {pfn:#x} is not allocated in the buddy"
    else:
        machine.free_pages(own, order)
        message = f"slab block at pfn {pfn:#x}: its machine block {own:#x} is not allocated"
    with pytest.raises(AssertionError, match=message):
        slab.pages.check()


def test_typesafe_by_rcu_pages_come_back_when_the_machine_runs_out() -> None:
    slab, machine = _machine_slab(16 << 20)
    cache = slab.kmem_cache_create("rcu", 2048, flags=SLAB_TYPESAFE_BY_RCU)
    objects = []
    with pytest.raises(OutOfMemoryError):
        while True:
            objects.append(cache.alloc(0))
    for address in objects:
        cache.free(address, 0)
    cache.shrink()
    waiting = cache.pages_held()
    assert waiting > 0  # every slab empty, its pages waiting for the grace period
    other = slab.kmem_cache_create("other", 2048)
    with pytest.raises(OutOfMemoryError):
        other.alloc(0)
    # The cache's own next slab ends the grace period first (the buddy had room all along:
    # it is the machine that ran out), then takes one slab of the pages that came back.
    free = machine.nr_free_pages
    cache.alloc(0)
    assert cache.pages_held() == 1 << cache.order
    assert machine.nr_free_pages == free + waiting - (1 << cache.order)
    slab.check()


def test_a_constructor_failing_on_a_machine_gives_the_slab_pages_back() -> None:
    slab, machine = _machine_slab()

    def ctor(view: memoryview) -> None:
        raise RuntimeError("ctor failed")

    cache = slab.kmem_cache_create("bad-ctor", 128, ctor=ctor)
    buddy_free, machine_free = slab.buddy.nr_free_pages, machine.nr_free_pages
    with pytest.raises(RuntimeError, match="ctor failed"):
        cache.alloc(0)
    assert (slab.buddy.nr_free_pages, machine.nr_free_pages) == (buddy_free, machine_free)
    assert cache.pages_held() == 0 and cache.stats().slabs == 0
    slab.check()


def _waits_in(thread: threading.Thread, function: str, line: str) -> bool:
    """Whether ``thread``'s innermost Python frame is ``function`` at a line starting with
    ``line`` (there it waits for the lock: in a Python lock's acquire, or in the compiled
    core's)."""
    frame: FrameType | None = sys._current_frames().get(thread.ident or 0)
    if frame is None:
        return False
    text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return frame.f_code.co_name == function and text.startswith(line)


def _wait_until(condition: Any) -> None:
    for _ in range(3000):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("timed out")


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_another_threads_alloc_and_report_wait_for_a_constructor(policy: str) -> None:
    """The guard of a constructor's run refuses only its own thread: another thread's
    alloc and a report that holds the cache lock wait for the new slab, then go through.
    (Each waits before the constructor is let go: no sleep decides it.)"""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, policy=policy)
    running, go = threading.Event(), threading.Event()
    armed = [False]

    def ctor(view: memoryview) -> None:
        if armed[0]:
            armed[0] = False
            running.set()
            assert go.wait(30)

    cache: Any = slab.kmem_cache_create("ctor", 1024, ctor=ctor)
    first = [cache.alloc(0) for _ in range(cache.objs_per_slab)]  # one full slab
    armed[0] = True
    results: dict[str, Any] = {}

    def run(name: str, call: Any) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.__setitem__(name, call()),
                                  daemon=True)
        thread.start()
        return thread

    builder = run("builder", lambda: cache.alloc(0))  # a new slab: the ctor waits for `go`
    assert running.wait(30)
    allocer = run("other", lambda: cache.alloc(0))
    reporter = run("extents", cache.slab_extents)
    _wait_until(lambda: _waits_in(allocer, "guarded_alloc", "return real_alloc")
                or _waits_in(allocer, "acquire", "return self.lock.acquire"))
    _wait_until(lambda: _waits_in(reporter, "acquire", "return self.lock.acquire"))
    assert not results  # all three wait
    go.set()
    for thread in (builder, allocer, reporter):
        thread.join(30)
        assert not thread.is_alive()
    # Both waiters saw the new slab: the report lists two slabs, the other allocation is
    # another object of the new slab.
    assert len(results["extents"]) == 2
    assert results["other"] != results["builder"]
    assert results["other"] not in first and results["builder"] not in first
    assert len(cache.live_objects()) == cache.objs_per_slab + 2
    slab.check()


def test_a_sheaf_refused_free_of_an_object_off_the_cpu_slab_takes_the_slab_slowpath(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """6.18, capacity 4, as test_cov_slab2's free whose main was emptied meanwhile, but the
    object freed is in a full slab that is not the CPU's: do_slab_free's slow path
    (__slab_free) puts that slab, with its one free object, on the CPU's partial list."""
    slab, cache = _boot("6.18", 256, 4)
    objects = [cache.alloc(0, GFP_ATOMIC) for _ in range(cache.objs_per_slab + 4)]
    first_slab = {address >> 12 for address in objects[:cache.objs_per_slab]}
    assert len(first_slab) == 1 and objects[-1] >> 12 not in first_slab  # one full slab
    for address in objects[-4:]:
        cache.free(address, 0)
    assert _places(cache) == [("main", 4)]
    _exhaust(slab, sheaf_size(4))
    theirs: list[int] = []
    _another_task(cache, monkeypatch, lambda: theirs.extend(cache.alloc(0) for _ in range(4)))
    before = cache.stats()
    cache.free(objects[0], 0)
    after = cache.stats()
    assert sorted(theirs) == sorted(objects[-4:])
    assert _places(cache) == [("main", 0)]
    assert after.objects - before.objects == -1  # back in its slab, not in a sheaf
    assert after.cpu_partial_free - before.cpu_partial_free == 1  # put_cpu_partial
    assert after.cpu_partial_slabs - before.cpu_partial_slabs == 1
    assert objects[0] not in {obj.address for obj in cache.live_objects()}
    slab.check()


def test_a_caches_repr_names_its_geometry() -> None:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1)
    cache = slab.kmem_cache_create("thing", 200)
    # 200 bytes aligned to a word: 200-byte slots, 20 to an order-0 slab (4096 // 200).
    assert repr(cache) == (f"<{type(cache).__name__} 'thing' object_size=200 slab_size=200"
                           " objs_per_slab=20 order=0>")


def test_check_catches_a_slab_page_that_maps_to_another_slab() -> None:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1)
    cache: Any = slab.kmem_cache_create("mapped", 1024)
    objects = [cache.alloc(0) for _ in range(2 * cache.objs_per_slab)]  # two order-0 slabs
    pages = sorted(cache._slab_of_pfn)
    assert len(pages) == 2 * (1 << cache.order)
    slab.check()
    cache._slab_of_pfn[pages[0]] = cache._slab_of_pfn[pages[-1]]
    with pytest.raises(AssertionError, match=f"page {pages[0]:#x} does not map to the slab"):
        cache.check()
    assert objects


def test_slabtop_summary_totals_its_rows() -> None:
    rows = [
        SlabtopRow(objs=64, active=16, use_percent=25, obj_size_kib=0.0625, slabs=1,
                   obj_per_slab=64, cache_size_kib=4, name="busy"),
        SlabtopRow(objs=0, active=0, use_percent=0, obj_size_kib=0.5, slabs=0,
                   obj_per_slab=8, cache_size_kib=0, name="idle"),
    ]
    # 16 of 64 objects, one cache of two in use, 16 * 64 bytes = 1 KiB of a 4 KiB slab.
    assert slabtop_summary(rows) == (
        " Active / Total Objects (% used)    : 16 / 64 (25.0%)\n"
        " Active / Total Slabs (% used)      : 1 / 1 (100.0%)\n"
        " Active / Total Caches (% used)     : 1 / 2 (50.0%)\n"
        " Active / Total Size (% used)       : 1.00K / 4.00K (25.0%)")
    assert slabtop_summary([]) == (
        " Active / Total Objects (% used)    : 0 / 0 (0.0%)\n"
        " Active / Total Slabs (% used)      : 0 / 0 (100.0%)\n"
        " Active / Total Caches (% used)     : 0 / 0 (0.0%)\n"
        " Active / Total Size (% used)       : 0.00K / 0.00K (0.0%)")


def _kmalloc_64_files() -> dict[str, str]:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1)
    slab.kmalloc(64)
    snapshot = snapshot_from_allocator(slab)
    return dict(next(e for e in snapshot.entries if e.name == "kmalloc-64").files)


def test_slabinfo_names_a_merged_cache_after_its_kmalloc_alias_at_once() -> None:
    # find_one_alias: the longest alias, but a kmalloc one is taken as soon as it is met.
    entries = (SysfsEntry(":0000064", files=_kmalloc_64_files()),
               SysfsEntry("aaaa", link=":0000064"),
               SysfsEntry("kmalloc-64", link=":0000064"),
               SysfsEntry("zzzzzzzzzzzzzzzzzzzz", link=":0000064"))
    report = slabinfo_report(SysfsSnapshot(entries), first_alias=True)
    assert report.startswith("\nSlabcache: kmalloc-64 ")
    assert "zzzz" not in report.split("\n")[1]


def test_slabinfo_reads_a_numa_list_as_its_tool_decodes_it() -> None:
    files = _kmalloc_64_files()
    files["slabs"] = "3 N0=2 N1 N2=1\n"  # node 1 without a count: decode_numa_list skips it
    files["partial"] = "1 N2=1\n"
    report = slabinfo_report(SysfsSnapshot((SysfsEntry("kmalloc-64", files=files),)))
    numa = report[report.index("NUMA nodes"):].splitlines()
    assert numa[0].split() == ["NUMA", "nodes", ":", "0", "1", "2"]
    assert numa[2].split() == ["All", "slabs", "2", "0", "1"]
    assert numa[3].split() == ["Partial", "slabs", "0", "0", "1"]
    # A node past MAX_NODES is counted in no slot, but is the highest node seen.
    tool = _Tool(SysfsSnapshot(()))
    assert tool.numa_list("1 N1024=1 N3=1\n") == {3: 1}
    assert tool.highest_node == 1024


def test_slabinfo_prints_no_perf_counters_for_a_cache_with_no_allocations() -> None:
    files = _kmalloc_64_files()
    stats = {"alloc_slab": "1", "alloc_fastpath": "0", "alloc_slowpath": "0",
             "free_fastpath": "0", "free_slowpath": "0"}
    files.update({name: f"{value}\n" for name, value in stats.items()})
    snapshot = SysfsSnapshot((SysfsEntry("kmalloc-64", files=files),))
    # slab_stats: a slab allocated but no alloc counted (total_alloc 0): nothing to share out.
    assert "Slab Perf Counter" not in slabinfo_report(snapshot)
    files["alloc_fastpath"] = "4\n"
    assert "Slab Perf Counter" in slabinfo_report(snapshot)


def test_slabinfo_totals_of_caches_without_objects_say_so() -> None:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1)
    assert slabinfo_totals(snapshot_from_allocator(slab)) == "No objects\n"


def test_a_7_0_refill_discards_an_empty_slab_it_took_but_did_not_need() -> None:
    """__refill_objects_node: the partial slabs are taken from the head until they hold the
    request, then emptied last taken first; one taken but not reached goes back, unless it is
    empty and the node keeps min_partial slabs without it (then it is discarded). That needs
    an empty slab smaller than the request ahead of one that holds all of it: an order
    fallback's slab. The list is set up directly (a workload gets there only by chance)."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, kernel="7.0")
    cache: Any = slab.kmem_cache_create("refill", 1024)
    assert (cache.order, cache.min_order, cache.min_partial) == (1, 0, 5)
    whole = [cache._new_slab() for _ in range(6)]  # order 1: 8 objects each
    held = []
    with pytest.raises(OutOfMemoryError):
        while True:
            held.append(slab.buddy.alloc_pages(0))
    slab.buddy.free_pages(held.pop(), 0)  # one page left: the next slab falls back to order 0
    small = cache._new_slab()
    assert (small.order, small.objects) == (0, 4)
    node = cache._node_partial
    for partial in [small, *whole]:  # the node list, head first: small, then six order-1 ones
        node[partial] = None
        partial.where = ON_NODE_PARTIAL
    objects = cache._refill_from_partial(8, 0)
    # small (4) and the first order-1 slab (8) were taken; the order-1 one gave all 8. small
    # was not reached, is empty, and five slabs stay: it goes back to the buddy allocator.
    assert sorted(objects) == [whole[0].base + i * cache.size for i in range(8)]
    assert slab.buddy.nr_free_pages == 1
    assert small not in node and list(node) == whole[1:]
    cache._slab_free(whole[0], [(address - whole[0].base) // cache.size for address in objects],
                     0)  # (the objects back: an empty slab beside min_partial others goes too)
    for page in held:
        slab.buddy.free_pages(page, 0)
    slab.check()


# -- kmem.trace -----------------------------------------------------------------------------

class _KilledWorker(Exception):
    """What dask.distributed raises for a task whose workers kept dying."""


class _FakeDistributed:
    """The parts of dask.distributed a sweep uses, on this process: each task runs when its
    result is asked for, and the one keyed ``doomed`` fails as a killed worker would."""

    def __init__(self, doomed: str) -> None:
        self.doomed = doomed
        self.released: list[str] = []
        outer = self

        class Future:
            def __init__(self, call: Any, args: tuple[Any, ...], key: str) -> None:
                self.call, self.args, self.key = call, args, key

            def result(self) -> Any:
                if outer.doomed in self.key:
                    raise _KilledWorker(f"attempted to run task {self.key!r} on 3 workers")
                return self.call(*self.args)

            def release(self) -> None:
                outer.released.append(self.key)

        class Client:
            def __init__(self, address: str, timeout: str) -> None:
                assert address == "tcp://scheduler:8786"

            def __enter__(self) -> Client:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def submit(self, call: Any, *args: Any, pure: bool, key: str) -> Future:
                assert not pure  # (each run is its own task, never deduplicated)
                return Future(call, args, key)

        self.Client = Client

    @staticmethod
    def as_completed(futures: list[Any]) -> Any:
        return iter(futures)


def test_a_dask_task_whose_worker_died_is_that_runs_failure_and_the_others_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _sweep_spec(tmp_path, ONE_TRACE + "[parameters]\ncpus = [1, 2]\n")
    here = sweep(spec, jobs=1)
    assert here.runs == 2 and not here.failures
    doomed = here.rows[0]["run"]
    fake = _FakeDistributed(doomed)
    monkeypatch.setattr(sweep_module, "_dask", lambda: fake)
    result = sweep(spec, executor="dask", address="tcp://scheduler:8786")
    (failure,) = result.failures
    assert failure.run == doomed
    assert failure.error.startswith("_KilledWorker: the worker running it failed: attempted to"
                                    f" run task 'kmem-replay-{doomed}-")
    # The other run's row is the pool's; every task was released, the failed one too.
    assert [row for row in result.rows if row["run"] != doomed] == [
        row for row in here.rows if row["run"] != doomed]
    assert len(fake.released) == 2
