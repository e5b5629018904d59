"""``kmem stat TRACE``: allocation statistics of a kmem trace, as ``perf kmem stat`` gives them."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

from kmem.cli.args import COMMANDS, count_argument, size_argument
from kmem.cli.collector import collector_paused
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
    parser.add_argument("--slab", action=_PerfFlag, help="slab statistics (default: both)")
    parser.add_argument("--page", action=_PerfFlag, help="page statistics (default: both)")
    parser.add_argument("--caller", action=_PerfFlag, help="per call site tables")
    parser.add_argument("--alloc", action=_PerfFlag, help="per pointer / per pfn tables")
    parser.add_argument("--cache", action="store_true",
                        help="per cache table (kmem's addition: kmalloc events by size class)")
    parser.add_argument("-s", "--sort", action=_PerfSort, metavar="KEY[,KEY2...]",
                        help="sort keys, as perf kmem takes them: for the table of the last"
                             " --slab/--page and --caller/--alloc given before it (slab: ptr,"
                             " callsite, hit, bytes, frag, pingpong, default"
                             f" {DEFAULT_SLAB_SORT}; page: page, callsite, hit, bytes, order,"
                             f" migtype, gfp, default {DEFAULT_PAGE_SORT})")
    parser.add_argument("--page-sort", default=DEFAULT_PAGE_SORT,
                        help="page sort keys of both page tables not sorted by -s (kmem's"
                             f" addition; default {DEFAULT_PAGE_SORT})")
    parser.add_argument("--live", action="store_true",
                        help="page tables of the pages still allocated at the end (perf kmem"
                             " --live)")
    parser.add_argument("--time", metavar="START,STOP",
                        help="only events in this time span, seconds (either side may be"
                             " empty), as perf kmem --time")
    parser.add_argument("--raw-ip", action="store_true",
                        help="perf.data: slab call sites as addresses, not symbols")
    parser.add_argument("-l", "--lines", type=count_argument, default=-1, metavar="N",
                        help="show at most this many rows per table (default all)")
    parser.add_argument("--page-size", type=size_argument, default=4096, metavar="SIZE",
                        help="bytes per page (4K)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="count malformed lines instead of stopping at the first")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--kallsyms", metavar="FILE",
                        help="perf.data: the kernel's symbols for call sites (default: perf's"
                             " build-id cache, or /proc/kallsyms of the same kernel)")
    parser.set_defaults(func=run, kmem_slab=0, kmem_page=0, caller_flag=0, alloc_flag=0,
                        sorts={})


class _PerfFlag(argparse.Action):
    """--slab/--page/--caller/--alloc, numbered as perf kmem numbers them (each one more than
    its rival's number), so that -s knows which came last (builtin-kmem.c parse_*_opt)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False,
                         help=kwargs.get("help"))  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True)
        number, rival = {"slab": ("kmem_slab", "kmem_page"), "page": ("kmem_page", "kmem_slab"),
                         "caller": ("caller_flag", "alloc_flag"),
                         "alloc": ("alloc_flag", "caller_flag")}[self.dest]
        setattr(namespace, number, getattr(namespace, rival) + 1)


