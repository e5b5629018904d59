"""`kmem stat`: allocation statistics with perf kmem's definitions (tools/perf/builtin-kmem.c).

What is counted (the numbers equal ``perf kmem --slab --page stat`` on the same recording; a test
checks it on a recording made on a 6.18 machine):

Slab (kmalloc, kmalloc_node, kmem_cache_alloc, kmem_cache_alloc_node; kfree, kmem_cache_free):
- every allocation adds to nr_allocs, total requested/allocated bytes, and to a per-pointer and a
  per-call-site row (hits, bytes requested, bytes allocated); the pointer row remembers its call
  site, allocating CPU and the last bytes_alloc;
- a free of a pointer that has no row is ignored entirely; otherwise freed += the row's last
  bytes_alloc, and if the freeing CPU is not the row's allocating CPU, the pointer row and its
  call site row count one ping-pong; the allocating CPU is then forgotten (-1), so a second free
  counts again. Rows are never removed (perf's tables are keyed by every pointer ever seen).
- cross-CPU allocations: events with a node other than -1 that differs from the CPU's node.
- fragmentation % = 100 - 100 * requested / allocated (0 when nothing was allocated).
Page (mm_page_alloc, mm_page_free; perf never reads the other page events):
- every allocation counts a request and ``page_size << order`` bytes; pfn -1 (printed 0x0) is a
  failure; otherwise the pfn enters the live table (keeping the order, gfp and migratetype of its
  first allocation if it was already live), a row keyed (pfn, order, migratetype, gfp) and a row
  keyed (order, migratetype, gfp), and order x migratetype counts;
- every free counts; a pfn not live is "free-only"; else it leaves the live table.

Addition: a per-cache table (kmem_cache events by their traced name, kmalloc events by the
kmalloc cache Linux serves them from: size class and gfp variant), same columns.

Deviations, all forced by the input being text: call sites are named as the trace prints them
(``sym+0x3b/0x60`` shown as perf shows it, ``sym+3b``), so rows tied on every sort key are
ordered by that name where perf orders them by address; page call sites need callchains that a
trace does not have, so the page caller table is keyed by (order, migratetype, gfp) alone - what
perf's table shows too when its callchain lookup fails. perf 6.1 labels migratetype columns with
pre-4.4 names ("Reclaimable" for MOVABLE); kmem prints the current names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, NamedTuple

from kmem._compiled import core
from kmem.errors import InvalidArgumentError
from kmem.page.gfp import GFP_FLAG_NAMES, parse_gfp_flags
from kmem.page.memory import check_page_size
from kmem.slab.kmalloc_sizes import kmalloc_cache_name
from kmem.trace.events import (
    KMALLOC_NODE,
    KMEM_CACHE_FREE,
    MM_PAGE_ALLOC,
    MM_PAGE_FREE,
    SLAB_ALLOC_KINDS,
    SLAB_FREE_KINDS,
    EventBatch,
    TraceEvent,
    pointer_value,
)

# The compiled core's StatCore counts in 64-bit integers: it takes page sizes up to this.
_CORE_MAX_PAGE_SIZE: Final = 1 << 29

MAX_PAGE_ORDER: Final = 11  # perf kmem's table size (orders 0..10)
MAX_MIGRATE_TYPES: Final = 6
MIGRATETYPE_NAMES: Final = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA/Isolate")
MIGRATETYPE_SHORT: Final = ("UNMOVABL", "MOVABLE", "RECLAIM", "HIGHATOM", "CMA/ISLT", "UNKNOWN")
SLAB_SORT_KEYS: Final = ("ptr", "callsite", "hit", "bytes", "frag", "pingpong")
PAGE_SORT_KEYS: Final = ("page", "callsite", "hit", "bytes", "order", "migtype", "gfp")
DEFAULT_SLAB_SORT: Final = "frag,hit,bytes"
DEFAULT_PAGE_SORT: Final = "bytes,hit"

# perf's compact names for gfp flags (builtin-kmem.c gfp_compact_table), in its order.
GFP_COMPACT: Final = {
    "GFP_TRANSHUGE": "THP", "GFP_TRANSHUGE_LIGHT": "THL", "GFP_HIGHUSER_MOVABLE": "HUM",
    "GFP_HIGHUSER": "HU", "GFP_USER": "U", "GFP_KERNEL_ACCOUNT": "KAC", "GFP_KERNEL": "K",
    "GFP_NOFS": "NF", "GFP_ATOMIC": "A", "GFP_NOIO": "NI", "GFP_NOWAIT": "NW", "GFP_DMA": "D",
    "__GFP_HIGHMEM": "HM", "GFP_DMA32": "D32", "__GFP_HIGH": "H", "__GFP_IO": "I",
    "__GFP_FS": "F", "__GFP_NOWARN": "NWR", "__GFP_RETRY_MAYFAIL": "R", "__GFP_NOFAIL": "NF",
    "__GFP_NORETRY": "NR", "__GFP_COMP": "C", "__GFP_ZERO": "Z", "__GFP_RESERVED_THP": "RTHP",
    "__GFP_NOMEMALLOC": "NMA", "__GFP_MEMALLOC": "MA", "__GFP_HARDWALL": "HW",
    "__GFP_THISNODE": "TN", "__GFP_RECLAIMABLE": "RC", "__GFP_MOVABLE": "M",
    "__GFP_ACCOUNT": "AC", "__GFP_WRITE": "WR", "__GFP_RECLAIM": "R",
    "__GFP_DIRECT_RECLAIM": "DR", "__GFP_KSWAPD_RECLAIM": "KR",
}


def gfp_value(flags: str) -> int:
    """The gfp_t value of a gfp_flags text (Linux 6.18 bits; names it does not know count 0).

    kmem.page.gfp.parse_gfp_flags reads it; only a text it rejects (a flag name of an older
    kernel) is summed here part by part, with what 6.18 knows.
    """
    try:
        return parse_gfp_flags(flags)
    except InvalidArgumentError:
        pass
    value = 0
    for part in flags.split("|"):
        if part[:2] == "0x":
            value |= int(part, 16)
        else:
            value |= GFP_FLAG_NAMES.get(part, 0)
    return value


def gfp_compact(flags: str) -> str:
    """perf kmem's compact spelling: 'GFP_KERNEL|__GFP_ZERO' -> 'K|Z' (unknown parts dropped)."""
    return "|".join(GFP_COMPACT[part] for part in flags.split("|") if part in GFP_COMPACT)


