"""The shared slab cache core's (kmem.slab.cache, KmemCache) rules that its mutation run found
untested: slab setup and page accounting on a buddy allocator and on a page machine, RCU
slabs, slab_usage, change_count, merges and destroy, kfree_rcu and the errors both policies
share. Values come from Linux's rules (mm/slub.c, mm/slab_common.c, mm/slab.h) and kmem's
documented API (the docstrings of kmem.slab.cache). Run on both cores (KMEM_PURE=1 for the
pure one); the tests marked for it also build on the compiled core in the pure run (on_core),
so the mutation tool's pure run checks what KmemCache hands it."""

from __future__ import annotations

import enum
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from core_twins import compiled_module, on_core
from kmem import BuddyAllocator, SlabAllocator
from kmem.errors import InvalidTypeError, OutOfMemoryError
from kmem.page.gfp import GFP_KERNEL
from kmem.page.layout import MachineLayout
from kmem.page.machine import PageMachine
from kmem.slab.cache import GFP_MAX, check_gfp
from kmem.slab.errors import (
    ConstructorReentryError,
    FreeToDestroyedCacheError,
    InteriorPointerError,
    InvalidCpuError,
    InvalidGfpError,
    NotAnObjectError,
    ObjectDoubleFreeError,
)
from kmem.slab.flags import SLAB_RED_ZONE, SLAB_STORE_USER, SLAB_TYPESAFE_BY_RCU

MiB = 1 << 20
POLICIES = ["slub", "slab"]


class Cpu(enum.IntEnum):
    ONE = 1


def alloc_until_out_of_memory(alloc: Callable[[], int]) -> list[int]:
    """What ``alloc()`` gives until it raises OutOfMemoryError."""
    taken = []
    while True:
        try:
            taken.append(alloc())
        except OutOfMemoryError:
            return taken


def _slab(policy: str, size: int = 16 * MiB, nr_cpus: int = 2, **kw: Any) -> SlabAllocator:
    return SlabAllocator(BuddyAllocator(size), nr_cpus=nr_cpus, policy=policy, **kw)


def _on_machine(policy: str, mib: int = 16) -> tuple[SlabAllocator, PageMachine]:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": mib * MiB},
                                                   source=f"Normal={mib}M"), nr_cpus=2)
    return SlabAllocator(BuddyAllocator(mib * MiB), nr_cpus=2, policy=policy,
                         machine=machine), machine


# -- pages held, change_count ------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_a_cache_holds_the_pages_of_its_slabs(policy: str) -> None:
    """pages_held() is the pages of every slab the cache holds: one slab of 2**order pages
    after the first allocation, none once the slab is freed and the cache shrunk."""
    slab = _slab(policy)
    cache = slab.kmem_cache_create("t", 256)
    assert cache.pages_held() == 0
    address = cache.alloc()
    assert cache.pages_held() == 1 << cache.order
    cache.free(address)
    cache.shrink()
    assert cache.pages_held() == 0


def _moves(cache: Any, step: Callable[[], object]) -> object:
    """change_count() moves forward (never back) across ``step``, which changes the cache."""
    before = cache.change_count()
    result = step()
    assert cache.change_count() > before
    return result


@pytest.mark.parametrize("policy", POLICIES)
def test_change_count_moves_forward_on_every_alloc_and_free(policy: str) -> None:
    """Every alloc and free changes slab_usage(): change_count() moves forward each time,
    on the fast paths (an object of the cpu's slab or array) and the slow ones alike."""
    slab = _slab(policy)
    cache = slab.kmem_cache_create("counted", 512)
    addresses = [_moves(cache, functools.partial(cache.alloc, cpu))
                 for cpu in [0, 1] * cache.objs_per_slab]
    for index, address in enumerate(addresses):
        assert isinstance(address, int)
        _moves(cache, functools.partial(cache.free, address, index % 2))
    _moves(cache, cache.shrink)
    stats = cache.stats()
    assert stats.alloc_fastpath and stats.free_fastpath  # both kinds were counted


@pytest.mark.parametrize("policy", POLICIES)
def test_change_count_moves_on_a_merge_and_a_destroy(policy: str) -> None:
    """A merge may grow object_size and a destroy gives every slab back: both move
    change_count(), forward."""
    slab = _slab(policy)
    cache = slab.kmem_cache_create("first", 60)
    for _ in range(5):
        cache.alloc()
    alias = _moves(cache, lambda: slab.kmem_cache_create("second", 64))
    assert alias is cache
    assert _moves(cache, lambda: slab.kmem_cache_create("third", 62)) is cache
    empty = slab.kmem_cache_create("empty", 3000, flags=SLAB_TYPESAFE_BY_RCU)
    empty.free(empty.alloc())
    _moves(empty, lambda: slab.kmem_cache_destroy(empty))
    # a destroy with nothing left to give back changes no row: its number never goes back
    idle: Any = slab.kmem_cache_create("idle", 3000)
    callbacks: list[Callable[[], None]] = []
    for _ in range(3):
        idle.kfree_rcu(idle.alloc(), 0, callbacks.append)
    for callback in callbacks:
        callback()
    idle.shrink()
    assert idle.pages_held() == 0
    before = idle.change_count()
    slab.kmem_cache_destroy(idle)
    assert idle.change_count() >= before


