"""kmalloc of every family, __GFP_ZERO included, on the compiled core and the pure one.

The compiled kmalloc serves every gfp_t: it picks the family (kmalloc_type) and zeroes the
object itself for __GFP_ZERO. The pure kmalloc is the reference: both get the same random calls
(every family, with and without __GFP_ZERO, odd sizes, CPUs and flags) on memory whose live
objects are filled with a pattern first, so that a zeroing that is missing, too short, too long
or in the wrong place shows. After every step the results or errors, the whole memory, the
slabs and the request counts must be the same; and, a plain model of its own, every live
object must hold what was last written into it (its pattern, or zeros after a zeroing kmalloc).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from core_twins import FUZZ_EXAMPLES, needs_compiled, outcome, twins
from kmem import BuddyAllocator, SlabAllocator
from kmem.page.gfp import __GFP_ACCOUNT, __GFP_DMA, __GFP_RECLAIMABLE, __GFP_ZERO, GFP_KERNEL
from test_slab import slab_snapshot

FAMILIES = [GFP_KERNEL, GFP_KERNEL | __GFP_ACCOUNT, GFP_KERNEL | __GFP_RECLAIMABLE, __GFP_DMA,
            __GFP_DMA | __GFP_ACCOUNT, __GFP_RECLAIMABLE | __GFP_ACCOUNT, 0]
GFPS = st.one_of(st.sampled_from(FAMILIES), st.sampled_from(FAMILIES).map(lambda g: g | __GFP_ZERO),
                 st.sampled_from([-1, 2**32, True, None, 1.0]))
SIZES = st.one_of(st.integers(1, 300), st.integers(1, 8192), st.sampled_from([0, -3, 8193, True]))
ZERO = __GFP_ZERO  # (a class body would mangle the name)
CPUS = st.one_of(st.integers(0, 2), st.sampled_from([-1, 5, True, None]))


def _requests(slab: SlabAllocator) -> dict[str, tuple[int, int, int]]:
    return {name: cache.kmalloc_requests() for name, cache in slab.caches.items()
            if cache.is_kmalloc}


@needs_compiled
@pytest.mark.fuzz
class KmallocZeroLockstep(RuleBasedStateMachine):
    @initialize(cpus=st.integers(1, 3), kernel=st.sampled_from(["6.17", "6.18", "7.0"]),
                thread_safe=st.booleans())
    def boot(self, cpus: int, kernel: str, thread_safe: bool) -> None:
        self.pair = twins(lambda: SlabAllocator(BuddyAllocator(96 * 4096), nr_cpus=cpus,
                                                kernel=kernel, thread_safe=thread_safe))
        self.live: dict[int, bytes] = {}  # address -> what it must hold (the plain model)
        self.family: dict[int, int] = {}  # address -> the gfp family it came from

    def _both(self, call: Any) -> tuple[str, Any]:
        compiled, pure = self.pair
        done = outcome(lambda: call(compiled))
        assert done == outcome(lambda: call(pure))
        return done

    @rule(size=SIZES, gfp=GFPS, cpu=CPUS, times=st.integers(1, 20), positional=st.booleans())
    def kmalloc(self, size: Any, gfp: Any, cpu: Any, times: int, positional: bool) -> None:
        for _ in range(times):
            kind, address = self._both(lambda s: s.kmalloc(size, gfp, cpu) if positional
                                       else s.kmalloc(size, gfp=gfp, cpu=cpu))
            if kind != "ok" or address == self.pair[0].zero_size_ptr:
                continue
            compiled = self.pair[0]
            length = compiled.ksize(address)
            memory = compiled.buddy.memory
            self.live[address] = (bytes(length) if gfp & ZERO
                                  else bytes(memory.view(address, length)))
            self.family[address] = gfp & ~ZERO

    @rule(size=st.integers(1, 8192), cpu=st.integers(0, 2))
    def kzalloc(self, size: int, cpu: int) -> None:
        kind, address = self._both(lambda s: s.kzalloc(size, GFP_KERNEL, cpu % s.nr_cpus))
        if kind == "ok":  # (else out of memory, on both)
            self.live[address] = bytes(self.pair[0].ksize(address))
            self.family[address] = GFP_KERNEL

    @rule(index=st.integers(0, 10**6), seed=st.integers(1, 255))
    def fill(self, index: int, seed: int) -> None:
        """Write a pattern into a live object on both twins (what a zeroing must erase)."""
        if not self.live:
            return
        address = list(self.live)[index % len(self.live)]
        length = len(self.live[address])
        pattern = bytes((seed + i) % 256 or 1 for i in range(length))
        for slab in self.pair:
            slab.buddy.memory.view(address, length)[:] = pattern
        self.live[address] = pattern

    @rule(index=st.integers(0, 10**6), cpu=st.integers(0, 2), times=st.integers(1, 20),
          again=st.booleans())
    def kfree(self, index: int, cpu: int, times: int, again: bool) -> None:
        """kfree live objects after writing into them; ``again``: each time, a zeroing kmalloc
        of its size and family at once (which gets the object just freed back, LIFO)."""
        for step in range(times):
            if not self.live:
                return
            address = list(self.live)[(index + step * 7) % len(self.live)]
            for slab in self.pair:  # a used object: its bytes are what the next user finds
                slab.buddy.memory.view(address, len(self.live[address]))[:] = bytes(
                    (index + i) % 255 + 1 for i in range(len(self.live[address])))
            kind, _ = self._both(lambda s, a=address: s.kfree(a, cpu % s.nr_cpus))
            assert kind == "ok"
            length = len(self.live.pop(address))
            family = self.family.pop(address)
            if again:
                kind, address = self._both(lambda s, n=length, f=family:
                                           s.kmalloc(n, f | ZERO, cpu % s.nr_cpus))
                if kind == "ok":
                    self.live[address] = bytes(length)
                    self.family[address] = family

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "pair"):
            return
        compiled, pure = self.pair
        assert compiled.buddy.memory.view(0, compiled.buddy.memory.size) == (
            pure.buddy.memory.view(0, pure.buddy.memory.size))
        for address, expected in self.live.items():
            assert compiled.buddy.memory.view(address, len(expected)) == expected
        assert slab_snapshot(compiled) == slab_snapshot(pure)
        assert _requests(compiled) == _requests(pure)
        assert outcome(compiled.check) == outcome(pure.check) == ("ok", None)


# (marks on the machine do not reach the TestCase hypothesis makes of it: given again)
TestKmallocZeroLockstep = needs_compiled(pytest.mark.fuzz(KmallocZeroLockstep.TestCase))
TestKmallocZeroLockstep.settings = settings(max_examples=FUZZ_EXAMPLES, stateful_step_count=40,
                                            deadline=None)


@needs_compiled
def test_kmalloc_with_the_default_gfp_works_on_both_cores() -> None:
    """kmalloc(size) with no gfp (GFP_KERNEL, the default) and gfp given by keyword: the same
    address, cache and counts on both cores."""
    compiled, pure = twins(lambda: SlabAllocator(BuddyAllocator(1 << 22)))
    for slab in (compiled, pure):
        first = slab.kmalloc(64)
        assert slab.cache_of(first).name == "kmalloc-64"  # type: ignore[union-attr]
        assert slab.kmalloc(64, cpu=1) != first
        assert slab.kzalloc(64) not in (first, 0)
    assert slab_snapshot(compiled) == slab_snapshot(pure)
    assert _requests(compiled) == _requests(pure)


@needs_compiled
@given(gfp=st.sampled_from(FAMILIES), size=st.integers(1, 8192))
@settings(max_examples=30, deadline=None)
def test_zeroing_refused_by_the_memory_fails_alike(gfp: int, size: int) -> None:
    """When the memory's bytes cannot be written (here a read-only buffer in place of the
    mapping), the compiled kmalloc leaves the zeroing to the pure code: the same error, the same
    object allocated and counted, as on the pure core."""
    compiled, pure = twins(lambda: SlabAllocator(BuddyAllocator(1 << 22)))
    for slab in (compiled, pure):
        slab.buddy.memory._buffer = memoryview(bytes(slab.buddy.memory.size))
    done = outcome(lambda: compiled.kmalloc(size, gfp | __GFP_ZERO))
    assert done == outcome(lambda: pure.kmalloc(size, gfp | __GFP_ZERO))
    assert done[0] == "error"
    assert slab_snapshot(compiled) == slab_snapshot(pure)
    assert _requests(compiled) == _requests(pure)
