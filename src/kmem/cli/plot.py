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
                        help="picture to write; .png or .svg (default kmem.png), or - for the"
                        " standard output")
    parser.add_argument("--format", choices=("png", "svg"), default=None,
                        help="the picture's format where the file name does not tell it (-o -,"
                        " /dev/stdout; default png there)")
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


def picture_format(output: str, chosen: str | None) -> str:
    """The format of the picture for ``-o output``: its file name's suffix, else --format (png
    for the standard output), else an error naming both ways to say it."""
    from pathlib import Path

    from kmem.errors import InvalidArgumentError
    from kmem.show.plot import FORMATS

    suffix = Path(output).suffix.lower() if output != "-" else ""
    if suffix in FORMATS:
        if chosen is not None and f".{chosen}" != suffix:
            raise InvalidArgumentError(f"--format {chosen} but -o {output!r} names a"
                                       f" {suffix[1:]} file")
        return suffix[1:]
    if chosen is not None:
        return chosen
    if output == "-":
        return "png"
    raise InvalidArgumentError(f"cannot tell the format of {output!r}: use a .png or .svg"
                               " file name, or --format")


def _send(args: argparse.Namespace, draw: Callable[[str], object]) -> None:
    """Draw the picture to -o, in the format picture_format chose; a status line unless the
    picture itself goes to the standard output."""
    import os
    import sys
    import tempfile
    from pathlib import Path

    from kmem.cli.html import _is_standard_output
    from kmem.show.html_page import write_atomically

    fmt = picture_format(args.output, args.format)
    if Path(args.output).suffix.lower() == f".{fmt}":
        write_picture(args.output, draw)
    else:  # (drawn under a name matplotlib reads the format from, then copied whole)
        with tempfile.TemporaryDirectory() as folder:
            picture = os.path.join(folder, f"picture.{fmt}")
            draw(picture)
            data = Path(picture).read_bytes()
        if args.output == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return
        write_atomically(Path(args.output), data)
    if not _is_standard_output(Path(args.output)):
        print(f"wrote {args.output}")


def run(args: argparse.Namespace) -> int:
    from kmem.show.plot import plot

    if args.output != "-":
        output_path(args.output)  # the place and the format: before the replay
    picture_format(args.output, args.format)
    if args.plot_kind == "pcp":
        return _plot_pcp(args)
    document = document_from_args(args)
    if (status := warn_if_no_events(args, document)) is not None:
        return status
    _send(args, lambda temporary: plot(document, temporary, args.plot_kind, args.step))
    return 0


def _plot_pcp(args: argparse.Namespace) -> int:
    """The trace's page events through the page machine, drawn over the trace's time."""
    from kmem.cli.terminal import read_trace, wants_progress
    from kmem.show.plot_pcp import plot_pcp
    from kmem.trace.lost import LostEvents
    from kmem.trace.parse import TraceParser
    from kmem.trace.perf_data import text_batches
    from kmem.trace.replay import Replayer

    replayer = Replayer(layers=("page",), machine=True, layout=args.layout, warm=args.warm,
                        memory=args.memory, nr_cpus=args.cpus)
    parser = TraceParser(skip_bad=args.skip_bad)
    with read_trace(args.input, wants_progress(args.no_progress)) as lines:
        result = replayer.run_batches(text_batches(parser, lines, LostEvents()), parser=parser)
    if not sum(result.events.values()):
        from kmem.cli.stat import warn_no_events

        return warn_no_events(args.input, parser.lines, parser.other_events, parser.bad_lines)
    assert result.pcp is not None
    _send(args, lambda temporary: plot_pcp(result.pcp or {}, temporary))
    return 0
