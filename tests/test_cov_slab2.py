"""The sheaf paths of mm/slub.c (6.18 and 7.0) that ordinary workloads do not reach: a sheaf
or its objects not to be had under memory pressure, a barn at its limits, and the per-CPU state
re-read after the lock was dropped to kzalloc a sheaf (another task ran on the CPU meanwhile, or
the sheaf came from the very cache being freed to). Expected numbers follow from the kernel's
rules, worked by hand in each test's comments."""

from __future__ import annotations

import copy
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import pytest

from kmem.errors import InvalidTypeError, OutOfMemoryError
from kmem.page.buddy import BuddyAllocator
from kmem.page.gfp import GFP_ATOMIC
from kmem.slab.allocator import SlabAllocator
from kmem.slab.debug import PoisonError
from kmem.slab.errors import (
    CacheDestroyedError,
    InteriorPointerError,
    NotAnObjectError,
)
from kmem.slab.flags import SLAB_NOLEAKTRACE, SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER
from kmem.slab.sheaves import Sheaf, SheafHost, sheaf_size
from kmem.slab.slabs import ON_NODE_PARTIAL, ON_NONE

# (kernel, object size, sheaf capacity): 6.18 takes the capacity asked for (4); 7.0's
# calculate_sheaf_capacity gives a 1024-byte slot 12, a sheaf of 32 + 12 * 8 = 128 bytes, which
# fills its kmalloc-128 slot exactly ((128 - 32) / 8 = 12), so the request (4) changes nothing.
KERNELS = [("6.18", 256, 4), ("7.0", 1024, 12)]


def _boot(kernel: str, size: int, capacity: int, cpus: int = 1,
          requested: int = 4) -> tuple[Any, Any]:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=cpus, kernel=kernel)
    cache = slab.kmem_cache_create("cov2", size, sheaf_capacity=requested)
    assert cache.sheaf_capacity == capacity
    return slab, cache


def _places(cache: Any) -> list[tuple[str, int]]:
    """(place, objects) of each sheaf, main and spare first, then the barn's lists."""
    return [(place, len(sheaf)) for place, _, sheaf in cache.sheaves()]


def _exhaust(slab: SlabAllocator, *sizes: int) -> list[int]:
    """Take every free page of the buddy allocator, then every free kmalloc object of the
    given sizes: from here no slab can grow and no sheaf of those sizes can be kzalloc'd."""
    held: list[int] = []
    with pytest.raises(OutOfMemoryError):
        while True:
            held.append(slab.buddy.alloc_pages(0))
    for size in sizes:
        with pytest.raises(OutOfMemoryError):
            while True:
                slab.kmalloc(size)
    return held


def _another_task(cache: Any, monkeypatch: pytest.MonkeyPatch,
                  action: Callable[[], object]) -> list[int]:
    """Run ``action`` once, inside the next sheaf kzalloc of ``cache``: the kernel drops the
    per-CPU lock around alloc_empty_sheaf, and another task may use the CPU's sheaves then.
    Returns the list the sheaf addresses kzalloc'd are appended to."""
    host = cache._host
    pending = [action]
    sheaves: list[int] = []

    def kzalloc(size: int, gfp: int, cpu: int, caller: int) -> int:
        if pending:
            pending.pop()()
        address: int = host.kzalloc(size, gfp, cpu, caller)
        sheaves.append(address)
        return address

    monkeypatch.setattr(cache, "_host", SheafHost(kzalloc, host.kfree, host.call_rcu))
    return sheaves


