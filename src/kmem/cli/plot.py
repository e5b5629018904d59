"""``kmem plot [SCENARIO|TRACE] -o FILE.png|svg``: pictures of a replay."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from kmem.cli.args import COMMANDS, int_argument, output_path
from kmem.cli.html import add_source_arguments, document_from_args, warn_if_no_events
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
    parser.add_argument("--step", type=int_argument, default=-1,
                        help="frame for the memory map and caches (default -1: the last)")
    parser.set_defaults(func=run)


def write_picture(path: str, draw: Callable[[str], object]) -> None:
    """``draw(temporary)`` writes the picture beside ``path``; renamed to it once whole, so a
    failure leaves no half picture (and an existing file as it was). A symbolic link is
    followed; a path that is no regular file (/dev/stdout, a FIFO) is drawn to directly."""
    import os
    import stat
    import tempfile

    from kmem.show.html_page import PageWriteError

    try:
        if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
            draw(path)
            return
        target = os.path.realpath(path)
        folder, name = os.path.split(target)
        handle, temporary = tempfile.mkstemp(prefix=f".{name}.",
                                             suffix=os.path.splitext(name)[1], dir=folder)
    except OSError as error:
        raise PageWriteError(f"cannot write {path!r}: {error.strerror or error}") from None
    os.close(handle)
    try:
        draw(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except OSError as error:
        raise PageWriteError(f"cannot write {path!r}: {error.strerror or error}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def run(args: argparse.Namespace) -> int:
    from kmem.show.plot import picture_path, plot

    output_path(args.output)  # the place and the format: before the replay
    picture_path(args.output)
    if args.plot_kind == "pcp":
        return _plot_pcp(args)
    document = document_from_args(args)
    if (status := warn_if_no_events(args, document)) is not None:
        return status
    write_picture(args.output,
                  lambda temporary: plot(document, temporary, args.plot_kind, args.step))
    print(f"wrote {args.output}")
    return 0


def _plot_pcp(args: argparse.Namespace) -> int:
    """The trace's page events through the page machine, drawn over the trace's time."""
    from kmem.cli.terminal import read_trace, wants_progress
    from kmem.show.plot_pcp import plot_pcp
    from kmem.trace.parse import TraceParser
    from kmem.trace.replay import Replayer

    replayer = Replayer(layers=("page",), machine=True, layout=args.layout, warm=args.warm,
                        memory=args.memory, nr_cpus=args.cpus)
    parser = TraceParser(skip_bad=args.skip_bad)
    with read_trace(args.input, wants_progress(args.no_progress)) as lines:
        result = replayer.run_batches(parser.parse_batches(lines), parser=parser)
    if not sum(result.events.values()):
        from kmem.cli.stat import warn_no_events

        return warn_no_events(args.input, parser.lines, parser.other_events, parser.bad_lines)
    assert result.pcp is not None
    write_picture(args.output, lambda temporary: plot_pcp(result.pcp or {}, temporary))
    print(f"wrote {args.output}")
    return 0
