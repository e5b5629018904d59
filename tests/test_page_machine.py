"""The page machine's behaviour a user relies on, and its refusals of bad input.

Outside references: the reference machine's trace (its Normal zone has pcp batch 31, and its
order-0 refills on CPU 1 came in bursts of 31, 62, 124, 248 and 496 mm_page_alloc_zone_locked
events, orders 1/2/3 in bursts of 15/7/3), and the rules of mm/page_alloc.c.
"""

from __future__ import annotations

from typing import Any

import pytest

from fixture_files import ZONEINFO
from kmem.errors import DoubleFreeError, InvalidArgumentError, InvalidTypeError, WrongOrderError
from kmem.page.errors import (
    InvalidLayoutError,
    LayoutOverlapError,
    NoManagedPagesError,
    NoMigratetypeError,
    NoSuchCpuError,
    NoZoneForGfpError,
    PfnNotInZoneError,
    UnknownZoneError,
    ZoneinfoFormatError,
)
from kmem.page.gfp import (
    __GFP_MOVABLE,
    __GFP_RECLAIMABLE,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
)
from kmem.page.layout import MachineLayout, ZoneLayout, layout_from_zoneinfo, read_zoneinfo
from kmem.page.machine import PageMachine
from kmem.page.mem_map import PCP
from kmem.page.migratetype import (
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    gfp_migratetype,
)
from kmem.page.pcp import NR_PCP_LISTS, order_to_pindex

Event = tuple[str, int, int, int, int, tuple[int, ...]]


def _reference_machine(events: list[Event] | None = None) -> PageMachine:
    tracer = None if events is None else (lambda *e: events.append(e))
    return PageMachine(layout_from_zoneinfo(ZONEINFO.read_text()), nr_cpus=2,
                       min_free_kbytes=67584, tracer=tracer)


def _snapshot(machine: PageMachine) -> tuple[Any, ...]:
    mem_map = machine.mem_map
    zones = tuple(
        (z.nr_free[:], z.free_pages, z.free_pages_blocks, z.nr_free_highatomic,
         z.nr_reserved_highatomic, z.watermark_boost, z.below_high, z.boosted_watermark,
         z.zone_locked, z.extfrag, z.lock_count, z.numa_hit,
         tuple((p.count, p.high, p.batch, p.flags, p.alloc_factor, p.free_count, p.drains,
                p.refills) for p in z.pcps))
        for z in machine.zones)
    return (bytes(mem_map.state), mem_map.next.tobytes(), mem_map.prev.tobytes(),
            bytes(machine.pageblock_mt), zones, machine.allocations, machine.frees,
            machine.failures, tuple(machine.events(c) for c in range(machine.nr_cpus)))


def _refill_bursts(events: list[Event]) -> list[tuple[int, int]]:
    """(order, length) of each run of consecutive mm_page_alloc_zone_locked events."""
    bursts: list[tuple[int, int]] = []
    previous = None
    for event in events:
        if event[0] != "mm_page_alloc_zone_locked":
            previous = None
            continue
        if previous is not None and previous[3] == event[3]:
            bursts[-1] = (event[3], bursts[-1][1] + 1)
        else:
            bursts.append((event[3], 1))
        previous = event
    return bursts


# -- the pcp, as the reference trace saw it ---------------------------------------------------

def test_order0_refills_double_as_on_the_reference_machine() -> None:
    events: list[Event] = []
    machine = _reference_machine(events)
    for _ in range(31 + 62 + 124 + 248 + 496 + 1):
        machine.alloc_pages(0, GFP_HIGHUSER_MOVABLE, cpu=1)
        events.append(("alloc", 0, 0, 0, 0, ()))  # a separator: one refill, one burst
    assert [n for _, n in _refill_bursts(events)][:5] == [31, 62, 124, 248, 496]
    assert machine.events(1).refills >= 5 and machine.events(0).refills == 0


@pytest.mark.parametrize(("order", "burst"), [(1, 15), (2, 7), (3, 3)])
def test_high_order_refills_bring_batch_over_two_to_the_order(order: int, burst: int) -> None:
    events: list[Event] = []
    machine = _reference_machine(events)
    # The first reclaimable allocation claims a Movable max-order block for its type (no
    # zone_locked event for that one): then a refill finds its blocks of its own type.
    machine.alloc_pages(0, GFP_KERNEL | __GFP_RECLAIMABLE, cpu=1)
    events.clear()
    machine.alloc_pages(order, GFP_KERNEL | __GFP_RECLAIMABLE, cpu=1)
    assert _refill_bursts(events) == [(order, burst)]
    assert all(e[4] == MIGRATE_RECLAIMABLE and e[5] == (1,) for e in events)  # percpu_refill=1


