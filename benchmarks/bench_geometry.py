"""Speed of the pure geometry rules: cache creation cost, kmalloc sizing, gfp text parsing.

Figures (medians of several rounds; shared machines are noisy):
- calculate_geometry over a mix of object sizes and flags (what kmem_cache_create pays once);
- kmalloc_bytes_alloc and the KMALLOC_CLASS_BY_SIZE table lookup over a realistic size mix
  (what a trace replay pays per event);
- parse_gfp_flags of a trace's repeated flag texts (cached after the first);
- find_mergeable among 200 existing caches.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from kmem.page.gfp import parse_gfp_flags
from kmem.slab.flags import (
    SLAB_HWCACHE_ALIGN,
    SLAB_POISON,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
)
from kmem.slab.geometry import calculate_geometry
from kmem.slab.kmalloc_sizes import KMALLOC_CLASS_BY_SIZE, kmalloc_bytes_alloc
from kmem.slab.merge import find_mergeable

ROUNDS = 5


def _ns_per_item(work: Callable[[], int], rounds: int = ROUNDS) -> float:
    times = []
    count = 1
    for _ in range(rounds):
        start = time.perf_counter()
        count = work()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) / count * 1e9, 1)


def run() -> dict[str, object]:
    rng = random.Random(3)
    flag_mix = [0, SLAB_HWCACHE_ALIGN, SLAB_RECLAIM_ACCOUNT,
                SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER]
    specs = [(rng.randint(8, 16384), rng.choice(flag_mix)) for _ in range(2000)]

    def geometries() -> int:
        for size, flags in specs:
            calculate_geometry(size, flags=flags, nr_cpus=2)
        return len(specs)

    # A kmalloc size mix like a real trace: mostly small, a tail up to 64 KiB.
    sizes = [min(int(rng.lognormvariate(5.0, 1.3)) + 1, 65536) for _ in range(200_000)]

    def bytes_alloc() -> int:
        f = kmalloc_bytes_alloc
        for size in sizes:
            f(size)
        return len(sizes)

    small = [s for s in sizes if s <= 8192]

    def table() -> int:
        t = KMALLOC_CLASS_BY_SIZE
        for size in small:
            t[size]
        return len(small)

    texts = ["GFP_KERNEL", "GFP_KERNEL|__GFP_ZERO", "GFP_KERNEL_ACCOUNT", "GFP_NOWAIT",
             "GFP_ATOMIC|__GFP_NOWARN"] * 40_000

    def gfp() -> int:
        p = parse_gfp_flags
        for text in texts:
            p(text)
        return len(texts)

    existing = [calculate_geometry(8 * rng.randint(1, 512), nr_cpus=2) for _ in range(200)]
    requests = [rng.randint(8, 4096) for _ in range(2000)]

    def merges() -> int:
        for size in requests:
            find_mergeable(size, existing)
        return len(requests)

    return {
        "calculate_geometry_us_per_call": round(_ns_per_item(geometries) / 1000, 2),
        "kmalloc_bytes_alloc_ns_per_call": _ns_per_item(bytes_alloc),
        "kmalloc_class_table_lookup_ns": _ns_per_item(table),
        "parse_gfp_flags_cached_ns_per_call": _ns_per_item(gfp),
        "find_mergeable_among_200_caches_us": round(_ns_per_item(merges) / 1000, 2),
    }
