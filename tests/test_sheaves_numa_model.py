"""kmem's sheaves and barns on two NUMA nodes and four CPUs (Linux 6.18 and 7.0) against the
plain model (tests/linux_sheaf_model.py with nr_nodes): random allocations (local, and
kmem_cache_alloc_node for either node, with and without __GFP_THISNODE), frees and kfree_rcu
on random CPUs (so remote frees bypass the sheaves), grace periods, flushes and shrinks; after
every step every slab (its node, freelist, place), every node's partial list, every CPU's
sheaves, every node's barn and the counters must be the model's. Both cores run it (the
compiled sheaf free hands a remote free to the pure path)."""

from __future__ import annotations

import random

import pytest

from kmem import BuddyAllocator, SlabAllocator
from kmem.page.gfp import __GFP_THISNODE, GFP_KERNEL
from kmem.slab.slabs import WHERE_NAMES
from kmem.slab.slub_sheaves import PercpuSheavesCache
from linux_sheaf_model import SheafModel
from test_sheaves_stateful import COUNTERS_6_18, COUNTERS_7_0, COUNTERS_SHEAVES

THISNODE = __GFP_THISNODE


class NumaSheafPair:
    def __init__(self, kernel: str, size: int, capacity: int, thread_safe: bool) -> None:
        self.kernel = kernel
        self.slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=4, nr_nodes=2,
                                  kernel=kernel, thread_safe=thread_safe)
        cache = self.slab.kmem_cache_create("lockstep", size, sheaf_capacity=capacity)
        assert isinstance(cache, PercpuSheavesCache) and cache.sheaf_capacity
        self.cache = cache
        self.model = SheafModel(kernel, 4, cache.objs_per_slab, cache.min_partial,
                                cache.cpu_partial_slabs, cache.sheaf_capacity, nr_nodes=2)
        self.live: dict[int, tuple[int, int]] = {}

    def obj_of(self, address: int) -> tuple[int, int]:
        slab = self.cache._slab_of_pfn[address >> self.cache._page_shift]
        return slab.serial, (address - slab.base) // self.cache.size

    def kmem_view(self) -> dict[str, object]:
        cache = self.cache
        slabs = {s.serial: (list(reversed(s.freelist)), list(s.remote), WHERE_NAMES[s.where],
                            s.cpu, s.node) for s in cache._slabs()}
        cpu_slab = getattr(cache, "_cpu_slab", None)
        cpu_partial = getattr(cache, "_cpu_partial", None)
        lists = {
            "cpu": [None if cpu_slab is None or cpu_slab[c] is None else cpu_slab[c].serial
                    for c in range(4)],
            "cpu_partial": [[] if cpu_partial is None else
                            [s.serial for s in reversed(cpu_partial[c])] for c in range(4)],
            "nodes": [[s.serial for s in node] for node in cache._nodes],  # type: ignore[attr-defined]
        }
        sheaves = {
            "main": [[self.obj_of(a) for a in cache._main[c]] for c in range(4)],
            "spare": [None if cache._spare[c] is None else
                      [self.obj_of(a) for a in cache._spare[c]] for c in range(4)],  # type: ignore[union-attr]
            "rcu_free": [None if cache._rcu_free[c] is None else
                         [self.obj_of(a) for a in cache._rcu_free[c]] for c in range(4)],  # type: ignore[union-attr]
            "barn_full": [[[self.obj_of(a) for a in s] for s in reversed(b.full)]
                          for b in cache._barns],
            "barn_empty": [len(b.empty) for b in cache._barns],
            "rcu_waiting": [[self.obj_of(a) for a in s] for s in cache._rcu_waiting],
        }
        return {"slabs": slabs, "lists": lists, "sheaves": sheaves}

    def model_view(self) -> dict[str, object]:
        m = self.model
        slabs = {s.serial: (list(reversed(s.free)), list(s.remote), s.where, s.cpu, s.node)
                 for s in m.slabs.values()}
        lists = {
            "cpu": [None if s is None else s.serial for s in m.cpu_slab],
            "cpu_partial": [[s.serial for s in reversed(stack)] for stack in m.cpu_partial],
            "nodes": [[s.serial for s in node] for node in m.nodes],
        }
        sheaves = {
            "main": [list(sh.objects) for sh in m.main],
            "spare": [None if sh is None else list(sh.objects) for sh in m.spare],
            "rcu_free": [None if sh is None else list(sh.objects) for sh in m.rcu_free],
            "barn_full": [[list(sh.objects) for sh in b] for b in m.barns_full],
            "barn_empty": [len(b) for b in m.barns_empty],
            "rcu_waiting": [list(sh.objects) for kind, sh, _, _ in m.rcu_queue  # type: ignore[attr-defined]
                            if kind == "sheaf"],
        }
        return {"slabs": slabs, "lists": lists, "sheaves": sheaves}

    def compare(self) -> None:
        self.slab.check()
        self.model.check()
        assert self.kmem_view() == self.model_view()
        stats = self.cache.stats()
        model = self.model.stat
        names: tuple[str, ...]
        if self.kernel == "6.18":
            assert stats.alloc_cpu_sheaf == model["sheaf_alloc_fast"]
            assert stats.free_cpu_sheaf == model["sheaf_free_fast"]
            names = (*COUNTERS_6_18, "alloc_node_mismatch", "cpu_partial_node")
        else:
            assert stats.alloc_fastpath == model["sheaf_alloc_fast"]
            assert stats.free_fastpath == model["sheaf_free_fast"]
            names = COUNTERS_7_0
        for name in names + COUNTERS_SHEAVES:
            assert getattr(stats, name) == model[name], name

    def step(self, rng: random.Random, target: int) -> None:
        cpu = rng.randrange(4)
        roll = rng.random()
        if roll < 0.01:
            self.cache.flush_cpu(cpu)
            self.model.flush_cpu(cpu)
        elif roll < 0.015:
            assert self.cache.shrink() == self.model.shrink()
        elif roll < 0.03:
            self.slab.synchronize_rcu()
            self.model.synchronize_rcu()
        elif self.live and (len(self.live) > target or roll < 0.35):
            address = rng.choice(sorted(self.live))
            obj = self.live.pop(address)
            if roll < 0.08:
                self.slab.kfree_rcu(address, cpu)
                self.model.kfree_rcu(obj, cpu)
            else:
                self.cache.free(address, cpu)
                self.model.free(obj, cpu)
        else:
            if roll > 0.8:  # kmem_cache_alloc_node
                node = rng.randrange(2)
                thisnode = roll > 0.93
                address = self.cache.alloc_node(cpu, GFP_KERNEL | (THISNODE if thisnode else 0),
                                                node)
                expected = self.model.alloc_node(cpu, node, thisnode)
                if thisnode:  # (else the node is a preference: get_any_partial may serve it)
                    assert self.cache._slab_of_pfn[address >> 12].node == node
            else:
                address = self.cache.alloc(cpu)
                expected = self.model.alloc(cpu)
            assert self.obj_of(address) == expected
            assert address not in self.live
            self.live[address] = expected


@pytest.mark.parametrize(("kernel", "size", "capacity", "seed"), [
    ("6.18", 256, 32, 1), ("6.18", 1024, 5, 2), ("6.18", 64, 3, 3),
    ("7.0", 192, 0, 4), ("7.0", 1024, 5, 5), ("7.0", 4096, 0, 6),
])
def test_two_nodes_of_sheaves_and_barns_follow_the_model(kernel: str, size: int,
                                                         capacity: int, seed: int) -> None:
    rng = random.Random(seed)
    pair = NumaSheafPair(kernel, size, capacity, thread_safe=bool(seed % 2))
    target = 0
    for step in range(1500):
        if step % 300 == 0:
            target = rng.choice([0, 20, 150, 600])
        pair.step(rng, target)
        pair.compare()
    stats = pair.cache.stats()
    # remote frees reached the slabs; sheaves were refilled; slabs on both nodes
    assert stats.free_slowpath and stats.sheaf_refill
    assert pair.model.stat["alloc_slab"] and {s.node for s in pair.model.slabs.values()} <= {0, 1}
