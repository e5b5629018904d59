"""`kmem top`: slab allocations per cache and interval of real traces, as bcc's slabratetop."""

from __future__ import annotations

import json
import lzma
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from fixture_files import LS_TRACE, TRACES
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.trace.events import NULL_PTR, TraceEvent, event_time
from kmem.trace.parse import TraceParser
from kmem.trace.rates import format_rates, parse_duration, slab_rates

VIEWS_TRACE = TRACES / "kmem-6.18-views-first12000.txt.xz"


def _events(path: Path) -> list[TraceEvent]:
    with lzma.open(path, "rt") as lines:
        return list(TraceParser().parse(lines))


def _cache_counts(events: list[TraceEvent]) -> Counter[str]:
    """kmem_cache_alloc events per traced cache name, counted plainly."""
    return Counter(e[5] for e in events if e[0] in (2, 3) and e[4] != NULL_PTR)


def test_intervals_partition_the_trace_and_count_every_allocation() -> None:
    events = _events(VIEWS_TRACE)
    rates = slab_rates(events, interval=0.05)
    first, last = event_time(events[0]), event_time(events[-1])
    assert rates.first_time == first
    assert rates.intervals[0].start == first
    assert rates.intervals[-1].start <= last < rates.intervals[-1].end
    for before, after in zip(rates.intervals, rates.intervals[1:], strict=False):
        assert after.start == pytest.approx(before.end)
    totals = rates.totals()
    for name, count in _cache_counts(events).items():
        assert totals[name].allocs == count
    allocations = [e for e in events if e[0] <= 3 and e[4] != NULL_PTR]
    assert sum(i.allocs for i in rates.intervals) == len(allocations)
    assert sum(i.bytes for i in rates.intervals) == sum(e[7] for e in allocations)
    for interval in rates.intervals:  # each interval holds exactly the events in its span
        inside = [e for e in allocations if interval.start <= event_time(e) < interval.end]
        assert interval.allocs == len(inside)
        assert [c.bytes for c in interval.caches] == sorted(
            (c.bytes for c in interval.caches), reverse=True)


def test_kmalloc_counts_under_its_kmalloc_cache() -> None:
    events = _events(LS_TRACE)
    totals = slab_rates(events).totals()
    kmalloc = [e for e in events if e[0] in (0, 1) and e[4] != NULL_PTR]
    assert sum(rate.allocs for name, rate in totals.items()
               if name.startswith("kmalloc-")) == len(kmalloc)
    for name, rate in totals.items():  # a kmalloc-N cache's objects are N bytes
        if name.startswith("kmalloc-") and name[8:].isdigit():
            assert rate.bytes == rate.allocs * int(name[8:])


def test_text_is_slabratetop_layout() -> None:
    rates = slab_rates(_events(VIEWS_TRACE), interval=0.05)
    text = format_rates(rates, max_rows=3)
    tables = text.split("\n\n")
    assert len(tables) == len(rates.intervals)
    first = tables[0].lstrip("\n").splitlines()
    assert first[1] == "CACHE                            ALLOCS      BYTES"
    top = rates.intervals[0].caches[0]
    assert first[2] == f"{top.name:<32s} {top.allocs:6d} {top.bytes:10d}"
    assert len(first) == 2 + 3


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.sampled_from(["dentry", "filp"])),
                min_size=1, max_size=40),
       st.sampled_from([1, 10, 250]))
def test_random_traces_every_allocation_in_its_interval(
        steps: list[tuple[int, str]], interval_ms: int) -> None:
    steps.sort()
    lines = [f"t-1 [000] ..... {1 + ms / 1000:.6f}: kmem_cache_alloc: call_site=f+0x1/0x9"
             f" ptr={n + 1:016x} name={name} bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL"
             " node=-1 accounted=false" for n, (ms, name) in enumerate(steps)]
    rates = slab_rates(TraceParser().parse(lines), interval_ms / 1000)
    expected: Counter[tuple[int, str]] = Counter(  # whole milliseconds: no rounding here
        ((ms - steps[0][0]) // interval_ms, name) for ms, name in steps)
    got = Counter({(index, cache.name): cache.allocs
                   for index, i in enumerate(rates.intervals) for cache in i.caches})
    assert got == expected


def test_cli_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    picture = tmp_path / "top.png"
    assert main(["top", str(VIEWS_TRACE), "--interval", "50ms", "--json", "-r", "2",
                 "--plot", str(picture)]) == 0
    document = json.loads(capsys.readouterr().out)
    rates = slab_rates(_events(VIEWS_TRACE), 0.05)
    assert document["intervals"] == rates.to_json(2)["intervals"]
    assert all(len(i["caches"]) <= 2 for i in document["intervals"])
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_durations() -> None:
    assert parse_duration("1s") == 1.0
    assert parse_duration("100ms") == pytest.approx(0.1)
    assert parse_duration("20us") == pytest.approx(2e-5)
    with pytest.raises(InvalidArgumentError, match="bad duration"):
        parse_duration("1 hour")
    with pytest.raises(InvalidArgumentError, match="interval must be > 0"):
        slab_rates([], 0)


@pytest.mark.parametrize(("argv", "message"), [
    (["--interval", "soon"], "bad duration 'soon'"),
    (["--interval", "0s"], "--interval must be longer than 0"),
    (["--interval", "1ns"], "more than 1000000 intervals"),
    (["-r", "0"], "--maxrows must be 1 or more"),
    (["--plot", "out.gif"], "use a .png or .svg file name"),
])
def test_bad_options_exit_2_with_one_line(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", str(LS_TRACE), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("kmem top: ") and message in captured.err
    assert captured.err.count("\n") == 1


def test_commands_and_the_plot_module_load_no_matplotlib_nor_parser() -> None:
    import subprocess
    import sys

    code = ("import sys, kmem.show.rates_plot, kmem.cli.top, kmem.cli.leaks;"
            " print('matplotlib' in sys.modules, 'kmem.trace.parse' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "False False\n"


PERF_DATA = Path(__file__).parent / "fixtures" / "traces" / "perf-data"


@pytest.mark.parametrize("options", [[], ["--json"], ["--plot", "top.png"]])
def test_a_trace_without_kmem_events_warns_and_exits_3(
        options: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    other = tmp_path / "sched.txt"
    other.write_text("  bash-1 [000] ..... 1.000001: sched_switch: prev_comm=bash\n")
    for path, what in ((empty, "it is empty"),
                       (other, "1 lines/samples read, other events only: sched_switch 1")):
        assert main(["top", str(path), *options]) == 3
        captured = capsys.readouterr()
        assert captured.out == ""  # (no table of empty intervals: it would look like a result)
        assert captured.err == (f"kmem: warning: {path} holds no kmem events"
                                f" ({what}); nothing to report\n")
    assert not (tmp_path / "top.png").exists()


@pytest.mark.parametrize("name", ["kmem-record-sleep", "pipe-ls"])
def test_perf_data_gives_the_rates_of_its_perf_script_text(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", str(PERF_DATA / f"{name}.script.txt.xz"), "--interval", "5ms",
                 "--json"]) == 0
    text = json.loads(capsys.readouterr().out)
    assert main(["top", str(PERF_DATA / f"{name}.data.xz"), "--interval", "5ms",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data.pop("lines") <= text.pop("lines")  # (the text has header lines too)
    assert data["intervals"] and data == text
