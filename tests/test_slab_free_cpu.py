"""The CPU a discarded slab's pages are freed on, with the slab layer on a page machine.

Linux's rule (mm/slub.c 6.18, 7.0): discard_slab -> free_slab -> __free_pages runs in the code
that emptied or flushed the slab, on the CPU running it, so the pages go to that CPU's pcp
list: a free on CPU 1 that empties a slab, CPU 1's put_partials drain, CPU 1's flush (flush_all
queues each CPU's flush on that CPU), CPU 1's refill in 7.0. kmem_cache_shrink's own discards
run on its caller's CPU (kmem's shrink() is CPU 0's); an RCU-deferred free runs on the CPU that
queued it. A large kmalloc's pages are allocated and freed on the CPU of the call.

The 6.17 SLUB is driven in lockstep with the independent model (tests/linux_slub_model.py),
which records each discard_slab's (pfn, order, smp_processor_id()); after every operation the
frees kmem gave the machine must be the model's, and each block must sit on that CPU's pcp list.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from kmem import BuddyAllocator, SlabAllocator
from kmem.errors import InvalidTypeError, OutOfMemoryError
from kmem.page.layout import MachineLayout
from kmem.page.machine import PageMachine
from kmem.page.pcp import NR_PCP_LISTS
from kmem.slab.errors import InvalidCpuError
from kmem.slab.flags import SLAB_POISON, SLAB_TYPESAFE_BY_RCU
from kmem.slab.machine_pages import MachinePages
from kmem.slab.slub import SlubCache
from kmem.slab.slub_sheaves import PercpuSheavesCache
from linux_buddy_model import LinuxBuddyModel
from linux_slub_model import LinuxSlubModel

LAYOUT = MachineLayout.from_sizes({"Normal": 256 << 20}, source="Normal=256M")  # never short


def _machine(nr_cpus: int) -> PageMachine:
    # (a high no free reaches: a freed page stays on its CPU's list, no drain takes it)
    return PageMachine(LAYOUT, nr_cpus=nr_cpus, pcp_high=1 << 14)


def _pcp_cpus(machine: PageMachine, pfn: int) -> list[int]:
    """The CPUs whose pcp lists hold the machine block at ``pfn``."""
    return [cpu for cpu in range(machine.nr_cpus)
            if any(pfn in machine.pcp("Normal", cpu).list(i) for i in range(NR_PCP_LISTS))]


def _flush_cpu(cache: object, cpu: int) -> None:
    assert isinstance(cache, SlubCache | PercpuSheavesCache)
    cache.flush_cpu(cpu)


def _record_frees(slab: SlabAllocator) -> list[tuple[int, int, int]]:
    """Every block the slab layer gives back to its machine, as (buddy pfn, order, cpu); each
    checked to land on that CPU's pcp list."""
    pages = slab.pages
    assert isinstance(pages, MachinePages)
    frees: list[tuple[int, int, int]] = []
    free: Callable[[int, int, int], None] = pages.free_pages

    def recording_free(pfn: int, order: int, cpu: int = 0) -> None:
        own = pages._machine_pfn[pfn][0]
        free(pfn, order, cpu)
        frees.append((pfn, order, cpu))
        assert _pcp_cpus(pages.machine, own) == [cpu % pages.machine.nr_cpus]

    pages.free_pages = recording_free  # type: ignore[method-assign]
    return frees


# -- 6.17 SLUB against the model -----------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size,flags", [(256, 0), (700, 0), (3000, 0), (200, SLAB_POISON)])
def test_discards_free_on_the_cpu_the_model_runs_them_on(seed: int, size: int,
                                                         flags: int) -> None:
    rng = random.Random(seed)
    nr_cpus = rng.choice([2, 3, 4])
    buddy = BuddyAllocator(256 * 4096)
    slab = SlabAllocator(buddy, nr_cpus=nr_cpus, kernel="6.17", machine=_machine(nr_cpus))
    cache = slab.kmem_cache_create("model", size, flags=flags)
    assert isinstance(cache, SlubCache)
    model = LinuxSlubModel(pages=LinuxBuddyModel(buddy.nr_pages, buddy.max_order),
                           size=cache.slab_size, order=cache.order, min_order=cache.min_order,
                           nr_cpus=nr_cpus, debug=bool(flags), red_left_pad=cache.red_left_pad)
    frees = _record_frees(slab)
    live: list[int] = []
    for _ in range(120):
        op = rng.random()
        cpu = rng.randrange(nr_cpus)
        if op < 0.45:  # a run of allocations on one CPU
            for _ in range(rng.randrange(1, 80)):
                expected = model.alloc(cpu)
                if expected is None:
                    with pytest.raises(OutOfMemoryError):
                        cache.alloc(cpu)
                    break
                assert cache.alloc(cpu) == expected
                live.append(expected)
        elif op < 0.9 and live:  # a run of frees, each on a drawn CPU
            for _ in range(rng.randrange(1, 80)):
                if not live:
                    break
                address = live.pop(rng.randrange(len(live)))
                cpu = rng.randrange(nr_cpus)
                model.free(address, cpu)
                cache.free(address, cpu)
                assert frees == model.freed
        elif op < 0.97:
            model.flush_cpu(cpu)
            cache.flush_cpu(cpu)
        else:
            model.shrink()
            cache.shrink()
        assert frees == model.freed
    for address in live:  # everything back, on drawn CPUs
        cpu = rng.randrange(nr_cpus)
        model.free(address, cpu)
        cache.free(address, cpu)
    model.shrink()
    cache.shrink()
    assert frees == model.freed
    assert {cpu for _, _, cpu in frees} - {0}  # (not everything on CPU 0)
    slab.check()