# -- memory pressure ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kernel", "size", "capacity"), KERNELS)
def test_a_free_with_no_memory_for_an_empty_sheaf_flushes_main(kernel: str, size: int,
                                                               capacity: int) -> None:
    """__pcs_replace_full_main: main is full and the barn has no empty sheaf; when the
    GFP_NOWAIT alloc_empty_sheaf fails, sheaf_flush_main sends main's objects to the slabs and
    the free goes on main. With a full spare, barn_replace_full_sheaf failed first (no empty
    sheaf to swap for: not -E2BIG), which counts one barn_put_fail."""
    slab, cache = _boot(kernel, size, capacity)
    # GFP_ATOMIC allocations never refill a sheaf: main stays the empty one, no spare, the barn
    # empty -- and the objects are the users' to free.
    objects = [cache.alloc(0, GFP_ATOMIC) for _ in range(3 * capacity + 1)]
    assert _places(cache) == [("main", 0)]
    for address in objects[:capacity]:
        cache.free(address, 0)
    assert _places(cache) == [("main", capacity)]
    held = _exhaust(slab, sheaf_size(capacity))
    before = cache.stats()
    cache.free(objects[capacity], 0)  # no spare, no barn sheaf, no memory: main is flushed
    after = cache.stats()
    assert _places(cache) == [("main", 1)]
    assert after.sheaf_flush - before.sheaf_flush == capacity
    assert after.barn_put_fail == before.barn_put_fail  # no full spare: nothing was put
    assert after.sheaf_alloc == before.sheaf_alloc
    slab.check()

    for page in held:  # memory again: the next overflow gets a new empty sheaf
        slab.buddy.free_pages(page, 0)
    for address in objects[capacity + 1:2 * capacity + 1]:
        cache.free(address, 0)
    # main took capacity - 1 of them; the one that found it full went on a new empty main, the
    # full one became the spare (__pcs_install_empty_sheaf with no spare).
    assert _places(cache) == [("main", 1), ("spare", capacity)]
    for address in objects[2 * capacity + 1:3 * capacity]:
        cache.free(address, 0)
    assert _places(cache) == [("main", capacity), ("spare", capacity)]

    _exhaust(slab, sheaf_size(capacity))
    before = cache.stats()
    cache.free(objects[3 * capacity], 0)  # full spare, no empty in the barn, no memory
    after = cache.stats()
    assert _places(cache) == [("main", 1), ("spare", capacity)]
    assert after.barn_put_fail - before.barn_put_fail == 1
    assert after.sheaf_flush - before.sheaf_flush == capacity
    assert after.barn_put == before.barn_put
    slab.check()


@pytest.mark.parametrize(("kernel", "size", "capacity"), KERNELS)
def test_an_allocation_with_too_few_objects_for_a_sheaf_is_served_from_the_slabs(
        kernel: str, size: int, capacity: int) -> None:
    """__pcs_replace_empty_main under memory pressure: the empty sheaf it found cannot be
    refilled (fewer free objects than the capacity, no page for a new slab), so it is freed
    ("very low on memory: don't bother with the barn") and the object comes from the slabs;
    later a new sheaf cannot even be kzalloc'd. Every free object is handed out, none strands
    in a sheaf, and the allocation after the last fails."""
    slab, cache = _boot(kernel, size, capacity, cpus=2)
    cache.alloc(0)  # a full sheaf of `capacity` objects, one handed out
    # The empty sheaf it replaced: 6.18 puts it in the barn; 7.0 keeps it as the spare.
    empty_place = ("barn_empty", 0) if kernel == "6.18" else ("spare", 0)
    assert sorted(_places(cache)) == sorted([("main", capacity - 1), ("main", 0), empty_place])
    _exhaust(slab, sheaf_size(capacity))
    users: list[int] = []
    with pytest.raises(OutOfMemoryError):  # main's objects, then every free one of the slabs
        while True:
            users.append(cache.alloc(0, GFP_ATOMIC))
    for address in users[:capacity - 1]:  # onto CPU 1's main sheaf, then to their slabs
        cache.free(address, 1)
    cache.flush_cpu(1)
    assert cache.stats().sheaf_objects == 0
    before = cache.stats()
    got = [cache.alloc(0) for _ in range(capacity - 1)]
    with pytest.raises(OutOfMemoryError):
        cache.alloc(0)
    after = cache.stats()
    assert sorted(got) == sorted(users[:capacity - 1])
    # The first allocation refills the empty sheaf it found (the barn's, or 7.0's spare) and
    # frees it; each later one kzallocs a sheaf (the one just freed is free again in its
    # kmalloc cache), finds too few objects and frees it -- the failing one too.
    assert after.sheaf_free - before.sheaf_free == capacity
    assert after.sheaf_alloc - before.sheaf_alloc == capacity - 1
    assert after.cpu_sheaf_objects == after.barn_objects == 0
    assert sorted(_places(cache)) == [("main", 0), ("main", 0)]
    slab.check()


