"""What kmem.slab's other tests do not reach: SlabAllocator's argument errors, and the
invariant checkers (SlabAllocator.check and each cache's check) catching each kind of
corruption, so that the stateful and differential tests that rely on check() can fail."""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import pytest

from kmem.errors import InvalidArgumentError, InvalidTypeError, OutOfMemoryError
from kmem.page.buddy import BuddyAllocator
from kmem.slab.allocator import SlabAllocator
from kmem.slab.errors import InvalidCpuError, InvalidGfpError, SlabPageSizeError
from kmem.slab.flags import (
    SLAB_NO_MERGE,
    SLAB_NOLEAKTRACE,
    SLAB_POISON,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLAB_TYPESAFE_BY_RCU,
)
from kmem.slab.geometry import calculate_geometry, calculate_order
from kmem.slab.merge import find_mergeable
from kmem.slab.sheaves import Sheaf, SheafCapacityError, check_sheaf_capacity, sheaf_size
from kmem.slab.slabs import ON_CPU_PARTIAL, ON_FULL, ON_NONE
from kmem.slab.slub import SlubDebugCache


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"buddy": "16M"}, InvalidTypeError, "buddy must be a BuddyAllocator, not str"),
    ({"nr_cpus": True}, InvalidTypeError, "nr_cpus must be an int, not bool"),
    ({"nr_cpus": 0}, InvalidArgumentError, r"nr_cpus must be in 1\.\.4096, got 0"),
    ({"policy": "slob"}, InvalidArgumentError, "policy must be 'slub' or 'slab', got 'slob'"),
    ({"random_kmalloc_seed": 1.5}, InvalidTypeError,
     "random_kmalloc_seed must be an int or None, not float"),
    ({"random_kmalloc_seed": -1}, InvalidArgumentError, "random_kmalloc_seed must be a u64"),
])
def test_bad_allocator_arguments_are_named(arguments: dict[str, Any], error: type[Exception],
                                           message: str) -> None:
    given: dict[str, Any] = {"buddy": BuddyAllocator(16 << 20), **arguments}
    with pytest.raises(error, match=message):
        SlabAllocator(given.pop("buddy"), **given)


def _allocator(policy: str) -> tuple[SlabAllocator, Any, list[int]]:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1, policy=policy)
    cache = slab.kmem_cache_create("cov", 256)
    objects = [slab.kmem_cache_alloc(cache) for _ in range(40)]  # more than one slab
    slab.check()
    return slab, cache, objects


def _a_slab_with_free_objects(cache: Any) -> Any:
    return next(s for s in cache._slabs() if s.freelist)


def _twice_on_freelist(slab: SlabAllocator, cache: Any) -> None:
    some = _a_slab_with_free_objects(cache)
    some.freelist.append(some.freelist[0])


def _free_marked_used(slab: SlabAllocator, cache: Any) -> None:
    some = _a_slab_with_free_objects(cache)
    some.used[some.freelist[0]] = 1


def _wrong_object_count(slab: SlabAllocator, cache: Any) -> None:
    cache._slabs()[0].objects += 1


def _page_owner(slab: SlabAllocator, cache: Any) -> None:
    slab.buddy.mem_map.owner[cache._slabs()[0].pfn] = 0


def _wrong_list(slab: SlabAllocator, cache: Any) -> None:
    _a_slab_with_free_objects(cache).where = ON_FULL + 3


def _stray_owner(slab: SlabAllocator, cache: Any) -> None:
    owner = slab.buddy.mem_map.owner
    owner[owner.index(0)] = cache.id


def _large_count(slab: SlabAllocator, cache: Any) -> None:
    slab._large_pages += 1


