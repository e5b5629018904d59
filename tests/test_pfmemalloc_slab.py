"""pfmemalloc slabs (mm/slub.c slab_set_pfmemalloc, slab_free; Linux 6.18 and 7.0).

A slab is pfmemalloc when its page source says its pages came from the memory reserves. 7.0
("slab: handle pfmemalloc slabs properly with sheaves") keeps their objects out of the sheaves:
a free goes to the slab, and an rcu sheaf holding one is flushed after the grace period instead
of joining the barn. 6.18's slab_free has no such check. The expectations are those rules,
counted by hand on a cache whose every slab is (or is not) pfmemalloc.
"""

from __future__ import annotations

from typing import Any

import pytest

from kmem import BuddyAllocator, SlabAllocator
from kmem.page.gfp import __GFP_MEMALLOC, __GFP_NOMEMALLOC, GFP_ATOMIC, GFP_KERNEL
from kmem.slab.flags import SLAB_RED_ZONE
from kmem.slab.slub import SlubDebugCache
from kmem.slab.slub_sheaves import PercpuSheavesCache


class ReserveBuddy(BuddyAllocator):
    """A page source whose pages come from its memory reserves while ``reserves`` is set."""

    reserves = False

    def page_is_pfmemalloc(self, pfn: int) -> bool:
        return self.reserves


def _cache(kernel: str, reserves: bool) -> tuple[SlabAllocator, PercpuSheavesCache]:
    buddy = ReserveBuddy(64 << 20)
    slab = SlabAllocator(buddy, nr_cpus=1, kernel=kernel)
    cache = slab.kmem_cache_create("reserve", 256, sheaf_capacity=4)
    assert isinstance(cache, PercpuSheavesCache)
    buddy.reserves = reserves  # the cache's slabs are made from here on
    return slab, cache


@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
def test_on_a_buddy_allocator_no_slab_is_pfmemalloc(kernel: str) -> None:
    # BuddyAllocator has no watermarks and no reserves: nothing is pfmemalloc there
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, kernel=kernel)
    addresses = [slab.kmalloc(size) for size in (8, 64, 200, 1000, 5000) for _ in range(50)]
    assert all(not s.pfmemalloc for c in slab.cache_list() for s in c._slabs())
    for address in addresses:
        slab.kfree(address)
    slab.check()


@pytest.mark.parametrize(("kernel", "reserves", "to_sheaf"),
                         [("6.18", False, True), ("6.18", True, True),
                          ("7.0", False, True), ("7.0", True, False)])