@pytest.mark.parametrize("policy", POLICIES)
def test_a_merge_raises_object_size_and_inuse_and_takes_a_reference(policy: str) -> None:
    """__kmem_cache_alias: object_size = max(object_size, size), inuse = max(inuse,
    ALIGN(size, sizeof(void *))), refcount + 1; kmem_cache_destroy drops one reference a
    call: the cache goes with the last."""
    slab = _slab(policy)
    cache = slab.kmem_cache_create("small", 60)
    assert (cache.object_size, cache.inuse, cache.refcount) == (60, 64 if cache.inuse == 64
                                                                else cache.inuse, 1)
    alias = slab.kmem_cache_create("large", 64)
    assert alias is cache
    assert (cache.object_size, cache.inuse, cache.refcount) == (64, 64, 2)
    assert "large" in cache.aliases
    slab.kmem_cache_destroy("large")
    assert not cache.destroyed and cache.refcount == 1
    slab.kmem_cache_destroy("small")
    assert cache.destroyed
    assert cache not in slab.cache_list()


@pytest.mark.parametrize("policy", POLICIES)
def test_rcu_barrier_moves_change_count_by_the_slabs_it_gives_back(policy: str) -> None:
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("rcu", 1024, flags=SLAB_TYPESAFE_BY_RCU)
    cache.free(cache.alloc())
    cache.shrink()
    assert cache.pages_held() == 1 << cache.order  # waiting for the grace period
    assert _moves(cache, cache.rcu_barrier) == 1
    assert cache.pages_held() == 0
    cache.check()


# -- alloc_node --------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_alloc_node_allocates_on_cpu_0_by_default(policy: str) -> None:
    """kmem_cache_alloc_node(node=NUMA_NO_NODE) is alloc on the cpu given, 0 by default: the
    next alloc on cpu 0 is served by the same cpu slab (SLUB) or array (classic), and an
    alloc on cpu 1 is not (a second slab: every object of the first went to cpu 0)."""
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("noded", 1024)
    cache.alloc_node()
    cache.alloc(0)
    assert cache.pages_held() == 1 << cache.order
    assert cache.stats().objects == 2
    for _ in range(cache.objs_per_slab - 2):
        cache.alloc_node(0, node=0)
    assert cache.pages_held() == 1 << cache.order
    cache.alloc_node(1, node=-1)
    assert cache.pages_held() == 2 << cache.order
    slab.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_alloc_node_refuses_a_node_the_allocator_has_not(policy: str) -> None:
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("noded", 128)
    with pytest.raises(Exception, match="node"):
        cache.alloc_node(0, node=1)
    assert cache.stats().objects == 0


# -- a page machine's slabs --------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_a_slab_on_a_machine_falls_back_to_the_minimum_order(policy: str) -> None:
    """allocate_slab: when the preferred order cannot be had, the minimum order, counted as
    ORDER_FALLBACK; a slab of the preferred order is not counted."""
    slab, machine = _on_machine(policy)
    cache: Any = slab.kmem_cache_create("fallback", 1024)
    assert cache.order > cache.min_order == 0
    cache.alloc()
    assert cache.stats().order_fallback == 0
    buddy = slab.buddy
    taken = []
    while True:  # every page of the address space taken, every other one given back
        try:
            taken.append(buddy.alloc_pages(0))
        except Exception:
            break
    for pfn in taken[::2]:
        buddy.free_pages(pfn, 0)
    for _ in range(cache.objs_per_slab):
        cache.alloc(0)
    assert cache.stats().order_fallback == 1
    assert sorted(order for _, order in cache.slab_extents()) == [0, cache.order]
    per_page = 4096 // cache.size
    for _ in range(per_page):
        cache.alloc(0)
    assert cache.stats().order_fallback == 2
    assert sorted(order for _, order in cache.slab_extents()) == [0, 0, cache.order]
    slab.check()
    machine.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_an_rcu_cache_on_a_full_machine_ends_the_grace_period_for_a_new_slab(
        policy: str) -> None:
    """A SLAB_TYPESAFE_BY_RCU cache's discarded slabs wait for the grace period; when no
    page can be had for a new slab, the grace period ends (rcu_barrier) and those pages come
    back first: the allocation succeeds on the cpu and with the gfp asked."""
    slab, machine = _on_machine(policy, 4)
    cache: Any = slab.kmem_cache_create("rcu", 2048, flags=SLAB_TYPESAFE_BY_RCU)
    objects = alloc_until_out_of_memory(lambda: cache.alloc(1))
    for address in objects:
        cache.free(address, 1)
    cache.shrink()
    held = cache.pages_held()
    assert held > 1 << cache.order
    address = cache.alloc(1)  # no page left: the pending slabs come back, then a new slab
    assert cache.pages_held() == 1 << cache.order
    assert cache.stats().objects == 1
    slab.check()
    machine.check()
    cache.free(address, 1)
    slab.check()


