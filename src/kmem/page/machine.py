"""The page allocator as Linux 6.18 runs a machine: zones, migratetypes, per-CPU lists, watermarks.

Design: a PageMachine is one node. Booting it from a MachineLayout (kmem.page.layout):

    1. one MemMap for every frame of the node: all RESERVED, every pageblock MOVABLE;
    2. each zone's managed frames freed as Linux's memblock_free_all does (largest aligned
       blocks, lowest first, to the list tails);
    3. min_free_kbytes (the kernel's formula, raised by khugepaged with THP, unless given),
       watermarks, lowmem_reserve, and each populated zone's per-CPU lists sized.

alloc_pages(order, gfp, cpu) runs __alloc_pages: the fast path walks the zonelist (Normal,
DMA32, DMA from the highest zone gfp allows) checking the high mark, then the low mark
(get_page_from_freelist), first forbidding fragmenting fallbacks (ALLOC_NOFRAGMENT), then
allowing them; each zone serves orders 0-3 and 9 from the CPU's pcp (kmem.page.pcp) and others
straight from its buddy lists (kmem.page.zone). The slow path retries at the min mark with the
reserves gfp_to_alloc_flags grants; kmem has no reclaim or compaction, so a caller that could
reclaim gets what Linux does when reclaim frees nothing: the highatomic reserve unreserved,
every pcp drained, one more try. Then OutOfMemoryError.

free_pages(pfn, order, cpu) runs free_frozen_pages: pcp orders to the CPU's pcp list of the
pageblock's type (highatomic pages to the movable list), others straight to the buddy lists.

Events: the machine counts, per CPU, what a kernel trace would show of it —
mm_page_alloc_zone_locked (blocks taken from the buddy lists under the zone lock: a pcp
refill's, or a direct buddy allocation's), mm_page_pcpu_drain (blocks a pcp gave back),
mm_page_alloc_extfrag (fallbacks) — and zone->lock acquisitions; ``tracer`` (if given)
receives each event as it happens: tracer(event, cpu, pfn, order, migratetype, extra).

Invariants (check()): every frame of the node is a hole/reserved frame, or lies in exactly
one free block (on its zone's list of its pageblock's type), one pcp block (on its CPU's list
of its order) or one allocated block; every zone's counters and every pcp's count match its
lists (Zone.check_lists, PerCpuPages.check).

Tunables: nr_cpus, min_free_kbytes, watermark_scale_factor, lowmem_reserve_ratio,
percpu_pagelist_high_fraction, thp (khugepaged's min_free_kbytes), pcp (False: every order
straight from the buddy lists), pcp_batch / pcp_high (fixed values instead of 6.18's),
cache_slice (the per-CPU share of the last-level cache, deciding PCPF_FREE_HIGH_BATCH),
watermark_boost_factor.

Storage: the fields an order-0 pcp allocation or free touches are int64s in three buffers the
machine owns (kmem.page.counters): its own allocations/frees/failures, a block per zone
(free pages, watermarks, flags, numa_hit: kmem.page.zone) and a block per (zone, CPU) pcp
(count, high, batch, ...: kmem.page.pcp). The compiled core (csrc/pcp.c) serves the common
order-0 pcp hit and free on those buffers in place; the pure methods below read and write the
same values as attributes.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Final, NamedTuple

from kmem._compiled import core
from kmem.errors import (
    DoubleFreeError,
    InvalidArgumentError,
    InvalidFreeError,
    InvalidTypeError,
    KmemError,
    OutOfMemoryError,
    WrongOrderError,
    int_argument,
)
from kmem.page.counters import Counter
from kmem.page.errors import (
    NoSuchCpuError,
    NoZoneForGfpError,
    PfnNotInZoneError,
    UnknownZoneError,
)
from kmem.page.gfp import __GFP_DIRECT_RECLAIM, __GFP_KSWAPD_RECLAIM, GFP_KERNEL, parse_gfp_flags
from kmem.page.layout import MachineLayout
from kmem.page.mem_map import (
    ALLOCATED,
    BEYOND,
    FREE,
    KIND_MASK,
    ORDER_MASK,
    PCP,
    RESERVED,
    MemMap,
    boot_blocks,
)
from kmem.page.migratetype import (
    MAX_NR_ZONES,
    MAX_PAGE_ORDER,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    NR_PAGE_ORDERS,
    PAGEBLOCK_ORDER,
    ZONE_NAMES,
    ZONE_NORMAL,
    gfp_migratetype,
    gfp_zone,
    pcp_allowed_order,
)
from kmem.page.pcp import (
    NR_PCP_LISTS,
    PCP_ALLOC_FACTOR,
    PCP_BATCH,
    PCP_COUNT,
    PCP_FLAGS,
    PCP_FREE_COUNT,
    PCP_HIGH,
    PCP_HIGH_MAX,
    PCP_HIGH_MIN,
    PCP_NR_VALUES,
    PCPF_FREE_HIGH_BATCH,
    PCPF_PREV_FREE_HIGH_ORDER,
    PerCpuPages,
)
from kmem.page.watermarks import (
    ALLOC_HIGHATOMIC,
    ALLOC_KSWAPD,
    ALLOC_NO_WATERMARKS,
    ALLOC_NOFRAGMENT,
    ALLOC_RESERVES,
    ALLOC_WMARK_LOW,
    ALLOC_WMARK_MASK,
    DEFAULT_LOWMEM_RESERVE_RATIO,
    DEFAULT_WATERMARK_SCALE_FACTOR,
    PCP_BATCH_SCALE_MAX,
    WATERMARK_BOOST_FACTOR,
    WMARK_HIGH,
    Watermarks,
    calculate_normal_threshold,
    default_min_free_kbytes,
    gfp_pfmemalloc_flags,
    gfp_to_alloc_flags,
    pcp_high_and_batch,
    setup_per_zone_lowmem_reserve,
    setup_per_zone_wmarks,
)
from kmem.page.zone import (
    LISTS_PER_ZONE,
    ZONE_BELOW_HIGH,
    ZONE_BOOSTED_WATERMARK,
    ZONE_FREE_PAGES,
    ZONE_LOWMEM_RESERVE,
    ZONE_NR_FREE_HIGHATOMIC,
    ZONE_NR_VALUES,
    ZONE_NUMA_HIT,
    ZONE_RECLAIM_ACTIVE,
    ZONE_WATERMARK,
    ZONE_WATERMARK_BOOST,
    Tracer,
    Zone,
)

# Inside a class body Python would mangle the double-underscore names: aliases.
_GFP_KSWAPD_RECLAIM: Final = __GFP_KSWAPD_RECLAIM
_GFP_DIRECT_RECLAIM: Final = __GFP_DIRECT_RECLAIM

DEFAULT_CACHE_SLICE: Final = 16 << 20  # 32 MiB of L3 shared by this machine's 2 CPUs
MAX_CPUS: Final = 4096
EVENT_NAMES: Final = ("mm_page_alloc_zone_locked", "mm_page_pcpu_drain", "mm_page_alloc_extfrag")

# The machine's own block of values (csrc/pcp.c has the same indices).
MACHINE_ALLOCATIONS: Final = 0
MACHINE_FREES: Final = 1
MACHINE_FAILURES: Final = 2
MACHINE_NR_VALUES: Final = 3

# The constants and value indices csrc/pcp.c is compiled with, in its order (it checks them).
_CORE_LAYOUT: Final = (
    MAX_NR_ZONES, NR_PCP_LISTS, PAGEBLOCK_ORDER, MIGRATE_PCPTYPES, PCP, ALLOCATED,
    PCPF_PREV_FREE_HIGH_ORDER, PCP_BATCH_SCALE_MAX,
    ZONE_FREE_PAGES, ZONE_NR_FREE_HIGHATOMIC, ZONE_WATERMARK_BOOST, ZONE_BELOW_HIGH,
    ZONE_BOOSTED_WATERMARK, ZONE_RECLAIM_ACTIVE, ZONE_NUMA_HIT, ZONE_WATERMARK,
    ZONE_LOWMEM_RESERVE, ZONE_NR_VALUES,
    PCP_COUNT, PCP_HIGH, PCP_HIGH_MIN, PCP_HIGH_MAX, PCP_BATCH, PCP_FLAGS, PCP_ALLOC_FACTOR,
    PCP_FREE_COUNT, PCP_NR_VALUES,
    MACHINE_ALLOCATIONS, MACHINE_FREES, MACHINE_FAILURES, MACHINE_NR_VALUES,
)


class _Plan(NamedTuple):
    """What an allocation's gfp flags decide before any zone is looked at."""

    migratetype: int
    highest_zoneidx: int
    zonelist: tuple[Zone, ...]
    fast_flags: int  # ALLOC_WMARK_LOW | ALLOC_NOFRAGMENT? | ALLOC_KSWAPD?


