"""A compact, coloured picture of physical memory for the terminal: one cell per page.

Each cell is one page frame (or, on big machines, a group of frames: the cell shows the group's
first block). A block's first cell carries its mark and the rest of the block repeats a filler,
so block boundaries are readable without colour:

    free block of order o        first cell the digit o (or a letter for o >= 10), then "·"
    allocated block              first cell the block's label initial (or "#"), then "█"
    reserved frame               "x"

Colours: free blocks in greens (lighter for larger orders), allocated blocks in a colour per
label (a slab cache, a scenario name, "kmalloc"), reserved in grey. Highlighted blocks are shown
reversed, so a step's block stands out.

API:

    iter_blocks(buddy) -> Iterator[(pfn, order, state)]   # state "free"/"allocated"/"reserved"
    render(buddy, highlight=(), labels=None, width=64, max_rows=16) -> rich Text
        highlight: pfns whose block is highlighted
        labels: {first pfn of an allocated block: label}, e.g. {0: "A"}, {8: "slab:pcb"}
    legend(labels=None) -> rich Text

The blocks come from the buddy allocator's public walk (BuddyAllocator.block_tuples): O(number
of blocks), not O(pages), for a mostly free machine.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterator, Mapping

from rich.text import Text

from kmem.errors import InvalidArgumentError
from kmem.page.buddy import BuddyAllocator

_FREE_STYLES = (
    "green4", "green4", "green3", "green3", "spring_green3", "spring_green2",
    "light_green", "pale_green1", "honeydew2", "honeydew2", "honeydew2",
)
_LABEL_STYLES = (
    "red3", "dark_orange", "gold3", "magenta", "deep_sky_blue3", "orchid",
    "indian_red", "yellow3", "slate_blue1", "hot_pink3",
)


def iter_blocks(buddy: BuddyAllocator) -> Iterator[tuple[int, int, str]]:
    """Every block, lowest pfn first: (first pfn, order, "free"|"allocated"|"reserved").

    A run of reserved frames is reported one frame at a time with order 0. The buddy
    allocator's own walk (block_tuples), taken under its lock.
    """
    return iter(buddy.block_tuples())


def label_style(label: str) -> str:
    """A stable colour for an allocation label (the same label is the same colour everywhere)."""
    return _LABEL_STYLES[zlib.crc32(label.encode()) % len(_LABEL_STYLES)]


def _order_mark(order: int) -> str:
    return str(order) if order < 10 else chr(ord("a") + order - 10)


def render(
    buddy: BuddyAllocator,
    highlight: Collection[int] = (),
    labels: Mapping[int, str] | None = None,
    width: int = 64,
    max_rows: int = 16,
) -> Text:
    """The memory map as rich Text: ``width`` cells a row, at most ``max_rows`` rows."""
    if width < 1 or max_rows < 1:
        raise InvalidArgumentError(
            f"a memory map needs width and max_rows >= 1, got {width} and {max_rows}"
        )
    labels = labels or {}
    nr_pages = buddy.nr_pages
    per_cell = 1
    while (nr_pages + per_cell - 1) // per_cell > width * max_rows:
        per_cell *= 2
    nr_cells = (nr_pages + per_cell - 1) // per_cell
    marks = [" "] * nr_cells
    styles = [""] * nr_cells
    lit: set[int] = set()
    for pfn in highlight:
        if 0 <= pfn < nr_pages:
            lit.add(buddy.block_at(pfn).pfn)
    for pfn, order, state in iter_blocks(buddy):
        first = pfn // per_cell
        last = (pfn + (1 << order) - 1) // per_cell
        if state == "free":
            mark, filler = _order_mark(order), "·"
            style = _FREE_STYLES[min(order, len(_FREE_STYLES) - 1)]
        elif state == "allocated":
            label = labels.get(pfn, "")
            name = label.split(":")[-1]
            mark, filler = (name[:1] or "#"), "█"
            style = label_style(label) if label else "red3"
        else:
            mark, filler, style = "x", "x", "grey50"
        if pfn in lit:
            style += " reverse bold"
        if marks[first] == " " or pfn % per_cell == 0:
            marks[first] = mark
            styles[first] = style
        for cell in range(first + 1, last + 1):
            marks[cell] = filler
            styles[cell] = style
    text = Text()
    for row_start in range(0, nr_cells, width):
        if row_start:
            text.append("\n")
        text.append(f"{row_start * per_cell:>7d} ", style="dim")
        end = min(row_start + width, nr_cells)
        cell = row_start
        while cell < end:  # one span per run of equally styled cells keeps the Text small
            run = cell + 1
            while run < end and styles[run] == styles[cell]:
                run += 1
            text.append("".join(marks[cell:run]), style=styles[cell])
            cell = run
    if per_cell > 1:
        text.append(f"\n        (one cell = {per_cell} pages)", style="dim")
    return text


def legend(labels: Mapping[int, str] | None = None) -> Text:
    """A one-line key to the map's marks and colours, with each label's colour."""
    text = Text()
    text.append("0-9", style=_FREE_STYLES[3])
    text.append(" free block of that order  ")
    text.append("█", style="red3")
    text.append(" allocated  ")
    text.append("x", style="grey50")
    text.append(" reserved")
    for label in sorted(set((labels or {}).values())):
        text.append("  ")
        text.append(label, style=label_style(label))
    return text
