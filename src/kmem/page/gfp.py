"""GFP allocation flags (gfp_t), with the bit values of Linux 6.18 (include/linux/gfp_types.h).

What: the flags every page and slab allocation carries, the composite names (GFP_KERNEL, ...), and
`parse_gfp_flags()`, which turns the text ftrace prints for a `gfp_flags` field
('GFP_KERNEL|__GFP_ZERO') back into the integer, with `gfp_flags_text()` going the other way.

Why these exact values: they were read from the reference 6.18 kernel's own tracepoint format
(/sys/kernel/tracing/events/kmem/kmalloc/format), which is what parse_gfp_flags() inverts. The page
allocator reads the zone and migratetype bits; the slab layer reads the kmalloc family bits.

Invariants: every flag is a single bit, distinct from the others; composites are ORs of single
bits; GFP_FLAG_NAMES maps every name ftrace can print to its value.
"""

from __future__ import annotations

from kmem.errors import InvalidArgumentError, InvalidTypeError

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
