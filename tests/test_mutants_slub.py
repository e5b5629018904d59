"""Tests written against the surviving mutants of kmem.slab.slub (make mutants MODULES=slab/slub).

Each asserts behaviour from Linux's rules (mm/slub.c) or kmem's documented API, with figures
worked by hand or taken from the independent model (tests/linux_slub_model.py), never from
kmem's own formulas: the unlocked (thread_safe=False) paths' errors, SLAB_STORE_USER tracks,
... Run on both cores (KMEM_PURE=1 for the pure one).
"""

from __future__ import annotations

import enum
import random
import re
from typing import Any

import pytest

from core_twins import compiled_module, on_core
from kmem import BuddyAllocator, SlabAllocator
from kmem.errors import InvalidTypeError
from kmem.page.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_FS,
    __GFP_IO,
    __GFP_KSWAPD_RECLAIM,
    __GFP_MEMALLOC,
    GFP_ATOMIC,
    GFP_KERNEL,
)
from kmem.page.layout import MachineLayout
from kmem.page.machine import PageMachine
from kmem.slab.debug import PoisonError, RedZoneError
from kmem.slab.errors import (
    InteriorPointerError,
    InvalidCpuError,
    InvalidGfpError,
    NotAnObjectError,
    ObjectDoubleFreeError,
    WrongCacheError,
)
from kmem.slab.flags import SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER
from kmem.slab.machine_pages import MachinePages
from test_cov_slab import (
    _cpu_partial_disabled,
    _fill,
    _first_node_partial,
    _full_on_cpu_partial,
    _lost,
    _not_in_the_cache,
    _on_two_lists,
    _overflowing_cpu_partial,
    _slub_with_partial_slabs,
    _top_of_cpu_partial,
)
from test_slub_model import Pair, kmem_state, random_workload

MiB = 1 << 20
PAGE = 4096


class Cpu(enum.IntEnum):
    BOOT = 0
    SECOND = 1


def _counters(cache: Any) -> dict[str, int]:
    stats = cache.stats()
    return {name: getattr(stats, name) for name in (
        "alloc_fastpath", "alloc_slowpath", "free_fastpath", "free_slowpath", "free_frozen",
        "objects")}


# -- the unlocked paths (thread_safe=False): the same errors as the locked ones ----------------


@pytest.mark.parametrize("thread_safe", [True, False])
def test_a_free_without_a_cpu_is_a_free_on_cpu_0(thread_safe: bool) -> None:
    """free(address) frees on CPU 0 (and alloc() allocates there): an object of CPU 0's cpu
    slab takes the fast path (a push on that freelist), one of CPU 1's cpu slab the slow path
    into a frozen slab."""
    slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2, thread_safe=thread_safe)
    cache: Any = slab.kmem_cache_create("dflt", 64)
    on_0, on_1 = cache.alloc(0), cache.alloc(1)
    cache.free(on_0)
    assert (cache.stats().free_fastpath, cache.stats().free_frozen) == (1, 0)
    cache.free(on_1)
    assert (cache.stats().free_fastpath, cache.stats().free_frozen) == (1, 1)
    assert cache.alloc() == on_0  # on CPU 0 too: back on its freelist, handed out first


