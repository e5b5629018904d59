"""The mem_map: metadata of every page frame in flat arrays, never an object per page.

Linux keeps a ``struct page`` per frame; kmem keeps the few fields its allocators use as columns:

    state[pfn]   one byte: what the frame is (see below) and, for a block's first frame, its order
    next[pfn]    free-list links (Linux: page->buddy_list), meaningful only for a free block's
    prev[pfn]    first frame; the last nr_lists entries are the list heads, so that index
                 ~k (-1 - k, a negative index) is the head of list k (the buddy allocator's
                 list k is its free list of order k; the page machine numbers its free lists
                 per zone, migratetype and order, and its per-CPU lists after them)
    owner[pfn]   which slab cache a slab page belongs to (Linux: slab->slab_cache), 0 for none

That is 13 bytes a frame, whatever the allocator does: a 64 GiB machine (16,777,216 frames of
4 KiB) needs 208 MiB. Dense arrays cost more per subscript than a list or a dict in CPython, but
they keep the cost per operation flat as memory grows (a random frame touches one cache line per
column), and their size never depends on how fragmented memory is. Measured on this design's
benchmark: lists and dicts were 6% faster on 16,384 frames, 11% slower on 16,777,216, and their
links grew by about 150 bytes per free block.

Frame states (the high bits of ``state``; the low 5 bits are the block's order):

    0                     inside a block, not its first frame (Linux: a tail page)
    FREE | order          first frame of a free block on free list ``order`` (PageBuddy)
    ALLOCATED | order     first frame of a block handed out by alloc_pages(order)
    PCP | order           first frame of a block on a per-CPU page list (the page machine's
                          pcp: allocated from the buddy lists' view, free from the user's)
    RESERVED              never given to the allocator (a memblock reservation, a hole)
    BEYOND                past the last frame: ``state`` is padded to a whole max-order block
                          so that a buddy lookup never needs a bounds check

A frame changes state only under the buddy allocator's lock:
    FREE  --alloc_pages--> ALLOCATED --free_pages--> FREE (then merged: the buddy's first frame
    becomes 0, a tail of the merged block).
The page machine adds FREE --rmqueue_bulk--> PCP --alloc_pages--> ALLOCATED --free_pages--> PCP
--free_pcppages_bulk--> FREE.

The list primitives below (Linux's list_add, list_add_tail, list_del on page->buddy_list) are
the one implementation of the doubly linked lists both allocators use; BuddyAllocator's hot
paths inline copies of them, which is why they are this short.
"""

from __future__ import annotations

from array import array
from typing import Final

from kmem.page.errors import HostMemoryError

FREE: Final = 0x40
ALLOCATED: Final = 0x80
PCP: Final = 0xC0
RESERVED: Final = 0x20
BEYOND: Final = 0xFF
ORDER_MASK: Final = 0x1F
KIND_MASK: Final = 0xE0

# The links are array('i'): 2**31 frames (less the list heads) is 8 TiB of 4 KiB pages.
MAX_PAGES: Final = 2**31 - 64

# The most page metadata kmem builds, whatever the host has: 2 GiB is 165 million frames
# (660 GiB of 4 KiB pages). Larger pages need fewer frames for the same memory.
MAX_METADATA_BYTES: Final = 2 << 30


