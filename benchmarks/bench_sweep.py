"""A sweep of 8 runs on the local process pool: ``--jobs 2`` against the same runs one after the
other (issue 17's target: at most 0.6x the time on a 2-core machine).

The traces are generated (in /tmp, never committed) as bench_trace generates its own, by cycling
the recorded fixture kmem-6.18-dd-first15000.txt.xz: one with every cycle's pointers and pfns
shifted into a range of their own (the live set grows), one repeating the fixture as is (the
live set stays the same). EVENTS events each, so a run takes a second or more: long enough
that the pool's start (a fork server, two workers) is a small part of the time. The two sweeps
alternate, ROUNDS times each, and the best time of each counts. The spec sweeps both
traces × policy slub/slab × 1 or 2 CPUs = 8 runs; both sweeps must give the same table.

The machine is shared: the load average before and after is part of the figures, since a busy
machine leaves the second core to someone else and the ratio tells about the load, not kmem.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.bench_trace import ensure_trace

EVENTS = 400_000
ROUNDS = 2  # each way, alternating: the best of each tells the code, not a busy minute
TRACES = {
    Path("/tmp/kmem-bench-sweep-shifted.txt"): True,
    Path("/tmp/kmem-bench-sweep-same-pointers.txt"): False,
}
SPEC = """\
traces = [{traces}]
every = 5000

[parameters]
policy = ["slub", "slab"]
cpus = [1, 2]
memory = "1G"
"""


def _ensure_traces() -> None:
    for path, shift in TRACES.items():
        ensure_trace(path, shift, EVENTS)


def _timed_sweep(spec: Path, jobs: int) -> tuple[float, str]:
    from kmem.trace.sweep import sweep

    start = time.perf_counter()
    result = sweep(spec, jobs=jobs)
    assert not result.failures, result.failures
    return time.perf_counter() - start, result.table_text()


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run() -> dict[str, object]:
    _ensure_traces()
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "bench.toml"
        spec.write_text(SPEC.format(traces=", ".join(f'"{path}"' for path in TRACES)))
        load_before = _load()
        times: dict[int, list[float]] = {1: [], 2: []}
        tables = set()
        for _ in range(ROUNDS):
            for jobs in (1, 2):
                seconds, table = _timed_sweep(spec, jobs)
                times[jobs].append(seconds)
                tables.add(table)
        load_after = _load()
    assert len(tables) == 1  # (the same runs, the same table)
    serial, parallel = min(times[1]), min(times[2])
    return {
        "runs": 8,
        "events per trace": EVENTS,
        "one after the other, --jobs 1 (s, best of rounds)": round(serial, 2),
        "process pool, --jobs 2 (s, best of rounds)": round(parallel, 2),
        "every round, --jobs 1 / --jobs 2 (s)": " / ".join(
            ", ".join(f"{t:.2f}" for t in times[jobs]) for jobs in (1, 2)),
        "--jobs 2 / --jobs 1 (x, target <= 0.6)": round(parallel / serial, 3),
        "cores": os.cpu_count(),
        "load average before (1, 5, 15 min)": load_before,
        "load average after (1, 5, 15 min)": load_after,
    }
