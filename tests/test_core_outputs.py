"""`kmem replay --json` and `kmem stat --json` of every trace fixture are byte-identical on the
compiled core and on the pure one (KMEM_PURE=1), under every layer and policy choice, and with
the slab layer on the page machine (--slab-on-machine) under pressure: past its watermarks in the
fixtures, and with pfmemalloc slabs in a written trace."""

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
    # the slab layer on the page machine, past its watermarks partway through most fixtures
    # (the min watermark leaves some 300 of 65536 pages): refused slab pages, 7.0's refills
    *(["replay", "--json", "--slab-on-machine", "--layout", "Normal=256M", "--min-free-kbytes",
       "260500", "--kernel", kernel, "--every", "400"] for kernel in ("6.18", "7.0")),
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


# -- pfmemalloc slabs: no fixture has a __GFP_MEMALLOC allocation, so a written trace ---------

PRESSURE = ["--slab-on-machine", "--layout", "Normal=16M", "--min-free-kbytes", "1024"]


def _line(cpu: int, seq: int, event: str, fields: str) -> str:
    return f"            test-1       [{cpu:03d}] .....   {1 + seq / 1e6:.6f}: {event}: {fields}\n"


def _pfmemalloc_trace() -> str:
    """CPU 0 takes every page with GFP_ATOMIC (the machine refuses the last: past its min
    watermark); CPU 1 then allocates objects with and without __GFP_MEMALLOC (only those get
    slabs: pfmemalloc ones), both CPUs free some; CPU 0 frees 1000 pages and GFP_KERNEL
    allocations follow (new slabs that are not pfmemalloc, refills passing over the others)."""
    lines = ["# tracer: nop\n#\n"]
    seq = 0

    def add(cpu: int, event: str, fields: str) -> None:
        nonlocal seq
        lines.append(_line(cpu, seq, event, fields))
        seq += 1

    def obj(cpu: int, event: str, ptr: int, gfp: str, name: str = "skb_test") -> None:
        if event == "kmem_cache_alloc":
            add(cpu, event, f"call_site=site+0x1/0x2 ptr={ptr:016x} name={name} bytes_req=256 "
                            f"bytes_alloc=256 gfp_flags={gfp} node=-1 accounted=false")
        elif event == "kmalloc":
            add(cpu, event, f"call_site=site+0x1/0x2 ptr={ptr:016x} bytes_req=200 "
                            f"bytes_alloc=256 gfp_flags={gfp} node=-1 accounted=false")
        else:
            add(cpu, event, f"call_site=site+0x1/0x2 ptr={ptr:016x}"
                            + (f" name={name}" if event == "kmem_cache_free" else ""))

    def page(cpu: int, event: str, pfn: int, gfp: str = "GFP_ATOMIC", mt: int = 0) -> None:
        if event == "mm_page_alloc":
            add(cpu, event, f"page=0000000000000000 pfn={pfn:#x} order=0 migratetype={mt} "
                            f"gfp_flags={gfp}")
        else:
            add(cpu, event, f"page=0000000000000000 pfn={pfn:#x} order=0")

    for i in range(8):  # the caches, before the pressure (7.0 kmallocs their sheaves)
        obj(i % 2, "kmem_cache_alloc", 0x100 + i, "GFP_KERNEL")
        obj(i % 2, "kmalloc", 0x200 + i, "GFP_KERNEL")
    for i in range(4096):
        page(0, "mm_page_alloc", 0x10000 + i)
    page(0, "mm_page_alloc", 0x20000, "GFP_HIGHUSER_MOVABLE", 1)
    for i in range(400):
        gfp = "GFP_ATOMIC|__GFP_MEMALLOC" if i % 3 else "GFP_ATOMIC"
        obj(1, "kmem_cache_alloc", 0x1000 + i, gfp)
        obj(1, "kmalloc", 0x2000 + i, gfp)
    for i in range(0, 400, 2):
        obj(i % 2, "kmem_cache_free", 0x1000 + i, "")
        obj(1 - i % 2, "kfree", 0x2000 + i, "")
    for i in range(1000):
        page(0, "mm_page_free", 0x10000 + i)
    page(0, "mm_page_alloc", 0x20001, "GFP_HIGHUSER_MOVABLE", 1)
    for i in range(200):
        gfp = ("GFP_KERNEL", "GFP_ATOMIC", "GFP_ATOMIC|__GFP_MEMALLOC")[i % 3]
        obj(i % 2, "kmem_cache_alloc", 0x4000 + i, gfp)
        obj(1 - i % 2, "kmalloc", 0x5000 + i, gfp)
    for i in range(1, 400, 2):
        obj(0, "kmem_cache_free", 0x1000 + i, "")
        obj(1, "kfree", 0x2000 + i, "")
    return "".join(lines)


@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
def test_the_written_trace_makes_pfmemalloc_slabs(kernel: str) -> None:
    # (the test below is only worth its bytes if the replay has pfmemalloc slabs)
    from kmem.trace.parse import TraceParser
    from kmem.trace.replay import Replayer

    replayer = Replayer(kernel=kernel, layout="Normal=16M", min_free_kbytes=1024,
                        slab_on_machine=True)
    result = replayer.run(TraceParser().parse(_pfmemalloc_trace().splitlines(keepends=True)))
    replayer.slab.check()
    slabs = [s for name in ("skb_test", "kmalloc-256") for s in replayer.slab.caches[name]._slabs()]
    assert any(s.pfmemalloc for s in slabs) and not all(s.pfmemalloc for s in slabs)
    assert result.kmem_oom  # the GFP_ATOMIC allocations past the watermarks


@needs_compiled
@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
@pytest.mark.parametrize("pcp", [[], ["--no-pcp"]], ids=["pcp", "no-pcp"])
def test_both_cores_print_the_same_bytes_with_pfmemalloc_slabs(
        tmp_path: Path, kernel: str, pcp: list[str]) -> None:
    trace = tmp_path / "pfmemalloc.txt"
    trace.write_text(_pfmemalloc_trace())
    args = ["replay", "--json", "--kernel", kernel, *PRESSURE, *pcp, "--every", "300",
            str(trace)]
    compiled, pure = _kmem(args, pure=False), _kmem(args, pure=True)
    assert (compiled.returncode, compiled.stderr) == (pure.returncode, pure.stderr)
    assert compiled.returncode == 0, compiled.stderr.decode()
    assert compiled.stdout == pure.stdout