def test_rcu_slabs_go_back_to_the_pcp_list_of_the_cpu_that_discarded_them() -> None:
    """An RCU callback runs on the CPU that queued it: a SLAB_TYPESAFE_BY_RCU slab discarded
    on cpu 1 (SLUB: a free that empties a slab beyond min_partial) goes back to the machine
    through cpu 1's pcp list at rcu_barrier()."""
    slab, machine = _on_machine("slub")
    cache: Any = slab.kmem_cache_create("rcu", 256, flags=SLAB_TYPESAFE_BY_RCU)
    assert cache.order == 0
    objects = [cache.alloc(1) for _ in range(cache.objs_per_slab * 30)]
    for address in objects:
        cache.free(address, 1)  # empty slabs beyond the lists' limits discarded on cpu 1
    machine.drain_all_pages()
    assert cache.rcu_barrier() > 0
    assert machine.pcp("Normal", 1).count > 0
    assert machine.pcp("Normal", 0).count == 0
    slab.check()
    machine.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_a_failed_constructor_on_a_machine_gives_the_pages_back(policy: str) -> None:
    """A slab is built completely or not at all: a constructor that raises leaves the machine,
    the pcp lists and the cache as they were, and the next slab is built as usual."""
    slab, machine = _on_machine(policy)
    state = {"fail": True}

    def ctor(view: memoryview) -> None:
        if state["fail"]:
            raise RuntimeError("ctor failed")

    cache: Any = slab.kmem_cache_create("ctor", 256, ctor=ctor)
    assert cache.order == 0
    machine.drain_all_pages()
    with pytest.raises(RuntimeError, match="ctor failed"):
        cache.alloc(1)  # its page back on cpu 1's pcp list, where it came from
    assert machine.pcp("Normal", 0).count == 0
    assert machine.pcp("Normal", 1).count > 0
    machine.drain_all_pages()
    free = machine.nr_free_pages
    pcps = [machine.pcp("Normal", cpu).count for cpu in (0, 1)]
    for cpu in (0, 1):
        with pytest.raises(RuntimeError, match="ctor failed"):
            cache.alloc(cpu)
        assert cache.pages_held() == 0
        machine.drain_all_pages()
        assert machine.nr_free_pages == free
    assert [machine.pcp("Normal", cpu).count for cpu in (0, 1)] == pcps
    machine.check()
    slab.check()
    state["fail"] = False
    cache.alloc(1)
    cache.alloc(0)
    assert cache.stats().objects == 2
    slab.check()
    machine.check()


# -- errors -------------------------------------------------------------------------------------


def test_a_reentrant_constructor_error_says_what_happened() -> None:
    slab = _slab("slub")
    state: dict[str, Any] = {}

    def ctor(view: memoryview) -> None:
        if "cache" in state:
            state["cache"].alloc()

    cache = slab.kmem_cache_create("reenter", 1024, ctor=ctor)
    state["cache"] = cache
    with pytest.raises(ConstructorReentryError) as caught:
        cache.alloc()
    assert str(caught.value) == ("the constructor of cache 'reenter' called back into its own"
                                 " cache while a slab was being built for it")


@pytest.mark.parametrize("policy", POLICIES)
def test_a_free_to_a_destroyed_cache_names_the_address(policy: str) -> None:
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("gone", 128)
    address = cache.alloc()
    cache.free(address)
    slab.kmem_cache_destroy(cache)
    for bad, shown in [(address, f"{address:#x}"), (True, "True"), ("x", "'x'"),
                       (None, "None")]:
        with pytest.raises(FreeToDestroyedCacheError) as caught:
            cache.free(bad)
        assert str(caught.value) == f"cache 'gone' was destroyed: {shown} is no object of it"


@pytest.mark.parametrize("policy", POLICIES)
def test_repr_names_the_class_and_the_geometry(policy: str) -> None:
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("shown", 100)
    assert repr(cache) == (f"<{type(cache).__name__} 'shown' object_size=100"
                           f" slab_size={cache.size} objs_per_slab={cache.objs_per_slab}"
                           f" order={cache.order}>")
    assert type(cache).__name__ in ("SlubCache", "ClassicSlabCache")


# -- kfree_rcu ----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_kfree_rcu_checks_the_cpu_first(policy: str) -> None:
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("rcu", 128)
    address = cache.alloc()
    callbacks: list[Callable[[], None]] = []
    for cpu, error in [(2, InvalidCpuError), (-1, InvalidCpuError), ("0", InvalidTypeError),
                       (None, InvalidTypeError), (True, InvalidTypeError)]:
        with pytest.raises(error):
            cache.kfree_rcu(address, cpu, callbacks.append)
    assert not callbacks
    assert cache.slab_usage()[0][1] == 1
    second = cache.alloc()
    for obj in (address, second):
        before = cache.change_count()
        cache.kfree_rcu(obj, Cpu.ONE, callbacks.append)  # an IntEnum names its cpu
        assert cache.change_count() > before
    assert cache.slab_usage()[0][3].count(3) == 2  # waiting for the grace period
    for callback in callbacks:
        before = cache.change_count()
        callback()
        assert cache.change_count() > before
    assert cache.slab_usage()[0][1] == 0
    cache.check()


def _after_free(policy: str, free: Callable[[Any, int], None]) -> tuple[object, ...]:
    """What a cache looks like after ``free`` of its first object, then allocs on both cpus."""
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("rcu", 128)
    address = cache.alloc(0)
    for _ in range(3):
        cache.free(cache.alloc(0), 0)
    free(cache, address)
    stats = cache.stats()
    return (stats.free_fastpath, stats.free_slowpath, cache.slab_usage(),
            [cache.alloc(cpu) for cpu in (1, 0, 1, 0)])


