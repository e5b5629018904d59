"""The mem_map: metadata of every page frame in flat arrays, never an object per page.

Linux keeps a ``struct page`` per frame; kmem keeps the few fields its allocators use as columns:

    state[pfn]   one byte: what the frame is (see below) and, for a block's first frame, its order
    next[pfn]    free-list links (Linux: page->buddy_list), meaningful only for a free block's
    prev[pfn]    first frame; entries nr_pages + order are the list heads of each order
    owner[pfn]   which slab cache a slab page belongs to (Linux: slab->slab_cache), 0 for none

That is 13 bytes a page: a 64 GiB machine (16,777,216 pages of 4 KiB) needs 208 MiB.

Frame states (the high bits of ``state``; the low 5 bits are the block's order):

    0                     inside a block, not its first frame (Linux: a tail page)
    FREE | order          first frame of a free block on free list ``order`` (PageBuddy)
    ALLOCATED | order     first frame of a block handed out by alloc_pages(order)
    RESERVED              never given to the allocator (a memblock reservation, a hole)

A frame changes state only under the buddy allocator's lock:
    FREE  --alloc_pages--> ALLOCATED --free_pages--> FREE (then merged: the buddy's first frame
    becomes 0, a tail of the merged block).
"""

from __future__ import annotations

from array import array
from typing import Final

FREE: Final = 0x40
ALLOCATED: Final = 0x80
RESERVED: Final = 0x20
ORDER_MASK: Final = 0x1F
KIND_MASK: Final = 0xE0

# array('i') holds list links: 2**31 frames is 8 TiB of 4 KiB pages.
MAX_PAGES: Final = 2**31 - 64


class MemMap:
    """Per-frame metadata columns for ``nr_pages`` frames and ``nr_orders`` free-list heads."""

    __slots__ = ("next", "nr_orders", "nr_pages", "owner", "prev", "state")

    def __init__(self, nr_pages: int, nr_orders: int) -> None:
        self.nr_pages: Final = nr_pages
        self.nr_orders: Final = nr_orders
        self.state = bytearray(nr_pages)
        links = nr_pages + nr_orders
        # array * n is a C-speed fill: 64 MiB of zeros in a few milliseconds.
        self.next = array("i", [0]) * links
        self.prev = array("i", [0]) * links
        self.owner = array("I", [0]) * nr_pages
        for order in range(nr_orders):
            head = nr_pages + order
            self.next[head] = self.prev[head] = head  # empty circular list

    @property
    def bytes_per_page(self) -> float:
        """Metadata bytes per page frame, list heads included."""
        total = (
            len(self.state)
            + self.next.itemsize * len(self.next)
            + self.prev.itemsize * len(self.prev)
            + self.owner.itemsize * len(self.owner)
        )
        return total / self.nr_pages
