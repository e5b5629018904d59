"""Streaming parser of Linux kmem trace text: ftrace, trace-cmd report and perf script.

Accepted line shapes (the event and its fields follow the timestamp in all three):

    ftrace (trace, trace_pipe):   bash-2220    [000] ..... 10308.077785: kmalloc: call_site=...
    trace-cmd report:             bash-2220    [000]  10308.077785: kmalloc:   call_site=...
    perf script -F comm,tid,cpu,time,event,trace:
                                  bash  2220 [000] 10308.077785: kmem:kmalloc: call_site=...

Field layouts of Linux 6.x (``name=`` and ``accounted=`` present) and of older kernels (4.x/5.x:
no ``name=``, no ``node=``/``accounted=``, ``*_node`` events, call sites as raw addresses, module
suffixes such as ``call_site=f+0x9e/0x160 [nf_conntrack]``) are all read.

The grammar (every path reads exactly this; "digit" is an ASCII digit 0-9, "hex digit" 0-9,
a-f or A-F: never another script's digits, an underscore, a sign or a space, which int() and
float() would take; a token is a run of non-whitespace as str.split() cuts it):

Lines
  L1. A line holds at most MAX_LINE (65,536) characters, its line end not counted; a longer
      one is malformed ("line longer than ..."). open_trace cuts a longer line short as it
      reads, so that it is never held whole (kmem.trace.source).
  L2. A line ends at "\\n", and a "\\r" right before it is part of the line end (CRLF files read
      as LF ones); any other "\\r" makes the line malformed: a file with CR-only line ends
      would otherwise read as one comment line, 0 events.
  L3. A blank line, a comment (first token starting with "#") and a trace-cmd report header
      (first token starting with "cpus=", "version" or "CPU", and no [cpu] column) is skipped,
      not counted in ``lines``.
Head
  H1. The CPU column is the first token after the first that is "[", 1 or more digits, "]"
      (the first token is tried last: perf script without comm and tid); its value is 0-8191
      (Linux's largest NR_CPUS). No such token: malformed.
  H2. The tokens after it up to the first ending in ":" are the irq-flags column (ftrace; none
      in trace-cmd and perf script); that token is the timestamp: 1-20 digits, then optionally
      "." and 1-9 digits, then ":" (so always finite: no nan, inf, 1e400, +1.5 or 1_0).
  H3. The next token is the event: "NAME:" or "SYSTEM:NAME:", each an identifier (ASCII
      letters, digits, "_"; no digit first). A kmem tracepoint (kmem:NAME or NAME, or an old
      name of one, mm_page_free_direct, mm_pagevec_free) is read; any other is counted in
      ``other_events`` (the first MAX_OTHER_EVENTS names apart, later ones together under
      OTHER_EVENTS_BEYOND, so that the counters stay bounded) and skipped; any other token is
      malformed.
Fields
  F1. Every later token is KEY=VALUE with a non-empty KEY; the one exception is a "[module]"
      token right after call_site=, which joins it. A KEY given twice: its last VALUE counts.
      Fields the event does not use (cold=, ...) are not checked.
  F2. Pointers (ptr=, page=): a NULL spelling ((nil), (null), 0, 0x0, 8 or 16 zeros, 0x and 16
      zeros), or 0x and 1-16 hex digits, or 8 or 16 hex digits (a hashed %p).
  F3. Decimal fields: bytes_req, bytes_alloc, order, alloc_order, percpu_refill are 1-19 digits;
      node, migratetype, alloc_migratetype 1-19 digits with an optional "-". pfn= is "0x" and
      1-16 hex digits (5.x and later) or 1-19 digits (4.x). order is below 32.
  F4. gfp_flags: names joined by "|", each a flag some kernel prints, "0x" and 1-16 hex digits,
      or "none". accounted: true or false. name: not empty. call_site: not empty.
  F5. Required: call_site and ptr (slab events; allocations also bytes_req, bytes_alloc and
      gfp_flags), pfn or page (page events; mm_page_alloc also migratetype and gfp_flags,
      mm_page_alloc_zone_locked and mm_page_pcpu_drain also migratetype, extfrag alloc_order
      and alloc_migratetype). A line missing one is malformed (truncated, most often).

The inline loop (the fast path) reads a subset of these lines, exactly as the rules above read
them; everything else goes to _slow_event, whose reading is the reference:
  I1. The line is ASCII, at most MAX_LINE characters, holds no "\\r", splits into at least seven
      tokens (str.split(None, 6): t[0]..t[5] and the rest, t[6]), and t[0] is no comment.
  I2. t[4] is a kmem event token (H3).
  I3. The CPU column is t[1], or t[2] when t[1] does not start with "[" (perf script); it is
      spelt as f"[{cpu:03d}]" for 0-8191. With the CPU in t[1], t[2] (irq flags) does not end
      in ":".
  I4. The timestamp t[3] is 1-20 digits, ".", exactly six digits, ":".
  I5. Slab events: t[6] starts with "ptr=" and 16 hex digits, or "ptr=0x" and 16 hex digits;
      the text after the pointer (the tail) is in the event kind's memo table, t[5] (the whole
      call_site= token) in the call site memo table.
  I6. Page events: t[5] is "page=" and a pointer of 0x and 1-16 hex digits, or 8 or 16 hex
      digits; t[6] starts with "pfn=0x", 1-16 hex digits and a space, and the text from that
      space on (the tail) is in the event kind's memo table.
  I7. Anything else, or a memo miss, goes to _slow_event; so does every line of a trace before
      its tails are learned.
Both the Python loop (_read_batch) and the compiled one (csrc/parse.c, used when the compiled
core is built: kmem._compiled) implement I1-I7; both send every other line to _slow_event.

Design, for speed: the memo tables are filled by the slow path with what it validated. One
lookup of a tail checks, validates and converts every field it holds (name, sizes, gfp flags,
node, accounted; order and migratetype of a page event): a trace repeats a few hundred distinct
tails, with new pointers, pfns and timestamps. Pointers stay text (their length and digits
checked); pfns are converted. This works for every layout a kernel prints, 6.x or older, once
the slow path has read one line with that tail.

_slow_event first tries the memo tables again with any pointer spelling (``(nil)``, 8 digits),
call sites in modules (``f+0x9e/0x160 [nf_conntrack]``), any timestamp precision, CRLF line ends
and trace-cmd's shape (``_fast_event``); a memo miss, a task name with spaces or a malformed
line then goes to the slow path, which parses ``key=value`` fields generically, validates every
value (rules F1-F5) and teaches the memo tables the line's tail, but only if ``_fast_event`` then
reads that line exactly as the slow path did. The memo tables are bounded (MAX_MEMO entries,
MAX_MEMO_CHARS characters); past that the slow path still reads every line. A tail that repeats
a field of the line's head (``ptr=``, ``call_site=``, ``pfn=``, ``page=``) is never learned: the
slow path would read the last of the two.

Invariant (tested on every fixture line, and fuzzed on mutations of them in
tests/test_parse_fuzz.py): a parser that has learned a trace's tails yields exactly what a fresh
one yields, line by line, events and errors alike; the compiled loop exactly what the Python
loop yields.

Output: parse_batches() yields the events as EventBatches (kmem.trace.events), one per BATCH
lines: the loop appends each line's columns (a memo table's tail tuple is appended as is, one
object for every line with that tail), so no tuple is built per event and the batch crosses a
pipe cheaply; the replay reads batches. parse() yields the same events as tuples. Both read
ahead by up to a batch: the counters (lines, events) count the batches read so far.

Errors: a malformed or truncated line raises TraceFormatError naming the line number, the reason
and the line (and the file, once open_trace has named it); with ``skip_bad=True`` it is counted
in ``bad_lines`` (the first few kept in ``bad_examples``) and parsing continues. A stream that
breaks off (a truncated or corrupt compressed file) raises TraceFileError. Lines of other
tracepoints are counted in ``other_events`` and skipped. The parser holds no per-event state:
memory stays flat however long the trace (the memo tables hold distinct field values, not
events).
"""

