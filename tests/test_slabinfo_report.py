"""`kmem slabinfo -r / -T`: tools/mm/slabinfo's report modes, byte for byte, on real inputs."""

from __future__ import annotations

import json
import lzma
import os
from pathlib import Path

import pytest

from fixture_files import FIXTURES
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.show.workload import workload_allocator
from kmem.slab.slabinfo_tool import (
    SysfsEntry,
    SysfsSnapshot,
    _Tool,
    load_snapshot,
    slabinfo_report,
    slabinfo_totals,
    snapshot_from_allocator,
    snapshot_from_dir,
)

TOOL = FIXTURES / "slabinfo_tool"
REAL = TOOL / "sys_kernel_slab_6.18_2cpu.json.xz"
SYNTHETIC = TOOL / "sys_kernel_slab_synthetic_numa_stats.json.xz"


def _text(name: str) -> str:
    path = TOOL / name
    if path.suffix == ".xz":
        with lzma.open(path, "rt") as file:
            return file.read()
    return path.read_text()


@pytest.mark.parametrize(("argv", "expected"), [
    (["-T"], "slabinfo-T.txt"),
    (["-T", "-B"], "slabinfo-T-B.txt"),
    (["-r"], "slabinfo-r.txt.xz"),
    (["-r", "--match", "dentry"], "slabinfo-r-dentry.txt"),
    (["-T", "--match", "kmalloc-[0-9]"], "slabinfo-T-kmalloc-digit.txt"),
])
def test_cli_prints_the_tools_bytes_on_a_real_sys_kernel_slab(
        argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabinfo", *argv, "--sys-slab", str(REAL)]) == 0
    assert capsys.readouterr().out == _text(expected)


def test_report_options_as_the_tool_takes_them() -> None:
    snapshot = load_snapshot(REAL)
    assert slabinfo_report(snapshot, inverted=True, lines=12) == _text("slabinfo-r-i-N12.txt")
    assert slabinfo_report(snapshot, first_alias=True, lines=40) == _text(
        "slabinfo-r-f-N40.txt.xz")


def test_numa_nodes_and_stat_counters_as_the_tool_prints_them(
        capsys: pytest.CaptureFixture[str]) -> None:
    # The same snapshot with two NUMA nodes and CONFIG_SLUB_STATS counters on three caches
    # (and an ops and alloc_calls file on filp), run through the real tool.
    snapshot = load_snapshot(SYNTHETIC)
    report = slabinfo_report(snapshot)
    assert report == _text("synthetic-slabinfo-r.txt.xz")
    assert "NUMA nodes" in report and "Slab Perf Counter" in report
    assert slabinfo_totals(snapshot) == _text("synthetic-slabinfo-T.txt")
    assert main(["slabinfo", "-r", "-N", "3", "--sys-slab", str(SYNTHETIC)]) == 0
    assert capsys.readouterr().out.count("\nSlabcache: ") == 3


def test_a_directory_reads_as_its_snapshot(tmp_path: Path) -> None:
    snapshot = load_snapshot(REAL)
    root = tmp_path / "slab"
    root.mkdir()
    for entry in snapshot.entries:
        if entry.link is not None:
            os.symlink(entry.link, root / entry.name)
            continue
        (root / entry.name).mkdir()
        for name, text in entry.files.items():
            (root / entry.name / name).write_text(text)
    copied = snapshot_from_dir(root)
    assert sorted(copied.entries, key=lambda e: e.name) == sorted(snapshot.entries,
                                                                  key=lambda e: e.name)
    # -T does not depend on the directory order (-r may: which alias names a merged cache)
    assert slabinfo_totals(copied) == _text("slabinfo-T.txt")


def test_size_strings() -> None:
    tool = _Tool(SysfsSnapshot(()))
    assert [tool.store_size(v) for v in (0, 1000, 1001, 1234, 1_000_001, 2_345_678,
                                         1_000_000_001, 38_700_000_000)] == [
        "0", "1000", "1.0K", "1.2K", "1.0M", "2.3M", "1.0G", "38.7G"]
    tool.show_bytes = True
    assert tool.store_size(2_345_678) == "2345678"


def test_workload_report_numbers_are_the_allocators(capsys: pytest.CaptureFixture[str]) -> None:
    slab = workload_allocator(scenario=None, policy="slub", nr_cpus=2, memory=64 << 20, seed=1)
    report = slabinfo_report(snapshot_from_allocator(slab))
    used = {}
    name = ""
    for line in report.splitlines():
        if line.startswith("Slabcache: "):
            name = line.split()[1]
        if line.startswith("SlabObj:"):
            used[name] = int(line.rsplit(":", 1)[1])
    for cache in slab.cache_list():
        shown = cache.sysfs_name if cache.sysfs_name in used else cache.name
        assert used[shown] == cache.stats().objects * cache.object_size
    assert main(["slabinfo", "-T"]) == 0
    totals = capsys.readouterr().out
    assert f"Slabcaches : {len(slab.cache_list()):15d}" in totals


@pytest.mark.parametrize(("argv", "message"), [
    (["-r", "-T"], "-r and -T are two reports"),
    (["--sys-slab", str(REAL)], "--sys-slab needs -r or -T"),
    (["-r", "--sys-slab", "/nonexistent/slab"], "cannot read '/nonexistent/slab'"),
    (["-r", "-N", "0"], "--lines must be 1 or more"),
    (["-T", "--match", "("], "invalid pattern '('"),
])
def test_bad_options_exit_2_with_one_line(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabinfo", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("kmem slabinfo: ") and message in captured.err
    assert captured.err.count("\n") == 1


def test_bad_snapshots_are_one_line_errors(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "snapshot.json"
    broken.write_text(json.dumps({"entries": [["x", None]]}))
    assert main(["slabinfo", "-T", "--sys-slab", str(broken)]) == 2
    assert "not a /sys/kernel/slab snapshot" in capsys.readouterr().err
    dangling = SysfsSnapshot((SysfsEntry("dentry_alias", link="../dentry"),))
    with pytest.raises(InvalidArgumentError, match="unresolved alias dentry_alias -> dentry"):
        slabinfo_report(dangling)
