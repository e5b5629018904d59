"""kmalloc, kfree, ksize, krealloc, kzalloc, kcalloc and kmalloc_large on a SlabAllocator."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest

from kmem import (
    BuddyAllocator,
    InteriorPointerError,
    InvalidArgumentError,
    InvalidTypeError,
    NotAnObjectError,
    ObjectDoubleFreeError,
    OutOfMemoryError,
    SlabAllocator,
    parse_gfp_flags,
)
from kmem.page.gfp import (
    __GFP_ACCOUNT,
    __GFP_DMA,
    __GFP_RECLAIMABLE,
    __GFP_ZERO,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
)
from test_slab import slab_snapshot

PAIRS = Path(__file__).parent / "fixtures" / "kmalloc_trace_pairs_6.18.txt"
MiB = 1 << 20


@pytest.fixture(params=["slub", "slab"])
def slab(request: pytest.FixtureRequest) -> SlabAllocator:
    return SlabAllocator(BuddyAllocator(64 * MiB), nr_cpus=2, policy=request.param)


def _class_by_hand(size: int) -> int:
    """The smallest of Linux's kmalloc classes that holds ``size`` (8 .. 8192, 96 and 192)."""
    classes = sorted([8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192])
    return next(c for c in classes if c >= size)


def test_every_size_gets_the_smallest_class_that_holds_it(slab: SlabAllocator) -> None:
    for size in range(1, 8193):
        cache = slab.kmalloc_cache_for(size)
        assert cache is not None and cache.object_size == _class_by_hand(size), size
    addresses = [slab.kmalloc(size) for size in (1, 8, 9, 65, 96, 97, 129, 192, 193, 8192)]
    assert [slab.ksize(a) for a in addresses] == [8, 8, 16, 96, 96, 128, 192, 192, 256, 8192]
    for a in addresses:
        slab.kfree(a)
    slab.check()


def test_kmalloc_requests_follow_every_call(slab: SlabAllocator) -> None:
    # kmalloc_requests() sums its sizes' counts again only when a count moved: asked after
    # every call (kmem html's frames ask it often), it says each call the moment it is made.
    import random

    rng = random.Random(5)
    served: dict[str, list[int]] = {}
    for step in range(400):
        size = rng.choice((rng.randint(1, 300), rng.randint(1, 8192), 8192, 96))
        slab.kmalloc(size)
        name = slab.kmalloc_cache_for(size).name  # type: ignore[union-attr]
        served.setdefault(name, []).append(size)
        for cache_name in (name, "kmalloc-8k", "kmalloc-96")[: 1 + step % 3]:
            sizes = served.get(cache_name, [])
            cache = slab.caches[cache_name]
            assert cache.kmalloc_requests() == (len(sizes), sum(sizes),
                                                len(sizes) * cache.size), (step, cache_name)


def test_bytes_alloc_of_real_kmalloc_events(slab: SlabAllocator) -> None:
    """Every (bytes_req, bytes_alloc, gfp) kmalloc event of a real 6.18 trace: same bytes."""
    checked = 0
    for line in PAIRS.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        req, alloc, gfp_text = line.split()
        gfp = parse_gfp_flags(gfp_text)
        p = slab.kmalloc(int(req), gfp)
        assert slab.ksize(p) == int(alloc), line
        slab.kfree(p)
        checked += 1
    assert checked > 100
    slab.check()


@pytest.mark.parametrize(
    ("gfp", "name"),
    [
        (GFP_KERNEL, "kmalloc-64"),
        (GFP_KERNEL_ACCOUNT, "kmalloc-cg-64"),
        (GFP_KERNEL | __GFP_RECLAIMABLE, "kmalloc-rcl-64"),
        (GFP_KERNEL | __GFP_RECLAIMABLE | __GFP_ACCOUNT, "kmalloc-rcl-64"),
        (GFP_KERNEL | __GFP_DMA | __GFP_RECLAIMABLE | __GFP_ACCOUNT, "dma-kmalloc-64"),
    ],
)
def test_gfp_flags_choose_the_family(gfp: int, name: str) -> None:
    slab = SlabAllocator(BuddyAllocator(16 * MiB))
    p = slab.kmalloc(50, gfp)
    cache = slab.cache_of(p)
    assert cache is not None and cache.name == name
    assert cache.stats().objects == 1
    slab.kfree(p)
    slab.check()


