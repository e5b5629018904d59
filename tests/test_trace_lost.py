"""Never silent about lost events: ftrace's header and markers, in kmem stat and kmem replay.

Fixtures (tests/fixtures/traces/lost/, README there): a `trace` file of an 8 KB buffer that
overwrote all but 445 of 243,263 events, and trace_pipe lines with the kernel's per-CPU
`CPU:N [LOST M EVENTS]` markers. (perf.data's LOST records: tests/test_perf_data.py.)
"""

from __future__ import annotations

import json
import lzma
import re
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from kmem.cli.main import main
from kmem.trace.lost import LostEvents, watch_lines

HERE = Path(__file__).parent / "fixtures" / "traces" / "lost"
OVERWRITTEN = HERE / "ftrace-8kb-overwritten.txt.xz"
PIPE = HERE / "trace-pipe-8kb-first2200.txt.xz"
CLEAN = Path(__file__).parent / "fixtures" / "traces" / "kmem-6.18-ls.txt.xz"


def _lines(path: Path) -> list[str]:
    with lzma.open(path, "rt") as file:
        return file.readlines()


def test_overwritten_buffer_is_counted_from_the_header() -> None:
    lost = LostEvents()
    lines = _lines(OVERWRITTEN)
    assert list(watch_lines(lines, lost)) == lines
    assert (lost.entries_in_buffer, lost.entries_written) == (445, 243263)
    assert lost.overwritten == lost.total == 243263 - 445
    started = [s for s in lost.stretches if s.what == "buffer started"]
    # CPU 1's kept events start at the first CPU 1 line after the marker
    marker = next(i for i, line in enumerate(lines) if "CPU 1 buffer started" in line)
    assert [(s.cpu, s.time) for s in started] == [(1, float(lines[marker + 1].split()[3][:-1]))]


def test_trace_pipe_markers_are_counted_per_cpu_with_the_time_after_them() -> None:
    lost = LostEvents()
    lines = _lines(PIPE)
    list(watch_lines(lines, lost))
    expected = []
    for number, line in enumerate(lines):
        match = re.fullmatch(r"CPU:(\d) \[LOST (\d+) EVENTS\]\n", line)
        if match:
            after = next(x for x in lines[number + 1:] if not x.startswith("CPU:"))
            expected.append((int(match[1]), int(match[2]), float(after.split()[3][:-1])))
    assert len(expected) == 5
    assert [(s.cpu, s.count, s.time) for s in lost.stretches] == expected
    assert lost.total == sum(count for _, count, _ in expected) == 46112
    assert lost.entries_written == -1  # trace_pipe has no header


def test_uncounted_and_trace_cmd_markers() -> None:
    lost = LostEvents()
    list(watch_lines(["CPU:0 [LOST EVENTS]\n", "CPU:1 [12 EVENTS DROPPED]\n"], lost))
    assert lost.uncounted == 1 and lost.total == 12
    assert [(s.cpu, s.count, s.time) for s in lost.stretches] == [(0, -1, -1.0), (1, 12, -1.0)]
    assert "1 gaps of unknown size" in lost.describe(100)


@given(st.lists(st.sampled_from([
    "# entries-in-buffer/entries-written: 3/9   #P:2\n", "CPU:0 [LOST 4 EVENTS]\n",
    "##### CPU 1 buffer started ####\n", "CPU 0/KVM-12 [000] ..... 1.5: kfree: x\n",
    "  a-1 [001] ..... 2.000001: kfree: call_site=f+0x1/0x2 ptr=0\n", "\n", "#\n", "C\n"])))
def test_watch_lines_passes_every_line_through_unchanged(lines: list[str]) -> None:
    lost = LostEvents()
    assert list(watch_lines(lines, lost)) == lines
    assert lost.total >= 0


@pytest.mark.parametrize("command", ["stat", "replay", "leaks", "top"])
def test_every_trace_report_says_what_was_lost(command: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    options = ["--no-progress"] if command == "replay" else []
    assert main([command, *options, str(PIPE)]) == 0
    out = capsys.readouterr().out
    assert "LOST EVENTS: 46112" in out and "CPU 1: 32520 lost before" in out
    if command != "top":  # (top pairs nothing, so it has no frees of unknown pointers)
        assert "frees of pointers never seen allocated" in out
    assert main([command, "--json", str(PIPE)]) == 0
    lost = json.loads(capsys.readouterr().out)["lost"]
    assert lost["total"] == 46112 and len(lost["stretches"]) == 5
    if command in ("stat", "replay"):
        assert lost["unknown_slab_frees"] > 0
    assert main([command, "--json", str(OVERWRITTEN)]) == 0
    lost = json.loads(capsys.readouterr().out)["lost"]
    assert lost["overwritten"] == 242818 and lost["entries_written"] == 243263


@pytest.mark.parametrize("command", ["stat", "replay", "leaks", "top"])
def test_a_trace_that_lost_nothing_says_nothing(command: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, str(CLEAN)]) == 0
    assert "LOST" not in capsys.readouterr().out
    assert main([command, "--json", str(CLEAN)]) == 0
    lost = json.loads(capsys.readouterr().out)["lost"]
    assert lost["total"] == 0 and lost["entries_in_buffer"] == lost["entries_written"] > 0
