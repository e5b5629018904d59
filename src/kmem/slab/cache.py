"""What every slab cache shares, whatever its policy: slabs of real pages, objects by address.

A cache (Linux: struct kmem_cache) hands out objects of one size. Its memory comes in slabs: a
block of ``1 << order`` contiguous pages from the buddy allocator (a compound page). Object
``i`` of a slab starts at ``base + i * size`` where ``base`` is the slab's first byte, plus the
left red zone (debug caches) and the colour offset (classic policy). An object's address is a
byte address in the machine's physical memory, and ``view(addr)`` is a memoryview of its bytes.

State, beside each slab's own (kmem.slab.slabs.Slab):

    _slab_of_pfn    dict: every page of every slab of this cache -> its Slab, so a free finds
                    its slab from the address in one lookup.
    mem_map.owner   the buddy's per-page column: this cache's id on every page of its slabs
                    (Linux: slab->slab_cache), so kfree(addr) finds the cache from the address.
    _stat           the CONFIG_SLUB_STATS counters (kmem.slab.stats), snapshot by stats().
    _debug          the SLUB_DEBUG hooks (kmem.slab.debug.SlabDebugger) of a debug cache.

Errors are raised before any change: double free, a free of a free or foreign address, an
interior pointer, a free to the wrong cache, destroying a cache with live objects (with the
list of live objects), all leave the cache as it was. A slab is built completely (pages, owner
entries, constructor, debug patterns) or not at all: out of memory in the buddy allocator
reaches the caller as OutOfMemoryError with nothing left behind.

The policies (``kmem.slab.slub``, ``kmem.slab.classic``) subclass KmemCache with their alloc/free
paths. Each cache has its own lock (Linux's per-node list_lock and per-cpu locking, simplified
to one lock per cache), so caches can be used from several threads; ``thread_safe=False``
binds ``alloc``/``free`` to the unlocked paths for single-threaded callers.

SLAB_TYPESAFE_BY_RCU caches do not give a discarded slab's pages back at once: the slab leaves
every list (``where`` is "rcu") but keeps its pages and owner entries until ``rcu_barrier()``,
as Linux frees such slabs from an RCU callback after a grace period.
"""

from __future__ import annotations

import operator
import threading
from array import array
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, NoReturn

