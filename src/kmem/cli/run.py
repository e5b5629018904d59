"""``kmem run [SCENARIO]``: perform a scenario line by line, explaining every step.

Prints each line, what the allocators did in words, the compact memory map with the touched
block highlighted, and the buddyinfo line; ``--json`` prints one JSON document instead: per
line its steps, nr_free, free pages, live names and caches (as kmem.show.snapshot describes them).
"""

from __future__ import annotations

import argparse
import json

from kmem.cli.args import COMMANDS, count_argument
from kmem.show.scenario import BUILTIN


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help=COMMANDS["run"],
        description="Run a scenario file (or a built-in one: " + ", ".join(BUILTIN) + ") and"
        " print every step: what the allocators did, and the memory map.",
    )
    parser.add_argument("scenario", nargs="?", default="seed",
                        help="scenario file or built-in name (default: seed)")
    parser.add_argument("--json", action="store_true", help="print the steps as JSON")
    parser.add_argument("--no-map", action="store_true", help="do not draw the memory map")
    parser.add_argument("--width", type=count_argument, default=64, metavar="N",
                        help="memory map cells per row (default 64)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.text import Text

    from kmem.show import memory_map
    from kmem.show.scenario import load
    from kmem.show.scenario_machine import MACHINE_VERBS
    from kmem.show.scenario_run import run_all
    from kmem.show.snapshot import cache_frames

    scenario = load(args.scenario)
    if args.json:
        steps = []
        for result, state in run_all(scenario):
            entry = result.to_json()
            entry["nr_free"] = list(state.buddy.nr_free)
            entry["free_pages"] = state.buddy.nr_free_pages
            entry["live"] = sorted(state.names)
            entry["caches"] = cache_frames(state.slab)
            steps.append(entry)
        document = {
            "scenario": scenario.name,
            "memory": scenario.memory,
            "page_size": scenario.page_size,
            "max_order": scenario.max_order,
            "steps": steps,
        }
        print(json.dumps(document, indent=1))
        return 0
    # (prose wraps at the terminal's width; the buddyinfo lines below never do: soft_wrap)
    console = Console(highlight=False)
    console.print(
        f"[bold]{escape(scenario.name)}[/]: {scenario.memory // 1024} KB of"
        f" {scenario.page_size}-byte pages, max_order {scenario.max_order}"
    )
    for result, state in run_all(scenario):
        console.print(Text.assemble("\n", (f"line {result.line}", "bold cyan"), ": ",
                                    (result.source, "bold")))
        console.print(result.text, markup=False)
        if not args.no_map:
            labels = state.block_labels()
            console.print(memory_map.render(state.buddy, highlight=[p for p, _ in
                                                                   result.highlight],
                                            labels=labels, width=args.width))
        # (a page machine verb shows the machine's buddyinfo, not the scenario buddy's)
        shown = state.machine if result.verb in MACHINE_VERBS and state.machine else state.buddy
        console.print(shown.buddyinfo().rstrip(), style="dim", markup=False, soft_wrap=True)
    if not args.no_map:
        console.print()
        console.print(memory_map.legend())
    return 0
