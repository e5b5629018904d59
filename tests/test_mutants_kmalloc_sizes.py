"""kmalloc_sizes behaviours the mutation run of kmem.slab.kmalloc_sizes found untested.

Expected values are written out here from Linux (mm/slab_common.c create_kmalloc_caches and
new_kmalloc_cache, include/linux/slab.h kmalloc_info names), not read back from the module.
"""

from __future__ import annotations

from kmem.slab.flags import (
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_KMALLOC,
    SLAB_NO_MERGE,
    SLAB_RECLAIM_ACCOUNT,
)
from kmem.slab.kmalloc_sizes import (
    KMALLOC_BOOT_CACHES,
    KmallocCacheSpec,
    kmalloc_boot_caches,
    kmalloc_bytes_alloc,
)

# create_kmalloc_caches, per type: the two odd classes first, then 8 .. 8k (index 3 .. 13)
SIZES = [(96, "96", 1), (192, "192", 2)] + [
    (1 << i, f"{1 << i}" if i < 10 else f"{1 << (i - 10)}k", i) for i in range(3, 14)]


def _family(prefix: str, kind: int, flags: int, copy: int = 0) -> list[KmallocCacheSpec]:
    return [KmallocCacheSpec(prefix + name, size, index, kind, flags | SLAB_KMALLOC, copy)
            for size, name, index in SIZES]


def _expected(random_caches: bool) -> list[KmallocCacheSpec]:
    specs = _family("kmalloc-", 0, SLAB_NO_MERGE)
    if random_caches:  # kmalloc-rnd-01-8 .. kmalloc-rnd-15-8k: the normal type's copies
        for copy in range(1, 16):
            specs += _family(f"kmalloc-rnd-{copy:02d}-", 0, SLAB_NO_MERGE, copy)
    specs += _family("kmalloc-rcl-", 1, SLAB_RECLAIM_ACCOUNT)
    specs += _family("dma-kmalloc-", 2, SLAB_CACHE_DMA)
    specs += _family("kmalloc-cg-", 3, SLAB_ACCOUNT)
    return specs


def test_boot_caches_without_random_copies() -> None:
    assert list(kmalloc_boot_caches()) == _expected(False)
    assert list(KMALLOC_BOOT_CACHES) == _expected(False)
    assert len(KMALLOC_BOOT_CACHES) == 4 * 13


def test_boot_caches_with_the_fifteen_random_copies() -> None:
    specs = kmalloc_boot_caches(True)
    assert list(specs) == _expected(True)
    assert len(specs) == 19 * 13
    assert specs[13].name == "kmalloc-rnd-01-96" and specs[15 * 13 + 12].name == (
        "kmalloc-rnd-15-8k")


def test_bytes_alloc_on_small_pages_keeps_the_odd_classes() -> None:
    """Up to 2 * page_size a request is a kmalloc class (the odd 192 included), whatever the
    page size: 150 bytes on 256-byte pages and 130 on 128-byte pages take kmalloc-192."""
    assert kmalloc_bytes_alloc(150, 256) == 192
    assert kmalloc_bytes_alloc(130, 128) == 192
    assert kmalloc_bytes_alloc(257, 128) == 512  # above 2 pages: page_size << get_order
