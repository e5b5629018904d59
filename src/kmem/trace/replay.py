"""`kmem replay`: a real kmem trace run through kmem's own allocators.

The trace says what was asked and what was freed; kmem chooses every address. Events go to:

- kmalloc / kmalloc_node: ``SlabAllocator.kmalloc(bytes_req, gfp, cpu)``; kmem's bytes_alloc for
  the request (ksize of what kmalloc returned, found once per (size, gfp_flags)) is compared
  with the traced bytes_alloc, and every disagreement is counted (``bytes_alloc_mismatches``).
- kmem_cache_alloc(_node): the cache named in the event, created on first sight with object size
  = the traced bytes_alloc (the kernel's slab_size, so kmem's geometry matches the kernel's;
  kernels before 6.2 print no name: the cache is then called ``cache-<bytes_alloc>``).
- kfree / kmem_cache_free: the object the traced pointer maps to, freed with ``kfree`` (pointers
  are one address space: kfree may free a kmem_cache_alloc object, as in Linux).
- mm_page_alloc / mm_page_free / mm_page_free_batched: ``BuddyAllocator.alloc_pages`` and
  ``free_pages``; traced pfns are mapped onto kmem's own pfns.

A trace begins mid-flight and misses events, so nothing here is fatal: a free of a pointer the
trace never allocated counts in ``unknown_frees``, kfree(NULL) in ``null_frees``; an allocation of a
pointer that is still live means its free was not traced (bulk and RCU paths): it counts in
``missed_frees`` and the old object is freed first. kmem running out of memory counts in
``kmem_oom`` (raise ``--memory``).

Not counting slab pages twice. The kernel's own slabs appear in the trace as page events, while
kmem's slab layer allocates its own slab pages from kmem's buddy allocator. With both layers on,
an mm_page_alloc whose next event on the same CPU is a slab allocation is the page that slab
allocation needed (new_slab or kmalloc_large run inside the allocation, before its tracepoint):
replay skips it, remembers its pfn, and skips that pfn's free too (``slab_page_events_skipped``).
``--layers slab`` replays only slab events, ``--layers page`` only page events (then the kernel's
slab pages are ordinary pages). mm_page_free_batched repeats an mm_page_free of the same pfn in
6.x: it frees only a pfn still live, else counts in ``batched_duplicates``.
mm_page_alloc_zone_locked and mm_page_pcpu_drain are the per-CPU page lists' refills and drains:
the buddy allocator does not model them (its allocations are what callers see), they are counted.
With a machine (``layout=``, or any of ``pcp_high``, ``pcp_batch``, ``min_free_kbytes``,
``machine_cpus``, ``no_pcp=True``, ``machine=True``) every page event also goes to a
kmem.page.PageMachine with per-CPU lists (kmem.trace.machine_replay): the result's ``pcp`` holds
the refills and drains it predicts beside the trace's own (``to_json()["pcp"]``). The slab layer
stays on the buddy allocator unless ``slab_on_machine=True``: then its slab pages (and large
kmallocs) are also the machine's, taken with each allocation's traced gfp flags, so watermarks
and the memory reserves reach it -- an allocation with __GFP_MEMALLOC past the min watermark
makes a pfmemalloc slab, and SLUB's pfmemalloc rules apply -- and the kernel's own slab page
events are not fed to the machine (kmem.trace.machine_replay).

Which kernel's SLUB (``kernel``: 6.17, 6.18 or 7.0; kmem.slab.sheaves). 6.18 gives sheaves to the
caches the kernel creates with a sheaf_capacity (maple_node, vm_area_struct: 32), 7.0 to every
cache, 6.17 to none. A 6.18 or 7.0 trace shows the kernel kmalloc-ing its own sheaves
(``call_site=alloc_empty_sheaf``); kmem's model kmallocs the sheaves its caches need, so those
events are not replayed (they would count every sheaf twice, or count sheaves a 6.17 kernel never
makes): the allocation and the free of such a pointer count in ``sheaves["kernel_sheaf_events"]``.
Every kmem_cache_alloc passes its traced gfp flags to the cache: a sheaf refill may block only
when they allow it (GFP_NOWAIT allocations take the slab path instead, as in the kernel).

Random kmalloc caches (``random_kmalloc_seed``: CONFIG_RANDOM_KMALLOC_CACHES, kmem.slab.kmalloc).
Each kmalloc event is ``kmalloc(bytes_req, gfp, cpu, caller)`` with its call site's caller
(kmem.trace.callers): the normal family's copy is the one that call site selects. The replay
loops (and the compiled one) know no call sites, so kmalloc events are replayed one by one
beside them (``_kmalloc_by_caller``, the loop's kmalloc step with the caller); the result's
``random_kmalloc`` counts the kmallocs each normal-family cache served.

Memory in use per layer is sampled every ``every`` events (peaks are at that resolution; the
page layer's peak is exact), with the buddy allocator's fragmentation indices; the sample list is
halved whenever it reaches ``max_samples`` so memory stays bounded however long the trace.

API for step-by-step views (the HTML page, notebooks)::

    replayer = Replayer(layers=("slab", "page"), policy="slub", nr_cpus=2, memory=1 << 30)
    for snapshot in replayer.iter_snapshots(events, every=1000):   # a ReplaySnapshot each time
        ...  # replayer.slab / replayer.buddy may be inspected here (slabinfo(), buddyinfo())
    result = replayer.result()                                     # ReplayResult (frozen)

or ``replayer.run(events, every=N, callback=fn)``, which calls ``fn(snapshot)`` every N events
and returns the ReplayResult. ``iter_batch_snapshots`` and ``run_batches`` do the same over
EventBatches (``TraceParser.parse_batches``, ``ParserProcess.batches``): the fast way, which
``kmem replay`` takes; event tuples are gathered into batches first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, Protocol

from kmem.errors import InvalidArgumentError, InvalidTypeError, KmemError, OutOfMemoryError
from kmem.page.buddy import BuddyAllocator
from kmem.page.layout import MachineLayout, ZoneinfoZone
from kmem.slab.allocator import SlabAllocator
from kmem.slab.kmalloc_sizes import KMALLOC_NORMAL, kmalloc_type
from kmem.slab.sheaves import DEFAULT_KERNEL, KERNEL_SHEAF_CAPACITIES, check_kernel
from kmem.trace.callers import call_site_caller
from kmem.trace.events import (
    EVENT_NAMES,
    KMALLOC,
    KMALLOC_NODE,
    KMEM_CACHE_ALLOC_NODE,
    KMEM_CACHE_FREE,
    MM_PAGE_ALLOC,
    MM_PAGE_FREE,
    MM_PAGE_FREE_BATCHED,
    NULL_PTR,
    EventBatch,
    TraceEvent,
    count_kinds,
    event_batch,
    time_seconds,
)
from kmem.trace.stat import gfp_value

if TYPE_CHECKING:
    from kmem.trace.machine_replay import MachineReplay

LAYERS: Final = ("slab", "page")
# A run of page (and counted-only) events then a run of slab events (kinds 0-5): the segments a
# replay with the slab layer on the machine feeds to both in turn
_SEGMENTS: Final = re.compile(rb"[\x06-\xff]*[\x00-\x05]*")
_BATCH: Final = 1024  # events parsed ahead of the replay (memory: a bounded batch of tuples)
MAX_EXAMPLES: Final = 10
# What the compiled loop (kmem._core.replay_feed) catches as _feed_events and _page_alloc do
_FEED_ERRORS: Final = (KmemError, OutOfMemoryError, InvalidArgumentError)
# The kernel functions that kmalloc sheaves (mm/slub.c, 6.18 and 7.0): their events are kmem's
# own model's business, not the trace's (see "Which kernel's SLUB" above).
KERNEL_SHEAF_SITES: Final = ("alloc_empty_sheaf", "__alloc_empty_sheaf")
# Sheaf figures of ReplayResult.sheaves: census and counters summed over every cache
SHEAF_FIGURES: Final = (
    "caches_with_sheaves", "sheaves", "cpu_sheaf_objects", "barn_objects", "rcu_sheaf_objects",
    "sheaf_refill", "sheaf_flush", "sheaf_alloc", "sheaf_free", "barn_get", "barn_get_fail",
    "barn_put", "barn_put_fail", "alloc_slowpath", "free_slowpath", "kernel_sheaf_events",
)


@dataclass(frozen=True, slots=True)
class ReplaySnapshot:
    """The replay's state after ``events`` events (trace time ``time`` seconds)."""

    events: int
    time: float
    slab_pages: int  # pages kmem's slab layer holds (slabs and large kmalloc blocks)
    page_layer_pages: int  # pages held by replayed page events
    free_pages: int
    live_objects: int
    nr_free: tuple[int, ...]
    unusable_index: tuple[int, ...]  # per order, in thousandths (mm/vmstat.c)
    extfrag_index: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Everything a replay found; ``to_json()`` gives it as one JSON-able dict."""

    layers: tuple[str, ...]
    policy: str
    kernel: str  # whose SLUB: 6.17, 6.18 or 7.0
    nr_cpus: int
    memory: int
    max_order: int
    page_size: int
    events: dict[str, int]
    lines: int
    bad_lines: int
    unknown_frees: int
    null_frees: int
    missed_frees: int
    live_objects_at_end: int
    bytes_alloc_mismatches: int
    bytes_alloc_checked: int
    mismatch_examples: tuple[tuple[int, str, int, int], ...]  # (bytes_req, gfp, traced, kmem)
    cache_size_mismatches: dict[str, tuple[int, int]]  # name -> (traced bytes_alloc, kmem size)
    kmem_oom: int
    too_large: int  # requests above what --max-order lets kmem serve
    cache_errors: dict[str, str]  # caches kmem could not create, and why
    traced_slab_failures: int
    page: dict[str, int]
    sheaves: dict[str, int]  # SHEAF_FIGURES: objects held in sheaves and barns, refills, ...
    memory_in_use: dict[str, dict[str, int]]  # layer -> {"peak_bytes", "final_bytes"}
    slabinfo: str
    buddyinfo: str
    timeline: tuple[ReplaySnapshot, ...]
    pcp: dict[str, Any] | None = None  # the page machine's findings (machine replays only)
    # random kmalloc caches: seed, call sites, kmallocs per normal-family cache (seeded only)
    random_kmalloc: dict[str, Any] | None = None
    nr_nodes: int = 1  # NUMA nodes of the slab layer (--nodes); in the JSON only when > 1

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        if self.pcp is None:
            del document["pcp"]
        if self.random_kmalloc is None:
            del document["random_kmalloc"]
        if self.nr_nodes == 1:  # (one node: the document of kmem before nodes, unchanged)
            del document["nr_nodes"]
        document["mismatch_examples"] = [
            {"bytes_req": r, "gfp_flags": g, "traced_bytes_alloc": t, "kmem_bytes_alloc": k}
            for r, g, t, k in self.mismatch_examples
        ]
        document["cache_size_mismatches"] = {
            name: {"traced_bytes_alloc": t, "kmem_slab_size": k}
            for name, (t, k) in self.cache_size_mismatches.items()
        }
        final = self.timeline[-1] if self.timeline else None
        document["fragmentation_at_end"] = (
            {"unusable_index": list(final.unusable_index),
             "extfrag_index": list(final.extfrag_index)}
            if final else None
        )
        return document


class LineCounts(Protocol):
    """What result() reads of a parser: a TraceParser, or a kmem.trace.pipeline.ParserProcess."""

    lines: int
    bad_lines: int


def _batches_of(events: Iterable[TraceEvent]) -> Iterator[EventBatch]:
    """``events`` in EventBatches of _BATCH: parse a batch, then replay it (alternating per
    event between the parser's and the allocators' working sets costs ~15% more)."""
    iterator = iter(events)
    while batch := list(islice(iterator, _BATCH)):
        yield event_batch(batch)


def _check_layers(layers: Iterable[str]) -> tuple[str, ...]:
    layers = tuple(layers)
    for layer in layers:
        if layer not in LAYERS:
            raise InvalidArgumentError(f"unknown layer {layer!r} (choose from slab, page)")
    return layers


def parse_layers(text: str) -> tuple[str, ...]:
    """'slab,page' -> ('slab', 'page'), rejecting unknown names."""
    layers = _check_layers(part.strip() for part in text.split(",") if part.strip())
    if not layers:
        raise InvalidArgumentError("give at least one layer: slab, page or slab,page")
    return layers


class Replayer:
    """Replays trace events through a BuddyAllocator and a SlabAllocator of kmem's own."""

    def __init__(
        self,
        *,
        layers: Iterable[str] = LAYERS,
        policy: str = "slub",
        nr_cpus: int = 2,
        memory: int = 1 << 30,
        max_order: int = 10,
        page_size: int = 4096,
        max_samples: int = 2000,
        kernel: str = DEFAULT_KERNEL,
        machine: bool = False,
        layout: str | MachineLayout | None = None,
        machine_cpus: int | None = None,
        no_pcp: bool = False,
        pcp_high: int | None = None,
        pcp_batch: int | None = None,
        min_free_kbytes: int | None = None,
        warm: str = "zoneinfo",
        random_kmalloc_seed: int | None = None,
        slab_on_machine: bool = False,
        nr_nodes: int = 1,
    ) -> None:
        self.layers: Final = _check_layers(layers)
        if not isinstance(slab_on_machine, bool):
            raise InvalidTypeError(
                f"slab_on_machine must be a bool, not {type(slab_on_machine).__name__}")
        # The slab layer's pages from the page machine (watermarks, reserves, pfmemalloc
        # slabs) instead of the kernel's slab page events: see machine_replay's docstring.
        self._slab_machine: Final = slab_on_machine and "slab" in self.layers
        self.machine_replay: Final = _machine_replay(
            machine or layout is not None or machine_cpus is not None or no_pcp
            or pcp_high is not None or pcp_batch is not None or min_free_kbytes is not None
            or slab_on_machine,
            layout, memory, nr_cpus if machine_cpus is None else machine_cpus, not no_pcp,
            pcp_high, pcp_batch, min_free_kbytes, warm, self._slab_machine)
        self.policy: Final = policy
        self.kernel: Final = check_kernel(kernel)
        self.nr_cpus: Final = nr_cpus
        # Replay is single-threaded: no locks in either layer (about 10% faster per call).
        self.buddy: Final = BuddyAllocator(memory, page_size, max_order, thread_safe=False)
        self.slab: Final = SlabAllocator(
            self.buddy, nr_cpus, policy, thread_safe=False, kernel=kernel,
            random_kmalloc_seed=random_kmalloc_seed,
            machine=self.machine_replay.machine if self._slab_machine
            and self.machine_replay is not None else None, nr_nodes=nr_nodes)
        # NUMA nodes of the slab layer (kmem.slab.numa): kmalloc_node and
        # kmem_cache_alloc_node events with a node= other than -1 go to that node (a node the
        # replay does not have folds onto one it has, as a CPU does); with one node, none of it
        self.nr_nodes: Final = self.slab.nr_nodes
        # CONFIG_RANDOM_KMALLOC_CACHES: every kmalloc event goes to kmalloc(..., caller=) with
        # its call site's caller (_kmalloc_by_caller), apart from the replay loops.
        self.random_kmalloc_seed: Final = random_kmalloc_seed
        # (bytes_req, gfp_flags text, call site) -> (gfp value, kmem's bytes_alloc, free
        # slot, caller, the normal family's cache name or "")
        self._caller_kmallocs: dict[tuple[int, str, str], tuple[int, int, int, int, str]] = {}
        self._copy_events: dict[str, int] = {}  # normal-family cache -> kmallocs it served
        self._copy_sites: set[str] = set()  # the call sites of those kmallocs
        self._max_samples = max_samples
        self._do_slab = "slab" in self.layers
        self._do_page = "page" in self.layers
        self._dedup_slab_pages = self._do_slab and self._do_page
        # slab layer: traced pointer -> (free slot, kmem address) of every live object, where
        # _frees[free slot] is the free function of its cache: freeing through the cache skips
        # kfree's lookup of the address's cache. (Two ints, not the function itself: a tuple of
        # ints is no work for the garbage collector, and a long trace keeps 100k of them live;
        # bound methods in them made the collector a quarter of a replay's time.)
        self._live: dict[str, tuple[int, int]] = {}
        self._frees: list[Callable[[int, int], None]] = []
        self._free_slots: dict[Callable[[int, int], None], int] = {}
        self._oom_ptrs: set[str] = set()  # allocations kmem could not satisfy
        # (traced name or "", gfp_flags text) -> (alloc, free slot, gfp value) of its cache:
        # what _feed calls, alloc(cpu, gfp)
        self._cache_calls: dict[tuple[str, str], tuple[Callable[[int, int], int], int, int]] = {}
        self._gfp_values: dict[str, int] = {}
        # The kernel's own sheaves (see "Which kernel's SLUB"): call sites seen, those that
        # kmalloc sheaves, and the traced pointers of sheaves still live
        self._sites_seen: set[str] = set()
        self._sheaf_sites: set[str] = set()
        self._kernel_sheaves: set[str] = set()
        self.kernel_sheaf_events = 0
        # (bytes_req, gfp_flags text) -> (gfp value, kmem's bytes_alloc, free slot) of a
        # kmalloc request
        self._kmalloc_calls: dict[tuple[int, str], tuple[int, int, int]] = {}
        self.unknown_frees = 0
        self.null_frees = 0
        self.missed_frees = 0
        self.bytes_alloc_mismatches = 0
        self.mismatch_examples: list[tuple[int, str, int, int]] = []
        self.cache_size_mismatches: dict[str, tuple[int, int]] = {}
        self.kmem_oom = 0
        self.too_large = 0  # requests above what --max-order allows kmem to serve
        self._cache_errors: dict[str, KmemError] = {}  # caches kmem could not create
        self.traced_slab_failures = 0  # allocations the kernel failed (ptr NULL)
        # page layer: traced pfn -> (kmem pfn, order)
        self._pages: dict[int, tuple[int, int]] = {}
        self._slab_pfns: set[int] = set()  # traced pfns of the kernel's own slab pages
        # cpu -> (pfn, order) of an mm_page_alloc awaiting that CPU's next event
        self._pending: dict[int, tuple[int, int]] = {}
        self.page_layer_pages = 0
        self.page_layer_peak = 0
        self.page_counts = dict.fromkeys(
            ("allocs", "frees", "unknown_frees", "missed_frees", "traced_failures",
             "order_mismatches", "batched_duplicates", "slab_page_events_skipped"), 0)
        self._counts = [0] * len(EVENT_NAMES)
        self.timeline: list[ReplaySnapshot] = []
        self._slab_peak = 0
        self._total_peak = 0
        self._last_time = ""  # the TIME text of the last event replayed
        self._every = 1000  # sampling interval (start())
        self._since_sample = 0  # events replayed since the last snapshot

    @property
    def page_size(self) -> int:
        return self.buddy.page_size

    @property
    def events_done(self) -> int:
        """Events replayed so far (of every kind, also those replay only counts)."""
        return sum(self._counts)

    # -- driving ---------------------------------------------------------------------------

    def iter_snapshots(self, events: Iterable[TraceEvent], every: int = 1000
                       ) -> Iterator[ReplaySnapshot]:
        """Replay ``events``, yielding a snapshot after every ``every`` events and at the end."""
        return self.iter_batch_snapshots(_batches_of(events), every)

    def iter_batch_snapshots(self, batches: Iterable[EventBatch], every: int = 1000
                             ) -> Iterator[ReplaySnapshot]:
        """iter_snapshots() over EventBatches (TraceParser.parse_batches, ParserProcess.batches):
        the fast way, with no tuple per event."""
        yield from self.start(every)
        for batch in batches:
            # (a generator: a caller inspecting the replayer at a snapshot sees that moment)
            yield from self._replay_batch(batch, every)
        yield from self.finish()

    def start(self, every: int = 1000) -> list[ReplaySnapshot]:
        """Begin a replay sampled every ``every`` events: the first snapshot (none if begun).

        start(), replay_batch() for each batch and finish() are iter_batch_snapshots() one step
        at a time: the way to drive several replayers with the same batches (kmem.trace.compare).
        """
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InvalidArgumentError(f"every must be an int >= 1, got {every!r}")
        self._every = every
        return [] if self.timeline else [self._sample()]

    def replay_batch(self, batch: EventBatch, every: int | None = None) -> list[ReplaySnapshot]:
        """Replay one batch; the snapshots taken on the way (one every ``every`` events)."""
        return list(self._replay_batch(batch, every))

    def _replay_batch(self, batch: EventBatch, every: int | None = None
                      ) -> Iterator[ReplaySnapshot]:
        if every is None:
            every = self._every
        elif every != self._every:
            self.start(every)
        size = len(batch.kinds)
        start = 0
        while start < size:
            stop = min(size, start + every - self._since_sample)
            self._feed(batch if stop - start == size else batch.part(start, stop))
            self._since_sample += stop - start
            start = stop
            if self._since_sample == every:
                self._since_sample = 0
                yield self._sample()

    def finish(self) -> list[ReplaySnapshot]:
        """End the replay: the page allocations still waiting, and the last snapshots."""
        snapshots = []
        if self._since_sample:
            snapshots.append(self._sample())  # the events since the last snapshot
            self._since_sample = 0
        flushed = self._flush_pending()
        if not self.timeline or flushed or self.timeline[-1].events != self.events_done:
            snapshots.append(self._sample())
        return snapshots

    def run(self, events: Iterable[TraceEvent], every: int = 1000,
            callback: Callable[[ReplaySnapshot], object] | None = None,
            parser: LineCounts | None = None) -> ReplayResult:
        """Replay ``events`` to the end (calling ``callback`` with every snapshot)."""
        return self.run_batches(_batches_of(events), every, callback, parser)

    def run_batches(self, batches: Iterable[EventBatch], every: int = 1000,
                    callback: Callable[[ReplaySnapshot], object] | None = None,
                    parser: LineCounts | None = None) -> ReplayResult:
        """run() over EventBatches: what ``kmem replay`` does."""
        for snapshot in self.iter_batch_snapshots(batches, every):
            if callback is not None:
                callback(snapshot)
        return self.result(parser)

    # -- the hot loop ---------------------------------------------------------------------

    def _feed(self, batch: EventBatch) -> None:
        """Replay a batch of events, but not the kernel's kmallocs of its own sheaves; with
        random kmalloc caches, each kmalloc event on its own (_kmalloc_by_caller)."""
        skip = self._kernel_sheaf_allocs(batch) if self._do_slab else None
        by_caller = self._kmalloc_events(batch)
        if not skip and not by_caller:
            self._feed_part(batch)
            return
        sheaf_allocs = set(skip) if skip and by_caller else ()
        start = 0
        for index in by_caller or skip or ():
            if index > start:
                self._feed_part(batch.part(start, index))
            if not by_caller or index in sheaf_allocs:
                self._skip_kernel_sheaf(batch, index)
            else:
                self._kmalloc_by_caller(batch, index)
            start = index + 1
        if start < len(batch.kinds):
            self._feed_part(batch.part(start, len(batch.kinds)))

    def _kernel_sheaf_allocs(self, batch: EventBatch) -> list[int] | None:
        """Indices of the batch's kmalloc events that are the kernel allocating a sheaf."""
        sites = batch.call_sites
        fresh = set(sites).difference(self._sites_seen)
        if fresh:
            self._sites_seen.update(fresh)
            self._sheaf_sites.update(site for site in fresh
                                     if site.startswith(KERNEL_SHEAF_SITES))
        sheaf_sites = self._sheaf_sites
        if not sheaf_sites or sheaf_sites.isdisjoint(sites):
            return None
        kinds = batch.kinds
        return [index for index, site in enumerate(sites)
                if site in sheaf_sites and kinds[index] <= KMALLOC_NODE]

    def _skip_kernel_sheaf(self, batch: EventBatch, index: int) -> None:
        """A kernel sheaf's kmalloc: counted, its pointer remembered, nothing allocated."""
        self._counts[batch.kinds[index]] += 1
        cpu = batch.cpus[index]
        pending = self._pending.pop(cpu, None)
        if pending is not None:  # (the page a new kmalloc slab for the sheaf needed)
            self._decide_page(pending, True)
        if self._slab_machine:  # (the machine replay's own waiting page: this event decides)
            self.machine_replay.slab_event(cpu)  # type: ignore[union-attr]
        key = batch.keys[index]
        if key != NULL_PTR:
            self._kernel_sheaves.add(key)
        self.kernel_sheaf_events += 1
        self._last_time = batch.times[index]

    def _kmalloc_events(self, batch: EventBatch) -> list[int] | None:
        """With random kmalloc caches, the indices of the batch's kmalloc events (the kernel
        sheaves' among them): the compiled loop knows no call sites, so they go one by one."""
        if self.random_kmalloc_seed is None or not self._do_slab:
            return None
        return [index for index, kind in enumerate(batch.kinds) if kind <= KMALLOC_NODE]

    def _kmalloc_by_caller(self, batch: EventBatch, index: int) -> None:
        """One kmalloc event with random kmalloc caches: the replay loop's kmalloc step
        (_feed_events) with the event's call site as kmalloc's caller."""
        self._counts[batch.kinds[index]] += 1
        self._last_time = batch.times[index]
        cpu = batch.cpus[index]
        pending = self._pending.pop(cpu, None)
        if pending is not None:  # (the page a new slab for this kmalloc needed)
            self._decide_page(pending, True)
        if self._slab_machine:
            self.machine_replay.slab_event(cpu)  # type: ignore[union-attr]
        if cpu >= self.nr_cpus:
            cpu %= self.nr_cpus
        key, tail, site = batch.keys[index], batch.tails[index], batch.call_sites[index]
        if (key in self._live or key == NULL_PTR) and self._odd_alloc(key, cpu):
            return
        try:
            info = self._caller_kmallocs.get((tail[1], tail[3], site))
            node = (tail[4] % self.nr_nodes if self.nr_nodes > 1 and tail[4] >= 0
                    and batch.kinds[index] == KMALLOC_NODE else -1)
            if info is None:
                info, address = self._first_kmalloc_by_caller(tail[1], tail[3], site, cpu,
                                                              node)
            elif node >= 0:
                address = self.slab.kmalloc_node(tail[1], info[0], node, cpu, info[3])
            else:
                address = self.slab.kmalloc(tail[1], info[0], cpu, info[3])
            self._live[key] = (info[2], address)
        except KmemError as error:
            self._failed(key, error)
            return
        if info[4]:
            self._copy_events[info[4]] = self._copy_events.get(info[4], 0) + 1
            self._copy_sites.add(site)
        if info[1] != tail[2]:
            self._mismatch(tail, info[1])

    def _first_kmalloc_by_caller(
        self, size: int, gfp_text: str, site: str, cpu: int, node: int = -1
    ) -> tuple[tuple[int, int, int, int, str], int]:
        """_first_kmalloc for a (size, gfp_flags text, call site) with random kmalloc caches:
        what _kmalloc_by_caller keeps of it, and the address (on ``node``, if not -1)."""
        gfp = gfp_value(gfp_text)
        caller = call_site_caller(site)
        if node >= 0:
            address = self.slab.kmalloc_node(size, gfp, node, cpu, caller)
        else:
            address = self.slab.kmalloc(size, gfp, cpu, caller)
        cache = self.slab.kmalloc_cache_for(size, gfp, caller)
        normal = cache is not None and kmalloc_type(gfp) == KMALLOC_NORMAL
        calls = (gfp, self.slab.ksize(address),
                 self._free_slot(self.slab.kfree if cache is None else cache.free),
                 caller, cache.name if normal and cache is not None else "")
        self._caller_kmallocs[(size, gfp_text, site)] = calls
        return calls, address

    def _random_kmalloc_figures(self) -> dict[str, Any] | None:
        """ReplayResult.random_kmalloc: the seed, and which of the normal family's caches
        (kmalloc-N and its kmalloc-rnd-NN-N copies) served how many kmalloc events."""
        if self.random_kmalloc_seed is None:
            return None
        return {"seed": self.random_kmalloc_seed, "call_sites": len(self._copy_sites),
                "kmallocs": sum(self._copy_events.values()),
                "caches": dict(sorted(self._copy_events.items(), key=_cache_order))}

    def _feed_part(self, batch: EventBatch) -> None:
        """Replay a batch of events."""
        count_kinds(self._counts, batch.kinds)
        machine_replay = self.machine_replay
        if self._slab_machine and machine_replay is not None:
            # The slab layer allocates from the machine: the machine must have seen the page
            # events before each run of slab events, and those before the page events after
            # them. Each segment (page events, then slab events) goes to the machine first
            # (it changes nothing for slab events but decide which page was a slab's).
            size = len(batch.kinds)
            for match in _SEGMENTS.finditer(batch.kinds):
                start, stop = match.span()
                if start == stop:
                    continue
                part = batch if stop - start == size else batch.part(start, stop)
                machine_replay.feed(part.kinds, part.cpus, part.keys, part.tails, part.times)
                self._replay_events(part)
        else:
            self._replay_events(batch)
            if machine_replay is not None:
                machine_replay.feed(batch.kinds, batch.cpus, batch.keys, batch.tails,
                                    batch.times)
        self._last_time = batch.times[-1]  # (never empty: _feed's batches and parts are not)

    def _replay_events(self, batch: EventBatch) -> None:
        """The replay loop over a batch, in the compiled core if it is built."""
        core = self.buddy.compiled_core
        # (the compiled loop does not read node=: with nodes, this loop, on the compiled caches)
        if core is None or self.nr_nodes > 1 or core.replay_feed(
            self, batch.kinds, batch.cpus, batch.keys, batch.tails, self.slab.kmalloc,
            _FEED_ERRORS,
        ) is NotImplemented:
            self._feed_events(batch)

    def _feed_events(self, batch: EventBatch) -> None:
        """The replay loop over a batch's events (kmem._core.replay_feed runs the same loop,
        step for step, in the compiled core)."""
        # Event kinds are ordered (kmem.trace.events): 0-1 kmalloc(_node), 2-3
        # kmem_cache_alloc(_node), 4-5 kfree and kmem_cache_free, 6 mm_page_alloc, 7-8
        # mm_page_free(_batched), then the events replay only counts. A slab event's key is
        # its pointer and its tail (name, bytes_req, bytes_alloc, gfp, ...); a page event's
        # key is its pfn and its tail (gfp, order, migratetype).
        last_kmalloc, last_alloc, last_free = KMALLOC_NODE, KMEM_CACHE_ALLOC_NODE, KMEM_CACHE_FREE
        last_page_free = MM_PAGE_FREE_BATCHED
        kinds = batch.kinds
        do_slab, do_page, dedup = self._do_slab, self._do_page, self._dedup_slab_pages
        pending = self._pending  # (only filled when dedup)
        live = self._live
        frees = self._frees
        cache_calls = self._cache_calls
        kmalloc_calls = self._kmalloc_calls
        kmalloc = self.slab.kmalloc
        nr_cpus = self.nr_cpus
        numa = self.nr_nodes > 1
        for kind, cpu, key, tail in zip(kinds, batch.cpus, batch.keys, batch.tails, strict=True):
            if pending and cpu in pending:
                self._decide_page(pending.pop(cpu), kind <= last_alloc)
            if kind <= last_free:
                if not do_slab:
                    continue
                if cpu >= nr_cpus:
                    cpu %= nr_cpus
                if kind > last_alloc:  # kfree, kmem_cache_free
                    entry = live.pop(key, None)
                    if entry is not None:
                        frees[entry[0]](entry[1], cpu)
                    else:
                        self._free_of_nothing(key)
                    continue
                if (key in live or key == NULL_PTR) and self._odd_alloc(key, cpu):
                    continue
                try:
                    if kind > last_kmalloc:  # kmem_cache_alloc(_node)
                        cache = cache_calls.get((tail[0], tail[3]))
                        if cache is None:
                            cache = self._cache_for(tail[0], tail[2], tail[3])
                        if numa and kind == last_alloc and tail[4] >= 0:
                            live[key] = (cache[1], self._cache_alloc_node(tail, cpu, cache[2]))
                            continue
                        live[key] = (cache[1], cache[0](cpu, cache[2]))
                        continue
                    info = kmalloc_calls.get((tail[1], tail[3]))
                    if numa and kind == last_kmalloc and tail[4] >= 0:  # kmalloc_node
                        info, address = self._first_kmalloc(tail[1], tail[3], cpu,
                                                            tail[4] % self.nr_nodes)
                    elif info is None:
                        info, address = self._first_kmalloc(tail[1], tail[3], cpu)
                    else:
                        address = kmalloc(tail[1], info[0], cpu)
                    live[key] = (info[2], address)
                except KmemError as error:  # (also: kmem cannot create the cache)
                    self._failed(key, error)
                    continue
                if info[1] != tail[2]:  # kmem's bytes_alloc for kmalloc(bytes_req, gfp)
                    self._mismatch(tail, info[1])
            elif do_page:
                if kind == MM_PAGE_ALLOC:
                    if dedup and tail[2] != 1 and "HIGHUSER" not in tail[0]:
                        # Could be a slab page (never movable, never a user page): the next
                        # event on this CPU decides.
                        pending[cpu] = (key, tail[1])
                    else:
                        self._page_alloc(key, tail[1])
                elif kind <= last_page_free:
                    self._page_free(kind, key, tail[1])
                # (the others, pcp refills and drains, are only counted)

    def _decide_page(self, page: tuple[int, int], slab_alloc_follows: bool) -> None:
        """A waiting mm_page_alloc (pfn, order): the kernel's slab page if a slab allocation
        followed it."""
        if slab_alloc_follows:
            self._slab_pfns.add(page[0])
            self.page_counts["slab_page_events_skipped"] += 1
        else:
            self._page_alloc(*page)

    def _free_of_nothing(self, ptr: str) -> None:
        """A free of a pointer with no live object: NULL, a failed allocation, or unknown."""
        if ptr == NULL_PTR:
            self.null_frees += 1
        elif ptr in self._kernel_sheaves:  # the kernel freeing one of its own sheaves
            self._kernel_sheaves.discard(ptr)
            self.kernel_sheaf_events += 1
        elif ptr in self._oom_ptrs:
            self._oom_ptrs.discard(ptr)
        else:
            self.unknown_frees += 1

    def _odd_alloc(self, ptr: str, cpu: int) -> bool:
        """An allocation of NULL (it failed in the kernel: True, skip it) or of a live pointer
        (its free was not traced: free the old object first)."""
        if ptr == NULL_PTR:
            self.traced_slab_failures += 1
            return True
        self._missed_free(ptr, cpu)
        return False

    # -- slab slow paths -------------------------------------------------------------------

    def _first_kmalloc(self, size: int, gfp_text: str, cpu: int, node: int = -1
                       ) -> tuple[tuple[int, int, int], int]:
        """The first kmalloc(size, gfp) of a (size, gfp_flags text): (what _feed keeps of it,
        the address). It keeps the gfp value, kmem's bytes_alloc (ksize of what kmalloc
        returned) and the free slot of its cache (kfree for a large kmalloc). With a ``node``
        (several nodes), any kmalloc_node(size, gfp, node) of them, not only the first."""
        gfp = gfp_value(gfp_text)  # (an older kernel's flag names count 0)
        if node >= 0:
            address = self.slab.kmalloc_node(size, gfp, node, cpu)
        else:
            address = self.slab.kmalloc(size, gfp, cpu)
        cache = self.slab.kmalloc_cache_for(size, gfp)
        calls = (gfp, self.slab.ksize(address),
                 self._free_slot(self.slab.kfree if cache is None else cache.free))
        self._kmalloc_calls[(size, gfp_text)] = calls
        return calls, address

    def _mismatch(self, tail: tuple[Any, ...], expected: int) -> None:
        """A kmalloc event (its tail) whose bytes_alloc kmem does not give."""
        self.bytes_alloc_mismatches += 1
        if len(self.mismatch_examples) < MAX_EXAMPLES:
            self.mismatch_examples.append((tail[1], tail[3], tail[2], expected))

    def _missed_free(self, ptr: str, cpu: int) -> None:
        """The pointer is allocated again while live: its free was not traced."""
        self.missed_frees += 1
        slot, address = self._live.pop(ptr)
        self._frees[slot](address, cpu)

    def _free_slot(self, free: Callable[[int, int], None]) -> int:
        """The index of ``free`` in _frees (appended the first time)."""
        slot = self._free_slots.get(free)
        if slot is None:
            slot = self._free_slots[free] = len(self._frees)
            self._frees.append(free)
        return slot

    def _failed(self, ptr: str, error: Exception | None) -> None:
        """kmem could not allocate: out of memory, or a size it cannot serve (above
        --max-order, or a cache it could not create); the pointer's free will be ignored."""
        if isinstance(error, OutOfMemoryError):
            self.kmem_oom += 1
        else:
            self.too_large += 1
        self._oom_ptrs.add(ptr)

    def _cache_alloc_node(self, tail: tuple[Any, ...], cpu: int, gfp: int) -> int:
        """kmem_cache_alloc_node of an event's cache (_cache_for made it) on its node=."""
        cache = self.slab.caches[tail[0] or f"cache-{tail[2]}"]
        return cache.alloc_node(cpu, gfp, tail[4] % self.nr_nodes)

    def _cache_for(self, traced_name: str, bytes_alloc: int, gfp_text: str
                   ) -> tuple[Callable[[int, int], int], int, int]:
        """(alloc, free slot, gfp) of the cache of a kmem_cache_alloc event with these gfp flags,
        the cache created on first sight (with the sheaves its kernel gives it). Raises
        KmemError if kmem cannot create it (objects above what --max-order allows)."""
        name = traced_name or f"cache-{bytes_alloc}"
        key = (name, gfp_text)
        calls = self._cache_calls.get(key)
        if calls is not None:  # (an unnamed event: _feed looks it up by "" and comes here)
            return calls
        failed = self._cache_errors.get(name)
        if failed is not None:
            # The same error each time (it counts the same way), without the tracebacks of the
            # times before (they would pile up on it).
            raise failed.with_traceback(None)
        cache = self.slab.caches.get(name)  # (a kmalloc cache, or one created before)
        if cache is None:
            capacity = 0
            if self.policy == "slub" and self.kernel != "6.17":
                capacity = KERNEL_SHEAF_CAPACITIES.get(name, 0)
            try:
                cache = self.slab.kmem_cache_create(name, max(bytes_alloc, 1),
                                                    sheaf_capacity=capacity)
            except KmemError as error:
                self._cache_errors[name] = error
                raise
        if cache.slab_size != bytes_alloc and name not in self.cache_size_mismatches:
            self.cache_size_mismatches[name] = (bytes_alloc, cache.slab_size)
        gfp = self._gfp_values.get(gfp_text)
        if gfp is None:
            gfp = self._gfp_values[gfp_text] = gfp_value(gfp_text)
        # By its name; an unnamed event (kernels before 6.2) by its size-derived name, and
        # _feed never finds it by its name (""), so the next unnamed event of another size
        # comes here for its own cache.
        calls = self._cache_calls[key] = (cache.alloc, self._free_slot(cache.free), gfp)
        return calls

    # -- page layer ------------------------------------------------------------------------

    def _page_alloc(self, pfn: int, order: int) -> None:
        """mm_page_alloc of the traced ``pfn`` (-1: the kernel's allocation failed)."""
        counts = self.page_counts
        if pfn < 0:
            counts["traced_failures"] += 1
            return
        old = self._pages.pop(pfn, None)
        if old is not None:
            counts["missed_frees"] += 1
            self.buddy.free_pages(*old)
            self.page_layer_pages -= 1 << old[1]
        try:
            own = self.buddy.alloc_pages(order)
        except OutOfMemoryError:
            self.kmem_oom += 1
            return
        except InvalidArgumentError:  # an order above --max-order
            self.too_large += 1
            return
        self._pages[pfn] = (own, order)
        counts["allocs"] += 1
        self.page_layer_pages += 1 << order
        if self.page_layer_pages > self.page_layer_peak:
            self.page_layer_peak = self.page_layer_pages

    def _page_free(self, kind: int, pfn: int, order: int) -> None:
        """mm_page_free or mm_page_free_batched (``kind``) of the traced ``pfn``."""
        counts = self.page_counts
        own = self._pages.pop(pfn, None)
        if own is None:
            if pfn in self._slab_pfns:
                self._slab_pfns.discard(pfn)
                counts["slab_page_events_skipped"] += 1
            elif kind == MM_PAGE_FREE_BATCHED:
                counts["batched_duplicates"] += 1
            else:
                counts["unknown_frees"] += 1
            return
        if own[1] != order and kind == MM_PAGE_FREE:
            counts["order_mismatches"] += 1
        self.buddy.free_pages(*own)
        self.page_layer_pages -= 1 << own[1]
        counts["frees"] += 1

    def _flush_pending(self) -> int:
        """Replay the page allocations still waiting for their CPU's next event."""
        waiting = list(self._pending.values())
        self._pending.clear()
        for pfn, order in waiting:
            self._page_alloc(pfn, order)
        return len(waiting)

    # -- sampling and results ----------------------------------------------------------------

    def _sample(self) -> ReplaySnapshot:
        buddy = self.buddy
        free = buddy.nr_free_pages
        used = buddy.nr_pages - free
        slab_pages = used - self.page_layer_pages
        self._slab_peak = max(self._slab_peak, slab_pages)
        self._total_peak = max(self._total_peak, used)
        time = time_seconds(self._last_time) if self._last_time else 0.0
        report = buddy.fragmentation()
        snapshot = ReplaySnapshot(
            events=self.events_done, time=time, slab_pages=slab_pages,
            page_layer_pages=self.page_layer_pages, free_pages=free,
            live_objects=len(self._live), nr_free=buddy.nr_free,
            unusable_index=report.unusable, extfrag_index=report.extfrag,
        )
        if self.machine_replay is not None:
            self.machine_replay.sample(time)
        timeline = self.timeline
        timeline.append(snapshot)
        if len(timeline) >= self._max_samples:
            del timeline[1:-1:2]  # keep the first and last, halve the rest
        return snapshot

    def _not_replayed(self) -> int:
        """Page events replay only counts: the per-CPU lists' refills and drains, and extfrag."""
        if not self._do_page:
            return 0
        return sum(self._counts[MM_PAGE_FREE_BATCHED + 1:])

    def _sheaf_figures(self) -> dict[str, int]:
        """SHEAF_FIGURES: what every cache's sheaves and barn hold and did, summed."""
        figures = dict.fromkeys(SHEAF_FIGURES, 0)
        for stats in self.slab.stats().values():
            if stats.sheaf_capacity:
                figures["caches_with_sheaves"] += 1
            for name in SHEAF_FIGURES[1:-1]:
                figures[name] += getattr(stats, name)
        figures["kernel_sheaf_events"] = self.kernel_sheaf_events
        return figures

    def result(self, parser: LineCounts | None = None) -> ReplayResult:
        """The replay's findings (after iter_snapshots/run); ``parser`` adds its line counts."""
        page_bytes = self.page_size
        final_used = self.buddy.nr_pages - self.buddy.nr_free_pages
        final_slab = final_used - self.page_layer_pages
        return ReplayResult(
            layers=self.layers, policy=self.policy, kernel=self.kernel, nr_cpus=self.nr_cpus,
            memory=self.buddy.nr_pages * page_bytes, max_order=self.buddy.max_order,
            page_size=page_bytes,
            events=dict(zip(EVENT_NAMES, self._counts, strict=True)),
            lines=parser.lines if parser else 0, bad_lines=parser.bad_lines if parser else 0,
            unknown_frees=self.unknown_frees, null_frees=self.null_frees,
            missed_frees=self.missed_frees, live_objects_at_end=len(self._live),
            bytes_alloc_mismatches=self.bytes_alloc_mismatches,
            bytes_alloc_checked=self._counts[KMALLOC] + self._counts[KMALLOC_NODE],
            mismatch_examples=tuple(self.mismatch_examples),
            cache_size_mismatches=dict(self.cache_size_mismatches),
            kmem_oom=self.kmem_oom, too_large=self.too_large,
            cache_errors={name: str(error) for name, error in self._cache_errors.items()},
            traced_slab_failures=self.traced_slab_failures,
            page={**self.page_counts, "not_replayed": self._not_replayed(),
                  "live_pages_at_end": self.page_layer_pages, "peak_pages": self.page_layer_peak},
            sheaves=self._sheaf_figures(),
            memory_in_use={
                "slab": {"peak_bytes": max(self._slab_peak, final_slab) * page_bytes,
                         "final_bytes": final_slab * page_bytes},
                "page": {"peak_bytes": self.page_layer_peak * page_bytes,
                         "final_bytes": self.page_layer_pages * page_bytes},
                "total": {"peak_bytes": max(self._total_peak, final_used) * page_bytes,
                          "final_bytes": final_used * page_bytes},
            },
            slabinfo=self.slab.slabinfo() if self._do_slab else "",
            buddyinfo=self.buddy.buddyinfo(),
            timeline=tuple(self.timeline),
            pcp=self._machine_result(),
            random_kmalloc=self._random_kmalloc_figures(),
            nr_nodes=self.nr_nodes,
        )

    def _machine_result(self) -> dict[str, Any] | None:
        if self.machine_replay is None:
            return None
        self.machine_replay.finish()
        return self.machine_replay.to_json()


