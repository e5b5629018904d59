"""`kmem leaks`: outstanding allocations of real traces by call site, as bcc's memleak."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from fixture_files import DD_TRACE, LS_TRACE, PERF_SCRIPT, TRACES
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.trace.events import (
    KMALLOC,
    KMEM_CACHE_ALLOC,
    KMEM_CACHE_FREE,
    MM_PAGE_ALLOC,
    MM_PAGE_FREE,
    NULL_PTR,
    TraceEvent,
    event_time,
)
from kmem.trace.leaks import LeakTracker, find_leaks, format_leaks
from kmem.trace.parse import TraceParser
from kmem.trace.replay import Replayer

VIEWS_TRACE = TRACES / "kmem-6.18-views-first12000.txt.xz"


def _events(path: Path) -> list[TraceEvent]:
    with lzma.open(path, "rt") as lines:
        return list(TraceParser().parse(lines))


def _model(events: list[TraceEvent], at: float, min_age: float, page_size: int = 4096
           ) -> dict[tuple[str, str], tuple[int, int, float]]:
    """memleak's definition, plainly: an allocation is outstanding when no later event up to
    ``at`` frees or re-allocates its pointer (pfn). (layer, site) -> (count, bytes, oldest)."""
    upto = [event for event in events if event_time(event) <= at]
    groups: dict[tuple[str, str], tuple[int, int, float]] = {}
    for index, event in enumerate(upto):
        kind = event[0]
        key: str | int
        if kind in (KMALLOC, 1, KMEM_CACHE_ALLOC, 3) and event[4] != NULL_PTR:
            key, layer, site, size = event[4], "slab", event[3], event[7]
            later = [e for e in upto[index + 1:] if e[0] <= KMEM_CACHE_FREE and e[4] == key]
        elif kind == MM_PAGE_ALLOC and event[10] >= 0:
            key, layer, size = event[10], "page", page_size << event[11]
            site = event[3] or f"mm_page_alloc order={event[11]} {event[8]}"
            later = [e for e in upto[index + 1:]
                     if e[0] in (MM_PAGE_ALLOC, MM_PAGE_FREE, 8) and e[10] == key]
        else:
            continue
        if later:  # freed, or allocated again (its free was not traced)
            continue
        time = event_time(event)
        if at - time < min_age:
            continue
        count, total, oldest = groups.get((layer, site), (0, 0, time))
        groups[(layer, site)] = (count + 1, total + size, min(oldest, time))
    return groups


@pytest.mark.parametrize("path", [LS_TRACE, DD_TRACE, PERF_SCRIPT, VIEWS_TRACE])
def test_outstanding_slab_objects_are_replays_live_objects(path: Path) -> None:
    events = _events(path)
    replayed = Replayer(layers=("slab",), memory=1 << 30).run(events, every=4096)
    report = find_leaks(events)
    assert report.slab_objects == replayed.live_objects_at_end
    assert sum(site.count for site in report.sites if site.layer == "slab") == \
        replayed.live_objects_at_end
    assert report.missed_frees == replayed.missed_frees
    assert report.unknown_frees == replayed.unknown_frees


def test_at_a_time_is_replay_of_the_trace_up_to_that_time() -> None:
    events = _events(VIEWS_TRACE)
    middle = event_time(events[len(events) // 2])
    before = [event for event in events if event_time(event) <= middle]
    replayed = Replayer(layers=("slab",), memory=1 << 30).run(before, every=4096)
    report = find_leaks(events, at=middle)
    assert report.at == middle
    assert report.events == len(before)
    assert report.slab_objects == replayed.live_objects_at_end
    relative = find_leaks(events, at=middle - event_time(events[0]), relative=True)
    assert relative.slab_objects == report.slab_objects


@pytest.mark.parametrize("min_age", [0.0, 0.05])
def test_real_trace_sites_match_the_plain_model(min_age: float) -> None:
    events = _events(LS_TRACE)
    end = event_time(events[-1])
    report = find_leaks(events, min_age=min_age)
    got = {(s.layer, s.call_site): (s.count, s.bytes, s.oldest_time) for s in report.sites}
    assert got == _model(events, end, min_age)
    ages = [site.oldest_age for site in report.sites]
    assert all(age >= min_age for age in ages)
    assert [s.bytes for s in report.sites] == sorted((s.bytes for s in report.sites),
                                                     reverse=True)


def _line(kind: int, ptr: int, site: int, time: int, size: int) -> str:
    stamp = f"{10 + time * 0.001:.6f}:"
    if kind == 0:
        return (f"t-1 [000] ..... {stamp} kmalloc: call_site=f{site}+0x1/0x9 ptr={ptr:016x}"
                f" bytes_req={size} bytes_alloc={size} gfp_flags=GFP_KERNEL node=-1"
                " accounted=false")
    if kind == 1:
        return f"t-1 [000] ..... {stamp} kfree: call_site=g+0x1/0x9 ptr={ptr:016x}"
    if kind == 2:
        return (f"t-1 [001] ..... {stamp} mm_page_alloc: page=0000000000000001 pfn={ptr:#x}"
                f" order={site % 3} migratetype=0 gfp_flags=GFP_KERNEL")
    return (f"t-1 [001] ..... {stamp} mm_page_free: page=0000000000000001 pfn={ptr:#x}"
            f" order={site % 3}")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6), st.integers(0, 3),
                          st.sampled_from([8, 32, 96, 256])), max_size=60),
       st.integers(0, 70), st.sampled_from([0.0, 0.005, 0.02]))
def test_random_traces_match_the_plain_model(
        steps: list[tuple[int, int, int, int]], at_step: int, min_age: float) -> None:
    lines = [_line(kind, ptr, site, time, size)
             for time, (kind, ptr, site, size) in enumerate(steps)]
    events = list(TraceParser().parse(lines))
    at = 10 + at_step * 0.001
    tracker = LeakTracker(stop_at=at)
    tracker.add(events)
    report = tracker.report(min_age=min_age)
    got = {(s.layer, s.call_site): (s.count, s.bytes, s.oldest_time) for s in report.sites}
    assert got == _model(events, at, min_age)
    replayed = Replayer(layers=("slab",)).run(
        [event for event in events if event_time(event) <= at], every=16)
    assert report.slab_objects == replayed.live_objects_at_end


def test_top_keeps_the_largest_and_text_prints_them_as_memleak() -> None:
    events = _events(VIEWS_TRACE)
    everything = find_leaks(events)
    report = find_leaks(events, top=3)
    assert report.sites == everything.sites[:3]
    text = format_leaks(report).splitlines()
    assert text[0] == f"[{report.at:.6f}] Top 3 stacks with outstanding allocations:"
    last = report.sites[0]  # memleak prints the largest last
    assert text[-3] == (f"\t{last.bytes} bytes in {last.count} allocations from stack"
                        f" (oldest {last.oldest_age:.6f} s)")
    assert text[-2] == f"\t\t{last.call_site} [{last.layer}]"


def test_cli_json_and_layers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaks", str(LS_TRACE), "--json", "--slab", "--top", "5"]) == 0
    document = json.loads(capsys.readouterr().out)
    expected = find_leaks(_events(LS_TRACE), layers=("slab",), top=5)
    assert document["sites"] == expected.to_json()["sites"]
    assert {site["layer"] for site in document["sites"]} == {"slab"}
    assert document["outstanding"]["page_allocations"] == 0
    assert main(["leaks", str(LS_TRACE), "--page", "--min-age", "5ms"]) == 0
    out = capsys.readouterr().out
    assert "[slab]" not in out and "[page]" in out and "at least 0.005 s old" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--at", "soon"], "--at: bad time 'soon'"),
    (["--at", "-1"], "--at: bad time '-1'"),
    (["--min-age", "ten"], "bad duration 'ten'"),
    (["--top", "0"], "--top must be 1 or more"),
])
def test_bad_options_exit_2_with_one_line(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaks", str(LS_TRACE), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("kmem leaks: ") and message in captured.err
    assert captured.err.count("\n") == 1


def test_missing_or_broken_trace_exits_2(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaks", str(tmp_path / "none.txt")]) == 2
    assert "cannot open trace" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("t-1 [000] ..... 1.0: kmalloc: call_site=f ptr=zz bytes_req=x\n")
    assert main(["leaks", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("kmem leaks: ")


def test_api_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown layer"):
        LeakTracker(layers=("heap",))
    tracker = LeakTracker()
    with pytest.raises(InvalidArgumentError, match="minimum age"):
        tracker.report(min_age=-1)
    with pytest.raises(InvalidArgumentError, match="top must be"):
        tracker.report(top=0)


PERF_DATA = Path(__file__).parent / "fixtures" / "traces" / "perf-data"


def _no_events_traces(tmp_path: Path) -> list[tuple[Path, str]]:
    """An empty trace and one of other tracepoints only, with what the warning says of each."""
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    other = tmp_path / "sched.txt"
    other.write_text("# tracer: nop\n"
                     "  bash-1 [000] ..... 1.000001: sched_switch: prev_comm=bash\n")
    return [(empty, "it is empty"),
            (other, "1 lines/samples read, other events only: sched_switch 1")]


@pytest.mark.parametrize("options", [[], ["--json"], ["--at", "+0.5", "--slab"]])
def test_a_trace_without_kmem_events_warns_and_exits_3(
        options: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path, what in _no_events_traces(tmp_path):
        assert main(["leaks", str(path), *options]) == 3
        captured = capsys.readouterr()
        assert captured.out == ""  # (no report of nothing outstanding: it would read as no leak)
        assert captured.err == (f"kmem: warning: {path} holds no kmem events"
                                f" ({what}); nothing to report\n")


@pytest.mark.parametrize("name", ["kmem-record-sleep", "pipe-ls"])
def test_perf_data_gives_the_leaks_of_its_perf_script_text(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The slab leaks of a perf.data read directly are those of its perf script text (page
    call sites differ: perf.data has them from the call chain, that text has none)."""
    assert main(["leaks", str(PERF_DATA / f"{name}.script.txt.xz"), "--slab", "--json",
                 "--top", "1000"]) == 0
    text = json.loads(capsys.readouterr().out)
    # (perf script resolved the file-mode recording's call sites with that boot's symbols;
    # the pipe's, without a build id, not at all)
    symbols = [] if name == "pipe-ls" else ["--kallsyms", str(PERF_DATA / "kallsyms.txt.xz")]
    assert main(["leaks", str(PERF_DATA / f"{name}.data.xz"), "--slab", "--json", "--top",
                 "1000", *symbols]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sites"] and data["sites"] == text["sites"]
    assert data["outstanding"] == text["outstanding"]
    assert data["events"] == text["events"] == data["lines"]  # (a sample is a line)
