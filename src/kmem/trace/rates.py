"""Slab allocation rates per cache and per interval of a kmem trace: bcc's slabratetop.

slabratetop counts kmem_cache_alloc() calls per cache each interval, with the bytes they took
(the cache's object size, ``kmem_cache->size``, per call). Here every slab allocation event
counts: kmem_cache_alloc(_node) under the cache its event names, kmalloc(_node) under the kmalloc
cache Linux 6.18 serves it from (``kmalloc-192``, ``kmalloc-rcl-64``, ``kmalloc-cg-1k``, ...;
``kmalloc-large`` above the largest), and its bytes are the event's ``bytes_alloc`` (the object
size of that cache, as slabratetop adds). Intervals start at the first event: interval ``i``
holds the events at ``first + i * interval <= time < first + (i + 1) * interval``; intervals
without allocations between the first and the last event are kept (slabratetop prints an
empty table for them too).

>>> from kmem.trace.parse import parse_trace
>>> lines = [
...     "a-1 [000] ..... 1.00: kmem_cache_alloc: call_site=f+0x1/0x9 ptr=00000000000000a1"
...     " name=dentry bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1"
...     " accounted=true",
...     "a-1 [000] ..... 3.50: kmalloc: call_site=f+0x1/0x9 ptr=00000000000000a2 bytes_req=20"
...     " bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false",
... ]
>>> rates = slab_rates(parse_trace(lines), interval=1.0)
>>> [(i.start, [(c.name, c.allocs, c.bytes) for c in i.caches]) for i in rates.intervals]
[(1.0, [('dentry', 1, 192)]), (2.0, []), (3.0, [('kmalloc-32', 1, 32)])]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from kmem.errors import InvalidArgumentError
from kmem.slab.kmalloc_sizes import kmalloc_cache_name
from kmem.trace.events import KMALLOC_NODE, KMEM_CACHE_ALLOC_NODE, TraceEvent, time_seconds
from kmem.trace.stat import gfp_value

DEFAULT_MAX_ROWS: Final = 20  # slabratetop's -r default
MAX_INTERVALS: Final = 1_000_000  # a guard against --interval 1ns on an hour-long trace

_UNITS: Final = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "m": 60.0}
_DURATION: Final = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|ns|m)?\s*")


def parse_duration(text: str) -> float:
    """Seconds of a duration text: ``"1s"``, ``"250ms"``, ``"10us"``, ``"2m"``, ``"0.5"``.

    >>> parse_duration("250ms"), parse_duration("2"), parse_duration("1.5m")
    (0.25, 2.0, 90.0)
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise InvalidArgumentError(
            f"bad duration {text!r} (expected e.g. 1s, 250ms, 10us, 2m or 0.5)")
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


@dataclass(frozen=True, slots=True)
class CacheRate:
    """One cache's allocations in one interval."""

    name: str
    allocs: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RateInterval:
    """One interval: its start and end (trace time) and its caches, most bytes first."""

    start: float
    end: float
    caches: tuple[CacheRate, ...]

    @property
    def allocs(self) -> int:
        return sum(cache.allocs for cache in self.caches)

    @property
    def bytes(self) -> int:
        return sum(cache.bytes for cache in self.caches)


@dataclass(frozen=True, slots=True)
class SlabRates:
    """Every interval of a trace, in order."""

    interval: float
    first_time: float
    intervals: tuple[RateInterval, ...]

    def totals(self) -> dict[str, CacheRate]:
        """Per cache, its allocations over the whole trace, most bytes first."""
        sums: dict[str, list[int]] = {}
        for interval in self.intervals:
            for cache in interval.caches:
                entry = sums.setdefault(cache.name, [0, 0])
                entry[0] += cache.allocs
                entry[1] += cache.bytes
        rows = sorted(sums.items(), key=lambda item: (-item[1][1], -item[1][0], item[0]))
        return {name: CacheRate(name, allocs, size) for name, (allocs, size) in rows}

    def busiest(self, count: int) -> list[str]:
        """The ``count`` caches with most bytes allocated over the trace."""
        return list(self.totals())[:count]

    def to_json(self, max_rows: int | None = None) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "first_time": self.first_time,
            "intervals": [
                {"start": i.start, "end": i.end, "allocs": i.allocs, "bytes": i.bytes,
                 "caches": [{"name": c.name, "allocs": c.allocs, "bytes": c.bytes}
                            for c in i.caches[:max_rows]]}
                for i in self.intervals
            ],
        }


