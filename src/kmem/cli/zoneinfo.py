"""``kmem zoneinfo``: the page machine booted on a layout, printed as /proc/zoneinfo.

The layout is a real machine's /proc/zoneinfo (its zones' start_pfn, spanned, present and
managed pages) or zone sizes; kmem computes min_free_kbytes (unless given), the watermarks,
lowmem reserves and every CPU's pcp batch/high_min/high_max as Linux 6.18 does, so on the
machine the file came from ``kmem zoneinfo --layout /proc/zoneinfo --cpus $(nproc)
--min-free-kbytes $(cat /proc/sys/vm/min_free_kbytes)`` prints the kernel's own numbers.
"""

from __future__ import annotations

import argparse

from kmem.cli.args import (
    COMMANDS,
    DEFAULT_CPUS,
    add_cpus_argument,
    int_argument,
    natural_argument,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "zoneinfo",
        help=COMMANDS["zoneinfo"],
        description="Boot kmem's page machine (zones, migratetypes, per-CPU lists) on a layout"
        " and print what Linux 6.18 would show in /proc/zoneinfo, byte for byte: watermarks,"
        " protection, managed/present/spanned, every CPU's pageset.",
    )
    parser.add_argument("--layout", metavar="FILE", default=None,
                        help="a /proc/zoneinfo file ('-': standard input), or zone sizes such"
                        " as DMA=16M,DMA32=2G,Normal=4G (default: one 1 GiB Normal zone)")
    add_cpus_argument(parser, f"CPUs (default: {DEFAULT_CPUS})")
    parser.add_argument("--min-free-kbytes", type=natural_argument, default=None, metavar="K",
                        help="vm.min_free_kbytes (default: the kernel's formula, raised for"
                        " THP as khugepaged does)")
    parser.add_argument("--watermark-scale-factor", type=int_argument, default=10, metavar="N",
                        help="vm.watermark_scale_factor (default: 10)")
    parser.add_argument("--no-thp", action="store_true",
                        help="THP off: min_free_kbytes by the sqrt formula alone")
    parser.add_argument("--show", choices=("zoneinfo", "buddyinfo", "pagetypeinfo"),
                        default="zoneinfo", help="which /proc file to print (default: zoneinfo)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmem.cli.args import load_layout
    from kmem.page.layout import MachineLayout
    from kmem.page.machine import PageMachine

    layout = MachineLayout.default() if args.layout is None else load_layout(args.layout)
    machine = PageMachine(layout, nr_cpus=args.cpus, min_free_kbytes=args.min_free_kbytes,
                          watermark_scale_factor=args.watermark_scale_factor,
                          thp=not args.no_thp)
    text = {"zoneinfo": machine.zoneinfo, "buddyinfo": machine.buddyinfo,
            "pagetypeinfo": machine.pagetypeinfo}[args.show]()
    print(text, end="")
    return 0
