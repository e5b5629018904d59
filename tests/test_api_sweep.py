"""Every public method, every argument, every kind of bad value: a KmemError, nothing changed.

The sweep takes each public method of BuddyAllocator, PhysicalMemory, the slab caches (SLUB,
classic, debug) and the SlabAllocator/kmalloc API, and calls it once for every (argument,
bad value) pair, the other arguments valid: bools, floats, nan, None, strings, negative
numbers, 2**100 and -2**100, lists and foreign objects. Each call must raise a KmemError
subclass (never a raw TypeError, KeyError or AttributeError) and leave the whole state --
frames, free lists, counters, every slab and its lists, slabinfo, the bytes of every slab page
-- exactly as it was, with check() passing. A few values are valid for some arguments
(kfree(None) is NULL, kmalloc_cache_for of a size above 8 KiB is None): those are listed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import buddy_snapshot
from kmem import BuddyAllocator, KmemError, PhysicalMemory, SlabAllocator
from kmem.slab.flags import SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER
from test_slab import slab_snapshot

MiB = 1 << 20


class Foreign:
    """An object of no type kmem knows."""


BAD_VALUES: list[Any] = [True, False, 1.5, math.nan, math.inf, None, "3", b"3", -1, -(2**100),
                         2**100, [0], (0,), Foreign()]


def _name(value: Any) -> str:
    return type(value).__name__ if isinstance(value, Foreign) else repr(value)[:12]


class SlabWorld:
    """A slab allocator with live objects in a plain, a debug cache and kmalloc, on ``setup``:
    a policy, or SLUB of a kernel with sheaves ("6.18": a cache asking for them, "7.0")."""

    def __init__(self, setup: str) -> None:
        policy, _, kernel = setup.partition("-")
        self.slab = SlabAllocator(BuddyAllocator(8 * MiB), nr_cpus=2, policy=policy,
                                  kernel=kernel or "6.18")
        self.cache = self.slab.kmem_cache_create(
            "plain", 200, sheaf_capacity=8 if kernel == "6.18" else 0)
        self.debug = self.slab.kmem_cache_create(
            "debug", 100, flags=SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER)
        self.objects = [self.cache.alloc(cpu % 2) for cpu in range(30)]
        self.debug_objects = [self.debug.alloc() for _ in range(5)]
        self.small = self.slab.kmalloc(100)
        self.large = self.slab.kmalloc(5 * 4096)

    def snapshot(self) -> tuple[Any, ...]:
        return slab_snapshot(self.slab), self.slab.slabinfo(), self.slab.buddy.stats()

    def check(self) -> None:
        self.slab.check()


class BuddyWorld:
    """A buddy allocator with allocated blocks of several orders and a reserved range."""

    def __init__(self, _policy: str) -> None:
        self.buddy = BuddyAllocator(64 * 4096, reserved=[(60 * 4096, 4 * 4096)])
        self.blocks = [self.buddy.alloc_pages(order) for order in (3, 0, 2, 1)]

    def snapshot(self) -> tuple[Any, ...]:
        return buddy_snapshot(self.buddy), bytes(self.buddy.memory.view(0, 64 * 4096))

    def check(self) -> None:
        self.buddy.check()


class MemoryWorld:
    def __init__(self, _policy: str) -> None:
        self.memory = PhysicalMemory(16 * 4096)
        self.memory.view(0, 8)[:] = b"12345678"

    def snapshot(self) -> tuple[Any, ...]:
        return self.memory.closed, bytes(self.memory.view(0, 16 * 4096))

    def check(self) -> None:
        assert not self.memory.closed


@dataclass(frozen=True)
class Method:
    """A public method: the world it needs, how to call it with valid arguments (``valid``
    builds them from the world), and the bad values that are in fact valid for an argument."""

    name: str
    world: type[Any]
    call: Callable[..., object]
    valid: Callable[[Any], list[Any]]
    accepts: Callable[[int, Any], bool] = lambda position, value: False
    skips: Callable[[int, Any], bool] = lambda position, value: False  # not to be tried


def _is_none(position: int, value: Any, where: int = 0) -> bool:
    return position == where and value is None


METHODS: list[Method] = [
    # -- BuddyAllocator -----------------------------------------------------------------------
    Method("BuddyAllocator.alloc_pages", BuddyWorld, lambda w, o: w.buddy.alloc_pages(o),
           lambda w: [0]),
    Method("BuddyAllocator.free_pages", BuddyWorld, lambda w, p, o: w.buddy.free_pages(p, o),
           lambda w: [w.blocks[0], 3]),
    Method("BuddyAllocator.alloc", BuddyWorld, lambda w, n: w.buddy.alloc(n), lambda w: [4096]),
    Method("BuddyAllocator.free", BuddyWorld, lambda w, a: w.buddy.free(a), lambda w: [0]),
    Method("BuddyAllocator.block_at", BuddyWorld, lambda w, p: w.buddy.block_at(p),
           lambda w: [0]),
    Method("BuddyAllocator.view", BuddyWorld, lambda w, a: w.buddy.view(a), lambda w: [0]),
    Method("BuddyAllocator.view_pages", BuddyWorld, lambda w, p: w.buddy.view_pages(p),
           lambda w: [0]),
    Method("BuddyAllocator.free_blocks", BuddyWorld, lambda w, o: w.buddy.free_blocks(o),
           lambda w: [0]),
    Method("BuddyAllocator.alloc_pages_in", BuddyWorld,
           lambda w, o, r: w.buddy.alloc_pages_in(o, r), lambda w: [0, [(0, 16)]]),
    Method("BuddyAllocator()", BuddyWorld,
           lambda w, size, page_size, max_order, node, zone, reserved: BuddyAllocator(
               size, page_size, max_order, node=node, zone=zone, reserved=reserved),
           lambda w: [1 << 20, 4096, 10, 0, "Normal", [(0, 4096)]],
           # size=None needs memory=; a size of 2**100 pages is refused as too large
           ),
    Method("BuddyAllocator(memory=)", BuddyWorld,
           lambda w, memory: BuddyAllocator(memory=memory), lambda w: [PhysicalMemory(1 << 16)]),
    # -- PhysicalMemory -----------------------------------------------------------------------
    Method("PhysicalMemory.view", MemoryWorld, lambda w, a, n: w.memory.view(a, n),
           lambda w: [0, 8]),
    Method("PhysicalMemory.on_close", MemoryWorld, lambda w, c: w.memory.on_close(c),
           lambda w: [w.check]),
    Method("PhysicalMemory()", MemoryWorld,
           lambda w, size, page_size, backing: PhysicalMemory(size, page_size, backing),
           lambda w: [1 << 16, 4096, None],
           accepts=lambda position, value: position == 2 and value is None,
           skips=lambda position, value: position == 2 and isinstance(value, str)),  # a path
    # -- the slab caches ----------------------------------------------------------------------
    Method("KmemCache.alloc", SlabWorld, lambda w, cpu, gfp: w.cache.alloc(cpu, gfp),
           lambda w: [0, 0]),
    Method("KmemCache.free", SlabWorld, lambda w, a, cpu: w.cache.free(a, cpu),
           lambda w: [w.objects[0], 0]),
    Method("debug KmemCache.alloc", SlabWorld, lambda w, cpu, gfp: w.debug.alloc(cpu, gfp),
           lambda w: [0, 0]),
    Method("debug KmemCache.free", SlabWorld, lambda w, a, cpu: w.debug.free(a, cpu),
           lambda w: [w.debug_objects[0], 0]),
    Method("KmemCache.view", SlabWorld, lambda w, a: w.cache.view(a),
           lambda w: [w.objects[0]]),
    Method("KmemCache.kfree_rcu", SlabWorld,
           lambda w, a, cpu: w.cache.kfree_rcu(a, cpu, lambda callback: None),
           lambda w: [w.objects[0], 0]),
    # -- SlabAllocator and kmalloc ------------------------------------------------------------
    Method("SlabAllocator()", SlabWorld,
           lambda w, buddy, nr_cpus, policy, kernel, seed: SlabAllocator(
               buddy, nr_cpus, policy, kernel=kernel, random_kmalloc_seed=seed),
           lambda w: [BuddyAllocator(1 << 20), 2, "slub", "6.18", 1],
           accepts=lambda position, value: position == 4 and value is None),
    Method("kmem_cache_create", SlabWorld,
           lambda w, size, align, flags, useroffset, usersize, sheaf_capacity:
           w.slab.kmem_cache_create("new", size, align, flags, useroffset=useroffset,
                                    usersize=usersize, sheaf_capacity=sheaf_capacity),
           lambda w: [64, 0, 0, 0, 0, 0]),
    Method("kmem_cache_create name", SlabWorld,
           lambda w, name: w.slab.kmem_cache_create(name, 64), lambda w: ["new"],
           accepts=lambda position, value: value == "3"),  # a name like any other
    Method("kmem_cache_destroy", SlabWorld, lambda w, c: w.slab.kmem_cache_destroy(c),
           lambda w: [w.cache]),
    Method("kmem_cache_alloc", SlabWorld, lambda w, c, cpu: w.slab.kmem_cache_alloc(c, cpu),
           lambda w: [w.cache, 0]),
    Method("kmem_cache_free", SlabWorld,
           lambda w, c, a, cpu: w.slab.kmem_cache_free(c, a, cpu),
           lambda w: [w.cache, w.objects[1], 0]),
    Method("kmalloc", SlabWorld, lambda w, n, gfp, cpu: w.slab.kmalloc(n, gfp, cpu),
           lambda w: [100, 0, 0]),
    Method("kmalloc large", SlabWorld, lambda w, n, gfp, cpu: w.slab.kmalloc(n, gfp, cpu),
           lambda w: [20000, 0, 0]),
    Method("kmalloc_large", SlabWorld, lambda w, n, gfp: w.slab.kmalloc_large(n, gfp),
           lambda w: [20000, 0]),
    Method("kzalloc", SlabWorld, lambda w, n, gfp, cpu: w.slab.kzalloc(n, gfp, cpu),
           lambda w: [100, 0, 0]),
    Method("kcalloc", SlabWorld, lambda w, k, n, gfp, cpu: w.slab.kcalloc(k, n, gfp, cpu),
           lambda w: [4, 25, 0, 0]),
    Method("kmalloc_cache_for", SlabWorld, lambda w, n, gfp: w.slab.kmalloc_cache_for(n, gfp),
           lambda w: [100, 0],
           accepts=lambda position, value: position == 0 and value == 2**100),  # None: > 8K
    Method("kfree", SlabWorld, lambda w, a, cpu: w.slab.kfree(a, cpu),
           lambda w: [w.small, 0], accepts=_is_none),
    Method("kfree large", SlabWorld, lambda w, a, cpu: w.slab.kfree(a, cpu),
           lambda w: [w.large, 0], accepts=_is_none),
    Method("ksize", SlabWorld, lambda w, a: w.slab.ksize(a), lambda w: [w.small]),
    Method("cache_of", SlabWorld, lambda w, a: w.slab.cache_of(a), lambda w: [w.small]),
    Method("krealloc", SlabWorld, lambda w, a, n, gfp, cpu: w.slab.krealloc(a, n, gfp, cpu),
           lambda w: [w.small, 50, 0, 0], accepts=_is_none),
    Method("kfree_rcu", SlabWorld, lambda w, a, cpu: w.slab.kfree_rcu(a, cpu),
           lambda w: [w.small, 0], accepts=_is_none),
    # (node -1 is NUMA_NO_NODE: a valid node)
    Method("kmalloc_node", SlabWorld,
           lambda w, n, gfp, node, cpu: w.slab.kmalloc_node(n, gfp, node, cpu),
           lambda w: [100, 0, 0, 0], accepts=lambda position, value: position == 2
           and value == -1),
    Method("kmem_cache_alloc_node", SlabWorld,
           lambda w, c, gfp, node, cpu: w.slab.kmem_cache_alloc_node(c, gfp, node, cpu),
           lambda w: [w.cache, 0, 0, 0], accepts=lambda position, value: position == 2
           and value == -1),
    Method("KmemCache.alloc_node", SlabWorld,
           lambda w, cpu, gfp, node: w.cache.alloc_node(cpu, gfp, node), lambda w: [0, 0, 0],
           accepts=lambda position, value: position == 2 and value == -1),
    Method("node_of", SlabWorld, lambda w, a: w.slab.node_of(a), lambda w: [w.small]),
]

# SLUB's flush_cpu (the classic policy has no per-CPU state to flush).
SLUB_ONLY: list[Method] = [
    Method("SlubCache.flush_cpu", SlabWorld, lambda w, cpu: w.cache.flush_cpu(cpu),
           lambda w: [0]),
    Method("SlubDebugCache.track", SlabWorld, lambda w, a: w.debug.track(a),
           lambda w: [w.debug_objects[0]]),
]


def _sweep(method: Method, policy: str) -> int:
    """Call ``method`` with each bad value in each argument; return the number of calls."""
    world = method.world(policy)
    arity = len(method.valid(world))
    tried = 0
    for position in range(arity):
        for value in BAD_VALUES:
            args = method.valid(world)
            if args[position] is value or method.skips(position, value) or (
                    type(args[position]) is type(value) and args[position] == value):
                continue  # (the valid value itself, or one not to try)
            args[position] = value
            before = world.snapshot()
            what = f"{method.name} argument {position} = {_name(value)}"
            try:
                method.call(world, *args)
            except KmemError:
                pass
            except Exception as error:  # pragma: no cover - what the sweep is looking for
                pytest.fail(f"{what}: raw {type(error).__name__}: {error}")
            else:
                if not method.accepts(position, value):
                    pytest.fail(f"{what}: accepted")
                tried += 1
                world = method.world(policy)  # a valid call may change state: start again
                continue
            assert world.snapshot() == before, f"{what}: the state changed"
            world.check()
            tried += 1
    return tried


SETUPS = ["slub", "slab", "slub-6.18", "slub-7.0"]
@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_every_bad_value_in_every_argument_is_a_kmem_error_and_changes_nothing(
        method: Method, setup: str) -> None:
    if method.world is not SlabWorld and setup != "slub":
        pytest.skip("not a slab method: swept once")
    assert _sweep(method, setup) >= len(BAD_VALUES) - 2


@pytest.mark.parametrize("setup", [s for s in SETUPS if s != "slab"])
@pytest.mark.parametrize("method", SLUB_ONLY, ids=[m.name for m in SLUB_ONLY])
def test_slub_only_methods_too(method: Method, setup: str) -> None:
    assert _sweep(method, setup) >= len(BAD_VALUES) - 2


def test_the_sweep_covers_every_public_method_of_the_allocators() -> None:
    """A new public method must join the sweep: the list names every one."""
    swept = {m.name.split(" ")[-1].split(".")[-1].rstrip("()") for m in METHODS + SLUB_ONLY}
    queries = {"nr_free", "nr_free_pages", "largest_free_order", "stats", "fragmentation",
               "buddyinfo", "check", "blocks", "block_tuples", "flush", "close", "slabinfo",
               "shrink", "synchronize_rcu", "kvfree_rcu_barrier", "cache_list", "slab_pages",
               "live_objects", "large_kmalloc_pages", "large_kmalloc_bytes", "closed"}
    for cls in (BuddyAllocator, PhysicalMemory, SlabAllocator):
        public = {name for name in dir(cls) if not name.startswith("_")}
        missing = public - swept - queries - {"compiled_core", "thread_safe"}
        assert not missing, f"{cls.__name__}: not swept: {sorted(missing)}"


def sweep_count() -> int:
    """How many bad calls the sweep makes (for the issue's closing note)."""
    total = 0
    for method in METHODS + SLUB_ONLY:
        for setup in SETUPS if method.world is SlabWorld else ["slub"]:
            if method in SLUB_ONLY and setup == "slab":
                continue
            total += _sweep(method, setup)
    return total
