"""Per-CPU page lists (Linux's struct per_cpu_pages), in front of a zone's buddy lists.

Design: each CPU has one PerCpuPages per zone. It keeps NR_PCP_LISTS lists: one per
migratetype (UNMOVABLE, MOVABLE, RECLAIMABLE) for each order 0..PAGE_ALLOC_COSTLY_ORDER, and two
for the THP order (non-movable, movable): order_to_pindex. Pages on them are in state PCP in
the machine's mem_map, linked through the same next/prev columns as the buddy lists.

    allocation (rmqueue_pcplist)  head of the list; an empty list is refilled first by
                                  rmqueue_bulk, nr_pcp_alloc() blocks in one zone lock: that
                                  refill's mm_page_alloc_zone_locked events
    free (free_frozen_page_commit) to the list head; once count >= high (nr_pcp_high), drain
                                  nr_pcp_free() pages with free_pcppages_bulk: from list
                                  tails, round-robin from the list just freed to, each page
                                  an mm_page_pcpu_drain event back to the buddy lists
    vmstat tick (decay_pcp_high)  high drifts back to high_min by an eighth, the excess drains

Tuning (6.18): batch from zone_batchsize; high_min/high_max from zone_highsize (the low
watermark, resp. managed/8, over the CPUs); high moves between them: up by a batch per refill
(unless the zone is below its high mark), up to free_count + batch when frees fill the list,
down when the zone is below high, down by batch << 5 on a run of high-order frees (free_high),
down by an eighth per vmstat tick. alloc_factor doubles the order-0 refill (up to 2**5) while
allocations run without frees, and halves on each free; free_count counts consecutive freed
pages (halved by each allocation) and sizes drains. high stays 0 until the first allocation or
free touches the pcp, as Linux leaves an untouched pcp.

Invariants (check): every page on a list is in state PCP of the list's order, inside the zone;
count is the pages on the lists; high is 0 (untouched) or at least high_min (within
[high_min, high_max] but after a vmstat tick that met a larger count);
0 <= alloc_factor <= PCP_BATCH_SCALE_MAX.

Storage: count, high, high_min, high_max, batch, flags, alloc_factor and free_count are int64s in
a block of PCP_NR_VALUES in the machine's pcp buffer (kmem.page.counters), where the compiled
core's order-0 fast paths (csrc/pcp.c) update them in place.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Final

from kmem.page.counters import Counter
from kmem.page.mem_map import PCP, list_add, list_del, list_entries
from kmem.page.migratetype import (
    HPAGE_PMD_ORDER,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_ORDER,
    ZONE_MOVABLE,
)
from kmem.page.watermarks import PCP_BATCH_SCALE_MAX, WMARK_HIGH
from kmem.page.zone import ZONE_BELOW_HIGH, ZONE_RECLAIM_ACTIVE

if TYPE_CHECKING:
    from kmem.page.zone import Zone

NR_LOWORDER_PCP_LISTS: Final = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_THP: Final = 2
NR_PCP_LISTS: Final = NR_LOWORDER_PCP_LISTS + NR_PCP_THP

PCPF_PREV_FREE_HIGH_ORDER: Final = 1 << 0
PCPF_FREE_HIGH_BATCH: Final = 1 << 1

# A pcp's block in the machine's pcp buffer (csrc/pcp.c has the same indices).
PCP_COUNT: Final = 0
PCP_HIGH: Final = 1
PCP_HIGH_MIN: Final = 2
PCP_HIGH_MAX: Final = 3
PCP_BATCH: Final = 4
PCP_FLAGS: Final = 5
PCP_ALLOC_FACTOR: Final = 6
PCP_FREE_COUNT: Final = 7
PCP_NR_VALUES: Final = 8


def order_to_pindex(migratetype: int, order: int) -> int:
    """The list a block of this type and order goes on."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS + (migratetype == MIGRATE_MOVABLE)
    return MIGRATE_PCPTYPES * order + migratetype


def pindex_to_order(pindex: int) -> int:
    return HPAGE_PMD_ORDER if pindex >= NR_LOWORDER_PCP_LISTS else pindex // MIGRATE_PCPTYPES


