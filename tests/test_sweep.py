"""Sweeps on this machine: each row is what ``kmem replay`` reports for that trace and those
parameters, the table is the same bytes however many workers ran it, a failing run is reported
and the others go on, and an interrupted sweep resumes where it stopped."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kmem import SweepOptionError, load_sweep_spec, sweep
from kmem.cli.main import main
from kmem.trace.sweep import (
    FAILURES,
    RESULT_COLUMNS,
    RESULTS,
    TIMELINES,
    TIMINGS,
    RunOutcome,
    SweepProgress,
    _file_chunks,
    replay_run,
)
from kmem.trace.sweep_spec import PARAMETER_KEYS, SweepRun
from sweep_fixtures import broken_trace, sweep_folder


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return sweep_folder(tmp_path)


def _replay_json(capsys: pytest.CaptureFixture[str], trace: Path, policy: str, cpus: int
                 ) -> dict[str, Any]:
    assert main(["replay", "--json", "--serial", "--policy", policy, "--nr-cpus", str(cpus),
                 "--memory", "64M", "--every", "500", str(trace)]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def test_each_row_is_what_kmem_replay_reports(spec: Path, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    result = sweep(spec, jobs=1)
    assert len(result.rows) == 12 and not result.failures
    for row in result.rows:
        replay = _replay_json(capsys, spec.parent / row["trace"], row["policy"], row["cpus"])
        page, memory = replay["page_size"], replay["memory_in_use"]
        unusable = [s["unusable_index"] for s in replay["timeline"]]
        assert row["memory"] == 64 << 20 == replay["memory"]
        assert row["events"] == sum(replay["events"].values())
        assert row["slab_peak_pages"] * page == memory["slab"]["peak_bytes"]
        assert row["slab_end_pages"] * page == memory["slab"]["final_bytes"]
        assert row["page_layer_peak_pages"] * page == memory["page"]["peak_bytes"]
        assert row["page_layer_end_pages"] * page == memory["page"]["final_bytes"]
        assert row["total_peak_pages"] * page == memory["total"]["peak_bytes"]
        assert row["total_end_pages"] * page == memory["total"]["final_bytes"]
        assert row["unusable_costly_end"] == replay["fragmentation_at_end"]["unusable_index"][3]
        assert row["unusable_max_order_end"] == replay["fragmentation_at_end"][
            "unusable_index"][10]
        assert row["unusable_costly_peak"] == max(u[3] for u in unusable)
        assert row["unusable_max_order_peak"] == max(u[10] for u in unusable)
        assert row["extfrag_costly_end"] == replay["fragmentation_at_end"]["extfrag_index"][3]
        assert row["traced_pcp_refills"] == replay["events"]["mm_page_alloc_zone_locked"]
        for column in ("kmem_oom", "too_large", "unknown_frees", "missed_frees",
                       "bytes_alloc_mismatches", "bytes_alloc_checked", "live_objects_at_end",
                       "traced_slab_failures", "bad_lines"):
            assert row[column] == replay[column], column
        assert row["page_unknown_frees"] == replay["page"]["unknown_frees"]
        assert list(row) == ["run", "trace", *PARAMETER_KEYS, *RESULT_COLUMNS]
        timeline = result.timelines[row["run"]]
        assert timeline["slab_pages"] == [s["slab_pages"] for s in replay["timeline"]]
        assert timeline["time"] == [s["time"] for s in replay["timeline"]]


def test_the_table_is_the_same_bytes_whichever_the_workers(tmp_path: Path, spec: Path) -> None:
    one = sweep(spec, output=tmp_path / "one", jobs=1)
    two = sweep(spec, output=tmp_path / "two", jobs=2)
    sweep(spec, output=tmp_path / "again", jobs=2)
    for name in (RESULTS, TIMELINES, FAILURES):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert one.rows == two.rows
    lines = (tmp_path / "one" / RESULTS).read_text().splitlines()
    assert [json.loads(line) for line in lines] == list(one.rows)
    # Grid order: the traces sorted (a glob), then policy × cpus, the last fastest.
    assert [(r["trace"][7:11], r["policy"], r["cpus"]) for r in one.rows][:5] == [
        ("find", "slub", 1), ("find", "slub", 2), ("find", "slab", 1), ("find", "slab", 2),
        ("gzip", "slub", 1)]
    # Timings are kept apart: one per run, in its own file.
    timings = [json.loads(line) for line in (tmp_path / "two" / TIMINGS).read_text().splitlines()]
    assert [t["run"] for t in timings] == [r["run"] for r in two.rows]
    assert all(t["seconds"] > 0 for t in timings)
    assert "seconds" not in (tmp_path / "two" / RESULTS).read_text()


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path: Path, spec: Path) -> None:
    line = broken_trace(spec.parent / "traces" / "zz-broken.txt.xz")
    seen: list[tuple[str, str | None]] = []
    result = sweep(spec, output=tmp_path / "out", jobs=2,
                   on_run=lambda run, outcome, failure: seen.append((run.name, outcome.error)))
    assert len(result.rows) == 12
    assert [f.name for f in result.failures] == [
        f"traces/zz-broken.txt.xz policy={p} cpus={c}"
        for p in ("slub", "slab") for c in (1, 2)]
    for failure in result.failures:
        assert failure.error.startswith(f"TraceFormatError: line {line}: ")
        assert failure.parameters["memory"] == 64 << 20
    assert len(seen) == 16 and sum(error is not None for _, error in seen) == 4
    recorded = [json.loads(x) for x in (tmp_path / "out" / FAILURES).read_text().splitlines()]
    assert [r["error"] for r in recorded] == [f.error for f in result.failures]
    assert {r["policy"] for r in recorded} == {"slub", "slab"}


def test_the_command_reports_failed_runs_and_exits_1(tmp_path: Path, spec: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    broken_trace(spec.parent / "traces" / "zz-broken.txt.xz")
    monkeypatch.chdir(spec.parent)
    assert main(["sweep", "spec.toml", "--jobs", "2", "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "16 runs: 12 done (0 resumed), 4 failed; results in spec-results/results.jsonl" in out
    failed = err.splitlines()
    assert len(failed) == 4
    assert failed[3].startswith(
        "kmem sweep: run failed: traces/zz-broken.txt.xz policy=slab kernel=6.18 cpus=2 memory=64M"
        " max_order=10 page_size=4K layers=slab,page machine=False layout= machine_cpus=0"
        " pcp_high=0 pcp_batch=0 min_free_kbytes=0 no_pcp=False warm=zoneinfo"
        " slab_on_machine=False random_kmalloc_seed=:"
        " TraceFormatError: line 301:")
    assert len((spec.parent / "spec-results" / RESULTS).read_text().splitlines()) == 12


def test_resume_runs_only_what_the_folder_lacks(tmp_path: Path, spec: Path) -> None:
    whole = sweep(spec, output=tmp_path / "whole", jobs=1)
    partial = tmp_path / "partial"
    shutil.copytree(tmp_path / "whole", partial)
    lines = (partial / RESULTS).read_text().splitlines(keepends=True)
    # An interrupted sweep: five rows written, the sixth cut short.
    (partial / RESULTS).write_text("".join(lines[:5]) + lines[5][:40])
    ran: list[str] = []
    resumed = sweep(spec, output=partial, jobs=2, resume=True,
                    on_run=lambda run, outcome, failure: ran.append(run.key))
    assert resumed.resumed == 5
    assert sorted(ran) == sorted(row["run"] for row in whole.rows[5:])
    for name in (RESULTS, TIMELINES):
        assert (partial / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    nothing: list[str] = []
    sweep(spec, output=partial, resume=True, on_run=lambda *a: nothing.append("ran"))
    assert nothing == []


def test_a_row_appended_after_a_line_cut_short_is_kept(tmp_path: Path, spec: Path) -> None:
    from kmem.trace.sweep import SweepFolder

    run = _first_run(spec)
    outcome = replay_run(run)
    (tmp_path / RESULTS).write_text('{"run": "0123', encoding="utf-8")  # interrupted mid-line
    (tmp_path / TIMELINES).write_text("", encoding="utf-8")
    folder = SweepFolder(tmp_path, resume=True)
    folder.open()
    folder.record(outcome, None)
    folder.close()
    rows, timelines, _ = SweepFolder(tmp_path, resume=True).previous()
    assert rows == {run.key: outcome.row} and timelines == {run.key: outcome.timeline}


def test_a_folder_with_results_is_not_overwritten(tmp_path: Path, spec: Path) -> None:
    sweep(spec, output=tmp_path / "out", jobs=1)
    before = (tmp_path / "out" / RESULTS).read_bytes()
    with pytest.raises(SweepOptionError, match="already holds a sweep's results: pass --resume"):
        sweep(spec, output=tmp_path / "out")
    assert (tmp_path / "out" / RESULTS).read_bytes() == before


@pytest.mark.parametrize(("options", "message"), [
    ({"jobs": 0}, "jobs must be a whole number >= 1, got 0"),
    ({"ship": True}, r"shipping traces \(--ship\) is for a Dask cluster"),
    ({"resume": True}, "resume needs the output folder"),
    ({"executor": "threads"}, "unknown executor 'threads'"),
])
def test_bad_options_are_refused_before_any_run(spec: Path, options: dict[str, Any],
                                                message: str) -> None:
    ran: list[str] = []
    with pytest.raises(SweepOptionError, match=message):
        sweep(spec, on_run=lambda *a: ran.append("ran"), **options)
    assert ran == []


def test_an_output_that_is_a_file_is_refused(tmp_path: Path, spec: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SweepOptionError, match="is a file, not a folder"):
        sweep(spec, output=tmp_path / "file")


def _first_run(spec: Path) -> SweepRun:
    return load_sweep_spec(spec).runs()[0]


def test_a_shipped_trace_replays_as_the_file_does(spec: Path) -> None:
    run = _first_run(spec)
    whole = _file_chunks(run.trace.path)
    data = b"".join(whole)
    small = [data[i:i + 997] for i in range(0, len(data), 997)]  # chunk edges everywhere
    from_path = replay_run(run)
    for chunks in (whole, small, [b"", *small, b""]):
        shipped = replay_run(run, chunks)
        assert shipped.error is None
        assert (shipped.row, shipped.timeline) == (from_path.row, from_path.timeline)


def test_the_progress_bar_counts_runs_and_names_the_slowest(spec: Path) -> None:
    from rich.console import Console

    runs = load_sweep_spec(spec).runs()[:3]
    screen = io.StringIO()
    console = Console(file=screen, width=200, force_terminal=True)
    with SweepProgress(len(runs), console=console) as bar:
        for run, seconds in zip(runs, (0.5, 2.25, 1.0), strict=True):
            bar.update(run, RunOutcome(run.key, {}, {}, None, seconds, "w"), None)
    text = screen.getvalue()
    assert "3/3" in text
    assert f"slowest: {runs[1].name} (2.2 s)" in text


def test_parquet_holds_the_same_table(tmp_path: Path, spec: Path) -> None:
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")
    result = sweep(spec, output=tmp_path / "out", jobs=1, parquet=True)
    table = pyarrow_parquet.read_table(tmp_path / "out" / "results.parquet")
    assert table.to_pylist() == list(result.rows)


def test_parquet_without_pyarrow_is_refused_before_any_run(spec: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import sys
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(SweepOptionError, match="Parquet output needs pyarrow"):
        sweep(spec, parquet=True)


def test_a_spec_given_as_a_mapping_reads_paths_from_the_current_folder(
        spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(spec.parent)
    result = sweep({"traces": ["traces/tar-*.xz"], "parameters": {"cpus": [1, 2]}}, jobs=1)
    assert [(r["trace"], r["cpus"]) for r in result.rows] == [
        ("traces/tar-6.18-first4000.txt.xz", 1), ("traces/tar-6.18-first4000.txt.xz", 2)]
    assert result.output is None
