"""Every bad input to a cache gets its own KmemError subclass and leaves everything as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kmem import (
    BuddyAllocator,
    CacheDestroyedError,
    CacheExistsError,
    CacheNotEmptyError,
    DoubleFreeError,
    InteriorPointerError,
    InvalidArgumentError,
    InvalidCpuError,
    InvalidTypeError,
    KmemError,
    NotAnObjectError,
    ObjectDoubleFreeError,
    SlabAllocator,
    WrongCacheError,
)
from test_slab import slab_snapshot

MiB = 1 << 20


class World:
    """Two caches with live and freed objects on both CPUs, and a kmalloc'd object."""

    def __init__(self, policy: str) -> None:
        self.slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2, policy=policy)
        self.tcb = self.slab.kmem_cache_create("tcb", 3072)
        self.pcb = self.slab.kmem_cache_create("pcb", 7168)
        self.t = [self.tcb.alloc(cpu=i % 2) for i in range(25)]
        self.p = [self.pcb.alloc() for _ in range(6)]
        self.freed = self.t.pop(3)
        self.tcb.free(self.freed, cpu=1)
        self.k = self.slab.kmalloc(200)


# The callable takes Any so that the wrong-type cases type-check.
CASES: list[tuple[str, Callable[[Any], Any], type[KmemError], str]] = [
    ("double free", lambda w: w.tcb.free(w.freed), ObjectDoubleFreeError, "already free"),
    ("double free via kfree", lambda w: w.slab.kfree(w.freed), ObjectDoubleFreeError,
     "already free"),
    ("free of a never-allocated slot", lambda w: w.tcb.free(w.t[-1] + 3072),
     ObjectDoubleFreeError, "already free"),
    ("interior pointer", lambda w: w.tcb.free(w.t[0] + 100), InteriorPointerError,
     "not the start"),
    ("interior pointer via kfree", lambda w: w.slab.kfree(w.k + 1), InteriorPointerError,
     "not the start"),
    ("slab tail past the last object", lambda w: w.tcb.free(
        (w.t[0] & ~(32768 - 1)) + 10 * 3072), InteriorPointerError, "not the start"),
    ("wrong cache", lambda w: w.pcb.free(w.t[0]), WrongCacheError, "another cache"),
    ("kmalloc object to a cache", lambda w: w.tcb.free(w.k), WrongCacheError, "another cache"),
    ("address of no slab", lambda w: w.tcb.free(15 * MiB), NotAnObjectError, "not in a slab"),
    ("negative address", lambda w: w.tcb.free(-4096), NotAnObjectError, "not in a slab"),
    ("address beyond memory", lambda w: w.tcb.free(1 << 40), NotAnObjectError,
     "not in a slab"),
    ("address of wrong type", lambda w: w.tcb.free("0"), InvalidTypeError, "int"),
    ("bool address", lambda w: w.tcb.free(True), InvalidTypeError, "int"),
    ("cpu out of range on alloc", lambda w: w.tcb.alloc(cpu=2), InvalidCpuError, "cpu 2"),
    ("negative cpu on alloc", lambda w: w.tcb.alloc(cpu=-1), InvalidCpuError, "cpu -1"),
    ("cpu of wrong type on free", lambda w: w.tcb.free(w.t[0], cpu="1"), InvalidTypeError,
     "cpu"),
    ("cpu out of range on free", lambda w: w.tcb.free(w.t[0], cpu=5), InvalidCpuError,
     "cpu 5"),
    ("unhashable cpu on alloc", lambda w: w.tcb.alloc(cpu=[0]), InvalidTypeError, "cpu"),
    ("float cpu on alloc", lambda w: w.tcb.alloc(cpu=1.0), InvalidTypeError, "cpu"),
    ("unhashable cpu on free", lambda w: w.tcb.free(w.t[0], cpu=[0]), InvalidTypeError,
     "cpu"),
    ("cpu out of range on kmalloc", lambda w: w.slab.kmalloc(64, cpu=9), InvalidCpuError,
     "cpu 9"),
    ("destroy with live objects", lambda w: w.slab.kmem_cache_destroy(w.tcb),
     CacheNotEmptyError, "still has 24"),
    ("destroy by unknown name", lambda w: w.slab.kmem_cache_destroy("nope"),
     InvalidArgumentError, "no cache"),
    ("duplicate cache name", lambda w: w.slab.kmem_cache_create("tcb", 64), CacheExistsError,
     "already exists"),
    ("duplicate kmalloc name", lambda w: w.slab.kmem_cache_create("kmalloc-64", 64),
     CacheExistsError, "already exists"),
    ("empty cache name", lambda w: w.slab.kmem_cache_create("", 64), InvalidArgumentError,
     "name"),
    ("zero object size", lambda w: w.slab.kmem_cache_create("z", 0), InvalidArgumentError,
     "object_size"),
    ("bad align", lambda w: w.slab.kmem_cache_create("z", 64, align=12),
     InvalidArgumentError, "power of two"),
    ("unknown flag", lambda w: w.slab.kmem_cache_create("z", 64, flags=1 << 30),
     InvalidArgumentError, "unknown slab flags"),
    ("ctor not callable", lambda w: w.slab.kmem_cache_create("z", 64, ctor=5),
     InvalidTypeError, "callable"),
    ("view of a free object", lambda w: w.tcb.view(w.freed), ObjectDoubleFreeError,
     "already free"),
]


@pytest.mark.parametrize("policy", ["slub", "slab"])
@pytest.mark.parametrize(("what", "call", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_changes_nothing(policy: str, what: str, call: Callable[[World], Any],
                                   error: type[KmemError], words: str) -> None:
    world = World(policy)
    before = slab_snapshot(world.slab)
    with pytest.raises(error, match=words):
        call(world)
    assert slab_snapshot(world.slab) == before, what
    world.slab.check()


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_double_free_is_a_double_free_error(policy: str) -> None:
    world = World(policy)
    with pytest.raises(DoubleFreeError):  # the kmem-wide family
        world.tcb.free(world.freed)


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_destroy_reports_every_leak_then_works_once_freed(policy: str) -> None:
    world = World(policy)
    with pytest.raises(CacheNotEmptyError) as caught:
        world.slab.kmem_cache_destroy(world.tcb)
    leaks = caught.value.leaks
    assert sorted(leak.address for leak in leaks) == sorted(world.t)
    assert all(leak.address >> 12 >> 3 << 3 == leak.slab_pfn for leak in leaks)
    for addr in world.t:
        world.tcb.free(addr, cpu=1)
    free_before = world.slab.buddy.nr_free_pages
    slabs = world.tcb.stats().slabs
    # SLUB: each CPU filled its own slabs (13 and 12 objects: 2 slabs each); classic: 3 slabs
    assert slabs == (4 if policy == "slub" else 3)
    world.slab.kmem_cache_destroy(world.tcb)
    assert "tcb" not in world.slab.caches
    assert world.slab.buddy.nr_free_pages == free_before + 8 * slabs
    world.slab.check()
    with pytest.raises(CacheDestroyedError):
        world.tcb.alloc()
    with pytest.raises(CacheDestroyedError):
        world.tcb.free(world.t[0])
    with pytest.raises(NotAnObjectError):
        world.slab.kfree(world.t[0])
    # the name can be used again
    again = world.slab.kmem_cache_create("tcb", 3072)
    assert again is not world.tcb
    world.slab.check()