@pytest.mark.parametrize("policy", ["slub", "slab"])
@pytest.mark.parametrize(("corrupt", "message"), [
    (_twice_on_freelist, "twice on the freelist"),
    (_free_marked_used, "is marked used"),
    (_wrong_object_count, "objects"),
    (_page_owner, "owner is 0"),
    (_wrong_list, "where="),
    (_stray_owner, "pages have an owner"),
    (_large_count, "large kmalloc pages marked"),
])
def test_check_catches_a_corrupt_cache(policy: str,
                                       corrupt: Callable[[SlabAllocator, Any], None],
                                       message: str) -> None:
    slab, cache, _ = _allocator(policy)
    corrupt(slab, cache)
    with pytest.raises(AssertionError, match=message):
        slab.check()


def _sheaves_allocator() -> tuple[SlabAllocator, Any, list[int]]:
    """Linux 7.0: every cache has sheaves (and no cpu slabs)."""
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1, kernel="7.0")
    cache = slab.kmem_cache_create("cov", 256)
    objects = [slab.kmem_cache_alloc(cache) for _ in range(3 * cache.sheaf_capacity)]
    for address in objects[::2]:
        slab.kmem_cache_free(cache, address)
    slab.check()
    return slab, cache, objects[1::2]


def _main(cache: Any) -> Any:
    return cache._main[0]


def _overfull(cache: Any, live: list[int]) -> None:
    main = _main(cache)
    while len(main) <= cache.sheaf_capacity:
        main.append(main[-1])


def _foreign_object(cache: Any, live: list[int]) -> None:
    _main(cache).append(1 << 40)


def _user_object_in_sheaf(cache: Any, live: list[int]) -> None:
    _main(cache).append(live[0])  # a user holds it: not sheaf-held


def _lost_from_sheaf(cache: Any, live: list[int]) -> None:
    _main(cache).pop()  # still marked sheaf-held


def _sheaf_in_two_places(cache: Any, live: list[int]) -> None:
    cache._barn.empty.append(_main(cache))


def _not_full_on_barn_full(cache: Any, live: list[int]) -> None:
    cache._barn.full.append(type(_main(cache))(0))


def _slab_on_wrong_list(cache: Any, live: list[int]) -> None:
    _a_slab_with_free_objects(cache).where = ON_FULL + 3


@pytest.mark.parametrize(("corrupt", "message"), [
    (_overfull, "objects"),
    (_foreign_object, "not of this cache"),
    (_user_object_in_sheaf, "not marked as sheaf-held"),
    (_lost_from_sheaf, "marked sheaf-held"),
    (_sheaf_in_two_places, "is in two places"),
    (_not_full_on_barn_full, "is not full"),
    (_slab_on_wrong_list, "where="),
])
def test_check_catches_a_corrupt_sheaf(corrupt: Callable[[Any, list[int]], None],
                                       message: str) -> None:
    slab, cache, live = _sheaves_allocator()
    corrupt(cache, live)
    with pytest.raises(AssertionError, match=message):
        slab.check()


def test_sheaves_that_do_not_fit_undo_the_cache_creation() -> None:
    """enable_sheaves: the barn fits but the second CPU's main sheaf does not: the first
    sheaf and the barn are freed again, the cache is not created, nothing else changed."""
    slab = SlabAllocator(BuddyAllocator(1 << 20), nr_cpus=2)
    slab.kmalloc(48)  # a kmalloc-64 slab with room for the barn
    held = []
    with pytest.raises(OutOfMemoryError):
        while True:
            held.append(slab.kmalloc(sheaf_size(32)))
    slab.kfree(held.pop())  # room for one sheaf of 32 objects, not two
    before = slab.slabinfo()
    with pytest.raises(OutOfMemoryError):
        slab.kmem_cache_create("cov", 256, sheaf_capacity=32)
    assert "cov" not in slab.caches
    assert slab.slabinfo() == before
    slab.check()


