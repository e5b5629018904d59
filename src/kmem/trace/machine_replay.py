"""A trace's page events run through kmem's page machine: the per-CPU lists' refills and drains.

Design: ``kmem replay --layout FILE`` (or any machine option) adds a MachineReplay beside the
replay's own buddy allocator. It sees every page event of the trace — also the kernel's slab
pages, which the slab layer's replay leaves out, since in the kernel they went through the pcp
too — and feeds them to the PageMachine:

    mm_page_alloc (pfn, order, gfp)   machine.alloc_pages(order, gfp, cpu): the pcp of the
                                      event's CPU (modulo the machine's CPUs), refilled by
                                      rmqueue_bulk when its list is empty
    mm_page_free                      free_pages_prepare: the page waits (see below)
    mm_page_free_batched              machine.free_pages(pfn, order, cpu) of the waiting page:
                                      to the pcp, drained by free_pcppages_bulk when count
                                      reaches high; a repeat of a committed free is skipped
    any other page event on the CPU   the CPU's waiting pages are freed first, in order
                                      (not by drain events right after a commit: its drain)
    mm_page_alloc_zone_locked,        the kernel's own refills (and direct buddy allocations)
    mm_page_pcpu_drain                and drains: counted per CPU, the "traced" side
    each new second of trace time     machine.vmstat_tick(): every pcp's high decays by an
                                      eighth towards high_min, the excess drains (Linux's
                                      vmstat_update runs once a second on each CPU)

When a page reaches the pcp: free_unref_folios (a folio batch) traces mm_page_free for every
folio first, then commits them one by one, each with its mm_page_free_batched (and its drain
right after it); a plain free_frozen_pages commits straight after its mm_page_free. So a freed
page waits until its mm_page_free_batched, or until its CPU's next other page event (a plain
free: nothing of the CPU happened in between), vmstat tick or the trace's end.

Per allocation and per free it also compares *which* ones took the zone lock: a traced
allocation needed a refill when mm_page_alloc_zone_locked events came on its CPU since that
CPU's previous page allocation or free (the tracepoint fires under the lock, before
mm_page_alloc); a traced free caused a drain when mm_page_pcpu_drain events follow it on its
CPU (mm_page_free fires first, free_pcppages_bulk after). The machine's side: its tracer saw
zone_locked or drain events during that call.

Warm start. A trace starts while the kernel's pcp lists hold pages it never shows being put
there. ``warm`` says what kmem assumes:

    "cold"       empty lists (high untouched): every list's first allocation refills
    "zoneinfo"   the layout is a /proc/zoneinfo taken when the trace starts: each CPU's pcp of
                 each zone starts with its printed ``high`` and holds its printed ``count``
                 pages, put on the lists lazily: the first allocation that finds a list empty
                 takes one refill's worth (what rmqueue_bulk would bring) from that hidden stock,
                 silently, as long as it lasts. Which lists held the pages the file does not say;
                 the allocations that follow say which lists the trace needs.
    "batch"      as "zoneinfo" with no file: each list starts as if refilled once (the stock is
                 unlimited for each list's first empty moment, then cold)

Invariant: the machine's state is only ever changed by alloc_pages/free_pages/warm calls of a
traced event, so machine.check() holds after every event (tested).

The slab layer on the machine (``slab_pages_elsewhere``: ``Replayer(slab_on_machine=True)``).
Then kmem's slab layer takes its own slab pages from the machine (with the allocations' gfp
flags: watermarks, reserves, pfmemalloc slabs), so the kernel's slab pages of the trace must
not be fed too: they would count twice. The replay's own rule decides which they are (see
kmem.trace.replay, "Not counting slab pages twice"): an mm_page_alloc that could be a slab page
(not movable, not a user page) waits for its CPU's next event; a slab allocation there makes
it the kernel's slab page, skipped with its free (``pages["slab_page_events_skipped"]``), any
other event replays it. The slab layer's pages reach the machine as the replay makes them, in
trace order with the page events: the replay cuts each batch so that each run of page events
reaches the machine before the run of slab events after it, and those before the next page
events. SlabAllocator.check() checks the machine too, with the
slab layer's blocks in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from kmem.errors import InvalidArgumentError, KmemError, OutOfMemoryError
from kmem.page.layout import MachineLayout, ZoneinfoZone
from kmem.page.machine import PageMachine
from kmem.page.migratetype import MIGRATE_TYPES, MIGRATETYPE_NAMES
from kmem.trace.events import (
    KMEM_CACHE_ALLOC_NODE,
    MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_EXTFRAG,
    MM_PAGE_ALLOC_ZONE_LOCKED,
    MM_PAGE_FREE,
    MM_PAGE_FREE_BATCHED,
    MM_PAGE_PCPU_DRAIN,
)
from kmem.trace.stat import gfp_value

WARM_MODES: Final = ("zoneinfo", "movable", "batch", "cold")
PCP_EVENTS: Final = ("mm_page_alloc_zone_locked", "mm_page_pcpu_drain")
MAX_TICKS: Final = 64  # vmstat ticks after a gap in the trace: high has decayed fully by then


class _Side:
    """Event counts of one side (traced or predicted), in total and per CPU."""

    __slots__ = ("drain", "locked")

    def __init__(self, nr_cpus: int) -> None:
        self.locked = [0] * nr_cpus
        self.drain = [0] * nr_cpus

    def to_json(self) -> dict[str, Any]:
        return {
            "mm_page_alloc_zone_locked": sum(self.locked),
            "mm_page_pcpu_drain": sum(self.drain),
            "per_cpu": {str(cpu): {"mm_page_alloc_zone_locked": self.locked[cpu],
                                   "mm_page_pcpu_drain": self.drain[cpu]}
                        for cpu in range(len(self.locked))},
        }


def _agreement() -> dict[str, int]:
    return dict.fromkeys(("both", "traced_only", "predicted_only", "neither"), 0)


class MachineReplay:
    """Feeds a trace's page events to a PageMachine and compares its pcp with the trace's."""

    def __init__(self, machine: PageMachine, *, warm: str = "zoneinfo",
                 zoneinfo: Sequence[ZoneinfoZone] = (), max_samples: int = 2000,
                 slab_pages_elsewhere: bool = False) -> None:
        if warm not in WARM_MODES:
            raise InvalidArgumentError(
                f"unknown warm start {warm!r} (choose from {', '.join(WARM_MODES)})")
        self.machine: Final = machine
        self.warm: Final = warm
        nr_cpus = self.nr_cpus = machine.nr_cpus
        self.traced = _Side(nr_cpus)
        self.predicted = _Side(nr_cpus)
        machine_tracer = self._on_machine_event
        for zone in machine.zones:
            zone.tracer = machine_tracer
        # traced pfn -> (machine pfn, order) of every live page
        self._pages: dict[int, tuple[int, int]] = {}
        self._gfp: dict[str, int] = {}
        # Per CPU: traced zone_locked events since its last page alloc/free; whether its last
        # free is still open (drain events may follow), traced drains after it, and whether
        # the machine drained in it.
        self._locked_since = [0] * nr_cpus
        self._open_free = [False] * nr_cpus
        self._free_traced_drain = [False] * nr_cpus
        self._free_predicted_drain = [False] * nr_cpus
        # Per CPU: the traced pfns freed (mm_page_free) but not yet on the pcp, in order;
        # and each such pfn's CPU.
        self._pending: list[dict[int, None]] = [{} for _ in range(nr_cpus)]
        self._pending_cpu: dict[int, int] = {}
        # Samples over the trace (the replay's sampling points): (trace time, free pages per
        # migratetype summed over the zones, pages on each CPU's pcps); halved when full.
        self.timeline: list[tuple[float, tuple[int, ...], tuple[int, ...]]] = []
        self._max_samples = max_samples
        self.alloc_refills = _agreement()
        self.free_drains = _agreement()
        self.counts = dict.fromkeys(
            ("allocs", "frees", "unknown_frees", "missed_frees", "batched_duplicates",
             "traced_failures", "kmem_oom", "refused", "warm_pages", "vmstat_ticks"), 0)
        # The slab layer runs on this machine: the kernel's slab pages are skipped. Per trace
        # CPU, an mm_page_alloc (machine cpu, pfn, tail) waiting for its CPU's next event; the
        # traced pfns found to be slab pages.
        self.slab_pages_elsewhere: Final = slab_pages_elsewhere
        self._maybe_slab: dict[int, tuple[int, int, tuple[Any, ...]]] = {}
        self._slab_pfns: set[int] = set()
        if slab_pages_elsewhere:
            self.counts["slab_page_events_skipped"] = 0
        self._second = ""  # the TIME text's whole seconds at the last tick, and their value
        self._second_value = -1
        # Hidden warm stock per (zone index, cpu): pages still to come onto lists; -1 unlimited
        self._stock: dict[tuple[int, int], int] = {}
        self._warmed: set[tuple[int, int, int, int]] = set()  # (zone, cpu, order, mt) filled
        if warm in ("zoneinfo", "movable"):
            self._warm_from_zoneinfo(zoneinfo)
        if warm == "movable":
            self._stock_on_movable_lists()
        elif warm == "batch":
            for zone in machine.zones:
                if zone.populated:
                    for cpu in range(nr_cpus):
                        self._stock[zone.index, cpu] = -1

    # -- warm start ------------------------------------------------------------------------

    def _warm_from_zoneinfo(self, zoneinfo: Sequence[ZoneinfoZone]) -> None:
        """Each CPU's pageset count (stock) and high, as the zoneinfo printed them."""
        machine = self.machine
        for info in zoneinfo:
            zone = machine.zone(info.name)
            if not zone.populated:
                continue
            for pageset in info.pagesets:
                if pageset.cpu >= self.nr_cpus:
                    continue
                pcp = zone.pcps[pageset.cpu]
                if pageset.high and pcp.high_max:
                    pcp.high = min(max(pageset.high, pcp.high_min), pcp.high_max)
                if pageset.count > 0:
                    self._stock[zone.index, pageset.cpu] = pageset.count

    def _stock_on_movable_lists(self) -> None:
        """Put each CPU's whole stock on its order-0 MOVABLE list now (user and page cache
        pages, the commonest list), as far as the zone has pages."""
        machine = self.machine
        for (zone_index, cpu), stock in list(self._stock.items()):
            zone = machine.zones[zone_index]
            got = machine.warm_pcp(cpu, stock, zone=zone.name)
            self.counts["warm_pages"] += got
        self._stock.clear()

    def _warm_list(self, order: int, gfp: int, cpu: int) -> None:
        """Before an allocation: if the list it will take from is empty and warm stock is left,
        put one refill's worth on it, uncounted (the pages the trace's start did not show)."""
        stock_key: tuple[int, int] | None = None
        zone = self.machine.preferred_zone(gfp)
        stock_key = (zone.index, cpu)
        stock = self._stock.get(stock_key, 0)
        if not stock:
            return
        mt = self.machine.gfp_pcp_migratetype(gfp)
        if mt < 0 or not self.machine.pcp_enabled:
            return
        list_key = (zone.index, cpu, order, mt)
        pcp = zone.pcps[cpu]
        if stock < 0:  # "batch": each list's first empty moment only
            if list_key in self._warmed:
                return
            self._warmed.add(list_key)
        if not pcp.list_empty(order, mt):
            return
        blocks = pcp.batch if not order else max(pcp.batch >> order, 2)
        if stock > 0:
            blocks = min(blocks, max(stock >> order, 1))
        try:
            got = self.machine.warm_pcp(cpu, blocks, order=order, migratetype=mt, zone=zone.name)
        except KmemError:
            return
        self.counts["warm_pages"] += got << order
        if stock > 0:
            self._stock[stock_key] = max(stock - (got << order), 0)

    # -- events -------------------------------------------------------------------------------

    def _on_machine_event(self, event: str, cpu: int, pfn: int, order: int, mt: int,
                          extra: tuple[int, ...]) -> None:
        if event == "mm_page_alloc_zone_locked":
            self.predicted.locked[cpu] += 1
        elif event == "mm_page_pcpu_drain":
            self.predicted.drain[cpu] += 1

    def _gfp_of(self, text: str) -> int:
        value = self._gfp.get(text)
        if value is None:
            value = self._gfp[text] = gfp_value(text)
        return value

    def _close_free(self, cpu: int) -> None:
        """The CPU's last free is over: no more drain events can be its."""
        if self._open_free[cpu]:
            self._open_free[cpu] = False
            self._tally(self.free_drains, self._free_traced_drain[cpu],
                        self._free_predicted_drain[cpu])

    @staticmethod
    def _tally(table: dict[str, int], traced: bool, predicted: bool) -> None:
        key = ("both" if predicted else "traced_only") if traced else (
            "predicted_only" if predicted else "neither")
        table[key] += 1

    def feed(self, kinds: bytes, cpus: Sequence[int], keys: Sequence[Any],
             tails: Sequence[tuple[Any, ...]], times: Sequence[str]) -> None:
        """Feed a batch's page events (the other kinds are skipped); ``times`` are the events'
        TIME texts: vmstat's tick runs once per second of trace time."""
        nr_cpus = self.nr_cpus
        pending = self._pending
        maybe_slab = self._maybe_slab
        for kind, cpu, key, tail, time in zip(kinds, cpus, keys, tails, times, strict=True):
            if maybe_slab and cpu in maybe_slab:
                self._decide_page(cpu, kind <= KMEM_CACHE_ALLOC_NODE)
            if kind < MM_PAGE_ALLOC or kind == MM_PAGE_ALLOC_EXTFRAG:
                continue
            raw_cpu = cpu
            second = time[:time.find(".")]
            if second != self._second:
                self._tick(second)
            if cpu >= nr_cpus:
                cpu %= nr_cpus
            if kind == MM_PAGE_FREE:
                self._close_free(cpu)
                if key in self._slab_pfns:  # (only filled with slab_pages_elsewhere)
                    self._slab_page_free(key)
                    continue
                self._prepare_free(key, cpu)
                continue
            if kind == MM_PAGE_FREE_BATCHED:
                self._close_free(cpu)
                if key in self._slab_pfns:
                    self._slab_page_free(key)
                    continue
                self._batched_free(key, cpu)
                continue
            # Anything else on this CPU: its plain frees were committed before — but drain
            # events right after a commit are that commit's (its batch's other pages wait).
            if pending[cpu] and (kind != MM_PAGE_PCPU_DRAIN or not self._open_free[cpu]):
                self._commit_pending(cpu)
            if kind == MM_PAGE_ALLOC_ZONE_LOCKED:
                self.traced.locked[cpu] += 1
                self._locked_since[cpu] += 1
            elif kind == MM_PAGE_PCPU_DRAIN:
                self.traced.drain[cpu] += 1
                if self._open_free[cpu]:
                    self._free_traced_drain[cpu] = True
            elif self.slab_pages_elsewhere and tail[2] != 1 and "HIGHUSER" not in tail[0]:
                # mm_page_alloc that could be a slab page (never movable, never a user page):
                # the CPU's next event decides
                maybe_slab[raw_cpu] = (cpu, key, tail)
            else:  # mm_page_alloc
                self._close_free(cpu)
                self._alloc(key, tail, cpu)

    def slab_event(self, cpu: int) -> None:
        """A slab allocation on trace CPU ``cpu`` the replay did not pass to feed (a kernel
        sheaf's kmalloc, a kmalloc replayed with its caller): it decides that CPU's waiting
        page as feed's events do."""
        if cpu in self._maybe_slab:
            self._decide_page(cpu, True)

    def _decide_page(self, raw_cpu: int, slab_alloc_follows: bool) -> None:
        """The waiting mm_page_alloc of a trace CPU: the kernel's slab page if a slab
        allocation followed it (skipped, with its free), else replayed now."""
        cpu, pfn, tail = self._maybe_slab.pop(raw_cpu)
        if slab_alloc_follows and pfn >= 0:
            if pfn in self._pending_cpu:  # freed, not committed yet: it was
                owner = self._pending_cpu[pfn]
                self._commit(owner, pfn)
                self._close_free(owner)
            old = self._pages.pop(pfn, None)
            if old is not None:  # a live page's free was not traced
                self.counts["missed_frees"] += 1
                self.machine.free_pages(old[0], old[1], cpu)
            self._slab_pfns.add(pfn)
            self.counts["slab_page_events_skipped"] += 1
            return
        self._close_free(cpu)
        self._alloc(pfn, tail, cpu)

    def _slab_page_free(self, pfn: int) -> None:
        self._slab_pfns.discard(pfn)
        self.counts["slab_page_events_skipped"] += 1

    def _alloc(self, pfn: int, tail: tuple[Any, ...], cpu: int) -> None:
        traced_locked = self._locked_since[cpu] > 0
        self._locked_since[cpu] = 0
        counts = self.counts
        if pfn < 0:
            counts["traced_failures"] += 1
            return
        if self._slab_pfns:
            self._slab_pfns.discard(pfn)  # a slab page whose free was not traced
        owner = self._pending_cpu.get(pfn)
        if owner is not None:  # freed on another CPU, not committed yet: it was
            self._commit(owner, pfn)
            self._close_free(owner)
        old = self._pages.pop(pfn, None)
        if old is not None:  # its free was not traced
            counts["missed_frees"] += 1
            self.machine.free_pages(old[0], old[1], cpu)
        order = tail[1]
        machine = self.machine
        before = self.predicted.locked[cpu]
        try:
            gfp = self._gfp_of(tail[0])
            if self._stock:
                self._warm_list(order, gfp, cpu)
            own = machine.alloc_pages(order, gfp, cpu)
        except OutOfMemoryError:
            counts["kmem_oom"] += 1
            return
        except KmemError:  # an order or gfp kmem's machine refuses (no zone for it, ...)
            counts["refused"] += 1
            return
        self._tally(self.alloc_refills, traced_locked, self.predicted.locked[cpu] > before)
        self._pages[pfn] = (own, order)
        counts["allocs"] += 1

    def _prepare_free(self, pfn: int, cpu: int) -> None:
        """mm_page_free: free_pages_prepare. The page reaches the pcp at its
        mm_page_free_batched if a folio batch frees it (free_unref_folios traces every
        folio's mm_page_free first, then commits them one by one, each with its
        mm_page_free_batched), else before this CPU's next page event (a plain free)."""
        self._locked_since[cpu] = 0
        if pfn not in self._pages or pfn in self._pending_cpu:
            self.counts["unknown_frees"] += 1
            return
        self._pending[cpu][pfn] = None
        self._pending_cpu[pfn] = cpu

    def _batched_free(self, pfn: int, cpu: int) -> None:
        """mm_page_free_batched: the commit of a prepared page (or of a live one whose
        mm_page_free the trace lost); otherwise it repeats a committed free."""
        self._locked_since[cpu] = 0
        if self._pending_cpu.get(pfn) == cpu:
            self._commit(cpu, pfn)
        elif pfn in self._pages and pfn not in self._pending_cpu:
            self._pending[cpu][pfn] = None
            self._pending_cpu[pfn] = cpu
            self._commit(cpu, pfn)
        else:
            self.counts["batched_duplicates"] += 1

    def _commit_pending(self, cpu: int) -> None:
        """Every plain free still waiting on this CPU goes to its pcp, in order."""
        for pfn in list(self._pending[cpu]):
            self._close_free(cpu)
            self._commit(cpu, pfn)

    def _commit(self, cpu: int, pfn: int) -> None:
        """free_frozen_page_commit of a prepared page; it is this CPU's open free (drain
        events that follow on the CPU are its)."""
        del self._pending[cpu][pfn]
        del self._pending_cpu[pfn]
        own = self._pages.pop(pfn)
        before = self.predicted.drain[cpu]
        self.machine.free_pages(own[0], own[1], cpu)
        self.counts["frees"] += 1
        self._open_free[cpu] = True
        self._free_traced_drain[cpu] = False
        self._free_predicted_drain[cpu] = self.predicted.drain[cpu] > before

    def _tick(self, second_text: str) -> None:
        """Trace time reached a new second: vmstat_update's pcp high decay, once per second
        passed (at most MAX_TICKS: by then every high is back at high_min)."""
        try:
            second = int(second_text)
        except ValueError:  # (a timestamp kmem cannot read: no tick)
            return
        if self._second_value >= 0:
            for cpu in range(self.nr_cpus):
                self._commit_pending(cpu)
            for _ in range(min(max(second - self._second_value, 0), MAX_TICKS)):
                self.machine.vmstat_tick()
                self.counts["vmstat_ticks"] += 1
        self._second, self._second_value = second_text, second

    # -- results ------------------------------------------------------------------------------

    def sample(self, time: float) -> None:
        """Record free pages per migratetype and each CPU's pcp pages at trace time ``time``
        (from the first page event on: before it, the trace has no time)."""
        if not self._second:
            return
        zones = [z for z in self.machine.zones if z.populated]
        free = tuple(sum(z.free_pages_mt[mt] for z in zones) for mt in range(MIGRATE_TYPES))
        pcp = tuple(sum(z.pcps[cpu].count for z in zones) for cpu in range(self.nr_cpus))
        timeline = self.timeline
        timeline.append((time, free, pcp))
        if len(timeline) >= self._max_samples:
            del timeline[1:-1:2]  # keep the first and last, halve the rest

    def finish(self) -> None:
        """The trace ended: plain frees still waiting are committed, the last frees' drains
        are all in."""
        for raw_cpu in list(self._maybe_slab):  # no event followed: ordinary pages
            self._decide_page(raw_cpu, False)
        for cpu in range(self.nr_cpus):
            self._commit_pending(cpu)
            self._close_free(cpu)

    def to_json(self) -> dict[str, Any]:
        """{"traced", "predicted"} event counts (and per CPU), with how the machine ran."""
        machine = self.machine
        events = [machine.events(cpu) for cpu in range(self.nr_cpus)]
        zones = [z for z in machine.zones if z.populated]
        return {
            "traced": self.traced.to_json(),
            "predicted": self.predicted.to_json(),
            "allocations_needing_refill": dict(self.alloc_refills),
            "frees_causing_drain": dict(self.free_drains),
            "warm_start": self.warm,
            "layout": machine.layout.source,
            "nr_cpus": self.nr_cpus,
            "pcp": machine.pcp_enabled,
            "min_free_kbytes": machine.min_free_kbytes,
            "zone_lock": sum(e.zone_lock for e in events),
            "refills": sum(e.refills for e in events),
            "fallbacks": sum(e.mm_page_alloc_extfrag for e in events),
            "pageblocks_claimed": sum(z.claims for z in zones),
            "fragmentation": _fragmentation_json([z.nr_free for z in zones]),
            "pages": dict(self.counts),
            **({"slab_layer_on_machine": True} if self.slab_pages_elsewhere else {}),
            "zones": {z.name: _zone_json(z) for z in zones},
            "timeline": {
                "time": [t for t, _, _ in self.timeline],
                "free_pages": {name: [free[mt] for _, free, _ in self.timeline]
                               for mt, name in enumerate(MIGRATETYPE_NAMES)},
                "pcp_pages": {str(cpu): [pcp[cpu] for _, _, pcp in self.timeline]
                              for cpu in range(self.nr_cpus)},
            },
        }