@pytest.mark.parametrize("thread_safe", [True, False])
@pytest.mark.parametrize("flags", [0, SLAB_STORE_USER])
def test_refused_frees_name_what_is_wrong_and_change_nothing(thread_safe: bool,
                                                             flags: int) -> None:
    buddy = BuddyAllocator(16 * MiB)
    buddy.alloc_pages(0)  # (the cache's slabs start past pfn 0: base 0 hides offset slips)
    slab = SlabAllocator(buddy, nr_cpus=2, thread_safe=thread_safe)
    cache: Any = slab.kmem_cache_create("errs", 64, flags=flags)
    other: Any = slab.kmem_cache_create("other", 200)  # (64: merged with it)
    address = cache.alloc(0)
    freed = cache.alloc(0)
    cache.free(freed, 0)
    foreign = other.alloc(0)
    before = _counters(cache)
    refusals: list[tuple[Any, Any, type[Exception], str]] = [
        (address, True, InvalidTypeError, "^cpu must be an int, not bool$"),
        (address, 1.0, InvalidTypeError, "^cpu must be an int, not float$"),
        (address, None, InvalidTypeError, "^cpu must be an int, not NoneType$"),
        (address, 2, InvalidCpuError, r"^cpu 2 is not in 0\.\.1$"),
        (address, -1, InvalidCpuError, r"^cpu -1 is not in 0\.\.1$"),
        (address + 8, 0, InteriorPointerError, f"^address {address + 8:#x} is not the start"),
        (address + 8, 1, InteriorPointerError, f"^address {address + 8:#x} is not the start"),
        (freed, 0, ObjectDoubleFreeError, f"^object {freed:#x} of 'errs' is already free$"),
        (foreign, 0, WrongCacheError, f"^object {foreign:#x} belongs to another cache"),
        (foreign, 1, WrongCacheError, f"^object {foreign:#x} belongs to another cache"),
        (1 << 40, 0, NotAnObjectError, f"^address {1 << 40:#x} is not in a slab of 'errs'$"),
        (float(address), 0, InvalidTypeError, "^address must be an int, not float$"),
        (False, 0, InvalidTypeError, "^address must be an int, not bool$"),
    ]
    for bad_address, cpu, error, message in refusals:
        with pytest.raises(error, match=message):
            cache.free(bad_address, cpu)
    assert _counters(cache) == before
    for cpu, error, message in [
            (True, InvalidTypeError, r"^cpu must be an int, not bool$"),
            (1.0, InvalidTypeError, r"^cpu must be an int, not float$"),
            (2, InvalidCpuError, r"^cpu 2 is not in 0\.\.1$"),
            (-1, InvalidCpuError, r"^cpu -1 is not in 0\.\.1$")]:
        with pytest.raises(error, match=message):
            cache.alloc(cpu)
    assert _counters(cache) == before
    # an int-subclass CPU frees on the CPU of its value (the fast path of CPU 0)
    cache.free(address, Cpu.BOOT)
    if flags:  # (a debug cache has no fast path)
        assert cache.stats().free_slowpath == before["free_slowpath"] + 1
    else:
        assert cache.stats().free_fastpath == before["free_fastpath"] + 1
    slab.check()


# -- SLAB_STORE_USER tracks ---------------------------------------------------------------------


def _tracked(flags: int, skip_pages: int) -> tuple[SlabAllocator, Any]:
    buddy = BuddyAllocator(16 * MiB)
    for _ in range(skip_pages):
        buddy.alloc_pages(0)
    slab = SlabAllocator(buddy, nr_cpus=2)
    return slab, slab.kmem_cache_create("tracked", 200, flags=flags)


@pytest.mark.parametrize("skip_pages", [0, 3])
def test_track_gives_each_objects_last_alloc_and_free(skip_pages: int) -> None:
    """The records of the first object of a slab (at pfn 0: address 0 itself) and of later
    ones: the CPU of the last allocation and of the last free, in the order they happened."""
    slab, cache = _tracked(SLAB_STORE_USER, skip_pages)
    first, second, third = cache.alloc(1), cache.alloc(0), cache.alloc(1)
    assert first == skip_pages * PAGE  # the slab's first object, at its page's start
    for address, cpu in ((first, 1), (second, 0), (third, 1)):
        allocated, freed = cache.track(address)
        assert freed is None and allocated.cpu == cpu
    cache.free(second, 1)
    allocated, freed = cache.track(second)
    assert (allocated.cpu, freed.cpu) == (0, 1)
    assert allocated.sequence < freed.sequence
    third_alloc, _ = cache.track(third)
    assert allocated.sequence < third_alloc.sequence < freed.sequence
    again = cache.alloc(0)
    assert again == second
    allocated_again, freed_again = cache.track(second)
    assert allocated_again.cpu == 0 and allocated_again.sequence > freed.sequence
    assert freed_again == freed  # the free record stays until the next free
    slab.check()


