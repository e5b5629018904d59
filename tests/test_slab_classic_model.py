"""kmem's ClassicSlabCache against the independent classic slab model
(tests/linux_slab_classic_model.py): random alloc/free/shrink sequences over object sizes,
alignments, debug flags and memory sizes; after every operation the object handed out, the
partial, full and empty lists in order, every slab's colour offset and free objects in the
order they will be handed out, the page allocator's free lists and the counters must agree."""

from __future__ import annotations

import random
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kmem import BuddyAllocator, OutOfMemoryError, SlabAllocator
from kmem.slab.classic import ClassicSlabCache
from kmem.slab.flags import SLAB_HWCACHE_ALIGN, SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER
from kmem.slab.slabs import ON_EMPTY, ON_FULL, ON_NODE_PARTIAL
from linux_buddy_model import LinuxBuddyModel
from linux_slab_classic_model import STAT_ITEMS, LinuxSlabClassicModel

SIZES = [8, 24, 100, 200, 700, 1000, 3000, 4096, 5000]
FLAGS = [0, SLAB_HWCACHE_ALIGN, SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER]


@dataclass
class Pair:
    slab: SlabAllocator
    cache: ClassicSlabCache
    model: LinuxSlabClassicModel

    @classmethod
    def boot(cls, *, size: int, flags: int, align: int, nr_pages: int, nr_cpus: int = 2,
             thread_safe: bool = True) -> Pair:
        buddy = BuddyAllocator(nr_pages * 4096)
        slab = SlabAllocator(buddy, nr_cpus=nr_cpus, policy="slab", thread_safe=thread_safe)
        cache = slab.kmem_cache_create("model", size, align=align, flags=flags)
        assert isinstance(cache, ClassicSlabCache) and cache.name == "model"
        model = LinuxSlabClassicModel(
            pages=LinuxBuddyModel(buddy.nr_pages, buddy.max_order), size=cache.slab_size,
            order=cache.order, min_order=cache.min_order, align=cache.align,
            red_left_pad=cache.red_left_pad,
        )
        assert (cache.objs_per_slab, cache.colour_off, cache.colour) == (
            model.num, model.colour_off, model.colour)
        return cls(slab, cache, model)

    def alloc(self, cpu: int) -> int | None:
        expected = self.model.alloc()
        if expected is None:
            with pytest.raises(OutOfMemoryError):
                self.cache.alloc(cpu)
            return None
        assert self.cache.alloc(cpu) == expected, "the object comes from another place"
        return expected

    def free(self, address: int, cpu: int) -> None:
        self.model.free_block(address)
        self.cache.free(address, cpu)

    def shrink(self) -> None:
        self.model.drain_freelist()
        self.cache.shrink()

    def compare(self) -> None:
        lists: dict[int, list[int]] = {ON_NODE_PARTIAL: [], ON_FULL: [], ON_EMPTY: []}
        for where, _, slab in self.cache._lists():
            lists[where].append(slab.pfn)
        assert lists == {ON_NODE_PARTIAL: [s.pfn for s in self.model.partial],
                         ON_FULL: [s.pfn for s in self.model.full],
                         ON_EMPTY: [s.pfn for s in self.model.free]}
        kmem_slabs = {s.pfn: (s.order, s.colour, list(reversed(s.freelist)))
                      for s in self.cache._slabs()}
        assert kmem_slabs == {s.pfn: (s.order, s.colour_offset, s.freelist[s.active:])
                              for s in self.model.slabs()}
        buddy = self.slab.buddy
        for order in range(buddy.max_order + 1):
            assert buddy.free_blocks(order) == self.model.pages.free_lists[order]  # type: ignore[attr-defined]
        stats = self.cache.stats()
        assert {name: getattr(stats, name) for name in STAT_ITEMS} == self.model.stat
        slabs = self.model.slabs()
        assert (stats.objects, stats.slabs, stats.partial_slabs, stats.full_slabs,
                stats.empty_slabs) == (sum(s.active for s in slabs), len(slabs),
                                       len(self.model.partial), len(self.model.full),
                                       len(self.model.free))
        info = self.cache.slabinfo()
        assert (info.active_objs, info.active_slabs) == (
            stats.objects, len(self.model.partial) + len(self.model.full))


class ClassicModelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair: Pair | None = None
        self.live: list[int] = []

    @initialize(size=st.sampled_from(SIZES), flags=st.sampled_from(FLAGS),
                align=st.sampled_from([0, 8, 128, 256]), nr_pages=st.sampled_from([8, 16, 64]),
                thread_safe=st.booleans())
    def boot(self, size: int, flags: int, align: int, nr_pages: int, thread_safe: bool) -> None:
        self.pair = Pair.boot(size=size, flags=flags, align=align, nr_pages=nr_pages,
                              thread_safe=thread_safe)

    @rule(count=st.integers(1, 40), cpu=st.integers(0, 1))
    def alloc(self, count: int, cpu: int) -> None:
        assert self.pair is not None
        for _ in range(count):
            address = self.pair.alloc(cpu)
            if address is not None:
                self.live.append(address)
            self.pair.compare()

    @precondition(lambda self: self.live)
    @rule(data=st.data(), count=st.integers(1, 40), stride=st.integers(1, 5),
          cpu=st.integers(0, 1))
    def free(self, data: st.DataObject, count: int, stride: int, cpu: int) -> None:
        assert self.pair is not None
        start = data.draw(st.integers(0, len(self.live) - 1))
        for address in self.live[start::stride][:count]:
            self.live.remove(address)
            self.pair.free(address, cpu)
            self.pair.compare()

    @rule()
    def shrink(self) -> None:
        assert self.pair is not None
        self.pair.shrink()

    @invariant()
    def same_as_linux(self) -> None:
        if self.pair is not None:
            self.pair.compare()
            self.pair.cache.check()


ClassicModelMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30,
                                                 deadline=None)
TestClassicModelMachine = ClassicModelMachine.TestCase


@pytest.mark.parametrize(("size", "flags", "nr_pages"), [
    (200, 0, 512), (1000, SLAB_HWCACHE_ALIGN, 256), (3000, 0, 128),
    (700, SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER, 256),
])
def test_a_long_random_workload_follows_linux_step_by_step(size: int, flags: int,
                                                           nr_pages: int) -> None:
    pair = Pair.boot(size=size, flags=flags, align=0, nr_pages=nr_pages, thread_safe=False)
    rng = random.Random(size)
    live: list[int] = []
    target = 0
    for step in range(10_000):
        if step % 1000 == 0:
            target = rng.choice([0, 30, 300, 3000])
        roll = rng.random()
        if roll < 0.003:
            pair.shrink()
        elif live and (len(live) > target or roll < 0.3):
            pair.free(live.pop(rng.randrange(len(live))), rng.randrange(2))
        else:
            address = pair.alloc(rng.randrange(2))
            if address is not None:
                live.append(address)
        pair.compare()
    pair.cache.check()
    stats = pair.cache.stats()
    assert stats.free_slab and stats.alloc_slab and stats.alloc_fastpath
