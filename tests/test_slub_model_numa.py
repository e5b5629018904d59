"""kmem's SLUB (Linux 6.17) on several NUMA nodes against the independent SLUB model.

The model (tests/linux_slub_model.py) gets one page allocator model per node (separate zones,
tests/linux_buddy_model.py) where kmem runs one BuddyAllocator split into node ranges: after
every step each node's part of kmem's free lists must be that node's zone, so the claim that
the restriction of one buddy's lists to a node range is that node's zone is checked too.
Random allocations (local, and kmem_cache_alloc_node for a node, with and without
__GFP_THISNODE), frees on random CPUs (remote frees included), flushes and shrinks; every
list of both compared after every step: cpu slabs, cpu partial chains, each node's partial
list, every slab's node and free objects, the counters.
"""

from __future__ import annotations

import random

import pytest

from kmem import BuddyAllocator, OutOfMemoryError, SlabAllocator
from kmem.page.gfp import __GFP_THISNODE, GFP_KERNEL
from kmem.slab.flags import SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER
from kmem.slab.slabs import ON_CPU, ON_CPU_PARTIAL, ON_FULL, ON_NODE_PARTIAL
from kmem.slab.slub import SlubCache, SlubDebugCache
from linux_buddy_model import LinuxBuddyModel
from linux_slub_model import STAT_ITEMS, THISNODE, LinuxSlubModel, NodePages

assert THISNODE == __GFP_THISNODE  # the model's own constant is Linux's bit

MAX_ORDER = 5  # nodes of 32-page blocks: small machines, so memory runs out on a node


class NumaPair:
    def __init__(self, *, size: int, flags: int, nr_cpus: int, nr_nodes: int,
                 nr_pages: int) -> None:
        buddy = BuddyAllocator(nr_pages * 4096, max_order=MAX_ORDER)
        self.slab = SlabAllocator(buddy, nr_cpus=nr_cpus, nr_nodes=nr_nodes,
                                  thread_safe=False, kernel="6.17")
        cache = self.slab.kmem_cache_create("model", size, flags=flags)
        assert isinstance(cache, SlubCache)
        debug = bool(flags & (SLAB_POISON | SLAB_RED_ZONE | SLAB_STORE_USER))
        assert isinstance(cache, SlubDebugCache) == debug
        self.cache = cache
        node_pages = nr_pages // nr_nodes
        self.zones = [LinuxBuddyModel(node_pages, MAX_ORDER) for _ in range(nr_nodes)]
        self.node_pages = node_pages
        self.model = LinuxSlubModel(
            pages=NodePages(self.zones, node_pages),  # type: ignore[arg-type]
            size=cache.slab_size, order=cache.order, min_order=cache.min_order,
            nr_cpus=nr_cpus, debug=debug, red_left_pad=cache.red_left_pad,
            nr_nodes=nr_nodes)
        assert self.model.cpu_node == self.slab.numa.cpu_node  # type: ignore[union-attr]

    def alloc(self, cpu: int, node: int = -1, gfp: int = GFP_KERNEL) -> int | None:
        expected = self.model.alloc(cpu, node, gfp)
        if expected is None:
            with pytest.raises(OutOfMemoryError):
                self.cache.alloc_node(cpu, gfp, node)
            return None
        assert self.cache.alloc_node(cpu, gfp, node) == expected
        return expected

    def free(self, address: int, cpu: int) -> None:
        self.model.free(address, cpu)
        self.cache.free(address, cpu)

    def flush_cpu(self, cpu: int) -> None:
        self.model.flush_cpu(cpu)
        self.cache.flush_cpu(cpu)

    def shrink(self) -> None:
        self.model.shrink()
        self.cache.shrink()

    def compare(self) -> None:
        cache, model = self.cache, self.model
        cpu_slab: list[int | None] = [None] * cache.nr_cpus
        cpu_partial: list[list[int]] = [[] for _ in range(cache.nr_cpus)]
        full: set[int] = set()
        for where, cpu, slab in cache._lists():
            if where == ON_CPU:
                cpu_slab[cpu] = slab.pfn
            elif where == ON_CPU_PARTIAL:
                cpu_partial[cpu].append(slab.pfn)
            elif where == ON_FULL:
                full.add(slab.pfn)
            else:
                assert where == ON_NODE_PARTIAL
        assert cpu_slab == [None if s is None else s.pfn for s in model.cpu_slab]
        assert cpu_partial == [[s.pfn for s in chain] for chain in model.cpu_partial_chain]
        assert [[s.pfn for s in node] for node in cache._nodes] == [
            [s.pfn for s in node] for node in model.nodes]
        assert full == {s.pfn for s in model.full}
        kmem_slabs = {s.pfn: (s.node, list(reversed(s.freelist)), list(reversed(s.remote)))
                      for s in cache._slabs()}
        model_slabs = {}
        for mslab in model.slabs:
            if mslab.frozen:
                cpu = model.cpu_slab.index(mslab)
                model_slabs[mslab.pfn] = (mslab.node, list(model.cpu_freelist[cpu]),
                                          list(mslab.freelist))
            else:
                model_slabs[mslab.pfn] = (mslab.node, list(mslab.freelist), [])
        assert kmem_slabs == model_slabs
        buddy = self.slab.buddy
        for order in range(MAX_ORDER + 1):
            blocks = buddy.free_blocks(order)
            for nid, zone in enumerate(self.zones):
                base = nid * self.node_pages
                assert [p for p in blocks if p // self.node_pages == nid] == [
                    p + base for p in zone.free_lists[order]], (order, nid)
        stats = cache.stats()
        assert {name: getattr(stats, name) for name in STAT_ITEMS} == model.stat
        census = model.census()
        assert {name: getattr(stats, name) for name in census} == census


