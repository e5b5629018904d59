"""The sweep report: rankings and heat map computed by their definitions (checked on a results
table made by hand, with the scores worked out here), and a page that needs no other file."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path
from typing import Any

import pytest

from kmem import SweepReportError, write_sweep_report
from kmem.cli.main import main
from kmem.show.sweep_report import heat_map, rank_by_fragmentation, rank_by_peak, report_html
from kmem.trace.sweep import RunFailure, SweepResult
from kmem.trace.sweep_spec import SweepSpec, TraceFile
from sweep_fixtures import sweep_folder

PNG = b"\x89PNG\r\n\x1a\n"
# (trace, policy, cpus) -> (total_peak_pages, unusable_costly_peak, unusable_max_order_peak)
RUNS = {
    ("a", "slub", 1): (100, 10, 900), ("a", "slub", 2): (200, 30, 100),
    ("a", "slab", 1): (150, 20, 50), ("a", "slab", 2): (400, 20, 80),
    ("b", "slub", 1): (300, 50, 900), ("b", "slub", 2): (165, 10, 100),
    ("b", "slab", 1): (600, 20, 70), ("b", "slab", 2): (150, 20, 80),
}


def _result(leave_out: tuple[str, str, int] | None = None,
            failures: tuple[RunFailure, ...] = ()) -> SweepResult:
    traces = tuple(TraceFile(name, f"/{name}", 1, "0" * 64) for name in ("a", "b"))
    spec = SweepSpec("hand.toml", traces, {"policy": ("slub", "slab"), "cpus": (1, 2)})
    rows: list[dict[str, Any]] = []
    timelines = {}
    for (trace, policy, cpus), (peak, costly, top) in RUNS.items():
        if (trace, policy, cpus) == leave_out:
            continue
        key = f"{trace}-{policy}-{cpus}"
        rows.append({"run": key, "trace": trace, "policy": policy, "cpus": cpus,
                     "page_size": 4096, "total_peak_pages": peak, "slab_peak_pages": peak // 2,
                     "unusable_costly_peak": costly, "unusable_max_order_peak": top})
        timelines[key] = {"run": key, "events": [0, 10, 20], "time": [0.0, 5.0, 5.5],
                          "slab_pages": [0, peak // 4, peak // 2], "page_layer_pages": [0, 0, 0]}
    return SweepResult(spec, tuple(rows), timelines, failures, {}, 0, None)


def _labels(ranked: list[Any]) -> list[str]:
    return [r.label for r in ranked]


def test_peak_ranking_is_the_geometric_mean_of_ratios_to_each_traces_best() -> None:
    ranked = rank_by_peak(_result())
    # Best peaks: a 100, b 150. slub1: 1 and 2; slub2: 2 and 1.1; slab2: 4 and 1; slab1: 1.5, 4.
    assert _labels(ranked) == ["policy=slub cpus=1", "policy=slub cpus=2", "policy=slab cpus=2",
                               "policy=slab cpus=1"]
    assert [r.peak_score for r in ranked] == pytest.approx(
        [math.sqrt(2), math.sqrt(2.2), 2.0, math.sqrt(6)])
    assert ranked[0].mean_peak_mib == pytest.approx(200 * 4096 / 2**20)
    assert all(r.complete and r.traces == 2 for r in ranked)


def test_fragmentation_ranking_is_the_mean_index_at_order_3_then_at_max_order() -> None:
    ranked = rank_by_fragmentation(_result())
    assert _labels(ranked) == ["policy=slab cpus=1", "policy=slab cpus=2", "policy=slub cpus=2",
                               "policy=slub cpus=1"]
    assert [r.mean_unusable_costly for r in ranked] == pytest.approx([0.02, 0.02, 0.02, 0.03])
    assert [r.mean_unusable_max_order for r in ranked] == pytest.approx([0.06, 0.08, 0.1, 0.9])


def test_a_set_missing_a_trace_ranks_after_the_complete_ones() -> None:
    result = _result(leave_out=("b", "slub", 1))  # the best set, on one trace only
    for ranked in (rank_by_peak(result), rank_by_fragmentation(result)):
        assert ranked[-1].label == "policy=slub cpus=1"
        assert not ranked[-1].complete and ranked[-1].traces == 1
        assert all(r.complete for r in ranked[:-1])


def test_the_heat_map_averages_each_cell_over_the_traces() -> None:
    heat = heat_map(_result(), "policy", "cpus")
    assert heat.x_values == ("slub", "slab") and heat.y_values == (1, 2)
    assert heat.peak[0] == pytest.approx((math.sqrt(2), math.sqrt(6)))
    assert heat.peak[1] == pytest.approx((math.sqrt(2.2), 2.0))
    assert heat.fragmentation[0] == pytest.approx((0.03, 0.02))
    assert heat.fragmentation[1] == pytest.approx((0.02, 0.02))
    transposed = heat_map(_result(), "cpus", "policy")
    assert transposed.peak[1] == pytest.approx((math.sqrt(6), 2.0))
    holed = heat_map(_result(leave_out=("a", "slab", 2)), "policy", "cpus")
    assert holed.peak[1][1] == pytest.approx(1.0)  # b alone: 150 is b's best
    with pytest.raises(SweepReportError, match="'memory' is not a swept parameter"):
        heat_map(_result(), "policy", "memory")


def test_the_page_needs_no_other_file_and_escapes_what_it_shows(tmp_path: Path) -> None:
    failure = RunFailure("x", "a policy=slab", "a", {"policy": "slab", "cpus": 1},
                         "TraceFormatError: line 3: '<script>alert(1)</script>'")
    page = report_html(_result(leave_out=("a", "slab", 1), failures=(failure,)))
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    sources = re.findall(r'<img alt="[^"]*" src="([^"]*)"', page)
    assert len(sources) == 5 == page.count("<img")  # 2 rankings, the heat map, 2 timelines
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG)
    assert not re.search(r'(?:src|href)="(?!data:)', page)


def test_pictures_are_written_as_png_files_too(tmp_path: Path) -> None:
    written = write_sweep_report(_result(), tmp_path / "r.html", tmp_path / "pictures")
    names = sorted(p.name for p in written)
    assert names == ["heatmap.png", "r.html", "ranking-fragmentation.png", "ranking-peak.png",
                     "timeline-1-a.png", "timeline-2-b.png"]
    assert all(p.read_bytes().startswith(PNG) for p in written if p.suffix == ".png")
    with pytest.raises(SweepReportError, match=r"should end in \.html"):
        write_sweep_report(_result(), tmp_path / "r.pdf")


def test_one_swept_parameter_has_no_heat_map(tmp_path: Path) -> None:
    result = _result()
    single = SweepResult(SweepSpec("one.toml", result.spec.traces,
                                   {"policy": ("slub", "slab"), "cpus": (1,)}),
                         tuple(r for r in result.rows if r["cpus"] == 1), result.timelines,
                         (), {}, 0, None)
    page = report_html(single)
    assert "Fewer than two parameters are swept: no heat map." in page
    assert page.count("<img") == 4


def test_the_command_writes_the_report_of_a_sweep(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = sweep_folder(tmp_path)
    assert main(["sweep", str(spec), "-o", str(tmp_path / "out"), "--jobs", "1", "--report",
                 str(tmp_path / "r.html"), "--png", str(tmp_path / "pictures"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"report written to {tmp_path / 'r.html'}" in out
    assert "parameter sets by peak memory" in out
    page = (tmp_path / "r.html").read_text()
    assert page.count("<img") == 6  # 2 rankings, the heat map, 3 traces' timelines
    assert "3 traces × 4 parameter sets = 12 runs: 12 done (0 resumed), 0 failed" in page
    assert len(list((tmp_path / "pictures").glob("timeline-*.png"))) == 3


def test_a_run_that_never_allocated_ranks_as_one_page() -> None:
    # Runs of trace "a" that peaked at 0 pages: the scores stay finite, a 0 peak counts as one
    # page, so "a" contributes ratios 1 (0 pages), 1 (1 page) and 2 (2 pages).
    result = _result()
    rows = []
    for row in result.rows:
        row = dict(row)
        if row["trace"] == "a":
            row["total_peak_pages"] = {("slub", 1): 0, ("slub", 2): 1}.get(
                (row["policy"], row["cpus"]), 2)
        rows.append(row)
    ranked = rank_by_peak(SweepResult(result.spec, tuple(rows), result.timelines, (), {}, 0, None))
    scores = {r.label: r.peak_score for r in ranked}
    # b's best is 150: slub1 2.0, slub2 1.1, slab1 4.0, slab2 1.0.
    assert scores == pytest.approx({"policy=slub cpus=1": math.sqrt(1 * 2.0),
                                    "policy=slub cpus=2": math.sqrt(1 * 1.1),
                                    "policy=slab cpus=1": math.sqrt(2 * 4.0),
                                    "policy=slab cpus=2": math.sqrt(2 * 1.0)})
