"""Tests written against the surviving mutants of kmem.slab.slub (make mutants MODULES=slab/slub).

Each asserts behaviour from Linux's rules (mm/slub.c) or kmem's documented API, with figures
worked by hand or taken from the independent model (tests/linux_slub_model.py), never from
kmem's own formulas: the unlocked (thread_safe=False) paths' errors, SLAB_STORE_USER tracks,
... Run on both cores (KMEM_PURE=1 for the pure one).
"""

from __future__ import annotations

import enum
from typing import Any

import pytest

from kmem import BuddyAllocator, SlabAllocator
from kmem.errors import InvalidTypeError
from kmem.slab.errors import (
    InteriorPointerError,
    InvalidCpuError,
    NotAnObjectError,
    ObjectDoubleFreeError,
    WrongCacheError,
)
from kmem.slab.flags import SLAB_RED_ZONE, SLAB_STORE_USER

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
    """free(address) frees on CPU 0: an object of CPU 0's cpu slab takes the fast path (a push
    on that freelist), one of CPU 1's cpu slab the slow path into a frozen slab."""
    slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2, thread_safe=thread_safe)
    cache: Any = slab.kmem_cache_create("dflt", 64)
    on_0, on_1 = cache.alloc(0), cache.alloc(1)
    cache.free(on_0)
    assert (cache.stats().free_fastpath, cache.stats().free_frozen) == (1, 0)
    cache.free(on_1)
    assert (cache.stats().free_fastpath, cache.stats().free_frozen) == (1, 1)
    assert cache.alloc(0) == on_0  # back on CPU 0's freelist, handed out first


@pytest.mark.parametrize("thread_safe", [True, False])
def test_refused_frees_name_what_is_wrong_and_change_nothing(thread_safe: bool) -> None:
    buddy = BuddyAllocator(16 * MiB)
    buddy.alloc_pages(0)  # (the cache's slabs start past pfn 0: base 0 hides offset slips)
    slab = SlabAllocator(buddy, nr_cpus=2, thread_safe=thread_safe)
    cache: Any = slab.kmem_cache_create("errs", 64)
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
    # an int-subclass CPU frees on the CPU of its value (the fast path of CPU 0)
    cache.free(address, Cpu.BOOT)
    assert cache.stats().free_fastpath == before["free_fastpath"] + 1
    with pytest.raises(InvalidTypeError, match=r"^cpu must be an int, not bool$"):
        cache.alloc(True)
    with pytest.raises(InvalidCpuError, match=r"^cpu 2 is not in 0\.\.1$"):
        cache.alloc(2)
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
