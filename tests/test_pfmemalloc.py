"""pfmemalloc pages and slabs (mm/page_alloc.c prep_new_page, mm/slub.c slab_set_pfmemalloc).

A page is pfmemalloc when the page allocator could give it only by ignoring the watermarks
(ALLOC_NO_WATERMARKS: __GFP_MEMALLOC without __GFP_NOMEMALLOC, once the min watermark stops
every other pass). The expectations below come from the watermark rule itself, counted here:
a zone is drained with GFP_KERNEL until it refuses; from then on only the reserves serve.
"""

from __future__ import annotations

import pytest

from kmem.errors import InvalidTypeError, OutOfMemoryError
from kmem.page.errors import PfnNotInZoneError
from kmem.page.gfp import __GFP_MEMALLOC, __GFP_NOMEMALLOC, GFP_ATOMIC, GFP_KERNEL
from kmem.page.layout import MachineLayout
from kmem.page.machine import PageMachine


def _drained_machine() -> tuple[PageMachine, list[int]]:
    """A 64 MiB machine without pcp lists, filled with GFP_KERNEL pages until it refuses."""
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1, pcp=False)
    taken = []
    with pytest.raises(OutOfMemoryError):
        while True:
            taken.append(machine.alloc_pages(0, GFP_KERNEL))
    return machine, taken


def test_pages_above_the_watermarks_are_not_pfmemalloc_even_with_memalloc_rights() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1, pcp=False)
    plain = machine.alloc_pages(0, GFP_KERNEL)
    rights = machine.alloc_pages(2, GFP_KERNEL | __GFP_MEMALLOC)  # the normal pass serves
    assert not machine.page_is_pfmemalloc(plain)
    assert not machine.page_is_pfmemalloc(rights)


def test_a_page_only_the_reserves_could_give_is_pfmemalloc() -> None:
    machine, taken = _drained_machine()
    zone = machine.zone("Normal")
    assert zone.free_pages <= zone.watermark[0]  # below min: GFP_KERNEL is refused
    reserve = machine.alloc_pages(0, GFP_KERNEL | __GFP_MEMALLOC)
    assert machine.page_is_pfmemalloc(reserve)
    assert not any(machine.page_is_pfmemalloc(pfn) for pfn in taken)
    # __GFP_NOMEMALLOC overrides the rights: the allocation fails, as it would without them
    with pytest.raises(OutOfMemoryError):
        machine.alloc_pages(0, GFP_KERNEL | __GFP_MEMALLOC | __GFP_NOMEMALLOC)


def test_an_atomic_allocation_below_min_is_not_pfmemalloc() -> None:
    # GFP_ATOMIC dips below min (ALLOC_MIN_RESERVE) but keeps a watermark: not the reserves
    machine, _ = _drained_machine()
    atomic = machine.alloc_pages(0, GFP_ATOMIC)
    assert not machine.page_is_pfmemalloc(atomic)


def test_the_mark_goes_with_the_block_and_is_cleared_when_it_is_reused() -> None:
    machine, taken = _drained_machine()
    reserve = machine.alloc_pages(0, GFP_KERNEL | __GFP_MEMALLOC)
    machine.free_pages(reserve, 0)
    assert not machine.page_is_pfmemalloc(reserve)  # a free block is nothing's
    for pfn in taken[:64]:  # back above the watermarks
        machine.free_pages(pfn, 0)
    again = [machine.alloc_pages(0, GFP_KERNEL | __GFP_MEMALLOC) for _ in range(8)]
    assert not any(machine.page_is_pfmemalloc(pfn) for pfn in again)


def test_page_is_pfmemalloc_refuses_bad_pfns() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1, pcp=False)
    with pytest.raises(PfnNotInZoneError):
        machine.page_is_pfmemalloc(machine.nr_pages)
    with pytest.raises(InvalidTypeError):
        machine.page_is_pfmemalloc("0")  # type: ignore[arg-type]


def test_a_reserve_page_reused_through_the_pcp_lists_is_not_pfmemalloc() -> None:
    # With pcp lists (the compiled core serves order-0 pcp hits): a reserve page freed onto a
    # pcp list and handed out again by the first pass is an ordinary page again.
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 16 << 20}), nr_cpus=1)
    taken = []
    while True:
        try:
            taken.append(machine.alloc_pages(0, GFP_KERNEL))
        except OutOfMemoryError:
            break
    reserve = machine.alloc_pages(0, GFP_KERNEL | __GFP_MEMALLOC)
    assert machine.page_is_pfmemalloc(reserve)
    for pfn in taken[: len(taken) // 2]:
        machine.free_pages(pfn, 0)
    machine.free_pages(reserve, 0)
    again = [machine.alloc_pages(0, GFP_KERNEL) for _ in range(8)]
    assert reserve in again  # (the pcp list is LIFO: the reserve page came back)
    assert not any(machine.page_is_pfmemalloc(pfn) for pfn in again)
    machine.check()
