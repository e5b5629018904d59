"""The classic slab policy's (kmem.slab.classic) rules that its mutation run found untested:
a minimum-order fallback slab's colour, a failed debug check putting the empty list back as it
was, the default cpu of an unlocked free, the cache named in its errors, check()'s colour bound,
and the compiled core's wiring run in the mutation tool's pure run as well (_on_core). Values
come from mm/slab.c's rules and the independent model (tests/linux_slab_classic_model.py).
Run on both cores (KMEM_PURE=1 for the pure one)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from core_twins import compiled_module, on_core
from kmem import BuddyAllocator, SlabAllocator
from kmem.errors import InvalidTypeError
from kmem.page.gfp import GFP_ATOMIC
from kmem.page.layout import MachineLayout
from kmem.page.machine import PageMachine
from kmem.slab.debug import PoisonError, RedZoneError
from kmem.slab.errors import InvalidGfpError
from kmem.slab.flags import SLAB_POISON, SLAB_RED_ZONE
from test_slab_classic_model import Pair


@pytest.mark.parametrize("slabs", [20, 16])
def test_a_fallback_slab_past_its_own_colours_starts_at_colour_0(slabs: int) -> None:
    """cache_grow_begin's colour_next runs over the preferred order's colours (43 for 3000-byte
    objects in 8 pages); a 1-page fallback slab has only (4096 - 3000) // 64 = 17 (0..16), so
    with colour_next 17 or beyond it starts its object at 0, as the model says."""
    pair = Pair.boot(size=3000, flags=0, align=0, nr_pages=512, thread_safe=True)
    assert (pair.cache.order, pair.cache.min_order, pair.cache.colour) == (3, 0, 43)
    for _ in range(slabs * 10):  # slabs of order 3: colour_next is their count
        pair.alloc(0)
    pair.compare()
    buddy, pages = pair.slab.buddy, pair.model.pages
    taken = []
    while True:  # every page left taken, then every other one given back: no 8-page block
        pfn = buddy.alloc_pages(0) if buddy.nr_free_pages else None
        if pfn is None:
            break
        assert pages.alloc_pages(0) == pfn
        taken.append(pfn)
    for pfn in taken[::2]:
        buddy.free_pages(pfn, 0)
        pages.free_pages(pfn, 0)
    pair.compare()
    fallback = pair.alloc(0)
    assert fallback is not None
    pair.compare()
    slab = pair.cache._slab_of_pfn[fallback >> 12]
    assert (slab.order, slab.colour, pair.cache.colour_next) == (0, 0, slabs + 1)
    assert pair.cache.stats().order_fallback == 1
    pair.cache.check()


def test_a_failed_check_puts_the_empty_slab_back_at_the_head() -> None:
    """A poisoned object of the head empty slab found overwritten: the allocation fails and the
    empty list is as it was (that slab still first, to be reused first)."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, policy="slab")
    cache: Any = slab.kmem_cache_create("dbg", 1000, flags=SLAB_POISON)
    per_slab = cache.objs_per_slab
    objects = [cache.alloc() for _ in range(3 * per_slab)]
    for address in objects:  # three empty slabs, the last emptied at the head
        cache.free(address)
    empty = list(cache._empty)
    assert len(empty) == 3 and not cache._partial
    head = empty[0]
    victim = head.base + head.freelist[-1] * cache.size
    slab.buddy.memory.view(victim + 10, 1)[0] = 0x41
    with pytest.raises(PoisonError, match=f"^dbg: free object {victim:#x} written to after free"
                       " at offset 10 "):
        cache.alloc()
    assert list(cache._empty) == empty and not cache._partial
    slab.check()
    assert cache.alloc() == victim  # the head empty slab is used first, from its next object


def test_an_unlocked_free_without_cpu_frees_on_cpu_0() -> None:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, policy="slab", thread_safe=False)
    cache: Any = slab.kmem_cache_create("plain", 64)
    address = cache.alloc()
    cache.free(address)  # the unlocked free itself (a thread-unsafe cache's free)
    assert cache.stats().objects == 0
    assert cache.alloc() == address