def test_a_misaligned_cache_is_passed_over_and_the_search_goes_on() -> None:
    # find_mergeable (Linux's find_mergeable): a 40-byte slot cannot keep 16-byte alignment,
    # so it is skipped, and the younger 32-byte cache is the one the new cache aliases.
    caches = [calculate_geometry(40, nr_cpus=2), calculate_geometry(32, nr_cpus=2)]
    assert find_mergeable(32, caches, align=16) == 1
    assert find_mergeable(32, caches[:1], align=16) is None


def _share_barn_memory(cache: Any, live: list[int]) -> None:
    _main(cache).address = cache._barn.address


def _sheaf_memory_freed(cache: Any, live: list[int]) -> None:
    _main(cache).address += 8  # inside a kmalloc object, not its start


@pytest.mark.parametrize(("corrupt", "message"), [
    (_share_barn_memory, "two sheaves share"),
    (_sheaf_memory_freed, "is not a live kmalloc object of"),
])
def test_check_catches_sheaf_memory_that_is_not_its_own(
        corrupt: Callable[[Any, list[int]], None], message: str) -> None:
    slab, cache, live = _sheaves_allocator()
    corrupt(cache, live)
    with pytest.raises(AssertionError, match=message):
        slab.check()


def test_check_catches_a_name_that_is_no_alias_of_its_cache() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    first = slab.kmem_cache_create("first", 256)
    slab.kmem_cache_create("second", 1024)
    slab.caches["second"] = first  # the name now leads to a cache that never had it
    with pytest.raises(AssertionError, match="caches\\['second'\\] is 'first', not an alias"):
        slab.check()


def test_check_catches_a_cache_registered_under_another_id() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    cache = slab.kmem_cache_create("cov", 256)
    del slab._by_id[cache.id]
    with pytest.raises(AssertionError, match="cache 'cov' is not registered by id"):
        slab.check()


def test_destroying_what_is_not_a_live_cache_is_refused() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    cache = slab.kmem_cache_create("cov", 256)
    slab.kmem_cache_destroy(cache)
    before = slab.slabinfo()
    with pytest.raises(InvalidArgumentError, match="cache 'cov' is not in this allocator"):
        slab.kmem_cache_destroy(cache)  # (destroyed already)
    with pytest.raises(InvalidTypeError, match="expected a cache or a name, not int"):
        slab.kmem_cache_destroy(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="expected a cache, not str"):
        slab.kmem_cache_alloc("kmalloc-64")  # type: ignore[arg-type]
    assert slab.slabinfo() == before
    slab.check()


def test_live_objects_lists_each_allocated_object_by_cache() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    cache = slab.kmem_cache_create("cov", 256)
    objects = [slab.kmem_cache_alloc(cache) for _ in range(3)]
    slab.kmem_cache_free(cache, objects[1])
    live = slab.live_objects()
    assert sorted(o.address for o in live["cov"]) == sorted([objects[0], objects[2]])
    # Each object's slab is the page its address lies in, its index its slot there.
    pages = 1 << cache.geometry.order  # a slab is 2**order pages, naturally aligned
    for o in live["cov"]:
        assert o.slab_pfn == o.address // 4096 // pages * pages
        assert o.index == (o.address - o.slab_pfn * 4096) // cache.geometry.size


def test_kfree_rcu_of_a_large_kmalloc_waits_for_the_grace_period() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    free_before = slab.buddy.nr_free_pages
    address = slab.kmalloc(5 * 4096)  # above the kmalloc caches: order-3 pages
    assert slab.buddy.nr_free_pages == free_before - 8
    slab.kfree_rcu(None)  # kfree_rcu(NULL) and of ZERO_SIZE_PTR: nothing to do
    slab.kfree_rcu(slab.zero_size_ptr)
    slab.kfree_rcu(address)
    assert slab.buddy.nr_free_pages == free_before - 8  # not yet: a grace period first
    slab.kvfree_rcu_barrier()
    assert slab.buddy.nr_free_pages == free_before
    slab.check()


