"""SLAB_* cache flags, with the bit values of Linux 6.18.

What: the flag constants a slab cache is created with (include/linux/slab.h), and
`parse_slab_flags()`/`slab_flags_text()` for SLAB_* flags written as text (scenarios, CLI). The
GFP flags an allocation carries live one layer down, in kmem.page.gfp.

Why these exact values: Linux numbers the SLAB_* flags by an enum whose members depend on the
kernel config (a bit exists only if its feature is built). The values here are those of the
reference machine's 6.18 config (SLUB_DEBUG and MEMCG on; DEBUG_OBJECTS, FAILSLAB, KASAN, KFENCE
off), so a cache's flags word reads the same as the kernel's.

Invariants: every flag is a single bit, distinct from the others; composites are ORs of single
bits.
"""

from __future__ import annotations

from kmem.errors import InvalidArgumentError, InvalidTypeError
from kmem.page.gfp import __GFP_ACCOUNT, __GFP_DMA, __GFP_RECLAIMABLE

# --- SLAB_* cache flags (slab_flags_t), bit = position in Linux's enum _slab_flag_bits ---------
SLAB_CONSISTENCY_CHECKS = 1 << 0  # debug: expensive checks on alloc and free
SLAB_RED_ZONE = 1 << 1  # debug: red zones around each object
SLAB_POISON = 1 << 2  # debug: poison free objects with 0x6b, end with 0xa5
SLAB_KMALLOC = 1 << 3  # the cache is one of kmalloc's
SLAB_HWCACHE_ALIGN = 1 << 4  # align objects on cache lines
SLAB_CACHE_DMA = 1 << 5  # slab pages from ZONE_DMA
SLAB_CACHE_DMA32 = 1 << 6  # slab pages from ZONE_DMA32
SLAB_STORE_USER = 1 << 7  # debug: record the last allocating and freeing caller
SLAB_PANIC = 1 << 8  # panic if kmem_cache_create() fails
SLAB_TYPESAFE_BY_RCU = 1 << 9  # slab pages are freed only after an RCU grace period
SLAB_TRACE = 1 << 10  # debug: trace allocations and frees
SLAB_NOLEAKTRACE = 1 << 11  # kmemleak does not track these objects
SLAB_NO_MERGE = 1 << 12  # never merge this cache with another
SLAB_ACCOUNT = 1 << 13  # objects are charged to the memory cgroup
SLAB_NO_USER_FLAGS = 1 << 14  # slub_debug= on the command line does not apply
SLAB_RECLAIM_ACCOUNT = 1 << 15  # objects are reclaimable (shrinkers), pages counted so
SLAB_OBJECT_POISON = 1 << 16  # internal: poisoning is active for this cache
SLAB_CMPXCHG_DOUBLE = 1 << 17  # internal: the freelist is updated by double-word cmpxchg
SLAB_NO_OBJ_EXT = 1 << 18  # internal: no per-object extension vector
SLAB_MEM_SPREAD = 0  # obsolete since 6.9: kept as 0 as Linux does
SLAB_TEMPORARY = SLAB_RECLAIM_ACCOUNT  # Linux's alias

# The SLUB_DEBUG flags (mm/slab.h SLAB_DEBUG_FLAGS): any of them turns off merging and cpu partial.
SLAB_DEBUG_FLAGS = (
    SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE | SLAB_CONSISTENCY_CHECKS
)
# Flags that forbid merging (mm/slab_common.c SLAB_NEVER_MERGE; no KASAN/FAILSLAB in this config).
SLAB_NEVER_MERGE = (
    SLAB_RED_ZONE
    | SLAB_POISON
    | SLAB_STORE_USER
    | SLAB_TRACE
    | SLAB_TYPESAFE_BY_RCU
    | SLAB_NOLEAKTRACE
    | SLAB_NO_MERGE
)
# Flags that must be equal for two caches to merge (SLAB_MERGE_SAME).
SLAB_MERGE_SAME = SLAB_RECLAIM_ACCOUNT | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | SLAB_ACCOUNT
# Every flag kmem_cache_create() accepts from a caller (CACHE_CREATE_MASK plus kmalloc's own).
SLAB_CREATE_MASK = (
    SLAB_CONSISTENCY_CHECKS
    | SLAB_RED_ZONE
    | SLAB_POISON
    | SLAB_KMALLOC
    | SLAB_HWCACHE_ALIGN
    | SLAB_CACHE_DMA
    | SLAB_CACHE_DMA32
    | SLAB_STORE_USER
    | SLAB_PANIC
    | SLAB_TYPESAFE_BY_RCU
    | SLAB_TRACE
    | SLAB_NOLEAKTRACE
    | SLAB_NO_MERGE
    | SLAB_ACCOUNT
    | SLAB_NO_USER_FLAGS
    | SLAB_RECLAIM_ACCOUNT
    | SLAB_NO_OBJ_EXT
)

