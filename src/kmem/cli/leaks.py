"""``kmem leaks TRACE``: the allocations a kmem trace leaves outstanding, by call site, as bcc's
memleak reports them."""

from __future__ import annotations

import argparse
import sys

from kmem.cli.args import COMMANDS
from kmem.trace.json_text import json_text


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "leaks",
        help=COMMANDS["leaks"],
        description="Read a kmem trace and list the allocations still outstanding at its end"
        " (or at --at TIME), grouped by call site as bcc's memleak prints them: bytes,"
        " allocations and the age of the oldest. Slab objects pair by pointer, pages by pfn.",
    )
    parser.add_argument("trace", help="trace file (text, or a perf.data file), or - for"
                        " standard input")
    parser.add_argument("--at", default=None, metavar="TIME",
                        help="report at this trace timestamp (e.g. 552.2), or +SECONDS after"
                        " the first event (e.g. +0.1); default: the end of the trace")
    parser.add_argument("--min-age", default="0", metavar="DURATION",
                        help="only allocations at least this old (e.g. 50ms, 1s; default 0),"
                        " as memleak -o")
    parser.add_argument("--top", type=int, default=10, metavar="N",
                        help="show the N call sites with most bytes (default 10, as memleak"
                        " -T)")
    parser.add_argument("--slab", action="store_true", help="slab objects only")
    parser.add_argument("--page", action="store_true", help="page allocations only")
    parser.add_argument("--page-size", type=int, default=4096, help="bytes per page (4096)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="count malformed lines instead of stopping at the first")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--kallsyms", metavar="FILE",
                        help="perf.data: the kernel's symbols for call sites (as kmem stat)")
    parser.set_defaults(func=run)


def _at(text: str | None) -> tuple[float | None, bool]:
    """--at: (seconds, relative to the first event?)."""
    from kmem.errors import InvalidArgumentError

    if text is None:
        return None, False
    relative = text.startswith("+")
    try:
        value = float(text[1:] if relative else text)
    except ValueError:
        raise InvalidArgumentError(
            f"--at: bad time {text!r} (expected a trace timestamp such as 552.2, or +0.5)"
        ) from None
    if value < 0 or value != value:
        raise InvalidArgumentError(f"--at: bad time {text!r} (must be >= 0)")
    return value, relative


def run(args: argparse.Namespace) -> int:
    from kmem.cli.stat import warn_no_events
    from kmem.cli.terminal import skipped_lines_note
    from kmem.errors import InvalidArgumentError
    from kmem.trace.events import batch_events
    from kmem.trace.leaks import LeakTracker, format_leaks
    from kmem.trace.perf_data import TraceInput
    from kmem.trace.rates import parse_duration

    at, relative = _at(args.at)
    min_age = parse_duration(args.min_age)
    if args.top < 1:
        raise InvalidArgumentError(f"--top must be 1 or more, got {args.top}")
    layers = [layer for layer, wanted in (("slab", args.slab), ("page", args.page)) if wanted]
    tracker = LeakTracker(layers=layers or ("slab", "page"), page_size=args.page_size,
                          stop_at=at, relative=relative)
    with TraceInput.open(args.trace, skip_bad=args.skip_bad,
                         kallsyms=args.kallsyms) as trace:
        for batch in trace.batches():
            tracker.add(batch_events(batch))
    if not trace.nr_events:  # (a report of nothing outstanding would read as no leak)
        return warn_no_events(args.trace, trace.lines, trace.other_events, trace.bad_lines)
    report = tracker.report(min_age=min_age, top=args.top)
    lost = trace.lost  # (an allocation whose free was lost reads as a leak: say so)
    if args.json:
        print(json_text({"lines": trace.lines, "bad_lines": trace.bad_lines,
                          **report.to_json(), "lost": lost.to_json()}))
    else:
        sys.stdout.write(format_leaks(report))
        if trace.bad_lines:
            print(skipped_lines_note(trace.bad_lines, trace.bad_examples, args.trace))
        if lost.any:
            print()
            sys.stdout.write(lost.describe(trace.nr_events, report.unknown_frees))
    return 0
