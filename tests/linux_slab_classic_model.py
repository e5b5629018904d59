"""A deliberately plain model of the classic slab allocator's list rules (Linux mm/slab.c, as last
shipped in 6.7), to check kmem's ClassicSlabCache against.

Written from mm/slab.c's functions, named after them, with Python lists read head first and
linear searches; it shares no code with kmem. kmem's classic policy leaves out the per-CPU
object arrays (array_cache, batchcount, the shared and alien arrays), so the model is Linux's
node-level code with every array transfer one object long: an allocation is
cache_alloc_refill taking one object, a free is free_block of one object.

State (struct kmem_cache_node): ``partial`` (slabs_partial), ``full`` (slabs_full), ``free``
(slabs_free: empty slabs), each head first, and ``colour_next``. A slab: ``freelist``, the index
array of mm/slab.c (objects ``freelist[active:]`` are free, handed out in that order: the next
object is ``freelist[active]``, a freed object is written at ``freelist[active - 1]``), and
``active``, the objects in use.

Rules:
- get_first_slab: the head of slabs_partial, else the head of slabs_free;
- slab_get_obj / slab_put_obj on the index array, as above;
- fixup_slab_list after an allocation: list_add (the head) of slabs_full when the slab is now
  full, else of slabs_partial;
- free_block: an emptied slab goes to the head of slabs_free, any other to the tail of
  slabs_partial ("maximum time for the other objects to be freed, too");
- cache_grow_begin colouring: colour_off = cache_line_size() (64), raised to the cache's
  alignment; colour = left_over / colour_off; colour_next is moved on first (wrapping to 0 at
  colour), then used: the slab's first object starts colour_next * colour_off bytes in;
- drain_freelist (kmem_cache_shrink): destroys empty slabs from the tail of slabs_free.

Where kmem's policy goes its own documented way, the model follows it and says so:
- no free_limit: Linux destroys empty slabs in free_block once the node's free objects exceed
  (1 + nr_cpus) * batchcount + objects per slab, a limit of the per-CPU arrays; kmem keeps
  empty slabs until shrink();
- a new slab falls back to the minimum order when the preferred one cannot be had (SLUB's
  allocate_slab; mm/slab.c had one order), and such a smaller slab uses colour 0 when
  colour_next is beyond its own, smaller, left-over space;
- counters (kmem's CacheStats for this policy): an allocation from an existing slab counts
  alloc_fastpath, one that grows the cache alloc_slowpath and alloc_slab; every free counts
  free_fastpath; every slab given back free_slab; a minimum-order slab order_fallback.
"""

from __future__ import annotations

from typing import Protocol

CACHE_LINE_SIZE = 64

STAT_ITEMS = ("alloc_fastpath", "alloc_slowpath", "alloc_slab", "free_fastpath", "free_slab",
              "order_fallback")


class PageAllocator(Protocol):
    def alloc_pages(self, order: int) -> int | None: ...

    def free_pages(self, pfn: int, order: int) -> None: ...


class ClassicSlab:
    def __init__(self, pfn: int, order: int, objects: int, colour_offset: int) -> None:
        self.pfn = pfn
        self.order = order
        self.objects = objects
        self.colour_offset = colour_offset
        self.freelist = list(range(objects))  # cache_init_objs: set_free_obj(slab, i, i)
        self.active = 0

    def __repr__(self) -> str:
        return f"ClassicSlab(pfn={self.pfn}, active={self.active}/{self.objects})"


class LinuxSlabClassicModel:
    def __init__(self, *, pages: PageAllocator, size: int, order: int, min_order: int,
                 align: int, page_size: int = 4096, red_left_pad: int = 0) -> None:
        self.pages = pages
        self.size = size
        self.order = order
        self.min_order = min_order
        self.page_size = page_size
        self.red_left_pad = red_left_pad
        self.num = (page_size << order) // size
        self.colour_off = max(CACHE_LINE_SIZE, align)
        self.colour = ((page_size << order) - self.num * size) // self.colour_off
        self.colour_next = 0
        self.partial: list[ClassicSlab] = []
        self.full: list[ClassicSlab] = []
        self.free: list[ClassicSlab] = []
        self.stat = dict.fromkeys(STAT_ITEMS, 0)

    def slabs(self) -> list[ClassicSlab]:
        return self.partial + self.full + self.free

    def address(self, slab: ClassicSlab, index: int) -> int:
        return (slab.pfn * self.page_size + slab.colour_offset + self.red_left_pad
                + index * self.size)

    def find(self, address: int) -> tuple[ClassicSlab, int]:
        for slab in self.slabs():
            first = self.address(slab, 0)
            if first <= address < first + slab.objects * self.size:
                assert (address - first) % self.size == 0
                return slab, (address - first) // self.size
        raise AssertionError(f"{address:#x} is in no slab of the model")

    def list_of(self, slab: ClassicSlab) -> list[ClassicSlab]:
        for slabs in (self.partial, self.full, self.free):
            if slab in slabs:
                return slabs
        raise AssertionError(f"{slab} is on no list")

    # -- allocation -----------------------------------------------------------------------------

    def get_first_slab(self) -> ClassicSlab | None:
        if self.partial:
            return self.partial[0]
        if self.free:
            return self.free[0]
        return None

    def cache_grow_begin(self) -> ClassicSlab | None:
        order = self.order
        pfn = self.pages.alloc_pages(order)
        if pfn is None:
            order = self.min_order
            if order == self.order:
                return None
            pfn = self.pages.alloc_pages(order)
            if pfn is None:
                return None
            self.stat["order_fallback"] += 1
        objects = (self.page_size << order) // self.size
        colours = ((self.page_size << order) - objects * self.size) // self.colour_off
        self.colour_next += 1
        if self.colour_next >= self.colour:
            self.colour_next = 0
        offset = self.colour_next
        if offset >= colours:
            offset = 0
        return ClassicSlab(pfn, order, objects, offset * self.colour_off)

    def fixup_slab_list(self, slab: ClassicSlab) -> None:
        for slabs in (self.partial, self.full, self.free):
            if slab in slabs:
                slabs.remove(slab)
        if slab.active == slab.objects:
            self.full.insert(0, slab)
        else:
            self.partial.insert(0, slab)

    def alloc(self) -> int | None:
        slab = self.get_first_slab()
        if slab is None:
            slab = self.cache_grow_begin()
            if slab is None:
                return None
            self.stat["alloc_slowpath"] += 1
            self.stat["alloc_slab"] += 1
        else:
            self.stat["alloc_fastpath"] += 1
        index = slab.freelist[slab.active]  # slab_get_obj
        slab.active += 1
        self.fixup_slab_list(slab)  # (cache_grow_end does it for a new slab)
        return self.address(slab, index)

    # -- free and shrink ------------------------------------------------------------------------

    def free_block(self, address: int) -> None:
        slab, index = self.find(address)
        self.list_of(slab).remove(slab)
        slab.active -= 1  # slab_put_obj
        slab.freelist[slab.active] = index
        self.stat["free_fastpath"] += 1
        if slab.active == 0:
            self.free.insert(0, slab)
        else:
            self.partial.append(slab)

    def drain_freelist(self) -> None:
        while self.free:
            slab = self.free.pop()  # slabs_free.prev: the tail
            self.pages.free_pages(slab.pfn, slab.order)
            self.stat["free_slab"] += 1
