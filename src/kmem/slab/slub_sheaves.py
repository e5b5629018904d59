"""SLUB with sheaves: Linux 6.18 (sheaves in front of cpu slabs) and 7.0 (sheaves only).

``PercpuSheavesCache`` holds what both kernels share (kmem.sheaves has the structures and the
transition table): the per-CPU main, spare and rcu_free sheaves, the barn, and the paths
alloc_from_pcs / __pcs_replace_empty_main, free_to_pcs / __pcs_replace_full_main,
__kfree_rcu_sheaf / rcu_free_sheaf, sheaf_flush_main / sheaf_flush_unused, pcs_flush_all and
barn_shrink. Each kernel supplies four slab-side hooks: allocate one object from the slabs,
allocate n objects for a refill, free one object to its slab, free a detached freelist.

``SheafSlubCache`` (6.18, a cache created with sheaf_capacity): the slab side is the 6.17 SLUB
of kmem.slub unchanged -- a refill pops the cpu slab's freelist n times (alloc_fastpath each,
the usual slow path when it runs dry), a flush frees detached freelists to the cpu slab or
through __slab_free. Stats: alloc_cpu_sheaf / free_cpu_sheaf count the sheaf fast paths.

``Slub7Cache`` (7.0, every cache): no cpu slab, no cpu partial list (cpu_partial reads 0).
The slab side is the node partial list only: a refill takes whole freelists of partial slabs
(get_partial_node_bulk) and then new slabs; a single allocation takes one object from the
partial head or a new slab (which goes to the partial head); a free goes to the slab's
freelist, full slabs joining the partial tail and empty ones beyond min_partial discarded.
Stats: alloc_fastpath / free_fastpath count the sheaf fast paths. Capacity 0 (7.0 caches that
cannot have sheaves) runs on a shared empty "bootstrap" main sheaf: every operation takes the
slab path.

Nodes (kmem.slab.numa): a barn per node (``_barns``; ``_barn`` is node 0's, None without
sheaves), each CPU trading with its node's; a free or kfree_rcu of an object of another node
than the CPU's skips the sheaves; alloc_node serves a node from the sheaves only when it is the
local one and main's top object is on it. 7.0 keeps a partial list per node (``_nodes``).

Lock: the kernel drops the per-CPU lock around kmalloc/kfree of sheaves and re-reads its state;
kmem releases the cache lock around those nested calls the same way (a 7.0 kmalloc cache's
sheaves may be objects of that very cache) and re-reads the per-CPU fields afterwards.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Final

from kmem.errors import OutOfMemoryError
from kmem.page.gfp import (
    __GFP_ACCOUNT,
    __GFP_DIRECT_RECLAIM,
    __GFP_DMA,
    __GFP_NO_OBJ_EXT,
    __GFP_NOFAIL,
    __GFP_NOMEMALLOC,
    __GFP_RECLAIMABLE,
    __GFP_THISNODE,
    GFP_KERNEL,
    GFP_NOWAIT,
)
from kmem.slab.cache import KmemCache, check_gfp
from kmem.slab.flags import SLAB_KMALLOC
from kmem.slab.sheaves import (
    BARN_CALLER,
    BARN_GET,
    BARN_GET_FAIL,
    BARN_PUT,
    BARN_PUT_FAIL,
    FREE_RCU_SHEAF,
    FREE_RCU_SHEAF_FAIL,
    MAX_EMPTY_SHEAVES,
    MAX_FULL_SHEAVES,
    NODE_BARN_SIZE,
    PCS_BATCH_MAX,
    SHEAF_ALLOC,
    SHEAF_CALLER,
    SHEAF_FLUSH,
    SHEAF_FREE,
    SHEAF_HELD,
    SHEAF_REFILL,
    SHEAF_STAT_NAMES,
    Barn,
    Sheaf,
    SheafHost,
    build_detached_freelist,
    sheaf_size,
)
from kmem.slab.slabs import ON_CPU, ON_CPU_PARTIAL, ON_NODE_PARTIAL, ON_NONE, Slab
from kmem.slab.slub import SlubCache
from kmem.slab.stats import (
    ALLOC_SLAB,
    ALLOC_SLOWPATH,
    CPU_PARTIAL_FREE,
    FREE_ADD_PARTIAL,
    FREE_FROZEN,
    FREE_REMOVE_PARTIAL,
    FREE_SLOWPATH,
)

_GFP_THISNODE: Final = __GFP_THISNODE  # (two underscores would be mangled in a class)
_OBJCGS_CLEAR_MASK: Final = __GFP_DMA | __GFP_RECLAIMABLE | __GFP_ACCOUNT | __GFP_NOFAIL
_NO_OBJ_EXT: Final = __GFP_NO_OBJ_EXT
_CAN_BLOCK: Final = __GFP_DIRECT_RECLAIM
_GFP_NOMEMALLOC: Final = __GFP_NOMEMALLOC  # 7.0 refills: never from the reserves
_ALLOCS, _FREES, _CAPACITY = 0, 1, 2  # PercpuSheavesCache._pcs


class PercpuSheavesCache(KmemCache):
    """The sheaf layer of a SLUB cache (see the module docstring); subclasses give the slabs."""

    policy = "slub"

    def __init__(self, *, host: SheafHost, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._host: Final = host
        self.sheaf_capacity = 0
        self._capacity = 0  # the hot paths' copy of sheaf_capacity
        self._bootstrap = Sheaf(-1)  # 7.0's static bootstrap sheaf: empty, capacity 0
        self._main: dict[int, Sheaf] = dict.fromkeys(range(self.nr_cpus), self._bootstrap)
        self._spare: list[Sheaf | None] = [None] * self.nr_cpus
        self._rcu_free: list[Sheaf | None] = [None] * self.nr_cpus
        self._rcu_waiting: list[Sheaf] = []  # handed to call_rcu, callback not run yet
        self._barn: Barn | None = None  # node 0's; None: no sheaves
        self._barns: list[Barn] = []  # every node's (get_node(s, nid)->barn), by node
        self._sheaf_stat = [0] * len(SHEAF_STAT_NAMES)
        # The sheaf fast paths' counters (allocations, frees) and the capacity, in one buffer
        # that the compiled core updates in place (kmem._core.SlabCacheCore, kind "sheaf")
        self._pcs = array("q", [0, 0, 0])
        self._use_compiled_core("sheaf", cpu_slab=self._main, pcs=self._pcs)

    # -- setting up and tearing down -----------------------------------------------------------

    def enable_sheaves(self, capacity: int, cpu: int = 0) -> None:
        """Give the cache sheaves (init_kmem_cache_nodes + init_percpu_sheaves): a barn kmalloc'd
        on each node (kmalloc_node), then an empty main sheaf per CPU. OutOfMemoryError undoes
        everything."""
        if capacity <= 0 or self._barn is not None:
            return
        host = self._host
        barns: list[int] = []
        mains: list[Sheaf] = []
        gfp = self._sheaf_gfp(GFP_KERNEL)
        assert gfp is not None
        try:
            for node in range(self.nr_nodes):
                barns.append(host.kzalloc_node(NODE_BARN_SIZE, GFP_KERNEL, node, cpu,
                                               BARN_CALLER))
            for _ in range(self.nr_cpus):
                address = host.kzalloc(sheaf_size(capacity), gfp, cpu, SHEAF_CALLER)
                mains.append(Sheaf(address))
                self._sheaf_stat[SHEAF_ALLOC] += 1
        except OutOfMemoryError:
            for sheaf in mains:
                host.kfree(sheaf.address, cpu)
            for address in barns:
                host.kfree(address, cpu)
            self._sheaf_stat[SHEAF_ALLOC] -= len(mains)
            self._changes += len(mains)  # (change_count never goes back)
            raise
        self._barns[:] = [Barn(address) for address in barns]
        self._barn = self._barns[0]
        self._main.update(enumerate(mains))  # (in place: the compiled core holds this dict)
        self.sheaf_capacity = self._capacity = self._pcs[_CAPACITY] = capacity

    def stop_sheaves(self) -> None:
        """Mark the cache destroyed and close its sheaf fast paths, under the cache lock held by
        the caller: from here every allocation takes the slow path, which refuses (the sheaves'
        objects are flushed by the teardown that follows, without the lock)."""
        self.destroyed = True
        self._capacity = self._pcs[_CAPACITY] = 0
        self._changes += 1

    def release_sheaves(self, cpu: int = 0) -> None:
        """pcs_destroy and the barn's kfree, after a shutdown flushed everything."""
        with self._lock:
            if self._barn is None:
                return
            for c in range(self.nr_cpus):
                main = self._main[c]
                self._main[c] = self._bootstrap
                self._free_empty_sheaf(main, cpu)
            barns = self._barns[:]
            self._barn = None
            self._barns.clear()
            self._capacity = self._pcs[_CAPACITY] = 0
        for barn in barns:  # free_kmem_cache_nodes, node by node
            self._host.kfree(barn.address, cpu)

    # -- sheaf memory: the kernel drops the per-CPU lock around these --------------------------

    def _sheaf_gfp(self, gfp: int) -> int | None:
        """The gfp of a sheaf's kzalloc; None when 7.0 forbids one (__GFP_NO_OBJ_EXT)."""
        if self.kernel == "7.0":
            if gfp & _NO_OBJ_EXT:
                return None  # no sheaf from inside a kmalloc cache's own sheaf allocation
            gfp &= ~_OBJCGS_CLEAR_MASK
            if self.flags & SLAB_KMALLOC:  # stop the recursion one level down
                gfp |= _NO_OBJ_EXT
        return gfp

    def _alloc_empty_sheaf(self, gfp: int, cpu: int) -> Sheaf | None:
        """alloc_empty_sheaf: a kzalloc'd sheaf, or None (no memory, or __GFP_NO_OBJ_EXT)."""
        sheaf_gfp = self._sheaf_gfp(gfp)
        if sheaf_gfp is None:
            return None
        gfp = sheaf_gfp
        locked = self.thread_safe
        if locked:
            self._lock_release()
        try:
            address = self._host.kzalloc(sheaf_size(self._capacity), gfp, cpu, SHEAF_CALLER)
        except OutOfMemoryError:
            return None
        finally:
            if locked:
                self._lock_acquire()
        self._sheaf_stat[SHEAF_ALLOC] += 1
        return Sheaf(address)

    def _unlocked_kfree(self, sheaf: Sheaf, cpu: int) -> None:
        locked = self.thread_safe
        if locked:
            self._lock_release()
        try:
            self._host.kfree(sheaf.address, cpu)
        finally:
            if locked:
                self._lock_acquire()

    def _free_empty_sheaf(self, sheaf: Sheaf, cpu: int) -> None:
        """free_empty_sheaf: kfree the sheaf."""
        self._unlocked_kfree(sheaf, cpu)
        self._sheaf_stat[SHEAF_FREE] += 1

    # -- the slab side (each kernel) -----------------------------------------------------------

    def _alloc_from_slabs(self, cpu: int, gfp: int, node: int = -1) -> int:
        """One object from the slabs for a user (the path without sheaves), on ``node``."""
        raise NotImplementedError

    def _alloc_bulk(self, count: int, cpu: int, gfp: int) -> list[int]:
        """Up to ``count`` objects from the slabs for a refill (6.18: all or nothing)."""
        raise NotImplementedError

    def _free_to_slab(self, slab: Slab, index: int, cpu: int) -> None:
        """A user's object back to its slab when the sheaves do not take it."""
        raise NotImplementedError

    def _free_group(self, slab: Slab, indices: list[int], cpu: int) -> None:
        """A detached freelist (objects of one slab, in push order) back to the slab."""
        raise NotImplementedError

    # -- allocation ----------------------------------------------------------------------------

    def alloc(self, cpu: int = 0, gfp: int = GFP_KERNEL) -> int:
        """Allocate an object on ``cpu``; return its address (slab_alloc_node)."""
        self._lock_acquire()
        try:
            return self._alloc_unlocked(cpu, gfp)
        finally:
            self._lock_release()

    def _alloc_unlocked(self, cpu: int = 0, gfp: int = GFP_KERNEL) -> int:
        if gfp.__class__ is not int or gfp >> 32:
            check_gfp(gfp)
        try:  # alloc_from_pcs: pop the main sheaf (capacity 0: no sheaves, or being destroyed)
            if cpu.__class__ is not int or not self._capacity:
                raise TypeError
            address = self._main[cpu].pop()
        except (KeyError, TypeError, IndexError):
            return self._alloc_slowpath_pcs(cpu, gfp)
        slab = self._slab_of_pfn[address >> self._page_shift]
        slab.used[(address - slab.base) // self.size] = 1
        self._pcs[_ALLOCS] += 1
        return address

    def alloc_node(self, cpu: int = 0, gfp: int = GFP_KERNEL, node: int = -1) -> int:
        """kmem_cache_alloc_node. alloc_from_pcs serves a node asked for only when it is the
        local one, and only if the object on top of main is on it (a sheaf may hold remote
        objects: a refill takes what the slabs give); otherwise the slabs' path, with the
        node (__slab_alloc_node)."""
        node = self._check_node(node)
        if node == -1 or self.nr_nodes == 1:
            return self.alloc(cpu, gfp)
        check_gfp(gfp)
        with self._lock:
            if cpu.__class__ is not int or cpu not in self._main:
                cpu = self._plain_cpu(cpu)
            if self.destroyed:
                raise self._bad_free(0)
            if self._capacity and node == self._cpu_node[cpu] and (
                    self._main[cpu] or self._replace_empty_main(cpu, gfp)):
                main = self._main[cpu]
                address = main[-1]
                slab = self._slab_of_pfn[address >> self._page_shift]
                if slab.node == node:
                    main.pop()
                    slab.used[(address - slab.base) // self.size] = 1
                    self._pcs[_ALLOCS] += 1
                    return address
            return self._alloc_from_slabs(cpu, gfp, node)

    def _alloc_slowpath_pcs(self, cpu: int, gfp: int) -> int:
        if cpu.__class__ is not int or cpu not in self._main:
            # (an IntEnum cpu missed the fast path: the whole alloc again, as its int)
            return self._alloc_unlocked(self._plain_cpu(cpu), gfp)
        check_gfp(gfp)
        if self.destroyed:
            raise self._bad_free(0)
        if self._replace_empty_main(cpu, gfp):
            address = self._main[cpu].pop()
            slab = self._slab_of_pfn[address >> self._page_shift]
            slab.used[(address - slab.base) // self.size] = 1
            self._pcs[_ALLOCS] += 1
            return address
        return self._alloc_from_slabs(cpu, gfp)

    def _replace_empty_main(self, cpu: int, gfp: int) -> bool:
        """__pcs_replace_empty_main: True when main has an object to pop now."""
        if self._barn is None:  # no sheaves (7.0 bootstrap sheaf)
            return False
        barn = self._barns[self._cpu_node[cpu]]  # get_barn: the local node's
        stat = self._sheaf_stat
        spare = self._spare[cpu]
        if spare:  # a full spare: swap
            self._spare[cpu] = self._main[cpu]
            self._main[cpu] = spare
            return True
        full = barn.replace_empty(self._main[cpu])
        if full is not None:
            stat[BARN_GET] += 1
            self._main[cpu] = full
            return True
        stat[BARN_GET_FAIL] += 1
        if not gfp & _CAN_BLOCK:
            return False
        empty: Sheaf | None
        if spare is not None:  # an empty spare
            empty = spare
            self._spare[cpu] = None
        else:
            empty = barn.get_empty()
        full = None
        if empty is not None:
            if self._refill_sheaf(empty, cpu, gfp):
                full = empty
            else:  # very low on memory: do not bother with the barn
                self._flush_unused(empty, cpu)
                self._free_empty_sheaf(empty, cpu)
        else:
            full = self._alloc_full_sheaf(cpu, gfp)
        if full is None:
            return False
        # The lock was dropped: re-read the per-CPU state, as the kernel does.
        main = self._main[cpu]
        spare = self._spare[cpu]
        if not main:
            if self.kernel == "7.0" and spare is None:
                self._spare[cpu] = main
            elif main is not self._bootstrap:  # pragma: no branch
                # (always: a cache with a barn has its own main sheaves; the bootstrap sheaf
                # is main only before enable_sheaves and after release_sheaves, barn None)
                barn.empty.append(main)
            self._main[cpu] = full
            return True
        if spare is None:
            self._spare[cpu] = full
            return True
        if not spare:
            barn.empty.append(spare)
            self._spare[cpu] = full
            return True
        barn.full.append(full)
        stat[BARN_PUT] += 1
        return True

    def _refill_sheaf(self, sheaf: Sheaf, cpu: int, gfp: int) -> bool:
        """refill_sheaf: fill to capacity from the slabs; False if it could not.

        7.0 refills with __GFP_NOMEMALLOC (__pcs_replace_empty_main, alloc_full_sheaf): a
        sheaf serves anyone, so it never holds reserve memory -- no object of a pfmemalloc
        partial slab, no new slab on reserve pages. 6.18 refills with the allocation's flags.
        """
        want = self._capacity - len(sheaf)
        if not want:  # pragma: no cover -- every caller refills an empty sheaf (Linux's case
            return True  # is kmem_cache_refill_sheaf of a prefilled sheaf, not modelled)
        if self.kernel == "7.0":
            gfp |= _GFP_NOMEMALLOC
        objects = self._alloc_bulk(want, cpu, gfp)
        slab_of_pfn = self._slab_of_pfn
        shift = self._page_shift
        size = self.size
        for address in objects:
            slab = slab_of_pfn[address >> shift]
            slab.used[(address - slab.base) // size] = SHEAF_HELD
        sheaf.extend(objects)
        self._sheaf_stat[SHEAF_REFILL] += len(objects)
        return len(objects) == want

    def _alloc_full_sheaf(self, cpu: int, gfp: int) -> Sheaf | None:
        """alloc_full_sheaf: a new sheaf, refilled; None (and nothing kept) on failure."""
        sheaf = self._alloc_empty_sheaf(gfp, cpu)
        if sheaf is None:
            return None
        if not self._refill_sheaf(sheaf, cpu, gfp):
            self._flush_unused(sheaf, cpu)
            self._free_empty_sheaf(sheaf, cpu)
            return None
        return sheaf

    # -- free ----------------------------------------------------------------------------------

    def free(self, address: int, cpu: int = 0) -> None:
        """Free the object at ``address`` on ``cpu`` (slab_free)."""
        self._lock_acquire()
        try:
            self._free_unlocked(address, cpu)
        finally:
            self._lock_release()

    def _free_unlocked(self, address: int, cpu: int = 0) -> None:
        try:  # the object must be a user's: used byte 1
            main = self._main[cpu]
            slab = self._slab_of_pfn[address >> self._page_shift]
            size = self.size
            offset = address - slab.base
            index = offset // size
            if index * size != offset or slab.used[index] != 1 or cpu.__class__ is not int or (
                address.__class__ is not int  # (an int subclass would be handed out by alloc)
            ):
                return self._free_other(address, cpu)
        except (KeyError, TypeError, IndexError):
            return self._free_other(address, cpu)
        if slab.node != self._cpu_node[cpu]:  # slab_free: a remote object skips the sheaves
            return self._free_to_slab(slab, index, cpu)
        if len(main) < self._capacity:  # free_to_pcs: push on the main sheaf
            if slab.pfmemalloc and self.kernel == "7.0":
                return self._free_to_slab(slab, index, cpu)  # slab_free: bypass the sheaves
            slab.used[index] = SHEAF_HELD
            main.append(address)
            self._pcs[_FREES] += 1
            return
        self._free_slowpath_pcs(slab, index, address, cpu)

    def _free_slowpath_pcs(self, slab: Slab, index: int, address: int, cpu: int) -> None:
        # slab_free: in 7.0 an object of a pfmemalloc slab never goes to the sheaves (Linux
        # "slab: handle pfmemalloc slabs properly with sheaves"); 6.18 has no such check. (The
        # same condition's other half, a remote-node free, was sent on by _free_unlocked.)
        if slab.pfmemalloc and self.kernel == "7.0":
            self._free_to_slab(slab, index, cpu)
            return
        if self._capacity and self._replace_full_main(cpu):
            slab.used[index] = SHEAF_HELD
            self._main[cpu].append(address)
            self._pcs[_FREES] += 1
            return
        self._free_to_slab(slab, index, cpu)

    def _replace_full_main(self, cpu: int) -> bool:
        """__pcs_replace_full_main: True when main has room for one more object now."""
        # (the caller saw a sheaf capacity: a cache with sheaves, a barn on every node)
        barn = self._barns[self._cpu_node[cpu]]
        stat = self._sheaf_stat
        capacity = self._capacity
        while True:  # "restart"
            spare = self._spare[cpu]
            put_fail = False
            empty: Sheaf | None
            if spare is None:
                empty = barn.get_empty()
                if empty is not None:
                    self._spare[cpu] = self._main[cpu]
                    self._main[cpu] = empty
                    return True
            elif len(spare) < capacity:  # an empty spare: swap
                self._spare[cpu] = self._main[cpu]
                self._main[cpu] = spare
                return True
            else:
                swapped = barn.replace_full(self._main[cpu])
                if isinstance(swapped, Sheaf):
                    stat[BARN_PUT] += 1
                    self._main[cpu] = swapped
                    return True
                if swapped == "E2BIG":  # too many full sheaves: flush the full spare, reuse it
                    stat[BARN_PUT_FAIL] += 1
                    self._spare[cpu] = None
                    self._flush_unused(spare, cpu)
                    self._install_empty(cpu, spare)
                    return True
                put_fail = True  # no empty sheaf in the barn
            empty = self._alloc_empty_sheaf(GFP_NOWAIT, cpu)
            if empty is not None:
                self._install_empty(cpu, empty)
                return True
            if put_fail:
                stat[BARN_PUT_FAIL] += 1
            if not self._flush_main(cpu):
                return False
            if len(self._main[cpu]) < capacity:  # pragma: no branch
                # (always: main was just flushed; Linux restarts for a task preempted or
                # migrated meanwhile, and sheaf_flush_main does not drop kmem's lock)
                return True

    def _install_empty(self, cpu: int, empty: Sheaf) -> None:
        """__pcs_install_empty_sheaf, after the lock was dropped to get ``empty``."""
        barn = self._barns[self._cpu_node[cpu]]
        capacity = self._capacity
        main = self._main[cpu]
        spare = self._spare[cpu]
        if spare is None:
            self._spare[cpu] = main
            self._main[cpu] = empty
        elif len(main) < capacity:
            barn.empty.append(empty)
        elif len(spare) < capacity:
            self._main[cpu] = spare
            self._spare[cpu] = main
            barn.empty.append(empty)
        else:
            barn.full.append(main)
            self._sheaf_stat[BARN_PUT] += 1
            self._main[cpu] = empty

    # -- flushing sheaves to the slabs ---------------------------------------------------------

    def _free_bulk(self, objects: list[int], cpu: int) -> None:
        """__kmem_cache_free_bulk: detached freelists of ``objects`` back to their slabs."""
        slab_of_pfn = self._slab_of_pfn
        shift = self._page_shift

        def slab_key(address: int) -> object:
            return slab_of_pfn[address >> shift]

        size = len(objects)
        item_size = self.size
        while size:
            group, size = build_detached_freelist(objects, size, slab_key)
            slab = slab_of_pfn[group[0] >> shift]
            base = slab.base
            self._free_group(slab, [(a - base) // item_size for a in group], cpu)

    def _flush_main(self, cpu: int) -> bool:
        """sheaf_flush_main: main's objects to the slabs, the top PCS_BATCH_MAX at a time."""
        main = self._main[cpu]
        flushed = False
        while main:
            batch = main[-PCS_BATCH_MAX:]
            del main[-PCS_BATCH_MAX:]
            self._free_bulk(batch, cpu)
            self._sheaf_stat[SHEAF_FLUSH] += len(batch)
            flushed = True
        return flushed

    def _flush_unused(self, sheaf: Sheaf, cpu: int) -> None:
        """sheaf_flush_unused: every object of a sheaf no CPU uses back to the slabs."""
        if not sheaf:
            return
        self._sheaf_stat[SHEAF_FLUSH] += len(sheaf)
        objects = list(sheaf)
        sheaf.clear()
        self._free_bulk(objects, cpu)

    def _pcs_flush_all(self, cpu: int) -> None:
        """pcs_flush_all: the spare flushed and freed, rcu_free sent to RCU, main flushed."""
        if self._barn is None:
            return
        spare = self._spare[cpu]
        self._spare[cpu] = None
        rcu_free = self._rcu_free[cpu]
        self._rcu_free[cpu] = None
        if spare is not None:
            self._flush_unused(spare, cpu)
            self._free_empty_sheaf(spare, cpu)
        if rcu_free is not None:
            self._call_rcu_sheaf(rcu_free, cpu, to_barn=False)
        self._flush_main(cpu)

    def _barn_shrink(self, cpu: int) -> None:
        """barn_shrink of every node's barn, node by node: every full barn sheaf flushed and
        freed, every empty one freed."""
        for barn in list(self._barns):
            full, barn.full = barn.full, []
            empty, barn.empty = barn.empty, []
            for sheaf in reversed(full):  # list order from the head
                self._flush_unused(sheaf, cpu)
                self._free_empty_sheaf(sheaf, cpu)
            for sheaf in reversed(empty):
                self._free_empty_sheaf(sheaf, cpu)

    # -- kfree_rcu -----------------------------------------------------------------------------

    def kfree_rcu(self, address: int, cpu: int,
                  call_rcu: Callable[[Callable[[], None]], None]) -> None:
        """kvfree_call_rcu: into the CPU's rcu_free sheaf, else the object waits on its own."""
        with self._lock:
            if cpu.__class__ is not int or not 0 <= cpu < self.nr_cpus:
                cpu = self._plain_cpu(cpu)
            slab, index = self._slab_of(address)
            # kfree_rcu_sheaf: only an object of the local node goes to the rcu_free sheaf
            if slab.node != self._cpu_node[cpu] or not self._kfree_rcu_sheaf(
                    slab, index, address, cpu):
                self._kfree_rcu_locked(slab, index, address, cpu, call_rcu)

    def flush_rcu_sheaves(self) -> None:
        """flush_all_rcu_sheaves for this cache: partly filled rcu_free sheaves go to RCU."""
        with self._lock:
            for cpu in range(self.nr_cpus):
                rcu_free = self._rcu_free[cpu]
                if rcu_free is not None:
                    self._rcu_free[cpu] = None
                    self._call_rcu_sheaf(rcu_free, cpu, to_barn=False)
                    self._changes += 1

    def has_rcu_sheaf(self) -> bool:
        """Is a kfree_rcu'd object of this cache still in a sheaf?"""
        return bool(self._rcu_waiting) or any(s is not None for s in self._rcu_free)

    def _kfree_rcu_sheaf(self, slab: Slab, index: int, address: int, cpu: int) -> bool:
        """__kfree_rcu_sheaf: batch ``address`` into the CPU's rcu_free sheaf."""
        stat = self._sheaf_stat
        if self._barn is None:
            stat[FREE_RCU_SHEAF_FAIL] += 1
            return False
        barn = self._barns[self._cpu_node[cpu]]
        rcu_free = self._rcu_free[cpu]
        if rcu_free is None:
            spare = self._spare[cpu]
            if spare is not None and not spare:
                rcu_free = spare
                self._spare[cpu] = None
            else:
                rcu_free = barn.get_empty()
                if rcu_free is None:
                    empty = self._alloc_empty_sheaf(GFP_NOWAIT, cpu)
                    if empty is None:
                        stat[FREE_RCU_SHEAF_FAIL] += 1
                        return False
                    rcu_free = self._rcu_free[cpu]
                    if rcu_free is not None:  # someone filled the slot meanwhile
                        barn.empty.append(empty)
                    else:
                        rcu_free = empty
            self._rcu_free[cpu] = rcu_free
        slab.used[index] = SHEAF_HELD
        rcu_free.append(address)
        if len(rcu_free) >= self._capacity:
            self._rcu_free[cpu] = None
            self._call_rcu_sheaf(rcu_free, cpu, to_barn=True)
        stat[FREE_RCU_SHEAF] += 1
        return True

    def _call_rcu_sheaf(self, sheaf: Sheaf, cpu: int, *, to_barn: bool) -> None:
        self._rcu_waiting.append(sheaf)

        def callback() -> None:
            self._lock_acquire()
            try:
                self._rcu_waiting.remove(sheaf)
                self._changes += 1  # (an empty sheaf may join the barn uncounted)
                if to_barn:
                    self._rcu_free_sheaf(sheaf, cpu)
                else:  # rcu_free_sheaf_nobarn
                    self._flush_unused(sheaf, cpu)
                    self._free_empty_sheaf(sheaf, cpu)
            finally:
                self._lock_release()

        self._host.call_rcu(callback)

    def _rcu_free_sheaf(self, sheaf: Sheaf, cpu: int) -> None:
        """rcu_free_sheaf: after the grace period a full rcu sheaf is reused from the barn;
        in 7.0 one holding an object of a pfmemalloc slab is flushed instead. The barn is the
        node's of the CPU that filled the sheaf (sheaf->node), ``cpu``."""
        barn: Barn | None = (self._barns[self._cpu_node[cpu]] if self._barn is not None
                             else None)
        stat = self._sheaf_stat
        if self.kernel == "7.0" and self._holds_pfmemalloc(sheaf):
            barn = None  # __rcu_free_sheaf_prepare found one: "goto flush"
        if barn is not None and sheaf and len(barn.full) < MAX_FULL_SHEAVES:
            stat[BARN_PUT] += 1
            barn.full.append(sheaf)
            return
        if sheaf:  # pragma: no branch
            # (always: a sheaf goes to RCU for the barn only when full; Linux's empty one is
            # a slab_free_hook that kept every object back, KASAN or debug, not modelled)
            stat[BARN_PUT_FAIL] += 1
            self._flush_unused(sheaf, cpu)
        if barn is not None and len(barn.empty) < MAX_EMPTY_SHEAVES:
            barn.empty.append(sheaf)
            return
        self._free_empty_sheaf(sheaf, cpu)

    def _holds_pfmemalloc(self, sheaf: Sheaf) -> bool:
        slab_of_pfn = self._slab_of_pfn
        shift = self._page_shift
        return any(slab_of_pfn[address >> shift].pfmemalloc for address in sheaf)

    # -- flushing, shrinking -------------------------------------------------------------------

    def _flush_cpu_slabs(self, cpu: int) -> None:
        """The kernel's flush of the cpu slab layer after the sheaves (6.18), or nothing."""

    def flush_cpu(self, cpu: int) -> None:
        """flush_cpu_slab: the CPU's sheaves (pcs_flush_all), then (6.18) its cpu slabs."""
        if cpu.__class__ is not int or not 0 <= cpu < self.nr_cpus:
            cpu = self._plain_cpu(cpu)
        with self._lock:
            self._pcs_flush_all(cpu)
            self._flush_cpu_slabs(cpu)

    def _discard_empty_partials(self) -> int:
        raise NotImplementedError

    def shrink(self) -> int:
        """kmem_cache_shrink: flush every CPU, shrink the barn, discard empty partial slabs."""
        with self._lock:
            for cpu in range(self.nr_cpus):
                self._pcs_flush_all(cpu)
                self._flush_cpu_slabs(cpu)
            self._barn_shrink(0)
            return self._discard_empty_partials()

    # -- reports and invariants ----------------------------------------------------------------

    def sheaves(self) -> Iterator[tuple[str, int, Sheaf]]:
        """Every sheaf of the cache as (place, cpu, sheaf): place is main, spare, rcu_free,
        barn_full, barn_empty or rcu_waiting (cpu -1 for the barn and RCU)."""
        if self._barn is None:
            return
        for cpu in range(self.nr_cpus):
            yield "main", cpu, self._main[cpu]
            spare = self._spare[cpu]
            if spare is not None:
                yield "spare", cpu, spare
            rcu_free = self._rcu_free[cpu]
            if rcu_free is not None:
                yield "rcu_free", cpu, rcu_free
        for barn in self._barns:  # node by node
            for sheaf in reversed(barn.full):
                yield "barn_full", -1, sheaf
            for sheaf in reversed(barn.empty):
                yield "barn_empty", -1, sheaf
        for sheaf in self._rcu_waiting:
            yield "rcu_waiting", -1, sheaf

    def sheaf_census(self) -> dict[str, int]:
        """Sheaves and the objects they hold, by place (the CacheStats census fields)."""
        with self._lock:
            return self._sheaf_census()

    def _sheaf_census(self) -> dict[str, int]:
        census = {"sheaves": 0, "cpu_sheaf_objects": 0, "barn_full": 0, "barn_empty": 0,
                  "barn_objects": 0, "rcu_sheaf_objects": 0}
        for place, _, sheaf in self.sheaves():
            census["sheaves"] += 1
            if place in ("main", "spare"):
                census["cpu_sheaf_objects"] += len(sheaf)
            elif place == "barn_full":
                census["barn_full"] += 1
                census["barn_objects"] += len(sheaf)
            elif place == "barn_empty":
                census["barn_empty"] += 1
            else:
                census["rcu_sheaf_objects"] += len(sheaf)
        return census

    def change_count(self) -> int:
        pcs = self._pcs
        return super().change_count() + sum(self._sheaf_stat) + pcs[_ALLOCS] + pcs[_FREES]

    def _add_sheaf_counters(self, counters: dict[str, int]) -> None:
        counters.update(self._sheaf_census())
        counters.update(zip(SHEAF_STAT_NAMES, self._sheaf_stat, strict=True))
        counters["sheaf_capacity"] = self.sheaf_capacity
        if self.kernel == "7.0":  # the sheaves are the fast paths
            counters["alloc_fastpath"] += self._pcs[_ALLOCS]
            counters["free_fastpath"] += self._pcs[_FREES]
        else:
            counters["alloc_cpu_sheaf"] += self._pcs[_ALLOCS]
            counters["free_cpu_sheaf"] += self._pcs[_FREES]

    def _check_sheaves(self) -> None:
        capacity = self._capacity
        seen: set[int] = set()
        held = 0
        for place, cpu, sheaf in self.sheaves():
            name = f"{self.name}: {place} sheaf" + (f" of cpu {cpu}" if cpu >= 0 else "")
            if id(sheaf) in seen:
                raise AssertionError(f"{name} is in two places")
            seen.add(id(sheaf))
            if len(sheaf) > capacity:
                raise AssertionError(f"{name} holds {len(sheaf)} > {capacity} objects")
            # (A spare is empty or full, except in 7.0 when a kmalloc cache's new sheaf came from
            # the cache itself: the kzalloc popped main just before main became the spare.)
            if place == "barn_full" and len(sheaf) != capacity:
                raise AssertionError(f"{name} is not full")
            if (place == "barn_full" and not sheaf) or (place == "barn_empty" and sheaf):
                raise AssertionError(f"{name} is on the wrong barn list")
            for address in sheaf:
                slab = self._slab_of_pfn.get(address >> self._page_shift)
                if slab is None:
                    raise AssertionError(f"{name} holds {address:#x}, not of this cache")
                index, rest = divmod(address - slab.base, self.size)
                if rest or slab.used[index] != SHEAF_HELD:
                    raise AssertionError(f"{name} holds {address:#x}, not marked as sheaf-held")
            held += len(sheaf)
        marked = sum(slab.used.count(SHEAF_HELD) for slab in self._slabs())
        if marked != held:
            raise AssertionError(f"{self.name}: {marked} objects marked sheaf-held, {held} in"
                                 " sheaves (an object is in two sheaves or in none)")
        if self._barn is None and any(m is not self._bootstrap for m in self._main.values()):
            raise AssertionError(f"{self.name}: sheaves without a barn")
        if self._barn is not None and (len(self._barns) != self.nr_nodes
                                       or self._barns[0] is not self._barn):
            raise AssertionError(f"{self.name}: {len(self._barns)} barns for {self.nr_nodes}"
                                 " nodes")
        if self._barn is None and self._barns:
            raise AssertionError(f"{self.name}: node barns without sheaves")

    def check(self) -> None:
        with self._lock:
            self._check_common()
            self._check_lists()
            self._check_sheaves()


class SheafSlubCache(PercpuSheavesCache, SlubCache):
    """Linux 6.18: a cache created with sheaf_capacity, sheaves in front of 6.17 SLUB."""

    kernel = "6.18"

    def _alloc_from_slabs(self, cpu: int, gfp: int, node: int = -1) -> int:
        if node < 0:
            return SlubCache._alloc_unlocked(self, cpu, gfp)
        return self._alloc_node_unlocked(cpu, gfp, node)

    def _alloc_bulk(self, count: int, cpu: int, gfp: int) -> list[int]:
        # __kmem_cache_alloc_bulk: the cpu slab's freelist, the slow path when it runs dry;
        # all or nothing.
        objects: list[int] = []
        try:
            for _ in range(count):  # (6.18 refills with the allocation's gfp: pfmemalloc_match)
                objects.append(SlubCache._alloc_unlocked(self, cpu, gfp))
        except OutOfMemoryError:
            self._free_bulk(objects, cpu)
            return []
        return objects

    def _free_to_slab(self, slab: Slab, index: int, cpu: int) -> None:
        # do_slab_free of one object
        slab.used[index] = 0
        if slab is self._cpu_slab[cpu]:
            slab.freelist.append(index)
            self._fast[1] += 1
            return
        self._free_slowpath(slab, index, cpu)

    def _free_group(self, slab: Slab, indices: list[int], cpu: int) -> None:
        # do_slab_free of a detached freelist: one __slab_free for the whole group
        used = slab.used
        for index in indices:
            used[index] = 0
        if slab is self._cpu_slab[cpu]:
            slab.freelist.extend(indices)
            self._fast[1] += len(indices)
            return
        stat = self._stat
        stat[FREE_SLOWPATH] += 1
        where = slab.where
        if where == ON_CPU_PARTIAL:
            slab.freelist.extend(indices)
            return
        if where == ON_CPU:
            slab.remote.extend(indices)
            stat[FREE_FROZEN] += 1
            return
        freelist = slab.freelist
        was_full = not freelist
        freelist.extend(indices)
        if was_full:  # sheaf caches are never debug caches: cpu_partial is set
            self._put_cpu_partial(slab, cpu, drain=True)
            stat[CPU_PARTIAL_FREE] += 1
            return
        node = self._nodes[slab.node]
        if (where == ON_NODE_PARTIAL and len(freelist) == slab.objects
                and len(node) >= self.min_partial):
            del node[slab]
            stat[FREE_REMOVE_PARTIAL] += 1
            slab.where = ON_NONE
            self._discard_slab(slab, cpu=cpu)

    def _flush_cpu_slabs(self, cpu: int) -> None:
        self._flush_cpu(cpu)

    def _discard_empty_partials(self) -> int:
        discarded = 0
        for node in self._nodes:  # node by node
            for slab in [s for s in node if len(s.freelist) == s.objects]:
                del node[slab]
                slab.where = ON_NONE
                self._discard_slab(slab)
                discarded += 1
        return discarded

    def _lists(self) -> Iterator[tuple[int, int, Slab]]:
        return SlubCache._lists(self)


class Slub7Cache(PercpuSheavesCache):
    """Linux 7.0 SLUB: sheaves (or, at capacity 0, nothing) in front of the node partial list."""

    kernel = "7.0"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # every node's partial list; _node_partial is node 0's
        self._nodes: list[OrderedDict[Slab, None]] = [OrderedDict()
                                                      for _ in range(self.nr_nodes)]
        self._node_partial = self._nodes[0]

    # -- the slab side -------------------------------------------------------------------------

    def _alloc_from_slabs(self, cpu: int, gfp: int, node: int = -1) -> int:
        """___slab_alloc: one object from the first partial slab the allocation may use
        (get_from_partial_node's pfmemalloc_match: a pfmemalloc slab only with the right to
        the reserves) on the node asked for (NUMA_NO_NODE: the CPU's), then on the zonelist's
        nodes with more than min_partial slabs unless __GFP_THISNODE pins the node asked for
        (get_from_any_partial, searched always as get_any_partial of 6.17 here), else a new
        slab (to the head of its node's list)."""
        stat = self._stat
        stat[ALLOC_SLOWPATH] += 1
        search = self._cpu_node[cpu] if node < 0 else node
        candidates = [search]
        if self._numa is not None and not (node >= 0 and gfp & _GFP_THISNODE):
            candidates += [n for n in self._numa.zonelist[self._cpu_node[cpu]]
                           if len(self._nodes[n]) > self.min_partial]
        slab: Slab | None = None
        for nid in candidates:
            partial = self._nodes[nid]
            if partial:
                slab = next(iter(partial))
                if slab.pfmemalloc and not self._reserve_rights(gfp):
                    slab = next((s for s in partial if not s.pfmemalloc), None)
                if slab is not None:
                    break
        if slab is not None:
            index = slab.freelist.pop()
            if not slab.freelist:
                del self._nodes[slab.node][slab]
                slab.where = ON_NONE
        else:
            slab = self._new_slab(gfp, cpu, node)
            stat[ALLOC_SLAB] += 1
            index = slab.freelist.pop()
            if slab.freelist:
                node_list = self._nodes[slab.node]
                node_list[slab] = None
                node_list.move_to_end(slab, last=False)
                slab.where = ON_NODE_PARTIAL
        slab.used[index] = 1
        return slab.base + index * self.size

    def _alloc_bulk(self, count: int, cpu: int, gfp: int) -> list[int]:
        """refill_objects(min = max = count): whole freelists of partial slabs, then new slabs."""
        objects = self._refill_from_partial(count, cpu, self._reserve_rights(gfp))
        stat = self._stat
        size = self.size
        while len(objects) < count:
            try:
                slab = self._new_slab(gfp, cpu)
            except OutOfMemoryError:
                break
            stat[ALLOC_SLAB] += 1
            freelist = slab.freelist
            base = slab.base
            while freelist and len(objects) < count:
                objects.append(base + freelist.pop() * size)
            if freelist:  # (to the list of its node: the local one, or a fallback's)
                node = self._nodes[slab.node]
                node[slab] = None
                node.move_to_end(slab, last=False)
                slab.where = ON_NODE_PARTIAL
        return objects

    def _refill_from_partial(self, count: int, cpu: int, rights: bool = True) -> list[int]:
        """__refill_objects_node on ``cpu``: take partial slabs from the head until they hold
        ``count`` free objects (get_partial_node_bulk, passing over pfmemalloc slabs without
        the ``rights`` to the reserves: pfmemalloc_match), then empty their freelists, last
        taken first. The local node's list only: kmem does not model __refill_objects_any
        (other nodes' partial slabs for a refill); new slabs follow instead."""
        node = self._nodes[self._cpu_node[cpu]]
        taken: list[Slab] = []  # the end is the private list's head
        total = 0
        for slab in node:
            if slab.pfmemalloc and not rights:
                continue
            taken.append(slab)
            total += len(slab.freelist)
            if total >= count:
                break
        for slab in taken:
            del node[slab]
            slab.where = ON_NONE
        objects: list[int] = []
        size = self.size
        while taken and len(objects) < count:
            slab = taken.pop()
            freelist = slab.freelist
            base = slab.base
            while freelist and len(objects) < count:
                objects.append(base + freelist.pop() * size)
            if freelist:  # more than needed: __slab_free gives the rest back, in order
                rest = list(freelist)
                del freelist[:]
                self._slab_free(slab, rest, cpu)
        while taken:  # slabs not reached go back to the partial head
            slab = taken.pop()
            if len(slab.freelist) == slab.objects and len(node) >= self.min_partial:
                self._discard_slab(slab, cpu=cpu)
                continue
            node[slab] = None
            node.move_to_end(slab, last=False)
            slab.where = ON_NODE_PARTIAL
        return objects

    def _slab_free(self, slab: Slab, indices: list[int], cpu: int) -> None:
        """__slab_free on ``cpu`` of a detached freelist (push order) without cpu partial
        lists."""
        freelist = slab.freelist
        was_full = not freelist
        freelist.extend(indices)
        empty = len(freelist) == slab.objects
        if not empty and not was_full:
            return
        if (was_full and slab.where != ON_NONE) or (not was_full and slab.where != ON_NODE_PARTIAL):
            # Linux: a slab another CPU's refill took off the list meanwhile. kmem's refills
            # run under the cache lock, so no free sees one.
            return  # pragma: no cover
        node = self._nodes[slab.node]  # get_node(s, slab_nid(slab))
        stat = self._stat
        if empty and len(node) >= self.min_partial:
            if not was_full:
                del node[slab]
                stat[FREE_REMOVE_PARTIAL] += 1
            slab.where = ON_NONE
            self._discard_slab(slab, cpu=cpu)
            return
        if was_full:
            node[slab] = None
            slab.where = ON_NODE_PARTIAL
            stat[FREE_ADD_PARTIAL] += 1

    def _free_to_slab(self, slab: Slab, index: int, cpu: int) -> None:
        slab.used[index] = 0
        self._slab_free(slab, [index], cpu)
        self._stat[FREE_SLOWPATH] += 1

    def _free_group(self, slab: Slab, indices: list[int], cpu: int) -> None:
        used = slab.used
        for index in indices:
            used[index] = 0
        self._slab_free(slab, indices, cpu)

    def _discard_empty_partials(self) -> int:
        discarded = 0
        for node in self._nodes:  # node by node
            for slab in [s for s in node if len(s.freelist) == s.objects]:
                del node[slab]
                slab.where = ON_NONE
                self._discard_slab(slab)
                discarded += 1
        return discarded

    # -- reports and invariants ----------------------------------------------------------------

    def _lists(self) -> Iterator[tuple[int, int, Slab]]:
        for node in self._nodes:
            for slab in node:
                yield ON_NODE_PARTIAL, -1, slab

    def _active_objs(self) -> int:
        total = sum(s.objects for s in self._slabs())
        return total - sum(len(s.freelist) for node in self._nodes for s in node)

    def _check_lists(self) -> None:
        seen: set[int] = set()
        for where, _, slab in self._lists():
            name = f"{self.name}: slab at pfn {slab.pfn:#x}"
            if slab.where != where or slab.cpu != -1:
                raise AssertionError(f"{name}: where={slab.where} cpu={slab.cpu}, on {where}")
            if not slab.freelist:
                raise AssertionError(f"{name}: full slab on the node partial list")
            if self._slab_of_pfn.get(slab.pfn) is not slab:
                raise AssertionError(f"{name}: on a list but not in the cache")
            seen.add(id(slab))
        self._check_nodes()
        for slab in self._slabs():
            if id(slab) not in seen:
                if slab.where != ON_NONE:
                    raise AssertionError(f"{self.name}: slab {slab.pfn:#x} lost from its list")
                if slab.freelist or slab.remote:
                    raise AssertionError(
                        f"{self.name}: slab {slab.pfn:#x} with free objects is on no list")



__all__ = ["PercpuSheavesCache", "SheafSlubCache", "Slub7Cache"]
