"""SLAB_* cache flags and GFP allocation flags, with the bit values of Linux 6.18.

What: the flag constants a slab cache is created with (include/linux/slab.h) and the GFP flags an
allocation carries (include/linux/gfp_types.h), plus `parse_gfp_flags()`, which turns the text
ftrace prints for a `gfp_flags` field ('GFP_KERNEL|__GFP_ZERO') back into the integer, and
`parse_slab_flags()`/`slab_flags_text()` for SLAB_* flags written as text (scenarios, CLI).

Why these exact values: Linux numbers the SLAB_* flags by an enum whose members depend on the
kernel config (a bit exists only if its feature is built). The values here are those of the
reference machine's 6.18 config (SLUB_DEBUG and MEMCG on; DEBUG_OBJECTS, FAILSLAB, KASAN, KFENCE
off), so a cache's flags word reads the same as the kernel's. The GFP values and the composite
names were read from that kernel's own tracepoint format
(/sys/kernel/tracing/events/kmem/kmalloc/format), which is what parse_gfp_flags() inverts.

Invariants: every flag is a single bit, distinct from the others of its family; composites are
ORs of single bits; GFP_FLAG_NAMES maps every name ftrace can print to its value.
"""

from __future__ import annotations

from kmem.errors import InvalidArgumentError, InvalidTypeError

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

# --- GFP flags (gfp_t), bit = position in Linux's ___GFP_*_BIT enum ------------------------------
__GFP_DMA = 1 << 0
__GFP_HIGHMEM = 1 << 1
__GFP_DMA32 = 1 << 2
__GFP_MOVABLE = 1 << 3
__GFP_RECLAIMABLE = 1 << 4
__GFP_HIGH = 1 << 5
__GFP_IO = 1 << 6
__GFP_FS = 1 << 7
__GFP_ZERO = 1 << 8
__GFP_DIRECT_RECLAIM = 1 << 10
__GFP_KSWAPD_RECLAIM = 1 << 11
__GFP_WRITE = 1 << 12
__GFP_NOWARN = 1 << 13
__GFP_RETRY_MAYFAIL = 1 << 14
__GFP_NOFAIL = 1 << 15
__GFP_NORETRY = 1 << 16
__GFP_MEMALLOC = 1 << 17
__GFP_COMP = 1 << 18
__GFP_NOMEMALLOC = 1 << 19
__GFP_HARDWALL = 1 << 20
__GFP_THISNODE = 1 << 21
__GFP_ACCOUNT = 1 << 22
__GFP_ZEROTAGS = 1 << 23
__GFP_NO_OBJ_EXT = 1 << 24
__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM

GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_USER = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE
GFP_TRANSHUGE_LIGHT = (
    GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN
) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM

# The bits that take kmalloc off its normal caches (include/linux/slab.h KMALLOC_NOT_NORMAL_BITS).
KMALLOC_NOT_NORMAL_BITS = __GFP_RECLAIMABLE | __GFP_DMA | __GFP_ACCOUNT

