"""The trace parser under bad input (issue #12): a parser that has learned a line's layout
rejects exactly what a fresh one rejects (ASCII digits and hex only, finite timestamps), lines
are bounded, CR-only files and xz trailing garbage are errors; and at the command line each is
one line, ``FILE:LINE: what is wrong``, exit status 2."""

from __future__ import annotations

import gzip
import io
import lzma
import sys
from pathlib import Path
from typing import Any

import pytest

from fixture_files import LS_TRACE, PERF_SCRIPT
from kmem.cli.main import main
from kmem.errors import KmemError
from kmem.trace.parse import MAX_LINE, TraceFormatError, TraceParser
from kmem.trace.source import MAX_LINE_BYTES, TraceFileError, open_trace

# A real line of each kind (6.18 ftrace, perf script), and the learned-tail probes made of it.
_LS = lzma.decompress(LS_TRACE.read_bytes()).decode().splitlines(keepends=True)
KMALLOC = next(line for line in _LS if " kmalloc: " in line)
FREE = next(line for line in _LS if " kmem_cache_free: " in line)
PAGE = next(line for line in _LS if " mm_page_alloc: " in line and "pfn=0x" in line)
_PERF = lzma.decompress(PERF_SCRIPT.read_bytes()).decode().splitlines(keepends=True)
RAW_KMALLOC = next(line for line in _PERF if "kmem:kmalloc:" in line)


def _time(line: str) -> str:
    return line.split()[3]


def _pointer(line: str) -> str:
    return line.split("ptr=")[1].split()[0]


# Each case: (the good line a warmed parser learns first, the bad line, a word of the reason).
BAD = {
    "letters for a timestamp": (KMALLOC, KMALLOC.replace(_time(KMALLOC), "zzz.zzzzzz:"),
                                "timestamp"),
    "nan timestamp": (KMALLOC, KMALLOC.replace(_time(KMALLOC), "nan:"), "timestamp"),
    "inf timestamp": (KMALLOC, KMALLOC.replace(_time(KMALLOC), "inf:"), "timestamp"),
    "1e400 timestamp": (KMALLOC, KMALLOC.replace(_time(KMALLOC), "1e400:"), "timestamp"),
    "signed timestamp": (KMALLOC, KMALLOC.replace(_time(KMALLOC), "+388.061916:"), "timestamp"),
    "signed short timestamp": (KMALLOC, KMALLOC.replace(_time(KMALLOC), "+388.06:"),
                               "timestamp"),
    "underscore in the timestamp": (KMALLOC, KMALLOC.replace(_time(KMALLOC), "3_88.061916:"),
                                    "timestamp"),
    "Arabic-Indic digits in the timestamp": (
        KMALLOC, KMALLOC.replace(_time(KMALLOC), "٣٨٨.٠٦١٩١٦:"), "timestamp"),
    "a 400-digit timestamp": (KMALLOC, KMALLOC.replace(_time(KMALLOC), "9" * 400 + ".061916:"),
                              "timestamp"),
    "z inside a raw pointer": (RAW_KMALLOC, RAW_KMALLOC.replace(
        _pointer(RAW_KMALLOC), _pointer(RAW_KMALLOC)[:14] + "z" + _pointer(RAW_KMALLOC)[15:]),
        "pointer"),
    "0X raw pointer": (RAW_KMALLOC, RAW_KMALLOC.replace("ptr=0x", "ptr=0X"), "pointer"),
    "1x raw pointer": (RAW_KMALLOC, RAW_KMALLOC.replace("ptr=0x", "ptr=1x"), "pointer"),
    "z inside a hashed pointer": (FREE, FREE.replace(_pointer(FREE), "z" + _pointer(FREE)[1:]),
                                  "pointer"),
    "0X hashed pointer": (FREE, FREE.replace(_pointer(FREE), "0X" + _pointer(FREE)[2:]),
                          "pointer"),
    "Arabic-Indic digits in a pointer": (
        FREE, FREE.replace(_pointer(FREE), "٠" * 8 + _pointer(FREE)[8:]), "pointer"),
    "Arabic-Indic CPU": (KMALLOC, KMALLOC.replace("[000]", "[٠٠١]").replace("[001]", "[٠٠١]"),
                         "cpu"),
    "CPU 8192": (KMALLOC, KMALLOC.replace("[000]", "[8192]").replace("[001]", "[8192]"),
                 "CPU 8192"),
    "Arabic-Indic bytes_req": (KMALLOC, KMALLOC.replace("bytes_req=", "bytes_req=١٠٠"),
                               "bytes_req"),
    "underscore in bytes_alloc": (KMALLOC, KMALLOC.replace("bytes_alloc=", "bytes_alloc=1_"),
                                  "bytes_alloc"),
    "plus sign in node": (KMALLOC, KMALLOC.replace("node=-1", "node=+1"), "node"),
    "underscore in a pfn": (PAGE, PAGE.replace("pfn=0x", "pfn=0x1_"), "pfn"),
    "Arabic-Indic pfn": (PAGE, PAGE.replace("pfn=0x", "pfn=0x١"), "pfn"),
    "17-digit pfn": (PAGE, PAGE.replace("pfn=0x", "pfn=0x" + "1" * 11), "pfn"),
    "letters for a page pointer": (PAGE, PAGE.replace("page=", "page=zz"), "page"),
    "line over the limit": (KMALLOC, KMALLOC.replace("accounted=", "x=" + "a" * MAX_LINE
                                                     + " accounted="), "longer than"),
    "carriage return inside": (KMALLOC, KMALLOC.replace(" bytes_req", "\rbytes_req"),
                               "carriage return"),
}


