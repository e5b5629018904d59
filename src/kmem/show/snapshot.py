"""JSON-able snapshots of allocator state: the frames the HTML page and the plots replay.

A *document* is one JSON object describing a whole replay::

    {"title", "source", "page_size", "nr_pages", "max_order",
     "labels": [label, ...],            # allocation labels, indexed by block codes below
     "frames": [frame, ...],            # frame 0 is the state before the first step
     "total_steps": N}                  # steps replayed (frames may sample them)

and each *frame* is::

    {"step": i, "line": n, "source": "alloc A 21K", "text": "21 KB rounds up ...",
     "steps": [{"kind", "pfn", "order", "text"}, ...],
     "highlight": [[pfn, order], ...],
     "blocks": [pfn, order, code, pfn, order, code, ...],   # flat: every block, lowest first
     "nr_free": [...], "free_lists": [[pfn, ...], ...],     # head first, at most 32 per order
     "free_pages": n, "used_pages": n,
     "caches": [{"name", "object_size", "size", "objs_per_slab", "order", "active_objs",
                 "num_objs", "nr_slabs", "full", "partial", "empty",
                 "bytes_requested", "bytes_allocated",   # kmalloc requests, since the start
                 "slabs": [[pfn, inuse, total, base, "01s0.."], ...],  # first 48
                 "sheaves": {"capacity", "cpus": [[main, spare], ...], "barn_full",
                             "barn_empty"}}, ...],   # (only caches with sheaves: "s" above
                                                     # marks an object waiting in a sheaf)
     "owners": [[address, name], ...]}   # scenario objects and kmalloc memory by name

Block codes: 0 free, 1 allocated (no label), 2 reserved, 3 + i allocated with labels[i]
("A", "slab:pcb", "kmalloc:k1"). Blocks are a flat int list, not objects, so a frame of a big
machine stays a compact array and the page draws it on a canvas.

Why flat snapshots and not deltas: a step can be shown on its own (the slider jumps anywhere)
without replaying from the start, and frames of a long trace are sampled, so there are few.

Sources: ``scenario_document`` runs a scenario (kmem.show.scenario); ``trace_document`` replays a
trace through kmem.trace.replay's Replayer, taking its snapshots every lines/max_frames
events; both read allocator state only through public queries (``iter_blocks``, ``nr_free``,
``free_blocks``, ``slab_pages()``, ``cache_list()``, ``slab_usage()``, ``kmalloc_requests()``,
``sheaves()``, and the mem_map's documented ``owner`` column, where the slab layer marks large
kmalloc blocks).
"""

from __future__ import annotations

import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from kmem._compiled import core
from kmem.errors import InvalidArgumentError, KmemError
from kmem.page.buddy import BuddyAllocator
from kmem.page.mem_map import FREE, ORDER_MASK, RESERVED
from kmem.show.explain import format_size
from kmem.show.memory_map import iter_blocks
from kmem.show.scenario import BUILTIN, Scenario, StepResult, load
from kmem.show.scenario_run import ScenarioRun
from kmem.show.scenario_slab import slab_page_labels
from kmem.slab.allocator import SlabAllocator
from kmem.slab.kmalloc import KMALLOC_LARGE_OWNER
from kmem.slab.slub_sheaves import PercpuSheavesCache

if TYPE_CHECKING:
    from kmem.slab.cache import KmemCache
    from kmem.trace.events import EventBatch
    from kmem.trace.replay import ReplaySnapshot

FREE_CODE = 0
ALLOCATED_CODE = 1
RESERVED_CODE = 2
LABEL_BASE = 3
MAX_LISTED = 32  # free-list pfns kept per order: enough to see the head and the order
MAX_SLABS_LISTED = 48  # slabs kept per cache and frame (the counts cover them all)
MAX_OBJECT_BITS = 64  # slabs of at most this many objects say which ones are in use


