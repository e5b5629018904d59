"""Twins for the lockstep tests: the same object built on the compiled core and on the pure one.

kmem chooses its core once per process (kmem._compiled.core); a module that builds objects
reads that choice through its own ``core`` name, so a test can build a pure twin beside a
compiled object by hiding the core from that module while it constructs.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar

import pytest

from kmem._compiled import core

T = TypeVar("T")

# The module whose objects pick a core when they are built: a BuddyAllocator; the slab caches,
# kmalloc and the replay loop on top of one follow it.
CORE_USERS = ("kmem.page.buddy",)

# How many random programs each lockstep test runs: tools/fuzz.sh raises it under ASan.
FUZZ_EXAMPLES = int(os.environ.get("KMEM_FUZZ_EXAMPLES", "60"))

needs_compiled = pytest.mark.skipif(core is None, reason="the compiled core is not built"
                                    " (or KMEM_PURE=1): nothing to compare the pure core with")


@contextlib.contextmanager
def pure_core() -> Iterator[None]:
    """Objects built inside run on the pure-Python core."""
    saved = {name: sys.modules[name].core for name in CORE_USERS if name in sys.modules}
    try:
        for name in saved:
            sys.modules[name].core = None  # type: ignore[attr-defined]
        yield
    finally:
        for name, value in saved.items():
            sys.modules[name].core = value  # type: ignore[attr-defined]


def twins(factory: Callable[[], T]) -> tuple[T, T]:
    """(compiled, pure): ``factory()`` built on each core."""
    compiled = factory()
    with pure_core():
        pure = factory()
    return compiled, pure


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What a call did: ("ok", its result) or ("error", (class name, message))."""
    try:
        return "ok", call()
    except Exception as error:
        return "error", (type(error).__name__, str(error))


def compiled_module() -> ModuleType | None:
    """kmem._core when it was built, even under KMEM_PURE=1 (which only stops kmem using it)."""
    try:
        return importlib.import_module("kmem._core")
    except ImportError:  # pragma: no cover - a checkout without the C extension
        return None


@contextlib.contextmanager
def on_core(module: ModuleType | None, where: str = "kmem.page.buddy") -> Iterator[None]:
    """Allocators built inside run on ``module`` (None: the pure core), whatever KMEM_PURE
    says: so the mutation tool's pure run also checks what the Python classes hand the
    compiled core (tests/test_mutants_*.py). ``where``: the module whose classes pick their
    core as they are built (kmem.page.buddy's for the buddy and slab allocators, a page
    machine's own)."""
    chooser = sys.modules[where]
    saved = chooser.core
    chooser.core = module  # type: ignore[attr-defined]
    try:
        yield
    finally:
        chooser.core = saved  # type: ignore[attr-defined]
