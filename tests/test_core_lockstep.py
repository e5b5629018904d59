"""The compiled core and the pure-Python core, driven in lockstep, agree on everything.

A hypothesis state machine runs the same random calls — valid ones and every kind of bad one —
on a BuddyAllocator built on each core and compares, after every step, what each call
returned or raised (class and message) and the whole state: every frame's state byte, every
free-list link, every counter, and check()'s verdict.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from core_twins import FUZZ_EXAMPLES, needs_compiled, outcome, pure_core, twins
from kmem import BuddyAllocator
from kmem._compiled import core

ODD_VALUES = st.sampled_from([None, 1.0, True, False, "3", -1, -(2**70), 2**70, 2**31, 2**63])


def _buddy_state(buddy: BuddyAllocator) -> tuple[Any, ...]:
    mem_map = buddy.mem_map
    return (bytes(mem_map.state), mem_map.next.tobytes(), mem_map.prev.tobytes(),
            buddy.stats(), buddy.largest_free_order)


@needs_compiled
def test_the_compiled_core_really_runs_the_hot_paths() -> None:
    compiled, pure = twins(lambda: BuddyAllocator(1 << 20))
    assert type(compiled.alloc_pages).__module__ != BuddyAllocator.__module__
    assert isinstance(compiled._lock, core.BuddyZone)  # type: ignore[union-attr]
    assert pure.alloc_pages.__func__ is BuddyAllocator.alloc_pages  # type: ignore[attr-defined]


@needs_compiled
class BuddyLockstep(RuleBasedStateMachine):
    """Both cores, the same calls; ``live`` holds the blocks allocated so far."""

    @initialize(nr_pages=st.integers(1, 300), max_order=st.integers(0, 6),
                reserved=st.lists(st.integers(0, 299), max_size=4),
                thread_safe=st.booleans())
    def boot(self, nr_pages: int, max_order: int, reserved: list[int], thread_safe: bool
             ) -> None:
        ranges = [(pfn * 4096, 4096) for pfn in reserved if pfn < nr_pages]
        self.pair = twins(lambda: BuddyAllocator(nr_pages * 4096, max_order=max_order,
                                                 reserved=ranges, thread_safe=thread_safe))
        self.live: list[tuple[int, int]] = []

    def _both(self, call: Any) -> Any:
        compiled, pure = self.pair
        done = outcome(lambda: call(compiled))
        assert done == outcome(lambda: call(pure))
        return done

    @rule(order=st.integers(-1, 8))
    def alloc_pages(self, order: int) -> None:
        kind, value = self._both(lambda b: b.alloc_pages(order))
        if kind == "ok":
            self.live.append((value, order))

    @rule(size=st.integers(-5, 300 * 4096))
    def alloc(self, size: int) -> None:
        kind, value = self._both(lambda b: b.alloc(size))
        if kind == "ok":
            self.live.append((value >> 12, max(0, (size - 1) >> 12).bit_length()))

    @rule(index=st.integers(0, 1000), by_address=st.booleans())
    def free_live(self, index: int, by_address: bool) -> None:
        if not self.live:
            return
        pfn, order = self.live.pop(index % len(self.live))
        if by_address:
            self._both(lambda b: b.free(pfn << 12))
        else:
            self._both(lambda b: b.free_pages(pfn, order))

    @rule(pfn=st.integers(-3, 320), order=st.integers(-2, 40))
    def free_pages_anything(self, pfn: int, order: int) -> None:
        kind, _ = self._both(lambda b: b.free_pages(pfn, order))
        if kind == "ok":
            self.live.remove((pfn, order))

    @rule(address=st.integers(-4096, 330 * 4096))
    def free_anything(self, address: int) -> None:
        kind, _ = self._both(lambda b: b.free(address))
        if kind == "ok":
            self.live = [(p, o) for p, o in self.live if p != address >> 12]

    @rule(value=ODD_VALUES, which=st.sampled_from(["alloc_pages", "alloc", "free", "free_pages"]))
    def odd_arguments(self, value: object, which: str) -> None:
        if which == "free_pages":
            self._both(lambda b: b.free_pages(value, 0))
            self._both(lambda b: b.free_pages(0, value))
        elif which == "alloc_pages":
            kind, pfn = self._both(lambda b: b.alloc_pages(value))
            if kind == "ok":
                self.live.append((pfn, int(value)))  # type: ignore[call-overload]
        elif which == "alloc":
            kind, address = self._both(lambda b: b.alloc(value))
            if kind == "ok":
                pages = (int(value) - 1) >> 12  # type: ignore[call-overload]
                self.live.append((address >> 12, pages.bit_length()))
        else:
            self._both(lambda b: getattr(b, which)(value))

    @rule()
    def keyword_arguments(self) -> None:
        kind, pfn = self._both(lambda b: b.alloc_pages(order=0))
        if kind == "ok":
            self._both(lambda b: b.free_pages(pfn=pfn, order=0))

    @invariant()
    def same_state(self) -> None:
        if hasattr(self, "pair"):
            compiled, pure = self.pair
            assert _buddy_state(compiled) == _buddy_state(pure)
            assert outcome(compiled.check) == outcome(pure.check) == ("ok", None)


# (marks on the machine do not reach the TestCase hypothesis makes of it: given again)
TestBuddyLockstep = needs_compiled(BuddyLockstep.TestCase)
TestBuddyLockstep.settings = settings(max_examples=FUZZ_EXAMPLES, stateful_step_count=60,
                                      deadline=None)
TestBuddyLockstep = pytest.mark.fuzz(TestBuddyLockstep)


@needs_compiled
def test_a_long_random_workload_ends_in_the_same_state() -> None:
    import random

    rng = random.Random(7)
    compiled, pure = twins(lambda: BuddyAllocator(16384 * 4096))
    live: list[tuple[int, int]] = []
    for _ in range(100_000):
        if live and rng.random() < 0.5:
            pfn, order = live.pop(rng.randrange(len(live)))
            compiled.free_pages(pfn, order)
            pure.free_pages(pfn, order)
        else:
            order = rng.choice((0, 0, 0, 1, 2, 3, 4, 5))
            a = outcome(lambda o=order: compiled.alloc_pages(o))  # type: ignore[misc]
            b = outcome(lambda o=order: pure.alloc_pages(o))  # type: ignore[misc]
            assert a == b
            if a[0] == "ok":
                live.append((a[1], order))
    assert _buddy_state(compiled) == _buddy_state(pure)


@pytest.mark.fuzz
@pytest.mark.skipif(not os.environ.get("KMEM_EXPECT_SANITIZED"), reason="only under tools/fuzz.sh")
def test_the_fuzz_run_uses_the_sanitized_core() -> None:
    assert core is not None and "build/asan" in str(core.__file__)


@pytest.mark.fuzz
@needs_compiled
def test_cores_are_freed_with_their_allocators() -> None:
    import gc

    def zones() -> int:
        gc.collect()
        return sum(isinstance(o, core.BuddyZone) for o in gc.get_objects())  # type: ignore[union-attr]

    before = zones()
    buddies = [BuddyAllocator(1 << 20) for _ in range(10)]
    assert zones() == before + 10
    del buddies
    assert zones() == before


def test_pure_core_helper_builds_a_pure_allocator() -> None:
    with pure_core():
        buddy = BuddyAllocator(1 << 20)
    assert buddy.alloc_pages.__func__ is BuddyAllocator.alloc_pages  # type: ignore[attr-defined]


@needs_compiled
def test_closed_memory_is_refused_alike_on_both_cores() -> None:
    """Closing the memory rebinds the compiled fast paths too: the same error on each core."""
    compiled, pure = twins(lambda: BuddyAllocator(1 << 20))
    for buddy in (compiled, pure):
        buddy.alloc_pages(2)
        buddy.memory.close()
    calls: list[Any] = [lambda b: b.alloc_pages(0), lambda b: b.alloc(4096),
                        lambda b: b.free_pages(0, 2), lambda b: b.free(0),
                        lambda b: b.alloc_pages("x"), lambda b: b.view(0)]
    for call in calls:
        done = outcome(functools.partial(call, compiled))
        assert done == outcome(functools.partial(call, pure))
        assert done[0] == "error" and done[1][0] == "MemoryClosedError"
    assert _buddy_state(compiled) == _buddy_state(pure)