@pytest.mark.parametrize("flags", [SLAB_STORE_USER, SLAB_STORE_USER | SLAB_RED_ZONE])
def test_track_refuses_what_is_no_object_start(flags: int) -> None:
    slab, cache = _tracked(flags, 2)
    address = cache.alloc(0)
    (pfn, order), = cache.slab_extents()
    start, end = pfn * PAGE, (pfn + (1 << order)) * PAGE
    size, objects = cache.size, cache.objs_per_slab
    base = start + cache.red_left_pad
    assert address == base
    past_last = base + objects * size  # the slab's leftover bytes, after its last object
    assert past_last + size <= end or past_last < end
    bad = [(address + 8, InteriorPointerError), (address + size + 8, InteriorPointerError),
           (past_last, InteriorPointerError), (1 << 40, NotAnObjectError),
           (-size, NotAnObjectError), (float(address), InvalidTypeError)]
    if cache.red_left_pad:
        bad.append((start, InteriorPointerError))  # in the slab, before its first object
    for bad_address, error in bad:
        with pytest.raises(error) as caught:
            cache.track(bad_address)
        if error is not InvalidTypeError:
            assert f"{bad_address:#x}" in str(caught.value)
    assert cache.track(address + size) == (None, None)  # an object never allocated
    slab.check()


# -- the compiled core's wiring (SlubCache.__init__ hands it the cpu slabs and slow frees) ----




@pytest.mark.skipif(compiled_module() is None, reason="kmem._core is not built")
@pytest.mark.parametrize(("size", "nr_cpus", "nr_pages", "thread_safe"), [
    (256, 3, 256, True), (96, 2, 64, False), (2000, 2, 128, True)])
def test_a_cache_on_the_compiled_core_follows_linux_step_by_step(
        size: int, nr_cpus: int, nr_pages: int, thread_safe: bool) -> None:
    """tests/test_slub_model.py's comparison with the cache's fast paths in C: every object,
    list, freelist order and counter as the model's after every operation."""
    module = compiled_module()
    with on_core(module):
        pair = Pair.boot(size=size, flags=0, nr_cpus=nr_cpus, nr_pages=nr_pages,
                         thread_safe=thread_safe)
    assert pair.slab.buddy.compiled_core is module
    assert type(pair.cache.alloc).__name__ == "builtin_function_or_method"
    random_workload(pair, random.Random(size + nr_cpus), 3000, 500, [0, 50, 400, 2000])
    pair.cache.check()
    stats = pair.cache.stats()
    assert stats.alloc_fastpath and stats.free_fastpath and stats.free_frozen
    assert stats.cpu_partial_free and stats.alloc_refill


# -- pfmemalloc_match in get_partial_node's list walk ------------------------------------------


class ReserveBuddy(BuddyAllocator):
    """A page source whose pages come from its memory reserves while ``reserves`` is set."""

    reserves = False

    def page_is_pfmemalloc(self, pfn: int) -> bool:
        return self.reserves


RIGHTS = GFP_KERNEL | __GFP_MEMALLOC  # may use the reserves (gfp_pfmemalloc_allowed)


