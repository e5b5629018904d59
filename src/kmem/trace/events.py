"""Trace event records: one plain tuple per event, the same layout for every event kind.

A parsed trace is a stream of 13-tuples (no object per event beyond the tuple itself, so a
million-event trace streams at the speed of ``str.split``). Index constants name the columns:

    KIND CPU TIME CALL_SITE PTR NAME BYTES_REQ BYTES_ALLOC GFP NODE PFN ORDER MIGRATETYPE

Slab events (kmalloc, kmalloc_node, kmem_cache_alloc, kmem_cache_alloc_node, kfree,
kmem_cache_free) fill CALL_SITE, PTR, NAME (kmem_cache_* on 6.x, else ""), BYTES_REQ,
BYTES_ALLOC, GFP and NODE (-1 when the kernel did not print it). Page events (mm_page_*) fill PFN
(-1 for a failed allocation), ORDER, MIGRATETYPE (-1 when not printed) and GFP. Unused columns
hold "" or -1. TIME is the timestamp token as printed (``"10308.077785:"``): event_time()
converts it, so the hot path does not pay for a float per event. Pointers stay the hex text
as traced, hashed (``000000004df4a32a``) or raw (``0xffff888102c69fa0``): a dict key that pairs
allocations with frees either way (hashing is one-to-one within a boot) without the cost of
int() per event; every spelling of NULL (``(nil)``, ``(null)``, ``0000000000000000``, ``0x0``)
is ``NULL_PTR`` ("0"). ``pointer_value()`` gives the number.

In bulk, events travel as an EventBatch: the same events as columns (a bytes of kinds, and lists
of the rest, where each event's fixed fields are one shared tuple, its *tail*). A parser's
memo tables hand out these tails (one object per distinct tail, not per event), so a batch
costs a few pointers per event and crosses a pipe (kmem.trace.pipeline) cheaply; the replay
loop reads it column by column. ``batch_events()`` gives the tuples of a batch, ``event_batch()``
the batch of a list of tuples.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

# Event kinds, in the order of the kernel's include/trace/events/kmem.h.
KMALLOC: Final = 0
KMALLOC_NODE: Final = 1
KMEM_CACHE_ALLOC: Final = 2
KMEM_CACHE_ALLOC_NODE: Final = 3
KFREE: Final = 4
KMEM_CACHE_FREE: Final = 5
MM_PAGE_ALLOC: Final = 6
MM_PAGE_FREE: Final = 7
MM_PAGE_FREE_BATCHED: Final = 8
MM_PAGE_ALLOC_ZONE_LOCKED: Final = 9
MM_PAGE_PCPU_DRAIN: Final = 10
MM_PAGE_ALLOC_EXTFRAG: Final = 11

EVENT_NAMES: Final = (
    "kmalloc",
    "kmalloc_node",
    "kmem_cache_alloc",
    "kmem_cache_alloc_node",
    "kfree",
    "kmem_cache_free",
    "mm_page_alloc",
    "mm_page_free",
    "mm_page_free_batched",
    "mm_page_alloc_zone_locked",
    "mm_page_pcpu_drain",
    "mm_page_alloc_extfrag",
)
EVENT_KIND: Final = {name: kind for kind, name in enumerate(EVENT_NAMES)}

SLAB_ALLOC_KINDS: Final = frozenset(
    {KMALLOC, KMALLOC_NODE, KMEM_CACHE_ALLOC, KMEM_CACHE_ALLOC_NODE}
)
SLAB_FREE_KINDS: Final = frozenset({KFREE, KMEM_CACHE_FREE})

# Column indices of an event tuple.
KIND: Final = 0
CPU: Final = 1
TIME: Final = 2
CALL_SITE: Final = 3
PTR: Final = 4
NAME: Final = 5
BYTES_REQ: Final = 6
BYTES_ALLOC: Final = 7
GFP: Final = 8
NODE: Final = 9
PFN: Final = 10
ORDER: Final = 11
MIGRATETYPE: Final = 12

NULL_PTR: Final = "0"

# The answers of a line watch (kmem.trace.parse.LineWatch): flags.
WATCH_DROP: Final = 1  # the line is not the parser's (read as an empty line: numbered only)
WATCH_NEXT: Final = 2  # show the watch the next line, whatever it is

TraceEvent = tuple[int, int, str, str, str, str, int, int, str, int, int, int, int]
"""(kind, cpu, time text, call_site, ptr, name, bytes_req, bytes_alloc, gfp, node, pfn, order,
migratetype)"""


class EventBatch(NamedTuple):
    """Consecutive events as columns: event i is (kinds[i], cpus[i], times[i], ...).

    A slab event's key is its PTR and its tail its columns NAME..MIGRATETYPE (``event[5:]``);
    a page event's key is its PFN, its call site "" (perf.data: the call site perf kmem finds in
    its callchain) and its tail (GFP, ORDER, MIGRATETYPE).
    """

    kinds: bytes
    cpus: list[int]
    times: list[str]  # the TIME column: text as traced, colon included
    call_sites: list[str]
    keys: list[Any]  # str (a slab event's pointer) or int (a page event's pfn)
    tails: list[tuple[Any, ...]]

    def part(self, start: int, stop: int) -> EventBatch:
        """Events ``start`` to ``stop`` (a slice of every column)."""
        return EventBatch(self.kinds[start:stop], self.cpus[start:stop], self.times[start:stop],
                          self.call_sites[start:stop], self.keys[start:stop],
                          self.tails[start:stop])


_KNOWN_KINDS: Final = bytes(range(len(EVENT_NAMES)))


def count_kinds(counts: list[int], kinds: bytes | bytearray) -> None:
    """Add the events of a batch's ``kinds`` to ``counts`` (one entry per kind): a few C
    passes over the bytes instead of a count per event."""
    if len(counts) == len(EVENT_NAMES) and not kinds.translate(None, _KNOWN_KINDS):
        # Every byte a known kind (one C pass to tell): a count per kind, without the set of
        # the bytes, whose iteration (an int per byte) cost more than the 12 counts.
        for kind, count in enumerate(map(kinds.count, range(len(EVENT_NAMES)))):
            if count:
                counts[kind] += count
        return
    for kind in set(kinds):  # (another byte: the IndexError or the count it always gave)
        counts[kind] += kinds.count(kind)


def batch_events(batch: EventBatch) -> list[TraceEvent]:
    """The event tuples of ``batch``, in order."""
    return [(kind, cpu, time, site, key, *tail) if kind <= KMEM_CACHE_FREE
            else (kind, cpu, time, site, "", "", 0, 0, tail[0], -1, key, tail[1], tail[2])
            for kind, cpu, time, site, key, tail in zip(*batch, strict=True)]


def event_batch(events: list[TraceEvent]) -> EventBatch:
    """The EventBatch of ``events`` (the inverse of batch_events)."""
    keys: list[Any] = []
    tails: list[tuple[Any, ...]] = []
    for event in events:
        if event[0] <= KMEM_CACHE_FREE:
            keys.append(event[4])
            tails.append(event[5:])
        else:
            keys.append(event[10])
            tails.append((event[8], event[11], event[12]))
    return EventBatch(kinds=bytes(event[0] for event in events),
                      cpus=[event[1] for event in events],
                      times=[event[2] for event in events],
                      call_sites=[event[3] for event in events], keys=keys, tails=tails)


def pointer_value(ptr: str) -> int:
    """The number a traced pointer text stands for (0 for NULL)."""
    return int(ptr, 16)


def event_time(event: TraceEvent) -> float:
    """The event's timestamp in seconds.

    The TIME column keeps the text as traced, colon included, so that parsing costs nothing when
    nobody needs the time.
    """
    return time_seconds(event[TIME])


def time_seconds(time: str) -> float:
    """A TIME text (``"10308.077785:"``, as an event or an EventBatch holds it) in seconds."""
    return float(time[:-1])


def event_name(event: TraceEvent) -> str:
    """The tracepoint name of ``event`` (``"kmalloc"``, ``"mm_page_free"``, ...)."""
    return EVENT_NAMES[event[KIND]]
