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
from kmem.mem_map import MemMap
from kmem.memory import PhysicalMemory

__all__ = [
    "MAX_PAGE_ORDER",
    "Block",
    "BuddyAllocator",
    "BuddyStats",
    "DoubleFreeError",
    "FragmentationReport",
    "InvalidArgumentError",
    "InvalidFreeError",
    "InvalidTypeError",
    "KmemError",
    "MemMap",
    "OutOfMemoryError",
    "PhysicalMemory",
    "WrongOrderError",
    "extfrag_index",
    "get_order",
    "unusable_index",
]
