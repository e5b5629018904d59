"""``kmem replay TRACE``: run a real kmem trace through kmem's own allocators."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Protocol, TypeVar

from kmem.cli.args import (
    COMMANDS,
    add_machine_arguments,
    count_argument,
    int_argument,
    natural_argument,
    output_path,
    seed_argument,
)
from kmem.errors import InvalidArgumentError
from kmem.trace.json_text import json_text

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kmem.trace.events import EventBatch
    from kmem.trace.lost import LostEvents
    from kmem.trace.parse import TraceParser
    from kmem.trace.perf_data import TraceInput
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
    parser.add_argument("--random-kmalloc-seed", metavar="SEED", type=seed_argument,
                        default=None,
                        help="CONFIG_RANDOM_KMALLOC_CACHES with this random_kmalloc_seed (a"
                        " u64, decimal or 0x hex): each kmalloc goes to the kmalloc-rnd-NN-SIZE"
                        " copy its call site selects, as the kernel's kmalloc_type does"
                        " (default: no random copies, as on this machine)")
    add_machine_arguments(parser, what=" the trace replays on (trace CPUs map modulo)")
    parser.add_argument("--nodes", type=count_argument, default=1, metavar="N",
                        help="NUMA nodes of the slab layer (default 1): the CPUs in N"
                        " contiguous runs, the memory in N equal ranges; kmalloc_node and"
                        " kmem_cache_alloc_node events go to their node= (modulo N)")
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
    parser.add_argument("--kallsyms", metavar="FILE",
                        help="perf.data: the kernel's symbols for call sites (default: perf's"
                             " build-id cache, or /proc/kallsyms of the same kernel)")
    parser.add_argument("--serial", action="store_true",
                        help="parse in this process (default for a file: a second process"
                        " parses while this one replays)")
    machine = parser.add_argument_group(
        "page machine", "feed the page events to a machine with zones and per-CPU lists too"
        " (any of these turns it on; its CPUs are --cpus) and report its pcp refills and"
        " drains beside the trace's")
    machine.add_argument("--layout", metavar="FILE", default=None,
                         help="the machine: a /proc/zoneinfo file (taken when the trace starts:"
                         " its pcp counts warm the lists), or zone sizes such as"
                         " DMA32=2G,Normal=4G (default: one Normal zone of --memory)")
    machine.add_argument("--pcp-high", type=int, default=None, metavar="N",
                         help="what if every pcp had this fixed high (default: 6.18's tuning)")
    machine.add_argument("--pcp-batch", type=int, default=None, metavar="N",
                         help="what if every pcp had this batch (default: zone_batchsize)")
    machine.add_argument("--min-free-kbytes", type=int, default=None, metavar="K",
                         help="vm.min_free_kbytes (default: the kernel's formula)")
    machine.add_argument("--no-pcp", action="store_true",
                         help="what if there were no per-CPU lists: every page to the buddy")
    machine.add_argument("--slab-on-machine", action="store_true",
                         help="the slab layer takes its pages from the machine with each"
                         " allocation's gfp flags (watermarks, reserves, pfmemalloc slabs)"
                         " instead of following the trace's slab page events")
    machine.add_argument("--warm", default="zoneinfo",
                         choices=("zoneinfo", "movable", "batch", "cold"),
                         help="what the pcp lists hold when the trace starts (default zoneinfo:"
                         " the --layout file's counts, put on lists as allocations need them)")
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
                     show_progress: bool, lost: LostEvents) -> tuple[_R, TraceParser]:
    from kmem.cli.terminal import read_trace
    from kmem.trace.parse import TraceParser
    from kmem.trace.perf_data import text_batches

    parser = TraceParser(skip_bad=args.skip_bad)
    with read_trace(args.trace, show_progress) as text:
        return (replayer.run_batches(text_batches(parser, text, lost), every=args.every,
                                     parser=parser), parser)


def run(args: argparse.Namespace) -> int:
    from kmem.cli.plot import write_picture
    from kmem.cli.terminal import output_console, skipped_lines_note, wants_progress
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
                        memory=args.memory, max_order=args.max_order, kernel=args.kernel,
                        layout=args.layout, no_pcp=args.no_pcp, pcp_high=args.pcp_high,
                        pcp_batch=args.pcp_batch, min_free_kbytes=args.min_free_kbytes,
                        warm=args.warm, random_kmalloc_seed=args.random_kmalloc_seed,
                        slab_on_machine=args.slab_on_machine, nr_nodes=args.nodes)
    show_progress = wants_progress(args.no_progress) and args.trace != "-"
    from kmem.cli.stat import warn_no_events
    from kmem.trace.lost import LostEvents
    from kmem.trace.perf_data import TraceInput, is_regular_file

    parser: ParserProcess | TraceParser | TraceInput
    trace = TraceInput(args.trace, skip_bad=args.skip_bad, kallsyms=args.kallsyms)
    if trace.kind == "perf.data":
        with trace:
            result = replayer.run_batches(trace.batches(), every=args.every,
                                          parser=trace.perf)
        parser, lost = trace, trace.lost
    elif (args.trace != "-" and not args.serial and pipeline.available()
          and is_regular_file(args.trace)):  # (a pipe: read once, its lost events with it)
        result, parser = _replay_in_parallel(replayer, args, show_progress)
        lost = parser.lost  # (the parsing process noted them)
    else:
        lost = LostEvents()
        result, parser = _replay_serially(replayer, args, show_progress, lost)
    if not sum(result.events.values()):
        return warn_no_events(args.trace, parser.lines, getattr(parser, "other_events", {}),
                              parser.bad_lines)
    if args.plot:
        write_picture(args.plot, lambda temporary: plot_replay(result, temporary))
    if args.json:
        print(json_text({**result.to_json(), "lost": {
            **lost.to_json(), "unknown_slab_frees": result.unknown_frees,
            "unknown_page_frees": result.page.get("unknown_frees", -1)}}))
    else:
        console = output_console()
        print_replay(result, console, slabinfo_rows=args.caches or 1 << 30)
        if result.pcp is not None:
            from kmem.show.pcp_table import print_pcp

            print_pcp(result.pcp, console)
        if parser.bad_lines:
            console.print(skipped_lines_note(parser.bad_lines, parser.bad_examples, args.trace),
                          markup=False)
        if lost.any:
            console.print(lost.describe(sum(result.events.values()), result.unknown_frees,
                                        result.page.get("unknown_frees", -1)),
                          highlight=False, end="")
        if args.plot:
            console.print(f"plot written to {args.plot}", markup=False)
    return 0


def _compare(args: argparse.Namespace, layers: tuple[str, ...]) -> int:
    """``--compare KERNELS``: the trace under each kernel, side by side."""
    from kmem.cli.plot import write_picture
    from kmem.cli.terminal import output_console, wants_progress
    from kmem.show.plot import plot_comparison
    from kmem.trace import pipeline
    from kmem.trace.compare import KernelComparer, parse_kernels, print_comparison
    from kmem.trace.lost import LostEvents

    kernels = parse_kernels(args.compare)
    machine_options = [name for name, given in (
        ("--layout", args.layout is not None), ("--pcp-high", args.pcp_high is not None),
        ("--pcp-batch", args.pcp_batch is not None),
        ("--min-free-kbytes", args.min_free_kbytes is not None), ("--no-pcp", args.no_pcp),
        ("--slab-on-machine", args.slab_on_machine), ("--warm", args.warm != "zoneinfo"))
        if given]
    if machine_options:  # (the comparison replays the kernels' slab and buddy layers only)
        raise InvalidArgumentError(
            f"--compare replays without the page machine: {', '.join(machine_options)}"
            " cannot be used with it")
    comparer = KernelComparer(kernels, layers=layers, policy=args.policy, nr_cpus=args.cpus,
                              memory=args.memory, max_order=args.max_order,
                              random_kmalloc_seed=args.random_kmalloc_seed,
                              nr_nodes=args.nodes)
    show_progress = wants_progress(args.no_progress) and args.trace != "-"
    if args.trace != "-" and not args.serial and pipeline.available():
        comparison, _ = _replay_in_parallel(comparer, args, show_progress)
    else:
        comparison, _ = _replay_serially(comparer, args, show_progress, LostEvents())
    if args.plot:
        write_picture(args.plot, lambda temporary: plot_comparison(comparison, temporary))
    if args.json:
        print(json_text(comparison.to_json()))
    else:
        console = output_console()
        print_comparison(comparison, console, caches=args.caches)
        if args.plot:
            console.print(f"plot written to {args.plot}", markup=False)
    return 0
