"""Sizes as people write them: "21K", "1.5M", "4096", "512MiB" -> bytes.

K, M, G and T are powers of 1024; an optional B or iB follows. The arithmetic is exact (a
Fraction), so sizes above 2**53 bytes are not rounded. Every layer that reads a size (scenarios,
the command line's size options, sweep specs) reads it here, so a size means the same thing
everywhere.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final

from kmem.errors import InvalidArgumentError

_SIZE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\Z", re.IGNORECASE)
_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(token: str) -> int:
    """Bytes from "21K", "1.5M", "4096", "512MiB" (K, M, G, T: powers of 1024).

    Bad text raises InvalidArgumentError (a ValueError).
    """
    # (ASCII only: a regular expression's \d takes every script's digits, "４G")
    match = _SIZE.match(token) if token.isascii() else None
    if not match:
        raise InvalidArgumentError(f"bad size {token!r} (expected e.g. 100, 21K, 1.5M)")
    # Exact arithmetic: a float rounds sizes above 2**53 bytes, and digits past its precision
    # ("1.00000000000000001" would be 1).
    try:
        value = Fraction(match.group(1)) * _UNITS[match.group(2).upper()]
    except ValueError:  # (more digits than Python converts: sys.get_int_max_str_digits())
        raise InvalidArgumentError(f"bad size {token[:40]!r}... (too many digits)") from None
    if value.denominator != 1 or value <= 0:
        raise InvalidArgumentError(f"size {token!r} is not a positive whole number of bytes")
    return value.numerator