def test_kfree_rcu_frees_on_the_cpu_given() -> None:
    """The grace period's callback frees on the cpu kfree_rcu named: the cache afterwards is
    the one a plain free on that cpu leaves (and not the one a free on cpu 0 leaves: for SLUB
    a free of cpu 0's object on cpu 1 is no fast-path free)."""
    policy = "slub"
    def rcu(cache: Any, address: int) -> None:
        callbacks: list[Callable[[], None]] = []
        cache.kfree_rcu(address, 1, callbacks.append)
        callbacks.pop()()

    on_1 = _after_free(policy, lambda cache, address: cache.free(address, 1))
    assert _after_free(policy, rcu) == on_1
    assert _after_free(policy, lambda cache, address: cache.free(address, 0)) != on_1


# -- slab_usage ---------------------------------------------------------------------------------


def _usage_case(policy: str) -> None:
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("usage", 512)
    assert cache.slab_usage() == []
    objects = [cache.alloc() for _ in range(cache.objs_per_slab + 3)]
    cache.free(objects[1])
    rows = cache.slab_usage()
    live = cache.live_objects()
    assert [row[0] for row in rows] == sorted(pfn for pfn, _ in cache.slab_extents())
    assert sum(row[1] for row in rows) == len(live) == len(objects) - 1
    for pfn, held, base, used in rows:
        mine = [obj for obj in live if obj.slab_pfn == pfn]
        assert held == len(mine) == used.count(1)
        assert {obj.address for obj in mine} == {base + i * cache.size
                                                 for i, b in enumerate(used) if b == 1}
    assert cache.slab_usage() == rows  # asked again: the same rows
    cache.free(objects[0])
    again = cache.slab_usage()
    assert again != rows and sum(row[1] for row in again) == len(objects) - 2


@pytest.mark.parametrize("policy", POLICIES)
def test_slab_usage_counts_the_objects_users_hold(policy: str) -> None:
    _usage_case(policy)


@pytest.mark.skipif(compiled_module() is None, reason="kmem._core is not built")
@pytest.mark.parametrize("policy", POLICIES)
def test_slab_usage_from_the_compiled_core(policy: str) -> None:
    """The same rows when the compiled core reads them (even in the pure run)."""
    with on_core(compiled_module()):
        _usage_case(policy)
        slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("usage", 512)
    objects = [cache.alloc() for _ in range(cache.objs_per_slab * 2)]
    rows = cache.slab_usage()
    assert len(rows) == 2
    cache.free(objects[-1])
    again = cache.slab_usage()
    # (docs/development.md: an unchanged slab's row is the previous call's very tuple)
    assert again[0] is rows[0] and again[1] is not rows[1] and again[1] != rows[1]


# -- reports ------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_slabinfo_and_stats_name_the_cache_and_its_pages(policy: str) -> None:
    """/proc/slabinfo: pagesperslab is 2**order and sharedavail 0 (SLUB prints 0; kmem's
    classic has no shared array); stats() names the cache and its policy."""
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("info", 1024)
    assert cache.order > 0
    cache.alloc()
    info = cache.slabinfo()
    assert (info.name, info.pagesperslab, info.sharedavail) == ("info", 1 << cache.order, 0)
    assert (info.objsize, info.objperslab, info.num_slabs) == (cache.size,
                                                               cache.objs_per_slab, 1)
    stats = cache.stats()
    assert (stats.name, stats.policy) == ("info", policy)


# -- bad frees ------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_a_free_in_an_rcu_slab_or_beside_it_says_which(policy: str) -> None:
    """An address in a slab waiting for the grace period is named so; the page right after
    it, in no slab, and the first address past the memory are no object of the cache."""
    slab = _slab(policy, 1 * MiB)
    cache: Any = slab.kmem_cache_create("rcu", 256, flags=SLAB_TYPESAFE_BY_RCU)
    assert cache.order == 0
    address = cache.alloc()
    cache.free(address)
    cache.shrink()
    (pending,) = cache._rcu_pending
    start = pending.pfn << 12
    with pytest.raises(NotAnObjectError) as caught:
        cache.free(start)
    assert str(caught.value) == (f"address {start:#x} is in a slab of 'rcu' that was discarded"
                                 " (its pages wait for an RCU grace period)")
    after = (pending.pfn + 1) << 12
    assert slab.buddy.mem_map.owner[pending.pfn + 1] == 0
    for bad in (after, after + 256, 1 * MiB, 1 * MiB + 4096):
        with pytest.raises(NotAnObjectError) as caught:
            cache.free(bad)
        assert str(caught.value) == f"address {bad:#x} is not in a slab of 'rcu'"
    cache.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_the_address_past_the_last_object_of_a_slab_is_no_object(policy: str) -> None:
    """A slab of 4096-byte pages holds 4096 // 600 = 6 objects of 600 bytes and 496 bytes
    left over: base + 6 * 600 lies in the slab's page but starts no object."""
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("slack", 600)
    address = cache.alloc()
    (pfn, _held, base, used) = cache.slab_usage()[0]
    past = base + len(used) * cache.size
    assert past < ((pfn + (1 << cache.order)) << 12)
    assert cache.owns(address) and not cache.owns(past)
    with pytest.raises(InteriorPointerError):
        cache.view(past)
    with pytest.raises(InteriorPointerError):
        cache.free(past)
    cache.check()