def slab_rates(events: Iterable[TraceEvent], interval: float = 1.0) -> SlabRates:
    """The allocations per cache of each ``interval`` seconds of ``events``."""
    if not interval > 0:
        raise InvalidArgumentError(f"interval must be > 0 seconds, got {interval}")
    buckets: dict[int, dict[str, list[int]]] = {}
    kmalloc_names: dict[tuple[int, str], str] = {}
    first: float | None = None
    last_index = 0
    for event in events:
        time = time_seconds(event[2])
        if first is None:
            first = time
        # (a nudge of 1e-9 intervals: an event on a boundary, 1.001 with 1 ms intervals from
        # 1.000, belongs to the next interval although 0.001 / 0.001 may compute as 0.99999)
        index = int((time - first) / interval + 1e-9)
        last_index = max(last_index, index)
        if index >= MAX_INTERVALS:
            raise InvalidArgumentError(
                f"interval {interval:g} s makes more than {MAX_INTERVALS} intervals: choose a"
                " longer one")
        kind = event[0]
        if kind > KMEM_CACHE_ALLOC_NODE or event[4] == "0":
            continue  # frees, page events, failed allocations
        if kind <= KMALLOC_NODE:
            name = kmalloc_names.get((event[6], event[8]))
            if name is None:
                name = _kmalloc_name(event[6], event[8])
                kmalloc_names[(event[6], event[8])] = name
        else:
            name = event[5] or f"cache-{event[7]}"
        caches = buckets.get(index)
        if caches is None:
            caches = buckets[index] = {}
        entry = caches.get(name)
        if entry is None:
            caches[name] = [1, event[7]]
        else:
            entry[0] += 1
            entry[1] += event[7]
    if first is None:
        return SlabRates(interval=interval, first_time=0.0, intervals=())
    intervals = []
    for index in range(last_index + 1):
        rows = buckets.get(index, {})
        ordered = sorted((CacheRate(name, n, size) for name, (n, size) in rows.items()),
                        key=lambda c: (-c.bytes, -c.allocs, c.name))
        intervals.append(RateInterval(start=round(first + index * interval, 9),
                                      end=round(first + (index + 1) * interval, 9),
                                      caches=tuple(ordered)))
    return SlabRates(interval=interval, first_time=first, intervals=tuple(intervals))


def _kmalloc_name(size: int, gfp: str) -> str:
    try:
        return kmalloc_cache_name(size, gfp_value(gfp))
    except InvalidArgumentError:
        return "kmalloc-large" if size else "kmalloc-0"


def format_rates(rates: SlabRates, max_rows: int = DEFAULT_MAX_ROWS) -> str:
    """slabratetop's output, one table per interval (as ``slabratetop -C``: a blank line, the
    interval's line where slabratetop prints the clock and load average, the header
    ``"%-32s %6s %10s"`` CACHE ALLOCS BYTES and at most ``max_rows`` caches, most bytes first).
    """
    parts = []
    for number, interval in enumerate(rates.intervals, 1):
        lines = ["", f"{interval.start:.6f} - {interval.end:.6f} s (interval {number} of"
                 f" {len(rates.intervals)})", f"{'CACHE':<32s} {'ALLOCS':>6s} {'BYTES':>10s}"]
        lines += [f"{cache.name:<32s} {cache.allocs:6d} {cache.bytes:10d}"
                  for cache in interval.caches[:max_rows]]
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)