def _fragmentation_json(nr_free: Sequence[Sequence[int]]) -> dict[str, list[int]]:
    """Fragmentation indices (thousandths, per order) of free blocks counted per order."""
    from kmem.page.fragmentation import fragmentation_report

    report = fragmentation_report([sum(counts) for counts in zip(*nr_free, strict=True)])
    return {"unusable_index": list(report.unusable), "extfrag_index": list(report.extfrag)}


def _zone_json(zone: Any) -> dict[str, Any]:
    return {
        "free_pages": zone.free_pages,
        "pcp_pages": [pcp.count for pcp in zone.pcps],
        "pcp_high": [pcp.high for pcp in zone.pcps],
        "pcp_batch": zone.pcps[0].batch if zone.pcps else 0,
        **_fragmentation_json([zone.nr_free]),
    }


def read_layout(spec: str) -> tuple[MachineLayout, list[ZoneinfoZone]]:
    """The machine layout a --layout names (kmem.page.layout.read_layout_spec) and the
    zoneinfo file's zones, for a warm start (none for zone sizes)."""
    from kmem.page.layout import read_layout_spec, read_zoneinfo

    layout, text = read_layout_spec(spec)
    source = "<stdin>" if spec == "-" else spec
    return layout, ([] if text is None else read_zoneinfo(text, source))