from __future__ import annotations

import lzma
import re
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import islice
from typing import Any, Final, Protocol

from kmem._compiled import core
from kmem.errors import InvalidArgumentError, KmemError
from kmem.page.gfp import GFP_FLAG_NAMES
from kmem.trace.events import (
    EVENT_KIND,
    EVENT_NAMES,
    KFREE,
    KMALLOC,
    KMALLOC_NODE,
    KMEM_CACHE_ALLOC,
    KMEM_CACHE_ALLOC_NODE,
    KMEM_CACHE_FREE,
    MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_EXTFRAG,
    MM_PAGE_ALLOC_ZONE_LOCKED,
    MM_PAGE_FREE,
    MM_PAGE_FREE_BATCHED,
    MM_PAGE_PCPU_DRAIN,
    NULL_PTR,
    WATCH_DROP,
    WATCH_NEXT,
    EventBatch,
    TraceEvent,
    batch_events,
    count_kinds,
)
from kmem.trace.source import MAX_LINE_CHARS, TraceFileError


class TraceFormatError(InvalidArgumentError):
    """A trace line is malformed or truncated; the message names its line number and content
    (``line 12: ...``), and the file once open_trace has named it (``trace.txt:12: ...``)."""

    def __init__(self, line_number: int, reason: str, line: str, path: str | None = None
                 ) -> None:
        text = line.rstrip("\n")
        if len(text) > 300:
            text = text[:300] + "..."
        self.line_number = line_number
        self.reason = reason
        self.line = text
        self.path = path
        super().__init__(self._text())

    def _text(self) -> str:
        where = f"line {self.line_number}" if self.path is None else (
            f"{self.path}:{self.line_number}")
        return f"{where}: {self.reason}: {self.line!r}"

    def name_file(self, path: str) -> None:
        """Say which file the line is in (open_trace does, for errors raised in its block)."""
        self.path = path
        self.args = (self._text(),)

    def __reduce__(self) -> tuple[type[TraceFormatError], tuple[int, str, str, str | None]]:
        # Pickled whole (kmem.trace.pipeline sends it from the parsing process).
        return (type(self), (self.line_number, self.reason, self.line, self.path))


class _Bad(Exception):
    """Raised by the slow path with the reason a line is rejected (turned into TraceFormatError)."""


# Old names of today's events (Linux 2.6.3x-3.x), read as their successors.
_ALIASES: Final = {
    "mm_page_free_direct": MM_PAGE_FREE,
    "mm_pagevec_free": MM_PAGE_FREE_BATCHED,
}
_NULLS: Final = frozenset({"(nil)", "(null)", "0000000000000000", "00000000", "0x0", "0",
                           "0x0000000000000000"})