def test_destroying_a_cache_waits_for_pending_kfree_rcu() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    free_before = slab.buddy.nr_free_pages
    address = slab.kmalloc(5 * 4096)
    slab.kfree_rcu(address)
    cache = slab.kmem_cache_create("cov", 256)
    # kmem_cache_destroy runs rcu_barrier first (in-flight frees may be of its objects).
    slab.kmem_cache_destroy(cache)
    assert slab.buddy.nr_free_pages == free_before
    slab.check()


def test_a_7_0_cache_that_kmemleak_must_not_track_gets_no_sheaves() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1, kernel="7.0")
    # calculate_sheaf_capacity (7.0): SLAB_NOLEAKTRACE and SLAB_NO_OBJ_EXT caches get none
    # (their sheaves would be allocations kmemleak or obj_exts track).
    quiet = slab.kmem_cache_create("quiet", 256, flags=SLAB_NOLEAKTRACE)
    plain = slab.kmem_cache_create("plain", 256, flags=SLAB_NO_MERGE)
    assert quiet.sheaf_capacity == 0
    assert plain.sheaf_capacity > 0
    address = slab.kmem_cache_alloc(quiet)
    slab.kmem_cache_free(quiet, address)
    slab.check()


# -- debug caches -------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [0, SLAB_POISON, SLAB_STORE_USER, SLAB_POISON | SLAB_STORE_USER])
@pytest.mark.parametrize("align", [0, 8, 16, 64])
def test_a_red_zoned_slot_always_has_both_red_zones(extra: int, align: int) -> None:
    # calculate_sizes: SLAB_RED_ZONE puts at least a pointer's bytes left of the object and
    # at least one byte (the rounding, or a whole pointer) right of it. The debugger relies
    # on it: it writes and checks both sides unconditionally.
    for size in range(1, 300):
        geometry = calculate_geometry(size, align=align, flags=SLAB_RED_ZONE | extra)
        assert geometry.red_left_pad >= 8
        assert geometry.inuse - geometry.object_size >= 1


def test_a_red_zone_only_cache_keeps_no_tracks() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    cache = slab.kmem_cache_create("dbg", 100, flags=SLAB_RED_ZONE)
    assert isinstance(cache, SlubDebugCache)
    address = slab.kmem_cache_alloc(cache)
    assert cache.track(address) == (None, None)  # no SLAB_STORE_USER: nothing recorded


@pytest.mark.parametrize(("free_it", "side", "message"), [
    (False, "right", "object {:#x}: red zone overwritten"),
    (True, "right", "free object {:#x}: red zone overwritten"),
    (True, "left", "free object {:#x}: red zone overwritten"),
])
def test_check_catches_an_overwritten_red_zone(free_it: bool, side: str, message: str) -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    cache = slab.kmem_cache_create("dbg", 100, flags=SLAB_RED_ZONE)
    address = slab.kmem_cache_alloc(cache)
    keep = slab.kmem_cache_alloc(cache)  # (the slab stays, with a used object)
    if free_it:
        slab.kmem_cache_free(cache, address)
    slab.check()
    at = address + 100 if side == "right" else address - 1
    slab.buddy.memory.view(at, 1)[0] = 0
    with pytest.raises(AssertionError, match=message.format(address)):
        slab.check()
    del keep


# -- SLUB's list invariants -----------------------------------------------------------------------

def _slub_with_partial_slabs() -> tuple[SlabAllocator, Any]:
    """A SLUB cache of 200 objects (16 a slab) with one object freed from each of its first
    four slabs: those four wait on CPU 0's partial stack."""
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    cache: Any = slab.kmem_cache_create("cov", 256)
    objects = [slab.kmem_cache_alloc(cache) for _ in range(200)]
    per_slab = cache.geometry.objs_per_slab
    for i in range(4):
        slab.kmem_cache_free(cache, objects[i * per_slab])
    assert len(cache._cpu_partial[0]) == 4
    slab.check()
    return slab, cache


