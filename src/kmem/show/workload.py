"""The built-in slab workload that ``kmem slabinfo`` and ``kmem slabtop`` report on.

``builtin_workload(slab)`` runs the seed's caches and a realistic kmalloc mix on any
SlabAllocator; ``workload_allocator(...)`` builds an allocator and runs either that workload or
a scenario (kmem.show.scenario) to its end. It lives here, above the slab layer, because a
scenario is a higher-layer thing: the slab reports only format what an allocator holds.
"""

from __future__ import annotations

import random

from kmem.errors import InvalidArgumentError
from kmem.page.buddy import BuddyAllocator
from kmem.page.gfp import __GFP_RECLAIMABLE, GFP_KERNEL, GFP_KERNEL_ACCOUNT
from kmem.show.scenario import load
from kmem.show.scenario_run import run_all
from kmem.slab.allocator import SlabAllocator
from kmem.slab.flags import SLAB_HWCACHE_ALIGN
from kmem.slab.sheaves import DEFAULT_KERNEL

# -- workloads to report on ---------------------------------------------------------------------

# A realistic kmalloc size mix: request sizes seen in a real 6.18 trace (weights: how often).
KMALLOC_MIX: tuple[tuple[int, int], ...] = (
    (8, 6), (13, 3), (16, 6), (24, 5), (32, 8), (40, 4), (52, 4), (64, 8), (72, 3), (96, 5),
    (100, 3), (128, 6), (160, 3), (192, 4), (256, 5), (300, 2), (512, 4), (640, 2),
    (1024, 3), (1500, 2), (2048, 2), (4096, 2), (6000, 1), (8192, 1), (16384, 1),
)


def builtin_workload(slab: SlabAllocator, *, seed: int = 1, operations: int = 4000) -> None:
    """The seed's caches plus a kmalloc mix, on every CPU, leaving about half of it live.

    Two compatible small caches are created first (Linux merges them: one cache, two names);
    a 3 KB TCB cache and a 7 KB PCB cache (SLAB_HWCACHE_ALIGN) get 60 and 20 objects, a third
    of them freed again; then ``operations`` kmalloc/kfree calls over KMALLOC_MIX with the
    normal, cgroup and reclaimable families, freeing a random live object 35% of the time.
    Deterministic for a seed. Works on any SlabAllocator (the caches are created if missing).
    """
    rng = random.Random(seed)
    cpus = slab.nr_cpus
    # Two small caches Linux merges: "sock_inode" aliases "dentry_like" (both 192-byte slots).
    if "dentry_like" not in slab.caches:
        slab.kmem_cache_create("dentry_like", 192)
        slab.kmem_cache_create("sock_inode", 188)
    tcb = slab.caches.get("tcb") or slab.kmem_cache_create("tcb", 3 * 1024,
                                                           flags=SLAB_HWCACHE_ALIGN)
    pcb = slab.caches.get("pcb") or slab.kmem_cache_create("pcb", 7 * 1024,
                                                           flags=SLAB_HWCACHE_ALIGN)
    for cache, count in ((tcb, 60), (pcb, 20)):
        objs = [cache.alloc(cpu=i % cpus) for i in range(count)]
        for addr in objs[::3]:
            cache.free(addr, cpu=rng.randrange(cpus))
    sizes = [size for size, weight in KMALLOC_MIX for _ in range(weight)]
    families = [GFP_KERNEL] * 8 + [GFP_KERNEL_ACCOUNT] * 2 + [GFP_KERNEL | __GFP_RECLAIMABLE]
    live: list[int] = []
    for _ in range(operations):
        cpu = rng.randrange(cpus)
        if live and rng.random() < 0.35:
            slab.kfree(live.pop(rng.randrange(len(live))), cpu=cpu)
        else:
            live.append(slab.kmalloc(rng.choice(sizes), rng.choice(families), cpu=cpu))


def workload_allocator(*, scenario: str | None = None, policy: str = "slub", nr_cpus: int = 2,
                       memory: int = 64 << 20, seed: int = 1, kernel: str = DEFAULT_KERNEL
                       ) -> SlabAllocator:
    """A SlabAllocator after a workload: the built-in one (on ``kernel``'s SLUB: 7.0 gives every
    cache sheaves), or a scenario (file or built-in name of kmem.show.scenario) run to its end."""
    if scenario is None:
        slab = SlabAllocator(BuddyAllocator(memory), nr_cpus=nr_cpus, policy=policy,
                             kernel=kernel)
        builtin_workload(slab, seed=seed)
        return slab
    state = None
    for step in run_all(load(scenario)):
        state = step[1]
    if state is None or state.slab is None:
        raise InvalidArgumentError(f"scenario {scenario!r} never uses the slab layer")
    result: SlabAllocator = state.slab
    return result