def test_the_7_0_kmalloc_256_cache_hosts_its_own_new_sheaf() -> None:
    """7.0: kmalloc-256 sheaves hold 28 objects (calculate_sheaf_capacity: 26 -> 32 + 26 * 8 =
    240 bytes, rounded to 256, (256 - 32) / 8 = 28), so its sheaves are kmalloc-256 objects.
    A free that finds main and spare full and no empty sheaf in the barn kzallocs one with
    the lock dropped: from main itself (the top object, the one freed last). Back under the
    lock main has room, so __pcs_install_empty_sheaf puts the new sheaf in the barn."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, kernel="7.0")
    cache: Any = slab.caches["kmalloc-256"]
    assert cache.sheaf_capacity == 28
    objects = [slab.kmalloc(256) for _ in range(100)]
    # After 100 allocations main holds 12 (its sheaves refilled 28 at a time: 100 = 3*28 + 16)
    # and the first sheaf, emptied, is the spare.
    assert _places(cache) == [("main", 12), ("spare", 0)]
    for address in objects[:44]:  # 16 fill main, the 17th swaps in the empty spare, 28 fill it
        slab.kfree(address)
    assert _places(cache) == [("main", 28), ("spare", 28)]
    before = cache.stats()
    slab.kfree(objects[44])
    after = cache.stats()
    assert _places(cache) == [("main", 28), ("spare", 28), ("barn_empty", 0)]
    barn_empty = next(sheaf for place, _, sheaf in cache.sheaves() if place == "barn_empty")
    assert barn_empty.address == objects[43]
    assert after.sheaf_alloc - before.sheaf_alloc == 1
    assert after.barn_put == before.barn_put
    slab.check()


# -- the per-CPU state re-read after the lock was dropped ---------------------------------------


def test_a_refill_that_finds_main_refilled_meanwhile_keeps_the_new_sheaf_as_spare(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """6.18, capacity 4. An allocation finds main empty, no spare, nothing in the barn: it
    kzallocs a sheaf with the lock dropped, and meanwhile another task frees two objects onto
    main. Back under the lock main is not empty, there is no spare: the new full sheaf becomes
    the spare and the allocation pops main -- the object freed last."""
    slab, cache = _boot("6.18", 256, 4)
    theirs = [cache.alloc(0, GFP_ATOMIC) for _ in range(2)]
    _another_task(cache, monkeypatch, lambda: [cache.free(a, 0) for a in theirs])
    assert cache.alloc(0) == theirs[1]
    assert _places(cache) == [("main", 1), ("spare", 4)]
    slab.check()


def test_a_refill_that_finds_a_full_main_and_spare_meanwhile_puts_the_sheaf_in_the_barn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """6.18, capacity 4. While the allocation kzallocs its sheaf another task frees 8 objects:
    4 fill main, the 5th finds main full with no spare and installs a new empty main (the full
    one becomes the spare), 3 more. Main holds 4 and the spare 4: the refilled sheaf goes to
    the barn as a full sheaf (barn_put), and the allocation pops main."""
    slab, cache = _boot("6.18", 256, 4)
    theirs = [cache.alloc(0, GFP_ATOMIC) for _ in range(8)]
    _another_task(cache, monkeypatch, lambda: [cache.free(a, 0) for a in theirs])
    before = cache.stats()
    assert cache.alloc(0) == theirs[7]
    after = cache.stats()
    assert _places(cache) == [("main", 3), ("spare", 4), ("barn_full", 4)]
    assert after.barn_put - before.barn_put == 1
    slab.check()


def test_a_7_0_refill_that_finds_an_empty_spare_meanwhile_puts_it_in_the_barn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """7.0, capacity 12. While the first allocation kzallocs its sheaf, another task's
    allocation runs the same path to the end: its sheaf refilled to main, the empty main kept
    as the spare. Back under the lock main is not empty and the spare is empty: the empty spare
    goes to the barn and the new full sheaf takes its place."""
    slab, cache = _boot("7.0", 1024, 12)
    got: list[int] = []
    _another_task(cache, monkeypatch, lambda: got.append(cache.alloc(0)))
    got.append(cache.alloc(0))
    assert len(set(got)) == 2
    assert _places(cache) == [("main", 10), ("spare", 12), ("barn_empty", 0)]
    slab.check()


def test_an_empty_sheaf_got_for_a_free_is_not_needed_when_main_found_room_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """6.18, capacity 4, main and spare full, the barn without an empty sheaf: a free kzallocs
    one with the lock dropped (the put fails first: barn_put_fail is counted only if the
    kzalloc fails too). Another task meanwhile takes 5 objects -- main's 4, then the full spare
    swapped in gives one -- and frees one back: main is full again, the spare empty. So
    __pcs_install_empty_sheaf swaps them (the empty spare becomes main) and puts the new sheaf
    in the barn; the free then goes on that main."""
    slab, cache = _boot("6.18", 256, 4)
    objects = [cache.alloc(0, GFP_ATOMIC) for _ in range(9)]
    for address in objects[:8]:  # 4 fill main, the 5th moves it to the spare, 3 more
        cache.free(address, 0)
    assert _places(cache) == [("main", 4), ("spare", 4)]

    def theirs() -> None:
        taken = [cache.alloc(0) for _ in range(5)]
        cache.free(taken[-1], 0)

    sheaves = _another_task(cache, monkeypatch, theirs)
    before = cache.stats()
    cache.free(objects[8], 0)
    after = cache.stats()
    assert len(sheaves) == 1
    assert _places(cache) == [("main", 1), ("spare", 4), ("barn_empty", 0)]
    assert cache._main[0] == [objects[8]]
    barn_empty = next(sheaf for place, _, sheaf in cache.sheaves() if place == "barn_empty")
    assert barn_empty.address == sheaves[0]
    assert after.barn_put_fail == before.barn_put_fail
    assert after.sheaf_alloc - before.sheaf_alloc == 1
    slab.check()


def test_kfree_rcu_keeps_the_rcu_sheaf_another_task_installed_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """__kfree_rcu_sheaf: no rcu_free sheaf, no empty spare, none in the barn: it kzallocs one
    with the lock dropped. Another task's kfree_rcu meanwhile installs its own rcu_free sheaf,
    so the new one goes to the barn and both objects share the other task's sheaf."""
    slab, cache = _boot("6.18", 256, 4)
    ours, theirs = cache.alloc(0, GFP_ATOMIC), cache.alloc(0, GFP_ATOMIC)
    sheaves = _another_task(cache, monkeypatch, lambda: slab.kfree_rcu(theirs, 0))
    slab.kfree_rcu(ours, 0)
    assert len(sheaves) == 2  # theirs (kzalloc'd inside ours, done first), then ours
    places = {place: sheaf for place, _, sheaf in cache.sheaves()}
    assert places["rcu_free"].address == sheaves[0] and places["rcu_free"] == [theirs, ours]
    assert places["barn_empty"].address == sheaves[1] and not places["barn_empty"]
    assert cache.stats().free_rcu_sheaf == 2
    slab.check()


