"""Slab merging: when Linux 6.x lets a new cache alias an existing one instead of being created.

What: pure functions over cache geometries (mm/slab_common.c):
- `slab_unmergeable(geometry)`: an existing cache never takes aliases if it has a SLAB_NEVER_MERGE
  flag (debug, RCU, NO_MERGE, NOLEAKTRACE), a constructor, a usercopy region (hardened usercopy
  is built), per-CPU sheaves, or is a bootstrap cache.
- `find_mergeable(object_size, ..., caches)`: the index of the cache a new request would alias:
  the OLDEST mergeable cache (Linux walks slab_caches from its tail) whose slot is at least the
  request's aligned size but less than a word larger, whose slot size is a multiple of the
  request's alignment, and whose SLAB_MERGE_SAME flags (RECLAIM_ACCOUNT, DMA, DMA32, ACCOUNT) are
  equal; None if the request itself forbids merging or nothing fits.
- `merge_into(target, object_size)`: the target's geometry after the alias joins it (Linux
  raises the shared cache's object_size and inuse to cover the larger object).
- `slab_alias_name(geometry)`: the name sysfs gives a mergeable cache, ':' + flag letters
  (d DMA, D DMA32, a RECLAIM_ACCOUNT, F CONSISTENCY_CHECKS, A ACCOUNT) + '-' + slot size on 7
  digits, e.g. ':0000064', ':a-0000128', ':aA-0000192'; every cache merged into it appears as a
  symlink to that directory.

Why pure: the SLAB engineer's kmem_cache_create() keeps its caches in creation order and asks
this module which one to reuse; the reports show the same alias names as /sys/kernel/slab.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from kmem.errors import InvalidArgumentError, InvalidTypeError
from kmem.slab.flags import (
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_CACHE_DMA32,
    SLAB_CONSISTENCY_CHECKS,
    SLAB_MERGE_SAME,
    SLAB_NEVER_MERGE,
    SLAB_RECLAIM_ACCOUNT,
)
from kmem.slab.geometry import POINTER_SIZE, CacheGeometry, calculate_alignment

# Letters of create_unique_id(), in the order Linux writes them.
_ALIAS_FLAG_LETTERS: tuple[tuple[int, str], ...] = (
    (SLAB_CACHE_DMA, "d"),
    (SLAB_CACHE_DMA32, "D"),
    (SLAB_RECLAIM_ACCOUNT, "a"),
    (SLAB_CONSISTENCY_CHECKS, "F"),
    (SLAB_ACCOUNT, "A"),
)


def slab_unmergeable(
    geometry: CacheGeometry,
    *,
    sheaf_capacity: int = 0,
    bootstrap: bool = False,
    slab_nomerge: bool = False,
) -> bool:
    """True if no new cache may alias this existing one (mm/slab_common.c slab_unmergeable).

    sheaf_capacity > 0 means the cache has per-CPU sheaves; bootstrap marks kmem_cache and
    kmem_cache_node (refcount -1 in Linux); slab_nomerge is the boot parameter.
    """
    return bool(
        slab_nomerge
        or bootstrap
        or geometry.flags & SLAB_NEVER_MERGE
        or geometry.has_ctor
        or geometry.usersize
        or sheaf_capacity
    )


def find_mergeable(
    object_size: int,
    caches: Sequence[CacheGeometry],
    *,
    align: int = 0,
    flags: int = 0,
    has_ctor: bool = False,
    usersize: int = 0,
    sheaf_capacity: int = 0,
    unmergeable: Sequence[bool] | None = None,
    slab_nomerge: bool = False,
) -> int | None:
    """Index in `caches` (oldest first) of the cache a new cache would alias, or None.

    `unmergeable[i]`, when given, overrides slab_unmergeable(caches[i]) (for facts a geometry
    does not carry: sheaves, bootstrap caches).
    """
    if isinstance(object_size, bool) or not isinstance(object_size, int):
        raise InvalidTypeError(f"object_size must be an int, not {type(object_size).__name__}")
    if object_size < 1:
        raise InvalidArgumentError(f"object_size must be >= 1, not {object_size}")
    if unmergeable is not None and len(unmergeable) != len(caches):
        raise InvalidArgumentError(
            f"unmergeable has {len(unmergeable)} entries for {len(caches)} caches"
        )
    if slab_nomerge or has_ctor or usersize or sheaf_capacity or flags & SLAB_NEVER_MERGE:
        return None
    size = (object_size + POINTER_SIZE - 1) & -POINTER_SIZE
    # Linux computes the alignment from the word-rounded size here (not the object size).
    align = calculate_alignment(flags, align, size)
    size = (size + align - 1) // align * align
    same = flags & SLAB_MERGE_SAME
    for index, cache in enumerate(caches):
        if unmergeable is not None:
            if unmergeable[index]:
                continue
        elif slab_unmergeable(cache):
            continue
        if size > cache.size:
            continue
        if cache.flags & SLAB_MERGE_SAME != same:
            continue
        if cache.size % align:
            continue  # the slots would not keep the new cache's alignment
        if cache.size - size >= POINTER_SIZE:
            continue  # too much waste per object
        return index
    return None


def merge_into(target: CacheGeometry, object_size: int) -> CacheGeometry:
    """The target's geometry once a cache of object_size aliases it (__kmem_cache_alias)."""
    rounded = (object_size + POINTER_SIZE - 1) & -POINTER_SIZE
    return replace(
        target,
        object_size=max(target.object_size, object_size),
        inuse=max(target.inuse, rounded),
    )


def slab_alias_name(geometry: CacheGeometry) -> str:
    """The sysfs directory name of a mergeable cache: ':' + flag letters + '-' + 7-digit size."""
    letters = "".join(letter for flag, letter in _ALIAS_FLAG_LETTERS if geometry.flags & flag)
    if letters:
        return f":{letters}-{geometry.size:07d}"
    return f":{geometry.size:07d}"


__all__ = ["find_mergeable", "merge_into", "slab_alias_name", "slab_unmergeable"]