def test_a_refill_lists_the_blocks_in_ascending_pfn_order() -> None:
    machine = _reference_machine()
    first = machine.alloc_pages(0, GFP_KERNEL, cpu=0)
    rest = [machine.alloc_pages(0, GFP_KERNEL, cpu=0) for _ in range(30)]
    assert rest == list(range(first + 1, first + 31))


def test_an_order4_allocation_bypasses_the_pcp() -> None:
    events: list[Event] = []
    machine = _reference_machine(events)
    machine.alloc_pages(4, GFP_HIGHUSER_MOVABLE, cpu=1)
    assert [(e[0], e[3], e[5]) for e in events] == [("mm_page_alloc_zone_locked", 4, (0,))]


def test_frees_go_to_the_list_head_and_drain_from_the_tail_once_count_reaches_high() -> None:
    events: list[Event] = []
    machine = _reference_machine(events)
    pcp = machine.pcp("Normal", 0)
    pfns = [machine.alloc_pages(0, GFP_KERNEL, cpu=0) for _ in range(9000)]
    events.clear()
    pindex = order_to_pindex(MIGRATE_UNMOVABLE, 0)
    for pfn in pfns:
        count = pcp.count
        coldest = pcp.list(pindex)[-1] if pcp.list(pindex) else pfn
        machine.free_pages(pfn, 0, cpu=0)
        if events:
            break
        assert pcp.list(pindex)[0] == pfn
    drains = [e for e in events if e[0] == "mm_page_pcpu_drain"]
    assert drains and all(e[1] == 0 and e[3] == 0 for e in drains)
    assert count + 1 >= pcp.high_max  # the free that filled the list to its high mark
    assert drains[0][2] == coldest  # from the tail: the coldest page first
    assert pcp.count == count + 1 - len(drains)
    machine.check()


def test_highatomic_and_thp_pages_wait_on_their_pcp_lists() -> None:
    machine = PageMachine(nr_cpus=1)
    thp = machine.alloc_pages(9, GFP_HIGHUSER_MOVABLE)
    machine.free_pages(thp, 9)
    pcp = machine.pcp("Normal", 0)
    # Its refill brought two THP blocks (batch >> 9, at least 2); the freed one goes first.
    assert pcp.list(13)[0] == thp and len(pcp.list(13)) == 2 and NR_PCP_LISTS == 14
    assert machine.mem_map.state[thp] == PCP | 9


def test_draining_every_pcp_returns_every_page_to_the_buddy_lists() -> None:
    machine = _reference_machine()
    for cpu in (0, 1):
        for _ in range(5):
            machine.free_pages(machine.alloc_pages(0, GFP_KERNEL, cpu=cpu), 0, cpu=cpu)
    machine.drain_all_pages()
    assert all(p.count == 0 for z in machine.zones for p in z.pcps)
    assert machine.nr_free_pages == sum(z.managed for z in machine.zones)
    assert machine.buddyinfo() == _reference_machine().buddyinfo()


def test_vmstat_ticks_decay_high_to_high_min() -> None:
    machine = _reference_machine()
    for _ in range(2000):
        machine.alloc_pages(0, GFP_KERNEL, cpu=0)
    pcp = machine.pcp("Normal", 0)
    assert pcp.high > pcp.high_min
    for _ in range(60):
        machine.vmstat_tick()
    assert pcp.high == pcp.high_min and pcp.count <= pcp.high


def test_a_warm_start_fills_a_pcp_without_events() -> None:
    machine = _reference_machine()
    assert machine.warm_pcp(1, 100) == 100
    assert machine.pcp("Normal", 1).count == 100
    assert machine.events(1).mm_page_alloc_zone_locked == 0
    machine.alloc_pages(0, GFP_HIGHUSER_MOVABLE, cpu=1)
    assert machine.events(1).mm_page_alloc_zone_locked == 0  # served from the warm list
    machine.check()


def test_without_pcp_every_allocation_takes_the_zone_lock() -> None:
    machine = PageMachine(nr_cpus=1, pcp=False)
    pfns = [machine.alloc_pages(0, GFP_HIGHUSER_MOVABLE) for _ in range(10)]
    assert machine.events(0).mm_page_alloc_zone_locked == 10
    assert machine.events(0).zone_lock == 10
    for pfn in pfns:
        machine.free_pages(pfn, 0)
    assert machine.zone("Normal").nr_free[10] == 256  # all merged back at once


