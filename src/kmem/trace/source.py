"""Opening a trace: a plain, gzip or xz file, or standard input, always read as a text stream.

A binary file that is no trace (an ELF executable, a perf.data file read as text, trace-cmd's
trace.dat, ...) is refused with one line naming what it is (TraceFileError), not read as garbage
lines: the first bytes (after decompression) are checked for known magic numbers and NUL bytes.

The compression is recognised by the file's first bytes (gzip ``1f 8b``, xz ``fd 37 7a 58 5a 00``),
not its name, so ``kmem stat - < trace.xz`` and a mis-named file both work (also from a pipe
whose first read brings only a byte or two of them). Reading streams line
by line: nothing is loaded whole. Undecodable bytes (a task name in another encoding) become U+FFFD
instead of stopping the read.

Lines are bounded (rule L1 of kmem.trace.parse): a line of more than MAX_LINE_BYTES bytes is
handed over cut to its first MAX_LINE_BYTES bytes and a newline (which decode to more than
kmem.trace.parse.MAX_LINE characters, so the parser rejects it as too long, with its number),
and the rest of it is read and dropped without being held: ``head -c 4G /dev/zero | kmem stat -``
fails on its first line instead of growing until a MemoryError.

Compressed streams are read whole or not at all: a truncated or corrupt stream, and bytes after
the last xz stream that are neither another stream nor xz's stream padding (zero bytes, a
multiple of four), raise (EOFError, lzma.LZMAError, zlib.error or gzip.BadGzipFile, an OSError)
from the read; the parser turns that into a TraceFileError naming the line it broke off after.
gzip's trailing garbage is refused by the gzip module itself, xz's by _XzReader here.

Errors raised inside ``with open_trace(path) as lines:`` that concern the trace (a
TraceFormatError or TraceFileError without a file name) get the trace's name, so that they read
``trace.txt:12: bad timestamp ...`` (``<stdin>`` for standard input).
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO, Final, cast

from kmem.errors import InvalidArgumentError

_GZIP_MAGIC: Final = b"\x1f\x8b"
_XZ_MAGIC: Final = b"\xfd7zXZ\x00"
_CHUNK: Final = 1 << 16  # bytes read at a time: every layer below the text reader
# The first bytes read before the file's kind is decided (its compression, or a binary file's
# magic number: the longest, trace-cmd's, is 10 bytes), however few a pipe's first read brings.
_SNIFF_BYTES: Final = 16
MAX_LINE_CHARS: Final = 1 << 16  # kmem.trace.parse.MAX_LINE (this layer cannot import it)
# A UTF-8 character (or a replacement character for an undecodable byte) takes at most 4 bytes,
# so the first MAX_LINE_BYTES bytes of a line decode to more than MAX_LINE_CHARS characters.
MAX_LINE_BYTES: Final = 4 * (MAX_LINE_CHARS + 1)


class TraceFileError(InvalidArgumentError):
    """The trace file cannot be opened, read or decompressed (truncated, corrupt, trailing
    garbage); ``path`` is the trace's name once known (``trace.xz: the trace stream ...``)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.message = message
        self.path = path
        super().__init__(self._text())

    def _text(self) -> str:
        return self.message if self.path is None else f"{self.path}: {self.message}"

    def name_file(self, path: str) -> None:
        """Say which file the error is about (open_trace does, for errors raised in its block)."""
        self.path = path
        self.args = (self._text(),)

    def __reduce__(self) -> tuple[type[TraceFileError], tuple[str, str | None]]:
        # Pickled whole (kmem.trace.pipeline sends it from the parsing process).
        return (type(self), (self.message, self.path))


class _XzReader(io.RawIOBase):
    """The decompressed bytes of one or more concatenated xz streams, as xz(1) reads them:
    stream padding (zero bytes, a multiple of four) between or after streams is skipped, any
    other trailing byte raises lzma.LZMAError, a stream cut short raises EOFError.
    (lzma.LZMAFile ignores trailing garbage silently, where gzip.GzipFile refuses it.)"""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._read = getattr(raw, "read1", raw.read)  # (read1: a pipe's bytes as they come)
        self._decompressor: lzma.LZMADecompressor | None = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        self._input = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._decompressor is not None:
            decompressor = self._decompressor
            if decompressor.eof:
                self._next_stream(decompressor.unused_data)
                continue
            data, self._input = self._input, b""
            if not data and decompressor.needs_input:
                data = self._read(_CHUNK)
                if not data:
                    raise EOFError("compressed file ended before the end-of-stream marker was"
                                   " reached (a truncated xz file)")
            out = decompressor.decompress(data, len(view))
            if out:
                view[:len(out)] = out
                return len(out)
        return 0

    def _next_stream(self, rest: bytes) -> None:
        """After a stream's end: the next stream, the end of the file, or an error."""
        padding = 0
        while True:
            stripped = rest.lstrip(b"\0")
            padding += len(rest) - len(stripped)
            if stripped:
                break
            rest = self._read(_CHUNK)
            if not rest:
                if padding % 4:
                    raise lzma.LZMAError("xz stream padding is not a multiple of 4 bytes")
                self._decompressor = None  # the end
                return
        while len(stripped) < len(_XZ_MAGIC):
            more = self._read(_CHUNK)
            if not more:
                break
            stripped += more
        if padding % 4 or not stripped.startswith(_XZ_MAGIC):
            raise lzma.LZMAError(f"trailing garbage after the xz stream ({stripped[:8]!r})")
        self._decompressor = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        self._input = stripped


