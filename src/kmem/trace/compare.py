"""`kmem replay --compare`: one trace replayed under several kernels' SLUB, side by side.

"What would the next kernel do with my trace": the same events, read once, go batch by batch to
one Replayer per kernel (6.17: cpu slabs and cpu partial lists; 6.18: sheaves for the caches the
kernel gives them; 7.0: sheaves for every cache, no cpu partial lists; kmem.slab.sheaves). The
replayers differ only in ``kernel``; every other option is shared, so any difference in the
figures is the kernel's.

Figures per kernel (COMPARISON_ROWS): slab pages at peak and at the end, objects held in sheaves
and barns at the end (allocated from slabs, not by a user: memory an upgrade holds), sheaf
refills and flushes (objects moved between slabs and sheaves), the slow-path allocations and
frees, and the buddy allocator's fragmentation at the end; per cache, the slab pages it holds at
the end (``per_cache``). ``to_json()`` has everything, each kernel's full ReplayResult included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kmem.errors import InvalidArgumentError
from kmem.slab.sheaves import KERNELS, check_kernel
from kmem.trace.events import EventBatch
from kmem.trace.replay import LineCounts, Replayer, ReplayResult, ReplaySnapshot

if TYPE_CHECKING:
    from rich.console import Console

# (label, how the figure is read off a ReplayResult)
COMPARISON_ROWS: Final[tuple[tuple[str, Callable[[ReplayResult], int | float]], ...]] = (
    ("slab pages at peak", lambda r: r.memory_in_use["slab"]["peak_bytes"] // r.page_size),
    ("slab pages at the end", lambda r: r.memory_in_use["slab"]["final_bytes"] // r.page_size),
    ("caches with sheaves", lambda r: r.sheaves["caches_with_sheaves"]),
    ("objects in CPU sheaves at the end", lambda r: r.sheaves["cpu_sheaf_objects"]),
    ("objects in barns at the end", lambda r: r.sheaves["barn_objects"]),
    ("objects in rcu_free sheaves at the end", lambda r: r.sheaves["rcu_sheaf_objects"]),
    ("sheaves at the end", lambda r: r.sheaves["sheaves"]),
    ("sheaf refills (objects)", lambda r: r.sheaves["sheaf_refill"]),
    ("sheaf flushes (objects)", lambda r: r.sheaves["sheaf_flush"]),
    ("barn gets / puts", lambda r: r.sheaves["barn_get"] + r.sheaves["barn_put"]),
    ("slow-path allocations", lambda r: r.sheaves["alloc_slowpath"]),
    ("slow-path frees", lambda r: r.sheaves["free_slowpath"]),
    ("live objects at the end", lambda r: r.live_objects_at_end),
    ("unusable free space index, order 3 (%)", lambda r: _unusable(r, 3)),
    ("unusable free space index, order 9 (%)", lambda r: _unusable(r, 9)),
)


def _unusable(result: ReplayResult, order: int) -> float:
    """The unusable free space index of ``order`` at the end, in percent (0 past max order)."""
    if not result.timeline:
        return 0.0
    index = result.timeline[-1].unusable_index
    return index[order] / 10 if order < len(index) else 0.0


def parse_kernels(text: str) -> tuple[str, ...]:
    """'6.17,6.18,7.0' -> ('6.17', '6.18', '7.0'): known kernels, each once, at least two."""
    kernels = tuple(part.strip() for part in text.split(",") if part.strip())
    for kernel in kernels:
        check_kernel(kernel)
    if len(set(kernels)) != len(kernels):
        raise InvalidArgumentError(f"--compare names a kernel twice: {text!r}")
    if len(kernels) < 2:
        raise InvalidArgumentError(
            f"--compare needs two kernels or more, such as {','.join(KERNELS)}; got {text!r}")
    return kernels


@dataclass(frozen=True, slots=True)
class KernelComparison:
    """One trace's ReplayResult under each kernel, and the figures side by side."""

    kernels: tuple[str, ...]
    results: dict[str, ReplayResult]
    per_cache: dict[str, dict[str, int]]  # cache -> kernel -> slab pages at the end

    def rows(self) -> list[tuple[str, list[int | float]]]:
        """(label, the figure under each kernel) for every COMPARISON_ROWS entry."""
        return [(label, [figure(self.results[kernel]) for kernel in self.kernels])
                for label, figure in COMPARISON_ROWS]

    def to_json(self) -> dict[str, Any]:
        return {
            "kernels": list(self.kernels),
            "comparison": {label: dict(zip(self.kernels, values, strict=True))
                           for label, values in self.rows()},
            "slab_pages_per_cache": self.per_cache,
            "results": {kernel: self.results[kernel].to_json() for kernel in self.kernels},
        }