# -- zones, watermarks, fallback -------------------------------------------------------------

def test_the_zonelist_falls_back_from_normal_to_dma32_then_dma() -> None:
    layout = MachineLayout.from_sizes({"DMA": 4 << 20, "DMA32": 8 << 20, "Normal": 8 << 20})
    machine = PageMachine(layout, nr_cpus=1, pcp=False)
    served: list[str] = []
    with pytest.raises(MemoryError):
        while True:
            name = machine.zone_of(machine.alloc_pages(0, GFP_KERNEL)).name
            if name not in served:
                served.append(name)
    assert served == ["Normal", "DMA32", "DMA"]
    dma = machine.zone("DMA")
    # Each zone kept its min watermark, DMA also its protection against Normal allocations.
    assert dma.free_pages > dma.watermark[0] // 2 + dma.lowmem_reserve[2] > dma.watermark[0] // 2


def test_gfp_dma_allocations_stay_in_the_dma_zone() -> None:
    machine = _reference_machine()
    pfn = machine.alloc_pages(0, GFP_DMA)
    assert machine.zone_of(pfn).name == "DMA"


def test_an_unmovable_request_claims_a_whole_movable_pageblock() -> None:
    events: list[Event] = []
    machine = _reference_machine(events)
    pfn = machine.alloc_pages(0, GFP_KERNEL)  # every pageblock is Movable at boot
    extfrag = [e for e in events if e[0] == "mm_page_alloc_extfrag"]
    # A first-pass claim takes a whole max-order block: fallback order 10, not fragmenting,
    # the pageblock now Unmovable (change_ownership).
    assert [(e[3], e[4], e[5]) for e in extfrag] == [(0, MIGRATE_UNMOVABLE, (10, 1, 0, 1))]
    assert machine.zone("Normal").pageblock_migratetype(pfn) == MIGRATE_UNMOVABLE


def test_an_atomic_allocation_may_dip_below_the_min_watermark() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1, pcp=False)
    zone = machine.zone("Normal")
    with pytest.raises(MemoryError):
        while True:
            machine.alloc_pages(0, GFP_KERNEL)
    assert zone.free_pages <= zone.watermark[0]
    below = zone.free_pages
    machine.alloc_pages(0, GFP_ATOMIC)
    assert zone.free_pages == below - 1


def test_gfp_migratetype_reads_the_mobility_flags() -> None:
    assert gfp_migratetype(GFP_KERNEL) == MIGRATE_UNMOVABLE
    assert gfp_migratetype(GFP_HIGHUSER_MOVABLE) == MIGRATE_MOVABLE
    assert gfp_migratetype(GFP_KERNEL | __GFP_RECLAIMABLE) == MIGRATE_RECLAIMABLE


# -- bad input: a specific error, nothing changed ---------------------------------------------

def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(UnknownZoneError, match="HighMem"):
        MachineLayout.from_sizes({"HighMem": 1 << 20})
    machine = PageMachine(nr_cpus=1)
    before = _snapshot(machine)
    with pytest.raises(UnknownZoneError, match="Nomral"):
        machine.zone("Nomral")
    assert _snapshot(machine) == before


def test_overlapping_zones_are_refused() -> None:
    with pytest.raises(LayoutOverlapError, match="DMA32"):
        MachineLayout((ZoneLayout("DMA", 0, 4096, 4096, 4096),
                       ZoneLayout("DMA32", 4000, 4096, 4096, 4096)))
    with pytest.raises(LayoutOverlapError, match="twice"):
        MachineLayout((ZoneLayout("Normal", 0, 512, 512, 512),) * 2)


def test_a_layout_without_managed_pages_is_refused() -> None:
    with pytest.raises(NoManagedPagesError):
        MachineLayout((ZoneLayout("Normal", 0, 1024, 1024, 0),))
    with pytest.raises(InvalidLayoutError, match="managed"):
        MachineLayout((ZoneLayout("Normal", 0, 1024, 512, 1000),))