# -- the barn's limits ----------------------------------------------------------------------------


def test_a_full_rcu_sheaf_finding_the_barn_full_is_flushed_and_kept_empty() -> None:
    """rcu_free_sheaf: after the grace period a full rcu_free sheaf joins the barn's full list
    unless it holds MAX_FULL_SHEAVES (10); then it is flushed (barn_put_fail) and kept as an
    empty barn sheaf, the barn holding fewer than MAX_EMPTY_SHEAVES empty ones."""
    slab, cache = _boot("6.18", 64, 2, requested=2)
    objects = [cache.alloc(0) for _ in range(62)]
    for address in objects[:60]:
        cache.free(address, 0)
    assert cache.stats().barn_full == 10
    for address in objects[60:]:  # the rcu_free sheaf fills (2) and waits for RCU
        slab.kfree_rcu(address, 0)
    before = cache.stats()
    slab.synchronize_rcu()
    after = cache.stats()
    assert after.barn_full == 10
    assert after.barn_put_fail - before.barn_put_fail == 1
    assert after.sheaf_flush - before.sheaf_flush == 2
    assert after.barn_empty - before.barn_empty == 1
    assert after.rcu_sheaf_objects == 0
    assert after.objects - before.objects == -2  # flushed to their slab: free
    slab.check()


# -- caches without sheaves, and the cpu argument ------------------------------------------------