# -- constructors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("thread_safe", [True, False])
def test_a_constructor_slab_leaves_alloc_free_and_kfree_as_they_were(
        policy: str, thread_safe: bool) -> None:
    """While a constructor runs its cache's calls are guarded; afterwards they are the
    cache's own again: an unlocked cache (thread_safe=False) keeps its unlocked paths, and
    kfree of an object of the cache frees it (no ConstructorReentryError)."""
    slab = _slab(policy, thread_safe=thread_safe)
    cache: Any = slab.kmem_cache_create("ctor", 256, ctor=lambda view: None)
    before = (cache.__dict__.get("alloc"), cache.__dict__.get("free"))
    objects = [cache.alloc() for _ in range(cache.objs_per_slab * 3)]
    assert (cache.__dict__.get("alloc"), cache.__dict__.get("free")) == before
    if not thread_safe and slab.buddy.compiled_core is None:  # (else the core's paths)
        assert cache.alloc == cache._alloc_unlocked and cache.free == cache._free_unlocked
    for address in objects:
        slab.kfree(address)
    assert cache.stats().objects == 0
    slab.check()


@pytest.mark.skipif(compiled_module() is None, reason="kmem._core is not built")
@pytest.mark.parametrize("policy", POLICIES)
def test_a_constructor_slab_keeps_the_compiled_fast_paths(policy: str) -> None:
    with on_core(compiled_module()):
        slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("ctor", 256, ctor=lambda view: None)
    assert type(cache.alloc).__name__ == "builtin_function_or_method"
    objects = [cache.alloc() for _ in range(cache.objs_per_slab * 2)]
    assert type(cache.alloc).__name__ == "builtin_function_or_method"
    assert type(cache.free).__name__ == "builtin_function_or_method"
    for address in objects:
        slab.kfree(address)
    slab.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_another_thread_allocating_during_a_constructor_gets_cpu_0_by_default(
        policy: str) -> None:
    """Another thread's alloc() and free() while a constructor runs wait for the slab, then
    run with their own arguments: alloc() and free(address) on cpu 0 by default, so the
    waiting alloc takes an object of cpu 0's new slab, no second slab."""
    slab = _slab(policy)
    state: dict[str, Any] = {}

    def other() -> None:
        state["address"] = state["cache"].alloc()

    def ctor(view: memoryview) -> None:
        if "cache" in state and "thread" not in state:
            state["thread"] = threading.Thread(target=other)
            state["thread"].start()
            time.sleep(0.2)  # (it waits for the cache; if it were late it would wait too)

    cache: Any = slab.kmem_cache_create("ctor", 1024, ctor=ctor)
    state["cache"] = cache
    first = cache.alloc(0)
    state["thread"].join(30)
    assert cache.stats().objects == 2 and state["address"] != first
    assert cache.pages_held() == 1 << cache.order
    cache.free(first)
    slab.check()


# -- discards -------------------------------------------------------------------------------------


def test_a_shrink_gives_the_pages_back_on_cpu_0() -> None:
    """kmem_cache_shrink runs on cpu 0 (kmem's default cpu): an RCU cache's slabs it discards
    go back through cpu 0's pcp list at the grace period, as a plain cache's at once."""
    for flags in (0, SLAB_TYPESAFE_BY_RCU):
        slab, machine = _on_machine("slub")
        cache: Any = slab.kmem_cache_create("shrunk", 256, flags=flags)
        assert cache.order == 0
        cache.free(cache.alloc(1), 1)
        cache.flush_cpu(1)
        machine.drain_all_pages()
        cache.shrink()
        cache.rcu_barrier()
        assert cache.pages_held() == 0
        assert (machine.pcp("Normal", 0).count, machine.pcp("Normal", 1).count) == (1, 0)
        slab.check()


def test_check_refuses_a_node_list_too_many() -> None:
    slab = _slab("slub")
    cache: Any = slab.kmem_cache_create("nodes", 256)
    cache.check()
    cache._nodes.append(type(cache._nodes[0])())
    with pytest.raises(AssertionError, match=r"^nodes: 2 node lists for 1 nodes$"):
        cache.check()


# -- gfp, attributes, tunables, kmalloc statistics -------------------------------------------------


def test_check_gfp_takes_every_gfp_t() -> None:
    """gfp_t is an unsigned int: 0 (GFP_NOWAIT) through 2**32 - 1 are gfp flags, 2**32 is
    not, nor a bool or a str."""
    assert check_gfp(0) == 0 and check_gfp(GFP_MAX) == GFP_MAX == (1 << 32) - 1
    for bad, error in [(-1, InvalidGfpError), (1 << 32, InvalidGfpError),
                       (True, InvalidTypeError), ("0", InvalidTypeError)]:
        with pytest.raises(error):
            check_gfp(bad)


@pytest.mark.parametrize("policy", POLICIES)
def test_alloc_refuses_a_gfp_beyond_32_bits(policy: str) -> None:
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("gfp", 128)
    for bad in (1 << 32, 1 << 33, (1 << 40) | GFP_KERNEL):
        with pytest.raises(InvalidGfpError):
            cache.alloc(0, bad)
    assert cache.stats().objects == 0
    cache.alloc(0, 0)  # GFP_NOWAIT
    assert cache.stats().objects == 1


