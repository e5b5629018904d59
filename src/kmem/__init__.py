"""kmem: kernel memory allocation as Linux does it, on real bytes.

Layers, bottom up: PhysicalMemory and its MemMap (page metadata), the BuddyAllocator (page
allocator), slab caches on it, kmalloc on the caches. This module is the one public re-export
point; import from here.
"""

from kmem.buddy import MAX_PAGE_ORDER, Block, BuddyAllocator, BuddyStats, get_order
from kmem.errors import (
    DoubleFreeError,
    InvalidArgumentError,
    InvalidFreeError,
    InvalidTypeError,
    KmemError,
    OutOfMemoryError,
    WrongOrderError,
)
from kmem.fragmentation import FragmentationReport, extfrag_index, unusable_index
from kmem.kmalloc_sizes import (
    KMALLOC_MAX_CACHE_SIZE,
    KMALLOC_MIN_SIZE,
    KMALLOC_SIZES,
    kmalloc_bytes_alloc,
    kmalloc_cache_name,
    kmalloc_index,
    kmalloc_size_class,
)
from kmem.mem_map import MemMap
from kmem.memory import PhysicalMemory
from kmem.slab_flags import (
    __GFP_ACCOUNT,
    __GFP_DMA,
    __GFP_RECLAIMABLE,
    __GFP_ZERO,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    GFP_NOFS,
    GFP_NOWAIT,
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_CACHE_DMA32,
    SLAB_CONSISTENCY_CHECKS,
    SLAB_HWCACHE_ALIGN,
    SLAB_NO_MERGE,
    SLAB_POISON,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLAB_TYPESAFE_BY_RCU,
    UnknownGfpFlagError,
    parse_gfp_flags,
)
from kmem.slab_geometry import CacheGeometry, calculate_geometry
from kmem.slab_merge import find_mergeable, slab_alias_name, slab_unmergeable

__all__ = [
    "GFP_ATOMIC",
    "GFP_DMA",
    "GFP_KERNEL",
    "GFP_KERNEL_ACCOUNT",
    "GFP_NOFS",
    "GFP_NOWAIT",
    "KMALLOC_MAX_CACHE_SIZE",
    "KMALLOC_MIN_SIZE",
    "KMALLOC_SIZES",
    "MAX_PAGE_ORDER",
    "SLAB_ACCOUNT",
    "SLAB_CACHE_DMA",
    "SLAB_CACHE_DMA32",
    "SLAB_CONSISTENCY_CHECKS",
    "SLAB_HWCACHE_ALIGN",
    "SLAB_NO_MERGE",
    "SLAB_POISON",
    "SLAB_RECLAIM_ACCOUNT",
    "SLAB_RED_ZONE",
    "SLAB_STORE_USER",
    "SLAB_TYPESAFE_BY_RCU",
    "__GFP_ACCOUNT",
    "__GFP_DMA",
    "__GFP_RECLAIMABLE",
    "__GFP_ZERO",
    "Block",
    "BuddyAllocator",
    "BuddyStats",
    "CacheGeometry",
    "DoubleFreeError",
    "FragmentationReport",
    "InvalidArgumentError",
    "InvalidFreeError",
    "InvalidTypeError",
    "KmemError",
    "MemMap",
    "OutOfMemoryError",
    "PhysicalMemory",
    "UnknownGfpFlagError",
    "WrongOrderError",
    "calculate_geometry",
    "extfrag_index",
    "find_mergeable",
    "get_order",
    "kmalloc_bytes_alloc",
    "kmalloc_cache_name",
    "kmalloc_index",
    "kmalloc_size_class",
    "parse_gfp_flags",
    "slab_alias_name",
    "slab_unmergeable",
    "unusable_index",
]
