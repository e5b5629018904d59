"""Sheaves, barns, kernel versions and random kmalloc caches: what a user relies on, against the
real 6.18 machine's /sys/kernel/slab and the rules of mm/slub.c of 6.18 and 7.0."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from kmem import (
    BuddyAllocator,
    InteriorPointerError,
    InvalidTypeError,
    NotAnObjectError,
    ObjectDoubleFreeError,
    SheafCapacityError,
    SlabAllocator,
    UnknownKernelError,
)
from kmem.page.gfp import GFP_ATOMIC, GFP_KERNEL
from kmem.slab.flags import SLAB_ACCOUNT, SLAB_HWCACHE_ALIGN, SLAB_RED_ZONE, SLAB_TYPESAFE_BY_RCU
from kmem.slab.report import sysfs_attributes

FIXTURE = Path(__file__).parent / "fixtures" / "sys_kernel_slab_6.18_2cpu.json"
MACHINE = {c["name"]: c for c in json.loads(FIXTURE.read_text())["caches"]}


def boot(kernel: str = "6.18", cpus: int = 2, **kwargs: object) -> SlabAllocator:
    return SlabAllocator(BuddyAllocator(32 << 20), nr_cpus=cpus, kernel=kernel, **kwargs)  # type: ignore[arg-type]


def machine_sheaf_caches(slab: SlabAllocator) -> None:
    """maple_node and vm_area_struct as lib/maple_tree.c and mm/vma_init.c of 6.18 create them."""
    slab.kmem_cache_create("maple_node", 256, align=256, sheaf_capacity=32)
    slab.kmem_cache_create("vm_area_struct", 192,
                           flags=SLAB_HWCACHE_ALIGN | SLAB_TYPESAFE_BY_RCU | SLAB_ACCOUNT,
                           freeptr_offset=176, sheaf_capacity=32)


def snapshot(slab: SlabAllocator) -> tuple[str, object, object]:
    return slab.slabinfo(), slab.stats(), slab.buddy.nr_free


# -- the real machine ------------------------------------------------------------------------------


def test_sheaf_capacity_matches_the_real_6_18_machine() -> None:
    slab = boot("6.18")
    machine_sheaf_caches(slab)
    for cache in slab.cache_list():
        want = MACHINE[cache.name]
        assert cache.sheaf_capacity == want["sheaf_capacity"], cache.name
        assert sysfs_attributes(cache)["sheaf_capacity"] == want["sheaf_capacity"]
        for key in ("object_size", "slab_size", "objs_per_slab", "order", "cpu_partial"):
            assert getattr(cache, key) == want[key], (cache.name, key)
    slab.check()


def test_the_kernel_sheaf_capacity_table_matches_the_machine() -> None:
    from kmem.slab.sheaves import KERNEL_SHEAF_CAPACITIES

    machine = {name: c["sheaf_capacity"] for name, c in MACHINE.items() if c["sheaf_capacity"]}
    assert machine == KERNEL_SHEAF_CAPACITIES


def test_a_sheaf_cache_keeps_its_name_and_is_never_merged() -> None:
    slab = boot("6.18")
    maple = slab.kmem_cache_create("maple_node", 256, align=256, sheaf_capacity=32)
    other = slab.kmem_cache_create("same_shape", 256, align=256)
    assert other is not maple and maple.sysfs_name == "maple_node" and not maple.aliases
    plain = slab.kmem_cache_create("plain_256", 256, align=256)
    assert plain is other  # without sheaves, 256-byte caches still merge


# -- sheaves are kmalloc'd -------------------------------------------------------------------------


def test_sheaves_and_barns_are_kmalloc_objects() -> None:
    # struct slab_sheaf is 32 bytes + 8 per pointer: 288 for 32 -> kmalloc-512; the barn is
    # 48 bytes -> kmalloc-64. One main sheaf per CPU and one barn at creation.
    slab = boot("6.18", cpus=3)
    def live(name: str) -> int:
        return len(slab.caches[name].live_objects())

    before = {n: live(n) for n in ("kmalloc-512", "kmalloc-64")}
    cache = slab.kmem_cache_create("maple_node", 256, align=256, sheaf_capacity=32)
    assert live("kmalloc-512") == before["kmalloc-512"] + 3
    assert live("kmalloc-64") == before["kmalloc-64"] + 1
    assert cache.stats().sheaves == 3 and cache.stats().sheaf_alloc == 3
    slab.check()
    slab.kmem_cache_destroy(cache)
    assert live("kmalloc-512") == before["kmalloc-512"]
    assert live("kmalloc-64") == before["kmalloc-64"]
    slab.check()


def test_an_accounted_6_18_refill_takes_its_sheaf_from_kmalloc_cg() -> None:
    # 6.18 alloc_empty_sheaf passes the caller's gfp to kzalloc; 7.0 clears __GFP_ACCOUNT.
    for kernel, family in (("6.18", "kmalloc-cg-512"), ("7.0", "kmalloc-512")):
        slab = boot(kernel, cpus=1)
        cache = slab.kmem_cache_create("acct", 256, sheaf_capacity=32)
        before = len(slab.caches[family].live_objects())
        cache.alloc(0, GFP_KERNEL | (1 << 22))  # __GFP_ACCOUNT: the empty main is refilled
        assert len(slab.caches[family].live_objects()) == before + 1, kernel


# -- the fast paths --------------------------------------------------------------------------------


def test_alloc_pops_the_main_sheaf_lifo_and_free_pushes_it() -> None:
    slab = boot("6.18", cpus=1)
    cache = slab.kmem_cache_create("maple_node", 256, align=256, sheaf_capacity=32)
    first = cache.alloc(0)  # empty main: refilled with 32 objects, one handed out
    stats = cache.stats()
    assert (stats.sheaf_refill, stats.alloc_cpu_sheaf, stats.cpu_sheaf_objects) == (32, 1, 31)
    cache.free(first, 0)
    assert cache.alloc(0) == first  # the object freed last is handed out first
    assert cache.stats().free_cpu_sheaf == 1
    # Objects in sheaves are allocated from their slabs, as /proc/slabinfo counts them.
    assert cache.stats().objects == 32 and cache.slabinfo().active_objs == 32
    assert [obj.address for obj in cache.live_objects()] == [first]


def test_an_atomic_allocation_never_refills_a_sheaf() -> None:
    slab = boot("6.18", cpus=1)
    cache = slab.kmem_cache_create("maple_node", 256, align=256, sheaf_capacity=32)
    cache.alloc(0, GFP_ATOMIC)  # cannot block: straight from the cpu slab
    stats = cache.stats()
    assert (stats.sheaf_refill, stats.alloc_cpu_sheaf, stats.alloc_fastpath) == (0, 0, 0)
    assert stats.barn_get_fail == 1 and stats.alloc_slowpath == 1


def test_the_barn_keeps_at_most_ten_full_sheaves_then_frees_go_to_the_slabs() -> None:
    slab = boot("6.18", cpus=1)
    cache = slab.kmem_cache_create("small", 64, sheaf_capacity=2)
    objects = [cache.alloc(0) for _ in range(60)]
    for address in objects:
        cache.free(address, 0)
    stats = cache.stats()
    assert stats.barn_full == 10  # MAX_FULL_SHEAVES
    assert stats.barn_put_fail > 0 and stats.sheaf_flush > 0
    assert stats.objects == stats.sheaf_objects  # no user object left: the rest is in sheaves
    slab.check()


def test_kfree_rcu_batches_into_the_rcu_sheaf_then_the_barn() -> None:
    slab = boot("6.18", cpus=1)
    cache = slab.kmem_cache_create("rcu", 128, sheaf_capacity=4)
    objects = [cache.alloc(0) for _ in range(8)]
    for address in objects[:4]:
        slab.kfree_rcu(address, 0)
    stats = cache.stats()
    assert stats.free_rcu_sheaf == 4 and stats.rcu_sheaf_objects == 4
    with pytest.raises(ObjectDoubleFreeError):  # waiting for the grace period: not free yet
        cache.free(objects[0], 0)
    slab.synchronize_rcu()
    stats = cache.stats()
    assert stats.rcu_sheaf_objects == 0 and stats.barn_full == 1 and stats.barn_objects == 4
    slab.check()


def test_kfree_rcu_without_sheaves_frees_after_the_grace_period() -> None:
    slab = boot("6.17")
    cache = slab.kmem_cache_create("plain", 128)
    address = cache.alloc(0)
    slab.kfree_rcu(address, 0)
    assert cache.live_objects() == []
    assert cache.stats().objects == 1  # still allocated until the grace period
    slab.synchronize_rcu()
    assert cache.stats().objects == 0
    slab.check()


def test_a_flush_groups_objects_of_one_slab_with_three_look_ahead_credits() -> None:
    # build_detached_freelist: start from the last object, scan down; same-slab objects join
    # (swapped above the rest), each other slab's object costs one of 3 credits.
    from kmem.slab.sheaves import build_detached_freelist

    def key(address: int) -> object:
        return "ABCDE"[address // 10]  # object 10*k + n lies in slab "ABCDE"[k]

    objects = [0, 10, 20, 1]  # A0 B0 C0 A1: A1, then C0 and B0 cost 2 credits, A0 joins
    group, remaining = build_detached_freelist(objects, 4, key)
    assert group == [1, 0] and remaining == 2 and objects[:2] == [20, 10]
    objects = [0, 10, 20, 30, 40, 1]  # A1, then 3 other slabs use up the credits: A0 stays
    group, remaining = build_detached_freelist(objects, 6, key)
    assert group == [1] and remaining == 5 and objects[:5] == [0, 10, 20, 30, 40]


# -- bad input: a specific error, nothing changed ---------------------------------------------


@pytest.mark.parametrize(("capacity", "error"), [
    (-1, SheafCapacityError), (1.5, InvalidTypeError), ("32", InvalidTypeError),
    (True, InvalidTypeError), (None, InvalidTypeError),
])
def test_a_bad_sheaf_capacity_is_refused(capacity: object, error: type[Exception]) -> None:
    slab = boot("6.18")
    before = snapshot(slab)
    with pytest.raises(error):
        slab.kmem_cache_create("bad", 256, sheaf_capacity=capacity)  # type: ignore[arg-type]
    assert "bad" not in slab.caches and snapshot(slab) == before


def test_sheaf_capacity_needs_slub_of_6_18_or_later() -> None:
    for slab in (boot("6.17"), SlabAllocator(BuddyAllocator(8 << 20), policy="slab")):
        before = snapshot(slab)
        with pytest.raises(SheafCapacityError):
            slab.kmem_cache_create("maple_node", 256, sheaf_capacity=32)
        assert snapshot(slab) == before


def test_a_debug_cache_ignores_sheaf_capacity_as_linux_does() -> None:
    slab = boot("6.18")
    cache = slab.kmem_cache_create("debugged", 256, flags=SLAB_RED_ZONE, sheaf_capacity=32)
    assert cache.sheaf_capacity == 0


@pytest.mark.parametrize(("kernel", "error"), [
    ("5.0", UnknownKernelError), ("6.19", UnknownKernelError), ("", UnknownKernelError),
    (6.18, InvalidTypeError), (None, InvalidTypeError),
])
def test_an_unknown_kernel_is_refused(kernel: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        SlabAllocator(BuddyAllocator(8 << 20), kernel=kernel)  # type: ignore[arg-type]


@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
def test_kfree_rcu_of_a_foreign_pointer_changes_nothing(kernel: str) -> None:
    slab = boot(kernel)
    cache = slab.kmem_cache_create("rcu", 128, sheaf_capacity=0 if kernel == "6.17" else 4)
    address = cache.alloc(0)
    big = slab.kmalloc(20000)
    slab.kfree_rcu(cache.alloc(0), 0)
    before = snapshot(slab)
    for bad, error in ((address + 8, InteriorPointerError), (1 << 40, NotAnObjectError),
                       (big + 4096, InteriorPointerError), ("x", InvalidTypeError)):
        with pytest.raises(error):
            slab.kfree_rcu(bad, 0)  # type: ignore[arg-type]
        assert snapshot(slab) == before
    slab.kfree_rcu(address, 0)
    with pytest.raises(ObjectDoubleFreeError):
        slab.kfree_rcu(address, 0)  # the second kfree_rcu of the same object
    slab.check()


# -- kernels side by side ------------------------------------------------------------------------


def _workload(slab: SlabAllocator, seed: int) -> None:
    rng = random.Random(seed)
    caches = [slab.kmem_cache_create(f"c{i}", size) for i, size in enumerate((24, 200, 3000))]
    live: list[tuple[int, int]] = []
    for _ in range(3000):
        if rng.random() < 0.55 or not live:
            pick = rng.randrange(4)
            cpu = rng.randrange(slab.nr_cpus)
            live.append((pick, caches[pick].alloc(cpu) if pick < 3
                         else slab.kmalloc(rng.randint(1, 9000), cpu=cpu)))
        else:
            pick, address = live.pop(rng.randrange(len(live)))
            if pick < 3:
                caches[pick].free(address, rng.randrange(slab.nr_cpus))
            else:
                slab.kfree(address, rng.randrange(slab.nr_cpus))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_6_18_without_sheaf_caches_is_6_17_exactly(seed: int) -> None:
    old, new = boot("6.17"), boot("6.18")
    _workload(old, seed)
    _workload(new, seed)
    assert old.slabinfo() == new.slabinfo() and old.stats() == new.stats()
    assert old.buddy.nr_free == new.buddy.nr_free


@pytest.mark.parametrize("seed", [1, 2])
def test_7_0_runs_the_same_workload_with_sheaves_everywhere(seed: int) -> None:
    slab = boot("7.0")
    _workload(slab, seed)
    slab.check()
    stats = slab.stats()
    assert all(s.cpu_slabs == 0 and s.cpu_partial_slabs == 0 for s in stats.values())
    assert stats["c0"].sheaf_capacity == 60 and stats["c2"].sheaf_capacity == 12
    assert stats["c0"].alloc_fastpath > 0 and stats["c0"].sheaf_refill > 0
    slab.shrink()
    slab.check()


def test_7_0_sheaf_capacity_follows_calculate_sheaf_capacity_for_the_machine_caches() -> None:
    # mm/slub.c 7.0: 4 from PAGE_SIZE up, 12 from 1 KiB, 26 from 256 B, else 60; then grown to
    # fill the kmalloc bucket of 32 + 8 * capacity bytes; never below an explicit request.
    from kmem import calculate_sheaf_capacity

    def bucket(size: int) -> int:  # the kmalloc size classes: 8 .. 64, 96, 128, 192, 256 ..
        return min(c for c in (8, 16, 32, 64, 96, 128, 192, *(1 << n for n in range(8, 14)))
                   if c >= size)

    expected = {60: 60, 26: 28, 12: 12, 4: 4}
    for cache in MACHINE.values():
        size = cache["slab_size"]
        base = 4 if size >= 4096 else 12 if size >= 1024 else 26 if size >= 256 else 60
        assert calculate_sheaf_capacity(size, 0, 4096, bucket) == expected[base]
    slab = boot("7.0")
    machine_sheaf_caches(slab)
    caps = {c.name: c.sheaf_capacity for c in slab.cache_list()}
    assert caps["maple_node"] == 32  # 28 from its size, 32 asked for
    assert caps["vm_area_struct"] == 60
    assert caps["kmalloc-8"] == caps["kmalloc-192"] == 60
    assert caps["kmalloc-256"] == caps["kmalloc-512"] == 28
    assert caps["kmalloc-1k"] == caps["kmalloc-2k"] == 12
    assert caps["kmalloc-4k"] == caps["kmalloc-8k"] == 4


def test_7_0_sysfs_has_no_cpu_slab_counters() -> None:
    attributes = sysfs_attributes(boot("7.0").caches["kmalloc-64"])
    assert attributes["cpu_partial"] == 0 and attributes["cpu_slabs"] == 0
    assert attributes["sheaf_capacity"] == 60
    assert "cpu_partial_alloc" not in attributes and "alloc_cpu_sheaf" not in attributes
    old = sysfs_attributes(boot("6.17").caches["kmalloc-64"])
    assert "sheaf_capacity" not in old and "alloc_cpu_sheaf" not in old
    new = sysfs_attributes(boot("6.18").caches["kmalloc-64"])
    # The 6.18 stat files (mm/slub.c STAT_ATTR) that kmem counts:
    for name in ("alloc_cpu_sheaf", "free_cpu_sheaf", "free_rcu_sheaf", "free_rcu_sheaf_fail",
                 "sheaf_flush", "sheaf_refill", "sheaf_alloc", "sheaf_free", "barn_get",
                 "barn_get_fail", "barn_put", "barn_put_fail", "sheaf_prefill_fast",
                 "sheaf_prefill_slow", "sheaf_prefill_oversize", "sheaf_return_fast",
                 "sheaf_return_slow", "cpu_partial_drain"):
        assert name in new


# -- random kmalloc caches -----------------------------------------------------------------------


def test_random_kmalloc_caches_are_made_in_linux_order() -> None:
    slab = boot("6.18", random_kmalloc_seed=0x1234)
    names = [c.name for c in reversed(slab.cache_list())]
    assert names[:13] == ["kmalloc-96", "kmalloc-192", "kmalloc-8", "kmalloc-16", "kmalloc-32",
                          "kmalloc-64", "kmalloc-128", "kmalloc-256", "kmalloc-512",
                          "kmalloc-1k", "kmalloc-2k", "kmalloc-4k", "kmalloc-8k"]
    assert names[13:16] == ["kmalloc-rnd-01-96", "kmalloc-rnd-01-192", "kmalloc-rnd-01-8"]
    assert names[13 * 15 + 12] == "kmalloc-rnd-15-8k"
    assert names[13 * 16] == "kmalloc-rcl-96" and len(names) == 13 * 19
    assert all(slab.caches[n].sysfs_name == n for n in names)  # none mergeable


def test_random_kmalloc_picks_the_copy_by_hash_64_of_caller_and_seed() -> None:
    # hash_64(v, 4) = (v * 0x61C8864680B583EB mod 2**64) >> 60
    seed = 0
    slab = boot("6.18", random_kmalloc_seed=seed)
    for caller, copy in ((0, 0), (1, 6), (2, 12), (3, 2)):
        name = "kmalloc-64" if copy == 0 else f"kmalloc-rnd-{copy:02d}-64"
        address = slab.kmalloc(50, cpu=0, caller=caller)
        assert slab.cache_of(address).name == name  # type: ignore[union-attr]
        assert slab.kmalloc_cache_for(50, caller=caller).name == name  # type: ignore[union-attr]
    accounted = slab.kmalloc(50, GFP_KERNEL | (1 << 22), caller=1)
    assert slab.cache_of(accounted).name == "kmalloc-cg-64"  # type: ignore[union-attr]
    slab.check()


def test_without_random_caches_the_caller_changes_nothing() -> None:
    slab = boot("6.18")
    assert {slab.cache_of(slab.kmalloc(50, caller=c)).name for c in range(20)} == {  # type: ignore[union-attr]
        "kmalloc-64"}


@pytest.mark.parametrize(("kernel", "policy", "flags", "capacity"), [
    ("6.17", "slub", 0, 0), ("6.18", "slub", 0, 4), ("7.0", "slub", 0, 0),
    ("6.18", "slub", SLAB_RED_ZONE, 0), ("6.18", "slab", 0, 0),
])
def test_an_object_waiting_for_rcu_cannot_be_freed_again(kernel: str, policy: str, flags: int,
                                                         capacity: int) -> None:
    slab = SlabAllocator(BuddyAllocator(32 << 20), kernel=kernel, policy=policy)
    cache = slab.kmem_cache_create("waiting", 128, flags=flags, sheaf_capacity=capacity)
    address = cache.alloc(0)
    slab.kfree_rcu(address, 0)
    before = snapshot(slab)
    for how in ("free", "kfree", "kfree_rcu"):
        with pytest.raises(ObjectDoubleFreeError):
            if how == "free":
                cache.free(address, 0)
            else:
                getattr(slab, how)(address, 0)
        assert snapshot(slab) == before
    slab.synchronize_rcu()
    assert cache.stats().objects == 0 or cache.stats().sheaf_objects == cache.stats().objects
    slab.check()


@pytest.mark.parametrize("kernel", ["6.18", "7.0"])
@pytest.mark.parametrize("objects", [1, 5, 40])
def test_destroy_after_kfree_rcu_gives_every_slab_back(objects: int, kernel: str) -> None:
    # kmem_cache_destroy waits for the kfree_rcu()s in flight: the objects that come back from
    # the rcu_free sheaves after the shrink leave empty slabs, which go back to the buddy too.
    buddy = BuddyAllocator(32 * 4096)
    slab = SlabAllocator(buddy, nr_cpus=1, kernel=kernel)
    free_before = buddy.nr_free_pages
    held_before = sum(c.pages_held() for c in slab.cache_list())  # (7.0: kmalloc's barns)
    cache = slab.kmem_cache_create("c", 265, 64, sheaf_capacity=4)
    for address in [cache.alloc(0) for _ in range(objects)]:
        slab.kfree_rcu(address, 0)
    slab.kmem_cache_destroy("c")
    slab.check()
    assert "c" not in slab.caches
    # (every page back but those the sheaves' kmalloc caches took since, which stay)
    kmalloc_pages = sum(c.pages_held() for c in slab.cache_list()) - held_before
    assert buddy.nr_free_pages == free_before - kmalloc_pages