def _top_of_cpu_partial(cache: Any) -> Any:
    return cache._cpu_partial[0][-1]


def _first_node_partial(cache: Any) -> Any:
    cache.flush_cpu(0)  # (everything to the node partial list: a legal state)
    return next(iter(cache._node_partial))


def _on_two_lists(cache: Any) -> None:
    cache._node_partial[_top_of_cpu_partial(cache)] = None


def _not_in_the_cache(cache: Any) -> None:
    del cache._slab_of_pfn[_top_of_cpu_partial(cache).pfn]


def _fill(slab: Any) -> None:
    for index in slab.freelist:
        slab.used[index] = 1
    del slab.freelist[:]


def _full_on_cpu_partial(cache: Any) -> None:
    _fill(_top_of_cpu_partial(cache))


def _full_on_node_partial(cache: Any) -> None:
    _fill(_first_node_partial(cache))


def _overflowing_cpu_partial(cache: Any) -> None:
    cache.flush_cpu(0)
    for slab in list(cache._node_partial):
        del cache._node_partial[slab]
        slab.where, slab.cpu = ON_CPU_PARTIAL, 0
        cache._cpu_partial[0].append(slab)
    cache.cpu_partial_slabs = 1  # 5 slabs on a stack that may hold 1 + 1


def _lost(cache: Any) -> None:
    slab = _first_node_partial(cache)
    del cache._node_partial[slab]


def _on_no_list(cache: Any) -> None:
    slab = _first_node_partial(cache)
    del cache._node_partial[slab]
    slab.where, slab.cpu = ON_NONE, -1


def _cpu_partial_disabled(cache: Any) -> None:
    cache.cpu_partial = 0


@pytest.mark.parametrize(("corrupt", "message"), [
    (_on_two_lists, "slab at pfn 0x[0-9a-f]+ is on two lists"),
    (_not_in_the_cache, "on a list but not in the cache"),
    (_full_on_cpu_partial, "full slab on a cpu partial list"),
    (_full_on_node_partial, "full slab on the node partial list"),
    (_overflowing_cpu_partial, "cpu 0 partial stack overflows"),
    (_lost, "lost from its list"),
    (_on_no_list, "with free objects is on no list"),
    (_cpu_partial_disabled, "cpu partial slabs without cpu_partial"),
])
def test_check_catches_a_slub_list_corruption(corrupt: Callable[[Any], None],
                                              message: str) -> None:
    slab, cache = _slub_with_partial_slabs()
    corrupt(cache)
    with pytest.raises(AssertionError, match=message):
        slab.check()


def test_check_catches_a_slab_with_free_objects_on_the_debug_full_list() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    # A debug cache (SLUB keeps its full slabs on a list) without red zones or poison, so
    # that only the list rule can see the change.
    cache: Any = slab.kmem_cache_create("dbg", 256, flags=SLAB_STORE_USER)
    for _ in range(100):
        slab.kmem_cache_alloc(cache)
    full = next(iter(cache._full))
    full.used[0] = 0
    full.freelist.append(0)
    with pytest.raises(AssertionError, match="slab with free objects on the full list"):
        slab.check()


def _not_held_by_the_buddy(slab: SlabAllocator, cache: Any) -> None:
    some = _top_of_cpu_partial(cache)
    slab.buddy.free_pages(some.pfn, some.order)  # freed behind the cache's back


def _objects_past_the_slab(slab: SlabAllocator, cache: Any) -> None:
    _top_of_cpu_partial(cache).base += 4096


def _used_marked_free(slab: SlabAllocator, cache: Any) -> None:
    some = _top_of_cpu_partial(cache)
    some.used[next(i for i in range(some.objects) if some.used[i] == 1)] = 0


def _remote_free_off_the_cpu_slab(slab: SlabAllocator, cache: Any) -> None:
    some = _top_of_cpu_partial(cache)
    some.remote.append(some.freelist.pop())


