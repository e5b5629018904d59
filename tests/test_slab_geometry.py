"""Cache geometry: calculate_geometry() against a real Linux 6.18 machine and hand derivations.

The fixture tests/fixtures/sys_kernel_slab_6.18_2cpu.json was exported from /sys/kernel/slab of a
2-CPU Linux 6.18 machine by tools/export_sys_kernel_slab.py; every real cache (not a symlink
alias) must be reproduced. The hand-derived examples spell out the arithmetic of mm/slub.c.
"""

from __future__ import annotations

import doctest
import json
from types import ModuleType
from typing import Any, cast

import pytest
from hypothesis import given, strategies as st

from fixture_files import SYS_KERNEL_SLAB, SYSFS_FLAG_FILES
from kmem import InvalidArgumentError, InvalidTypeError
from kmem.page import gfp
from kmem.slab import (
    flags as slab_flags,
    geometry as slab_geometry,
    kmalloc_sizes,
    merge as slab_merge,
)
from kmem.slab.flags import (
    SLAB_CACHE_DMA,
    SLAB_CACHE_DMA32,
    SLAB_CONSISTENCY_CHECKS,
    SLAB_DEBUG_FLAGS,
    SLAB_HWCACHE_ALIGN,
    SLAB_KMALLOC,
    SLAB_OBJECT_POISON,
    SLAB_POISON,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLAB_TRACE,
    SLAB_TYPESAFE_BY_RCU,
)
from kmem.slab.geometry import (
    CacheGeometry,
    calculate_alignment,
    calculate_geometry,
    calculate_order,
)

FIXTURE = SYS_KERNEL_SLAB
# Arguments sysfs does not show, taken from the kernel source. vm_area_struct (mm/vma_init.c) is
# SLAB_TYPESAFE_BY_RCU with .use_freeptr_offset: its free pointer lives in vm_freeptr, a union
# with vm_start at offset 0, so the slot needs no extra word after the object.
SOURCE_ARGUMENTS: dict[str, dict[str, int]] = {"vm_area_struct": {"freeptr_offset": 0}}
SYSFS_OUTPUTS = ("slab_size", "align", "objs_per_slab", "order", "min_partial", "cpu_partial")


def _load_fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def sysfs_flags(cache: dict[str, Any]) -> int:
    """The cache's flags as far as sysfs shows them."""
    flags = 0
    for name, flag in SYSFS_FLAG_FILES.items():
        if cache[name]:
            flags |= flag
    return flags


def is_kmalloc_cache(name: str) -> bool:
    return name.startswith(("kmalloc-", "dma-kmalloc-"))


def geometry_of(cache: dict[str, Any], nr_cpus: int) -> CacheGeometry:
    """calculate_geometry() with the inputs sysfs shows for one cache."""
    return calculate_geometry(
        cache["object_size"],
        align=cache["align"],
        flags=sysfs_flags(cache),
        has_ctor=cache["ctor"],
        nr_cpus=nr_cpus,
        usersize=cache["usersize"],
        is_kmalloc=is_kmalloc_cache(cache["name"]),
        **SOURCE_ARGUMENTS.get(cache["name"], {}),
    )


def sysfs_view(geometry: CacheGeometry) -> dict[str, int]:
    return {
        "slab_size": geometry.slab_size,
        "align": geometry.align,
        "objs_per_slab": geometry.objs_per_slab,
        "order": geometry.order,
        "min_partial": geometry.min_partial,
        "cpu_partial": geometry.cpu_partial,
    }


def test_fixture_is_a_2cpu_machine_with_many_caches() -> None:
    data = _load_fixture()
    assert data["nr_cpus"] == 2
    assert data["page_size"] == 4096
    assert data["kernel"].startswith("6.")
    assert len(data["caches"]) > 200


def test_every_cache_of_the_real_machine_is_reproduced() -> None:
    data = _load_fixture()
    mismatches = []
    for cache in data["caches"]:
        got = sysfs_view(geometry_of(cache, data["nr_cpus"]))
        expected = {name: cache[name] for name in SYSFS_OUTPUTS}
        if got != expected:
            mismatches.append((cache["name"], expected, got))
    assert mismatches == [], f"{len(mismatches)} of {len(data['caches'])} caches differ"


