"""The ``kmem`` command: one subcommand per module of kmem.commands.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the parser default. Commands are found by listing the package, so a
new command is one new file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import kmem.commands
from kmem.errors import KmemError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmem",
        description="Kernel memory allocation as Linux does it: buddy pages, slab caches, kmalloc.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(kmem.commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"kmem.commands.{info.name}")
            module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except KmemError as error:
        print(f"kmem {args.command}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