# The value shapes of rules H1-H2 and F2-F4 (spelt with [0-9], never \d: ASCII only).
_HEX_PTR: Final = re.compile(r"0x[0-9a-fA-F]{1,16}|[0-9a-fA-F]{8}|[0-9a-fA-F]{16}")
_GFP_HEX: Final = re.compile(r"0x[0-9a-fA-F]{1,16}|none")
_UNSIGNED: Final = re.compile(r"[0-9]{1,19}")
_SIGNED: Final = re.compile(r"-?[0-9]{1,19}")
_HEX_PFN: Final = re.compile(r"0x[0-9a-fA-F]{1,16}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,9})?:")
_EVENT_NAME: Final = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*:){1,2}")  # name: or system:name:
MAX_OTHER_EVENTS: Final = 1024  # distinct names of other tracepoints counted apart
OTHER_EVENTS_BEYOND: Final = "(other names)"  # where the lines of further names are counted
_SIGNED_FIELDS: Final = frozenset({"node", "migratetype", "alloc_migratetype"})
# Names that older kernels print and 6.18 no longer has (include/trace/events/mmflags.h history).
_OLD_GFP_NAMES: Final = frozenset({
    "GFP_TEMPORARY", "GFP_IOFS", "GFP_THISNODE", "GFP_NOWAIT", "__GFP_WAIT", "__GFP_COLD",
    "__GFP_REPEAT", "__GFP_NOTRACK", "__GFP_NOTRACK_FALSE_POSITIVE", "__GFP_NO_KSWAPD",
    "__GFP_OTHER_NODE", "__GFP_NOACCOUNT", "__GFP_ATOMIC", "__GFP_NOLOCKDEP", "__GFP_SKIP_ZERO",
    "__GFP_SKIP_KASAN", "__GFP_SKIP_KASAN_POISON", "__GFP_SKIP_KASAN_UNPOISON", "__GFP_UNMAPPED",
    "__GFP_KSWAPD_RECLAIM", "__GFP_DIRECT_RECLAIM", "__GFP_RECLAIM",
})
_CPU_TOKEN: Final = re.compile(r"\[([0-9]+)\]")
MAX_CPUS: Final = 8192  # Linux's largest NR_CPUS (rule H1)
MAX_LINE: Final = MAX_LINE_CHARS  # characters of a line, its end not counted (rule L1)
_NOT_EVENT_LINES: Final = ("cpus=", "version", "CPU")  # trace-cmd report header lines
MAX_BAD_EXAMPLES: Final = 20
MAX_MEMO: Final = 1 << 17
MAX_MEMO_CHARS: Final = 1 << 24  # 16 Mi characters of memo keys (rule L1 allows 64 KiB lines)
BATCH: Final = 2048  # lines a batch of parse_batches(): a few hundred KB of columns
_HEX_PREFIXES: Final = ("0x", "0X")
_INLINE_NULLS: Final = ("0" * 16, "0x" + "0" * 16)  # NULL in the inline loop's pointer shapes

_SLAB_ALLOC_REQUIRED: Final = ("call_site", "ptr", "bytes_req", "bytes_alloc", "gfp_flags")


class LineWatch(Protocol):
    """What parse_batches shows the lines before it reads them (kmem.trace.perf_data's
    TraceInput: lost-event markers, perf script's call chains), and what it may leave out.

    ``see(line)`` reads a line and answers WATCH_DROP and WATCH_NEXT flags (0: keep the line,
    nothing more asked); ``finish()`` is called once the lines have run out (not after an
    error). The pure loop shows it every line. The compiled one leaves out the lines a watch
    must do nothing to (keep them, change nothing): while its last answer was no WATCH_NEXT
    (it shows it the first line of every batch), every line the inline rules (I1-I6) read
    that starts with no tab and no "CPU:" and has no token of t[2]..t[5] starting with
    "kmem:mm_page_"; so ordinary ftrace lines never reach Python. A watch must do nothing
    to those lines while it answers no WATCH_NEXT (tests/test_parse_watch_fuzz.py holds
    TraceInput's to it)."""

    def see(self, line: str) -> int: ...

    def finish(self) -> None: ...


def _watched(lines: Iterable[str], watch: LineWatch) -> Iterator[str]:
    """``lines`` shown to ``watch``, those it drops as empty lines (the pure loop's way): read
    as blank lines are, numbered but no event, so a malformed line after a call chain is named
    with its line in the file."""
    see = watch.see
    for line in lines:
        yield "" if see(line) & WATCH_DROP else line
    watch.finish()


def _event_kinds() -> dict[str, int]:
    """Event token (as split() yields it, colon included) -> kind, for every accepted spelling."""
    kinds: dict[str, int] = {}
    for name, kind in [*EVENT_KIND.items(), *_ALIASES.items()]:
        kinds[name + ":"] = kind
        kinds["kmem:" + name + ":"] = kind
    return kinds


_EVENT_TOKENS: Final = _event_kinds()
_CPU_TOKENS: Final = {f"[{cpu:03d}]": cpu for cpu in range(MAX_CPUS)}


