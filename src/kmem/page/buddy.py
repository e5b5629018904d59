"""The buddy page allocator, as Linux's mm/page_alloc.c runs one zone.

Memory is a run of page frames. Free memory is kept as naturally aligned blocks of 2**order
frames, order 0..max_order, one free list per order (Linux: zone->free_area[order]), with
``nr_free[order]`` blocks on it. The buddy of the order-``o`` block at ``pfn`` is the block at
``pfn ^ (1 << o)``: together they form the order-``o + 1`` block at ``pfn & ~(1 << o)``.

Allocation (``__rmqueue_smallest`` + ``expand``): take the head of the smallest non-empty list at
or above the requested order, then split it down, keeping the lower half and putting each upper
half at the head of the next-lower list. Worked example, 64 frames (256 KiB), order 3 (32 KiB):

    order 6: [0-63]            take it
    order 5: [32-63]  <- upper half of 0-63, at the head of list 5
    order 4: [16-31]  <- upper half of 0-31
    order 3: [ 8-15]  <- upper half of 0-15; frames 0-7 are returned

Free (``__free_one_page``): while the buddy is a free block of the same order (and inside the
memory), take it off its list and merge; then put the merged block at the list's tail if Linux's
``buddy_merge_likely`` says its parent's buddy is free too (it may merge soon, so keep it away
from the next allocation), else at the head. Freeing frames 0-7 above merges with 8-15, 16-31,
32-63: one order-6 block again.

Every list operation is O(1): the lists are circular and doubly linked through the mem_map's
``next``/``prev`` columns, with a sentinel head per order; a bitmask of the non-empty orders
finds the smallest usable order with one ``int.bit_length``.

Fast paths and slow paths: alloc_pages takes a block of exactly the asked order inline and calls
_take_from_larger only when that list is empty (it then splits); free_pages lists the block
inline and calls _merge only when the buddy is free. In a mixed workload holding half of memory,
about 95% of allocations and frees take the fast path.

Invariants (``check()`` verifies them all): every frame lies in exactly one free block, one
allocated block or a reserved hole; a free block's first frame is on the list of its order and
nowhere else; ``nr_free`` counts each list; no two free buddies of the same order below
max_order coexist (they would have merged); blocks are naturally aligned.

One lock per allocator (Linux's zone->lock) makes it safe to share between threads;
``thread_safe=False`` drops it for single-threaded users (about 10% faster).
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Final, NamedTuple

from kmem._compiled import core
from kmem.errors import (
    DoubleFreeError,
    InvalidArgumentError,
    InvalidFreeError,
    InvalidTypeError,
    KmemError,
    OutOfMemoryError,
    WrongOrderError,
    int_argument,
)
from kmem.page.errors import MemoryClosedError, UnknownZoneError
from kmem.page.fragmentation import FragmentationReport, fragmentation_report
from kmem.page.mem_map import (
    ALLOCATED,
    BEYOND,
    FREE,
    KIND_MASK,
    MAX_PAGES,
    ORDER_MASK,
    RESERVED,
    MemMap,
    boot_blocks,
    check_host_memory,
    list_add_tail,
    list_entries,
)
from kmem.page.memory import PhysicalMemory, check_page_size
from kmem.page.migratetype import ZONE_NAMES
from kmem.page.order import MAX_PAGE_ORDER
from kmem.page.vmstat import buddyinfo_line

if TYPE_CHECKING:
    from kmem._core import BuddyZone
    from kmem.page.memory import Backing

MAX_NUMNODES: Final = 1024  # Linux: 1 << CONFIG_NODES_SHIFT, at most 10
# After nr_free[0..max_order] in the counters buffer: the non-empty mask, allocations, frees,
# failures, splits, merges.
_NR_COUNTERS: Final = 6


@dataclass(frozen=True, slots=True)
class BuddyStats:
    """A snapshot of the allocator: every page accounted for, and what has been done."""

    nr_pages: int
    free_pages: int
    allocated_pages: int
    reserved_pages: int
    nr_free: tuple[int, ...]
    allocations: int
    frees: int
    failures: int
    splits: int
    merges: int


class Block(NamedTuple):
    """What a page frame belongs to: ``state`` is "free", "allocated" or "reserved".

    A NamedTuple rather than a dataclass: blocks() builds one per block for every snapshot
    the replay page takes, and a tuple is several times cheaper to make.
    """

    pfn: int
    order: int
    state: str


def _reserved_ranges(reserved: object) -> list[tuple[int, int]]:
    """``reserved`` as a list of (start, size) int pairs, or a clear InvalidTypeError."""
    if isinstance(reserved, str | bytes) or not hasattr(reserved, "__iter__"):
        raise InvalidTypeError(
            f"reserved must be an iterable of (start, size) pairs, not {type(reserved).__name__}"
        )
    ranges = []
    for entry in reserved:
        if not isinstance(entry, tuple | list) or len(entry) != 2:
            raise InvalidTypeError(f"a reserved range must be a (start, size) pair, not {entry!r}")
        ranges.append((int_argument(entry[0], "reserved start"),
                       int_argument(entry[1], "reserved size")))
    return ranges



def size_order(size: object, page_shift: int, max_order: int, order_limit: int,
               nr_pages: int) -> int:
    """The order of the smallest block of at least ``size`` bytes (get_order), or an
    InvalidArgumentError saying why no block can hold it: above max_order, or larger than the
    largest block ``nr_pages`` pages can hold (``order_limit``)."""
    if size.__class__ is not int:
        size = int_argument(size, "size")
    assert isinstance(size, int)
    if size <= 0:
        raise InvalidArgumentError(f"allocation size must be positive, got {size}")
    order = ((size - 1) >> page_shift).bit_length()
    if order > max_order:
        raise InvalidArgumentError(
            f"{size} bytes needs order {order}, above max_order {max_order}"
            f" (largest block {1 << (page_shift + max_order)} bytes)"
        )
    if order > order_limit:
        raise InvalidArgumentError(
            f"{size} bytes needs order {order}, but the largest block {nr_pages}"
            f" pages of memory can hold is {1 << (page_shift + order_limit)} bytes"
        )
    return order

class BuddyAllocator:
    """A zone of ``size`` bytes of page frames managed by the buddy system.

    >>> buddy = BuddyAllocator(256 * 1024)
    >>> buddy.alloc(21 * 1024)      # rounded up to 32 KiB: frames 0-7
    0
    >>> buddy.nr_free
    (0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0)
    """

    def __init__(
        self,
        size: int | None = None,
        page_size: int = 4096,
        max_order: int = MAX_PAGE_ORDER,
        *,
        memory: PhysicalMemory | None = None,
        backing: Backing = None,
        reserved: Iterable[tuple[int, int]] = (),
        node: int = 0,
        zone: str = "Normal",
        thread_safe: bool = True,
    ) -> None:
        if memory is None:
            if size is None:
                raise InvalidArgumentError("give the memory size in bytes, or a PhysicalMemory")
            size = int_argument(size, "size")
            page_size = check_page_size(page_size)
            if size < page_size:
                raise InvalidArgumentError(
                    f"memory size {size} is smaller than one page ({page_size} bytes)"
                )
            if size // page_size > MAX_PAGES:
                raise InvalidArgumentError(f"memory of {size} bytes exceeds {MAX_PAGES} pages")
        elif not isinstance(memory, PhysicalMemory):
            raise InvalidTypeError(f"memory must be a PhysicalMemory, not {type(memory).__name__}")
        elif memory.closed:
            raise MemoryClosedError("cannot build an allocator: the physical memory was closed")
        elif size is not None and int_argument(size, "size") != memory.size:
            raise InvalidArgumentError(
                f"size {size} disagrees with the given memory's {memory.size} bytes"
            )
        node = int_argument(node, "node")
        if not 0 <= node < MAX_NUMNODES:
            raise InvalidArgumentError(f"node must be in 0..{MAX_NUMNODES - 1}, got {node}")
        if not isinstance(zone, str):
            raise InvalidTypeError(f"zone must be a str, not {type(zone).__name__}")
        if zone not in ZONE_NAMES:
            raise UnknownZoneError(
                f"unknown zone {zone!r} (Linux's zones: {', '.join(ZONE_NAMES)})")
        max_order = int_argument(max_order, "max_order")
        if not 0 <= max_order <= ORDER_MASK - 1:
            raise InvalidArgumentError(f"max_order must be in 0..{ORDER_MASK - 1}, got {max_order}")
        reserved_ranges = _reserved_ranges(reserved)
        if memory is None:
            assert size is not None
            # The metadata is checked against the host before any memory or file is made.
            check_host_memory(size // page_size, max_order + 1, "memory", 1 << max_order)
            memory = PhysicalMemory(size, page_size, backing)
        self.memory: Final = memory
        self.page_size: Final = memory.page_size
        self.page_shift: Final = memory.page_shift
        self.nr_pages: Final = memory.nr_pages
        self.max_order: Final = max_order
        # The largest block this memory can ever hold: a larger request is bad input, not OOM.
        self._alloc_order_limit: Final = min(max_order, self.nr_pages.bit_length() - 1)
        # buddy_merge_likely looks at the parent's buddy: only below max_order - 1 is there one.
        self._merge_likely_below: Final = max_order - 1
        self.node: Final = node
        self.zone: Final = zone
        self.mem_map: Final = MemMap(self.nr_pages, max_order + 1)
        # The mem_map's columns, bound once: the hot paths index them directly.
        self._state: Final = self.mem_map.state
        self._next: Final = self.mem_map.next
        self._prev: Final = self.mem_map.prev
        # Every counter in one buffer that the compiled core shares: nr_free per order, the
        # mask of non-empty lists (bit o set <=> free list o is not empty), then the event
        # counts (see the _NONEMPTY.. offsets).
        self._counters: Final = array("q", [0]) * (max_order + 1 + _NR_COUNTERS)
        self._NONEMPTY: Final = max_order + 1
        self._ALLOCATIONS: Final = max_order + 2
        self._FREES: Final = max_order + 3
        self._FAILURES: Final = max_order + 4
        self._SPLITS: Final = max_order + 5
        self._MERGES: Final = max_order + 6
        self.thread_safe: Final = bool(thread_safe)
        self._reserved_pages = 0
        self._reserve(reserved_ranges)
        self._free_boot_memory()
        # The zone lock: a threading.Lock, or the compiled core's zone, which holds one.
        self._lock: threading.Lock | BuddyZone = threading.Lock()
        # The core this allocator runs on (None: the pure one), chosen once, here; the slab
        # caches, kmalloc and the replay loop built on this allocator follow it.
        self.compiled_core: Final = core
        if core is not None:
            self._use_compiled_core(core)
        # alloc_pages/free_pages call these bound methods (half the cost of `with` here).
        # A single-threaded user (a trace replay) may skip the lock: {}.clear is a C callable
        # that does nothing, cheaper than any Python function.
        self._lock_acquire: Final = self._lock.acquire if thread_safe else {}.clear
        self._lock_release: Final = self._lock.release if thread_safe else {}.clear
        memory.on_close(self._memory_closed)

    def _memory_closed(self) -> None:
        """The memory closed: every change refuses from now on, on either core (the compiled
        bindings are replaced too); queries still answer."""

        def refuse(*args: object, **kwargs: object) -> int:
            raise MemoryClosedError("cannot allocate or free: the physical memory was closed")

        self.alloc_pages = refuse  # type: ignore[method-assign]
        self.free_pages = refuse  # type: ignore[method-assign,assignment]
        self.alloc = refuse  # type: ignore[method-assign]
        self.free = refuse  # type: ignore[method-assign,assignment]

    def _use_compiled_core(self, compiled: ModuleType) -> None:
        """Run alloc_pages, free_pages, alloc and free in the compiled core (kmem._core).

        The core works on this allocator's own buffers (the mem_map columns, the counters)
        and its lock becomes the zone lock; whatever its fast paths do not handle (bad
        arguments, an exhausted zone, a bad free) goes to the pure methods of this class,
        which raise exactly the errors they raise without the core.
        """
        zone = compiled.BuddyZone(
            state=self._state, next=self._next, prev=self._prev, counters=self._counters,
            nr_pages=self.nr_pages, max_order=self.max_order,
            alloc_order_limit=self._alloc_order_limit, page_shift=self.page_shift,
            thread_safe=self.thread_safe,
            pure_alloc_pages=BuddyAllocator.alloc_pages.__get__(self),
            pure_free_pages=BuddyAllocator.free_pages.__get__(self),
            pure_alloc=BuddyAllocator.alloc.__get__(self),
            pure_free=BuddyAllocator.free.__get__(self),
        )
        self._lock = zone
        self.alloc_pages = zone.alloc_pages  # type: ignore[method-assign]
        self.free_pages = zone.free_pages  # type: ignore[method-assign]
        self.alloc = zone.alloc  # type: ignore[method-assign]
        self.free = zone.free  # type: ignore[method-assign]

    # -- boot ----------------------------------------------------------------------------

    def _reserve(self, ranges: list[tuple[int, int]]) -> None:
        """Mark whole frames overlapping each (start, size) byte range as reserved."""
        state = self.mem_map.state
        for start, length in ranges:
            if length <= 0 or start < 0 or start + length > self.memory.size:
                raise InvalidArgumentError(
                    f"reserved range start={start:#x} size={length:#x} is not inside memory"
                    f" [0, {self.memory.size:#x})"
                )
            first = start >> self.page_shift
            last = (start + length - 1) >> self.page_shift
            state[first : last + 1] = bytes([RESERVED]) * (last - first + 1)
        self._reserved_pages = state.count(RESERVED)

    def _free_boot_memory(self) -> None:
        """Free every unreserved frame as Linux boots: largest aligned blocks, lowest first.

        Each run of free frames is cut into the largest naturally aligned blocks that fit
        (memblock_free_all -> __free_pages_memory, kmem.page.mem_map.boot_blocks), each added
        at the tail of its list.
        """
        state = self.mem_map.state
        nr_pages = self.nr_pages
        pfn = 0
        while pfn < nr_pages:
            if state[pfn] == RESERVED:
                pfn += 1
                continue
            end = state.find(RESERVED, pfn, nr_pages)
            if end < 0:
                end = nr_pages
            for block, order in boot_blocks(pfn, end, self.max_order):
                self._add_to_tail(block, order)
            pfn = end

    # -- list primitives (Linux: __add_to_free_list, del_page_from_free_list) ---------------
    # The hot paths below inline kmem.page.mem_map's list_add/list_del: a call costs more
    # than the four stores.

    def _add_to_tail(self, pfn: int, order: int) -> None:
        list_add_tail(self.mem_map.next, self.mem_map.prev, ~order, pfn)
        self.mem_map.state[pfn] = FREE | order
        counters = self._counters
        counters[order] += 1
        counters[self._NONEMPTY] |= 1 << order

    # -- allocation ------------------------------------------------------------------------

    def alloc_pages(self, order: int = 0) -> int:
        """Allocate 2**order contiguous frames; return the first frame's pfn.

        Raises OutOfMemoryError when no free block of that order or larger exists.
        """
        if order.__class__ is not int or not 0 <= order <= self._alloc_order_limit:
            order = self._check_alloc_order(order)
        self._lock_acquire()
        try:
            # The fast path: list `order` has a block (its head's next is a pfn, not the head).
            nxt = self._next
            counters = self._counters
            head = ~order
            pfn = nxt[head]
            if pfn < 0:
                pfn = self._take_from_larger(order)
            else:
                after = nxt[pfn]
                nxt[head] = after
                self._prev[after] = head
                counters[order] -= 1
                if after < 0:  # the list head again: the list is now empty
                    counters[self._NONEMPTY] ^= 1 << order
            self._state[pfn] = ALLOCATED + order
            counters[self._ALLOCATIONS] += 1
            return pfn
        finally:
            self._lock_release()

    def _take_from_larger(self, order: int) -> int:
        """__rmqueue_smallest past an empty list: take the smallest larger free block off its
        list and split it down to ``order``; return its pfn (the kept lower piece)."""
        counters = self._counters
        avail = counters[self._NONEMPTY] >> order
        if not avail:
            raise self._out_of_memory(order)
        high = order + (avail & -avail).bit_length() - 1  # the lowest set bit above `order`
        nxt = self._next
        head = ~high
        pfn = nxt[head]
        after = nxt[pfn]
        nxt[head] = after
        self._prev[after] = head
        counters[high] -= 1
        if after < 0:
            counters[self._NONEMPTY] ^= 1 << high
        self._expand(pfn, order, high)
        return pfn

    def _expand(self, pfn: int, low: int, high: int) -> None:
        """Split the order-``high`` block at ``pfn`` down to order ``low`` (Linux: expand()).

        Each upper half goes to the head of its order's list; the lowest piece stays at pfn.
        """
        nxt = self._next
        prv = self._prev
        state = self._state
        nr_free = self._counters  # its first entries, 0..max_order, are nr_free
        head = ~high
        nr_free[self._SPLITS] += high - low
        # Every list from low to high - 1 receives a block.
        nr_free[self._NONEMPTY] |= (1 << high) - (1 << low)
        size = 1 << high
        while high > low:
            high -= 1
            head += 1  # ~(high - 1) == ~high + 1
            size >>= 1
            upper = pfn + size
            first = nxt[head]
            nxt[upper] = first
            prv[upper] = head
            prv[first] = upper
            nxt[head] = upper
            state[upper] = FREE + high
            nr_free[high] += 1

    def alloc_pages_in(self, order: int, ranges: Sequence[tuple[int, int]]) -> int:
        """Allocate 2**order frames from the blocks inside the first of the pfn ``ranges``
        ((start, end) pairs, tried in turn: a zonelist) that has one; return the pfn.
        OutOfMemoryError when none has one.

        A NUMA node's zone (kmem.slab.numa): when no free block ever straddles a range's
        start or end (both multiples of 2**max_order), the blocks of a range on each free
        list, in list order, are exactly the list a separate zone of those frames would hold --
        frees add at the head or tail and merges stay inside the range -- so taking the first
        of them at the smallest order that has one is __rmqueue_smallest of that zone.
        """
        order = self._check_alloc_order(order)
        spans = self._check_ranges(ranges)
        self._lock_acquire()
        try:
            for start, end in spans:
                pfn = self._take_in(order, start, end)
                if pfn >= 0:
                    return pfn
            raise self._out_of_memory(order)
        finally:
            self._lock_release()

    def _take_in(self, order: int, start: int, end: int) -> int:
        """alloc_pages_in's search of one range, the lock held: the pfn, or -1."""
        nxt = self._next
        counters = self._counters
        for high in range(order, self.max_order + 1):
            pfn = nxt[~high]
            while pfn >= 0 and not start <= pfn < end:
                pfn = nxt[pfn]
            if pfn < 0:
                continue
            after = nxt[pfn]
            before = self._prev[pfn]
            nxt[before] = after
            self._prev[after] = before
            counters[high] -= 1
            if not counters[high]:
                counters[self._NONEMPTY] &= ~(1 << high)
            if high > order:
                self._expand(pfn, order, high)
            self._state[pfn] = ALLOCATED + order
            counters[self._ALLOCATIONS] += 1
            return pfn
        return -1

    def _check_ranges(self, ranges: object) -> list[tuple[int, int]]:
        """``ranges`` as (start, end) pfn pairs inside the memory, else the specific error."""
        if not isinstance(ranges, (list, tuple)):
            raise InvalidTypeError(f"ranges must be a list of (start, end) pfn pairs, not"
                                   f" {type(ranges).__name__}")
        spans = []
        for span in ranges:
            if not isinstance(span, (list, tuple)) or len(span) != 2:
                raise InvalidTypeError(f"a range must be a (start, end) pair, not {span!r}")
            start = int_argument(span[0], "range start")
            end = int_argument(span[1], "range end")
            if not 0 <= start <= end <= self.nr_pages:
                raise InvalidArgumentError(
                    f"range {start}..{end} is not inside pfns 0..{self.nr_pages}")
            spans.append((start, end))
        return spans

    def alloc(self, size: int) -> int:
        """Allocate at least ``size`` bytes, rounded up to 2**order pages; return the address."""
        order = size_order(size, self.page_shift, self.max_order, self._alloc_order_limit,
                           self.nr_pages)
        return self.alloc_pages(order) << self.page_shift

    # -- free ------------------------------------------------------------------------------

    def free_pages(self, pfn: int, order: int) -> None:
        """Free the order-``order`` block at ``pfn`` that alloc_pages(order) returned.

        Linux's __free_one_page: merge with the buddy while it is a free block of the same
        order (_merge, a slow path: most frees find their buddy in use), then list the result
        at the head, or at the tail when buddy_merge_likely (the parent's buddy is free: this
        block may merge again soon, so the next allocation should not take it).
        """
        if pfn.__class__ is not int or order.__class__ is not int:
            pfn = int_argument(pfn, "pfn")
            order = int_argument(order, "order")
        self._lock_acquire()
        try:
            state = self._state
            # Past the padded end: IndexError. A negative pfn would index from the end, and an
            # order outside 0..31 could name another state (BEYOND is ALLOCATED + 0x7F, FREE
            # is ALLOCATED - 0x40): both are refused before the state decides.
            try:
                if state[pfn] != ALLOCATED + order or pfn < 0 or order >> 5:
                    raise self._bad_free(pfn, order)
            except IndexError:
                raise self._bad_free(pfn, order) from None
            state[pfn] = 0
            counters = self._counters
            counters[self._FREES] += 1
            # No bounds check below max_order: state is padded with BEYOND frames (never FREE)
            # to a whole max-order block, inside which every lower buddy lies.
            if order < self.max_order and state[pfn ^ (1 << order)] == FREE + order:
                pfn, order = self._merge(pfn, order)
            nxt = self._next
            prv = self._prev
            head = ~order
            if order < self._merge_likely_below and (
                state[(pfn & ~(1 << order)) ^ (2 << order)] == FREE + order + 1
            ):
                last = prv[head]  # buddy_merge_likely: to the tail
                prv[pfn] = last
                nxt[pfn] = head
                nxt[last] = pfn
                prv[head] = pfn
            else:
                first = nxt[head]
                nxt[pfn] = first
                prv[pfn] = head
                prv[first] = pfn
                nxt[head] = pfn
            state[pfn] = FREE + order
            counters[order] += 1
            counters[self._NONEMPTY] |= 1 << order
        finally:
            self._lock_release()

    def _merge(self, pfn: int, order: int) -> tuple[int, int]:
        """__free_one_page's loop: take each free buddy off its list and merge with it, up to
        max_order; return the merged block (its pfn and order), not yet on any list."""
        state = self._state
        nxt = self._next
        prv = self._prev
        nr_free = self._counters  # its first entries, 0..max_order, are nr_free
        max_order = self.max_order
        first_order = order
        while order < max_order:
            buddy = pfn ^ (1 << order)
            if state[buddy] != FREE + order:
                break
            before = prv[buddy]
            after = nxt[buddy]
            nxt[before] = after
            prv[after] = before
            nr_free[order] -= 1
            if after == before:  # both are the list head: the list is now empty
                nr_free[self._NONEMPTY] ^= 1 << order
            state[buddy] = 0
            pfn &= buddy
            order += 1
        nr_free[self._MERGES] += order - first_order
        return pfn, order

    def free(self, address: int) -> None:
        """Free the block that alloc() returned at ``address``."""
        if address.__class__ is not int:
            address = int_argument(address, "address")
        pfn = address >> self.page_shift
        if address & (self.page_size - 1) or not 0 <= pfn < self.nr_pages:
            raise self._bad_address(address)
        kind = self._state[pfn]
        if kind & KIND_MASK != ALLOCATED:
            with self._lock:
                raise self._bad_free(pfn, None)
        # free_pages checks again under the lock, in case another thread freed it meanwhile.
        self.free_pages(pfn, kind & ORDER_MASK)

    # -- errors (slow paths: they only read state) --------------------------------------------

    def _out_of_memory(self, order: int) -> OutOfMemoryError:
        self._counters[self._FAILURES] += 1
        return OutOfMemoryError(
            f"no free block of order {order} or larger ({self.nr_free_pages} pages free,"
            f" largest block order {self.largest_free_order})"
        )

    def _check_order(self, order: object) -> int:
        order = int_argument(order, "order")
        if not 0 <= order <= self.max_order:
            raise InvalidArgumentError(f"order must be in 0..{self.max_order}, got {order}")
        return order

    def _check_alloc_order(self, order: object) -> int:
        order = self._check_order(order)
        if order > self._alloc_order_limit:
            raise InvalidArgumentError(
                f"order {order} is {1 << order} pages, more than the {self.nr_pages} pages of"
                " memory"
            )
        return order

    def _bad_address(self, address: int) -> InvalidFreeError:
        if not 0 <= address < self.memory.size:
            return InvalidFreeError(
                f"address {address:#x} lies outside memory [0, {self.memory.size:#x})"
            )
        return InvalidFreeError(
            f"address {address:#x} is not page aligned (page size {self.page_size})"
        )

    def _bad_free(self, pfn: int, order: int | None) -> KmemError:
        """The specific error for freeing ``pfn`` (at ``order``, if given) when it is wrong."""
        if not 0 <= pfn < self.nr_pages:
            return InvalidFreeError(f"pfn {pfn:#x} lies outside memory [0, {self.nr_pages:#x})")
        if order is not None and not 0 <= order <= self.max_order:
            return InvalidArgumentError(f"order must be in 0..{self.max_order}, got {order}")
        block = self._block_at(pfn)
        if block.state == "allocated" and block.pfn == pfn:
            return WrongOrderError(
                f"pfn {pfn:#x} was allocated at order {block.order}, freed at order {order}"
            )
        if block.state == "free":
            return DoubleFreeError(
                f"pfn {pfn:#x} is already free (inside the free order-{block.order} block"
                f" at pfn {block.pfn:#x})"
            )
        if block.state == "reserved":
            return InvalidFreeError(f"pfn {pfn:#x} is reserved memory, never allocated")
        return InvalidFreeError(
            f"pfn {pfn:#x} is not the start of an allocated block (it lies inside the"
            f" order-{block.order} block allocated at pfn {block.pfn:#x})"
        )

    # -- queries -----------------------------------------------------------------------------

    def block_at(self, pfn: int) -> Block:
        """The free, allocated or reserved block that frame ``pfn`` lies in."""
        pfn = int_argument(pfn, "pfn")
        if not 0 <= pfn < self.nr_pages:
            raise InvalidArgumentError(f"pfn {pfn:#x} lies outside memory [0, {self.nr_pages:#x})")
        with self._lock:
            return self._block_at(pfn)

    def _block_at(self, pfn: int) -> Block:
        # Blocks are naturally aligned: the first frame of the order-o block holding pfn is
        # pfn with its low o bits cleared; try each order until a first frame says so.
        state = self.mem_map.state
        if state[pfn] == RESERVED:
            return Block(pfn, 0, "reserved")
        for order in range(self.max_order + 1):
            first = pfn & ~((1 << order) - 1)
            kind = state[first]
            if kind and kind & ORDER_MASK == order:
                return Block(first, order, "free" if kind & FREE else "allocated")
        raise AssertionError(f"pfn {pfn:#x} lies in no block: the mem_map is corrupt")

    def blocks(self) -> list[Block]:
        """Every block in address order: free, allocated, and each reserved frame."""
        return [Block(*block) for block in self.block_tuples()]

    def block_tuples(self) -> list[tuple[int, int, str]]:
        """blocks() as plain (pfn, order, state) tuples: 3x cheaper, for pictures of memory.

        O(number of blocks), not O(pages): a block's frames after the first are skipped.
        """
        state = self._state
        nr_pages = self.nr_pages
        out: list[tuple[int, int, str]] = []
        append = out.append
        with self._lock:
            pfn = 0
            while pfn < nr_pages:
                kind = state[pfn]
                if kind == RESERVED:
                    append((pfn, 0, "reserved"))
                    pfn += 1
                    continue
                order = kind & ORDER_MASK
                append((pfn, order, "free" if kind & FREE else "allocated"))
                pfn += 1 << order
        return out

    def view(self, address: int) -> memoryview:
        """The bytes of the allocated block at ``address``, readable and writable."""
        address = int_argument(address, "address")
        pfn = address >> self.page_shift
        if address & (self.page_size - 1) or not 0 <= pfn < self.nr_pages:
            raise self._bad_address(address)
        kind = self.mem_map.state[pfn]
        if kind & KIND_MASK != ALLOCATED:
            raise self._bad_free(pfn, None)
        return self.memory.view(address, self.page_size << (kind & ORDER_MASK))

    def view_pages(self, pfn: int) -> memoryview:
        """The bytes of the allocated block whose first frame is ``pfn``."""
        return self.view(int_argument(pfn, "pfn") << self.page_shift)

    @property
    def nr_free(self) -> tuple[int, ...]:
        """Free blocks per order, 0..max_order (the numbers of /proc/buddyinfo)."""
        return tuple(self._counters[: self.max_order + 1])

    @property
    def nr_free_pages(self) -> int:
        """Free page frames in all (Linux's NR_FREE_PAGES)."""
        counters = self._counters
        return sum(counters[order] << order for order in range(self.max_order + 1))

    @property
    def largest_free_order(self) -> int:
        """Order of the largest free block, or -1 when no page is free."""
        return self._counters[self._NONEMPTY].bit_length() - 1

    def free_blocks(self, order: int, limit: int | None = None) -> list[int]:
        """The pfns on free list ``order``, head first (the order the next allocations take);
        with ``limit``, at most its first ``limit`` (the rest of a long list is not walked)."""
        order = self._check_order(order)
        if limit is not None:
            limit = int_argument(limit, "limit")
            if limit < 0:
                raise InvalidArgumentError(f"limit must be >= 0, got {limit}")
        with self._lock:
            return list_entries(self.mem_map.next, ~order, limit)

    def stats(self) -> BuddyStats:
        with self._lock:
            free = self.nr_free_pages
            return BuddyStats(
                nr_pages=self.nr_pages,
                free_pages=free,
                allocated_pages=self.nr_pages - free - self._reserved_pages,
                reserved_pages=self._reserved_pages,
                nr_free=self.nr_free,
                allocations=self._counters[self._ALLOCATIONS],
                frees=self._counters[self._FREES],
                failures=self._counters[self._FAILURES],
                splits=self._counters[self._SPLITS],
                merges=self._counters[self._MERGES],
            )

    def fragmentation(self) -> FragmentationReport:
        """Linux's unusable free space and extfrag indices per order, and the largest block."""
        return fragmentation_report(self.nr_free)

    def buddyinfo(self) -> str:
        """This zone's line of /proc/buddyinfo, exactly as mm/vmstat.c prints it."""
        return buddyinfo_line(self.node, self.zone, self.nr_free)

    # -- invariants --------------------------------------------------------------------------

    def check(self) -> None:
        """Verify every invariant; raise AssertionError naming the first one broken."""
        with self._lock:
            self._check_lists()
            self._check_frames()

    def _check_lists(self) -> None:
        mem_map = self.mem_map
        nxt, prv, state = mem_map.next, mem_map.prev, mem_map.state
        for order in range(self.max_order + 1):
            head = ~order
            count = 0
            pfn = nxt[head]
            previous = head
            while pfn != head:
                if prv[pfn] != previous:
                    raise AssertionError(f"free list {order}: prev of pfn {pfn:#x} is wrong")
                if not 0 <= pfn < self.nr_pages:
                    raise AssertionError(f"free list {order}: pfn {pfn:#x} outside memory")
                if state[pfn] != FREE | order:
                    raise AssertionError(
                        f"free list {order}: pfn {pfn:#x} has state {state[pfn]:#x}"
                    )
                if pfn & ((1 << order) - 1):
                    raise AssertionError(f"free list {order}: pfn {pfn:#x} is misaligned")
                buddy = pfn ^ (1 << order)
                if order < self.max_order and buddy < self.nr_pages and (
                    state[buddy] == FREE | order
                ):
                    raise AssertionError(
                        f"free buddies pfn {pfn:#x} and {buddy:#x} at order {order} not merged"
                    )
                # (no cycle counter: the prev-link check stops a cycle at its first repeat)
                count += 1
                previous = pfn
                pfn = nxt[pfn]
            if prv[head] != previous:
                raise AssertionError(f"free list {order}: tail link is wrong")
            if count != self._counters[order]:
                raise AssertionError(
                    f"nr_free[{order}] is {self._counters[order]} but its list holds {count}"
                )
            if bool(count) != bool(self._counters[self._NONEMPTY] >> order & 1):
                raise AssertionError(f"non-empty mask bit {order} disagrees with list {order}")

    def _check_frames(self) -> None:
        state = self.mem_map.state
        pfn = 0
        reserved = 0
        while pfn < self.nr_pages:
            kind = state[pfn]
            if kind == RESERVED:
                reserved += 1
                pfn += 1
                continue
            if kind & KIND_MASK not in (FREE, ALLOCATED):
                raise AssertionError(f"pfn {pfn:#x} has state {kind:#x} but starts no block")
            order = kind & ORDER_MASK
            end = pfn + (1 << order)
            if order > self.max_order or end > self.nr_pages or pfn & ((1 << order) - 1):
                raise AssertionError(f"block at pfn {pfn:#x} of order {order} is out of place")
            if state.count(0, pfn + 1, end) != end - pfn - 1:
                raise AssertionError(f"block at pfn {pfn:#x} overlaps another block")
            pfn = end
        if reserved != self._reserved_pages:
            raise AssertionError(f"{reserved} reserved frames, {self._reserved_pages} expected")
        padding = len(state) - self.nr_pages
        if state.count(BEYOND, self.nr_pages) != padding:
            raise AssertionError("the padding past the last frame was overwritten")
