"""The slab layer on a page machine: slab pages with watermarks, memory reserves and pfmemalloc.

A SlabAllocator normally takes its pages from a BuddyAllocator: no watermarks, no reserves, so
no slab is ever pfmemalloc. ``SlabAllocator(buddy, machine=PageMachine(...))`` puts a
``MachinePages`` between them: every slab (and large kmalloc) block is still a block of the
buddy allocator -- the address space, where objects live and the owner column says which
cache a page is -- and is also allocated from the page machine, with the allocation's gfp
flags, on the allocating CPU, and freed to it on the CPU whose free, flush or drain discarded
the slab (or whose kfree freed the large kmalloc). The machine decides as Linux's
__alloc_pages does: the block is refused (OutOfMemoryError, the buddy block given back) when
no zone may give it under its watermarks, and it is pfmemalloc when only the
ALLOC_NO_WATERMARKS pass (__GFP_MEMALLOC) could give it; a slab made on such a block is
pfmemalloc (slab_set_pfmemalloc).

allocate_slab's gfp (mm/slub.c, 6.18 and 7.0), ``slab_gfp``: the caller's reclaim and
constraint bits, plus the cache's own (__GFP_COMP for a multi-page slab, __GFP_RECLAIMABLE for
SLAB_RECLAIM_ACCOUNT, __GFP_DMA for SLAB_CACHE_DMA). The first try, at the cache's order, adds
__GFP_NOWARN | __GFP_NORETRY, drops __GFP_NOFAIL, and when the caller may reclaim and a smaller
order exists it may neither reclaim nor use the reserves (__GFP_NOMEMALLOC): only the fallback
to the minimum order, with the caller's flags, may dig into them.

State: ``_machine_pfn`` maps each buddy block's pfn to (machine pfn, order). Invariant
(``check``): every mapped buddy block is allocated, and so is its machine block; the machine's
own invariants hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from kmem.errors import OutOfMemoryError
from kmem.page.gfp import (
    __GFP_COMP,
    __GFP_DIRECT_RECLAIM,
    __GFP_DMA,
    __GFP_FS,
    __GFP_HARDWALL,
    __GFP_HIGH,
    __GFP_IO,
    __GFP_MEMALLOC,
    __GFP_NOFAIL,
    __GFP_NOMEMALLOC,
    __GFP_NORETRY,
    __GFP_NOWARN,
    __GFP_RECLAIM,
    __GFP_RECLAIMABLE,
    __GFP_RETRY_MAYFAIL,
    __GFP_THISNODE,
)
from kmem.slab.flags import SLAB_CACHE_DMA, SLAB_RECLAIM_ACCOUNT

if TYPE_CHECKING:
    from kmem.page.buddy import BuddyAllocator
    from kmem.page.machine import PageMachine

# GFP_RECLAIM_MASK | GFP_CONSTRAINT_MASK (mm/internal.h): what new_slab keeps of the caller's
# flags; the zone and migratetype bits are the cache's own.
SLAB_GFP_KEPT: Final = (
    __GFP_RECLAIM | __GFP_HIGH | __GFP_IO | __GFP_FS | __GFP_NOWARN | __GFP_RETRY_MAYFAIL
    | __GFP_NOFAIL | __GFP_NORETRY | __GFP_MEMALLOC | __GFP_NOMEMALLOC
    | __GFP_HARDWALL | __GFP_THISNODE
)


def slab_gfp(gfp: int, cache_flags: int, order: int) -> int:
    """The gfp flags allocate_slab asks the page allocator with, for a cache of these flags."""
    flags = gfp & SLAB_GFP_KEPT
    if order:
        flags |= __GFP_COMP
    if cache_flags & SLAB_RECLAIM_ACCOUNT:
        flags |= __GFP_RECLAIMABLE
    if cache_flags & SLAB_CACHE_DMA:
        flags |= __GFP_DMA
    return flags


def first_try_gfp(flags: int, order: int, min_order: int) -> int:
    """allocate_slab's first try at the cache's preferred order: allowed to fail quietly, and,
    when a smaller order is left to fall back to, without reclaim or the memory reserves."""
    alloc_gfp = (flags | __GFP_NOWARN | __GFP_NORETRY) & ~__GFP_NOFAIL
    if alloc_gfp & __GFP_DIRECT_RECLAIM and order > min_order:
        alloc_gfp = (alloc_gfp | __GFP_NOMEMALLOC) & ~__GFP_RECLAIM
    return alloc_gfp


class MachinePages:
    """Blocks of ``buddy`` (addresses), each backed by a block of ``machine`` (watermarks,
    reserves, pfmemalloc): the page source of a SlabAllocator created with ``machine=``."""

    def __init__(self, buddy: BuddyAllocator, machine: PageMachine) -> None:
        self.buddy: Final = buddy
        self.machine: Final = machine
        self._nr_cpus: Final = machine.nr_cpus
        self._machine_pfn: dict[int, tuple[int, int]] = {}

    def alloc_pages(self, order: int, gfp: int, cpu: int = 0) -> int:
        """A buddy block of ``order`` backed by a machine block allocated with ``gfp`` on
        ``cpu`` (modulo the machine's CPUs); OutOfMemoryError, nothing kept, if either
        refuses."""
        pfn = self.buddy.alloc_pages(order)
        try:
            own = self.machine.alloc_pages(order, gfp, cpu % self._nr_cpus)
        except BaseException:
            self.buddy.free_pages(pfn, order)
            raise
        self._machine_pfn[pfn] = (own, order)
        return pfn

    def free_pages(self, pfn: int, order: int, cpu: int = 0) -> None:
        """Give the block at buddy ``pfn`` back to both (the machine's on ``cpu``)."""
        own = self._machine_pfn.pop(pfn)
        self.machine.free_pages(own[0], own[1], cpu % self._nr_cpus)
        self.buddy.free_pages(pfn, order)

    def page_is_pfmemalloc(self, pfn: int) -> bool:
        """Whether the machine gave the block at buddy ``pfn`` from its memory reserves."""
        own = self._machine_pfn.get(pfn)
        return own is not None and self.machine.page_is_pfmemalloc(own[0])

    @property
    def blocks(self) -> int:
        """Blocks held (slabs and large kmallocs)."""
        return len(self._machine_pfn)

    def check(self) -> None:
        """Every mapped block is allocated in both; the machine's invariants hold."""
        self.machine.check()
        for pfn, (own, order) in self._machine_pfn.items():
            block = self.buddy.block_at(pfn)
            if (block.pfn, block.order, block.state) != (pfn, order, "allocated"):
                raise AssertionError(f"slab block at pfn {pfn:#x} is not allocated in the buddy")
            if self.machine.block_at(own) != (own, order, "allocated"):
                raise AssertionError(
                    f"slab block at pfn {pfn:#x}: its machine block {own:#x} is not allocated")


def new_slab_pages(pages: MachinePages, gfp: int, cache_flags: int, order: int, min_order: int,
                   cpu: int) -> tuple[int, int]:
    """allocate_slab's two tries on a machine: (pfn, order) of the block, or OutOfMemoryError.
    The second is at the minimum order with the caller's own flags (ORDER_FALLBACK)."""
    try:
        return pages.alloc_pages(order, first_try_gfp(slab_gfp(gfp, cache_flags, order), order,
                                                      min_order), cpu), order
    except OutOfMemoryError:
        if min_order >= order:
            raise
    return pages.alloc_pages(min_order, slab_gfp(gfp, cache_flags, min_order), cpu), min_order


__all__ = ["MachinePages", "first_try_gfp", "new_slab_pages", "slab_gfp"]