# Every name ftrace prints for gfp flags (composites first, in the kernel's order), and its value.
GFP_FLAG_NAMES: dict[str, int] = {
    "GFP_TRANSHUGE": GFP_TRANSHUGE,
    "GFP_TRANSHUGE_LIGHT": GFP_TRANSHUGE_LIGHT,
    "GFP_HIGHUSER_MOVABLE": GFP_HIGHUSER_MOVABLE,
    "GFP_HIGHUSER": GFP_HIGHUSER,
    "GFP_USER": GFP_USER,
    "GFP_KERNEL_ACCOUNT": GFP_KERNEL_ACCOUNT,
    "GFP_KERNEL": GFP_KERNEL,
    "GFP_NOFS": GFP_NOFS,
    "GFP_ATOMIC": GFP_ATOMIC,
    "GFP_NOIO": GFP_NOIO,
    "GFP_NOWAIT": GFP_NOWAIT,
    "GFP_DMA": GFP_DMA,
    "GFP_DMA32": GFP_DMA32,
    "__GFP_RECLAIM": __GFP_RECLAIM,
    "__GFP_DMA": __GFP_DMA,
    "__GFP_HIGHMEM": __GFP_HIGHMEM,
    "__GFP_DMA32": __GFP_DMA32,
    "__GFP_MOVABLE": __GFP_MOVABLE,
    "__GFP_RECLAIMABLE": __GFP_RECLAIMABLE,
    "__GFP_HIGH": __GFP_HIGH,
    "__GFP_IO": __GFP_IO,
    "__GFP_FS": __GFP_FS,
    "__GFP_ZERO": __GFP_ZERO,
    "__GFP_DIRECT_RECLAIM": __GFP_DIRECT_RECLAIM,
    "__GFP_KSWAPD_RECLAIM": __GFP_KSWAPD_RECLAIM,
    "__GFP_WRITE": __GFP_WRITE,
    "__GFP_NOWARN": __GFP_NOWARN,
    "__GFP_RETRY_MAYFAIL": __GFP_RETRY_MAYFAIL,
    "__GFP_NOFAIL": __GFP_NOFAIL,
    "__GFP_NORETRY": __GFP_NORETRY,
    "__GFP_MEMALLOC": __GFP_MEMALLOC,
    "__GFP_COMP": __GFP_COMP,
    "__GFP_NOMEMALLOC": __GFP_NOMEMALLOC,
    "__GFP_HARDWALL": __GFP_HARDWALL,
    "__GFP_THISNODE": __GFP_THISNODE,
    "__GFP_ACCOUNT": __GFP_ACCOUNT,
    "__GFP_ZEROTAGS": __GFP_ZEROTAGS,
    "__GFP_NO_OBJ_EXT": __GFP_NO_OBJ_EXT,
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


class UnknownGfpFlagError(InvalidArgumentError):
    """A gfp_flags text names a flag that Linux 6.18's ftrace output never prints."""


_GFP_CACHE: dict[str, int] = {}


def parse_gfp_flags(text: str) -> int:
    """Turn ftrace's gfp_flags text ('GFP_KERNEL|__GFP_ZERO', 'none', '0x400') into its value.

    Names are ORed; a hexadecimal part (ftrace prints bits it has no name for that way) is
    taken as is. An unknown name raises UnknownGfpFlagError naming it.
    """
    if type(text) is not str:
        raise InvalidTypeError(f"gfp flags must be given as text, not {type(text).__name__}")
    value = _GFP_CACHE.get(text)  # traces repeat a few dozen distinct texts: parse each once
    if value is not None:
        return value
    stripped = text.strip()
    if stripped == "":
        raise InvalidArgumentError("empty gfp flags text (ftrace prints 'none' for no flags)")
    value = 0
    if stripped not in ("none", "0"):
        for part in stripped.split("|"):
            name = part.strip()
            flag = GFP_FLAG_NAMES.get(name)
            if flag is None:
                flag = _parse_hex_gfp_part(name, text)
            value |= flag
    _GFP_CACHE[text] = value
    return value


def _parse_hex_gfp_part(name: str, text: str) -> int:
    """A part of a gfp_flags text that is not a flag name: only a hex number is allowed."""
    if name.lower().startswith("0x"):
        try:
            return int(name, 16)
        except ValueError:
            pass
    raise UnknownGfpFlagError(f"unknown gfp flag {name!r} in {text!r}")


def gfp_flags_text(value: int) -> str:
    """Format gfp flags as ftrace does: greedy over GFP_FLAG_NAMES in order, leftover in hex."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"gfp flags must be an int, not {type(value).__name__}")
    if value < 0:
        raise InvalidArgumentError(f"gfp flags must be >= 0, not {value}")
    if value == 0:
        return "none"
    parts: list[str] = []
    rest = value
    for name, flag in GFP_FLAG_NAMES.items():
        if rest & flag == flag and flag != 0:
            parts.append(name)
            rest &= ~flag
            if rest == 0:
                break
    if rest:
        parts.append(hex(rest))
    return "|".join(parts)
