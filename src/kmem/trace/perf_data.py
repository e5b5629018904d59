"""Reading perf.data directly: the kmem events of a ``perf record`` / ``perf kmem record`` file.

No ``perf script`` step: the file's own layout (tools/perf/Documentation/perf.data-file-format.txt)
is read here, and the events come out as the same EventBatches (kmem.trace.events) the text parser
yields for ``perf script`` output of that file, so ``kmem stat`` and ``kmem replay`` give the same
numbers either way.

What is read:
- the file header (``PERFILE2``, little-endian; the pipe header of ``perf record -o -`` too), the
  attrs (``perf_event_attr`` and the sample ids of each event), the feature sections
  HEADER_TRACING_DATA (each event's ``format`` text: field offsets, sizes and the gfp flag table
  of its print fmt are taken from there, never hard-coded) and HEADER_BUILD_ID (to find the
  kernel's symbols);
- the data records: PERF_RECORD_SAMPLE, laid out by the attr's PERF_SAMPLE_* bits (IDENTIFIER,
  IP, TID, TIME, ADDR, ID, STREAM_ID, CPU, PERIOD, CALLCHAIN, RAW; READ, which perf kmem never
  records, is refused), PERF_RECORD_LOST and PERF_RECORD_LOST_SAMPLES (counted, with the CPU and
  time their sample_id trailer gives), PERF_RECORD_FINISHED_ROUND (see ordering); in a pipe, the
  header records HEADER_ATTR and HEADER_TRACING_DATA. Other records are skipped.
- Ordering: perf script and perf kmem deliver samples through perf's ordered-events queue, which
  on each FINISHED_ROUND flushes, in time order (equal times in file order), the events up to the
  largest timestamp seen at the round before. The same is done here, so the event order (and
  with it which of two same-pointer events comes first) is the order perf gives.

Call sites: a sample's raw ``call_site`` is an address; perf prints it through the kernel's
symbols as ``sym+0x<offset>`` (``0x<address>`` when no symbol holds it). The symbols come from a
kallsyms file: the one given, else the copy perf keeps in its build-id cache
(``~/.debug/[kernel.kallsyms]/<build-id>/kallsyms``) for the kernel the file was recorded on, else
/proc/kallsyms when the running kernel has that build id; with none of them call sites stay
addresses. Symbols are chosen as perf chooses among aliases at one address (tools/perf/util/
symbol.c choose_best_symbol). Page events get a call site too, as perf kmem finds it
(builtin-kmem.c find_callsite): the first of the first 16 callchain frames that is not a page
allocator function (a kernel symbol matching ``^_?_?(alloc|get_free|get_zeroed)_pages?``), else
the sample's IP.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import stat
import struct
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kmem._compiled import core
from kmem.errors import InvalidArgumentError, KmemError
from kmem.trace.events import (
    EVENT_KIND,
    EVENT_NAMES,
    KMEM_CACHE_FREE,
    MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_EXTFRAG,
    MM_PAGE_FREE_BATCHED,
    NULL_PTR,
    SLAB_FREE_KINDS,
    WATCH_DROP,
    WATCH_NEXT,
    EventBatch,
    count_kinds,
)
from kmem.trace.lost import LostEvents, LostStretch, LostWatch
from kmem.trace.script_callchains import ALLOC_FUNC as _ALLOC_FUNC, ScriptCallchains
from kmem.trace.source import TraceFileError, stdin_stream

if TYPE_CHECKING:
    from kmem.trace.parse import TraceParser

PERF_MAGIC: Final = b"PERFILE2"
_GZIP_MAGIC: Final = b"\x1f\x8b"
_XZ_MAGIC: Final = b"\xfd7zXZ\x00"
_FILE_HEADER: Final = struct.Struct("<8sQQQQQQQQ32s")  # magic, size, attr_size, 3 sections, bits
_RECORD_HEADER: Final = struct.Struct("<IHH")

# perf_event_header.type values (include/uapi/linux/perf_event.h, tools/perf/util/event.h)
PERF_RECORD_LOST: Final = 2
PERF_RECORD_SAMPLE: Final = 9
PERF_RECORD_LOST_SAMPLES: Final = 13
PERF_RECORD_HEADER_ATTR: Final = 64
PERF_RECORD_HEADER_TRACING_DATA: Final = 66
PERF_RECORD_FINISHED_ROUND: Final = 68
PERF_RECORD_COMPRESSED: Final = 81

# PERF_SAMPLE_* bits
SAMPLE_IP: Final = 1 << 0
SAMPLE_TID: Final = 1 << 1
SAMPLE_TIME: Final = 1 << 2
SAMPLE_ADDR: Final = 1 << 3
SAMPLE_READ: Final = 1 << 4
SAMPLE_CALLCHAIN: Final = 1 << 5
SAMPLE_ID: Final = 1 << 6
SAMPLE_CPU: Final = 1 << 7
SAMPLE_PERIOD: Final = 1 << 8
SAMPLE_STREAM_ID: Final = 1 << 9
SAMPLE_RAW: Final = 1 << 10
SAMPLE_IDENTIFIER: Final = 1 << 16

PERF_TYPE_TRACEPOINT: Final = 2
HEADER_TRACING_DATA: Final = 1
HEADER_BUILD_ID: Final = 2
PERF_CONTEXT_MAX: Final = (1 << 64) - 4095  # callchain entries at or above: context markers
_ATTR_SAMPLE_ID_ALL: Final = 1 << 18  # bit of perf_event_attr's flags word
_TRACING_MAGIC: Final = b"\x17\x08\x44tracing"
CALLCHAIN_DEPTH: Final = 16  # perf kmem resolves this many frames (find_callsite)
_CHAIN_KEY: Final = 24  # callchain entries a page call site is memoised by
_RAW_HEAD: Final = struct.Struct("<IH")  # PERF_SAMPLE_RAW's size, then common_type
_UNSEEN: Final = object()
# What reading a damaged file can raise beyond the checks: turned into one PerfDataError line.
_DAMAGE: Final = (struct.error, IndexError, ValueError, OverflowError, KeyError,
                  UnicodeDecodeError)
BATCH: Final = 2048


class PerfDataError(TraceFileError):
    """A perf.data file that cannot be read (truncated, or a layout kmem does not read)."""


def is_perf_data(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts a perf.data file or pipe."""
    return head[:8] == PERF_MAGIC


# -- tracepoint formats --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FormatField:
    """One field of a tracepoint's format: where it lies in the raw payload."""

    name: str
    offset: int
    size: int
    signed: bool
    data_loc: bool  # __data_loc: a u32 (length << 16 | offset) of a string elsewhere in the record

    def read(self, data: bytes | memoryview) -> int:
        """The field's number (little-endian) in ``data``."""
        return int.from_bytes(data[self.offset:self.offset + self.size], "little",
                              signed=self.signed)

    def text(self, data: bytes | memoryview) -> str:
        """A __data_loc string field: the NUL-terminated text it points at."""
        loc = int.from_bytes(data[self.offset:self.offset + 4], "little")
        start, length = loc & 0xFFFF, loc >> 16
        raw = bytes(data[start:start + length])
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(slots=True)
class EventFormat:
    """A tracepoint's ``format`` text, parsed: its id, name, system, fields and gfp flag table."""

    system: str
    name: str
    id: int
    fields: dict[str, FormatField]
    gfp_table: tuple[tuple[int, str], ...] | None  # __print_flags(REC->gfp_flags, ...) entries

    def gfp_text(self, value: int) -> str:
        """``gfp_flags`` as the print fmt prints it (libtraceevent's __print_flags rules)."""
        if value == 0:
            return "none"
        if self.gfp_table is None:
            return f"0x{value:x}"
        names = []
        for flag, name in self.gfp_table:
            if flag and value & flag == flag:
                names.append(name)
                value &= ~flag
        if value:
            names.append(f"0x{value:x}")
        return "|".join(names)


_FIELD_LINE: Final = re.compile(
    r"\s*field:(?P<decl>[^;]*);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);"
    r"(?:\s*signed:(?P<signed>\d+);)?")