def perf_call_site(call_site: str) -> str:
    """A traced call site as perf kmem prints it: 'f+0x3b/0x60' -> 'f+3b', an address -> '0x...'."""
    text = call_site.split(" ", 1)[0]  # drop a module suffix " [nf_conntrack]"
    symbol, plus, offset = text.rpartition("+")
    if plus and offset.startswith("0x"):
        return f"{symbol}+{offset[2:].split('/', 1)[0]}"
    try:
        return hex(int(text, 16))
    except ValueError:
        return text


# A NamedTuple row from a tuple of all its fields, without the generated __new__'s Python
# call (the tables' rows are built by the hundred thousand: see SlabRow).
new_row: Final[Callable[..., Any]] = tuple.__new__


def fragmentation(requested: int, allocated: int) -> float:
    """perf kmem's internal fragmentation in percent."""
    return 0.0 if allocated == 0 else 100.0 - 100.0 * requested / allocated


class SlabRow(NamedTuple):
    """One row of the per-call-site or per-pointer slab table.

    A NamedTuple, not a frozen dataclass: `kmem stat --json` builds one per pointer (161,000
    on a 1M-event trace), and a frozen dataclass's __init__ (an object.__setattr__ per field)
    cost 1.3 us a row against 0.15 us for ``tuple.__new__(SlabRow, fields)``."""

    key: str  # the call site as perf prints it, or the pointer as 0x...
    bytes_alloc: int
    bytes_req: int
    hit: int
    pingpong: int
    ptr: int  # the pointer (per-pointer rows) or 0
    call_site: str  # the (latest) call site
    frag: float


@dataclass(frozen=True, slots=True)
class SlabSummary:
    """perf kmem's 'SUMMARY (SLAB allocator)' and the tables."""

    nr_allocs: int
    total_requested: int
    total_allocated: int
    total_freed: int
    nr_cross_allocs: int
    callers: tuple[SlabRow, ...]
    allocs: tuple[SlabRow, ...]
    caches: tuple[SlabRow, ...]  # per cache: kmem's addition (kmalloc events by size class)

    @property
    def net_allocated(self) -> int:
        return self.total_allocated - self.total_freed

    @property
    def wasted(self) -> int:
        return self.total_allocated - self.total_requested

    @property
    def fragmentation(self) -> float:
        return fragmentation(self.total_requested, self.total_allocated)


