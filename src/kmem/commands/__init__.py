"""Subcommands of the ``kmem`` command line, one module each (see kmem.cli)."""

from __future__ import annotations

import argparse

from kmem.scenario import parse_size


def size_argument(text: str) -> int:
    """The argparse type of every size option: "64M" -> 67108864 (kmem.scenario.parse_size: K,
    M, G and T are powers of 1024, an optional B or iB). Bad text is a usage error, worded the
    same for every command: "argument --memory: bad size 'lots' (expected e.g. 100, 21K, 1.5M)"."""
    try:
        return parse_size(text.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
