"""A zone: free lists per order and migratetype, pageblock types, fallback, watermarks.

Design: a Zone is Linux's struct zone for the page machine (kmem.page.machine). It owns no
per-frame data: the machine's MemMap holds every frame's state and the list links (the same
columns and list primitives kmem's BuddyAllocator uses), a bytearray holds each pageblock's
migratetype, another the migratetype each allocated block was asked with. A zone covers the
frames [start_pfn, end_pfn); the managed ones were freed to it at boot.

States of a block (the first frame's mem_map state, see kmem.page.mem_map):
    FREE | order        on free_list[pageblock migratetype][order]   (PageBuddy)
    PCP | order         on a per-CPU list of this zone (kmem.page.pcp)
    ALLOCATED | order   handed out
Transitions here, with Linux's names:
    __rmqueue_smallest   FREE -> (caller's)     head of the smallest non-empty list of the
                         type, split down by expand(); fires mm_page_alloc_zone_locked
    __rmqueue_claim      a fallback type's largest block: try_to_claim_block takes a whole
                         pageblock (>= pageblock_order) or, when half of its pageblock is free or
                         alike, moves the pageblock to the asked type; mm_page_alloc_extfrag
    __rmqueue_steal      a fallback type's smallest fitting block, the pageblock keeps its
                         type (fragmenting); mm_page_alloc_extfrag
    __free_one_page      (caller's) -> FREE: merge with free buddies (across pageblocks only
                         between mergeable types, retyping the buddy's pageblocks), head or
                         tail of the list (buddy_merge_likely)

Invariants (check_lists, and the machine's check): a free block is aligned, inside the zone,
on the list of its pageblock's type (all its pageblocks of that type); nr_free[order] counts
every list of that order; free_pages counts the free pages not isolated, nr_free_highatomic
the HIGHATOMIC ones, free_pages_blocks those in blocks of order >= pageblock_order; no two
free buddies that may merge are left unmerged.

Flags: below_high (ZONE_BELOW_HIGH: set when an allocation found the zone under its high mark,
cleared when a drain brings it back), boosted_watermark (ZONE_BOOSTED_WATERMARK).
kmem has no kswapd and no reclaim: a boost is dropped when an allocation that may wake kswapd
next passes (as kswapd's boosted reclaim would end it), and reclaim_active never becomes true.

Storage: free_pages, nr_free_highatomic, watermark_boost, the three flags, numa_hit, the four
watermarks and lowmem_reserve are int64s in a block of ZONE_NR_VALUES in the machine's zone
buffer (kmem.page.counters), which the compiled core's order-0 pcp fast paths (csrc/pcp.c)
read and update in place; ``watermark`` and ``lowmem_reserve`` read as tuples.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from kmem.page.counters import Counter, Flag
from kmem.page.layout import ZoneLayout
from kmem.page.mem_map import (
    FREE,
    KIND_MASK,
    ORDER_MASK,
    PCP,
    RESERVED,
    list_add,
    list_add_tail,
    list_del,
    list_entries,
)
from kmem.page.migratetype import (
    FALLBACKS,
    MAX_NR_ZONES,
    MAX_PAGE_ORDER,
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_TYPES,
    MIGRATE_UNMOVABLE,
    NR_PAGE_ORDERS,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
    ZONE_NAMES,
)
from kmem.page.watermarks import (
    ALLOC_HIGHATOMIC,
    ALLOC_KSWAPD,
    ALLOC_MIN_RESERVE,
    ALLOC_NOFRAGMENT,
    ALLOC_NON_BLOCK,
    ALLOC_OOM,
    ALLOC_RESERVES,
    ALLOC_WMARK_MASK,
    WMARK_HIGH,
    WMARK_MIN,
)

if TYPE_CHECKING:
    from kmem.page.pcp import PerCpuPages

# rmqueue modes (enum rmqueue_mode): one rmqueue_bulk remembers where it found pages.
RMQUEUE_NORMAL: Final = 0
RMQUEUE_CMA: Final = 1
RMQUEUE_CLAIM: Final = 2
RMQUEUE_STEAL: Final = 3

LISTS_PER_ZONE: Final = MIGRATE_TYPES * NR_PAGE_ORDERS

# A zone's block in the machine's zone buffer (csrc/pcp.c has the same indices).
ZONE_FREE_PAGES: Final = 0  # NR_FREE_PAGES
ZONE_NR_FREE_HIGHATOMIC: Final = 1
ZONE_WATERMARK_BOOST: Final = 2
ZONE_BELOW_HIGH: Final = 3
ZONE_BOOSTED_WATERMARK: Final = 4
ZONE_RECLAIM_ACTIVE: Final = 5
ZONE_NUMA_HIT: Final = 6
ZONE_WATERMARK: Final = 7  # _watermark[WMARK_MIN..WMARK_PROMO]: 4 values
ZONE_LOWMEM_RESERVE: Final = 11  # lowmem_reserve[MAX_NR_ZONES]
ZONE_NR_VALUES: Final = ZONE_LOWMEM_RESERVE + MAX_NR_ZONES

# tracer(event, cpu, pfn, order, migratetype, extra)
Tracer = Callable[[str, int, int, int, int, tuple[int, ...]], None]


class Zone:
    """One zone of the page machine (Linux's struct zone), on the machine's shared mem_map."""

    free_pages = Counter(ZONE_FREE_PAGES)
    nr_free_highatomic = Counter(ZONE_NR_FREE_HIGHATOMIC)
    watermark_boost = Counter(ZONE_WATERMARK_BOOST)
    below_high = Flag(ZONE_BELOW_HIGH)
    boosted_watermark = Flag(ZONE_BOOSTED_WATERMARK)
    reclaim_active = Flag(ZONE_RECLAIM_ACTIVE)
    numa_hit = Counter(ZONE_NUMA_HIT)  # allocations served (zone_statistics counts one per call)

    def __init__(
        self,
        index: int,
        layout: ZoneLayout | None,
        state: bytearray,
        nxt: array[int],
        prv: array[int],
        pageblock_mt: bytearray,
        alloc_mt: bytearray,
        list_base: int,
        values: memoryview,
    ) -> None:
        """``values``: this zone's ZONE_NR_VALUES int64s (format 'q'), zeroed."""
        if values.format != "q" or len(values) != ZONE_NR_VALUES:
            raise ValueError(f"a zone needs {ZONE_NR_VALUES} int64 values")
        self._values: Final = values
        self.index: Final = index
        self.name: Final = ZONE_NAMES[index]
        self.start_pfn: Final = layout.start_pfn if layout else 0
        self.spanned: Final = layout.spanned if layout else 0
        self.present: Final = layout.present if layout else 0
        self.managed: Final = layout.managed if layout else 0
        self.end_pfn: Final = self.start_pfn + self.spanned
        self.managed_start: Final = self.end_pfn - self.managed
        self.present_start: Final = self.end_pfn - self.present
        self._state: Final = state
        self._next: Final = nxt
        self._prev: Final = prv
        self._pageblock_mt: Final = pageblock_mt
        self._alloc_mt: Final = alloc_mt
        # The head of free_list[mt][order] is _heads[mt * NR_PAGE_ORDERS + order].
        self._heads: Final = [~(list_base + k) for k in range(LISTS_PER_ZONE)]
        self.nr_free = [0] * NR_PAGE_ORDERS
        self.free_pages_blocks = 0  # NR_FREE_PAGES_BLOCKS
        # Free pages per migratetype (what /proc/pagetypeinfo sums; isolated ones too)
        self.free_pages_mt = [0] * MIGRATE_TYPES
        self.nr_reserved_highatomic = 0
        self.watermark_boost_factor = 15000
        self.pcps: list[PerCpuPages] = []  # one per CPU, set by the machine
        # Counters: events and zone->lock acquisitions since boot.
        self.zone_locked = 0  # mm_page_alloc_zone_locked events
        self.extfrag = 0  # mm_page_alloc_extfrag events
        self.claims = 0  # pageblocks claimed by fallbacks
        self.lock_count = 0
        self.cpu = 0  # the CPU whose operation runs now (for the tracer)
        self.tracer: Tracer | None = None

    @property
    def watermark(self) -> tuple[int, ...]:
        """_watermark[WMARK_MIN..WMARK_PROMO], without the boost."""
        return tuple(self._values[ZONE_WATERMARK : ZONE_WATERMARK + 4])

    @watermark.setter
    def watermark(self, marks: tuple[int, ...] | list[int]) -> None:
        if len(marks) != 4:
            raise ValueError("a zone has 4 watermarks (min, low, high, promo)")
        for which, mark in enumerate(marks):
            self._values[ZONE_WATERMARK + which] = mark

    @property
    def lowmem_reserve(self) -> tuple[int, ...]:
        """lowmem_reserve[highest_zoneidx]: the pages kept from allocations that could use a
        higher zone (/proc/zoneinfo's protection)."""
        return tuple(self._values[ZONE_LOWMEM_RESERVE : ZONE_LOWMEM_RESERVE + MAX_NR_ZONES])

    @lowmem_reserve.setter
    def lowmem_reserve(self, reserve: tuple[int, ...] | list[int]) -> None:
        if len(reserve) != MAX_NR_ZONES:
            raise ValueError(f"lowmem_reserve has {MAX_NR_ZONES} values, one per zone")
        for index, pages in enumerate(reserve):
            self._values[ZONE_LOWMEM_RESERVE + index] = pages

    # -- shape ---------------------------------------------------------------------------

    @property
    def populated(self) -> bool:
        return self.present > 0

    def spans(self, pfn: int) -> bool:
        return self.start_pfn <= pfn < self.end_pfn

    def wmark(self, which: int) -> int:
        """wmark_pages(): a watermark with the current boost."""
        values = self._values
        return values[ZONE_WATERMARK + which] + values[ZONE_WATERMARK_BOOST]

    # -- list primitives with Linux's accounting ---------------------------------------------

    def _account(self, nr_pages: int, mt: int) -> None:
        """account_freepages: isolated pages are not free pages."""
        self.free_pages_mt[mt] += nr_pages
        if mt == MIGRATE_ISOLATE:
            return
        values = self._values
        values[ZONE_FREE_PAGES] += nr_pages
        if mt == MIGRATE_HIGHATOMIC:
            values[ZONE_NR_FREE_HIGHATOMIC] += nr_pages

    def _list_add(self, pfn: int, order: int, mt: int, tail: bool) -> None:
        """__add_to_free_list (no free page accounting)."""
        head = self._heads[mt * NR_PAGE_ORDERS + order]
        if tail:
            list_add_tail(self._next, self._prev, head, pfn)
        else:
            list_add(self._next, self._prev, head, pfn)
        self._state[pfn] = FREE | order
        self.nr_free[order] += 1
        if order >= PAGEBLOCK_ORDER and mt != MIGRATE_ISOLATE:
            self.free_pages_blocks += 1 << order

    def _list_del(self, pfn: int, order: int, mt: int) -> None:
        """__del_page_from_free_list (no free page accounting): no longer PageBuddy; the
        caller gives the frame its new state."""
        list_del(self._next, self._prev, pfn)
        self._state[pfn] = 0
        self.nr_free[order] -= 1
        if order >= PAGEBLOCK_ORDER and mt != MIGRATE_ISOLATE:
            self.free_pages_blocks -= 1 << order

    def del_page_from_free_list(self, pfn: int, order: int, mt: int) -> None:
        self._list_del(pfn, order, mt)
        self._account(-(1 << order), mt)

    def move_to_free_list(self, pfn: int, order: int, old_mt: int, new_mt: int) -> None:
        """Move a free block to another type's list, at its tail."""
        list_del(self._next, self._prev, pfn)
        list_add_tail(self._next, self._prev, self._heads[new_mt * NR_PAGE_ORDERS + order], pfn)
        nr_pages = 1 << order
        self._account(-nr_pages, old_mt)
        self._account(nr_pages, new_mt)
        if order >= PAGEBLOCK_ORDER and (old_mt == MIGRATE_ISOLATE) != (new_mt == MIGRATE_ISOLATE):
            self.free_pages_blocks += -nr_pages if new_mt == MIGRATE_ISOLATE else nr_pages

    def free_list(self, mt: int, order: int) -> list[int]:
        """The pfns on free_list[mt][order], head first."""
        return list_entries(self._next, self._heads[mt * NR_PAGE_ORDERS + order])

    def pageblock_migratetype(self, pfn: int) -> int:
        return self._pageblock_mt[pfn >> PAGEBLOCK_ORDER]

    def change_pageblock_range(self, pfn: int, order: int, mt: int) -> None:
        first = pfn >> PAGEBLOCK_ORDER
        for block in range(first, first + (1 << max(order - PAGEBLOCK_ORDER, 0))):
            self._pageblock_mt[block] = mt

    # -- boot --------------------------------------------------------------------------------

    def free_boot_block(self, pfn: int, order: int) -> None:
        """__free_pages_core at boot: to the tail (FPI_TO_TAIL), of the pageblock's type.
        Boot blocks are maximal, so none merges with another."""
        mt = self._pageblock_mt[pfn >> PAGEBLOCK_ORDER]
        self._account(1 << order, mt)
        self._list_add(pfn, order, mt, True)

    # -- allocation ----------------------------------------------------------------------------

    def expand(self, pfn: int, low: int, high: int, mt: int) -> int:
        """Split the order-``high`` block at pfn down to ``low``: each upper half to the head
        of its list; return the pages put back."""
        added = 0
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            self._list_add(pfn + size, high, mt, False)
            added += size
        return added

    def page_del_and_expand(self, pfn: int, low: int, high: int, mt: int) -> None:
        self._list_del(pfn, high, mt)
        self._account(-(1 << high) + self.expand(pfn, low, high, mt), mt)

    def rmqueue_smallest(self, order: int, mt: int) -> int:
        """__rmqueue_smallest: the head of the smallest non-empty list of type mt at or above
        order, split down; -1 if none. Fires mm_page_alloc_zone_locked."""
        nxt = self._next
        heads = self._heads
        base = mt * NR_PAGE_ORDERS
        for current in range(order, NR_PAGE_ORDERS):
            pfn = nxt[heads[base + current]]
            if pfn < 0:
                continue
            self.page_del_and_expand(pfn, order, current, mt)
            self.zone_locked += 1
            if self.tracer is not None:
                refill = int((order <= 3 or order == PAGEBLOCK_ORDER) and mt < MIGRATE_PCPTYPES)
                self.tracer("mm_page_alloc_zone_locked", self.cpu, pfn, order, mt, (refill,))
            return pfn
        return -1

    def find_suitable_fallback(self, order: int, mt: int, claimable: bool) -> int:
        """The first fallback type with a block at ``order``; -1 none; -2 when claiming is not
        worth it at this order (the claim loop stops there)."""
        if claimable and not should_try_claim_block(order, mt):
            return -2
        if not self.nr_free[order]:
            return -1
        nxt = self._next
        for fallback in FALLBACKS[mt]:
            if nxt[self._heads[fallback * NR_PAGE_ORDERS + order]] >= 0:
                return fallback
        return -1

    def boost_watermark(self) -> bool:
        """Raise the watermarks by a pageblock after a fallback, up to 150% of high."""
        if not self.watermark_boost_factor or self.managed < PAGEBLOCK_NR_PAGES * 4:
            return False
        max_boost = self.watermark[WMARK_HIGH] * self.watermark_boost_factor // 10000
        if not max_boost:
            return False
        max_boost = max(PAGEBLOCK_NR_PAGES, max_boost)
        self.watermark_boost = min(self.watermark_boost + PAGEBLOCK_NR_PAGES, max_boost)
        return True

    def prep_move_freepages_block(self, pfn: int) -> tuple[int, int, int] | None:
        """The pageblock of pfn: (start, free pages, movable pages in use), or None when it
        straddles the zone's boundary."""
        start = pfn & ~(PAGEBLOCK_NR_PAGES - 1)
        end = start + PAGEBLOCK_NR_PAGES
        if not (self.spans(start) and self.spans(end - 1)):
            return None
        state = self._state
        free = movable = 0
        pfn = start
        while pfn < end:
            kind = state[pfn]
            if kind == RESERVED or not kind:
                pfn += 1
                continue
            size = 1 << (kind & ORDER_MASK)
            if kind & KIND_MASK == FREE:
                free += size
            elif kind & KIND_MASK != PCP and self._alloc_mt[pfn] == MIGRATE_MOVABLE:
                movable += size  # an allocated block asked as movable: LRU pages
            pfn += size
        return start, free, movable

    def move_freepages(self, start: int, old_mt: int, new_mt: int) -> int:
        """__move_freepages_block: every free block of the pageblock at ``start`` to the
        lists of new_mt; return the pages moved. The caller retypes the pageblock."""
        state = self._state
        moved = 0
        pfn = start
        end = start + PAGEBLOCK_NR_PAGES
        while pfn < end:
            kind = state[pfn]
            if kind & KIND_MASK != FREE:
                pfn += 1
                continue
            order = kind & ORDER_MASK
            self.move_to_free_list(pfn, order, old_mt, new_mt)
            pfn += 1 << order
            moved += 1 << order
        return moved

    def move_freepages_block(self, pfn: int, old_mt: int, new_mt: int) -> int:
        """move_freepages_block: -1 when the pageblock straddles the zone boundary."""
        prepared = self.prep_move_freepages_block(pfn)
        if prepared is None:
            return -1
        start = prepared[0]
        moved = self.move_freepages(start, old_mt, new_mt)
        self._pageblock_mt[start >> PAGEBLOCK_ORDER] = new_mt
        return moved

    def try_to_claim_block(
        self, pfn: int, current: int, order: int, start_mt: int, block_mt: int, flags: int
    ) -> int:
        """Take a whole pageblock (or more) of block_mt for start_mt, or convert the pageblock
        of pfn when at least half of it is free or alike; -1 when it cannot be claimed."""
        if current >= PAGEBLOCK_ORDER:
            self.del_page_from_free_list(pfn, current, block_mt)
            self.change_pageblock_range(pfn, current, start_mt)
            self._account(self.expand(pfn, order, current, start_mt), start_mt)
            self.claims += 1
            return pfn
        if self.boost_watermark() and flags & ALLOC_KSWAPD:
            self.boosted_watermark = True
        prepared = self.prep_move_freepages_block(pfn)
        if prepared is None:
            return -1
        start, free, movable = prepared
        if start_mt == MIGRATE_MOVABLE:
            alike = movable
        elif block_mt == MIGRATE_MOVABLE:
            alike = PAGEBLOCK_NR_PAGES - (free + movable)
        else:
            alike = 0
        if free + alike >= PAGEBLOCK_NR_PAGES >> 1:
            self.move_freepages(start, block_mt, start_mt)
            self._pageblock_mt[start >> PAGEBLOCK_ORDER] = start_mt
            self.claims += 1
            return self.rmqueue_smallest(order, start_mt)
        return -1

    def _extfrag(self, pfn: int, order: int, current: int, mt: int, fallback: int) -> None:
        self.extfrag += 1
        if self.tracer is not None:
            owner = int(self._pageblock_mt[pfn >> PAGEBLOCK_ORDER] == mt)
            self.tracer("mm_page_alloc_extfrag", self.cpu, pfn, order, mt,
                        (current, fallback, int(current < PAGEBLOCK_ORDER), owner))

    def rmqueue_claim(self, order: int, mt: int, flags: int) -> int:
        """__rmqueue_claim: the largest fallback block worth claiming, claimed."""
        min_order = order
        if order < PAGEBLOCK_ORDER and flags & ALLOC_NOFRAGMENT:
            min_order = PAGEBLOCK_ORDER  # the first pass takes whole pageblocks only
        for current in range(MAX_PAGE_ORDER, min_order - 1, -1):
            fallback = self.find_suitable_fallback(current, mt, True)
            if fallback == -1:
                continue
            if fallback == -2:
                break
            pfn = self._next[self._heads[fallback * NR_PAGE_ORDERS + current]]
            page = self.try_to_claim_block(pfn, current, order, mt, fallback, flags)
            if page >= 0:
                self._extfrag(page, order, current, mt, fallback)
                return page
        return -1

    def rmqueue_steal(self, order: int, mt: int) -> int:
        """__rmqueue_steal: the smallest fallback block that fits, its pageblock untouched."""
        for current in range(order, NR_PAGE_ORDERS):
            fallback = self.find_suitable_fallback(current, mt, False)
            if fallback == -1:
                continue
            pfn = self._next[self._heads[fallback * NR_PAGE_ORDERS + current]]
            self.page_del_and_expand(pfn, order, current, fallback)
            self._extfrag(pfn, order, current, mt, fallback)
            return pfn
        return -1

    def rmqueue(self, order: int, mt: int, flags: int, mode: int) -> tuple[int, int]:
        """__rmqueue: (pfn or -1, the mode to start from next time in this bulk)."""
        if mode == RMQUEUE_NORMAL:
            pfn = self.rmqueue_smallest(order, mt)
            if pfn >= 0:
                return pfn, mode
        if mode <= RMQUEUE_CLAIM:
            pfn = self.rmqueue_claim(order, mt, flags)
            if pfn >= 0:
                return pfn, RMQUEUE_NORMAL  # replenished the preferred list
        if not flags & ALLOC_NOFRAGMENT:
            pfn = self.rmqueue_steal(order, mt)
            if pfn >= 0:
                return pfn, RMQUEUE_STEAL
        return -1, mode

    def rmqueue_bulk(self, order: int, count: int, mt: int, flags: int, head: int) -> int:
        """rmqueue_bulk: up to ``count`` blocks under one zone lock, each to the tail of the
        per-CPU list ``head`` (so in ascending pfn order); return how many."""
        self.lock_count += 1
        nxt, prv, state = self._next, self._prev, self._state
        mode = RMQUEUE_NORMAL
        got = 0
        kind = PCP | order
        while got < count:
            pfn, mode = self.rmqueue(order, mt, flags, mode)
            if pfn < 0:
                break
            list_add_tail(nxt, prv, head, pfn)
            state[pfn] = kind
            got += 1
        return got

    def rmqueue_buddy(self, order: int, mt: int, flags: int) -> int:
        """rmqueue_buddy: one block straight from the buddy lists (highatomic first for
        high-order atomic requests, and as a last resort for non-blocking ones)."""
        self.lock_count += 1
        pfn = -1
        if flags & ALLOC_HIGHATOMIC:
            pfn = self.rmqueue_smallest(order, MIGRATE_HIGHATOMIC)
        if pfn < 0:
            pfn = self.rmqueue(order, mt, flags, RMQUEUE_NORMAL)[0]
            if pfn < 0 and flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
                pfn = self.rmqueue_smallest(order, MIGRATE_HIGHATOMIC)
        return pfn

    # -- free --------------------------------------------------------------------------------

    def free_one_page(self, pfn: int, order: int, mt: int, to_tail: bool = False) -> None:
        """__free_one_page: merge with each free buddy, then list the block."""
        self._account(1 << order, mt)
        state = self._state
        state[pfn] = 0  # whatever it was (allocated, on a pcp list), it may become a tail
        start, end = self.start_pfn, self.end_pfn
        pageblock_mt = self._pageblock_mt
        while order < MAX_PAGE_ORDER:
            buddy = pfn ^ (1 << order)
            if not start <= buddy < end or state[buddy] != FREE | order:
                break
            buddy_mt = mt
            if order >= PAGEBLOCK_ORDER:
                buddy_mt = pageblock_mt[buddy >> PAGEBLOCK_ORDER]
                if buddy_mt != mt and (mt >= MIGRATE_PCPTYPES or buddy_mt >= MIGRATE_PCPTYPES):
                    break  # never merge highatomic or isolated blocks with others
            self._list_del(buddy, order, buddy_mt)
            if buddy_mt != mt:
                self.change_pageblock_range(buddy, order, mt)
                self.free_pages_mt[buddy_mt] -= 1 << order  # (its pages are of mt now)
                self.free_pages_mt[mt] += 1 << order
            pfn &= ~(1 << order)
            order += 1
        if not to_tail and order < MAX_PAGE_ORDER - 1:
            higher_buddy = (pfn & ~(1 << order)) ^ (2 << order)  # buddy_merge_likely
            to_tail = start <= higher_buddy < end and state[higher_buddy] == FREE | (order + 1)
        self._list_add(pfn, order, mt, to_tail)

    def split_large_buddy(self, pfn: int, order: int) -> None:
        """free_one_page's body: a block larger than a pageblock is freed pageblock by
        pageblock (each of its own type), each merging as it can."""
        self.lock_count += 1
        piece = min(order, PAGEBLOCK_ORDER)
        for part in range(pfn, pfn + (1 << order), 1 << piece):
            self.free_one_page(part, piece, self._pageblock_mt[part >> PAGEBLOCK_ORDER])

    # -- highatomic reserves -------------------------------------------------------------------

    def reserve_highatomic_pageblock(self, pfn: int, order: int) -> None:
        """Keep the pageblock(s) of a high-order atomic allocation for more of them: at most
        about 1% of the zone, none in zones under 100 pageblocks."""
        limit = self.managed // 100
        if limit < PAGEBLOCK_NR_PAGES:
            return
        limit = -(-limit // PAGEBLOCK_NR_PAGES) * PAGEBLOCK_NR_PAGES
        if self.nr_reserved_highatomic >= limit:
            return
        mt = self._pageblock_mt[pfn >> PAGEBLOCK_ORDER]
        if mt >= MIGRATE_PCPTYPES:
            return
        if order < PAGEBLOCK_ORDER:
            if self.move_freepages_block(pfn, mt, MIGRATE_HIGHATOMIC) == -1:
                return
            self.nr_reserved_highatomic += PAGEBLOCK_NR_PAGES
        else:
            self.change_pageblock_range(pfn, order, MIGRATE_HIGHATOMIC)
            self.nr_reserved_highatomic += 1 << order

    def unreserve_highatomic_pageblock(self, mt: int, force: bool) -> bool:
        """Give one highatomic pageblock back to type mt (keeping one unless forced)."""
        if not force and self.nr_reserved_highatomic <= PAGEBLOCK_NR_PAGES:
            return False
        for order in range(NR_PAGE_ORDERS):
            pfn = self._next[self._heads[MIGRATE_HIGHATOMIC * NR_PAGE_ORDERS + order]]
            if pfn < 0:
                continue
            size = min(max(PAGEBLOCK_NR_PAGES, 1 << order), self.nr_reserved_highatomic)
            self.nr_reserved_highatomic -= size
            if order < PAGEBLOCK_ORDER:
                moved = self.move_freepages_block(pfn, MIGRATE_HIGHATOMIC, mt)
            else:
                self.move_to_free_list(pfn, order, MIGRATE_HIGHATOMIC, mt)
                self.change_pageblock_range(pfn, order, mt)
                moved = 1
            # (-1 is a pageblock across the zone's edge, which is never reserved)
            if moved > 0:  # pragma: no branch
                return True
        return False

    # -- watermarks ----------------------------------------------------------------------------

    def zone_watermark_ok(
        self, order: int, mark: int, highest_zoneidx: int, flags: int,
        free_pages: int | None = None,
    ) -> bool:
        """__zone_watermark_ok: enough free pages above mark + lowmem_reserve, and for a
        high-order request a block of that order on a list the request may use."""
        free = self.free_pages if free_pages is None else free_pages
        free -= (1 << order) - 1
        if not flags & ALLOC_RESERVES:
            free -= self.nr_free_highatomic
        floor = mark
        if flags & ALLOC_RESERVES:
            if flags & ALLOC_MIN_RESERVE:
                floor -= floor // 2
                if flags & ALLOC_NON_BLOCK:
                    floor -= floor // 4
            if flags & ALLOC_OOM:
                floor -= floor // 2
        if free <= floor + self._values[ZONE_LOWMEM_RESERVE + highest_zoneidx]:
            return False
        if not order:
            return True
        nxt, heads = self._next, self._heads
        for current in range(order, NR_PAGE_ORDERS):
            if not self.nr_free[current]:
                continue
            for mt in (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE):
                if nxt[heads[mt * NR_PAGE_ORDERS + current]] >= 0:
                    return True
            if flags & (ALLOC_HIGHATOMIC | ALLOC_OOM) and (
                nxt[heads[MIGRATE_HIGHATOMIC * NR_PAGE_ORDERS + current]] >= 0
            ):
                return True
        return False

    def zone_watermark_fast(self, order: int, mark: int, highest_zoneidx: int, flags: int) -> bool:
        """zone_watermark_fast: the order-0 shortcut, then the full check, then (order-0
        __GFP_HIGH at the min mark) the check without the boost."""
        values = self._values
        free = values[ZONE_FREE_PAGES]
        if not order:
            unusable = 0 if flags & ALLOC_RESERVES else values[ZONE_NR_FREE_HIGHATOMIC]
            if free - min(free, unusable) > mark + values[ZONE_LOWMEM_RESERVE + highest_zoneidx]:
                return True
        if self.zone_watermark_ok(order, mark, highest_zoneidx, flags, free):
            return True
        if (not order and flags & ALLOC_MIN_RESERVE and self.watermark_boost
                and flags & ALLOC_WMARK_MASK == WMARK_MIN):
            return self.zone_watermark_ok(order, values[ZONE_WATERMARK + WMARK_MIN],
                                          highest_zoneidx, flags, free)
        return False

    # -- invariants ----------------------------------------------------------------------------

    def check_lists(self) -> None:
        """Verify the free lists and their counters; raise AssertionError on the first fault."""
        state, nxt, prv = self._state, self._next, self._prev
        nr_free = [0] * NR_PAGE_ORDERS
        free_pages = highatomic = blocks = 0
        by_type = [0] * MIGRATE_TYPES
        for mt in range(MIGRATE_TYPES):
            for order in range(NR_PAGE_ORDERS):
                head = self._heads[mt * NR_PAGE_ORDERS + order]
                # No loop counter: a list that cycles without its head revisits some pfn,
                # whose prev link cannot name both of the pfns that led to it.
                previous, pfn = head, nxt[head]
                while pfn != head:
                    where = f"zone {self.name} free_list[{mt}][{order}] pfn {pfn:#x}"
                    if prv[pfn] != previous:
                        raise AssertionError(f"{where}: broken prev link")
                    if not (self.spans(pfn) and self.spans(pfn + (1 << order) - 1)):
                        raise AssertionError(f"{where}: outside the zone")
                    if pfn & ((1 << order) - 1):
                        raise AssertionError(f"{where}: misaligned")
                    if state[pfn] != FREE | order:
                        raise AssertionError(f"{where}: state {state[pfn]:#x}")
                    first = pfn >> PAGEBLOCK_ORDER
                    last = (pfn + (1 << order) - 1) >> PAGEBLOCK_ORDER
                    if any(self._pageblock_mt[b] != mt for b in range(first, last + 1)):
                        raise AssertionError(f"{where}: its pageblock is of another type")
                    self._check_merged(pfn, order, mt, where)
                    nr_free[order] += 1
                    by_type[mt] += 1 << order
                    if mt != MIGRATE_ISOLATE:
                        free_pages += 1 << order
                        if order >= PAGEBLOCK_ORDER:
                            blocks += 1 << order
                    if mt == MIGRATE_HIGHATOMIC:
                        highatomic += 1 << order
                    previous, pfn = pfn, nxt[pfn]
                if prv[head] != previous:
                    raise AssertionError(f"zone {self.name} free_list[{mt}][{order}]: bad tail")
        counts = (("nr_free", nr_free, self.nr_free), ("free_pages", free_pages, self.free_pages),
                  ("nr_free_highatomic", highatomic, self.nr_free_highatomic),
                  ("free_pages_blocks", blocks, self.free_pages_blocks),
                  ("free_pages_mt", by_type, self.free_pages_mt))
        for what, found, kept in counts:
            if found != kept:
                raise AssertionError(f"zone {self.name}: {what} is {kept}, the lists hold {found}")
        if self.nr_reserved_highatomic < 0 or self.watermark_boost < 0:
            raise AssertionError(f"zone {self.name}: negative reserve or boost")

    def _check_merged(self, pfn: int, order: int, mt: int, where: str) -> None:
        if order >= MAX_PAGE_ORDER:
            return
        buddy = pfn ^ (1 << order)
        if not self.spans(buddy) or self._state[buddy] != FREE | order:
            return
        buddy_mt = self._pageblock_mt[buddy >> PAGEBLOCK_ORDER]
        if order < PAGEBLOCK_ORDER or buddy_mt == mt or (
            mt < MIGRATE_PCPTYPES and buddy_mt < MIGRATE_PCPTYPES
        ):
            raise AssertionError(f"{where}: its free buddy {buddy:#x} was not merged")


def should_try_claim_block(order: int, start_mt: int) -> bool:
    """Is a fallback at this order worth converting a whole pageblock for? Always for big
    blocks (>= half a pageblock's order) and for unmovable/reclaimable requests."""
    if order >= PAGEBLOCK_ORDER // 2:
        return True
    return start_mt in (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE)