def test_kmalloc_caches_reproduced_without_giving_their_alignment() -> None:
    # kmalloc caches get their alignment from their size alone (create_boot_cache), so with
    # align=0 the rule must find sysfs's align, not just echo it back.
    data = _load_fixture()
    kmalloc_caches = [c for c in data["caches"] if is_kmalloc_cache(c["name"])]
    assert len(kmalloc_caches) == 52
    for cache in kmalloc_caches:
        geometry = calculate_geometry(
            cache["object_size"],
            flags=sysfs_flags(cache),
            nr_cpus=2,
            usersize=cache["usersize"],
            is_kmalloc=True,
        )
        expected = {name: cache[name] for name in SYSFS_OUTPUTS}
        assert sysfs_view(geometry) == expected, cache["name"]


def test_most_caches_reproduced_from_their_flags_alone() -> None:
    # Most callers pass align 0 and let SLAB_HWCACHE_ALIGN decide: with align=0 the rules must
    # find sysfs's align by themselves for at least nine caches out of ten.
    data = _load_fixture()
    found = 0
    for cache in data["caches"]:
        geometry = calculate_geometry(
            cache["object_size"],
            flags=sysfs_flags(cache),
            has_ctor=cache["ctor"],
            nr_cpus=2,
            usersize=cache["usersize"],
            is_kmalloc=is_kmalloc_cache(cache["name"]),
            **SOURCE_ARGUMENTS.get(cache["name"], {}),
        )
        found += geometry.align == cache["align"] and geometry.slab_size == cache["slab_size"]
        # An explicit align can only raise the alignment the flags give, by a power of two.
        assert cache["align"] % geometry.align == 0, cache["name"]
    assert found >= 0.9 * len(data["caches"])


@pytest.mark.parametrize(
    ("object_size", "kwargs", "expected"),
    [
        # task_struct 5840, hwcache: align 64; 5840 -> 5888 (ALIGN 64); min_objects 12 capped at
        # 32768 // 5888 = 5; get_order(5 * 5888 = 29440) = 3; 32768 % 5888 = 3328 > 2048 (1/16)
        # but <= 4096 (1/8): order 3, 5 objects.
        (5840, {"flags": SLAB_HWCACHE_ALIGN}, (5888, 64, 5, 3)),
        # inode_cache 616 with a ctor: 616 -> 616, free pointer after it -> 624; get_order(12 *
        # 624 = 7488) = 1; 8192 % 624 = 80 <= 512: order 1, 13 objects.
        (616, {"has_ctor": True}, (624, 8, 13, 1)),
        # kmalloc-96: align 32 (largest power of two dividing 96); 12 * 96 = 1152 -> order 0;
        # 4096 % 96 = 64 <= 256: order 0, 42 objects.
        (96, {"is_kmalloc": True}, (96, 32, 42, 0)),
        # kmalloc-4k: 12 * 4096 capped at 32768 // 4096 = 8 objects -> order 3, no waste.
        (4096, {"is_kmalloc": True}, (4096, 4096, 8, 3)),
        # 3 KB TCB without flags: 3072; 12 * 3072 = 36864 capped at 10 objects = 30720 -> order 3;
        # 32768 % 3072 = 2048 <= 2048: order 3, 10 objects.
        (3 * 1024, {}, (3072, 8, 10, 3)),
        # 7 KB PCB, hwcache: 7168 (a multiple of 64); max 4 objects -> get_order(28672) = 3;
        # 32768 % 7168 = 4096 > 2048 but <= 4096: order 3, 4 objects.
        (7 * 1024, {"flags": SLAB_HWCACHE_ALIGN}, (7168, 64, 4, 3)),
    ],
)
def test_hand_derived_examples(
    object_size: int, kwargs: dict[str, Any], expected: tuple[int, int, int, int]
) -> None:
    g = calculate_geometry(object_size, nr_cpus=2, **kwargs)
    assert (g.size, g.align, g.objs_per_slab, g.order) == expected