class TraceParser:
    """Turns trace lines into event tuples (see kmem.trace.events), counting as it goes.

    >>> parser = TraceParser()
    >>> line = ("bash-1 [000] ..... 1.5: kfree: call_site=f+0x1/0x2 ptr=0000000045f49f41")
    >>> [event[:5] for event in parser.parse([line])]
    [(4, 0, '1.5:', 'f+0x1/0x2', '0000000045f49f41')]
    >>> parser.lines, parser.events["kfree"]
    (1, 1)
    """

    def __init__(self, *, skip_bad: bool = False) -> None:
        self.skip_bad: Final = skip_bad
        self.lines = 0
        self.bad_lines = 0
        self.bad_examples: list[TraceFormatError] = []
        self.other_events: dict[str, int] = {}
        self._counts = [0] * len(EVENT_NAMES)
        # Memo tables of the fast path, filled by the slow path with what it validated, bounded
        # by MAX_MEMO entries in all: whole call_site= and gfp_flags= tokens -> their value;
        # per event kind, a line's tail (its text after the pointer or pfn) -> the tail of
        # an EventBatch: slab events NAME..MIGRATETYPE; page events ((gfp, order,
        # migratetype), what pfn 0 reads as).
        self._call_sites: dict[str, str] = {}
        self._gfp_flags: dict[str, str] = {}
        self._tails: list[dict[str, tuple[Any, ...]]] = [{} for _ in EVENT_NAMES]
        self._memo_size = 0
        self._memo_chars = 0
        self._not_lines = 0  # comments, blank lines and trace-cmd headers: not counted as lines
        # The compiled inline loop (csrc/parse.c), chosen when the parser is built: None on
        # the pure core (KMEM_PURE=1, or no C extension), and the Python loop reads.
        self._compiled_lines: Callable[..., Any] | None = (
            None if core is None else core.parse_lines)

    @property
    def events(self) -> dict[str, int]:
        """Events parsed so far, by tracepoint name (every name present, zeros included)."""
        return dict(zip(EVENT_NAMES, self._counts, strict=True))

    # -- the loop ------------------------------------------------------------------------

    def parse(self, lines: Iterable[str]) -> Iterator[TraceEvent]:
        """Yield one event tuple per kmem event line of ``lines``, in trace order (a batch is
        read ahead: the counters count it; see parse_batches)."""
        for batch in self.parse_batches(lines):
            yield from batch_events(batch)

    def parse_batches(self, lines: Iterable[str], size: int = BATCH,
                      watch: LineWatch | None = None) -> Generator[EventBatch, None, None]:
        """Yield the events of ``lines`` as EventBatches, one per ``size`` lines read (the last
        one shorter; lines that hold no event make a batch shorter too, never empty).
        ``watch`` is shown the lines first (LineWatch; the lines it drops are read as empty
        lines: numbered and counted as blank lines are, in no event and not in ``lines``).

        A malformed line (TraceFormatError) or a stream that breaks off (TraceFileError) raises
        after the batch of the events before it. The counters (lines, events, ...) count the
        lines of the batches yielded so far, and the line that raised.
        """
        if size < 1:
            raise InvalidArgumentError(f"size must be >= 1, got {size}")
        lines = iter(lines)
        see: Callable[[str], int] | None = None
        if watch is not None:
            if self._compiled_lines is None:
                lines = _watched(lines, watch)  # every line, through a generator
            else:
                see = watch.see  # the compiled loop shows it the lines that can matter
        lines_before, not_lines = self.lines, self._not_lines
        read = 0  # lines read so far
        while True:
            batch, consumed, failure = self._read_batch(lines, size, read, see)
            read += consumed
            if see is not None and failure is None and consumed < size:
                assert watch is not None
                watch.finish()  # (the lines ran out: what _watched does at their end)
            # Every line read is counted but comments, blank lines and trace-cmd headers.
            self.lines = lines_before + read - (self._not_lines - not_lines)
            if batch is not None:
                yield batch
            if failure is not None:
                raise failure
            if consumed < size:
                return

    def _read_batch(self, lines: Iterator[str], size: int, read: int,
                    see: Callable[[str], int] | None = None
                    ) -> tuple[EventBatch | None, int, KmemError | None]:
        """Parse up to ``size`` lines (``read`` were read before): (their batch, or None if
        they hold no event; the lines read; the error that stopped it, or None). ``see``: a
        LineWatch's, for the compiled loop (the pure loop's lines went through _watched)."""
        if self._compiled_lines is not None:
            return self._read_batch_compiled(lines, size, read, see)
        assert see is None
        return self._read_batch_pure(lines, size, read)

    def _read_batch_compiled(self, lines: Iterator[str], size: int, read: int,
                             see: Callable[[str], int] | None = None
                             ) -> tuple[EventBatch | None, int, KmemError | None]:
        """_read_batch_pure's loop run in C (rules I1-I7; every other line goes to the same
        _slow_event), its result and error sorted exactly as the Python loop sorts them;
        ``see`` is shown the lines a LineWatch may care about."""
        assert self._compiled_lines is not None
        kinds, cpus, times, sites, keys, batch_tails, skipped, error = self._compiled_lines(
            lines, size, read, _EVENT_TOKENS, self._call_sites, self._tails, self._slow_event,
            NULL_PTR, MAX_LINE, see)
        failure: KmemError | None = None
        if isinstance(error, TraceFormatError):  # (raised by _slow_event: the line is counted)
            failure = error
            skipped += 1
        elif isinstance(error, (EOFError, OSError, lzma.LZMAError, zlib.error)):
            failure = _broken_stream(error, read + len(kinds) + skipped)
        elif error is not None:
            raise error  # not the trace's fault: a bug, or KeyboardInterrupt
        batch = self._batch(kinds, cpus, times, sites, keys, batch_tails) if kinds else None
        return batch, len(kinds) + skipped, failure

    def _read_batch_pure(self, lines: Iterator[str], size: int, read: int
                         ) -> tuple[EventBatch | None, int, KmemError | None]:
        """The Python loop of _read_batch (the reference of the compiled one)."""
        # The hot loop: every name below is a local and a known line is read inline (no call).
        # A line is split at most 6 times: t[5] is the first field (call_site=, or page= of a
        # page event) and t[6] the rest, "ptr=<16 hex> <tail>" or "pfn=0x<hex> <tail>". The
        # tail (the text after the pointer or pfn, newline included) and the call_site token
        # are looked up whole in memo tables that the validating slow path filled: one dict
        # lookup checks, validates and converts every other field of the line. A miss
        # (KeyError) or any other doubt sends the line to _slow_event, which parses it fully,
        # says what is wrong with it, or teaches the memo tables its tail. No line counter:
        # a line's number is the lines before this batch + the batch's events + lines skipped.
        kinds_of = _EVENT_TOKENS
        cpus_of = _CPU_TOKENS
        call_sites = self._call_sites
        nulls = _INLINE_NULLS  # a tuple: compared, not hashed
        tails = self._tails
        slow = self._slow_event
        hex_pointer = _HEX_PTR.fullmatch
        max_line = MAX_LINE
        kinds = bytearray()
        cpus: list[int] = []
        times: list[str] = []
        sites: list[str] = []
        keys: list[Any] = []
        batch_tails: list[tuple[Any, ...]] = []
        add_kind, add_cpu, add_time = kinds.append, cpus.append, times.append
        add_site, add_key, add_tail = sites.append, keys.append, batch_tails.append
        skipped = 0  # lines that gave no event
        key: Any  # a slab event's pointer (str) or a page event's pfn (int)
        failure: KmemError | None = None
        try:
            for line in islice(lines, size):
                t = line.split(None, 6)
                try:
                    kind = kinds_of[t[4]]  # I2
                    # I1 (line.isascii() costs nothing: str knows it; on ASCII text isdigit()
                    # and isalnum() mean [0-9] and [0-9a-zA-Z], and int() sees no other digits)
                    if (not line.isascii() or len(line) > max_line or "\r" in line
                            or t[0][0] == "#"):
                        raise KeyError
                    cpu = cpus_of.get(t[1])  # I3
                    if cpu is None:
                        if t[1][0] == "[":  # (a CPU column spelt otherwise: the slow path's)
                            raise KeyError
                        cpu = cpus_of[t[2]]  # perf script: "comm  pid [cpu]"
                    elif t[2][-1] == ":":  # (no irq flags: t[2] is the timestamp)
                        raise KeyError
                    time = t[3]  # I4: "10308.077785:"
                    if (time[-8::7] != ".:" or not time[:-8].isdigit()
                            or not time[-7:-1].isdigit() or len(time) > 28):
                        raise KeyError
                    rest = t[6]
                    if kind <= KMEM_CACHE_FREE:  # I5
                        # hashed (16 hex digits) or raw (0x and 16) pointers
                        end = 22 if rest[5] == "x" else 20
                        key = rest[4:end]
                        # (truncated, or a space or newline inside: no pointer; int() takes
                        # "0X" for 0x, and "0x" only where rest[5] is the x)
                        if (rest[:4] != "ptr=" or len(key) != end - 4 or not key.isalnum()
                                or key[1] == "X"):
                            raise KeyError
                        int(key, 16)  # (hex digits only, else ValueError)
                        tail = tails[kind][rest[end:]]
                        site = call_sites[t[5]]
                        if key in nulls:
                            key = NULL_PTR
                    else:  # I6
                        end = rest.find(" ")
                        digits = rest[6:end]
                        if (rest[:6] != "pfn=0x" or t[5][:5] != "page="
                                or not digits.isalnum() or len(digits) > 16
                                or digits[:2] in _HEX_PREFIXES  # (int() takes "0x0x1")
                                or not hex_pointer(t[5], 5)):
                            raise KeyError
                        tail, pfn_zero = tails[kind][rest[end:]]
                        site = ""
                        key = int(digits, 16) or pfn_zero
                except (KeyError, IndexError, ValueError):
                    event = slow(read + len(kinds) + skipped + 1, line)
                    if event is None:
                        skipped += 1
                        continue
                    kind, cpu, time, site = event[0], event[1], event[2], event[3]
                    if kind <= KMEM_CACHE_FREE:
                        key, tail = event[4], event[5:]
                    else:
                        key, tail = event[10], (event[8], event[11], event[12])
                add_kind(kind)
                add_cpu(cpu)
                add_time(time)
                add_site(site)
                add_key(key)
                add_tail(tail)
        except TraceFormatError as error:  # (raised by _slow_event: the line is counted)
            failure = error
            skipped += 1
        except (EOFError, OSError, lzma.LZMAError, zlib.error) as error:
            failure = _broken_stream(error, read + len(kinds) + skipped)
        batch = self._batch(kinds, cpus, times, sites, keys, batch_tails) if kinds else None
        return batch, len(kinds) + skipped, failure

    def _batch(self, kinds: bytearray, cpus: list[int], times: list[str], sites: list[str],
               keys: list[Any], tails: list[tuple[Any, ...]]) -> EventBatch:
        """The batch of these columns, counted in ``events``."""
        count_kinds(self._counts, kinds)
        return EventBatch(bytes(kinds), cpus, times, sites, keys, tails)

    def _reject(self, number: int, line: str, error: Exception) -> None:
        """Count the bad line (with --skip-bad) or raise a TraceFormatError naming it."""
        reason = str(error) if isinstance(error, _Bad) else f"unreadable fields ({error})"
        bad = TraceFormatError(number, reason, line)
        if not self.skip_bad:
            raise bad
        self.bad_lines += 1
        if len(self.bad_examples) < MAX_BAD_EXAMPLES:
            self.bad_examples.append(bad)

    def _gfp(self, token: str) -> str:
        """The flags of a ``gfp_flags=...`` token, validated once per distinct token (and only
        a validated one is remembered: a field an event does not use is not checked)."""
        flags = self._gfp_flags.get(token)
        if flags is None:  # (both callers pass "gfp_flags=" and the field's value)
            flags = _check_gfp(token[10:])
            if self._memo_room(token):
                self._gfp_flags[token] = flags
        return flags

    def _memo_room(self, key: str) -> bool:
        """Whether the memo tables may learn ``key`` (then counted): at most MAX_MEMO entries
        and MAX_MEMO_CHARS characters of keys in all, so that they stay small whatever the
        trace (a line may be 64 KiB long)."""
        if self._memo_size >= MAX_MEMO or self._memo_chars + len(key) > MAX_MEMO_CHARS:
            return False
        self._memo_size += 1
        self._memo_chars += len(key)
        return True

    def _learn_call_site(self, call_site: str) -> None:
        """Remember the call_site= token of an accepted slab event (the fast paths read it
        only in slab events: a page event's call_site= is not checked)."""
        # (a call site in a module has a space: "f+0x9e/0x160 [nf_conntrack]")
        token = "call_site=" + call_site
        if token not in self._call_sites and self._memo_room(token):
            self._call_sites[token] = call_site

    # -- between the paths ---------------------------------------------------------------------

    def _slow_event(self, number: int, line: str) -> TraceEvent | None:
        """A line the fast loop could not read: its event, or None (skipped, or counted bad)."""
        text = line[:-1] if line[-1:] == "\n" else line
        if text[-1:] == "\r":
            text = text[:-1]
        if len(text) > MAX_LINE:  # L1
            self._reject(number, line, _Bad(f"line longer than {MAX_LINE} characters"))
            return None
        if "\r" in text:  # L2
            self._reject(number, line, _Bad(
                "carriage return inside the line (a file with CR line ends? 'tr \\r \\n'"
                " makes them newlines)"))
            return None
        shaped = line.split(None, 6)
        if not shaped or shaped[0][0] == "#":
            self._not_lines += 1
            return None
        # First the memo tables again, for the shapes the fast loop leaves out: trace-cmd lines
        # (no irq-flags column: a placeholder for it makes them read like ftrace lines), call
        # sites in modules, NULL pointers spelt "(nil)", and pointers of other lengths.
        if len(shaped) > 3 and shaped[2][-1:] == ":" and shaped[3] in _EVENT_TOKENS:
            shaped = line.split(None, 5)
            shaped.insert(2, ".")
        try:
            return self._fast_event(shaped)
        except (KeyError, IndexError, ValueError):
            pass
        t = line.split()
        try:
            event = self._slow_line(t)
        except (_Bad, ValueError, IndexError, KeyError) as error:
            self._reject(number, line, error)
            return None
        if event is None:
            if t[0].startswith(_NOT_EVENT_LINES) and not any(map(_CPU_TOKEN.fullmatch, t)):
                self._not_lines += 1  # a trace-cmd report header line (not "CPU 0/KVM-12 [000]")
            return None
        self._learn_tail(shaped, event)
        return event

    def _fast_event(self, t: list[str]) -> TraceEvent:
        """The memo tables' reading of a line split in seven: what parse() does inline, for any
        pointer spelling. Raises KeyError, IndexError or ValueError where the memo cannot tell."""
        kind = _EVENT_TOKENS[t[4]]
        cpu = _CPU_TOKENS.get(t[1])
        if cpu is None:
            if t[1][0] == "[":
                raise KeyError
            cpu = _CPU_TOKENS[t[2]]
        elif t[2][-1] == ":":
            raise KeyError
        if not _TIMESTAMP.fullmatch(t[3]):  # any precision (trace-cmd prints nanoseconds)
            raise KeyError
        call_site, rest = _call_site_and_rest(t)
        if kind <= KMEM_CACHE_FREE:
            ptr, tail = _pointer_and_tail(rest)
            return (kind, cpu, t[3], self._call_sites[call_site], ptr) + self._tails[kind][tail]
        end = rest.find(" ")
        digits = rest[6:end]
        if (rest[:6] != "pfn=0x" or t[5][:5] != "page=" or not _is_pointer(t[5][5:])
                or not _HEX_PFN.fullmatch(rest, 4, end)):
            raise KeyError
        (gfp, order, migratetype), pfn_zero = self._tails[kind][rest[end:]]
        return (kind, cpu, t[3], "", "", "", 0, 0, gfp, -1, int(digits, 16) or pfn_zero, order,
                migratetype)

    def _learn_tail(self, t: list[str], event: TraceEvent) -> None:
        """Teach the fast path the tail of a line the slow path accepted, if the fast path then
        reads the line exactly as the slow path did (else it stays a slow-path line)."""
        kind = event[0]
        if len(t) != 7 or t[4] not in _EVENT_TOKENS or self._memo_size >= MAX_MEMO:
            return
        value: tuple[Any, ...]
        if kind <= KMEM_CACHE_FREE:
            try:
                tail = _pointer_and_tail(_call_site_and_rest(t)[1])[1]
            except (KeyError, ValueError):
                return
            head_keys: tuple[str, ...] = ("call_site=", "ptr=")
            value = event[5:]
        else:
            rest = t[6]
            end = rest.find(" ")
            if end < 0:
                return
            tail = rest[end:]
            head_keys = ("page=", "pfn=")
            value = ((event[8], event[11], event[12]), -1 if kind == MM_PAGE_ALLOC else 0)
        table = self._tails[kind]
        if tail in table or any(key in tail for key in head_keys):
            return  # (a field of the head repeated in the tail: the slow path's last one wins)
        table[tail] = value
        try:
            same = self._fast_event(t) == event
        except (KeyError, IndexError, ValueError):
            same = False
        if not (same and self._memo_room(tail)):
            del table[tail]

    # -- slow path: any layout, full validation ----------------------------------------------

    def _slow_line(self, t: list[str]) -> TraceEvent | None:
        """Locate cpu, timestamp and event in a line of any accepted shape; None if not kmem."""
        cpu = -1
        index = 0
        # The first token last: it is the task's name in every layout but perf script's
        # without comm and tid ("[000] 10308.077785: kmem:kmalloc: ..."), so a task named
        # "[005]" is no CPU when a later token is one (as in the fast path).
        for index in (*range(1, len(t)), 0):
            match = _CPU_TOKEN.fullmatch(t[index])
            if match:
                cpu = int(match.group(1))
                if cpu >= MAX_CPUS:
                    raise _Bad(f"CPU {cpu} out of range (0-{MAX_CPUS - 1})")
                break
        if cpu < 0:
            if t[0].startswith(_NOT_EVENT_LINES):
                return None  # a trace-cmd report header line (cpus=2, version = 6, ...)
            raise _Bad("no [cpu] column: not a trace event line")
        index += 1
        while index < len(t) and t[index][-1] != ":":
            index += 1  # skip the irq-flags column (ftrace, trace-cmd report -l)
        if index + 1 >= len(t):
            raise _Bad("truncated before the event name")
        time = t[index]
        if not _TIMESTAMP.fullmatch(time):
            raise _Bad(f"bad timestamp {time[:-1]!r}")
        token = t[index + 1]
        kind = _EVENT_TOKENS.get(token)
        if kind is None:
            if not _EVENT_NAME.fullmatch(token):
                raise _Bad(f"bad event name {token!r}")
            name = token[:-1]
            others = self.other_events
            if name not in others and len(others) >= MAX_OTHER_EVENTS:
                name = OTHER_EVENTS_BEYOND
            others[name] = others.get(name, 0) + 1
            return None
        return self._slow_fields(kind, t, index + 2, cpu, time)

    def _slow_fields(self, kind: int, t: list[str], i: int, cpu: int, time: str) -> TraceEvent:
        """Parse and validate the ``key=value`` fields of one event of ``kind``."""
        fields: dict[str, str] = {}
        last = ""
        for token in t[i:]:
            key, eq, value = token.partition("=")
            if eq and key:
                fields[key] = value
                last = key
            elif token[:1] == "[" and token[-1:] == "]" and last == "call_site":
                fields[last] += " " + token  # a module symbol: "f+0x9e/0x160 [nf_conntrack]"
            else:
                raise _Bad(f"field {token!r} is not key=value")
        if kind <= KMEM_CACHE_FREE:
            event = _slab_event(kind, fields, cpu, time, self._gfp)
            self._learn_call_site(event[3])
            return event
        return _page_event(kind, fields, cpu, time, self._gfp)