_FLAG_ENTRY: Final = re.compile(r"\{([^{}]*?),\s*\"([^\"]+)\"\s*\}")
_CASTS: Final = re.compile(r"\(\s*(?:unsigned\s+long(?:\s+long)?|gfp_t|u32|u64|int|long)\s*\)")
_INT_SUFFIX: Final = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU]?)\b")


def parse_event_format(text: str, system: str = "") -> EventFormat:
    """Parse a tracefs ``format`` file (as perf stores it in HEADER_TRACING_DATA)."""
    name = ""
    event_id = -1
    fields: dict[str, FormatField] = {}
    print_fmt = ""
    for line in text.splitlines():
        if line.startswith("name:"):
            name = line[5:].strip()
        elif line.startswith("ID:"):
            event_id = int(line[3:].strip())
        elif line.startswith("print fmt:"):
            print_fmt = line[10:]
        else:
            match = _FIELD_LINE.match(line)
            if match:
                decl = match["decl"].strip()
                field_name = re.sub(r"\[.*\]$", "", decl.split()[-1])
                fields[field_name] = FormatField(
                    field_name, int(match["offset"]), int(match["size"]),
                    match["signed"] == "1", decl.startswith("__data_loc"))
    if not name or event_id < 0:
        raise PerfDataError(f"unreadable tracepoint format: {text[:80]!r}")
    return EventFormat(system, name, event_id, fields, _gfp_table(print_fmt))


def _gfp_table(print_fmt: str) -> tuple[tuple[int, str], ...] | None:
    """The (value, name) entries of the print fmt's __print_flags over gfp_flags, values
    evaluated from their C expressions; None if it has none (or one kmem cannot evaluate)."""
    start = print_fmt.find("__print_flags(REC->gfp_flags")
    if start < 0:
        return None
    table = []
    for match in _FLAG_ENTRY.finditer(print_fmt, start):
        value = _c_constant(match[1])
        if value is None:
            return None
        table.append((value, match[2]))
    return tuple(table) or None


def _c_constant(expression: str) -> int | None:
    """The value of a C integer constant expression of the shape trace formats print
    (casts, 1UL, <<, |, &, ~): evaluated on the syntax tree, never executed."""
    import ast  # (here: only a perf.data's tracing formats need it, and ast costs ~2.5 ms)

    text = _INT_SUFFIX.sub(r"\1", _CASTS.sub(" ", expression))
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return None
    mask = (1 << 64) - 1

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            return ~value(node.operand) & mask
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.BitOr):
                return left | right
            if isinstance(node.op, ast.BitAnd):
                return left & right
            if isinstance(node.op, ast.LShift):
                return (left << right) & mask
            if isinstance(node.op, ast.RShift):
                return left >> right
        raise ValueError(ast.dump(node))

    try:
        return value(tree.body)
    except ValueError:
        return None


@dataclass(slots=True)
class TracingData:
    """HEADER_TRACING_DATA: the tracepoint formats by id."""

    long_size: int
    page_size: int
    formats: dict[int, EventFormat]


def parse_tracing_data(data: bytes | memoryview) -> TracingData:
    """Read perf's tracing data (tools/perf/util/trace-event-read.c's layout, version 0.5/0.6)."""
    view = memoryview(data)
    if bytes(view[:10]) != _TRACING_MAGIC:
        raise PerfDataError("perf.data: bad tracing data (no 'tracing' tag)")
    pos = 10
    end = bytes(view[pos:pos + 16]).find(b"\0")
    if end < 0:
        raise PerfDataError("perf.data: bad tracing data version")
    pos += end + 1
    if view[pos]:
        raise PerfDataError("perf.data recorded on a big-endian machine: not supported")
    long_size = view[pos + 1]
    page_size = int.from_bytes(view[pos + 2:pos + 6], "little")
    pos += 6

    def u32() -> int:
        nonlocal pos
        value = int.from_bytes(view[pos:pos + 4], "little")
        pos += 4
        return value

    def u64() -> int:
        nonlocal pos
        value = int.from_bytes(view[pos:pos + 8], "little")
        pos += 8
        return value

    def cstring() -> str:
        nonlocal pos
        stop = bytes(view[pos:pos + 4096]).find(b"\0")
        if stop < 0:
            raise PerfDataError("perf.data: bad tracing data (unterminated name)")
        text = bytes(view[pos:pos + stop]).decode("utf-8", "replace")
        pos += stop + 1
        return text

    def blob(size: int) -> str:
        nonlocal pos
        if pos + size > len(view):
            raise PerfDataError("perf.data: tracing data truncated")
        text = bytes(view[pos:pos + size]).decode("utf-8", "replace")
        pos += size
        return text

    for tag in ("header_page", "header_event"):
        if cstring() != tag:
            raise PerfDataError(f"perf.data: bad tracing data (no {tag})")
        blob(u64())
    for _ in range(u32()):  # ftrace's own formats
        blob(u64())
    formats: dict[int, EventFormat] = {}
    for _ in range(u32()):
        system = cstring()
        for _ in range(u32()):
            event = parse_event_format(blob(u64()), system)
            formats[event.id] = event
    # (kallsyms, ftrace_printk and saved cmdlines follow: kmem needs none of them)
    return TracingData(long_size, page_size, formats)


# -- kernel symbols ------------------------------------------------------------------------

def _underscores(name: bytes) -> int:
    return len(name) - len(name.lstrip(b"_"))


def _better(name: bytes, kind: bytes, old_name: bytes, old_kind: bytes) -> bool:
    """Whether (name, kind) wins over the symbol already at its address (perf's rules:
    non-weak, then global, then fewer leading underscores, then the longer name, in bytes as
    perf's strlen counts)."""
    weak, old_weak = kind in b"Ww", old_kind in b"Ww"
    if weak != old_weak:
        return old_weak
    upper, old_upper = kind.isupper() and not weak, old_kind.isupper() and not old_weak
    if upper != old_upper:
        return upper
    if _underscores(name) != _underscores(old_name):
        return _underscores(name) < _underscores(old_name)
    return len(name) > len(old_name)


def _symbol_table(data: bytes) -> tuple[list[int], list[str]]:
    """The symbols of a kallsyms text: their addresses (ascending, one per address) and the
    name perf keeps at each. The reference of csrc/perf_data.c kallsyms_table: lines split
    at \\n, \\r and \\r\\n, fields at ASCII whitespace; a line of fewer than three fields, of
    another type than T/W/D/B (either case), or whose address is no u64 is skipped."""
    best: dict[int, tuple[bytes, bytes]] = {}  # address -> (name, type)
    for line in data.splitlines():
        parts = line.split()
        if len(parts) < 3 or len(parts[1]) != 1 or parts[1] not in b"TtWwDdBb":
            continue
        try:
            address = int(parts[0], 16)
        except ValueError:
            continue
        if not 0 <= address < 1 << 64:
            continue
        name, kind = parts[2], parts[1]
        old = best.get(address)
        if old is None or _better(name, kind, *old):
            best[address] = (name, kind)
    starts = sorted(best)
    return starts, [best[address][0].decode("utf-8", "replace") for address in starts]


