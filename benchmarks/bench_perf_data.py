"""`kmem stat perf.data` against `perf kmem stat` on the same file, side by side.

The perf.data is recorded here (into /tmp, never committed): `perf kmem --slab --page record`
(system-wide, call chains for the page events) around `ls -lR /usr/share/doc /usr/share/man`,
which gives some 600,000 events on a 2-CPU machine. It needs root and perf; without them the
figures say so. Both commands read the same file into /dev/null; each is timed several times,
alternating, and the median kept (wall clock and the child's user+system CPU). `kmem stat`
must give the same summaries as perf kmem (checked: the benchmark fails if not). Timings on a
shared machine are noisy: the lead runs this quiet.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.children import installed_environment

DATA = Path("/tmp/kmem-bench-perf.data")
WORKLOAD = ["sh", "-c", "ls -lR /usr/share/doc /usr/share/man > /dev/null"]
ROUNDS = 5
KMEM = [sys.executable, "-m", "kmem.cli.main"]


def _record() -> None:
    if DATA.exists():
        return
    subprocess.run(["perf", "kmem", "--slab", "--page", "record", "-o", str(DATA), "--",
                    *WORKLOAD], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def _timed(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, child CPU seconds, stdout) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, check=True, capture_output=True, text=True,
                          env=installed_environment(LC_ALL="C"))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def _summaries(text: str) -> str:
    """The SUMMARY sections up to the order table (whose labels kmem names as the kernel
    does)."""
    return "".join(part.split("Order")[0] for part in text.split("SUMMARY")[1:])


def run() -> dict[str, object]:
    if shutil.which("perf") is None or os.geteuid() != 0:
        return {"skipped": "needs root and perf to record the perf.data"}
    _record()
    perf_argv = ["perf", "kmem", "-i", str(DATA), "--slab", "--page", "stat"]
    kmem_argv = [*KMEM, "stat", "--slab", "--page", str(DATA)]
    perf_runs, kmem_runs = [], []
    for _ in range(ROUNDS):
        perf_runs.append(_timed(perf_argv))
        kmem_runs.append(_timed(kmem_argv))
    if _summaries(perf_runs[0][2]) != _summaries(kmem_runs[0][2]):
        raise AssertionError("kmem stat and perf kmem stat disagree on the perf.data")
    events = int(kmem_runs[0][2].split("Cross CPU allocations: ")[1].split("/")[1].split()[0])
    perf_wall = statistics.median(run[0] for run in perf_runs)
    kmem_wall = statistics.median(run[0] for run in kmem_runs)
    perf_cpu = statistics.median(run[1] for run in perf_runs)
    kmem_cpu = statistics.median(run[1] for run in kmem_runs)
    return {
        "perf.data size (MB)": round(DATA.stat().st_size / 1e6, 1),
        "slab allocations in it": events,
        "perf kmem stat wall (s)": round(perf_wall, 2),
        "kmem stat perf.data wall (s)": round(kmem_wall, 2),
        "perf kmem stat CPU (s)": round(perf_cpu, 2),
        "kmem stat perf.data CPU (s)": round(kmem_cpu, 2),
        "kmem / perf wall (target <= 1)": round(kmem_wall / perf_wall, 2),
        "kmem / perf CPU": round(kmem_cpu / perf_cpu, 2),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<45} {value}")