def _broken_stream(error: BaseException, lines_read: int) -> TraceFileError:
    """The TraceFileError of a stream that broke off (truncated, corrupt) after ``lines_read``
    whole lines."""
    failure = TraceFileError(f"the trace stream broke off after line {lines_read}: {error}")
    failure.__cause__ = error
    return failure


def _check_gfp(flags: str) -> str:
    """``flags`` if every part is a flag name some kernel prints, or hex; else the line is bad
    (a line truncated inside its gfp_flags would otherwise pass: "GFP_KERN")."""
    for part in flags.split("|"):
        if part in GFP_FLAG_NAMES or part in _OLD_GFP_NAMES:
            continue
        if not _GFP_HEX.fullmatch(part):
            raise _Bad(f"bad gfp_flags {flags!r} (unknown flag {part!r})")
    return flags


def _int_field(fields: dict[str, str], key: str) -> int:
    """A decimal field (rule F3): digits, and a "-" before them where the kernel prints %d."""
    try:
        value = fields[key]
    except KeyError:
        raise _Bad(f"missing {key}= (truncated line?)") from None
    shape = _SIGNED if key in _SIGNED_FIELDS else _UNSIGNED
    if not shape.fullmatch(value):
        raise _Bad(f"bad {key}={value!r}")
    return int(value)


