"""kmem's SlubCache against the independent SLUB model (tests/linux_slub_model.py).

Random alloc/free/flush/shrink sequences over several CPUs, object sizes, debug flags and
memory sizes drive both; after every single operation the object handed out, every list (cpu
slab, cpu partial chains, node partial list, debug full list), every slab's free objects in the
order they will be handed out, the page allocator's free lists and the CacheStats counters
must be the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kmem import BuddyAllocator, OutOfMemoryError, SlabAllocator
from kmem.slab.flags import (
    SLAB_HWCACHE_ALIGN,
    SLAB_POISON,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
)
from kmem.slab.slabs import ON_CPU, ON_CPU_PARTIAL, ON_FULL, ON_NODE_PARTIAL
from kmem.slab.slub import SlubCache, SlubDebugCache
from linux_buddy_model import LinuxBuddyModel
from linux_slub_model import STAT_ITEMS, LinuxSlubModel, ModelSlab

SIZES = [8, 24, 96, 200, 256, 700, 1024, 2000, 3000, 4096, 5000, 8192]
DEBUG_FLAGS = [SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER,
               SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER]


@dataclass
class Pair:
    """A kmem cache and the model, booted alike."""

    slab: SlabAllocator
    cache: SlubCache
    model: LinuxSlubModel

    @classmethod
    def boot(cls, *, size: int, flags: int, nr_cpus: int, nr_pages: int,
             thread_safe: bool = True) -> Pair:
        buddy = BuddyAllocator(nr_pages * 4096)
        slab = SlabAllocator(buddy, nr_cpus=nr_cpus, policy="slub", thread_safe=thread_safe)
        cache = slab.kmem_cache_create("model", size, flags=flags)
        assert isinstance(cache, SlubCache) and cache.name == "model"
        debug = bool(flags & (SLAB_POISON | SLAB_RED_ZONE | SLAB_STORE_USER))
        assert isinstance(cache, SlubDebugCache) == debug
        model = LinuxSlubModel(
            pages=LinuxBuddyModel(buddy.nr_pages, buddy.max_order), size=cache.slab_size,
            order=cache.order, min_order=cache.min_order, nr_cpus=nr_cpus, debug=debug,
            red_left_pad=cache.red_left_pad,
        )
        # The runtime limits, computed by the model from Linux's formulas.
        assert (cache.objs_per_slab, cache.min_partial, cache.cpu_partial,
                cache.cpu_partial_slabs) == (model.objects, model.min_partial,
                                             model.cpu_partial, model.cpu_partial_slabs)
        return cls(slab, cache, model)

    def alloc(self, cpu: int) -> int | None:
        expected = self.model.alloc(cpu)
        if expected is None:
            with pytest.raises(OutOfMemoryError):
                self.cache.alloc(cpu)
            return None
        assert self.cache.alloc(cpu) == expected, "the object comes from another place"
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
        assert kmem_state(self.cache) == model_state(self.model)
        buddy = self.slab.buddy
        for order in range(buddy.max_order + 1):
            assert buddy.free_blocks(order) == self.model.pages.free_lists[order]  # type: ignore[attr-defined]
        stats = self.cache.stats()
        assert {name: getattr(stats, name) for name in STAT_ITEMS} == self.model.stat
        census = self.model.census()
        assert {name: getattr(stats, name) for name in census} == census


def kmem_state(cache: SlubCache) -> dict[str, object]:
    """kmem's lists by pfn, and each slab's free objects in the order they will be handed out
    (Slab.freelist and .remote are stacks popped from the end)."""
    cpu_slab: list[int | None] = [None] * cache.nr_cpus
    cpu_partial: list[list[int]] = [[] for _ in range(cache.nr_cpus)]
    node: list[int] = []
    full: set[int] = set()
    freelists: dict[int, tuple[list[int], list[int]]] = {}
    for where, cpu, slab in cache._lists():
        if where == ON_CPU:
            cpu_slab[cpu] = slab.pfn
        elif where == ON_CPU_PARTIAL:
            cpu_partial[cpu].append(slab.pfn)
        elif where == ON_NODE_PARTIAL:
            node.append(slab.pfn)
        else:
            assert where == ON_FULL
            full.add(slab.pfn)
    for slab in cache._slabs():
        freelists[slab.pfn] = (list(reversed(slab.freelist)), list(reversed(slab.remote)))
    return {"cpu_slab": cpu_slab, "cpu_partial": cpu_partial, "node_partial": node,
            "full": full, "slabs": cache.slab_extents(), "freelists": freelists}


def model_state(model: LinuxSlubModel) -> dict[str, object]:
    freelists: dict[int, tuple[list[int], list[int]]] = {}
    for slab in model.slabs:
        if slab.frozen:  # a cpu slab: its cpu freelist first, then remote frees
            cpu = model.cpu_slab.index(slab)
            freelists[slab.pfn] = (list(model.cpu_freelist[cpu]), list(slab.freelist))
        else:
            freelists[slab.pfn] = (list(slab.freelist), [])

    def pfn(slab: ModelSlab | None) -> int | None:
        return None if slab is None else slab.pfn

    return {
        "cpu_slab": [pfn(s) for s in model.cpu_slab],
        "cpu_partial": [[s.pfn for s in chain] for chain in model.cpu_partial_chain],
        "node_partial": [s.pfn for s in model.node_partial],
        "full": {s.pfn for s in model.full},  # (Linux keeps it only with STORE_USER: no order)
        "slabs": sorted((s.pfn, s.order) for s in model.slabs),
        "freelists": freelists,
    }


class SlubModelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair: Pair | None = None
        self.live: list[int] = []

    @initialize(size=st.sampled_from(SIZES), nr_cpus=st.integers(1, 4),
                nr_pages=st.sampled_from([8, 16, 64, 256]), thread_safe=st.booleans(),
                flags=st.one_of(st.just(0), st.just(SLAB_HWCACHE_ALIGN),
                                st.sampled_from(DEBUG_FLAGS)))
    def boot(self, size: int, nr_cpus: int, nr_pages: int, thread_safe: bool,
             flags: int) -> None:
        self.pair = Pair.boot(size=size, flags=flags, nr_cpus=nr_cpus, nr_pages=nr_pages,
                              thread_safe=thread_safe)

    def _cpu(self, data: st.DataObject) -> int:
        assert self.pair is not None
        return data.draw(st.integers(0, self.pair.cache.nr_cpus - 1))

    @rule(count=st.integers(1, 40), data=st.data())
    def alloc(self, count: int, data: st.DataObject) -> None:
        assert self.pair is not None
        cpu = self._cpu(data)
        for _ in range(count):
            address = self.pair.alloc(cpu)
            if address is not None:
                self.live.append(address)
            self.pair.compare()

    @precondition(lambda self: self.live)
    @rule(data=st.data(), count=st.integers(1, 40), stride=st.integers(1, 5))
    def free(self, data: st.DataObject, count: int, stride: int) -> None:
        """Free a run of objects (every stride-th, from a drawn start), each on a drawn CPU."""
        assert self.pair is not None
        start = data.draw(st.integers(0, len(self.live) - 1))
        chosen = self.live[start::stride][:count]
        for address in chosen:
            self.live.remove(address)
            self.pair.free(address, self._cpu(data))
            self.pair.compare()

    @rule(data=st.data())
    def flush_cpu(self, data: st.DataObject) -> None:
        assert self.pair is not None
        self.pair.flush_cpu(self._cpu(data))

    @rule()
    def shrink(self) -> None:
        assert self.pair is not None
        self.pair.shrink()

    @invariant()
    def same_as_linux(self) -> None:
        if self.pair is not None:
            self.pair.compare()
            self.pair.cache.check()


SlubModelMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30,
                                              deadline=None)
TestSlubModelMachine = SlubModelMachine.TestCase


def random_workload(pair: Pair, rng: random.Random, steps: int, period: int,
                    targets: list[int]) -> None:
    """``steps`` operations, mostly allocations and frees on random CPUs, a few flushes and
    shrinks, kmem compared with the model after each; every ``period`` steps the live set is
    given another of ``targets`` to drift towards, so it swings between empty and full."""
    live: list[int] = []
    target = 0
    for step in range(steps):
        if step % period == 0:
            target = rng.choice(targets)
        cpu = rng.randrange(pair.cache.nr_cpus)
        roll = rng.random()
        if roll < 0.005:
            pair.flush_cpu(cpu)
        elif roll < 0.007:
            pair.shrink()
        elif live and (len(live) > target or roll < 0.3):
            pair.free(live.pop(rng.randrange(len(live))), cpu)
        else:
            address = pair.alloc(cpu)
            if address is not None:
                live.append(address)
        pair.compare()


@pytest.mark.parametrize(("size", "flags", "nr_cpus", "nr_pages"), [
    (256, 0, 2, 1024), (1024, 0, 4, 512), (64, 0, 3, 256), (4096, 0, 2, 128),
    (700, SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER, 2, 256),
])
def test_a_long_random_workload_follows_linux_step_by_step(
        size: int, flags: int, nr_cpus: int, nr_pages: int) -> None:
    """20,000 operations, mostly allocations and frees on random CPUs, a few flushes and
    shrinks; the live set swings between empty and memory-full, so every list rule runs."""
    pair = Pair.boot(size=size, flags=flags, nr_cpus=nr_cpus, nr_pages=nr_pages,
                     thread_safe=False)
    random_workload(pair, random.Random(size * 7 + nr_cpus), 20_000, 2000, [0, 50, 400, 5000])
    pair.cache.check()
    stats = pair.cache.stats()
    # The workload did reach the rules this test is about.
    if not flags:
        assert stats.cpu_partial_drain and stats.cpu_partial_node and stats.free_add_partial
        assert stats.deactivate_empty and stats.free_remove_partial and stats.alloc_refill
