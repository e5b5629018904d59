"""kmalloc behaviours the mutation run of kmem.slab.kmalloc found untested (tools/mutants.py).

Expected values come from Linux (ZERO_SIZE_PTR 16, hash_64 with GOLDEN_RATIO_64 of
include/linux/hash.h, kmalloc_type's family order) or are worked out here by hand, never read
back from the module under test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from core_twins import compiled_module, on_core
from kmem import (
    BuddyAllocator,
    InvalidArgumentError,
    InvalidTypeError,
    MemoryClosedError,
    SlabAllocator,
)
from kmem.page.gfp import (
    __GFP_DMA,
    __GFP_RECLAIMABLE,
    __GFP_ZERO,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
)
from kmem.slab.errors import InvalidCpuError
from test_slab import slab_snapshot

MiB = 1 << 20


def _copy_by_hand(caller: int, seed: int) -> int:
    """include/linux/hash.h hash_64(caller ^ seed, ilog2(16)) on a 64-bit machine."""
    return (((caller ^ seed) * 0x61C8864680B583EB) % 2**64) >> 60


def _random(seed: int = 0, policy: str = "slub") -> SlabAllocator:
    return SlabAllocator(BuddyAllocator(32 * MiB), nr_cpus=2, policy=policy,
                         random_kmalloc_seed=seed)


def _copy_name(copy: int, size_name: str) -> str:
    return f"kmalloc-{size_name}" if copy == 0 else f"kmalloc-rnd-{copy:02d}-{size_name}"


def test_zero_size_ptr_is_sixteen_bytes_past_the_end_of_memory() -> None:
    """Linux's ZERO_SIZE_PTR is (void *)16; kmem puts it 16 bytes past its memory's end."""
    for size in (16 * MiB, 32 * MiB):
        slab = SlabAllocator(BuddyAllocator(size))
        assert slab.zero_size_ptr == size + 16
        assert slab.kmalloc(0) == slab.kzalloc(0) == slab.krealloc(None, 0) == size + 16


# -- CONFIG_RANDOM_KMALLOC_CACHES --------------------------------------------------------------


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_random_kmalloc_serves_and_counts_each_call_in_the_callers_copy(policy: str) -> None:
    seed = 0x9E3779B97F4A7C15
    slab = _random(seed, policy)
    seen = set()
    for caller in range(0xFFFFFFFF81000000, 0xFFFFFFFF81000000 + 64 * 40, 64):
        copy = _copy_by_hand(caller, seed)
        seen.add(copy)
        name = _copy_name(copy, "64")
        before = slab.caches[name].stats()
        address = slab.kmalloc(50, caller=caller, cpu=1)
        cache = slab.cache_of(address)
        assert cache is not None and cache.name == name
        assert slab.kmalloc_cache_for(50, caller=caller) is cache
        after = cache.stats()
        assert after.objects == before.objects + 1
        assert after.bytes_requested == before.bytes_requested + 50
        assert after.bytes_allocated == before.bytes_allocated + 64
    assert len(seen) > 8  # the callers spread over many copies
    slab.check()


def test_random_kmalloc_leaves_the_other_families_alone() -> None:
    slab = _random(seed=3)
    for caller in range(20):
        before = slab.caches["kmalloc-cg-128"].stats()
        address = slab.kmalloc(100, GFP_KERNEL_ACCOUNT, caller=caller)
        cache = slab.cache_of(address)
        assert cache is not None and cache.name == "kmalloc-cg-128"
        assert slab.kmalloc_cache_for(100, GFP_KERNEL_ACCOUNT, caller=caller) is cache
        after = cache.stats()
        assert after.bytes_requested == before.bytes_requested + 100
        assert after.objects == before.objects + 1
    slab.check()


@pytest.mark.parametrize("gfp", [GFP_KERNEL, GFP_KERNEL_ACCOUNT])
def test_random_kmalloc_zeroes_a_reused_object_for_gfp_zero(gfp: int) -> None:
    slab = _random(seed=7)
    memory = slab.buddy.memory
    address = slab.kmalloc(100, gfp, caller=5)
    memory.view(address, 128)[:] = b"\xee" * 128
    slab.kfree(address)
    again = slab.kmalloc(100, gfp | __GFP_ZERO, caller=5)
    assert again == address  # the same object, dirty, handed out again (LIFO)
    assert bytes(memory.view(again, 128)) == bytes(128)
    slab.kfree(again)
    plain = slab.kmalloc(100, gfp, caller=5)
    memory.view(plain, 128)[:] = b"\xee" * 128
    slab.kfree(plain)
    assert bytes(memory.view(slab.kmalloc(100, gfp, caller=5), 128)) == b"\xee" * 128


def test_random_kmalloc_of_zero_large_and_bad_arguments() -> None:
    slab = _random(seed=11)
    assert slab.kmalloc(0, caller=1) == slab.zero_size_ptr
    large = slab.kmalloc(20000, caller=1)
    assert slab.cache_of(large) is None and slab.ksize(large) == 32768
    slab.kfree(large)
    before = slab_snapshot(slab)
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: slab.kmalloc(50, caller=cast(Any, "0x10")), InvalidTypeError,
         "caller must be an int address, not str"),
        (lambda: slab.kmalloc(50, caller=cast(Any, True)), InvalidTypeError,
         "caller must be an int address, not bool"),
        (lambda: slab.kmalloc(-1, caller=1), InvalidArgumentError,
         "kmalloc size must be >= 0, got -1"),
        (lambda: slab.kmalloc(50, 1 << 32, caller=1), InvalidArgumentError,
         "gfp flags must be in 0..0xffffffff, not 0x100000000"),
        (lambda: slab.kmalloc(50, cpu=2, caller=1), InvalidCpuError, r"cpu 2 is not in 0..1"),
        (lambda: slab.kmalloc_cache_for(50, caller=cast(Any, 1.5)), InvalidTypeError,
         "caller must be an int, not float"),
        (lambda: slab.kmalloc_cache_for(50, caller=cast(Any, False)), InvalidTypeError,
         "caller must be an int, not bool"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=f"^{message}$"):
            call()
    assert slab_snapshot(slab) == before
    assert slab.kmalloc_cache_for(0, caller=1) is None
    assert slab.kmalloc_cache_for(8193, caller=1) is None


# -- the physical memory closed ----------------------------------------------------------------


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_kmalloc_and_kfree_refuse_once_the_memory_is_closed(policy: str) -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB), policy=policy)
    small, large = slab.kmalloc(64), slab.kmalloc(20000)
    slab.buddy.memory.close()
    message = "^cannot kmalloc or kfree: the physical memory was closed$"
    for call in (lambda: slab.kmalloc(64), lambda: slab.kmalloc(20000), lambda: slab.kfree(small),
                 lambda: slab.kfree(large), lambda: slab.kmalloc_large(20000),
                 lambda: slab.kmalloc(64, GFP_KERNEL | __GFP_ZERO, cpu=0)):
        with pytest.raises(MemoryClosedError, match=message):
            call()


# -- the compiled kmalloc's wiring -------------------------------------------------------------




def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as error:
        return "error", (type(error).__name__, str(error))


needs_core = pytest.mark.skipif(compiled_module() is None, reason="kmem._core is not built")


@needs_core
@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_compiled_kmalloc_does_what_the_pure_one_does(policy: str) -> None:
    """Every size class, family, __GFP_ZERO, CPU and bad argument, on an allocator built on the
    compiled core and on a pure one: the same addresses, errors, bytes and counters."""
    module = compiled_module()
    assert module is not None
    with on_core(module):
        compiled = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2, policy=policy)
    with on_core(None):
        pure = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2, policy=policy)
    assert compiled.buddy.compiled_core is module and pure.buddy.compiled_core is None
    assert type(compiled.kmalloc).__name__ == "builtin_function_or_method"
    pair = (compiled, pure)

    def both(call: Callable[[SlabAllocator], Any]) -> Any:
        done = _outcome(lambda: call(compiled))
        assert done == _outcome(lambda: call(pure))
        return done

    live: list[int] = []
    gfps = [GFP_KERNEL, GFP_KERNEL | __GFP_ZERO, GFP_KERNEL_ACCOUNT,
            GFP_KERNEL_ACCOUNT | __GFP_ZERO, GFP_KERNEL | __GFP_RECLAIMABLE, __GFP_DMA, 0]
    for round_ in range(3):
        for size in (1, 8, 9, 64, 96, 100, 192, 1000, 4096, 8192, 8193, 20000, 0):
            for index, gfp in enumerate(gfps):
                cpu = (size + index + round_) % 2
                kind, address = both(lambda s: s.kmalloc(size, gfp, cpu))  # noqa: B023 (called at once)
                assert kind == "ok"
                if address != compiled.zero_size_ptr:
                    held = compiled.ksize(address)
                    for s in pair:  # dirty it: a later kmalloc of it must zero it or not
                        s.buddy.memory.view(address, held)[:] = bytes([0xA5]) * held
                    live.append(address)
        for position, address in enumerate(live[round_::2]):
            both(lambda s: s.kfree(address, position % 2))  # noqa: B023 (called at once)
        live = live[:round_] + live[round_ + 1::2]  # the ones not freed
        assert slab_snapshot(compiled) == slab_snapshot(pure)
    odd: list[Any] = [True, 1.5, -1, 2**64, None, "64"]
    for bad in odd:
        both(lambda s: s.kmalloc(bad))  # noqa: B023 (called at once)
        both(lambda s: s.kmalloc(64, bad))  # noqa: B023 (called at once)
        both(lambda s: s.kmalloc(64, GFP_KERNEL, bad))  # noqa: B023 (called at once)
        both(lambda s: s.kfree(bad))  # noqa: B023 (called at once)
    for bad_address in (live[0] + 8, 16 * MiB, -8, 16 * MiB + 16):
        both(lambda s: s.kfree(bad_address))  # noqa: B023 (called at once)
    for address in live:
        both(lambda s: s.kfree(address, 1))  # noqa: B023 (called at once)
    assert slab_snapshot(compiled) == slab_snapshot(pure)
    assert [c.stats() for c in compiled.cache_list()] == [c.stats() for c in pure.cache_list()]
    compiled.check()


@needs_core
def test_compiled_core_keeps_random_kmalloc_copies_in_python() -> None:
    """The compiled fast path knows one table: with random caches kmalloc stays pure and picks
    the copy by caller."""
    module = compiled_module()
    assert module is not None
    seed = 0x1234
    with on_core(module):
        slab = _random(seed)
    assert slab.buddy.compiled_core is module
    for caller in range(32):
        cache = slab.cache_of(slab.kmalloc(50, caller=caller))
        assert cache is not None and cache.name == _copy_name(_copy_by_hand(caller, seed), "64")
    slab.check()