@pytest.mark.parametrize("policy", POLICIES)
def test_a_new_cache_carries_its_sysfs_attributes(policy: str) -> None:
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("user", 96, useroffset=8, usersize=16)
    assert (cache.useroffset, cache.usersize) == (8, 16)
    assert cache.destroyed is False and cache.thread_safe is True
    assert cache.kmalloc_requests() == (0, 0, 0)  # not kmalloc's
    stats = cache.stats()
    assert (stats.bytes_requested, stats.bytes_allocated) == (0, 0)
    unlocked: Any = _slab(policy, thread_safe=False).kmem_cache_create("user", 96)
    assert unlocked.thread_safe is False


def test_a_slub_cache_has_no_slabinfo_tunables() -> None:
    """SLUB's /proc/slabinfo prints tunables 0 0 0 (it has none)."""
    cache: Any = _slab("slub").kmem_cache_create("tunables", 128)
    info = cache.slabinfo()
    assert (info.limit, info.batchcount, info.sharedfactor) == (0, 0, 0)


@pytest.mark.parametrize("policy", POLICIES)
def test_kmalloc_requests_follow_every_kmalloc(policy: str) -> None:
    """(calls, bytes requested, bytes allocated): the allocated bytes are calls × the
    cache's object size; asked again after more kmallocs, the new counts."""
    slab = _slab(policy)
    for size in (50, 60, 64):
        slab.kmalloc(size)
    cache: Any = next(c for c in slab.cache_list() if c.name == "kmalloc-64")
    assert cache.kmalloc_requests() == (3, 174, 3 * cache.size)
    assert cache.kmalloc_requests() == (3, 174, 3 * cache.size)
    slab.kmalloc(33)
    assert cache.kmalloc_requests() == (4, 207, 4 * cache.size)
    assert isinstance(cache.kmalloc_requests()[2], int)


# -- the compiled core's wiring -----------------------------------------------------------------


@pytest.mark.skipif(compiled_module() is None, reason="kmem._core is not built")
@pytest.mark.parametrize("policy", POLICIES)
def test_a_debug_cache_keeps_its_checked_paths_on_the_compiled_core(policy: str) -> None:
    """Debug caches keep their pure paths (every object checked); a plain cache beside it
    runs its fast paths in C."""
    with on_core(compiled_module()):
        slab = _slab(policy)
    plain: Any = slab.kmem_cache_create("plain", 128)
    debug: Any = slab.kmem_cache_create("zoned", 128, flags=SLAB_RED_ZONE)
    assert type(plain.alloc).__name__ == "builtin_function_or_method"
    assert type(debug.alloc).__name__ == "method"
    address = debug.alloc()
    debug.free(address)
    with pytest.raises(ObjectDoubleFreeError):
        debug.free(address)


# -- check() ------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_check_finds_a_slab_page_owned_by_nobody(policy: str) -> None:
    """Every page of a slab (2**order of them) is the cache's (slab->slab_cache): check()
    finds a tail page whose owner was lost, in a slab and in one waiting for RCU."""
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("owned", 1024)
    assert cache.order > 0
    cache.alloc()
    (pfn, order), = cache.slab_extents()
    owner = slab.buddy.mem_map.owner
    owner[pfn + (1 << order) - 1] = 0
    with pytest.raises(AssertionError, match=r"^owned: slab at pfn 0x[0-9a-f]+: page 0x[0-9a-f]+"
                                             " owner is 0$"):
        cache.check()
    owner[pfn + (1 << order) - 1] = cache.id
    cache.check()
    rcu: Any = slab.kmem_cache_create("rcu", 1024, flags=SLAB_TYPESAFE_BY_RCU)
    rcu.free(rcu.alloc())
    rcu.shrink()
    (pending,) = rcu._rcu_pending
    rcu.check()
    owner[pending.pfn + (1 << pending.order) - 1] = 0
    with pytest.raises(AssertionError, match=r"^rcu: RCU-pending slab at pfn 0x[0-9a-f]+: its"
                                             " pages are not held for the cache$"):
        rcu.check()


def _sheaf_run(compiled: bool, kernel: str, nr_nodes: int) -> list[object]:
    """A random program on a cache with sheaves; what it saw, step by step."""
    import random

    with on_core(compiled_module() if compiled else None):
        slab = SlabAllocator(BuddyAllocator(64 * MiB), nr_cpus=4, nr_nodes=nr_nodes,
                             kernel=kernel)
    cache: Any = slab.kmem_cache_create("sheafed", 192, sheaf_capacity=8)
    assert cache.sheaf_capacity >= 8
    if compiled:
        assert type(cache.alloc).__name__ == "builtin_function_or_method"
    rng = random.Random(kernel + str(nr_nodes))
    live: list[int] = []
    seen: list[object] = []
    for step in range(1500):
        if live and (len(live) > 300 or rng.random() < 0.45):
            address = live.pop(rng.randrange(len(live)))
            cache.free(address, rng.randrange(4))
            seen.append(("free", address))
        else:
            address = cache.alloc(rng.randrange(4))
            live.append(address)
            seen.append(("alloc", address))
        if step % 100 == 0:
            seen.append((cache.slab_usage(), cache.stats()))
    seen.append((cache.slab_usage(), cache.stats()))
    slab.check()
    return seen