def _node_of_seven(reserved: set[int]) -> tuple[SlabAllocator, Any, list[int]]:
    """A 512-byte cache (order 1: 16 objects a slab; cpu_partial 52, so cpu_partial_slabs
    DIV_ROUND_UP(104, 16) = 7) whose node list holds slabs s6, s5, ..., s0, each with one free
    object; slab k is pfmemalloc when k is in ``reserved``. Returns the slabs' pfns, s0 first.

    Built as Linux would: slabs s0..s7 filled on CPU 0 (with the rights, so a pfmemalloc one is
    kept as the cpu slab), then one object of s0..s6 freed on CPU 1 (full slabs: pushed on
    CPU 1's partial chain, which holds 7 without a drain), then CPU 1 flushed (its chain, head
    first, to the node list's tail: s6 first)."""
    buddy = ReserveBuddy(64 * MiB)
    slab = SlabAllocator(buddy, nr_cpus=2, kernel="6.17")
    cache: Any = slab.kmem_cache_create("walk", 512)
    assert (cache.order, cache.objs_per_slab, cache.cpu_partial_slabs) == (1, 16, 7)
    pfns, thirds = [], []
    for k in range(8):
        buddy.reserves = k in reserved
        objects = [cache.alloc(0, RIGHTS) for _ in range(16)]
        pfns.append(objects[0] // PAGE)
        thirds.append(objects[3])
    buddy.reserves = False
    assert kmem_state(cache)["cpu_slab"] == [pfns[7], None]
    for k in range(7):
        cache.free(thirds[k], 1)
    cache.flush_cpu(1)
    assert kmem_state(cache)["node_partial"] == pfns[6::-1]
    return slab, cache, pfns


@pytest.mark.parametrize("gfp", [GFP_KERNEL, RIGHTS])
def test_the_node_walk_without_rights_passes_over_pfmemalloc_slabs(gfp: int) -> None:
    """get_partial_node: without the rights to the reserves, pfmemalloc slabs are skipped
    (pfmemalloc_match); the first other slab is taken, the next ones go to the cpu partial
    chain until more than cpu_partial_slabs / 2 = 3 were moved. With the rights nothing is
    skipped."""
    slab, cache, pfns = _node_of_seven(reserved={3})
    before = cache.stats()
    address = cache.alloc(1, gfp)
    assert address == pfns[6] * PAGE + 3 * 512  # s6's one free object
    state: Any = kmem_state(cache)
    assert state["cpu_slab"] == [pfns[7], pfns[6]]
    if gfp == GFP_KERNEL:  # s3 passed over, and the walk stops before s0
        assert state["cpu_partial"][1] == [pfns[1], pfns[2], pfns[4], pfns[5]]  # head first
        assert state["node_partial"] == [pfns[3], pfns[0]]
    else:
        assert state["cpu_partial"][1] == [pfns[2], pfns[3], pfns[4], pfns[5]]
        assert state["node_partial"] == [pfns[1], pfns[0]]
    after = cache.stats()
    assert after.alloc_from_partial - before.alloc_from_partial == 1
    assert after.cpu_partial_node - before.cpu_partial_node == 4
    assert after.alloc_slab == before.alloc_slab
    cache.flush_cpu(1)  # the chain back to the node list: a second walk counts a second slab
    cache.alloc(1, gfp)
    assert cache.stats().alloc_from_partial - before.alloc_from_partial == 2
    slab.check()


def test_the_node_walk_without_rights_and_only_pfmemalloc_slabs_takes_a_new_slab() -> None:
    slab, cache, pfns = _node_of_seven(reserved=set(range(7)))
    before = cache.stats()
    address = cache.alloc(1, GFP_KERNEL)
    state: Any = kmem_state(cache)
    assert state["node_partial"] == pfns[6::-1]  # nothing taken off it
    assert state["cpu_partial"][1] == []
    assert state["cpu_slab"][1] == address // PAGE  # a new slab, loaded
    assert address // PAGE not in pfns
    after = cache.stats()
    assert (after.alloc_slab - before.alloc_slab, after.alloc_from_partial,
            after.cpu_partial_node) == (1, before.alloc_from_partial, before.cpu_partial_node)
    slab.check()


# -- check(): the whole message of each SLUB list corruption -----------------------------------


def _exact(text: str) -> str:
    return "^" + re.escape(text) + "$"


@pytest.mark.parametrize("corruption", [
    "two lists", "not in the cache", "full on cpu partial", "full on node partial",
    "wrong cpu", "overflow", "lost", "on no list", "cpu partial disabled"])
def test_check_names_the_corrupted_slab_in_full(corruption: str) -> None:
    """test_cov_slab.py's corruptions of a cache with four slabs on CPU 0's partial stack, each
    refused with its whole message: the cache, the slab's pfn, what is wrong."""
    _allocator, cache = _slub_with_partial_slabs()
    top = _top_of_cpu_partial(cache)
    name = f"cov: slab at pfn {top.pfn:#x}"
    if corruption == "two lists":
        _on_two_lists(cache)
        message = f"{name} is on two lists"
    elif corruption == "not in the cache":
        _not_in_the_cache(cache)
        message = f"{name}: on a list but not in the cache"
    elif corruption == "full on cpu partial":
        _full_on_cpu_partial(cache)
        message = f"{name}: full slab on a cpu partial list"
    elif corruption == "wrong cpu":
        top.cpu = 3
        message = f"{name}: where=2 cpu=3, on 2"  # (ON_CPU_PARTIAL is 2)
    elif corruption == "overflow":
        _overflowing_cpu_partial(cache)
        message = "cov: cpu 0 partial stack overflows"
    elif corruption == "cpu partial disabled":
        _cpu_partial_disabled(cache)
        message = "cov: cpu partial slabs without cpu_partial"
    else:
        first = _first_node_partial(cache)
        if corruption == "full on node partial":
            _fill(first)
            message = f"cov: slab at pfn {first.pfn:#x}: full slab on the node partial list"
        elif corruption == "lost":
            _lost(cache)
            message = f"cov: slab {first.pfn:#x} lost from its list"
        else:
            del cache._node_partial[first]
            first.where, first.cpu = 0, -1  # (ON_NONE)
            message = f"cov: slab {first.pfn:#x} with free objects is on no list"
    with pytest.raises(AssertionError, match=_exact(message)):
        cache.check()


def test_check_names_a_debug_full_slab_with_free_objects_in_full() -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=1)
    cache: Any = slab.kmem_cache_create("dbg", 256, flags=SLAB_STORE_USER)
    for _ in range(100):
        cache.alloc(0)
    full = next(iter(cache._full))
    full.used[0] = 0
    full.freelist.append(0)
    with pytest.raises(AssertionError, match=_exact(
            f"dbg: slab at pfn {full.pfn:#x}: slab with free objects on the full list")):
        cache.check()


