"""``kmem html [SCENARIO|TRACE] -o FILE.html``: write the self-contained replay page."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from kmem.cli.args import COMMANDS, add_machine_arguments, count_argument, output_path
from kmem.cli.collector import collector_paused
from kmem.show.snapshot import DEFAULT_TRACE_FRAMES


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments ``kmem html``, ``plot`` and ``serve`` share: what to replay and how (a
    trace is read as ``kmem replay`` reads it, on the same machine by default)."""
    parser.add_argument("input", nargs="?", default="seed",
                        help="scenario file, built-in scenario name or kmem trace; - for"
                             " standard input (default: the built-in seed example)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--trace", dest="input_kind", action="store_const", const="trace",
                      help="read INPUT as a trace (default: guessed from its contents)")
    kind.add_argument("--scenario", dest="input_kind", action="store_const", const="scenario",
                      help="read INPUT as a scenario")
    add_machine_arguments(parser, what=" a trace replays on")
    parser.add_argument("--policy", choices=("slub", "slab"), default="slub",
                        help="for a trace: the slab policy it replays on (default slub)")
    parser.add_argument("--frames", type=count_argument, default=DEFAULT_TRACE_FRAMES,
                        metavar="N",
                        help="snapshots kept of a long replay, evenly spaced"
                             f" (default {DEFAULT_TRACE_FRAMES})")
    parser.add_argument("--skip-bad", action="store_true",
                        help="for a trace: count malformed lines instead of stopping at the"
                             " first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def document_from_args(args: argparse.Namespace, for_page: bool = False) -> dict[str, Any]:
    """The snapshot document the shared arguments ask for (with a progress bar on a terminal
    while a trace is read); ``for_page``: a trace's as only the page builder reads it
    (kmem.show.snapshot.trace_document)."""
    from kmem.cli.terminal import ProgressReport, wants_progress
    from kmem.show.snapshot import document_for

    with ProgressReport(wants_progress(args.no_progress)) as progress:
        return document_for(args.input, args.input_kind, args.frames, args.memory, args.policy,
                            nr_cpus=args.cpus, skip_bad=args.skip_bad, progress=progress,
                            for_page=for_page)


def warn_if_no_events(args: argparse.Namespace, document: dict[str, Any]) -> int | None:
    """For a trace that holds no kmem event, kmem stat's warning and exit status (a page or a
    picture of an empty replay would look like a result); None for any other document."""
    trace = document.get("trace")
    if trace is None or sum(trace["events"].values()):
        return None
    from kmem.cli.stat import warn_no_events

    return warn_no_events(args.input, trace["lines"], {}, trace["bad_lines"])


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "html",
        help=COMMANDS["html"],
        description="Write an HTML page (no network needed to open it) that replays a scenario"
        " or a trace step by step: next, back, play and a slider.",
    )
    add_source_arguments(parser)
    parser.add_argument("-o", "--output", default="kmem.html",
                        help="page to write (kmem.html), or - for the standard output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.show.html_page import build_page, write_page_text

    to_stdout = args.output == "-"
    if not to_stdout:
        output_path(args.output)  # a page that cannot be written fails now, not after the replay
    with collector_paused():  # (the frames and the page: a few hundred thousand containers)
        document = document_from_args(args, for_page=True)
        if (status := warn_if_no_events(args, document)) is not None:
            return status
        page = build_page(document)
    if to_stdout:  # (the page alone: a status line there would break it)
        sys.stdout.write(page)
        sys.stdout.flush()
        return 0
    path = write_page_text(page, args.output)
    if not _is_standard_output(path):  # (the page itself is the output: nothing else there)
        frames = len(document["frames"])
        # (a status line, on stderr: the standard output may be a pipe the page goes through)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB, {frames} frames of"
              f" {document['total_steps']} steps)", file=sys.stderr)
    return 0


def _is_standard_output(path: Path) -> bool:
    """Is ``path`` the file the standard output writes to (/dev/stdout, /proc/self/fd/1, or
    the file it is redirected into)?"""
    try:
        here, there = os.fstat(sys.stdout.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):  # (no standard output, or not a real file)
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