def _stray_page(slab: SlabAllocator, cache: Any) -> None:
    cache._slab_of_pfn[3000] = _top_of_cpu_partial(cache)


@pytest.mark.parametrize(("corrupt", "message"), [
    (_not_held_by_the_buddy, "the buddy allocator does not hold it allocated"),
    (_objects_past_the_slab, "objects overflow the slab"),
    (_used_marked_free, "used \\+ free != objects"),
    (_remote_free_off_the_cpu_slab, "remote frees on a slab that is not a cpu slab"),
    (_stray_page, "page map holds stray pages"),
])
def test_check_catches_a_corrupt_slab(corrupt: Callable[[SlabAllocator, Any], None],
                                      message: str) -> None:
    slab, cache = _slub_with_partial_slabs()
    corrupt(slab, cache)
    with pytest.raises(AssertionError, match=message):
        slab.check()


def _rcu_cache_with_pending_slabs() -> tuple[SlabAllocator, Any]:
    """SLAB_TYPESAFE_BY_RCU: empty slabs past min_partial wait a grace period before their
    pages go back (discard_slab's call_rcu)."""
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    cache: Any = slab.kmem_cache_create("rcu", 256, flags=SLAB_TYPESAFE_BY_RCU)
    objects = [slab.kmem_cache_alloc(cache) for _ in range(100)]
    for address in objects[:80]:
        slab.kmem_cache_free(cache, address)
    cache.flush_cpu(0)
    assert cache._rcu_pending
    slab.check()
    return slab, cache


def test_check_catches_an_rcu_pending_slab_that_is_not_empty_or_not_held() -> None:
    slab, cache = _rcu_cache_with_pending_slabs()
    pending = cache._rcu_pending[0]
    pending.where = ON_NONE
    with pytest.raises(AssertionError, match="is not an empty slab of an RCU cache"):
        slab.check()
    slab, cache = _rcu_cache_with_pending_slabs()
    pending = cache._rcu_pending[0]
    slab.buddy.free_pages(pending.pfn, pending.order)
    with pytest.raises(AssertionError, match="its pages are not held for the cache"):
        slab.check()


# -- the classic SLAB's lists ---------------------------------------------------------------------

def _classic() -> tuple[SlabAllocator, Any]:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1, policy="slab")
    cache: Any = slab.kmem_cache_create("cov", 256)
    objects = [slab.kmem_cache_alloc(cache) for _ in range(100)]
    slab.kmem_cache_free(cache, objects[0])
    assert cache._partial and cache._full
    slab.check()
    return slab, cache


def test_the_classic_check_catches_a_partial_slab_on_the_full_list() -> None:
    slab, cache = _classic()
    partial = next(iter(cache._partial))
    del cache._partial[partial]
    cache._full[partial] = None
    partial.where = ON_FULL
    with pytest.raises(AssertionError, match=f"{len(partial.freelist)} of 16 free, on list"):
        slab.check()


def test_the_classic_check_catches_a_misplaced_colour_and_a_slab_off_every_list() -> None:
    slab, cache = _classic()
    next(iter(cache._full)).colour += 1  # colours are multiples of colour_off (64)
    with pytest.raises(AssertionError, match="colour offset 1 out of place"):
        slab.check()
    slab, cache = _classic()
    del cache._full[next(iter(cache._full))]
    with pytest.raises(AssertionError, match="cov: 7 slabs, 6 on lists"):
        slab.check()


# -- small pieces: sheaf capacity bounds, reprs, geometry, kmalloc arguments -------------------

def test_a_sheaf_capacity_is_bounded_by_one_kmalloc() -> None:
    assert check_sheaf_capacity(1 << 20) == 1 << 20  # 8 MiB of pointers: still one kmalloc
    with pytest.raises(SheafCapacityError, match="1048577 makes a sheaf larger than kmalloc"):
        check_sheaf_capacity((1 << 20) + 1)