@pytest.mark.skipif(compiled_module() is None, reason="kmem._core is not built")
@pytest.mark.parametrize(("kernel", "nr_nodes"), [("6.18", 1), ("6.18", 2), ("7.0", 2)])
def test_sheaves_on_the_compiled_core_do_what_the_pure_ones_do(kernel: str,
                                                              nr_nodes: int) -> None:
    """The compiled core takes a sheaf cache's fast paths (its main sheaves, counters and,
    on several nodes, the cpu -> node map that sends remote frees to the pure path): the
    same program gives the same objects, rows and counters on both cores."""
    assert _sheaf_run(True, kernel, nr_nodes) == _sheaf_run(False, kernel, nr_nodes)


@pytest.mark.parametrize("policy", POLICIES)
def test_live_objects_name_their_last_allocating_caller(policy: str) -> None:
    """SLAB_STORE_USER: live_objects() gives each object's last *allocation* track
    (TRACK_ALLOC), not its free track: an object allocated, freed and allocated again by
    the same code as a never-freed one carries the same caller."""
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("tracked", 128, flags=SLAB_STORE_USER)

    def allocate() -> int:
        return int(cache.alloc())

    def release(address: int) -> None:
        cache.free(address)

    first = cache.alloc()
    release(first)
    again, fresh = allocate(), allocate()
    assert again == first  # (the object just freed, handed out again)
    callers = {obj.address: obj.caller for obj in cache.live_objects()}
    assert set(callers) == {again, fresh}
    assert isinstance(callers[again], str) and callers[again] == callers[fresh]


# -- new slabs on a buddy allocator and on several nodes -----------------------------------------


def _fragment(buddy: BuddyAllocator) -> None:
    """Every free page taken, every other one given back: no block above order 0 is left."""
    taken = alloc_until_out_of_memory(lambda: buddy.alloc_pages(0))
    for pfn in taken[::2]:
        buddy.free_pages(pfn, 0)


