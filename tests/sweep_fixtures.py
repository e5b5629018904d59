"""What the sweep tests share: a folder holding the three sweep recordings and a spec over them,
and a trace that breaks off into a malformed line (its runs fail)."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

from fixture_files import SWEEP_TRACES

SPEC = """\
traces = ["traces/*.txt.xz"]
every = 500

[parameters]
policy = ["slub", "slab"]
cpus = [1, 2]
memory = "64M"
"""


def sweep_folder(folder: Path, spec: str = SPEC) -> Path:
    """``folder`` with traces/ (the three recordings) and spec.toml; returns the spec's path."""
    (folder / "traces").mkdir(parents=True, exist_ok=True)
    for trace in sorted(SWEEP_TRACES.glob("*.txt.xz")):
        shutil.copy(trace, folder / "traces" / trace.name)
    path = folder / "spec.toml"
    path.write_text(spec)
    return path


def broken_trace(path: Path, good_lines: int = 300) -> int:
    """Write at ``path`` (.txt.xz) the first ``good_lines`` lines of a recording, then a line
    no parser reads; return that line's number (1-based)."""
    with lzma.open(SWEEP_TRACES / "tar-6.18-first4000.txt.xz", "rt") as source:
        lines = [next(source) for _ in range(good_lines)]
    lines.append("     tar-3301    [001] ..... 1234.000001: kmalloc: call_site=oops\n")
    with lzma.open(path, "wt") as out:
        out.writelines(lines)
    return good_lines + 1