def _cache_pages(replayer: Replayer) -> dict[str, int]:
    """Slab pages of every cache at the end, by name."""
    pages_per_slab = {cache.name: 1 << cache.order for cache in replayer.slab.cache_list()}
    return {name: stats.slabs * pages_per_slab[name]
            for name, stats in replayer.slab.stats().items() if stats.slabs}


class KernelComparer:
    """Replayers of the same options under each kernel, fed the same batches.

    ``run_batches`` has Replayer.run_batches's signature, so whatever drives a replay (a
    parser in this process or in a second one, a progress bar) drives a comparison too.
    """

    def __init__(self, kernels: Sequence[str], **options: Any) -> None:
        kernels = tuple(check_kernel(kernel) for kernel in kernels)
        if not kernels:
            raise InvalidArgumentError("a comparison needs at least one kernel")
        if "kernel" in options:
            raise InvalidArgumentError("give the kernels as `kernels`, not `kernel`")
        self.kernels: Final = kernels
        self.replayers: Final = [Replayer(kernel=kernel, **options) for kernel in kernels]

    def run_batches(self, batches: Iterable[EventBatch], every: int = 1000,
                    callback: Callable[[object], object] | None = None,
                    parser: LineCounts | None = None) -> KernelComparison:
        """Replay ``batches`` under every kernel (``callback``: each kernel's snapshots)."""
        replayers = self.replayers
        for replayer in replayers:
            self._report(replayer.start(every), callback)
        for batch in batches:
            for replayer in replayers:
                self._report(replayer.replay_batch(batch), callback)
        for replayer in replayers:
            self._report(replayer.finish(), callback)
        return self.comparison(parser)

    @staticmethod
    def _report(snapshots: list[ReplaySnapshot], callback: Callable[[object], object] | None
                ) -> None:
        if callback is not None:
            for snapshot in snapshots:
                callback(snapshot)

    def comparison(self, parser: LineCounts | None = None) -> KernelComparison:
        """The figures of the replays so far."""
        kernels = self.kernels
        results = {kernel: replayer.result(parser)
                   for kernel, replayer in zip(kernels, self.replayers, strict=True)}
        pages = [_cache_pages(replayer) for replayer in self.replayers]
        names = sorted({name for per_kernel in pages for name in per_kernel},
                       key=lambda name: (-max(p.get(name, 0) for p in pages), name))
        per_cache = {name: {kernel: p.get(name, 0)
                            for kernel, p in zip(kernels, pages, strict=True)}
                     for name in names}
        return KernelComparison(kernels=kernels, results=results, per_cache=per_cache)


def compare_kernels(batches: Iterable[EventBatch], kernels: Sequence[str], *, every: int = 1000,
                    parser: LineCounts | None = None, **options: Any) -> KernelComparison:
    """Replay ``batches`` once under each kernel (``options``: Replayer's other keywords)."""
    return KernelComparer(kernels, **options).run_batches(batches, every, parser=parser)


def _figure(value: int | float) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def print_comparison(comparison: KernelComparison, console: Console, *, caches: int = 20
                     ) -> None:
    """The comparison as two rich tables: the figures, and the caches that differ most."""
    from rich.table import Table

    first = comparison.results[comparison.kernels[0]]
    console.print(f"[bold]kmem replay --compare[/bold]: layers {','.join(first.layers)}, policy"
                  f" {first.policy}, {first.nr_cpus} CPUs,"
                  + (f" {first.nr_nodes} nodes," if first.nr_nodes > 1 else "")
                  + f" {sum(first.events.values()):,} events",
                  highlight=False)
    table = Table(title="The same trace under each kernel", show_edge=False)
    table.add_column("")
    for kernel in comparison.kernels:
        table.add_column(f"Linux {kernel}", justify="right")
    for label, values in comparison.rows():
        table.add_row(label, *(_figure(value) for value in values))
    console.print(table)
    differing = [(name, per_kernel) for name, per_kernel in comparison.per_cache.items()
                 if len(set(per_kernel.values())) > 1]
    if not differing:
        console.print("every cache holds the same slab pages under each kernel")
        return
    differing.sort(key=lambda item: (-(max(item[1].values()) - min(item[1].values())), item[0]))
    shown = differing[:caches] if caches else differing
    per_cache = Table(title=f"Slab pages at the end, the {len(shown)} caches that differ most"
                      f" (of {len(differing)} that differ)", show_edge=False)
    per_cache.add_column("cache")
    for kernel in comparison.kernels:
        per_cache.add_column(f"Linux {kernel}", justify="right")
    for name, per_kernel in shown:
        per_cache.add_row(name, *(f"{per_kernel[kernel]:,}" for kernel in comparison.kernels))
    console.print(per_cache)
