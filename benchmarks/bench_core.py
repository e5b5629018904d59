"""The compiled core against the pure one, and against the least this machine allows (issue 11).

Both cores run in this one process, side by side: every allocator stack is built on the
compiled core, and again with the core hidden (as tests/core_twins.py does), so a change in the
shared machine's speed hits both alike. Figures (issue 11's targets in brackets):

- buddy fill+drain of 16,384 order-0 pages through the byte API (alloc(4096) then free of
  every address, the same loop for all): compiled, pure, a minimal pure-Python buddy (sets and
  a dict, no fidelity) [compiled <= 0.4x minimal] and cocotbext-axi's BuddyAllocator, a widely
  installed PyPI package (when installed: `make bench` installs it) [>= 80x slower than
  compiled];
- a mixed workload (orders 0-5, about half of memory in use), the time in the allocator (the
  workload's own loop timed apart and taken off) [compiled >= 4x faster than pure];
- fill+drain at 16,777,216 pages with a call per operation from Python [<= 2x the cost at
  16,384];
- a SLUB cache alloc+free pair, the same with 6.18's sheaves (sheaf_capacity=32, the pair
  against the cpu-slab pair: issue 14's target) and a kmalloc+kfree pair, unlocked
  (thread_safe=False) and locked, against a minimal Python pair (list.pop and list.append,
  each in a method)
  [cache pair <= 1.5x, kmalloc pair <= 2x the minimal pair];
- the C limit: benchmarks/c/buddy_limit.c (intrusive lists, the operations inside C, no
  checks), compiled here with gcc, for fill+drain and the mixed workload at 16,384 and
  16,777,216 pages.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kmem.page.buddy as buddy_module
from kmem import BuddyAllocator, SlabAllocator, core_backend
from kmem.show.workload import KMALLOC_MIX

ROUNDS = 5
LIMIT_SOURCE = Path(__file__).parent / "c" / "buddy_limit.c"


@contextlib.contextmanager
def _pure() -> Iterator[None]:
    names = vars(buddy_module)  # the core a BuddyAllocator (and all on top of it) is built on
    saved = names["core"]
    names["core"] = None
    try:
        yield
    finally:
        names["core"] = saved


def _build(factory: Callable[[], Any], pure: bool) -> Any:
    with _pure() if pure else contextlib.nullcontext():
        return factory()


def _best(work: Callable[[], float], rounds: int = ROUNDS) -> float:
    """The median of ``rounds`` runs of ``work`` (which returns its own time)."""
    results = []
    for _ in range(rounds):
        gc.collect()
        results.append(work())
    return statistics.median(results)


class MinimalBuddy:
    """A buddy allocator in the fewest lines of Python: a set of free blocks per order and a
    dict of allocations. No fidelity to Linux (no list order), no checks: a floor."""

    def __init__(self, nr_pages: int, max_order: int = 10) -> None:
        self.free_sets: list[set[int]] = [set() for _ in range(max_order + 1)]
        self.free_sets[max_order].update(range(0, nr_pages, 1 << max_order))
        self.orders: dict[int, int] = {}
        self.max_order = max_order

    def alloc(self, size: int) -> int:
        order = ((size - 1) >> 12).bit_length()
        high = order
        while not self.free_sets[high]:
            high += 1
        pfn = self.free_sets[high].pop()
        while high > order:
            high -= 1
            self.free_sets[high].add(pfn + (1 << high))
        self.orders[pfn] = order
        return pfn << 12

    def free(self, address: int) -> None:
        pfn = address >> 12
        order = self.orders.pop(pfn)
        while order < self.max_order and pfn ^ (1 << order) in self.free_sets[order]:
            self.free_sets[order].remove(pfn ^ (1 << order))
            pfn &= ~(1 << order)
            order += 1
        self.free_sets[order].add(pfn)


def _cocotbext_buddy() -> type | None:
    """cocotbext-axi's BuddyAllocator class, loaded from its installed file (its package's
    __init__ needs cocotb, which the benchmark does not), or None when not installed."""
    spec = importlib.util.find_spec("cocotbext")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "axi" / "buddy_allocator.py"
        if path.exists():
            loaded = importlib.util.spec_from_file_location("cocotbext_axi_buddy", path)
            assert loaded is not None and loaded.loader is not None
            module = importlib.util.module_from_spec(loaded)
            loaded.loader.exec_module(module)
            found: type = module.BuddyAllocator
            return found
    return None


def fill_drain(make: Callable[[], Any], nr_pages: int, unit: int = 4096,
               rounds: int = ROUNDS) -> float:
    """ns per operation: alloc(unit) for every page, then free every address, in order."""

    def work() -> float:
        allocator = make()
        alloc, free = allocator.alloc, allocator.free
        start = time.perf_counter()
        addresses = [alloc(unit) for _ in range(nr_pages)]
        for address in addresses:
            free(address)
        return (time.perf_counter() - start) / (2 * nr_pages) * 1e9

    return _best(work, rounds)


def mixed(make: Callable[[], Any] | None, n: int = 300_000, nr_pages: int = 16_384) -> float:
    """ns per operation of random orders 0-5 holding about half of memory (None: the loop
    alone, with stand-in calls)."""
    rng = random.Random(1)
    orders = [rng.randrange(6) for _ in range(n)]
    picks = [rng.random() for _ in range(n)]

    def work() -> float:
        if make is None:  # C builtins of the same arity: a compiled method costs no less
            alloc_pages: Callable[[int], int] = abs
            free_pages: Callable[[int, int], object] = max
        else:
            allocator = make()
            alloc_pages, free_pages = allocator.alloc_pages, allocator.free_pages
        half = nr_pages // 2
        live_pfns: list[int] = []
        live_orders: list[int] = []
        in_use = 0
        start = time.perf_counter()
        for i in range(n):
            if in_use < half:
                order = orders[i]
                live_pfns.append(alloc_pages(order))
                live_orders.append(order)
                in_use += 1 << order
            else:
                j = int(picks[i] * len(live_pfns))
                live_pfns[j], live_pfns[-1] = live_pfns[-1], live_pfns[j]
                live_orders[j], live_orders[-1] = live_orders[-1], live_orders[j]
                order = live_orders.pop()
                free_pages(live_pfns.pop(), order)
                in_use -= 1 << order
        return (time.perf_counter() - start) / n * 1e9

    return _best(work)


class MinimalPair:
    """The least a Python object allocator's pair costs: list.pop and list.append in methods."""

    def __init__(self) -> None:
        self.free_list = list(range(64))

    def alloc(self, cpu: int = 0) -> int:
        return self.free_list.pop()

    def free(self, address: int, cpu: int = 0) -> None:
        self.free_list.append(address)


