"""One slab's state (Linux: struct slab), and the names of the lists a slab can be on.

A slab is a block of ``1 << order`` contiguous pages from the buddy allocator holding
``objects`` equal object slots. Object ``i`` starts at ``base + i * size``. Compact state, never a
Python object per object:

    freelist   array('I') of free object indices used as a LIFO stack (append = free,
               pop = alloc): objects freed last are reused first; a new slab's stack holds its
               indices in descending order so it hands them out in ascending address order
               (SLUB without freelist randomisation).
    remote     array('I'): objects freed by another CPU into a SLUB cpu slab (Linux: the slab's
               own freelist while the CPU's lockless freelist is detached).
    used       bytearray, 1 byte per object: 0 = free on the slab, 1 = allocated by a user,
               SHEAF_HELD = allocated into a sheaf (Linux 6.18/7.0), RCU_PENDING = given to
               kfree_rcu and waiting for the grace period. It catches double frees and frees
               of free objects in O(1), always (Linux needs SLUB_DEBUG for that).

``pfmemalloc`` (slab_test_pfmemalloc): the slab's pages came from the memory reserves, given
only because the allocation had the right to ignore the watermarks (ALLOC_NO_WATERMARKS). Its
page source says so when the slab is made (``page_is_pfmemalloc(pfn)``); the BuddyAllocator
every SlabAllocator runs on has no watermarks and no reserves, so there no slab is pfmemalloc.

Where a slab is (``Slab.where``, one of the ON_* values): on a CPU (SLUB cpu slab), on a CPU's
partial list, on the node's partial list, on the full list (debug and classic caches), on the
empty list (classic), waiting for an RCU grace period, or nowhere (a full SLUB slab: Linux does
not track full slabs without debugging).

Invariant: ``used.count(0) == len(freelist) + len(remote)``.
"""

from __future__ import annotations

from array import array
from typing import Final

# Slab.where: which list a slab is on.
ON_NONE: Final = 0  # SLUB full slab, not on any list
ON_CPU: Final = 1  # SLUB cpu slab (frozen) of CPU Slab.cpu
ON_CPU_PARTIAL: Final = 2  # SLUB per-cpu partial list of CPU Slab.cpu
ON_NODE_PARTIAL: Final = 3  # the node's partial list (both policies)
ON_FULL: Final = 4  # full list (SLUB debug caches, classic)
ON_EMPTY: Final = 5  # classic: empty slabs kept until shrink()
ON_RCU: Final = 6  # SLAB_TYPESAFE_BY_RCU: discarded, pages kept until an RCU grace period
WHERE_NAMES: Final = ("none", "cpu", "cpu_partial", "partial", "full", "empty", "rcu")

# Slab.used values besides 0 (free) and 1 (a user's).
SHEAF_HELD: Final = 2  # allocated from the slab into a sheaf: no user holds it
RCU_PENDING: Final = 3  # given to kfree_rcu(): freed after the next RCU grace period


class Slab:
    """One slab: ``1 << order`` pages at ``pfn`` holding ``objects`` object slots."""

    __slots__ = ("base", "colour", "cpu", "freelist", "node", "objects", "order", "pfmemalloc",
                 "pfn", "remote", "serial", "start", "used", "where")

    def __init__(self, pfn: int, order: int, start: int, base: int, objects: int,
                 colour: int) -> None:
        self.pfn = pfn
        self.order = order
        self.start = start  # first byte of the slab's pages
        self.base = base  # address of object 0
        self.objects = objects
        self.colour = colour  # classic policy: bytes of colour offset before the first slot
        # Descending, so pop() hands out index 0 first: ascending addresses.
        self.freelist = array("I", range(objects - 1, -1, -1))
        self.remote = array("I")
        self.used = bytearray(objects)
        self.where = ON_NONE
        self.cpu = -1
        self.serial = 0  # the cache's count of slabs made before this one
        self.pfmemalloc = False  # from the memory reserves (slab_set_pfmemalloc)
        self.node = 0  # slab_nid: the NUMA node of its pages (kmem.slab.numa)

    @property
    def inuse(self) -> int:
        """Objects allocated from this slab right now."""
        return self.objects - len(self.freelist) - len(self.remote)

    def __repr__(self) -> str:
        return (f"Slab(pfn={self.pfn:#x}, order={self.order}, objects={self.objects},"
                f" inuse={self.inuse}, where={WHERE_NAMES[self.where]}"
                f"{', pfmemalloc' if self.pfmemalloc else ''})")
