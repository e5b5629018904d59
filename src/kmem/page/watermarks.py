"""Watermarks, lowmem reserves and per-CPU list sizes: Linux 6.18's formulas, as pure functions.

Design: each function takes the zones' page counts (indexed by zone type, see
kmem.page.migratetype.ZONE_NAMES) and returns numbers; nothing here holds state. The machine
(kmem.page.machine) calls them at boot, as init_per_zone_wmark_min does:

    min_free_kbytes = calculate_min_free_kbytes()        sqrt(16 * lowmem KiB), 128 KiB..256 MiB
                      raised by khugepaged with THP on   11 pageblocks per zone up to Normal
    watermarks      = setup_per_zone_wmarks()            min: the zone's share of
                                                         min_free_kbytes; low/high/promo: +gap
    lowmem_reserve  = setup_per_zone_lowmem_reserve()    protection of lower zones
    pcp batch/high  = zone_batchsize(), zone_highsize()  from managed pages and the low mark

and the allocator reads them through the ALLOC_* flags (gfp_to_alloc_flags).

Tunables (sysctls of the same names): min_free_kbytes, watermark_scale_factor (10 = 0.1% of
the zone), lowmem_reserve_ratio (256 256 32 0 0), percpu_pagelist_high_fraction (0: high from
the low watermark). Every division floors, as the kernel's unsigned arithmetic does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, NamedTuple

from kmem.page.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_HIGH,
    __GFP_KSWAPD_RECLAIM,
    __GFP_MEMALLOC,
    __GFP_NOMEMALLOC,
)
from kmem.page.migratetype import (
    MIGRATE_PCPTYPES,
    PAGEBLOCK_NR_PAGES,
    ZONE_MOVABLE,
    ZONE_NORMAL,
)

PAGE_SHIFT: Final = 12
SWAP_CLUSTER_MAX: Final = 32
MIN_PERCPU_PAGELIST_HIGH_FRACTION: Final = 8
PCP_BATCH_SCALE_MAX: Final = 5  # CONFIG_PCP_BATCH_SCALE_MAX of the reference config
DEFAULT_WATERMARK_SCALE_FACTOR: Final = 10
DEFAULT_LOWMEM_RESERVE_RATIO: Final = (256, 256, 32, 0, 0)
WATERMARK_BOOST_FACTOR: Final = 15000

# Allocation flags (mm/internal.h). The low two bits index the watermark to check.
ALLOC_WMARK_MIN: Final = 0
ALLOC_WMARK_LOW: Final = 1
ALLOC_WMARK_HIGH: Final = 2
ALLOC_NO_WATERMARKS: Final = 0x04
ALLOC_WMARK_MASK: Final = ALLOC_NO_WATERMARKS - 1
ALLOC_OOM: Final = 0x08
ALLOC_NON_BLOCK: Final = 0x10
ALLOC_MIN_RESERVE: Final = 0x20  # the same bit as __GFP_HIGH
ALLOC_CPUSET: Final = 0x40
ALLOC_CMA: Final = 0x80
ALLOC_NOFRAGMENT: Final = 0x100
ALLOC_HIGHATOMIC: Final = 0x200
ALLOC_TRYLOCK: Final = 0x400
ALLOC_KSWAPD: Final = 0x800  # the same bit as __GFP_KSWAPD_RECLAIM
ALLOC_RESERVES: Final = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

WMARK_MIN: Final = 0
WMARK_LOW: Final = 1
WMARK_HIGH: Final = 2
WMARK_PROMO: Final = 3


class Watermarks(NamedTuple):
    """A zone's four watermarks, in pages (zone->_watermark[])."""

    min: int
    low: int
    high: int
    promo: int


def nr_free_buffer_pages(managed: Sequence[int], high: Sequence[int]) -> int:
    """Pages above the high watermark in the zones GFP_USER may use (DMA..Normal)."""
    return sum(max(0, managed[i] - high[i]) for i in range(min(len(managed), ZONE_NORMAL + 1)))


def calculate_min_free_kbytes(managed: Sequence[int], high: Sequence[int] | None = None) -> int:
    """min_free_kbytes = sqrt(16 * lowmem KiB), clamped to 128..262144 (at boot the
    watermarks are still 0, hence ``high`` defaults to zeros)."""
    lowmem_kbytes = nr_free_buffer_pages(managed, high or [0] * len(managed)) << (PAGE_SHIFT - 10)
    return min(max(math.isqrt(lowmem_kbytes * 16), 128), 262144)