def test_hwcache_alignment_halves_for_small_objects() -> None:
    # cache line 64, halved while the object fits in half: 20 -> 32, 32 -> 32, 33 -> 64, 8 -> 8.
    assert calculate_alignment(SLAB_HWCACHE_ALIGN, 0, 20) == 32
    assert calculate_alignment(SLAB_HWCACHE_ALIGN, 0, 32) == 32
    assert calculate_alignment(SLAB_HWCACHE_ALIGN, 0, 33) == 64
    assert calculate_alignment(SLAB_HWCACHE_ALIGN, 0, 8) == 8
    assert calculate_alignment(0, 0, 20) == 8
    assert calculate_alignment(0, 4, 20) == 8  # never below a word
    assert calculate_alignment(SLAB_HWCACHE_ALIGN, 128, 20) == 128  # an explicit larger align wins


def test_kmalloc_alignment_is_the_largest_power_of_two_of_the_size() -> None:
    # create_boot_cache: kmalloc-96 is 32-aligned, kmalloc-4k 4096-aligned, kmalloc-8 8
    assert calculate_alignment(0, 0, 96, is_kmalloc=True) == 32
    assert calculate_alignment(0, 0, 4096, is_kmalloc=True) == 4096
    assert calculate_alignment(0, 0, 8, is_kmalloc=True) == 8
    assert calculate_alignment(0, 0, 96) == 8  # (not a kmalloc cache: a word)


def test_free_pointer_inside_the_object_by_default() -> None:
    g = calculate_geometry(100)
    # ALIGN_DOWN(100 / 2, 8) = 48; no word added after the object.
    assert (g.offset, g.inuse, g.size) == (48, 104, 104)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"has_ctor": True},
        {"flags": SLAB_POISON},
        {"flags": SLAB_TYPESAFE_BY_RCU},
    ],
)
def test_free_pointer_moves_after_the_object_when_the_object_must_stay_intact(
    kwargs: dict[str, Any],
) -> None:
    g = calculate_geometry(100, **kwargs)
    assert g.offset == 104  # after ALIGN(100, 8)
    assert g.inuse == 104
    assert g.size == 112


def test_freeptr_offset_keeps_an_rcu_cache_compact() -> None:
    g = calculate_geometry(192, flags=SLAB_TYPESAFE_BY_RCU | SLAB_HWCACHE_ALIGN, freeptr_offset=0)
    assert (g.offset, g.size) == (0, 192)
    without = calculate_geometry(192, flags=SLAB_TYPESAFE_BY_RCU | SLAB_HWCACHE_ALIGN)
    assert (without.offset, without.size) == (192, 256)


def test_full_debug_layout_of_kmalloc_64() -> None:
    # SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER on kmalloc-64 (align 64):
    # 64 -> +8 right red zone (size == object_size) = 72 = inuse; poison: free pointer at 72,
    # size 80; two 32-byte tracks = 144; kmalloc keeps the request size (4 bytes): 148; red
    # zone word 156; left pad ALIGN(8, 64) = 64: 220; ALIGN(220, 64) = 256.
    flags = SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER
    g = calculate_geometry(64, flags=flags, is_kmalloc=True, nr_cpus=2)
    assert (g.inuse, g.offset, g.red_left_pad, g.size, g.align) == (72, 72, 64, 256, 64)
    assert g.flags & SLAB_OBJECT_POISON
    assert g.flags & SLAB_KMALLOC
    assert g.cpu_partial == 0 and g.cpu_partial_slabs == 0  # debug caches have no cpu partial
    assert g.is_debug


def test_red_zone_on_a_tiny_object_moves_the_free_pointer_out() -> None:
    # object 4 -> 8 (rounded, so no extra word for the right red zone); the free pointer cannot
    # sit inside 4 bytes: offset 8, +8 = 16; red zone word 24; left pad 8: 32.
    g = calculate_geometry(4, flags=SLAB_RED_ZONE)
    assert (g.inuse, g.offset, g.red_left_pad, g.size) == (8, 8, 8, 32)


