"""Several NUMA nodes on the compiled core and on the pure one, in lockstep.

The compiled fast paths do not look at nodes except the sheaf free, which hands an object of
another node than the freeing CPU's to the pure path (Linux's slab_free bypasses the sheaves
for it). The same random calls -- alloc, alloc_node and kmalloc_node for every node (and bad
ones), frees and kfree_rcu on every CPU (so many remote), grace periods, flushes, shrinks --
go to two SlabAllocators of 2 or 4 nodes, one on each core; after every call the result or
error and the whole state (slab_snapshot, each node's partial list, each node's barn) must be
the same, and check() must pass.
"""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import pytest

from core_twins import needs_compiled, outcome, twins
from kmem import BuddyAllocator, SlabAllocator
from kmem.page.gfp import __GFP_THISNODE, GFP_ATOMIC, GFP_KERNEL
from kmem.slab.slub_sheaves import PercpuSheavesCache
from test_slab import slab_snapshot

THISNODE = __GFP_THISNODE


def _node_state(slab: SlabAllocator) -> tuple[Any, ...]:
    out = []
    for cache in slab.cache_list():
        nodes = tuple(tuple(s.pfn for s in node) for node in getattr(cache, "_nodes", ()))
        barns: tuple[Any, ...] = ()
        if isinstance(cache, PercpuSheavesCache):
            barns = tuple((b.address, tuple(tuple(s) for s in b.full), len(b.empty))
                          for b in cache._barns)
            barns += tuple((p, c, tuple(s)) for p, c, s in cache.sheaves())
        out.append((cache.name, nodes, barns, tuple(s.node for s in cache._slabs())))
    return tuple(out)


def _call(s: SlabAllocator, op: str, name: str = "", cpu: int = 0, gfp: int = GFP_KERNEL,
          node: Any = -1, size: int = 0, address: int = 0) -> Any:
    if op == "shrink":
        return s.shrink()
    if op == "synchronize_rcu":
        return s.synchronize_rcu()
    if op == "flush_cpu":
        return s.caches[name].flush_cpu(cpu)  # type: ignore[attr-defined]
    if op == "kfree_rcu":
        return s.kfree_rcu(address, cpu)
    if op == "kfree":
        return s.kfree(address, cpu)
    if op == "alloc":
        return s.caches[name].alloc(cpu, gfp)
    if op == "alloc_node":
        return s.caches[name].alloc_node(cpu, gfp, node)
    if op == "kmalloc_node":
        return s.kmalloc_node(size, gfp, node, cpu)
    assert op == "kmem_cache_alloc_node"
    return s.kmem_cache_alloc_node(s.caches[name], gfp, node, cpu)


def _run(kernel: str, nr_nodes: int, thread_safe: bool, seed: int, steps: int) -> None:
    compiled, pure = twins(lambda: SlabAllocator(
        BuddyAllocator(16 << 20), nr_cpus=4, nr_nodes=nr_nodes, kernel=kernel,
        thread_safe=thread_safe))
    rng = random.Random(seed)
    extra = {} if kernel == "6.17" else {"sheaf_capacity": 4}
    for s in (compiled, pure):
        s.kmem_cache_create("small", 96, **extra)  # type: ignore[arg-type]
        s.kmem_cache_create("big", 2000, **extra)  # type: ignore[arg-type]
    live: list[int] = []

    def both(op: str, **args: Any) -> tuple[str, Any]:
        done = outcome(partial(_call, compiled, op, **args))
        assert done == outcome(partial(_call, pure, op, **args))
        return done

    for step in range(steps):
        cpu = rng.randrange(4)
        roll = rng.random()
        name = rng.choice(["small", "big"])
        node = rng.choice([-1, *range(nr_nodes)] * 3 + [nr_nodes, -2, True, 1.0])
        gfp = rng.choice([GFP_KERNEL, GFP_KERNEL | THISNODE, GFP_ATOMIC])
        if roll < 0.01:
            both("shrink")
        elif roll < 0.03:
            both("synchronize_rcu")
        elif roll < 0.04:
            both("flush_cpu", name=name, cpu=cpu)
        elif live and (len(live) > 300 or roll < 0.45):
            address = live.pop(rng.randrange(len(live)))
            kind, _ = both("kfree_rcu" if roll < 0.1 else "kfree", address=address, cpu=cpu)
            assert kind == "ok"
        else:
            op = rng.choice(["alloc", "alloc_node", "kmalloc_node", "kmem_cache_alloc_node"])
            kind, address = both(op, name=name, cpu=cpu, gfp=gfp, node=node,
                                 size=rng.choice([8, 100, 700, 3000, 9000]))
            if kind == "ok":
                live.append(address)
        if step % 5 == 0 or step == steps - 1:
            assert slab_snapshot(compiled) == slab_snapshot(pure)
            assert _node_state(compiled) == _node_state(pure)
            assert outcome(compiled.check) == outcome(pure.check) == ("ok", None)


@needs_compiled
@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
@pytest.mark.parametrize(("nr_nodes", "thread_safe", "seed"), [(2, True, 1), (2, False, 2),
                                                               (4, False, 3)])
def test_numa_calls_in_lockstep_on_both_cores(kernel: str, nr_nodes: int, thread_safe: bool,
                                              seed: int) -> None:
    _run(kernel, nr_nodes, thread_safe, seed, 1200)


def test_numa_workload_on_this_core() -> None:
    """A short run on whichever core this run has (KMEM_PURE=1: the pure one), check() after
    it: every kernel, both nodes asked for, frees on every CPU."""
    for kernel in ("6.17", "6.18", "7.0"):
        slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=4, nr_nodes=2, kernel=kernel)
        cache = slab.kmem_cache_create("x", 256)
        objects = [cache.alloc_node(c, GFP_KERNEL, c % 2) for c in range(4) for _ in range(30)]
        for i, address in enumerate(objects):
            cache.free(address, i % 4)
        slab.check()
