"""The per-CPU page lists' fast path against today's plain buddy pair (issue 13).

An order-0 alloc+free pair through the page machine's pcp (PageMachine.alloc_pages(0,
GFP_KERNEL, cpu=0) then free_pages(pfn, 0, cpu=0): the list is refilled once, then every pair is
served by the list) against a BuddyAllocator pair (alloc_pages(0), free_pages(pfn, 0)), in
the same build and the same process, pure (the buddy's core hidden, as bench_core does) and
compiled. Issue target: pcp pair <= 1.3x the plain buddy pair, each way.

The page machine's pcp pair runs in csrc/pcp.c (PcpCore) on the compiled core; the pure column
builds the machine with that core hidden, as the buddy's. Each timing is the median of several
rounds (shared machines are noisy: the lead runs them quiet).
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator

import kmem.page.buddy as buddy_module
import kmem.page.machine as machine_module
from kmem import BuddyAllocator, core_backend
from kmem.page.gfp import GFP_KERNEL
from kmem.page.machine import PageMachine

ROUNDS = 5
PAIRS = 200_000


@contextlib.contextmanager
def _pure() -> Iterator[None]:
    modules = (vars(buddy_module), vars(machine_module))
    saved = [names["core"] for names in modules]
    for names in modules:
        names["core"] = None
    try:
        yield
    finally:
        for names, core in zip(modules, saved, strict=True):
            names["core"] = core


def _median_ns(work: Callable[[], None], n: int) -> float:
    times = []
    for _ in range(ROUNDS):
        gc.collect()
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return statistics.median(times) / n * 1e9


def buddy_pair_ns(pure: bool, n: int = PAIRS) -> float:
    with _pure() if pure else contextlib.nullcontext():
        buddy = BuddyAllocator(1 << 30, thread_safe=False)
    alloc_pages, free_pages = buddy.alloc_pages, buddy.free_pages

    def work() -> None:
        for _ in range(n):
            free_pages(alloc_pages(0), 0)

    return _median_ns(work, n)


def pcp_pair_ns(pure: bool, n: int = PAIRS) -> float:
    with _pure() if pure else contextlib.nullcontext():
        machine = PageMachine(nr_cpus=2)
    alloc_pages, free_pages = machine.alloc_pages, machine.free_pages
    free_pages(alloc_pages(0, GFP_KERNEL, 0), 0, 0)  # the one refill, before timing

    def work() -> None:
        for _ in range(n):
            free_pages(alloc_pages(0, GFP_KERNEL, 0), 0, 0)

    return _median_ns(work, n)


def run() -> dict[str, object]:
    figures: dict[str, object] = {"core": core_backend()}
    for name, pure in (("pure", True), ("compiled", False)):
        if not pure and core_backend() != "compiled":
            continue
        buddy = buddy_pair_ns(pure)
        pcp = pcp_pair_ns(pure)
        figures[f"buddy_order0_pair_{name}_ns"] = round(buddy)
        figures[f"pcp_order0_pair_{name}_ns"] = round(pcp)
        figures[f"pcp_vs_buddy_{name} (target <= 1.3)"] = round(pcp / buddy, 2)
    return figures