class KernelSymbols:
    """Addresses to ``sym+0x<offset>`` with a kallsyms text, as perf resolves kernel addresses:
    text and data symbols (types T/W/D/B, either case), each ending where the next begins; of
    several at one address the one perf's choose_best_symbol keeps.

    The table is read by the compiled core when it is built (csrc/perf_data.c kallsyms_table:
    names stay bytes of the text until one is asked for), else by _symbol_table;
    ``compiled=False`` chooses the latter. Whether a symbol is a page allocator function is
    decided when first asked (``_alloc``: 0 not yet, 1 no, 2 yes), for the few symbols call
    chains meet: the compiled sample loop reads ``_starts`` and ``_alloc`` and leaves a symbol
    not yet decided to PerfData's Python loop."""

    def __init__(self, kallsyms: str | bytes, *, compiled: bool = True) -> None:
        data = (kallsyms.encode("utf-8", "surrogatepass") if isinstance(kallsyms, str)
                else bytes(kallsyms))
        table = (core.kallsyms_table(data) if compiled and core is not None
                 else NotImplemented)
        self._starts = array("Q")
        self._names: list[str] | None = None
        self._data = data
        self._spans = array("Q")  # (offset, length) of each name in _data: the compiled table
        if table is NotImplemented:
            starts, self._names = _symbol_table(data)
            self._starts.extend(starts)
        else:
            self._starts.frombytes(table[0])
            self._spans.frombytes(table[1])
        self._alloc = bytearray(len(self._starts))

    def symbol_name(self, index: int) -> str:
        """The name of the ``index``-th symbol (by address)."""
        if self._names is not None:
            return self._names[index]
        offset, length = self._spans[2 * index], self._spans[2 * index + 1]
        return self._data[offset:offset + length].decode("utf-8", "replace")

    def table(self) -> tuple[list[int], list[str]]:
        """Every symbol's address and name, ascending (what either reading gives alike)."""
        return list(self._starts), [self.symbol_name(i) for i in range(len(self._starts))]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KernelSymbols:
        """Read a kallsyms file (plain, gzip or xz)."""
        import lzma
        import zlib

        from kmem.trace.source import open_trace

        plain = _plain_ascii_text(path)
        if plain is not None:
            return cls(plain)
        try:
            with open_trace(path) as lines:
                return cls(lines.read())
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as error:
            # (a damaged gzip or xz file: its error has no strerror, or is no OSError at all)
            reason = getattr(error, "strerror", None) or str(error)
            raise TraceFileError(f"cannot read kallsyms {os.fspath(path)!r}: "
                                 f"{reason}") from error

    def _index(self, address: int) -> int:
        from bisect import bisect_right

        index = bisect_right(self._starts, address) - 1
        if index < 0 or index + 1 >= len(self._starts):
            return -1  # before the first symbol, or past the last one's (unknown) end
        return index

    def name(self, address: int) -> str:
        """``sym+0x<offset>`` (libtraceevent's %pS through perf's resolver), else ``0x<addr>``."""
        index = self._index(address)
        if index < 0:
            return f"0x{address:x}"
        return f"{self.symbol_name(index)}+0x{address - self._starts[index]:x}"

    def is_alloc_func(self, address: int) -> bool:
        """Whether ``address`` lies in a page allocator function (perf kmem's alloc_func_list)."""
        index = self._index(address)
        if index < 0:
            return False
        known = self._alloc[index]
        if not known:
            known = self._alloc[index] = 2 if _ALLOC_FUNC.match(self.symbol_name(index)) else 1
        return known == 2