# -- debug caches (alloc_single_from_partial / free_to_partial_list) ---------------------------


@pytest.mark.parametrize("thread_safe", [True, False])
def test_a_debug_cache_allocates_and_frees_on_cpu_0_by_default(thread_safe: bool) -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2, thread_safe=thread_safe)
    cache: Any = slab.kmem_cache_create("dbg", 200, flags=SLAB_STORE_USER)
    address = cache.alloc()
    cache.free(address)
    allocated, freed = cache.track(address)
    assert (allocated.cpu, freed.cpu) == (0, 0)
    other = cache.alloc(1)
    cache.free(other, 1)
    allocated, freed = cache.track(other)
    assert (allocated.cpu, freed.cpu) == (1, 1)
    slab.check()


@pytest.mark.parametrize("thread_safe", [True, False])
def test_a_red_zone_overwrite_is_reported_with_the_caches_name(thread_safe: bool) -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=1, thread_safe=thread_safe)
    cache: Any = slab.kmem_cache_create("rz", 100, flags=SLAB_RED_ZONE)
    address = cache.alloc(0)
    slab.buddy.memory.view(address + 100, 1)[0] = 0  # one byte past the object
    with pytest.raises(RedZoneError, match=_exact(
            f"rz: object {address:#x}: right red zone overwritten at object offset 100"
            " (restored; the object was not freed)")):
        cache.free(address, 0)
    cache.free(address, 0)
    slab.check()


@pytest.mark.parametrize("thread_safe", [True, False])
@pytest.mark.parametrize("flags", [0, SLAB_STORE_USER])
def test_an_allocation_with_no_gfp_t_is_refused_before_anything_changes(
        thread_safe: bool, flags: int) -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=1, thread_safe=thread_safe)
    cache: Any = slab.kmem_cache_create("gfp", 200, flags=flags)
    for gfp, error, message in [
            (True, InvalidTypeError, "gfp flags must be an int, not bool"),
            (4.0, InvalidTypeError, "gfp flags must be an int, not float"),
            (1 << 32, InvalidGfpError, "gfp flags must be in 0..0xffffffff, not 0x100000000"),
            (-1, InvalidGfpError, "gfp flags must be in 0..0xffffffff, not -0x1")]:
        with pytest.raises(error, match=_exact(message)):
            cache.alloc(0, gfp)
    assert cache.slab_extents() == [] and cache.stats().alloc_slowpath == 0
    cache.free(cache.alloc(0, GFP_KERNEL), 0)
    slab.check()


# -- a new slab's pages: asked for with the allocation's gfp, on its CPU (allocate_slab) --------


