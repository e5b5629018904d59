"""kmem's sheaves and barns in lockstep with the plain model (tests/linux_sheaf_model.py), one
hypothesis state machine per kernel: the same objects handed out, every slab's freelist, every
sheaf and the barn the same after every step, the counters equal, and check() passing."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kmem import BuddyAllocator, KmemCache, SlabAllocator
from kmem.page.gfp import __GFP_MEMALLOC, GFP_ATOMIC, GFP_KERNEL
from kmem.slab.slabs import WHERE_NAMES
from kmem.slab.slub_sheaves import PercpuSheavesCache
from linux_sheaf_model import SheafModel

COUNTERS_6_18 = ("alloc_fastpath", "alloc_slowpath", "free_fastpath", "free_slowpath",
                 "free_frozen", "alloc_slab", "free_slab", "cpu_partial_free",
                 "cpu_partial_drain", "alloc_from_partial", "cpu_partial_alloc")
COUNTERS_SHEAVES = ("sheaf_refill", "sheaf_flush", "sheaf_alloc", "sheaf_free", "barn_get",
                    "barn_get_fail", "barn_put", "barn_put_fail", "free_rcu_sheaf")
COUNTERS_7_0 = ("alloc_slowpath", "free_slowpath", "free_add_partial", "free_remove_partial",
                "alloc_slab", "free_slab")

MEMALLOC = __GFP_MEMALLOC  # (a class body would mangle the double-underscore name)


class ReserveBuddy(BuddyAllocator):
    """A page source whose pages come from its memory reserves while ``reserves`` is set (the
    page machine's ALLOC_NO_WATERMARKS pass): the slabs made then are pfmemalloc."""

    reserves = False

    def page_is_pfmemalloc(self, pfn: int) -> bool:
        return self.reserves


class SheafLockstep(RuleBasedStateMachine):
    kernel = "6.18"

    def __init__(self) -> None:
        super().__init__()
        self.slab: SlabAllocator | None = None
        self.cache: KmemCache | None = None
        self.model: SheafModel | None = None
        self.live: dict[int, tuple[int, int]] = {}  # kmem address -> model object

    def _boot(self, cpus: int, size: int, capacity: int, thread_safe: bool) -> None:
        self.buddy = ReserveBuddy(64 << 20)
        self.slab = SlabAllocator(self.buddy, nr_cpus=cpus, kernel=self.kernel,
                                  thread_safe=thread_safe)
        cache = self.slab.kmem_cache_create("lockstep", size, sheaf_capacity=capacity)
        assert isinstance(cache, PercpuSheavesCache)
        self.cache = cache
        self.model = SheafModel(self.kernel, cpus, cache.objs_per_slab, cache.min_partial,
                                cache.cpu_partial_slabs, cache.sheaf_capacity)

    # -- helpers -------------------------------------------------------------------------------

    def obj_of(self, address: int) -> tuple[int, int]:
        assert self.cache is not None
        slab = self.cache._slab_of_pfn[address >> self.cache._page_shift]
        return slab.serial, (address - slab.base) // self.cache.size

    def kmem_view(self) -> dict[str, object]:
        cache = self.cache
        assert isinstance(cache, PercpuSheavesCache)
        slabs = {s.serial: (list(reversed(s.freelist)), list(s.remote), WHERE_NAMES[s.where],
                            s.cpu, s.pfmemalloc) for s in cache._slabs()}
        lists: dict[str, list[int]] = {}
        for where, cpu, slab in cache._lists():
            lists.setdefault(f"{WHERE_NAMES[where]}{cpu}", []).append(slab.serial)
        sheaves: dict[str, list[list[tuple[int, int]]]] = {}
        for place, cpu, sheaf in cache.sheaves():
            sheaves.setdefault(f"{place}{cpu}", []).append([self.obj_of(a) for a in sheaf])
        return {"slabs": slabs, "lists": lists, "sheaves": sheaves}

    def model_view(self) -> dict[str, object]:
        model = self.model
        assert model is not None
        slabs = {s.serial: (list(reversed(s.free)), list(s.remote), s.where, s.cpu, s.pfmemalloc)
                 for s in model.slabs.values()}
        lists: dict[str, list[int]] = {}
        for cpu in range(model.nr_cpus):
            slab = model.cpu_slab[cpu]
            if slab is not None:
                lists[f"cpu{cpu}"] = [slab.serial]
            if model.cpu_partial[cpu]:
                lists[f"cpu_partial{cpu}"] = [s.serial for s in reversed(model.cpu_partial[cpu])]
        if model.partial:
            lists["partial-1"] = [s.serial for s in model.partial]
        sheaves: dict[str, list[list[tuple[int, int]]]] = {}
        for cpu in range(model.nr_cpus):
            sheaves[f"main{cpu}"] = [list(model.main[cpu].objects)]
            for place, sheaf in (("spare", model.spare[cpu]), ("rcu_free", model.rcu_free[cpu])):
                if sheaf is not None:
                    sheaves[f"{place}{cpu}"] = [list(sheaf.objects)]
        for place, barn in (("barn_full-1", model.barn_full), ("barn_empty-1", model.barn_empty)):
            if barn:
                sheaves[place] = [list(s.objects) for s in barn]
        waiting = [list(s.objects) for kind, s, _, _ in model.rcu_queue  # type: ignore[attr-defined]
                   if kind == "sheaf"]
        if waiting:
            sheaves["rcu_waiting-1"] = waiting
        return {"slabs": slabs, "lists": lists, "sheaves": sheaves}

    # -- rules ---------------------------------------------------------------------------------

    @precondition(lambda self: self.cache is not None)
    @rule(cpu=st.integers(0, 2), atomic=st.booleans(), rights=st.booleans())
    def alloc(self, cpu: int, atomic: bool, rights: bool = False) -> None:
        """``rights``: with __GFP_MEMALLOC, the allocation may use the memory reserves."""
        assert self.cache is not None and self.model is not None
        cpu %= self.cache.nr_cpus
        gfp = (GFP_ATOMIC if atomic else GFP_KERNEL) | (MEMALLOC if rights else 0)
        address = self.cache.alloc(cpu, gfp)
        expected = self.model.alloc(cpu, can_block=not atomic, rights=rights)
        assert self.obj_of(address) == expected
        assert address not in self.live
        self.live[address] = expected

    @precondition(lambda self: self.live)
    @rule(data=st.data(), cpu=st.integers(0, 2))
    def free(self, data: st.DataObject, cpu: int) -> None:
        assert self.cache is not None and self.model is not None
        cpu %= self.cache.nr_cpus
        address = data.draw(st.sampled_from(sorted(self.live)))
        self.cache.free(address, cpu)
        self.model.free(self.live.pop(address), cpu)

    @precondition(lambda self: len(self.live) > 4)
    @rule(cpu=st.integers(0, 2))
    def free_round_robin(self, cpu: int) -> None:
        """Free every live object, one slab after another in turn: the sheaves then hold
        objects of many slabs interleaved, which is what the flush's look-ahead is about."""
        assert self.cache is not None and self.model is not None
        cpu %= self.cache.nr_cpus
        by_slab: dict[int, list[int]] = {}
        for address in sorted(self.live):
            by_slab.setdefault(self.live[address][0], []).append(address)
        queues = list(by_slab.values())
        while queues:
            for queue in queues:
                address = queue.pop()
                self.cache.free(address, cpu)
                self.model.free(self.live.pop(address), cpu)
            queues = [q for q in queues if q]

    @precondition(lambda self: self.live)
    @rule(data=st.data(), cpu=st.integers(0, 2))
    def kfree_rcu(self, data: st.DataObject, cpu: int) -> None:
        assert self.slab is not None and self.cache is not None and self.model is not None
        cpu %= self.cache.nr_cpus
        address = data.draw(st.sampled_from(sorted(self.live)))
        self.slab.kfree_rcu(address, cpu)
        self.model.kfree_rcu(self.live.pop(address), cpu)

    @precondition(lambda self: self.cache is not None)
    @rule()
    def synchronize_rcu(self) -> None:
        assert self.slab is not None and self.model is not None
        self.slab.synchronize_rcu()
        self.model.synchronize_rcu()

    @precondition(lambda self: self.cache is not None)
    @rule(on=st.booleans())
    def reserves(self, on: bool) -> None:
        """From now on new slabs are (or are not) on pages from the memory reserves."""
        assert self.model is not None
        self.buddy.reserves = self.model.reserves = on

    @precondition(lambda self: self.cache is not None)
    @rule()
    def shrink(self) -> None:
        assert self.cache is not None and self.model is not None
        assert self.cache.shrink() == self.model.shrink()

    @precondition(lambda self: self.cache is not None)
    @rule(cpu=st.integers(0, 2))
    def flush_cpu(self, cpu: int) -> None:
        assert isinstance(self.cache, PercpuSheavesCache) and self.model is not None
        cpu %= self.cache.nr_cpus
        self.cache.flush_cpu(cpu)
        self.model.flush_cpu(cpu)

    # -- the invariants ------------------------------------------------------------------------

    @invariant()
    def same_state(self) -> None:
        if self.cache is None:
            return
        assert self.slab is not None and self.model is not None
        self.slab.check()
        self.model.check()
        assert self.kmem_view() == self.model_view()
        stats = self.cache.stats()
        model = self.model.stat
        names: tuple[str, ...]
        if self.kernel == "6.18":
            assert stats.alloc_cpu_sheaf == model["sheaf_alloc_fast"]
            assert stats.free_cpu_sheaf == model["sheaf_free_fast"]
            names = COUNTERS_6_18
        else:
            assert stats.alloc_fastpath == model["sheaf_alloc_fast"]
            assert stats.free_fastpath == model["sheaf_free_fast"]
            names = COUNTERS_7_0
        for name in names + COUNTERS_SHEAVES:
            assert getattr(stats, name) == model[name], name
        # every object in exactly one place, seen from kmem: users, sheaves, slab freelists
        census = self.cache.sheaf_census()  # type: ignore[attr-defined]
        assert stats.objects == len(self.live) + census["cpu_sheaf_objects"] + census[
            "barn_objects"] + census["rcu_sheaf_objects"]
        assert {self.obj_of(a) for a in self.live} == {
            o for o, s in self.model.state.items() if s == "user"}


class Lockstep618(SheafLockstep):
    kernel = "6.18"

    @initialize(cpus=st.integers(1, 3), size=st.sampled_from([64, 512, 2048, 4096]),
                capacity=st.sampled_from([1, 2, 3, 5, 32]), thread_safe=st.booleans())
    def boot(self, cpus: int, size: int, capacity: int, thread_safe: bool) -> None:
        self._boot(cpus, size, capacity, thread_safe)


class Lockstep70(SheafLockstep):
    kernel = "7.0"

    @initialize(cpus=st.integers(1, 3), size=st.sampled_from([192, 1024, 4096, 6000, 8192]),
                capacity=st.sampled_from([0, 0, 5]), thread_safe=st.booleans())
    def boot(self, cpus: int, size: int, capacity: int, thread_safe: bool) -> None:
        self._boot(cpus, size, capacity, thread_safe)


Lockstep618.TestCase.settings = settings(max_examples=60, stateful_step_count=80,
                                         deadline=None)
Lockstep70.TestCase.settings = settings(max_examples=60, stateful_step_count=80,
                                        deadline=None)
TestLockstep618 = Lockstep618.TestCase
TestLockstep70 = Lockstep70.TestCase


def test_lockstep_flush_of_sheaves_holding_many_slabs_interleaved() -> None:
    """A fixed run the random ones rarely hit: six slabs' objects interleaved in one sheaf,
    flushed, so the flush's look-ahead decides how many slab frees it takes."""
    for machine_class in (Lockstep618, Lockstep70):
        machine = machine_class()
        machine.boot(cpus=2, size=4096, capacity=0 if machine_class is Lockstep70 else 32,
                     thread_safe=False)
        for step in range(48):
            machine.alloc(cpu=step % 2, atomic=False)
        machine.same_state()
        machine.free_round_robin(cpu=0)
        machine.same_state()
        machine.flush_cpu(cpu=0)
        machine.same_state()
        for _ in range(20):
            machine.alloc(cpu=1, atomic=False)
        machine.free_round_robin(cpu=1)
        machine.shrink()
        machine.same_state()
        machine.teardown()


def test_lockstep_7_0_refills_and_slab_path_pass_over_pfmemalloc_slabs() -> None:
    """A fixed run through the 7.0 allocation rules on pfmemalloc slabs: a slab made from the
    reserves heads the partial list; an allocation with the rights takes from it, one
    without passes over it (a new slab), and so does a refill (always __GFP_NOMEMALLOC)."""
    machine = Lockstep70()
    machine.boot(cpus=1, size=1024, capacity=5, thread_safe=False)
    cache = machine.cache
    assert cache is not None
    machine.reserves(on=True)
    machine.alloc(cpu=0, atomic=True)  # may not block: no refill; a new pfmemalloc slab
    machine.reserves(on=False)
    machine.alloc(cpu=0, atomic=True, rights=True)  # the partial head serves it
    machine.same_state()
    (pfm,) = cache._slabs()
    assert pfm.pfmemalloc and pfm.inuse == 2
    machine.alloc(cpu=0, atomic=True)  # without the rights: a new slab instead
    machine.same_state()
    assert pfm.inuse == 2 and len(cache._slabs()) == 2
    machine.alloc(cpu=0, atomic=False)  # a refill of a whole sheaf: none of it from pfm
    machine.same_state()
    assert pfm.inuse == 2
    assert cache.stats().sheaf_refill == cache.sheaf_capacity
