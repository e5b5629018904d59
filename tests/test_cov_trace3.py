"""The trace layer's paths the other tests leave out (issue #18): recording's errors and its
copy loop, json_text's rarer values, the parser process's ends, xz streams and long lines
arriving in pieces, the parser's messages for truncated lines, and the sweep spec's errors.

Expected values come from the formats themselves (the kernel's ``CPU:N [LOST M EVENTS]`` marker
of kernel/trace/trace.c, xz(1)'s stream padding rule, json.dumps as the oracle of json_text),
worked out by hand, not read back from kmem.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import math
import os
import shutil
import signal
import stat
import struct
import threading
import time
from collections.abc import Iterator
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest

import kmem.trace.json_text as json_text_module
import kmem.trace.parse as parse_module
import kmem.trace.pipeline as pipeline
import kmem.trace.record as record
import test_cov_trace2 as made
from fixture_files import LS_TRACE
from kmem import SweepSpecError, load_sweep_spec, sweep
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.trace.events import (
    KFREE,
    KMALLOC,
    MM_PAGE_ALLOC,
    MM_PAGE_FREE,
    MM_PAGE_FREE_BATCHED,
    NULL_PTR,
    batch_events,
    event_batch,
)
from kmem.trace.json_text import json_text
from kmem.trace.parse import TraceFormatError, TraceParser, parse_trace
from kmem.trace.perf_data import PerfData
from kmem.trace.pipeline import ParserProcess
from kmem.trace.record import RecordError, find_tracefs, record_perf, record_tracefs
from kmem.trace.replay import Replayer
from kmem.trace.source import MAX_LINE_BYTES, TraceFileError, open_trace
from kmem.trace.sweep import FAILURES, RESULTS, TIMELINES
from kmem.trace.sweep_spec import sweep_spec
from sweep_fixtures import broken_trace, sweep_folder

LOST_TRACE = LS_TRACE.parent / "lost" / "trace-pipe-8kb-first2200.txt.xz"
_LS = lzma.decompress(LS_TRACE.read_bytes()).decode().splitlines(keepends=True)


# -- kmem record -------------------------------------------------------------------------------

def _fake_tracefs(root: Path, *events: str) -> Path:
    """A directory laid out as tracefs is (events/kmem/<event>/, instances/)."""
    (root / "events" / "kmem").mkdir(parents=True)
    for name in events:
        (root / "events" / "kmem" / name).mkdir()
    (root / "instances").mkdir()
    return root


def _no_proc_mounts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A system without a readable /proc/mounts (record's other files open as usual)."""
    real_open = open

    def fake_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if path == "/proc/mounts":
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(record, "open", fake_open, raising=False)


def test_without_proc_mounts_tracefs_is_looked_for_where_it_is_usually_mounted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proc_mounts(monkeypatch)
    empty, mounted = tmp_path / "empty", _fake_tracefs(tmp_path / "tracing", "kmalloc")
    empty.mkdir()
    monkeypatch.setattr(record, "TRACEFS_MOUNTS", (str(empty), str(mounted)))
    assert find_tracefs() == mounted  # the first one with the kmem events
    monkeypatch.setattr(record, "TRACEFS_MOUNTS", (str(empty),))
    assert find_tracefs() is None


def test_no_tracefs_anywhere_is_a_clear_error_at_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _no_proc_mounts(monkeypatch)
    monkeypatch.setattr(record, "TRACEFS_MOUNTS", (str(tmp_path / "none"),))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    output = tmp_path / "out.txt"
    assert main(["record", "-o", str(output), "--", "true"]) == 2
    assert capsys.readouterr().err == (
        "kmem record: tracefs with the kmem events not found at /sys/kernel/tracing: mount it"
        " (mount -t tracefs nodev /sys/kernel/tracing)\n")
    assert not output.exists()


def test_a_buffer_below_one_page_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    output = tmp_path / "out.txt"
    assert main(["record", "--buffer-kb", "3", "-o", str(output), "--", "true"]) == 2
    assert capsys.readouterr().err == (
        "kmem record: buffer size must be at least 4 KB per CPU, got 3\n")
    assert not output.exists()


def test_a_kernel_without_the_kmem_events_asked_for_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    fake = _fake_tracefs(tmp_path / "tracefs", "mm_page_alloc")  # a page event only
    with pytest.raises(RecordError, match=r"^this kernel has none of the kmem events asked for$"):
        record_tracefs(["true"], tmp_path / "out.txt", page=False, tracefs=fake)
    assert not (tmp_path / "out.txt").exists()
    assert list((fake / "instances").iterdir()) == []  # refused before making an instance


def test_a_tracefs_file_that_refuses_a_write_is_named(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # An instance without the event's directory: enabling it cannot be written.
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    fake = _fake_tracefs(tmp_path / "tracefs", "kmalloc")
    instance = fake / "instances" / f"kmem-record-{os.getpid()}"
    enable = instance / "events" / "kmem" / "kmalloc" / "enable"
    with pytest.raises(RecordError) as caught:
        record_tracefs(["true"], tmp_path / "out.txt", page=False, tracefs=fake)
    assert str(caught.value) == f"cannot write {enable}: No such file or directory"
    assert not (tmp_path / "out.txt").exists()  # the output is opened once tracing is ready


def _instance(tmp_path: Path, pipe_text: bytes) -> Path:
    """An instance directory whose trace_pipe holds ``pipe_text`` (a file: read to its end)."""
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "trace_pipe").write_bytes(pipe_text)
    return instance


def test_the_kernels_lost_event_markers_are_added_up(tmp_path: Path) -> None:
    # kernel/trace/trace.c prints "CPU:%d [LOST %lu EVENTS]\n" where the reader fell behind.
    text = (b"  ls-1  [000] .....  1.000001: kfree: call_site=f+0x1 ptr=0000000012345678\n"
            b"CPU:1 [LOST 123 EVENTS]\n"
            b"  ls-1  [001] .....  1.000002: kfree: call_site=f+0x1 ptr=0000000012345679\n"
            b"CPU:0 [LOST 7 EVENTS]\n"
            b"CPU:2 [LOST many EVENTS]\n"  # (not a count: not added)
            b"  sh-2  [000] .....  1.000003: kfree: call_site=g+0x2 ptr=000000001234567a\n")
    instance = _instance(tmp_path, text)
    out = io.BytesIO()
    result = record._run_and_read(["true"], instance, out, tmp_path / "out.txt")
    assert (result.status, result.lines, result.lost) == (0, 6, 130)
    assert out.getvalue() == text  # copied as the kernel wrote it
    assert (instance / "tracing_on").read_text() == "0\n"  # tracing stopped at the end


def test_an_interrupted_recording_kills_the_command(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    instance = _instance(tmp_path, b"")
    pid_file = tmp_path / "pid"
    real_sleep = time.sleep

    def interrupt_once_started(seconds: float) -> None:
        if pid_file.exists() and pid_file.read_text().strip():
            raise KeyboardInterrupt
        real_sleep(0.01)

    monkeypatch.setattr(time, "sleep", interrupt_once_started)
    command = ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"]
    with pytest.raises(KeyboardInterrupt):
        record._run_and_read(command, instance, io.BytesIO(), tmp_path / "out.txt")
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(pid, 0)


def test_perf_not_installed_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "perf" else which(name))
    assert main(["record", "--perf", "-o", str(tmp_path / "p.data"), "--", "true"]) == 2
    assert capsys.readouterr().err == (
        "kmem record: perf is not installed (kmem record without --perf and -g records through"
        " tracefs)\n")


