"""``kmem record [-o FILE] [--slab] [--page] [-g] [--perf] -- CMD ...``: a kmem trace of CMD."""

from __future__ import annotations

import argparse
import sys

from kmem.cli.args import COMMANDS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "record",
        help=COMMANDS["record"],
        description="Record the kernel's kmem events (system-wide, as perf kmem record does)"
        " while CMD runs: through a private tracefs instance (ftrace text), or through perf"
        " record with --perf or -g (a perf.data file). kmem stat and kmem replay read either."
        " Needs root. Exits with CMD's exit status.",
    )
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="output file (default: kmem.trace, or perf.data with perf)")
    parser.add_argument("--slab", action="store_true", help="slab events (default: both)")
    parser.add_argument("--page", action="store_true", help="page events (default: both)")
    parser.add_argument("-g", "--call-graph", action="store_true",
                        help="record call chains (through perf: page call sites as perf kmem"
                             " finds them)")
    parser.add_argument("--perf", action="store_true", help="record through perf record")
    parser.add_argument("--buffer-kb", type=int, default=16384, metavar="KB",
                        help="tracefs ring buffer per CPU (default 16384)")
    parser.add_argument("workload", nargs=argparse.REMAINDER, metavar="CMD",
                        help="-- CMD [ARGS...]: the command to run while recording")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.trace.record import record_perf, record_tracefs

    command = list(args.workload)
    if command[:1] == ["--"]:
        command = command[1:]
    slab = args.slab or not args.page
    page = args.page or not args.slab
    if args.perf or args.call_graph:
        result = record_perf(command, args.output or "perf.data", slab=slab, page=page,
                             callchains=args.call_graph)
    else:
        result = record_tracefs(command, args.output or "kmem.trace", slab=slab, page=page,
                                buffer_kb=args.buffer_kb)
        lost = f", {result.lost} events lost (see kmem stat)" if result.lost else ""
        print(f"kmem record: {result.lines} lines written to {result.output}{lost}",
              file=sys.stderr)
    return result.status