def numa_workload(pair: NumaPair, rng: random.Random, steps: int) -> None:
    live: list[int] = []
    target = 0
    nr_cpus = pair.cache.nr_cpus
    nr_nodes = pair.cache.nr_nodes
    for step in range(steps):
        if step % 500 == 0:
            target = rng.choice([0, 40, 300, 3000])
        cpu = rng.randrange(nr_cpus)
        roll = rng.random()
        if roll < 0.005:
            pair.flush_cpu(cpu)
        elif roll < 0.008:
            pair.shrink()
        elif live and (len(live) > target or roll < 0.3):
            pair.free(live.pop(rng.randrange(len(live))), cpu)
        else:
            node = -1
            gfp = GFP_KERNEL
            if roll > 0.85:  # kmem_cache_alloc_node
                node = rng.randrange(nr_nodes)
                if roll > 0.95:
                    gfp |= __GFP_THISNODE
            address = pair.alloc(cpu, node, gfp)
            if address is not None:
                live.append(address)
        pair.compare()
    pair.cache.check()
    pair.slab.check()


@pytest.mark.parametrize(("size", "flags", "seed"), [
    (256, 0, 1), (1024, 0, 2), (64, 0, 3), (4096, 0, 4), (700, SLAB_RED_ZONE | SLAB_POISON, 5),
])
def test_two_nodes_four_cpus_follow_the_model_step_by_step(size: int, flags: int,
                                                           seed: int) -> None:
    pair = NumaPair(size=size, flags=flags, nr_cpus=4, nr_nodes=2, nr_pages=256)
    numa_workload(pair, random.Random(seed), 4000)
    stats = pair.cache.stats()
    assert stats.alloc_slab  # (the workload reached the new-slab path, and more:)
    if not flags:
        assert stats.alloc_node_mismatch and stats.free_frozen and stats.cpu_partial_node


def test_four_nodes_and_memory_exhaustion_follow_the_model() -> None:
    pair = NumaPair(size=512, flags=0, nr_cpus=4, nr_nodes=4, nr_pages=256)
    numa_workload(pair, random.Random(11), 3000)
    # Some slabs of each CPU's allocations came from another node once its own ran out.
    nodes = {slab.node for slab in pair.cache._slabs()}
    assert nodes <= {0, 1, 2, 3}
