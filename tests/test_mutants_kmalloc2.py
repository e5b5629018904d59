"""kmalloc behaviours the second mutation run of kmem.slab.kmalloc found untested.

Expected values come from Linux's rules (the caller picks a random kmalloc copy through
hash_64, an int-subclass size is the size of its value, a large block starts on a page, 7.0
allocates no sheaf for a __GFP_NO_OBJ_EXT allocation) or are worked out here by hand.
"""

from __future__ import annotations

import enum
from typing import Any, cast

import pytest

from core_twins import compiled_module, on_core
from kmem import (
    BuddyAllocator,
    InvalidArgumentError,
    InvalidTypeError,
    KmemError,
    SlabAllocator,
)
from kmem.page.gfp import __GFP_DMA, __GFP_NO_OBJ_EXT, __GFP_ZERO, GFP_KERNEL, GFP_KERNEL_ACCOUNT
from kmem.slab.errors import InteriorPointerError, InvalidCpuError
from test_mutants_kmalloc import _copy_by_hand, _copy_name, needs_core
from test_slab import slab_snapshot

MiB = 1 << 20
SEED = 0x5EED  # hash_64(0 ^ SEED) and hash_64(5 ^ SEED) pick different copies (checked below)


class Size(enum.IntEnum):
    SMALL = 50
    LARGEST_SLAB = 8192
    LARGE = 20000


class Cpu(enum.IntEnum):
    SECOND = 1


def _random() -> SlabAllocator:
    return SlabAllocator(BuddyAllocator(32 * MiB), nr_cpus=2, random_kmalloc_seed=SEED)


def _name(address: int, slab: SlabAllocator) -> str:
    cache = slab.cache_of(address)
    assert cache is not None
    return cache.name


def test_the_seed_separates_callers_zero_and_five() -> None:
    assert _copy_by_hand(0, SEED) != _copy_by_hand(5, SEED)


def test_random_kmalloc_without_a_caller_is_caller_zero() -> None:
    slab = _random()
    zero = _copy_name(_copy_by_hand(0, SEED), "64")
    assert _name(slab.kmalloc(50), slab) == zero
    assert _name(slab.kzalloc(50), slab) == zero
    cache = slab.kmalloc_cache_for(50)
    assert cache is not None and cache.name == zero
    five = _copy_name(_copy_by_hand(5, SEED), "64")
    assert _name(slab.kzalloc(50, caller=5), slab) == five


@pytest.mark.parametrize(("size", "name"), [(1, "8"), (8192, "8k")])
def test_random_kmalloc_of_the_smallest_and_largest_slab_sizes(size: int, name: str) -> None:
    slab = _random()
    for caller in (0, 5):
        assert _name(slab.kmalloc(size, caller=caller), slab) == _copy_name(
            _copy_by_hand(caller, SEED), name)


def test_random_kmalloc_refuses_a_gfp_that_is_not_an_int() -> None:
    slab = _random()
    before = slab_snapshot(slab)
    for gfp, name in (("64", "str"), (1.5, "float")):
        with pytest.raises(InvalidTypeError, match=f"^gfp flags must be an int, not {name}$"):
            slab.kmalloc(50, cast(Any, gfp), caller=5)
    assert slab_snapshot(slab) == before


@pytest.mark.parametrize("random_caches", [False, True])
def test_an_int_subclass_size_is_the_size_of_its_value(random_caches: bool) -> None:
    """kmalloc(Size.SMALL, ...) does what kmalloc(50, ...) does: same cache, same CPU, same
    family, zeroing and caller; 8192 stays a slab object, 20000 a zeroed large block."""
    def make() -> SlabAllocator:
        return SlabAllocator(BuddyAllocator(32 * MiB), nr_cpus=2,
                             random_kmalloc_seed=SEED if random_caches else None)
    enum_side, int_side = make(), make()
    for side in (enum_side, int_side):  # dirty what the next kmallocs get, to see the zeroing
        for size in (50, 8192, 20000):
            for gfp in (GFP_KERNEL, __GFP_DMA):
                address = side.kmalloc(size, gfp, 1, 5)
                side.buddy.memory.view(address, side.ksize(address))[:] = b"\xa5" * side.ksize(
                    address)
                side.kfree(address, 1)
    for size in Size:
        for gfp in (GFP_KERNEL, GFP_KERNEL | __GFP_ZERO, __GFP_DMA | __GFP_ZERO,
                    GFP_KERNEL_ACCOUNT):
            got = enum_side.kmalloc(size, gfp, Cpu.SECOND, 5)
            want = int_side.kmalloc(int(size), gfp, 1, 5)
            assert got == want
            held = int_side.ksize(want)
            assert enum_side.ksize(got) == held
            assert bytes(enum_side.buddy.memory.view(got, held)) == bytes(
                int_side.buddy.memory.view(want, held))
            if gfp & __GFP_ZERO:
                assert bytes(enum_side.buddy.memory.view(got, held)) == bytes(held)
            if size <= 8192:
                cache = enum_side.cache_of(got)
                assert cache is not None and cache.name.endswith(
                    "-64" if size == 50 else "-8k")
            else:
                assert enum_side.cache_of(got) is None
    assert slab_snapshot(enum_side) == slab_snapshot(int_side)