def test_a_perf_that_writes_nothing_is_a_clear_error(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    perf = tmp_path / "perf"
    perf.write_text("#!/bin/sh\necho 'perf: failed to open kmem:kmalloc' >&2\nexit 255\n")
    perf.chmod(perf.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: str(perf))
    output = tmp_path / "p.data"
    with pytest.raises(RecordError) as caught:
        record_perf(["true"], output)
    assert str(caught.value) == f"perf record wrote no {str(output)!r} (exit status 255)"


# -- json_text ---------------------------------------------------------------------------------

class _Kind(IntEnum):
    SLAB = 1


class _Name(str):
    pass


@pytest.mark.parametrize("value", [
    math.nan, math.inf, -math.inf, 1.5, "é\n", None, True, False, 7,
    [math.inf, -math.inf, math.nan],
    _Kind.SLAB, _Name("kmalloc-64"), [_Kind.SLAB, _Name("x"), 2.0],
    {1.5: [1], math.inf: [2], None: [3], True: [4], False: [5], 2: [6], "s": [7]},
    {_Name("k"): {"a": [1]}},
], ids=repr)
def test_json_text_of_each_scalar_and_key_is_json_dumps(value: Any) -> None:
    assert json_text(value) == json.dumps(value, indent=2)


def test_a_key_json_refuses_is_refused_in_a_nested_dict_too() -> None:
    with pytest.raises(TypeError, match="keys must be str"):
        json_text({(1, 2): [3]})


def test_json_text_without_the_c_encoder_is_the_same_text(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    # (a Python built without _json: json.encoder.c_make_encoder is None)
    document = {"rows": [{"name": "kmalloc-64", "bytes": 64, "ratio": 1.5, "ok": True,
                          "none": None}], "n": 1}
    monkeypatch.setattr(json_text_module, "c_make_encoder", None)
    monkeypatch.setattr(json_text_module, "_FLAT_ENCODERS", {})
    assert json_text(document) == json.dumps(document, indent=2)


# -- the parser process ------------------------------------------------------------------------

def _trace_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.txt"
    path.write_text("".join(_LS[:200]))
    return path


def test_closing_a_parser_process_never_started_does_nothing(tmp_path: Path) -> None:
    parser = ParserProcess(_trace_file(tmp_path))
    parser.close()
    assert list(parser.parse()) == list(TraceParser().parse(_LS[:200]))


def _exit_at_once(raw: Any, skip_bad: bool, send: Any, receive: Any) -> None:
    os._exit(3)


def test_a_parser_child_that_dies_is_a_clear_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = _trace_file(tmp_path)
    monkeypatch.setattr(pipeline, "_child", _exit_at_once)
    with pytest.raises(TraceFileError) as caught:
        list(ParserProcess(path).parse())
    assert str(caught.value) == (
        f"the parser process of {str(path)!r} stopped without a word (exit code 3)")


def test_a_child_stuck_on_a_silent_fifo_is_stopped_when_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # a writer that never writes (nor closes)
    try:
        monkeypatch.setattr(pipeline, "_CLOSE_GRACE", 0.05)
        parser = ParserProcess(fifo)
        parser.start()
        parser.close()
        assert parser._child is not None and not parser._child.is_alive()
    finally:
        os.close(writer)


def test_a_system_refusing_the_larger_pipe_buffer_still_parses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fcntl = pytest.importorskip("fcntl")

    def refuse(*args: Any) -> Any:
        raise PermissionError(1, "Operation not permitted")  # above pipe-max-size, no root

    monkeypatch.setattr(fcntl, "fcntl", refuse)
    assert list(ParserProcess(_trace_file(tmp_path)).parse()) == list(
        TraceParser().parse(_LS[:200]))


# -- streams arriving in pieces ----------------------------------------------------------------

class _Pieces(io.RawIOBase):
    """A pipe delivering the given pieces of bytes, one read each (as a writer wrote them)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = [piece for piece in pieces if piece]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pieces:
            return 0
        piece = self._pieces.pop(0)
        size = min(len(buffer), len(piece))
        buffer[:size] = piece[:size]
        if size < len(piece):
            self._pieces.insert(0, piece[size:])
        return size


def _events(pieces: list[bytes]) -> list[Any]:
    with open_trace(io.BufferedReader(_Pieces(pieces))) as lines:
        return list(TraceParser().parse(lines))


def test_xz_padding_and_the_next_streams_magic_split_across_reads_are_read() -> None:
    text = "".join(_LS[:300]).encode()
    first, second = lzma.compress(text[:20000]), lzma.compress(text[20000:])
    expected = list(TraceParser().parse(_LS[:300]))
    # padding running over a read, then the next stream's magic arriving two bytes at a time
    assert _events([first + bytes(2), bytes(6), second[:2], second[2:4], second[4:]]
                   ) == expected


def test_a_few_bytes_after_the_xz_stream_are_trailing_garbage() -> None:
    packed = lzma.compress("".join(_LS[:50]).encode())
    with pytest.raises(TraceFileError, match=r"trailing garbage after the xz stream"
                                             r" \(b'\\xfd7'\)"):
        _events([packed + bytes(4), b"\xfd7"])  # a stream's magic cut short, then the end


def test_a_long_line_ending_in_a_later_read_is_cut_and_the_next_ones_read(tmp_path: Path
                                                                         ) -> None:
    # the line is the file's first (the reads of 64 KiB all fall inside it) and ends in the
    # read that takes it over the limit
    long = "x=" + "a" * (MAX_LINE_BYTES + 100) + "\n"
    path = tmp_path / "long.txt"
    path.write_text(long + "".join(_LS[20:40]))
    parser = TraceParser(skip_bad=True)
    with open_trace(path) as lines:
        events = list(parser.parse(lines))
    assert events == list(TraceParser().parse(_LS[20:40]))
    assert parser.bad_lines == 1 and parser.bad_examples[0].line_number == 1
    assert "longer than 65536 characters" in str(parser.bad_examples[0])


def test_the_trace_streams_bytes_can_be_read_by_size(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"# tracer: nop\nline two\n")
    with open_trace(path) as lines:
        buffer = lines.buffer  # type: ignore[attr-defined]
        assert buffer.read(5) == b"# tra"
        assert buffer.read() == b"cer: nop\nline two\n"



def test_an_instance_removed_by_someone_else_is_left_at_that(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_waiting(seconds: float) -> None:
        raise AssertionError("waited for an instance that is gone")

    monkeypatch.setattr(time, "sleep", no_waiting)
    record._remove_instance(tmp_path / "kmem-record-gone")


# -- the parser's readings and messages ----------------------------------------------------------

KMALLOC_LINE = ("bash-4479    [000] .....   388.061916: kmalloc: call_site=lsm_blob_alloc+0x3b/0x60"
                " ptr=00000000eff03f93 bytes_req=11 bytes_alloc=16"
                " gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO node=-1 accounted=true\n")
# the event tuple: kind, cpu, time, call site, pointer, cache name, bytes_req, bytes_alloc,
# gfp flags, node, pfn, order, migratetype
KMALLOC_EVENT = (KMALLOC, 0, "388.061916:", "lsm_blob_alloc+0x3b/0x60", "00000000eff03f93", "",
                 11, 16, "GFP_KERNEL_ACCOUNT|__GFP_ZERO", -1, -1, -1, -1)
PAGE_FREE = "bash-4479    [000] .....   388.062159: mm_page_free: {}\n"


def test_lines_without_the_irq_flags_column_read_the_same() -> None:
    # ftrace with the irq-info option off prints no flags column ("[000]   388.061916:")
    bare = KMALLOC_LINE.replace(".....   ", "")
    assert list(TraceParser().parse([bare])) == [KMALLOC_EVENT]
    warmed = TraceParser()
    assert list(warmed.parse([KMALLOC_LINE, bare, bare])) == [KMALLOC_EVENT] * 3


def test_fields_in_another_order_are_read_by_their_names() -> None:
    swapped = KMALLOC_LINE.replace(
        "call_site=lsm_blob_alloc+0x3b/0x60 ptr=00000000eff03f93",
        "ptr=00000000eff03f93 call_site=lsm_blob_alloc+0x3b/0x60")
    assert list(TraceParser().parse([swapped, swapped, KMALLOC_LINE])) == [KMALLOC_EVENT] * 3


def test_gfp_flags_mixing_hex_and_names_are_kept_as_printed() -> None:
    # (flags the kernel has no name for print as hex: "0x2|__GFP_ZERO")
    line = KMALLOC_LINE.replace("GFP_KERNEL_ACCOUNT|__GFP_ZERO", "0x2|__GFP_ZERO")
    (event,) = TraceParser().parse([line])
    assert event[8] == "0x2|__GFP_ZERO"


def test_a_batched_free_without_its_order_is_one_page() -> None:
    line = ("sh-4522    [001] ...2.   388.062343: mm_page_free_batched: page=00000000ab5c4d69"
            " pfn=0x110900\n")
    assert list(TraceParser().parse([line, line])) == [
        (MM_PAGE_FREE_BATCHED, 1, "388.062343:", "", "", "", 0, 0, "", -1, 0x110900, 0, -1)] * 2


def test_page_lines_with_only_the_struct_page_pointer_pair_by_it() -> None:
    # (the oldest layouts print page=%p and no pfn: the pointer stands for the page)
    alloc = ("bash-1187  [001] ....   218.347230: mm_page_alloc: page=ffffea0001ecaa00 order=1"
             " migratetype=0 gfp_flags=GFP_KERNEL\n")
    free = "bash-1187  [001] ....   218.347240: mm_page_free: page=ffffea0001ecaa00 order=1\n"
    events = list(TraceParser().parse([alloc, free]))
    assert [(e[0], e[10], e[11]) for e in events] == [(MM_PAGE_ALLOC, 0xffffea0001ecaa00, 1),
                                                      (MM_PAGE_FREE, 0xffffea0001ecaa00, 1)]


@pytest.mark.parametrize(("line", "reason"), [
    (PAGE_FREE.format("order=0"), "missing pfn= (truncated line?)"),
    (PAGE_FREE.format("page=00000000750f8522 pfn=0x10cdcc"), "missing order= (truncated line?)"),
    (PAGE_FREE.format("page=00000000750f8522 pfn=0x10cdcc order=0").replace(
        "mm_page_free:", "mm_page_alloc_zone_locked:"), "missing migratetype= (truncated line?)"),
    (PAGE_FREE.format("page=00000000750f8522 pfn=0x10cdcc order=0").replace(
        "mm_page_free:", "mm_page_pcpu_drain:"), "missing migratetype= (truncated line?)"),
    ("bash-4479    [000] .....   388.061800: kmem_cache_alloc: call_site=__d_alloc+0x2d/0x230"
     " ptr=00000000fd9c5bdb name= bytes_req=192 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1"
     " accounted=true\n", "empty name= (truncated line?)"),
    (KMALLOC_LINE.replace("ptr=00000000eff03f93", "ptr="), "missing ptr= (truncated line?)"),
], ids=["no pfn", "no order", "zone_locked without migratetype",
        "pcpu_drain without migratetype", "empty name", "empty ptr"])
def test_a_truncated_line_is_named_with_what_is_missing(line: str, reason: str) -> None:
    with pytest.raises(TraceFormatError) as caught:
        list(TraceParser().parse([KMALLOC_LINE, line]))
    assert (caught.value.line_number, caught.value.reason) == (2, reason)


def test_parse_trace_is_a_parsers_events() -> None:
    assert list(parse_trace(_LS, skip_bad=True)) == list(TraceParser().parse(_LS))


def test_an_error_of_the_lines_themselves_is_not_taken_for_the_traces() -> None:
    def lines() -> Iterator[str]:
        yield KMALLOC_LINE
        raise RuntimeError("the source of the lines failed")

    with pytest.raises(RuntimeError, match="the source of the lines failed"):
        list(TraceParser(skip_bad=True).parse(lines()))


def test_a_parser_whose_memo_tables_are_full_reads_the_same_events(
        monkeypatch: pytest.MonkeyPatch) -> None:
    expected = list(TraceParser().parse(_LS))
    monkeypatch.setattr(parse_module, "MAX_MEMO_CHARS", 0)  # nothing more may be learnt
    assert list(TraceParser().parse(_LS)) == expected


@pytest.mark.parametrize("compress", [lzma.compress, gzip.compress], ids=["xz", "gzip"])
@pytest.mark.parametrize("first", [1, 2, 5])
def test_a_compressed_trace_from_a_pipe_whose_first_read_is_short_is_decompressed(
        compress: Any, first: int) -> None:
    # (bug: the magic number was looked for in the first read only, and a stream whose first
    # read brought fewer bytes than the magic was read as text: "carriage return inside")
    packed = compress("".join(_LS[:60]).encode())
    assert _events([packed[:first], packed[first:]]) == list(TraceParser().parse(_LS[:60]))


def test_a_perf_data_file_from_a_pipe_in_pieces_is_named() -> None:
    head = b"PERFILE2" + bytes(100)
    with pytest.raises(TraceFileError, match=r"^the trace: not a kmem trace: a perf\.data file"):
        _events([head[:3], head[3:7], head[7:]])


@pytest.mark.parametrize("first", [1, 5])
@pytest.mark.parametrize("kind", ["perf.data", "text"])
def test_standard_input_whose_first_read_is_short_is_read_whole(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], first: int,
        kind: str) -> None:
    # (bug: the perf.data check of standard input peeked at its first read only: a perf pipe
    # whose first read brought fewer than 8 bytes was read as text and refused, "not a kmem
    # trace: a perf.data file (... read it from a file or from standard input)")
    name = "perf-data/pipe-ls.data.xz" if kind == "perf.data" else "kmem-6.18-ls.txt.xz"
    data = lzma.decompress((LS_TRACE.parent / name).read_bytes())
    expected = None
    for pieces in [[data], [data[:first], data[first:]]]:
        stdin = io.TextIOWrapper(io.BufferedReader(_Pieces(pieces)))
        monkeypatch.setattr("sys.stdin", stdin)
        got = _cli(capsys, "stat", "--json", "-")
        assert got[0] == 0, got[2]
        assert expected is None or got == expected
        expected = got


@pytest.mark.parametrize("compress", [lzma.compress, gzip.compress], ids=["xz", "gzip"])
@pytest.mark.parametrize("name", ["perf-data/pipe-ls.data.xz", "kmem-6.18-ls.txt.xz"])
def test_a_compressed_trace_on_standard_input_reads_as_its_file(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str,
        compress: Any, tmp_path: Path) -> None:
    # (bug: standard input was checked for perf.data before decompression: a compressed
    # perf.data there was refused as "a perf.data file (... read it from a file or from
    # standard input)", which kmem stat FILE reads)
    packed = tmp_path / "trace"
    packed.write_bytes(compress(lzma.decompress((LS_TRACE.parent / name).read_bytes())))
    expected = _cli(capsys, "stat", "--json", str(packed))
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BufferedReader(
        _Pieces([packed.read_bytes()]))))
    got = _cli(capsys, "stat", "--json", "-")
    assert got[0] == expected[0] == 0, got[2]
    assert got[1] == expected[1]


def test_a_cut_compressed_perf_data_on_standard_input_is_one_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = lzma.decompress((LS_TRACE.parent / "perf-data/pipe-ls.data.xz").read_bytes())
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BufferedReader(
        _Pieces([lzma.compress(data)[:3000]]))))
    status, out, err = _cli(capsys, "stat", "-")
    assert (status, out) == (2, "")
    assert err.startswith("kmem stat: standard input: cannot decompress: ") and err.count("\n") == 1


# -- sweeps ------------------------------------------------------------------------------------

ONE_TRACE = 'traces = ["traces/tar-6.18-first4000.txt.xz"]\nevery = 500\n'


def _sweep_spec(folder: Path, text: str) -> Path:
    return sweep_folder(folder, text)


def _replay_json(capsys: pytest.CaptureFixture[str], *arguments: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["replay", "--json", "--serial", "--every", "500", *arguments]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def test_a_row_with_the_page_machine_holds_what_kmem_replay_predicts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _sweep_spec(tmp_path, ONE_TRACE + '[parameters]\nmemory = "64M"\n'
                       'layout = "DMA32=16M,Normal=48M"\n')
    (row,) = sweep(spec, jobs=1).rows
    pcp = _replay_json(capsys, "--memory", "64M", "--layout", "DMA32=16M,Normal=48M",
                       str(tmp_path / "traces" / "tar-6.18-first4000.txt.xz"))["pcp"]
    assert row["layout"] == "DMA32=16M,Normal=48M"
    assert row["predicted_pcp_refills"] == pcp["predicted"]["mm_page_alloc_zone_locked"] > 0
    assert row["predicted_pcp_drains"] == pcp["predicted"]["mm_page_pcpu_drain"]
    assert (row["zone_lock"], row["fallbacks"]) == (pcp["zone_lock"], pcp["fallbacks"])
    assert row["machine_unusable_costly_end"] == pcp["fragmentation"]["unusable_index"][3]


def test_resuming_into_a_new_folder_runs_everything(tmp_path: Path) -> None:
    spec = _sweep_spec(tmp_path, ONE_TRACE + "[parameters]\ncpus = [1, 2]\n")
    result = sweep(spec, output=tmp_path / "new", jobs=1, resume=True)
    assert (result.resumed, len(result.rows)) == (0, 2)
    assert (tmp_path / "new" / RESULTS).read_text() == result.table_text()


def test_resuming_skips_lines_that_are_no_run_record(tmp_path: Path) -> None:
    spec = _sweep_spec(tmp_path, ONE_TRACE + "[parameters]\ncpus = [1, 2]\n")
    whole = sweep(spec, output=tmp_path / "whole", jobs=1)
    partial = tmp_path / "partial"
    partial.mkdir()
    first = whole.rows[0]["run"]
    for name in (RESULTS, TIMELINES):
        lines = (tmp_path / "whole" / name).read_text().splitlines(keepends=True)
        (partial / name).write_text('[1, 2]\n{"run": 3}\n"text"\n' + lines[0])
    ran: list[str] = []
    resumed = sweep(spec, output=partial, jobs=1, resume=True,
                    on_run=lambda run, outcome, failure: ran.append(run.key))
    assert resumed.resumed == 1 and ran == [whole.rows[1]["run"]] and first not in ran
    assert (partial / RESULTS).read_bytes() == (tmp_path / "whole" / RESULTS).read_bytes()


def test_the_progress_bar_prints_a_failed_run_with_its_parameters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _sweep_spec(tmp_path, 'traces = ["traces/zz-broken.txt.xz"]\n'
                       '[parameters]\ncpus = [1, 2]\n')
    line = broken_trace(tmp_path / "traces" / "zz-broken.txt.xz")
    result = sweep(spec, jobs=1, progress=True)
    assert len(result.failures) == 2 and not result.rows
    err = capsys.readouterr().err
    for cpus in (1, 2):
        assert (f"kmem sweep: run failed: traces/zz-broken.txt.xz policy=slub kernel=6.18"
                f" cpus={cpus} ") in err
    assert f": TraceFormatError: line {line}: " in err
    assert "2/2" in err


def _forkserver_children() -> list[int]:
    from multiprocessing import forkserver

    server = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == server:
                children.append(int(entry.name))
    return children


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers in /proc")
def test_runs_of_a_worker_that_dies_are_failures_and_the_sweep_ends(tmp_path: Path) -> None:
    spec = _sweep_spec(tmp_path, 'traces = ["traces/*.txt.xz"]\nevery = 500\n'
                       '[parameters]\ncpus = [1, 2, 3]\n')
    killed: list[int] = []

    def kill_the_workers(run: Any, outcome: Any, failure: Any) -> None:
        if not killed:  # (as the kernel's OOM killer would, in the middle of the sweep)
            killed.extend(_forkserver_children())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    result = sweep(spec, output=tmp_path / "out", jobs=2, on_run=kill_the_workers)
    assert killed and result.runs == 9 and result.failures
    for failure in result.failures:
        assert failure.error.startswith("BrokenProcessPool: the worker running it failed: ")
    failed = [json.loads(line) for line in (tmp_path / "out" / FAILURES).read_text().splitlines()]
    assert [f["run"] for f in failed] == [f.run for f in result.failures]
    assert sweep(spec, jobs=2).failures == ()  # the next sweep has workers again


def test_the_dask_executor_on_a_cluster_of_its_own_gives_the_pools_table(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    spec = _sweep_spec(tmp_path, ONE_TRACE + "[parameters]\ncpus = [1, 2]\n")
    here = sweep(spec, jobs=1)
    on_dask = sweep(spec, executor="dask", jobs=1)  # (address None: a LocalCluster here)
    assert on_dask.table_text() == here.table_text()


def test_a_scheduler_address_dask_cannot_use_is_refused_before_any_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    spec = _sweep_spec(tmp_path, ONE_TRACE)
    assert main(["sweep", str(spec), "-o", str(tmp_path / "out"), "--dask", "not an address",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmem sweep: cannot reach the Dask scheduler at 'not an address': ")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


# -- sweep specs -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    (ONE_TRACE + "[parameters]\nlayers = 3\n",
     ":4: parameters.layers: expected layers as text ('slab,page', 'slab' or 'page'), got 3"),
    (ONE_TRACE + "[parameters]\nmachine = 'yes'\n",
     ":4: parameters.machine: expected true or false, got 'yes'"),
    (ONE_TRACE + "[parameters]\nlayout = 5\n",
     ":4: parameters.layout: expected a zoneinfo file or zone sizes as text, got 5"),
    (ONE_TRACE + "report = 3\n", ":3: report: expected a table ([report])"),
    (ONE_TRACE + "[parameters]\ncpus = [1, 2]\n[report]\nheatmap = 'cpus'\n",
     ":6: report.heatmap: expected two parameter names, got 'cpus'"),
    (ONE_TRACE + "[parameters]\ncpus = [1, 2]\n[report]\nheatmap = ['cpus', 'cpus']\n",
     ":6: report.heatmap: two different parameters, not 'cpus' twice"),
    (ONE_TRACE + 'x = "unterminated', ": not valid TOML: Unterminated string (at end of"
     " document)"),
    ('traces = ["traces/perf.data"]\n', ":1: traces[0]: "),
], ids=["layers", "machine", "layout", "report", "heatmap one", "heatmap twice", "toml end",
        "perf.data"])
def test_more_bad_specs_are_named_with_line_and_key(tmp_path: Path, text: str, message: str
                                                    ) -> None:
    spec = _sweep_spec(tmp_path, text)
    (tmp_path / "traces" / "perf.data").write_bytes(b"PERFILE2" + bytes(200))
    with pytest.raises(SweepSpecError) as raised:
        load_sweep_spec(spec)
    assert str(raised.value).startswith(f"{spec}{message}"), str(raised.value)
    if "perf.data" in text:
        assert str(raised.value).endswith("not a kmem trace: a perf.data file (kmem stat and"
                                          " kmem replay read it from a file or from standard"
                                          " input)")


def test_a_spec_mapping_takes_the_replayers_own_defaults(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sweep_folder(tmp_path, ONE_TRACE)
    monkeypatch.chdir(tmp_path)
    spec = sweep_spec({"traces": ["traces/tar-6.18-first4000.txt.xz"],
                       "parameters": {"layers": ("slab", "page"), "layout": None}})
    assert spec.parameters["layers"] == ("slab,page",)
    assert spec.parameters["layout"] == ("",)


def test_a_parameter_row_naming_no_replayer_option_is_caught(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    import kmem.trace.sweep_spec as sweep_spec_module

    bogus = sweep_spec_module.ReplayParameter("speed", "speed", lambda value: 1)
    monkeypatch.setattr(sweep_spec_module, "PARAMETERS", (*sweep_spec_module.PARAMETERS, bogus))
    with pytest.raises(InvalidArgumentError, match="sweep parameter 'speed' sets Replayer's"
                                                   " 'speed', which Replayer does not take"):
        sweep_spec_module.parameter_defaults()


# -- the page machine with the slab layer on it ------------------------------------------------
# (kmem.trace.machine_replay's rule: an mm_page_alloc that could be a slab page -- not movable,
# no user page -- waits for its CPU's next event; a slab allocation there makes it the kernel's
# slab page, skipped with its free; any other event, or the end of the trace, replays it.)

def _page_event(kind: int, pfn: int, cpu: int, gfp: str = "GFP_KERNEL", mt: int = 0,
                order: int = 0) -> tuple[Any, ...]:
    return (kind, cpu, "1.000000:", "", "", "", 0, 0, gfp, -1, pfn, order, mt)


def _kmalloc_event(cpu: int, ptr: str = "00000000deadbeef") -> tuple[Any, ...]:
    return (KMALLOC, cpu, "1.000000:", "f+0x1/0x2", ptr, "", 64, 64, "GFP_KERNEL", -1, -1, -1,
            -1)


USER_PAGE: dict[str, Any] = {"gfp": "GFP_HIGHUSER_MOVABLE", "mt": 1}  # (never a slab page)


def _slab_machine() -> Any:
    from kmem.trace.machine_replay import MachineReplay

    machine = Replayer(layers=("page",), machine=True, warm="cold").machine_replay
    assert machine is not None
    return MachineReplay(machine.machine, warm="cold", slab_pages_elsewhere=True)


def _feed(replay: Any, events: list[tuple[Any, ...]]) -> dict[str, int]:
    batch = event_batch(events)
    replay.feed(batch.kinds, batch.cpus, batch.keys, batch.tails, batch.times)
    replay.finish()
    counts: dict[str, int] = replay.counts
    return counts


def _free_pages(replay: Any) -> int:
    """The machine's free pages, per-CPU lists drained first (at the end of a test)."""
    replay.machine.drain_all_pages()
    free: int = replay.machine.nr_free_pages
    return free


def test_a_kernel_slab_page_freed_in_a_batch_is_skipped_with_its_free() -> None:
    replay = _slab_machine()
    before = _free_pages(replay)
    counts = _feed(replay, [_page_event(MM_PAGE_ALLOC, 0x100, 0), _kmalloc_event(0),
                            _page_event(MM_PAGE_FREE_BATCHED, 0x100, 0)])
    assert counts["slab_page_events_skipped"] == 2  # its allocation and its free
    assert (counts["allocs"], counts["frees"], counts["unknown_frees"]) == (0, 0, 0)
    assert _free_pages(replay) == before


def test_a_slab_allocation_the_replay_keeps_decides_the_waiting_page_too() -> None:
    # (a kmalloc the replay does not feed to the machine: kmem.trace.replay calls slab_event)
    replay = _slab_machine()
    batch = event_batch([_page_event(MM_PAGE_ALLOC, 0x100, 0)])
    replay.feed(batch.kinds, batch.cpus, batch.keys, batch.tails, batch.times)
    replay.slab_event(1)  # another CPU's: the page still waits
    replay.slab_event(0)
    replay.finish()
    assert (replay.counts["slab_page_events_skipped"], replay.counts["allocs"]) == (1, 0)


def test_a_slab_page_freed_elsewhere_and_not_yet_committed_was_free() -> None:
    replay = _slab_machine()
    before = _free_pages(replay)
    counts = _feed(replay, [
        _page_event(MM_PAGE_ALLOC, 0x100, 1, **USER_PAGE),  # a user page on CPU 1...
        _page_event(MM_PAGE_FREE, 0x100, 1),  # ...freed there, its commit still to come
        _page_event(MM_PAGE_ALLOC, 0x100, 0),  # CPU 0 gets it again: a slab page
        _kmalloc_event(0)])
    assert (counts["allocs"], counts["frees"], counts["slab_page_events_skipped"]) == (1, 1, 1)
    assert _free_pages(replay) == before


def test_a_live_page_that_becomes_a_slab_page_had_its_free_lost() -> None:
    replay = _slab_machine()
    before = _free_pages(replay)
    counts = _feed(replay, [_page_event(MM_PAGE_ALLOC, 0x100, 0, **USER_PAGE),
                            _page_event(MM_PAGE_ALLOC, 0x100, 1), _kmalloc_event(1)])
    assert (counts["allocs"], counts["missed_frees"], counts["slab_page_events_skipped"]) == (
        1, 1, 1)
    assert _free_pages(replay) == before  # the user page went back when its free was found lost


def test_a_page_still_waiting_at_the_end_of_the_trace_is_an_ordinary_page() -> None:
    replay = _slab_machine()
    before = _free_pages(replay)
    counts = _feed(replay, [_page_event(MM_PAGE_ALLOC, 0x100, 0)])
    assert (counts["allocs"], counts["slab_page_events_skipped"]) == (1, 0)
    assert _free_pages(replay) == before - 1


# -- replays: the kernel's sheaves, random kmalloc caches, sampling, the page layer -------------

def _kmalloc(ptr: str, cpu: int = 0, site: str = "f+0x1/0x2", req: int = 64, alloc: int = 64,
             gfp: str = "GFP_KERNEL") -> tuple[Any, ...]:
    return (KMALLOC, cpu, "1.000000:", site, ptr, "", req, alloc, gfp, -1, -1, -1, -1)


def _kfree(ptr: str, cpu: int = 0) -> tuple[Any, ...]:
    return (KFREE, cpu, "1.000000:", "g+0x1/0x2", ptr, "", 0, 0, "", -1, -1, -1, -1)


SHEAF_SITE = "__alloc_empty_sheaf+0x2c/0x80"


def test_a_kernel_sheafs_slab_page_is_skipped_with_the_sheaf() -> None:
    # the page a new kmalloc slab needed for the kernel's sheaf, then the sheaf's kmalloc: both
    # are the kernel's own business (kmem's model makes its own sheaves)
    events = [_page_event(MM_PAGE_ALLOC, 0x100, 0), _kmalloc("00000000000000a0", site=SHEAF_SITE),
              _kfree("00000000000000a0")]
    result = Replayer(kernel="6.18").run(events)
    assert result.page["slab_page_events_skipped"] == 1 and result.page["allocs"] == 0
    assert result.sheaves["kernel_sheaf_events"] == 2
    assert result.live_objects_at_end == 0 and result.unknown_frees == 0
    on_machine = Replayer(kernel="6.18", slab_on_machine=True, warm="cold").run(events).pcp
    assert on_machine is not None
    assert on_machine["pages"]["slab_page_events_skipped"] == 1
    assert on_machine["pages"]["allocs"] == 0


def test_with_random_kmalloc_caches_a_page_before_a_kmalloc_is_its_slab_page() -> None:
    events = [_page_event(MM_PAGE_ALLOC, 0x100, 0), _kmalloc("00000000000000a0")]
    choices: list[dict[str, Any]] = [{}, {"slab_on_machine": True, "warm": "cold"}]
    for options in choices:
        result = Replayer(random_kmalloc_seed=7, **options).run(events)
        page = result.pcp["pages"] if result.pcp is not None else result.page
        assert (page["slab_page_events_skipped"], page["allocs"]) == (1, 0), options
        assert result.live_objects_at_end == 1


def _odd_kmallocs() -> list[tuple[Any, ...]]:
    """kmallocs on a CPU beyond the replay's, a live pointer allocated again, a failed one,
    bytes_alloc kmem does not give, and more than a tiny memory holds."""
    events = [_kmalloc("00000000000000a0", cpu=5), _kmalloc("00000000000000a0", cpu=1),
              _kmalloc(NULL_PTR)]
    events += [_kmalloc(f"00000000000001{i:02x}", req=64 + i, alloc=100 + i) for i in range(12)]
    events += [_kmalloc(f"00000000000002{i:02x}", req=4096, alloc=4096) for i in range(40)]
    return events


def test_random_kmalloc_caches_count_the_odd_events_as_the_replay_loop_does() -> None:
    # kmalloc events go one by one with their caller there: the figures must be the loop's
    plain = Replayer(memory=64 << 10).run(_odd_kmallocs())
    seeded = Replayer(memory=64 << 10, random_kmalloc_seed=3).run(_odd_kmallocs())
    assert plain.missed_frees == 1 and plain.traced_slab_failures == 1
    assert plain.bytes_alloc_mismatches == 12 and len(plain.mismatch_examples) == 10
    assert plain.kmem_oom > 0
    for figure in ("missed_frees", "traced_slab_failures", "bytes_alloc_mismatches",
                   "bytes_alloc_checked", "mismatch_examples", "kmem_oom",
                   "live_objects_at_end"):
        assert getattr(seeded, figure) == getattr(plain, figure), figure


def test_replaying_batch_by_batch_takes_a_new_sampling_interval() -> None:
    from kmem.trace.events import EventBatch

    replayer = Replayer()
    assert [s.events for s in replayer.start(1000)] == [0]
    batch = event_batch([_kmalloc(f"00000000000003{i:02x}") for i in range(12)])
    assert [s.events for s in replayer.replay_batch(batch, every=5)] == [5, 10]
    assert replayer.replay_batch(EventBatch(b"", [], [], [], [], [])) == []
    for every in (0, True, 2.5):
        with pytest.raises(InvalidArgumentError, match=f"every must be an int >= 1, got {every}"):
            replayer.start(every)  # type: ignore[arg-type]


def test_no_layer_at_all_is_refused_at_the_command_line(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert main(["replay", "--layers", " , ", str(LS_TRACE)]) == 2
    assert capsys.readouterr().err == (
        "kmem replay: give at least one layer: slab, page or slab,page\n")


def test_page_allocations_beyond_kmems_memory_are_counted() -> None:
    # 1 MiB is 256 pages: one order-8 block takes them all, the next cannot be had
    events = [_page_event(MM_PAGE_ALLOC, 0x1000, 0, order=8, **USER_PAGE),
              _page_event(MM_PAGE_ALLOC, 0x2000, 0, order=8, **USER_PAGE)]
    result = Replayer(layers=("page",), memory=1 << 20).run(events)
    assert (result.kmem_oom, result.page["allocs"]) == (1, 1)
    assert result.memory_in_use["page"]["peak_bytes"] == 1 << 20


# -- slabratetop, perf script call chains, perf kmem stat's summary ----------------------------

def test_kmallocs_no_kmalloc_cache_serves_are_named_as_slabratetop_rows() -> None:
    from kmem.trace.rates import slab_rates

    # kmalloc(0) returns ZERO_SIZE_PTR (0x10) from no cache; above KMALLOC_MAX_CACHE_SIZE
    # (8 KiB) kmalloc_large takes pages: bytes_alloc is PAGE_SIZE << order
    events = [_kmalloc("0000000000000010", req=0, alloc=0),
              _kmalloc("00000000000000a0", req=10000, alloc=16384),
              _kmalloc("00000000000000b0", req=8192, alloc=8192)]
    (interval,) = slab_rates(events).intervals
    assert [(c.name, c.allocs, c.bytes) for c in interval.caches] == [
        ("kmalloc-large", 1, 16384), ("kmalloc-8k", 1, 8192), ("kmalloc-0", 1, 0)]


def test_a_script_cut_after_a_page_events_allocator_frames_gives_it_no_site() -> None:
    from kmem.trace.script_callchains import ScriptCallchains

    head = ("  a  1 [000]   1.000001:    kmem:mm_page_alloc: page=0x1 pfn=0x1 order=0"
            " migratetype=0 gfp_flags=GFP_KERNEL\n")
    chains = ScriptCallchains()
    assert list(chains.lines([head, "\tffffffff81000010 __get_free_pages+0x10"
                                    " ([kernel.kallsyms])\n"])) == [head]
    assert list(chains.sites) == [""]
    bare = ScriptCallchains()  # (a page event as the last line, no frame read yet)
    assert list(bare.lines([head])) == [head] and list(bare.sites) == [""]


def test_the_slab_summary_has_no_net_line_when_everything_was_freed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # builtin-kmem.c print_slab_summary: "Net total bytes allocated" only if allocated > freed
    trace = tmp_path / "t.txt"
    trace.write_text(KMALLOC_LINE + KMALLOC_LINE.replace("388.061916: kmalloc:", "388.061917:"
                                                         " kfree:").split(" bytes_req")[0]
                     + "\n")
    assert main(["stat", "--slab", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "Total bytes allocated: 16\nTotal bytes freed:     16\n" in out
    assert "Net total" not in out
    assert "Total bytes wasted on internal fragmentation: 5\n" in out


# -- a trace read from a pipe named by its path (kmem stat <(xzcat trace.xz)) --------------------

class _PipePath:
    """/dev/fd/N of a pipe a thread fills with ``data`` (what bash's <(...) hands over)."""

    def __init__(self, data: bytes) -> None:
        self._read, write = os.pipe()
        self.path = f"/dev/fd/{self._read}"

        def fill() -> None:
            try:
                with os.fdopen(write, "wb") as out:
                    out.write(data)
            except BrokenPipeError:
                pass

        threading.Thread(target=fill, daemon=True).start()

    def close(self) -> None:
        os.close(self._read)  # (a writer still blocked gets EPIPE and ends)


def _cli(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(arguments))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")
@pytest.mark.parametrize("command", [["stat", "--json"], ["replay", "--json", "--every", "500"]])
@pytest.mark.parametrize("trace", [LS_TRACE, LOST_TRACE], ids=["ls", "lost"])
def test_a_trace_from_a_pipe_named_by_its_path_reads_as_the_file(
        capsys: pytest.CaptureFixture[str], command: list[str], trace: Path) -> None:
    # (bug: the perf.data check read the pipe's first bytes, which the text reader then lacked:
    # "no [cpu] column" on a cut first line, or an xz stream taken for "a binary file"; and
    # replay read the pipe a second time for its lost events, finding nothing)
    expected = _cli(capsys, *command, str(trace))
    pipe = _PipePath(trace.read_bytes())
    try:
        got = _cli(capsys, *command, pipe.path)
    finally:
        pipe.close()
    assert got[0] == expected[0] == 0, got[2]
    assert got[1] == expected[1]


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")
def test_a_perf_data_from_a_pipe_named_by_its_path_says_where_kmem_reads_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    pipe = _PipePath(lzma.decompress((LS_TRACE.parent / "perf-data" /
                                      "kmem-record-sleep.data.xz").read_bytes()))
    try:
        status, out, err = _cli(capsys, "stat", pipe.path)
    finally:
        pipe.close()
    assert (status, out) == (2, "")
    assert err == (f"kmem stat: {pipe.path}: not a kmem trace: a perf.data file (kmem stat and"
                   " kmem replay read it from a file or from standard input)\n")


# -- perf kmem stat --time on trace text ---------------------------------------------------------

def test_a_time_window_holding_the_whole_trace_changes_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    # the ls trace's events are at 388.061769 to 388.068385 s
    whole = _cli(capsys, "stat", "--json", str(LS_TRACE))
    assert _cli(capsys, "stat", "--json", "--time", "388.0,389.0", str(LS_TRACE)) == whole


def test_a_time_window_holding_no_event_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _cli(capsys, "stat", "--time", "1,2", str(LS_TRACE))
    assert (status, out) == (3, "")
    assert err == (f"kmem: warning: {LS_TRACE} holds no kmem events in --time 1,2 (5459"
                   " lines/samples read); nothing to report\n")
    later = _cli(capsys, "stat", "--json", "--time", "388.068,", str(LS_TRACE))
    assert later[0] == 0
    events = json.loads(later[1])["events"]
    assert 0 < sum(events.values()) < sum(json.loads(
        _cli(capsys, "stat", "--json", str(LS_TRACE))[1])["events"].values())


def test_a_perf_script_line_with_a_column_after_the_time_is_refused_naming_it() -> None:
    # (perf script -F comm,cpu,time,period,event,trace puts the period there: not a layout
    # kmem reads, refused with its token rather than misread)
    line = ("  bash [000]   388.061916:          1 kmem:kmalloc: call_site=f+0x1/0x2"
            " ptr=0xffff8881000000a0 bytes_req=11 bytes_alloc=16 gfp_flags=GFP_KERNEL"
            " node=-1 accounted=true\n")
    with pytest.raises(TraceFormatError) as caught:
        list(TraceParser().parse([KMALLOC_LINE, line]))
    assert (caught.value.line_number, caught.value.reason) == (2, "bad event name '1'")


# -- perf.data layouts (built as tests/test_cov_trace2.py builds them) ----------------------------

def test_a_kmalloc_format_with_a_field_before_its_pointer_is_read_by_offsets() -> None:
    # bytes_req between call_site and ptr: the fields after the pointer are no one stretch
    fields = [*made.COMMON, ("unsigned long call_site", 8, 8, 0), ("size_t bytes_req", 16, 8, 0),
              ("const void * ptr", 24, 8, 0), ("size_t bytes_alloc", 32, 8, 0),
              ("unsigned long gfp_flags", 40, 8, 0), ("int node", 48, 4, 1)]
    payload = struct.pack("<HBBiQQQQQi", made.KMALLOC_ID, 0, 0, 1, 0xffffffff81234567, 100,
                          0xffff888001000000, 128, 0xcc0, 1)
    records = made.sample(payload, time=10**9) + made.sample(payload, time=2 * 10**9)
    data = made.perf_file(made.kmem_attrs(), records, made.kmem_tracing(kmalloc_fields=fields))
    expected = (KMALLOC, 0, "1.000000:", "0xffffffff81234567", "0xffff888001000000", "", 100,
                128, "GFP_KERNEL", 1, -1, -1, -1)
    assert made.events_of(data) == [expected, (*expected[:2], "2.000000:", *expected[3:])]


def test_a_32_bit_kernels_page_event_is_read_with_its_ip_as_call_site() -> None:

    fields = [*made.COMMON, ("unsigned long pfn", 8, 4, 0), ("unsigned int order", 12, 4, 0),
              ("unsigned long gfp_flags", 16, 4, 0), ("int migratetype", 20, 4, 1)]
    tracing = made.tracing_data({"kmem": [
        made.format_text("kmalloc", made.KMALLOC_ID, made.KMALLOC_FIELDS, made.GFP_PRINT),
        made.format_text("kfree", made.KFREE_ID, made.KFREE_FIELDS),
        made.format_text("mm_page_alloc", made.PAGE_ALLOC_ID, fields, made.GFP_PRINT)]})
    payload = struct.pack("<HBBiIIIi", made.PAGE_ALLOC_ID, 0, 0, 1, 0x1234, 2, 0xcc0, 0)
    records = made.sample(payload, time=10**9, ip=0xc1000010)
    events = made.events_of(made.perf_file(made.kmem_attrs(), records, tracing))
    assert events == [(MM_PAGE_ALLOC, 0, "1.000000:", "0xc1000010", "", "", 0, 0, "GFP_KERNEL",
                       -1, 0x1234, 2, 0)]


def test_lost_records_before_any_sample_and_of_an_unknown_id_are_reported() -> None:

    # sample_id_all: the trailer (TIME, ID, CPU in the kernel's order) says when and where
    kind = made.SAMPLE_TIME | made.SAMPLE_ID | made.SAMPLE_CPU | made.SAMPLE_RAW
    trailer = struct.pack("<QQII", 3_000_000_000, 1, 2, 0)
    unknown = struct.pack("<QQII", 4_000_000_000, 99, 1, 0)
    records = (made.record(2, struct.pack("<QQ", 1, 5) + trailer)  # PERF_RECORD_LOST
               + made.record(13, struct.pack("<Q", 4) + unknown))  # LOST_SAMPLES of id 99
    attrs = [(made.attr(made.KMALLOC_ID, kind), [1])]
    reader = PerfData(made.perf_file(attrs, records, made.kmem_tracing()))
    try:
        assert [event for batch in reader.batches() for event in batch_events(batch)] == []
        assert [(r.kind, r.count, r.cpu, r.time, r.event) for r in reader.lost] == [
            ("LOST", 5, 2, 3_000_000_000, ""), ("LOST_SAMPLES", 4, 1, 4_000_000_000, "id 99")]
        assert reader.lost_events_report().per_event == {"id 99": 4}
    finally:
        reader.close()


def test_perf_data_from_a_pipe_named_by_its_path_is_read_whole() -> None:
    data = lzma.decompress((LS_TRACE.parent / "perf-data" / "kmem-record-sleep.data.xz"
                            ).read_bytes())
    from_file = PerfData(data)
    try:
        expected = [event for batch in from_file.batches() for event in batch_events(batch)]
    finally:
        from_file.close()
    pipe = _PipePath(data)
    try:
        reader = PerfData.open(pipe.path)  # (no mmap of a pipe: its bytes are read)
        try:
            assert [e for batch in reader.batches() for e in batch_events(batch)] == expected
        finally:
            reader.close()
    finally:
        pipe.close()
    assert expected


def test_call_sites_perf_data_never_gave_order_by_their_hex_address_or_first() -> None:
    reader = PerfData(made.perf_file(made.kmem_attrs(), b"", made.kmem_tracing()))
    try:
        assert reader.call_site_address("ffffffff81234567") == 0xffffffff81234567
        assert reader.call_site_address("my_function+0x10") == 0
    finally:
        reader.close()


def test_a_lost_record_of_attrs_of_different_layouts_reads_the_common_trailer() -> None:
    # two attrs, one with call chains: no single layout, but the trailer (sample_id_all:
    # TID, TIME, ID, CPU here) is the same for both
    plain = made.KMEM_SAMPLE | made.SAMPLE_ID
    attrs = [(made.attr(made.KMALLOC_ID, plain), [11]),
             (made.attr(made.PAGE_ALLOC_ID, plain | made.SAMPLE_CALLCHAIN), [13])]
    trailer = struct.pack("<IIQQII", 100, 100, 7_000_000_000, 11, 1, 0)
    records = made.record(2, struct.pack("<QQ", 1, 6) + trailer)
    reader = PerfData(made.perf_file(attrs, records, made.kmem_tracing()))
    try:
        assert [event for batch in reader.batches() for event in batch_events(batch)] == []
        assert [(r.kind, r.count, r.cpu, r.time) for r in reader.lost] == [
            ("LOST", 6, 1, 7_000_000_000)]
    finally:
        reader.close()


def test_a_sum_beyond_what_the_compiled_tables_hold_is_counted_in_python() -> None:
    from kmem.trace.stat import KmemStat

    # a first event of 2 TiB (the C tables stop at 2^40 per value): the whole batch goes to
    # the Python tables, with the same sums
    stat = KmemStat()
    stat.add_batch(event_batch([_kmalloc("00000000000000a0", req=1 << 41, alloc=1 << 41),
                                _kmalloc("00000000000000b0", req=11, alloc=16)]))
    summary = stat.slab_summary()
    assert (summary.total_requested, summary.total_allocated, summary.nr_allocs) == (
        (1 << 41) + 11, (1 << 41) + 16, 2)


def test_a_failed_kmalloc_of_a_kernel_sheaf_is_the_kernels_business_too() -> None:
    result = Replayer(kernel="6.18").run([_kmalloc(NULL_PTR, site=SHEAF_SITE)])
    assert result.sheaves["kernel_sheaf_events"] == 1
    assert (result.traced_slab_failures, result.live_objects_at_end) == (0, 0)


def test_the_result_of_a_replayer_that_replayed_nothing_prints_and_serialises() -> None:
    from rich.console import Console

    from kmem.trace.report import print_replay

    result = Replayer(memory=1 << 20).result()  # (the API: result() before any replay)
    assert result.timeline == () and result.to_json()["fragmentation_at_end"] is None
    screen = io.StringIO()
    print_replay(result, Console(file=screen, width=120))
    text = screen.getvalue()
    assert "buddyinfo at the end" in text and "Over the trace" not in text
    # 1 MiB of 4 KiB pages: one free order-8 block, nothing at the other orders
    assert "Node 0, zone   Normal" + "      0" * 8 + "      1      0      0" in text


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")
@pytest.mark.parametrize("command", [["stat", "--json"], ["replay", "--json", "--every", "500"]])
def test_a_pipe_named_by_its_path_reads_under_a_terminal_too(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: list[str]) -> None:
    # (bug: with standard error a terminal the progress bar asked the pipe its position:
    # "the trace stream broke off after line 0: [Errno 29] Illegal seek", exit 2)
    expected = _cli(capsys, *command, str(LS_TRACE))
    monkeypatch.setattr("kmem.cli.terminal.wants_progress", lambda no_progress=False: True)
    pipe = _PipePath(LS_TRACE.read_bytes())
    try:
        got = _cli(capsys, *command, pipe.path)
    finally:
        pipe.close()
    assert got[0] == expected[0] == 0, got[2]
    assert got[1] == expected[1]
