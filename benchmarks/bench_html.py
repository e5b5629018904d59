"""``kmem html`` against ``kmem replay`` on the same long trace, and its cost as the frames
asked for grow (issue 12: a 1.25M-line trace took 212 s to page and 8-14 s to replay).

The trace is generated (in /tmp, never committed) as benchmarks/bench_trace.py makes its own:
the recorded fixture kmem-6.18-dd-first15000.txt.xz repeated, each cycle's pointers and pfns
shifted into a range of their own, so the live set grows as a longer recording's would. Each
command runs in a fresh process (``python -m kmem``), as a user runs it, on the same machine
(1 GiB, SLUB, 2 CPUs: the defaults); CPU time (user + system, of the command and the
parser process it starts: resource.getrusage of the children), the best of REPEAT runs. CPU
time, not wall: on a shared machine the wall time of one run can double with another's load,
and the ratios are about the work each command does.

Figures: the CPU seconds of ``kmem replay --no-progress``, of ``kmem html`` at 100, 400 (the
default) and 1600 frames, and the ratios html(400) / replay (the goal: at most 2) and
html(1600) / html(100) (the page builder's cost independent of the frames asked for: near 1);
the same html / replay ratio on a trace whose live set stays bounded (the same pointers each
cycle): a frame costs the live objects of the caches that changed since the previous one.
Timings on a shared machine are noisy: run it quiet (``make bench``).
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from benchmarks.bench_trace import ensure_trace
from benchmarks.children import installed_environment

EVENTS = 300_000
TRACE = Path("/tmp/kmem-bench-html-trace.txt")
STEADY = Path("/tmp/kmem-bench-html-trace-same-pointers.txt")  # the live set stays bounded
PAGE = Path("/tmp/kmem-bench-html-page.html")
REPEAT = 3  # (best of 3: the ratios stay near their quiet values under moderate load)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _seconds(*argv: str) -> float:
    """The CPU seconds of ``kmem ARGV`` (and of the processes it waited for), best of REPEAT."""
    best = float("inf")
    for _ in range(REPEAT):
        start = _children_cpu()
        done = subprocess.run([sys.executable, "-m", "kmem", *argv],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=installed_environment())
        if done.returncode:  # (kmem html's status line goes to stderr: shown only on failure)
            raise RuntimeError(f"kmem {' '.join(argv)}: {done.stderr.decode()}")
        best = min(best, _children_cpu() - start)
    return best


def run() -> dict[str, object]:
    for path, shift in ((TRACE, True), (STEADY, False)):
        ensure_trace(path, shift, EVENTS)
    replay = _seconds("replay", "--no-progress", str(TRACE))
    steady_replay = _seconds("replay", "--no-progress", str(STEADY))
    steady_html = _seconds("html", "--no-progress", "--trace", str(STEADY), "-o", str(PAGE))
    html = {frames: _seconds("html", "--no-progress", "--trace", str(TRACE), "--frames",
                             str(frames), "-o", str(PAGE))
            for frames in (100, 400, 1600)}
    PAGE.unlink(missing_ok=True)
    return {
        "trace events": EVENTS,
        "kmem replay (CPU s)": round(replay, 2),
        "kmem html, 100 frames (CPU s)": round(html[100], 2),
        "kmem html, 400 frames (CPU s)": round(html[400], 2),
        "kmem html, 1600 frames (CPU s)": round(html[1600], 2),
        "html (100 frames) / replay": round(html[100] / replay, 2),
        "html (400 frames) / replay": round(html[400] / replay, 2),
        "html (1600 frames) / replay": round(html[1600] / replay, 2),
        "html 1600 frames / 100 frames": round(html[1600] / html[100], 2),
        "steady live set: kmem replay (CPU s)": round(steady_replay, 2),
        "steady live set: kmem html, 400 frames (CPU s)": round(steady_html, 2),
        "steady live set: html / replay": round(steady_html / steady_replay, 2),
    }


if __name__ == "__main__":
    print(run())