def _ptr(fields: dict[str, str]) -> str:
    value = fields["ptr"]  # (present: _slab_event checked it first)
    if not _is_pointer(value):
        raise _Bad(f"bad pointer ptr={value!r}")
    return NULL_PTR if value in _NULLS else value


def _is_pointer(value: str) -> bool:
    """A NULL spelling, 0x and 1-16 hex digits, or 8 or 16 hex digits (hashed %p): rule F2."""
    return value in _NULLS or bool(_HEX_PTR.fullmatch(value))


def _call_site_and_rest(t: list[str]) -> tuple[str, str]:
    """(the call_site= token, the rest of the line) of a line split in seven, with the module
    of a call site in a module moved from the rest into the token:
    "call_site=f+0x9e/0x160", "[nf_conntrack] ptr=..." -> "call_site=f+0x9e/0x160 [nf_conntrack]",
    "ptr=..." (ValueError if the bracket is not closed)."""
    rest = t[6]
    if rest[:1] != "[":
        return t[5], rest
    end = rest.index("] ") + 1
    return f"{t[5]} {rest[:end]}", rest[end + 1:]


def _pointer_and_tail(rest: str) -> tuple[str, str]:
    """"ptr=<pointer> <tail>" -> (the pointer as an event holds it, the tail from the space on);
    KeyError if it is no pointer field."""
    first = rest.split(None, 1)[0]
    value = first[4:]
    if first[:4] != "ptr=" or not _is_pointer(value):
        raise KeyError(first)
    return NULL_PTR if value in _NULLS else value, rest[len(first):]