def test_a_pfn_in_no_zone_is_refused_and_nothing_changes() -> None:
    machine = _reference_machine()
    machine.alloc_pages(0, GFP_KERNEL)
    before = _snapshot(machine)
    for pfn in (0, -5, 1 << 40):  # pfn 0 is below the DMA zone; the others in no zone at all
        with pytest.raises(PfnNotInZoneError):
            machine.free_pages(pfn, 0)
    assert _snapshot(machine) == before


def test_a_cpu_out_of_range_is_refused_and_nothing_changes() -> None:
    machine = _reference_machine()
    pfn = machine.alloc_pages(0, GFP_KERNEL, cpu=1)
    before = _snapshot(machine)
    with pytest.raises(NoSuchCpuError, match=r"0\.\.1"):
        machine.alloc_pages(0, GFP_KERNEL, cpu=2)
    with pytest.raises(NoSuchCpuError):
        machine.free_pages(pfn, 0, cpu=-1)
    with pytest.raises(InvalidTypeError):
        machine.alloc_pages(0, GFP_KERNEL, cpu="0")  # type: ignore[arg-type]
    assert _snapshot(machine) == before


def test_gfp_flags_naming_no_migratetype_are_refused_and_nothing_changes() -> None:
    machine = _reference_machine()
    before = _snapshot(machine)
    with pytest.raises(NoMigratetypeError, match="__GFP_MOVABLE and __GFP_RECLAIMABLE"):
        machine.alloc_pages(0, GFP_KERNEL | __GFP_MOVABLE | __GFP_RECLAIMABLE)
    with pytest.raises(NoMigratetypeError):
        machine.alloc_pages(0, "GFP_KERNEL|__GFP_MOVABLE|__GFP_RECLAIMABLE")
    assert _snapshot(machine) == before


def test_gfp_flags_asking_for_a_missing_zone_are_refused() -> None:
    machine = PageMachine(nr_cpus=1)  # Normal only
    before = _snapshot(machine)
    with pytest.raises(NoZoneForGfpError, match="DMA"):
        machine.alloc_pages(0, GFP_DMA)
    with pytest.raises(NoZoneForGfpError, match="forbids"):
        machine.alloc_pages(0, "__GFP_DMA|__GFP_DMA32")
    assert _snapshot(machine) == before


def test_bad_frees_are_refused_and_nothing_changes() -> None:
    machine = _reference_machine()
    pfn = machine.alloc_pages(1, GFP_KERNEL)
    before = _snapshot(machine)
    with pytest.raises(WrongOrderError):
        machine.free_pages(pfn, 0)
    with pytest.raises(InvalidArgumentError, match="order"):
        machine.free_pages(pfn, 11)
    assert _snapshot(machine) == before
    machine.free_pages(pfn, 1)
    before = _snapshot(machine)
    with pytest.raises(DoubleFreeError, match="per-CPU list"):
        machine.free_pages(pfn, 1)
    assert _snapshot(machine) == before


def test_bad_machine_options_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="nr_cpus"):
        PageMachine(nr_cpus=0)
    with pytest.raises(InvalidArgumentError, match="percpu_pagelist_high_fraction"):
        PageMachine(percpu_pagelist_high_fraction=3)
    with pytest.raises(InvalidTypeError):
        PageMachine("zoneinfo")  # type: ignore[arg-type]


@pytest.mark.parametrize(("edit", "line", "reason"), [
    (lambda lines: ["hello", *lines], 1, "expected a 'Node N, zone NAME' line"),
    (lambda lines: [*lines[:56], "        min      lots", *lines[57:]], 57, "cannot read"),
    (lambda lines: [lines[0].replace("DMA", "HighMem"), *lines[1:]], 1, "unknown zone"),
    (lambda lines: [*lines[:63], "        protection: (0, x)", *lines[64:]], 64, "protection"),
    (lambda lines: [x for x in lines if "managed" not in x], 1, "no managed line"),
    (lambda lines: [], 1, "not a /proc/zoneinfo"),
])
def test_an_unreadable_zoneinfo_names_its_line(edit: Any, line: int, reason: str) -> None:
    lines = edit(ZONEINFO.read_text().splitlines())
    with pytest.raises(ZoneinfoFormatError, match=reason) as error:
        read_zoneinfo("\n".join(lines), source="zi")
    assert error.value.line_number == line
    assert str(error.value).startswith(f"zi:{line}: ")


def test_a_second_node_is_refused() -> None:
    text = ZONEINFO.read_text()
    with pytest.raises(ZoneinfoFormatError, match="one node"):
        layout_from_zoneinfo(text + text.replace("Node 0,", "Node 1,"))
