"""kmalloc size classes and variants, against an independent derivation and a real 6.18 trace.

tests/fixtures/kmalloc_trace_pairs_6.18.txt holds the distinct (bytes_req, bytes_alloc,
gfp_flags) of the kmem:kmalloc events recorded on a 2-CPU Linux 6.18 machine with
record-kmem-trace; tests/fixtures/sys_kernel_slab_6.18_2cpu.json its /sys/kernel/slab caches.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from fixture_files import KMALLOC_TRACE_PAIRS, SYS_KERNEL_SLAB
from kmem import InvalidArgumentError, InvalidTypeError
from kmem.page.gfp import (
    __GFP_ACCOUNT,
    __GFP_DMA,
    __GFP_RECLAIMABLE,
    __GFP_ZERO,
    GFP_ATOMIC,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    UnknownGfpFlagError,
    gfp_flags_text,
    parse_gfp_flags,
)
from kmem.slab.flags import (
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_KMALLOC,
    SLAB_NO_MERGE,
    SLAB_RECLAIM_ACCOUNT,
)
from kmem.slab.geometry import calculate_geometry
from kmem.slab.kmalloc_sizes import (
    KMALLOC_BOOT_CACHES,
    KMALLOC_CLASS_BY_SIZE,
    KMALLOC_INFO_SIZES,
    KMALLOC_MAX_CACHE_SIZE,
    KMALLOC_MIN_SIZE,
    KMALLOC_SIZES,
    kmalloc_boot_caches,
    kmalloc_bytes_alloc,
    kmalloc_cache_name,
    kmalloc_index,
    kmalloc_large_order,
    kmalloc_size_class,
)


def _trace_pairs() -> list[tuple[int, int, str]]:
    rows = []
    for line in KMALLOC_TRACE_PAIRS.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        req, alloc, gfp = line.split()
        rows.append((int(req), int(alloc), gfp))
    return rows


def _independent_bytes_alloc(size: int) -> int:
    """The smallest of the classes 8, 16, 32, 64, 96, 128, 192, 256, ..., 8192 that holds size;
    above 8192 a power-of-two number of whole pages."""
    classes = [8, 16, 32, 64, 96, 128, 192] + [256 << i for i in range(6)]
    for cls in classes:
        if cls >= size:
            return cls
    pages = 1
    while pages * 4096 < size:
        pages *= 2
    return pages * 4096


def test_class_table() -> None:
    assert KMALLOC_MIN_SIZE == 8
    assert KMALLOC_MAX_CACHE_SIZE == 8192
    assert KMALLOC_SIZES == (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)


def test_every_size_up_to_past_8k_against_an_independent_derivation() -> None:
    for size in range(1, 3 * 8192 + 4097):
        assert kmalloc_bytes_alloc(size) == _independent_bytes_alloc(size), size
    for size in range(1, KMALLOC_MAX_CACHE_SIZE + 1):
        assert kmalloc_size_class(size) == _independent_bytes_alloc(size), size
        assert KMALLOC_CLASS_BY_SIZE[size] == _independent_bytes_alloc(size), size
    by_index = tuple(KMALLOC_INFO_SIZES[kmalloc_index(size)]
                     for size in range(KMALLOC_MAX_CACHE_SIZE + 1))
    assert by_index == KMALLOC_CLASS_BY_SIZE


def test_large_sizes_take_whole_power_of_two_pages() -> None:
    assert kmalloc_bytes_alloc(8193) == 16384
    assert kmalloc_bytes_alloc(1 << 20) == 1 << 20
    assert kmalloc_bytes_alloc((1 << 20) + 1) == 2 << 20
    assert kmalloc_large_order(8193) == 2
    assert kmalloc_large_order(4 << 20) == 10


def test_every_real_trace_pair() -> None:
    pairs = _trace_pairs()
    assert len(pairs) > 100
    assert max(req for req, _, _ in pairs) > KMALLOC_MAX_CACHE_SIZE  # kmalloc_large covered
    for req, alloc, _ in pairs:
        assert kmalloc_bytes_alloc(req) == alloc, req


def test_kmalloc_index_follows_linux_size_index() -> None:
    # kmalloc_info: 1 is kmalloc-96, 2 is kmalloc-192, n >= 3 is 2**n.
    assert [kmalloc_index(s) for s in (1, 8, 9, 16, 17, 32, 33, 64)] == [3, 3, 4, 4, 5, 5, 6, 6]
    assert [kmalloc_index(s) for s in (65, 96, 97, 128, 129, 192, 193, 256)] == [
        1, 1, 7, 7, 2, 2, 8, 8,
    ]  # fmt: skip
    assert kmalloc_index(4097) == 13
    assert kmalloc_index(8192) == 13
    assert kmalloc_index(0) == 0
    assert kmalloc_size_class(0) == 0
    assert kmalloc_bytes_alloc(0) == 0  # ZERO_SIZE_PTR: nothing allocated


@pytest.mark.parametrize(
    ("size", "gfp", "name"),
    [
        (96, GFP_KERNEL, "kmalloc-96"),
        (70, GFP_KERNEL | __GFP_ZERO, "kmalloc-96"),
        (64, GFP_KERNEL_ACCOUNT, "kmalloc-cg-64"),
        (100, GFP_KERNEL | __GFP_RECLAIMABLE, "kmalloc-rcl-128"),
        (512, GFP_KERNEL | __GFP_DMA, "dma-kmalloc-512"),
        (512, GFP_ATOMIC | __GFP_DMA | __GFP_RECLAIMABLE | __GFP_ACCOUNT, "dma-kmalloc-512"),
        (1000, GFP_KERNEL_ACCOUNT | __GFP_RECLAIMABLE, "kmalloc-rcl-1k"),
        (8192, GFP_KERNEL, "kmalloc-8k"),
        (4000, __GFP_ACCOUNT, "kmalloc-cg-4k"),
        (150, 0, "kmalloc-192"),
    ],
)
def test_cache_name_by_size_and_gfp(size: int, gfp: int, name: str) -> None:
    assert kmalloc_cache_name(size, gfp) == name


def test_cache_name_from_real_trace_flag_texts() -> None:
    assert kmalloc_cache_name(64, parse_gfp_flags("GFP_KERNEL_ACCOUNT|__GFP_ZERO")) == (
        "kmalloc-cg-64"
    )
    assert kmalloc_cache_name(
        24, parse_gfp_flags("GFP_NOFS|__GFP_RECLAIMABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP")
    ) == "kmalloc-rcl-32"
    assert kmalloc_cache_name(2000, parse_gfp_flags("GFP_DMA")) == "dma-kmalloc-2k"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: kmalloc_index(-1), InvalidArgumentError, ">= 0"),
        (lambda: kmalloc_index(cast(Any, 1.5)), InvalidTypeError,
         "kmalloc size must be an int, not float"),
        (lambda: kmalloc_index(True), InvalidTypeError, "must be an int"),
        (lambda: kmalloc_index(8193), InvalidArgumentError,
         r"kmalloc size 8193 is above KMALLOC_MAX_CACHE_SIZE \(8192\): no cache serves it \(it"
         r" goes to kmalloc_large\)$"),
        (lambda: kmalloc_size_class(10000), InvalidArgumentError, "KMALLOC_MAX_CACHE_SIZE"),
        (lambda: kmalloc_bytes_alloc(-5), InvalidArgumentError, ">= 0"),
        (lambda: kmalloc_bytes_alloc(cast(Any, "8")), InvalidTypeError, "must be an int"),
        (lambda: kmalloc_bytes_alloc(100, page_size=3000), InvalidArgumentError, "page_size"),
        (lambda: kmalloc_bytes_alloc(100, page_size=8), InvalidArgumentError, "page_size"),
        (lambda: kmalloc_cache_name(0), InvalidArgumentError,
         r"^kmalloc\(0\) uses no cache \(it returns ZERO_SIZE_PTR\)$"),
        (lambda: kmalloc_cache_name(64, -1), InvalidArgumentError, "gfp"),
        (lambda: kmalloc_cache_name(64, cast(Any, 1.0)), InvalidTypeError,
         "gfp flags must be an int, not float"),
    ],
)
def test_bad_input_gets_specific_errors(
    call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


def test_cache_name_without_gfp_flags_is_the_normal_cache() -> None:
    assert kmalloc_cache_name(64) == "kmalloc-64"  # gfp 0: KMALLOC_NORMAL


def test_classes_below_two_pages_do_not_depend_on_the_page_size() -> None:
    # KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1 only moves the top: the classes up to 8k stay.
    for size in range(8193):
        assert kmalloc_bytes_alloc(size, page_size=16384) == kmalloc_bytes_alloc(size), size


def test_larger_pages_scale_the_classes() -> None:
    # With 16 KiB pages KMALLOC_MAX_CACHE_SIZE is 32 KiB: 20000 bytes still use a 32k class.
    assert kmalloc_bytes_alloc(20000, page_size=16384) == 32768
    assert kmalloc_bytes_alloc(40000, page_size=16384) == 65536
    assert kmalloc_bytes_alloc(70, page_size=16384) == 96
    # Simulated 64-byte pages: classes stop at 128 bytes, 150 bytes take 4 pages.
    assert kmalloc_bytes_alloc(100, page_size=64) == 128
    assert kmalloc_bytes_alloc(150, page_size=64) == 256
    assert kmalloc_large_order(150, page_size=64) == 2


# ---- the kmalloc caches created at boot ------------------------------------------------------


def _sys_slab() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SYS_KERNEL_SLAB.read_text())
    return data


def test_boot_caches_are_exactly_the_machines_kmalloc_caches() -> None:
    data = _sys_slab()
    machine = {
        c["name"]: c
        for c in data["caches"]
        if c["name"].startswith(("kmalloc-", "dma-kmalloc-")) and c["name"] != "kmalloc_buckets"
    }
    boot = kmalloc_boot_caches()
    assert boot == KMALLOC_BOOT_CACHES  # the table kmem keeps is the function's answer
    assert {spec.name for spec in boot} == set(machine)
    assert len(boot) == 52
    kind_gfp = [GFP_KERNEL, __GFP_RECLAIMABLE, __GFP_DMA, __GFP_ACCOUNT]  # kmalloc_type order
    for spec in boot:
        cache = machine[spec.name]
        assert spec.name == kmalloc_cache_name(spec.size, kind_gfp[spec.kmalloc_type])
        assert spec.index == kmalloc_index(spec.size)
        assert cache["object_size"] == spec.size
        assert cache["usersize"] == spec.size  # create_kmalloc_cache's usercopy region
        assert cache["reclaim_account"] == bool(spec.flags & SLAB_RECLAIM_ACCOUNT)
        assert cache["cache_dma"] == bool(spec.flags & SLAB_CACHE_DMA)
        assert spec.flags & SLAB_KMALLOC
        g = calculate_geometry(
            spec.size, flags=spec.flags, nr_cpus=2, usersize=spec.size, is_kmalloc=True
        )
        assert (g.slab_size, g.align, g.objs_per_slab, g.order) == (
            cache["slab_size"],
            cache["align"],
            cache["objs_per_slab"],
            cache["order"],
        ), spec.name


def test_boot_caches_in_linux_creation_order() -> None:
    # /proc/slabinfo lists the newest cache first, so the boot order is its reverse.
    names = [spec.name for spec in kmalloc_boot_caches()]
    listed = [n for n in reversed(_sys_slab()["slabinfo_names"]) if n in set(names)]
    assert listed == names


def test_boot_cache_flags_per_type() -> None:
    by_name = {spec.name: spec for spec in kmalloc_boot_caches()}
    assert by_name["kmalloc-64"].flags == SLAB_KMALLOC | SLAB_NO_MERGE
    assert by_name["kmalloc-rcl-64"].flags == SLAB_KMALLOC | SLAB_RECLAIM_ACCOUNT
    assert by_name["dma-kmalloc-64"].flags == SLAB_KMALLOC | SLAB_CACHE_DMA
    assert by_name["kmalloc-cg-64"].flags == SLAB_KMALLOC | SLAB_ACCOUNT


# ---- gfp flags text ------------------------------------------------------------------------------


def test_parse_gfp_flags_of_every_real_trace_text_round_trips() -> None:
    # ftrace formatted these texts from the kernel's numbers; formatting our parse the same way
    # must give the same text back, so every name and composite has Linux's value.
    texts = {gfp for _, _, gfp in _trace_pairs()}
    texts |= {
        "GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP",
        "GFP_NOWAIT|__GFP_FS|__GFP_NORETRY|__GFP_NOMEMALLOC",
        "GFP_NOFS|__GFP_HIGHMEM|__GFP_MOVABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL",
        "GFP_ATOMIC|__GFP_NOWARN|__GFP_NORETRY|__GFP_NOMEMALLOC",
        "__GFP_RECLAIMABLE|__GFP_IO|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC",
    }
    for text in texts:
        assert gfp_flags_text(parse_gfp_flags(text)) == text


def test_parse_gfp_flags_values() -> None:
    assert parse_gfp_flags("GFP_KERNEL") == 0xCC0
    assert parse_gfp_flags("GFP_KERNEL|__GFP_ZERO") == 0xDC0
    assert parse_gfp_flags("GFP_KERNEL_ACCOUNT") == 0x400CC0
    assert parse_gfp_flags("GFP_NOWAIT") == 0x2800
    assert parse_gfp_flags("none") == 0
    assert parse_gfp_flags("GFP_KERNEL|0x2000000") == 0x2000CC0  # a bit with no name


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("GFP_KERNEL|__GFP_BOGUS", UnknownGfpFlagError, "__GFP_BOGUS"),
        ("gfp_kernel", UnknownGfpFlagError, "gfp_kernel"),
        ("0xZZ", UnknownGfpFlagError, "0xZZ"),
        ("", InvalidArgumentError, "empty"),
        (42, InvalidTypeError, "text"),
    ],
)
def test_parse_gfp_flags_bad_input(text: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_gfp_flags(text)


def test_gfp_flags_text_bad_input() -> None:
    with pytest.raises(InvalidTypeError, match="must be an int"):
        gfp_flags_text(cast(Any, "GFP_KERNEL"))
    with pytest.raises(InvalidArgumentError, match=">= 0"):
        gfp_flags_text(-1)
    assert gfp_flags_text(0) == "none"
    assert gfp_flags_text(GFP_KERNEL | (1 << 30)) == "GFP_KERNEL|0x40000000"


def test_gfp_bits_are_single_distinct_bits() -> None:
    from kmem.page import gfp

    singles = {
        name: value
        for name, value in gfp.GFP_FLAG_NAMES.items()
        if name.startswith("__GFP_") and name != "__GFP_RECLAIM"
    }
    for name, value in singles.items():
        assert value & (value - 1) == 0 and value, name
    assert len(set(singles.values())) == len(singles)