class PageRow(NamedTuple):
    """One row of the per-pfn (pfn set) or per-caller (pfn -1) page table (a NamedTuple, as
    SlabRow is)."""

    pfn: int
    order: int
    migratetype: int
    gfp_flags: str
    gfp: int
    nr_alloc: int
    alloc_bytes: int
    nr_free: int
    free_bytes: int
    call_site: str = ""  # perf.data: the page call site perf kmem finds (text traces: "")


@dataclass(frozen=True, slots=True)
class PageSummary:
    """perf kmem's 'SUMMARY (page allocator)' and the tables."""

    page_size: int
    nr_allocs: int
    alloc_bytes: int
    nr_frees: int
    free_bytes: int
    nr_free_only: int
    free_only_bytes: int
    nr_fails: int
    fail_bytes: int
    order_migratetype: tuple[tuple[int, ...], ...]  # [order][migratetype] allocation counts
    callers: tuple[PageRow, ...]
    allocs: tuple[PageRow, ...]
    gfp_flags: tuple[tuple[int, str], ...]  # (value, text) of every gfp seen, by value
    live: bool = False  # --live: allocs are the pages still allocated, callers net of frees

    @property
    def nr_alloc_freed(self) -> int:
        return self.nr_frees - self.nr_free_only

    @property
    def alloc_freed_bytes(self) -> int:
        return self.free_bytes - self.free_only_bytes

    @property
    def nr_alloc_only(self) -> int:
        return self.nr_allocs - self.nr_alloc_freed

    @property
    def alloc_only_bytes(self) -> int:
        return self.alloc_bytes - self.alloc_freed_bytes


