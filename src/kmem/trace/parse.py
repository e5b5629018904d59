"""Streaming parser of Linux kmem trace text: ftrace, trace-cmd report and perf script.

Accepted line shapes (the event and its fields follow the timestamp in all three):

    ftrace (trace, trace_pipe):   bash-2220    [000] ..... 10308.077785: kmalloc: call_site=...
    trace-cmd report:             bash-2220    [000]  10308.077785: kmalloc:   call_site=...
    perf script -F comm,tid,cpu,time,event,trace:
                                  bash  2220 [000] 10308.077785: kmem:kmalloc: call_site=...

Field layouts of Linux 6.x (``name=`` and ``accounted=`` present) and of older kernels (4.x/5.x:
no ``name=``, no ``node=``/``accounted=``, ``*_node`` events, call sites as raw addresses, module
suffixes such as ``call_site=f+0x9e/0x160 [nf_conntrack]``) are all read.

Design, for speed: a line is split at most six times, which leaves the first field (``call_site=``,
or ``page=`` of a page event) in t[5] and the rest of the line in t[6]: the pointer (or pfn) and
the line's *tail*, every field after it. The event token (t[4] in ftrace and perf script lines;
trace-cmd's, which lack the irq-flags column, get a placeholder inserted) is looked up in a dict;
then the call_site token and the tail are looked up whole in memo tables that the slow path
filled with what it validated. One lookup of a tail checks, validates and converts every field
it holds (name, sizes, gfp flags, node, accounted; order and migratetype of a page event): a
trace repeats a few hundred distinct tails, with new pointers, pfns and timestamps. Pointers stay
text (16 hex digits, or 0x and 16: their length is checked, which catches truncation); pfns are
converted. This works for every layout a kernel prints, 6.x or older, once the slow path has
read one line with that tail.

The inline loop reads ftrace and perf script lines with microsecond timestamps and 16-digit (or
0x and 16) pointers; anything else goes to _slow_event. That first tries the memo tables again
with any pointer spelling (``(nil)``, 8 digits), call sites in modules (``f+0x9e/0x160
[nf_conntrack]``), any timestamp precision and trace-cmd's shape (``_fast_event``); a memo miss,
a task name with spaces or a malformed line then goes to the slow path, which parses
``key=value`` fields generically, validates every value (hex pointers, known gfp flag names,
ranges) and teaches the memo tables the line's tail, but only if ``_fast_event`` then reads that
line exactly as the slow path did. The memo tables are bounded (MAX_MEMO entries); past that the
slow path still reads every line. The inline loop checks the timestamp's shape only (a "." six
digits before its colon) and a pointer's length and characters (letters and digits, not hex
digits only); the other paths convert the timestamp. A tail that repeats a field of the line's
head (``ptr=``, ``call_site=``, ``pfn=``, ``page=``) is never learned: the slow path would read
the last of the two.

Invariant (tested on every fixture line): the fast path yields exactly what the slow path yields.

Output: parse_batches() yields the events as EventBatches (kmem.trace.events), one per BATCH
lines: the loop appends each line's columns (a memo table's tail tuple is appended as is, one
object for every line with that tail), so no tuple is built per event and the batch crosses a
pipe cheaply; the replay reads batches. parse() yields the same events as tuples. Both read
ahead by up to a batch: the counters (lines, events) count the batches read so far.

Errors: a malformed or truncated line raises TraceFormatError naming the line number, the reason
and the line; with ``skip_bad=True`` it is counted in ``bad_lines`` (the first few kept in
``bad_examples``) and parsing continues. Comment (``#``) and blank lines are skipped and not
counted as lines; ``lines`` counts the others. Lines of other tracepoints are counted in
``other_events`` and skipped. The parser holds no per-event state: memory stays flat however long
the trace (the memo tables hold distinct field values, not events).
"""

from __future__ import annotations

import lzma
import re
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import islice
from typing import Any, Final

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
    EventBatch,
    TraceEvent,
    batch_events,
    count_kinds,
)
from kmem.trace.source import TraceFileError


class TraceFormatError(InvalidArgumentError):
    """A trace line is malformed or truncated; the message names its line number and content."""

    def __init__(self, line_number: int, reason: str, line: str) -> None:
        text = line.rstrip("\n")
        if len(text) > 300:
            text = text[:300] + "..."
        super().__init__(f"line {line_number}: {reason}: {text!r}")
        self.line_number = line_number
        self.reason = reason
        self.line = text

    def __reduce__(self) -> tuple[type[TraceFormatError], tuple[int, str, str]]:
        # Pickled whole (kmem.trace.pipeline sends it from the parsing process).
        return (type(self), (self.line_number, self.reason, self.line))


class _Bad(Exception):
    """Raised by the slow path with the reason a line is rejected (turned into TraceFormatError)."""


