"""``kmem html`` against ``kmem replay`` on the same long trace, and its cost as the frames
asked for grow (issue 12: a 1.25M-line trace took 212 s to page and 8-14 s to replay).

The trace is generated (in /tmp, never committed) as benchmarks/bench_trace.py makes its own:
the recorded fixture kmem-6.18-dd-first15000.txt.xz repeated, each cycle's pointers and pfns
shifted into a range of their own, so the live set grows as a longer recording's would. Each
command runs in a fresh process (``python -m kmem``), as a user runs it, on the same machine
(1 GiB, SLUB, 2 CPUs: the defaults); wall time, the best of REPEAT runs.

Figures: the seconds of ``kmem replay --no-progress``, of ``kmem html`` at 100, 400 (the
default) and 1600 frames, and the ratios html(400) / replay (the goal: at most 2) and
html(1600) / html(100) (the page builder's cost independent of the frames asked for: near 1).
Timings on a shared machine are noisy: run it quiet (``make bench``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench_trace import _TIME, _fixture_events, _shifted

EVENTS = 300_000
TRACE = Path("/tmp/kmem-bench-html-trace.txt")
PAGE = Path("/tmp/kmem-bench-html-page.html")
REPEAT = 2


def generate(path: Path, events: int = EVENTS) -> None:
    """Write a trace of ``events`` events by cycling the fixture, pointers shifted per cycle."""
    body = _fixture_events()
    first = float(_TIME.search(body[0]).group(1))  # type: ignore[union-attr]
    span = float(_TIME.search(body[-1]).group(1)) - first + 0.001  # type: ignore[union-attr]
    written = cycle = 0
    with path.open("w") as out:
        out.write("# tracer: nop\n#\n")
        while written < events:
            chunk = body[: events - written]
            out.writelines(_shifted(line, cycle, cycle * span, True) for line in chunk)
            written += len(chunk)
            cycle += 1


def _seconds(*argv: str) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kmem", *argv], check=True,
                       stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def run() -> dict[str, object]:
    if not TRACE.exists() or sum(1 for _ in TRACE.open()) != EVENTS + 2:
        generate(TRACE)
    replay = _seconds("replay", "--no-progress", str(TRACE))
    html = {frames: _seconds("html", "--no-progress", "--trace", str(TRACE), "--frames",
                             str(frames), "-o", str(PAGE))
            for frames in (100, 400, 1600)}
    PAGE.unlink(missing_ok=True)
    return {
        "trace events": EVENTS,
        "kmem replay (s)": round(replay, 2),
        "kmem html, 100 frames (s)": round(html[100], 2),
        "kmem html, 400 frames (s)": round(html[400], 2),
        "kmem html, 1600 frames (s)": round(html[1600], 2),
        "html (400 frames) / replay": round(html[400] / replay, 2),
        "html 1600 frames / 100 frames": round(html[1600] / html[100], 2),
    }


if __name__ == "__main__":
    print(run())
