"""kmem's PageMachine in lockstep with a plain model of Linux 6.18's rules (linux_zone_model).

Every step (an allocation of some order, gfp flags and CPU; a free on some CPU; a vmstat tick;
a drain of every pcp) runs on both; after it, every invariant of the machine holds (check():
frames, zones' free lists and counters, pageblocks, pcps) and the two agree on everything
observable: which pfn each allocation got, every free list of every zone in order, every
pageblock's migratetype, every pcp list in order with its count/high/batch/alloc_factor/
free_count/flags, the zones' flags, boost and highatomic reserve, and each CPU's
mm_page_alloc_zone_locked, mm_page_pcpu_drain and mm_page_alloc_extfrag counts.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kmem.page.gfp import (
    __GFP_MEMALLOC,
    __GFP_RECLAIMABLE,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_DMA32,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
)
from kmem.page.layout import MachineLayout, ZoneLayout
from kmem.page.machine import PageMachine
from kmem.page.migratetype import MIGRATE_TYPES, NR_PAGE_ORDERS, PAGEBLOCK_ORDER
from kmem.page.pcp import NR_PCP_LISTS
from linux_zone_model import LinuxZoneModel

LAYOUTS = {
    # A small Normal-only machine: watermarks, pcp drains and fallbacks all come early.
    "normal-4M": (ZoneLayout("Normal", 0, 1024, 1024, 1024),),
    # Three zones, as a PC has: the zonelist falls back Normal -> DMA32 -> DMA.
    "dma-dma32-normal": (ZoneLayout("DMA", 0, 512, 512, 512),
                         ZoneLayout("DMA32", 512, 1536, 1536, 1536),
                         ZoneLayout("Normal", 2048, 2048, 2048, 2048)),
    # Unaligned zones with holes and reservations, as a real DMA zone starts at pfn 1.
    "holes": (ZoneLayout("DMA", 1, 1023, 1000, 900),
              ZoneLayout("Normal", 1024, 3072, 3072, 3000)),
    # Big enough for a highatomic reserve (1% of the zone is at least a pageblock).
    "normal-256M": (ZoneLayout("Normal", 0, 65536, 65536, 65536),),
}
GFPS = [GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_KERNEL | __GFP_RECLAIMABLE, GFP_ATOMIC,
        GFP_NOWAIT, GFP_DMA, GFP_DMA32, GFP_KERNEL | __GFP_MEMALLOC]
ORDERS = st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 9, 10])


class MachineAgainstModel(RuleBasedStateMachine):
    machine: PageMachine
    model: LinuxZoneModel

    def __init__(self) -> None:
        super().__init__()
        self.live: list[tuple[int, int]] = []

    @initialize(layout=st.sampled_from(sorted(LAYOUTS)), nr_cpus=st.integers(1, 3),
                batch=st.sampled_from([None, None, 2, 7]))
    def boot(self, layout: str, nr_cpus: int, batch: int | None) -> None:
        zones = LAYOUTS[layout]
        self.machine = PageMachine(MachineLayout(zones), nr_cpus=nr_cpus, pcp_batch=batch)
        self.model = LinuxZoneModel(
            [(z.name, z.start_pfn, z.spanned, z.present, z.managed) for z in zones],
            nr_cpus, pcp_batch=batch)
        assert self.machine.min_free_kbytes == self.model.min_free_kbytes

    def _allowed(self, gfp: int) -> bool:
        highest = self.model.highest_zone(gfp)
        return bool(self.model.zonelist(highest))

    @rule(order=ORDERS, gfp=st.sampled_from(GFPS), cpu=st.integers(0, 2))
    def alloc(self, order: int, gfp: int, cpu: int) -> None:
        cpu %= self.machine.nr_cpus
        if not self._allowed(gfp):
            return
        expected = self.model.alloc(order, gfp, cpu)
        try:
            got: int | None = self.machine.alloc_pages(order, gfp, cpu)
        except MemoryError:
            got = None
        assert got == expected, (order, hex(gfp), cpu)
        if got is not None:
            self.live.append((got, order))

    @precondition(lambda self: self.live)
    @rule(data=st.data(), cpu=st.integers(0, 2))
    def free(self, data: st.DataObject, cpu: int) -> None:
        cpu %= self.machine.nr_cpus
        pfn, order = self.live.pop(data.draw(st.integers(0, len(self.live) - 1)))
        self.model.free(pfn, order, cpu)
        self.machine.free_pages(pfn, order, cpu)

    @rule()
    def vmstat_tick(self) -> None:
        self.model.tick()
        self.machine.vmstat_tick()

    @rule()
    def drain_all_pages(self) -> None:
        self.model.drain_all()
        self.machine.drain_all_pages()

    @invariant()
    def every_invariant_holds(self) -> None:
        self.machine.check()

    @invariant()
    def machine_and_model_agree(self) -> None:
        machine, model = self.machine, self.model
        for zone, mzone in zip(machine.zones, model.zones, strict=True):
            for mt in range(MIGRATE_TYPES):
                for order in range(NR_PAGE_ORDERS):
                    assert zone.free_list(mt, order) == mzone.lst(mt, order), (zone.name, mt, order)
            assert zone.nr_free == [mzone.nr_free(o) for o in range(NR_PAGE_ORDERS)]
            assert zone.free_pages == mzone.free_pages()
            assert zone.free_pages_mt == [  # (what kmem plot --kind pcp draws)
                sum(len(mzone.lst(mt, order)) << order for order in range(NR_PAGE_ORDERS))
                for mt in range(MIGRATE_TYPES)]
            assert (zone.below_high, zone.boosted_watermark, zone.watermark_boost,
                    zone.nr_reserved_highatomic) == (
                mzone.below_high, mzone.boosted, mzone.boost, mzone.reserved_highatomic)
            first = zone.start_pfn >> PAGEBLOCK_ORDER
            last = (zone.end_pfn - 1) >> PAGEBLOCK_ORDER if zone.spanned else first - 1
            for block in range(first, last + 1):
                assert machine.pageblock_mt[block] == model.ptype(block << PAGEBLOCK_ORDER)
            for pcp, mpcp in zip(zone.pcps, mzone.pcps, strict=True):
                for pindex in range(NR_PCP_LISTS):
                    assert pcp.list(pindex) == mpcp.lists[pindex], (zone.name, pcp.cpu, pindex)
                assert (pcp.count, pcp.high, pcp.high_min, pcp.high_max, pcp.batch, pcp.flags,
                        pcp.alloc_factor, pcp.free_count) == (
                    mpcp.count, mpcp.high, mpcp.high_min, mpcp.high_max, mpcp.batch,
                    mpcp.flags, mpcp.alloc_factor, mpcp.free_count)
        for cpu in range(machine.nr_cpus):
            events = machine.events(cpu)
            expected = model.events[cpu]
            assert (events.mm_page_alloc_zone_locked, events.mm_page_pcpu_drain,
                    events.mm_page_alloc_extfrag) == (
                expected["zone_locked"], expected["drain"], expected["extfrag"])


MachineAgainstModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestMachineAgainstModel = MachineAgainstModel.TestCase