@pytest.mark.parametrize("flags", [0, SLAB_STORE_USER])
def test_a_new_slab_is_asked_for_with_the_allocations_gfp_on_its_cpu(flags: int) -> None:
    """allocate_slab runs in the allocating code: alloc_slab_page gets the allocation's gfp
    (its reclaim bits kept: GFP_RECLAIM_MASK) on the allocating CPU's pcp lists."""
    layout = MachineLayout.from_sizes({"Normal": 256 << 20}, source="Normal=256M")
    slab = SlabAllocator(BuddyAllocator(1024 * PAGE), nr_cpus=2, kernel="6.17",
                         machine=PageMachine(layout, nr_cpus=2, pcp_high=1 << 14))
    pages = slab.pages
    assert isinstance(pages, MachinePages)
    asked: list[tuple[int, int]] = []
    alloc_pages = pages.alloc_pages

    def recording_alloc(order: int, gfp: int, cpu: int = 0) -> int:
        asked.append((gfp, cpu))
        return alloc_pages(order, gfp, cpu)

    pages.alloc_pages = recording_alloc  # type: ignore[method-assign]
    cache: Any = slab.kmem_cache_create("asked", 200, flags=flags)
    cache.alloc(1, GFP_KERNEL)
    for _ in range(cache.objs_per_slab):  # the slab full: the next allocation needs another
        cache.alloc(1, GFP_ATOMIC)
    assert len(asked) == 2
    (kernel_gfp, kernel_cpu), (atomic_gfp, atomic_cpu) = asked
    assert (kernel_cpu, atomic_cpu) == (1, 1)
    assert kernel_gfp & __GFP_DIRECT_RECLAIM and kernel_gfp & __GFP_IO and kernel_gfp & __GFP_FS
    assert not atomic_gfp & (__GFP_DIRECT_RECLAIM | __GFP_IO | __GFP_FS)
    assert atomic_gfp & __GFP_KSWAPD_RECLAIM
    slab.check()


def test_a_poisoned_object_written_after_free_is_reported_with_the_caches_name() -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=1)
    cache: Any = slab.kmem_cache_create("psn", 200, flags=SLAB_POISON)
    address = cache.alloc(0)
    cache.free(address, 0)
    slab.buddy.memory.view(address, 1)[0] = 0  # a use after free
    with pytest.raises(PoisonError, match=_exact(
            f"psn: free object {address:#x} written to after free at offset 0"
            " (poison restored)")):
        cache.alloc(0)
    assert cache.alloc(0) == address  # the object was not handed out: it comes now
    slab.check()


