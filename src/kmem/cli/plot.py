"""``kmem plot [SCENARIO|TRACE] -o FILE.png|svg``: pictures of a replay."""

from __future__ import annotations

import argparse

from kmem.cli.args import COMMANDS
from kmem.cli.html import add_source_arguments, document_from_args
from kmem.show.plot import KINDS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "plot",
        help=COMMANDS["plot"],
        description="Write a PNG or SVG picture of a scenario or trace replay: the memory map"
        " at a step, memory in use and fragmentation indices over time, internal"
        " fragmentation per cache.",
    )
    add_source_arguments(parser)
    parser.add_argument("-o", "--output", default="kmem.png",
                        help="picture to write; .png or .svg (default kmem.png)")
    parser.add_argument("--kind", dest="plot_kind", choices=(*KINDS, "pcp"), default="all",
                        help="which picture (default: all of them in one figure); pcp: a"
                        " trace through the page machine, free pages per migratetype and"
                        " each CPU's pcp pages over time")
    parser.add_argument("--layout", metavar="FILE", default=None,
                        help="for --kind pcp: the machine, as kmem replay --layout")
    parser.add_argument("--warm", default="zoneinfo",
                        choices=("zoneinfo", "movable", "batch", "cold"),
                        help="for --kind pcp: the pcp lists at the trace's start (as kmem replay)")
    parser.add_argument("--step", type=int, default=-1,
                        help="frame for the memory map and caches (default -1: the last)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.show.plot import plot

    if args.plot_kind == "pcp":
        return _plot_pcp(args)
    document = document_from_args(args)
    path = plot(document, args.output, args.plot_kind, args.step)
    print(f"wrote {path}")
    return 0


def _plot_pcp(args: argparse.Namespace) -> int:
    """The trace's page events through the page machine, drawn over the trace's time."""
    from kmem.show.plot import picture_path
    from kmem.show.plot_pcp import plot_pcp
    from kmem.trace.parse import TraceParser
    from kmem.trace.replay import Replayer
    from kmem.trace.source import open_trace

    picture_path(args.output)  # a bad file name fails before the replay
    replayer = Replayer(layers=("page",), machine=True, layout=args.layout, warm=args.warm,
                        memory=args.memory)
    parser = TraceParser()
    with open_trace(args.input) as lines:
        result = replayer.run_batches(parser.parse_batches(lines), parser=parser)
    assert result.pcp is not None
    print(f"wrote {plot_pcp(result.pcp, args.output)}")
    return 0