class _PerfSort(argparse.Action):
    """-s KEYS: the keys of one table, chosen as perf kmem's parse_sort_opt chooses (page if
    --page came after --slab, else slab; caller if --caller came after --alloc, else alloc);
    repeated, the keys add up."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        layer = "page" if namespace.kmem_page > namespace.kmem_slab else "slab"
        table = "caller" if namespace.caller_flag > namespace.alloc_flag else "alloc"
        sorts = dict(namespace.sorts)
        sorts[(layer, table)] = [*sorts.get((layer, table), []), str(values)]
        namespace.sorts = sorts


NO_EVENTS_EXIT = 3
"""Exit status of `kmem stat` and `kmem replay` for a trace that holds no kmem event (a warning
on stderr and no report: a report of zeros would look like a result)."""


def warn_no_events(path: str, lines: int, other: dict[str, int], bad_lines: int = 0,
                   window: str | None = None) -> int:
    """Say on stderr that ``path`` holds no kmem event (in the --time ``window`` if given);
    the exit status to return."""
    what = (f"{lines} lines/samples read, other events only: "
            + ", ".join(f"{name} {count}" for name, count in sorted(other.items())[:5])
            if other else f"{lines} lines/samples read" if lines else "it is empty")
    if bad_lines:
        what += f", {bad_lines} malformed lines skipped"
    where = f" in --time {window}" if window is not None else ""
    print(f"kmem: warning: {path} holds no kmem events{where} ({what}); nothing to report",
          file=sys.stderr)
    return NO_EVENTS_EXIT


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from kmem.cli.terminal import read_trace, skipped_lines_note, wants_progress
    from kmem.trace.perf_data import TraceInput, parse_time_window
    from kmem.trace.report import format_stat_text, page_json, slab_json
    from kmem.trace.stat import KmemStat

    want_slab = args.slab or not args.page
    want_page = args.page or not args.slab
    sorts = {key: ",".join(keys) for key, keys in args.sorts.items()}
    slab_sort: dict[str, Any] = {
        "sort": sorts.get(("slab", "caller"), DEFAULT_SLAB_SORT),
        "alloc_sort": sorts.get(("slab", "alloc"), DEFAULT_SLAB_SORT),
        # (the per-cache table, kmem's addition, takes the per call site keys, or the per
        # pointer ones when only those were given: `--slab --cache -s bytes`)
        "cache_sort": sorts.get(("slab", "caller"), sorts.get(("slab", "alloc"),
                                                              DEFAULT_SLAB_SORT))}
    page_sort: dict[str, Any] = {"sort": sorts.get(("page", "caller"), args.page_sort),
                                 "alloc_sort": sorts.get(("page", "alloc"), args.page_sort)}
    window = parse_time_window(args.time) if args.time is not None else None
    # Validate the sort keys before reading a possibly long trace.
    KmemStat().slab_summary(**slab_sort)
    KmemStat().page_summary(**page_sort)
    with TraceInput.open(args.trace, skip_bad=args.skip_bad, kallsyms=args.kallsyms,
                         raw_ip=args.raw_ip, time_window=window,
                         times=False) as trace:  # (the statistics never read the TIME column)
        stat = KmemStat(page_size=args.page_size, live=args.live,
                        site_order=trace.call_site_address())
        lines = partial(read_trace, progress=wants_progress(args.no_progress))
        # (no cyclic collections while reading: the reader's allocations set off a hundred on
        # a 500,000-event perf.data, and the loop leaves no cycle for them to find)
        with collector_paused(True):
            for batch in trace.batches(lines):
                stat.add_batch(batch)
    if not trace.nr_events:
        return warn_no_events(args.trace, trace.lines, trace.other_events, trace.bad_lines,
                              args.time)
    # (the tables only where the output shows them: building them is most of the work)
    tables = args.json or args.caller or args.alloc or args.cache
    with collector_paused(tables):
        slab = stat.slab_summary(**slab_sort, tables=tables) if want_slab else None
        page = stat.page_summary(**page_sort, tables=tables) if want_page else None
        lost = trace.lost
        if args.json:
            from kmem.trace.json_text import json_text

            document = {
                "lines": trace.lines,
                "events": trace.events,
                "bad_lines": trace.bad_lines,
                "lost": {**lost.to_json(), "unknown_slab_frees": stat.unknown_frees,
                         "free_only_pages": page.nr_free_only if page else -1},
                **({"slab": slab_json(slab, args.lines)} if slab else {}),
                **({"page": page_json(page, args.lines)} if page else {}),
            }
            text = json_text(document)
            del document, slab, page, stat  # (their rows: freed before the text is written)
            _write_text(text)
            sys.stdout.write("\n")
            return 0
        text = format_stat_text(slab, page, caller=args.caller, alloc=args.alloc,
                                cache=args.cache, lines=args.lines)
    _write_text(text)
    if trace.bad_lines:
        print("\n" + skipped_lines_note(trace.bad_lines, trace.bad_examples, args.trace))
    if lost.any:
        print()
        sys.stdout.write(lost.describe(trace.nr_events, stat.unknown_frees,
                                       page.nr_free_only if page else -1))
    return 0


def _write_text(text: str) -> None:
    """Write ``text`` to standard output a megabyte at a time: print() of the whole 60 MB of
    a large `kmem stat --json` encoded it into a second copy of the same size first."""
    write = sys.stdout.write
    for start in range(0, len(text), _WRITE_CHUNK):
        write(text[start:start + _WRITE_CHUNK])


_WRITE_CHUNK: Final = 1 << 20