def _plain_ascii_text(path: str | os.PathLike[str]) -> bytes | None:
    """The bytes of ``path`` when reading it as trace text (open_trace) would give the same
    characters back, else None: a plain ASCII file (no gzip or xz magic, nothing to decode
    or replace, no BOM) that is no binary file and has no line open_trace would cut. (A
    kallsyms of a few MB: decoded and encoded again, then split, it took 5 ms more.)"""
    from kmem.trace.source import MAX_LINE_BYTES, describe_binary

    if os.fspath(path) == "-":
        return None  # (standard input: open_trace's)
    try:
        with open(path, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None  # (a pipe's bytes can be read only once: open_trace's)
            data = file.read()
    except OSError:
        return None  # (open_trace says why)
    if not data.isascii() or describe_binary(data[:512]) is not None:
        return None
    # A line longer than MAX_LINE_BYTES holds a stretch of half that with no newline, which
    # one of these aligned stretches then lies wholly inside.
    step = MAX_LINE_BYTES // 2
    for start in range(0, len(data) - step + 1, step):
        if data.find(b"\n", start, start + step) < 0:
            return None
    return data


def _kernel_build_id(view: memoryview, offset: int, size: int) -> str | None:
    """The build id HEADER_BUILD_ID gives for [kernel.kallsyms], as hex."""
    pos, end = offset, offset + size
    while pos + 8 <= end:
        _, misc, length = _RECORD_HEADER.unpack_from(view, pos)
        if length < 36:
            return None
        raw_id = bytes(view[pos + 12:pos + 32])
        id_size = view[pos + 32] if misc & (1 << 15) else 20
        name = bytes(view[pos + 36:pos + length]).split(b"\0", 1)[0]
        if name == b"[kernel.kallsyms]":
            return raw_id[:id_size].hex()
        pos += length
    return None


def _running_build_id() -> str | None:
    """The running kernel's build id (an ELF note of /sys/kernel/notes)."""
    try:
        notes = Path("/sys/kernel/notes").read_bytes()
    except OSError:
        return None
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from("<III", notes, pos)
        name_end = pos + 12 + ((namesz + 3) & ~3)
        if kind == 3 and notes[pos + 12:pos + 12 + namesz].rstrip(b"\0") == b"GNU":
            return notes[name_end:name_end + descsz].hex()
        pos = name_end + ((descsz + 3) & ~3)
    return None


def find_kallsyms(build_id: str | None) -> Path | None:
    """The kallsyms of the kernel with ``build_id``: perf's build-id cache, else /proc/kallsyms
    when the running kernel is that kernel."""
    if build_id is None:
        return None
    home = Path(os.environ.get("PERF_BUILDID_DIR", Path.home() / ".debug"))
    cached = home / "[kernel.kallsyms]" / build_id / "kallsyms"
    if cached.is_file():
        return cached
    if _running_build_id() == build_id and Path("/proc/kallsyms").is_file():
        return Path("/proc/kallsyms")
    return None


# -- the file ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LostRecord:
    """A PERF_RECORD_LOST (events the kernel dropped: the ring buffer was full) or
    PERF_RECORD_LOST_SAMPLES (samples dropped before the buffer), where and when."""

    kind: str  # "LOST" or "LOST_SAMPLES"
    count: int
    cpu: int  # -1 if the record does not say
    time: int  # ns; -1 if the record does not say
    event: str  # the event whose samples were lost (LOST_SAMPLES), else ""


@dataclass(slots=True)
class _Attr:
    sample_type: int
    sample_id_all: bool
    config: int
    type: int
    ids: list[int] = field(default_factory=list)


_FIXED_FIELDS: Final = (  # the fixed part of a sample, in order: (bit, bytes)
    (SAMPLE_IDENTIFIER, 8), (SAMPLE_IP, 8), (SAMPLE_TID, 8), (SAMPLE_TIME, 8),
    (SAMPLE_ADDR, 8), (SAMPLE_ID, 8), (SAMPLE_STREAM_ID, 8), (SAMPLE_CPU, 8),
    (SAMPLE_PERIOD, 8),
)
_SAMPLE_ID_FIELDS: Final = (  # the sample_id trailer of other records, in order
    (SAMPLE_TID, 8), (SAMPLE_TIME, 8), (SAMPLE_ID, 8), (SAMPLE_STREAM_ID, 8), (SAMPLE_CPU, 8),
    (SAMPLE_IDENTIFIER, 8),
)


class _Layout:
    """Where a sample of one sample_type keeps what kmem reads."""

    def __init__(self, sample_type: int) -> None:
        if sample_type & SAMPLE_READ:
            raise PerfDataError("perf.data samples with PERF_SAMPLE_READ: not supported")
        if not sample_type & SAMPLE_RAW:
            raise PerfDataError("perf.data samples without raw tracepoint data (PERF_SAMPLE_RAW):"
                                " record with perf kmem record")
        offsets: dict[int, int] = {}
        pos = 8  # after the record header
        for bit, size in _FIXED_FIELDS:
            if sample_type & bit:
                offsets[bit] = pos
                pos += size
        self.ip = offsets.get(SAMPLE_IP, -1)
        self.time = offsets.get(SAMPLE_TIME, -1)
        self.cpu = offsets.get(SAMPLE_CPU, -1)
        self.id = offsets.get(SAMPLE_IDENTIFIER, offsets.get(SAMPLE_ID, -1))
        self.fixed_end = pos
        self.callchain = bool(sample_type & SAMPLE_CALLCHAIN)
        trailer = [(bit, size) for bit, size in _SAMPLE_ID_FIELDS if sample_type & bit]
        self.trailer_size = sum(size for _, size in trailer)
        self.trailer: dict[int, int] = {}
        at = 0
        for bit, size in trailer:
            self.trailer[bit] = at
            at += size
        # what the compiled sample loop reads of it (csrc/perf_data.c)
        self.compiled = (self.time, self.cpu, self.ip, self.fixed_end, self.callchain)


class _Decoder:
    """Turns one kmem tracepoint's raw payload into an EventBatch's key and tail.

    The fields after the pointer (or pfn) are memoised as a whole by their bytes: a recording
    repeats a few hundred distinct (size, gfp, node, name) tails."""

    def __init__(self, kind: int, fmt: EventFormat) -> None:
        self.kind = kind
        self.fmt = fmt
        self.memo: dict[bytes, tuple[Any, ...]] = {}
        fields = fmt.fields
        self.slab = kind <= KMEM_CACHE_FREE
        head = ("call_site", "ptr") if self.slab else ("pfn",)
        for name in head:
            if name not in fields:
                raise PerfDataError(f"tracepoint {fmt.system}:{fmt.name} has no {name} field")
        self.call_site = fields["call_site"] if self.slab else None
        self.key = fields["ptr" if self.slab else "pfn"]
        rest = [f for n, f in fields.items() if not n.startswith("common_") and n not in head]
        self.tail_start = max(fields[n].offset + fields[n].size for n in head)
        if any(f.offset < self.tail_start for f in rest):
            self.tail_start = -1  # the tail is not one stretch of bytes: no memo
        self.rest = {f.name: f for f in rest}
        # the hot path's reading of the head: unsigned 8-byte fields at fixed offsets
        self.fast = (self.key.size == 8 and not self.key.signed and self.tail_start >= 0
                     and (self.call_site is None
                          or (self.call_site.size == 8 and not self.call_site.signed)))
        self.key_offset = self.key.offset
        self.site_offset = self.call_site.offset if self.call_site is not None else -1
        # what the compiled sample loop reads of a fast decoder (csrc/perf_data.c)
        self.compiled = (kind, int(self.slab), self.key_offset, self.site_offset,
                         self.tail_start, self.memo)

    def tail(self, data: bytes | memoryview) -> tuple[Any, ...]:
        """The EventBatch tail of ``data``: slab NAME..MIGRATETYPE, page (gfp, order, mt)."""
        if self.tail_start >= 0:
            memo_key = bytes(data[self.tail_start:])
            tail = self.memo.get(memo_key)
            if tail is None:
                tail = self.memo[memo_key] = self._tail(data)
            return tail
        return self._tail(data)

    def _tail(self, data: bytes | memoryview) -> tuple[Any, ...]:
        rest = self.rest
        kind = self.kind

        def number(name: str, default: int) -> int:
            found = rest.get(name)
            return default if found is None else found.read(data)

        if self.slab:
            name_field = rest.get("name")
            name = "" if name_field is None else (
                name_field.text(data) if name_field.data_loc
                else bytes(data[name_field.offset:name_field.offset + name_field.size])
                .split(b"\0", 1)[0].decode("utf-8", "replace"))
            if kind in SLAB_FREE_KINDS:
                return (name, 0, 0, "", -1, -1, -1, -1)
            gfp = self.fmt.gfp_text(number("gfp_flags", 0))
            return (name, number("bytes_req", 0), number("bytes_alloc", 0), gfp,
                    number("node", -1), -1, -1, -1)
        if kind == MM_PAGE_ALLOC_EXTFRAG:
            return ("", number("alloc_order", 0), number("alloc_migratetype", -1))
        gfp = self.fmt.gfp_text(number("gfp_flags", 0)) if kind == MM_PAGE_ALLOC else ""
        order = 0 if kind == MM_PAGE_FREE_BATCHED else number("order", 0)
        return (gfp, order, number("migratetype", -1))

    def key_of(self, data: bytes | memoryview) -> Any:
        value = self.key.read(data)
        if self.slab:
            return f"0x{value:x}" if value else NULL_PTR
        if value == (1 << 64) - 1 or (value == 0 and self.kind == MM_PAGE_ALLOC):
            return -1  # a failed allocation (perf prints pfn=0x0)
        return value


# A decoded record on its way through the ordering queue: (time, cpu, kind, call site, key,
# tail); kind -1 for a LOST record. (A plain tuple: one is built per event.)
_Sample = tuple[int, int, int, str, Any, tuple[Any, ...]]
_TIME_OF: Final = itemgetter(0)


class PerfData:
    """A perf.data file (or pipe capture) opened for its kmem events.

    >>> data = PerfData.open("perf.data")                        # doctest: +SKIP
    >>> for batch in data.batches(): ...                         # doctest: +SKIP
    >>> data.events["kmalloc"], data.lost_events                 # doctest: +SKIP

    Counters (valid once batches() has run): ``samples`` (kmem and other samples read),
    ``events`` (kmem events by name), ``other_events`` (other tracepoints by name), ``lost``
    (every LOST/LOST_SAMPLES record), ``lost_events`` (their sum). ``lines`` and ``bad_lines``
    mirror the text parser's counters (samples; always 0) so the CLI reports either alike.
    """

    def __init__(self, buffer: bytes | mmap.mmap, *, kallsyms: KernelSymbols | None = None,
                 kallsyms_path: str | os.PathLike[str] | None = None,
                 name: str = "perf.data", raw_ip: bool = False,
                 time_window: tuple[int, int] | None = None, times: bool = True) -> None:
        """``raw_ip``: slab call sites as addresses (perf kmem --raw-ip; page call sites are
        still found through the symbols). ``time_window``: (start, stop) in ns, 0 for open,
        keeping the samples perf kmem --time keeps (inclusive; samples of time 0 always).
        ``times=False``: the batches' TIME column left empty (each ""), for a reader that
        never looks at it (kmem stat: the texts of a 500,000-event file took 10 ms)."""
        self._times = times
        self._buffer = buffer
        self._view = memoryview(buffer)
        self.name = name
        self.attrs: list[_Attr] = []
        self.tracing: TracingData | None = None
        self.build_id: str | None = None
        self.pipe = False
        self.samples = 0
        self.lines = 0
        self.bad_lines = 0
        self.bad_examples: list[Exception] = []
        self.lost: list[LostRecord] = []
        self.other_events: dict[str, int] = {}
        self._counts = [0] * len(EVENT_NAMES)
        self._data_start = self._data_end = 0
        self._next_record = 0  # (see _records)
        try:
            self._read_header()
        except PerfDataError:
            raise
        except _DAMAGE as error:
            raise PerfDataError(f"{name}: damaged perf.data header ({error})") from error
        if kallsyms is None:
            path = kallsyms_path if kallsyms_path is not None else find_kallsyms(self.build_id)
            kallsyms = KernelSymbols.from_file(path) if path is not None else None
        self.symbols = kallsyms
        self.raw_ip = raw_ip
        self.time_window = time_window
        self._site_names: dict[int, str] = {}
        self._page_site_names: dict[int, str] = {}
        self._site_addresses: dict[str, int] = {}
        self._chain_sites: dict[bytes, str] = {}  # a call chain's first frames -> page site
        # The compiled sample loop and batch builder (csrc/perf_data.c), when the core is
        # built: None on the pure-Python core (KMEM_PURE=1), whose loop is the reference.
        self._compiled_loop: Callable[..., tuple[int, int, int]] | None = (
            None if core is None else core.perf_samples)
        self._compiled_batch: Callable[[list[_Sample], bool], Any] | None = (
            None if core is None else core.perf_batch)
        self._compiled_cache = None if core is None else core.perf_cache()  # (its memo slots)

    @classmethod
    def open(cls, path: str | os.PathLike[str], **options: Any) -> PerfData:
        """Open ``path``, mapped (not read) when it is a regular file."""
        try:
            with open(path, "rb") as raw:
                file: Any = raw
                if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
                    # a pipe (perf.data <(xzcat x.data.xz)): read once, whole (perf's records
                    # need random access)
                    file = io.BytesIO(raw.read())
                head = file.read(6)
                file.seek(0)
                if head.startswith((_GZIP_MAGIC, _XZ_MAGIC)):
                    buffer: bytes | mmap.mmap = _decompressed(file, os.fspath(path))
                else:
                    try:
                        buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
                    except (ValueError, OSError):
                        buffer = file.read()  # a pipe or an empty file
        except OSError as error:
            raise TraceFileError(f"cannot open trace {os.fspath(path)!r}: "
                                 f"{error.strerror or error}") from error
        return cls(buffer, name=os.fspath(path), **options)

    @property
    def events(self) -> dict[str, int]:
        return dict(zip(EVENT_NAMES, self._counts, strict=True))

    @property
    def lost_events(self) -> int:
        """Events lost: the LOST records' sum (LOST_SAMPLES count the same losses again, per
        event), or the LOST_SAMPLES' sum when there are no LOST records."""
        return self.lost_events_report().total

    @property
    def has_kmem_events(self) -> bool:
        """Whether the file's attrs include any kmem tracepoint."""
        formats = self.tracing.formats if self.tracing else {}
        return any(attr.type == PERF_TYPE_TRACEPOINT and attr.config in formats
                   and formats[attr.config].name in EVENT_KIND for attr in self.attrs)

    # -- header --------------------------------------------------------------------------

    def _read_header(self) -> None:
        view = self._view
        if len(view) < 16 or bytes(view[:8]) != PERF_MAGIC:
            raise PerfDataError(f"{self.name}: not a perf.data file")
        header_size = int.from_bytes(view[8:16], "little")
        if header_size == 16:  # a pipe: header records come first in the stream
            self.pipe = True
            self._data_start, self._data_end = 16, len(view)
            return
        if len(view) < _FILE_HEADER.size:
            raise PerfDataError(f"{self.name}: perf.data header truncated")
        (_, _, attr_size, attrs_offset, attrs_size, data_offset, data_size, _, _,
         features) = _FILE_HEADER.unpack_from(view, 0)
        if data_offset + data_size > len(view) or attrs_offset + attrs_size > len(view):
            raise PerfDataError(f"{self.name}: perf.data truncated (the data section ends at"
                                f" {data_offset + data_size}, the file at {len(view)})")
        if attr_size < 16:
            raise PerfDataError(f"{self.name}: bad attr size {attr_size}")
        for pos in range(attrs_offset, attrs_offset + attrs_size - attr_size + 1, attr_size):
            attr = self._attr(view, pos, attr_size - 16)
            ids_offset, ids_size = struct.unpack_from("<QQ", view, pos + attr_size - 16)
            if ids_offset + ids_size > len(view):
                raise PerfDataError(f"{self.name}: perf.data truncated (attr ids)")
            attr.ids = list(struct.unpack_from(f"<{ids_size // 8}Q", view, ids_offset))
            self.attrs.append(attr)
        self._data_start, self._data_end = data_offset, data_offset + data_size
        bits = int.from_bytes(features, "little")
        pos = data_offset + data_size  # one section per set feature bit, in bit order
        for bit in range(256):
            if not bits >> bit & 1:
                continue
            offset, size = struct.unpack_from("<QQ", view, pos)
            pos += 16
            if offset + size > len(view):
                raise PerfDataError(f"{self.name}: perf.data truncated (feature {bit})")
            if bit == HEADER_TRACING_DATA:
                self.tracing = parse_tracing_data(view[offset:offset + size])
            elif bit == HEADER_BUILD_ID:
                self.build_id = _kernel_build_id(view, offset, size)

    @staticmethod
    def _attr(view: memoryview, pos: int, size: int) -> _Attr:
        if size < 48:
            raise PerfDataError(f"perf_event_attr of {size} bytes: too short")
        kind, _, config, _, sample_type, _, flags = struct.unpack_from("<IIQQQQQ", view, pos)
        return _Attr(sample_type, bool(flags & _ATTR_SAMPLE_ID_ALL), config, kind)

    # -- records -------------------------------------------------------------------------

    def _layouts(self) -> tuple[dict[int, _Layout], _Layout | None]:
        """A sample's layout by its id, and the one layout when all attrs share one."""
        layouts = {attr.sample_type: _Layout(attr.sample_type) for attr in self.attrs
                   if attr.type == PERF_TYPE_TRACEPOINT or attr.sample_type & SAMPLE_RAW}
        by_id = {i: layouts[attr.sample_type] for attr in self.attrs
                 if attr.sample_type in layouts for i in attr.ids}
        only = next(iter(layouts.values())) if len(layouts) == 1 else None
        return by_id, only

    def _records(self) -> Iterator[tuple[int, int, int, int]]:
        """(type, misc, offset, size) of each data record; pipe header records are read here.
        ``self._next_record`` is where the next record starts: the compiled sample loop moves
        it past the samples it read between two records yielded here."""
        view = self._view
        end = self._data_end
        self._next_record = self._data_start
        unpack = _RECORD_HEADER.unpack_from
        while (pos := self._next_record) + 8 <= end:
            kind, misc, size = unpack(view, pos)
            if size < 8:
                raise PerfDataError(f"{self.name}: bad record at byte {pos} (size {size})")
            if pos + size > end:
                raise PerfDataError(f"{self.name}: perf.data truncated inside a record at"
                                    f" byte {pos}")
            if kind == PERF_RECORD_HEADER_TRACING_DATA:  # pipe: the data follows the record
                length = int.from_bytes(view[pos + 8:pos + 12], "little")
                self.tracing = parse_tracing_data(view[pos + size:pos + size + length])
                self._next_record = pos + size + ((length + 7) & ~7)
                continue
            if kind == PERF_RECORD_HEADER_ATTR:
                attr_size = int.from_bytes(view[pos + 12:pos + 16], "little") or 64
                attr = self._attr(view, pos + 8, attr_size)
                count = (size - 8 - attr_size) // 8
                attr.ids = list(struct.unpack_from(f"<{count}Q", view, pos + 8 + attr_size))
                self.attrs.append(attr)
            elif kind == PERF_RECORD_COMPRESSED:
                raise PerfDataError(f"{self.name}: compressed perf.data (perf record -z): run"
                                    " perf inject -i FILE -o PLAIN first")
            self._next_record = pos + size
            yield kind, misc, pos, size
        if pos != end and not self.pipe:
            raise PerfDataError(f"{self.name}: perf.data truncated (a record header cut at"
                                f" byte {pos})")

    def batches(self, size: int = BATCH) -> Iterator[EventBatch]:
        """The kmem events of the file in perf's order, as EventBatches of up to ``size``;
        a damaged file raises PerfDataError (after the batches before the damage)."""
        try:
            yield from self._batches(size)
        except PerfDataError:
            raise
        except _DAMAGE as error:
            raise PerfDataError(f"{self.name}: damaged perf.data ({type(error).__name__}:"
                                f" {error})") from error

    def _batches(self, size: int) -> Iterator[EventBatch]:
        pending: list[_Sample] = []
        out: list[_Sample] = []
        next_flush = -1  # flush up to this time at the next round (perf's ordered events)
        max_time = -1
        decoders: dict[int, _Decoder | None] = {}
        by_id: dict[int, _Layout] = {}
        only: _Layout | None = None
        ready = False
        id_at = -1
        view = self._view
        unpack_q = struct.Struct("<Q").unpack_from
        unpack_i = struct.Struct("<I").unpack_from
        compiled = self._compiled_loop
        window = self.time_window or (0, 0)
        if not all(0 <= bound < 1 << 64 for bound in window):
            compiled = None  # (bounds the compiled loop cannot hold: the Python loop's)
        decoders_seen = 0
        fast: dict[int, tuple[Any, ...]] = {}
        layouts: dict[int, tuple[int, int, int, int, bool]] | None = None
        for kind, _misc, pos, length in self._records():
            if kind == PERF_RECORD_SAMPLE:
                if layouts is not None and compiled is not None:
                    # (the compiled loop from this record on: else every sample after a
                    # FINISHED_ROUND was read by _sample, a thousand times a recording)
                    self._next_record = pos
                    max_time = self._compiled_samples(
                        compiled, -1 if only is not None else id_at, layouts, fast, pending,
                        max_time)
                    if self._next_record != pos:
                        continue
                    self._next_record = pos + length  # (it left this one to _sample)
                if not ready:
                    by_id, only = self._layouts()
                    ready = True
                layout = only
                if layout is None:
                    if id_at < 0:
                        id_at = by_id_offset(by_id) if by_id else 0
                    layout = by_id.get(unpack_q(view, pos + id_at)[0]) if by_id else None
                    if layout is None:
                        continue
                sample = self._sample(view, pos, length, layout, decoders, unpack_q, unpack_i)
                if sample is not None:
                    pending.append(sample)
                    if sample[0] > max_time:
                        max_time = sample[0]
                if compiled is not None:
                    if len(decoders) != decoders_seen:  # (a new event: its fast decoder)
                        decoders_seen = len(decoders)
                        fast = {event_id: decoder.compiled for event_id, decoder
                                in decoders.items() if decoder is not None and decoder.fast}
                    if layouts is None:
                        layouts = ({0: only.compiled} if only is not None else
                                   {sample_id: by_id[sample_id].compiled for sample_id in by_id})
                    max_time = self._compiled_samples(
                        compiled, -1 if only is not None else id_at, layouts, fast, pending,
                        max_time)
            elif kind in (PERF_RECORD_LOST, PERF_RECORD_LOST_SAMPLES):
                if not ready:
                    by_id, only = self._layouts()
                    ready = True
                lost = self._lost(view, kind, pos, length, only)
                self.lost.append(lost)
                pending.append((lost.time, lost.cpu, -1, "", lost.count, ()))
            elif kind == PERF_RECORD_FINISHED_ROUND:
                if next_flush >= 0:
                    pending.sort(key=_TIME_OF)
                    cut = _first_after(pending, next_flush)
                    out.extend(pending[:cut])
                    del pending[:cut]
                next_flush = max_time
                while len(out) >= size:
                    yield self._batch(out[:size])
                    del out[:size]
        pending.sort(key=_TIME_OF)
        out.extend(pending)
        for start in range(0, len(out), size):
            yield self._batch(out[start:start + size])

    def _compiled_samples(self, compiled: Callable[..., tuple[int, int, int]], id_at: int,
                          layouts: dict[int, tuple[int, int, int, int, bool]],
                          fast: dict[int, tuple[Any, ...]], pending: list[_Sample],
                          max_time: int) -> int:
        """The samples after the current record, read by the compiled loop (csrc/perf_data.c)
        up to the first it leaves to _sample; the largest time queued."""
        symbols = self.symbols
        next_record, samples, max_time = compiled(
            self._view, self._next_record, self._data_end, id_at, layouts, fast,
            self._site_names, self._page_site_names,
            None if symbols is None else symbols._starts,
            None if symbols is None else symbols._alloc,
            self.time_window or (0, 0), pending, max_time, self._compiled_cache)
        self._next_record = next_record
        self.samples += samples
        self.lines += samples
        return max_time

    def _sample(self, view: memoryview, pos: int, length: int, layout: _Layout,
                decoders: dict[int, _Decoder | None], unpack_q: Any, unpack_i: Any
                ) -> _Sample | None:
        """One sample record at ``pos``: its event as an ordering-queue tuple, or None (not a
        kmem event, or outside the time window). The hot path: struct reads at the offsets
        the layout and the event's format give, the tail memoised by its bytes."""
        self.samples += 1
        self.lines += 1
        time = unpack_q(view, pos + layout.time)[0] if layout.time >= 0 else 0
        window = self.time_window
        if window is not None and time and (
                (window[0] and time < window[0]) or (window[1] and time > window[1])):
            return None  # (perf_time__skip_sample)
        cpu = unpack_i(view, pos + layout.cpu)[0] if layout.cpu >= 0 else -1
        chain_at = -1
        raw_at = pos + layout.fixed_end
        if layout.callchain:
            chain_at = raw_at
            raw_at += 8 + 8 * unpack_q(view, chain_at)[0]
        raw_size, event_id = _RAW_HEAD.unpack_from(view, raw_at)
        start = raw_at + 4
        if start + raw_size > pos + length or raw_size < 8:
            raise PerfDataError(f"{self.name}: bad sample at byte {pos}")
        decoder = decoders.get(event_id, _UNSEEN)
        if decoder is _UNSEEN:
            decoder = decoders[event_id] = self._decoder(event_id)
        if decoder is None:
            formats = self.tracing.formats if self.tracing else {}
            name = formats[event_id].name if event_id in formats else f"id-{event_id}"
            self.other_events[name] = self.other_events.get(name, 0) + 1
            return None
        assert isinstance(decoder, _Decoder)
        if decoder.fast:
            tail = decoder.memo.get(self._buffer[start + decoder.tail_start:start + raw_size])
            if tail is None:
                tail = decoder.tail(view[start:start + raw_size])
            value = unpack_q(view, start + decoder.key_offset)[0]
            if decoder.slab:
                key: Any = f"0x{value:x}" if value else NULL_PTR
                address = unpack_q(view, start + decoder.site_offset)[0]
                site = self._site_names.get(address) or self._site(address)
            else:
                key = decoder.key_of(view[start:start + raw_size])
                site = self._page_site(view, chain_at, pos, layout)
            return (time, cpu, decoder.kind, site, key, tail)
        data = view[start:start + raw_size]
        key = decoder.key_of(data)
        tail = decoder.tail(data)
        if decoder.call_site is not None:
            site = self._site(decoder.call_site.read(data))
        else:
            site = self._page_site(view, chain_at, pos, layout)
        return (time, cpu, decoder.kind, site, key, tail)

    def _decoder(self, event_id: int) -> _Decoder | None:
        fmt = self.tracing.formats.get(event_id) if self.tracing else None
        if fmt is None:
            if self.tracing is None:
                raise PerfDataError(f"{self.name}: perf.data without tracing data (no event"
                                    " formats): record with perf kmem record")
            return None
        kind = EVENT_KIND.get(fmt.name, {"mm_page_free_direct": 7,
                                         "mm_pagevec_free": MM_PAGE_FREE_BATCHED}.get(fmt.name))
        if fmt.system != "kmem" or kind is None:
            return None
        return _Decoder(kind, fmt)

    def _site(self, address: int) -> str:
        """A slab call site's text: ``sym+0x<offset>``, or the address (no symbols, --raw-ip)."""
        name = self._site_names.get(address)
        if name is None:
            name = self._site_names[address] = (
                self.symbols.name(address) if self.symbols and not self.raw_ip
                else f"0x{address:x}")
            self._site_addresses[name] = address
        return name

    def _page_site_text(self, address: int) -> str:
        name = self._page_site_names.get(address)
        if name is None:
            name = self._page_site_names[address] = (
                self.symbols.name(address) if self.symbols else f"0x{address:x}")
            self._site_addresses[name] = address
        return name

    def call_site_address(self, call_site: str) -> int:
        """The address of a call site text this reader gave (how perf orders call sites)."""
        address = self._site_addresses.get(call_site)
        if address is None:
            try:
                return int(call_site, 16)
            except ValueError:
                return 0
        return address

    def _page_site(self, view: memoryview, chain_at: int, pos: int, layout: _Layout) -> str:
        """perf kmem's page call site: the first callchain frame outside the page allocator."""
        symbols = self.symbols
        if chain_at >= 0 and symbols is not None:
            count = int.from_bytes(view[chain_at:chain_at + 8], "little")
            # (a recording repeats its call chains: their first entries decide, memoised)
            head = min(count, _CHAIN_KEY)
            chain = bytes(view[chain_at + 8:chain_at + 8 + 8 * head])
            site = self._chain_sites.get(chain)
            if site is not None:
                return site
            site, decided_at = self._first_outside_allocator(view, chain_at, count)
            if site and decided_at < head and len(self._chain_sites) < 1 << 16:
                self._chain_sites[chain] = site  # (decided within the key's entries; "" is not
                # memoised: a chain with no frame outside the allocator leaves it to the IP)
            if site:
                return site
        if layout.ip >= 0:
            return self._page_site_text(int.from_bytes(
                view[pos + layout.ip:pos + layout.ip + 8], "little"))
        return ""

    def _first_outside_allocator(self, view: memoryview, chain_at: int, count: int
                                 ) -> tuple[str, int]:
        """(the call site, or "" if none of the first frames is one; the entry that
        decided)."""
        symbols = self.symbols
        assert symbols is not None
        frames = 0
        for index in range(count):
            at = chain_at + 8 + 8 * index
            ip = int.from_bytes(view[at:at + 8], "little")
            if ip >= PERF_CONTEXT_MAX:
                continue
            frames += 1
            if frames > CALLCHAIN_DEPTH:
                return "", index
            if not symbols.is_alloc_func(ip):
                return self._page_site_text(ip), index
        return "", count

    def _lost(self, view: memoryview, kind: int, pos: int, length: int,
              layout: _Layout | None) -> LostRecord:
        count_at = pos + (16 if kind == PERF_RECORD_LOST else 8)
        count = int.from_bytes(view[count_at:count_at + 8], "little")
        cpu = time = -1
        event = ""
        attr_all = any(attr.sample_id_all for attr in self.attrs)
        if layout is None and self.attrs:
            layout = _Layout(self.attrs[0].sample_type | SAMPLE_RAW)  # (the trailer only)
        if layout is not None and attr_all:
            trailer = pos + length - layout.trailer_size
            for bit in (SAMPLE_IDENTIFIER, SAMPLE_ID):
                if bit in layout.trailer and kind == PERF_RECORD_LOST_SAMPLES:
                    at = trailer + layout.trailer[bit]
                    event = self._event_of_id(int.from_bytes(view[at:at + 8], "little"))
                    break
            if SAMPLE_TIME in layout.trailer:
                at = trailer + layout.trailer[SAMPLE_TIME]
                time = int.from_bytes(view[at:at + 8], "little")
            if SAMPLE_CPU in layout.trailer:
                at = trailer + layout.trailer[SAMPLE_CPU]
                cpu = int.from_bytes(view[at:at + 4], "little")
        return LostRecord("LOST" if kind == PERF_RECORD_LOST else "LOST_SAMPLES", count, cpu,
                          time, event)

    def _event_of_id(self, sample_id: int) -> str:
        formats = self.tracing.formats if self.tracing else {}
        for attr in self.attrs:
            if sample_id in attr.ids:
                fmt = formats.get(attr.config) if attr.type == PERF_TYPE_TRACEPOINT else None
                return fmt.name if fmt else f"attr type {attr.type} config {attr.config}"
        return f"id {sample_id}"

    def lost_events_report(self) -> LostEvents:
        """The LOST and LOST_SAMPLES records as a LostEvents (after batches())."""
        lost = LostEvents()
        for record in self.lost:
            if record.kind == "LOST":
                lost.stretches.append(LostStretch(
                    record.cpu, record.count,
                    record.time // 1000 / 1e6 if record.time >= 0 else -1.0,
                    "PERF_RECORD_LOST"))
            elif record.count:
                name = record.event or "?"
                lost.per_event[name] = lost.per_event.get(name, 0) + record.count
        return lost

    def _batch(self, samples: list[_Sample]) -> EventBatch:
        if self._compiled_batch is not None:
            columns = self._compiled_batch(samples, self._times)
            # (NotImplemented only for lists of another shape than this reader makes: a time
            # beyond u64, a kind beyond a byte; the Python way below handles those)
            if columns is not NotImplemented:  # pragma: no branch
                batch = EventBatch(*columns)
                count_kinds(self._counts, batch.kinds)
                return batch
        kept = [s for s in samples if s[2] >= 0]
        if not kept:
            return EventBatch(b"", [], [], [], [], [])
        times, cpus, kinds, sites, keys, tails = zip(*kept, strict=True)
        kind_bytes = bytes(kinds)
        count_kinds(self._counts, kind_bytes)
        return EventBatch(kind_bytes, list(cpus),
                          [time_text(t) for t in times] if self._times else [""] * len(times),
                          list(sites), list(keys), list(tails))

    def close(self) -> None:
        self._view.release()
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()


def _decompressed(file: Any, name: str) -> bytes:
    """The whole of a gzip- or xz-compressed perf.data (perf's records need random access)."""
    import gzip
    import lzma
    import zlib

    try:
        if file.read(2) == _GZIP_MAGIC:
            file.seek(0)
            return gzip.GzipFile(fileobj=file).read()
        file.seek(0)
        return lzma.LZMAFile(file).read()
    except (EOFError, OSError, lzma.LZMAError, zlib.error) as error:
        raise PerfDataError(f"{name}: cannot decompress: {error}") from error


def by_id_offset(by_id: dict[int, _Layout]) -> int:
    """Where a sample's id lies when attrs differ in layout (they must agree on it)."""
    offsets = {layout.id for layout in by_id.values()}
    if len(offsets) != 1 or -1 in offsets:
        raise PerfDataError("perf.data events with different sample layouts and no common id")
    return offsets.pop()


def _first_after(samples: list[_Sample], limit: int) -> int:
    """Index of the first of time-sorted ``samples`` later than ``limit``."""
    from bisect import bisect_right

    return bisect_right(samples, limit, key=_TIME_OF)


def time_text(ns: int) -> str:
    """A timestamp as perf script prints it (seconds, microseconds truncated) with the colon the
    TIME column keeps."""
    return f"{ns // 1_000_000_000}.{ns // 1000 % 1_000_000:06d}:"


def is_regular_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file (which can be read twice), or missing (its reader
    says why); False for a pipe, a FIFO or a device, whose bytes can be read only once."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


class _TextWatch:
    """The LineWatch (kmem.trace.parse) of a text trace: what watch_lines() notes of lost
    events, then the call chains of plain perf script text, as those two generators in a row
    would read the lines (the compiled parse loop shows it only the lines that can matter)."""

    __slots__ = ("_chains", "_chains_see", "_lost", "_lost_see")

    def __init__(self, lost: LostWatch, chains: ScriptCallchains) -> None:
        self._lost, self._lost_see = lost, lost.see
        self._chains, self._chains_see = chains, chains.see

    def see(self, line: str) -> int:
        more = self._lost_see(line)
        flags = 0 if self._chains_see(line) else WATCH_DROP
        return flags | WATCH_NEXT if more or self._chains.busy else flags

    def finish(self) -> None:
        self._lost.finish()
        self._chains.finish()


def text_batches(parser: TraceParser, lines: Iterable[str], lost: LostEvents
                 ) -> Iterator[EventBatch]:
    """The EventBatches of trace text as every command reads it: ``parser``'s, with the
    lost-event header and markers noted in ``lost`` and plain perf script's call chains taken
    out, each page event given the call site perf kmem finds in its chain (ScriptCallchains).

    One batch behind the parser: the call chain of a batch's last event is read with the lines
    of the next batch. A malformed line raises after the batches of the events before it, as
    parse_batches does."""
    chains = ScriptCallchains()

    def ready(batch: EventBatch) -> EventBatch:
        # (a skipped page line would shift the sites: then none is attached)
        return batch if parser.bad_lines else chains.attach(batch)

    previous: EventBatch | None = None
    try:
        for batch in parser.parse_batches(lines, watch=_TextWatch(LostWatch(lost), chains)):
            if previous is not None:
                yield ready(previous)
            previous = batch
    except KmemError:
        if previous is not None:
            yield ready(previous)
        raise
    if previous is not None:
        yield ready(previous)


class TraceInput:
    """The events of a trace of any kind kmem reads, with the counters the reports show.

    Text (ftrace, trace-cmd report, perf script; plain, gzip or xz) goes through
    kmem.trace.parse's TraceParser, with a _TextWatch noting lost events (watch_lines()) and
    perf script's call chains; perf.data (a file, or
    a pipe capture on standard input) through PerfData. ``kind`` says which.

    >>> with TraceInput.open("perf.data") as trace:              # doctest: +SKIP
    ...     for batch in trace.batches(): ...
    """

    def __init__(self, path: str | os.PathLike[str], *, skip_bad: bool = False,
                 kallsyms: str | os.PathLike[str] | None = None, raw_ip: bool = False,
                 time_window: tuple[int, int] | None = None, times: bool = True) -> None:
        """``raw_ip``, ``time_window`` and ``times``: as PerfData takes them (perf kmem
        --raw-ip, --time; ``times=False`` leaves a perf.data's TIME column empty, a text's as
        traced); the window applies to text traces too (their microsecond timestamps);
        --raw-ip needs perf.data (trace text holds symbols only)."""
        self.times = times
        self.path = os.fspath(path)
        self.kallsyms = kallsyms
        self.raw_ip = raw_ip
        self.time_window = time_window
        self.lost = LostEvents()
        self.perf: PerfData | None = None
        self._skip_bad = skip_bad
        self._parser: TraceParser | None = None
        self._counts = [0] * len(EVENT_NAMES)
        self.kind = "perf.data" if self._is_perf_data() else "text"
        if raw_ip and self.kind == "text":
            if self.path != "-" and not is_regular_file(self.path):
                # (not looked at: see _is_perf_data; what it holds is not known)
                raise InvalidArgumentError(
                    f"--raw-ip needs a perf.data file: {self.path} is a pipe, which kmem reads"
                    " as trace text (give perf.data as a file, or on standard input)")
            raise InvalidArgumentError(
                f"--raw-ip needs a perf.data file: {self.path} is trace text, whose call sites"
                " are symbols (kmem shows them as traced)")

    @property
    def parser(self) -> TraceParser:
        """The text parser (made when first asked: a perf.data never needs it, and importing
        kmem.trace.parse is a tenth of reading a small perf.data)."""
        if self._parser is None:
            from kmem.trace.parse import TraceParser

            self._parser = TraceParser(skip_bad=self._skip_bad)
        return self._parser

    @classmethod
    def open(cls, path: str | os.PathLike[str], **options: Any) -> TraceInput:
        return cls(path, **options)

    def __enter__(self) -> TraceInput:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.perf is not None:
            self.perf.close()

    def _is_perf_data(self) -> bool:
        if self.path == "-":
            import lzma
            import zlib

            stdin = stdin_stream()  # (decompressed; its first bytes left to the text reader)
            try:
                head = stdin.peek(8)[:8]  # type: ignore[attr-defined]  # (BufferedReader, GzipFile)
            except (EOFError, OSError, lzma.LZMAError, zlib.error):
                head = b""  # (the text reader says where the stream broke off)
            if is_perf_data(head):
                try:
                    data = stdin.read()
                except (EOFError, OSError, lzma.LZMAError, zlib.error) as error:
                    raise PerfDataError(f"standard input: cannot decompress: {error}") from error
                self.perf = PerfData(data, name="standard input",
                                     kallsyms_path=self.kallsyms, raw_ip=self.raw_ip,
                                     times=self.times,
                                     time_window=self.time_window)
                return True
            return False
        if not is_regular_file(self.path):
            # A pipe named by its path (kmem stat <(xzcat trace.xz)) is read once, as text: a
            # look at its first bytes here would take them from the text reader. (perf.data is
            # read from a file, or from standard input.)
            return False
        try:
            with open(self.path, "rb") as file:
                head = file.read(8)
                if head.startswith((_GZIP_MAGIC, _XZ_MAGIC)):
                    file.seek(0)
                    head = _first_bytes(file)
        except OSError:
            return False  # (open_trace says why)
        if not is_perf_data(head):
            from kmem.trace.source import open_trace

            with open_trace(self.path):
                pass  # a file that cannot be opened, or a binary one, is refused now
            return False
        self.perf = PerfData.open(self.path, kallsyms_path=self.kallsyms, raw_ip=self.raw_ip,
                                  times=self.times,
                                  time_window=self.time_window)
        if not self.perf.pipe and not self.perf.has_kmem_events:
            raise PerfDataError(f"{self.path}: perf.data without kmem events: record with"
                                " perf kmem record")
        return True

    def batches(self, open_lines: Callable[[str], AbstractContextManager[Iterable[str]]]
                | None = None) -> Iterator[EventBatch]:
        """The trace's events, in EventBatches; a text trace's lines come from
        ``open_lines(path)`` (default open_trace: a caller may add a progress bar)."""
        from kmem.trace.source import open_trace

        counts = self._counts
        if self.perf is not None:
            yield from self.perf.batches()  # (which counts the events itself: see events)
            self.lost = self.perf.lost_events_report()
            return
        window = self.time_window
        with (open_lines or open_trace)(self.path) as lines:
            for batch in text_batches(self.parser, lines, self.lost):
                done = _in_window(batch, window) if window is not None else batch
                if done.kinds:
                    count_kinds(counts, done.kinds)
                    yield done

    def call_site_address(self) -> Callable[[str], int] | None:
        """How to order call sites as perf does (perf.data: by address), or None (text)."""
        return self.perf.call_site_address if self.perf is not None else None

    # the counters of either reader
    @property
    def lines(self) -> int:
        return self.perf.lines if self.perf is not None else self.parser.lines

    @property
    def bad_lines(self) -> int:
        return self.perf.bad_lines if self.perf is not None else self.parser.bad_lines

    @property
    def bad_examples(self) -> list[Any]:
        return self.perf.bad_examples if self.perf is not None else list(
            self.parser.bad_examples)

    @property
    def events(self) -> dict[str, int]:
        """The events read (within the time window), by tracepoint name."""
        if self.perf is not None:
            return self.perf.events
        return dict(zip(EVENT_NAMES, self._counts, strict=True))

    @property
    def other_events(self) -> dict[str, int]:
        return self.perf.other_events if self.perf is not None else self.parser.other_events

    @property
    def nr_events(self) -> int:
        return sum(self.events.values())


def time_ns(time: str) -> int:
    """A TIME text (``"10308.077785:"``) in nanoseconds, exactly."""
    seconds, _, fraction = time[:-1].partition(".")
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])


