"""``kmem slabtop``: a slabtop-like table of the slab caches after a workload, with the
per-cache counters (fast and slow paths, new and discarded slabs) and internal fragmentation;
with ``-o``, procps ``slabtop -o``'s text byte for byte (of the workload, or of a
/proc/slabinfo file with ``--slabinfo``).
"""

from __future__ import annotations

import argparse

from kmem.cli.args import COMMANDS, count_argument, int_argument
from kmem.cli.slabinfo import add_workload_arguments, allocator_from_args

SORT_KEYS = {
    "objs": "objs", "active": "active", "use": "use_percent", "size": "obj_size_kib",
    "slabs": "slabs", "cache": "cache_size_kib", "name": "name",
}
# kmem's sort words -> procps slabtop's -s letters (a b c l v n o p s u are taken as is).
PROCPS_LETTER = {"objs": "o", "active": "a", "use": "u", "size": "s", "slabs": "l",
                 "cache": "c", "name": "n"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "slabtop",
        help=COMMANDS["slabtop"],
        description="Run a workload on the slab allocator and show its caches as slabtop"
        " does, then the per-cache counters and the internal fragmentation.",
    )
    add_workload_arguments(parser)
    parser.add_argument("-s", "--sort", default="objs", metavar="KEY",
                        help="sort key: procps slabtop's letters a b c l v n o p s u, or"
                        f" {', '.join(sorted(SORT_KEYS))} (default: objs, as slabtop)")
    parser.add_argument("-o", "--once", action="store_true",
                        help="print procps slabtop -o's text exactly (every cache, empty ones"
                        " too) instead of the tables")
    parser.add_argument("--slabinfo", default=None, metavar="FILE",
                        help="with -o: the caches of this /proc/slabinfo file (- for standard"
                        " input) instead of a workload's")
    parser.add_argument("--page-size", type=int_argument, default=4096,
                        help="with --slabinfo: bytes per page (default 4096)")
    parser.add_argument("--limit", type=count_argument, default=30, metavar="N",
                        help="rows to show (default: 30)")
    parser.add_argument("--no-counters", action="store_true", help="skip the counters table")
    parser.add_argument("--no-fragmentation", action="store_true",
                        help="skip the fragmentation table")
    parser.set_defaults(func=run)


def _sort_letter(key: str) -> str:
    """The procps letter of a --sort value (a word of SORT_KEYS or a letter)."""
    from kmem.errors import InvalidArgumentError
    from kmem.slab.report import PROCPS_SORT_KEYS

    if key in PROCPS_LETTER:
        return PROCPS_LETTER[key]
    if key in PROCPS_SORT_KEYS:
        return key
    raise InvalidArgumentError(
        f"--sort: unknown key {key!r} (procps letters {' '.join(PROCPS_SORT_KEYS)}, or"
        f" {', '.join(sorted(SORT_KEYS))})")


def _print_once(args: argparse.Namespace, letter: str) -> int:
    import sys

    from kmem.errors import InvalidArgumentError
    from kmem.slab.report import parse_slabinfo, procps_slabtop

    if args.slabinfo is None:
        slab = allocator_from_args(args)
        rows = [cache.slabinfo() for cache in slab.cache_list()]
        page_size = slab.buddy.page_size
    else:
        if args.page_size < 1:
            raise InvalidArgumentError(f"--page-size must be 1 or more, got {args.page_size}")
        try:
            if args.slabinfo == "-":
                text = sys.stdin.read()
            else:
                with open(args.slabinfo, encoding="utf-8-sig", errors="replace") as file:
                    text = file.read()
        except OSError as error:
            raise InvalidArgumentError(
                f"cannot read {args.slabinfo!r}: {error.strerror}") from None
        rows = parse_slabinfo(text, source="<stdin>" if args.slabinfo == "-" else args.slabinfo)
        page_size = args.page_size
    sys.stdout.write(procps_slabtop(rows, letter, page_size))
    return 0


def run(args: argparse.Namespace) -> int:
    import sys

    from kmem.cli.terminal import output_console
    from kmem.errors import InvalidArgumentError

    letter = _sort_letter(args.sort)
    if args.once:
        return _print_once(args, letter)
    if args.slabinfo is not None:
        raise InvalidArgumentError("--slabinfo needs -o (the tables need the workload's"
                                   " counters)")
    word = next((name for name, key in PROCPS_LETTER.items() if key == letter), None)
    if word is None:
        raise InvalidArgumentError(
            f"--sort {args.sort}: the tables sort by {', '.join(sorted(SORT_KEYS))} (or their"
            " letters; the letters b, v and p need -o)")

    from kmem.slab.report import (
        counters_table,
        fragmentation_rows,
        fragmentation_table,
        merged_cache_lines,
        procps_summary,
        slabtop_rows,
        slabtop_table,
    )

    slab = allocator_from_args(args)
    console = output_console()
    rows = slabtop_rows(slab, sort=SORT_KEYS[word])
    sys.stdout.write(procps_summary(cache.slabinfo() for cache in slab.cache_list()))
    console.print()
    console.print(slabtop_table(rows[: args.limit], title=f"slabtop ({slab.policy})"))
    merged = merged_cache_lines(slab)
    if merged:
        console.print("\nmerged caches (sysfs name: cache <- aliases):")
        for line in merged:
            console.print("  " + line)
    if not args.no_counters:
        console.print()
        console.print(counters_table(slab.stats().values(), limit=args.limit))
    if not args.no_fragmentation:
        console.print()
        rows_f = sorted(fragmentation_rows(slab), key=lambda r: r.bytes_allocated, reverse=True)
        console.print(fragmentation_table(rows_f[: args.limit]))
    return 0
