"""Every bad input to a cache gets its own KmemError subclass and leaves everything as it was."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from core_twins import pure_core
from kmem import (
    BuddyAllocator,
    CacheDestroyedError,
    CacheExistsError,
    CacheNotEmptyError,
    ConstructorReentryError,
    DoubleFreeError,
    FreeToDestroyedCacheError,
    InteriorPointerError,
    InvalidArgumentError,
    InvalidCpuError,
    InvalidGfpError,
    InvalidTypeError,
    KmallocCacheDestroyError,
    KmemError,
    MemoryClosedError,
    NotAnObjectError,
    ObjectDoubleFreeError,
    SlabAllocator,
    SlabPageSizeError,
    WrongCacheError,
)
from test_slab import slab_snapshot

MiB = 1 << 20


class World:
    """Two caches with live and freed objects on both CPUs, and a kmalloc'd object."""

    def __init__(self, policy: str) -> None:
        self.slab = SlabAllocator(BuddyAllocator(16 * MiB), nr_cpus=2, policy=policy)
        self.tcb = self.slab.kmem_cache_create("tcb", 3072)
        self.pcb = self.slab.kmem_cache_create("pcb", 7168)
        self.t = [self.tcb.alloc(cpu=i % 2) for i in range(25)]
        self.p = [self.pcb.alloc() for _ in range(6)]
        self.freed = self.t.pop(3)
        self.tcb.free(self.freed, cpu=1)
        self.k = self.slab.kmalloc(200)