def test_7_0_frees_objects_of_pfmemalloc_slabs_to_the_slab(kernel: str, reserves: bool,
                                                          to_sheaf: bool) -> None:
    slab, cache = _cache(kernel, reserves)
    first = cache.alloc()  # a refill: 4 objects of a new slab, one handed out
    owner = cache._slab_of_pfn[first >> cache._page_shift]
    assert owner.pfmemalloc is reserves
    assert ("pfmemalloc" in repr(owner)) is reserves
    before = cache.stats()
    cache.free(first)
    after = cache.stats()
    if to_sheaf:  # pushed on the main sheaf: still allocated as far as its slab knows
        assert after.cpu_sheaf_objects == before.cpu_sheaf_objects + 1
        assert after.objects == before.objects
    else:  # back on its slab's freelist, the sheaves untouched
        assert after.cpu_sheaf_objects == before.cpu_sheaf_objects
        assert after.objects == before.objects - 1
        assert after.free_slowpath == before.free_slowpath + 1
        assert owner.used[(first - owner.base) // cache.size] == 0
    slab.check()


@pytest.mark.parametrize(("kernel", "reserves", "to_barn"),
                         [("6.18", True, True), ("7.0", False, True), ("7.0", True, False)])
def test_7_0_flushes_an_rcu_sheaf_holding_a_pfmemalloc_object(kernel: str, reserves: bool,
                                                             to_barn: bool) -> None:
    slab, cache = _cache(kernel, reserves)
    n = cache.sheaf_capacity  # (7.0 grows 4 to fill the sheaf's kmalloc size)
    objects = [cache.alloc() for _ in range(n)]
    for address in objects:
        slab.kfree_rcu(address)
    assert cache.stats().rcu_sheaf_objects == n
    in_use = cache.stats().objects
    slab.synchronize_rcu()
    s = cache.stats()
    assert s.rcu_sheaf_objects == 0
    if to_barn:  # the full rcu sheaf joins the barn: its objects stay out of their slabs
        assert (s.barn_full, s.barn_objects, s.objects) == (1, n, in_use)
    else:  # flushed back to the slabs, the sheaf freed
        assert (s.barn_full, s.barn_objects, s.objects) == (0, 0, in_use - n)
        assert s.barn_put_fail == 1
    slab.check()


# -- the allocation side: pfmemalloc_match in SLUB's slow path (6.17 and 6.18's cpu slabs) ----

RIGHTS = GFP_KERNEL | __GFP_MEMALLOC  # may use the reserves (gfp_pfmemalloc_allowed)


def _slub(reserves: bool) -> tuple[SlabAllocator, ReserveBuddy, Any]:
    buddy = ReserveBuddy(64 << 20)
    slab = SlabAllocator(buddy, nr_cpus=2, kernel="6.17")
    cache = slab.kmem_cache_create("slub", 512)
    buddy.reserves = reserves
    return slab, buddy, cache


def _slab_of(cache: Any, address: int) -> Any:
    return cache._slab_of_pfn[address >> cache._page_shift]


def test_a_new_pfmemalloc_slab_is_not_kept_as_the_cpu_slab_of_an_allocation_without_rights(
        ) -> None:
    slab, buddy, cache = _slub(reserves=True)
    first = cache.alloc(0, GFP_KERNEL)
    owner = _slab_of(cache, first)
    assert owner.pfmemalloc
    assert cache._cpu_slab[0] is None  # one object given, the slab deactivated
    assert owner in cache._node_partial
    buddy.reserves = False
    second = cache.alloc(0, GFP_KERNEL)  # passes over the pfmemalloc partial slab
    assert _slab_of(cache, second) is not owner
    assert not _slab_of(cache, second).pfmemalloc
    third = cache.alloc(1, RIGHTS)  # with the rights, the partial slab serves
    assert _slab_of(cache, third) is owner
    for address in (first, second, third):
        cache.free(address)
    slab.check()


def test_a_pfmemalloc_cpu_slab_serves_its_freelist_to_anyone_but_is_dropped_when_it_runs_dry(
        ) -> None:
    slab, buddy, cache = _slub(reserves=True)
    taken = [cache.alloc(0, RIGHTS)]  # a new pfmemalloc slab, loaded: the allocation may
    owner = _slab_of(cache, taken[0])
    assert cache._cpu_slab[0] is owner
    buddy.reserves = False
    taken.append(cache.alloc(0, GFP_KERNEL))  # the fast path does not look (as in Linux)
    assert _slab_of(cache, taken[-1]) is owner
    while owner.freelist:
        taken.append(cache.alloc(0, RIGHTS))
    cache.free(taken.pop(0), 1)  # a remote free: the cpu slab could refill from it...
    assert len(owner.remote) == 1
    other = cache.alloc(0, GFP_KERNEL)  # ...but this allocation may not use it
    assert _slab_of(cache, other) is not owner
    assert cache._cpu_slab[0] is not owner and owner in cache._node_partial
    taken.append(other)
    for address in taken:
        cache.free(address)
    slab.check()


def test_a_cpu_given_as_an_int_subclass_keeps_the_allocations_rights() -> None:
    # An IntEnum cpu misses the fast path and is retried as its int: with its gfp, so an
    # allocation with the rights keeps the new pfmemalloc slab as its cpu slab.
    from enum import IntEnum

    class Cpu(IntEnum):
        BOOT = 0

    slab, _, cache = _slub(reserves=True)
    first = cache.alloc(Cpu.BOOT, RIGHTS)
    assert _slab_of(cache, first).pfmemalloc
    assert cache._cpu_slab[0] is _slab_of(cache, first)  # kept, as alloc(0, RIGHTS) keeps it
    cache.free(first)
    slab.check()


# -- 7.0's allocation side: __GFP_NOMEMALLOC refills, the partial list passes over pfmemalloc --


def _slub7(size: int = 256) -> tuple[SlabAllocator, ReserveBuddy, Any]:
    buddy = ReserveBuddy(64 << 20)
    slab = SlabAllocator(buddy, nr_cpus=1, kernel="7.0")
    return slab, buddy, slab.kmem_cache_create("slub7", size)


def test_7_0_sheaf_refills_take_no_object_of_a_pfmemalloc_slab() -> None:
    slab, buddy, cache = _slub7()
    buddy.reserves = True
    first = cache.alloc(0, GFP_ATOMIC | __GFP_MEMALLOC)  # may not block: one object, no refill
    pfm = _slab_of(cache, first)
    assert pfm.pfmemalloc and pfm.inuse == 1 and cache.stats().sheaf_refill == 0
    buddy.reserves = False
    # A refill carries __GFP_NOMEMALLOC whatever the allocation's flags: even with the
    # rights, none of the pfmemalloc slab's free objects go into the sheaf.
    cache.alloc(0, RIGHTS)
    s = cache.stats()
    assert s.sheaf_refill == cache.sheaf_capacity
    assert pfm.inuse == 1
    # its objects: pfm's one, and the refill's from new slabs only
    per_slab = cache.objs_per_slab
    assert s.alloc_slab == 1 + -(-cache.sheaf_capacity // per_slab)
    slab.check()


def test_6_18_sheaf_refills_keep_the_allocations_rights() -> None:
    # 6.18's refill goes through the 6.17 slow path with the allocation's gfp: with the rights
    # the pfmemalloc cpu slab keeps serving it
    buddy = ReserveBuddy(64 << 20)
    slab = SlabAllocator(buddy, nr_cpus=1, kernel="6.18")
    cache = slab.kmem_cache_create("slub618", 256, sheaf_capacity=4)
    buddy.reserves = True
    cache.alloc(0, RIGHTS)
    buddy.reserves = False
    (pfm,) = cache._slabs()
    assert pfm.pfmemalloc and pfm.inuse == cache.sheaf_capacity  # the refill took 4 from it
    slab.check()


def test_7_0_one_object_path_passes_over_pfmemalloc_partial_slabs_without_rights() -> None:
    slab, buddy, cache = _slub7()
    buddy.reserves = True
    first = cache.alloc(0, GFP_ATOMIC | __GFP_MEMALLOC)
    pfm = _slab_of(cache, first)
    buddy.reserves = False
    second = cache.alloc(0, GFP_ATOMIC)  # no refill (may not block), no rights: a new slab
    assert _slab_of(cache, second) is not pfm and not _slab_of(cache, second).pfmemalloc
    third = cache.alloc(0, GFP_ATOMIC)  # the new slab heads the partial list now
    assert _slab_of(cache, third) is _slab_of(cache, second)
    assert pfm.inuse == 1
    for address in (first, second, third):
        cache.free(address)
    slab.check()


def test_7_0_one_object_path_with_rights_takes_a_pfmemalloc_partial_head() -> None:
    slab, buddy, cache = _slub7()
    buddy.reserves = True
    first = cache.alloc(0, GFP_ATOMIC | __GFP_MEMALLOC)
    buddy.reserves = False
    second = cache.alloc(0, GFP_ATOMIC | __GFP_MEMALLOC)
    assert _slab_of(cache, second) is _slab_of(cache, first)
    # __GFP_NOMEMALLOC wins over __GFP_MEMALLOC: no rights
    third = cache.alloc(0, GFP_ATOMIC | __GFP_MEMALLOC | __GFP_NOMEMALLOC)
    assert _slab_of(cache, third) is not _slab_of(cache, first)
    slab.check()


# -- SLUB debug caches (6.18's debug alloc path: get_partial_node's pfmemalloc_match) ----------


@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
def test_debug_caches_pass_over_pfmemalloc_partial_slabs_without_rights(kernel: str) -> None:
    buddy = ReserveBuddy(64 << 20)
    slab = SlabAllocator(buddy, nr_cpus=1, kernel=kernel)
    cache = slab.kmem_cache_create("debug", 256, flags=SLAB_RED_ZONE)
    assert isinstance(cache, SlubDebugCache)
    buddy.reserves = True
    first = cache.alloc(0, GFP_KERNEL)  # alloc_single_from_new_slab: served, whatever it is
    pfm = _slab_of(cache, first)
    assert pfm.pfmemalloc and pfm in cache._node_partial
    buddy.reserves = False
    second = cache.alloc(0, RIGHTS)  # may use the reserves: the partial head serves
    assert _slab_of(cache, second) is pfm
    third = cache.alloc(0, GFP_KERNEL)  # may not: passed over, a new slab
    other = _slab_of(cache, third)
    assert other is not pfm and not other.pfmemalloc
    assert next(iter(cache._node_partial)) is other  # the new slab heads the list
    fourth = cache.alloc(0, GFP_KERNEL)
    assert _slab_of(cache, fourth) is other
    assert pfm.inuse == 2
    for address in (first, second, third, fourth):
        cache.free(address)
    slab.check()


def test_debug_cache_without_a_usable_partial_slab_fills_a_new_one() -> None:
    # every partial slab pfmemalloc, the allocation without rights: a new slab each time the
    # non-pfmemalloc ones are full, never an object of the pfmemalloc slab
    buddy = ReserveBuddy(64 << 20)
    slab = SlabAllocator(buddy, nr_cpus=1, kernel="6.18")
    cache = slab.kmem_cache_create("debug2", 512, flags=SLAB_RED_ZONE)
    buddy.reserves = True
    first = cache.alloc(0, RIGHTS)
    pfm = _slab_of(cache, first)
    buddy.reserves = False
    taken = [cache.alloc(0, GFP_KERNEL) for _ in range(2 * cache.objs_per_slab)]
    assert all(_slab_of(cache, a) is not pfm for a in taken)
    assert cache.stats().alloc_slab == 3
    assert pfm.inuse == 1
    for address in [first, *taken]:
        cache.free(address)
    slab.check()