def test_slabs_and_sheaves_describe_themselves() -> None:
    sheaf = Sheaf(0x1000)
    sheaf.append(0x2000)
    assert repr(sheaf) == "Sheaf(at 0x1000, 1 objects)"
    _, cache = _classic()
    full = next(iter(cache._full))
    assert repr(full) == f"Slab(pfn={full.pfn:#x}, order=0, objects=16, inuse=16, where=full)"


def test_a_slabs_pages_and_waste_follow_from_its_order() -> None:
    # Worked by hand from calculate_sizes/calculate_order: 700 bytes align to 704-byte slots;
    # 2 CPUs want 4 * (fls(2) + 1) = 12 objects, 12 * 704 = 8448 bytes, so order 2 at least;
    # a 16 KiB slab cuts 23 slots (16192 bytes) and leaves 192, under 16384 / 16: order 2.
    geometry = calculate_geometry(700, nr_cpus=2)
    assert (geometry.size, geometry.order, geometry.objs_per_slab) == (704, 2, 23)
    assert geometry.pages_per_slab == 4
    assert geometry.slab_bytes == 16384
    assert geometry.wasted_per_slab == 192
    assert not geometry.is_debug
    assert calculate_geometry(700, flags=SLAB_RED_ZONE).is_debug


def test_is_kmalloc_must_be_a_bool() -> None:
    with pytest.raises(InvalidTypeError, match="is_kmalloc must be a bool, not int"):
        calculate_geometry(64, is_kmalloc=1)  # type: ignore[arg-type]


def test_a_page_holding_more_than_max_objs_per_page_objects_takes_a_lower_order() -> None:
    # calculate_order: (PAGE_SIZE << min_order) / size > MAX_OBJS_PER_PAGE (32767) ->
    # get_order(size * MAX_OBJS_PER_PAGE) - 1; with nothing below order 0 the cache fails.
    assert calculate_order(8, page_size=1 << 17, min_order=1) == 0
    with pytest.raises(SlabPageSizeError, match="more than MAX_OBJS_PER_PAGE"):
        calculate_geometry(8, page_size=1 << 18)


def test_kmalloc_takes_an_int_subclass_size_as_its_int_and_names_a_bad_cpu() -> None:
    class Size(IntEnum):
        SMALL = 100

    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=1)
    address = slab.kmalloc(Size.SMALL)
    assert slab.ksize(address) == 128  # kmalloc-128, as for 100
    with pytest.raises(InvalidTypeError, match="cpu must be an int, not str"):
        slab.kmalloc(100, cpu="0")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="kmalloc size must be >= 0, got -1"):
        slab.kmalloc_cache_for(-1)
    slab.kfree(address)
    slab.check()


def test_a_sheaves_cache_refuses_bad_arguments_and_changes_nothing() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=2, kernel="7.0")
    cache = slab.kmem_cache_create("cov", 256)
    held = cache.alloc()
    before, live = slab.slabinfo(), cache.live_objects()
    calls: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: cache.alloc(0, 1 << 40), InvalidGfpError,
         "gfp flags must be in 0..0xffffffff, not 0x10000000000"),
        (lambda: cache.alloc(0, "GFP_KERNEL"), InvalidTypeError,  # type: ignore[arg-type]
         "gfp flags must be an int, not str"),
        (lambda: cache.alloc(5), InvalidCpuError, "cpu 5 is not in 0..1"),
        (lambda: cache.alloc("0"), InvalidTypeError,  # type: ignore[arg-type]
         "cpu must be an int, not str"),
        (lambda: cache.free(held, 7), InvalidCpuError, "cpu 7 is not in 0..1"),
        (lambda: cache.free(True), InvalidTypeError, "address must be an int, not bool"),
    ]
    for call, error, message in calls:
        with pytest.raises(error, match=re.escape(message)):
            call()
    assert slab.slabinfo() == before and cache.live_objects() == live
    cache.free(held)
    slab.check()