def _cache_order(item: tuple[str, int]) -> tuple[int, str]:
    """kmalloc-N and kmalloc-rnd-NN-N by object size, then name (kmalloc-8 before -rnd-01-8)."""
    name = item[0]
    size = name.rsplit("-", 1)[1]
    return (int(size[:-1]) << 10 if size.endswith("k") else int(size)), name


def _machine_replay(wanted: bool, layout: str | MachineLayout | None, memory: int, nr_cpus: int,
                    pcp: bool, pcp_high: int | None, pcp_batch: int | None,
                    min_free_kbytes: int | None, warm: str, slab_on_machine: bool = False
                    ) -> MachineReplay | None:
    """The page machine a replay feeds (None: no machine asked for). Without a layout it is
    one Normal zone of ``memory`` bytes, the buddy allocator's memory."""
    from kmem.trace.machine_replay import WARM_MODES, MachineReplay, read_layout

    if warm not in WARM_MODES:  # (also without a machine: a typo should not pass silently)
        raise InvalidArgumentError(
            f"unknown warm start {warm!r} (choose from {', '.join(WARM_MODES)})")
    if not wanted:
        return None
    from kmem.page.machine import PageMachine

    zoneinfo: list[ZoneinfoZone] = []
    if layout is None:
        layout = MachineLayout.from_sizes({"Normal": memory}, source=f"Normal={memory}")
    elif isinstance(layout, str):
        layout, zoneinfo = read_layout(layout)
    machine = PageMachine(layout, nr_cpus=nr_cpus, min_free_kbytes=min_free_kbytes, pcp=pcp,
                          pcp_high=pcp_high, pcp_batch=pcp_batch)
    return MachineReplay(machine, warm=warm, zoneinfo=zoneinfo,
                         slab_pages_elsewhere=slab_on_machine)
