"""``kmem sweep SPEC.toml``: replay traces × parameter sets, gather one results table, report.

Exit status: 0 when every run succeeded, 1 when some failed (each reported with its parameters
and error; the others ran), 2 for bad input (the spec, an option), found before any run starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmem.cli.args import COMMANDS, count_argument, natural_argument, output_path

if TYPE_CHECKING:
    from rich.console import Console

    from kmem.trace.sweep import SweepResult


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help=COMMANDS["sweep"],
        description="Replay every trace of a sweep spec (TOML: traces, files or globs, and"
        " [parameters], each a value or a list of values to sweep) with every parameter set,"
        " as independent replays on a local process pool or a Dask cluster; write one results"
        " table (results.jsonl, one row per run) and, if asked, an HTML report.",
    )
    parser.add_argument("spec", help="the sweep spec (.toml)")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="output folder (default: the spec's name + '-results', here)")
    parser.add_argument("--jobs", type=count_argument, metavar="N",
                        help="local worker processes (default: every core; 1: one after the"
                        " other, in this process)")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help="run on the Dask cluster whose scheduler is at ADDRESS"
                        " (tcp://host:8786), or 'local' for a local cluster of --jobs workers")
    parser.add_argument("--ship", action="store_true",
                        help="with --dask: send the traces' bytes to the workers in chunks"
                        " (default: workers read them at the same path)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs whose results the output folder has; run the rest")
    parser.add_argument("--parquet", action="store_true",
                        help="write results.parquet too (needs pyarrow)")
    parser.add_argument("--report", metavar="FILE.html",
                        help="write a self-contained HTML report: rankings, heat map, timelines")
    parser.add_argument("--png", metavar="DIR", help="write the report's pictures as PNG files")
    parser.add_argument("--heatmap", metavar="X,Y",
                        help="the two swept parameters of the heat map (default: the spec's"
                        " [report] heatmap, else its first two swept parameters)")
    parser.add_argument("--top", type=natural_argument, default=10, metavar="N",
                        help="parameter sets shown in the ranking printed at the end (10)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _output(args: argparse.Namespace) -> Path:
    if args.output:
        return Path(args.output)
    return Path(Path(args.spec).stem + "-results")


def _heatmap(args: argparse.Namespace, parameters: Any) -> tuple[str, str] | None:
    from kmem.trace.sweep_spec import SweepSpecError, check_heatmap

    if args.heatmap is None:
        return None
    keys = [part.strip() for part in args.heatmap.split(",")]
    return check_heatmap(keys, parameters,
                         lambda _, what: SweepSpecError(f"--heatmap: {what}"))


def _print_failures(result: SweepResult) -> None:
    """Each failed run on standard error, one line each (as the progress bar prints them)."""
    from kmem.trace.sweep_spec import parameters_text

    for failure in result.failures:
        parameters = parameters_text(failure.parameters.items())
        print(f"kmem sweep: run failed: {failure.trace} {parameters}: {failure.error}",
              file=sys.stderr)


def _print_summary(result: SweepResult, console: Console, top: int) -> None:
    from rich.table import Table

    from kmem.show.sweep_report import rank_by_peak

    console.print(f"{result.runs} runs: {len(result.rows)} done ({result.resumed} resumed),"
                  f" {len(result.failures)} failed; results in {result.output}/results.jsonl",
                  highlight=False, soft_wrap=True)
    ranked = rank_by_peak(result)
    if not ranked or top <= 0:
        return
    table = Table(title="parameter sets by peak memory (score: × each trace's best)")
    # (short headers: the table fits 80 columns; docs/sweeps.md says what each holds)
    for column in ("#", "parameter set", "peak score", "peak MiB", "unusable 3", "unusable max"):
        table.add_column(column, justify="left" if column == "parameter set" else "right",
                         no_wrap=column == "parameter set")
    for index, entry in enumerate(ranked[:top]):
        table.add_row(str(index + 1), entry.label + ("" if entry.complete else " (incomplete)"),
                      f"{entry.peak_score:.4f}", f"{entry.mean_peak_mib:.2f}",
                      f"{entry.mean_unusable_costly:.4f}", f"{entry.mean_unusable_max_order:.4f}")
    console.print(table)


def run(args: argparse.Namespace) -> int:
    from kmem.cli.terminal import output_console
    from kmem.errors import InvalidArgumentError
    from kmem.show.sweep_report import report_path, write_sweep_report
    from kmem.trace.sweep import sweep
    from kmem.trace.sweep_spec import load_sweep_spec

    spec = load_sweep_spec(args.spec)
    heatmap = _heatmap(args, spec.parameters)
    if args.report:  # a bad name or place fails now, not after the runs
        output_path(args.report, "--report")
        report_path(args.report)
    if args.png and Path(args.png).exists() and not Path(args.png).is_dir():
        raise InvalidArgumentError(f"--png {args.png!r} is a file, not a folder")
    for option, folder in (("-o", _output(args)), ("--png", args.png)):
        # The folder itself is made, not its parents: a typo in a parent is an error here
        # rather than a new tree of folders found after the runs.
        parent = Path(folder).absolute().parent if folder else None
        if parent is not None and not parent.is_dir() and parent != _output(args).absolute():
            raise InvalidArgumentError(f"{option} {str(folder)!r}: no folder {str(parent)!r}")
    if args.ship and not args.dask:
        raise InvalidArgumentError("--ship sends traces to a Dask cluster: give --dask too")
    progress = not args.no_progress and sys.stderr.isatty()
    result = sweep(spec, output=_output(args), jobs=args.jobs,
                   executor="dask" if args.dask else "process", address=args.dask,
                   ship=args.ship, resume=args.resume, parquet=args.parquet, progress=progress)
    if not progress:
        _print_failures(result)
    console = output_console()
    _print_summary(result, console, args.top)
    if args.report or args.png:
        for path in write_sweep_report(result, args.report, args.png, heatmap):
            if path.suffix == ".html":
                console.print(f"report written to {path}", highlight=False, soft_wrap=True)
        if args.png:
            console.print(f"pictures written to {args.png}", highlight=False, soft_wrap=True)
    return 1 if result.failures else 0
