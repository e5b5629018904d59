"""Opening a trace: a plain, gzip or xz file, or standard input, always read as a text stream.

A binary file that is no trace (an ELF executable, a perf.data file read as text, trace-cmd's
trace.dat, ...) is refused with one line naming what it is (TraceFileError), not read as garbage
lines: the first bytes (after decompression) are checked for known magic numbers and NUL bytes.

The compression is recognised by the file's first bytes (gzip ``1f 8b``, xz ``fd 37 7a 58 5a 00``),
not its name, so ``kmem stat - < trace.xz`` and a mis-named file both work. Reading streams line
by line: nothing is loaded whole. Undecodable bytes (a task name in another encoding) become U+FFFD
instead of stopping the read.
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
from typing import IO, BinaryIO, Final, cast

from kmem.errors import InvalidArgumentError

_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"


def _decompressed(raw: BinaryIO) -> IO[bytes]:
    """``raw`` itself, or a decompressing reader over it when it starts with gzip/xz magic."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(
        cast(io.RawIOBase, raw)
    )
    head = buffered.peek(6)[:6]
    if head.startswith(_GZIP_MAGIC):
        return cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
    if head.startswith(_XZ_MAGIC):
        return cast(IO[bytes], lzma.LZMAFile(buffered, mode="rb"))
    return buffered


# Magic numbers of binary files a user may hand over by mistake: what to call them.
_BINARY_MAGIC: Final = (
    (b"PERFILE2", "a perf.data file (kmem stat and kmem replay read it by its file name)"),
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
        raise TraceFileError(f"{name}: not a kmem trace: {what}")


@contextmanager
def open_trace(path: str | os.PathLike[str] | BinaryIO) -> Iterator[IO[str]]:
    """Open the trace at ``path`` ("-" for standard input, or an open binary file) as text.

    >>> with open_trace("trace.txt.xz") as lines:       # doctest: +SKIP
    ...     for line in lines: ...
    """
    if not isinstance(path, (str, os.PathLike)):
        stream = _decompressed(path)
        _refuse_binary(stream, getattr(path, "name", "the trace"))
        yield io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="\n")
        return
    if os.fspath(path) == "-":
        stream = _decompressed(sys.stdin.buffer)
        _refuse_binary(stream, "standard input")
        yield io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="\n")
        return
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below, after the caller's block
    except OSError as error:
        raise TraceFileError(f"cannot open trace {os.fspath(path)!r}: {error.strerror}") from error
    try:
        stream = _decompressed(raw)
        _refuse_binary(stream, os.fspath(path))
        yield io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="\n")
    finally:
        raw.close()


class TraceFileError(InvalidArgumentError):
    """The trace file cannot be opened or decompressed."""