def test_large_kmalloc_goes_to_the_buddy_allocator(slab: SlabAllocator) -> None:
    buddy = slab.buddy
    free = buddy.nr_free_pages
    p = slab.kmalloc(8193)  # get_order(8193) = 2
    assert p % 4096 == 0 and slab.ksize(p) == 16384
    assert buddy.nr_free_pages == free - 4
    assert slab.cache_of(p) is None
    assert slab.large_kmalloc_pages == 4
    slab.check()
    with pytest.raises(InteriorPointerError):
        slab.kfree(p + 4096)
    slab.kfree(p)
    assert buddy.nr_free_pages == free and slab.large_kmalloc_pages == 0
    with pytest.raises(NotAnObjectError):
        slab.kfree(p)  # its pages belong to nothing now
    with pytest.raises(InvalidArgumentError):
        slab.kmalloc((4096 << buddy.max_order) + 1)
    slab.check()


def test_null_and_zero_size(slab: SlabAllocator) -> None:
    snap = slab_snapshot(slab)
    slab.kfree(None)
    z = slab.kmalloc(0)
    assert z == slab.zero_size_ptr and z >= slab.buddy.memory.size
    assert slab.ksize(z) == 0
    slab.kfree(z)
    assert slab_snapshot(slab) == snap


def test_kzalloc_and_kcalloc_zero_the_object(slab: SlabAllocator) -> None:
    p = slab.kmalloc(100)
    slab.buddy.memory.view(p, 128)[:] = b"\xff" * 128
    slab.kfree(p)
    q = slab.kzalloc(100)
    assert q == p  # LIFO reuse of the dirty object
    assert bytes(slab.buddy.memory.view(q, 128)) == bytes(128)
    slab.buddy.memory.view(q, 128)[:] = b"\xff" * 128
    slab.kfree(q)
    r = slab.kcalloc(10, 12)
    assert r == q and slab.ksize(r) == 128
    assert bytes(slab.buddy.memory.view(r, 128)) == bytes(128)
    with pytest.raises(InvalidArgumentError):
        slab.kcalloc(1 << 40, 1 << 40)
    with pytest.raises(InvalidArgumentError):
        slab.kcalloc(-1, 8)
    slab.kfree(r)
    slab.check()


def test_krealloc_in_place_and_moving(slab: SlabAllocator) -> None:
    memory = slab.buddy.memory
    p = slab.kmalloc(100)
    memory.view(p, 100)[:] = bytes(range(100))
    assert slab.krealloc(p, 120) == p  # still fits kmalloc-128
    q = slab.krealloc(p, 300)
    assert q != p and slab.ksize(q) == 512
    assert bytes(memory.view(q, 100)) == bytes(range(100))
    with pytest.raises(ObjectDoubleFreeError):
        slab.kfree(p)  # krealloc freed the old object
    r = slab.krealloc(q, 20000)  # to a large kmalloc
    assert slab.ksize(r) == 32768 and bytes(memory.view(r, 100)) == bytes(range(100))
    assert slab.krealloc(r, 0) == slab.zero_size_ptr
    s = slab.krealloc(None, 10)
    assert slab.ksize(s) == 16
    slab.kfree(s)
    slab.check()
    # Everything is freed: no object lives, and every page is free or an empty cached slab's.
    assert sum(st.objects for st in slab.stats().values()) == 0
    assert slab.large_kmalloc_pages == 0
    assert slab.buddy.nr_free_pages + sum(c.pages_held() for c in slab.cache_list()) == (
        slab.buddy.nr_pages)


@pytest.mark.parametrize("size", [100, 128, 192, 4096, 8192, 20000])
def test_krealloc_to_the_size_it_holds_keeps_the_object(slab: SlabAllocator, size: int) -> None:
    """__do_krealloc moves only when new_size > ksize(p): up to the size class, p stays."""
    memory = slab.buddy.memory
    p = slab.kmalloc(size)
    held = slab.ksize(p)
    memory.view(p, size)[:] = bytes(i % 251 for i in range(size))
    before = slab_snapshot(slab)
    assert slab.krealloc(p, held) == p
    assert slab.krealloc(p, size) == p
    assert slab_snapshot(slab) == before  # no allocation, no free, no counter moved
    assert bytes(memory.view(p, size)) == bytes(i % 251 for i in range(size))
    q = slab.krealloc(p, held + 1)
    assert q != p and slab.ksize(q) > held
    slab.kfree(q)