from kmem.errors import InvalidTypeError, KmemError, OutOfMemoryError
from kmem.page.buddy import Block
from kmem.page.errors import MemoryClosedError
from kmem.page.gfp import GFP_KERNEL
from kmem.page.watermarks import gfp_pfmemalloc_flags
from kmem.slab.debug import SlabDebugger
from kmem.slab.errors import (
    CacheDestroyedError,
    ConstructorReentryError,
    FreeToDestroyedCacheError,
    InteriorPointerError,
    InvalidCpuError,
    InvalidGfpError,
    NotAnObjectError,
    ObjectDoubleFreeError,
    WrongCacheError,
)
from kmem.slab.flags import SLAB_DEBUG_FLAGS, SLAB_KMALLOC, SLAB_TYPESAFE_BY_RCU
from kmem.slab.geometry import CacheGeometry
from kmem.slab.machine_pages import new_slab_pages
from kmem.slab.merge import merge_into, slab_alias_name, slab_unmergeable
from kmem.slab.numa import check_one_node
from kmem.slab.slabs import (
    ON_CPU,
    ON_CPU_PARTIAL,
    ON_FULL,
    ON_NODE_PARTIAL,
    ON_NONE,
    ON_RCU,
    RCU_PENDING,
    WHERE_NAMES,
    Slab,
)
from kmem.slab.stats import (
    FREE_SLAB,
    ORDER_FALLBACK,
    STAT_NAMES,
    CacheStats,
    LiveObject,
    SlabInfo,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from kmem._core import SlabCacheCore
    from kmem.page.buddy import BuddyAllocator
    from kmem.slab.machine_pages import MachinePages
    from kmem.slab.numa import NodeLayout

Constructor = Callable[[memoryview], object]

GFP_MAX: Final = (1 << 32) - 1  # gfp_t is an unsigned int

# The cache methods that change slabs or give pages back: refused once the memory is closed.
_CHANGES: Final = ("alloc", "free", "shrink", "reap", "rcu_barrier", "flush_cpu", "kfree_rcu",
                   "release_sheaves", "flush_rcu_sheaves", "enable_sheaves")


_SLAB_PFN: Final = operator.attrgetter("pfn")


def check_gfp(gfp: object) -> int:
    """``gfp`` if it is a gfp_t (an int in 0..2**32-1, not a bool), else the specific error."""
    if isinstance(gfp, bool) or not isinstance(gfp, int):
        raise InvalidTypeError(f"gfp flags must be an int, not {type(gfp).__name__}")
    if not 0 <= gfp <= GFP_MAX:
        raise InvalidGfpError(f"gfp flags must be in 0..{GFP_MAX:#x}, not {gfp:#x}")
    return int(gfp)


class _ConstructorGuard:
    """The cache lock while constructors run: the constructing thread may not take it again
    (a ctor that re-enters its cache would deadlock); other threads wait for it as usual."""

    def __init__(self, cache: KmemCache, lock: threading.Lock | SlabCacheCore | _ConstructorGuard
                 ) -> None:
        self.cache = cache
        self.lock = lock
        self.thread = threading.get_ident()

    def check(self) -> None:
        if threading.get_ident() == self.thread:
            raise ConstructorReentryError(
                f"the constructor of cache {self.cache.name!r} called back into its own cache"
                " while a slab was being built for it"
            )

    def acquire(self) -> object:
        self.check()
        return self.lock.acquire()

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> object:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class KmemCache:
    """A cache of equal objects (Linux: struct kmem_cache), common to both policies.

    Public attributes carry /sys/kernel/slab/<cache>/ names and values: object_size,
    slab_size, align, objs_per_slab, order, min_partial, cpu_partial, plus name, flags, ctor,
    useroffset, usersize, inuse, offset (free pointer), red_left_pad and aliases (names of the
    caches merged into this one).
    """

    policy: str = ""
    kernel: str = "6.17"  # the Linux version whose rules the cache follows (set by the allocator)
    sheaf_capacity: int = 0  # /sys/kernel/slab/<cache>/sheaf_capacity (6.18 and later)

    def __init__(self, *, cache_id: int, name: str, geometry: CacheGeometry,
                 buddy: BuddyAllocator, nr_cpus: int, ctor: Constructor | None,
                 callers: list[str], thread_safe: bool = True,
                 pages: MachinePages | None = None, numa: NodeLayout | None = None) -> None:
        self.id: Final = cache_id
        self.name: Final = name
        self.geometry = geometry  # raised by merges (object_size, inuse), as Linux does
        self.object_size = geometry.object_size
        self.size: Final = geometry.size
        self.slab_size: Final = geometry.size
        self.align: Final = geometry.align
        self.inuse = geometry.inuse
        self.offset: Final = geometry.offset
        self.red_left_pad: Final = geometry.red_left_pad
        self.objs_per_slab: Final = geometry.objs_per_slab
        self.order: Final = geometry.order
        self.min_order: Final = geometry.min_order
        self.min_partial: Final = geometry.min_partial
        self.cpu_partial: Final = geometry.cpu_partial
        self.cpu_partial_slabs: Final = geometry.cpu_partial_slabs
        self.flags: Final = geometry.flags
        self.useroffset: Final = geometry.useroffset
        self.usersize: Final = geometry.usersize
        self.ctor: Final = ctor
        self.nr_cpus: Final = nr_cpus
        self.aliases: list[str] = []
        self.refcount = 1
        self.destroyed = False
        self._buddy: Final = buddy
        # A page machine behind the buddy's blocks (kmem.slab.machine_pages): slab pages are
        # allocated with the allocation's gfp flags, under watermarks, maybe from the reserves
        self._pages: Final = pages
        # allocate_slab's slab_set_pfmemalloc asks the page source which pages came from its
        # memory reserves; a BuddyAllocator has none (no such method: no slab is pfmemalloc)
        self._page_is_pfmemalloc: Final[Callable[[int], bool] | None] = (
            pages.page_is_pfmemalloc if pages is not None
            else getattr(buddy, "page_is_pfmemalloc", None))
        # Several NUMA nodes (kmem.slab.numa), or None: one node, every slab and CPU on node 0
        self._numa: Final = numa
        self.nr_nodes: Final = 1 if numa is None else numa.nr_nodes
        # cpu -> node (cpu_to_node): all 0 with one node
        self._cpu_node: Final = [0] * nr_cpus if numa is None else numa.cpu_node
        self._memory: Final = buddy.memory
        self._owner: Final = buddy.mem_map.owner
        self._page_shift: Final = buddy.page_shift
        self._page_size: Final = buddy.page_size
        # The cache lock: a threading.Lock, or the compiled core, which holds one.
        self._lock: threading.Lock | SlabCacheCore | _ConstructorGuard = threading.Lock()
        self._lock_acquire = self._lock.acquire  # bound: cheaper than `with` here
        self._lock_release = self._lock.release
        self._slab_of_pfn: dict[int, Slab] = {}
        self._slabs_made = 0
        # SLAB_TYPESAFE_BY_RCU: a discarded slab's pages stay allocated (and typed: its objects'
        # memory keeps being an object of this cache) until rcu_barrier(), Linux's call_rcu.
        self.typesafe_by_rcu: Final = bool(geometry.flags & SLAB_TYPESAFE_BY_RCU)
        self._rcu_pending: list[Slab] = []
        self._stat = [0] * len(STAT_NAMES)
        # change_count()'s share for the changes no counter above moves (a shrink's uncounted
        # discards, kfree_rcu marks, a merge's object_size, teardown): bumped where they happen.
        self._changes = 0
        # The fast paths' counters (alloc, free), apart from the list: fewer bytecodes, and a
        # buffer the compiled core shares.
        self._fast: Final = array("q", [0, 0])
        self.thread_safe: Final = thread_safe
        if not thread_safe:
            # Single-threaded use: call the paths directly, without the lock's cost.
            self.alloc = self._alloc_unlocked  # type: ignore[method-assign]
            self.free = self._free_unlocked  # type: ignore[method-assign]
        # kmalloc caches: the allocator's histogram of request sizes (count per size) and the
        # sizes this cache serves, lo..hi (see count_kmalloc_requests).
        self._kmalloc_requests: Sequence[int] | None = None
        self._kmalloc_sizes = range(0)
        # The counts kmalloc_requests() last summed and what it said of them (its sums over
        # thousands of sizes are read again only when a count moved)
        self._requests_seen: tuple[Sequence[int], range, tuple[int, int]] | None = None
        # The rows slab_usage() last gave from the compiled core (which gives a row that did
        # not change as that very tuple again)
        self._usage_seen: list[tuple[int, int, int, bytes]] = []
        self._debug: SlabDebugger | None = (
            SlabDebugger(geometry, self._memory, callers)
            if geometry.flags & SLAB_DEBUG_FLAGS else None
        )
        # kfree's table of frees (the allocator's list and this cache's index in it), so that
        # a constructor's kfree of its own cache's object is caught too.
        self.frees_slot: tuple[list[Callable[[int, int], None] | None], int] | None = None
        self._memory.on_close(self._memory_closed)

    def _memory_closed(self) -> None:
        """The physical memory closed: alloc, free and every call that gives pages back refuse,
        on either core, before anything changes (queries and reports still answer)."""

        def refuse(*args: object, **kwargs: object) -> NoReturn:
            raise MemoryClosedError(
                f"cache {self.name!r} cannot allocate or free: the physical memory was closed")

        for name in _CHANGES:
            if hasattr(self, name):
                setattr(self, name, refuse)

    def _use_compiled_core(self, kind: str, *, cpu_slab: object = None,
                           partial: object = None, pcs: object = None,
                           slow_free: object = None) -> None:
        """Run alloc and free in the compiled core (kmem._core.SlabCacheCore), when it is built.

        The core reads this cache's own lists (``cpu_slab`` for SLUB, ``partial`` for classic,
        for sheaves (kind "sheaf") ``cpu_slab`` is the main sheaves and ``pcs`` the counters;
        SLUB's ``slow_free`` lets the core take the free slow paths that change no list)
        and slabs, and takes only the fast path; everything else goes to this class's pure
        alloc and free (locked or not, as the cache is), before any change. The core's lock
        becomes the cache lock. Debug caches keep their pure paths: every object is checked.
        """
        core = self._buddy.compiled_core
        if core is None or not core.SLAB_FAST_PATHS or self._debug is not None:
            return
        cls = type(self)
        pure_alloc = cls.alloc if self.thread_safe else cls._alloc_unlocked
        pure_free = cls.free if self.thread_safe else cls._free_unlocked
        fast = core.SlabCacheCore(
            kind=kind, slab_type=Slab, cpu_slab={} if cpu_slab is None else cpu_slab,
            partial={} if partial is None else partial, slab_of_pfn=self._slab_of_pfn,
            size=self.size, page_shift=self._page_shift, nr_cpus=self.nr_cpus, fast=self._fast,
            thread_safe=self.thread_safe, pure_alloc=pure_alloc.__get__(self),
            pure_free=pure_free.__get__(self), pcs=pcs, slow_free=slow_free,
            # (sheaves on several nodes: the core leaves remote frees to the pure path)
            cpu_node=self._cpu_node if kind == "sheaf" and self._numa is not None else None)
        self._lock = fast
        self._lock_acquire = fast.acquire
        self._lock_release = fast.release
        self.alloc = fast.alloc  # type: ignore[method-assign]
        self.free = fast.free  # type: ignore[method-assign]

    def add_alias(self, alias: str, object_size: int) -> None:
        """A new cache of ``object_size`` bytes aliases this one (__kmem_cache_alias)."""
        self._changes += 1  # (object_size may grow: a page shows it)
        self.geometry = merge_into(self.geometry, object_size)
        self.object_size = self.geometry.object_size
        self.inuse = self.geometry.inuse
        self.refcount += 1
        self.aliases.append(alias)

    @property
    def sysfs_name(self) -> str:
        """The /sys/kernel/slab directory: ':' + flags + size for mergeable caches, else name."""
        if slab_unmergeable(self.geometry):
            return self.name
        return slab_alias_name(self.geometry)

    # -- the API every policy implements -------------------------------------------------------

    def alloc(self, cpu: int = 0, gfp: int = GFP_KERNEL) -> int:
        """Allocate an object; return its address. OutOfMemoryError when no page can be had."""
        if gfp is not GFP_KERNEL and (gfp.__class__ is not int or gfp >> 32):
            check_gfp(gfp)
        self._lock_acquire()
        try:
            return self._alloc_unlocked(cpu, gfp)
        finally:
            self._lock_release()

    def free(self, address: int, cpu: int = 0) -> None:
        """Free the object at ``address`` (allocated from this cache)."""
        self._lock_acquire()
        try:
            self._free_unlocked(address, cpu)
        finally:
            self._lock_release()

    def _alloc_unlocked(self, cpu: int = 0, gfp: int = GFP_KERNEL) -> int:
        raise NotImplementedError

    def alloc_node(self, cpu: int = 0, gfp: int = GFP_KERNEL, node: int = -1) -> int:
        """kmem_cache_alloc_node: an object from ``node`` (NUMA_NO_NODE, -1: the local node,
        as alloc). With one node every node asked for is node 0, where every slab is."""
        self._check_node(node)
        return self.alloc(cpu, gfp)

    def _check_node(self, node: object) -> int:
        """``node`` if it is NUMA_NO_NODE (-1) or a node of the allocator, else the error."""
        if self._numa is not None:
            return self._numa.check_node(node)
        return check_one_node(node)

    def _free_unlocked(self, address: int, cpu: int = 0) -> None:
        raise NotImplementedError

    def shrink(self) -> int:
        """Give empty slabs back to the buddy allocator (kmem_cache_shrink); return how many."""
        raise NotImplementedError

    def _shrink(self) -> int:
        """shrink() with the cache lock held."""
        raise NotImplementedError

    def _teardown(self) -> None:
        """kmem_cache_destroy's work on a cache without live objects, the lock held: every
        slab back to the buddy allocator, those waiting for RCU too (Linux's rcu_barrier)."""
        self._changes += 1
        self._shrink()
        self._rcu_barrier()
        if self._slab_of_pfn:  # pragma: no cover - an invariant: no objects, so no slab stays
            raise AssertionError(f"{self.name}: slabs left after the teardown")

    def _lists(self) -> Iterator[tuple[int, int, Slab]]:
        """Every tracked slab as (where, cpu, slab), in list order (for check and reports)."""
        raise NotImplementedError

    def _active_objs(self) -> int:
        """active_objs as /proc/slabinfo counts it under this policy."""
        raise NotImplementedError

    def _active_slabs(self) -> int:
        return len(self._slabs())

    def _tunables(self) -> tuple[int, int, int]:
        return (0, 0, 0)

    # -- slabs: creation and discard -----------------------------------------------------------

    def _new_slab(self, gfp: int = GFP_KERNEL, cpu: int = 0, node: int = -1) -> Slab:
        """A new slab from the buddy allocator, fully set up (Linux: allocate_slab).

        Tries the preferred order, then the minimum order (ORDER_FALLBACK) when the buddy
        allocator cannot give the larger block; raises OutOfMemoryError with nothing changed.
        On a page machine (``pages``) the blocks are asked for with the allocation's ``gfp``
        on ``cpu`` (kmem.slab.machine_pages); a buddy allocator takes no flags. With several
        nodes the pages come from ``node`` (NUMA_NO_NODE, -1: the node of ``cpu``), or another
        node unless __GFP_THISNODE, each order tried on every node first (allocate_slab).
        """
        if self._pages is not None:
            return self._new_slab_on_machine(self._pages, gfp, cpu)
        if self._numa is not None:
            return self._new_slab_numa(self._numa, gfp, cpu, node)
        buddy = self._buddy
        order = self.order
        try:
            pfn = buddy.alloc_pages(order)
        except OutOfMemoryError:
            if self._rcu_pending:  # the grace period ends: those pages come back first
                self._rcu_barrier()
                return self._new_slab()
            if self.min_order >= order:
                raise
            order = self.min_order
            pfn = buddy.alloc_pages(order)  # raises OutOfMemoryError: nothing to undo
            self._stat[ORDER_FALLBACK] += 1
        slabs_made = self._slabs_made
        try:
            return self._setup_slab(pfn, order)
        except BaseException:
            self._slabs_made = slabs_made
            self._forget_pages(pfn, order)
            buddy.free_pages(pfn, order)
            raise

    def _new_slab_numa(self, numa: NodeLayout, gfp: int, cpu: int, node: int) -> Slab:
        if node < 0:
            node = self._cpu_node[cpu]
        order = self.order
        try:
            pfn = numa.alloc_pages(order, gfp, node)
        except OutOfMemoryError:
            if self._rcu_pending:  # the grace period ends: those pages come back first
                self._rcu_barrier()
                return self._new_slab_numa(numa, gfp, cpu, node)
            if self.min_order >= order:
                raise
            order = self.min_order
            pfn = numa.alloc_pages(order, gfp, node)
            self._stat[ORDER_FALLBACK] += 1
        slabs_made = self._slabs_made
        try:
            slab = self._setup_slab(pfn, order)
        except BaseException:
            self._slabs_made = slabs_made
            self._forget_pages(pfn, order)
            self._buddy.free_pages(pfn, order)
            raise
        slab.node = numa.node_of_pfn(pfn)
        return slab

    def _new_slab_on_machine(self, pages: MachinePages, gfp: int, cpu: int) -> Slab:
        try:
            pfn, order = new_slab_pages(pages, gfp, self.flags, self.order, self.min_order, cpu)
        except OutOfMemoryError:
            if self._rcu_pending:  # the grace period ends: those pages come back first
                self._rcu_barrier()
                return self._new_slab_on_machine(pages, gfp, cpu)
            raise
        if order != self.order:
            self._stat[ORDER_FALLBACK] += 1
        slabs_made = self._slabs_made
        try:
            return self._setup_slab(pfn, order)
        except BaseException:
            self._slabs_made = slabs_made
            self._forget_pages(pfn, order)
            pages.free_pages(pfn, order, cpu)
            raise

    def _free_slab_pages(self, pfn: int, order: int, cpu: int = 0) -> None:
        """A discarded slab's block back to its page source; a machine's frees it on ``cpu``,
        the CPU doing the free or flush that discarded the slab (__free_pages: that CPU's
        pcp list)."""
        if self._pages is not None:
            self._pages.free_pages(pfn, order, cpu)
        else:
            self._buddy.free_pages(pfn, order)

    @staticmethod
    def _reserve_rights(gfp: int) -> bool:
        """gfp_pfmemalloc_allowed: may this allocation use the memory reserves?"""
        return bool(gfp_pfmemalloc_flags(gfp))

    def _colour_offset(self, slab_bytes: int, objects: int) -> int:
        """Bytes before the first object slot: 0 under SLUB, the next colour under classic."""
        return 0

    def _setup_slab(self, pfn: int, order: int) -> Slab:
        nr_pages = 1 << order
        slab_bytes = self._page_size << order
        objects = slab_bytes // self.size
        colour = self._colour_offset(slab_bytes, objects)
        start = pfn << self._page_shift
        slab = Slab(pfn, order, start, start + colour + self.red_left_pad, objects, colour)
        slab.serial = self._slabs_made
        self._slabs_made += 1
        if self._page_is_pfmemalloc is not None:
            slab.pfmemalloc = bool(self._page_is_pfmemalloc(pfn))
        self._owner[pfn : pfn + nr_pages] = array("I", [self.id]) * nr_pages
        for page in range(pfn, pfn + nr_pages):
            self._slab_of_pfn[page] = slab
        ctor = self.ctor
        debug = self._debug
        if ctor is not None:
            self._construct(slab, objects, ctor)
        elif debug is not None:
            for index in range(objects):
                debug.init_free(slab.base + index * self.size)
        return slab

    def _construct(self, slab: Slab, objects: int, ctor: Constructor) -> None:
        """Run the constructor on every object of a new slab, with the cache guarded against
        it: a ctor that calls back into this cache (alloc, free, kfree of one of its objects,
        a report) gets a ConstructorReentryError instead of a deadlock on the cache lock."""
        lock = self._lock
        guard = _ConstructorGuard(self, lock)
        alloc, free = self.__dict__.get("alloc"), self.__dict__.get("free")
        saved = (self._lock_acquire, alloc, free)

        real_alloc: Callable[[int, int], int] = alloc or type(self).alloc.__get__(self)
        real_free: Callable[[int, int], None] = free or type(self).free.__get__(self)

        def guarded_alloc(cpu: int = 0, gfp: int = GFP_KERNEL) -> int:
            guard.check()
            return real_alloc(cpu, gfp)

        def guarded_free(address: int, cpu: int = 0) -> None:
            guard.check()
            real_free(address, cpu)

        self._lock = guard
        self._lock_acquire = guard.acquire  # type: ignore[assignment]
        self.alloc = guarded_alloc  # type: ignore[method-assign]
        self.free = guarded_free  # type: ignore[method-assign]
        slot = self.frees_slot
        # (None only before a SlabAllocator registers the cache, and no slab is built then)
        if slot is not None:  # pragma: no branch
            slot[0][slot[1]] = guarded_free
        try:
            memory = self._memory
            debug = self._debug
            size = self.size
            for index in range(objects):
                address = slab.base + index * size
                if debug is not None:
                    debug.init_free(address)
                ctor(memory.view(address, self.object_size))
        finally:
            self._lock = lock
            self._lock_acquire = saved[0]
            for name, method in (("alloc", saved[1]), ("free", saved[2])):
                if method is None:
                    self.__dict__.pop(name, None)
                else:
                    setattr(self, name, method)
            if slot is not None:  # pragma: no branch
                slot[0][slot[1]] = self.free

    def _forget_pages(self, pfn: int, order: int) -> None:
        self._owner[pfn : pfn + (1 << order)] = array("I", [0]) * (1 << order)
        for page in range(pfn, pfn + (1 << order)):
            self._slab_of_pfn.pop(page, None)

    def _discard_slab(self, slab: Slab, *, counted: bool = True, cpu: int = 0) -> None:
        """Give an empty slab's pages back to the buddy allocator (Linux: discard_slab) on
        ``cpu``, the CPU discarding it, and count FREE_SLAB unless ``counted`` is false (SLUB's
        shrink frees without counting).

        Under SLAB_TYPESAFE_BY_RCU the pages are only given back by rcu_barrier() (Linux frees
        them from an RCU callback, on the CPU that queued it: ``slab.cpu`` keeps it);
        meanwhile they stay this cache's, on no list.
        """
        if counted:
            self._stat[FREE_SLAB] += 1
        if self.typesafe_by_rcu:
            for page in range(slab.pfn, slab.pfn + (1 << slab.order)):
                del self._slab_of_pfn[page]
            slab.where = ON_RCU
            slab.cpu = cpu
            self._rcu_pending.append(slab)
            return
        self._forget_pages(slab.pfn, slab.order)
        self._free_slab_pages(slab.pfn, slab.order, cpu)

    def rcu_barrier(self) -> int:
        """End the RCU grace period: give the slabs discarded since back; return how many."""
        with self._lock:
            return self._rcu_barrier()

    def _rcu_barrier(self) -> int:
        pending = self._rcu_pending
        for slab in pending:
            self._forget_pages(slab.pfn, slab.order)
            self._free_slab_pages(slab.pfn, slab.order, slab.cpu)
        count = len(pending)
        pending.clear()
        self._changes += count
        return count

    def pages_held(self) -> int:
        """Pages this cache holds: its slabs' and those waiting for an RCU grace period."""
        with self._lock:
            return len(self._slab_of_pfn) + sum(1 << s.order for s in self._rcu_pending)

    # -- lookups and errors (slow paths: they only read state) ----------------------------------

    def _plain_cpu(self, cpu: object) -> int:
        """The cpu a fast path refused, as a plain int: an int subclass that is not a bool (an
        IntEnum) names the CPU of its value, as kmalloc takes it; anything else raises."""
        if isinstance(cpu, int) and not isinstance(cpu, bool) and 0 <= cpu < self.nr_cpus:
            return int(cpu)
        raise self._check_cpu(cpu)

    def _free_other(self, address: object, cpu: object) -> None:
        """A free its fast path refused (the lock held): with an int-subclass cpu, the free on
        that CPU; else the specific error, nothing changed."""
        if cpu.__class__ is not int and isinstance(cpu, int) and not isinstance(cpu, bool):
            return self._free_unlocked(address, int(cpu))  # type: ignore[arg-type]
        raise self._bad_free_on(address, cpu) from None

    def _check_cpu(self, cpu: object) -> KmemError:
        if isinstance(cpu, bool) or not isinstance(cpu, int):
            return InvalidTypeError(f"cpu must be an int, not {type(cpu).__name__}")
        return InvalidCpuError(f"cpu {cpu} is not in 0..{self.nr_cpus - 1}")

    def _bad_free_on(self, address: object, cpu: object) -> KmemError:
        """The error for a free of ``address`` on ``cpu``: a destroyed cache first, then the
        cpu, then the address."""
        if self.destroyed:
            return self._destroyed_free(address)
        if not isinstance(cpu, int) or isinstance(cpu, bool) or not 0 <= cpu < self.nr_cpus:
            return self._check_cpu(cpu)
        return self._bad_free(address)

    def _destroyed_free(self, address: object) -> KmemError:
        shown = f"{address:#x}" if isinstance(address, int) and not isinstance(
            address, bool) else repr(address)
        return FreeToDestroyedCacheError(
            f"cache {self.name!r} was destroyed: {shown} is no object of it")

    def _bad_free(self, address: object) -> KmemError:
        """The specific error for freeing ``address`` to this cache, or a CacheDestroyedError."""
        if self.destroyed:
            return CacheDestroyedError(f"cache {self.name!r} was destroyed")
        if address.__class__ is not int:  # addresses are plain ints, as alloc returns them
            return InvalidTypeError(f"address must be an int, not {type(address).__name__}")
        pfn = address >> self._page_shift
        slab = self._slab_of_pfn.get(pfn) if address >= 0 else None
        if slab is None:
            if any(s.pfn <= pfn < s.pfn + (1 << s.order) for s in self._rcu_pending):
                return NotAnObjectError(
                    f"address {address:#x} is in a slab of {self.name!r} that was discarded"
                    " (its pages wait for an RCU grace period)"
                )
            if 0 <= pfn < len(self._owner) and address >= 0 and self._owner[pfn]:
                return WrongCacheError(
                    f"object {address:#x} belongs to another cache (id {self._owner[pfn]}),"
                    f" not {self.name!r}"
                )
            return NotAnObjectError(f"address {address:#x} is not in a slab of {self.name!r}")
        offset = address - slab.base
        index, rest = divmod(offset, self.size)
        if offset < 0 or rest or index >= slab.objects:
            return InteriorPointerError(
                f"address {address:#x} is not the start of an object of {self.name!r}"
                f" (slab at pfn {slab.pfn:#x}, objects every {self.size} bytes from"
                f" {slab.base:#x})"
            )
        return ObjectDoubleFreeError(
            f"object {address:#x} of {self.name!r} is already free"
        )

    def _slab_of(self, address: int) -> tuple[Slab, int]:
        """The slab and index of the allocated object at ``address``, or the specific error."""
        if address.__class__ is int:
            slab = self._slab_of_pfn.get(address >> self._page_shift)
            if slab is not None:
                offset = address - slab.base
                index = offset // self.size
                if offset >= 0 and index * self.size == offset and index < slab.objects and (
                    slab.used[index] == 1
                ):
                    return slab, index
        raise self._bad_free(address)

    def view(self, address: int) -> memoryview:
        """The ``object_size`` bytes of the allocated object at ``address``, writable."""
        with self._lock:
            self._slab_of(address)
        return self._memory.view(address, self.object_size)

    def owns(self, address: int) -> bool:
        """Is ``address`` an allocated object of this cache?"""
        with self._lock:
            try:
                self._slab_of(address)
            except KmemError:
                return False
            return True

    def _slabs(self) -> list[Slab]:
        """Every slab of the cache, once each, by ascending pfn."""
        # (a set of the page map's values, at C speed: a Slab hashes by identity; the pfns are
        # distinct, so the order is the pfns' whatever the set's)
        return sorted(set(self._slab_of_pfn.values()), key=_SLAB_PFN)

    def slab_extents(self) -> list[tuple[int, int]]:
        """(head pfn, order) of every slab of the cache, by ascending pfn."""
        with self._lock:
            return [(slab.pfn, slab.order) for slab in self._slabs()]

    def live_objects(self) -> list[LiveObject]:
        """Every allocated object, by address."""
        with self._lock:
            return self._live_objects()

    def _live_objects(self) -> list[LiveObject]:
        out = []
        for slab in self._slabs():
            used = slab.used
            index = used.find(1)
            while index >= 0:
                address = slab.base + index * self.size
                track = self._debug.track(address, 0) if self._debug is not None else None
                out.append(LiveObject(address, slab.pfn, index,
                                      track.caller if track is not None else None))
                index = used.find(1, index + 1)
        return out

    def slab_usage(self) -> list[tuple[int, int, int, bytes]]:
        """(head pfn, objects a user holds, address of object 0, used) of every slab, by
        ascending pfn: ``used`` has a byte per object, 0 free, 1 a user's (the objects
        live_objects() lists), 2 waiting in a sheaf, 3 waiting for kfree_rcu's grace period.
        The per-slab view of live_objects() at the cost of the slabs, not of the objects."""
        with self._lock:
            core = self._buddy.compiled_core
            if core is not None:  # (the same rows from C: kmem html reads them every frame;
                # the map's slabs taken once each and sorted there too)
                rows = core.slab_usage(self._slab_of_pfn, self._usage_seen)
                if rows is not NotImplemented:
                    self._usage_seen = rows
                    return rows  # type: ignore[no-any-return]
            return [(slab.pfn, slab.used.count(1), slab.base, bytes(slab.used))
                    for slab in self._slabs()]

    def change_count(self) -> int:
        """A number that moves whenever anything slab_usage(), kmalloc_requests(), sheaves()
        or object_size say about this cache changes (and may move when nothing did), never
        back: the sum of the counters both cores keep on every path that changes a slab or a
        sheaf (an alloc or free, fast or slow, a slab made or discarded, a list move, a sheaf
        filled or flushed...), plus the changes no counter follows. A reader of many caches
        (the page builder of kmem html, frame after frame) re-reads only those whose number
        moved. (Unlocked: a reader racing an alloc sees the number before or after it.)"""
        fast = self._fast
        return self._changes + sum(self._stat) + fast[0] + fast[1]

    def count_kmalloc_requests(self, requests: Sequence[int], sizes: range) -> None:
        """Make this a kmalloc cache's stats: ``requests[n]`` counts the kmalloc calls of n
        bytes (the allocator's histogram), ``sizes`` are the request sizes this cache serves."""
        self._kmalloc_requests = requests
        self._kmalloc_sizes = sizes

    def kmalloc_requests(self) -> tuple[int, int, int]:
        """(kmalloc calls served, bytes requested, bytes allocated) since boot; zeros for a
        cache that is not kmalloc's."""
        requests = self._kmalloc_requests
        if requests is None:
            return 0, 0, 0
        sizes = self._kmalloc_sizes
        counts = requests[sizes.start:sizes.stop]
        seen = self._requests_seen
        if seen is not None and seen[1] == sizes and seen[0] == counts:
            # (the same counts: a memcmp of the histogram's array, not the sums again; kmem
            # html asks every frame of each kmalloc cache that changed)
            calls, requested = seen[2]
        else:
            calls = sum(counts)
            # (at C speed: kmalloc-8k's sizes are 4,096 entries)
            requested = sum(map(operator.mul, sizes,
                                requests[sizes.start:sizes.stop:sizes.step]))
            self._requests_seen = (counts, sizes, (calls, requested))
        return calls, requested, calls * self.size

    # -- reports -------------------------------------------------------------------------------

    def slabinfo(self) -> SlabInfo:
        """This cache's /proc/slabinfo numbers."""
        with self._lock:
            slabs = self._slabs()
            num_objs = sum(s.objects for s in slabs)
            limit, batch, shared = self._tunables()
            return SlabInfo(
                name=self.name,
                active_objs=self._active_objs(),
                num_objs=num_objs,
                objsize=self.size,
                objperslab=self.objs_per_slab,
                pagesperslab=1 << self.order,
                limit=limit,
                batchcount=batch,
                sharedfactor=shared,
                active_slabs=self._active_slabs(),
                num_slabs=len(slabs),
                sharedavail=0,
            )

    def stats(self) -> CacheStats:
        """The cache's counters and slab census, as a frozen snapshot."""
        with self._lock:
            slabs = self._slabs()
            where = [0] * len(WHERE_NAMES)
            for slab in slabs:
                where[slab.where] += 1
            _, requested, allocated = self.kmalloc_requests()
            counters = dict(zip(STAT_NAMES, self._stat, strict=True))
            counters["alloc_fastpath"] += self._fast[0]
            counters["free_fastpath"] += self._fast[1]
            self._add_sheaf_counters(counters)
            return CacheStats(
                name=self.name,
                policy=self.policy,
                objects=sum(s.inuse for s in slabs),
                total_objects=sum(s.objects for s in slabs),
                slabs=len(slabs),
                partial_slabs=where[ON_NODE_PARTIAL],
                cpu_slabs=where[ON_CPU],
                cpu_partial_slabs=where[ON_CPU_PARTIAL],
                full_slabs=where[ON_FULL] + where[ON_NONE],
                empty_slabs=sum(1 for s in slabs if s.inuse == 0),
                bytes_requested=requested,
                bytes_allocated=allocated,
                **counters,
            )

    def kfree_rcu(self, address: int, cpu: int,
                  call_rcu: Callable[[Callable[[], None]], None]) -> None:
        """kfree_rcu of an allocated object: it stays allocated, marked RCU_PENDING, until the
        grace period's callback frees it on ``cpu``. Bad input raises, nothing changed."""
        with self._lock:
            if cpu.__class__ is not int or not 0 <= cpu < self.nr_cpus:
                cpu = self._plain_cpu(cpu)
            slab, index = self._slab_of(address)
            self._kfree_rcu_locked(slab, index, address, cpu, call_rcu)

    def _kfree_rcu_locked(self, slab: Slab, index: int, address: int, cpu: int,
                          call_rcu: Callable[[Callable[[], None]], None]) -> None:
        slab.used[index] = RCU_PENDING
        self._changes += 1

        def callback() -> None:
            with self._lock:
                slab.used[index] = 1
                self._changes += 1
            self.free(address, cpu)

        call_rcu(callback)

    def _add_sheaf_counters(self, counters: dict[str, int]) -> None:
        """Caches with sheaves add their census and counters (kmem.slab.slub_sheaves)."""

    @property
    def is_kmalloc(self) -> bool:
        return bool(self.flags & SLAB_KMALLOC)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r} object_size={self.object_size}"
                f" slab_size={self.size} objs_per_slab={self.objs_per_slab} order={self.order}>")

    # -- invariants ----------------------------------------------------------------------------

    def check(self) -> None:
        """Verify every invariant of the cache, its slabs and their pages."""
        with self._lock:
            self._check_common()
            self._check_lists()

    def _check_common(self) -> None:
        owner = self._owner
        slabs = self._slabs()
        for slab in slabs:
            name = f"{self.name}: slab at pfn {slab.pfn:#x}"
            for page in range(slab.pfn, slab.pfn + (1 << slab.order)):
                if owner[page] != self.id:
                    raise AssertionError(f"{name}: page {page:#x} owner is {owner[page]}")
                if self._slab_of_pfn.get(page) is not slab:
                    raise AssertionError(f"{name}: page {page:#x} does not map to the slab")
            if not self._held(slab):
                raise AssertionError(f"{name}: the buddy allocator does not hold it allocated")
            if slab.objects != (self._page_size << slab.order) // self.size:
                raise AssertionError(f"{name}: holds {slab.objects} objects")
            if slab.base + slab.objects * self.size - self.red_left_pad > (
                slab.start + (self._page_size << slab.order)
            ):
                raise AssertionError(f"{name}: objects overflow the slab")
            free = list(slab.freelist) + list(slab.remote)
            if len(set(free)) != len(free):
                raise AssertionError(f"{name}: an object is twice on the freelist")
            for index in free:
                if index >= slab.objects or slab.used[index]:
                    raise AssertionError(f"{name}: free object {index} is marked used")
            if slab.used.count(0) != len(free):  # used: 1 a user's, 2 in a sheaf, 3 kfree_rcu'd
                raise AssertionError(f"{name}: used + free != objects")
            if slab.remote and slab.where != ON_CPU:
                raise AssertionError(f"{name}: remote frees on a slab that is not a cpu slab")
            if self._debug is not None:
                self._debug.check_slab(slab, self.size)
        if len(self._slab_of_pfn) != sum(1 << s.order for s in slabs):
            raise AssertionError(f"{self.name}: page map holds stray pages")
        for slab in self._rcu_pending:
            name = f"{self.name}: RCU-pending slab at pfn {slab.pfn:#x}"
            if slab.where != ON_RCU or slab.inuse or not self.typesafe_by_rcu:
                raise AssertionError(f"{name} is not an empty slab of an RCU cache")
            if not self._held(slab) or any(
                owner[p] != self.id for p in range(slab.pfn, slab.pfn + (1 << slab.order))
            ):
                raise AssertionError(f"{name}: its pages are not held for the cache")

    def _held(self, slab: Slab) -> bool:
        """Does the buddy allocator hold the slab's pages as one allocated block?"""
        return self._buddy.block_at(slab.pfn) == Block(slab.pfn, slab.order, "allocated")

    def _check_lists(self) -> None:
        raise NotImplementedError

    def _check_nodes(self) -> None:
        """Every slab's node is its first page's, and every node partial slab is on its
        node's list (SLUB caches: ``_nodes``)."""
        numa = self._numa
        nodes: list[object] = getattr(self, "_nodes", [])
        for slab in self._slabs():
            node = 0 if numa is None else numa.node_of_pfn(slab.pfn)
            if slab.node != node:
                raise AssertionError(f"{self.name}: slab at pfn {slab.pfn:#x} says node"
                                     f" {slab.node}, its pages are on node {node}")
        if nodes and len(nodes) != self.nr_nodes:
            raise AssertionError(f"{self.name}: {len(nodes)} node lists for {self.nr_nodes}"
                                 " nodes")
        for nid, partial in enumerate(nodes):
            for slab in partial:  # type: ignore[attr-defined]
                if slab.node != nid or slab.where != ON_NODE_PARTIAL:
                    raise AssertionError(f"{self.name}: slab at pfn {slab.pfn:#x} of node"
                                         f" {slab.node} is on node {nid}'s partial list")

