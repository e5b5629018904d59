"""Tests written against the surviving mutants of kmem.slab.geometry (make mutants
MODULES=slab/geometry).

Each figure is worked by hand from mm/slub.c's calculate_sizes(), calculate_order(),
calc_slab_order() and set_cpu_partial() (Linux 6.18), or from mm/slab_common.c's
calculate_alignment(); the comments give the arithmetic. The error tests hold the messages
that name the bad argument, which a caller reads to know what to fix. Geometry has no compiled
twin: the same figures hold on both cores.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from kmem import InvalidArgumentError, InvalidTypeError
from kmem.slab.errors import SlabPageSizeError
from kmem.slab.flags import (
    SLAB_CACHE_DMA,
    SLAB_CACHE_DMA32,
    SLAB_OBJECT_POISON,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLAB_TYPESAFE_BY_RCU,
)
from kmem.slab.geometry import (
    calculate_alignment,
    calculate_cpu_partial,
    calculate_geometry,
    calculate_order,
)

KiB = 1024

# -- calculate_alignment: ALIGN(align, sizeof(void *)) -----------------------------------------


def test_an_alignment_that_is_no_multiple_of_a_word_is_rounded_up_to_one() -> None:
    # mm/slab_common.c calculate_alignment() ends with ALIGN(align, sizeof(void *)): the
    # public helper takes any align, as Linux's does (kmem_cache_create's own check only lets
    # powers of two through).
    assert calculate_alignment(0, 9, 100) == 16
    assert calculate_alignment(0, 17, 100) == 24
    assert calculate_alignment(0, 12, 100) == 16
    assert calculate_alignment(0, 16, 100) == 16


# -- calculate_order ----------------------------------------------------------------------------


def test_calculate_order_defaults_to_one_cpu_and_4k_pages() -> None:
    # One CPU: min_objects = 4 * (fls(1) + 1) = 8. 700-byte slots: 8 * 700 = 5600 -> order 1;
    # 8192 % 700 = 492 <= 8192 / 16 = 512: order 1 (two CPUs, 12 objects, would need order 2).
    assert calculate_order(700) == calculate_order(700, nr_cpus=1, page_size=4096) == 1
    assert calculate_order(700, nr_cpus=2) == 2
    # 320-byte slots: 8 * 320 = 2560 -> order 0; 4096 = 12 * 320 + 256 and 256 <= 4096 / 16:
    # a slab wasting exactly 1/16 is taken (calc_slab_order: rem <= slab_size / fract).
    assert calculate_order(320) == 0


def test_calculate_geometry_defaults_to_one_cpu() -> None:
    g = calculate_geometry(700)
    assert (g.size, g.order, g.objs_per_slab) == (704, 1, 11)  # 8 * 704 = 5632 -> order 1


def test_a_slab_of_exactly_max_objs_per_page_objects_is_allowed() -> None:
    # calculate_order refuses min_order only when order_objects(min_order, size) is *above*
    # MAX_OBJS_PER_PAGE (32767). A 1 GiB page (no real one is that large: the boundary needs
    # it) holds 2**30 // 32769 = 32767 slots of 32769 bytes (32769 * 32767 = 2**30 - 1):
    # order 0, wasting 1 byte; 32768-byte slots would be 32768 a page: no order fits.
    assert calculate_order(32769, page_size=1 << 30) == 0
    with pytest.raises(SlabPageSizeError):
        calculate_order(32768, page_size=1 << 30)


def test_the_max_objs_per_page_refusal_says_how_many_objects_a_page_holds() -> None:
    message = ("objects of 8 bytes: one 262144-byte page holds 32768, more than"
               " MAX_OBJS_PER_PAGE (32767); no slab order fits")
    with pytest.raises(SlabPageSizeError, match=f"^{re.escape(message)}$"):
        calculate_geometry(8, page_size=1 << 18)


def test_the_last_waste_fraction_tried_is_one_half() -> None:
    # 11008-byte slots, two CPUs: min_objects 12, capped at 32768 // 11008 = 2 objects ->
    # get_order(22016) = 3. At order 3, 32768 - 22016 = 10752 bytes are left: more than 1/16,
    # 1/8 and 1/4 of the slab, at most 1/2 (16384): order 3, 2 objects; only when even 1/2
    # fails does Linux fall back to get_order(size) (order 2, one object).
    g = calculate_geometry(11008, nr_cpus=2)
    assert (g.order, g.objs_per_slab, g.wasted_per_slab) == (3, 2, 10752)


def test_large_pages_give_orders_and_cpu_partial_in_their_own_pages() -> None:
    # 64 KiB pages (arm64, powerpc): a 600000-byte object fits no slab up to slub_max_order
    # (3: 512 KiB), so the order of one object, get_order(600000) in 64 KiB pages: 4 (1 MiB).
    g = calculate_geometry(600000, page_size=64 * KiB)
    assert (g.order, g.min_order, g.objs_per_slab, g.min_objs_per_slab) == (4, 4, 1, 1)
    assert g.slab_bytes == 1 << 20
    # set_cpu_partial compares the slot with PAGE_SIZE: an 8 KiB slot is below a 64 KiB page
    # (24 objects, the >= 1024 rule), where with 4 KiB pages it is 6.
    assert calculate_geometry(8 * KiB, page_size=64 * KiB).cpu_partial == 24
    assert calculate_geometry(8 * KiB).cpu_partial == 6


def test_calculate_cpu_partial_defaults_to_4k_pages() -> None:
    # set_cpu_partial: size >= PAGE_SIZE -> 6, >= 1024 -> 24, >= 256 -> 52, else 120.
    assert calculate_cpu_partial(4096, 0) == 6
    assert calculate_cpu_partial(4095, 0) == 24
    assert calculate_cpu_partial(4096, 0, 8192) == 24


def test_slub_max_order_may_be_max_page_order() -> None:
    # slub_max_order is clamped to MAX_PAGE_ORDER (10), which is allowed. 5000-byte slots:
    # min_objects 8 -> get_order(40000) = 4; 65536 % 5000 = 536 <= 4096: order 4, 13 objects
    # (with the default slub_max_order 3 the cache takes order 3, 6 objects).
    g = calculate_geometry(5000, max_order=10)
    assert (g.order, g.objs_per_slab) == (4, 13)
    assert calculate_geometry(5000).order == 3


# -- calculate_sizes ------------------------------------------------------------------------------


def test_a_cache_without_red_zone_has_no_left_pad_and_no_object_poison() -> None:
    for flags in (0, SLAB_RED_ZONE, SLAB_STORE_USER):
        g = calculate_geometry(64, flags=flags)
        # __OBJECT_POISON only with SLAB_POISON (and no RCU, no ctor).
        assert not g.flags & SLAB_OBJECT_POISON, flags
    g = calculate_geometry(64)
    assert (g.red_left_pad, g.offset, g.inuse, g.size, g.flags) == (0, 32, 64, 64, 0)


def test_a_tiny_object_without_red_zone_keeps_its_free_pointer_inside() -> None:
    # ALIGN(4, 8) = 8; no red zone: the free pointer at ALIGN_DOWN(4 / 2, 8) = 0, in the slot.
    g = calculate_geometry(4)
    assert (g.inuse, g.offset, g.size) == (8, 0, 8)


def test_a_red_zoned_word_sized_object_keeps_its_free_pointer_inside() -> None:
    # 8 bytes is not below sizeof(void *): 8 == object_size -> +8 right red zone = 16 = inuse;
    # free pointer at ALIGN_DOWN(8 / 2, 8) = 0; red zone word 24; left pad 8: 32.
    g = calculate_geometry(8, flags=SLAB_RED_ZONE)
    assert (g.inuse, g.offset, g.red_left_pad, g.size) == (8 + 8, 0, 8, 32)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # slub_debug_orig_size (SLAB_STORE_USER and SLAB_KMALLOC) with a red zone: the free
        # pointer goes after the object. kmalloc-64 (align 64): 64 + 8 = 72 = inuse; offset 72,
        # 80; tracks 144; orig size 148; red zone word 156; left pad 64: 220 -> 256.
        ({"flags": SLAB_RED_ZONE | SLAB_STORE_USER, "is_kmalloc": True}, (72, 72, 64, 256)),
        # A red zone alone keeps it in the middle: 72 = inuse, offset 32; word 80; pad 64: 144
        # -> 192.
        ({"flags": SLAB_RED_ZONE, "is_kmalloc": True}, (72, 32, 64, 192)),
        # Not kmalloc (align 8): no request size kept, offset 32; 72 + 64 tracks = 136; word
        # 144; pad 8: 152.
        ({"flags": SLAB_RED_ZONE | SLAB_STORE_USER}, (72, 32, 8, 152)),
        # Tracking alone: 64 + 2 * 32 (struct track with the stack depot handle) = 128.
        ({"flags": SLAB_STORE_USER}, (64, 32, 0, 128)),
    ],
)
def test_where_a_debug_caches_free_pointer_and_tracks_go(
    kwargs: dict[str, Any], expected: tuple[int, int, int, int]
) -> None:
    g = calculate_geometry(64, **kwargs)
    assert (g.inuse, g.offset, g.red_left_pad, g.size) == expected


def test_a_kmalloc_cache_with_tracking_keeps_the_request_size_after_the_tracks() -> None:
    # kmalloc-8 (align 8), SLAB_STORE_USER: 8 + 64 tracks = 72, + 4 (the unsigned int of
    # the original request size) = 76 -> ALIGN(76, 8) = 80.
    g = calculate_geometry(8, flags=SLAB_STORE_USER, is_kmalloc=True)
    assert (g.inuse, g.offset, g.size, g.align) == (8, 0, 80, 8)


def test_the_usercopy_region_is_kept_in_the_geometry() -> None:
    g = calculate_geometry(64, useroffset=8, usersize=16)
    assert (g.useroffset, g.usersize) == (8, 16)


# -- the errors name the argument that is wrong ----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"object_size": "64"}, InvalidTypeError, "object_size must be an int, not str"),
        ({"flags": "0"}, InvalidTypeError, "flags must be an int, not str"),
        ({"flags": -1}, InvalidArgumentError, "flags must be >= 0, not -1"),
        ({"max_order": "3"}, InvalidTypeError, "max_order must be an int, not str"),
        ({"max_order": -1}, InvalidArgumentError, "max_order must be >= 0, not -1"),
        ({"useroffset": 1.0, "usersize": 8}, InvalidTypeError,
         "useroffset must be an int, not float"),
        ({"useroffset": -8, "usersize": 8}, InvalidArgumentError,
         "useroffset must be >= 0, not -8"),
        ({"usersize": "8"}, InvalidTypeError, "usersize must be an int, not str"),
        ({"usersize": -8}, InvalidArgumentError, "usersize must be >= 0, not -8"),
        ({"useroffset": 60, "usersize": 8}, InvalidArgumentError,
         "usercopy region [60, 68) is outside the 64-byte object"),
        ({"flags": SLAB_TYPESAFE_BY_RCU, "freeptr_offset": "0"}, InvalidTypeError,
         "freeptr_offset must be an int, not str"),
        ({"flags": SLAB_TYPESAFE_BY_RCU, "freeptr_offset": -8}, InvalidArgumentError,
         "freeptr_offset must be >= 0, not -8"),
        ({"freeptr_offset": 0}, InvalidArgumentError,
         "freeptr_offset is only allowed with SLAB_TYPESAFE_BY_RCU"),
        ({"flags": SLAB_CACHE_DMA | SLAB_CACHE_DMA32}, InvalidArgumentError,
         "SLAB_CACHE_DMA and SLAB_CACHE_DMA32 exclude each other"),
        ({"has_ctor": 1}, InvalidTypeError, "has_ctor must be a bool, not int"),
    ],
)
def test_each_refused_argument_is_named_in_its_error(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments = {"object_size": 64, **kwargs}
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        calculate_geometry(**arguments)
