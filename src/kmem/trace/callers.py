"""The caller of a traced kmalloc: what CONFIG_RANDOM_KMALLOC_CACHES hashes to pick a copy.

With random kmalloc caches (kmem.slab.kmalloc_sizes.random_kmalloc_copy) a kmalloc of the normal
family goes to the copy ``hash_64(caller ^ random_kmalloc_seed, 4)`` selects, ``caller`` being
the return address the kmalloc tracepoint prints as ``call_site``. A trace gives that address in
one of two spellings:

- a raw address (``0xffffffffc0a1b2c3``; perf.data read without symbols, a module the kernel
  could not name): the caller is that number, exactly the kernel's;
- a symbol and offset (``alloc_fdtable+0x55/0x140``, maybe ``[module]`` after it): the kernel's
  address is not in the trace, so the caller is a fixed 64-bit number derived from the text
  (the first 8 bytes of its BLAKE2b digest, little-endian). One call site is one caller, and two
  call sites two callers, as in the kernel: kmem groups the trace's kmallocs by call site the
  way the kernel does; which copy a site lands in differs, as it does from one boot to the next
  (the seed is random per boot).

The symbol's length (``/0x140``) is left out of the text hashed: perf script prints the same
call site without it, and it names no other place.
"""

from __future__ import annotations

import hashlib
from typing import Final

_U64: Final = (1 << 64) - 1


def call_site_caller(call_site: str) -> int:
    """The caller address (a u64) a kmalloc traced with ``call_site`` is hashed with.

    >>> hex(call_site_caller("0xffffffffc0a1b2c3"))
    '0xffffffffc0a1b2c3'
    >>> call_site_caller("alloc_fdtable+0x55/0x140") == call_site_caller("alloc_fdtable+0x55")
    True
    >>> call_site_caller("alloc_fdtable+0x55/0x140") == call_site_caller("alloc_fdtable+0x84/0x140")
    False
    """
    text = call_site.strip()
    if not text:
        return 0  # (no call site: an event that names none)
    if text[:2] in ("0x", "0X"):
        try:
            return int(text, 16) & _U64
        except ValueError:
            pass  # not a number after all: a name, hashed below
    name, _, module = text.partition(" ")
    symbol = name.partition("/")[0]
    key = f"{symbol} {module}" if module else symbol
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def parse_seed(text: str) -> int:
    """A random_kmalloc_seed as written on a command line: a u64, decimal or 0x hex.

    Raises ValueError (its message says what is wrong) for anything else.
    """
    stripped = text.strip()
    digits, base = (stripped[2:], 16) if stripped[:2].lower() == "0x" else (stripped, 10)
    allowed = "0123456789abcdefABCDEF" if base == 16 else "0123456789"
    if not digits or not digits.isascii() or any(char not in allowed for char in digits):
        raise ValueError(f"{text!r} is not a seed: a u64, decimal or 0x hex")
    value = int(digits, base)
    if value > _U64:
        raise ValueError(f"{text!r} is not a seed: above 2**64-1, the largest u64")
    return value


__all__ = ["call_site_caller", "parse_seed"]
