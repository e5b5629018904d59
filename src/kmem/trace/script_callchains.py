"""Plain `perf script` output with call chains: the page call site, as perf kmem finds it.

`perf script` without ``-F`` prints a recording made with ``-g`` as each event's line followed
by its call chain, one frame a line after a tab, and a blank line::

    pip  6677 [000]   464.751772:    kmem:mm_page_alloc: page=0x202750 pfn=0x202750 order=4 ...
    <TAB>ffffffff8163bbbb __alloc_frozen_pages_noprof+0x26b ([kernel.kallsyms])
    <TAB>ffffffff81675fb6 alloc_pages_mpol+0x86 ([kernel.kallsyms])
    <TAB>...

ScriptCallchains.lines() passes the event lines on to the parser and keeps the frames out of
it (see() reads one line, for a reader that shows it only the lines that can matter: the
compiled parse loop); for every page event line it notes the call site perf kmem would take
(builtin-kmem.c find_callsite): the first of the first 16 frames that is not a page allocator
function (the pattern kmem.trace.perf_data uses for perf.data, so both give the same call site:
``sym+0x<offset>`` of a kernel frame, ``0x<address>`` of a frame outside the kernel), or ""
when all of them are. attach() then gives the page events of the parser's batches those call sites,
in order (a malformed page line skipped with ``--skip-bad`` would shift them: the sites are
left out then).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Final

from kmem.trace.events import MM_PAGE_ALLOC, EventBatch

CALLCHAIN_DEPTH: Final = 16
# perf kmem's page allocator functions (builtin-kmem.c build_alloc_func_list), and the entry points
# Linux 6.x renamed out of that pattern (without them every 6.18 page call site would be
# __alloc_frozen_pages_noprof, the first frame of every page allocation's callchain).
ALLOC_FUNC: Final = re.compile(
    r"_?_?(alloc|get_free|get_zeroed)_pages?|_?_?(alloc_frozen_pages|folio_alloc|"
    r"vma_alloc_folio|alloc_pages_bulk)")
# A frame's address as perf script prints it (int(..., 16) would take "٠x1" and "f_f" too).
_HEX: Final = re.compile(r"[0-9a-f]{1,16}", re.ASCII | re.IGNORECASE)


class ScriptCallchains:
    """Strips perf script's call chain lines, remembering each page event's call site."""

    def __init__(self) -> None:
        self._alloc_func = ALLOC_FUNC
        self.sites: deque[str] = deque()
        self.chains = 0  # event lines followed by a call chain
        self.page_lines = 0
        self._page = False  # the last event line was a page event whose site is not decided yet
        self._frames = 0  # frames of its chain read so far
        self._chained = False  # the last event line is followed by a call chain

    def lines(self, lines: Iterable[str]) -> Iterator[str]:
        """``lines`` without the call chain frames."""
        see = self.see
        for line in lines:
            if see(line):
                yield line
        self.finish()

    @property
    def busy(self) -> bool:
        """Whether see() must be shown the next line, whatever it is. While not, it keeps
        every line that starts with no tab and names no kmem:mm_page_ event, doing nothing."""
        return self._page or self._chained

    def see(self, line: str) -> bool:
        """Read one line: whether it is kept (False: a frame of a call chain)."""
        if line[:1] == "\t":
            if not self._chained:
                self._chained = True
                self.chains += 1
            if self._page:
                self._frames += 1
                parts = line.split(None, 2)
                if self._frames > CALLCHAIN_DEPTH or len(parts) < 2:
                    self.sites.append("")
                    self._page = False
                    return False
                if not _HEX.fullmatch(parts[0]):
                    # Not a frame perf script prints: kept, for the parser to reject as the
                    # malformed line it is (with its number; --skip-bad counts it).
                    self.sites.append("")
                    self._page = False
                    return True
                symbol = parts[1]
                kernel = len(parts) > 2 and parts[2].startswith("([") and \
                    not parts[2].startswith("([unknown]")
                if not (kernel and self._alloc_func.match(symbol.split("+", 1)[0])):
                    self.sites.append(symbol if kernel and symbol != "[unknown]"
                                      else f"0x{int(parts[0], 16):x}")
                    self._page = False
            return False
        if line and not line.isspace():  # (line.strip(), without a new str a line)
            if self._page:
                self.sites.append("")  # (no frame outside the allocator)
            self._chained = False
            # (the split only where it can find one: ftrace text never names "kmem:")
            self._page = "kmem:mm_page_" in line and any(
                token.startswith("kmem:mm_page_") for token in line.split(None, 6)[2:6])
            if self._page:
                self.page_lines += 1
                self._frames = 0
        return True

    def finish(self) -> None:
        """The end of the lines: a page event still undecided has no site."""
        if self._page:
            self.sites.append("")
            self._page = False

    def attach(self, batch: EventBatch) -> EventBatch:
        """``batch`` with its page events' call sites from the chains read so far."""
        if not self.chains or not self.sites:
            return batch
        sites = list(batch.call_sites)
        for index, kind in enumerate(batch.kinds):
            if kind >= MM_PAGE_ALLOC and self.sites:
                sites[index] = self.sites.popleft()
        return batch._replace(call_sites=sites)


__all__ = ["ALLOC_FUNC", "ScriptCallchains"]