# The callable takes Any so that the wrong-type cases type-check.
CASES: list[tuple[str, Callable[[Any], Any], type[KmemError], str]] = [
    ("double free", lambda w: w.tcb.free(w.freed), ObjectDoubleFreeError, "already free"),
    ("double free via kfree", lambda w: w.slab.kfree(w.freed), ObjectDoubleFreeError,
     "already free"),
    ("free of a never-allocated slot", lambda w: w.tcb.free(w.t[-1] + 3072),
     ObjectDoubleFreeError, "already free"),
    ("interior pointer", lambda w: w.tcb.free(w.t[0] + 100), InteriorPointerError,
     "not the start"),
    ("interior pointer via kfree", lambda w: w.slab.kfree(w.k + 1), InteriorPointerError,
     "not the start"),
    ("slab tail past the last object", lambda w: w.tcb.free(
        (w.t[0] & ~(32768 - 1)) + 10 * 3072), InteriorPointerError, "not the start"),
    ("wrong cache", lambda w: w.pcb.free(w.t[0]), WrongCacheError, "another cache"),
    ("kmalloc object to a cache", lambda w: w.tcb.free(w.k), WrongCacheError, "another cache"),
    ("address of no slab", lambda w: w.tcb.free(15 * MiB), NotAnObjectError, "not in a slab"),
    ("negative address", lambda w: w.tcb.free(-4096), NotAnObjectError, "not in a slab"),
    ("address beyond memory", lambda w: w.tcb.free(1 << 40), NotAnObjectError,
     "not in a slab"),
    ("address of wrong type", lambda w: w.tcb.free("0"), InvalidTypeError, "int"),
    ("bool address", lambda w: w.tcb.free(True), InvalidTypeError, "int"),
    ("cpu out of range on alloc", lambda w: w.tcb.alloc(cpu=2), InvalidCpuError, "cpu 2"),
    ("negative cpu on alloc", lambda w: w.tcb.alloc(cpu=-1), InvalidCpuError, "cpu -1"),
    ("cpu of wrong type on free", lambda w: w.tcb.free(w.t[0], cpu="1"), InvalidTypeError,
     "cpu"),
    ("cpu out of range on free", lambda w: w.tcb.free(w.t[0], cpu=5), InvalidCpuError,
     "cpu 5"),
    ("unhashable cpu on alloc", lambda w: w.tcb.alloc(cpu=[0]), InvalidTypeError, "cpu"),
    ("float cpu on alloc", lambda w: w.tcb.alloc(cpu=1.0), InvalidTypeError, "cpu"),
    ("unhashable cpu on free", lambda w: w.tcb.free(w.t[0], cpu=[0]), InvalidTypeError,
     "cpu"),
    ("cpu out of range on kmalloc", lambda w: w.slab.kmalloc(64, cpu=9), InvalidCpuError,
     "cpu 9"),
    ("destroy with live objects", lambda w: w.slab.kmem_cache_destroy(w.tcb),
     CacheNotEmptyError, "still has 24"),
    ("destroy by unknown name", lambda w: w.slab.kmem_cache_destroy("nope"),
     InvalidArgumentError, "no cache"),
    ("duplicate cache name", lambda w: w.slab.kmem_cache_create("tcb", 64), CacheExistsError,
     "already exists"),
    ("duplicate kmalloc name", lambda w: w.slab.kmem_cache_create("kmalloc-64", 64),
     CacheExistsError, "already exists"),
    ("empty cache name", lambda w: w.slab.kmem_cache_create("", 64), InvalidArgumentError,
     "name"),
    ("zero object size", lambda w: w.slab.kmem_cache_create("z", 0), InvalidArgumentError,
     "object_size"),
    ("bad align", lambda w: w.slab.kmem_cache_create("z", 64, align=12),
     InvalidArgumentError, "power of two"),
    ("unknown flag", lambda w: w.slab.kmem_cache_create("z", 64, flags=1 << 30),
     InvalidArgumentError, "unknown slab flags"),
    ("ctor not callable", lambda w: w.slab.kmem_cache_create("z", 64, ctor=5),
     InvalidTypeError, "callable"),
    ("view of a free object", lambda w: w.tcb.view(w.freed), ObjectDoubleFreeError,
     "already free"),
    # issue 12: the slab layer checks its arguments as the buddy layer does
    ("destroy a kmalloc cache", lambda w: w.slab.kmem_cache_destroy(w.slab.caches["kmalloc-64"]),
     KmallocCacheDestroyError, "kmalloc cache"),
    ("destroy a kmalloc cache by name", lambda w: w.slab.kmem_cache_destroy("kmalloc-rcl-96"),
     KmallocCacheDestroyError, "kmalloc cache"),
    ("kmalloc_large of 0", lambda w: w.slab.kmalloc_large(0), InvalidArgumentError, "positive"),
    ("kmalloc_large of -1", lambda w: w.slab.kmalloc_large(-1), InvalidArgumentError,
     "positive"),
    ("kmalloc_large of False", lambda w: w.slab.kmalloc_large(False), InvalidTypeError,
     "size must be an int, not bool"),
    ("kmalloc_large of a float", lambda w: w.slab.kmalloc_large(8192.0), InvalidTypeError,
     "not float"),
    ("kmalloc_large of None", lambda w: w.slab.kmalloc_large(None), InvalidTypeError,
     "not NoneType"),
    ("kmalloc_large of a str", lambda w: w.slab.kmalloc_large("8192"), InvalidTypeError,
     "not str"),
    ("free of False (address 0 holds an object under SLUB)", lambda w: w.tcb.free(False),
     InvalidTypeError, "not bool"),
    ("kfree of False", lambda w: w.slab.kfree(False), InvalidTypeError, "not bool"),
    ("kmalloc gfp=False", lambda w: w.slab.kmalloc(64, gfp=False), InvalidTypeError, "gfp"),
    ("kmalloc gfp=2**100", lambda w: w.slab.kmalloc(64, gfp=2**100), InvalidGfpError, "gfp"),
    ("kmalloc gfp=-2**100", lambda w: w.slab.kmalloc(64, gfp=-2**100), InvalidGfpError, "gfp"),
    ("kmalloc gfp=2**32", lambda w: w.slab.kmalloc(64, gfp=2**32), InvalidGfpError, "gfp"),
    ("kzalloc gfp=False", lambda w: w.slab.kzalloc(64, gfp=False), InvalidTypeError, "gfp"),
    ("kcalloc gfp=2**100", lambda w: w.slab.kcalloc(2, 8, gfp=2**100), InvalidGfpError, "gfp"),
    ("krealloc gfp=-1", lambda w: w.slab.krealloc(w.k, 10, gfp=-1), InvalidGfpError, "gfp"),
    ("large kmalloc gfp=2**100", lambda w: w.slab.kmalloc(1 << 16, gfp=2**100), InvalidGfpError,
     "gfp"),
    ("cache alloc gfp=True", lambda w: w.tcb.alloc(0, True), InvalidTypeError, "gfp"),
    ("cache alloc gfp=2**100", lambda w: w.tcb.alloc(0, 2**100), InvalidGfpError, "gfp"),
    ("cache alloc gfp=-2**100", lambda w: w.tcb.alloc(gfp=-2**100), InvalidGfpError, "gfp"),
    ("kmalloc(0) on cpu 99", lambda w: w.slab.kmalloc(0, cpu=99), InvalidCpuError, "cpu 99"),
    ("large kmalloc on cpu -5", lambda w: w.slab.kmalloc(1 << 16, cpu=-5), InvalidCpuError,
     "cpu -5"),
    ("kfree(None) on cpu 99", lambda w: w.slab.kfree(None, cpu=99), InvalidCpuError, "cpu 99"),
    ("krealloc in place on cpu 99", lambda w: w.slab.krealloc(w.k, 10, cpu=99),
     InvalidCpuError, "cpu 99"),
    ("kfree_rcu(None) on cpu -5", lambda w: w.slab.kfree_rcu(None, cpu=-5), InvalidCpuError,
     "cpu -5"),
]