def recommended_min_free_kbytes(
    managed: Sequence[int], present: Sequence[int], high: Sequence[int]
) -> int:
    """khugepaged's set_recommended_min_free_kbytes: 2 free pageblocks per zone up to Normal
    plus MIGRATE_PCPTYPES**2 for fallbacks, at most 5% of lowmem; in KiB."""
    nr_zones = sum(1 for i in range(min(len(present), ZONE_NORMAL + 1)) if present[i])
    pages = PAGEBLOCK_NR_PAGES * nr_zones * 2
    pages += PAGEBLOCK_NR_PAGES * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    pages = min(pages, nr_free_buffer_pages(managed, high) // 20)
    return pages << (PAGE_SHIFT - 10)


def default_min_free_kbytes(
    managed: Sequence[int],
    present: Sequence[int],
    *,
    thp: bool = True,
    watermark_scale_factor: int = DEFAULT_WATERMARK_SCALE_FACTOR,
) -> int:
    """What a booted kernel ends with: the sqrt formula, then, with THP enabled, khugepaged's
    raise (computed after the first watermarks, as khugepaged starts after them)."""
    kbytes = calculate_min_free_kbytes(managed)
    if thp:
        high = [w.high for w in setup_per_zone_wmarks(managed, kbytes, watermark_scale_factor)]
        kbytes = max(kbytes, recommended_min_free_kbytes(managed, present, high))
    return kbytes


def setup_per_zone_wmarks(
    managed: Sequence[int],
    min_free_kbytes: int,
    watermark_scale_factor: int = DEFAULT_WATERMARK_SCALE_FACTOR,
) -> list[Watermarks]:
    """__setup_per_zone_wmarks: min is the zone's share of min_free_kbytes among the lowmem
    zones (Movable: managed/1024 clamped to 32..128); each further mark adds
    max(share/4, managed * watermark_scale_factor / 10000)."""
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem_pages = sum(m for i, m in enumerate(managed) if i != ZONE_MOVABLE)
    out = []
    for i, zone_managed in enumerate(managed):
        share = pages_min * zone_managed // lowmem_pages if lowmem_pages else 0
        # Movable pages rarely serve __GFP_HIGH or PF_MEMALLOC: only a token min there.
        movable = i == ZONE_MOVABLE
        wmin = min(max(zone_managed // 1024, SWAP_CLUSTER_MAX), 128) if movable else share
        gap = max(share >> 2, zone_managed * watermark_scale_factor // 10000)
        out.append(Watermarks(wmin, wmin + gap, wmin + 2 * gap, wmin + 3 * gap))
    return out


def setup_per_zone_lowmem_reserve(
    managed: Sequence[int], ratio: Sequence[int] = DEFAULT_LOWMEM_RESERVE_RATIO
) -> list[tuple[int, ...]]:
    """lowmem_reserve[i][j]: pages zone i keeps from allocations that may use zones up to j,
    the managed pages of zones i+1..j over lowmem_reserve_ratio[i] (0 if that ratio is 0 or
    zone i is empty). /proc/zoneinfo prints each row as ``protection``."""
    nr = len(managed)
    rows = []
    for i in range(nr):
        row = [0] * nr
        clear = i == nr - 1 or not ratio[i] or not managed[i]
        upper = 0
        for j in range(i + 1, nr):
            upper += managed[j]
            row[j] = 0 if clear else upper // ratio[i]
        rows.append(tuple(row))
    return rows


def zone_batchsize(managed: int) -> int:
    """pcp batch: about 0.1% of the zone or 1 MiB, as 2**n - 1 pages (at most 63), at least 1."""
    batch = min(managed >> 10, (1 << 20) >> PAGE_SHIFT) // 4
    batch = max(batch, 1)
    batch = (1 << ((batch + batch // 2).bit_length() - 1)) - 1  # rounddown_pow_of_two - 1
    return max(1, batch)


def zone_highsize(managed: int, low: int, batch: int, nr_split_cpus: int, fraction: int) -> int:
    """pcp high: the low watermark (or managed/fraction) split over the node's CPUs, at least
    4 batches. high_min uses fraction 0 (the low mark), high_max fraction 8 (managed/8)."""
    total = low if fraction == 0 else managed // fraction
    return max(total // max(nr_split_cpus, 1), batch << 2)


def pcp_high_and_batch(
    managed: int, low: int, nr_cpus: int, high_fraction: int = 0, batch: int | None = None
) -> tuple[int, int, int]:
    """zone_set_pageset_high_and_batch for every CPU of the node: (batch, high_min, high_max);
    ``batch`` replaces zone_batchsize's (a what-if), high_min/high_max follow from it."""
    if batch is None:
        batch = zone_batchsize(managed)
    if high_fraction:
        high = zone_highsize(managed, low, batch, nr_cpus, high_fraction)
        return batch, high, high  # tuned by hand: no auto-tuning
    return (
        batch,
        zone_highsize(managed, low, batch, nr_cpus, 0),
        zone_highsize(managed, low, batch, nr_cpus, MIN_PERCPU_PAGELIST_HIGH_FRACTION),
    )


def calculate_normal_threshold(managed: int, nr_cpus: int) -> int:
    """The per-CPU vmstat threshold /proc/zoneinfo prints: 2 * fls(cpus) * (1 + fls(managed in
    128 MiB units)), at most 125."""
    mem = managed >> (27 - PAGE_SHIFT)
    return min(125, 2 * nr_cpus.bit_length() * (1 + mem.bit_length()))


def gfp_to_alloc_flags(gfp: int, order: int) -> int:
    """The slow path's alloc_flags: the min watermark; __GFP_HIGH dips into half of it; a
    caller that cannot reclaim (GFP_ATOMIC, GFP_NOWAIT) is non-blocking, and a high-order
    __GFP_HIGH one may use the highatomic reserve."""
    flags = ALLOC_WMARK_MIN | ALLOC_CPUSET | (gfp & (__GFP_HIGH | __GFP_KSWAPD_RECLAIM))
    if not gfp & __GFP_DIRECT_RECLAIM:
        if not gfp & __GFP_NOMEMALLOC:
            flags |= ALLOC_NON_BLOCK
            if order > 0 and flags & ALLOC_MIN_RESERVE:
                flags |= ALLOC_HIGHATOMIC
        if flags & ALLOC_MIN_RESERVE:
            flags &= ~ALLOC_CPUSET
    return flags


def gfp_pfmemalloc_flags(gfp: int) -> int:
    """__gfp_pfmemalloc_flags for a caller with no special task state: __GFP_MEMALLOC
    ignores watermarks, unless __GFP_NOMEMALLOC forbids it."""
    if gfp & __GFP_NOMEMALLOC:
        return 0
    return ALLOC_NO_WATERMARKS if gfp & __GFP_MEMALLOC else 0