# Old names of today's events (Linux 2.6.3x-3.x), read as their successors.
_ALIASES: Final = {
    "mm_page_free_direct": MM_PAGE_FREE,
    "mm_pagevec_free": MM_PAGE_FREE_BATCHED,
}
_NULLS: Final = frozenset({"(nil)", "(null)", "0000000000000000", "00000000", "0x0", "0",
                           "0x0000000000000000"})
_HEX_PTR: Final = re.compile(r"(?:0x)?[0-9a-fA-F]+")
_GFP_HEX: Final = re.compile(r"0x[0-9a-fA-F]+|none")
# Names that older kernels print and 6.18 no longer has (include/trace/events/mmflags.h history).
_OLD_GFP_NAMES: Final = frozenset({
    "GFP_TEMPORARY", "GFP_IOFS", "GFP_THISNODE", "GFP_NOWAIT", "__GFP_WAIT", "__GFP_COLD",
    "__GFP_REPEAT", "__GFP_NOTRACK", "__GFP_NOTRACK_FALSE_POSITIVE", "__GFP_NO_KSWAPD",
    "__GFP_OTHER_NODE", "__GFP_NOACCOUNT", "__GFP_ATOMIC", "__GFP_NOLOCKDEP", "__GFP_SKIP_ZERO",
    "__GFP_SKIP_KASAN", "__GFP_SKIP_KASAN_POISON", "__GFP_SKIP_KASAN_UNPOISON", "__GFP_UNMAPPED",
    "__GFP_KSWAPD_RECLAIM", "__GFP_DIRECT_RECLAIM", "__GFP_RECLAIM",
})
_CPU_TOKEN: Final = re.compile(r"\[(\d+)\]")
_NOT_EVENT_LINES: Final = ("cpus=", "version", "CPU")  # trace-cmd report header lines
MAX_BAD_EXAMPLES: Final = 20
MAX_MEMO: Final = 1 << 17
BATCH: Final = 2048  # lines a batch of parse_batches(): a few hundred KB of columns
_HEX_PREFIXES: Final = ("0x", "0X")
_INLINE_NULLS: Final = ("0" * 16, "0x" + "0" * 16)  # NULL in the inline loop's pointer shapes

_SLAB_ALLOC_REQUIRED: Final = ("call_site", "ptr", "bytes_req", "bytes_alloc", "gfp_flags")


def _event_kinds() -> dict[str, int]:
    """Event token (as split() yields it, colon included) -> kind, for every accepted spelling."""
    kinds: dict[str, int] = {}
    for name, kind in [*EVENT_KIND.items(), *_ALIASES.items()]:
        kinds[name + ":"] = kind
        kinds["kmem:" + name + ":"] = kind
    return kinds


