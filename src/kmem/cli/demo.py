"""``kmem demo``: the seed example told step by step, with a picture of memory at every step."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kmem.cli.args import COMMANDS, size_argument

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from kmem.show.demo import Demo, DemoStep

_STYLES = {
    "free": "black on green3",
    "allocated": "white on red3",
    "splitting": "black on gold3",
    "merging": "black on orange1",
}
_WIDTH = 64


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help=COMMANDS["demo"],
        description="The seed example: a 256 KB segment serves a 21 KB request (rounded to "
        "32 KB) by splitting into buddies, then the free coalesces them back.",
    )
    parser.add_argument("--memory", type=size_argument, default=256 * 1024, metavar="SIZE",
                        help="segment size, a power-of-two number of pages (default 256K)")
    parser.add_argument("--request", type=size_argument, default=21 * 1024, metavar="SIZE",
                        help="bytes requested (default 21K)")
    parser.add_argument("--page-size", type=size_argument, default=4096, metavar="SIZE",
                        help="page size, a power of two (default 4K)")
    parser.add_argument("--json", action="store_true", help="print the steps as JSON")
    parser.set_defaults(func=main)


def picture(step: DemoStep, nr_pages: int, width: int = _WIDTH) -> Text:
    """The segment as a bar: each block as wide as its share of memory, named, coloured."""
    from rich.text import Text

    text = Text()
    for block in step.blocks:
        start = block.pfn * width // nr_pages
        end = (block.pfn + (1 << block.order)) * width // nr_pages
        cells = max(end - start, 1)
        label = block.name if len(block.name) <= cells - 2 else block.name[: max(cells - 2, 0)]
        style = _STYLES[block.state]
        if block.name in step.highlight:
            style += " bold underline"
        text.append("[" + label.center(cells - 2)[: cells - 2] + "]" if cells >= 2 else "|",
                    style=style)
    return text


def _free_lists(step: DemoStep, max_order: int, page_size: int) -> Text:
    from rich.text import Text

    from kmem.show.explain import format_size

    text = Text("free lists: ", style="dim")
    for order in range(max_order, -1, -1):
        names = [b.name for b in step.blocks if b.state == "free" and b.order == order]
        if names:
            text.append(f"{format_size(page_size << order)}: {', '.join(names)}  ")
    counts = " ".join(f"{n:d}" for n in step.nr_free)
    text.append(f"\nnr_free by order 0..{max_order}: {counts}", style="dim")
    return text


def render(demo: Demo, console: Console) -> None:
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    from kmem.show.explain import format_size

    nr_pages = demo.memory // demo.page_size
    max_order = nr_pages.bit_length() - 1
    console.print(
        f"[bold]The buddy system[/]: a {format_size(demo.memory)} segment of "
        f"{format_size(demo.page_size)} pages, a {format_size(demo.request)} request."
    )
    for number, step in enumerate(demo.steps):
        body = Group(Text(step.text), Text(), picture(step, nr_pages),
                     _free_lists(step, max_order, demo.page_size))
        console.print(Panel(body, title=f"step {number}: {step.title}", title_align="left",
                            width=_WIDTH + 6))
    legend = Text("legend: ")
    for state, style in _STYLES.items():
        legend.append(f" {state} ", style=style)
        legend.append(" ")
    console.print(legend)


def main(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from rich.console import Console

    from kmem.show.demo import run_demo

    demo = run_demo(args.memory, args.request, args.page_size)
    if args.json:
        print(json.dumps(asdict(demo), indent=2))
    else:
        render(demo, Console())
    return 0