def test_a_7_0_cache_without_sheaves_sends_kfree_rcu_to_rcu_and_is_destroyed_cleanly() -> None:
    """7.0, SLAB_NOLEAKTRACE: no sheaves, no barn (capacity 0). kfree_rcu cannot batch
    (free_rcu_sheaf_fail) and the object waits for the grace period on its own; destroying the
    cache frees no sheaves and gives every page back."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, kernel="7.0")
    free_before = slab.buddy.nr_free_pages
    quiet = slab.kmem_cache_create("quiet", 256, flags=SLAB_NOLEAKTRACE)
    address = quiet.alloc(0)
    slab.kfree_rcu(address, 0)
    stats = quiet.stats()
    assert (stats.free_rcu_sheaf_fail, stats.free_rcu_sheaf, stats.objects) == (1, 0, 1)
    slab.synchronize_rcu()
    assert quiet.stats().objects == 0
    slab.kmem_cache_destroy(quiet)
    assert slab.buddy.nr_free_pages == free_before
    slab.check()


def test_enabling_sheaves_twice_or_with_capacity_0_changes_nothing() -> None:
    slab, cache = _boot("6.18", 256, 4)
    before = (slab.slabinfo(), cache.sheaf_capacity, _places(cache))
    cache.enable_sheaves(8)  # already has a barn: init_percpu_sheaves ran once
    cache.enable_sheaves(0)
    assert (slab.slabinfo(), cache.sheaf_capacity, _places(cache)) == before


class Cpu(IntEnum):
    BOOT = 0


@pytest.mark.parametrize("kernel", ["6.18", "7.0"])
def test_kfree_rcu_and_flush_cpu_take_an_int_enum_cpu_as_its_int(kernel: str) -> None:
    slab, cache = _boot(kernel, *{"6.18": (256, 4), "7.0": (1024, 12)}[kernel])
    objects = [cache.alloc(0) for _ in range(2)]
    cache.kfree_rcu(objects[0], Cpu.BOOT, slab._sheaf_host.call_rcu)
    assert [(p, len(s)) for p, _, s in cache.sheaves() if p == "rcu_free"] == [("rcu_free", 1)]
    cache.flush_cpu(Cpu.BOOT)  # the rcu_free sheaf goes to RCU, main to the slabs
    assert cache.stats().cpu_sheaf_objects == 0 and not any(
        p == "rcu_free" for p, _, _ in cache.sheaves())
    slab.synchronize_rcu()
    slab.check()


# -- check() catching corrupt sheaves and 7.0 lists ---------------------------------------------


def _objects_on_the_empty_barn_list(cache: Any) -> None:
    main = cache._main[0]
    cache._main[0] = Sheaf(main.address)
    cache._barn.empty.append(main)


def _sheaves_without_a_barn(cache: Any) -> None:
    cache.flush_cpu(0)
    cache._barn = None


def _full_slab_on_node_partial(cache: Any) -> None:
    full = next(s for s in cache._slabs() if not s.freelist)
    full.where = ON_NODE_PARTIAL
    cache._node_partial[full] = None


def _listed_slab_not_in_cache(cache: Any) -> None:
    partial = next(iter(cache._node_partial))
    del cache._node_partial[partial]
    cache._node_partial[copy.copy(partial)] = None  # a slab the cache's page map does not know


def _slab_lost_from_its_list(cache: Any) -> None:
    partial = next(iter(cache._node_partial))
    del cache._node_partial[partial]


def _free_objects_on_no_list(cache: Any) -> None:
    partial = next(iter(cache._node_partial))
    del cache._node_partial[partial]
    partial.where = ON_NONE


@pytest.mark.parametrize(("corrupt", "message"), [
    (_objects_on_the_empty_barn_list, "on the wrong barn list"),
    (_sheaves_without_a_barn, "sheaves without a barn"),
    (_full_slab_on_node_partial, "full slab on the node partial list"),
    (_listed_slab_not_in_cache, "on a list but not in the cache"),
    (_slab_lost_from_its_list, "lost from its list"),
    (_free_objects_on_no_list, "with free objects is on no list"),
])
def test_the_7_0_check_catches_a_corrupt_sheaf_or_list(corrupt: Callable[[Any], None],
                                                       message: str) -> None:
    slab, cache = _boot("7.0", 1024, 12)
    # Atomic allocations take no sheaf: a full slab and a partial one; then a sheaf is
    # refilled from the partial slab and a free fills main again.
    users = [cache.alloc(0, GFP_ATOMIC) for _ in range(40)]
    cache.alloc(0)
    cache.free(users[0], 0)
    assert cache.stats().cpu_sheaf_objects == 12 and cache.stats().partial_slabs == 1
    slab.check()
    corrupt(cache)
    with pytest.raises(AssertionError, match=message):
        cache.check()


def test_kfree_rcu_with_no_memory_for_an_rcu_sheaf_waits_on_its_own() -> None:
    """__kfree_rcu_sheaf: no rcu_free sheaf, no empty spare or barn sheaf, and the GFP_NOWAIT
    alloc_empty_sheaf fails: free_rcu_sheaf_fail, and kvfree_call_rcu frees the object after
    the grace period without a sheaf."""
    slab, cache = _boot("6.18", 256, 4)
    address = cache.alloc(0, GFP_ATOMIC)
    _exhaust(slab, sheaf_size(4))
    slab.kfree_rcu(address, 0)
    stats = cache.stats()
    assert (stats.free_rcu_sheaf_fail, stats.free_rcu_sheaf, stats.rcu_sheaf_objects) == (1, 0, 0)
    assert stats.objects == 1  # not free before the grace period
    slab.synchronize_rcu()  # then freed as by kfree: onto main, which has room
    stats = cache.stats()
    assert (stats.objects, stats.cpu_sheaf_objects) == (1, 1) and cache.live_objects() == []
    slab.check()


# -- plain and debug SLUB caches: the cpu and address arguments, a debug cache's node list ----


@pytest.mark.parametrize("kernel", ["6.17", "6.18"])
def test_a_slub_cache_takes_an_int_enum_cpu_as_its_int(kernel: str) -> None:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, kernel=kernel)
    cache: Any = slab.kmem_cache_create("plain", 256)
    objects = [cache.alloc(0) for _ in range(3)]
    cache.free(objects[0], Cpu.BOOT)  # freed on CPU 0: its cpu slab takes it back first
    assert cache.alloc(0) == objects[0]
    cache.kfree_rcu(objects[1], Cpu.BOOT, slab._sheaf_host.call_rcu)
    slab.synchronize_rcu()
    cache.flush_cpu(Cpu.BOOT)  # the cpu slab to the node list
    stats = cache.stats()
    assert (stats.objects, stats.cpu_slabs) == (2, 0)
    assert sorted(obj.address for obj in cache.live_objects()) == sorted(
        [objects[0], objects[2]])
    slab.check()


class Address(IntEnum):
    OBJECT = 4096


@pytest.mark.parametrize(("kernel", "capacity"), [("6.17", 0), ("6.18", 4), ("7.0", 0)])
def test_an_address_that_is_an_int_subclass_is_refused_and_nothing_changes(
        kernel: str, capacity: int) -> None:
    """Addresses are plain ints, as alloc returns them. (A sheaf cache's free used to push an
    IntEnum address on the main sheaf, and the next alloc handed it out.)"""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, kernel=kernel)
    cache: Any = slab.kmem_cache_create("plain", 256, sheaf_capacity=capacity)
    address = cache.alloc(0)
    Start = IntEnum("Start", {"OBJECT": address})  # an object's start, as an int subclass
    before = cache.stats()
    with pytest.raises(InvalidTypeError, match="address must be an int, not Start"):
        cache.free(Start.OBJECT, 0)
    assert cache.stats() == before
    assert [obj.address for obj in cache.live_objects()] == [address]
    slab.check()


def test_a_debug_cache_takes_an_int_enum_cpu_and_refuses_a_destroyed_cache() -> None:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1)
    cache: Any = slab.kmem_cache_create("dbg", 64, flags=SLAB_STORE_USER)
    address = cache.alloc(Cpu.BOOT)
    allocated, freed = cache.track(address)
    assert allocated.cpu == 0 and freed is None
    cache.free(address, 0)
    slab.kmem_cache_destroy(cache)
    with pytest.raises(CacheDestroyedError):
        cache.alloc(0)


def test_a_debug_cache_names_what_is_no_object_start_when_asked_for_its_tracks() -> None:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1)
    cache: Any = slab.kmem_cache_create("dbg", 64, flags=SLAB_STORE_USER)
    address = cache.alloc(0)
    with pytest.raises(InteriorPointerError):
        cache.track(address + 8)
    with pytest.raises(NotAnObjectError):
        cache.track(address + (1 << 30))  # no slab of this cache there
    with pytest.raises(InvalidTypeError):
        cache.track(Address.OBJECT)


def test_a_debug_cache_keeps_min_partial_empty_slabs_and_discards_the_rest() -> None:
    """A debug cache has no cpu partial lists: a free that empties a full slab puts it on the
    node list unless that holds min_partial slabs already (then it is discarded). With one
    object per slab every free empties its slab. min_partial = ilog2(size) / 2 clamped to
    5..10 (set_min_partial): a slot of 16 KiB..32 KiB gives 14 / 2 = 7."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1)
    cache: Any = slab.kmem_cache_create("big", 20000, flags=SLAB_RED_ZONE)
    assert 1 << 14 <= cache.size < 1 << 15 and cache.objs_per_slab == 1
    objects = [cache.alloc(0) for _ in range(9)]
    assert cache.stats().slabs == 9
    for address in objects:
        cache.free(address, 0)
    stats = cache.stats()
    assert (stats.slabs, stats.partial_slabs, stats.objects) == (7, 7, 0)
    slab.check()


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_a_poison_check_failing_on_a_partial_slab_leaves_the_slab_where_it_was(
        policy: str) -> None:
    """A use-after-free caught on the next allocation (check_object / check_poison) hands out
    nothing: the partial slab that holds the object stays partial, its other object allocated,
    and once the poison is restored the object is handed out normally."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, policy=policy)
    cache: Any = slab.kmem_cache_create("dbg", 200, flags=SLAB_POISON)
    a, b = cache.alloc(0), cache.alloc(0)
    cache.free(a, 0)
    slab.buddy.memory.view(a + 10, 1)[0] = 0x41
    before = cache.stats()
    with pytest.raises(PoisonError, match="offset 10"):
        cache.alloc(0)
    after = cache.stats()
    assert (after.objects, after.partial_slabs, after.slabs) == (1, 1, 1) == (
        before.objects, before.partial_slabs, before.slabs)
    assert [obj.address for obj in cache.live_objects()] == [b]
    slab.check()
    assert cache.alloc(0) == a


def test_a_classic_slab_of_one_object_goes_from_full_to_free_in_one_free() -> None:
    """mm/slab.c free_block: a slab with no object in use goes to slabs_free -- for a slab of
    one object straight from slabs_full, never on slabs_partial."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, policy="slab")
    cache: Any = slab.kmem_cache_create("big", 20000)
    assert cache.objs_per_slab == 1
    address = cache.alloc(0)
    cache.free(address, 0)
    stats = cache.stats()
    assert (stats.slabs, stats.objects, stats.partial_slabs) == (1, 0, 0)
    slab.check()
    assert cache.alloc(0) == address  # the free slab is used again


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_other_threads_wait_for_a_constructor_as_for_the_cache_lock(policy: str) -> None:
    """While a constructor runs for a new slab, only its own thread is refused re-entry;
    another thread's alloc, free and report wait for the cache lock, then go through."""
    import threading

    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, policy=policy)
    running, go = threading.Event(), threading.Event()
    armed = [False]

    def ctor(view: memoryview) -> None:
        if armed[0]:
            armed[0] = False
            running.set()
            go.wait(30)

    cache: Any = slab.kmem_cache_create("ctor", 1024, ctor=ctor)
    first = [cache.alloc(0) for _ in range(cache.objs_per_slab)]  # one full slab
    armed[0] = True
    results: dict[str, object] = {}

    def builder() -> None:
        results["builder"] = cache.alloc(0)  # a new slab: the ctor waits for `go`

    def other() -> None:
        cache.free(first[0], 0)
        results["objects"] = cache.stats().objects
        results["other"] = cache.alloc(0)

    threads = [threading.Thread(target=builder, daemon=True)]
    threads[0].start()
    assert running.wait(30)
    threads.append(threading.Thread(target=other, daemon=True))
    threads[1].start()
    threads[1].join(0.2)  # (it waits for the lock; the assertions do not depend on time)
    go.set()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    # The other thread's free and report waited for the new slab: the full slab's objects
    # and the builder's, less the one freed.
    assert results["objects"] == cache.objs_per_slab
    assert results["other"] != results["builder"]
    assert len(cache.live_objects()) == cache.objs_per_slab + 1
    slab.check()


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_a_red_zoned_cache_with_a_constructor_gets_both(policy: str) -> None:
    """A ctor forbids poison (the object must keep what the ctor wrote) but not red zones:
    a new slab's objects get their free red zones, then the ctor's bytes."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, policy=policy)

    def ctor(view: memoryview) -> None:
        view[:4] = b"ctor"

    cache: Any = slab.kmem_cache_create("rz", 100, flags=SLAB_RED_ZONE | SLAB_POISON, ctor=ctor)
    address = cache.alloc(0)
    assert bytes(slab.buddy.memory.view(address, 4)) == b"ctor"
    slab.check()  # red zones of every object as they should be
    slab.buddy.memory.view(address + 100, 1)[0] ^= 0xFF  # past the object: the red zone
    with pytest.raises(AssertionError, match="red"):
        slab.check()


# -- reports ------------------------------------------------------------------------------------


def test_fragmentation_rows_show_large_kmalloc_only_once_there_was_one() -> None:
    from kmem.slab.report import fragmentation_rows

    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1)
    assert "kmalloc_large" not in [row.name for row in fragmentation_rows(slab)]
    # 20000 bytes > KMALLOC_MAX_CACHE_SIZE (8 KiB): a page block of get_order(20000) = 3,
    # 32 KiB, of which 20000 bytes were asked for.
    address = slab.kmalloc(20000)
    large = [row for row in fragmentation_rows(slab) if row.name == "kmalloc_large"]
    assert len(large) == 1
    row = large[0]
    assert (row.bytes_requested, row.bytes_allocated, row.slab_bytes) == (20000, 32768, 32768)
    assert row.wasted_percent == pytest.approx(100 * 12768 / 32768)
    slab.kfree(address)


def test_slabtop_rows_can_include_the_caches_without_objects() -> None:
    from kmem.slab.report import slabtop_rows

    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1)
    cache = slab.kmem_cache_create("one", 100)
    cache.alloc(0)
    names = [row.name for row in slabtop_rows(slab)]
    every = [row.name for row in slabtop_rows(slab, include_empty=True, sort="name")]
    assert "one" in names and set(names) < set(every)
    assert every == sorted(c.name for c in slab.cache_list())


def test_a_sysfs_snapshot_is_read_from_a_directory_and_saved_as_json(tmp_path: Any) -> None:
    """slabinfo reads /sys/kernel/slab: a directory per cache, a symlink per alias; the
    snapshot of a copy of it round-trips through a gzip'd JSON file unchanged."""
    import gzip
    import json
    import os

    from kmem.errors import InvalidArgumentError
    from kmem.slab.slabinfo_tool import load_snapshot, snapshot_from_dir

    root = tmp_path / "slab"
    (root / "kmalloc-64").mkdir(parents=True)
    (root / "kmalloc-64" / "object_size").write_text("64\n")
    (root / "kmalloc-64" / "slabs").write_text("3 N0=3\n")
    os.symlink("kmalloc-64", root / ":0000064")
    (root / ".lock").write_text("")  # a dot entry: not a cache
    snapshot = load_snapshot(root, page_size=4096)
    by_name = {entry.name: entry for entry in snapshot.entries}
    assert sorted(by_name) == [":0000064", "kmalloc-64"]
    assert by_name[":0000064"].link == "kmalloc-64"
    assert by_name["kmalloc-64"].files == {"object_size": "64\n", "slabs": "3 N0=3\n"}
    saved = tmp_path / "slab.json.gz"
    saved.write_bytes(gzip.compress(json.dumps(snapshot.to_json()).encode()))
    again = load_snapshot(saved)
    assert again == snapshot

    (root / "junk").write_text("x")
    with pytest.raises(InvalidArgumentError, match="neither a cache directory nor an alias"):
        snapshot_from_dir(root)
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        snapshot_from_dir(tmp_path / "missing")