@dataclass(frozen=True, slots=True)
class CpuEvents:
    """What one CPU did to the zones, as trace events and lock acquisitions."""

    cpu: int
    mm_page_alloc_zone_locked: int
    mm_page_pcpu_drain: int
    mm_page_alloc_extfrag: int
    refills: int
    zone_lock: int

    def to_json(self) -> dict[str, int]:
        return {"mm_page_alloc_zone_locked": self.mm_page_alloc_zone_locked,
                "mm_page_pcpu_drain": self.mm_page_pcpu_drain,
                "mm_page_alloc_extfrag": self.mm_page_alloc_extfrag,
                "refills": self.refills, "zone_lock": self.zone_lock}


class PageMachine:
    """One node of page frames, its zones and its CPUs' page lists, as Linux 6.18 runs them.

    >>> machine = PageMachine(nr_cpus=2)     # one 1 GiB Normal zone
    >>> pfn = machine.alloc_pages(0, gfp="GFP_HIGHUSER_MOVABLE", cpu=1)
    >>> machine.events(1).mm_page_alloc_zone_locked   # the pcp refill: one batch of 63
    63
    >>> machine.free_pages(pfn, 0, cpu=1)
    """

    allocations = Counter(MACHINE_ALLOCATIONS)  # blocks handed out since boot
    frees = Counter(MACHINE_FREES)
    failures = Counter(MACHINE_FAILURES)  # allocations that raised OutOfMemoryError

    def __init__(
        self,
        layout: MachineLayout | None = None,
        *,
        nr_cpus: int = 2,
        min_free_kbytes: int | None = None,
        watermark_scale_factor: int = DEFAULT_WATERMARK_SCALE_FACTOR,
        lowmem_reserve_ratio: Sequence[int] = DEFAULT_LOWMEM_RESERVE_RATIO,
        percpu_pagelist_high_fraction: int = 0,
        thp: bool = True,
        pcp: bool = True,
        pcp_batch: int | None = None,
        pcp_high: int | None = None,
        cache_slice: int = DEFAULT_CACHE_SLICE,
        watermark_boost_factor: int = WATERMARK_BOOST_FACTOR,
        tracer: Tracer | None = None,
    ) -> None:
        if layout is None:
            layout = MachineLayout.default()
        if not isinstance(layout, MachineLayout):
            raise InvalidTypeError(f"layout must be a MachineLayout, not {type(layout).__name__}")
        nr_cpus = int_argument(nr_cpus, "nr_cpus")
        if not 1 <= nr_cpus <= MAX_CPUS:
            raise InvalidArgumentError(f"nr_cpus must be in 1..{MAX_CPUS}, got {nr_cpus}")
        watermark_scale_factor = int_argument(watermark_scale_factor, "watermark_scale_factor")
        if not 1 <= watermark_scale_factor <= 3000:
            raise InvalidArgumentError("watermark_scale_factor must be in 1..3000 (sysctl range)")
        ratio = tuple(int_argument(r, "lowmem_reserve_ratio") for r in lowmem_reserve_ratio)
        if len(ratio) != MAX_NR_ZONES or any(r < 0 for r in ratio):
            raise InvalidArgumentError(f"lowmem_reserve_ratio needs {MAX_NR_ZONES} ratios >= 0")
        fraction = int_argument(percpu_pagelist_high_fraction, "percpu_pagelist_high_fraction")
        if fraction and fraction < 8:
            raise InvalidArgumentError("percpu_pagelist_high_fraction must be 0 or >= 8")
        managed = layout.counts("managed")
        present = layout.counts("present")
        if min_free_kbytes is None:
            min_free_kbytes = default_min_free_kbytes(
                managed, present, thp=thp, watermark_scale_factor=watermark_scale_factor)
        min_free_kbytes = int_argument(min_free_kbytes, "min_free_kbytes")
        if min_free_kbytes < 0:
            raise InvalidArgumentError(f"min_free_kbytes must be >= 0, got {min_free_kbytes}")
        for what, value in (("pcp_batch", pcp_batch), ("pcp_high", pcp_high)):
            if value is not None and int_argument(value, what) < 1:
                raise InvalidArgumentError(f"{what} must be >= 1, got {value}")
        self.layout: Final = layout
        self.node: Final = layout.node
        self.nr_cpus: Final = nr_cpus
        self.min_free_kbytes: Final = min_free_kbytes
        self.watermark_scale_factor: Final = watermark_scale_factor
        self.lowmem_reserve_ratio: Final = ratio
        self.percpu_pagelist_high_fraction: Final = fraction
        self.pcp_enabled: Final = bool(pcp)
        self.nr_pages: Final = layout.end_pfn
        nr_lists = MAX_NR_ZONES * LISTS_PER_ZONE + MAX_NR_ZONES * nr_cpus * NR_PCP_LISTS
        self.mem_map: Final = MemMap(self.nr_pages, NR_PAGE_ORDERS, nr_lists)
        state = self.mem_map.state
        state[: self.nr_pages] = bytes([RESERVED]) * self.nr_pages
        self._state: Final = state
        nr_pageblocks = len(state) >> PAGEBLOCK_ORDER
        self.pageblock_mt: Final = bytearray([MIGRATE_MOVABLE]) * nr_pageblocks
        self._alloc_mt: Final = bytearray(self.nr_pages)
        # prep_new_page's set_page_pfmemalloc: 1 on the first frame of a block that only the
        # ALLOC_NO_WATERMARKS pass (__GFP_MEMALLOC, the memory reserves) could give; the slab
        # layer makes such a block a pfmemalloc slab (slab_set_pfmemalloc)
        self._pfmemalloc: Final = bytearray(self.nr_pages)
        self._reserve_used = False  # set by _alloc_slowpath when its reserve pass served
        self._machine_values: Final = array("q", bytes(8 * MACHINE_NR_VALUES))
        self._values: Final = memoryview(self._machine_values)
        self._zone_values: Final = array("q", bytes(8 * MAX_NR_ZONES * ZONE_NR_VALUES))
        self._pcp_values: Final = array("q", bytes(8 * MAX_NR_ZONES * nr_cpus * PCP_NR_VALUES))
        self.zones: Final = tuple(self._make_zone(i, tracer, watermark_boost_factor)
                                  for i in range(MAX_NR_ZONES))
        self._boot_free()
        self.watermarks: Final = setup_per_zone_wmarks(managed, min_free_kbytes,
                                                       watermark_scale_factor)
        reserves = setup_per_zone_lowmem_reserve(managed, ratio)
        for zone in self.zones:
            zone.watermark = tuple(self.watermarks[zone.index])
            zone.lowmem_reserve = reserves[zone.index]
        self._setup_pagesets(pcp_batch, pcp_high, cache_slice)
        # The fallback zonelist: zones with managed pages, highest first.
        self._zonelist: Final = tuple(z for z in reversed(self.zones) if z.managed)
        self._plans: dict[int, _Plan] = {}
        self._gfp_values: dict[str, int] = {}
        self._buddy_events = [[0, 0, 0] for _ in range(nr_cpus)]  # zone_locked, extfrag, lock
        # The core this machine runs on (None: the pure one), chosen once, here.
        self.compiled_core: Final = core if self.pcp_enabled else None
        if self.compiled_core is not None:
            self._use_compiled_core(self.compiled_core)

    def _use_compiled_core(self, compiled: ModuleType) -> None:
        """Serve order-0 pcp hits in the compiled core (csrc/pcp.c, kmem._core.PcpCore): it
        works on this machine's own objects and mem_map columns, and hands every other call
        (refills, drains, other orders, errors), before any change, to the methods below."""
        pcp_core = compiled.PcpCore(
            machine=self, state=self._state, alloc_mt=self._alloc_mt, pfmemalloc=self._pfmemalloc,
            pageblock_mt=self.pageblock_mt, next=self.mem_map.next, prev=self.mem_map.prev,
            machine_values=self._machine_values, zone_values=self._zone_values,
            pcp_values=self._pcp_values, nr_pages=self.nr_pages, nr_cpus=self.nr_cpus,
            pcp_list_base=MAX_NR_ZONES * LISTS_PER_ZONE, gfp_kernel=GFP_KERNEL,
            alloc_highatomic=ALLOC_HIGHATOMIC, alloc_reserves=ALLOC_RESERVES,
            alloc_kswapd=ALLOC_KSWAPD, wmark_high=WMARK_HIGH,
            pure_alloc_pages=self.alloc_pages, pure_free_pages=self.free_pages,
            layout=_CORE_LAYOUT)
        self.alloc_pages = pcp_core.alloc_pages  # type: ignore[method-assign]
        self.free_pages = pcp_core.free_pages  # type: ignore[method-assign]

    # -- boot --------------------------------------------------------------------------------

    def _make_zone(self, index: int, tracer: Tracer | None, boost_factor: int) -> Zone:
        layout = next((z for z in self.layout.zones if z.index == index), None)
        values = memoryview(self._zone_values)[index * ZONE_NR_VALUES:][:ZONE_NR_VALUES]
        zone = Zone(index, layout, self.mem_map.state, self.mem_map.next, self.mem_map.prev,
                    self.pageblock_mt, self._alloc_mt, index * LISTS_PER_ZONE, values)
        zone.tracer = tracer
        zone.watermark_boost_factor = boost_factor
        return zone

    def _boot_free(self) -> None:
        """memblock_free_all: each zone's managed frames, in the largest aligned blocks."""
        for zone in self.zones:
            if zone.managed:
                self._state[zone.managed_start : zone.end_pfn] = bytes(zone.managed)
                for pfn, order in boot_blocks(zone.managed_start, zone.end_pfn, MAX_PAGE_ORDER):
                    zone.free_boot_block(pfn, order)

    def _setup_pagesets(
        self, pcp_batch: int | None, pcp_high: int | None, cache_slice: int
    ) -> None:
        """setup_per_cpu_pageset + zone_pcp_update(zone, 0): every populated zone's pcps."""
        base = MAX_NR_ZONES * LISTS_PER_ZONE
        nxt, prv = self.mem_map.next, self.mem_map.prev
        pcp_values = memoryview(self._pcp_values)
        for zone in self.zones:
            zone.pcps = []
            for cpu in range(self.nr_cpus):
                which = zone.index * self.nr_cpus + cpu  # csrc/pcp.c finds a pcp's lists so
                zone.pcps.append(PerCpuPages(
                    zone, cpu, base + which * NR_PCP_LISTS, nxt, prv, self._state,
                    self.pageblock_mt,
                    pcp_values[which * PCP_NR_VALUES:][:PCP_NR_VALUES]))
            if not zone.populated:
                continue  # unpopulated zones keep the boot pageset (batch 1, high 0)
            batch, high_min, high_max = pcp_high_and_batch(
                zone.managed, zone.watermark[1], self.nr_cpus, self.percpu_pagelist_high_fraction,
                pcp_batch)
            if pcp_high is not None:
                high_min = high_max = pcp_high
            free_high_batch = (cache_slice >> 12) > 3 * batch
            for pcp in zone.pcps:
                pcp.batch, pcp.high_min, pcp.high_max = batch, high_min, high_max
                pcp.flags = PCPF_FREE_HIGH_BATCH if free_high_batch else 0

    # -- lookups -----------------------------------------------------------------------------

    def zone(self, name: str) -> Zone:
        """The zone of that name (an empty one if the layout has none)."""
        if name not in ZONE_NAMES:
            raise UnknownZoneError(
                f"unknown zone {name!r} (Linux's zones: {', '.join(ZONE_NAMES)})")
        return self.zones[ZONE_NAMES.index(name)]

    def zone_of(self, pfn: int) -> Zone:
        """The zone whose span holds pfn."""
        return self._zone_of(int_argument(pfn, "pfn"))

    def _zone_of(self, pfn: int) -> Zone:
        for zone in self._zonelist:
            if zone.start_pfn <= pfn < zone.end_pfn:
                return zone
        raise PfnNotInZoneError(f"pfn {pfn:#x} lies in no zone of this machine")

    def pcp(self, zone: str, cpu: int) -> PerCpuPages:
        """CPU ``cpu``'s per-CPU pages of zone ``zone``."""
        pcps: list[PerCpuPages] = self.zone(zone).pcps
        return pcps[self._check_cpu(cpu)]

    def _check_cpu(self, cpu: object) -> int:
        cpu = int_argument(cpu, "cpu")
        if not 0 <= cpu < self.nr_cpus:
            raise NoSuchCpuError(f"cpu {cpu} is not in 0..{self.nr_cpus - 1}")
        return cpu

    def _gfp_value(self, gfp: int | str) -> int:
        if isinstance(gfp, str):
            value = self._gfp_values.get(gfp)
            if value is None:
                value = self._gfp_values[gfp] = parse_gfp_flags(gfp)
            return value
        value = int_argument(gfp, "gfp")
        if value < 0:
            raise InvalidArgumentError(f"gfp flags must be >= 0, got {value}")
        return value

    def _plan(self, gfp: int) -> _Plan:
        """prepare_alloc_pages + alloc_flags_nofragment, memoised per gfp value."""
        plan = self._plans.get(gfp)
        if plan is not None:
            return plan
        mt = gfp_migratetype(gfp)  # (gfp >= 0: every caller took it through _gfp_value)
        highest = gfp_zone(gfp)
        zonelist = tuple(z for z in self._zonelist if z.index <= highest)
        if not zonelist:
            raise NoZoneForGfpError(
                f"gfp flags {gfp:#x} allow zones up to {ZONE_NAMES[highest]}, where this"
                " machine has no managed pages")
        flags = ALLOC_WMARK_LOW | (gfp & _GFP_KSWAPD_RECLAIM)
        # With CONFIG_ZONE_DMA32 and one node, a Normal-first allocation may not fragment
        # until every zone has been tried.
        if zonelist[0].index == ZONE_NORMAL:
            flags |= ALLOC_NOFRAGMENT
        plan = self._plans[gfp] = _Plan(mt, highest, zonelist, flags)
        return plan

    # -- allocation ----------------------------------------------------------------------------

    def alloc_pages(self, order: int = 0, gfp: int | str = GFP_KERNEL, cpu: int = 0) -> int:
        """Allocate 2**order frames as __alloc_pages(gfp, order) on ``cpu``; return the pfn.

        Raises OutOfMemoryError when no zone the flags allow can serve it.
        """
        if order.__class__ is not int or not 0 <= order <= MAX_PAGE_ORDER:
            order = int_argument(order, "order")
            if not 0 <= order <= MAX_PAGE_ORDER:
                raise InvalidArgumentError(f"order must be in 0..{MAX_PAGE_ORDER}, got {order}")
        if cpu.__class__ is not int or not 0 <= cpu < self.nr_cpus:
            cpu = self._check_cpu(cpu)
        gfp_value = self._gfp_value(gfp)
        plan = self._plans.get(gfp_value) or self._plan(gfp_value)
        pfn = self._get_page_from_freelist(order, plan, plan.fast_flags, cpu)
        reserve = False
        if pfn < 0:
            self._reserve_used = False
            pfn = self._alloc_slowpath(order, gfp_value, plan, cpu)
            if pfn < 0:
                self._values[MACHINE_FAILURES] += 1
                raise OutOfMemoryError(
                    f"no zone up to {ZONE_NAMES[plan.highest_zoneidx]} can give an order-{order}"
                    f" block of type {plan.migratetype} ({self.nr_free_pages} pages free)")
            reserve = self._reserve_used
        self._pfmemalloc[pfn] = reserve
        self._state[pfn] = ALLOCATED | order
        self._alloc_mt[pfn] = plan.migratetype
        self._values[MACHINE_ALLOCATIONS] += 1
        return pfn

    def _get_page_from_freelist(self, order: int, plan: _Plan, flags: int, cpu: int) -> int:
        highest = plan.highest_zoneidx
        while True:
            for zone in plan.zonelist:
                if zone._values[ZONE_BELOW_HIGH] or not zone.zone_watermark_fast(
                        order, zone.wmark(WMARK_HIGH), highest, flags):
                    zone.below_high = True
                    if not zone.zone_watermark_fast(
                            order, zone.wmark(flags & ALLOC_WMARK_MASK), highest, flags
                    ) and not flags & ALLOC_NO_WATERMARKS:
                        continue
                pfn = self._rmqueue(zone, order, plan.migratetype, flags, cpu)
                if pfn >= 0:
                    if flags & ALLOC_HIGHATOMIC:
                        zone.reserve_highatomic_pageblock(pfn, order)
                    return pfn
            if not flags & ALLOC_NOFRAGMENT:
                return -1
            flags &= ~ALLOC_NOFRAGMENT  # every zone tried: fragmenting fallbacks allowed now

    def _rmqueue(self, zone: Zone, order: int, mt: int, flags: int, cpu: int) -> int:
        """rmqueue: the pcp for its orders, else (or if the pcp came back empty) the buddy."""
        pfn = -1
        if self.pcp_enabled and (order <= 3 or order == PAGEBLOCK_ORDER):
            pfn = zone.pcps[cpu].rmqueue_pcplist(order, mt, flags)
        if pfn < 0:
            zone.cpu = cpu
            locked, extfrag = zone.zone_locked, zone.extfrag
            pfn = zone.rmqueue_buddy(order, mt, flags)
            counts = self._buddy_events[cpu]
            counts[0] += zone.zone_locked - locked
            counts[1] += zone.extfrag - extfrag
            counts[2] += 1
        values = zone._values  # (the hot path indexes the zone's values; see counters.py)
        if flags & ALLOC_KSWAPD and values[ZONE_BOOSTED_WATERMARK]:
            # wakeup_kswapd (found or not): kswapd's boosted reclaim would end the boost.
            zone.boosted_watermark = False
            zone.watermark_boost = 0
        if pfn >= 0:
            values[ZONE_NUMA_HIT] += 1
        return pfn

    def _alloc_slowpath(self, order: int, gfp: int, plan: _Plan, cpu: int) -> int:
        flags = gfp_to_alloc_flags(gfp, order)
        pfn = self._get_page_from_freelist(order, plan, flags, cpu)
        if pfn >= 0:
            return pfn
        reserve = gfp_pfmemalloc_flags(gfp)
        if reserve:
            flags = reserve | (flags & ALLOC_KSWAPD)
            pfn = self._get_page_from_freelist(order, plan, flags, cpu)
            if pfn >= 0:
                self._reserve_used = True
                return pfn
        if not gfp & _GFP_DIRECT_RECLAIM:
            return -1
        # Direct reclaim found nothing to reclaim (kmem has no LRU): as Linux then does,
        # give a highatomic pageblock back, drain every pcp, and try once more.
        for zone in plan.zonelist:
            if zone.unreserve_highatomic_pageblock(plan.migratetype, False):
                break
        self.drain_all_pages()
        pfn = self._get_page_from_freelist(order, plan, flags, cpu)
        self._reserve_used = pfn >= 0 and bool(flags & ALLOC_NO_WATERMARKS)
        return pfn

    def page_is_pfmemalloc(self, pfn: int) -> bool:
        """Whether the allocated block at ``pfn`` came from the memory reserves: the page
        allocator gave it only in its ALLOC_NO_WATERMARKS pass (page_is_pfmemalloc). A block
        that is not allocated, or not at its first frame, is not."""
        pfn = int_argument(pfn, "pfn")
        if not 0 <= pfn < self.nr_pages:
            raise PfnNotInZoneError(f"pfn {pfn:#x} lies outside this machine's frames")
        return self._state[pfn] & KIND_MASK == ALLOCATED and bool(self._pfmemalloc[pfn])

    # -- free --------------------------------------------------------------------------------

    def free_pages(self, pfn: int, order: int, cpu: int = 0) -> None:
        """Free the order-``order`` block at pfn on ``cpu`` (free_frozen_pages)."""
        if pfn.__class__ is not int or order.__class__ is not int:
            pfn = int_argument(pfn, "pfn")
            order = int_argument(order, "order")
        if cpu.__class__ is not int or not 0 <= cpu < self.nr_cpus:
            cpu = self._check_cpu(cpu)
        zone = self._zone_of(pfn)
        if not 0 <= order <= MAX_PAGE_ORDER or self._state[pfn] != ALLOCATED | order:
            raise self._bad_free(zone, pfn, order)
        self._state[pfn] = 0
        self._values[MACHINE_FREES] += 1
        if not self.pcp_enabled or not pcp_allowed_order(order):
            zone.cpu = cpu
            self._buddy_events[cpu][2] += 1
            zone.split_large_buddy(pfn, order)
            return
        mt = self.pageblock_mt[pfn >> PAGEBLOCK_ORDER]
        if mt >= MIGRATE_PCPTYPES:
            if mt == MIGRATE_ISOLATE:
                zone.cpu = cpu
                self._buddy_events[cpu][2] += 1
                zone.split_large_buddy(pfn, order)
                return
            mt = MIGRATE_MOVABLE  # highatomic pages wait on the movable list
        zone.pcps[cpu].free_frozen_page_commit(pfn, order, mt)

    def _bad_free(self, zone: Zone, pfn: int, order: int) -> KmemError:
        if not 0 <= order <= MAX_PAGE_ORDER:
            return InvalidArgumentError(f"order must be in 0..{MAX_PAGE_ORDER}, got {order}")
        first, block_order, kind = self._block_at(pfn)
        if kind == "allocated" and first == pfn:
            return WrongOrderError(
                f"pfn {pfn:#x} was allocated at order {block_order}, freed at order {order}")
        if kind in ("free", "pcp"):
            where = "a per-CPU list" if kind == "pcp" else f"zone {zone.name}'s free lists"
            return DoubleFreeError(
                f"pfn {pfn:#x} is already free (in the order-{block_order} block at pfn"
                f" {first:#x} on {where})")
        if kind == "reserved":
            return InvalidFreeError(f"pfn {pfn:#x} is reserved memory, never allocated")
        return InvalidFreeError(
            f"pfn {pfn:#x} is not the start of an allocated block (it lies inside the"
            f" order-{block_order} block allocated at pfn {first:#x})")

    def _block_at(self, pfn: int) -> tuple[int, int, str]:
        state = self._state
        if state[pfn] == RESERVED:
            return pfn, 0, "reserved"
        for order in range(NR_PAGE_ORDERS):
            first = pfn & ~((1 << order) - 1)
            kind = state[first]
            if kind and kind != RESERVED and kind & ORDER_MASK == order:
                name = {FREE: "free", PCP: "pcp", ALLOCATED: "allocated"}[kind & KIND_MASK]
                return first, order, name
        raise AssertionError(f"pfn {pfn:#x} lies in no block: the mem_map is corrupt")

    def block_at(self, pfn: int) -> tuple[int, int, str]:
        """(first pfn, order, "free" | "pcp" | "allocated" | "reserved") of pfn's block."""
        pfn = int_argument(pfn, "pfn")
        if not 0 <= pfn < self.nr_pages:
            raise PfnNotInZoneError(f"pfn {pfn:#x} lies outside this machine's frames")
        return self._block_at(pfn)

    # -- pcp control ---------------------------------------------------------------------------

    def drain_all_pages(self) -> None:
        """drain_all_pages(NULL): every CPU's pcp of every zone back to the buddy lists."""
        for zone in self.zones:
            for pcp in zone.pcps:
                pcp.drain()

    def vmstat_tick(self) -> None:
        """One vmstat_update on every CPU (Linux runs it about once a second): each pcp's high
        decays towards high_min and what exceeds it drains."""
        for zone in self.zones:
            if zone.populated:
                for pcp in zone.pcps:
                    pcp.decay_pcp_high()

    def warm_pcp(self, cpu: int, count: int, *, order: int = 0,
                 migratetype: int = MIGRATE_MOVABLE, zone: str = "Normal") -> int:
        """Put up to ``count`` blocks on a CPU's pcp list, counting no event: the warm state
        a trace starts in without showing it. Return how many were put there."""
        pcp = self.pcp(zone, cpu)
        count = int_argument(count, "count")
        order = int_argument(order, "order")
        if count < 0 or not 0 <= order <= MAX_PAGE_ORDER or not pcp_allowed_order(order):
            raise InvalidArgumentError("warm_pcp needs count >= 0 and an order the pcp keeps")
        if not 0 <= int_argument(migratetype, "migratetype") < MIGRATE_PCPTYPES:
            raise InvalidArgumentError("warm_pcp needs a migratetype with pcp lists (0..2)")
        return pcp.fill(order, migratetype, count)

    def preferred_zone(self, gfp: int | str) -> Zone:
        """The first zone of the zonelist an allocation with these flags walks."""
        plan = self._plan(self._gfp_value(gfp))
        return plan.zonelist[0]

    def gfp_pcp_migratetype(self, gfp: int | str) -> int:
        """The pcp list type an allocation with these flags takes from (-1: none)."""
        mt = self._plan(self._gfp_value(gfp)).migratetype
        return mt if mt < MIGRATE_PCPTYPES else -1

    # -- queries ------------------------------------------------------------------------------

    @property
    def nr_free_pages(self) -> int:
        """Free pages in the buddy lists of every zone (NR_FREE_PAGES; pcp pages excluded)."""
        return sum(z.free_pages for z in self.zones)

    def events(self, cpu: int) -> CpuEvents:
        """The trace events this CPU's allocations and frees caused since boot, and its
        zone->lock acquisitions."""
        cpu = self._check_cpu(cpu)
        pcps = [z.pcps[cpu] for z in self.zones if z.pcps]
        zone_locked, extfrag, locks = self._buddy_events[cpu]
        return CpuEvents(
            cpu,
            mm_page_alloc_zone_locked=zone_locked + sum(p.refill_events for p in pcps),
            mm_page_pcpu_drain=sum(p.drains for p in pcps),
            mm_page_alloc_extfrag=extfrag + sum(p.refill_extfrag for p in pcps),
            refills=sum(p.refills for p in pcps),
            zone_lock=locks + sum(p.refill_calls + p.drain_calls for p in pcps),
        )

    def buddyinfo(self) -> str:
        from kmem.page.vmstat import format_buddyinfo

        return format_buddyinfo(self)

    def pagetypeinfo(self) -> str:
        from kmem.page.vmstat import format_pagetypeinfo

        return format_pagetypeinfo(self)

    def zoneinfo(self) -> str:
        from kmem.page.vmstat import format_zoneinfo

        return format_zoneinfo(self)

    def stat_threshold(self, zone: Zone) -> int:
        return calculate_normal_threshold(zone.managed, self.nr_cpus)

    def watermarks_of(self, name: str) -> Watermarks:
        return Watermarks(*self.zone(name).watermark)

    # -- invariants ----------------------------------------------------------------------------

    def check(self) -> None:
        """Verify every invariant of frames, zones, pageblocks and pcps (AssertionError)."""
        for zone in self.zones:
            zone.check_lists()
            for pcp in zone.pcps:
                pcp.check()
        self._check_frames()

    def _check_frames(self) -> None:
        state = self._state
        spans = sorted((z for z in self.zones if z.spanned), key=lambda z: z.start_pfn)
        pfn = 0
        pcp_pages = 0
        for zone in spans:
            if state.count(RESERVED, pfn, zone.managed_start) != zone.managed_start - pfn:
                raise AssertionError(f"a frame below zone {zone.name}'s managed pages is in use")
            pfn = zone.managed_start
            while pfn < zone.end_pfn:
                kind = state[pfn]
                if kind & KIND_MASK not in (FREE, PCP, ALLOCATED) or kind == BEYOND:
                    raise AssertionError(f"pfn {pfn:#x} has state {kind:#x} but starts no block")
                order = kind & ORDER_MASK
                end = pfn + (1 << order)
                if order > MAX_PAGE_ORDER or end > zone.end_pfn or pfn & ((1 << order) - 1):
                    raise AssertionError(f"block at pfn {pfn:#x} of order {order} is out of place")
                if state.count(0, pfn + 1, end) != end - pfn - 1:
                    raise AssertionError(f"block at pfn {pfn:#x} overlaps another block")
                if kind & KIND_MASK == PCP:
                    pcp_pages += 1 << order
                pfn = end
        if state.count(RESERVED, pfn, self.nr_pages) != self.nr_pages - pfn:
            raise AssertionError("a frame past the last zone is in use")
        if state.count(BEYOND, self.nr_pages) != len(state) - self.nr_pages:
            raise AssertionError("the padding past the last frame was overwritten")
        counted = sum(p.count for z in self.zones for p in z.pcps)
        if pcp_pages != counted:
            raise AssertionError(f"{pcp_pages} frames are in pcp blocks, the pcps count {counted}")
        if max(self.pageblock_mt) > MIGRATE_ISOLATE:
            raise AssertionError("a pageblock has no valid migratetype")
