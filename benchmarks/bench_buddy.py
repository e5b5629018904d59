"""Buddy allocator speed and memory: ns per operation, bytes of metadata per page.

Figures (issue targets in brackets):
- order-0 alloc+free pairs;
- a mixed random workload of orders 0-5 holding about half of memory [<= 1 us per operation];
- fill then free in random order every order-0 page of 16,384 pages and of 16,777,216 pages
  (64 GiB) [per-operation cost at 64 GiB within 1.2x of the cost at 16,384 pages];
- metadata per page [<= 16 bytes]; constructing the 64 GiB allocator [<= 1 s].
Each timing is the median of several rounds (shared machines are noisy).
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from array import array
from collections.abc import Callable

from kmem import BuddyAllocator

ROUNDS = 5


def _median_seconds(setup: Callable[[], Callable[[], None]], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        work = setup()
        gc.collect()
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return statistics.median(times)


def order0_pairs(n: int = 300_000) -> float:
    """ns per alloc_pages(0) + free_pages(pfn, 0) pair."""

    def setup() -> Callable[[], None]:
        buddy = BuddyAllocator(16_384 * 4096)
        alloc_pages, free_pages = buddy.alloc_pages, buddy.free_pages

        def work() -> None:
            for _ in range(n):
                free_pages(alloc_pages(0), 0)

        return work

    return _median_seconds(setup) / n * 1e9


class _NullAllocator:
    """Stands in for the allocator to time the workload's own loop: C builtins, no Python call."""

    def __init__(self) -> None:
        self.next_pfn = iter(range(1 << 40)).__next__

    def calls(self) -> tuple[Callable[[int], int], Callable[[int, int], object]]:
        counter = self.next_pfn
        return (lambda order: counter()), max


def mixed_workload(
    n: int = 400_000, nr_pages: int = 16_384, null: bool = False
) -> tuple[float, float]:
    """ns per operation of random orders 0-5 holding about half of memory; mean use fraction.

    With ``null``, the allocator calls are stand-ins, which times the loop around them.
    """
    rng = random.Random(1)
    orders = [rng.randrange(6) for _ in range(n)]
    picks = [rng.random() for _ in range(n)]
    use: list[float] = []

    def setup() -> Callable[[], None]:
        buddy = BuddyAllocator(nr_pages * 4096)
        alloc_pages: Callable[[int], int] = buddy.alloc_pages
        free_pages: Callable[[int, int], object] = buddy.free_pages
        if null:
            alloc_pages, free_pages = _NullAllocator().calls()
        half = nr_pages // 2

        def work() -> None:
            live_pfns: list[int] = []
            live_orders: list[int] = []
            in_use = 0
            used_sum = 0
            for i in range(n):
                if in_use < half:
                    order = orders[i]
                    live_pfns.append(alloc_pages(order))
                    live_orders.append(order)
                    in_use += 1 << order
                else:
                    # Free a random live block: swap it to the end, then pop (O(1)).
                    j = int(picks[i] * len(live_pfns))
                    live_pfns[j], live_pfns[-1] = live_pfns[-1], live_pfns[j]
                    live_orders[j], live_orders[-1] = live_orders[-1], live_orders[j]
                    order = live_orders.pop()
                    free_pages(live_pfns.pop(), order)
                    in_use -= 1 << order
                used_sum += in_use
            use.append(used_sum / n / nr_pages)

        return work

    seconds = _median_seconds(setup)
    return seconds / n * 1e9, statistics.median(use)


def fill_then_free(nr_pages: int, rounds: int) -> float:
    """ns per operation to allocate every page at order 0, then free them in random order."""

    def setup() -> Callable[[], None]:
        buddy = BuddyAllocator(nr_pages * 4096)
        alloc_pages, free_pages = buddy.alloc_pages, buddy.free_pages
        # A random-looking permutation of the allocation sequence without a Python int per
        # page: i * odd constant mod a power of two visits every index once.
        step = 0x9E3779B1 % nr_pages | 1

        def work() -> None:
            pfns = array("i", [0]) * nr_pages
            for i in range(nr_pages):
                pfns[i] = alloc_pages(0)
            for i in range(nr_pages):
                free_pages(pfns[i * step % nr_pages], 0)
            assert buddy.nr_free[10] == nr_pages >> 10

        return work

    return _median_seconds(setup, rounds) / (2 * nr_pages) * 1e9


def construct_64gib() -> tuple[float, float]:
    """Seconds to build a 64 GiB allocator, and its metadata bytes per page."""
    start = time.process_time()
    buddy = BuddyAllocator(64 << 30)
    seconds = time.process_time() - start
    return seconds, buddy.mem_map.bytes_per_page


def run() -> dict[str, object]:
    mixed_ns, mixed_use = mixed_workload()
    loop_ns, _ = mixed_workload(null=True)
    small = fill_then_free(16_384, ROUNDS)
    large = fill_then_free(16_777_216, 1)
    build_s, bytes_per_page = construct_64gib()
    return {
        "order0_alloc_free_pair_ns": round(order0_pairs()),
        "mixed_orders0-5_ns_per_op": round(mixed_ns),
        "mixed_workload_loop_alone_ns_per_op": round(loop_ns),
        "mixed_orders0-5_allocator_ns_per_op": round(mixed_ns - loop_ns),
        "mixed_mean_memory_in_use": round(mixed_use, 3),
        "fill_free_16384_pages_ns_per_op": round(small),
        "fill_free_16777216_pages_ns_per_op": round(large),
        "fill_free_cost_ratio_64GiB_vs_16384": round(large / small, 3),
        "construct_64GiB_seconds": round(build_s, 3),
        "metadata_bytes_per_page": round(bytes_per_page, 3),
    }
