"""kmalloc size classes: which cache (or how many pages) Linux 6.x gives a request of n bytes.

What: the kmalloc class table (kmalloc_info in mm/slab_common.c), `kmalloc_index()` (Linux's
size_index table for sizes up to 192, then fls(size - 1)), the bytes a request really gets
(`kmalloc_bytes_alloc`, which is the trace's bytes_alloc), the cache variant chosen by GFP flags
(`kmalloc_cache_name`), and the list of kmalloc caches a SlabAllocator creates at boot
(`kmalloc_boot_caches`), in Linux's creation order.

Classes: index 1 is kmalloc-96, index 2 kmalloc-192, index n >= 3 is kmalloc-(2**n), from
KMALLOC_SHIFT_LOW = 3 (8 bytes) to KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1 (8 KiB for 4 KiB pages).
Above KMALLOC_MAX_CACHE_SIZE a request bypasses the caches: kmalloc_large() takes
get_order(size) pages straight from the buddy allocator. kmalloc(0) returns ZERO_SIZE_PTR and
allocates nothing (class size 0).

Variants (enum kmalloc_cache_type, this kernel's config: ZONE_DMA and MEMCG on, no random
caches): normal 'kmalloc-N', reclaimable 'kmalloc-rcl-N', DMA 'dma-kmalloc-N', accounted
'kmalloc-cg-N'; a request goes off the normal caches only if it has __GFP_DMA,
__GFP_RECLAIMABLE or __GFP_ACCOUNT, and then DMA wins over RECLAIMABLE over ACCOUNT.

Why pure functions of the size: the allocator, the trace replay and the reports all need the
same answer, and each is a few integer operations with no state.
"""

from __future__ import annotations

from dataclasses import dataclass

from kmem.errors import InvalidArgumentError, InvalidTypeError
from kmem.page.gfp import __GFP_DMA, __GFP_RECLAIMABLE
from kmem.page.memory import check_page_size
from kmem.page.order import MAX_PAGE_ORDER, get_order
from kmem.slab.flags import (
    KMALLOC_NOT_NORMAL_BITS,
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_KMALLOC,
    SLAB_NO_MERGE,
    SLAB_RECLAIM_ACCOUNT,
)

PAGE_SIZE = 4096
KMALLOC_MIN_SIZE = 8
KMALLOC_SHIFT_LOW = 3
KMALLOC_SHIFT_HIGH = 13  # PAGE_SHIFT + 1 for 4 KiB pages
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH  # 8192
KMALLOC_MAX_SIZE = PAGE_SIZE << MAX_PAGE_ORDER  # the largest kmalloc that can succeed: 4 MiB

# kmalloc_info[index].size: index 0 is unused (kmalloc(0)), 1 and 2 are the odd classes.
KMALLOC_INFO_SIZES: tuple[int, ...] = (
    0,
    96,
    192,
    *(1 << shift for shift in range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1)),
)
# The class sizes in increasing order: 8, 16, 32, 64, 96, 128, 192, 256, ..., 8192.
KMALLOC_SIZES: tuple[int, ...] = tuple(sorted(KMALLOC_INFO_SIZES[1:]))

# Linux's size_index[(size - 1) // 8] for sizes 1..192 (mm/slab_common.c kmalloc_size_index).
KMALLOC_SIZE_INDEX: tuple[int, ...] = (
    3, 4, 5, 5, 6, 6, 6, 6,  # 1-8 -> 8, 9-16 -> 16, 17-32 -> 32, 33-64 -> 64
    1, 1, 1, 1,  # 65-96 -> kmalloc-96
    7, 7, 7, 7,  # 97-128 -> kmalloc-128
    2, 2, 2, 2, 2, 2, 2, 2,  # 129-192 -> kmalloc-192
)  # fmt: skip

# Cache types in Linux's enum order (this is also the order the boot creates them in).
KMALLOC_NORMAL = 0
KMALLOC_RECLAIM = 1
KMALLOC_DMA = 2
KMALLOC_CGROUP = 3
KMALLOC_TYPE_PREFIXES: tuple[str, ...] = ("kmalloc-", "kmalloc-rcl-", "dma-kmalloc-", "kmalloc-cg-")
# Flags new_kmalloc_cache() adds per type; normal caches are NO_MERGE because MEMCG is built.
KMALLOC_TYPE_FLAGS: tuple[int, ...] = (
    SLAB_NO_MERGE,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_ACCOUNT,
)


# CONFIG_RANDOM_KMALLOC_CACHES: 15 copies of the normal family besides kmalloc-N itself.
RANDOM_KMALLOC_CACHES_NR = 15
GOLDEN_RATIO_64 = 0x61C8864680B583EB


