"""pfmemalloc slabs (mm/slub.c slab_set_pfmemalloc, slab_free; Linux 6.18 and 7.0).

A slab is pfmemalloc when its page source says its pages came from the memory reserves. 7.0
("slab: handle pfmemalloc slabs properly with sheaves") keeps their objects out of the sheaves:
a free goes to the slab, and an rcu sheaf holding one is flushed after the grace period instead
of joining the barn. 6.18's slab_free has no such check. The expectations are those rules,
counted by hand on a cache whose every slab is (or is not) pfmemalloc.
"""

from __future__ import annotations

import pytest

from kmem import BuddyAllocator, SlabAllocator
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