def _outcome(parser: TraceParser, line: str) -> tuple[str, Any]:
    try:
        return "events", list(parser.parse([line]))
    except TraceFormatError as error:
        return "error", (error.line_number, error.reason)


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_warmed_parser_rejects_what_a_fresh_one_rejects(case: str) -> None:
    good, bad, reason = BAD[case]
    fresh = _outcome(TraceParser(), bad)
    warmed = TraceParser()
    assert len(list(warmed.parse([good]))) == 1  # it learned the good line's tail and site
    assert _outcome(warmed, bad) == fresh
    assert fresh[0] == "error" and reason.lower() in fresh[1][1].lower()


@pytest.mark.parametrize("case", sorted(BAD))
def test_skip_bad_counts_the_bad_line_after_a_warm_up(case: str) -> None:
    good, bad, _ = BAD[case]
    parser = TraceParser(skip_bad=True)
    events = list(parser.parse([good, good, bad, good]))
    assert len(events) == 3 and parser.bad_lines == 1 and parser.lines == 4
    assert parser.bad_examples[0].line_number == 3


def test_a_line_of_exactly_the_limit_is_read() -> None:
    comment = "#" * MAX_LINE + "\n"  # at the limit, its newline not counted: a comment
    long = KMALLOC.rstrip("\n")
    long = long + " x=" + "a" * (MAX_LINE - len(long) - 3) + "\r\n"  # (CRLF not counted)
    parser = TraceParser()
    assert len(list(parser.parse([comment, long]))) == 1


def test_crlf_lines_read_as_lf_lines() -> None:
    lf = TraceParser().parse(_LS)
    crlf = TraceParser().parse([line.replace("\n", "\r\n") for line in _LS])
    assert list(crlf) == list(lf)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _read(path: Path, **options: bool) -> tuple[list[Any], TraceParser]:
    parser = TraceParser(**options)
    with open_trace(path) as lines:
        return list(parser.parse(lines)), parser


def test_a_cr_only_file_is_an_error_not_an_empty_trace(tmp_path: Path) -> None:
    path = _write(tmp_path / "cr.txt", "".join(_LS[:40]).replace("\n", "\r").encode())
    with pytest.raises(TraceFormatError) as caught:
        _read(path)
    assert caught.value.line_number == 1 and "carriage return" in caught.value.reason
    assert str(caught.value).startswith(f"{path}:1: carriage return")


