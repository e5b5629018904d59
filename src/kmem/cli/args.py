"""What the commands of the ``kmem`` command line share: the command table and argument types."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from kmem.page.layout import MachineLayout


def size_argument(text: str) -> int:
    """The argparse type of every size option: "64M" -> 67108864 (kmem.page.size.parse_size: K,
    M, G and T are powers of 1024, an optional B or iB). Bad text is a usage error, worded the
    same for every command: "argument --memory: bad size 'lots' (expected e.g. 100, 21K, 1.5M)"."""
    from kmem.page.size import parse_size  # here: `kmem --help` must load no layer

    try:
        return parse_size(text.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def load_layout(spec: str) -> MachineLayout:
    """The machine layout a --layout option names: a /proc/zoneinfo file (``-`` for standard
    input), or zone sizes ``DMA=16M,DMA32=2G,Normal=4G`` (a zone may give its start:
    ``Normal=1G@4G``). A file kmem cannot read, or a zoneinfo line it cannot parse, is a
    KmemError naming it (``FILE:LINE: what is wrong``)."""
    import os
    import sys

    from kmem.page.errors import InvalidLayoutError
    from kmem.page.layout import MachineLayout, layout_from_zoneinfo

    if spec != "-" and "=" in spec and not os.path.exists(spec):
        sizes: dict[str, int | tuple[int, int]] = {}
        for part in spec.split(","):
            name, _, size = part.partition("=")
            amount, _, start = size.partition("@")
            try:
                sizes[name.strip()] = (
                    (_size(amount), _size(start)) if start else _size(amount))
            except argparse.ArgumentTypeError as error:
                raise InvalidLayoutError(f"layout {spec!r}: zone {name.strip()}: {error}") from None
        return MachineLayout.from_sizes(sizes, source=spec)
    try:
        if spec == "-":
            text = sys.stdin.read()
        else:
            with open(spec, encoding="utf-8", errors="replace") as file:
                text = file.read()
    except OSError as error:
        raise InvalidLayoutError(f"cannot read layout {spec!r}: {error.strerror}") from None
    return layout_from_zoneinfo(text, source="<stdin>" if spec == "-" else spec)


def _size(text: str) -> int:
    return size_argument(text)


# Every command: its name -> its one line of help (the module kmem.cli.<name> holds it).
# kmem --help lists them from here without importing any command module.
COMMANDS: Final = {
    "demo": 'the buddy system step by step: a request splits a segment, its free coalesces',
    "html": 'write one self-contained HTML page replaying a scenario or a trace',
    "plot": 'draw the memory map, memory use and fragmentation over time (PNG or SVG)',
    "record": "record a kmem trace of a command (tracefs, or perf with --perf / -g)",
    "replay": "run a kmem trace through kmem's own buddy, slab and kmalloc allocators",
    "run": 'run a scenario step by step (default: the built-in seed example)',
    "serve": 'serve the replay page of a scenario or a trace over HTTP',
    "slabinfo": 'print /proc/slabinfo after a workload',
    "slabtop": 'slabtop-like view of the slab caches after a workload',
    "stat": 'slab and page allocation statistics of a trace, as perf kmem stat',
    "sweep": 'replay traces × parameter sets on a process pool or a Dask cluster; rank them',
    "zoneinfo": "boot the page machine on a layout and print /proc/zoneinfo (or buddyinfo,"
                " pagetypeinfo)",
}
