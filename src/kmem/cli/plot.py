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
    parser.add_argument("--kind", dest="plot_kind", choices=KINDS, default="all",
                        help="which picture (default: all of them in one figure)")
    parser.add_argument("--step", type=int, default=-1,
                        help="frame for the memory map and caches (default -1: the last)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.show.plot import plot

    document = document_from_args(args)
    path = plot(document, args.output, args.plot_kind, args.step)
    print(f"wrote {path}")
    return 0
