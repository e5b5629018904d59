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

    try:  # (parse_size takes ASCII only: "４G" is bad)
        return parse_size(text.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# The machine every command that builds one runs on, unless told otherwise: the same default
# for replay, html, plot, serve, slabinfo and slabtop (a scenario says its own memory).
DEFAULT_MEMORY: Final = 1 << 30
DEFAULT_CPUS: Final = 2
# The least --memory: one MAX_PAGE_ORDER block (order 10) of 4 KiB pages. Less than that is
# no machine a trace or a workload can run on ("0.00 MiB" of everything, or an order error).
MIN_MEMORY: Final = 4 << 20
MAX_CPUS: Final = 4096  # kmem.page.machine.MAX_CPUS and the slab layer's bound
_PAGE: Final = 4096


def memory_argument(text: str) -> int:
    """The argparse type of --memory: a size (size_argument) of at least MIN_MEMORY, a whole
    number of 4 KiB pages."""
    memory = size_argument(text)
    if memory < MIN_MEMORY:
        raise argparse.ArgumentTypeError(
            f"{text.strip()!r} is too small: a machine needs at least {MIN_MEMORY >> 20}M"
            " (one order-10 block of 4K pages)")
    if memory % _PAGE:
        raise argparse.ArgumentTypeError(
            f"{text.strip()!r} is not a whole number of 4K pages")
    return memory


def _whole_number(text: str) -> int:
    # int() alone would take "1_000", " 7 " and Unicode digits ("٣"): a count on a command
    # line is ASCII digits with an optional sign, nothing else.
    stripped = text.strip()
    digits = stripped[1:] if stripped[:1] in "+-" else stripped
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(stripped)


def count_argument(text: str) -> int:
    """The argparse type of a count that must be 1 or more (--limit, --lines, --frames...)."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
    return value


def natural_argument(text: str) -> int:
    """The argparse type of a count where 0 means something (``--caches 0``: all of them)."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def int_argument(text: str) -> int:
    """The argparse type of a plain integer (``--step -1``, ``--seed``): ASCII digits only."""
    return _whole_number(text)


def seed_argument(text: str) -> int:
    """The argparse type of --random-kmalloc-seed: a u64 (random_kmalloc_seed), decimal or
    0x hex."""
    from kmem.trace.callers import parse_seed  # here: `kmem --help` must load no layer

    try:
        return parse_seed(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cpus_argument(text: str) -> int:
    """The argparse type of --cpus: 1 to MAX_CPUS (the page machine's and slab layer's bound)."""
    value = _whole_number(text)
    if not 1 <= value <= MAX_CPUS:
        raise argparse.ArgumentTypeError(f"{text!r}: CPUs are 1 to {MAX_CPUS}")
    return value


def add_machine_arguments(parser: argparse.ArgumentParser, *, what: str = "") -> None:
    """--memory and --cpus, with the same names, defaults and checks for every command.
    ``--nr-cpus`` stays as a hidden alias of --cpus (kmem replay's old name)."""
    parser.add_argument("--memory", type=memory_argument, default=DEFAULT_MEMORY,
                        metavar="SIZE",
                        help=f"memory of the machine{what} (default {DEFAULT_MEMORY >> 30}G,"
                             f" at least {MIN_MEMORY >> 20}M)")
    add_cpus_argument(parser, f"CPUs of the machine{what} (default {DEFAULT_CPUS})")


def add_cpus_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """--cpus N, and --nr-cpus N as a hidden alias (the name kmem replay once had)."""
    parser.add_argument("--cpus", type=cpus_argument, default=DEFAULT_CPUS, metavar="N",
                        help=help)
    parser.add_argument("--nr-cpus", dest="cpus", type=cpus_argument, default=DEFAULT_CPUS,
                        help=argparse.SUPPRESS)


def split_negative_values(words: list[str]) -> list[str]:
    """``--memory -1G`` as ``--memory=-1G``: argparse takes a word that starts with "-" and is
    not a plain number for an option, so a negative size would be "expected one argument"
    instead of the size's own error. An option followed by such a word gets it attached."""
    import re

    looks_negative = re.compile(r"-[0-9.]")
    plain_number = re.compile(r"-\d+$|-\d*\.\d+$")  # (argparse takes these as values itself)
    out: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        following = words[index + 1] if index + 1 < len(words) else ""
        if (word.startswith("--") and len(word) > 2 and "=" not in word
                and looks_negative.match(following) and not plain_number.match(following)):
            out.append(f"{word}={following}")
            index += 2
            continue
        out.append(word)
        index += 1
    return out


def output_path(path: str, option: str = "-o") -> str:
    """``path`` if a file can be written there, else an InvalidArgumentError naming it: checked
    before the work (a replay can take minutes), so a typo costs nothing."""
    import errno
    import os

    from kmem.errors import InvalidArgumentError, output_file_errno

    problem = output_file_errno(path)
    if problem == errno.EISDIR:
        raise InvalidArgumentError(f"{option} {path!r} is a folder: give a file name")
    if problem == errno.ENOENT:
        folder = os.path.dirname(os.path.abspath(path))
        raise InvalidArgumentError(f"{option} {path!r}: no folder {folder!r}")
    if problem:
        raise InvalidArgumentError(f"{option} {path!r}: not allowed to write there")
    return path


def load_layout(spec: str) -> MachineLayout:
    """The machine layout a --layout option names: a /proc/zoneinfo file (``-`` for standard
    input), or zone sizes ``DMA=16M,DMA32=2G,Normal=4G`` (a zone may give its start:
    ``Normal=1G@4G``). A file kmem cannot read, or a zoneinfo line it cannot parse, is a
    KmemError naming it (``FILE:LINE: what is wrong``)."""
    from kmem.page.layout import read_layout_spec

    return read_layout_spec(spec)[0]


# Every command: its name -> its one line of help (the module kmem.cli.<name> holds it).
# kmem --help lists them from here without importing any command module.
COMMANDS: Final = {
    "arena": "print (info) or verify (check) an arena kept in a file or shared memory",
    "demo": 'the buddy system step by step: a request splits a segment, its free coalesces',
    "html": 'write one self-contained HTML page replaying a scenario or a trace',
    "leaks": 'outstanding allocations of a trace by call site, as bcc memleak',
    "plot": 'draw the memory map, memory use and fragmentation over time (PNG or SVG)',
    "record": "record a kmem trace of a command (tracefs, or perf with --perf / -g)",
    "replay": "run a kmem trace through kmem's own buddy, slab and kmalloc allocators",
    "run": 'run a scenario step by step (default: the built-in seed example)',
    "serve": 'serve the replay page of a scenario or a trace over HTTP',
    "slabinfo": 'print /proc/slabinfo after a workload',
    "slabtop": 'slabtop-like view of the slab caches after a workload',
    "stat": 'slab and page allocation statistics of a trace, as perf kmem stat',
    "sweep": 'replay traces × parameter sets on a process pool or a Dask cluster; rank them',
    "top": 'slab allocations per cache and interval of a trace, as bcc slabratetop',
    "zoneinfo": "boot the page machine on a layout and print /proc/zoneinfo (or buddyinfo,"
                " pagetypeinfo)",
}
