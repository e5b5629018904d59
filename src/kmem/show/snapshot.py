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
                 "slabs": [[pfn, inuse, total, base, "0110.."], ...]}, ...],  # first 48
     "owners": [[address, name], ...]}   # scenario objects and kmalloc memory by name

Block codes: 0 free, 1 allocated (no label), 2 reserved, 3 + i allocated with labels[i]
("A", "slab:pcb", "kmalloc:k1"). Blocks are a flat int list, not objects, so a frame of a big
machine stays a compact array and the page draws it on a canvas.

Why flat snapshots and not deltas: a step can be shown on its own (the slider jumps anywhere)
without replaying from the start, and frames of a long trace are sampled, so there are few.

Sources: ``scenario_document`` runs a scenario (kmem.show.scenario); ``trace_document`` replays a
trace through kmem.trace.replay's Replayer, taking its snapshots every lines/max_frames
events; both read allocator state only through public queries (``iter_blocks``, ``nr_free``,
``free_blocks``, ``slab_pages()``, ``cache_list()``, ``live_objects()``, ``stats()``, and
the mem_map's documented ``owner`` column, where the slab layer marks large kmalloc blocks).
"""

from __future__ import annotations

import lzma
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmem.errors import InvalidArgumentError, KmemError
from kmem.page.buddy import BuddyAllocator
from kmem.show.explain import format_size
from kmem.show.memory_map import iter_blocks
from kmem.show.scenario import BUILTIN, Scenario, StepResult, load
from kmem.show.scenario_run import ScenarioRun
from kmem.show.scenario_slab import slab_page_labels
from kmem.slab.allocator import SlabAllocator
from kmem.slab.kmalloc import KMALLOC_LARGE_OWNER

if TYPE_CHECKING:
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
    blocks: list[int] = []
    for pfn, order, state in iter_blocks(buddy):
        if state == "free":
            code = FREE_CODE
        elif state == "reserved":
            code = RESERVED_CODE
        else:
            label = labels.get(pfn)
            if label is None and owner is not None and owner[pfn] == KMALLOC_LARGE_OWNER:
                label = large_kmalloc
            code = table.code(label) if label else ALLOCATED_CODE
        blocks += (pfn, order, code)
    nr_free = list(buddy.nr_free)
    free_lists = [
        buddy.free_blocks(order)[:MAX_LISTED] if count else [] for order, count in
        enumerate(nr_free)
    ]
    free_pages = buddy.nr_free_pages
    return {
        "blocks": blocks,
        "nr_free": nr_free,
        "free_lists": free_lists,
        "free_pages": free_pages,
        "used_pages": buddy.nr_pages - free_pages,
    }


def cache_frames(slab: SlabAllocator | None, slab_pages: list[tuple[int, str]] | None = None
                 ) -> list[dict[str, Any]]:
    """The caches worth showing, with their slabs, from the slab layer's public queries.

    Every cache a user created, and the kmalloc caches that have slabs (a machine boots dozens
    of empty kmalloc caches; listing them all would hide the interesting ones). A slab is
    ``[head pfn, objects in use, objects, address of object 0, used]`` where ``used`` is a
    string of "0"/"1" per object (only for slabs of at most 64 objects); all from
    ``slab_pages()`` (or the ``slab_pages`` the caller has just read) and ``live_objects()``.
    """
    if slab is None:
        return []
    page_size = int(slab.buddy.page_size)
    slabs_of: dict[str, list[int]] = {}
    for pfn, name in slab.slab_pages() if slab_pages is None else slab_pages:
        slabs_of.setdefault(name, []).append(int(pfn))
    out = []
    for cache in slab.cache_list():
        pfns = slabs_of.get(cache.name, [])
        if cache.is_kmalloc and not pfns:
            continue
        total = int(cache.objs_per_slab)
        slot = int(cache.slab_size)
        used: dict[int, list[int]] = {pfn: [] for pfn in pfns}
        base: dict[int, int] = {}  # address of object 0 (after a colour offset or red zone)
        for obj in cache.live_objects():
            used.setdefault(obj.slab_pfn, []).append(obj.index)
            base[obj.slab_pfn] = obj.address - obj.index * slot
        slabs: list[list[Any]] = []
        for pfn in sorted(used):
            indices = used[pfn]
            entry: list[Any] = [pfn, len(indices), total, base.get(pfn, pfn * page_size)]
            if total <= MAX_OBJECT_BITS:
                bits = ["0"] * total
                for index in indices:
                    bits[index] = "1"
                entry.append("".join(bits))
            slabs.append(entry)
        stats = cache.stats()
        full = sum(1 for s in slabs if s[1] == total)
        empty = sum(1 for s in slabs if s[1] == 0)
        out.append({
            "name": str(cache.name),
            "object_size": int(cache.object_size),
            "size": int(cache.slab_size),
            "objs_per_slab": total,
            "order": int(cache.order),
            "active_objs": sum(s[1] for s in slabs),
            "num_objs": total * len(slabs),
            "nr_slabs": len(slabs),
            "full": full,
            "partial": len(slabs) - full - empty,
            "empty": empty,
            "slabs": slabs[:MAX_SLABS_LISTED],
            "bytes_requested": int(stats.bytes_requested),
            "bytes_allocated": int(stats.bytes_allocated),
        })
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
DEFAULT_TRACE_MEMORY = 256 << 20  # a trace's machine: enough for a short trace, a small page
_TRACE_LINE = re.compile(
    r"# tracer:|\b(kmalloc|kmalloc_node|kfree|kmem_cache_alloc|kmem_cache_alloc_node|"
    r"kmem_cache_free|mm_page_alloc|mm_page_free|mm_page_free_batched):"
)


def looks_like_trace(path: str | Path) -> bool:
    """Is the file a kmem trace (ftrace text, maybe compressed) rather than a scenario?"""
    from kmem.trace.source import open_trace

    try:
        with open_trace(path) as lines:
            for _, line in zip(range(200), lines, strict=False):
                if _TRACE_LINE.search(line):
                    return True
    except (OSError, KmemError, EOFError, lzma.LZMAError):
        return False
    return False


def document_for(spec: str, kind: str | None = None,
                 max_frames: int = DEFAULT_TRACE_FRAMES,
                 memory: int = DEFAULT_TRACE_MEMORY, policy: str = "slub") -> dict[str, Any]:
    """The document for a built-in scenario name, a scenario file or a trace file.

    ``kind`` forces "scenario" or "trace"; by default a file is read as a trace when its
    first lines look like ftrace kmem events, else as a scenario. ``memory`` and ``policy``
    set up the machine a trace replays on (a scenario says its own).
    """
    if kind is None:
        kind = "trace" if spec not in BUILTIN and Path(spec).is_file() and looks_like_trace(
            spec) else "scenario"
    if kind == "scenario":
        return scenario_document(load(spec), max_frames)
    if kind != "trace":
        raise InvalidArgumentError(f"kind must be 'scenario' or 'trace', not {kind!r}")
    return trace_document(spec, max_frames, memory=memory, policy=policy)


def trace_document(
    path: str | Path,
    max_frames: int = DEFAULT_TRACE_FRAMES,
    *,
    memory: int = DEFAULT_TRACE_MEMORY,
    policy: str = "slub",
    nr_cpus: int = 2,
    skip_bad: bool = True,
) -> dict[str, Any]:
    """Replay a kmem trace (kmem.trace.replay) and keep about ``max_frames`` snapshots.

    The trace is read twice: once to count its lines, so the snapshots can be spaced evenly
    (every ``lines / max_frames`` events), then to replay it. Each frame is the machine after
    that many events; its text says what the events since the previous frame did.
    """
    from kmem.trace.parse import TraceParser
    from kmem.trace.replay import Replayer
    from kmem.trace.source import open_trace

    with open_trace(path) as lines:
        nr_lines = sum(1 for _ in lines)
    every = max(1, -(-nr_lines // max(1, max_frames)))
    replayer = Replayer(memory=memory, policy=policy, nr_cpus=nr_cpus)
    parser = TraceParser(skip_bad=skip_bad)
    table = LabelTable()
    frames: list[dict[str, Any]] = []
    previous: ReplaySnapshot | None = None
    with open_trace(path) as lines:
        for snap in replayer.iter_batch_snapshots(parser.parse_batches(lines), every=every):
            frame = {"step": snap.events, "line": 0, "source": "", "steps": [], "highlight": []}
            if previous is None:
                frame["text"] = (
                    f"{format_size(memory)} of memory, all free; the trace's events replay"
                    f" through kmem's own allocators ({policy}, {nr_cpus} CPUs)."
                )
            else:
                frame["source"] = f"events {previous.events + 1}-{snap.events}"
                frame["text"] = _trace_step_text(previous, snap, replayer.page_size)
            # Slab pages by cache, large kmalloc blocks; page events' blocks stay unlabelled.
            slab_pages = replayer.slab.slab_pages()
            frame.update(buddy_frame(replayer.buddy, table, slab_page_labels(slab_pages),
                                     large_kmalloc="kmalloc:large"))
            frame["caches"] = cache_frames(replayer.slab, slab_pages)
            frames.append(frame)
            previous = snap
    result = replayer.result(parser)
    return {
        "title": f"kmem: trace {Path(path).name}",
        "source": "",
        "page_size": replayer.page_size,
        "nr_pages": replayer.buddy.nr_pages,
        "max_order": replayer.buddy.max_order,
        "labels": table.labels,
        "frames": frames,
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