# -- each kernel: a slab emptied on CPU 1 goes to CPU 1's pcp list --------------------------


@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
def test_slabs_emptied_on_cpu_1_go_to_cpu_1s_pcp_list(kernel: str) -> None:
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, kernel=kernel, machine=_machine(2))
    cache = slab.kmem_cache_create("emptied", 512)
    # (enough to fill the barn: 7.0 then flushes CPU 1's full sheaves to the slabs)
    objects = [cache.alloc(0) for _ in range(cache.objs_per_slab * 100)]
    frees = _record_frees(slab)
    for address in objects:  # every free on CPU 1 (7.0: onto CPU 1's sheaves first)
        cache.free(address, 1)
    _flush_cpu(cache, 1)  # CPU 1's sheaves and cpu slabs: their slabs discarded on CPU 1
    assert frees and {cpu for _, _, cpu in frees} == {1}
    before = len(frees)
    cache.shrink()  # what is left: kmem_cache_shrink's discards, on its caller's CPU 0
    assert {cpu for _, _, cpu in frees[before:]} <= {0}
    slab.check()


def test_a_6_18_sheaf_cache_flushed_on_cpu_1_frees_its_slabs_there() -> None:
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, kernel="6.18", machine=_machine(2))
    cache = slab.kmem_cache_create("sheafy", 256, sheaf_capacity=32)
    objects = [cache.alloc(0) for _ in range(cache.objs_per_slab * 100)]
    frees = _record_frees(slab)
    for address in objects:
        cache.free(address, 1)  # full sheaves to the barn, then flushed to the slabs, on CPU 1
    _flush_cpu(cache, 1)
    assert frees and {cpu for _, _, cpu in frees} == {1}
    slab.check()


def test_an_rcu_deferred_discard_frees_on_the_cpu_that_queued_it() -> None:
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, kernel="6.17", machine=_machine(2))
    cache = slab.kmem_cache_create("typesafe", 512, flags=SLAB_TYPESAFE_BY_RCU)
    objects = [cache.alloc(0) for _ in range(cache.objs_per_slab * 12)]
    frees = _record_frees(slab)
    for address in objects:
        cache.free(address, 1)
    _flush_cpu(cache, 1)
    assert not frees and cache.rcu_barrier()  # (the grace period gives them back)
    assert frees and {cpu for _, _, cpu in frees} == {1}
    slab.check()


# -- large kmalloc -------------------------------------------------------------------------


def test_a_large_kmalloc_takes_and_gives_its_pages_on_its_cpu() -> None:
    machine = _machine(2)
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, machine=machine)
    frees = _record_frees(slab)
    assert slab.pages is not None
    for cpu in (1, 0, 1):
        address = slab.kmalloc(3 << 12, cpu=cpu)  # order 2: a pcp order
        own = slab.pages._machine_pfn[address >> 12][0]
        slab.kfree(address, cpu)
        assert frees[-1] == (address >> 12, 2, cpu) and _pcp_cpus(machine, own) == [cpu]
        again = slab.kmalloc(3 << 12, cpu=cpu)  # that CPU's list gives the block back first
        assert slab.pages._machine_pfn[again >> 12][0] == own
        slab.kfree(again, cpu)
    slab.check()


def test_a_bad_cpu_for_kmalloc_large_is_refused_before_any_page_is_taken() -> None:
    machine = _machine(2)
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, machine=machine)
    free_before = slab.buddy.nr_free_pages
    with pytest.raises(InvalidCpuError, match=r"cpu 2 is not in 0\.\.1"):
        slab.kmalloc_large(3 << 12, cpu=2)
    with pytest.raises(InvalidCpuError, match=r"cpu -1 is not in 0\.\.1"):
        slab.kmalloc(3 << 12, cpu=-1)
    with pytest.raises(InvalidTypeError, match="cpu must be an int, not str"):
        slab.kmalloc_large(3 << 12, cpu="1")  # type: ignore[arg-type]
    address = slab.kmalloc(3 << 12, cpu=1)
    with pytest.raises(InvalidCpuError, match=r"cpu 5 is not in 0\.\.1"):
        slab.kfree(address, 5)
    assert slab.large_kmalloc_pages == 4  # (still allocated: the bad free changed nothing)
    slab.kfree(address, 1)
    assert slab.pages is not None
    assert (slab.buddy.nr_free_pages, slab.large_kmalloc_pages, slab.pages.blocks) == (
        free_before, 0, 0)
    slab.check()
