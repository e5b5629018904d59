"""Opening a trace: a plain, gzip or xz file, or standard input, always read as a text stream.

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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, BinaryIO, cast

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


@contextmanager
def open_trace(path: str | os.PathLike[str] | BinaryIO) -> Iterator[IO[str]]:
    """Open the trace at ``path`` ("-" for standard input, or an open binary file) as text.

    >>> with open_trace("trace.txt.xz") as lines:       # doctest: +SKIP
    ...     for line in lines: ...
    """
    if not isinstance(path, (str, os.PathLike)):
        yield io.TextIOWrapper(
            _decompressed(path), encoding="utf-8", errors="replace", newline="\n"
        )
        return
    if os.fspath(path) == "-":
        stream = _decompressed(sys.stdin.buffer)
        yield io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="\n")
        return
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below, after the caller's block
    except OSError as error:
        raise TraceFileError(f"cannot open trace {os.fspath(path)!r}: {error.strerror}") from error
    try:
        yield io.TextIOWrapper(
            _decompressed(raw), encoding="utf-8", errors="replace", newline="\n"
        )
    finally:
        raw.close()


class TraceFileError(InvalidArgumentError):
    """The trace file cannot be opened or decompressed."""
