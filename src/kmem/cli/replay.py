"""``kmem replay TRACE``: run a real kmem trace through kmem's own allocators."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Protocol, TypeVar

from kmem.cli.args import (
    COMMANDS,
    add_machine_arguments,
    count_argument,
    int_argument,
    natural_argument,
    output_path,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kmem.trace.events import EventBatch
    from kmem.trace.parse import TraceParser
    from kmem.trace.pipeline import ParserProcess
    from kmem.trace.replay import LineCounts

_R = TypeVar("_R")
_Result_co = TypeVar("_Result_co", covariant=True)


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
    parser.add_argument("--kernel", default="6.18", choices=("6.17", "6.18", "7.0"),
                        help="whose SLUB: 6.17 (cpu slabs and partial lists), 6.18 (sheaves"
                        " for maple_node and vm_area_struct, as Linux gives them) or 7.0"
                        " (sheaves for every cache); default 6.18")
    parser.add_argument("--compare", metavar="KERNELS", default=None,
                        help="replay the trace once under each of these kernels, e.g."
                        " 6.17,6.18,7.0, and print the figures side by side (--plot: slab"
                        " memory over time under each)")
    add_machine_arguments(parser, what=" the trace replays on (trace CPUs map modulo)")
    parser.add_argument("--max-order", type=int_argument, default=10,
                        help="buddy MAX_PAGE_ORDER (10)")
    parser.add_argument("--every", type=count_argument, default=1000, metavar="N",
                        help="sample memory and fragmentation every N events (default 1000)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="count malformed lines instead of stopping at the first")
    parser.add_argument("--json", action="store_true", help="print everything as one JSON object")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="plot memory in use and fragmentation over the trace's time")
    parser.add_argument("--caches", type=natural_argument, default=20, metavar="N",
                        help="slabinfo rows to show, largest caches first (0: all; default 20)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--serial", action="store_true",
                        help="parse in this process (default for a file: a second process"
                        " parses while this one replays)")
    parser.set_defaults(func=run)


class _BatchRunner(Protocol[_Result_co]):
    """A Replayer, or a KernelComparer: what the two ways of parsing feed."""

    def run_batches(self, batches: Iterable[EventBatch], every: int = ...,
                    callback: None = ..., parser: LineCounts | None = ...) -> _Result_co: ...


def _replay_in_parallel(replayer: _BatchRunner[_R], args: argparse.Namespace,
                        show_progress: bool) -> tuple[_R, ParserProcess]:
    """Parse in a child process (kmem.trace.pipeline) while this one replays."""
    from kmem.cli.terminal import progress_bar
    from kmem.trace.pipeline import ParserProcess

    parser = ParserProcess(args.trace, skip_bad=args.skip_bad)
    parser.start()  # before the progress bar's thread: see ParserProcess.start
    try:
        if not show_progress:
            return replayer.run_batches(parser.batches(), every=args.every, parser=parser), parser
        with progress_bar() as progress:
            task = progress.add_task("replaying", total=os.stat(args.trace).st_size)
            batches = parser.batches(lambda done: progress.update(task, completed=done))
            return replayer.run_batches(batches, every=args.every, parser=parser), parser
    finally:
        parser.close()  # (if the replay failed before reading)


def _replay_serially(replayer: _BatchRunner[_R], args: argparse.Namespace,
                     show_progress: bool) -> tuple[_R, TraceParser]:
    from kmem.cli.terminal import read_trace
    from kmem.trace.parse import TraceParser

    parser = TraceParser(skip_bad=args.skip_bad)
    with read_trace(args.trace, show_progress) as lines:
        return (replayer.run_batches(parser.parse_batches(lines), every=args.every,
                                     parser=parser), parser)


def run(args: argparse.Namespace) -> int:
    from kmem.cli.plot import write_picture
    from kmem.cli.terminal import output_console, wants_progress
    from kmem.show.plot import picture_path, plot_replay
    from kmem.trace import pipeline
    from kmem.trace.replay import Replayer, parse_layers
    from kmem.trace.report import print_replay

    layers = parse_layers(args.layers)
    if args.plot:  # a bad file name or folder fails now, not after the replay
        output_path(args.plot, "--plot")
        picture_path(args.plot)
    if args.compare is not None:
        return _compare(args, layers)
    replayer = Replayer(layers=layers, policy=args.policy, nr_cpus=args.cpus,
                        memory=args.memory, max_order=args.max_order, kernel=args.kernel)
    show_progress = wants_progress(args.no_progress) and args.trace != "-"
    parser: ParserProcess | TraceParser
    if args.trace != "-" and not args.serial and pipeline.available():
        result, parser = _replay_in_parallel(replayer, args, show_progress)
    else:
        result, parser = _replay_serially(replayer, args, show_progress)
    if args.plot:
        write_picture(args.plot, lambda temporary: plot_replay(result, temporary))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        console = output_console()
        print_replay(result, console, slabinfo_rows=args.caches or 1 << 30)
        if parser.bad_lines:
            console.print(f"{parser.bad_lines} malformed lines skipped; first:"
                          f" {parser.bad_examples[0]}", highlight=False)
        if args.plot:
            console.print(f"plot written to {args.plot}")
    return 0


def _compare(args: argparse.Namespace, layers: tuple[str, ...]) -> int:
    """``--compare KERNELS``: the trace under each kernel, side by side."""
    from kmem.cli.plot import write_picture
    from kmem.cli.terminal import output_console, wants_progress
    from kmem.show.plot import plot_comparison
    from kmem.trace import pipeline
    from kmem.trace.compare import KernelComparer, parse_kernels, print_comparison

    kernels = parse_kernels(args.compare)
    comparer = KernelComparer(kernels, layers=layers, policy=args.policy, nr_cpus=args.cpus,
                              memory=args.memory, max_order=args.max_order)
    show_progress = wants_progress(args.no_progress) and args.trace != "-"
    if args.trace != "-" and not args.serial and pipeline.available():
        comparison, _ = _replay_in_parallel(comparer, args, show_progress)
    else:
        comparison, _ = _replay_serially(comparer, args, show_progress)
    if args.plot:
        write_picture(args.plot, lambda temporary: plot_comparison(comparison, temporary))
    if args.json:
        print(json.dumps(comparison.to_json(), indent=2))
    else:
        console = output_console()
        print_comparison(comparison, console, caches=args.caches)
        if args.plot:
            console.print(f"plot written to {args.plot}")
    return 0
