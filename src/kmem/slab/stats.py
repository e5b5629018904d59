"""The slab layer's records: a cache's counters, its /proc/slabinfo line, a live object.

Frozen snapshots, made under the cache's lock by KmemCache.stats(), slabinfo() and
live_objects(); the counters are named as /sys/kernel/slab/<cache>/ stat files
(CONFIG_SLUB_STATS), and KmemCache keeps them in one list indexed by the constants below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class LiveObject:
    """An object still allocated when its cache was destroyed (a leak)."""

    address: int
    slab_pfn: int
    index: int
    caller: str | None = None  # who allocated it (SLAB_STORE_USER caches only)


@dataclass(frozen=True, slots=True)
class SlabInfo:
    """A cache's line of /proc/slabinfo, field by field."""

    name: str
    active_objs: int
    num_objs: int
    objsize: int
    objperslab: int
    pagesperslab: int
    limit: int
    batchcount: int
    sharedfactor: int
    active_slabs: int
    num_slabs: int
    sharedavail: int


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A cache's counters, named as /sys/kernel/slab/<cache>/ stat files (CONFIG_SLUB_STATS).

    The classic policy counts an allocation from an existing slab as a fast path and one that
    had to grow the cache as a slow path; it has no cpu partial or deactivate events.
    """

    name: str
    policy: str
    objects: int  # allocated objects now
    total_objects: int  # object slots in all slabs
    slabs: int
    partial_slabs: int  # on the node partial list
    cpu_slabs: int  # SLUB cpu slabs
    cpu_partial_slabs: int  # slabs on all CPUs' partial lists
    full_slabs: int  # on a full list (debug SLUB, classic) or untracked full (SLUB)
    empty_slabs: int  # slabs with no allocated object
    alloc_fastpath: int
    alloc_slowpath: int
    free_fastpath: int
    free_slowpath: int
    free_frozen: int
    free_add_partial: int
    free_remove_partial: int
    alloc_from_partial: int
    alloc_slab: int
    alloc_refill: int
    alloc_node_mismatch: int
    free_slab: int
    cpuslab_flush: int
    deactivate_full: int
    deactivate_empty: int
    deactivate_to_head: int
    deactivate_to_tail: int
    deactivate_remote_frees: int
    deactivate_bypass: int
    order_fallback: int
    cpu_partial_alloc: int
    cpu_partial_free: int
    cpu_partial_node: int
    cpu_partial_drain: int
    bytes_requested: int  # kmalloc: sum of bytes asked for, since boot
    bytes_allocated: int  # kmalloc: kmalloc calls served x slab_size (Linux's bytes_alloc)
    # Sheaves (Linux 6.18 and 7.0; all 0 for a cache without them): the census ...
    sheaf_capacity: int = 0
    sheaves: int = 0  # sheaves of this cache: per-CPU, in the barn, waiting for RCU
    cpu_sheaf_objects: int = 0  # objects in the CPUs' main and spare sheaves
    barn_full: int = 0  # full sheaves in the barn
    barn_empty: int = 0  # empty sheaves in the barn
    barn_objects: int = 0  # objects in the barn's full sheaves
    rcu_sheaf_objects: int = 0  # kfree_rcu'd objects batched in rcu_free sheaves
    # ... and the counters (kmem.slab.sheaves.SHEAF_STAT_NAMES), as sysfs names them
    alloc_cpu_sheaf: int = 0  # 6.18: allocations from a CPU's sheaves (7.0: alloc_fastpath)
    free_cpu_sheaf: int = 0  # 6.18: frees to a CPU's sheaves (7.0: free_fastpath)
    free_rcu_sheaf: int = 0
    free_rcu_sheaf_fail: int = 0
    sheaf_flush: int = 0  # objects flushed from sheaves to slabs
    sheaf_refill: int = 0  # objects refilled into sheaves from slabs
    sheaf_alloc: int = 0  # sheaves allocated (kmalloc'd)
    sheaf_free: int = 0  # sheaves freed
    barn_get: int = 0
    barn_get_fail: int = 0
    barn_put: int = 0
    barn_put_fail: int = 0
    sheaf_prefill_fast: int = 0
    sheaf_prefill_slow: int = 0
    sheaf_prefill_oversize: int = 0
    sheaf_return_fast: int = 0
    sheaf_return_slow: int = 0

    @property
    def sheaf_objects(self) -> int:
        """Objects held in sheaves: allocated from the slabs, not by a user."""
        return self.cpu_sheaf_objects + self.barn_objects + self.rcu_sheaf_objects

    @property
    def internal_fragmentation(self) -> float:
        """Share of kmalloc'd bytes wasted by rounding up to the size class (0.0 .. 1.0)."""
        if not self.bytes_allocated:
            return 0.0
        return 1.0 - self.bytes_requested / self.bytes_allocated


# Counter names, in CacheStats order; KmemCache keeps them in one list indexed by these.
STAT_NAMES: Final = (
    "alloc_fastpath", "alloc_slowpath", "free_fastpath", "free_slowpath", "free_frozen",
    "free_add_partial", "free_remove_partial", "alloc_from_partial", "alloc_slab",
    "alloc_refill", "alloc_node_mismatch", "free_slab", "cpuslab_flush", "deactivate_full",
    "deactivate_empty", "deactivate_to_head", "deactivate_to_tail", "deactivate_remote_frees",
    "deactivate_bypass", "order_fallback", "cpu_partial_alloc", "cpu_partial_free",
    "cpu_partial_node", "cpu_partial_drain",
)
(ALLOC_FASTPATH, ALLOC_SLOWPATH, FREE_FASTPATH, FREE_SLOWPATH, FREE_FROZEN, FREE_ADD_PARTIAL,
 FREE_REMOVE_PARTIAL, ALLOC_FROM_PARTIAL, ALLOC_SLAB, ALLOC_REFILL, ALLOC_NODE_MISMATCH,
 FREE_SLAB, CPUSLAB_FLUSH, DEACTIVATE_FULL, DEACTIVATE_EMPTY, DEACTIVATE_TO_HEAD,
 DEACTIVATE_TO_TAIL, DEACTIVATE_REMOTE_FREES, DEACTIVATE_BYPASS, ORDER_FALLBACK,
 CPU_PARTIAL_ALLOC, CPU_PARTIAL_FREE, CPU_PARTIAL_NODE, CPU_PARTIAL_DRAIN) = range(24)