SLAB_FLAG_NAMES: dict[str, int] = {
    "SLAB_CONSISTENCY_CHECKS": SLAB_CONSISTENCY_CHECKS,
    "SLAB_RED_ZONE": SLAB_RED_ZONE,
    "SLAB_POISON": SLAB_POISON,
    "SLAB_KMALLOC": SLAB_KMALLOC,
    "SLAB_HWCACHE_ALIGN": SLAB_HWCACHE_ALIGN,
    "SLAB_CACHE_DMA": SLAB_CACHE_DMA,
    "SLAB_CACHE_DMA32": SLAB_CACHE_DMA32,
    "SLAB_STORE_USER": SLAB_STORE_USER,
    "SLAB_PANIC": SLAB_PANIC,
    "SLAB_TYPESAFE_BY_RCU": SLAB_TYPESAFE_BY_RCU,
    "SLAB_TRACE": SLAB_TRACE,
    "SLAB_NOLEAKTRACE": SLAB_NOLEAKTRACE,
    "SLAB_NO_MERGE": SLAB_NO_MERGE,
    "SLAB_ACCOUNT": SLAB_ACCOUNT,
    "SLAB_NO_USER_FLAGS": SLAB_NO_USER_FLAGS,
    "SLAB_RECLAIM_ACCOUNT": SLAB_RECLAIM_ACCOUNT,
    "SLAB_OBJECT_POISON": SLAB_OBJECT_POISON,
    "SLAB_CMPXCHG_DOUBLE": SLAB_CMPXCHG_DOUBLE,
    "SLAB_NO_OBJ_EXT": SLAB_NO_OBJ_EXT,
}

class UnknownSlabFlagError(InvalidArgumentError):
    """A slab flags text names a flag that is not one of Linux's SLAB_* flags."""


def parse_slab_flags(text: str) -> int:
    """Turn 'SLAB_HWCACHE_ALIGN|SLAB_ACCOUNT' (the 'SLAB_' prefix optional, '0' or '' for
    none, hex allowed) into the flags word; an unknown name raises UnknownSlabFlagError."""
    if type(text) is not str:
        raise InvalidTypeError(f"slab flags must be given as text, not {type(text).__name__}")
    value = 0
    for part in text.split("|"):
        name = part.strip()
        if name in ("", "0"):
            continue
        flag = SLAB_FLAG_NAMES.get(name if name.startswith("SLAB_") else "SLAB_" + name)
        if flag is None:
            try:
                flag = int(name, 16) if name.lower().startswith("0x") else None
            except ValueError:
                flag = None
            if flag is None:
                raise UnknownSlabFlagError(f"unknown slab flag {name!r} in {text!r}")
        value |= flag
    return value


def slab_flags_text(value: int) -> str:
    """Name the flags of a flags word ('SLAB_HWCACHE_ALIGN|SLAB_ACCOUNT', '0' for none)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"slab flags must be an int, not {type(value).__name__}")
    if value < 0:
        raise InvalidArgumentError(f"slab flags must be >= 0, not {value}")
    parts = [name for name, flag in SLAB_FLAG_NAMES.items() if value & flag]
    rest = value & ~sum(SLAB_FLAG_NAMES.values())
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) if parts else "0"


# The bits that take kmalloc off its normal caches (include/linux/slab.h KMALLOC_NOT_NORMAL_BITS).
KMALLOC_NOT_NORMAL_BITS = __GFP_RECLAIMABLE | __GFP_DMA | __GFP_ACCOUNT