@pytest.mark.parametrize("policy", ["slub", "slab"])
@pytest.mark.parametrize(("what", "call", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_changes_nothing(policy: str, what: str, call: Callable[[World], Any],
                                   error: type[KmemError], words: str) -> None:
    world = World(policy)
    before = slab_snapshot(world.slab)
    with pytest.raises(error, match=words):
        call(world)
    assert slab_snapshot(world.slab) == before, what
    world.slab.check()


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_double_free_is_a_double_free_error(policy: str) -> None:
    world = World(policy)
    with pytest.raises(DoubleFreeError):  # the kmem-wide family
        world.tcb.free(world.freed)


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_destroy_reports_every_leak_then_works_once_freed(policy: str) -> None:
    world = World(policy)
    with pytest.raises(CacheNotEmptyError) as caught:
        world.slab.kmem_cache_destroy(world.tcb)
    leaks = caught.value.leaks
    assert sorted(leak.address for leak in leaks) == sorted(world.t)
    assert all(leak.address >> 12 >> 3 << 3 == leak.slab_pfn for leak in leaks)
    for addr in world.t:
        world.tcb.free(addr, cpu=1)
    free_before = world.slab.buddy.nr_free_pages
    slabs = world.tcb.stats().slabs
    # SLUB: each CPU filled its own slabs (13 and 12 objects: 2 slabs each); classic: 3 slabs
    assert slabs == (4 if policy == "slub" else 3)
    world.slab.kmem_cache_destroy(world.tcb)
    assert "tcb" not in world.slab.caches
    assert world.slab.buddy.nr_free_pages == free_before + 8 * slabs
    world.slab.check()
    with pytest.raises(CacheDestroyedError):
        world.tcb.alloc()
    with pytest.raises(CacheDestroyedError):
        world.tcb.free(world.t[0])
    with pytest.raises(NotAnObjectError):
        world.slab.kfree(world.t[0])
    # the name can be used again
    again = world.slab.kmem_cache_create("tcb", 3072)
    assert again is not world.tcb
    world.slab.check()


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_a_free_to_a_destroyed_cache_fails_as_kfree_does(policy: str) -> None:
    world = World(policy)
    for addr in world.t:
        world.tcb.free(addr)
    world.slab.kmem_cache_destroy(world.tcb)
    before = slab_snapshot(world.slab)
    for cpu in (0, 99, "x"):  # the destroyed cache first, whatever else is wrong
        with pytest.raises(FreeToDestroyedCacheError, match="was destroyed") as caught:
            world.tcb.free(world.t[0], cpu=cpu)  # type: ignore[arg-type]
        assert isinstance(caught.value, NotAnObjectError | CacheDestroyedError)
    with pytest.raises(NotAnObjectError):
        world.slab.kfree(world.t[0])
    assert slab_snapshot(world.slab) == before


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_destroy_checks_and_tears_down_under_one_lock_hold(policy: str) -> None:
    """No allocation can land between the check for live objects and the teardown: both run
    with the cache lock held, and it is not released in between."""
    with pure_core():  # a plain threading.Lock, whose holding can be observed
        slab = SlabAllocator(BuddyAllocator(16 * MiB), policy=policy)
    cache = slab.kmem_cache_create("one", 512)
    cache.free(cache.alloc())
    events: list[str] = []
    lock = cache._lock
    acquire, release = cache._lock_acquire, cache._lock_release
    live, shrink = cache._live_objects, cache._shrink

    def counted(name: str, call: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            events.append(name if name in ("acquire", "release") or (
                isinstance(lock, type(threading.Lock())) and lock.locked()) else name + "?")
            return call()
        return run

    cache._lock_acquire = counted("acquire", acquire)  # type: ignore[assignment]
    cache._lock_release = counted("release", release)
    cache._live_objects = counted("live", live)  # type: ignore[method-assign]
    cache._shrink = counted("shrink", shrink)  # type: ignore[method-assign]
    slab.kmem_cache_destroy(cache)
    assert events == ["acquire", "live", "shrink", "release"]
    slab.check()


@pytest.mark.parametrize("policy", ["slub", "slab"])
@pytest.mark.parametrize("thread_safe", [True, False])
@pytest.mark.parametrize("reentry", ["alloc", "free", "kfree", "stats", "destroy"])
def test_a_constructor_that_reenters_its_cache_raises_instead_of_deadlocking(
        policy: str, thread_safe: bool, reentry: str) -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB), policy=policy, thread_safe=thread_safe)
    state: dict[str, Any] = {"armed": False}

    def ctor(view: memoryview) -> None:
        view[:4] = b"ctor"
        if state["armed"]:
            cache = state["cache"]
            calls: dict[str, Callable[[], object]] = {
             "alloc": lambda: cache.alloc(),
             "free": lambda: cache.free(state["object"]),
             "kfree": lambda: slab.kfree(state["object"]),
             "stats": lambda: cache.stats(),
             "destroy": lambda: slab.kmem_cache_destroy(cache)}
            calls[reentry]()

    cache = slab.kmem_cache_create("reenter", 1024, ctor=ctor)
    state["cache"] = cache
    state["object"] = cache.alloc()  # the first slab, built with the ctor unarmed
    objects = [state["object"]] + [cache.alloc() for _ in range(cache.objs_per_slab - 1)]
    free_pages = slab.buddy.nr_free_pages
    live = cache.live_objects()
    state["armed"] = True
    outcome: list[BaseException] = []

    def next_slab() -> None:
        try:
            cache.alloc()  # the slab is full: a new one, whose ctor calls back
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=next_slab, daemon=True)
    worker.start()
    worker.join(60)  # (a deadlock would hang here; the assertions do not depend on time)
    assert not worker.is_alive(), "the re-entrant constructor deadlocked"
    assert len(outcome) == 1 and isinstance(outcome[0], ConstructorReentryError), outcome
    assert "called back into its own cache" in str(outcome[0])
    assert slab.buddy.nr_free_pages == free_pages  # the new slab's pages went back
    assert cache.live_objects() == live
    slab.check()
    state["armed"] = False
    extra = cache.alloc()  # and the cache works on, lock free
    assert bytes(cache.view(extra)[:4]) == b"ctor"
    for address in [*objects, extra]:
        cache.free(address)
    slab.check()


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_closed_memory_refuses_every_allocation_and_free(policy: str) -> None:
    world = World(policy)
    slab = world.slab
    big = slab.kmalloc(1 << 16)
    empty = slab.kmem_cache_create("empty", 256)
    empty.free(empty.alloc())  # a destroy would give its slab back
    before = slab_snapshot(slab)
    slab.buddy.memory.close()
    calls: list[Callable[[], Any]] = [
        lambda: world.tcb.alloc(), lambda: world.tcb.free(world.t[0]),
        lambda: slab.kmalloc(64), lambda: slab.kmalloc(1 << 16), lambda: slab.kfree(world.k),
        lambda: slab.kfree(big), lambda: slab.kzalloc(8), lambda: slab.kmalloc_large(8192),
        lambda: slab.kmem_cache_alloc(world.pcb), lambda: slab.kmem_cache_create("new", 64),
        lambda: slab.buddy.alloc_pages(0), lambda: world.tcb.view(world.t[0]),
        lambda: world.tcb.shrink(), lambda: slab.shrink(), lambda: slab.synchronize_rcu(),
        lambda: slab.kmem_cache_destroy(empty), lambda: slab.kfree_rcu(world.k),
        lambda: world.tcb.rcu_barrier(),
    ]
    for call in calls:
        with pytest.raises(MemoryClosedError, match="physical memory was closed"):
            call()
    with pytest.raises(MemoryClosedError):
        SlabAllocator(slab.buddy)
    # everything but the bytes (gone with the mapping) is as it was
    assert slab_snapshot_without_bytes(slab) == before[:-1]
    slab.check()


