"""``kmem stat TRACE``: allocation statistics of a kmem trace, as ``perf kmem stat`` gives them."""

from __future__ import annotations

import argparse
import json
import sys

from kmem.cli.args import COMMANDS, count_argument, size_argument
from kmem.trace.stat import DEFAULT_PAGE_SORT, DEFAULT_SLAB_SORT


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stat",
        help=COMMANDS["stat"],
        description="Read a kmem trace (ftrace text, trace-cmd report or perf script output;"
        " plain, gzip or xz; '-' for stdin) and print perf kmem's statistics: bytes requested"
        " and allocated, internal fragmentation, cross-CPU frees (ping-pong) per call site and"
        " per pointer, page allocations by order, migratetype and GFP flags.",
    )
    parser.add_argument("trace", help="trace file, or - for standard input")
    parser.add_argument("--slab", action="store_true", help="slab statistics (default: both)")
    parser.add_argument("--page", action="store_true", help="page statistics (default: both)")
    parser.add_argument("--caller", action="store_true", help="per call site tables")
    parser.add_argument("--alloc", action="store_true", help="per pointer / per pfn tables")
    parser.add_argument("--cache", action="store_true",
                        help="per cache table (kmem's addition: kmalloc events by size class)")
    parser.add_argument("-s", "--sort", default=DEFAULT_SLAB_SORT,
                        help="slab sort keys: ptr, callsite, hit, bytes, frag, pingpong"
                             f" (default {DEFAULT_SLAB_SORT})")
    parser.add_argument("--page-sort", default=DEFAULT_PAGE_SORT,
                        help="page sort keys: page, callsite, hit, bytes, order, migtype, gfp"
                             f" (default {DEFAULT_PAGE_SORT})")
    parser.add_argument("-l", "--lines", type=count_argument, default=-1, metavar="N",
                        help="show at most this many rows per table (default all)")
    parser.add_argument("--page-size", type=size_argument, default=4096, metavar="SIZE",
                        help="bytes per page (4K)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="count malformed lines instead of stopping at the first")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.cli.terminal import read_trace, wants_progress
    from kmem.trace.parse import TraceParser
    from kmem.trace.report import format_stat_text, page_json, slab_json
    from kmem.trace.stat import KmemStat

    want_slab = args.slab or not args.page
    want_page = args.page or not args.slab
    stat = KmemStat(page_size=args.page_size)
    parser = TraceParser(skip_bad=args.skip_bad)
    # Validate the sort keys before reading a possibly long trace.
    stat.slab_summary(args.sort)
    stat.page_summary(args.page_sort)
    with read_trace(args.trace, wants_progress(args.no_progress)) as lines:
        stat.add(parser.parse(lines))
    slab = stat.slab_summary(args.sort) if want_slab else None
    page = stat.page_summary(args.page_sort) if want_page else None
    if args.json:
        document = {
            "lines": parser.lines,
            "events": parser.events,
            "bad_lines": parser.bad_lines,
            **({"slab": slab_json(slab, args.lines)} if slab else {}),
            **({"page": page_json(page, args.lines)} if page else {}),
        }
        print(json.dumps(document, indent=2))
    else:
        sys.stdout.write(format_stat_text(slab, page, caller=args.caller, alloc=args.alloc,
                                          cache=args.cache, lines=args.lines))
        if parser.bad_lines:
            print(f"\n{parser.bad_lines} malformed lines skipped; first: "
                  f"{parser.bad_examples[0]}")
    return 0
