"""Parsing in a child process (kmem.trace.pipeline): the same events, counters and errors as a
TraceParser in this process, and no child left behind."""

from __future__ import annotations

import json
import lzma
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixture_files import DD_TRACE, LS_TRACE, OLD_KERNELS, PERF_SCRIPT, TRACE_CMD
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.trace import pipeline
from kmem.trace.parse import TraceFormatError, TraceParser
from kmem.trace.pipeline import ParserProcess
from kmem.trace.source import TraceFileError, open_trace

pytestmark = pytest.mark.skipif(not pipeline.available(), reason="needs fork and two CPUs")


def _serial(path: Path, skip_bad: bool = False) -> tuple[list[object], TraceParser]:
    parser = TraceParser(skip_bad=skip_bad)
    with open_trace(path) as lines:
        return list(parser.parse(lines)), parser


@pytest.mark.parametrize("path", [LS_TRACE, PERF_SCRIPT, TRACE_CMD, OLD_KERNELS])
def test_same_events_and_counters_as_a_parser_here(path: Path) -> None:
    expected, serial = _serial(path)
    parser = ParserProcess(path)
    assert list(parser.parse()) == expected
    assert (parser.lines, parser.bad_lines, parser.other_events, parser.events) == (
        serial.lines, serial.bad_lines, serial.other_events, serial.events)
    assert not multiprocessing.active_children()


def test_batches_are_the_parsers_batches() -> None:
    with open_trace(DD_TRACE) as lines:
        expected = list(TraceParser().parse_batches(lines))
    assert list(ParserProcess(DD_TRACE).batches()) == expected


def _with_bad_line(tmp_path: Path) -> tuple[Path, str]:
    with lzma.open(LS_TRACE, "rt") as text:
        lines = text.read().splitlines(keepends=True)
    bad = lines[3000].replace("ptr=", "ptr=zz", 1)
    lines[3000] = bad
    path = tmp_path / "bad.txt"
    path.write_text("".join(lines))
    return path, bad


def test_a_bad_line_raises_the_same_error_after_the_same_events(tmp_path: Path) -> None:
    path, _ = _with_bad_line(tmp_path)
    with pytest.raises(TraceFormatError) as here:
        _serial(path)
    seen: list[object] = []
    with pytest.raises(TraceFormatError) as there:
        seen.extend(ParserProcess(path).parse())
    assert str(there.value) == str(here.value)
    assert there.value.line_number == here.value.line_number == 3001
    with open_trace(path) as lines:
        assert seen == list(TraceParser().parse(line for i, line in enumerate(lines) if i < 3000))
    assert not multiprocessing.active_children()


def test_skip_bad_counts_the_same(tmp_path: Path) -> None:
    path, bad = _with_bad_line(tmp_path)
    expected, serial = _serial(path, skip_bad=True)
    parser = ParserProcess(path, skip_bad=True)
    assert list(parser.parse()) == expected
    assert parser.bad_lines == serial.bad_lines == 1
    assert [str(e) for e in parser.bad_examples] == [str(e) for e in serial.bad_examples]
    assert parser.bad_examples[0].line.strip() == bad.strip()


def test_a_format_error_survives_pickling() -> None:
    error = TraceFormatError(7, "bad pointer", "x" * 400)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.line_number, copy.reason, copy.line, str(copy)) == (
        error.line_number, error.reason, error.line, str(error))


def test_closing_early_stops_the_child() -> None:
    events = ParserProcess(LS_TRACE).parse()
    first = [next(events) for _ in range(10)]
    assert len(first) == 10 and multiprocessing.active_children()
    events.close()
    assert not multiprocessing.active_children()


def test_one_pass_only() -> None:
    parser = ParserProcess(TRACE_CMD)
    assert len(list(parser.parse())) == 7
    with pytest.raises(InvalidArgumentError, match="already"):
        list(parser.parse())


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(TraceFileError, match="cannot open"):
        list(ParserProcess(tmp_path / "nope").parse())
    cut = tmp_path / "cut.xz"
    cut.write_bytes(LS_TRACE.read_bytes()[:20000])
    here: list[object] = []
    with pytest.raises(TraceFileError, match="broke off") as serial, open_trace(cut) as lines:
        here.extend(TraceParser().parse(lines))
    there: list[object] = []
    with pytest.raises(TraceFileError, match="broke off") as parallel:
        there.extend(ParserProcess(cut).parse())
    assert there == here and len(here) > 2048  # the events before the break, both ways
    assert str(parallel.value) == str(serial.value)
    assert not multiprocessing.active_children()


def test_progress_reports_bytes_read_up_to_the_file_size(tmp_path: Path) -> None:
    done: list[int] = []
    parser = ParserProcess(LS_TRACE)
    count = sum(1 for _ in parser.parse(done.append))
    assert count == 5459
    assert done == sorted(done) and done[-1] == LS_TRACE.stat().st_size == parser.bytes_read


def test_kmem_replay_gives_the_same_result_either_way(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    results = []
    for extra in ([], ["--serial"]):
        assert main(["replay", str(PERF_SCRIPT), "--json", "--memory", "256M", *extra]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0] == results[1]
    assert results[0]["lines"] > 0


def test_a_fifo_is_read_too(tmp_path: Path) -> None:
    """A pipe has no position: progress then stays at 0, and the events are the same."""
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    # The writer is another process, as in `kmem replay <(xzcat trace.xz)`. (A thread of this
    # one would hold the FIFO's write end open in the forked parser too: no end of file.)
    writer = subprocess.Popen(["sh", "-c", 'cat "$1" > "$2"', "sh", str(LS_TRACE), str(fifo)])
    done: list[int] = []
    parser = ParserProcess(fifo)
    events = list(parser.parse(done.append))
    assert writer.wait(timeout=30) == 0
    assert events == _serial(LS_TRACE)[0]
    assert set(done) == {0}


_DYING_PARENT = """
import os, sys
from kmem.trace.pipeline import ParserProcess
parser = ParserProcess(sys.argv[1])
events = parser.parse()
next(events)
print(parser._child.pid, flush=True)
os._exit(0)  # no cleanup at all, as if killed
"""


def test_the_child_ends_when_its_parent_dies(tmp_path: Path) -> None:
    """A parent killed mid-replay leaves no parser behind: its next write fails and it ends."""
    big = tmp_path / "big.txt"
    with lzma.open(LS_TRACE, "rt") as text:
        body = text.read()
    big.write_text(body * 20)  # more than a pipe's buffer of batches
    output = subprocess.run([sys.executable, "-c", _DYING_PARENT, str(big)], check=True,
                            capture_output=True, text=True, timeout=60).stdout
    pid = int(output)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"the parser process {pid} outlived its parent")
