"""A cpu given as an int subclass (an IntEnum of CPUs) names the CPU of its value everywhere.

kmalloc took such a cpu while the slab caches refused it with a false "cpu 1 is not in 0..1";
now every cache policy takes it (as ``int(cpu)``) and still refuses a bool, a float and a CPU
out of range with their own errors. Each run drives two allocators with the same operations,
one with IntEnum CPUs and one with plain ints: everything observable must be the same. Run on
both cores (KMEM_PURE=1 for the pure one).
"""

from __future__ import annotations

import enum
import random
from typing import Any, cast

import pytest

from kmem import BuddyAllocator, InvalidTypeError, SlabAllocator
from kmem.slab.errors import InvalidCpuError
from kmem.slab.flags import SLAB_CONSISTENCY_CHECKS
from test_slab import slab_snapshot

MiB = 1 << 20


class Cpu(enum.IntEnum):
    BOOT = 0
    SECOND = 1
    MISSING = 2  # not a CPU of a two-CPU allocator


# (policy, kernel, cache flags): SLUB with cpu slabs, with sheaves (7.0), its debug caches,
# and the classic SLAB
CONFIGS = [("slub", "6.17", 0), ("slub", "7.0", 0), ("slub", "6.17", SLAB_CONSISTENCY_CHECKS),
           ("slab", "6.17", 0), ("slab", "6.17", SLAB_CONSISTENCY_CHECKS)]


def _pair(policy: str, kernel: str) -> tuple[SlabAllocator, SlabAllocator]:
    def make() -> SlabAllocator:
        return SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2, policy=policy, kernel=kernel)
    return make(), make()


@pytest.mark.parametrize(("policy", "kernel", "flags"), CONFIGS)
def test_an_intenum_cpu_is_the_cpu_of_its_value(policy: str, kernel: str, flags: int) -> None:
    enum_side, int_side = _pair(policy, kernel)
    caches = [s.kmem_cache_create("obj", 72, flags=flags) for s in (enum_side, int_side)]
    rng = random.Random(18)
    live: list[int] = []
    for step in range(600):
        cpu = rng.randrange(2)
        action = rng.random()
        if action < 0.55 or not live:
            addresses = [caches[0].alloc(Cpu(cpu)), caches[1].alloc(cpu)]
            assert addresses[0] == addresses[1]
            live.append(addresses[0])
        elif action < 0.9:
            address = live.pop(rng.randrange(len(live)))
            caches[0].free(address, Cpu(cpu))
            caches[1].free(address, cpu)
        elif action < 0.95:
            address = live.pop(rng.randrange(len(live)))
            enum_side.kfree_rcu(address, Cpu(cpu))
            int_side.kfree_rcu(address, cpu)
            if step % 3 == 0:
                enum_side.synchronize_rcu()
                int_side.synchronize_rcu()
        elif policy == "slub":  # (the classic SLAB has no cpu slabs to flush)
            cast(Any, caches[0]).flush_cpu(Cpu(cpu))
            cast(Any, caches[1]).flush_cpu(cpu)
        # kmalloc goes through the same caches
        if step % 50 == 0:
            small = [enum_side.kmalloc(100, cpu=Cpu(cpu)), int_side.kmalloc(100, cpu=cpu)]
            assert small[0] == small[1]
            enum_side.kfree(small[0], Cpu(1 - cpu))
            int_side.kfree(small[1], 1 - cpu)
    enum_side.synchronize_rcu()
    int_side.synchronize_rcu()
    assert slab_snapshot(enum_side) == slab_snapshot(int_side)
    enum_side.check()


@pytest.mark.parametrize(("policy", "kernel", "flags"), CONFIGS)
def test_a_bad_cpu_is_still_refused_with_its_own_error(policy: str, kernel: str,
                                                       flags: int) -> None:
    slab, _ = _pair(policy, kernel)
    cache = slab.kmem_cache_create("obj", 72, flags=flags)
    kept = cache.alloc(0)
    before = slab_snapshot(slab)
    bad: list[tuple[Any, type[Exception], str]] = [
        (Cpu.MISSING, InvalidCpuError, "cpu 2 is not in 0..1"),
        (-1, InvalidCpuError, "cpu -1 is not in 0..1"),
        (True, InvalidTypeError, "cpu must be an int, not bool"),
        (1.0, InvalidTypeError, "cpu must be an int, not float"),
    ]
    for cpu, error, message in bad:
        with pytest.raises(error, match=f"^{message}$"):
            cache.alloc(cast(Any, cpu))
        with pytest.raises(error, match=f"^{message}$"):
            cache.free(kept, cast(Any, cpu))
        if policy == "slub":
            with pytest.raises(error, match=f"^{message}$"):
                cast(Any, cache).flush_cpu(cast(Any, cpu))
        with pytest.raises(error, match=f"^{message}$"):
            slab.kmalloc(64, cpu=cast(Any, cpu))
        assert slab_snapshot(slab) == before
    # an IntEnum cpu frees only what is allocated: a double free is still one
    cache.free(kept, Cpu.SECOND)
    with pytest.raises(Exception, match="already free"):
        cache.free(kept, Cpu.SECOND)
    slab.check()