class _BoundedLines:
    """The bytes of ``raw`` with every line of more than MAX_LINE_BYTES bytes cut to its first
    MAX_LINE_BYTES bytes and a newline, the rest of it dropped as it is read (see the module's
    docstring). Chunks are at most _CHUNK < MAX_LINE_BYTES bytes, so only the line that runs
    across chunks can be too long: two searches per chunk, no work per line.

    The buffer of the TextIOWrapper that decodes the trace, duck-typed rather than an io class:
    the wrapper asks its buffer's ``closed`` for every line it reads, which an io.RawIOBase
    answers slowly (a property, then the same question to the reader below); here it is a
    plain attribute."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._read = getattr(raw, "read1", raw.read)  # (read1: a pipe's lines as they come)
        self._line = 0  # bytes of the current line passed on so far
        self._dropping = False  # inside the dropped rest of a cut line
        self.closed = False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def read1(self, size: int = -1) -> bytes:
        while True:
            chunk = self._read(_CHUNK if size < 0 else min(size, _CHUNK))
            if not chunk:
                return b""
            out = self._bound(chunk)
            if out:
                return out

    def read(self, size: int = -1) -> bytes:
        """(TextIOWrapper reads through read1, but read() of the whole rest through this.)"""
        if size >= 0:
            return self.read1(size)
        return b"".join(iter(self.read1, b""))

    def _bound(self, chunk: bytes) -> bytes:
        first = chunk.find(b"\n")
        if first < 0:
            if self._dropping:
                return b""
            room = MAX_LINE_BYTES - self._line
            if len(chunk) <= room:
                self._line += len(chunk)
                return chunk
            self._dropping, self._line = True, 0
            return chunk[:room] + b"\n"
        last = chunk.rfind(b"\n")
        if self._dropping:  # the cut line ends here: its newline was passed on already
            head = b""
        elif self._line + first > MAX_LINE_BYTES:
            head = chunk[:MAX_LINE_BYTES - self._line] + b"\n"
        else:
            self._line = len(chunk) - last - 1
            return chunk
        self._dropping, self._line = False, len(chunk) - last - 1
        return head + chunk[first + 1:]


class _Prefixed(io.RawIOBase):
    """The bytes ``head`` read off ``rest`` already, then the rest of ``rest`` as it comes."""

    def __init__(self, head: bytes, rest: io.BufferedReader) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            size = min(len(view), len(self._head))
            view[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._rest.read1(len(view))
        view[:len(data)] = data
        return len(data)


def _sniffable(buffered: io.BufferedReader) -> io.BufferedReader:
    """``buffered``, or a reader of the same bytes whose buffer holds the first _SNIFF_BYTES
    (or all, if fewer): a pipe's first read may bring a byte or two of a magic number, and
    peek() reads no further than that one read."""
    head = buffered.peek(_SNIFF_BYTES)
    if not head or len(head) >= _SNIFF_BYTES:
        return buffered
    head = buffered.read1(_SNIFF_BYTES)
    while len(head) < _SNIFF_BYTES:
        more = buffered.read1(_SNIFF_BYTES - len(head))
        if not more:
            break
        head += more
    return io.BufferedReader(_Prefixed(head, buffered), _CHUNK)


def _decompressed(raw: BinaryIO) -> IO[bytes]:
    """``raw`` itself, or a decompressing reader over it when it starts with gzip/xz magic."""
    buffered = _sniffable(raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(
        cast(io.RawIOBase, raw), _CHUNK
    ))
    head = buffered.peek(6)[:6]
    if head.startswith(_GZIP_MAGIC):
        return cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
    if head.startswith(_XZ_MAGIC):
        return cast(IO[bytes], io.BufferedReader(_XzReader(buffered), _CHUNK))
    return buffered


_stdin: tuple[object, IO[bytes]] | None = None  # (sys.stdin.buffer, its stdin_stream())


def stdin_stream() -> IO[bytes]:
    """Standard input's bytes, decompressed (gzip, xz) and peekable, for both of its readers:
    kmem.trace.perf_data's perf.data check looks at the first bytes, and the text reader then
    reads them (a pipe is read once). The same stream while sys.stdin.buffer is the same."""
    global _stdin
    buffer = sys.stdin.buffer
    if _stdin is None or _stdin[0] is not buffer:
        _stdin = (buffer, _decompressed(buffer))
    return _stdin[1]


# Magic numbers of binary files a user may hand over by mistake: what to call them.
_BINARY_MAGIC: Final = (
    (b"PERFILE2", "a perf.data file (kmem stat and kmem replay read it from a file or from"
     " standard input)"),
    (b"\x7fELF", "an ELF file"),
    (b"\x17\x08\x44tracing", "a trace-cmd trace.dat file (convert it with trace-cmd report)"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file (decompress it first)"),
    (b"BZh", "a bzip2-compressed file (decompress it first)"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
)


def describe_binary(head: bytes) -> str | None:
    """What a file starting with ``head`` is, if it is a binary file and no trace text."""
    for magic, what in _BINARY_MAGIC:
        if head.startswith(magic):
            return what
    if b"\0" in head:
        return "a binary file"
    return None


def _refuse_binary(stream: IO[bytes], name: str) -> None:
    """Raise TraceFileError if ``stream`` (peekable) starts like a binary file."""
    peek = getattr(stream, "peek", None)
    try:
        head = peek(512)[:512] if peek is not None else b""
    except (EOFError, OSError, lzma.LZMAError, zlib.error):
        return  # (the reader says where the stream broke off)
    what = describe_binary(head)
    if what is not None:
        raise TraceFileError(f"not a kmem trace: {what}", name)


def trace_bytes(raw: BinaryIO, name: str) -> IO[bytes]:
    """The decompressed bytes of the trace ``raw`` (an open binary file, called ``name`` in
    errors): what open_trace decodes, refused as it refuses a binary file, for a reader that
    only counts them (kmem html counts a trace's lines first). No line bound: a line cut
    there ends with a newline where it is cut, and the rest of it is left out, so it counts
    as one line all the same."""
    stream = _decompressed(raw)
    _refuse_binary(stream, name)
    return stream


def _text(raw: BinaryIO, name: str) -> IO[str]:
    """The trace's lines: decompressed, refused if binary, bounded, decoded."""
    return _lines(_decompressed(raw), name)


def _lines(stream: IO[bytes], name: str) -> IO[str]:
    """The lines of a decompressed trace: refused if binary, bounded, decoded."""
    _refuse_binary(stream, name)
    bounded = cast(IO[bytes], _BoundedLines(stream))
    text = io.TextIOWrapper(bounded, encoding="utf-8-sig", errors="replace", newline="\n")
    text._CHUNK_SIZE = _CHUNK  # type: ignore[attr-defined]  # (fewer calls to read1)
    return text


@contextmanager
def _naming_errors(name: str | None) -> Iterator[None]:
    """Give the trace's errors raised in the block the trace's name (see the docstring)."""
    try:
        yield
    except InvalidArgumentError as error:
        name_file = getattr(error, "name_file", None)
        if name is not None and name_file is not None and getattr(error, "path", 1) is None:
            name_file(name)
        raise


@contextmanager
def open_trace(path: str | os.PathLike[str] | BinaryIO, *, name_errors: bool = True
               ) -> Iterator[IO[str]]:
    """Open the trace at ``path`` ("-" for standard input, or an open binary file) as text.
    The trace's errors raised in the block name the file, unless ``name_errors`` is False
    (a caller that reports them with its own name of the trace).

    >>> with open_trace("trace.txt.xz") as lines:       # doctest: +SKIP
    ...     for line in lines: ...
    """
    if not isinstance(path, (str, os.PathLike)):
        name = getattr(path, "name", None) if name_errors else None
        with _naming_errors(name if isinstance(name, str) else None):
            yield _text(path, getattr(path, "name", "the trace"))
        return
    if os.fspath(path) == "-":
        with _naming_errors("<stdin>" if name_errors else None):
            yield _lines(stdin_stream(), "<stdin>")
        return
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below, after the caller's block
    except OSError as error:
        raise TraceFileError(f"cannot open trace {os.fspath(path)!r}: {error.strerror}") from error
    try:
        with _naming_errors(os.fspath(path) if name_errors else None):
            yield _text(raw, os.fspath(path))
    finally:
        raw.close()
