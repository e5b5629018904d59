"""Visualisation speed and size: scenarios, snapshots, the page, the terminal map, plots.

Figures:
- a 100,000-line random buddy scenario (64 MiB machine) turned into a page document sampled
  to 400 frames: seconds, and the page's size in bytes [a long replay stays a small page];
- explained steps: microseconds per alloc_steps + free_steps pair;
- the terminal memory map of a 1 GiB machine (262,144 pages) after 20,000 random allocations:
  milliseconds per render;
- a real 15,000-event trace (tests/fixtures/traces, `dd`) replayed into a 400-frame page on
  a 256 MiB machine: seconds, and the page's size in bytes;
- one "all" PNG of the seed example: seconds.
Each timing is the median of a few rounds (shared machines are noisy).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kmem.page.buddy import BuddyAllocator
from kmem.show.explain import alloc_steps, free_steps
from kmem.show.html_page import build_page
from kmem.show.memory_map import render
from kmem.show.plot import plot
from kmem.show.scenario import load, parse
from kmem.show.snapshot import scenario_document, trace_document

TRACES = Path(__file__).parents[1] / "tests" / "fixtures" / "traces"
TRACE = TRACES / "kmem-6.18-dd-first15000.txt.xz"


def _median(work: Callable[[], object], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _big_scenario(lines: int) -> str:
    rng = random.Random(5)
    out = ["memory 64M"]
    live: list[str] = []
    for i in range(lines):
        if live and rng.random() < 0.5:
            out.append(f"free {live.pop(rng.randrange(len(live)))}")
        else:
            out.append(f"pages p{i} {rng.choice((0, 0, 0, 1, 2, 3))}")
            live.append(f"p{i}")
    return "\n".join(out)


def run() -> dict[str, object]:
    figures: dict[str, object] = {}
    scenario = parse(_big_scenario(100_000), "big")
    document: dict[str, object] = {}

    def make_document() -> None:
        document.update(scenario_document(scenario, max_frames=400))

    figures["100k-line scenario -> 400-frame document (s)"] = round(_median(make_document), 2)
    page = build_page(document)
    figures["100k-line scenario page size (bytes)"] = len(page.encode())

    buddy = BuddyAllocator(64 << 20)

    def pairs() -> None:
        for order in range(10_000):
            pfn, _ = alloc_steps(buddy, order % 4)
            free_steps(buddy, pfn, order % 4)

    figures["alloc_steps + free_steps pair (us)"] = round(_median(pairs) / 10_000 * 1e6, 1)

    big = BuddyAllocator(1 << 30)
    rng = random.Random(7)
    for _ in range(20_000):
        big.alloc_pages(rng.choice((0, 0, 1, 2, 3, 5)))
    figures["terminal map of 1 GiB, 20k blocks allocated (ms)"] = round(
        _median(lambda: render(big)) * 1e3, 1)

    trace: dict[str, object] = {}
    figures["15k-event trace -> 400-frame document (s)"] = round(
        _median(lambda: trace.update(trace_document(TRACE, 400)), rounds=1), 2)
    figures["15k-event trace page size (bytes)"] = len(build_page(trace).encode())

    seed = scenario_document(load("seed"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "seed.png"
        figures["seed 'all' PNG (s)"] = round(_median(lambda: plot(seed, out)), 2)
    return figures
