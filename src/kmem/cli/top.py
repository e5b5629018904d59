"""``kmem top TRACE``: slab allocations per cache and per interval of a kmem trace, as bcc's
slabratetop prints them, and a plot of the busiest caches over time."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from kmem.cli.args import COMMANDS
from kmem.trace.json_text import json_text


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "top",
        help=COMMANDS["top"],
        description="Read a kmem trace and print, for each interval of trace time, the"
        " allocations and bytes per slab cache as bcc's slabratetop does (kmalloc calls under"
        " their kmalloc cache), or write them as JSON, or plot the busiest caches over time.",
    )
    parser.add_argument("trace", help="trace file (text, or a perf.data file), or - for"
                        " standard input")
    parser.add_argument("--interval", default="1s", metavar="DURATION",
                        help="interval length (e.g. 1s, 100ms; default 1s)")
    parser.add_argument("-r", "--maxrows", type=int, default=20, metavar="N",
                        help="caches per interval (default 20, as slabratetop)")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="also draw the busiest caches' bytes per interval (.png or .svg)")
    parser.add_argument("--caches", type=int, default=8, metavar="N",
                        help="caches in the plot (default 8)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="count malformed lines instead of stopping at the first")
    parser.add_argument("--json", action="store_true", help="print the intervals as JSON")
    parser.add_argument("--kallsyms", metavar="FILE",
                        help="perf.data: the kernel's symbols for call sites (as kmem stat)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.cli.stat import warn_no_events
    from kmem.cli.terminal import skipped_lines_note
    from kmem.errors import InvalidArgumentError
    from kmem.show.plot import picture_path
    from kmem.trace.events import TraceEvent, batch_events
    from kmem.trace.perf_data import TraceInput
    from kmem.trace.rates import format_rates, parse_duration, slab_rates

    interval = parse_duration(args.interval)
    if not interval > 0:
        raise InvalidArgumentError(f"--interval must be longer than 0, got {args.interval!r}")
    if args.maxrows < 1:
        raise InvalidArgumentError(f"--maxrows must be 1 or more, got {args.maxrows}")
    if args.caches < 1:
        raise InvalidArgumentError(f"--caches must be 1 or more, got {args.caches}")
    if args.plot:
        picture_path(args.plot)  # a bad file name fails now, not after reading the trace
    with TraceInput.open(args.trace, skip_bad=args.skip_bad,
                         kallsyms=args.kallsyms) as trace:
        def events() -> Iterator[TraceEvent]:
            for batch in trace.batches():
                yield from batch_events(batch)

        rates = slab_rates(events(), interval)
    if not trace.nr_events:  # (no table of empty intervals: it would look like a result)
        return warn_no_events(args.trace, trace.lines, trace.other_events, trace.bad_lines)
    if args.plot:
        from kmem.show.rates_plot import plot_rates

        plot_rates(rates, args.plot, caches=args.caches)
    lost = trace.lost  # (rates of intervals with lost events are too low: say so)
    if args.json:
        print(json_text({"lines": trace.lines, "bad_lines": trace.bad_lines,
                          **rates.to_json(args.maxrows), "lost": lost.to_json()}))
        return 0
    sys.stdout.write(format_rates(rates, args.maxrows))
    if trace.bad_lines:
        print(skipped_lines_note(trace.bad_lines, trace.bad_examples, args.trace))
    if lost.any:
        print()
        sys.stdout.write(lost.describe(trace.nr_events))
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0