def cache_pair(cache: Any, n: int = 300_000) -> float:
    """ns per alloc+free pair on cpu 0 (a partly used slab: the fast paths)."""
    alloc, free = cache.alloc, cache.free

    def work() -> float:
        start = time.perf_counter()
        for _ in range(n):
            free(alloc(0), 0)
        return (time.perf_counter() - start) / n * 1e9

    return _best(work)


def kmalloc_pair(slab: SlabAllocator, n: int = 200_000) -> float:
    """ns per kmalloc+kfree pair over the kmalloc caches' sizes of KMALLOC_MIX."""
    rng = random.Random(7)
    population = [size for size, weight in KMALLOC_MIX if size <= 8192 for _ in range(weight)]
    sizes = [rng.choice(population) for _ in range(4096)]
    kmalloc, kfree = slab.kmalloc, slab.kfree
    for size in sizes:  # every cache has a cpu slab
        kfree(kmalloc(size))

    def work() -> float:
        start = time.perf_counter()
        for i in range(n):
            kfree(kmalloc(sizes[i & 4095]))
        return (time.perf_counter() - start) / n * 1e9

    return _best(work)


def c_limit() -> dict[str, float]:
    """ns per operation of benchmarks/c/buddy_limit.c at 16,384 and 16,777,216 pages."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        binary = Path(folder) / "buddy_limit"
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(LIMIT_SOURCE)], check=True)
        for pages in (16_384, 16_777_216):
            runs = [subprocess.run([str(binary), str(pages), "2000000"], capture_output=True,
                                   text=True, check=True).stdout.split() for _ in range(3)]
            figures[f"c_limit_fill_drain_{pages}_ns"] = statistics.median(float(r[0])
                                                                         for r in runs)
            figures[f"c_limit_mixed_{pages}_ns"] = statistics.median(float(r[1]) for r in runs)
    return figures


def _slab_factory(thread_safe: bool) -> Callable[[], SlabAllocator]:
    return lambda: SlabAllocator(BuddyAllocator(256 << 20, thread_safe=thread_safe),
                                 thread_safe=thread_safe)


def run() -> dict[str, object]:
    if core_backend() != "compiled":
        return {"skipped": "the compiled core is not built (or KMEM_PURE=1)"}
    figures: dict[str, object] = {}
    pages = 16_384

    def buddy(pure: bool, thread_safe: bool = True, nr_pages: int = pages) -> Callable[[], Any]:
        return lambda: _build(lambda: BuddyAllocator(nr_pages * 4096, thread_safe=thread_safe),
                              pure)

    compiled = fill_drain(buddy(False), pages)
    pure = fill_drain(buddy(True), pages)
    minimal = fill_drain(lambda: MinimalBuddy(pages), pages)
    figures["buddy_fill_drain_16384_compiled_ns"] = round(compiled, 1)
    figures["buddy_fill_drain_16384_pure_ns"] = round(pure)
    figures["buddy_fill_drain_16384_minimal_python_ns"] = round(minimal)
    figures["compiled_vs_minimal_python (target <= 0.4)"] = round(compiled / minimal, 3)
    cocotb = _cocotbext_buddy()
    if cocotb is not None:
        axi = fill_drain(lambda: cocotb(pages << 12, 4096), pages, rounds=1)
        figures["buddy_fill_drain_16384_cocotbext_axi_ns"] = round(axi)
        figures["cocotbext_axi_vs_compiled (target >= 80)"] = round(axi / compiled, 1)
    loop = mixed(None)
    for name, make in (("compiled", buddy(False)), ("pure", buddy(True))):
        figures[f"buddy_mixed_{name}_allocator_ns"] = round(mixed(make) - loop)
    figures["mixed_pure_vs_compiled (target >= 4)"] = round(
        figures["buddy_mixed_pure_allocator_ns"]  # type: ignore[operator]
        / figures["buddy_mixed_compiled_allocator_ns"], 2)
    large = fill_drain(buddy(False, nr_pages=16_777_216), 16_777_216, rounds=1)
    figures["buddy_fill_drain_16777216_compiled_ns"] = round(large, 1)
    figures["fill_drain_16777216_vs_16384 (target <= 2)"] = round(large / compiled, 2)
    minimal_pair = cache_pair(MinimalPair())
    figures["minimal_python_pair_ns"] = round(minimal_pair)
    for thread_safe in (False, True):
        lock = "locked" if thread_safe else "unlocked"
        for name, is_pure in (("compiled", False), ("pure", True)):
            slab = _build(_slab_factory(thread_safe), is_pure)
            cache = slab.kmem_cache_create("bench64", 64)
            keep = [cache.alloc(0) for _ in range(20)]
            figures[f"slub_pair_{lock}_{name}_ns"] = round(cache_pair(cache))
            # 6.18's sheaves in front of the cpu slab (maple_node's capacity)
            sheaf_cache = slab.kmem_cache_create("bench64s", 64, sheaf_capacity=32)
            held = [sheaf_cache.alloc(0) for _ in range(20)]
            figures[f"sheaf_pair_{lock}_{name}_ns"] = round(cache_pair(sheaf_cache))
            for address in held:
                sheaf_cache.free(address, 0)
            figures[f"kmalloc_pair_{lock}_{name}_ns"] = round(kmalloc_pair(slab))
            for address in keep:
                cache.free(address, 0)
        figures[f"slub_pair_{lock}_vs_minimal (target <= 1.5)"] = round(
            figures[f"slub_pair_{lock}_compiled_ns"] / minimal_pair, 2)  # type: ignore[operator]
        figures[f"sheaf_pair_{lock}_vs_cpu_slab_pair (target <= 1)"] = round(
            figures[f"sheaf_pair_{lock}_compiled_ns"]  # type: ignore[operator]
            / figures[f"slub_pair_{lock}_compiled_ns"], 2)
        figures[f"kmalloc_pair_{lock}_vs_minimal (target <= 2)"] = round(
            figures[f"kmalloc_pair_{lock}_compiled_ns"] / minimal_pair, 2)  # type: ignore[operator]
    figures.update({key: round(value, 2) for key, value in c_limit().items()})
    return figures
