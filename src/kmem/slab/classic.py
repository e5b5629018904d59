"""The classic slab policy: Bonwick's 1994 slab allocator, as the textbooks and Linux's old
mm/slab.c describe it (without its per-CPU object arrays).

State of a cache: three lists of slabs, each an OrderedDict used as a list with O(1) removal:

    _partial   slabs with some objects allocated and some free
    _full      slabs with every object allocated
    _empty     slabs with no object allocated, kept (with their constructed objects) until
               shrink() gives them back to the buddy allocator (Linux: cache_reap, drain)

Allocation takes an object from the first partial slab, else from the first empty slab (it
becomes partial), else grows the cache by a new slab (Linux: cache_alloc_refill,
get_first_slab, cache_grow_begin). Objects of a slab are handed out in ascending address order
first, then last-freed first. The slab allocated from goes to the head of the partial list, or
of the full list when it gave its last object (fixup_slab_list). A free moves the slab to the
tail of the partial list (Linux's free_block: "maximum time for the other objects to be freed,
too"), or to the head of the empty list when it was the last object; shrink() gives empty slabs
back from the tail of the empty list (drain_freelist), so the most recently emptied, cache-warm
slab is the last to go and the first to be reused.

Slab colouring: a slab of ``objs`` objects of ``size`` bytes leaves ``left_over = slab bytes -
objs * size`` bytes unused. The cache has ``colour = left_over // colour_off`` colours
(colour_off = the cache line, 64 bytes, or the alignment if larger); each new slab starts its
first object ``colour_next * colour_off`` bytes in, and colour_next cycles 0, 1, ..,
colour - 1, 0, .. so that equal objects of different slabs fall on different cache lines. As in
Linux's mm/slab.c since 4.7 (cache_grow_begin), colour_next moves on before it is used: the first
slab gets colour 1 (when the cache has more than one colour), then 2, .., colour - 1, 0, 1, ..

Linux also destroys empty slabs as soon as the node's free objects exceed free_limit ((1 +
nr_cpus) * batchcount + objects per slab); that limit belongs to the per-CPU arrays this
policy leaves out, so empty slabs stay until shrink().

Counters: an allocation from an existing slab counts as a fast path, one that grows the cache
as a slow path (with ALLOC_SLAB); every free is a fast path. ``cpu=`` is accepted and checked so
both policies share one API, but this policy keeps no per-CPU state.

/proc/slabinfo: active_objs are the allocated objects, active_slabs the full and partial ones
(the old slab allocator's meaning), tunables 0 0 0 (no per-CPU arrays).

Invariants (``check()``): every slab is on exactly the list its fill says; its colour offset
is a multiple of colour_off within left_over.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Final

from kmem.page.gfp import GFP_KERNEL
from kmem.slab.cache import KmemCache, check_gfp
from kmem.slab.geometry import CACHE_LINE_SIZE
from kmem.slab.slabs import ON_EMPTY, ON_FULL, ON_NODE_PARTIAL, Slab
from kmem.slab.stats import ALLOC_FASTPATH, ALLOC_SLAB, ALLOC_SLOWPATH


class ClassicSlabCache(KmemCache):
    """A cache under the classic slab policy: full, partial and empty lists, colouring."""

    policy = "slab"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._partial: OrderedDict[Slab, None] = OrderedDict()
        self._full: OrderedDict[Slab, None] = OrderedDict()
        self._empty: OrderedDict[Slab, None] = OrderedDict()
        self.colour_off: Final = max(CACHE_LINE_SIZE, self.align)
        left_over = (self._page_size << self.order) - self.objs_per_slab * self.size
        self.colour: Final = left_over // self.colour_off
        self.colour_next = 0
        self._cpu_ids: Final = frozenset(range(self.nr_cpus))
        # (no subclass replaces them yet; one that did would keep its own off the compiled core)
        cls = type(self)
        own = cls.alloc is ClassicSlabCache.alloc and cls.free is ClassicSlabCache.free
        if own:  # pragma: no branch
            self._use_compiled_core("classic", partial=self._partial)

    def _setup_slab(self, pfn: int, order: int) -> Slab:
        colour_next = self.colour_next
        try:
            return super()._setup_slab(pfn, order)
        except BaseException:  # (a constructor failed): the next slab gets this colour again
            self.colour_next = colour_next
            raise

    def _colour_offset(self, slab_bytes: int, objects: int) -> int:
        left_over = slab_bytes - objects * self.size
        colours = left_over // self.colour_off
        self.colour_next += 1  # moved on first, as cache_grow_begin does
        if self.colour_next >= self.colour:
            self.colour_next = 0
        offset = self.colour_next
        if offset >= colours:  # a minimum-order fallback slab has fewer colours
            offset = 0
        return offset * self.colour_off

    # -- allocation and free -------------------------------------------------------------------

    def _alloc_unlocked(self, cpu: int = 0, gfp: int = GFP_KERNEL) -> int:
        if gfp is not GFP_KERNEL and (gfp.__class__ is not int or gfp >> 32):
            check_gfp(gfp)
        if cpu.__class__ is not int or cpu not in self._cpu_ids:
            cpu = self._plain_cpu(cpu)
        partial = self._partial
        if partial:
            slab = next(iter(partial))
            self._fast[0] += 1
        else:
            slab = self._refill(gfp, cpu)
        freelist = slab.freelist
        if self._debug is not None:
            try:
                self._debug.on_alloc(self.name, slab.base + freelist[-1] * self.size, cpu)
            except BaseException:
                self._undo_refill(slab)
                raise
        index = freelist.pop()
        slab.used[index] = 1
        if not freelist:
            del partial[slab]
            self._full[slab] = None
            self._full.move_to_end(slab, last=False)  # fixup_slab_list: list_add, the head
            slab.where = ON_FULL
        return slab.base + index * self.size

    def _refill(self, gfp: int = GFP_KERNEL, cpu: int = 0) -> Slab:
        """No partial slab: the first empty slab, else a new one; it joins the partial list."""
        if self.destroyed:
            raise self._bad_free(0)
        empty = self._empty
        if empty:
            slab, _ = empty.popitem(last=False)
            self._stat[ALLOC_FASTPATH] += 1
        else:
            slab = self._new_slab(gfp, cpu)
            self._stat[ALLOC_SLOWPATH] += 1
            self._stat[ALLOC_SLAB] += 1
        self._partial[slab] = None
        self._partial.move_to_end(slab, last=False)
        slab.where = ON_NODE_PARTIAL
        return slab

    def _undo_refill(self, slab: Slab) -> None:
        """A debug check failed on an object of ``slab``: put its lists back as they were."""
        if len(slab.freelist) != slab.objects:
            return  # it was a partial slab: nothing moved
        # An empty slab taken by _refill (a new slab's fresh objects never fail a check).
        del self._partial[slab]
        self._empty[slab] = None
        self._empty.move_to_end(slab, last=False)
        slab.where = ON_EMPTY

    def _free_unlocked(self, address: int, cpu: int = 0) -> None:
        try:  # the slab of the page, and the object's index: it must be allocated
            slab = self._slab_of_pfn[address >> self._page_shift]
            size = self.size
            offset = address - slab.base  # < 0 in the colour area before the first object
            index = offset // size
            valid = offset >= 0 and index * size == offset and slab.used[index] == 1
            valid = valid and cpu.__class__ is int and cpu in self._cpu_ids
            valid = valid and address.__class__ is int  # (False would free address 0)
        except (KeyError, TypeError, IndexError):
            valid = False
        if not valid:
            return self._free_other(address, cpu)
        debug = self._debug
        if debug is not None:
            debug.check_free(self.name, address)
        slab.used[index] = 0
        if debug is not None:
            debug.on_free(address, cpu)
        freelist = slab.freelist
        freelist.append(index)
        self._fast[1] += 1
        if len(freelist) == 1:  # it was full
            del self._full[slab]
            if slab.objects > 1:
                self._partial[slab] = None
                slab.where = ON_NODE_PARTIAL
                return
        elif len(freelist) != slab.objects:
            self._partial.move_to_end(slab)  # Linux's free_block: to the tail, "fair"
            return
        else:
            del self._partial[slab]
        self._empty[slab] = None
        self._empty.move_to_end(slab, last=False)  # free_block: list_add, the head
        slab.where = ON_EMPTY

    def shrink(self) -> int:
        """Give every empty slab back to the buddy allocator, from the tail of the empty list
        (drain_freelist); return how many."""
        with self._lock:
            return self._shrink()

    def _shrink(self) -> int:
        count = len(self._empty)
        while self._empty:
            slab, _ = self._empty.popitem()
            self._discard_slab(slab)
        return count

    reap = shrink

    # -- reports and invariants ----------------------------------------------------------------

    def _lists(self) -> Iterator[tuple[int, int, Slab]]:
        for where, slabs in ((ON_NODE_PARTIAL, self._partial), (ON_FULL, self._full),
                             (ON_EMPTY, self._empty)):
            for slab in slabs:
                yield where, -1, slab

    def _active_objs(self) -> int:
        return sum(s.inuse for s in self._slabs())

    def _active_slabs(self) -> int:
        return len(self._partial) + len(self._full)

    def _check_lists(self) -> None:
        seen = 0
        for where, _, slab in self._lists():
            name = f"{self.name}: slab at pfn {slab.pfn:#x}"
            seen += 1
            if slab.where != where:
                raise AssertionError(f"{name}: where={slab.where} but on list {where}")
            free = len(slab.freelist)
            expected = ON_EMPTY if free == slab.objects else ON_FULL if not free else (
                ON_NODE_PARTIAL)
            if where != expected:
                raise AssertionError(f"{name}: {free} of {slab.objects} free, on list {where}")
            left_over = (self._page_size << slab.order) - slab.objects * self.size
            if slab.colour % self.colour_off or slab.colour > left_over:
                raise AssertionError(f"{name}: colour offset {slab.colour} out of place")
        if seen != len(self._slabs()):
            raise AssertionError(f"{self.name}: {len(self._slabs())} slabs, {seen} on lists")