def test_krealloc_gfp_zero_zeroes_the_tail_it_gives_up(slab: SlabAllocator) -> None:
    """With __GFP_ZERO (want_init_on_alloc), __do_krealloc clears [new_size, ksize) of an
    object it keeps; without it the old bytes stay; a moved object's new tail is zero."""
    memory = slab.buddy.memory
    p = slab.kmalloc(128)
    memory.view(p, 128)[:] = b"\xaa" * 128
    assert slab.krealloc(p, 100) == p
    assert bytes(memory.view(p, 128)) == b"\xaa" * 128
    assert slab.krealloc(p, 40, GFP_KERNEL | __GFP_ZERO) == p
    assert bytes(memory.view(p, 128)) == b"\xaa" * 40 + bytes(88)
    assert slab.krealloc(p, 128, GFP_KERNEL | __GFP_ZERO) == p  # nothing left to clear
    assert bytes(memory.view(p, 128)) == b"\xaa" * 40 + bytes(88)
    memory.view(p, 128)[:] = b"\xbb" * 128
    q = slab.krealloc(p, 300, GFP_KERNEL | __GFP_ZERO)
    assert q != p and bytes(memory.view(q, 512)) == b"\xbb" * 128 + bytes(384)
    slab.kfree(q)


def test_krealloc_rejects_a_negative_size_and_changes_nothing(slab: SlabAllocator) -> None:
    p = slab.kmalloc(100)
    before = slab_snapshot(slab)
    with pytest.raises(InvalidArgumentError):
        slab.krealloc(p, -1)
    assert slab_snapshot(slab) == before and slab.ksize(p) == 128
    slab.kfree(p)


@pytest.mark.parametrize("gfp", ["GFP_KERNEL", 1.5, None, -1])
@pytest.mark.parametrize("size", [64, 20000])
def test_bad_gfp_flags_raise_before_anything_changes(slab: SlabAllocator, size: int,
                                                     gfp: object) -> None:
    p = slab.kmalloc(100)
    before = slab_snapshot(slab)
    error = InvalidArgumentError if gfp == -1 else InvalidTypeError
    flags: Any = gfp
    for call in (slab.kmalloc, slab.kzalloc, partial(slab.kcalloc, 2), partial(slab.krealloc, p)):
        with pytest.raises(error):
            call(size, flags)
    assert slab_snapshot(slab) == before
    slab.kfree(p)


def test_kfree_finds_the_cache_from_the_address_alone(slab: SlabAllocator) -> None:
    tcb = slab.kmem_cache_create("tcb", 3072)
    a = tcb.alloc(cpu=1)
    b = slab.kmalloc(700, __GFP_ACCOUNT, cpu=1)
    slab.kfree(a, cpu=0)  # kfree works on any slab object, as in Linux
    slab.kfree(b)
    assert tcb.stats().objects == 0
    assert slab.caches["kmalloc-cg-1k"].stats().objects == 0
    slab.check()


@pytest.mark.parametrize(
    ("address", "error"),
    [
        (lambda s, p: p + 8, InteriorPointerError),
        (lambda s, p: 0x7FFFF000, NotAnObjectError),  # a free page: no cache
        (lambda s, p: -8, NotAnObjectError),
        (lambda s, p: s.buddy.memory.size, NotAnObjectError),
        (lambda s, p: "0x1000", InvalidTypeError),
        (lambda s, p: 1.5, InvalidTypeError),
    ],
)
def test_bad_kfree_changes_nothing(slab: SlabAllocator, address: object,
                                   error: type[Exception]) -> None:
    p = slab.kmalloc(64)
    snap = slab_snapshot(slab)
    bad = address(slab, p)  # type: ignore[operator]
    if isinstance(bad, int) and bad == 0x7FFFF000:
        bad = (slab.buddy.nr_pages - 1) << 12
    with pytest.raises(error):
        slab.kfree(bad)
    assert slab_snapshot(slab) == snap
    slab.kfree(p)
    slab.check()