def _slab_event(
    kind: int, fields: dict[str, str], cpu: int, time: str, gfp: Callable[[str], str]
) -> TraceEvent:
    for key in _SLAB_ALLOC_REQUIRED if kind <= KMEM_CACHE_ALLOC_NODE else ("call_site", "ptr"):
        if not fields.get(key):
            raise _Bad(f"missing {key}= (truncated line?)")
    call_site = fields["call_site"]
    ptr = _ptr(fields)
    name = fields.get("name", "")
    if "name" in fields and not name:
        raise _Bad("empty name= (truncated line?)")
    for key in ("node", "percpu_refill"):
        if key in fields:
            _int_field(fields, key)
    if kind in (KMEM_CACHE_FREE, KFREE):
        return (kind, cpu, time, call_site, ptr, name, 0, 0, "", -1, -1, -1, -1)
    bytes_req = _int_field(fields, "bytes_req")
    bytes_alloc = _int_field(fields, "bytes_alloc")
    node = _int_field(fields, "node") if "node" in fields else -1
    accounted = fields.get("accounted")
    if accounted is not None and accounted not in ("true", "false"):
        raise _Bad(f"bad accounted={accounted!r}")
    flags = gfp("gfp_flags=" + fields["gfp_flags"])
    # kmalloc_node / kmem_cache_alloc_node keep their kind: the stat counts them apart.
    assert kind in (KMALLOC, KMALLOC_NODE, KMEM_CACHE_ALLOC, KMEM_CACHE_ALLOC_NODE)
    return (kind, cpu, time, call_site, ptr, name, bytes_req, bytes_alloc, flags, node, -1, -1,
            -1)