def _check_keys(keys: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    parts = tuple(keys.split(","))
    for part in parts:
        if part not in allowed:
            raise InvalidArgumentError(
                f"unknown {what} sort key {part!r} (choose from {', '.join(allowed)})"
            )
    return parts


class KmemStat:
    """Accumulates perf kmem's statistics over a stream of trace events.

    >>> stat = KmemStat()
    >>> stat.add_batch(batch)                                   # doctest: +SKIP
    >>> stat.add(events)                                        # doctest: +SKIP
    >>> stat.slab_summary().total_allocated                     # doctest: +SKIP

    Two ways in: ``add_batch`` takes an EventBatch (what TraceParser.parse_batches and the
    perf.data reader yield), ``add`` event tuples. With the compiled core (kmem._compiled),
    add_batch runs the accumulation in C (csrc/stat.c, kmem._core.StatCore) over the batch's
    columns, without an object per event; this class keeps what needs Python (naming call
    sites and caches, once each, through _caller_of, _cache_of and _page_site_seen). The first
    summary, ``add``, or an event the C code does not take (a column of an unexpected type, a
    cpu_node function, a value beyond 64 bits) moves the C tables into this object's dicts
    (_to_python), and the Python code below goes on from there: it is the reference, and what
    runs with KMEM_PURE=1. Both give identical statistics (tests/test_core_lockstep_stat.py).
    """

    def __init__(self, page_size: int = 4096, cpu_node: Callable[[int], int] | None = None,
                 *, live: bool = False, site_order: Callable[[str], int] | None = None):
        """``live``: perf kmem --live (the page tables show what is still allocated).
        ``site_order``: a traced call site's address, to order tied rows as perf does (by
        address; without it, by name)."""
        self.page_size: Final = check_page_size(page_size)
        self.live: Final = live
        self._site_order = site_order
        self._site_addresses: dict[str, int] = {}  # perf's call site name -> its address
        self._cpu_node = cpu_node or (lambda cpu: 0)
        # The names of the call site and cache rows in the order they were first seen: the C
        # accumulation counts rows by these indexes (see _caller_of, _cache_of).
        self._caller_names: list[str] = []
        self._caller_index: dict[str, int] = {}
        self._cache_names: list[str] = []
        self._cache_index: dict[str, int] = {}
        # slab: ptr -> [hit, bytes_req, bytes_alloc, last_alloc, alloc_cpu, pingpong], and its
        # latest call site
        self._alloc_stat: dict[str, list[int]] = {}
        self._alloc_site: dict[str, str] = {}
        # call site -> [hit, bytes_req, bytes_alloc, pingpong]
        self._caller_stat: dict[str, list[int]] = {}
        # cache -> [hit, bytes_req, bytes_alloc, pingpong] (kmem's addition to perf's tables)
        self._cache_stat: dict[str, list[int]] = {}
        self._alloc_cache: dict[str, str] = {}
        self._kmalloc_names: dict[tuple[int, str], str] = {}
        self._total_requested = 0
        self._total_allocated = 0
        self._total_freed = 0
        self._nr_allocs = 0
        self._nr_cross_allocs = 0
        # page: pfn -> [order, gfp, migratetype, call site, nr_alloc, alloc_bytes] of the live
        # pages (order, gfp and migratetype of the first allocation, the latest call site)
        self._live: dict[int, list[Any]] = {}
        # (pfn, order, migratetype, gfp) -> [nr_alloc, alloc_bytes, nr_free, free_bytes, site]
        self._page_alloc: dict[tuple[int, int, int, str], list[Any]] = {}
        # (call site, order, migratetype, gfp) -> [nr_alloc, alloc_bytes, nr_free, free_bytes]
        self._page_caller: dict[tuple[str, int, int, str], list[int]] = {}
        self._gfps: set[str] = set()  # every gfp of a successful page allocation (the legend)
        self._order_stats = [[0] * MAX_MIGRATE_TYPES for _ in range(MAX_PAGE_ORDER)]
        self._nr_page_allocs = self._page_alloc_bytes = 0
        self._nr_page_frees = self._page_free_bytes = 0
        self._nr_page_nomatch = self._page_nomatch_bytes = 0
        self._nr_page_fails = self._page_fail_bytes = 0
        self._skipped_page_events = 0  # orders/migratetypes beyond perf's tables
        self._unknown_frees = 0  # slab frees of pointers never seen allocated
        self._call_site_names: dict[str, str] = {}
        self._core: Any = None  # the C tables while add_batch runs them (None: these dicts)
        if core is not None and cpu_node is None and self.page_size <= _CORE_MAX_PAGE_SIZE:
            self._core = core.StatCore(
                page_size=self.page_size, live=live, name_call_site=self._caller_of,
                name_cache=self._cache_of,
                page_call_site=self._page_site_seen if site_order is not None else None)

    @property
    def skipped_page_events(self) -> int:
        """Page events with an order or migratetype beyond perf's tables (not counted)."""
        return self._core.skipped_page_events if self._core is not None else \
            self._skipped_page_events

    @property
    def unknown_frees(self) -> int:
        """Slab frees of pointers never seen allocated (perf ignores them)."""
        return self._core.unknown_frees if self._core is not None else self._unknown_frees

    def add_batch(self, batch: EventBatch) -> None:
        """Account every event of ``batch`` (in C with the compiled core; see the class)."""
        compiled = self._core
        if compiled is not None and len(batch.times) == len(batch.kinds):
            done = compiled.feed(batch.kinds, batch.cpus, batch.call_sites, batch.keys,
                                 batch.tails)
            if done == len(batch.kinds):
                return
            self._to_python()  # (an event the C code leaves to Python: from here on, Python)
            if done:
                batch = batch.part(done, len(batch.kinds))
        self.add(_events_of(batch))

    def add(self, events: Iterable[TraceEvent]) -> None:
        """Account every event of ``events``."""
        self._to_python()
        for event in events:
            kind = event[0]
            if kind in SLAB_ALLOC_KINDS:
                self._slab_alloc(event)
            elif kind in SLAB_FREE_KINDS:
                self._slab_free(event)
            elif kind == MM_PAGE_ALLOC:
                self._page_alloc_event(event)
            elif kind == MM_PAGE_FREE:
                self._page_free_event(event)

    # -- slab ----------------------------------------------------------------------------

    def _call_site_name(self, traced: str) -> str:
        """A traced call site's name as perf prints it (and its address noted, if known)."""
        call_site = self._call_site_names.get(traced)
        if call_site is None:
            call_site = self._call_site_names[traced] = perf_call_site(traced)
            if self._site_order is not None:
                self._site_addresses[call_site] = self._site_order(traced)
        return call_site

    def _cache_name(self, kind: int, name: str, bytes_req: int, bytes_alloc: int,
                    gfp: str) -> str:
        """The per-cache row of an allocation: the traced cache name, else for kmalloc the
        size class Linux serves it from."""
        return name or (
            self._kmalloc_name(bytes_req, gfp) if kind <= KMALLOC_NODE
            else f"cache-{bytes_alloc}"  # a kmem_cache event of a kernel before 6.2: no name
        )

    def _slab_alloc(self, event: TraceEvent) -> None:
        call_site = self._call_site_name(event[3])
        ptr, bytes_req, bytes_alloc, cpu = event[4], event[6], event[7], event[1]
        row = self._alloc_stat.get(ptr)
        if row is None:
            self._alloc_stat[ptr] = [1, bytes_req, bytes_alloc, bytes_alloc, cpu, 0]
        else:
            row[0] += 1
            row[1] += bytes_req
            row[2] += bytes_alloc
            row[3] = bytes_alloc
            row[4] = cpu
        self._alloc_site[ptr] = call_site
        cache_name = self._cache_name(event[0], event[5], bytes_req, bytes_alloc, event[8])
        self._alloc_cache[ptr] = cache_name
        cache = self._cache_stat.get(cache_name)
        if cache is None:
            self._cache_stat[cache_name] = [1, bytes_req, bytes_alloc, 0]
        else:
            cache[0] += 1
            cache[1] += bytes_req
            cache[2] += bytes_alloc
        caller = self._caller_stat.get(call_site)
        if caller is None:
            self._caller_stat[call_site] = [1, bytes_req, bytes_alloc, 0]
        else:
            caller[0] += 1
            caller[1] += bytes_req
            caller[2] += bytes_alloc
        self._total_requested += bytes_req
        self._total_allocated += bytes_alloc
        self._nr_allocs += 1
        node = event[9]
        if node != -1 and node != self._cpu_node(cpu):
            self._nr_cross_allocs += 1

    def _slab_free(self, event: TraceEvent) -> None:
        row = self._alloc_stat.get(event[4])
        if row is None:
            self._unknown_frees += 1  # (not in perf's numbers: it ignores these frees)
            return
        self._total_freed += row[3]
        if event[1] != row[4]:
            row[5] += 1
            self._caller_stat[self._alloc_site[event[4]]][3] += 1
            self._cache_stat[self._alloc_cache[event[4]]][3] += 1
        row[4] = -1

    def _kmalloc_name(self, size: int, gfp: str) -> str:
        """The kmalloc cache Linux serves kmalloc(size, gfp) from; 'kmalloc-large' above 8 KiB."""
        name = self._kmalloc_names.get((size, gfp))
        if name is None:
            try:
                name = kmalloc_cache_name(size, gfp_value(gfp))
            except InvalidArgumentError:
                name = "kmalloc-large" if size else "kmalloc-0 (ZERO_SIZE_PTR)"
            self._kmalloc_names[(size, gfp)] = name
        return name

    # -- page ----------------------------------------------------------------------------

    def _page_alloc_event(self, event: TraceEvent) -> None:
        order, migratetype, gfp, pfn = event[11], event[12], event[8], event[10]
        if not 0 <= order < MAX_PAGE_ORDER or not 0 <= migratetype < MAX_MIGRATE_TYPES:
            self._skipped_page_events += 1
            return
        size = self.page_size << order
        self._nr_page_allocs += 1
        self._page_alloc_bytes += size
        if pfn == -1:
            self._nr_page_fails += 1
            self._page_fail_bytes += size
            return
        site = event[3]
        if self._site_order is not None:
            self._page_site_seen(site)
        self._gfps.add(gfp)
        live = self._live.get(pfn)
        if live is None:
            self._live[pfn] = [order, gfp, migratetype, site, 1, size]
        else:
            live[3] = site
            live[4] += 1
            live[5] += size
        if not self.live:
            key = (pfn, order, migratetype, gfp)
            row = self._page_alloc.get(key)
            if row is None:
                self._page_alloc[key] = [1, size, 0, 0, site]
            else:
                row[0] += 1
                row[1] += size
                row[4] = site
        caller_key = (site, order, migratetype, gfp)
        caller = self._page_caller.get(caller_key)
        if caller is None:
            self._page_caller[caller_key] = [1, size, 0, 0]
        else:
            caller[0] += 1
            caller[1] += size
        self._order_stats[order][migratetype] += 1

    def _page_free_event(self, event: TraceEvent) -> None:
        order, pfn = event[11], event[10]
        if not 0 <= order < MAX_PAGE_ORDER:
            self._skipped_page_events += 1
            return
        size = self.page_size << order
        self._nr_page_frees += 1
        self._page_free_bytes += size
        live = self._live.pop(pfn, None)
        if live is None:
            self._nr_page_nomatch += 1
            self._page_nomatch_bytes += size
            return
        _, gfp, migratetype, site, _, _ = live
        if self.live:
            # (perf counts the free under the free's order, as below)
            self._order_stats[order][migratetype] -= 1
        else:
            row = self._page_alloc.get((pfn, order, migratetype, gfp))
            if row is not None:
                row[2] += 1
                row[3] += size
        caller_key = (site, order, migratetype, gfp)
        caller = self._page_caller.get(caller_key)
        if caller is not None:
            caller[2] += 1
            caller[3] += size
            if self.live:
                caller[0] -= 1
                caller[1] -= size
                if caller[0] == 0:
                    del self._page_caller[caller_key]

    def _page_site_seen(self, site: str) -> None:
        """Note a page call site's address (when the trace knows addresses)."""
        if site and site not in self._site_addresses:
            assert self._site_order is not None
            self._site_addresses[site] = self._site_order(site)

    # -- the compiled accumulation -----------------------------------------------------------

    def _caller_of(self, traced: str) -> int:
        """StatCore's call back for a traced call site it has not seen: its caller row."""
        name = self._call_site_name(traced)
        index = self._caller_index.get(name)
        if index is None:
            index = self._caller_index[name] = len(self._caller_names)
            self._caller_names.append(name)
        return index

    def _cache_of(self, kind: int, tail: tuple[Any, ...]) -> int:
        """StatCore's call back for an allocation's tail it has not seen: its cache row."""
        name = self._cache_name(kind, tail[0], tail[1], tail[2], tail[3])
        index = self._cache_index.get(name)
        if index is None:
            index = self._cache_index[name] = len(self._cache_names)
            self._cache_names.append(name)
        return index

    def _numbers(self) -> tuple[list[int], list[list[int]]]:
        """The counters, in the order StatCore gives them (see _to_python), and order_stats."""
        if self._core is not None:
            return self._core.numbers()  # type: ignore[no-any-return]
        return ([self._total_requested, self._total_allocated, self._total_freed,
                 self._nr_allocs, self._nr_cross_allocs, self._unknown_frees,
                 self._skipped_page_events, self._nr_page_allocs, self._page_alloc_bytes,
                 self._nr_page_frees, self._page_free_bytes, self._nr_page_nomatch,
                 self._page_nomatch_bytes, self._nr_page_fails, self._page_fail_bytes],
                self._order_stats)

    def _to_python(self) -> None:
        """Move the C tables (if any) into this object's dicts; Python counts from here on."""
        compiled = self._core
        if compiled is None:
            return
        (self._alloc_stat, self._alloc_site, self._alloc_cache, self._caller_stat,
         self._cache_stat, self._live, self._page_alloc, self._page_caller, self._gfps,
         self._order_stats, numbers) = compiled.export(self._caller_names, self._cache_names)
        (self._total_requested, self._total_allocated, self._total_freed, self._nr_allocs,
         self._nr_cross_allocs, self._unknown_frees, self._skipped_page_events,
         self._nr_page_allocs, self._page_alloc_bytes, self._nr_page_frees,
         self._page_free_bytes, self._nr_page_nomatch, self._page_nomatch_bytes,
         self._nr_page_fails, self._page_fail_bytes) = numbers
        self._core = None

    # -- results ---------------------------------------------------------------------------

    def _address(self, site: str) -> tuple[int, str]:
        """How perf orders call sites: by address (when known), else kmem orders by name."""
        return (self._site_addresses.get(site, 0), site)

    def slab_summary(self, sort: str = DEFAULT_SLAB_SORT, *, alloc_sort: str | None = None,
                     cache_sort: str | None = None, tables: bool = True) -> SlabSummary:
        """The slab statistics, tables sorted by ``sort`` (perf's keys, descending); the
        per-pointer table by ``alloc_sort`` and the per-cache one by ``cache_sort`` if given
        (perf keeps one sort per table). ``tables=False``: the counters alone, the tables
        empty (what `kmem stat` prints without --caller, --alloc or --cache): the C tables
        stay in C and no row is built."""
        keys = _check_keys(sort, SLAB_SORT_KEYS, "slab")
        alloc_keys = keys if alloc_sort is None else _check_keys(alloc_sort, SLAB_SORT_KEYS,
                                                                 "slab")
        cache_keys = keys if cache_sort is None else _check_keys(cache_sort, SLAB_SORT_KEYS,
                                                                 "slab")
        if not tables:
            numbers = self._numbers()[0]
            return SlabSummary(nr_allocs=numbers[3], total_requested=numbers[0],
                               total_allocated=numbers[1], total_freed=numbers[2],
                               nr_cross_allocs=numbers[4], callers=(), allocs=(), caches=())
        self._to_python()
        callers = [
            new_row(SlabRow, (site, s[2], s[1], s[0], s[3], 0, site, fragmentation(s[1], s[2])))
            for site, s in sorted(self._caller_stat.items(),
                                  key=lambda item: self._address(item[0]))
        ]
        caches = [
            new_row(SlabRow, (name, s[2], s[1], s[0], s[3], 0, name, fragmentation(s[1], s[2])))
            for name, s in sorted(self._cache_stat.items())
        ]
        sites = self._alloc_site
        allocs = [new_row(SlabRow, (hex(value), s[2], s[1], s[0], s[5], value, sites[ptr],
                                    fragmentation(s[1], s[2])))
                  for ptr, s in self._alloc_stat.items()
                  for value in (pointer_value(ptr),)]
        allocs.sort(key=attrgetter("ptr"))
        return SlabSummary(
            nr_allocs=self._nr_allocs,
            total_requested=self._total_requested,
            total_allocated=self._total_allocated,
            total_freed=self._total_freed,
            nr_cross_allocs=self._nr_cross_allocs,
            callers=tuple(_sorted_slab(callers, keys, self._address)),
            caches=tuple(_sorted_slab(caches, cache_keys, self._address)),
            allocs=tuple(_sorted_slab(allocs, alloc_keys, self._address)),
        )

    def page_summary(self, sort: str = DEFAULT_PAGE_SORT, *, alloc_sort: str | None = None,
                     tables: bool = True) -> PageSummary:
        """The page statistics, tables sorted by ``sort`` (perf's keys, descending); the
        per-pfn table by ``alloc_sort`` if given. ``tables=False``: the counters and the
        order x migratetype counts alone, the tables and the gfp legend empty."""
        keys = _check_keys(sort, PAGE_SORT_KEYS, "page")
        alloc_keys = keys if alloc_sort is None else _check_keys(alloc_sort, PAGE_SORT_KEYS,
                                                                 "page")
        if not tables:
            numbers, order_stats = self._numbers()
            return PageSummary(
                page_size=self.page_size, nr_allocs=numbers[7], alloc_bytes=numbers[8],
                nr_frees=numbers[9], free_bytes=numbers[10], nr_free_only=numbers[11],
                free_only_bytes=numbers[12], nr_fails=numbers[13], fail_bytes=numbers[14],
                order_migratetype=tuple(tuple(row) for row in order_stats), callers=(),
                allocs=(), gfp_flags=(), live=self.live)
        self._to_python()
        gfps = self._gfps
        values: dict[str, int] = {}

        def value_of(gfp: str) -> int:  # (once per distinct text: a few, for many rows)
            value = values.get(gfp)
            if value is None:
                value = values[gfp] = gfp_value(gfp)
            return value

        if self.live:
            allocs = [new_row(PageRow, (pfn, order, mt, gfp, value_of(gfp), count, size, 0, 0,
                                        site))
                      for pfn, (order, gfp, mt, site, count, size) in self._live.items()]
            # perf's live tree iterates from the highest pfn down (its compare is reversed)
            allocs.sort(key=lambda r: -r.pfn)
        else:
            allocs = [new_row(PageRow, (pfn, order, mt, gfp, value_of(gfp), nr_alloc, size,
                                        nr_free, freed, site))
                      for (pfn, order, mt, gfp), (nr_alloc, size, nr_free, freed, site)
                      in self._page_alloc.items()]
            # perf's trees iterate by (page, order, migtype, gfp) and (callsite, order, ...)
            allocs.sort(key=attrgetter("pfn", "order", "migratetype", "gfp"))
        callers = [
            new_row(PageRow, (-1, order, mt, gfp, value_of(gfp), nr_alloc, size, nr_free, freed,
                              site))
            for (site, order, mt, gfp), (nr_alloc, size, nr_free, freed)
            in self._page_caller.items()
        ]
        callers.sort(key=lambda r: (self._address(r.call_site), r.order, r.migratetype, r.gfp))
        return PageSummary(
            page_size=self.page_size,
            nr_allocs=self._nr_page_allocs,
            alloc_bytes=self._page_alloc_bytes,
            nr_frees=self._nr_page_frees,
            free_bytes=self._page_free_bytes,
            nr_free_only=self._nr_page_nomatch,
            free_only_bytes=self._page_nomatch_bytes,
            nr_fails=self._nr_page_fails,
            fail_bytes=self._page_fail_bytes,
            order_migratetype=tuple(tuple(row) for row in self._order_stats),
            callers=tuple(_sorted_page(callers, keys, self._address)),
            allocs=tuple(_sorted_page(allocs, alloc_keys, self._address)),
            gfp_flags=tuple(sorted((value_of(g), g) for g in gfps if g)),
            live=self.live,
        )


def _events_of(batch: EventBatch) -> Iterator[TraceEvent]:
    """The event tuples of ``batch``, one at a time (kmem.trace.events.batch_events)."""
    for kind, cpu, time, site, key, tail in zip(*batch, strict=True):
        yield ((kind, cpu, time, site, key, *tail) if kind <= KMEM_CACHE_FREE
               else (kind, cpu, time, site, "", "", 0, 0, tail[0], -1, key, tail[1], tail[2]))


def _slab_key(key: str, address: Callable[[str], tuple[int, str]]
              ) -> Callable[[SlabRow], object]:
    if key == "ptr":
        return lambda r: r.ptr
    if key == "callsite":
        return lambda r: address(r.call_site)
    if key == "hit":
        return lambda r: r.hit
    if key == "bytes":
        return lambda r: r.bytes_alloc
    if key == "frag":
        return lambda r: r.frag
    return lambda r: r.pingpong


_SLAB_FIELDS: Final = {"ptr": "ptr", "hit": "hit", "bytes": "bytes_alloc", "frag": "frag",
                       "pingpong": "pingpong"}
_PAGE_FIELDS: Final = {"page": "pfn", "hit": "nr_alloc", "bytes": "alloc_bytes",
                       "order": "order", "migtype": "migratetype", "gfp": "gfp"}


def _sorted_slab(rows: list[SlabRow], keys: tuple[str, ...],
                 address: Callable[[str], tuple[int, str]]) -> list[SlabRow]:
    if "callsite" not in keys:  # (the same order, the key read in C: attrgetter)
        return sorted(rows, key=attrgetter(*(_SLAB_FIELDS[k] for k in keys)), reverse=True)
    getters = [_slab_key(k, address) for k in keys]
    # Descending on the keys, ties kept in the input order (perf's rbtree insertion is stable).
    return sorted(rows, key=lambda r: tuple(g(r) for g in getters), reverse=True)


_PAGE_KEYS: Final[dict[str, Callable[[PageRow], int]]] = {
    "page": lambda r: r.pfn,
    "callsite": lambda r: 0,  # (by address: see _sorted_page)
    "hit": lambda r: r.nr_alloc,
    "bytes": lambda r: r.alloc_bytes,
    "order": lambda r: r.order,
    "migtype": lambda r: r.migratetype,
    "gfp": lambda r: r.gfp,
}


def _sorted_page(rows: list[PageRow], keys: tuple[str, ...],
                 address: Callable[[str], tuple[int, str]]) -> list[PageRow]:
    if "callsite" not in keys:  # (the same order, the key read in C: attrgetter)
        return sorted(rows, key=attrgetter(*(_PAGE_FIELDS[k] for k in keys)), reverse=True)
    getters: list[Callable[[PageRow], object]] = [
        (lambda r: address(r.call_site)) if k == "callsite" else _PAGE_KEYS[k] for k in keys]
    return sorted(rows, key=lambda r: tuple(g(r) for g in getters), reverse=True)