def test_kmalloc_bad_arguments(slab: SlabAllocator) -> None:
    snap = slab_snapshot(slab)
    with pytest.raises(InvalidArgumentError):
        slab.kmalloc(-1)
    with pytest.raises(InvalidTypeError):
        slab.kmalloc(1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        slab.kmalloc(64, cpu=2)
    with pytest.raises(InvalidTypeError):
        slab.kmalloc(64, cpu="0")  # type: ignore[arg-type]
    assert slab_snapshot(slab) == snap


def test_kmalloc_out_of_memory(slab: SlabAllocator) -> None:
    small = SlabAllocator(BuddyAllocator(16 * 4096), policy=slab.policy)
    big = small.kmalloc(20000)  # order 3: half of memory
    with pytest.raises(OutOfMemoryError):
        small.kmalloc(40000)
    objs: list[int] = []
    with pytest.raises(OutOfMemoryError):
        while True:
            objs.append(small.kmalloc(4096))
    assert len(objs) == 8  # one order-3 slab of kmalloc-4k
    small.check()
    for o in objs:
        small.kfree(o)
    small.kfree(big)
    small.shrink()
    small.check()
    assert small.buddy.nr_free_pages == 16


def test_fragmentation_counters(slab: SlabAllocator) -> None:
    for size in (100, 100, 65, 8):
        slab.kmalloc(size)
    k128 = slab.caches["kmalloc-128"].stats()
    assert (k128.bytes_requested, k128.bytes_allocated) == (200, 256)
    k96 = slab.caches["kmalloc-96"].stats()
    assert (k96.bytes_requested, k96.bytes_allocated) == (65, 96)
    assert k96.internal_fragmentation == pytest.approx(1 - 65 / 96)


def _on_cpu_slab(slab: SlabAllocator, address: int, cpu: int) -> bool:
    """Is ``address`` in the cpu slab of ``cpu`` in its SLUB cache?"""
    cache = slab.cache_of(address)
    cpu_slab = cache._cpu_slab[cpu]  # type: ignore[union-attr]
    return cpu_slab is not None and cpu_slab.start <= address < cpu_slab.start + (
        4096 << cpu_slab.order)


def test_every_kmalloc_entry_point_works_on_the_cpu_it_is_given() -> None:
    slab = SlabAllocator(BuddyAllocator(64 * MiB), nr_cpus=2, policy="slub")
    for cpu in (1, 0):
        other = 1 - cpu
        for address in (slab.kmalloc(100, cpu=cpu), slab.kzalloc(100, cpu=cpu),
                        slab.kcalloc(2, 50, cpu=cpu), slab.krealloc(None, 100, cpu=cpu)):
            assert _on_cpu_slab(slab, address, cpu) and not _on_cpu_slab(slab, address, other)
        p = slab.kmalloc(100, cpu=cpu)
        fast = slab.caches["kmalloc-128"].stats().free_fastpath
        q = slab.krealloc(p, 300, cpu=cpu)  # moves: allocated on cpu, the old freed on cpu
        assert _on_cpu_slab(slab, q, cpu)
        assert slab.caches["kmalloc-128"].stats().free_fastpath == fast + 1
        r = slab.kmalloc(100, cpu=cpu)
        assert slab.krealloc(r, 0, cpu=cpu) == slab.zero_size_ptr
        assert slab.caches["kmalloc-128"].stats().free_fastpath == fast + 2
    # Without cpu=, CPU 0.
    assert _on_cpu_slab(slab, slab.kcalloc(3, 30), 0)
    assert _on_cpu_slab(slab, slab.krealloc(slab.kmalloc(40), 200), 0)


def test_krealloc_keeps_the_gfp_family_when_it_allocates() -> None:
    slab = SlabAllocator(BuddyAllocator(64 * MiB), nr_cpus=2, policy="slub")
    p = slab.krealloc(None, 100, GFP_KERNEL_ACCOUNT)
    assert slab.cache_of(p).name == "kmalloc-cg-128"  # type: ignore[union-attr]
    q = slab.krealloc(p, 300, GFP_KERNEL_ACCOUNT)
    assert slab.cache_of(q).name == "kmalloc-cg-512"  # type: ignore[union-attr]


def test_kcalloc_of_nothing_and_its_exact_errors(slab: SlabAllocator) -> None:
    assert slab.kcalloc(0, 8) == slab.zero_size_ptr == slab.kcalloc(8, 0)
    cases: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: slab.kcalloc(cast(Any, 1.5), 8), InvalidTypeError,
         "n must be an int, not float"),
        (lambda: slab.kcalloc(8, cast(Any, "8")), InvalidTypeError,
         "size must be an int, not str"),
        (lambda: slab.kcalloc(-1, 8), InvalidArgumentError, "kcalloc n must be >= 0, got -1"),
        (lambda: slab.kcalloc(8, -2), InvalidArgumentError,
         "kcalloc size must be >= 0, got -2"),
        (lambda: slab.kcalloc(1 << 32, 1 << 32), InvalidArgumentError,  # exactly 2**64
         r"kcalloc\(4294967296, 4294967296\) overflows size_t"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=f"^{message}$"):
            call()
    p = slab.kmalloc(10)
    with pytest.raises(InvalidTypeError, match=r"^size must be an int, not float$"):
        slab.krealloc(p, cast(Any, 1.5))
    with pytest.raises(InvalidArgumentError, match=r"^krealloc size must be >= 0, got -1$"):
        slab.krealloc(p, -1)
    slab.kfree(p)


