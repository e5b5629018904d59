"""A deliberately plain model of Linux's buddy rules, to check kmem's BuddyAllocator against.

Written from the rules of mm/page_alloc.c as stated in the issue, with Python lists and linear
searches: slow and obvious, sharing no code with kmem.
"""

from __future__ import annotations


class LinuxBuddyModel:
    def __init__(self, nr_pages: int, max_order: int, reserved: set[int] | None = None) -> None:
        self.nr_pages = nr_pages
        self.max_order = max_order
        self.free_lists: list[list[int]] = [[] for _ in range(max_order + 1)]
        self.allocated: dict[int, int] = {}
        reserved = reserved or set()
        pfn = 0
        while pfn < nr_pages:
            if pfn in reserved:
                pfn += 1
                continue
            order = max_order
            # Largest naturally aligned block that fits before the end or a reserved frame.
            while order > 0 and (
                pfn % (1 << order)
                or pfn + (1 << order) > nr_pages
                or any(p in reserved for p in range(pfn, pfn + (1 << order)))
            ):
                order -= 1
            self.free_lists[order].append(pfn)  # boot frees go to the tail
            pfn += 1 << order

    @property
    def nr_free(self) -> tuple[int, ...]:
        return tuple(len(blocks) for blocks in self.free_lists)

    def alloc_pages(self, order: int) -> int | None:
        for current in range(order, self.max_order + 1):
            if self.free_lists[current]:
                pfn = self.free_lists[current].pop(0)  # the head
                while current > order:
                    current -= 1
                    self.free_lists[current].insert(0, pfn + (1 << current))  # upper half, head
                self.allocated[pfn] = order
                return pfn
        return None

    def _is_free(self, pfn: int, order: int) -> bool:
        return pfn < self.nr_pages and pfn in self.free_lists[order]

    def free_pages(self, pfn: int, order: int) -> None:
        assert self.allocated.pop(pfn) == order
        while order < self.max_order:
            buddy = pfn ^ (1 << order)
            if not self._is_free(buddy, order):
                break
            self.free_lists[order].remove(buddy)
            pfn = min(pfn, buddy)
            order += 1
        to_tail = False
        if order < self.max_order - 1:
            parent = pfn & ~(1 << order)
            to_tail = self._is_free(parent ^ (1 << (order + 1)), order + 1)
        if to_tail:
            self.free_lists[order].append(pfn)
        else:
            self.free_lists[order].insert(0, pfn)