def hash_64(value: int, bits: int) -> int:
    """Linux hash_64 on a 64-bit machine: the top ``bits`` bits of value * GOLDEN_RATIO_64."""
    return ((value * GOLDEN_RATIO_64) & 0xFFFFFFFFFFFFFFFF) >> (64 - bits)


def random_kmalloc_copy(caller: int, seed: int) -> int:
    """Which copy of the normal family serves a kmalloc from ``caller`` (kmalloc_type with
    CONFIG_RANDOM_KMALLOC_CACHES): 0 is kmalloc-N, 1..15 kmalloc-rnd-01-N .. -15-N."""
    return hash_64((caller ^ seed) & 0xFFFFFFFFFFFFFFFF,
                   (RANDOM_KMALLOC_CACHES_NR + 1).bit_length() - 1)


@dataclass(frozen=True, slots=True)
class KmallocCacheSpec:
    """One kmalloc cache to create at boot: its name, object size, type and creation flags.

    flags include SLAB_KMALLOC; create it with align 0 and useroffset 0, usersize = size, as
    create_kmalloc_cache() does (so it is never merged and its sysfs directory is its name).
    """

    name: str
    size: int
    index: int
    kmalloc_type: int
    flags: int
    copy: int = 0  # random kmalloc caches: 1..15 for kmalloc-rnd-NN-SIZE


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise InvalidTypeError(f"kmalloc size must be an int, not {type(size).__name__}")
    if size < 0:
        raise InvalidArgumentError(f"kmalloc size must be >= 0, not {size}")
    return size


def kmalloc_index(size: int) -> int:
    """The kmalloc_info index of the class serving `size` bytes (0 for size 0).

    Sizes up to 192 use Linux's size_index table (so 65-96 -> 1, 129-192 -> 2); larger sizes
    up to KMALLOC_MAX_CACHE_SIZE use fls(size - 1).
    """
    size = _check_size(size)
    if size == 0:
        return 0
    if size <= 192:
        return KMALLOC_SIZE_INDEX[(size - 1) >> 3]
    if size > KMALLOC_MAX_CACHE_SIZE:
        raise InvalidArgumentError(
            f"kmalloc size {size} is above KMALLOC_MAX_CACHE_SIZE ({KMALLOC_MAX_CACHE_SIZE}): "
            "no cache serves it (it goes to kmalloc_large)"
        )
    return (size - 1).bit_length()


def kmalloc_size_class(size: int) -> int:
    """Bytes of the kmalloc class serving `size` (0 for 0; error above 8 KiB)."""
    return KMALLOC_INFO_SIZES[kmalloc_index(size)]


def kmalloc_bytes_alloc(size: int, page_size: int = PAGE_SIZE) -> int:
    """What Linux's kmalloc tracepoint reports as bytes_alloc for a request of `size` bytes.

    The class size up to 2 * page_size, else page_size << get_order(size) (kmalloc_large);
    0 for size 0 (ZERO_SIZE_PTR, nothing allocated).
    """
    if type(size) is int and page_size == PAGE_SIZE:  # the hot path: one table look-up
        if 0 <= size <= KMALLOC_MAX_CACHE_SIZE:
            return KMALLOC_CLASS_BY_SIZE[size]
        if size > KMALLOC_MAX_CACHE_SIZE:
            return PAGE_SIZE << ((size - 1) >> 12).bit_length()  # PAGE_SIZE << get_order(size)
    size = _check_size(size)
    page_shift = _page_shift(page_size)
    if size > page_size << 1:  # above KMALLOC_MAX_CACHE_SIZE for this page size
        return page_size << get_order(size, page_shift)
    if size <= 192:
        return KMALLOC_INFO_SIZES[kmalloc_index(size)]
    return 1 << (size - 1).bit_length()


def kmalloc_large_order(size: int, page_size: int = PAGE_SIZE) -> int:
    """The buddy order of a kmalloc_large() request (size above KMALLOC_MAX_CACHE_SIZE)."""
    size = _check_size(size)
    return get_order(size, _page_shift(page_size))


def _page_shift(page_size: object) -> int:
    # Any power of two >= 16 that PhysicalMemory accepts (Linux's own are 4 KiB and up).
    return check_page_size(page_size).bit_length() - 1


def kmalloc_type(gfp: int) -> int:
    """KMALLOC_NORMAL/RECLAIM/DMA/CGROUP for these gfp flags (include/linux/slab.h kmalloc_type)."""
    if isinstance(gfp, bool) or not isinstance(gfp, int):
        raise InvalidTypeError(f"gfp flags must be an int, not {type(gfp).__name__}")
    if gfp < 0:
        raise InvalidArgumentError(f"gfp flags must be >= 0, not {gfp}")
    if not gfp & KMALLOC_NOT_NORMAL_BITS:
        return KMALLOC_NORMAL
    if gfp & __GFP_DMA:
        return KMALLOC_DMA
    if gfp & __GFP_RECLAIMABLE:
        return KMALLOC_RECLAIM
    return KMALLOC_CGROUP


