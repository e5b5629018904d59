"""SlabAllocator: slab caches and kmalloc on a buddy allocator, as Linux 6.x runs them.

Public API (stable; the trace replay and the visualisation drive it)::

    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, policy="slub")  # or "slab"
    # thread_safe=False: no cache locks, for single-threaded callers
    # machine=PageMachine(...): slab pages also from a page machine, with the allocation's
    # gfp flags (watermarks, memory reserves, pfmemalloc slabs: kmem.slab.machine_pages)
    # nr_nodes=N: N NUMA nodes (kmem.slab.numa): per-node partial lists and barns
    cache.alloc_node(cpu, gfp, node); slab.kmem_cache_alloc_node(cache, gfp, node, cpu)
    slab.kmalloc_node(size, gfp, node, cpu); slab.node_of(addr)
    cache = slab.kmem_cache_create(name, size, align=0, flags=0, ctor=None,
                                   useroffset=0, usersize=0, freeptr_offset=None)
    addr = cache.alloc(cpu=0)          # byte address; OutOfMemoryError when no page
    cache.view(addr)                   # memoryview of the object's object_size bytes
    cache.free(addr, cpu=0)
    cache.shrink()                     # empty slabs back to the buddy allocator
    slab.kmem_cache_destroy(cache)     # CacheNotEmptyError (with .leaks) if objects live
    p = slab.kmalloc(size, gfp=GFP_KERNEL, cpu=0); slab.ksize(p); slab.kfree(p, cpu=0)
    slab.kzalloc(size), slab.kcalloc(n, size), slab.krealloc(p, new_size)
    slab.caches["kmalloc-96"]          # every cache by name (aliases too), kmalloc included
    slab.cache_of(addr)                # the cache of an object address (None: large kmalloc)
    slab.slabinfo()                    # /proc/slabinfo version 2.1, exactly
    slab.stats()                       # CacheStats (frozen) of every cache, by name
    slab.shrink(); slab.synchronize_rcu()   # empty slabs / RCU-deferred slabs back to buddy
    slab.slab_pages()                  # (head pfn, cache name) of every slab
    slab.check()                       # every invariant of every cache, slab and page

Caches carry /sys/kernel/slab/<cache>/ names and values: object_size, slab_size, align,
objs_per_slab, order, min_partial, cpu_partial (kmem.slab.geometry computes them as Linux).

Policies: ``slub`` (kmem.slab.slub: cpu slabs, cpu partial and node partial lists, Linux 6.x) and
``slab`` (kmem.slab.classic: full, partial and empty lists with colouring, Bonwick 1994). Both
share kmem.slab.cache (slabs, addressing, errors) and kmem.slab.debug (red zones, poison,
caller tracking). kmalloc lives in kmem.slab.kmalloc.

Boot: like Linux's create_kmalloc_caches, the allocator creates the kmalloc caches first
(kmalloc-96, -192, -8 .. -8k, then the -rcl, dma- and -cg families), so /proc/slabinfo, which
lists the newest cache first, ends with kmalloc-96 as on a real machine.

Merging (Linux find_mergeable): a new cache without ctor, usersize or a never-merge flag
reuses the oldest existing mergeable cache of the same SLAB_MERGE_SAME flags whose slot size
fits the new object within 8 bytes and is aligned as asked; the new name becomes an alias
(``cache.aliases``, and ``caches[name]`` is the same object), as /sys/kernel/slab's symlinks.

Threads: each cache has its own lock, taken by alloc and free; creation, destruction and large
kmalloc take the allocator's lock; the buddy allocator has its own. ``thread_safe=False`` drops
the caches' locks for single-threaded use (a replay, a benchmark): on CPython an uncontended
lock costs about as much as the whole allocation fast path.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NoReturn

from kmem.errors import InvalidArgumentError, InvalidTypeError
from kmem.page.buddy import BuddyAllocator
from kmem.page.errors import MemoryClosedError
from kmem.page.gfp import __GFP_ZERO as GFP_ZERO_FLAG, GFP_KERNEL
from kmem.slab.cache import Constructor, KmemCache
from kmem.slab.classic import ClassicSlabCache
from kmem.slab.errors import CacheNotEmptyError, KmallocCacheDestroyError, SlabPageSizeError
from kmem.slab.flags import (
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_DEBUG_FLAGS,
    SLAB_KMALLOC,
    SLAB_NO_MERGE,
    SLAB_NO_OBJ_EXT,
    SLAB_NOLEAKTRACE,
    SLAB_RECLAIM_ACCOUNT,
)
from kmem.slab.geometry import MAX_OBJS_PER_PAGE, CacheGeometry, calculate_geometry
from kmem.slab.kmalloc import KMALLOC_LARGE_OWNER, KmallocFrontEnd
from kmem.slab.kmalloc_sizes import (
    KMALLOC_CLASS_BY_SIZE,
    KMALLOC_MIN_SIZE,
)
from kmem.slab.machine_pages import MachinePages
from kmem.slab.merge import find_mergeable
from kmem.slab.numa import (
    NUMA_NO_NODE,
    NodeLayout,
    check_node_count,
    check_nr_nodes,
)
from kmem.slab.sheaves import (
    DEFAULT_KERNEL,
    SheafCapacityError,
    SheafHost,
    calculate_sheaf_capacity,
    check_kernel,
    check_sheaf_capacity,
    sheaf_size,
)
from kmem.slab.slub import SlubCache, SlubDebugCache
from kmem.slab.slub_sheaves import PercpuSheavesCache, SheafSlubCache, Slub7Cache
from kmem.slab.stats import CacheStats, LiveObject

if TYPE_CHECKING:
    from kmem.page.machine import PageMachine

POLICIES: Final = ("slub", "slab")


class CacheExistsError(InvalidArgumentError):
    """kmem_cache_create() with the name of an existing cache."""


class SlabAllocator(KmallocFrontEnd):
    """Slab caches and kmalloc over ``buddy``, for ``nr_cpus`` simulated CPUs."""

    def __init__(self, buddy: BuddyAllocator, nr_cpus: int = 2, policy: str = "slub", *,
                 thread_safe: bool = True, kernel: str = DEFAULT_KERNEL,
                 random_kmalloc_seed: int | None = None,
                 machine: PageMachine | None = None, nr_nodes: int = 1) -> None:
        if not isinstance(buddy, BuddyAllocator):
            raise InvalidTypeError(f"buddy must be a BuddyAllocator, not {type(buddy).__name__}")
        if machine is not None:
            from kmem.page.machine import PageMachine

            if not isinstance(machine, PageMachine):
                raise InvalidTypeError(
                    f"machine must be a PageMachine or None, not {type(machine).__name__}")
            from kmem.page.layout import PAGE_SIZE

            if buddy.page_size != PAGE_SIZE:
                raise InvalidArgumentError(
                    f"a page machine has pages of {PAGE_SIZE} bytes, the buddy allocator of"
                    f" {buddy.page_size}: a slab block must be the same size in both")
        if buddy.memory.closed:
            raise MemoryClosedError("cannot build a slab allocator: the physical memory was closed")
        if buddy.page_size // KMALLOC_MIN_SIZE > MAX_OBJS_PER_PAGE:
            # Linux's calculate_order returns -1 for kmalloc-8 there: the boot cache fails.
            raise SlabPageSizeError(
                f"pages of {buddy.page_size} bytes are too large for slabs: one would hold"
                f" {buddy.page_size // KMALLOC_MIN_SIZE} objects of kmalloc-{KMALLOC_MIN_SIZE},"
                f" more than MAX_OBJS_PER_PAGE ({MAX_OBJS_PER_PAGE}): pages of at most 128 KiB"
            )
        if isinstance(nr_cpus, bool) or not isinstance(nr_cpus, int):
            raise InvalidTypeError(f"nr_cpus must be an int, not {type(nr_cpus).__name__}")
        if not 1 <= nr_cpus <= 4096:
            raise InvalidArgumentError(f"nr_cpus must be in 1..4096, got {nr_cpus}")
        if policy not in POLICIES:
            raise InvalidArgumentError(f"policy must be 'slub' or 'slab', got {policy!r}")
        nr_nodes = check_nr_nodes(nr_nodes, nr_cpus, buddy)
        if machine is not None:
            check_node_count(nr_nodes, "a page machine (--slab-on-machine)")
        if policy == "slab":
            check_node_count(nr_nodes, "the slab policy")
        check_kernel(kernel)
        if random_kmalloc_seed is not None and (
            isinstance(random_kmalloc_seed, bool) or not isinstance(random_kmalloc_seed, int)
        ):
            raise InvalidTypeError("random_kmalloc_seed must be an int or None, not"
                                   f" {type(random_kmalloc_seed).__name__}")
        if random_kmalloc_seed is not None and not 0 <= random_kmalloc_seed < 1 << 64:
            raise InvalidArgumentError(
                f"random_kmalloc_seed must be a u64, got {random_kmalloc_seed}")
        self.buddy = buddy
        # With a page machine, every slab and large kmalloc block of the buddy allocator is
        # backed by a machine block taken with the allocation's gfp flags: watermarks, reserves
        # and pfmemalloc slabs (kmem.slab.machine_pages). None: the buddy allocator alone.
        self.machine: Final = machine
        self.pages = None if machine is None else MachinePages(buddy, machine)
        self.nr_cpus = nr_cpus
        # NUMA nodes (kmem.slab.numa): CPUs and memory split into nr_nodes nodes; one node
        # (None) leaves every path as it was
        self.nr_nodes = nr_nodes
        self.numa = None if nr_nodes == 1 else NodeLayout(buddy, nr_cpus, nr_nodes)
        self.policy: Final = policy
        self.thread_safe: Final = bool(thread_safe)
        self.caches: dict[str, KmemCache] = {}
        self._by_id: dict[int, KmemCache] = {}
        self._cache_list: list[KmemCache] = []  # creation order, one entry per real cache
        self._next_id = 1
        # cache id -> its free (None: no cache, or destroyed), for kfree and the compiled core
        self._frees_by_id: list[Callable[[int, int], None] | None] = [None]
        self._lock = threading.RLock()
        self._callers: list[str] = []  # STORE_USER caller names, shared by the debug caches
        # The Linux version modelled: "6.17" (cpu slabs only), "6.18" (sheaves where asked
        # for), "7.0" (sheaves everywhere, no cpu slabs). Only the slub policy has versions.
        self.kernel: Final = kernel
        # call_rcu: callbacks run at the next synchronize_rcu() (a grace period), in order.
        self._rcu_callbacks: list[Callable[[], None]] = []
        self._sheaf_host = SheafHost(
            self.kzalloc, self.kfree, self._rcu_callbacks.append,
            None if self.numa is None else self._kzalloc_node)
        self._boot_kmalloc(self._create_kmalloc_cache, random_kmalloc_seed)
        if kernel == "7.0" and policy == "slub":
            self._bootstrap_kmalloc_sheaves()
        self._use_compiled_kmalloc()
        buddy.memory.on_close(self._memory_closed)

    def _kzalloc_node(self, size: int, gfp: int, node: int, cpu: int, caller: int) -> int:
        """kzalloc_node (a barn on its node)."""
        return self.kmalloc_node(size, gfp | _GFP_ZERO, node, cpu, caller)

    def _memory_closed(self) -> None:
        """The physical memory closed: kmalloc and kfree, and every call that would give pages
        back (destroy, shrink, the RCU grace periods), refuse before anything changes."""
        self._kmalloc_memory_closed()

        def refuse(*args: object, **kwargs: object) -> NoReturn:
            raise MemoryClosedError("cannot change the slab allocator: the physical memory was"
                                    " closed")

        for name in ("kmem_cache_destroy", "shrink", "synchronize_rcu", "kvfree_rcu_barrier",
                     "kfree_rcu"):
            setattr(self, name, refuse)

    # -- cache creation and destruction --------------------------------------------------------

    def _create_kmalloc_cache(self, name: str, size: int, flags: int) -> KmemCache:
        # kmalloc caches are usercopy-whole (usersize = size), which also forbids merging.
        geometry = calculate_geometry(size, flags=flags | SLAB_KMALLOC, nr_cpus=self.nr_cpus,
                                      page_size=self.buddy.page_size, is_kmalloc=True,
                                      usersize=size)
        return self._register(name, geometry, None, boot=True)

    def _bootstrap_kmalloc_sheaves(self) -> None:
        """7.0: sheaves for the kmalloc caches once they all exist -- the -rcl, dma- and -cg
        families first (Linux gives them sheaves at creation, from normal caches that have
        none yet), then the normal family and its random copies (bootstrap_kmalloc_sheaves)."""
        kmalloc = [c for c in self._cache_list if isinstance(c, Slub7Cache)]
        normal = [c for c in kmalloc if not c.flags & _NOT_NORMAL_CACHE]
        for cache in [c for c in kmalloc if c.flags & _NOT_NORMAL_CACHE] + normal:
            cache.enable_sheaves(self._sheaf_capacity_7(cache.geometry, 0))

    def _sheaf_capacity_7(self, geometry: CacheGeometry, requested: int) -> int:
        """calculate_sheaf_capacity of Linux 7.0 for a cache of this geometry."""
        if geometry.flags & (SLAB_DEBUG_FLAGS | SLAB_NO_OBJ_EXT | SLAB_NOLEAKTRACE):
            return 0
        return calculate_sheaf_capacity(geometry.size, requested, self.buddy.page_size,
                                        _kmalloc_size_roundup)

    def kmem_cache_create(
        self,
        name: str,
        size: int,
        align: int = 0,
        flags: int = 0,
        ctor: Constructor | None = None,
        *,
        useroffset: int = 0,
        usersize: int = 0,
        freeptr_offset: int | None = None,
        sheaf_capacity: int = 0,
    ) -> KmemCache:
        """Create a cache of ``size``-byte objects (Linux kmem_cache_create with its args).

        Returns the new cache, or an existing one this one merges into (its alias).
        ``sheaf_capacity`` (6.18 and later) asks for per-CPU sheaves of that many objects; such
        a cache is never merged. 7.0 gives every cache sheaves, at least this many.
        """
        sheaf_capacity = check_sheaf_capacity(sheaf_capacity)
        if sheaf_capacity and (self.policy == "slab" or self.kernel == "6.17"):
            raise SheafCapacityError(
                f"sheaf_capacity needs SLUB of Linux 6.18 or later, not {self.policy}"
                f" {self.kernel}")
        if sheaf_capacity:  # 6.18 skips the merge; 7.0 sets SLAB_NO_MERGE: the same effect
            flags |= SLAB_NO_MERGE
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise InvalidArgumentError(f"cache name must be a non-empty word, got {name!r}")
        if self.buddy.memory.closed:
            raise MemoryClosedError(f"cannot create cache {name!r}: the physical memory was closed")
        if ctor is not None and not callable(ctor):
            raise InvalidTypeError(f"ctor must be callable, not {type(ctor).__name__}")
        geometry = calculate_geometry(
            size, align=align, flags=flags, has_ctor=ctor is not None, nr_cpus=self.nr_cpus,
            page_size=self.buddy.page_size, useroffset=useroffset, usersize=usersize,
            freeptr_offset=freeptr_offset,
        )
        with self._lock:
            if name in self.caches:
                raise CacheExistsError(f"a cache named {name!r} already exists")
            target = self._find_mergeable(size, align, flags, ctor is not None, usersize)
            if target is not None:
                target.add_alias(name, size)
                self.caches[name] = target
                return target
            return self._register(name, geometry, ctor, sheaf_capacity=sheaf_capacity)

    def _find_mergeable(self, size: int, align: int, flags: int, has_ctor: bool,
                        usersize: int) -> KmemCache | None:
        """Linux find_mergeable (kmem.slab.merge): the oldest cache this one can share."""
        index = find_mergeable(size, [cache.geometry for cache in self._cache_list],
                               align=align, flags=flags, has_ctor=has_ctor, usersize=usersize)
        return None if index is None else self._cache_list[index]

    def _register(self, name: str, geometry: CacheGeometry, ctor: Constructor | None, *,
                  sheaf_capacity: int = 0, boot: bool = False) -> KmemCache:
        cache_class: type[KmemCache]
        capacity = 0
        if self.policy == "slab":
            cache_class = ClassicSlabCache
        elif geometry.flags & SLAB_DEBUG_FLAGS:  # every kernel: no sheaves, Linux's debug path
            cache_class = SlubDebugCache
        elif self.kernel == "7.0":
            cache_class = Slub7Cache
            # no cpu partial lists: cpu_partial reads 0
            geometry = dataclasses.replace(geometry, cpu_partial=0, cpu_partial_slabs=0)
            capacity = 0 if boot else self._sheaf_capacity_7(geometry, sheaf_capacity)
        elif self.kernel == "6.18" and sheaf_capacity:
            cache_class = SheafSlubCache
            capacity = sheaf_capacity
        else:
            cache_class = SlubCache
        with self._lock:
            extra = ({"host": self._sheaf_host} if issubclass(cache_class, PercpuSheavesCache)
                     else {})
            cache = cache_class(cache_id=self._next_id, name=name, geometry=geometry,
                                buddy=self.buddy, nr_cpus=self.nr_cpus, ctor=ctor,
                                callers=self._callers, thread_safe=self.thread_safe,
                                pages=self.pages, numa=self.numa, **extra)
            if self.policy == "slub":
                cache.kernel = self.kernel
            if isinstance(cache, PercpuSheavesCache) and capacity:
                cache.enable_sheaves(capacity)  # OutOfMemoryError: nothing was registered
            self._next_id += 1
            self.caches[name] = cache
            self._by_id[cache.id] = cache
            self._frees_by_id.append(cache.free)  # at index cache.id: ids count up from 1
            cache.frees_slot = (self._frees_by_id, cache.id)
            self._cache_list.append(cache)
            return cache

    def kmem_cache_destroy(self, cache: KmemCache | str) -> None:
        """Destroy a cache (or drop one alias of a merged cache).

        Raises CacheNotEmptyError, listing the live objects in ``.leaks``, when objects are
        still allocated; the cache is then left exactly as it was.
        """
        with self._lock:
            if isinstance(cache, str):
                name = cache
                if name not in self.caches:
                    raise InvalidArgumentError(f"no cache named {name!r}")
                target = self.caches[name]
            elif isinstance(cache, KmemCache):
                target = cache
                if target.destroyed or self._by_id.get(target.id) is not target:
                    raise InvalidArgumentError(f"cache {target.name!r} is not in this allocator")
                name = target.aliases[-1] if target.aliases else target.name
            else:
                raise InvalidTypeError(f"expected a cache or a name, not {type(cache).__name__}")
            if target.is_kmalloc:
                raise KmallocCacheDestroyError(
                    f"{target.name!r} is a kmalloc cache: kmalloc serves its sizes from it, it"
                    " cannot be destroyed"
                )
            if target.refcount > 1:
                # A merged cache: drop this user's name; the cache lives on for the others
                # (keeping its first name in reports, as Linux keeps s->name).
                target.refcount -= 1
                if name in target.aliases:
                    target.aliases.remove(name)
                # (always: a name given was looked up there; a cache given drops its last
                # alias, registered, or its own name once it has none: its refcount counts them)
                if self.caches.get(name) is target:  # pragma: no branch
                    del self.caches[name]
                return
            if self._rcu_work_pending():
                self.kvfree_rcu_barrier()  # in-flight kfree_rcu()s may hold its objects
            if isinstance(target, PercpuSheavesCache):
                # The sheaves' teardown gives sheaf memory back through kfree, which takes the
                # lock itself: the check, the mark and the closing of the sheaf fast paths are
                # one lock hold (no allocation lands after it), the teardown after.
                with target._lock:
                    self._refuse_leaks(target, target._live_objects())
                    target.stop_sheaves()
                target.shrink()
                self._run_rcu_callbacks()  # the rcu_free sheaves the flush sent to RCU
                target.release_sheaves()
                target.rcu_barrier()
                target.shrink()  # (objects the rcu_free sheaves gave back after the first
                # shrink left slabs empty on the lists: those go back too)
            else:
                # One lock hold from the check for live objects to the last slab given back:
                # no allocation can land in between.
                target._lock_acquire()
                try:
                    self._refuse_leaks(target, target._live_objects())
                    target._teardown()
                    target.destroyed = True
                finally:
                    target._lock_release()
            target.refcount = 0
            for name in [n for n, c in self.caches.items() if c is target]:
                del self.caches[name]
            del self._by_id[target.id]
            self._frees_by_id[target.id] = None
            self._cache_list.remove(target)

    @staticmethod
    def _refuse_leaks(target: KmemCache, leaks: list[LiveObject]) -> None:
        if leaks:
            raise CacheNotEmptyError(
                f"cache {target.name!r} still has {len(leaks)} allocated object(s): "
                + ", ".join(f"{leak.address:#x}" + (f" (from {leak.caller})"
                                                    if leak.caller else "")
                            for leak in leaks[:8])
                + (" ..." if len(leaks) > 8 else ""),
                tuple(leaks),
            )

    # -- queries and reports -------------------------------------------------------------------

    def kmem_cache_alloc(self, cache: KmemCache, cpu: int = 0) -> int:
        """Linux's name for cache.alloc()."""
        return _as_cache(cache).alloc(cpu)

    def kmem_cache_alloc_node(self, cache: KmemCache, gfp: int = GFP_KERNEL,
                              node: int = NUMA_NO_NODE, cpu: int = 0) -> int:
        """kmem_cache_alloc_node: cache.alloc_node() with Linux's argument order."""
        return _as_cache(cache).alloc_node(cpu, gfp, node)

    def kmem_cache_free(self, cache: KmemCache, address: int, cpu: int = 0) -> None:
        """Linux's name for cache.free()."""
        _as_cache(cache).free(address, cpu)

    def node_of(self, address: int) -> int:
        """The NUMA node of the page holding ``address`` (page_to_nid; 0 with one node)."""
        if isinstance(address, bool) or not isinstance(address, int):
            raise InvalidTypeError(f"address must be an int, not {type(address).__name__}")
        if not 0 <= address < self.buddy.memory.size:
            raise InvalidArgumentError(f"address {address:#x} is not in the memory")
        return 0 if self.numa is None else self.numa.node_of_pfn(address >> self.buddy.page_shift)

    def cache_list(self) -> list[KmemCache]:
        """Every cache (aliases once), newest first as /proc/slabinfo lists them."""
        with self._lock:
            return self._cache_list[::-1]

    def slabinfo(self) -> str:
        """/proc/slabinfo version 2.1, exactly as Linux prints it."""
        from kmem.slab.report import format_slabinfo

        return format_slabinfo([cache.slabinfo() for cache in self.cache_list()])

    def stats(self) -> dict[str, CacheStats]:
        """Counters and slab census of every cache, by name (newest first)."""
        return {cache.name: cache.stats() for cache in self.cache_list()}

    def slab_pages(self) -> list[tuple[int, str]]:
        """(head pfn, cache name) of every slab of every cache, by pfn."""
        out: list[tuple[int, str]] = []
        for cache in self.cache_list():
            out.extend((pfn, cache.name) for pfn, _ in cache.slab_extents())
        return sorted(out)

    def live_objects(self) -> dict[str, list[LiveObject]]:
        """Allocated objects of every cache that has some, by cache name."""
        out = {}
        for cache in self.cache_list():
            live = cache.live_objects()
            if live:
                out[cache.name] = live
        return out

    def shrink(self) -> int:
        """Shrink every cache; return the number of slabs given back."""
        return sum(cache.shrink() for cache in self.cache_list())

    def synchronize_rcu(self) -> int:
        """An RCU grace period: the kfree_rcu()s and rcu sheaves queued so far are done, then
        every SLAB_TYPESAFE_BY_RCU cache's discarded slabs go back to the buddy allocator;
        return how many slabs."""
        self._run_rcu_callbacks()
        return sum(cache.rcu_barrier() for cache in self.cache_list())

    def kfree_rcu(self, address: int | None, cpu: int = 0) -> None:
        """Free ``address`` after the next RCU grace period (kvfree_call_rcu).

        A cache with sheaves batches it into the CPU's rcu_free sheaf (__kfree_rcu_sheaf);
        otherwise, or when that fails, the object waits on its own. A bad address raises the
        same specific error kfree would, with nothing changed."""
        cache = self._cache_by_owner(address)
        if cache is not None:
            cache.kfree_rcu(address, cpu, self._rcu_callbacks.append)  # type: ignore[arg-type]
            return
        self._check_cpu_arg(cpu)  # before the grace period, not in its callback
        if address is None or address == self.zero_size_ptr:
            return
        self.ksize(address)  # a large kmalloc block start, or the specific error
        self._rcu_callbacks.append(lambda: self.kfree(address, cpu))

    def kvfree_rcu_barrier(self) -> None:
        """Every kfree_rcu() so far completes: partly filled rcu sheaves are sent on
        (flush_all_rcu_sheaves) and every queued RCU callback runs."""
        for cache in self.cache_list():
            if isinstance(cache, PercpuSheavesCache):
                cache.flush_rcu_sheaves()
        self._run_rcu_callbacks()

    def _run_rcu_callbacks(self) -> None:
        while self._rcu_callbacks:
            callbacks = self._rcu_callbacks[:]
            del self._rcu_callbacks[:]
            for callback in callbacks:
                callback()

    def _rcu_work_pending(self) -> bool:
        return bool(self._rcu_callbacks) or any(
            isinstance(c, PercpuSheavesCache) and c.has_rcu_sheaf() for c in self._cache_list)

    def check(self) -> None:
        """Verify every invariant of every cache, slab and page, and the buddy allocator's."""
        with self._lock:
            self.buddy.check()
            if self.pages is not None:
                self.pages.check()
            slab_pages = 0
            for cache in self._cache_list:
                cache.check()
                slab_pages += cache.pages_held()
                if self._by_id.get(cache.id) is not cache:
                    raise AssertionError(f"cache {cache.name!r} is not registered by id")
            for name, cache in self.caches.items():
                if name != cache.name and name not in cache.aliases:
                    raise AssertionError(f"caches[{name!r}] is {cache.name!r}, not an alias")
            owner = self.buddy.mem_map.owner
            owned = len(owner) - owner.count(0)
            large = owner.count(KMALLOC_LARGE_OWNER)
            if large != self._large_pages:
                raise AssertionError(f"{large} large kmalloc pages marked, {self._large_pages}"
                                     " counted")
            if owned != slab_pages + large:
                raise AssertionError(
                    f"{owned} pages have an owner but the caches hold {slab_pages} slab pages"
                    f" and kmalloc {large} large pages"
                )
            self._check_sheaf_memory()

    def _check_sheaf_memory(self) -> None:
        """Every barn and sheaf is a live kmalloc object of its size, none shared."""
        seen: set[int] = set()
        for cache in self._cache_list:
            if not isinstance(cache, PercpuSheavesCache) or cache._barn is None:
                continue
            need = sheaf_size(cache.sheaf_capacity)
            objects = [(barn.address, 48) for barn in cache._barns] + [
                (sheaf.address, need) for _, _, sheaf in cache.sheaves()]
            for address, size in objects:
                if address in seen:
                    raise AssertionError(f"{cache.name}: two sheaves share {address:#x}")
                seen.add(address)
                owner = self._by_id.get(self._owner[address >> self._page_shift])
                if owner is None or not owner.owns(address) or self.ksize(address) < size:
                    raise AssertionError(
                        f"{cache.name}: sheaf memory {address:#x} is not a live kmalloc object"
                        f" of {size} bytes")


def _as_cache(cache: object) -> KmemCache:
    if not isinstance(cache, KmemCache):
        raise InvalidTypeError(f"expected a cache, not {type(cache).__name__}")
    return cache


# (two leading underscores would be mangled in the class body)
_GFP_ZERO: Final = GFP_ZERO_FLAG

# The flags of a kmalloc cache outside the normal family (-rcl, dma-, -cg).
_NOT_NORMAL_CACHE: Final = SLAB_RECLAIM_ACCOUNT | SLAB_CACHE_DMA | SLAB_ACCOUNT


def _kmalloc_size_roundup(size: int) -> int:
    """kmalloc_size_roundup for the sizes calculate_sheaf_capacity asks about: a sheaf of at
    most 60 objects (about 500 bytes), always within the kmalloc caches (no large-kmalloc
    case: Linux's PAGE_SIZE << get_order is never needed here)."""
    return KMALLOC_CLASS_BY_SIZE[size]


__all__ = ["POLICIES", "CacheExistsError", "SlabAllocator"]
