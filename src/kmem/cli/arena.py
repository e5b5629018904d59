"""``kmem arena``: look into an arena (kmem.arena) kept in a file or shared memory segment.

``kmem arena info FILE|NAME`` prints its header, buddyinfo and slabinfo; ``kmem arena check
FILE|NAME`` verifies every invariant (Arena.check) and exits 2 naming the first broken one.
A path that exists (or contains a slash) is a file; anything else names a shared memory
segment. Opening takes the arena's lock, so an operation a crashed process left half done is
rolled back first, as any user of the arena would.
"""

from __future__ import annotations

import argparse
import os

from kmem.cli.args import COMMANDS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "arena", help=COMMANDS["arena"],
        description="Print or verify an arena: kmem's buddy allocator, slab caches and kmalloc"
        " kept entirely in a file or a shared memory segment.",
    )
    parser.add_argument("action", choices=("info", "check"),
                        help="info: header, buddyinfo, slabinfo; check: every invariant")
    parser.add_argument("where", metavar="FILE|NAME",
                        help="an arena file, or the name of a shared memory segment")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.arena.arena import Arena

    where: str = args.where
    is_file = os.path.exists(where) or "/" in where
    arena = Arena.open(where) if is_file else Arena.attach(where)
    with arena:
        if args.action == "check":
            arena.check()
            stats = arena.stats()
            print(f"{arena.source}: consistent ({stats.nr_pages} pages, {stats.nr_free_pages}"
                  f" free, {stats.caches} caches)")
            return 0
        for field, value in arena.header().items():
            print(f"{field:<18} {value}")
        print()
        print(arena.buddyinfo(), end="")
        print()
        print(arena.slabinfo(), end="")
    return 0
