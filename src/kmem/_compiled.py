"""Which core runs kmem's hot paths: the compiled one (the C extension kmem._core) or the
pure-Python one beside it.

The compiled core is used when it was built (``pip install`` builds it with the machine's C
compiler) and ``KMEM_PURE`` is unset or 0; ``KMEM_PURE=1`` selects the pure-Python reference.
The choice is made once, when kmem is first imported. Both give identical results: the same
pfns, addresses, counters, errors and check() verdicts (tests/test_core_lockstep.py).

This module is layer 0, beside kmem.errors: every layer may ask it which core it runs on.
"""

from __future__ import annotations

import os
from types import ModuleType

PURE_REQUESTED = os.environ.get("KMEM_PURE", "").strip() not in ("", "0")


def _load() -> ModuleType | None:
    if PURE_REQUESTED:
        return None
    try:
        import kmem._core as compiled
    except ImportError:  # not built: no compiler at install time, or a source checkout
        return None
    return compiled


core = _load()


def core_backend() -> str:
    """``"compiled"`` when kmem's hot paths run in its C extension, else ``"pure"``."""
    return "pure" if core is None else "compiled"
