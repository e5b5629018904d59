"""Slab and kmalloc benchmarks.

Figures (issue targets in brackets; the targets assume a typical desktop CPU):
- kmem_cache alloc+free pairs of 64-byte objects on one CPU, with the cache lock
  (thread_safe=True, the default) and without it (thread_safe=False) [<= 0.4 us per pair];
- kmalloc+kfree pairs over a realistic size mix (kmem.show.workload.KMALLOC_MIX, 8 B .. 8 KiB
  and some 16 KiB large kmallocs) [<= 0.6 us per pair];
- the same pairs under the classic slab policy;
- sheaf alloc+free pairs (Linux 6.18 with sheaf_capacity=32, and 7.0 where every cache has
  sheaves) and 7.0 kmalloc pairs [a sheaf pair costs no more than a cpu-slab pair];
- the sheaf pair beside the cpu-slab pair in the same process and build: CPU time per pair
  with the rounds of the two interleaved, and their ratio ``sheaf_over_cpu_slab_pair_cpu_time_*``
  [<= 1]; with valgrind installed, callgrind's instructions per pair of each (the pair loop run
  N times less the same script run 0 times: loop overhead included, start-up not);
- 1,000,000 allocations of 64-byte objects, then freeing them all: seconds, bytes of Python
  memory the allocator holds per live object (tracemalloc), and Python objects per live object
  (gc-tracked objects created) [no Python object per allocated object].

The machines this runs on are shared and noisy: every figure is the median of several rounds,
and ``calibration_ns_per_empty_call`` (a Python call of an empty function, about 40-50 ns on a
typical desktop) lets a reader scale the figures to another machine.
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from array import array
from collections.abc import Callable
from typing import Any

from kmem import BuddyAllocator, SlabAllocator
from kmem.show.workload import KMALLOC_MIX

ROUNDS = 5


def _median(work: Callable[[], float], rounds: int = ROUNDS) -> float:
    return statistics.median(work() for _ in range(rounds))


def calibration_ns() -> float:
    """ns per call of an empty Python function: this machine's speed right now."""
    def nothing() -> None:
        pass

    def work() -> float:
        n = 300_000
        start = time.perf_counter()
        for _ in range(n):
            nothing()
        return (time.perf_counter() - start) / n * 1e9

    return _median(work)


def cache_pairs(policy: str, thread_safe: bool, n: int = 200_000, kernel: str = "6.18",
                sheaf_capacity: int = 0) -> float:
    """us per alloc+free pair of a 64-byte object on cpu 0 (steady state: the fast paths:
    the cpu slab's freelist, or with sheaves the main sheaf)."""
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, policy=policy,
                         thread_safe=thread_safe, kernel=kernel)
    cache = slab.kmem_cache_create("bench64", 64, sheaf_capacity=sheaf_capacity)
    keep = [cache.alloc() for _ in range(100)]  # a partly used slab, as in real life
    alloc, free = cache.alloc, cache.free

    def work() -> float:
        start = time.perf_counter()
        for _ in range(n):
            free(alloc())
        return (time.perf_counter() - start) / n * 1e6

    result = _median(work)
    for addr in keep:
        free(addr)
    slab.check()
    return result


def kmalloc_pairs(policy: str, thread_safe: bool, n: int = 100_000, kernel: str = "6.18"
                  ) -> float:
    """us per kmalloc+kfree pair over KMALLOC_MIX, with a few hundred objects kept live."""
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, policy=policy,
                         thread_safe=thread_safe, kernel=kernel)
    rng = random.Random(7)
    population = [size for size, weight in KMALLOC_MIX for _ in range(weight)]
    sizes = [rng.choice(population) for _ in range(n)]
    live = [slab.kmalloc(rng.choice(population)) for _ in range(300)]
    kmalloc, kfree = slab.kmalloc, slab.kfree

    def work() -> float:
        start = time.perf_counter()
        for size in sizes:
            kfree(kmalloc(size))
        return (time.perf_counter() - start) / n * 1e6

    result = _median(work)
    for addr in live:
        kfree(addr)
    slab.check()
    return result


def _pair_cache(thread_safe: bool, sheaf_capacity: int) -> tuple[SlabAllocator, Any]:
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, thread_safe=thread_safe)
    cache = slab.kmem_cache_create("bench64", 64, sheaf_capacity=sheaf_capacity)
    return slab, cache


def sheaf_beside_cpu_slab(thread_safe: bool, n: int = 200_000, rounds: int = 7
                          ) -> dict[str, float]:
    """CPU us per alloc+free pair of a 64-byte object on cpu 0 under 6.18, the cache with
    sheaf_capacity=32 (the main sheaf's pop and push) and without (the cpu slab's freelist),
    rounds of the two interleaved so that the machine's load falls on both alike; the medians
    and their ratio."""
    timings: dict[int, list[float]] = {32: [], 0: []}
    built = {capacity: _pair_cache(thread_safe, capacity) for capacity in timings}
    keep = {capacity: [cache.alloc() for _ in range(100)] for capacity, (_, cache) in built.items()}
    for _ in range(rounds):
        for capacity, (_, cache) in built.items():
            alloc, free = cache.alloc, cache.free
            start = time.process_time()
            for _ in range(n):
                free(alloc())
            timings[capacity].append((time.process_time() - start) / n * 1e6)
    for capacity, (slab, cache) in built.items():
        for address in keep[capacity]:
            cache.free(address)
        slab.check()
    sheaf, cpu_slab = statistics.median(timings[32]), statistics.median(timings[0])
    return {"sheaf": sheaf, "cpu_slab": cpu_slab, "ratio": sheaf / cpu_slab}