def test_a_debug_allocation_without_rights_takes_the_first_slab_it_may_use() -> None:
    """get_partial_node on the debug path: the node list walk passes over a pfmemalloc head
    and takes one object of the next slab (alloc_single_from_partial); a new slab only when
    none matches."""
    buddy = ReserveBuddy(64 * MiB)
    slab = SlabAllocator(buddy, nr_cpus=1, kernel="6.17")
    cache: Any = slab.kmem_cache_create("dbgwalk", 200, flags=SLAB_STORE_USER)
    plain = [cache.alloc(0, GFP_KERNEL) for _ in range(cache.objs_per_slab)]  # full: off it
    buddy.reserves = True
    reserved = cache.alloc(0, RIGHTS)  # a new pfmemalloc slab, at the node list's head
    buddy.reserves = False
    cache.free(plain[5], 0)  # the full slab back, at the node list's tail
    state: Any = kmem_state(cache)
    assert state["node_partial"] == [reserved // PAGE, plain[0] // PAGE]
    before = cache.stats().alloc_slab
    assert cache.alloc(0, GFP_KERNEL) == plain[5]
    assert cache.stats().alloc_slab == before
    slab.check()


def test_a_mismatched_new_slab_leaves_the_cpu_without_a_cpu_slab() -> None:
    """___slab_alloc without the rights: the pfmemalloc cpu slab (full) is deactivated
    (DEACTIVATE_FULL); the new slab, pfmemalloc too, gives its one object and is deactivated
    to the node list's head instead of loaded: c->slab stays NULL."""
    buddy = ReserveBuddy(64 * MiB)
    buddy.reserves = True
    slab = SlabAllocator(buddy, nr_cpus=2, kernel="6.17")
    cache: Any = slab.kmem_cache_create("mismatch", 512)
    assert cache.objs_per_slab == 16
    first = [cache.alloc(0, RIGHTS) for _ in range(16)]  # one slab, loaded, now full
    address = cache.alloc(0, GFP_KERNEL)
    state: Any = kmem_state(cache)
    assert state["cpu_slab"] == [None, None]
    assert state["node_partial"] == [address // PAGE] and address // PAGE != first[0] // PAGE
    stats = cache.stats()
    assert (stats.alloc_slab, stats.deactivate_full, stats.deactivate_to_head) == (2, 1, 1)
    assert cache.alloc(0, RIGHTS) == address + 512  # with the rights: that slab, loaded
    slab.check()


@pytest.mark.parametrize("where", ["cpu slab", "cpu partial"])
def test_an_empty_mismatched_slab_is_discarded_on_its_cpu(where: str) -> None:
    """A pfmemalloc slab of CPU 1 all of whose objects were freed meets an allocation on CPU 1
    without the rights: as the cpu slab (its objects remote frees) deactivate_slab, on the cpu
    partial chain __put_partials, finds it empty with min_partial (5) slabs on the node list
    and discards it (DEACTIVATE_EMPTY) in the allocating code: its pages go to CPU 1's pcp
    list."""
    layout = MachineLayout.from_sizes({"Normal": 256 << 20}, source="Normal=256M")
    slab = SlabAllocator(BuddyAllocator(1024 * PAGE), nr_cpus=2, kernel="6.17",
                         machine=PageMachine(layout, nr_cpus=2, pcp_high=1 << 14))
    pages = slab.pages
    assert isinstance(pages, MachinePages)
    reserves = [True]
    pages.page_is_pfmemalloc = lambda pfn: reserves[0]  # type: ignore[method-assign]
    freed: list[tuple[int, int, int]] = []
    free_pages = pages.free_pages

    def recording_free(pfn: int, order: int, cpu: int = 0) -> None:
        freed.append((pfn, order, cpu))
        free_pages(pfn, order, cpu)

    pages.free_pages = recording_free  # type: ignore[method-assign]
    cache: Any = slab.kmem_cache_create("empty", 512)
    assert (cache.objs_per_slab, cache.min_partial) == (16, 5)
    owner = 1 if where == "cpu slab" else 0
    reserved = [cache.alloc(owner, RIGHTS) for _ in range(16)]  # pfmemalloc, full
    reserves[0] = False
    others = [cache.alloc(0, GFP_KERNEL) for _ in range(6 * 16)]
    for k in range(5):
        cache.free(others[k * 16], 0)  # five full slabs to CPU 0's partial chain...
    cache.flush_cpu(0)  # ...then to the node list (and CPU 0's full cpu slab off any list)
    state: Any = kmem_state(cache)
    assert len(state["node_partial"]) == 5
    for address in reserved:  # on CPU 0: remote frees into CPU 1's frozen slab; on CPU 1:
        cache.free(address, 1 - owner)  # the full slab onto CPU 1's partial chain, emptied
    state = kmem_state(cache)
    if where == "cpu slab":
        assert state["cpu_slab"][1] == reserved[0] // PAGE
    else:
        assert state["cpu_partial"][1] == [reserved[0] // PAGE]
    cache.alloc(1, GFP_KERNEL)
    assert freed == [(reserved[0] // PAGE, cache.order, 1)]
    assert cache.stats().deactivate_empty == 1
    slab.check()


@pytest.mark.parametrize("gfp", [GFP_KERNEL, RIGHTS])
def test_a_pfmemalloc_cpu_partial_slab_serves_only_an_allocation_with_rights(gfp: int) -> None:
    """___slab_alloc's cpu partial loop: a slab that fails pfmemalloc_match goes to the node
    list (__put_partials of that one slab) and the loop goes on to the next slab of the
    chain; with the rights it is loaded (CPU_PARTIAL_ALLOC)."""
    buddy = ReserveBuddy(64 * MiB)
    slab = SlabAllocator(buddy, nr_cpus=2, kernel="6.17")
    cache: Any = slab.kmem_cache_create("cpupartial", 512)
    assert cache.objs_per_slab == 16
    buddy.reserves = True
    reserved = [cache.alloc(0, RIGHTS) for _ in range(16)]
    buddy.reserves = False
    plain = [cache.alloc(0, GFP_KERNEL) for _ in range(17)]  # two slabs: the first full
    cache.free(plain[9], 1)  # full slabs onto CPU 1's partial chain: this one...
    cache.free(reserved[7], 1)  # ...then the pfmemalloc one, at the head
    pfmemalloc, other = reserved[0] // PAGE, plain[0] // PAGE
    state: Any = kmem_state(cache)
    assert state["cpu_partial"] == [[], [pfmemalloc, other]]
    before = cache.stats()
    address = cache.alloc(1, gfp)
    state = kmem_state(cache)
    after = cache.stats()
    assert after.alloc_slab == before.alloc_slab
    assert after.cpu_partial_alloc - before.cpu_partial_alloc == 1
    if gfp == GFP_KERNEL:  # passed over, to the node list; the next slab loaded
        assert address == plain[9]
        assert state["node_partial"] == [pfmemalloc] and state["cpu_partial"] == [[], []]
        assert state["cpu_slab"][1] == other
        assert after.free_add_partial - before.free_add_partial == 1
    else:
        assert address == reserved[7]
        assert state["node_partial"] == [] and state["cpu_partial"] == [[], [other]]
        assert state["cpu_slab"][1] == pfmemalloc
        assert after.free_add_partial == before.free_add_partial
    slab.check()


def test_change_count_moves_forward_when_shrink_discards_uncounted() -> None:
    """__kmem_cache_do_shrink frees empty slabs without a FREE_SLAB count; change_count(),
    which never goes back and moves whenever slab_usage() changes, must still move."""
    slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=1)
    cache: Any = slab.kmem_cache_create("shrunk", 512)
    counts = [cache.change_count()]
    for nr_slabs in (2, 1):
        objects = [cache.alloc(0) for _ in range(nr_slabs * cache.objs_per_slab)]
        for address in objects:
            cache.free(address, 0)
        cache.flush_cpu(0)  # the empty slabs to the node list (fewer than min_partial: kept)
        state: Any = kmem_state(cache)
        assert len(state["node_partial"]) == nr_slabs
        usage = cache.slab_usage()
        counts.append(cache.change_count())
        assert cache.shrink() == nr_slabs
        assert cache.slab_extents() == [] and cache.slab_usage() != usage
        counts.append(cache.change_count())
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_flush_cpu_refuses_what_is_no_cpu_and_takes_an_int_enum() -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2)
    cache: Any = slab.kmem_cache_create("flush", 512)
    address = cache.alloc(1)
    for cpu, error, message in [
            (2, InvalidCpuError, r"^cpu 2 is not in 0\.\.1$"),
            (-1, InvalidCpuError, r"^cpu -1 is not in 0\.\.1$"),
            (True, InvalidTypeError, r"^cpu must be an int, not bool$"),
            (1.0, InvalidTypeError, r"^cpu must be an int, not float$")]:
        with pytest.raises(error, match=message):
            cache.flush_cpu(cpu)
    state: Any = kmem_state(cache)
    assert state["cpu_slab"] == [None, address // PAGE]
    cache.flush_cpu(Cpu.SECOND)
    state = kmem_state(cache)
    assert state["cpu_slab"] == [None, None] and state["node_partial"] == [address // PAGE]
    cache.flush_cpu(0)  # nothing to flush there
    assert cache.stats().cpuslab_flush == 1
    slab.check()


def test_a_debug_slab_emptied_past_min_partial_is_discarded_on_the_freeing_cpu() -> None:
    """free_to_partial_list: a slab of one object (20000 bytes with STORE_USER: order 3) goes
    from the full list back to the node list while that holds fewer than min_partial (7)
    slabs, else it is discarded by the freeing CPU: its pages to that CPU's pcp list."""
    layout = MachineLayout.from_sizes({"Normal": 256 << 20}, source="Normal=256M")
    slab = SlabAllocator(BuddyAllocator(1024 * PAGE), nr_cpus=2, kernel="6.17",
                         machine=PageMachine(layout, nr_cpus=2, pcp_high=1 << 14))
    pages = slab.pages
    assert isinstance(pages, MachinePages)
    freed: list[tuple[int, int, int]] = []
    free_pages = pages.free_pages

    def recording_free(pfn: int, order: int, cpu: int = 0) -> None:
        freed.append((pfn, order, cpu))
        free_pages(pfn, order, cpu)

    pages.free_pages = recording_free  # type: ignore[method-assign]
    cache: Any = slab.kmem_cache_create("one", 20000, flags=SLAB_STORE_USER)
    assert (cache.objs_per_slab, cache.order, cache.min_partial) == (1, 3, 7)
    objects = [cache.alloc(0) for _ in range(8)]
    for address in objects[:7]:
        cache.free(address, 1)  # kept, empty, on the node list
    assert freed == []
    cache.free(objects[7], 1)
    assert freed == [(objects[7] // PAGE, 3, 1)]
    slab.check()