def parse_time_window(text: str) -> tuple[int, int]:
    """perf kmem's ``--time START,STOP`` (seconds, either side may be empty) as (start, stop)
    in ns, 0 for an open side (tools/perf/util/time-utils.c perf_time__parse_str)."""
    start_text, comma, stop_text = text.partition(",")
    try:
        if not comma:
            raise ValueError
        start, stop = (time_ns(part.strip() + ":") if part.strip() else 0
                       for part in (start_text, stop_text))
    except ValueError:
        raise InvalidArgumentError(f"bad --time {text!r}: expected START,STOP in seconds"
                                   " (10.5,11 or 10.5, or ,11)") from None
    if stop and stop < start:
        raise InvalidArgumentError(f"bad --time {text!r}: STOP is before START")
    return start, stop


def _in_window(batch: EventBatch, window: tuple[int, int]) -> EventBatch:
    """The events of ``batch`` perf kmem --time keeps (inclusive bounds)."""
    start, stop = window
    keep = [i for i, time in enumerate(batch.times)
            if (not start or time_ns(time) >= start) and (not stop or time_ns(time) <= stop)]
    if len(keep) == len(batch.times):
        return batch
    return EventBatch(bytes(batch.kinds[i] for i in keep), [batch.cpus[i] for i in keep],
                      [batch.times[i] for i in keep], [batch.call_sites[i] for i in keep],
                      [batch.keys[i] for i in keep], [batch.tails[i] for i in keep])


def _first_bytes(file: Any) -> bytes:
    """The first 8 decompressed bytes of a gzip or xz file (b"" if it cannot be read)."""
    import gzip
    import lzma
    import zlib

    try:
        if file.read(2) == _GZIP_MAGIC:
            file.seek(0)
            return gzip.GzipFile(fileobj=file).read(8)
        file.seek(0)
        return lzma.LZMAFile(file).read(8)
    except (EOFError, OSError, lzma.LZMAError, zlib.error):
        return b""


__all__ = ["KernelSymbols", "LostRecord", "PerfData", "PerfDataError", "TraceInput",
           "is_perf_data", "parse_event_format", "text_batches"]