@pytest.mark.parametrize("random_caches", [False, True])
def test_kmalloc_off_the_slab_path_checks_the_cpu(random_caches: bool) -> None:
    """kmalloc(0) and a large kmalloc make the caches' cpu checks themselves."""
    slab = SlabAllocator(BuddyAllocator(32 * MiB), nr_cpus=2,
                         random_kmalloc_seed=SEED if random_caches else None)
    for size in (0, 20000):
        assert slab.kmalloc(size, cpu=Cpu.SECOND, caller=1) in (slab.zero_size_ptr,) or (
            slab.cache_of(slab.kmalloc(size, cpu=1, caller=1)) is None)
    before = slab_snapshot(slab)
    cases: list[tuple[Any, type[Exception], str]] = [
        (2, InvalidCpuError, "cpu 2 is not in 0..1"),
        (-1, InvalidCpuError, "cpu -1 is not in 0..1"),
        (True, InvalidTypeError, "cpu must be an int, not bool"),
        (1.5, InvalidTypeError, "cpu must be an int, not float"),
        (None, InvalidTypeError, "cpu must be an int, not NoneType"),
    ]
    for size in (0, 20000):
        for cpu, error, message in cases:
            with pytest.raises(error, match=f"^{message}$"):
                slab.kmalloc(size, cpu=cpu, caller=1)
    assert slab_snapshot(slab) == before


def test_kmalloc_cache_for_a_negative_size_says_so() -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB))
    with pytest.raises(InvalidArgumentError, match=r"^kmalloc size must be >= 0, got -3$"):
        slab.kmalloc_cache_for(-3)


def test_kmalloc_large_of_one_byte_is_a_page() -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB))
    address = slab.kmalloc_large(1)
    assert slab.ksize(address) == slab.buddy.page_size and slab.large_kmalloc_pages == 1
    slab.kfree(address)
    assert slab.large_kmalloc_pages == 0


def test_an_odd_address_inside_a_large_block_is_refused() -> None:
    """A large block starts on a page: its address + 1 is an interior pointer, for kfree and
    ksize alike (bit 0 is an offset bit too)."""
    slab = SlabAllocator(BuddyAllocator(16 * MiB))
    address = slab.kmalloc(20000)
    before = slab_snapshot(slab)
    for odd in (address + 1, address + 3):
        with pytest.raises(InteriorPointerError):
            slab.ksize(odd)
        with pytest.raises(InteriorPointerError):
            slab.kfree(odd)
    assert slab_snapshot(slab) == before
    slab.kfree(address)


def test_a_kmalloc_of_65_bytes_is_counted_by_kmalloc_96_only() -> None:
    """Each cache's kmalloc figures count the request sizes it serves: 65 is kmalloc-96's,
    none of kmalloc-64's (nor 8193 anyone's: a large kmalloc)."""
    slab = SlabAllocator(BuddyAllocator(16 * MiB))
    slab.kmalloc(65)
    slab.kmalloc(8192)
    assert slab.caches["kmalloc-64"].kmalloc_requests() == (0, 0, 0)
    assert slab.caches["kmalloc-96"].kmalloc_requests() == (1, 65, 96)
    assert slab.caches["kmalloc-8k"].kmalloc_requests() == (1, 8192, 8192)