def test_an_unlocked_alloc_checks_its_gfp_as_the_locked_one() -> None:
    """A thread-unsafe cache's alloc is the unlocked one itself: it refuses what check_gfp
    refuses (not an int, or outside gfp_t's 32 bits), also when a partial slab could serve."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, policy="slab", thread_safe=False)
    cache: Any = slab.kmem_cache_create("plain", 64)
    first = cache.alloc()  # no cpu: cpu 0, the only one
    assert cache.alloc(0, GFP_ATOMIC) == first + 64
    with pytest.raises(InvalidGfpError, match=f"not {1 << 32:#x}$"):
        cache.alloc(0, 1 << 32)
    with pytest.raises(InvalidGfpError, match=f"not {1 << 40:#x}$"):
        cache.alloc(0, 1 << 40)
    with pytest.raises(InvalidTypeError, match="gfp flags must be an int, not str"):
        cache.alloc(0, "GFP_KERNEL")
    assert cache.stats().objects == 2
    slab.check()


def test_a_classic_slab_on_a_machine_is_asked_for_on_the_allocating_cpu() -> None:
    """A new slab's pages come from the machine with the allocation's gfp on its CPU: an
    order-0 block through that CPU's pcp list (rmqueue_pcplist), the other CPU's left empty."""
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}, source="Normal=64M"),
                          nr_cpus=2)
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, policy="slab", machine=machine)
    cache: Any = slab.kmem_cache_create("onmachine", 64)
    assert cache.order == 0
    cache.alloc(1, GFP_ATOMIC)
    assert machine.pcp("Normal", 1).count > 0
    assert machine.pcp("Normal", 0).count == 0
    cache.alloc(0)
    assert machine.pcp("Normal", 0).count == 0  # the partial slab served it
    slab.check()


def test_a_red_zone_error_on_free_names_the_cache() -> None:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, policy="slab")
    cache: Any = slab.kmem_cache_create("zoned", 100, flags=SLAB_RED_ZONE)
    address = cache.alloc()
    slab.buddy.memory.view(address + 100, 1)[0] = 0
    with pytest.raises(RedZoneError, match=f"^zoned: object {address:#x}: "):
        cache.free(address)


def test_check_names_the_slab_and_bounds_its_colour_by_the_left_over_space() -> None:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, policy="slab")
    cache: Any = slab.kmem_cache_create("col", 1000)  # 8 objects in 2 pages: 192 bytes left
    assert (cache.objs_per_slab, cache.colour) == (8, 3)
    address = cache.alloc()
    slab.check()
    one = cache._slab_of_pfn[address >> 12]
    one.colour = 192  # a multiple of 64, the last byte left over: in place
    slab.check()
    one.colour = 256  # a multiple of 64 past the 192 bytes left over
    with pytest.raises(AssertionError,
                       match=f"^col: slab at pfn {one.pfn:#x}: colour offset 256 out of place$"):
        slab.check()
    one.colour = 64
    cache._partial.pop(one)
    cache._full[one] = None
    with pytest.raises(AssertionError, match=f"^col: slab at pfn {one.pfn:#x}: where="):
        slab.check()


# -- the compiled core's wiring (ClassicSlabCache.__init__ hands it the partial list) ----------




@pytest.mark.skipif(compiled_module() is None, reason="kmem._core is not built")
@pytest.mark.parametrize(("size", "nr_pages", "thread_safe"), [
    (200, 256, True), (1000, 128, False)])
def test_a_classic_cache_on_the_compiled_core_follows_linux_step_by_step(
        size: int, nr_pages: int, thread_safe: bool) -> None:
    """tests/test_slab_classic_model.py's comparison with the cache's fast paths in C."""
    module = compiled_module()
    with on_core(module):
        pair = Pair.boot(size=size, flags=0, align=0, nr_pages=nr_pages,
                         thread_safe=thread_safe)
    assert pair.slab.buddy.compiled_core is module
    assert type(pair.cache.alloc).__name__ == "builtin_function_or_method"
    rng = random.Random(size)
    live: list[int] = []
    for step in range(3000):
        target = [0, 40, 400][step // 1000]
        if rng.random() < 0.003:
            pair.shrink()
        elif live and (len(live) > target or rng.random() < 0.3):
            pair.free(live.pop(rng.randrange(len(live))), rng.randrange(2))
        else:
            address = pair.alloc(rng.randrange(2))
            if address is not None:
                live.append(address)
        pair.compare()
    pair.cache.check()
    stats = pair.cache.stats()
    assert stats.alloc_fastpath and stats.free_fastpath and stats.alloc_slab
