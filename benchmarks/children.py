"""The environment of a benchmark's child processes: what an installed kmem would run in.

Without bytecode caches (PYTHONDONTWRITEBYTECODE set, as in some CI and sandbox shells) every
run compiles kmem's modules again: 40-100 ms of CPU that no installed kmem pays, and more for
the commands that import more (kmem html against kmem replay). A cache directory per
interpreter keeps builds apart and writes nothing into their source trees.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def installed_environment(python: str = sys.executable, **overrides: str) -> dict[str, str]:
    """os.environ with bytecode caches allowed (in /tmp, per interpreter) and ``overrides``."""
    environment = {**os.environ, **overrides}
    if "PYTHONDONTWRITEBYTECODE" in environment:
        del environment["PYTHONDONTWRITEBYTECODE"]
        environment["PYTHONPYCACHEPREFIX"] = f"/tmp/kmem-bench-pycache{Path(python).parent}"
    return environment
