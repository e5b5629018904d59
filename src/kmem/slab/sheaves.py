"""Sheaves and barns: SLUB's per-CPU object arrays of Linux 6.18 and 7.0 (mm/slub.c).

A sheaf is an array of object addresses used as a stack (Linux: struct slab_sheaf, objects[]
and size). Each CPU of a cache with sheaves has

    main        the sheaf allocations pop and frees push (never missing)
    spare       None, or a sheaf that is completely empty or completely full
    rcu_free    None, or the sheaf kfree_rcu() fills; when full it waits for an RCU grace
                period, then goes to the barn (rcu_free_sheaf)

and the cache's one node has a barn: a list of full sheaves and a list of empty ones (both
LIFO). Transitions (see /docs/sheaves.md for the whole table):

    alloc, main empty:  swap with a non-empty spare; else trade main for a full barn sheaf
                        (barn_get); else refill the spare or an empty barn sheaf, or a new
                        sheaf, from the slabs (sheaf_refill) -- only when the gfp may block;
                        else the allocation goes to the slabs directly
    free, main full:    spare missing: an empty barn sheaf becomes main, main the spare;
                        spare empty: swap; else trade main for an empty barn sheaf (barn_put)
                        unless the barn holds MAX_FULL_SHEAVES full ones, in which case the
                        spare is flushed to the slabs and reused (barn_put_fail); no empty
                        sheaf anywhere: a new one (GFP_NOWAIT), else flush main to the slabs

Sheaves are kmalloc'd: 32 header bytes plus 8 per object (kmalloc-512 for capacity 32), and
each cache with sheaves kmallocs a 48-byte barn (kmalloc-64) and one main sheaf per CPU when it
is created. ``SheafHost`` is the allocator's side of that: kzalloc, kfree and call_rcu.

Tunables: the capacity (kmem_cache_create's sheaf_capacity in 6.18; calculate_sheaf_capacity
from the slot size in 7.0), MAX_FULL_SHEAVES and MAX_EMPTY_SHEAVES (10 each, checked only where
Linux checks them), PCS_BATCH_MAX (32: the main sheaf is flushed in batches that size).

Invariants (``check_sheaves``): an object in a sheaf is allocated from its slab but belongs to
no user (its slab's ``used`` byte is SHEAF_HELD); it is in exactly one sheaf; main holds at
most capacity objects, the spare and the barn's full sheaves exactly capacity or (spare and
empty list) none; every sheaf is a live kmalloc object of at least sheaf_size(capacity) bytes.

The hot paths are list operations (pop, append, len) and one byte store per object, so they
can be mirrored in C.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from kmem.errors import InvalidArgumentError, InvalidTypeError
from kmem.slab.slabs import SHEAF_HELD

KERNELS: Final = ("6.17", "6.18", "7.0")
DEFAULT_KERNEL: Final = "6.18"

MAX_FULL_SHEAVES: Final = 10
MAX_EMPTY_SHEAVES: Final = 10
PCS_BATCH_MAX: Final = 32
SHEAF_HEADER_SIZE: Final = 32  # union(rcu_head, list_head, ...) 16, cache 8, size 4, node 4
NODE_BARN_SIZE: Final = 48  # spinlock (padded) 8, two list heads 32, nr_full and nr_empty 8
POINTER_SIZE: Final = 8


# Stand-ins for the kernel return addresses of the kmalloc calls that allocate sheaves and barns
# (alloc_empty_sheaf, init_kmem_cache_nodes): with random kmalloc caches every sheaf comes from
# one call site, so all of them share one kmalloc-rnd-NN copy.
SHEAF_CALLER: Final = 0xFFFFFFFF8130A2C0
BARN_CALLER: Final = 0xFFFFFFFF8130B470

# The caches Linux creates with an explicit sheaf_capacity (lib/maple_tree.c, mm/vma_init.c; the
# same in 6.18 and 7.0), for callers that recreate kernel caches by name, as a trace replay does.
KERNEL_SHEAF_CAPACITIES: Final = {"maple_node": 32, "vm_area_struct": 32}

# Counters of sheaves and barns, named as /sys/kernel/slab/<cache>/ stat files.
SHEAF_STAT_NAMES: Final = (
    "alloc_cpu_sheaf", "free_cpu_sheaf", "free_rcu_sheaf", "free_rcu_sheaf_fail",
    "sheaf_flush", "sheaf_refill", "sheaf_alloc", "sheaf_free", "barn_get", "barn_get_fail",
    "barn_put", "barn_put_fail", "sheaf_prefill_fast", "sheaf_prefill_slow",
    "sheaf_prefill_oversize", "sheaf_return_fast", "sheaf_return_slow",
)
(ALLOC_CPU_SHEAF, FREE_CPU_SHEAF, FREE_RCU_SHEAF, FREE_RCU_SHEAF_FAIL, SHEAF_FLUSH, SHEAF_REFILL,
 SHEAF_ALLOC, SHEAF_FREE, BARN_GET, BARN_GET_FAIL, BARN_PUT, BARN_PUT_FAIL, SHEAF_PREFILL_FAST,
 SHEAF_PREFILL_SLOW, SHEAF_PREFILL_OVERSIZE, SHEAF_RETURN_FAST, SHEAF_RETURN_SLOW) = range(17)

# Which stat files each kernel has (CONFIG_SLUB_STATS), in their sysfs order.
STAT_FILES_6_17: Final = (
    "alloc_fastpath", "alloc_slowpath", "free_fastpath", "free_slowpath", "free_frozen",
    "free_add_partial", "free_remove_partial", "alloc_from_partial", "alloc_slab",
    "alloc_refill", "alloc_node_mismatch", "free_slab", "cpuslab_flush", "deactivate_full",
    "deactivate_empty", "deactivate_to_head", "deactivate_to_tail", "deactivate_remote_frees",
    "deactivate_bypass", "order_fallback", "cpu_partial_alloc", "cpu_partial_free",
    "cpu_partial_node", "cpu_partial_drain",
)
STAT_FILES_6_18: Final = (
    "alloc_cpu_sheaf", *STAT_FILES_6_17[:2], "free_cpu_sheaf", "free_rcu_sheaf",
    "free_rcu_sheaf_fail", *STAT_FILES_6_17[2:], *SHEAF_STAT_NAMES[4:],
)
STAT_FILES_7_0: Final = (
    "alloc_fastpath", "alloc_slowpath", "free_rcu_sheaf", "free_rcu_sheaf_fail",
    "free_fastpath", "free_slowpath", "free_add_partial", "free_remove_partial", "alloc_slab",
    "alloc_node_mismatch", "free_slab", "order_fallback", *SHEAF_STAT_NAMES[4:],
)
STAT_FILES: Final = {"6.17": STAT_FILES_6_17, "6.18": STAT_FILES_6_18, "7.0": STAT_FILES_7_0}


class UnknownKernelError(InvalidArgumentError):
    """kernel= names a kernel kmem does not model (it models 6.17, 6.18 and 7.0)."""


class SheafCapacityError(InvalidArgumentError):
    """A sheaf_capacity that is negative, too large, or given where sheaves do not exist."""


def check_kernel(kernel: object) -> str:
    """The kernel version string if kmem models it, else UnknownKernelError."""
    if not isinstance(kernel, str):
        raise InvalidTypeError(f"kernel must be a str such as '6.18', not {type(kernel).__name__}")
    if kernel not in KERNELS:
        raise UnknownKernelError(
            f"kernel {kernel!r} is not modelled: choose one of {', '.join(KERNELS)}")
    return kernel


def check_sheaf_capacity(capacity: object) -> int:
    """kmem_cache_args.sheaf_capacity: an unsigned int (0: no sheaves asked for)."""
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise InvalidTypeError(f"sheaf_capacity must be an int, not {type(capacity).__name__}")
    if capacity < 0:
        raise SheafCapacityError(f"sheaf_capacity must be >= 0, not {capacity}")
    if capacity > 1 << 20:  # a sheaf is one kmalloc: its objects array must fit in 8 MiB
        raise SheafCapacityError(f"sheaf_capacity {capacity} makes a sheaf larger than kmalloc")
    return capacity


def sheaf_size(capacity: int) -> int:
    """Bytes of a sheaf of ``capacity`` objects: struct_size(sheaf, objects, capacity)."""
    return SHEAF_HEADER_SIZE + POINTER_SIZE * capacity


def calculate_sheaf_capacity(slot_size: int, requested: int, page_size: int,
                             kmalloc_roundup: Callable[[int], int]) -> int:
    """Linux 7.0 calculate_sheaf_capacity for a cache with sheaves allowed (no debug flags).

    Half the old per-CPU partial budget by slot size, grown to fill the kmalloc slot the sheaf
    lands in, and never below an explicit request.
    """
    if slot_size >= page_size:
        capacity = 4
    elif slot_size >= 1024:
        capacity = 12
    elif slot_size >= 256:
        capacity = 26
    else:
        capacity = 60
    capacity = (kmalloc_roundup(sheaf_size(capacity)) - SHEAF_HEADER_SIZE) // POINTER_SIZE
    return max(capacity, requested)


class Sheaf(list[int]):
    """A sheaf: the object addresses it holds (the end is the top) and its own kmalloc address."""

    __slots__ = ("address",)

    def __init__(self, address: int) -> None:
        super().__init__()
        self.address = address

    def __repr__(self) -> str:
        return f"Sheaf(at {self.address:#x}, {len(self)} objects)"


class Barn:
    """A node's barn: full and empty sheaves, each list LIFO (the end is Linux's list head)."""

    __slots__ = ("address", "empty", "full")

    def __init__(self, address: int) -> None:
        self.address = address
        self.full: list[Sheaf] = []
        self.empty: list[Sheaf] = []

    def get_empty(self) -> Sheaf | None:
        """barn_get_empty_sheaf."""
        return self.empty.pop() if self.empty else None

    def replace_empty(self, empty: Sheaf) -> Sheaf | None:
        """barn_replace_empty_sheaf: a full sheaf for ``empty``, or None (nothing changes)."""
        if not self.full:
            return None
        full = self.full.pop()
        self.empty.append(empty)
        return full

    def replace_full(self, full: Sheaf) -> Sheaf | str:
        """barn_replace_full_sheaf: an empty sheaf for ``full``; "E2BIG" when the barn already
        holds MAX_FULL_SHEAVES full sheaves, "ENOMEM" when it has no empty one."""
        if len(self.full) >= MAX_FULL_SHEAVES:
            return "E2BIG"
        if not self.empty:
            return "ENOMEM"
        empty = self.empty.pop()
        self.full.append(full)
        return empty


class SheafHost:
    """What a cache with sheaves needs from its allocator: memory for sheaves and barns
    (kzalloc / kfree on a CPU, with a caller address for random kmalloc caches) and RCU."""

    def __init__(self, kzalloc: Callable[[int, int, int, int], int],
                 kfree: Callable[[int, int], None],
                 call_rcu: Callable[[Callable[[], None]], None],
                 kzalloc_node: Callable[[int, int, int, int, int], int] | None = None) -> None:
        self.kzalloc = kzalloc  # (size, gfp, cpu, caller) -> address; OutOfMemoryError
        self.kfree = kfree  # (address, cpu)
        self.call_rcu = call_rcu  # run the callback after the next grace period
        # (size, gfp, node, cpu, caller) -> address: a barn on its node (kmalloc_node)
        self._kzalloc_node = kzalloc_node

    def kzalloc_node(self, size: int, gfp: int, node: int, cpu: int, caller: int) -> int:
        """kzalloc on ``node``; without a node-aware allocator (one node) plain kzalloc."""
        if self._kzalloc_node is None:
            return self.kzalloc(size, gfp, cpu, caller)
        return self._kzalloc_node(size, gfp, node, cpu, caller)


def build_detached_freelist(objects: list[int], size: int,
                            slab_key: Callable[[int], object]) -> tuple[list[int], int]:
    """Linux build_detached_freelist on objects[0:size]: the last object and the objects of
    its slab found scanning downwards, with 3 look-ahead credits spent on other slabs' objects.

    Returns (the group, in the order Linux's detached freelist pushes them: the last object
    first) and how many objects remain at objects[0:remaining] (the group was swapped above).
    """
    size -= 1
    first = objects[size]
    key = slab_key(first)
    group = [first]
    same = size
    lookahead = 3
    while size:
        size -= 1
        address = objects[size]
        if slab_key(address) is key:
            group.append(address)
            same -= 1
            if size != same:
                objects[size], objects[same] = objects[same], objects[size]
            continue
        lookahead -= 1
        if not lookahead:
            break
    return group, same


__all__ = [
    "BARN_CALLER",
    "DEFAULT_KERNEL",
    "KERNELS",
    "KERNEL_SHEAF_CAPACITIES",
    "MAX_EMPTY_SHEAVES",
    "MAX_FULL_SHEAVES",
    "NODE_BARN_SIZE",
    "PCS_BATCH_MAX",
    "SHEAF_CALLER",
    "SHEAF_HELD",
    "SHEAF_STAT_NAMES",
    "STAT_FILES",
    "Barn",
    "Sheaf",
    "SheafCapacityError",
    "SheafHost",
    "UnknownKernelError",
    "build_detached_freelist",
    "calculate_sheaf_capacity",
    "check_kernel",
    "check_sheaf_capacity",
    "sheaf_size",
]
