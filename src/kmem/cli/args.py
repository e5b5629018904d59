"""What the commands of the ``kmem`` command line share: the command table and argument types."""

from __future__ import annotations

import argparse
from typing import Final


def size_argument(text: str) -> int:
    """The argparse type of every size option: "64M" -> 67108864 (kmem.page.size.parse_size: K,
    M, G and T are powers of 1024, an optional B or iB). Bad text is a usage error, worded the
    same for every command: "argument --memory: bad size 'lots' (expected e.g. 100, 21K, 1.5M)"."""
    from kmem.page.size import parse_size  # here: `kmem --help` must load no layer

    try:
        return parse_size(text.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# Every command: its name -> its one line of help (the module kmem.cli.<name> holds it).
# kmem --help lists them from here without importing any command module.
COMMANDS: Final = {
    "demo": 'the buddy system step by step: a request splits a segment, its free coalesces',
    "html": 'write one self-contained HTML page replaying a scenario or a trace',
    "plot": 'draw the memory map, memory use and fragmentation over time (PNG or SVG)',
    "replay": "run a kmem trace through kmem's own buddy, slab and kmalloc allocators",
    "run": 'run a scenario step by step (default: the built-in seed example)',
    "serve": 'serve the replay page of a scenario or a trace over HTTP',
    "slabinfo": 'print /proc/slabinfo after a workload',
    "slabtop": 'slabtop-like view of the slab caches after a workload',
    "stat": 'slab and page allocation statistics of a trace, as perf kmem stat',
    "sweep": 'replay traces × parameter sets on a process pool or a Dask cluster; rank them',
}
