"""Slab merging rules, against the aliases of a real Linux 6.18 machine and hand-built cases."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from hypothesis import given, settings, strategies as st

from fixture_files import SYS_KERNEL_SLAB, SYSFS_FLAG_FILES
from kmem import InvalidArgumentError, InvalidTypeError
from kmem.slab.flags import (
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_CACHE_DMA32,
    SLAB_CONSISTENCY_CHECKS,
    SLAB_HWCACHE_ALIGN,
    SLAB_NO_MERGE,
    SLAB_NOLEAKTRACE,
    SLAB_POISON,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLAB_TRACE,
    SLAB_TYPESAFE_BY_RCU,
)
from kmem.slab.geometry import calculate_geometry
from kmem.slab.merge import find_mergeable, merge_into, slab_alias_name, slab_unmergeable

FIXTURE = SYS_KERNEL_SLAB
# Caches sysfs cannot show why they are unmergeable, from the kernel source: kmem_cache and
# kmem_cache_node are bootstrap caches (refcount -1, mm/slub.c kmem_cache_init);
# kmalloc_buckets and the msg_msg-* bucket caches are created with SLAB_NO_MERGE
# (mm/slab_common.c kmem_buckets_create).
BOOTSTRAP = {"kmem_cache", "kmem_cache_node"}
NO_MERGE_FROM_SOURCE = {"kmalloc_buckets", "msg_msg-8", "msg_msg-16", "msg_msg-32"}


def _caches() -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], json.loads(FIXTURE.read_text())["caches"])


def _flags(cache: dict[str, Any]) -> int:
    flags = 0
    for name, flag in SYSFS_FLAG_FILES.items():
        if cache[name]:
            flags |= flag
    # SLAB_ACCOUNT has no sysfs file; for a merged cache its alias name carries it ('A').
    if cache["name"].startswith(":") and "A" in cache["name"].split("-")[0]:
        flags |= SLAB_ACCOUNT
    if cache["name"] in NO_MERGE_FROM_SOURCE:
        flags |= SLAB_NO_MERGE
    return flags


def _geometry(cache: dict[str, Any]) -> Any:
    return calculate_geometry(
        cache["object_size"],
        align=cache["align"],
        flags=_flags(cache),
        has_ctor=cache["ctor"],
        nr_cpus=2,
        usersize=cache["usersize"],
        is_kmalloc=cache["name"].startswith(("kmalloc-", "dma-kmalloc-")),
        **({"freeptr_offset": 0} if cache["name"] == "vm_area_struct" else {}),
    )


def test_alias_names_of_every_merged_cache_on_the_machine() -> None:
    merged = [c for c in _caches() if c["name"].startswith(":")]
    assert len(merged) > 50
    letters = {c["name"].split("-")[0] for c in merged if "-" in c["name"]}
    assert {":a", ":A", ":aA"} <= letters  # letters in Linux's order: a before A
    for cache in merged:
        assert slab_alias_name(_geometry(cache)) == cache["name"]
        assert cache["aliases"], cache["name"]  # every merged cache has at least its creator


def test_mergeability_of_every_real_cache() -> None:
    # sysfs names a cache ':...' exactly when it was mergeable at creation.
    for cache in _caches():
        unmergeable = slab_unmergeable(
            _geometry(cache),
            sheaf_capacity=cache["sheaf_capacity"],
            bootstrap=cache["name"] in BOOTSTRAP,
        )
        assert unmergeable == (not cache["name"].startswith(":")), cache["name"]


def test_every_merged_cache_takes_a_cache_like_its_creator() -> None:
    for cache in _caches():
        if not cache["name"].startswith(":"):
            continue
        geometry = _geometry(cache)
        found = find_mergeable(
            cache["object_size"], [geometry], align=cache["align"], flags=_flags(cache)
        )
        assert found == 0, cache["name"]


def _cache(object_size: int, **kwargs: Any) -> Any:
    return calculate_geometry(object_size, nr_cpus=2, **kwargs)


def test_oldest_compatible_cache_wins() -> None:
    caches = [_cache(128), _cache(64), _cache(64, flags=SLAB_HWCACHE_ALIGN), _cache(64)]
    assert find_mergeable(60, caches) == 1  # first 64-byte slot, not the later ones
    assert find_mergeable(121, caches) == 0
    assert find_mergeable(120, caches) is None  # 128 - 120 = 8 bytes of waste: too much


def test_size_must_fit_and_waste_less_than_a_word() -> None:
    caches = [_cache(64)]
    assert find_mergeable(57, caches) == 0  # ALIGN(57, 8) = 64
    assert find_mergeable(56, caches) is None  # 8 bytes wasted per object
    assert find_mergeable(65, caches) is None  # does not fit


def test_alignment_of_the_request_counts() -> None:
    caches = [_cache(104)]  # a 104-byte slot, 8-aligned
    assert find_mergeable(100, caches) == 0
    # With SLAB_HWCACHE_ALIGN, 100 bytes need a 64-aligned 128-byte slot: no longer fits.
    assert find_mergeable(100, caches, flags=SLAB_HWCACHE_ALIGN) is None
    assert find_mergeable(100, caches, align=32) is None  # ALIGN(104, 32) = 128 > 104


@pytest.mark.parametrize(
    "flag", [SLAB_RECLAIM_ACCOUNT, SLAB_CACHE_DMA, SLAB_CACHE_DMA32, SLAB_ACCOUNT]
)
def test_merge_same_flags_must_be_equal(flag: int) -> None:
    plain, flagged = _cache(64), _cache(64, flags=flag)
    assert find_mergeable(64, [plain], flags=flag) is None
    assert find_mergeable(64, [flagged]) is None
    assert find_mergeable(64, [plain, flagged], flags=flag) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flags": SLAB_RED_ZONE},
        {"flags": SLAB_POISON},
        {"flags": SLAB_STORE_USER},
        {"flags": SLAB_TRACE},
        {"flags": SLAB_TYPESAFE_BY_RCU},
        {"flags": SLAB_NOLEAKTRACE},
        {"flags": SLAB_NO_MERGE},
        {"has_ctor": True},
        {"usersize": 16},
        {"sheaf_capacity": 32},
    ],
)
def test_requests_that_forbid_merging(kwargs: dict[str, Any]) -> None:
    assert find_mergeable(64, [_cache(64)], **kwargs) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flags": SLAB_RED_ZONE},
        {"flags": SLAB_POISON},
        {"flags": SLAB_TYPESAFE_BY_RCU},
        {"flags": SLAB_NO_MERGE},
        {"has_ctor": True},
        {"usersize": 16},
    ],
)
def test_existing_caches_that_refuse_aliases(kwargs: dict[str, Any]) -> None:
    existing = _cache(64, **kwargs)
    assert slab_unmergeable(existing)
    # The request's size matches the existing slot whatever debug room it has.
    assert find_mergeable(existing.size, [existing]) is None


def test_unmergeable_override_and_sheaves() -> None:
    caches = [_cache(64), _cache(64)]
    assert find_mergeable(64, caches, unmergeable=[True, False]) == 1
    assert slab_unmergeable(caches[0], sheaf_capacity=32)
    assert slab_unmergeable(caches[0], bootstrap=True)
    assert slab_unmergeable(caches[0], slab_nomerge=True)
    assert find_mergeable(64, caches, slab_nomerge=True) is None


def test_merge_into_grows_object_size_and_inuse() -> None:
    target = _cache(60)  # slot 64, inuse 64, object_size 60
    merged = merge_into(target, 63)
    assert (merged.object_size, merged.inuse, merged.size) == (63, 64, 64)
    assert merge_into(target, 50).object_size == 60  # never shrinks
    assert target.object_size == 60  # the input geometry is untouched (frozen)
    # __kmem_cache_alias: inuse = max(inuse, ALIGN(size, sizeof(void *))). A 40-byte cache
    # in 64-byte slots has inuse 40; a 57-byte alias fits its slot and raises inuse to 64.
    small = _cache(40, align=64)
    assert (small.size, small.inuse) == (64, 40)
    assert find_mergeable(57, [small]) == 0
    assert (merge_into(small, 57).inuse, merge_into(small, 57).object_size) == (64, 57)
    assert merge_into(small, 41).inuse == 48


def test_alias_name_format() -> None:
    assert slab_alias_name(_cache(64)) == ":0000064"
    assert slab_alias_name(_cache(128, flags=SLAB_RECLAIM_ACCOUNT)) == ":a-0000128"
    assert slab_alias_name(_cache(192, flags=SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT)) == (
        ":aA-0000192"
    )
    assert slab_alias_name(_cache(32, flags=SLAB_CACHE_DMA | SLAB_CONSISTENCY_CHECKS)) == (
        ":dF-0000032"
    )
    assert slab_alias_name(_cache(4096, flags=SLAB_CACHE_DMA32)) == ":D-0004096"


def test_bad_input() -> None:
    with pytest.raises(InvalidTypeError, match="object_size must be an int, not float"):
        find_mergeable(cast(Any, 6.5), [])
    with pytest.raises(InvalidArgumentError, match="object_size"):
        find_mergeable(0, [])
    with pytest.raises(InvalidArgumentError, match="unmergeable has 1 entries for 2 caches"):
        find_mergeable(64, [_cache(64), _cache(64)], unmergeable=[False])


_MERGE_FLAGS = [0, SLAB_HWCACHE_ALIGN, SLAB_RECLAIM_ACCOUNT, SLAB_ACCOUNT, SLAB_POISON]


@settings(max_examples=400)
@given(
    existing=st.lists(
        st.tuples(st.integers(1, 200), st.sampled_from(_MERGE_FLAGS), st.booleans()),
        max_size=12,
    ),
    size=st.integers(1, 200),
    flags=st.sampled_from(_MERGE_FLAGS),
    align=st.sampled_from([0, 8, 16, 32, 64]),
)
def test_find_mergeable_is_the_first_cache_meeting_every_rule(
    existing: list[tuple[int, int, bool]], size: int, flags: int, align: int
) -> None:
    caches = [_cache(s, flags=f, has_ctor=c) for s, f, c in existing]
    found = find_mergeable(size, caches, align=align, flags=flags)
    # The rules restated over byte counts: the request's slot is its size rounded to a word
    # and then to its alignment (at least a word; a cache line, halved while the object fits
    # in half, with SLAB_HWCACHE_ALIGN).
    word = -(-size // 8) * 8
    line = 64
    while flags & SLAB_HWCACHE_ALIGN and word <= line // 2:
        line //= 2
    want_align = max(align, 8, line if flags & SLAB_HWCACHE_ALIGN else 0)
    slot = -(-word // want_align) * want_align

    def fits(cache: Any, has_ctor: bool, cache_flags: int) -> bool:
        return (
            not has_ctor
            and not cache_flags & SLAB_POISON
            and cache.size >= slot
            and cache.size - slot < 8
            and cache.size % want_align == 0
            and (cache_flags & (SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT))
            == (flags & (SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT))
        )

    expected = None
    if not flags & SLAB_POISON:
        for index, (cache, (_, cache_flags, has_ctor)) in enumerate(
            zip(caches, existing, strict=True)
        ):
            if fits(cache, has_ctor, cache_flags):
                expected = index
                break
    assert found == expected