def metadata_bytes(nr_pages: int, nr_lists: int = 0, top: int = 1) -> int:
    """Bytes of mem_map columns for ``nr_pages`` frames: 13 a frame, 8 a list head, and the
    state column's padding to whole blocks of ``top`` frames (the top order's: MemMap)."""
    return 12 * nr_pages + -(-nr_pages // top) * top + 8 * nr_lists


def host_memory_available() -> int | None:
    """The host's MemAvailable in bytes (/proc/meminfo), or None where there is none."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_host_memory(nr_pages: int, nr_lists: int, what: str, top: int = 1) -> None:
    """Refuse, before anything is allocated, metadata for ``nr_pages`` frames (a state column
    padded to blocks of ``top`` frames) that exceeds MAX_METADATA_BYTES or half of the host's
    available memory (the rest is the host's)."""
    need = metadata_bytes(nr_pages, nr_lists, top)
    if need > MAX_METADATA_BYTES:
        raise HostMemoryError(
            f"{what} of {nr_pages} pages needs {need} bytes of page metadata, more than kmem's"
            f" limit of {MAX_METADATA_BYTES} bytes (larger pages need fewer frames)"
        )
    available = host_memory_available()
    if available is not None and need > available // 2:
        raise HostMemoryError(
            f"{what} of {nr_pages} pages needs {need} bytes of page metadata, more than half"
            f" of the {available} bytes this host has available (MemAvailable)"
        )


class MemMap:
    """Per-frame metadata columns for ``nr_pages`` frames and ``nr_orders`` free lists."""

    __slots__ = ("next", "nr_lists", "nr_orders", "nr_pages", "owner", "prev", "state")

    def __init__(self, nr_pages: int, nr_orders: int, nr_lists: int | None = None) -> None:
        self.nr_pages: Final = nr_pages
        self.nr_orders: Final = nr_orders
        self.nr_lists: Final = nr_orders if nr_lists is None else nr_lists
        # The buddy of a block below the top order lies inside the same top-order block, so
        # padding to a multiple of it keeps every buddy lookup inside the array.
        top = 1 << (nr_orders - 1)
        check_host_memory(nr_pages, self.nr_lists, "a mem_map", top)
        padded = -(-nr_pages // top) * top
        self.state = bytearray(nr_pages) + bytes([BEYOND]) * (padded - nr_pages)
        self.owner = array("I", [0]) * nr_pages
        # array * n is a C-speed fill: 64 MiB of zeros in a few milliseconds.
        links = nr_pages + self.nr_lists
        self.next = array("i", [0]) * links
        self.prev = array("i", [0]) * links
        for k in range(self.nr_lists):
            head = ~k
            self.next[head] = self.prev[head] = head  # an empty circular list

    @property
    def bytes_per_page(self) -> float:
        """Metadata bytes per page frame, list heads included."""
        total = len(self.state) + sum(
            column.itemsize * len(column) for column in (self.next, self.prev, self.owner)
        )
        return total / self.nr_pages


# -- list primitives ------------------------------------------------------------------------
# ``nxt``/``prv`` are a MemMap's next/prev columns; ``head`` is a list head index (~k).


def list_add(nxt: array[int], prv: array[int], head: int, pfn: int) -> None:
    """Put ``pfn`` at the head of the list (Linux's list_add)."""
    first = nxt[head]
    nxt[pfn] = first
    prv[pfn] = head
    prv[first] = pfn
    nxt[head] = pfn


def list_add_tail(nxt: array[int], prv: array[int], head: int, pfn: int) -> None:
    """Put ``pfn`` at the tail of the list (Linux's list_add_tail)."""
    last = prv[head]
    prv[pfn] = last
    nxt[pfn] = head
    nxt[last] = pfn
    prv[head] = pfn


def list_del(nxt: array[int], prv: array[int], pfn: int) -> None:
    """Take ``pfn`` off whatever list it is on (Linux's list_del)."""
    before = prv[pfn]
    after = nxt[pfn]
    nxt[before] = after
    prv[after] = before


def list_entries(nxt: array[int], head: int, limit: int | None = None) -> list[int]:
    """The pfns on the list, head first (at most ``limit`` of them)."""
    out = []
    pfn = nxt[head]
    if limit is None:
        while pfn != head:
            out.append(pfn)
            pfn = nxt[pfn]
        return out
    while pfn != head and len(out) < limit:
        out.append(pfn)
        pfn = nxt[pfn]
    return out


def boot_blocks(start: int, end: int, max_order: int) -> list[tuple[int, int]]:
    """How Linux frees the run of frames [start, end) at boot (memblock_free_all ->
    __free_pages_memory): the largest naturally aligned blocks, lowest address first, as
    (pfn, order) pairs. No two of them are free buddies."""
    out = []
    pfn = start
    while pfn < end:
        order = min(max_order, (pfn & -pfn).bit_length() - 1 if pfn else max_order)
        while pfn + (1 << order) > end:
            order -= 1
        out.append((pfn, order))
        pfn += 1 << order
    return out
