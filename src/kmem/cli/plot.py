"""``kmem plot [SCENARIO|TRACE] -o FILE.png|svg``: pictures of a replay."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from kmem.cli.args import COMMANDS, int_argument, output_path
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
    document = document_from_args(args)
    write_picture(args.output,
                  lambda temporary: plot(document, temporary, args.plot_kind, args.step))
    print(f"wrote {args.output}")
    return 0
