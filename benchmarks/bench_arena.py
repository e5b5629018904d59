"""Arena speed: ns per alloc+free pair, one process and two processes contending.

Figures, each for the compiled core and the pure-Python reference (run in a subprocess with
KMEM_PURE=1) [target: <= 1 us a pair, compiled, uncontended]:
- order-0 alloc_pages + free_pages pairs in one process, one page held so that the pair is
  the steady-state fast path (no split, no merge);
- the same in each of two processes on one shared arena at once (wall time per pair per
  process: the lock is contended);
- kmalloc(64) + kfree pairs in one process.
Each timing is the median of several rounds. Measure on a quiet machine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROUNDS = 5


def _pairs(arena_source: str, n: int, kind: str) -> float:
    from kmem import Arena

    arena = Arena.open(arena_source) if arena_source.startswith("/") else Arena.attach(
        arena_source)
    try:
        if kind == "pages":
            alloc_pages, free_pages = arena.alloc_pages, arena.free_pages
            # Two pages taken, the first given back: it is a free order-0 block whose buddy
            # is in use, so each pair takes and returns it without a split or a merge.
            first, keep = alloc_pages(0), alloc_pages(0)
            free_pages(first, 0)
            start = time.perf_counter()
            for _ in range(n):
                free_pages(alloc_pages(0), 0)
            elapsed = time.perf_counter() - start
            free_pages(keep, 0)
            return elapsed / n * 1e9
        else:
            kmalloc, kfree = arena.kmalloc, arena.kfree
            kfree(kmalloc(64))  # the kmalloc-64 cache exists before timing
            keep = kmalloc(64)  # and keeps a slab, so the pair never goes to the buddy
            start = time.perf_counter()
            for _ in range(n):
                kfree(kmalloc(64))
            kfree(keep)
        return (time.perf_counter() - start) / n * 1e9
    finally:
        arena.close()


def _contended_worker(source: str, n: int, queue: multiprocessing.Queue[float]) -> None:
    queue.put(_pairs(source, n, "pages"))


def measure(n: int) -> dict[str, float]:
    """The figures for the core this process runs on."""
    from kmem import Arena

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.bin")
        Arena.create(path, size=16 << 20).close()
        one = statistics.median(_pairs(path, n, "pages") for _ in range(ROUNDS))
        kmalloc = statistics.median(_pairs(path, n, "kmalloc") for _ in range(ROUNDS))
    name = f"kmem-bench-{uuid.uuid4().hex[:8]}"
    shared = Arena.create_shared(name, size=16 << 20)
    try:
        context = multiprocessing.get_context("fork")
        rounds = []
        for _ in range(ROUNDS):
            queue: multiprocessing.Queue[float] = context.Queue()
            workers = [context.Process(target=_contended_worker, args=(name, n, queue))
                       for _ in range(2)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            rounds.append(max(queue.get(), queue.get()))
        two = statistics.median(rounds)
    finally:
        shared.close()
        shared.unlink()
    return {"pair_one_process_ns": round(one, 1), "pair_two_processes_ns": round(two, 1),
            "kmalloc_pair_one_process_ns": round(kmalloc, 1)}


def run() -> dict[str, object]:
    from kmem import core_backend

    figures: dict[str, object] = {}
    if core_backend() != "pure":
        for key, value in measure(200_000).items():
            figures[f"compiled_{key}"] = value
    env = dict(os.environ, KMEM_PURE="1")
    output = subprocess.run(
        [sys.executable, "-c", "import json, benchmarks.bench_arena as b;"
         " print(json.dumps(b.measure(20_000)))"],
        env=env, capture_output=True, text=True, check=True,
        cwd=Path(__file__).parents[1],
    ).stdout
    for key, value in json.loads(output).items():
        figures[f"pure_{key}"] = value
    return figures


if __name__ == "__main__":
    print(run())