# -- 7.0's slab side ------------------------------------------------------------------------------


def test_a_7_0_slab_of_one_object_is_full_at_once_and_joins_no_list() -> None:
    """___slab_alloc of 7.0 from a new slab: with its only object handed out the slab is full,
    so it never goes on the node partial list; its free sends the object to the main sheaf."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, kernel="7.0")
    cache: Any = slab.kmem_cache_create("big", 20000)
    assert cache.objs_per_slab == 1
    address = cache.alloc(0, GFP_ATOMIC)  # no refill: one object from a new slab
    stats = cache.stats()
    assert (stats.slabs, stats.partial_slabs, stats.objects, stats.alloc_slab) == (1, 0, 1, 1)
    slab.check()
    cache.free(address, 0)
    assert cache.stats().cpu_sheaf_objects == 1
    slab.check()


class ReserveBuddy(BuddyAllocator):
    """A page source whose pages come from its memory reserves while ``reserves`` is set."""

    reserves = False

    def page_is_pfmemalloc(self, pfn: int) -> bool:
        return self.reserves


def test_a_7_0_free_of_a_pfmemalloc_object_with_main_full_goes_to_its_slab() -> None:
    """slab_free of 7.0: an object of a pfmemalloc slab never goes to the sheaves -- with main
    full too, where the sheaf slow path (__pcs_replace_full_main) would otherwise run: no
    barn traffic, main stays as it is."""
    from kmem.page.gfp import __GFP_MEMALLOC

    buddy = ReserveBuddy(8 << 20)
    slab = SlabAllocator(buddy, nr_cpus=1, kernel="7.0")
    cache: Any = slab.kmem_cache_create("pfm", 1024)
    assert cache.sheaf_capacity == 12
    buddy.reserves = True
    reserve = cache.alloc(0, GFP_ATOMIC | __GFP_MEMALLOC)  # a new slab on reserve pages
    buddy.reserves = False
    ordinary = cache.alloc(0)  # a refill of 12 from a new slab (never a pfmemalloc one)
    cache.free(ordinary, 0)
    assert _places(cache) == [("main", 12), ("spare", 0)]
    pfm = cache._slab_of_pfn[reserve >> cache._page_shift]
    assert pfm.pfmemalloc
    before = cache.stats()
    cache.free(reserve, 0)
    after = cache.stats()
    assert _places(cache) == [("main", 12), ("spare", 0)]
    assert after.free_slowpath - before.free_slowpath == 1
    assert (after.barn_put, after.barn_put_fail) == (before.barn_put, before.barn_put_fail)
    assert reserve not in [obj.address for obj in cache.live_objects()]
    slab.check()


def test_a_free_whose_main_was_emptied_meanwhile_and_no_sheaf_to_be_had_goes_to_the_slab(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """6.18, capacity 4: a free finds main full, no spare, no empty barn sheaf, and kzallocs
    one with the lock dropped; meanwhile another task takes main's 4 objects, and the kzalloc
    fails (no memory). sheaf_flush_main finds nothing to flush, so the sheaves refuse the
    free (free_to_pcs fails) and do_slab_free gives the object to its slab."""
    slab, cache = _boot("6.18", 256, 4)
    objects = [cache.alloc(0, GFP_ATOMIC) for _ in range(5)]
    for address in objects[:4]:
        cache.free(address, 0)
    assert _places(cache) == [("main", 4)]
    _exhaust(slab, sheaf_size(4))
    theirs: list[int] = []
    _another_task(cache, monkeypatch, lambda: theirs.extend(cache.alloc(0) for _ in range(4)))
    before = cache.stats()
    cache.free(objects[4], 0)
    after = cache.stats()
    assert sorted(theirs) == sorted(objects[:4])
    assert _places(cache) == [("main", 0)]
    assert after.sheaf_flush == before.sheaf_flush and after.sheaf_alloc == before.sheaf_alloc
    assert after.objects - before.objects == -1  # back in its slab, not in a sheaf
    assert sorted(obj.address for obj in cache.live_objects()) == sorted(objects[:4])
    slab.check()