def test_repeated_kmallocs_of_a_family_are_each_counted() -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB))
    for _ in range(3):
        slab.kmalloc(100, GFP_KERNEL | __GFP_ZERO)
        slab.kmalloc(100, __GFP_DMA)
    assert slab.caches["kmalloc-128"].kmalloc_requests() == (3, 300, 384)
    assert slab.caches["dma-kmalloc-128"].kmalloc_requests() == (3, 300, 384)


@pytest.mark.parametrize("random_caches", [False, True])
@pytest.mark.parametrize(("gfp", "new_sheaves"), [(GFP_KERNEL | __GFP_NO_OBJ_EXT, False),
                                                  (GFP_KERNEL, True)])
def test_kmalloc_hands_its_gfp_to_the_cache_in_7_0(random_caches: bool, gfp: int,
                                                   new_sheaves: bool) -> None:
    """Linux 7.0 allocates no empty sheaf for a __GFP_NO_OBJ_EXT allocation: kmalloc must pass
    the flags on, so its cache's sheaf counter does not move (and does for GFP_KERNEL, once
    the boot sheaves are used up)."""
    slab = SlabAllocator(BuddyAllocator(32 * MiB), nr_cpus=2, kernel="7.0",
                         random_kmalloc_seed=SEED if random_caches else None)
    cache = slab.kmalloc_cache_for(3000, gfp, caller=5)
    assert cache is not None
    before = cache.stats().sheaf_alloc
    for _ in range(100):
        assert slab.cache_of(slab.kmalloc(3000, gfp, 1, 5)) is cache
    assert (cache.stats().sheaf_alloc > before) is new_sheaves


@needs_core
def test_compiled_kmalloc_with_the_default_gfp() -> None:
    """kmalloc(size) and kmalloc(size, cpu=...) without a gfp on the compiled core: the same
    as GFP_KERNEL, as on the pure core."""
    module = compiled_module()
    with on_core(module):
        compiled = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2)
    with on_core(None):
        pure = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2)
    assert type(compiled.kmalloc).__name__ == "builtin_function_or_method"
    for size in (8, 64, 100, 8192):
        got = [s.kmalloc(size) for s in (compiled, pure)]
        assert got[0] == got[1]
        assert _name(got[0], compiled) == _name(got[1], pure)
    assert slab_snapshot(compiled) == slab_snapshot(pure)


def test_a_large_int_subclass_size_keeps_gfp_zero() -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB))
    address = slab.kmalloc(20000)
    memory = slab.buddy.memory
    memory.view(address, 32768)[:] = b"\xa5" * 32768
    slab.kfree(address)
    again = slab.kmalloc(Size.LARGE, GFP_KERNEL | __GFP_ZERO)
    assert again == address  # the same block (the buddy's free list is LIFO)
    assert bytes(memory.view(again, 32768)) == bytes(32768)


@pytest.mark.parametrize("kernel", ["6.17", "7.0"])
def test_kfree_rcu_of_a_kmalloc_object_waits_for_the_grace_period(kernel: str) -> None:
    """kfree_rcu hands a slab object to its cache at once (it is pending, not free: a kfree
    of it now is a double free); the grace period frees it."""
    slab = SlabAllocator(BuddyAllocator(16 * MiB), kernel=kernel)
    address = slab.kmalloc(100)
    slab.kfree_rcu(address)
    with pytest.raises(KmemError):
        slab.kfree(address)
    slab.synchronize_rcu()
    slab.kvfree_rcu_barrier()
    with pytest.raises(KmemError):
        slab.kfree(address)  # freed by the grace period: now a double free


def test_ksize_of_a_padded_cache_is_the_slot_size() -> None:
    """Linux slab_ksize(): without red zone, poison, RCU or STORE_USER the whole slot (s->size:
    72 bytes aligned to 64 take 128) is usable; with SLAB_TYPESAFE_BY_RCU only s->inuse."""
    slab = SlabAllocator(BuddyAllocator(16 * MiB))
    plain = slab.kmem_cache_create("padded", 72, align=64)
    assert slab.ksize(plain.alloc(0)) == 128
    rcu = slab.kmem_cache_create("padded-rcu", 72, align=64, flags=1 << 9)
    assert slab.ksize(rcu.alloc(0)) == 72
