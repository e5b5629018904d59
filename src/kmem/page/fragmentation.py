"""External fragmentation of a zone's free memory, by mm/vmstat.c's formulas.

Both indices are computed from nr_free alone and scaled by 1000, as the kernel keeps them:

* unusable free space index (/sys/kernel/debug/extfrag/unusable_index): the share of free
  memory that cannot serve an order-``o`` request because it lies in smaller blocks.
  0 = every free page is usable, 1000 = none is (or nothing is free).
* extfrag index (/sys/kernel/debug/extfrag/extfrag_index): when an order-``o`` request would
  fail, is that for lack of memory (towards 0) or because it is fragmented (towards 1000)?
  -1000 when the request would succeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ContigPageInfo:
    """Linux's struct contig_page_info for one suitable order."""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


def contig_page_info(nr_free: Sequence[int], suitable_order: int) -> ContigPageInfo:
    free_pages = 0
    total = 0
    suitable = 0
    for order, blocks in enumerate(nr_free):
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return ContigPageInfo(free_pages, total, suitable)


def unusable_index(nr_free: Sequence[int], order: int) -> int:
    """Unusable free space index at ``order``, 0..1000 (mm/vmstat.c unusable_free_index)."""
    info = contig_page_info(nr_free, order)
    if info.free_pages == 0:
        return 1000
    usable = info.free_blocks_suitable << order
    return (info.free_pages - usable) * 1000 // info.free_pages


def extfrag_index(nr_free: Sequence[int], order: int) -> int:
    """Fragmentation index at ``order``: -1000, or 0..1000 (mm/vmstat.c __fragmentation_index)."""
    info = contig_page_info(nr_free, order)
    if info.free_blocks_total == 0:
        return 0
    if info.free_blocks_suitable:
        return -1000
    return 1000 - (1000 + info.free_pages * 1000 // (1 << order)) // info.free_blocks_total


def format_index(value: int, width: int = 1) -> str:
    """An index as the kernel prints it: ``%d.%03d`` of value/1000 with C's truncation."""
    whole = int(value / 1000)  # C division truncates toward zero
    return f"{whole:{width}d}.{abs(value) % 1000:03d}"


@dataclass(frozen=True, slots=True)
class FragmentationReport:
    """Both indices for every order, and the largest free block."""

    unusable: tuple[int, ...]
    extfrag: tuple[int, ...]
    largest_free_order: int  # -1 when nothing is free
    free_pages: int

    def unusable_index_line(self, node: int = 0, zone: str = "Normal") -> str:
        """As /sys/kernel/debug/extfrag/unusable_index prints this zone."""
        values = "".join(format_index(v) + " " for v in self.unusable)
        return f"Node {node}, zone {zone:>8s} {values}\n"

    def extfrag_index_line(self, node: int = 0, zone: str = "Normal") -> str:
        """As /sys/kernel/debug/extfrag/extfrag_index prints this zone."""
        values = "".join(format_index(v, 2) + " " for v in self.extfrag)
        return f"Node {node}, zone {zone:>8s} {values}\n"


def fragmentation_report(nr_free: Sequence[int]) -> FragmentationReport:
    """unusable_index() and extfrag_index() of every order, in one pass over ``nr_free``: the
    free pages of the blocks of ``order`` and above are what both ask of an order (a replay
    reports every sample, and the orders squared were most of a sample's cost)."""
    nr_free = list(nr_free)
    free_pages = sum(n << o for o, n in enumerate(nr_free))
    total = sum(nr_free)
    largest = max((o for o, n in enumerate(nr_free) if n), default=-1)
    unusable = []
    extfrag = []
    usable = free_pages  # the free pages in blocks of this order or above
    for order, blocks in enumerate(nr_free):
        unusable.append(1000 if free_pages == 0 else
                        (free_pages - usable) * 1000 // free_pages)
        if total == 0:
            extfrag.append(0)
        elif usable:  # (a block of this order or above: the request succeeds)
            extfrag.append(-1000)
        else:
            extfrag.append(1000 - (1000 + free_pages * 1000 // (1 << order)) // total)
        usable -= blocks << order
    return FragmentationReport(
        unusable=tuple(unusable), extfrag=tuple(extfrag), largest_free_order=largest,
        free_pages=free_pages)