@pytest.mark.parametrize(("policy", "nr_nodes"), [("slub", 1), ("slab", 1), ("slub", 2)])
def test_each_minimum_order_slab_counts_an_order_fallback(policy: str, nr_nodes: int) -> None:
    """allocate_slab: a slab of the minimum order because the preferred one could not be had
    counts ORDER_FALLBACK, once per such slab."""
    slab = _slab(policy, nr_nodes=nr_nodes)
    cache: Any = slab.kmem_cache_create("fallback", 1024)
    assert cache.order > cache.min_order == 0
    cache.alloc()
    _fragment(slab.buddy)
    objects = [cache.alloc(0) for _ in range(cache.objs_per_slab + 4096 // cache.size)]
    assert cache.stats().order_fallback == 2
    assert sorted(order for _, order in cache.slab_extents()) == [0, 0, cache.order]
    for address in objects:
        cache.free(address)
    slab.check()


def test_an_rcu_cache_on_two_full_nodes_ends_the_grace_period_for_a_new_slab() -> None:
    """(SLUB: the slab policy with several nodes)"""
    slab = _slab("slub", 8 * MiB, nr_nodes=2)
    cache: Any = slab.kmem_cache_create("rcu", 2048, flags=SLAB_TYPESAFE_BY_RCU)
    objects = alloc_until_out_of_memory(lambda: cache.alloc(1))
    for address in objects:
        cache.free(address, 1)
    cache.shrink()
    assert cache.pages_held() > 1 << cache.order
    address = cache.alloc(1)
    assert cache.pages_held() == 1 << cache.order
    assert slab.node_of(address) == 1  # (cpu 1 of 2 is on node 1)
    slab.check()


def test_a_failed_constructor_on_two_nodes_gives_the_pages_back() -> None:
    slab = _slab("slub", nr_nodes=2)
    state = {"fail": True}

    def ctor(view: memoryview) -> None:
        if state["fail"]:
            raise RuntimeError("ctor failed")

    cache: Any = slab.kmem_cache_create("ctor", 1024, ctor=ctor)
    free = slab.buddy.nr_free_pages
    for cpu in (0, 1, 0):
        with pytest.raises(RuntimeError, match="ctor failed"):
            cache.alloc(cpu)
        assert cache.pages_held() == 0 and slab.buddy.nr_free_pages == free
    state["fail"] = False
    cache.alloc(1)
    cache.alloc(0)
    assert cache.stats().objects == 2
    slab.check()


class _HalfReserveBuddy(BuddyAllocator):
    """A page source whose upper half of pages came from its memory reserves."""

    def page_is_pfmemalloc(self, pfn: int) -> bool:
        return pfn >= self.nr_pages // 2


@pytest.mark.parametrize("policy", POLICIES)
def test_a_slab_is_pfmemalloc_when_its_own_pages_are(policy: str) -> None:
    """slab_set_pfmemalloc asks about the slab's own first page."""
    buddy = _HalfReserveBuddy(4 * MiB)
    slab = SlabAllocator(buddy, nr_cpus=1, policy=policy)
    cache: Any = slab.kmem_cache_create("half", 2048)
    while cache.pages_held() < buddy.nr_pages * 3 // 4:
        cache.alloc()
    slabs = cache._slabs()
    assert {s.pfmemalloc for s in slabs} == {False, True}
    assert all(s.pfmemalloc == (s.pfn >= buddy.nr_pages // 2) for s in slabs)


@pytest.mark.parametrize("policy", POLICIES)
def test_stats_give_the_kmalloc_bytes(policy: str) -> None:
    slab = _slab(policy)
    for size in (50, 60, 64):
        slab.kmalloc(size)
    stats = slab.stats()["kmalloc-64"]
    assert (stats.bytes_requested, stats.bytes_allocated) == (174, 3 * 64)


@pytest.mark.parametrize("policy", POLICIES)
def test_another_thread_freeing_during_a_constructor_frees_on_cpu_0_by_default(
        policy: str) -> None:
    """A free(address) that waits for a constructor runs as it would have: on cpu 0."""
    def run(during: bool) -> tuple[object, ...]:
        slab = _slab(policy)
        state: dict[str, Any] = {}

        def other() -> None:
            state["cache"].free(state["victim"])

        def ctor(view: memoryview) -> None:
            if during and "victim" in state and "thread" not in state:
                state["thread"] = threading.Thread(target=other)
                state["thread"].start()
                time.sleep(0.2)

        cache: Any = slab.kmem_cache_create("ctor", 1024, ctor=ctor)
        state["cache"] = cache
        objects = [cache.alloc(1) for _ in range(cache.objs_per_slab)]
        state["victim"] = objects[3]
        cache.alloc(0)  # a new slab for cpu 0; the free waits for its constructor
        if during:
            state["thread"].join(30)
        else:
            cache.free(objects[3])
        stats = cache.stats()
        return (stats.free_fastpath, stats.free_slowpath, cache.slab_usage(),
                [cache.alloc(cpu) for cpu in (0, 1, 0, 1)])

    assert run(True) == run(False)


@pytest.mark.parametrize("policy", POLICIES)
def test_check_finds_a_page_mapped_to_another_slab_and_a_bad_free_index(policy: str) -> None:
    """check(): every page of a slab maps to that slab, and every index on a freelist is an
    object of the slab (one past the last is not)."""
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("mapped", 1024)
    assert cache.order > 0
    objects = [cache.alloc() for _ in range(cache.objs_per_slab + 1)]
    (first, _), (second, _) = cache.slab_extents()
    pages = cache._slab_of_pfn
    right = pages[first + 1]
    pages[first + 1] = pages[second]
    with pytest.raises(AssertionError, match=rf"^mapped: slab at pfn {first:#x}: page"
                                             rf" {first + 1:#x} does not map to the slab$"):
        cache.check()
    pages[first + 1] = right
    cache.check()
    cache.free(objects[0])
    victim = pages[first]
    saved = victim.freelist[-1]
    victim.freelist[-1] = victim.objects
    with pytest.raises(AssertionError, match=rf": free object {victim.objects} is marked used$"):
        cache.check()
    victim.freelist[-1] = saved
    cache.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_check_refuses_an_rcu_pending_slab_with_objects(policy: str) -> None:
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("rcu", 1024, flags=SLAB_TYPESAFE_BY_RCU)
    cache.free(cache.alloc())
    cache.shrink()
    (pending,) = cache._rcu_pending
    cache.check()
    pending.freelist.pop()
    with pytest.raises(AssertionError, match=r"^rcu: RCU-pending slab at pfn 0x[0-9a-f]+ is not"
                                             " an empty slab of an RCU cache$"):
        cache.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_check_finds_objects_overflowing_their_slab(policy: str) -> None:
    """check(): a slab's objects end within its pages (base + objects × size)."""
    slab = _slab(policy)
    cache: Any = slab.kmem_cache_create("overflow", 1024)
    cache.alloc()
    (victim,) = cache._slabs()
    slack = (4096 << victim.order) - (victim.base - victim.start) - victim.objects * cache.size
    assert slack < cache.size
    victim.base += cache.size
    with pytest.raises(AssertionError, match=r"^overflow: slab at pfn 0x[0-9a-f]+: objects"
                                             " overflow the slab$"):
        cache.check()
    victim.base -= cache.size
    cache.check()


@pytest.mark.skipif(compiled_module() is None, reason="kmem._core is not built")
@pytest.mark.parametrize("policy", POLICIES)
def test_kfree_on_the_compiled_core_is_guarded_during_a_constructor_only(policy: str) -> None:
    """The compiled core's kfree calls the owner cache's free from the allocator's table: a
    constructor's kfree of an object of its own cache gets a ConstructorReentryError, and
    once the slab is built kfree frees that cache's objects again."""
    with on_core(compiled_module()):
        slab = _slab(policy)
    state: dict[str, Any] = {}

    def ctor(view: memoryview) -> None:
        if "victim" in state:
            slab.kfree(state["victim"])

    cache: Any = slab.kmem_cache_create("ctor", 1024, ctor=ctor)
    objects = [cache.alloc() for _ in range(cache.objs_per_slab)]
    state["victim"] = objects[0]
    with pytest.raises(ConstructorReentryError):
        cache.alloc()  # a new slab: its constructor kfrees
    del state["victim"]
    assert cache.stats().objects == cache.objs_per_slab
    for address in objects:
        slab.kfree(address)
    assert cache.stats().objects == 0
    slab.check()
