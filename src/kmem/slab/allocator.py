"""SlabAllocator: slab caches and kmalloc on a buddy allocator, as Linux 6.x runs them.

Public API (stable; the trace replay and the visualisation drive it)::

    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, policy="slub")  # or "slab"
    # thread_safe=False: no cache locks, for single-threaded callers
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

import threading
from collections.abc import Callable
from typing import Final

from kmem.errors import InvalidArgumentError, InvalidTypeError
from kmem.page.buddy import BuddyAllocator
from kmem.slab.cache import Constructor, KmemCache
from kmem.slab.classic import ClassicSlabCache
from kmem.slab.errors import CacheNotEmptyError
from kmem.slab.flags import SLAB_DEBUG_FLAGS, SLAB_KMALLOC
from kmem.slab.geometry import CacheGeometry, calculate_geometry
from kmem.slab.kmalloc import KMALLOC_LARGE_OWNER, KmallocFrontEnd
from kmem.slab.merge import find_mergeable
from kmem.slab.slub import SlubCache, SlubDebugCache
from kmem.slab.stats import CacheStats, LiveObject

POLICIES: Final = ("slub", "slab")


class CacheExistsError(InvalidArgumentError):
    """kmem_cache_create() with the name of an existing cache."""


class SlabAllocator(KmallocFrontEnd):
    """Slab caches and kmalloc over ``buddy``, for ``nr_cpus`` simulated CPUs."""

    def __init__(self, buddy: BuddyAllocator, nr_cpus: int = 2, policy: str = "slub", *,
                 thread_safe: bool = True) -> None:
        if not isinstance(buddy, BuddyAllocator):
            raise InvalidTypeError(f"buddy must be a BuddyAllocator, not {type(buddy).__name__}")
        if isinstance(nr_cpus, bool) or not isinstance(nr_cpus, int):
            raise InvalidTypeError(f"nr_cpus must be an int, not {type(nr_cpus).__name__}")
        if not 1 <= nr_cpus <= 4096:
            raise InvalidArgumentError(f"nr_cpus must be in 1..4096, got {nr_cpus}")
        if policy not in POLICIES:
            raise InvalidArgumentError(f"policy must be 'slub' or 'slab', got {policy!r}")
        self.buddy = buddy
        self.nr_cpus = nr_cpus
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
        self._boot_kmalloc(self._create_kmalloc_cache)
        self._use_compiled_kmalloc()

    # -- cache creation and destruction --------------------------------------------------------

    def _create_kmalloc_cache(self, name: str, size: int, flags: int) -> KmemCache:
        # kmalloc caches are usercopy-whole (usersize = size), which also forbids merging.
        geometry = calculate_geometry(size, flags=flags | SLAB_KMALLOC, nr_cpus=self.nr_cpus,
                                      page_size=self.buddy.page_size, is_kmalloc=True,
                                      usersize=size)
        return self._register(name, geometry, None)

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
    ) -> KmemCache:
        """Create a cache of ``size``-byte objects (Linux kmem_cache_create with its args).

        Returns the new cache, or an existing one this one merges into (its alias).
        """
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise InvalidArgumentError(f"cache name must be a non-empty word, got {name!r}")
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
            return self._register(name, geometry, ctor)

    def _find_mergeable(self, size: int, align: int, flags: int, has_ctor: bool,
                        usersize: int) -> KmemCache | None:
        """Linux find_mergeable (kmem.slab.merge): the oldest cache this one can share."""
        index = find_mergeable(size, [cache.geometry for cache in self._cache_list],
                               align=align, flags=flags, has_ctor=has_ctor, usersize=usersize)
        return None if index is None else self._cache_list[index]

    def _register(self, name: str, geometry: CacheGeometry, ctor: Constructor | None
                  ) -> KmemCache:
        cache_class: type[KmemCache]
        if self.policy == "slab":
            cache_class = ClassicSlabCache
        elif geometry.flags & SLAB_DEBUG_FLAGS:
            cache_class = SlubDebugCache
        else:
            cache_class = SlubCache
        with self._lock:
            cache = cache_class(cache_id=self._next_id, name=name, geometry=geometry,
                                buddy=self.buddy, nr_cpus=self.nr_cpus, ctor=ctor,
                                callers=self._callers, thread_safe=self.thread_safe)
            self._next_id += 1
            self.caches[name] = cache
            self._by_id[cache.id] = cache
            self._frees_by_id.append(cache.free)  # at index cache.id: ids count up from 1
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
            if target.refcount > 1:
                # A merged cache: drop this user's name; the cache lives on for the others
                # (keeping its first name in reports, as Linux keeps s->name).
                target.refcount -= 1
                if name in target.aliases:
                    target.aliases.remove(name)
                if self.caches.get(name) is target:
                    del self.caches[name]
                return
            leaks = target.live_objects()
            if leaks:
                raise CacheNotEmptyError(
                    f"cache {target.name!r} still has {len(leaks)} allocated object(s): "
                    + ", ".join(f"{leak.address:#x}" + (f" (from {leak.caller})"
                                                        if leak.caller else "")
                                for leak in leaks[:8])
                    + (" ..." if len(leaks) > 8 else ""),
                    tuple(leaks),
                )
            target.shrink()
            target.rcu_barrier()  # Linux: rcu_barrier() before a SLAB_TYPESAFE_BY_RCU cache goes
            target.destroyed = True
            target.refcount = 0
            for name in [n for n, c in self.caches.items() if c is target]:
                del self.caches[name]
            del self._by_id[target.id]
            self._frees_by_id[target.id] = None
            self._cache_list.remove(target)

    # -- queries and reports -------------------------------------------------------------------

    def kmem_cache_alloc(self, cache: KmemCache, cpu: int = 0) -> int:
        """Linux's name for cache.alloc()."""
        return cache.alloc(cpu)

    def kmem_cache_free(self, cache: KmemCache, address: int, cpu: int = 0) -> None:
        """Linux's name for cache.free()."""
        cache.free(address, cpu)

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
        """An RCU grace period: every SLAB_TYPESAFE_BY_RCU cache's discarded slabs go back to
        the buddy allocator; return how many."""
        return sum(cache.rcu_barrier() for cache in self.cache_list())

    def check(self) -> None:
        """Verify every invariant of every cache, slab and page, and the buddy allocator's."""
        with self._lock:
            self.buddy.check()
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


__all__ = ["POLICIES", "CacheExistsError", "SlabAllocator"]