_EVENT_TOKENS: Final = _event_kinds()
_CPU_TOKENS: Final = {f"[{cpu:03d}]": cpu for cpu in range(8192)}


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
        self._not_lines = 0  # comments, blank lines and trace-cmd headers: not counted as lines

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

    def parse_batches(self, lines: Iterable[str], size: int = BATCH
                      ) -> Generator[EventBatch, None, None]:
        """Yield the events of ``lines`` as EventBatches, one per ``size`` lines read (the last
        one shorter; lines that hold no event make a batch shorter too, never empty).

        A malformed line (TraceFormatError) or a stream that breaks off (TraceFileError) raises
        after the batch of the events before it. The counters (lines, events, ...) count the
        lines of the batches yielded so far, and the line that raised.
        """
        if size < 1:
            raise InvalidArgumentError(f"size must be >= 1, got {size}")
        lines = iter(lines)
        lines_before, not_lines = self.lines, self._not_lines
        read = 0  # lines read so far
        while True:
            batch, consumed, failure = self._read_batch(lines, size, read)
            read += consumed
            # Every line read is counted but comments, blank lines and trace-cmd headers.
            self.lines = lines_before + read - (self._not_lines - not_lines)
            if batch is not None:
                yield batch
            if failure is not None:
                raise failure
            if consumed < size:
                return

    def _read_batch(self, lines: Iterator[str], size: int, read: int
                    ) -> tuple[EventBatch | None, int, KmemError | None]:
        """Parse up to ``size`` lines (``read`` were read before): (their batch, or None if
        they hold no event; the lines read; the error that stopped it, or None)."""
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
                    kind = kinds_of[t[4]]
                    cpu = cpus_of.get(t[1])
                    if cpu is None:
                        cpu = cpus_of[t[2]]  # perf script: "comm  pid [cpu]"
                    time = t[3]
                    if time[-8::7] != ".:":  # the timestamp's shape: "10308.077785:"
                        raise KeyError
                    rest = t[6]
                    if kind <= KMEM_CACHE_FREE:
                        # hashed (16 hex digits) or raw (0x and 16) pointers
                        end = 22 if rest[5] == "x" else 20
                        key = rest[4:end]
                        # (truncated, or a space or newline inside: no pointer)
                        if rest[:4] != "ptr=" or len(key) != end - 4 or not key.isalnum():
                            raise KeyError
                        tail = tails[kind][rest[end:]]
                        site = call_sites[t[5]]
                        if key in nulls:
                            key = NULL_PTR
                    else:
                        end = rest.find(" ")
                        digits = rest[6:end]
                        if (rest[:6] != "pfn=0x" or t[5][:5] != "page="
                                or not digits.isalnum()
                                or digits[:2] in _HEX_PREFIXES):  # (int() takes "0x0x1")
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
            failure = TraceFileError(
                f"the trace stream broke off after line {read + len(kinds) + skipped}: {error}")
            failure.__cause__ = error
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
        """The flags of a ``gfp_flags=...`` token, validated once per distinct token."""
        flags = self._gfp_flags.get(token)
        if flags is None:
            if token[:10] != "gfp_flags=":
                raise _Bad(f"expected gfp_flags=, got {token!r}")
            flags = _check_gfp(token[10:])
        return flags

    def _learn(self, fields: dict[str, str]) -> None:
        """Remember the validated call_site= and gfp_flags= tokens of an accepted line."""
        for key, table in (("call_site", self._call_sites), ("gfp_flags", self._gfp_flags)):
            value = fields.get(key)
            # (a call site in a module has a space: "f+0x9e/0x160 [nf_conntrack]")
            if value is not None and self._memo_size < MAX_MEMO:
                token = f"{key}={value}"
                if token not in table:
                    table[token] = value
                    self._memo_size += 1

    # -- between the paths ---------------------------------------------------------------------

    def _slow_event(self, number: int, line: str) -> TraceEvent | None:
        """A line the fast loop could not read: its event, or None (skipped, or counted bad)."""
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
            cpu = _CPU_TOKENS[t[2]]
        if t[3][-1:] != ":":
            raise KeyError
        float(t[3][:-1])  # any precision (trace-cmd prints nanoseconds)
        call_site, rest = _call_site_and_rest(t)
        if kind <= KMEM_CACHE_FREE:
            ptr, tail = _pointer_and_tail(rest)
            return (kind, cpu, t[3], self._call_sites[call_site], ptr) + self._tails[kind][tail]
        end = rest.find(" ")
        digits = rest[6:end]
        if (rest[:6] != "pfn=0x" or t[5][:5] != "page=" or not digits.isalnum()
                or digits[:2] in _HEX_PREFIXES):
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
        if same:
            self._memo_size += 1
        else:
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
        try:
            float(time[:-1])
        except ValueError:
            raise _Bad(f"bad timestamp {time[:-1]!r}") from None
        token = t[index + 1]
        if token[-1] != ":":
            raise _Bad(f"bad event name {token!r}")
        kind = _EVENT_TOKENS.get(token)
        if kind is None:
            name = token[:-1]
            self.other_events[name] = self.other_events.get(name, 0) + 1
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
        else:
            event = _page_event(kind, fields, cpu, time, self._gfp)
        self._learn(fields)
        return event


def _check_gfp(flags: str) -> str:
    """``flags`` if every part is a flag name some kernel prints, or hex; else the line is bad
    (a line truncated inside its gfp_flags would otherwise pass: "GFP_KERN")."""
    for part in flags.split("|"):
        if part in GFP_FLAG_NAMES or part in _OLD_GFP_NAMES:
            continue
        if not _GFP_HEX.fullmatch(part):
            raise _Bad(f"bad gfp_flags {flags!r} (unknown flag {part!r})")
    return flags


def _int_field(fields: dict[str, str], key: str, base: int = 10) -> int:
    try:
        return int(fields[key], base)
    except KeyError:
        raise _Bad(f"missing {key}= (truncated line?)") from None
    except ValueError:
        raise _Bad(f"bad {key}={fields[key]!r}") from None


def _ptr(fields: dict[str, str]) -> str:
    try:
        value = fields["ptr"]
    except KeyError:
        raise _Bad("missing ptr= (truncated line?)") from None
    if not _is_pointer(value):
        raise _Bad(f"bad pointer ptr={value!r}")
    return NULL_PTR if value in _NULLS else value


def _is_pointer(value: str) -> bool:
    """A NULL spelling, 0x and hex digits, or 8 or 16 hex digits (hashed %p)."""
    return value in _NULLS or (bool(_HEX_PTR.fullmatch(value)) and (
        value[:2] == "0x" or len(value) in (8, 16)))


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
    if bytes_req < 0 or bytes_alloc < 0:
        raise _Bad("negative size")
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
    if "pfn" in fields:
        # 5.x and later print pfn=0x%lx, 4.x printed pfn=%lu.
        pfn = _int_field(fields, "pfn", 16 if fields["pfn"][:2] == "0x" else 10)
    elif "page" in fields:
        # Kernels before 3.x print only the struct page pointer: it still pairs alloc and free.
        value = fields["page"]
        pfn = 0 if value in _NULLS else int(value, 16) if _HEX_PTR.fullmatch(value) else -2
        if pfn == -2:
            raise _Bad(f"bad page={value!r}")
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


__all__ = ["MAX_MEMO", "TraceFormatError", "TraceParser", "parse_trace"]
