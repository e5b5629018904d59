"""``kmem slabtop``: a slabtop-like table of the slab caches after a workload, with the
per-cache counters (fast and slow paths, new and discarded slabs) and internal fragmentation.
"""

from __future__ import annotations

import argparse

from kmem.cli.args import COMMANDS, count_argument
from kmem.cli.slabinfo import add_workload_arguments, allocator_from_args

SORT_KEYS = {
    "objs": "objs", "active": "active", "use": "use_percent", "size": "obj_size_kib",
    "slabs": "slabs", "cache": "cache_size_kib", "name": "name",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "slabtop",
        help=COMMANDS["slabtop"],
        description="Run a workload on the slab allocator and show its caches as slabtop"
        " does, then the per-cache counters and the internal fragmentation.",
    )
    add_workload_arguments(parser)
    parser.add_argument("--sort", choices=sorted(SORT_KEYS), default="objs",
                        help="sort key (default: objs, as slabtop)")
    parser.add_argument("--limit", type=count_argument, default=30, metavar="N",
                        help="rows to show (default: 30)")
    parser.add_argument("--no-counters", action="store_true", help="skip the counters table")
    parser.add_argument("--no-fragmentation", action="store_true",
                        help="skip the fragmentation table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.cli.terminal import output_console
    from kmem.slab.report import (
        counters_table,
        fragmentation_rows,
        fragmentation_table,
        merged_cache_lines,
        slabtop_rows,
        slabtop_summary,
        slabtop_table,
    )

    slab = allocator_from_args(args)
    console = output_console()
    rows = slabtop_rows(slab, sort=SORT_KEYS[args.sort])
    console.print(slabtop_summary(rows))
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