def _page_event(
    kind: int, fields: dict[str, str], cpu: int, time: str, gfp: Callable[[str], str]
) -> TraceEvent:
    page = fields.get("page")
    if page is not None and not _is_pointer(page):
        raise _Bad(f"bad page={page!r}")
    if "pfn" in fields:
        # 5.x and later print pfn=0x%lx, 4.x printed pfn=%lu.
        value = fields["pfn"]
        if _HEX_PFN.fullmatch(value):
            pfn = int(value, 16)
        elif _UNSIGNED.fullmatch(value):
            pfn = int(value)
        else:
            raise _Bad(f"bad pfn={value!r}")
    elif page is not None:
        # Kernels before 3.x print only the struct page pointer: it still pairs alloc and free.
        pfn = 0 if page in _NULLS else int(page, 16)
    else:
        raise _Bad("missing pfn= (truncated line?)")
    if kind == MM_PAGE_ALLOC_EXTFRAG:
        order = _int_field(fields, "alloc_order")
        migratetype = _int_field(fields, "alloc_migratetype")
    else:
        if kind == MM_PAGE_FREE_BATCHED and "order" not in fields:
            fields["order"] = "0"
        order = _int_field(fields, "order")
        migratetype = _int_field(fields, "migratetype") if "migratetype" in fields else -1
    if not 0 <= order < 32:
        raise _Bad(f"order {order} out of range")
    flags = ""
    if kind == MM_PAGE_ALLOC:
        if "gfp_flags" not in fields or "migratetype" not in fields:
            raise _Bad("missing migratetype= or gfp_flags= (truncated line?)")
        flags = gfp("gfp_flags=" + fields["gfp_flags"])
        if pfn == 0:
            pfn = -1  # a failed allocation
    elif kind in (MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_PCPU_DRAIN) and "migratetype" not in fields:
        raise _Bad("missing migratetype= (truncated line?)")
    if "percpu_refill" in fields:
        _int_field(fields, "percpu_refill")
    return (kind, cpu, time, "", "", "", 0, 0, flags, -1, pfn, order, migratetype)


def parse_trace(lines: Iterable[str], *, skip_bad: bool = False) -> Iterator[TraceEvent]:
    """Events of ``lines`` (a convenience over TraceParser when the counters are not needed)."""
    return TraceParser(skip_bad=skip_bad).parse(lines)


__all__ = ["MAX_MEMO", "WATCH_DROP", "WATCH_NEXT", "LineWatch", "TraceFormatError", "TraceParser",
           "parse_trace"]
