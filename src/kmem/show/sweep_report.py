"""The report of a sweep (kmem.trace.sweep): which parameter sets hold the least memory, and
which fragment the page allocator least, over all the sweep's traces.

A parameter set is the values of the swept parameters (those the spec gives more than one
value); each has one run per trace. Its scores:

- peak memory: per trace, its run's total_peak_pages × page_size divided by the smallest of that
  trace's runs; over the traces, the geometric mean of those ratios (1.00: the best on every
  trace; a ratio, so a large trace does not outweigh small ones). The mean peak in MiB is shown
  beside it.
- fragmentation: the mean over the traces of the highest unusable free space index at order 3
  (unusable_costly_peak, as a share of free memory), ties broken by the same index at
  max_order.

Sets whose runs did not all succeed rank after the complete ones (their scores cover fewer
traces). The heat map shows both scores over two swept parameters, each cell averaging the
other parameters' sets (geometric mean of the ratios; arithmetic mean of the indices). The
timelines show, per trace, the slab pages over the trace's time of the best and the worst set
by peak memory.

``write_sweep_report(result, html="out.html", png_dir="pictures/")`` writes one self-contained HTML
page (every picture inlined as a data: URL, the style inline: no other file, no network) and/or
the same pictures as PNG files. matplotlib is imported only in the functions that draw.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmem.errors import InvalidArgumentError
from kmem.trace.sweep import RESULT_COLUMNS, SweepResult
from kmem.trace.sweep_spec import check_heatmap, parameters_text, show_value

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MIB = 1 << 20
MAX_BARS = 20  # parameter sets drawn in a ranking's bar chart (the table lists them all)
MAX_TIMELINES = 12  # traces drawn (the first ones in the spec's order)


class SweepReportError(InvalidArgumentError):
    """The report cannot be written as asked (a bad file name, an unknown parameter)."""


@dataclass(frozen=True, slots=True)
class Ranked:
    """A parameter set's place in a ranking."""

    values: tuple[tuple[str, Any], ...]  # the swept parameters' values
    peak_score: float  # geometric mean of the peak ratios (1: the best on every trace)
    mean_peak_mib: float
    mean_unusable_costly: float  # a share: 0..1
    mean_unusable_max_order: float
    traces: int  # traces whose run succeeded
    complete: bool  # every trace's run succeeded

    @property
    def label(self) -> str:
        return parameters_text(self.values) or "(one set)"


def _peak_bytes(row: Mapping[str, Any]) -> int:
    return int(row["total_peak_pages"]) * int(row["page_size"])


