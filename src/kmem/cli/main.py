"""The ``kmem`` command: one subcommand per module of kmem.cli.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the parser default. kmem.cli.args.COMMANDS names every command with
its one line of help, so that ``kmem --help`` imports no command module at all and ``kmem CMD``
imports only CMD's: a command module imports what its parser needs, and its heavy dependencies
(matplotlib, the trace parser, the HTML builder) only inside the function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kmem.cli.args import COMMANDS, split_negative_values
from kmem.errors import KmemError


def version_text() -> str:
    """``kmem X.Y.Z (compiled core)`` from the installed package's metadata and the core in use
    (kmem._compiled: ``pure`` without the C extension or with KMEM_PURE=1)."""
    from importlib.metadata import PackageNotFoundError, version

    from kmem._compiled import core_backend

    try:
        number = version("kmem")
    except PackageNotFoundError:  # running from a source tree that was never installed
        number = "(not installed)"
    return f"kmem {number} ({core_backend()} core)"


class _VersionAction(argparse.Action):
    """--version, computed only when asked for (the metadata lookup costs milliseconds)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0,
                         help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the command it names is fully registered."""
    parser = argparse.ArgumentParser(
        prog="kmem",
        description="Kernel memory allocation as Linux does it: buddy pages, slab caches, kmalloc.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _chosen_command(argv) if argv is not None else None
    for name, help_text in COMMANDS.items():
        if argv is None or name == chosen:
            module = importlib.import_module(f"kmem.cli.{name}")
            module.register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = split_negative_values(sys.argv[1:] if argv is None else list(argv))
    args = build_parser(words).parse_args(words)
    try:
        status: int = args.func(args)
    except KmemError as error:
        print(f"kmem {args.command}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print(f"kmem {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        # The system refused a read or a write no check could foresee (a full disk, a file
        # removed under us): one line, as for bad input, not a traceback.
        where = f" {error.filename!r}" if error.filename else ""
        print(f"kmem {args.command}: cannot read or write{where}:"
              f" {error.strerror or error}", file=sys.stderr)
        return 2
    return status


def command() -> int:
    """The ``kmem`` command of a process of its own (the console script, ``python -m kmem``):
    main(), then the collector told to leave every object alive at that point to the end of
    the process. What the command built lies in reference cycles (a KmemStat and the
    callbacks its StatCore holds, argparse's parsers), which the interpreter's last
    collection took apart one object at a time at exit: 13 ms of `kmem stat` on a
    500,000-event perf.data, for memory the process gives back as it ends. Everything else
    at exit is as before (atexit handlers, coverage's too, and the flush of standard output
    and error run); a caller of main() in its own process (the tests) is not affected."""
    import gc

    status = main()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(command())
