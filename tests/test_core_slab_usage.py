"""KmemCache.slab_usage() from the compiled core (kmem._core.slab_usage) gives the rows the
pure comprehension gives, for every policy and kernel, on random alloc/free sequences; and
hands anything it does not know back to Python (NotImplemented), never misreading it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from core_twins import FUZZ_EXAMPLES, needs_compiled, twins
from kmem import BuddyAllocator, SlabAllocator
from kmem._compiled import core
from kmem.slab.slabs import Slab

pytestmark = needs_compiled

# (policy, kernel, object size, sheaf capacity)
CACHES = [("slub", "6.17", 64, 0), ("slub", "6.18", 192, 32), ("slub", "7.0", 512, 0),
          ("slab", "6.18", 96, 0)]
OPS = st.lists(st.tuples(st.booleans(), st.integers(0, 1), st.integers(0, 10_000)),
               max_size=300)


def _build(policy: str, kernel: str, size: int, capacity: int) -> tuple[SlabAllocator, Any]:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=2, policy=policy, kernel=kernel)
    return slab, slab.kmem_cache_create("usage", size, sheaf_capacity=capacity)


@pytest.mark.fuzz
@pytest.mark.parametrize("spec", CACHES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(ops=OPS)
def test_both_cores_give_the_same_slab_usage(spec: tuple[str, str, int, int],
                                              ops: list[tuple[bool, int, int]]) -> None:
    (compiled, compiled_cache), (pure, pure_cache) = twins(lambda: _build(*spec))
    assert compiled.buddy.compiled_core is not None and pure.buddy.compiled_core is None
    live: list[tuple[int, int]] = []  # (compiled address, pure address)
    seen: dict[int, list[Any]] = {}
    for step, (allocate, cpu, pick) in enumerate(ops):
        if allocate or not live:
            live.append((compiled_cache.alloc(cpu), pure_cache.alloc(cpu)))
        else:
            a, b = live.pop(pick % len(live))
            compiled_cache.free(a, cpu)
            pure_cache.free(b, cpu)
        if step % 7 == 0 or step == len(ops) - 1:
            rows = compiled_cache.slab_usage()
            assert rows == pure_cache.slab_usage()
            assert all(type(row[3]) is bytes for row in rows)
            # (from the cache's map of pfn -> slab, as slab_usage() reads it, and from the
            # list _slabs() makes of it)
            assert core is not None
            assert core.slab_usage(compiled_cache._slabs()) == rows
            assert core.slab_usage(dict(reversed(compiled_cache._slab_of_pfn.items()))) == rows
            # (given the rows it gave before, those that did not change are those tuples)
            earlier = seen.get(step // 50, [])
            again = core.slab_usage(compiled_cache._slab_of_pfn, earlier)
            assert again == rows
            kept = {id(row) for row in earlier}
            assert [id(row) in kept for row in again] == [row in earlier for row in again]
            seen.setdefault(step // 50, rows)
    kmalloc = compiled.cache_list()  # every cache, the kmalloc ones (sheaves live there) too
    for cache, twin in zip(kmalloc, pure.cache_list(), strict=True):
        assert cache.slab_usage() == twin.slab_usage(), cache.name


class _Other:
    __slots__ = ("base", "pfn", "used")


def test_what_the_core_does_not_know_goes_back_to_python() -> None:
    assert core is not None
    slab = Slab(5, 0, 5 << 12, 5 << 12, 4, 0)
    slab.used[1] = 1
    slab.used[2] = 2  # (waiting in a sheaf: not a user's)
    assert core.slab_usage([slab]) == [(5, 1, 5 << 12, bytes([0, 1, 2, 0]))]
    assert core.slab_usage([]) == []
    unset = _Other()  # slots never set
    odd = Slab(6, 0, 6 << 12, 6 << 12, 4, 0)
    odd.used = bytes(4)  # type: ignore[assignment]
    for bad in ([slab, unset], [unset], [slab, odd], [slab, object()], (slab,), [3]):
        assert core.slab_usage(bad) is NotImplemented
    assert core.slab_usage([slab]) == [(5, 1, 5 << 12, bytes([0, 1, 2, 0]))]  # (type again)
    assert core.slab_usage() is NotImplemented
    # A cache's map of pfn -> slab: every page of a slab, its slabs taken once by pfn.
    big = Slab(8, 1, 8 << 12, 8 << 12, 2, 0)
    big.used[0] = 1
    rows = [(5, 1, 5 << 12, bytes([0, 1, 2, 0])), (8, 1, 8 << 12, bytes([1, 0]))]
    assert core.slab_usage({9: big, 5: slab, 8: big}) == rows
    assert core.slab_usage({}) == []
    other: Any = _Other()
    other.pfn, other.base, other.used = 7, 7 << 12, bytearray(2)
    huge = Slab(2**70, 0, 0, 0, 1, 0)
    maps: list[dict[int, Any]] = [{5: slab, 6: odd}, {5: slab, 7: other}, {7: other, 5: slab},
                                  {6: unset}, {1: huge}, {5: slab, 6: 3}]
    for bad_map in maps:
        assert core.slab_usage(bad_map) is NotImplemented
    assert core.slab_usage({5: slab}) == rows[:1]
    assert core.slab_usage([slab, other]) is NotImplemented  # (another type: other offsets)
    # Rows given before: one equal to the row made now is taken, anything else is not.
    (made,) = core.slab_usage([slab])
    assert core.slab_usage([slab], [made])[0] is made
    assert core.slab_usage([slab], [(4, 0, 0, b""), (4, 0, 0, b""), made])[0] is made
    for earlier in ([(5, 1, 5 << 12, bytes([0, 1, 2, 1]))], [(5, 2, 5 << 12, made[3])],
                    [(5, 1, 6 << 12, made[3])], [(5, 1, 5 << 12, bytearray(made[3]))],
                    [(5, 1, 5 << 12)], [3, made], [(5.0, 1, 5 << 12, made[3]), made],
                    [(5, 1.0, 5 << 12, made[3])], [(2**70, 1, 5 << 12, made[3]), made],
                    [(6, 1, 5 << 12, made[3]), made], (made,), [made, made][:0]):
        rows_now = core.slab_usage([slab], earlier)
        assert rows_now == [made] and rows_now[0] is not made, earlier
    assert core.slab_usage([slab], None) == [made]
    assert core.slab_usage([slab], [made], [made]) is NotImplemented
