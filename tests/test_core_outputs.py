"""`kmem replay --json` and `kmem stat --json` of every trace fixture are byte-identical on the
compiled core and on the pure one (KMEM_PURE=1), under every layer and policy choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core_twins import needs_compiled
from fixture_files import TRACES, ZONEINFO

FIXTURE_TRACES = sorted(p for p in TRACES.rglob("*") if p.is_file() and p.name != "README.md"
                        and not p.name.startswith("stat-") and p.suffix != ".data"
                        and "perf-version" not in p.name and "kallsyms" not in p.name
                        and ".data" not in p.suffixes and ".stat-" not in p.name)
RUNS = [
    ["replay", "--json", "--serial"],
    ["replay", "--json", "--policy", "slab", "--layers", "slab"],
    ["replay", "--json", "--layers", "page", "--every", "7"],
    ["replay", "--json", "--compare", "6.17,6.18,7.0", "--every", "50"],
    ["replay", "--json", "--layout", str(ZONEINFO), "--every", "500"],  # the page machine
    # the slab layer on a small machine's pages, near its watermarks
    ["replay", "--json", "--layout", "DMA32=24M,Normal=40M", "--min-free-kbytes", "8192",
     "--slab-on-machine", "--every", "400"],
    # random kmalloc caches: kmalloc events by call site, apart from the compiled loop
    ["replay", "--json", "--random-kmalloc-seed", "0x9e3779b97f4a7c15", "--every", "300"],
    ["replay", "--json", "--compare", "6.17,7.0", "--random-kmalloc-seed", "3", "--serial"],
    ["stat", "--json"],
]


def _kmem(args: list[str], pure: bool) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env.pop("KMEM_PURE", None)
    if pure:
        env["KMEM_PURE"] = "1"
    return subprocess.run([sys.executable, "-m", "kmem", *args], capture_output=True, env=env,
                          check=False)


@needs_compiled
@pytest.mark.parametrize("trace", FIXTURE_TRACES, ids=lambda p: p.name)
@pytest.mark.parametrize("run", RUNS, ids=lambda r: " ".join(r))
def test_both_cores_print_the_same_bytes(trace: Path, run: list[str]) -> None:
    args = [*run, str(trace), "--skip-bad"]
    compiled, pure = _kmem(args, pure=False), _kmem(args, pure=True)
    assert (compiled.returncode, compiled.stderr) == (pure.returncode, pure.stderr)
    assert compiled.returncode == 0, compiled.stderr.decode()
    assert compiled.stdout == pure.stdout
    assert len(compiled.stdout) > 100