_PINDEX_ORDER: Final = tuple(pindex_to_order(i) for i in range(NR_PCP_LISTS))


class PerCpuPages:
    """One CPU's page lists for one zone."""

    __slots__ = ("_heads", "_next", "_pageblock_mt", "_prev", "_state", "_values", "cpu",
                 "drain_calls", "drains", "refill_calls", "refill_events", "refill_extfrag",
                 "refills", "zone")

    count = Counter(PCP_COUNT)
    high = Counter(PCP_HIGH)
    high_min = Counter(PCP_HIGH_MIN)
    high_max = Counter(PCP_HIGH_MAX)
    batch = Counter(PCP_BATCH)
    flags = Counter(PCP_FLAGS)
    alloc_factor = Counter(PCP_ALLOC_FACTOR)
    free_count = Counter(PCP_FREE_COUNT)

    def __init__(self, zone: Zone, cpu: int, list_base: int, nxt: array[int], prv: array[int],
                 state: bytearray, pageblock_mt: bytearray, values: memoryview) -> None:
        """``values``: this pcp's PCP_NR_VALUES int64s (format 'q'), zeroed."""
        if values.format != "q" or len(values) != PCP_NR_VALUES:
            raise ValueError(f"a pcp needs {PCP_NR_VALUES} int64 values")
        self.zone = zone
        self.cpu = cpu
        # The list heads never move: ~(list_base + pindex) (the compiled core relies on it).
        self._heads: Final = tuple(~(list_base + i) for i in range(NR_PCP_LISTS))
        self._next = nxt
        self._prev = prv
        self._state = state
        self._pageblock_mt = pageblock_mt
        self._values: Final = values
        self.batch = 1  # BOOT_PAGESET_BATCH until the machine sizes it
        # What this CPU did to the zone, for its trace: rmqueue_bulk calls (each a zone lock)
        # and those that brought pages, their mm_page_alloc_zone_locked and
        # mm_page_alloc_extfrag events; free_pcppages_bulk calls and mm_page_pcpu_drain events.
        self.refill_calls = 0
        self.refills = 0
        self.refill_events = 0
        self.refill_extfrag = 0
        self.drain_calls = 0
        self.drains = 0

    def list(self, pindex: int) -> list[int]:
        """The pfns on list ``pindex``, head first."""
        return list_entries(self._next, self._heads[pindex])

    def list_empty(self, order: int, mt: int) -> bool:
        """Whether the list a block of this order and type comes from is empty."""
        return self._next[self._heads[order_to_pindex(mt, order)]] < 0

    # -- allocation ------------------------------------------------------------------------

    def nr_pcp_alloc(self, order: int) -> int:
        """How many blocks the next refill of an order-``order`` list brings."""
        base = self.batch
        high = self.high = min(max(self.high, self.high_min), self.high_max)
        if high < base:
            return 1  # pcp disabled, or a boot pageset
        batch = base if order else base << self.alloc_factor
        if self.high_min != self.high_max and not self.zone.below_high:
            high = self.high = min(high + batch, self.high_max)
        if not order:
            max_nr_alloc = max(high - self.count - base, base)
            if batch <= max_nr_alloc and self.alloc_factor < PCP_BATCH_SCALE_MAX:
                self.alloc_factor += 1
            batch = min(batch, max_nr_alloc)
        if batch > 1:
            batch = max(batch >> order, 2)
        return batch

    def rmqueue_pcplist(self, order: int, mt: int, flags: int) -> int:
        """A block from this CPU's list (refilled from the zone when empty); -1 if none."""
        values = self._values  # (the hot path indexes this pcp's values; see counters.py)
        values[PCP_FREE_COUNT] >>= 1
        head = self._heads[order_to_pindex(mt, order)]
        nxt = self._next
        pfn = nxt[head]
        if pfn < 0:
            zone = self.zone
            zone.cpu = self.cpu
            locked, extfrag = zone.zone_locked, zone.extfrag
            got = zone.rmqueue_bulk(order, self.nr_pcp_alloc(order), mt, flags, head)
            self.refill_calls += 1
            self.refills += got > 0
            self.refill_events += zone.zone_locked - locked
            self.refill_extfrag += zone.extfrag - extfrag
            self.count += got << order
            pfn = nxt[head]
            if pfn < 0:
                return -1
        list_del(nxt, self._prev, pfn)
        values[PCP_COUNT] -= 1 << order
        return pfn

    # -- free --------------------------------------------------------------------------------

    def nr_pcp_high(self, batch: int, free_high: bool) -> int:
        """The count at which this free drains, tuning pcp->high on the way."""
        values = self._values
        high_min, high_max = values[PCP_HIGH_MIN], values[PCP_HIGH_MAX]
        high = values[PCP_HIGH] = min(max(values[PCP_HIGH], high_min), high_max)
        if not high:  # only an unpopulated zone's boot pageset, to which no page is ever freed
            return 0  # pragma: no cover
        if free_high:
            self.high = max(high - (batch << PCP_BATCH_SCALE_MAX), high_min)
            return 0
        zone_values = self.zone._values
        # Never set: kmem has no kswapd (zone.py's docstring); Linux's rule, kept.
        if zone_values[ZONE_RECLAIM_ACTIVE]:  # pragma: no cover
            self.high = max(high - max(self.free_count, batch), high_min)
            return min(batch << 2, self.high)
        if high_min == high_max:
            return high
        if zone_values[ZONE_BELOW_HIGH]:
            self.high = max(high - max(self.free_count, batch), high_min)
            return max(self.count, high_min)
        if values[PCP_COUNT] >= high:
            need_high = self.free_count + batch
            if self.high < need_high:
                self.high = min(max(need_high, high_min), high_max)
        return high

    def nr_pcp_free(self, batch: int, high: int, free_high: bool) -> int:
        """How many pages this drain frees."""
        if free_high:
            return min(self.count, batch << PCP_BATCH_SCALE_MAX)
        if high < batch:
            return 1
        return min(max(self.free_count, batch), high - batch)

    def free_frozen_page_commit(self, pfn: int, order: int, mt: int) -> None:
        """Put a freed block at the head of its list; drain when the list is over high."""
        values = self._values  # (the hot path indexes this pcp's values; see counters.py)
        values[PCP_ALLOC_FACTOR] >>= 1
        pindex = order_to_pindex(mt, order)
        list_add(self._next, self._prev, self._heads[pindex], pfn)
        self._state[pfn] = PCP | order
        values[PCP_COUNT] += 1 << order
        batch = values[PCP_BATCH]
        free_high = False
        if order and order <= PAGE_ALLOC_COSTLY_ORDER:
            free_high = bool(
                self.free_count >= batch + self.high_min // 2
                and self.flags & PCPF_PREV_FREE_HIGH_ORDER
                and (not self.flags & PCPF_FREE_HIGH_BATCH or self.count >= batch)
            )
            self.flags |= PCPF_PREV_FREE_HIGH_ORDER
        elif values[PCP_FLAGS] & PCPF_PREV_FREE_HIGH_ORDER:
            values[PCP_FLAGS] &= ~PCPF_PREV_FREE_HIGH_ORDER
        if values[PCP_FREE_COUNT] < batch << PCP_BATCH_SCALE_MAX:
            values[PCP_FREE_COUNT] += 1 << order
        high = self.nr_pcp_high(batch, free_high)
        if values[PCP_COUNT] < high:
            return
        self.free_pcppages_bulk(self.nr_pcp_free(batch, high, free_high), pindex)
        zone = self.zone
        if zone.below_high and zone.zone_watermark_ok(0, zone.wmark(WMARK_HIGH), ZONE_MOVABLE, 0):
            zone.below_high = False

    def free_pcppages_bulk(self, count: int, pindex: int) -> None:
        """Give ``count`` pages back to the buddy lists under one zone lock: list by list,
        round-robin from ``pindex``, each list from its tail (its coldest page)."""
        count = min(self.count, count)
        if count <= 0:
            return
        zone = self.zone
        zone.lock_count += 1
        zone.cpu = self.cpu
        self.drain_calls += 1
        nxt, prv, heads = self._next, self._prev, self._heads
        pageblock_mt = self._pageblock_mt
        tracer = zone.tracer
        pindex -= 1
        while count > 0:
            while True:  # the next non-empty list
                pindex = pindex + 1 if pindex < NR_PCP_LISTS - 1 else 0
                if nxt[heads[pindex]] >= 0:
                    break
            order = _PINDEX_ORDER[pindex]
            nr_pages = 1 << order
            head = heads[pindex]
            while True:
                pfn = prv[head]
                list_del(nxt, prv, pfn)
                count -= nr_pages
                self.count -= nr_pages
                mt = pageblock_mt[pfn >> PAGEBLOCK_ORDER]
                zone.free_one_page(pfn, order, mt)
                self.drains += 1
                if tracer is not None:
                    tracer("mm_page_pcpu_drain", self.cpu, pfn, order, mt, ())
                if count <= 0 or nxt[head] < 0:
                    break

    def fill(self, order: int, mt: int, count: int) -> int:
        """Refill a list with up to ``count`` blocks as rmqueue_bulk would, counting no event
        (a warm start); return how many came."""
        zone = self.zone
        saved = (zone.zone_locked, zone.extfrag, zone.lock_count, zone.claims)
        tracer, zone.tracer = zone.tracer, None
        try:
            got = zone.rmqueue_bulk(order, count, mt, 0, self._heads[order_to_pindex(mt, order)])
        finally:
            zone.tracer = tracer
        zone.zone_locked, zone.extfrag, zone.lock_count, zone.claims = saved
        self.count += got << order
        # (high_max 0 only in an unpopulated zone's pcp, which has nothing to refill from)
        if self.high_max:  # pragma: no branch
            self.high = min(max(self.high, self.high_min), self.high_max)
        return got

    # -- periodic and forced drains --------------------------------------------------------------

    def decay_pcp_high(self) -> bool:
        """vmstat's tick: lower high by an eighth towards high_min, drain what exceeds it.
        Return whether more decay is to come."""
        todo = False
        if self.high > self.high_min:
            self.high = max(self.count - (self.batch << PCP_BATCH_SCALE_MAX),
                            self.high - (self.high >> 3), self.high_min)
            todo = self.high > self.high_min
        to_drain = self.count - self.high
        if to_drain > 0:
            self.free_pcppages_bulk(to_drain, 0)
            todo = True
        return todo

    def drain(self) -> None:
        """drain_pages_zone: everything back to the buddy lists, batch << 5 at a time."""
        while self.count:
            self.free_pcppages_bulk(min(self.count, self.batch << PCP_BATCH_SCALE_MAX), 0)

    # -- invariants ------------------------------------------------------------------------------

    def check(self) -> None:
        where = f"zone {self.zone.name} cpu {self.cpu} pcp"
        pages = 0
        for pindex in range(NR_PCP_LISTS):
            order = _PINDEX_ORDER[pindex]
            head = self._heads[pindex]
            # (no loop counter: the prev-link check stops a cycle at its first repeated pfn)
            previous, pfn = head, self._next[head]
            while pfn != head:
                if self._prev[pfn] != previous:
                    raise AssertionError(f"{where} list {pindex}: broken prev link at {pfn:#x}")
                if self._state[pfn] != PCP | order or not self.zone.spans(pfn):
                    raise AssertionError(f"{where} list {pindex}: pfn {pfn:#x} does not belong")
                if pfn & ((1 << order) - 1):
                    raise AssertionError(f"{where} list {pindex}: pfn {pfn:#x} misaligned")
                pages += 1 << order
                previous, pfn = pfn, self._next[pfn]
            if self._prev[head] != previous:
                raise AssertionError(f"{where} list {pindex}: bad tail link")
        if pages != self.count:
            raise AssertionError(f"{where}: count is {self.count}, its lists hold {pages}")
        # decay_pcp_high may leave high above high_max after a big count (the next allocation
        # or free clamps it again), never below high_min once touched.
        if self.high and self.high < self.high_min:
            raise AssertionError(f"{where}: high {self.high} below high_min {self.high_min}")
        if not 0 <= self.alloc_factor <= PCP_BATCH_SCALE_MAX or self.free_count < 0:
            raise AssertionError(f"{where}: alloc_factor or free_count out of range")
