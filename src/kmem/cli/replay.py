"""``kmem replay TRACE``: run a real kmem trace through kmem's own allocators."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import IO, TYPE_CHECKING

from kmem.cli.args import COMMANDS, size_argument
from kmem.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from rich.progress import Progress

    from kmem.trace.lost import LostEvents
    from kmem.trace.parse import TraceParser
    from kmem.trace.perf_data import TraceInput
    from kmem.trace.pipeline import ParserProcess
    from kmem.trace.replay import Replayer, ReplayResult


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help=COMMANDS["replay"],
        description="Replay a kmem trace (ftrace text, trace-cmd report or perf script output;"
        " plain, gzip or xz; '-' for stdin) through kmem's allocators: kmem chooses every"
        " address, the trace says what is asked and freed. Reports events, unknown and missed"
        " frees, bytes_alloc agreement, memory in use per layer, slabinfo, buddyinfo and"
        " fragmentation over time.",
    )
    parser.add_argument("trace", help="trace file, or - for standard input")
    parser.add_argument("--layers", default="slab,page",
                        help="layers to replay: slab, page or slab,page (default slab,page)")
    parser.add_argument("--policy", choices=("slub", "slab"), default="slub",
                        help="slab allocator policy (default slub)")
    parser.add_argument("--nr-cpus", type=int, default=2,
                        help="CPUs of kmem's slab layer; trace CPUs map modulo (default 2)")
    parser.add_argument("--memory", type=size_argument, default="1G", metavar="SIZE",
                        help="kmem's memory size (default 1G)")
    parser.add_argument("--max-order", type=int, default=10, help="buddy MAX_PAGE_ORDER (10)")
    parser.add_argument("--every", type=int, default=1000,
                        help="sample memory and fragmentation every N events (default 1000)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="count malformed lines instead of stopping at the first")
    parser.add_argument("--json", action="store_true", help="print everything as one JSON object")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="plot memory in use and fragmentation over the trace's time")
    parser.add_argument("--caches", type=int, default=20, metavar="N",
                        help="slabinfo rows to show, largest caches first (0: all; default 20)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--kallsyms", metavar="FILE",
                        help="perf.data: the kernel's symbols for call sites (default: perf's"
                             " build-id cache, or /proc/kallsyms of the same kernel)")
    parser.add_argument("--serial", action="store_true",
                        help="parse in this process (default for a file: a second process"
                        " parses while this one replays)")
    parser.set_defaults(func=run)


def _with_progress(lines: Iterable[str], raw: IO[bytes], size: int, progress: Progress
                   ) -> Iterator[str]:
    task = progress.add_task("replaying", total=size)
    for number, line in enumerate(lines):
        if not number & 0xFFFF:
            progress.update(task, completed=raw.tell())
        yield line
    progress.update(task, completed=size)


def _progress_bar() -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)


def _replay_in_parallel(replayer: Replayer, args: argparse.Namespace, show_progress: bool
                        ) -> tuple[ReplayResult, ParserProcess]:
    """Parse in a child process (kmem.trace.pipeline) while this one replays."""
    from kmem.trace.pipeline import ParserProcess

    parser = ParserProcess(args.trace, skip_bad=args.skip_bad)
    parser.start()  # before the progress bar's thread: see ParserProcess.start
    try:
        if not show_progress:
            return replayer.run_batches(parser.batches(), every=args.every, parser=parser), parser
        with _progress_bar() as progress:
            task = progress.add_task("replaying", total=os.stat(args.trace).st_size)
            batches = parser.batches(lambda done: progress.update(task, completed=done))
            return replayer.run_batches(batches, every=args.every, parser=parser), parser
    finally:
        parser.close()  # (if the replay failed before reading)


def _replay_serially(replayer: Replayer, args: argparse.Namespace, show_progress: bool,
                     lost: LostEvents) -> tuple[ReplayResult, TraceParser]:
    from kmem.trace.lost import watch_lines
    from kmem.trace.parse import TraceParser
    from kmem.trace.source import TraceFileError, open_trace

    parser = TraceParser(skip_bad=args.skip_bad)
    if args.trace == "-":
        with open_trace("-") as text:
            lines = watch_lines(text, lost)
            return (replayer.run_batches(parser.parse_batches(lines), every=args.every,
                                         parser=parser), parser)
    try:
        raw = open(args.trace, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as error:
        raise TraceFileError(f"cannot open trace {args.trace!r}: {error.strerror}") from error
    try:
        with open_trace(raw) as text:
            lines = watch_lines(text, lost)
            if not show_progress:
                return (replayer.run_batches(parser.parse_batches(lines), every=args.every,
                                             parser=parser), parser)
            with _progress_bar() as progress:
                size = os.fstat(raw.fileno()).st_size
                stream = _with_progress(lines, raw, size, progress)
                return (replayer.run_batches(parser.parse_batches(stream), every=args.every,
                                             parser=parser), parser)
    finally:
        raw.close()


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from kmem.show.plot import picture_path, plot_replay
    from kmem.trace import pipeline
    from kmem.trace.replay import Replayer, parse_layers
    from kmem.trace.report import print_replay

    layers = parse_layers(args.layers)
    if args.caches < 0:
        raise InvalidArgumentError(f"--caches must be 0 (all) or more, got {args.caches}")
    if args.plot:
        picture_path(args.plot)  # a bad file name fails now, not after the replay
    replayer = Replayer(layers=layers, policy=args.policy, nr_cpus=args.nr_cpus,
                        memory=args.memory, max_order=args.max_order)
    show_progress = (not args.no_progress and not args.json and args.trace != "-"
                     and sys.stderr.isatty())
    from kmem.cli.stat import warn_no_events
    from kmem.trace.lost import LostEvents
    from kmem.trace.perf_data import TraceInput

    parser: ParserProcess | TraceParser | TraceInput
    trace = TraceInput(args.trace, skip_bad=args.skip_bad, kallsyms=args.kallsyms)
    lost: LostEvents | None = None
    if trace.kind == "perf.data":
        with trace:
            result = replayer.run_batches(trace.batches(), every=args.every,
                                          parser=trace.perf)
        parser, lost = trace, trace.lost
    elif args.trace != "-" and not args.serial and pipeline.available():
        result, parser = _replay_in_parallel(replayer, args, show_progress)
    else:
        lost = LostEvents()
        result, parser = _replay_serially(replayer, args, show_progress, lost)
    if lost is None:  # (the parsing process read the text)
        lost = _lost_of_text(args.trace)
    if not sum(result.events.values()):
        return warn_no_events(args.trace, parser.lines, getattr(parser, "other_events", {}),
                              parser.bad_lines)
    if args.plot:
        plot_replay(result, args.plot)
    if args.json:
        print(json.dumps({**result.to_json(), "lost": {
            **lost.to_json(), "unknown_slab_frees": result.unknown_frees,
            "unknown_page_frees": result.page.get("unknown_frees", -1)}}, indent=2))
    else:
        console = Console()
        print_replay(result, console, slabinfo_rows=args.caches or 1 << 30)
        if parser.bad_lines:
            console.print(f"{parser.bad_lines} malformed lines skipped; first:"
                          f" {parser.bad_examples[0]}", highlight=False)
        if lost.any:
            console.print(lost.describe(sum(result.events.values()), result.unknown_frees,
                                        result.page.get("unknown_frees", -1)),
                          highlight=False, end="")
        if args.plot:
            console.print(f"plot written to {args.plot}")
    return 0


def _lost_of_text(path: str) -> LostEvents:
    """The lost-event lines of a text trace the parsing process read (a second pass here, but a
    cheap one: a prefix test per line)."""
    from kmem.trace.lost import LostEvents, watch_lines
    from kmem.trace.source import open_trace

    lost = LostEvents()
    if path == "-":
        return lost  # (standard input is read once, by the replay)
    with open_trace(path) as lines:
        for _ in watch_lines(lines, lost):
            pass
    return lost