def test_poison_with_a_ctor_is_not_object_poison() -> None:
    assert not calculate_geometry(64, flags=SLAB_POISON, has_ctor=True).flags & SLAB_OBJECT_POISON
    assert not calculate_geometry(
        64, flags=SLAB_POISON | SLAB_TYPESAFE_BY_RCU
    ).flags & SLAB_OBJECT_POISON


@pytest.mark.parametrize(
    ("nr_cpus", "min_objects"), [(1, 8), (2, 12), (3, 12), (4, 16), (8, 20), (64, 28)]
)
def test_min_objects_grows_with_the_number_of_cpus(nr_cpus: int, min_objects: int) -> None:
    # min_objects = 4 * (fls(nr_cpus) + 1); for 512-byte objects the preferred order is the
    # order of min_objects objects (no waste at any order).
    expected_order = max(0, (min_objects * 512 - 1) // 4096).bit_length()
    assert calculate_order(512, nr_cpus=nr_cpus) == expected_order
    assert calculate_order(512, nr_cpus=1, min_objects=min_objects) == expected_order


def test_one_present_cpu_uses_nr_cpu_ids() -> None:
    # Linux distrusts a single present CPU and uses nr_cpu_ids instead.
    assert calculate_order(512, nr_cpus=1, nr_cpu_ids=8) == calculate_order(512, nr_cpus=8)
    # 512-byte objects: 8 CPUs -> min_objects 20 -> 10240 bytes -> order 2; alone: 8 -> order 0.
    assert calculate_geometry(512, nr_cpus=1, nr_cpu_ids=8).order == 2
    assert calculate_geometry(512, nr_cpus=1).order == 0
    assert calculate_geometry(512, nr_cpus=2, nr_cpu_ids=8).order == 1  # 12 * 512 = 6144


def test_boot_parameters_min_objects_and_max_order() -> None:
    assert calculate_geometry(512, min_objects=64).order == 3  # 64 * 512 = 32 KiB
    # slub_max_order=0: 5840 -> 5888 cannot fit order 0, so the order of one object (1).
    g = calculate_geometry(5840, flags=SLAB_HWCACHE_ALIGN, nr_cpus=2, max_order=0)
    assert (g.order, g.objs_per_slab) == (1, 1)


def test_min_order_and_min_objects_are_the_fallback_slab() -> None:
    g = calculate_geometry(5888 - 48, flags=SLAB_HWCACHE_ALIGN, nr_cpus=2)
    assert g.min_order == 1  # get_order(5888)
    assert g.min_objs_per_slab == 8192 // 5888
    small = calculate_geometry(64)
    assert (small.min_order, small.min_objs_per_slab) == (0, 64)


def test_objects_above_the_costly_order_take_the_order_of_one_object() -> None:
    g = calculate_geometry(40000, nr_cpus=2)
    assert (g.order, g.objs_per_slab, g.size) == (4, 1, 40000)


def test_cpu_partial_slabs_assume_half_full_slabs() -> None:
    g = calculate_geometry(96, is_kmalloc=True, nr_cpus=2)
    assert g.cpu_partial == 120
    assert g.cpu_partial_slabs == -(-240 // 42)  # DIV_ROUND_UP(2 * 120, 42) = 6


# ---- invariants over many inputs -------------------------------------------------------------


def _reference_order(size: int, nr_cpus: int) -> int:
    """An independent formulation of calculate_order: rank every allowed order by (first waste
    fraction it satisfies, order) and take the best."""
    min_objects = 4 * (nr_cpus.bit_length() + 1)
    min_objects = min(min_objects, max(32768 // size, 1))
    pages = -(-min_objects * size // 4096)
    min_order = max(0, (pages - 1).bit_length())
    candidates = []
    for order in range(min_order, 4):
        slab = 4096 << order
        for rank, fraction in enumerate((16, 8, 4, 2)):
            if slab % size <= slab // fraction:
                candidates.append((rank, order))
                break
    if candidates:
        return min(candidates)[1]
    return max(0, (-(-size // 4096) - 1).bit_length())


@given(
    object_size=st.integers(1, (4 << 20) - 4096),
    align_shift=st.integers(0, 12),
    use_align=st.booleans(),
    flags=st.sampled_from(
        [
            0,
            SLAB_HWCACHE_ALIGN,
            SLAB_RED_ZONE,
            SLAB_POISON,
            SLAB_STORE_USER,
            SLAB_TYPESAFE_BY_RCU,
            SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_CONSISTENCY_CHECKS,
            SLAB_RECLAIM_ACCOUNT | SLAB_HWCACHE_ALIGN,
        ]
    ),
    has_ctor=st.booleans(),
    nr_cpus=st.integers(1, 256),
)
def test_geometry_invariants(
    object_size: int,
    align_shift: int,
    use_align: bool,
    flags: int,
    has_ctor: bool,
    nr_cpus: int,
) -> None:
    align = (1 << align_shift) if use_align else 0
    g = calculate_geometry(
        object_size, align=align, flags=flags, has_ctor=has_ctor, nr_cpus=nr_cpus
    )
    assert g.align % 8 == 0 and g.align >= max(align, 8)
    assert g.size % g.align == 0
    assert g.object_size <= g.inuse <= g.size
    assert g.offset + 8 <= g.size
    assert g.objs_per_slab == (4096 << g.order) // g.size >= 1
    assert g.min_order <= g.order
    assert g.min_objs_per_slab >= 1
    assert 5 <= g.min_partial <= 10
    assert (g.cpu_partial == 0) == bool(flags & SLAB_DEBUG_FLAGS)
    assert g.order == _reference_order(g.size, nr_cpus)


# ---- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((64.0,), {}, InvalidTypeError, "object_size must be an int"),
        ((True,), {}, InvalidTypeError, "object_size must be an int"),
        (("64",), {}, InvalidTypeError, "object_size must be an int"),
        ((0,), {}, InvalidArgumentError, "object_size must be >= 1"),
        ((-8,), {}, InvalidArgumentError, "object_size must be >= 1"),
        (((4 << 20) + 1,), {}, InvalidArgumentError, "KMALLOC_MAX_SIZE"),
        ((64,), {"align": 24}, InvalidArgumentError, "power of two"),
        ((64,), {"align": -8}, InvalidArgumentError, "align must be >= 0"),
        ((64,), {"flags": 1 << 30}, InvalidArgumentError, "unknown slab flags"),
        ((64,), {"flags": SLAB_CACHE_DMA | SLAB_CACHE_DMA32}, InvalidArgumentError, "exclude"),
        ((64,), {"has_ctor": 1}, InvalidTypeError, "has_ctor"),
        ((64,), {"nr_cpus": 0}, InvalidArgumentError, "nr_cpus must be >= 1"),
        ((64,), {"nr_cpus": 4, "nr_cpu_ids": 2}, InvalidArgumentError, "nr_cpu_ids must be >= 4"),
        ((64,), {"max_order": 11}, InvalidArgumentError, "max_order must be <= 10"),
        ((64,), {"min_objects": -1}, InvalidArgumentError, "min_objects must be >= 0"),
        ((64,), {"page_size": 1000}, InvalidArgumentError, "page_size"),
        ((64,), {"page_size": 8}, InvalidArgumentError, "page_size"),
        ((64,), {"page_size": 4096.0}, InvalidTypeError, "page_size"),
        ((64,), {"useroffset": 8}, InvalidArgumentError, "without a usersize"),
        ((64,), {"usersize": 65}, InvalidArgumentError, "outside"),
        ((64,), {"useroffset": 32, "usersize": 40}, InvalidArgumentError, "outside"),
        ((64,), {"freeptr_offset": 8}, InvalidArgumentError, "SLAB_TYPESAFE_BY_RCU"),
        (
            (64,),
            {"freeptr_offset": 12, "flags": SLAB_TYPESAFE_BY_RCU},
            InvalidArgumentError,
            "multiple of 8",
        ),
        (
            (64,),
            {"freeptr_offset": 64, "flags": SLAB_TYPESAFE_BY_RCU},
            InvalidArgumentError,
            "outside",
        ),
    ],
)
def test_bad_arguments_get_specific_errors(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        calculate_geometry(*args, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"size": 0}, InvalidArgumentError, "size must be >= 1, not 0"),
        ({"size": -8}, InvalidArgumentError, "size must be >= 1, not -8"),
        ({"size": 64.0}, InvalidTypeError, "size must be an int, not float"),
        ({"size": True}, InvalidTypeError, "size must be an int, not bool"),
        ({"nr_cpus": 0}, InvalidArgumentError, "nr_cpus must be >= 1, not 0"),
        ({"nr_cpus": "2"}, InvalidTypeError, "nr_cpus must be an int, not str"),
        ({"page_size": 1000}, InvalidArgumentError, "page_size"),
        ({"page_size": 4096.0}, InvalidTypeError, "page_size must be an int, not float"),
        ({"min_objects": -1}, InvalidArgumentError, "min_objects must be >= 0, not -1"),
        ({"min_order": -1}, InvalidArgumentError, "min_order must be >= 0, not -1"),
        ({"min_order": 11}, InvalidArgumentError, "min_order must be <= 10, not 11"),
        ({"max_order": 11}, InvalidArgumentError, "max_order must be <= 10, not 11"),
        ({"max_order": None}, InvalidTypeError, "max_order must be an int, not NoneType"),
        ({"nr_cpus": 4, "nr_cpu_ids": 2}, InvalidArgumentError,
         "nr_cpu_ids must be >= 4, not 2"),
    ],
)
def test_calculate_order_refuses_bad_arguments(kwargs: dict[str, Any], error: type[Exception],
                                               message: str) -> None:
    # (before: size 0 divided by zero, a float page size crashed in bit_length, an order past
    # MAX_PAGE_ORDER or a negative one was taken as asked)
    arguments: dict[str, Any] = {"size": 64, **kwargs}
    with pytest.raises(error, match=message):
        calculate_order(**arguments)
    # (the bounds themselves are taken)
    assert calculate_order(4096, nr_cpus=4, nr_cpu_ids=4, min_order=10, max_order=10) == 10


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((-1, 0, 64), {}, InvalidArgumentError, "flags must be >= 0, not -1"),
        ((0, -8, 64), {}, InvalidArgumentError, "align must be >= 0, not -8"),
        ((0, 0, 0), {}, InvalidArgumentError, "size must be >= 1, not 0"),
        ((0.0, 0, 64), {}, InvalidTypeError, "flags must be an int, not float"),
        ((0, None, 64), {}, InvalidTypeError, "align must be an int, not NoneType"),
        ((0, 0, "64"), {}, InvalidTypeError, "size must be an int, not str"),
        ((0, 0, 64), {"is_kmalloc": 1}, InvalidTypeError, "is_kmalloc must be a bool, not int"),
    ],
)
def test_calculate_alignment_refuses_bad_arguments(args: tuple[Any, ...], kwargs: dict[str, Any],
                                                   error: type[Exception], message: str) -> None:
    # (before: size 0 aligned to 0 & -0, a float flag word crashed in &, None in max())
    with pytest.raises(error, match=message):
        calculate_alignment(*args, **kwargs)


def test_a_slot_larger_than_the_largest_block_is_refused() -> None:
    # 4 MiB - 7 rounds up to 4 MiB; a ctor puts the free pointer after the object, so the slot
    # is 4 MiB + 8, more than an order-10 block: Linux's calculate_sizes() fails, and so do we.
    with pytest.raises(InvalidArgumentError, match="do not fit"):
        calculate_geometry((4 << 20) - 7, has_ctor=True)
    assert calculate_geometry(4 << 20).order == 10


def test_small_simulated_pages_scale_the_rules() -> None:
    # 256-byte pages: 12 objects of 64 bytes need 768 bytes -> order 2 (1 KiB), no waste.
    g = calculate_geometry(64, nr_cpus=2, page_size=256)
    assert (g.order, g.objs_per_slab, g.slab_bytes) == (2, 16, 1024)
    assert g.cpu_partial == 120  # 64 < 256: the small-object limit


def test_geometry_is_frozen() -> None:
    g = calculate_geometry(64)
    with pytest.raises(AttributeError):
        g.size = 128  # type: ignore[misc]


# ---- docstring examples (the docs' examples run in tests/test_docs.py) -----------------------


@pytest.mark.parametrize("module", [slab_geometry, kmalloc_sizes, slab_merge, slab_flags, gfp])
def test_docstring_examples_run(module: ModuleType) -> None:
    results = doctest.testmod(module)
    assert results.failed == 0


def test_slab_flags_are_single_distinct_bits_in_linux_enum_order() -> None:
    # Linux numbers them by enum _slab_flag_bits: consecutive bits from 0 in this order (for
    # this config: no DEBUG_OBJECTS, FAILSLAB, KASAN or KFENCE bits).
    order = [
        "SLAB_CONSISTENCY_CHECKS", "SLAB_RED_ZONE", "SLAB_POISON", "SLAB_KMALLOC",
        "SLAB_HWCACHE_ALIGN", "SLAB_CACHE_DMA", "SLAB_CACHE_DMA32", "SLAB_STORE_USER",
        "SLAB_PANIC", "SLAB_TYPESAFE_BY_RCU", "SLAB_TRACE", "SLAB_NOLEAKTRACE", "SLAB_NO_MERGE",
        "SLAB_ACCOUNT", "SLAB_NO_USER_FLAGS", "SLAB_RECLAIM_ACCOUNT", "SLAB_OBJECT_POISON",
        "SLAB_CMPXCHG_DOUBLE", "SLAB_NO_OBJ_EXT",
    ]  # fmt: skip
    assert [slab_flags.SLAB_FLAG_NAMES[name] for name in order] == [
        1 << bit for bit in range(len(order))
    ]
    assert slab_flags.SLAB_DEBUG_FLAGS == (
        SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE | SLAB_CONSISTENCY_CHECKS
    )
    assert slab_flags.SLAB_MERGE_SAME == (
        SLAB_RECLAIM_ACCOUNT | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | slab_flags.SLAB_ACCOUNT
    )


def test_slab_flags_text_round_trip() -> None:
    flags = SLAB_HWCACHE_ALIGN | slab_flags.SLAB_ACCOUNT
    assert slab_flags.parse_slab_flags("SLAB_HWCACHE_ALIGN|SLAB_ACCOUNT") == flags
    assert slab_flags.parse_slab_flags("HWCACHE_ALIGN | ACCOUNT") == flags
    assert slab_flags.parse_slab_flags("") == 0
    assert slab_flags.parse_slab_flags("0x10") == SLAB_HWCACHE_ALIGN
    assert slab_flags.slab_flags_text(flags) == "SLAB_HWCACHE_ALIGN|SLAB_ACCOUNT"
    assert slab_flags.slab_flags_text(0) == "0"
    assert slab_flags.slab_flags_text(1 << 40) == "0x10000000000"
    for name, value in slab_flags.SLAB_FLAG_NAMES.items():
        assert slab_flags.parse_slab_flags(slab_flags.slab_flags_text(value)) == value, name


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: slab_flags.parse_slab_flags("SLAB_HWCACHE|SLAB_ACCOUNT"),
            slab_flags.UnknownSlabFlagError,
            "SLAB_HWCACHE",
        ),
        (lambda: slab_flags.parse_slab_flags("0xZZ"), slab_flags.UnknownSlabFlagError, "0xZZ"),
        (lambda: slab_flags.parse_slab_flags(cast(Any, 16)), InvalidTypeError, "text"),
        (lambda: slab_flags.slab_flags_text(-1), InvalidArgumentError, ">= 0"),
        (lambda: slab_flags.slab_flags_text(cast(Any, "16")), InvalidTypeError, "int"),
    ],
)
def test_slab_flags_text_bad_input(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()
