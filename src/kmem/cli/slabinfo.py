"""``kmem slabinfo``: /proc/slabinfo (version 2.1, byte for byte) after a workload; with
``-r`` / ``-T``, Linux's tools/mm/slabinfo report modes (of the workload, or of a
/sys/kernel/slab directory or snapshot with ``--sys-slab``).

The workload is the built-in one (kmem.show.workload.builtin_workload: the seed's 3 KB TCB and
7 KB PCB caches plus a realistic kmalloc mix on every CPU) or a scenario file / built-in name.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kmem.cli.args import COMMANDS, add_machine_arguments, int_argument
from kmem.errors import InvalidArgumentError

if TYPE_CHECKING:
    from kmem.slab.allocator import SlabAllocator


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """The options slabinfo and slabtop share: which workload, on which machine."""
    parser.add_argument("--scenario", default=None,
                        help="run this scenario (file or built-in name) instead of the"
                        " built-in workload")
    parser.add_argument("--policy", choices=("slub", "slab"), default="slub",
                        help="slab policy of the built-in workload (default: slub)")
    add_machine_arguments(parser, what=" of the built-in workload")
    parser.add_argument("--seed", type=int_argument, default=1,
                        help="workload random seed (default: 1)")
    parser.add_argument("--kernel", choices=("6.17", "6.18", "7.0"), default="6.18",
                        help="whose SLUB runs the built-in workload: 7.0 gives every cache"
                        " sheaves (--cache NAME then lists their counters; default: 6.18)")


def allocator_from_args(args: argparse.Namespace) -> SlabAllocator:
    """The SlabAllocator after the workload the options of add_workload_arguments name."""
    from kmem.errors import OutOfMemoryError
    from kmem.show.workload import workload_allocator

    try:
        return workload_allocator(scenario=args.scenario, policy=args.policy,
                                  nr_cpus=args.cpus, memory=args.memory, seed=args.seed,
                                  kernel=args.kernel)
    except OutOfMemoryError as error:
        if args.scenario is not None:
            raise  # (the scenario's own machine: its error names its line)
        raise InvalidArgumentError(
            f"--memory {args.memory >> 20}M is too little for the built-in workload ({error})"
        ) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "slabinfo",
        help=COMMANDS["slabinfo"],
        description="Run a workload on the slab allocator and print /proc/slabinfo (version"
        " 2.1) exactly as Linux formats it, newest cache first.",
    )
    add_workload_arguments(parser)
    parser.add_argument("--active", action="store_true",
                        help="only caches that have slabs")
    parser.add_argument("--cache", metavar="NAME", default=None,
                        help="instead, print that cache's /sys/kernel/slab/NAME/ files"
                        " (as `grep . /sys/kernel/slab/NAME/*` would)")
    parser.add_argument("-r", "--report", action="store_true",
                        help="instead, tools/mm/slabinfo -r: a detailed report per cache")
    parser.add_argument("-T", "--totals", action="store_true",
                        help="instead, tools/mm/slabinfo -T: totals over all caches")
    parser.add_argument("--sys-slab", metavar="PATH", default=None,
                        help="with -r/-T: read a /sys/kernel/slab directory (or a JSON"
                        " snapshot of one) instead of running a workload")
    parser.add_argument("-N", "--lines", type=int, default=None, metavar="K",
                        help="with -r: only the first K caches (slabinfo -N)")
    parser.add_argument("-B", "--bytes", action="store_true",
                        help="with -T: sizes in bytes (slabinfo -B)")
    parser.add_argument("--match", metavar="REGEX", default=None,
                        help="with -r/-T: only caches whose name matches (slabinfo's"
                        " slab-regexp, case-insensitive)")
    parser.set_defaults(func=run)


def _tools_mm_slabinfo(args: argparse.Namespace) -> int:
    """-r / -T: tools/mm/slabinfo's report modes."""
    from kmem.slab.slabinfo_tool import (
        load_snapshot,
        slabinfo_report,
        slabinfo_totals,
        snapshot_from_allocator,
    )

    if args.report and args.totals:
        raise InvalidArgumentError("-r and -T are two reports: choose one")
    if args.lines is not None and args.lines < 1:
        raise InvalidArgumentError(f"--lines must be 1 or more, got {args.lines}")
    snapshot = (load_snapshot(args.sys_slab) if args.sys_slab is not None
                else snapshot_from_allocator(allocator_from_args(args)))
    if args.report:
        print(slabinfo_report(snapshot, lines=-1 if args.lines is None else args.lines,
                              pattern=args.match), end="")
    else:
        print(slabinfo_totals(snapshot, show_bytes=args.bytes, pattern=args.match), end="")
    return 0


def run(args: argparse.Namespace) -> int:
    from kmem.slab.report import format_slabinfo, sysfs_attributes

    if args.report or args.totals:
        return _tools_mm_slabinfo(args)
    if args.sys_slab is not None:
        raise InvalidArgumentError("--sys-slab needs -r or -T")
    slab = allocator_from_args(args)
    if args.cache is not None:
        cache = slab.caches.get(args.cache)
        if cache is None:
            raise InvalidArgumentError(f"no cache named {args.cache!r}"
                                       f"{_suggestions(args.cache, list(slab.caches))}")
        for key, value in sysfs_attributes(cache).items():
            print(f"{key}:{value}")
        return 0
    rows = [cache.slabinfo() for cache in slab.cache_list()]
    if args.active:
        rows = [row for row in rows if row.num_slabs]
    print(format_slabinfo(rows), end="")
    return 0


def _suggestions(name: str, names: list[str]) -> str:
    """" (did you mean: a, b?)" for the names close to ``name`` (difflib: the ones a typo or a
    missing prefix would give), else the hint to list them all."""
    import difflib

    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    if close:
        return f" (did you mean: {', '.join(close)}?)"
    return " (kmem slabinfo lists every cache)"