def test_kmalloc_errors_say_exactly_what_is_wrong(slab: SlabAllocator) -> None:
    size = slab.buddy.memory.size
    large = slab.kmalloc(20000)  # 5 pages: an order-3 block
    free_page = slab.buddy.alloc_pages(0) << 12
    slab.buddy.free_pages(free_page >> 12, 0)
    cases: list[tuple[Callable[[], object], type[Exception], str]] = [
        (lambda: slab.kmalloc(cast(Any, 1.5)), InvalidTypeError, "size must be an int, not float"),
        (lambda: slab.kmalloc(-1), InvalidArgumentError, "kmalloc size must be >= 0, got -1"),
        (lambda: slab.kmalloc(64, cast(Any, 1.5)), InvalidTypeError,
         "gfp flags must be an int, not float"),
        (lambda: slab.kzalloc(64, cast(Any, "x")), InvalidTypeError,
         "gfp flags must be an int, not str"),
        (lambda: slab.kmalloc_cache_for(cast(Any, 1.5)), InvalidTypeError,
         "size must be an int, not float"),
        (lambda: slab.kfree(cast(Any, 1.5)), InvalidTypeError,
         "address must be an int or None, not float"),
        (lambda: slab.kfree(size), NotAnObjectError,
         rf"address {size:#x} lies outside memory \[0, {size:#x}\)"),
        (lambda: slab.kfree(large + 8), InteriorPointerError,
         rf"address {large + 8:#x} lies inside the large kmalloc block at pfn {large >> 12:#x},"
         " not at its start"),
        (lambda: slab.kfree(large + 4096), InteriorPointerError,
         rf"address {large + 4096:#x} lies inside the large kmalloc block at pfn"
         rf" {large >> 12:#x}, not at its start"),
        (lambda: slab.kfree(free_page), NotAnObjectError,
         rf"address {free_page:#x} is neither a slab object nor a large kmalloc block \(page"
         rf" {free_page >> 12:#x} belongs to no cache\)"),
        (lambda: slab.ksize(large + 8), InteriorPointerError,
         f"address {large + 8:#x} is not a large kmalloc block start"),
        (lambda: slab.ksize(large + 4096), InteriorPointerError,
         f"address {large + 4096:#x} is not a large kmalloc block start"),
        (lambda: slab.cache_of(cast(Any, 1.5)), InvalidTypeError,
         "address must be an int, not float"),
        (lambda: slab.cache_of(size), NotAnObjectError,
         rf"address {size:#x} lies outside memory \[0, {size:#x}\)"),
        (lambda: slab.cache_of(free_page), NotAnObjectError,
         f"address {free_page:#x} is not in a slab or kmalloc block"),
        (lambda: slab.kmalloc(8 << 20), InvalidArgumentError,  # order 11 > max_order 10
         r"kmalloc of 8388608 bytes needs order 11, above max_order 10 \(KMALLOC_MAX_SIZE"
         r" 4194304\)"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=f"^{message}$"):
            call()
    slab.kfree(slab.kmalloc(4 << 20))  # KMALLOC_MAX_SIZE itself: order 10 is fine
    slab.kfree(large)
    assert slab.kmalloc_cache_for(0) is None
    slab.check()


def test_kmalloc_counts_requests_and_large_blocks(slab: SlabAllocator) -> None:
    assert (slab.large_kmalloc_bytes, slab.large_kmalloc_pages) == ((0, 0), 0)
    assert slab.cache_of(slab.kmalloc(8192)).name == "kmalloc-8k"  # type: ignore[union-attr]
    for gfp, name in ((GFP_KERNEL, "kmalloc-128"), (GFP_KERNEL_ACCOUNT, "kmalloc-cg-128")):
        before = slab.caches[name].stats()
        slab.kmalloc(128, gfp)  # the class size itself is one of the sizes it serves
        slab.kmalloc(100, gfp)
        after = slab.caches[name].stats()
        assert after.bytes_requested - before.bytes_requested == 228
        assert after.bytes_allocated - before.bytes_allocated == 256
    a, b = slab.kmalloc(20000), slab.kmalloc(40000)
    assert slab.large_kmalloc_bytes == (60000, 32768 + 65536)
    assert slab.large_kmalloc_pages == 8 + 16
    slab.kfree(a)
    assert slab.large_kmalloc_pages == 16 and slab.large_kmalloc_bytes == (60000, 98304)
    slab.kfree(b)


def test_without_gfp_zero_old_bytes_stay(slab: SlabAllocator) -> None:
    """Linux zeroes only for __GFP_ZERO (init_on_alloc is off by default): a reused object or
    block keeps what was written there."""
    memory = slab.buddy.memory
    for size, gfp in ((100, GFP_KERNEL_ACCOUNT), (20000, GFP_KERNEL)):
        p = slab.kmalloc(size, gfp)
        memory.view(p, size)[:] = b"\xaa" * size
        slab.kfree(p)
        q = slab.kmalloc(size, gfp)
        assert q == p and bytes(memory.view(q, size)) == b"\xaa" * size
        slab.kfree(q)


def test_large_kmalloc_orders_follow_the_page_size() -> None:
    slab = SlabAllocator(BuddyAllocator(64 * MiB, page_size=16384), nr_cpus=2)
    p = slab.kmalloc(40000)  # get_order(40000) with 16 KiB pages is 2
    assert slab.ksize(p) == 65536
    slab.kfree(p)


def test_ksize_is_linux_slab_ksize() -> None:
    """slab_ksize: the object size with red zones or poison, the inuse bytes with RCU or
    STORE_USER (the free pointer or tracking follow them), else the whole slot."""
    from kmem.slab.flags import (
        SLAB_POISON,
        SLAB_RED_ZONE,
        SLAB_STORE_USER,
        SLAB_TYPESAFE_BY_RCU,
    )

    # Worked out from mm/slub.c calculate_sizes for a 100-byte object on x86-64 (words of 8):
    # plain: the slot, 104; red zone or poison: the object, 100; STORE_USER: inuse 104 (the
    # free pointer stays inside the object), then two struct tracks (2 x 32 with
    # CONFIG_STACKDEPOT) in a slot of 168; SLAB_TYPESAFE_BY_RCU: inuse 104, the free pointer
    # moved after the object, slot 112.
    slab = SlabAllocator(BuddyAllocator(64 * MiB), nr_cpus=2)
    for flags, ksize, slot in ((0, 104, 104), (SLAB_RED_ZONE, 100, None),
                               (SLAB_POISON, 100, None), (SLAB_STORE_USER, 104, 168),
                               (SLAB_TYPESAFE_BY_RCU, 104, 112)):
        cache = slab.kmem_cache_create(f"k{flags}", 100, flags=flags)
        address = cache.alloc()
        assert slab.ksize(address) == ksize, flags
        if slot is not None:
            assert cache.size == slot, flags
        cache.free(address)


def test_kfree_works_on_the_cpu_it_is_given() -> None:
    slab = SlabAllocator(BuddyAllocator(64 * MiB), nr_cpus=2, policy="slub")
    p = slab.kmalloc(100, cpu=1)
    fast = slab.caches["kmalloc-128"].stats().free_fastpath
    slab.kfree(p, cpu=1)  # onto CPU 1's own cpu slab: the fast path
    assert slab.caches["kmalloc-128"].stats().free_fastpath == fast + 1