_PAIR_SCRIPT = """
import sys
from kmem import BuddyAllocator, SlabAllocator
n, capacity, thread_safe = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, thread_safe=thread_safe)
cache = slab.kmem_cache_create("bench64", 64, sheaf_capacity=capacity)
keep = [cache.alloc() for _ in range(100)]
alloc, free = cache.alloc, cache.free
for _ in range(n):
    free(alloc())
"""


def callgrind_instructions(n: int, capacity: int, thread_safe: bool) -> int | None:
    """Instructions callgrind counts for the pair script with ``n`` pairs (None: no valgrind)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    done = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c",
         _PAIR_SCRIPT, str(n), str(capacity), "1" if thread_safe else "0"],
        capture_output=True, text=True, check=True, env=dict(os.environ))
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1])
    return None


def callgrind_pair(capacity: int, thread_safe: bool, n: int = 50_000) -> int | None:
    """Instructions per alloc+free pair (the loop's own included), or None without valgrind."""
    many = callgrind_instructions(n, capacity, thread_safe)
    none = callgrind_instructions(0, capacity, thread_safe)
    if many is None or none is None:
        return None
    return round((many - none) / n)


def million_objects(policy: str = "slub", n: int = 1_000_000) -> dict[str, object]:
    """Allocate n 64-byte objects (addresses kept in an array: no Python object each), free all.

    Timed once without tracing; then again under tracemalloc for the Python memory the
    allocator holds with all n objects live (per object), and the gc-tracked Python objects
    created (per object).
    """
    def one_run(trace: bool) -> dict[str, float]:
        slab = SlabAllocator(BuddyAllocator(128 << 20), nr_cpus=2, policy=policy,
                             thread_safe=False)
        cache = slab.kmem_cache_create("million", 64)
        addresses = array("Q", bytes(8 * n))
        alloc, free = cache.alloc, cache.free
        gc.collect()
        objects_before = len(gc.get_objects())
        if trace:
            tracemalloc.start()
        start = time.perf_counter()
        for i in range(n):
            addresses[i] = alloc()
        alloc_seconds = time.perf_counter() - start
        held = tracemalloc.get_traced_memory()[0] if trace else 0
        if trace:
            tracemalloc.stop()
        gc.collect()
        objects = len(gc.get_objects()) - objects_before
        slabs = cache.stats().slabs
        start = time.perf_counter()
        for address in addresses:
            free(address)
        free_seconds = time.perf_counter() - start
        slab.check()
        return {"alloc": alloc_seconds, "free": free_seconds, "held": held,
                "objects": objects, "slabs": slabs, "left": cache.stats().slabs}

    timed = one_run(trace=False)
    traced = one_run(trace=True)
    return {
        "alloc_seconds": round(timed["alloc"], 3),
        "free_seconds": round(timed["free"], 3),
        "us_per_alloc": round(timed["alloc"] / n * 1e6, 3),
        "us_per_free": round(timed["free"] / n * 1e6, 3),
        "slabs": int(timed["slabs"]),
        "python_bytes_held_per_object": round(traced["held"] / n, 2),
        "python_objects_per_object": round(traced["objects"] / n, 4),
        "slabs_left_after_free_all": int(timed["left"]),
    }


def run() -> dict[str, object]:
    figures: dict[str, object] = {
        "calibration_ns_per_empty_call": round(calibration_ns(), 1),
        "slub_cache_pair_us_locked": round(cache_pairs("slub", True), 3),
        "slub_cache_pair_us_unlocked": round(cache_pairs("slub", False), 3),
        "slab_cache_pair_us_locked": round(cache_pairs("slab", True), 3),
        "slub_kmalloc_pair_us_locked": round(kmalloc_pairs("slub", True), 3),
        "slub_kmalloc_pair_us_unlocked": round(kmalloc_pairs("slub", False), 3),
        "slab_kmalloc_pair_us_locked": round(kmalloc_pairs("slab", True), 3),
        "sheaf_6_18_cache_pair_us_locked": round(
            cache_pairs("slub", True, kernel="6.18", sheaf_capacity=32), 3),
        "sheaf_6_18_cache_pair_us_unlocked": round(
            cache_pairs("slub", False, kernel="6.18", sheaf_capacity=32), 3),
        "sheaf_7_0_cache_pair_us_unlocked": round(cache_pairs("slub", False, kernel="7.0"), 3),
        "sheaf_7_0_kmalloc_pair_us_unlocked": round(kmalloc_pairs("slub", False, kernel="7.0"), 3),
    }
    for locking, thread_safe in (("locked", True), ("unlocked", False)):
        side = sheaf_beside_cpu_slab(thread_safe)
        figures[f"sheaf_pair_cpu_us_{locking}"] = round(side["sheaf"], 3)
        figures[f"cpu_slab_pair_cpu_us_{locking}"] = round(side["cpu_slab"], 3)
        figures[f"sheaf_over_cpu_slab_pair_cpu_time_{locking}"] = round(side["ratio"], 3)
    for locking, thread_safe in (("locked", True), ("unlocked", False)):
        sheaf = callgrind_pair(32, thread_safe)
        cpu_slab = callgrind_pair(0, thread_safe)
        if sheaf is None or cpu_slab is None:
            figures["callgrind"] = "skipped: valgrind is not installed"
            break
        figures[f"sheaf_pair_callgrind_instructions_{locking}"] = sheaf
        figures[f"cpu_slab_pair_callgrind_instructions_{locking}"] = cpu_slab
        figures[f"sheaf_over_cpu_slab_pair_instructions_{locking}"] = round(sheaf / cpu_slab, 3)
    for key, value in million_objects().items():
        figures[f"million_64B_{key}"] = value
    figures["calibration_ns_per_empty_call_after"] = round(calibration_ns(), 1)
    return figures
