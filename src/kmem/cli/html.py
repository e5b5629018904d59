"""``kmem html [SCENARIO|TRACE] -o FILE.html``: write the self-contained replay page."""

from __future__ import annotations

import argparse
from typing import Any

from kmem.cli.args import COMMANDS, size_argument
from kmem.errors import InvalidArgumentError
from kmem.show.snapshot import DEFAULT_TRACE_FRAMES, DEFAULT_TRACE_MEMORY


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments ``kmem html`` and ``kmem serve`` share: what to replay and how."""
    parser.add_argument("input", nargs="?", default="seed",
                        help="scenario file, built-in scenario name or kmem trace"
                             " (default: the built-in seed example)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--trace", dest="input_kind", action="store_const", const="trace",
                      help="read INPUT as a trace (default: guessed from its contents)")
    kind.add_argument("--scenario", dest="input_kind", action="store_const", const="scenario",
                      help="read INPUT as a scenario")
    parser.add_argument("--memory", type=size_argument, default=DEFAULT_TRACE_MEMORY,
                        metavar="SIZE",
                        help="for a trace: memory of the machine it replays on"
                             f" (default {DEFAULT_TRACE_MEMORY >> 20}M)")
    parser.add_argument("--policy", choices=("slub", "slab"), default="slub",
                        help="for a trace: the slab policy it replays on (default slub)")
    parser.add_argument("--frames", type=int, default=DEFAULT_TRACE_FRAMES,
                        help="snapshots kept of a long replay, evenly spaced"
                             f" (default {DEFAULT_TRACE_FRAMES})")


def document_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The snapshot document the shared arguments ask for."""
    from kmem.show.snapshot import document_for

    if args.frames < 1:
        raise InvalidArgumentError(f"--frames must be at least 1, got {args.frames}")
    return document_for(args.input, args.input_kind, args.frames, args.memory, args.policy)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "html",
        help=COMMANDS["html"],
        description="Write an HTML page (no network needed to open it) that replays a scenario"
        " or a trace step by step: next, back, play and a slider.",
    )
    add_source_arguments(parser)
    parser.add_argument("-o", "--output", default="kmem.html", help="page to write (kmem.html)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.show.html_page import write_page

    document = document_from_args(args)
    path = write_page(document, args.output)
    frames = len(document["frames"])
    print(f"wrote {path} ({path.stat().st_size // 1024} KB, {frames} frames of"
          f" {document['total_steps']} steps)")
    return 0
