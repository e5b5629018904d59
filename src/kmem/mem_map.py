"""The mem_map: metadata of every page frame in flat columns, never an object per page.

Linux keeps a ``struct page`` per frame; kmem keeps the few fields its allocators use as columns:

    state[pfn]   what the frame is (see below) and, for a block's first frame, its order
    owner[pfn]   which slab cache a slab page belongs to (Linux: slab->slab_cache), 0 for none
    next, prev   free-list links (Linux: page->buddy_list), dicts holding only the first frame of
                 each free block; key ~order (-1 - order) is the list head of that order

``state`` is a list of small ints (CPython shares them, so 8 bytes a frame) because list
indexing is the fastest subscript CPython has: 3-5x faster than a bytearray's or an array's,
and the buddy allocator reads or writes it once per split or merge. The links live in dicts
because only free blocks need them: a few per 4 MiB at boot. Together: 12 bytes a frame plus
about 200 bytes per free block; a booted 64 GiB machine (16,777,216 frames) needs 192 MiB.

Frame states (the high bits of ``state``; the low 5 bits are the block's order):

    0                     inside a block, not its first frame (Linux: a tail page)
    FREE | order          first frame of a free block on free list ``order`` (PageBuddy)
    ALLOCATED | order     first frame of a block handed out by alloc_pages(order)
    RESERVED              never given to the allocator (a memblock reservation, a hole)
    BEYOND                past the last frame: ``state`` is padded to a whole max-order block
                          so that a buddy lookup never needs a bounds check

A frame changes state only under the buddy allocator's lock:
    FREE  --alloc_pages--> ALLOCATED --free_pages--> FREE (then merged: the buddy's first frame
    becomes 0, a tail of the merged block).
"""

from __future__ import annotations

import sys
from array import array
from typing import Final

FREE: Final = 0x40
ALLOCATED: Final = 0x80
RESERVED: Final = 0x20
BEYOND: Final = 0xFF
ORDER_MASK: Final = 0x1F
KIND_MASK: Final = 0xE0

# owner is an array('I'); 2**31 frames is 8 TiB of 4 KiB pages.
MAX_PAGES: Final = 2**31


class MemMap:
    """Per-frame metadata columns for ``nr_pages`` frames and ``nr_orders`` free lists."""

    __slots__ = ("next", "nr_orders", "nr_pages", "owner", "prev", "state")

    def __init__(self, nr_pages: int, nr_orders: int) -> None:
        self.nr_pages: Final = nr_pages
        self.nr_orders: Final = nr_orders
        # The buddy of a block below the top order lies inside the same top-order block, so
        # padding to a multiple of it keeps every buddy lookup inside the list.
        top = 1 << (nr_orders - 1)
        padded = -(-nr_pages // top) * top
        # list * n is a C-speed fill: 16 million entries in a few tens of milliseconds.
        self.state: list[int] = [0] * nr_pages + [BEYOND] * (padded - nr_pages)
        self.owner = array("I", [0]) * nr_pages
        self.next: dict[int, int] = {}
        self.prev: dict[int, int] = {}
        for order in range(nr_orders):
            head = ~order
            self.next[head] = self.prev[head] = head  # empty circular list

    @property
    def bytes_per_page(self) -> float:
        """Metadata bytes per page frame now: the columns, the links and their int objects."""
        links = sys.getsizeof(self.next) + sys.getsizeof(self.prev)
        # Each free block's key and link values are int objects of their own (28 bytes).
        links += 28 * 3 * (len(self.next) - self.nr_orders)
        total = (
            sys.getsizeof(self.state)
            + self.owner.itemsize * len(self.owner)
            + links
        )
        return total / self.nr_pages