def test_a_long_line_in_a_file_is_skipped_with_its_number(tmp_path: Path) -> None:
    # a line of many times the limit, in UTF-8 of 1 to 4 bytes a character, amid good lines
    huge = "x=" + ("é€𝄞a" * (3 * MAX_LINE_BYTES // 10))
    text = "".join(_LS[20:30]) + huge + "\n" + "".join(_LS[30:40])
    path = _write(tmp_path / "long.txt", text.encode())
    expected = list(TraceParser().parse(_LS[20:40]))
    events, parser = _read(path, skip_bad=True)
    assert events == expected
    assert parser.bad_lines == 1 and parser.bad_examples[0].line_number == 11
    assert "longer than 65536 characters" in str(parser.bad_examples[0])
    with pytest.raises(TraceFormatError, match=f"^{path}:11: line longer than 65536"):
        _read(path)


class _Zeros(io.RawIOBase):
    """An endless stream of one byte (zero bytes by default) that counts what was read of it."""

    def __init__(self, byte: bytes = b"\0") -> None:
        self.read_bytes = 0
        self.byte = byte

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        buffer[:size] = self.byte * size
        self.read_bytes += size
        return size


def test_an_endless_line_fails_on_its_first_line_without_reading_on() -> None:
    zeros = _Zeros(b"x")  # (zero bytes are refused before: a binary file)
    with pytest.raises(TraceFormatError) as caught, open_trace(io.BufferedReader(zeros)) as lines:
        list(TraceParser().parse(lines))
    assert caught.value.line_number == 1 and "longer than" in caught.value.reason
    assert zeros.read_bytes < 4 * MAX_LINE_BYTES  # the first cut, not the whole stream


def test_xz_trailing_garbage_is_refused_like_gzip_trailing_garbage(tmp_path: Path) -> None:
    data = "".join(_LS).encode()
    for name, packed in (("t.xz", lzma.compress(data)), ("t.gz", gzip.compress(data))):
        path = _write(tmp_path / name, packed + b"garbage!")
        with pytest.raises(TraceFileError, match=f"^{path}: the trace stream broke off"):
            _read(path)


def test_xz_padding_and_concatenated_streams_are_read(tmp_path: Path) -> None:
    data = "".join(_LS).encode()
    half = len(data) // 2
    packed = lzma.compress(data[:half]) + bytes(8) + lzma.compress(data[half:]) + bytes(4)
    events, _ = _read(_write(tmp_path / "t.xz", packed))
    assert events == list(TraceParser().parse(_LS))
    with pytest.raises(TraceFileError, match="padding"):  # xz: padding in multiples of 4
        _read(_write(tmp_path / "odd.xz", lzma.compress(data) + bytes(3)))


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
@pytest.mark.parametrize("suffix", ["xz", "gz"])
def test_damaged_compressed_files_are_one_trace_file_error(tmp_path: Path, damage: str,
                                                           suffix: str) -> None:
    data = "".join(_LS).encode()
    packed = bytearray(lzma.compress(data) if suffix == "xz" else gzip.compress(data))
    if damage == "truncated":
        del packed[len(packed) // 2:]
    else:
        packed[len(packed) // 2] ^= 0xFF
    path = _write(tmp_path / f"t.{suffix}", bytes(packed))
    # (xz checks a block when it ends: the garbled lines before are bad lines, skipped here)
    with pytest.raises(TraceFileError) as caught:
        _read(path, skip_bad=True)
    assert str(caught.value).startswith(f"{path}: the trace stream broke off after line ")
    assert "\n" not in str(caught.value) and isinstance(caught.value, KmemError)


# -- the command line ----------------------------------------------------------------------

COMMANDS = [["stat"], ["replay"], ["replay", "--serial"], ["leaks"], ["top"]]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("case", ["nan timestamp", "z inside a raw pointer", "Arabic-Indic CPU",
                                  "underscore in bytes_alloc", "line over the limit"])
def test_the_commands_name_file_and_line_of_a_bad_line(
        command: list[str], case: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    good, bad, reason = BAD[case]
    path = _write(tmp_path / "bad.txt", (good * 3 + bad + good).encode())
    assert main([*command, str(path)]) == 2
    error = _one_error_line(capsys)
    assert f"{path}:4: " in error and reason.lower() in error.lower()
    assert error.startswith("kmem")
    assert main([*command, "--skip-bad", str(path)]) == 0
    # the note names the line as the error did, its text intact (no markup eaten)
    where = error.index(f"{path}:4: ")
    assert f"1 malformed lines skipped; first: {error[where:]}" in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_the_commands_refuse_a_cr_only_file_and_xz_garbage(
        command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "".join(_LS[:40])
    cr = _write(tmp_path / "cr.txt", text.replace("\n", "\r").encode())
    assert main([*command, str(cr)]) == 2
    assert f"{cr}:1: carriage return" in _one_error_line(capsys)
    garbage = _write(tmp_path / "g.xz", lzma.compress(text.encode()) + b"garbage!")
    assert main([*command, str(garbage)]) == 2
    assert f"{garbage}: the trace stream broke off" in _one_error_line(capsys)
    cut = _write(tmp_path / "cut.xz", lzma.compress(text.encode())[:-30])
    assert main([*command, str(cut)]) == 2
    assert f"{cut}: the trace stream broke off" in _one_error_line(capsys)


class _Stdin:
    def __init__(self, raw: io.RawIOBase) -> None:
        self.buffer = io.BufferedReader(raw)


@pytest.mark.parametrize("command", [["stat"], ["replay"]], ids=" ".join)
def test_an_endless_line_on_stdin_fails_fast(command: list[str], monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``head -c 4G /dev/zero | kmem stat -``: refused at once as binary, not a MemoryError;
    an endless line of text fails on line 1 without reading on."""
    zeros = _Zeros()
    monkeypatch.setattr(sys, "stdin", _Stdin(zeros))
    assert main([*command, "-"]) == 2
    assert "<stdin>: not a kmem trace: a binary file" in _one_error_line(capsys)
    assert zeros.read_bytes < 4 * MAX_LINE_BYTES
    letters = _Zeros(b"x")
    monkeypatch.setattr(sys, "stdin", _Stdin(letters))
    assert main([*command, "-"]) == 2
    assert "<stdin>:1: line longer than 65536 characters" in _one_error_line(capsys)
    assert letters.read_bytes < 4 * MAX_LINE_BYTES




def test_other_tracepoints_need_a_name_and_their_counters_stay_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    head = "a-1 [000] ..... 1.000000: "
    with pytest.raises(TraceFormatError, match="bad event name"):
        list(TraceParser().parse([head + "٣sched: x=1"]))
    with pytest.raises(TraceFormatError, match="bad event name"):
        list(TraceParser().parse([head + "a:b:c: x=1"]))
    monkeypatch.setattr("kmem.trace.parse.MAX_OTHER_EVENTS", 3)
    parser = TraceParser()
    lines = [head + f"sched:event{n % 5}: x=1" for n in range(10)]
    assert list(parser.parse(lines)) == []
    assert parser.other_events == {"sched:event0": 2, "sched:event1": 2, "sched:event2": 2,
                                   "(other names)": 4}


def test_memo_tables_stay_small_on_long_distinct_tails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines of 10,000-character tails, each new: the memo stops learning at MAX_MEMO_CHARS,
    and the lines past it are still read (by the slow path)."""
    monkeypatch.setattr("kmem.trace.parse.MAX_MEMO_CHARS", 50_000)
    lines = [KMALLOC.replace("accounted=", f"x{n}={'a' * 10_000} accounted=") for n in range(9)]
    parser = TraceParser()
    assert len(list(parser.parse(lines))) == 9
    assert parser._memo_chars <= 50_000 and sum(map(len, parser._tails)) == 4