def _values(row: Mapping[str, Any], swept: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    return tuple((key, row[key]) for key in swept)


def _peak_ratios(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """Each row's peak over the smallest peak among its trace's rows.

    A peak is counted as at least one page: a run that never allocated (peak 0) would give a
    ratio of 0, whose logarithm the geometric mean cannot take."""
    def peak(row: Mapping[str, Any]) -> int:
        return max(_peak_bytes(row), int(row["page_size"]))

    best: dict[str, int] = {}
    for row in rows:
        best[row["trace"]] = min(best.get(row["trace"], 1 << 62), peak(row))
    return [peak(row) / best[row["trace"]] for row in rows]


def _geometric_mean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def parameter_sets(result: SweepResult) -> list[Ranked]:
    """Every parameter set of the sweep that has a row, with its scores (grid order)."""
    swept = result.spec.swept
    traces = len(result.spec.traces)
    ratios = _peak_ratios(result.rows)
    groups: dict[tuple[tuple[str, Any], ...], list[tuple[Mapping[str, Any], float]]] = {}
    for row, ratio in zip(result.rows, ratios, strict=True):
        groups.setdefault(_values(row, swept), []).append((row, ratio))
    ranked = []
    for values, members in groups.items():
        ranked.append(Ranked(
            values=values,
            peak_score=_geometric_mean([ratio for _, ratio in members]),
            mean_peak_mib=_mean([_peak_bytes(row) / MIB for row, _ in members]),
            mean_unusable_costly=_mean([row["unusable_costly_peak"] / 1000
                                        for row, _ in members]),
            mean_unusable_max_order=_mean([row["unusable_max_order_peak"] / 1000
                                           for row, _ in members]),
            traces=len(members), complete=len(members) == traces,
        ))
    return ranked


def rank_by_peak(result: SweepResult) -> list[Ranked]:
    """Parameter sets, least peak memory first (complete sets before the others)."""
    return sorted(parameter_sets(result), key=lambda r: (not r.complete, r.peak_score))


def rank_by_fragmentation(result: SweepResult) -> list[Ranked]:
    """Parameter sets, least fragmentation first (complete sets before the others)."""
    return sorted(parameter_sets(result), key=lambda r: (
        not r.complete, r.mean_unusable_costly, r.mean_unusable_max_order))


@dataclass(frozen=True, slots=True)
class HeatMap:
    """Both scores over two swept parameters: cells[y][x] (None: no run succeeded there)."""

    x: str
    y: str
    x_values: tuple[Any, ...]
    y_values: tuple[Any, ...]
    peak: tuple[tuple[float | None, ...], ...]  # geometric mean of peak ratios
    fragmentation: tuple[tuple[float | None, ...], ...]  # mean unusable index at order 3


def heat_map(result: SweepResult, x: str, y: str) -> HeatMap:
    """The heat map of two swept parameters (their values in spec order)."""
    check_heatmap([x, y], result.spec.parameters,
                  lambda _, what: SweepReportError(f"heat map: {what}"))
    ratios = _peak_ratios(result.rows)
    cells: dict[tuple[Any, Any], list[tuple[float, float]]] = {}
    for row, ratio in zip(result.rows, ratios, strict=True):
        cells.setdefault((row[x], row[y]), []).append((ratio, row["unusable_costly_peak"] / 1000))
    xs, ys = result.spec.parameters[x], result.spec.parameters[y]

    def grid(pick: int, mean: Any) -> tuple[tuple[float | None, ...], ...]:
        return tuple(tuple(mean([c[pick] for c in cells[(vx, vy)]]) if (vx, vy) in cells
                           else None for vx in xs) for vy in ys)

    return HeatMap(x, y, xs, ys, grid(0, _geometric_mean), grid(1, _mean))


def default_heatmap(result: SweepResult) -> tuple[str, str] | None:
    """The spec's [report] heatmap, else its first two swept parameters (None: fewer swept)."""
    if result.spec.heatmap:
        return result.spec.heatmap
    swept = result.spec.swept
    return (swept[0], swept[1]) if len(swept) >= 2 else None


# -- pictures --------------------------------------------------------------------------------

def ranking_figure(ranked: Sequence[Ranked], title: str, axis: str, values: Sequence[float],
                   number_format: str = "{:.3f}") -> Figure:
    """A horizontal bar per parameter set, the best on top (MAX_BARS of them)."""
    from matplotlib.figure import Figure

    shown = list(zip(ranked, values, strict=True))[:MAX_BARS]
    figure = Figure(figsize=(9, 1.2 + 0.35 * len(shown)))
    ax = figure.subplots()
    labels = [r.label + ("" if r.complete else " (incomplete)") for r, _ in shown]
    bars = ax.barh(range(len(shown)), [v for _, v in shown], color="#3b7dd8")
    ax.bar_label(bars, fmt=number_format, padding=3, fontsize="small")
    ax.margins(x=0.12)
    ax.set_yticks(range(len(shown)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(axis)
    ax.set_title(title)
    figure.tight_layout()
    return figure


def fragmentation_figure(ranked: Sequence[Ranked]) -> Figure:
    """Two bars per parameter set, the best on top: the mean unusable free space index at
    order 3 (what the ranking sorts by) and at max order (its tie-break)."""
    from matplotlib.figure import Figure

    shown = list(ranked)[:MAX_BARS]
    figure = Figure(figsize=(9, 1.4 + 0.5 * len(shown)))
    ax = figure.subplots()
    rows = range(len(shown))
    for offset, values, colour, label in (
        (-0.2, [r.mean_unusable_costly for r in shown], "#3b7dd8", "order 3"),
        (0.2, [r.mean_unusable_max_order for r in shown], "#b07cc6", "max order"),
    ):
        bars = ax.barh([i + offset for i in rows], values, height=0.4, color=colour, label=label)
        ax.bar_label(bars, fmt="{:.4f}", padding=3, fontsize="small")
    ax.set_yticks(rows, [r.label + ("" if r.complete else " (incomplete)") for r in shown])
    ax.invert_yaxis()
    ax.set_xlim(0, max([0.01, *(r.mean_unusable_max_order for r in shown)]) * 1.15)
    ax.set_xlabel("mean highest unusable free space index over the traces")
    ax.set_title("fragmentation (lower is better; ranked by order 3, then max order)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    figure.tight_layout()
    return figure


def heatmap_figure(heat: HeatMap) -> Figure:
    """Two panels: peak memory (ratio to each trace's best) and fragmentation."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 1.8 + 0.5 * len(heat.y_values)))
    panels = figure.subplots(1, 2)
    for ax, cells, title, floor, digits in (
        (panels[0], heat.peak, "peak memory (× each trace's best)", 1.0, 3),
        (panels[1], heat.fragmentation, "unusable free space index, order 3", 0.0, 4),
    ):
        matrix = [[math.nan if v is None else v for v in line] for line in cells]
        known = [v for line in cells for v in line if v is not None]
        top = max([floor + 0.001, *known])  # (a grid of equal values still gets a scale)
        image = ax.imshow(matrix, cmap="viridis_r", aspect="auto", vmin=floor, vmax=top)
        ax.set_xticks(range(len(heat.x_values)), [show_value(heat.x, v) for v in heat.x_values])
        ax.set_yticks(range(len(heat.y_values)), [show_value(heat.y, v) for v in heat.y_values])
        ax.set_xlabel(heat.x)
        ax.set_ylabel(heat.y)
        ax.set_title(title)
        for j, line in enumerate(cells):
            for i, value in enumerate(line):
                # dark text on the light (low) end of the colour map, light on the dark end
                dark = value is None or (value - floor) / (top - floor) < 0.5
                ax.text(i, j, "—" if value is None else f"{value:.{digits}f}", ha="center",
                        va="center", color="black" if dark else "white")
        figure.colorbar(image, ax=ax)
    figure.tight_layout()
    return figure


def _run_of(result: SweepResult, trace: str, values: tuple[tuple[str, Any], ...]
            ) -> Mapping[str, Any] | None:
    for row in result.rows:
        if row["trace"] == trace and _values(row, result.spec.swept) == values:
            return row
    return None


def timeline_figure(result: SweepResult, trace: str, best: Ranked, worst: Ranked) -> Figure:
    """Slab pages over the trace's time for the best and the worst parameter set."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6))
    ax = figure.subplots()
    for ranked, style, colour in ((best, "-", "#1a9e8f"), (worst, "--", "#e0525e")):
        row = _run_of(result, trace, ranked.values)
        if row is None:
            continue
        line = result.timelines[row["run"]]
        # (the first sample is taken before any event, at no time of the trace's own)
        samples = [i for i, events in enumerate(line["events"]) if events] or [0]
        start = line["time"][samples[0]]
        kind = "best" if ranked is best else "worst"
        ax.plot([line["time"][i] - start for i in samples],
                [line["slab_pages"][i] for i in samples], style, color=colour,
                label=f"{kind}: {ranked.label} (peak {row['slab_peak_pages']} pages)")
    ax.set_xlabel("seconds since the trace's first event")
    ax.set_ylabel("slab pages")
    ax.set_title(trace)
    ax.legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return buffer.getvalue()


# -- the page --------------------------------------------------------------------------------

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f0f0f0; } td.text, th.text { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
.failed { color: #a93226; } details { margin: 1em 0; } code { font-size: 0.95em; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], text_columns: int = 1) -> str:
    head = "".join(f'<th class="text">{_e(h)}</th>' if i < text_columns else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="text">{_e(v)}</td>' if i < text_columns
                         else f"<td>{_e(v)}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _ranking_rows(ranked: Sequence[Ranked]) -> list[list[object]]:
    return [[index + 1, r.label, f"{r.peak_score:.4f}", f"{r.mean_peak_mib:.2f}",
             f"{r.mean_unusable_costly:.4f}", f"{r.mean_unusable_max_order:.4f}",
             f"{r.traces}" + ("" if r.complete else " (incomplete)")]
            for index, r in enumerate(ranked)]


_RANK_HEADER = ("rank", "parameter set", "peak score", "mean peak MiB", "unusable (order 3)",
                "unusable (max order)", "traces")


def _file_name(trace: str) -> str:
    return re.sub(r"[^\w.-]+", "_", trace).strip("_") or "trace"


def pictures(result: SweepResult, heatmap: tuple[str, str] | None = None
             ) -> list[tuple[str, str, bytes]]:
    """(file name, caption, PNG bytes) of every picture of the report, in page order."""
    out = []
    peak, frag = rank_by_peak(result), rank_by_fragmentation(result)
    if peak:
        out.append(("ranking-peak.png", "parameter sets by peak memory", _png(ranking_figure(
            peak, "peak memory (lower is better)",
            "% above each trace's best peak (geometric mean over the traces)",
            [(r.peak_score - 1) * 100 for r in peak], "{:.1f}%"))))
        out.append(("ranking-fragmentation.png", "parameter sets by fragmentation",
                    _png(fragmentation_figure(frag))))
    axes = heatmap or default_heatmap(result)
    if axes and result.rows:
        out.append(("heatmap.png", f"{axes[0]} × {axes[1]}",
                    _png(heatmap_figure(heat_map(result, *axes)))))
    if peak:
        for number, trace in enumerate(t.name for t in result.spec.traces[:MAX_TIMELINES]):
            out.append((f"timeline-{number + 1}-{_file_name(trace)}.png",
                        f"slab pages over time: {trace}",
                        _png(timeline_figure(result, trace, peak[0], peak[-1]))))
    return out


def report_html(result: SweepResult, heatmap: tuple[str, str] | None = None,
                drawn: Sequence[tuple[str, str, bytes]] | None = None) -> str:
    """The self-contained report page."""
    drawn = pictures(result, heatmap) if drawn is None else drawn
    images = {name: _image(png, caption) for name, caption, png in drawn}
    spec = result.spec
    peak, frag = rank_by_peak(result), rank_by_fragmentation(result)
    swept = ", ".join(f"{k} ({len(spec.parameters[k])})" for k in spec.swept) or "none"
    parts = [
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">",
        f"<title>kmem sweep: {_e(spec.source)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>kmem sweep: {_e(spec.source)}</h1>",
        f"<p>{len(spec.traces)} traces × {len(spec.parameter_sets())} parameter sets ="
        f" {result.runs} runs: {len(result.rows)} done ({result.resumed} resumed),"
        f" {len(result.failures)} failed. Swept: {_e(swept)}. Sampled every {spec.every}"
        " events.</p>",
        "<h2>By peak memory</h2><p>Score: the geometric mean over the traces of each run's peak"
        " (both layers) divided by the best peak of its trace; 1 is the best on every"
        " trace.</p>",
        images.get("ranking-peak.png", ""), _table(_RANK_HEADER, _ranking_rows(peak), 2),
        "<h2>By fragmentation</h2><p>Score: the mean over the traces of the highest unusable"
        " free space index at order 3 (the share of free memory in blocks too small for an"
        " order-3 request; mm/vmstat.c), ties broken by the index at max order.</p>",
        images.get("ranking-fragmentation.png", ""), _table(_RANK_HEADER, _ranking_rows(frag), 2),
    ]
    axes = heatmap or default_heatmap(result)
    parts.append("<h2>Heat map</h2>")
    parts.append(images.get("heatmap.png", "") if axes else
                 "<p>Fewer than two parameters are swept: no heat map.</p>")
    if peak:
        parts.append(f"<h2>Slab pages over time</h2><p>Best set: {_e(peak[0].label)}; worst:"
                     f" {_e(peak[-1].label)} (by peak memory).</p>")
        parts.extend(image for name, image in images.items() if name.startswith("timeline-"))
        if len(spec.traces) > MAX_TIMELINES:
            parts.append(f"<p>(the first {MAX_TIMELINES} traces of {len(spec.traces)})</p>")
    if result.failures:
        parts.append("<h2 class=\"failed\">Failed runs</h2>")
        parts.append(_table(("trace", "parameters", "error"), [
            [f.trace, parameters_text(f.parameters.items()), f.error]
            for f in result.failures], 3))
    columns = list(result.rows[0]) if result.rows else []
    parts.append("<details><summary>The results table</summary>")
    parts.append(_table(columns, [list(row.values()) for row in result.rows], 2))
    parts.append(_table(("column", "meaning"), list(RESULT_COLUMNS.items()), 2))
    parts.append("</details></body></html>\n")
    return "\n".join(parts)


def report_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if it names an .html file (checked before a sweep runs)."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise SweepReportError(f"the report is an HTML page: {str(path)!r} should end in .html")
    return path


def write_sweep_report(result: SweepResult, html_path: str | os.PathLike[str] | None = None,
                 png_dir: str | os.PathLike[str] | None = None,
                 heatmap: tuple[str, str] | None = None) -> list[Path]:
    """Write the report page and/or its pictures as PNG files; return the paths written."""
    page = report_path(html_path) if html_path is not None else None
    drawn = pictures(result, heatmap)
    written = []
    if png_dir is not None:
        folder = Path(png_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, _, png in drawn:
            (folder / name).write_bytes(png)
            written.append(folder / name)
    if page is not None:
        page.write_text(report_html(result, heatmap, drawn), encoding="utf-8")
        written.append(page)
    return written


__all__ = ["HeatMap", "Ranked", "SweepReportError", "heat_map", "rank_by_fragmentation",
           "rank_by_peak", "report_html", "write_sweep_report"]
