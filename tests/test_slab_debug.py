"""SLUB_DEBUG-style checks in the real bytes: red zones, poison, caller tracking."""

from __future__ import annotations

import pytest

from kmem import (
    BuddyAllocator,
    PoisonError,
    RedZoneError,
    SlabAllocator,
)
from kmem.slab.flags import SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER
from kmem.slab.slub import SlubDebugCache

MiB = 1 << 20
# Linux's byte values (include/linux/poison.h), written here rather than imported from the
# module under test, so a wrong constant there fails these tests.
POISON_FREE = 0x6B  # a free object's bytes
POISON_END = 0xA5  # its last byte
SLUB_RED_INACTIVE = 0xBB  # red zones of a free object
SLUB_RED_ACTIVE = 0xCC  # red zones of an allocated object
DEBUG = SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER


@pytest.fixture(params=["slub", "slab"])
def slab(request: pytest.FixtureRequest) -> SlabAllocator:
    return SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2, policy=request.param)


def test_layout_and_patterns(slab: SlabAllocator) -> None:
    cache = slab.kmem_cache_create("dbg", 100, flags=DEBUG)
    # calculate_sizes by hand: 104 (ALIGN 8) -> inuse 104; free pointer after it: 112;
    # two 32-byte tracks: 176; red zone word: 184; left pad ALIGN(8, 8) = 8: 192.
    assert (cache.inuse, cache.offset, cache.red_left_pad, cache.slab_size) == (104, 104, 8, 192)
    memory = slab.buddy.memory
    a = cache.alloc()
    b = cache.alloc()
    assert b - a == 192
    assert a % 4096 == 8  # the first object follows its left red zone
    assert bytes(memory.view(a - 8, 8)) == bytes([SLUB_RED_ACTIVE]) * 8
    assert bytes(memory.view(a + 100, 4)) == bytes([SLUB_RED_ACTIVE]) * 4
    # a free object: poisoned, red zones inactive
    c = b + 192
    assert bytes(memory.view(c, 100)) == bytes([POISON_FREE]) * 99 + bytes([POISON_END])
    assert bytes(memory.view(c - 8, 8)) == bytes([SLUB_RED_INACTIVE]) * 8
    cache.free(a)
    assert bytes(memory.view(a, 100)) == bytes([POISON_FREE]) * 99 + bytes([POISON_END])
    slab.check()


def test_overflow_is_caught_on_free(slab: SlabAllocator) -> None:
    cache = slab.kmem_cache_create("dbg", 100, flags=SLAB_RED_ZONE)
    a = cache.alloc()
    slab.buddy.memory.view(a + 100, 1)[0] = 0  # one byte past the object
    with pytest.raises(RedZoneError, match="right red zone overwritten at object offset 100"):
        cache.free(a)
    assert cache.owns(a)  # not freed
    slab.check()  # the red zone was restored
    cache.free(a)
    slab.check()


def test_underflow_is_caught_on_free(slab: SlabAllocator) -> None:
    cache = slab.kmem_cache_create("dbg", 64, flags=SLAB_RED_ZONE)
    a = cache.alloc()
    slab.buddy.memory.view(a - 1, 1)[0] = 0
    with pytest.raises(RedZoneError, match="left red zone overwritten at object offset -1"):
        slab.kfree(a)
    slab.kfree(a)
    slab.check()


def test_use_after_free_is_caught_on_the_next_allocation(slab: SlabAllocator) -> None:
    cache = slab.kmem_cache_create("dbg", 200, flags=SLAB_POISON)
    a = cache.alloc()
    cache.free(a)
    slab.buddy.memory.view(a + 50, 1)[0] = 0x41  # write to a freed object
    with pytest.raises(AssertionError, match="poison"):
        slab.check()
    with pytest.raises(PoisonError, match="offset 50"):
        cache.alloc()
    slab.check()  # poison restored
    assert cache.alloc() == a  # and the object is handed out normally now


def test_store_user_records_callers(slab: SlabAllocator) -> None:
    cache = slab.kmem_cache_create("dbg", 48, flags=SLAB_STORE_USER)
    assert isinstance(cache, SlubDebugCache) == (slab.policy == "slub")
    a = cache.alloc(cpu=1)
    debugger = cache._debug
    assert debugger is not None
    alloc_track = debugger.track(a, 0)
    assert alloc_track is not None
    assert "test_store_user_records_callers" in alloc_track.caller
    assert alloc_track.cpu == 1
    assert debugger.track(a, 1) is None
    cache.free(a, cpu=0)
    free_track = debugger.track(a, 1)
    assert free_track is not None and free_track.cpu == 0
    assert free_track.sequence > alloc_track.sequence


def test_slub_debug_caches_have_no_cpu_slabs_and_a_full_list() -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2)
    cache = slab.kmem_cache_create("dbg", 1000, flags=SLAB_RED_ZONE)
    assert isinstance(cache, SlubDebugCache)
    assert cache.cpu_partial == 0
    n = cache.objs_per_slab
    objs = [cache.alloc(cpu=i % 2) for i in range(n + 1)]
    stats = cache.stats()
    assert (stats.cpu_slabs, stats.full_slabs, stats.partial_slabs) == (0, 1, 1)
    assert stats.alloc_fastpath == 0 and stats.free_fastpath == 0
    # objects come out of one slab in address order, whatever the CPU
    assert objs[:n] == sorted(objs[:n])
    cache.free(objs[0])
    assert (cache.stats().full_slabs, cache.stats().partial_slabs) == (0, 2)
    # SLUB counts free objects on node partial slabs as inactive
    info = cache.slabinfo()
    assert info.active_objs == n
    slab.check()


def test_leak_report_names_the_allocating_caller(slab: SlabAllocator) -> None:
    from kmem import CacheNotEmptyError

    cache = slab.kmem_cache_create("leaky", 64, flags=SLAB_STORE_USER)
    leaked = cache.alloc()
    with pytest.raises(CacheNotEmptyError, match=r"from test_slab_debug\.py") as caught:
        slab.kmem_cache_destroy(cache)
    (leak,) = caught.value.leaks
    assert leak.address == leaked
    assert leak.caller is not None and "test_leak_report_names_the_allocating_caller" in (
        leak.caller)
