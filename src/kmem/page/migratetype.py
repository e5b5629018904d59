"""Migratetypes, pageblocks and zone types, as Linux 6.18 numbers them (include/linux/mmzone.h).

Design: every pageblock (2**PAGEBLOCK_ORDER frames, 512 on x86-64) has one migratetype; a free
block sits on the free list of its pageblock's migratetype. Allocations ask for a migratetype
through their GFP flags (gfp_migratetype); when that type's lists are empty the allocator falls
back to FALLBACKS[type] in order, claiming whole pageblocks or stealing single blocks
(kmem.page.zone). Only the first MIGRATE_PCPTYPES types have per-CPU lists and fallbacks;
HIGHATOMIC (a reserve for high-order atomic allocations) and ISOLATE (pageblocks being taken
out of use) never mix with the others when blocks merge across pageblocks.

The enum is that of the reference 6.18 config: CMA off, so no MIGRATE_CMA between HIGHATOMIC
and ISOLATE; MEMORY_ISOLATION on, so ISOLATE exists (/proc/pagetypeinfo prints its row).

Zone types in index order: DMA, DMA32, Normal, Movable, Device (HIGHMEM is 32-bit only).
gfp_zone() maps GFP zone modifiers to the highest zone an allocation may use.
"""

from __future__ import annotations

from typing import Final

from kmem.page.errors import NoMigratetypeError, NoZoneForGfpError
from kmem.page.gfp import __GFP_DMA, __GFP_DMA32, __GFP_HIGHMEM, __GFP_MOVABLE, __GFP_RECLAIMABLE

MIGRATE_UNMOVABLE: Final = 0
MIGRATE_MOVABLE: Final = 1
MIGRATE_RECLAIMABLE: Final = 2
MIGRATE_PCPTYPES: Final = 3  # the number of types with per-CPU lists
MIGRATE_HIGHATOMIC: Final = 3
MIGRATE_ISOLATE: Final = 4
MIGRATE_TYPES: Final = 5

MIGRATETYPE_NAMES: Final = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")

# Where each pcp type looks when its own lists are empty, in order (mm/page_alloc.c fallbacks[]).
FALLBACKS: Final = (
    (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),  # UNMOVABLE
    (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),  # MOVABLE
    (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),  # RECLAIMABLE
)

MAX_PAGE_ORDER: Final = 10
NR_PAGE_ORDERS: Final = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER: Final = 9  # min(HPAGE_PMD_ORDER, MAX_PAGE_ORDER) on x86-64
PAGEBLOCK_NR_PAGES: Final = 1 << PAGEBLOCK_ORDER
PAGE_ALLOC_COSTLY_ORDER: Final = 3
HPAGE_PMD_ORDER: Final = 9

ZONE_DMA: Final = 0
ZONE_DMA32: Final = 1
ZONE_NORMAL: Final = 2
ZONE_MOVABLE: Final = 3
ZONE_DEVICE: Final = 4
MAX_NR_ZONES: Final = 5
ZONE_NAMES: Final = ("DMA", "DMA32", "Normal", "Movable", "Device")

_GFP_MOVABLE_MASK: Final = __GFP_RECLAIMABLE | __GFP_MOVABLE
_GFP_ZONEMASK: Final = __GFP_DMA | __GFP_HIGHMEM | __GFP_DMA32 | __GFP_MOVABLE


def gfp_migratetype(gfp: int) -> int:
    """The migratetype GFP flags ask for: none -> UNMOVABLE, __GFP_MOVABLE -> MOVABLE,
    __GFP_RECLAIMABLE -> RECLAIMABLE. Both at once names none (Linux WARNs): an error."""
    bits = gfp & _GFP_MOVABLE_MASK
    if bits == _GFP_MOVABLE_MASK:
        raise NoMigratetypeError(
            f"gfp flags {gfp:#x} name no migratetype: __GFP_MOVABLE and __GFP_RECLAIMABLE"
            " together"
        )
    return bits >> 3  # __GFP_MOVABLE is bit 3: MOVABLE 1, RECLAIMABLE 2


def migratetype_is_mergeable(mt: int) -> bool:
    """Blocks of these types may merge with each other across pageblocks."""
    return mt < MIGRATE_PCPTYPES


def gfp_zone(gfp: int) -> int:
    """The highest zone type GFP flags allow (Linux's GFP_ZONE_TABLE, 64-bit, no HIGHMEM)."""
    bits = gfp & _GFP_ZONEMASK
    dma, dma32 = bits & __GFP_DMA, bits & __GFP_DMA32
    highmem, movable = bits & __GFP_HIGHMEM, bits & __GFP_MOVABLE
    if (dma and dma32) or ((dma or dma32) and highmem):
        raise NoZoneForGfpError(f"gfp flags {gfp:#x} combine zone modifiers Linux forbids")
    if dma:
        return ZONE_DMA
    if dma32:
        return ZONE_DMA32
    if movable and highmem:
        return ZONE_MOVABLE
    return ZONE_NORMAL


def pcp_allowed_order(order: int) -> bool:
    """Orders the per-CPU lists keep: up to PAGE_ALLOC_COSTLY_ORDER, and the THP order."""
    return order <= PAGE_ALLOC_COSTLY_ORDER or order == HPAGE_PMD_ORDER