class LabelTable:
    """Interns allocation labels to small ints (block codes)."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self._index: dict[str, int] = {}

    def code(self, label: str) -> int:
        index = self._index.get(label)
        if index is None:
            index = self._index[label] = len(self.labels)
            self.labels.append(label)
        return LABEL_BASE + index


_STATE_CODES = {"free": FREE_CODE, "reserved": RESERVED_CODE, "allocated": ALLOCATED_CODE}


def buddy_frame(
    buddy: BuddyAllocator, table: LabelTable, labels: dict[int, str] | None = None,
    large_kmalloc: str | None = None,
) -> dict[str, Any]:
    """The buddy part of a frame: blocks, free lists and counters.

    ``labels`` label allocated blocks by first pfn; ``large_kmalloc``, when given, labels the
    other allocated blocks the slab layer marked as large kmalloc memory in the mem_map's
    documented ``owner`` column.
    """
    labels = labels or {}
    owner = buddy.mem_map.owner if large_kmalloc else None
    walk = list(iter_blocks(buddy))
    # Every block's code by its state in one comprehension, then the allocated blocks' labels,
    # lowest pfn first (the order labels are numbered in): a long trace's page has hundreds of
    # frames of thousands of blocks, so this loop is most of a frame's cost outside the slabs.
    codes = [_STATE_CODES[state] for _, _, state in walk]
    if labels or owner is not None:
        for index, (pfn, _, state) in enumerate(walk):
            if state != "allocated":
                continue
            label = labels.get(pfn)
            if label is None and owner is not None and owner[pfn] == KMALLOC_LARGE_OWNER:
                label = large_kmalloc
            if label:
                codes[index] = table.code(label)
    blocks = list(chain.from_iterable(
        zip([pfn for pfn, _, _ in walk], [order for _, order, _ in walk], codes, strict=True)))
    return {"blocks": blocks, **_free_counts(buddy)}


def _free_counts(buddy: BuddyAllocator) -> dict[str, Any]:
    nr_free = list(buddy.nr_free)
    free_lists = [
        buddy.free_blocks(order, MAX_LISTED) if count else [] for order, count in
        enumerate(nr_free)
    ]
    free_pages = buddy.nr_free_pages
    return {
        "nr_free": nr_free,
        "free_lists": free_lists,
        "free_pages": free_pages,
        "used_pages": buddy.nr_pages - free_pages,
    }


# A trace's frames cut memory in stretches of whole max-order blocks (a block never crosses
# one), the page's unit of what changed (kmem.show.html_page): at most MAX_STRETCHES of them
# (bigger than a max-order block on a big machine), so that finding them stays cheap.
MAX_STRETCHES = 512


def stretch_pages(nr_pages: int, max_order: int) -> int:
    """Pages a stretch: a max-order block's, or more (a power of two) on a big machine."""
    pages = 1 << max_order
    while -(-nr_pages // pages) > MAX_STRETCHES:
        pages <<= 1
    return pages


class StretchBlocks(list[int]):
    """A frame's flat block list as _BuddyFrames makes it, which says how it was made: cut in
    ``parts`` of ``stretch_pages`` pages each, of which only those in ``walked`` may differ
    from ``parts_before`` (the previous frame's parts; the others are those very lists). The
    page builder then cuts and compares only those (kmem.show.html_page._compact); anything
    else reads it as the list it is."""

    stretch_pages: int
    parts: list[list[int]]
    walked: set[int]
    parts_before: list[list[int]] | None


class _BuddyFrames:
    """buddy_frame() for frame after frame of one replay, walking only the stretches of memory
    that changed since the previous frame. Memory is cut at every max-order boundary (a block
    is naturally aligned, so it never crosses one); a stretch whose mem_map ``state`` and
    ``owner`` bytes (the columns kmem.page.mem_map documents) and labels are those of the
    previous frame has the previous frame's blocks. Stretches are compared 16 at a time first
    (one memcmp skips 16 unchanged ones). A long trace's machine has thousands of blocks and a
    frame touches a few stretches: walking every block of every frame was most of the page
    builder's cost (tests/test_html.py checks the frames equal buddy_frame's).

    An allocated block without a label by pfn takes the label its first page's ``owner``
    says, from ``frame``'s ``owner_labels`` (a slab cache's id: "slab:NAME", the large kmalloc
    mark): a trace's slab pages are labelled so, the owner bytes saying where they changed,
    instead of a label a slab page sent every frame and compared with the previous frame's."""

    def __init__(self, buddy: BuddyAllocator, table: LabelTable, stretch: int | None = None,
                 *, flat: bool = True) -> None:
        self._buddy = buddy
        self._table = table
        # Pages a stretch: a max-order block's by default, or a power of two above it (the
        # page's stretches, stretch_pages()); a block never crosses either.
        if stretch is None:
            stretch = 1 << buddy.max_order
        if stretch & (stretch - 1) or stretch < 1 << buddy.max_order:
            raise InvalidArgumentError(
                f"a stretch is a power of two of at least {1 << buddy.max_order} pages,"
                f" not {stretch}")
        self._shift = stretch.bit_length() - 1
        # flat: each frame's "blocks" (a StretchBlocks), else its "block_changes" only
        self._flat = flat
        self._parts: list[list[int]] = []  # each stretch's flat [pfn, order, code, ...]
        # The previous frame's state and owner bytes (copied into, never reallocated: a
        # 64 GiB machine's owner column is 64 MiB) and labels.
        self._state = bytearray()
        self._owner = bytearray()
        self._labels: dict[int, str] = {}
        self._owner_labels: dict[int, str] = {}
        self._last_parts: list[list[int]] | None = None  # the previous frame's blocks.parts

    def frame(self, labels: dict[int, str], owner_labels: dict[int, str] | None = None
              ) -> dict[str, Any]:
        buddy = self._buddy
        mem_map = buddy.mem_map
        nr_pages = buddy.nr_pages
        shift = self._shift
        nr_stretches = -(-nr_pages // (1 << shift))
        owner_labels = owner_labels or {}
        width = mem_map.owner.itemsize.bit_length() - 1  # (bytes an owner entry: 4)
        walk: set[int] = set()
        with memoryview(mem_map.state) as state, memoryview(mem_map.owner) as owner_items, \
                owner_items.cast("B") as owner:
            if len(self._parts) != nr_stretches or len(self._state) != len(state) or (
                    owner_labels != self._owner_labels):
                self._parts = [[] for _ in range(nr_stretches)]
                self._state = bytearray(state)
                self._owner = bytearray(owner) if owner_labels else bytearray()
                walk.update(range(nr_stretches))
            else:
                core = buddy.compiled_core
                _changed_stretches(core, self._state, state, nr_stretches, shift, walk)
                if owner_labels:
                    _changed_stretches(core, self._owner, owner, nr_stretches, shift + width,
                                       walk)
                # (the bytes of the stretches that changed, not of all memory: a 1 GiB
                # machine's owner column is 1 MiB, and a frame changes a few stretches)
                for index in walk:
                    start, end = index << shift, (index + 1) << shift
                    self._state[start:end] = state[start:end]
                    if owner_labels:
                        self._owner[start << width:end << width] = owner[
                            start << width:end << width]
        before = self._labels
        if labels != before:  # (the labels added, removed or changed, found at C speed)
            # (a label off the end of memory labels no block)
            walk.update(index for index in {pfn >> shift for pfn, _ in
                                            labels.items() ^ before.items()}
                        if 0 <= index < nr_stretches)
            self._labels = dict(labels)
        self._owner_labels = dict(owner_labels)
        labels_of: dict[int, dict[int, str]] = {index: {} for index in walk}
        for pfn, label in labels.items():
            mine = labels_of.get(pfn >> shift)
            if mine is not None:
                mine[pfn] = label
        for index in sorted(walk):  # lowest first: the order labels are numbered in
            start = index << shift
            self._parts[index] = self._walk(start, min(start + (1 << shift), nr_pages),
                                            labels_of[index], owner_labels)
        parts, before_parts = list(self._parts), self._last_parts
        self._last_parts = parts
        if not self._flat:
            changes: list[Any] = []
            for index in sorted(walk):
                if before_parts is None or parts[index] != before_parts[index]:
                    changes += (index, parts[index])
            return {"block_changes": changes, **_free_counts(buddy)}
        blocks = StretchBlocks()
        for part in parts:  # (a list's += copies at C speed; chain goes item by item)
            blocks += part
        # (the stretches as they were cut, for the page builder: kmem.show.html_page._compact)
        blocks.stretch_pages = 1 << shift
        blocks.parts = parts
        blocks.walked = walk
        blocks.parts_before = before_parts
        return {"blocks": blocks, **_free_counts(buddy)}

    def _walk(self, start: int, end: int, labels: dict[int, str],
              owner_labels: dict[int, str]) -> list[int]:
        """The flat [pfn, order, code, ...] of the blocks in [start, end) (_walk_blocks)."""
        mem_map = self._buddy.mem_map
        return _walk_blocks(self._buddy.compiled_core, mem_map.state,
                            mem_map.owner if owner_labels else None, start, end, labels,
                            owner_labels, self._table)


def _walk_blocks(core: Any, state: bytearray, owner: Any, start: int, end: int,
                 labels: dict[int, str], owner_labels: dict[int, str], table: LabelTable
                 ) -> list[int]:
    """_walk_blocks_pure, from the compiled core when there is one (kmem._core.walk_blocks:
    a frame walks a few stretches of hundreds of blocks each, a Python loop a block)."""
    if core is not None:
        out = core.walk_blocks(state, owner, start, end, labels, owner_labels, table._index,
                               table.labels, LABEL_BASE)
        if out is not NotImplemented:
            return out  # type: ignore[no-any-return]
    return _walk_blocks_pure(state, owner, start, end, labels, owner_labels, table)


def _walk_blocks_pure(state: bytearray, owner: Any, start: int, end: int,
                      labels: dict[int, str], owner_labels: dict[int, str], table: LabelTable
                      ) -> list[int]:
    """The flat [pfn, order, code, ...] of the blocks in [start, end), as buddy_frame says
    them (its walk is BuddyAllocator.block_tuples': a reserved frame at a time, else a
    block, free when its state has the FREE bit); an allocated block's label is its pfn's in
    ``labels``, else its first page's ``owner`` entry's in ``owner_labels`` (``owner`` None:
    none)."""
    out: list[int] = []
    pfn = start
    while pfn < end:
        kind = state[pfn]
        if kind == RESERVED:
            out += (pfn, 0, RESERVED_CODE)
            pfn += 1
            continue
        order = kind & ORDER_MASK
        code = FREE_CODE
        if not kind & FREE:
            label = labels.get(pfn)
            if label is None and owner is not None:
                label = owner_labels.get(owner[pfn])
            code = table.code(label) if label else ALLOCATED_CODE
        out += (pfn, order, code)
        pfn += 1 << order
    return out


def _changed_stretches(core: Any, before: bytearray, now: memoryview, nr_stretches: int,
                       shift: int, out: set[int]) -> None:
    """_changed_stretches_pure, from the compiled core when there is one
    (kmem._core.changed_stretches: a memcmp a stretch, no slice object each)."""
    if core is not None:
        changed = core.changed_stretches(before, now, nr_stretches, shift)
        if changed is not NotImplemented:
            out.update(changed)
            return
    _changed_stretches_pure(before, now, nr_stretches, shift, out)


def _changed_stretches_pure(before: bytearray, now: memoryview, nr_stretches: int,
                            shift: int, out: set[int]) -> None:
    """Add to ``out`` the stretches (``1 << shift`` bytes each) whose bytes differ between
    ``before`` and ``now``: 16 stretches a comparison, then the stretches of those that
    differ. (``before.startswith(view, start)`` compares in place: a slice of either side
    would be a copy, every frame.)"""
    group = 16
    for low in range(0, nr_stretches, group):
        start, end = low << shift, min(low + group, nr_stretches) << shift
        if before.startswith(now[start:end], start):
            continue
        for index in range(low, min(low + group, nr_stretches)):
            start, end = index << shift, (index + 1) << shift
            if not before.startswith(now[start:end], start):
                out.add(index)


def cache_frames(slab: SlabAllocator | None, slab_pages: list[tuple[int, str]] | None = None
                 ) -> list[dict[str, Any]]:
    """The caches worth showing, with their slabs, from the slab layer's public queries.

    Every cache a user created, and the kmalloc caches that have slabs (a machine boots dozens
    of empty kmalloc caches; listing them all would hide the interesting ones). A slab is
    ``[head pfn, objects in use, objects, address of object 0, used]`` where ``used`` is a
    string of "0"/"1" per object (only for slabs of at most 64 objects; "s" an object waiting in
    a sheaf); all from ``slab_pages()`` (or the ``slab_pages`` the caller has just read) and
    ``slab_usage()``.
    """
    if slab is None:
        return []
    return [_cache_entry(cache, pfns, _cache_state(cache), int(slab.buddy.page_size))
            for cache, pfns in _shown_caches(slab, slab_pages)]


def _shown_caches(slab: SlabAllocator, slab_pages: list[tuple[int, str]] | None
                  ) -> Iterator[tuple[KmemCache, list[int]]]:
    slabs_of: dict[str, list[int]] = {}
    for pfn, name in slab.slab_pages() if slab_pages is None else slab_pages:
        slabs_of.setdefault(name, []).append(int(pfn))
    for cache in slab.cache_list():
        pfns = slabs_of.get(cache.name, [])
        if cache.is_kmalloc and not pfns:
            continue
        yield cache, pfns


# Slab.used bytes as a frame's used string: 0 free, 1 a user's, 2 in a sheaf ("s" where the
# cache has sheaves), 3 waiting for kfree_rcu (no user holds it: "0", as live_objects() says).
_USED_CHARS = bytes([ord("0"), ord("1"), ord("0"), ord("0")]) + bytes(252)
_USED_CHARS_SHEAVES = bytes([ord("0"), ord("1"), ord("s"), ord("0")]) + bytes(252)


# What a cache's entry in a frame is made of, besides the cache's fixed geometry and its slab
# pfns: slab_usage(), the kmalloc bytes requested and allocated, the sheaves (or None).
_CacheState = tuple[list[tuple[int, int, int, bytes]], int, int, "dict[str, Any] | None"]


def _cache_state(cache: KmemCache, usage: list[tuple[int, int, int, bytes]] | None = None
                 ) -> _CacheState:
    _, requested, allocated = cache.kmalloc_requests()
    return (cache.slab_usage() if usage is None else usage, int(requested), int(allocated),
            _sheaves(cache))


def _cache_entry(cache: KmemCache, pfns: list[int] | None, state: _CacheState, page_size: int,
                 rows_before: dict[Any, list[Any]] | None = None,
                 rows_now: dict[Any, list[Any]] | None = None) -> dict[str, Any]:
    """The cache's entry; ``pfns`` None: its slabs are those of its slab_usage(). A slab row
    found in ``rows_before`` (by its slab_usage() row) is taken from there; every row made is
    put in ``rows_now`` (a long trace's frame rewrites a few rows of a changed cache's 48)."""
    total = int(cache.objs_per_slab)
    # One row per slab (slab_usage(): the slabs' used bytes), not one object at a time: a busy
    # cache of a long trace holds hundreds of thousands of objects, and it changes every frame.
    slab_usage, requested, allocated, sheaves = state
    rows = slab_usage
    if pfns is not None and pfns != [row[0] for row in slab_usage]:  # (read at another time)
        usage = {row[0]: row for row in slab_usage}
        rows = [usage.get(pfn, (pfn, 0, 0, b"")) for pfn in
                sorted(set(pfns) | {pfn for pfn, inuse, _, _ in slab_usage if inuse})]
    chars = _USED_CHARS if sheaves is None else _USED_CHARS_SHEAVES
    slabs, active, full, empty = _slab_rows(core, rows,
                                            {} if rows_before is None else rows_before,
                                            rows_now, total, page_size, chars)
    nr_slabs = len(rows)
    return {
        "name": str(cache.name),
        "object_size": int(cache.object_size),
        "size": int(cache.slab_size),
        "objs_per_slab": total,
        "order": int(cache.order),
        "active_objs": active,
        "num_objs": total * nr_slabs,
        "nr_slabs": nr_slabs,
        "full": full,
        "partial": nr_slabs - full - empty,
        "empty": empty,
        "slabs": slabs,
        "bytes_requested": requested,
        "bytes_allocated": allocated,
        **({"sheaves": sheaves} if sheaves is not None else {}),
    }


def _slab_rows(core: Any, rows: list[Any], before: dict[Any, list[Any]],
               rows_now: dict[Any, list[Any]] | None, total: int, page_size: int,
               chars: bytes) -> tuple[list[list[Any]], int, int, int]:
    """_slab_rows_pure, from the compiled core when there is one (kmem._core.slab_rows: every
    changed cache of every frame of a long trace's page makes its rows)."""
    if core is not None:
        made = core.slab_rows(rows, before, rows_now, total, page_size, chars,
                              MAX_SLABS_LISTED, MAX_OBJECT_BITS)
        if made is not NotImplemented:
            return made  # type: ignore[no-any-return]
    return _slab_rows_pure(rows, before, rows_now, total, page_size, chars)


def _slab_rows_pure(rows: list[Any], before: dict[Any, list[Any]],
                    rows_now: dict[Any, list[Any]] | None, total: int, page_size: int,
                    chars: bytes) -> tuple[list[list[Any]], int, int, int]:
    """(the first MAX_SLABS_LISTED slab rows, objects in use, full slabs, empty slabs) of a
    cache of ``total`` objects a slab, from its slab_usage() ``rows``. A row found in
    ``before`` is taken from there; every row made is put in ``rows_now``."""
    slabs: list[list[Any]] = []
    for row in rows[:MAX_SLABS_LISTED]:
        entry = before.get(row)
        if entry is None:
            pfn, inuse, base, used = row
            # (a slab without a user's object says the address of its first page)
            entry = [pfn, inuse, total, base if inuse else pfn * page_size]
            if total <= MAX_OBJECT_BITS:  # (a slab of a fallback order has fewer objects)
                entry.append(used.translate(chars).decode("ascii").ljust(total, "0"))
        if rows_now is not None:
            rows_now[row] = entry
        slabs.append(entry)
    counts = [row[1] for row in rows]
    return slabs, sum(counts), counts.count(total), counts.count(0)


def _sheaves(cache: KmemCache) -> dict[str, Any] | None:
    """A cache's sheaves for a frame (None without sheaves)."""
    if not isinstance(cache, PercpuSheavesCache) or not cache.sheaf_capacity:
        return None
    cpus = [[0, -1] for _ in range(cache.nr_cpus)]
    full = empty = 0
    for place, cpu, sheaf in cache.sheaves():
        if place == "main":
            cpus[cpu][0] = len(sheaf)
        elif place == "spare":
            cpus[cpu][1] = len(sheaf)
        elif place == "barn_full":
            full += 1
        elif place == "barn_empty":
            empty += 1
    return {"capacity": int(cache.sheaf_capacity), "cpus": cpus, "barn_full": full,
            "barn_empty": empty}


class _CacheFrames:
    """cache_frames() for frame after frame of one replay, at the cost of the caches that
    changed: a cache whose change_count() did not move since the previous frame is not read
    at all (its slab_usage(), kmalloc bytes and sheaves are those of the previous frame), and
    one whose number moved but whose state is that of the previous frame has the previous
    frame's entry, which is made of nothing else. Most caches sit still between frames:
    reading every cache's slab_usage() every frame was most of a long trace's page build
    (tests/test_html.py checks the entries equal cache_frames', and a page built so equals
    the page built reading every cache)."""

    # Skip the caches whose change_count() did not move (False: read every cache every frame,
    # as the tests compare against).
    skip_unchanged = True

    def __init__(self) -> None:
        # name -> (the cache, its change_count(), its state and object_size, its entry: None
        # for a kmalloc cache without slabs, which a frame leaves out)
        self._previous: dict[str, tuple[KmemCache, int, tuple[_CacheState, int],
                                        dict[str, Any] | None]] = {}
        self._usage: dict[str, list[tuple[int, int, int, bytes]]] = {}
        # SLAB_TYPESAFE_BY_RCU caches: name -> (the cache, its change_count(), its labels)
        self._rcu_labels: dict[str, tuple[KmemCache, int, dict[int, str]]] = {}
        # name -> (the cache, its entry's slab rows by their slab_usage() row), for the next
        # entry of that cache to take the rows that did not change
        self._rows: dict[str, tuple[KmemCache, dict[Any, list[Any]]]] = {}

    def _unchanged(self, cache: KmemCache, count: int,
                   before: tuple[KmemCache, int, Any] | tuple[KmemCache, int, Any, Any] | None
                   ) -> bool:
        return (self.skip_unchanged and before is not None and before[0] is cache
                and before[1] == count)

    def slab_labels(self, slab: SlabAllocator, large_kmalloc: str = "kmalloc:large"
                    ) -> tuple[dict[int, str], dict[int, str]]:
        """The labels of the slab pages, as ``slab_page_labels(slab.slab_pages())`` and
        buddy_frame's ``large_kmalloc`` label them, for _BuddyFrames.frame: (labels by pfn,
        labels by mem_map owner). A slab page's ``owner`` is its cache's id, so the labels of
        every cache go by owner, but those of a SLAB_TYPESAFE_BY_RCU cache: its slabs waiting
        for a grace period keep their owner and are no slabs of it (slab_pages() leaves them
        out), so they go by pfn, from the cache's slab_usage(), which the next frames() uses
        (read again only when its change_count() moved)."""
        by_owner = {KMALLOC_LARGE_OWNER: large_kmalloc}
        by_pfn: dict[int, str] = {}
        self._usage = {}
        rcu_labels = {}
        for cache in slab.cache_list():
            if cache.typesafe_by_rcu:
                count = cache.change_count()
                before = self._rcu_labels.get(cache.name)
                if before is not None and self._unchanged(cache, count, before):
                    labels = before[2]
                else:
                    usage = self._usage[cache.name] = cache.slab_usage()
                    labels = slab_page_labels((pfn, cache.name) for pfn, _, _, _ in usage)
                rcu_labels[cache.name] = (cache, count, labels)
                by_pfn.update(labels)
            else:
                by_owner[int(cache.id)] = f"slab:{cache.name}"
        self._rcu_labels = rcu_labels
        return by_pfn, by_owner

    def frames(self, slab: SlabAllocator) -> list[dict[str, Any]]:
        """cache_frames(slab), from the slab_usage() read by the last slab_labels(slab)."""
        page_size = int(slab.buddy.page_size)
        out = []
        seen: dict[str, tuple[KmemCache, int, tuple[_CacheState, int],
                              dict[str, Any] | None]] = {}
        usage_of, self._usage = self._usage, {}
        previous = self._previous
        rows_of = self._rows
        rows_kept: dict[str, tuple[KmemCache, dict[Any, list[Any]]]] = {}
        self._rows = rows_kept
        skip = self.skip_unchanged
        for cache in slab.cache_list():  # (as _shown_caches chooses them)
            name = cache.name
            count = cache.change_count()
            before = previous.get(name)
            rows = rows_of.get(name)
            if rows is not None:
                rows_kept[name] = rows
            # (_unchanged, inline: most of the caches, every frame)
            if skip and before is not None and before[0] is cache and before[1] == count:
                seen[name] = before
                if before[3] is not None:
                    out.append(before[3])
                continue
            usage = usage_of.get(name)
            if usage is None:
                usage = cache.slab_usage()
            if cache.is_kmalloc and not usage:
                seen[name] = (cache, count, (([], 0, 0, None), 0), None)
                continue
            # (the slabs' pfns are in their usage; object_size: a merge may raise it)
            state = (_cache_state(cache, usage), int(cache.object_size))
            if before is not None and before[0] is cache and before[3] is not None and (
                    before[2] == state):
                entry = before[3]
            else:
                rows_now: dict[Any, list[Any]] = {}
                entry = _cache_entry(cache, None, state[0], page_size,
                                     rows[1] if rows is not None and rows[0] is cache else None,
                                     rows_now)
                rows_kept[name] = (cache, rows_now)
            seen[name] = (cache, count, state, entry)
            out.append(entry)
        self._previous = seen
        return out


def step_frame(result: StepResult | None) -> dict[str, Any]:
    if result is None:
        return {"step": 0, "line": 0, "source": "", "text": "", "steps": [], "highlight": []}
    entry = result.to_json()
    return {
        "step": result.index + 1,
        "line": result.line,
        "source": result.source,
        "text": result.text,
        "steps": entry["steps"],
        "highlight": entry["highlight"],
    }


def scenario_document(scenario: Scenario, max_frames: int | None = None) -> dict[str, Any]:
    """Run a scenario; a frame before the first line and one after each line.

    With ``max_frames``, a long scenario keeps only about that many evenly spaced frames (and
    always the last), so a 100,000-line scenario still makes a small page.
    """
    table = LabelTable()
    run = ScenarioRun(scenario)
    frame0 = step_frame(None)
    frame0["text"] = (
        f"{format_size(scenario.memory)} of memory in {run.buddy.nr_pages} pages of "
        f"{format_size(scenario.page_size)}: all free, as the largest blocks that fit."
        " Press next (→) to run the first line."
    )
    frame0.update(buddy_frame(run.buddy, table))
    frame0["caches"] = []
    frame0["owners"] = []
    frames = [frame0]
    total = len(scenario.actions)
    stride = 1 if not max_frames or total <= max_frames else -(-total // max_frames)
    for action in scenario.actions:
        result = run.execute(action)
        if (result.index + 1) % stride and result.index + 1 != total:
            continue
        frame = step_frame(result)
        frame.update(buddy_frame(run.buddy, table, run.block_labels()))
        frame["caches"] = cache_frames(run.slab)
        frame["owners"] = [[a.address, a.name] for a in run.names.values() if a.kind != "pages"]
        if run.machine is not None:  # (after a page machine verb: kmem.show.scenario_machine)
            from kmem.show.machine_view import machine_frame

            frame["machine"] = machine_frame(run.machine)
        frames.append(frame)
    return {
        "title": f"kmem: {scenario.name}",
        "source": scenario.text,
        "page_size": scenario.page_size,
        "nr_pages": run.buddy.nr_pages,
        "max_order": scenario.max_order,
        "labels": table.labels,
        "frames": frames,
        "total_steps": total,
    }


# -- choosing the input: scenario or trace ------------------------------------------------------

DEFAULT_TRACE_FRAMES = 400  # snapshots of a long replay: smooth on the slider, a few MB at most
DEFAULT_TRACE_MEMORY = 1 << 30  # a trace's machine: kmem replay's (kmem.cli.args.DEFAULT_MEMORY)
_TRACE_LINE = re.compile(
    r"# tracer:|\b(kmalloc|kmalloc_node|kfree|kmem_cache_alloc|kmem_cache_alloc_node|"
    r"kmem_cache_free|mm_page_alloc|mm_page_free|mm_page_free_batched):"
)


# The first bytes of a compressed file (kmem.trace.source reads both): such a file is a trace,
# never a scenario, even when it is corrupt (the trace reader then says what is wrong with it).
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\xfd7zXZ\x00")

# progress(what, done, total): "counting" then "replaying", bytes of the file read so far.
Progress = Callable[[str, int, int], object]


def looks_like_trace(path: str | Path) -> bool:
    """Is the file a kmem trace (ftrace text, maybe compressed) rather than a scenario?"""
    from kmem.trace.source import open_trace

    try:
        with open(path, "rb") as raw:
            if raw.read(6).startswith(_COMPRESSED_MAGIC):
                return True
        with open_trace(path) as lines:
            for _, line in zip(range(200), lines, strict=False):
                if _TRACE_LINE.search(line):
                    return True
    except (OSError, KmemError, EOFError, lzma.LZMAError, zlib.error):
        return False
    return False


def document_for(spec: str, kind: str | None = None,
                 max_frames: int = DEFAULT_TRACE_FRAMES,
                 memory: int = DEFAULT_TRACE_MEMORY, policy: str = "slub", *,
                 nr_cpus: int = 2, skip_bad: bool = False,
                 progress: Progress | None = None, for_page: bool = False) -> dict[str, Any]:
    """The document for a built-in scenario name, a scenario file or a trace file ("-": the
    standard input, scenario or trace).

    ``kind`` forces "scenario" or "trace"; by default a file is read as a trace when it is
    compressed or its first lines look like ftrace kmem events, else as a scenario.
    ``memory``, ``policy``, ``nr_cpus`` and ``skip_bad`` set up the machine a trace replays on
    and how its lines are read, as kmem replay does (a scenario says its own machine);
    ``for_page`` a trace's document as only the page builder reads it (see trace_document).
    """
    if kind not in (None, "scenario", "trace"):
        raise InvalidArgumentError(f"kind must be 'scenario' or 'trace', not {kind!r}")
    if spec == "-" or _is_stream(spec):
        # Standard input or a pipe (``<(xzcat trace.xz)``) can be read only once: spooled to a
        # file, it is guessed and read (twice, see trace_document) as a file is.
        with _spooled(spec) as path:
            return document_for(str(path), kind, max_frames, memory, policy, nr_cpus=nr_cpus,
                                skip_bad=skip_bad, progress=progress, for_page=for_page)
    if kind is None:
        kind = "trace" if spec not in BUILTIN and Path(spec).is_file() and looks_like_trace(
            spec) else "scenario"
    if kind == "scenario":
        return scenario_document(load(spec), max_frames)
    return trace_document(spec, max_frames, memory=memory, policy=policy, nr_cpus=nr_cpus,
                          skip_bad=skip_bad, progress=progress, for_page=for_page)


def _is_stream(spec: str) -> bool:
    """Is ``spec`` a FIFO or a character device (a file that reads once), not a built-in?"""
    import stat

    try:
        return spec not in BUILTIN and not stat.S_ISREG(os.stat(spec).st_mode) and not (
            stat.S_ISDIR(os.stat(spec).st_mode))
    except OSError:
        return False  # (the reader says what is wrong with it)


@contextmanager
def _spooled(spec: str) -> Iterator[Path]:
    import shutil
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kmem-input-") as folder:
        path = Path(folder) / ("stdin" if spec == "-" else Path(spec).name)
        with open(path, "wb") as file:
            if spec == "-":
                shutil.copyfileobj(sys.stdin.buffer, file, 1 << 20)
            else:
                with open(spec, "rb") as source:
                    shutil.copyfileobj(source, file, 1 << 20)
        yield path


def _count_lines(path: str | Path, progress: Progress | None) -> int:
    """The trace's lines, read as the parser reads them (decompressed, "\\n" ends a line),
    but for perf script's call chains (a frame starts with a tab, a blank line ends the
    chain); a broken stream is the parser's TraceFileError, not a raw EOFError or LZMAError."""
    from kmem.trace.source import TraceFileError, trace_bytes

    count = 0
    ended_with_newline = True
    last = b""  # (the previous chunk's last byte: a "\n\t" or "\n\n" may straddle two)
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        try:
            # Bytes, not text: a newline is the byte 0x0A in UTF-8 whatever the decoding does
            # with the others, and a decoded pass cost three times as much.
            stream = trace_bytes(raw, str(path))
            while chunk := stream.read(1 << 20):
                count += _event_lines(core, chunk)
                if last == b"\n" and chunk[:1] in (b"\t", b"\n"):
                    count -= 1
                last = chunk[-1:]
                ended_with_newline = last == b"\n"
                if progress is not None:
                    progress("counting", raw.tell(), size)
        except (EOFError, OSError, lzma.LZMAError, zlib.error) as error:
            raise TraceFileError(
                f"the trace stream broke off after line {count}: {error}", str(path)) from None
    return count + (not ended_with_newline)


def _event_lines(core: Any, chunk: bytes) -> int:
    """_event_lines_pure, from the compiled core when there is one (kmem._core
    .count_event_lines: one memchr pass, where bytes.count makes three)."""
    if core is not None:
        lines = core.count_event_lines(chunk)
        if lines is not NotImplemented:
            return lines  # type: ignore[no-any-return]
    return _event_lines_pure(chunk)


def _event_lines_pure(chunk: bytes) -> int:
    """The lines of ``chunk`` but call-chain frames ("\n\t") and blank lines ("\n\n"),
    as bytes.count counts those pairs (a run of k newlines holds k // 2 of them)."""
    return chunk.count(b"\n") - chunk.count(b"\n\t") - chunk.count(b"\n\n")


def trace_document(
    path: str | Path,
    max_frames: int = DEFAULT_TRACE_FRAMES,
    *,
    memory: int = DEFAULT_TRACE_MEMORY,
    policy: str = "slub",
    nr_cpus: int = 2,
    skip_bad: bool = False,
    progress: Progress | None = None,
    for_page: bool = False,
) -> dict[str, Any]:
    """Replay a kmem trace (kmem.trace.replay) and keep about ``max_frames`` snapshots.

    The trace is read as ``kmem replay`` reads it: the same parser, the same errors (a
    malformed line stops it, ``skip_bad`` counts it instead), parsed in a second process where
    kmem.trace.pipeline can. It is read twice: once to count its lines, so the snapshots can
    be spaced evenly (every ``lines / max_frames`` events), then to replay it. Each frame is
    the machine after that many events; its text says what the events since the previous
    frame did. ``progress(what, bytes done, bytes total)`` is called as the file is read.

    ``for_page``: the document as only the page builder (kmem.show.html_page) reads it, which
    needs no frame's whole block list: a frame has, instead of "blocks", "block_changes"
    ``[stretch, blocks, stretch, blocks, ...]``, the flat blocks of each stretch of memory
    (``document["block_changes_pages"]`` pages, stretch_pages()) that differ from the previous
    frame's (every stretch in frame 0). The page is the same; a long trace's frames of tens of
    thousands of numbers each, every one made and then cut up again, were a third of its cost.
    """
    from kmem.trace import pipeline
    from kmem.trace.lost import LostEvents
    from kmem.trace.parse import TraceParser
    from kmem.trace.perf_data import text_batches
    from kmem.trace.replay import Replayer
    from kmem.trace.source import TraceFileError, open_trace

    try:
        with open(path, "rb") as probe:  # (a folder or an unreadable file fails here, named)
            size = os.fstat(probe.fileno()).st_size
    except OSError as error:
        raise TraceFileError(f"cannot open trace {str(path)!r}: {error.strerror}") from None
    replayer = Replayer(memory=memory, policy=policy, nr_cpus=nr_cpus)
    # The child starts before the first progress report (a progress bar's thread must not
    # exist at the fork: see ParserProcess.start); it reads ahead while the lines are counted.
    process = (pipeline.ParserProcess(path, skip_bad=skip_bad)
               if pipeline.available() and Path(path).is_file() else None)
    parser: TraceParser | pipeline.ParserProcess = process or TraceParser(skip_bad=skip_bad)
    if process is not None:
        process.start()
    try:
        nr_lines = _count_lines(path, progress)
        every = max(1, -(-nr_lines // max(1, max_frames)))
        table = LabelTable()
        frames: list[dict[str, Any]] = []
        previous: ReplaySnapshot | None = None
        caches = _CacheFrames()
        stretch = stretch_pages(replayer.buddy.nr_pages, replayer.buddy.max_order)
        buddy_frames = _BuddyFrames(replayer.buddy, table, stretch, flat=not for_page)
        with ExitStack() as stack:
            batches: Iterable[EventBatch]
            if process is not None:
                report = (None if progress is None else
                          lambda done: progress("replaying", done, size))
                batches = process.batches(report)
            else:
                assert isinstance(parser, TraceParser)
                raw = stack.enter_context(open(path, "rb"))
                lines = stack.enter_context(open_trace(raw))
                batches = text_batches(  # (as kmem replay reads it: call chains, markers)
                    parser, lines if progress is None else _reporting(lines, raw, size, progress),
                    LostEvents())
            for snap in replayer.iter_batch_snapshots(batches, every=every):
                frame = {"step": snap.events, "line": 0, "source": "", "steps": [],
                         "highlight": []}
                if previous is None:
                    frame["text"] = (
                        f"{format_size(memory)} of memory, all free; the trace's events replay"
                        f" through kmem's own allocators ({policy}, {nr_cpus} CPUs)."
                    )
                else:
                    frame["source"] = f"events {previous.events + 1}-{snap.events}"
                    frame["text"] = _trace_step_text(previous, snap, replayer.page_size)
                # Slab pages by cache, large kmalloc blocks; page events' blocks unlabelled.
                frame.update(buddy_frames.frame(*caches.slab_labels(replayer.slab)))
                frame["caches"] = caches.frames(replayer.slab)
                frames.append(frame)
                previous = snap
    finally:
        if process is not None:
            process.close()
    result = replayer.result(parser)
    return {
        "title": f"kmem: trace {Path(path).name}",
        "source": "",
        "page_size": replayer.page_size,
        "nr_pages": replayer.buddy.nr_pages,
        "max_order": replayer.buddy.max_order,
        "labels": table.labels,
        "frames": frames,
        **({"block_changes_pages": stretch} if for_page else {}),
        "total_steps": replayer.events_done,
        "trace": {
            "events": result.events,
            "lines": result.lines,
            "bad_lines": result.bad_lines,
            "unknown_frees": result.unknown_frees,
            "missed_frees": result.missed_frees,
            "kmem_oom": result.kmem_oom,
        },
    }


def _reporting(lines: IO[str], raw: IO[bytes], size: int, progress: Progress
               ) -> Iterator[str]:
    for number, line in enumerate(lines):
        if not number & 0xFFFF:
            progress("replaying", raw.tell(), size)
        yield line
    progress("replaying", size, size)


def _trace_step_text(before: ReplaySnapshot, after: ReplaySnapshot, page_size: int) -> str:
    def change(now: int, then: int) -> str:
        return f"{now} ({now - then:+d})"

    return (
        f"after {after.events} events (trace time {after.time:.6f} s): "
        f"{change(after.live_objects, before.live_objects)} live objects; "
        f"slab pages {change(after.slab_pages, before.slab_pages)}; "
        f"pages of page events {change(after.page_layer_pages, before.page_layer_pages)}; "
        f"free {format_size(after.free_pages * page_size)}."
    )
