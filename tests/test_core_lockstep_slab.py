"""The slab caches and kmalloc on the compiled core and on the pure one, in lockstep.

The same random calls — cache creation, alloc and free on every CPU, kmalloc and kfree of every
size and family, bad addresses, bad CPUs, bad types, shrink, flush, destroy — go to two
SlabAllocators, one on each core; after every step the results or errors (class and message)
and the whole state (every slab's lists, freelists and marks, every counter, the buddy's
frames and lists, the bytes of every slab page) must be the same, and check() must pass.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from core_twins import FUZZ_EXAMPLES, needs_compiled, outcome, twins
from kmem import BuddyAllocator, SlabAllocator
from kmem.page.gfp import __GFP_ACCOUNT, __GFP_DMA, __GFP_RECLAIMABLE, __GFP_ZERO, GFP_KERNEL
from kmem.slab.flags import SLAB_HWCACHE_ALIGN, SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER
from test_slab import slab_snapshot

FLAGS = st.sampled_from([0, SLAB_HWCACHE_ALIGN, SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER])
GFPS = st.sampled_from([GFP_KERNEL, GFP_KERNEL | __GFP_ACCOUNT, GFP_KERNEL | __GFP_RECLAIMABLE,
                        __GFP_DMA, GFP_KERNEL | __GFP_ZERO, -1, 2**40, True, 1.0, None])
ODD: list[Any] = [None, True, False, 1.0, "0", -1, 2**70, -(2**70)]
# Not gfp_t values (issue 12): both cores refuse them with the same error.
BAD_GFPS = st.sampled_from([False, True, 2**32, 2**100, -(2**100), -1, 1.5, None, "0"])
ODD_CPUS = st.sampled_from([99, -5, True, False, 1.0, None, "0", 2**70])


@needs_compiled
@pytest.mark.fuzz
class SlabLockstep(RuleBasedStateMachine):
    @initialize(policy=st.sampled_from(["slub", "slab"]), cpus=st.integers(1, 3),
                pages=st.sampled_from([32, 256]), thread_safe=st.booleans(),
                kernel=st.sampled_from(["6.17", "6.18", "7.0"]))
    def boot(self, policy: str, cpus: int, pages: int, thread_safe: bool, kernel: str) -> None:
        kernel = kernel if policy == "slub" else "6.18"
        self.pair = twins(lambda: SlabAllocator(BuddyAllocator(pages * 4096), nr_cpus=cpus,
                                                policy=policy, thread_safe=thread_safe,
                                                kernel=kernel))
        self.sheaves = kernel == "6.18" and policy == "slub"
        self.cpus = cpus
        self.live: list[int] = []
        self.names: list[str] = []

    def _both(self, call: Any) -> tuple[str, Any]:
        compiled, pure = self.pair
        done = outcome(lambda: call(compiled))
        assert done == outcome(lambda: call(pure))
        return done

    @rule(size=st.integers(1, 5000), flags=FLAGS, align=st.sampled_from([0, 8, 64]),
          capacity=st.sampled_from([0, 0, 4, 32]))
    def create(self, size: int, flags: int, align: int, capacity: int) -> None:
        name = f"c{len(self.names)}"
        extra = {"sheaf_capacity": capacity} if self.sheaves and capacity else {}
        kind, _ = self._both(
            lambda s: s.kmem_cache_create(name, size, align, flags, **extra) and None)
        if kind == "ok":
            self.names.append(name)

    @rule(index=st.integers(0, 50), cpu=st.integers(-1, 3), times=st.integers(1, 40))
    def cache_alloc(self, index: int, cpu: int, times: int) -> None:
        if not self.names:
            return
        name = self.names[index % len(self.names)]
        for _ in range(times):
            kind, address = self._both(lambda s: s.caches[name].alloc(cpu))
            if kind == "ok":
                self.live.append(address)

    @rule(index=st.integers(0, 10**6), cpu=st.integers(-1, 3), by_kfree=st.booleans(),
          times=st.integers(1, 40))
    def free_live(self, index: int, cpu: int, by_kfree: bool, times: int) -> None:
        for step in range(times):
            if not self.live:
                return
            address = self.live.pop((index + step * 7) % len(self.live))
            kind, _ = self._both(lambda s, a=address: self._free(s, a, cpu, by_kfree))
            if kind == "error":
                self.live.append(address)

    @staticmethod
    def _free(slab: SlabAllocator, address: int, cpu: int, by_kfree: bool) -> None:
        if by_kfree:
            slab.kfree(address, cpu)
            return
        cache = slab.cache_of(address)
        if cache is None:
            slab.kfree(address, cpu)  # a large kmalloc has no cache
        else:
            cache.free(address, cpu)

    @rule(size=st.one_of(st.integers(0, 300), st.integers(0, 9000), st.integers(8193, 20000)),
          gfp=GFPS, cpu=st.integers(-1, 3), times=st.integers(1, 30))
    def kmalloc(self, size: int, gfp: Any, cpu: int, times: int) -> None:
        for _ in range(times):
            kind, address = self._both(lambda s: s.kmalloc(size, gfp, cpu))
            if kind == "ok" and address != self.pair[0].zero_size_ptr:
                self.live.append(address)

    @rule(index=st.integers(0, 50), cpu=st.one_of(st.integers(0, 2), ODD_CPUS),
          gfp=st.one_of(GFPS, BAD_GFPS))
    def cache_alloc_checked(self, index: int, cpu: Any, gfp: Any) -> None:
        if not self.names:
            return
        name = self.names[index % len(self.names)]
        kind, address = self._both(lambda s: s.caches[name].alloc(cpu, gfp))
        if kind == "ok":
            self.live.append(address)

    @rule(size=st.one_of(st.sampled_from(ODD), st.integers(-2, 20000)), gfp=st.one_of(GFPS,
          BAD_GFPS), cpu=st.one_of(st.integers(0, 2), ODD_CPUS),
          call=st.sampled_from(["kmalloc", "kmalloc_large", "kzalloc", "kcalloc", "kfree",
                                "krealloc", "kfree_rcu", "destroy_kmalloc"]))
    def kmalloc_checked(self, size: Any, gfp: Any, cpu: Any, call: str) -> None:
        zero = self.pair[0].zero_size_ptr
        target = self.live[0] if self.live else None
        calls: dict[str, Any] = {
            "kmalloc": lambda s: s.kmalloc(size, gfp, cpu),
            "kmalloc_large": lambda s: s.kmalloc_large(size, gfp),
            "kzalloc": lambda s: s.kzalloc(size, gfp, cpu),
            "kcalloc": lambda s: s.kcalloc(2, size, gfp, cpu),
            "kfree": lambda s: s.kfree(None if size is None else zero, cpu),
            "krealloc": lambda s: s.krealloc(target, size, gfp, cpu),
            "kfree_rcu": lambda s: s.kfree_rcu(None, cpu),
            "destroy_kmalloc": lambda s: s.kmem_cache_destroy("kmalloc-64"),
        }
        kind, address = self._both(calls[call])
        if call == "krealloc" and kind == "ok" and target is not None:
            self.live.remove(target)
        if kind == "ok" and isinstance(address, int) and address != zero:
            self.live.append(address)

    @rule(offset=st.integers(-8, 300 * 4096), odd=st.sampled_from(ODD), use_odd=st.booleans(),
          cpu=st.integers(-1, 3), via=st.sampled_from(["kfree", "cache", "ksize", "cache_of"]))
    def bad_calls(self, offset: int, odd: Any, use_odd: bool, cpu: int, via: str) -> None:
        address = odd if use_odd else offset
        if via == "kfree":
            kind, _ = self._both(lambda s: s.kfree(address, cpu))
            if kind == "ok":
                self.live = [a for a in self.live if a != address]
        elif via == "cache" and self.names:
            name = self.names[abs(offset) % len(self.names)]
            kind, _ = self._both(lambda s: s.caches[name].free(address, cpu))
            if kind == "ok":
                self.live = [a for a in self.live if a != address]
        elif via == "ksize":
            self._both(lambda s: s.ksize(address))
        else:
            self._both(lambda s: s.cache_of(address) and s.cache_of(address).name)

    @rule(index=st.integers(0, 50), what=st.sampled_from(["shrink", "flush", "destroy"]),
          cpu=st.integers(0, 2))
    def maintenance(self, index: int, what: str, cpu: int) -> None:
        if not self.names:
            self._both(lambda s: s.shrink())
            return
        name = self.names[index % len(self.names)]
        if what == "shrink":
            self._both(lambda s: s.caches[name].shrink())
        elif what == "flush":
            self._both(lambda s: getattr(s.caches[name], "flush_cpu", lambda c: None)(
                cpu % self.cpus))
        else:
            kind, _ = self._both(lambda s: s.kmem_cache_destroy(name))
            if kind == "ok":
                self.names.remove(name)

    @invariant()
    def same_state(self) -> None:
        if hasattr(self, "pair"):
            compiled, pure = self.pair
            assert slab_snapshot(compiled) == slab_snapshot(pure)
            assert compiled.buddy.stats() == pure.buddy.stats()
            assert compiled.slabinfo() == pure.slabinfo()
            assert outcome(compiled.check) == outcome(pure.check) == ("ok", None)


TestSlabLockstep = SlabLockstep.TestCase
TestSlabLockstep.settings = settings(max_examples=FUZZ_EXAMPLES, stateful_step_count=40,
                                     deadline=None)


@needs_compiled
def test_the_compiled_caches_and_kmalloc_are_bound() -> None:
    compiled, pure = twins(lambda: SlabAllocator(BuddyAllocator(1 << 24)))
    plain = compiled.kmem_cache_create("plain", 64)
    assert type(plain.alloc).__name__ == "builtin_function_or_method"
    assert type(compiled.kmalloc).__name__ == "builtin_function_or_method"
    assert type(pure.kmem_cache_create("plain", 64).alloc).__name__ == "method"
    debug = compiled.kmem_cache_create("debug", 64, flags=SLAB_RED_ZONE)
    assert type(debug.alloc).__name__ == "method"  # debug caches check every object in Python


@needs_compiled
@pytest.mark.fuzz
@pytest.mark.parametrize("seed", range(4))
def test_slub_free_slow_paths_in_lockstep(seed: int) -> None:
    """Frees on every CPU of objects allocated on every CPU: to another CPU's cpu slab, to cpu
    partial slabs, to node partial slabs that stay partial (the compiled core's share of
    __slab_free) and to slabs that move or go (the pure path's). Both cores end every step in
    the same state, counters included, and the core took part of the slow paths itself."""
    import random

    rng = random.Random(seed)
    compiled, pure = twins(lambda: SlabAllocator(BuddyAllocator(1024 * 4096), nr_cpus=3,
                                                 thread_safe=bool(seed & 1)))
    calls: dict[str, list[int]] = {}
    size = rng.choice([64, 192, 700])
    for name, slab in (("compiled", compiled), ("pure", pure)):
        cache: Any = slab.kmem_cache_create("obj", size)  # (a SlubCache)
        counted = [0]
        original = cache._free_slowpath

        def counting(*args: Any, _original: Any = original, _counted: list[int] = counted
                     ) -> None:
            _counted[0] += 1
            _original(*args)

        cache._free_slowpath = counting
        calls[name] = counted
    live: list[int] = []

    def both(call: Any) -> tuple[str, Any]:
        done = outcome(lambda: call(compiled.caches["obj"]))
        assert done == outcome(lambda: call(pure.caches["obj"]))
        return done

    for step in range(3000):
        cpu = rng.randrange(3)
        if live and (rng.random() < 0.48 or len(live) > 1500):
            address = live.pop(rng.randrange(len(live)))
            assert both(lambda c, a=address, n=cpu: c.free(a, n)) == ("ok", None)
        else:
            kind, address = both(lambda c, n=cpu: c.alloc(n))
            assert kind == "ok"
            live.append(address)
        if step % 250 == 0:
            assert slab_snapshot(compiled) == slab_snapshot(pure)
    assert slab_snapshot(compiled) == slab_snapshot(pure)
    assert outcome(compiled.check) == outcome(pure.check) == ("ok", None)
    stats = pure.caches["obj"].stats()
    assert stats.free_slowpath == calls["pure"][0] > calls["compiled"][0] > 0
    assert stats.free_frozen > 0
