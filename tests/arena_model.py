"""A plain model of an arena's slab caches and kmalloc, over an in-process BuddyAllocator.

Written from the rules the arena documents (kmem.arena.arena's docstring), not from its code:
a cache's slab is a buddy block of calculate_order(slot size) pages; a new slab goes to the
head of the partial list; objects come off the slab's freelist (last freed first), else the
next never-used slot; a full slab leaves the partial list, a slab that was full goes back to its
head when an object is freed, an empty slab goes back to the buddy allocator. kmalloc uses the
caches kmalloc-<class> (Linux's size classes up to two pages), larger requests take pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kmem import BuddyAllocator
from kmem.slab.geometry import calculate_order
from kmem.slab.kmalloc_sizes import KMALLOC_INFO_SIZES, KMALLOC_SIZE_INDEX


@dataclass
class ModelSlab:
    pfn: int
    freelist: list[int] = field(default_factory=list)
    fresh: int = 0
    inuse: int = 0


@dataclass
class ModelCache:
    name: str
    object_size: int
    stride: int
    order: int
    objects: int
    partial: list[ModelSlab] = field(default_factory=list)
    slabs: dict[int, ModelSlab] = field(default_factory=dict)


class ArenaModel:
    def __init__(self, nr_pages: int, page_size: int, max_order: int) -> None:
        self.buddy = BuddyAllocator(nr_pages * page_size, page_size=page_size,
                                    max_order=max_order)
        self.page_size = page_size
        self.limit = min(max_order, nr_pages.bit_length() - 1)
        self.caches: dict[str, ModelCache] = {}
        self.large: set[int] = set()

    def cache(self, name: str, size: int) -> ModelCache:
        if name not in self.caches:
            stride = max(8, (size + 7) // 8 * 8)
            least = ((stride - 1) // self.page_size).bit_length()  # one object's order
            order = max(least, min(calculate_order(stride, page_size=self.page_size),
                                   self.limit))
            objects = (self.page_size << order) // stride
            self.caches[name] = ModelCache(name, size, stride, order, objects)
        return self.caches[name]

    def cache_alloc(self, cache: ModelCache) -> int | None:
        """The address the arena must return, or None when it must run out of memory."""
        if not cache.partial:
            try:
                pfn = self.buddy.alloc_pages(cache.order)
            except MemoryError:
                return None
            slab = ModelSlab(pfn)
            cache.slabs[pfn] = slab
            cache.partial.insert(0, slab)
        slab = cache.partial[0]
        if slab.freelist:
            index = slab.freelist.pop()
        else:
            index = slab.fresh
            slab.fresh += 1
        slab.inuse += 1
        if slab.inuse == cache.objects:
            cache.partial.remove(slab)
        return slab.pfn * self.page_size + index * cache.stride

    def cache_free(self, cache: ModelCache, address: int) -> None:
        slab_bytes = self.page_size << cache.order
        pfn = address // slab_bytes * (1 << cache.order)
        slab = cache.slabs[pfn]
        index = (address - pfn * self.page_size) // cache.stride
        was_full = slab.inuse == cache.objects
        slab.freelist.append(index)
        slab.inuse -= 1
        if slab.inuse == 0:
            if not was_full:
                cache.partial.remove(slab)
            del cache.slabs[pfn]
            self.buddy.free_pages(pfn, cache.order)
        elif was_full:
            cache.partial.insert(0, slab)

    def kmalloc_cache(self, size: int) -> ModelCache | None:
        if size <= 192:
            class_size = KMALLOC_INFO_SIZES[KMALLOC_SIZE_INDEX[(size - 1) // 8]]
        elif size <= 2 * self.page_size:
            class_size = 1 << (size - 1).bit_length()
        else:
            return None
        if ((class_size - 1) // self.page_size).bit_length() > self.limit:
            return None  # no slab of this arena holds one: pages (kmalloc_large)
        name = (f"kmalloc-{class_size >> 10}k" if class_size >= 1024
                else f"kmalloc-{class_size}")
        return self.cache(name, class_size)

    def active(self) -> dict[str, int]:
        return {name: sum(s.inuse for s in cache.slabs.values())
                for name, cache in self.caches.items()}