def kmalloc_class_name(size: int) -> str:
    """The class suffix of a kmalloc cache of `size` bytes: '96', '512', '1k', '8k'."""
    if size >= 1024 and size % 1024 == 0:
        return f"{size >> 10}k"
    return str(size)


def kmalloc_cache_name(size: int, gfp: int = 0) -> str:
    """The name of the kmalloc cache Linux serves `size` bytes from with these gfp flags.

    >>> from kmem.page.gfp import GFP_KERNEL, GFP_KERNEL_ACCOUNT
    >>> kmalloc_cache_name(70, GFP_KERNEL), kmalloc_cache_name(64, GFP_KERNEL_ACCOUNT)
    ('kmalloc-96', 'kmalloc-cg-64')
    """
    index = kmalloc_index(size)
    if index == 0:
        raise InvalidArgumentError("kmalloc(0) uses no cache (it returns ZERO_SIZE_PTR)")
    return KMALLOC_TYPE_PREFIXES[kmalloc_type(gfp)] + kmalloc_class_name(
        KMALLOC_INFO_SIZES[index]
    )


def kmalloc_boot_caches(random_caches: bool = False) -> tuple[KmallocCacheSpec, ...]:
    """Every kmalloc cache of this kernel config, in the order create_kmalloc_caches() makes them.

    Per type (normal, with random_caches the 15 kmalloc-rnd-NN- copies, rcl, dma, cg): first
    the odd classes 96 and 192, then 8 ... 8k.
    """
    families: list[tuple[int, str, int]] = [(KMALLOC_NORMAL, KMALLOC_TYPE_PREFIXES[0], 0)]
    if random_caches:
        families += [(KMALLOC_NORMAL, f"kmalloc-rnd-{copy:02d}-", copy)
                     for copy in range(1, RANDOM_KMALLOC_CACHES_NR + 1)]
    families += [(kind, KMALLOC_TYPE_PREFIXES[kind], 0) for kind in range(1, 4)]
    specs: list[KmallocCacheSpec] = []
    for kind, prefix, copy in families:
        flags = KMALLOC_TYPE_FLAGS[kind] | SLAB_KMALLOC  # random copies are SLAB_NO_MERGE too
        for index in (1, 2, *range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1)):
            size = KMALLOC_INFO_SIZES[index]
            specs.append(KmallocCacheSpec(prefix + kmalloc_class_name(size), size, index, kind,
                                          flags, copy))
    return tuple(specs)


KMALLOC_BOOT_CACHES: tuple[KmallocCacheSpec, ...] = kmalloc_boot_caches()



def _class_by_size() -> tuple[int, ...]:
    """KMALLOC_INFO_SIZES[kmalloc_index(size)] for every size 0..KMALLOC_MAX_CACHE_SIZE, a
    run of sizes per class above 192 (8,193 calls of kmalloc_index took 1 ms of starting
    every kmem command that imports kmem.slab)."""
    table = [KMALLOC_INFO_SIZES[0]]
    table += (KMALLOC_INFO_SIZES[KMALLOC_SIZE_INDEX[(size - 1) >> 3]] for size in range(1, 193))
    for shift in range(8, KMALLOC_SHIFT_HIGH + 1):  # (fls(size - 1): 193..256, 257..512, ...)
        low, high = max(193, (1 << (shift - 1)) + 1), 1 << shift
        table += [KMALLOC_INFO_SIZES[shift]] * (high - low + 1)
    return tuple(table)


# Lookup tables for the hot path: class size and normal cache name for every size 0..8192.
KMALLOC_CLASS_BY_SIZE: tuple[int, ...] = _class_by_size()

__all__ = [
    "GOLDEN_RATIO_64",
    "KMALLOC_BOOT_CACHES",
    "KMALLOC_CGROUP",
    "KMALLOC_CLASS_BY_SIZE",
    "KMALLOC_DMA",
    "KMALLOC_INFO_SIZES",
    "KMALLOC_MAX_CACHE_SIZE",
    "KMALLOC_MAX_SIZE",
    "KMALLOC_MIN_SIZE",
    "KMALLOC_NORMAL",
    "KMALLOC_RECLAIM",
    "KMALLOC_SIZES",
    "KMALLOC_SIZE_INDEX",
    "KMALLOC_TYPE_PREFIXES",
    "RANDOM_KMALLOC_CACHES_NR",
    "KmallocCacheSpec",
    "hash_64",
    "kmalloc_boot_caches",
    "kmalloc_bytes_alloc",
    "kmalloc_cache_name",
    "kmalloc_class_name",
    "kmalloc_index",
    "kmalloc_large_order",
    "kmalloc_size_class",
    "kmalloc_type",
    "random_kmalloc_copy",
]
