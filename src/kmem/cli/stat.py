"""``kmem stat TRACE``: allocation statistics of a kmem trace, as ``perf kmem stat`` gives them."""

from __future__ import annotations

import argparse
import json
import sys

from kmem.cli.args import COMMANDS
from kmem.trace.stat import DEFAULT_PAGE_SORT, DEFAULT_SLAB_SORT


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stat",
        help=COMMANDS["stat"],
        description="Read a kmem trace (ftrace text, trace-cmd report or perf script output;"
        " plain, gzip or xz; '-' for stdin; or a perf.data file, read directly) and print"
        " perf kmem's statistics: bytes requested and allocated, internal fragmentation,"
        " cross-CPU frees (ping-pong) per call site and per pointer, page allocations by"
        " order, migratetype and GFP flags.",
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
    parser.add_argument("-l", "--lines", type=int, default=-1,
                        help="show at most this many rows per table (default all)")
    parser.add_argument("--page-size", type=int, default=4096, help="bytes per page (4096)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="count malformed lines instead of stopping at the first")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.add_argument("--kallsyms", metavar="FILE",
                        help="perf.data: the kernel's symbols for call sites (default: perf's"
                             " build-id cache, or /proc/kallsyms of the same kernel)")
    parser.set_defaults(func=run)


NO_EVENTS_EXIT = 3
"""Exit status of `kmem stat` and `kmem replay` for a trace that holds no kmem event (a warning
on stderr and no report: a report of zeros would look like a result)."""


def warn_no_events(path: str, lines: int, other: dict[str, int]) -> int:
    """Say on stderr that ``path`` holds no kmem event; the exit status to return."""
    what = (f"{lines} lines/samples read, other events only: "
            + ", ".join(f"{name} {count}" for name, count in sorted(other.items())[:5])
            if other else f"{lines} lines/samples read" if lines else "it is empty")
    print(f"kmem: warning: {path} holds no kmem events ({what}); nothing to report",
          file=sys.stderr)
    return NO_EVENTS_EXIT


def run(args: argparse.Namespace) -> int:
    from kmem.trace.events import batch_events
    from kmem.trace.perf_data import TraceInput
    from kmem.trace.report import format_stat_text, page_json, slab_json
    from kmem.trace.stat import KmemStat

    want_slab = args.slab or not args.page
    want_page = args.page or not args.slab
    stat = KmemStat(page_size=args.page_size)
    # Validate the sort keys before reading a possibly long trace.
    stat.slab_summary(args.sort)
    stat.page_summary(args.page_sort)
    with TraceInput.open(args.trace, skip_bad=args.skip_bad, kallsyms=args.kallsyms) as trace:
        for batch in trace.batches():
            stat.add(batch_events(batch))
    if not trace.nr_events:
        return warn_no_events(args.trace, trace.lines, trace.other_events)
    slab = stat.slab_summary(args.sort) if want_slab else None
    page = stat.page_summary(args.page_sort) if want_page else None
    lost = trace.lost
    if args.json:
        document = {
            "lines": trace.lines,
            "events": trace.events,
            "bad_lines": trace.bad_lines,
            "lost": {**lost.to_json(), "unknown_slab_frees": stat.unknown_frees,
                     "free_only_pages": page.nr_free_only if page else -1},
            **({"slab": slab_json(slab, args.lines)} if slab else {}),
            **({"page": page_json(page, args.lines)} if page else {}),
        }
        print(json.dumps(document, indent=2))
    else:
        sys.stdout.write(format_stat_text(slab, page, caller=args.caller, alloc=args.alloc,
                                          cache=args.cache, lines=args.lines))
        if trace.bad_lines:
            print(f"\n{trace.bad_lines} malformed lines skipped; first: "
                  f"{trace.bad_examples[0]}")
        if lost.any:
            print()
            sys.stdout.write(lost.describe(trace.nr_events, stat.unknown_frees,
                                           page.nr_free_only if page else -1))
    return 0