def slab_snapshot_without_bytes(slab: SlabAllocator) -> tuple[Any, ...]:
    buddy = slab.buddy
    caches = []
    for cache in slab.cache_list():
        slabs = [(s.pfn, s.order, s.where, s.cpu, tuple(s.freelist), tuple(s.remote),
                  bytes(s.used)) for s in cache._slabs()]
        lists = [(where, cpu, s.pfn) for where, cpu, s in cache._lists()]
        caches.append((cache.name, tuple(slabs), tuple(lists), cache.stats(), cache.refcount,
                       tuple(cache.aliases)))
    return (bytes(buddy.mem_map.state), bytes(buddy.mem_map.owner), buddy.nr_free,
            tuple(tuple(buddy.free_blocks(o)) for o in range(buddy.max_order + 1)),
            tuple(caches), tuple(sorted(slab.caches)))


@pytest.mark.parametrize("page_size", [256 << 10, 1 << 20, 4 << 20])
def test_pages_too_large_for_slabs_are_refused_at_construction(page_size: int) -> None:
    """Linux's calculate_order gives -1 for kmalloc-8 on such pages (more than 32767 objects
    in one page): the allocator refuses at once, with the reason, instead of a ValueError."""
    buddy = BuddyAllocator(64 << 20, page_size=page_size)
    with pytest.raises(SlabPageSizeError, match="MAX_OBJS_PER_PAGE"):
        SlabAllocator(buddy)
    assert buddy.nr_free_pages == buddy.nr_pages
    SlabAllocator(BuddyAllocator(64 << 20, page_size=128 << 10)).kmalloc(100)  # the largest


