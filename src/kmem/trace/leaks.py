"""Outstanding allocations of a kmem trace, by call site: what bcc's memleak reports.

An allocation is outstanding at time T when the trace allocated it at or before T and did not
free it by T. Pairing follows replay (kmem.trace.replay) exactly, so that the number of
outstanding slab objects equals the replay's ``live_objects_at_end`` on the same trace:

- a slab allocation of NULL failed in the kernel: nothing is outstanding;
- an allocation of a pointer that is still outstanding means its free was not traced (bulk and
  RCU paths): the old allocation is dropped, the new one counts;
- a free of a pointer with nothing outstanding (allocated before the trace began) is counted in
  ``unknown_frees``.

Page allocations (mm_page_alloc) pair with mm_page_free / mm_page_free_batched by pfn. ftrace's
page events carry no call site, so outstanding pages are grouped by order and GFP flags instead
(``"mm_page_alloc order=0 GFP_KERNEL"``); a perf script trace with call chains gives them one.
The kernel's slab pages are page allocations too: slab bytes and page bytes overlap.

>>> from kmem.trace.parse import parse_trace
>>> lines = [
...     "a-1 [000] ..... 1.0: kmalloc: call_site=f+0x1/0x9 ptr=00000000000000a1 bytes_req=20"
...     " bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false",
...     "a-1 [000] ..... 2.0: kmalloc: call_site=f+0x1/0x9 ptr=00000000000000a2 bytes_req=20"
...     " bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false",
...     "a-1 [000] ..... 3.0: kfree: call_site=g+0x2/0x9 ptr=00000000000000a2",
... ]
>>> report = find_leaks(parse_trace(lines))
>>> [(site.call_site, site.count, site.bytes, site.oldest_age) for site in report.sites]
[('f+0x1/0x9', 1, 32, 2.0)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from kmem.errors import InvalidArgumentError
from kmem.trace.events import (
    KMEM_CACHE_FREE,
    MM_PAGE_ALLOC,
    MM_PAGE_FREE,
    MM_PAGE_FREE_BATCHED,
    NULL_PTR,
    SLAB_FREE_KINDS,
    TraceEvent,
    time_seconds,
)

DEFAULT_TOP: Final = 10  # memleak's -T default


@dataclass(frozen=True, slots=True)
class LeakSite:
    """The outstanding allocations of one call site (one memleak "stack")."""

    layer: str  # "slab" or "page"
    call_site: str
    count: int
    bytes: int  # slab: sum of bytes_alloc; page: page_size << order each
    bytes_req: int  # slab: sum of bytes_req (pages: as bytes)
    oldest_time: float  # trace timestamp of the oldest outstanding allocation
    oldest_age: float  # seconds from it to the report's time


@dataclass(frozen=True, slots=True)
class LeakReport:
    """Outstanding allocations at ``at`` (trace time), the sites sorted by bytes, largest
    first (ties: more allocations, then call site)."""

    at: float
    first_time: float  # the first event's time (0.0 for a trace without events)
    events: int  # events read up to ``at``
    min_age: float
    slab_objects: int  # all outstanding slab objects (before --min-age)
    slab_bytes: int
    page_allocations: int
    page_bytes: int
    unknown_frees: int
    missed_frees: int
    sites: tuple[LeakSite, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at, "first_time": self.first_time, "events": self.events,
            "min_age": self.min_age,
            "outstanding": {"slab_objects": self.slab_objects, "slab_bytes": self.slab_bytes,
                            "page_allocations": self.page_allocations,
                            "page_bytes": self.page_bytes},
            "unknown_frees": self.unknown_frees, "missed_frees": self.missed_frees,
            "sites": [
                {"layer": s.layer, "call_site": s.call_site, "count": s.count, "bytes": s.bytes,
                 "bytes_req": s.bytes_req, "oldest_time": s.oldest_time,
                 "oldest_age": s.oldest_age}
                for s in self.sites
            ],
        }


class LeakTracker:
    """Follows allocations and frees event by event; ``report()`` groups what is outstanding.

    ``layers`` chooses what is tracked ("slab", "page" or both); ``stop_at`` (trace time) makes
    add() ignore every event after it (the trace is read to its end all the same); with
    ``relative``, ``stop_at`` counts seconds from the first event.
    """

    def __init__(self, *, layers: Iterable[str] = ("slab", "page"), page_size: int = 4096,
                 stop_at: float | None = None, relative: bool = False) -> None:
        wanted = tuple(layers)
        for layer in wanted:
            if layer not in ("slab", "page"):
                raise InvalidArgumentError(f"unknown layer {layer!r} (expected slab or page)")
        if page_size < 1:
            raise InvalidArgumentError(f"page size must be >= 1, got {page_size}")
        self.page_size: Final = page_size
        self.stop_at = stop_at
        self._relative = relative and stop_at is not None
        self._slab = "slab" in wanted
        self._page = "page" in wanted
        # pointer -> (time, call site, bytes_alloc, bytes_req); pfn -> (time, site, order)
        self._live: dict[str, tuple[float, str, int, int]] = {}
        self._pages: dict[int, tuple[float, str, int]] = {}
        self.events = 0
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.unknown_frees = 0
        self.missed_frees = 0

    def add(self, events: Iterable[TraceEvent]) -> None:
        live, pages = self._live, self._pages
        do_slab, do_page, stop_at = self._slab, self._page, self.stop_at
        for event in events:
            time = time_seconds(event[2])
            if self.first_time is None:
                self.first_time = time
                if self._relative and stop_at is not None:
                    stop_at = self.stop_at = time + stop_at
                    self._relative = False
            if stop_at is not None and time > stop_at:
                continue
            self.events += 1
            self.last_time = time
            kind = event[0]
            if kind <= KMEM_CACHE_FREE:
                if not do_slab:
                    continue
                ptr = event[4]
                if kind in SLAB_FREE_KINDS:
                    if live.pop(ptr, None) is None and ptr != NULL_PTR:
                        self.unknown_frees += 1
                    continue
                if ptr == NULL_PTR:
                    continue  # the allocation failed in the kernel
                if ptr in live:
                    self.missed_frees += 1
                live[ptr] = (time, event[3], event[7], event[6])
            elif do_page:
                pfn = event[10]
                if kind == MM_PAGE_ALLOC:
                    if pfn < 0:
                        continue  # a failed allocation
                    order = event[11]
                    site = event[3] or f"mm_page_alloc order={order} {event[8]}"
                    pages[pfn] = (time, site, order)
                elif kind in (MM_PAGE_FREE, MM_PAGE_FREE_BATCHED):
                    pages.pop(pfn, None)

    @property
    def slab_objects(self) -> int:
        """Slab objects outstanding now (replay's live objects)."""
        return len(self._live)

    def report(self, *, at: float | None = None, min_age: float = 0.0,
               top: int | None = None) -> LeakReport:
        """The outstanding allocations grouped by call site. ``at`` is the time ages are
        measured from (default: ``stop_at``, else the last event read); only allocations at
        least ``min_age`` seconds old are grouped; ``top`` keeps that many sites."""
        if min_age < 0:
            raise InvalidArgumentError(f"minimum age must be >= 0, got {min_age}")
        if top is not None and top < 1:
            raise InvalidArgumentError(f"top must be >= 1, got {top}")
        if at is not None:
            now = at
        elif self.stop_at is not None and not self._relative:
            now = self.stop_at
        else:
            now = self.last_time if self.last_time is not None else 0.0
        groups: dict[tuple[str, str], list[Any]] = {}  # (layer, site) -> [n, bytes, req, t0]
        for time, site, bytes_alloc, bytes_req in self._live.values():
            if now - time >= min_age:  # (the age compared, not now - min_age: 10.027 - 10.007
                # is 0.0199999... in floats: a 0.02 s old allocation all the same)
                _count(groups, ("slab", site), bytes_alloc, bytes_req, time)
        for time, site, order in self._pages.values():
            if now - time >= min_age:
                size = self.page_size << order
                _count(groups, ("page", site), size, size, time)
        sites = [LeakSite(layer=layer, call_site=site, count=n, bytes=size, bytes_req=req,
                          oldest_time=oldest, oldest_age=round(now - oldest, 9))
                 for (layer, site), (n, size, req, oldest) in groups.items()]
        sites.sort(key=lambda s: (-s.bytes, -s.count, s.layer, s.call_site))
        return LeakReport(
            at=now, first_time=self.first_time if self.first_time is not None else 0.0,
            events=self.events, min_age=min_age,
            slab_objects=len(self._live),
            slab_bytes=sum(entry[2] for entry in self._live.values()),
            page_allocations=len(self._pages),
            page_bytes=sum(self.page_size << entry[2] for entry in self._pages.values()),
            unknown_frees=self.unknown_frees, missed_frees=self.missed_frees,
            sites=tuple(sites[:top] if top is not None else sites),
        )


def _count(groups: dict[tuple[str, str], list[Any]], key: tuple[str, str], size: int,
           requested: int, time: float) -> None:
    group = groups.get(key)
    if group is None:
        groups[key] = [1, size, requested, time]
        return
    group[0] += 1
    group[1] += size
    group[2] += requested
    if time < group[3]:
        group[3] = time


def find_leaks(events: Iterable[TraceEvent], *, at: float | None = None, relative: bool = False,
               min_age: float = 0.0, top: int | None = None,
               layers: Iterable[str] = ("slab", "page"), page_size: int = 4096) -> LeakReport:
    """The outstanding allocations of ``events`` at trace time ``at`` (default: the end;
    ``relative``: ``at`` seconds after the first event)."""
    tracker = LeakTracker(layers=layers, page_size=page_size, stop_at=at, relative=relative)
    tracker.add(events)
    return tracker.report(min_age=min_age, top=top)


def format_leaks(report: LeakReport) -> str:
    """memleak's text: ``[time] Top N stacks with outstanding allocations:``, then per call
    site (smallest first, as memleak prints them, so the largest is last on the screen)
    ``\\tB bytes in N allocations from stack`` with its oldest age, and the call site below,
    then kmem's totals line."""
    lines = [f"[{report.at:.6f}] Top {len(report.sites)} stacks with outstanding allocations:"]
    for site in reversed(report.sites):
        lines.append(f"\t{site.bytes} bytes in {site.count} allocations from stack"
                     f" (oldest {site.oldest_age:.6f} s)")
        lines.append(f"\t\t{site.call_site} [{site.layer}]")
    age = f" at least {report.min_age:g} s old" if report.min_age else ""
    lines.append(
        f"outstanding at {report.at:.6f}{age} (of all: {report.slab_objects} slab objects,"
        f" {report.slab_bytes} bytes; {report.page_allocations} page allocations,"
        f" {report.page_bytes} bytes; {report.events} events since {report.first_time:.6f})")
    return "\n".join(lines) + "\n"