def test_a_scenario_on_pages_too_large_for_slabs_names_its_line() -> None:
    from kmem.show.scenario import parse
    from kmem.show.scenario_run import run_all

    scenario = parse("memory 64M page 1M\nkmalloc a 100\n", "big.scn")
    with pytest.raises(SlabPageSizeError, match=r"^big.scn:2: pages of 1048576 bytes"):
        list(run_all(scenario))



@pytest.mark.parametrize("kernel", ["6.18", "7.0"])
def test_no_allocation_lands_on_a_sheaf_cache_being_destroyed(kernel: str) -> None:
    """A sheaf cache's teardown runs after the lock hold that checks it and marks it destroyed
    (kfree of its sheaves takes the lock): its main sheaves still hold objects then, and an
    allocation in that window must be refused, not served from them."""
    slab = SlabAllocator(BuddyAllocator(16 * MiB), kernel=kernel)
    cache = slab.kmem_cache_create("sheafy", 256, sheaf_capacity=8)
    for cpu in (0, 1):
        cache.free(cache.alloc(cpu), cpu)  # each CPU's main sheaf holds objects
    assert cache.stats().cpu_sheaf_objects > 0
    refused: list[str] = []
    shrink = cache.shrink

    def allocate_first() -> int:  # the window: destroyed, not yet torn down
        if not refused:  # (the first shrink; a second one gives back what RCU emptied)
            for cpu in (0, 1):
                with pytest.raises(KmemError, match="destroyed") as caught:
                    cache.alloc(cpu)
                refused.append(type(caught.value).__name__)
        return shrink()

    cache.shrink = allocate_first  # type: ignore[method-assign]
    slab.kmem_cache_destroy(cache)
    assert refused == ["CacheDestroyedError", "CacheDestroyedError"]
    slab.check()
