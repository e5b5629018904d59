"""Reports: /proc/slabinfo text as Linux prints it, slabtop numbers, counters, fragmentation,
and the slabinfo / slabtop commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmem import BuddyAllocator, SlabAllocator, SlabInfo
from kmem.cli.main import main
from kmem.slab.report import (
    format_slabinfo,
    fragmentation_rows,
    slabtop_row,
    slabtop_rows,
    sysfs_attributes,
)
from kmem.slab.slub import SlubCache

SAMPLE = Path(__file__).parent / "fixtures" / "proc_slabinfo_6.18_sample.txt"


def _parse(line: str) -> SlabInfo:
    name, rest = line.split(None, 1)
    head, tunables, slabdata = rest.split(" : ")
    n = [int(x) for x in head.split()]
    t = [int(x) for x in tunables.split()[1:]]
    d = [int(x) for x in slabdata.split()[1:]]
    return SlabInfo(name, n[0], n[1], n[2], n[3], n[4], t[0], t[1], t[2], d[0], d[1], d[2])


def test_slabinfo_text_is_byte_for_byte_linux() -> None:
    """Lines recorded from a real /proc/slabinfo, parsed and printed again, are identical
    (long names push the columns right, as the kernel's %-17s does)."""
    text = SAMPLE.read_text()
    lines = text.splitlines(keepends=True)
    rows = [_parse(line) for line in lines[2:]]
    assert format_slabinfo(rows) == text


def test_slabinfo_counts_slub_active_objects_as_linux() -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=2)
    cache = slab.kmem_cache_create("c", 256)  # 16 objects per order-0 slab
    objs = [cache.alloc() for _ in range(40)]  # 3 slabs: two full, the cpu slab has 8 free
    line = next(x for x in slab.slabinfo().splitlines() if x.startswith("c "))
    info = _parse(line)
    # the cpu slab counts as fully active under SLUB
    assert (info.active_objs, info.num_objs, info.num_slabs, info.active_slabs) == (48, 48, 3, 3)
    assert isinstance(cache, SlubCache)
    cache.flush_cpu(0)  # the cpu slab goes to the node partial list: its free objects show
    info = _parse(next(x for x in slab.slabinfo().splitlines() if x.startswith("c ")))
    assert (info.active_objs, info.num_objs) == (40, 48)
    del objs


def test_slabtop_numbers() -> None:
    info = SlabInfo("x", 30, 40, 192, 21, 1, 0, 0, 0, 2, 2, 0)
    row = slabtop_row(info)
    assert (row.objs, row.active, row.use_percent, row.cache_size_kib) == (40, 30, 75, 8)
    assert row.obj_size_kib == pytest.approx(0.1875)


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_fragmentation_rows(policy: str) -> None:
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=2, policy=policy)
    for _ in range(3):
        slab.kmalloc(70)
    slab.kmalloc(10000)
    rows = {row.name: row for row in fragmentation_rows(slab)}
    k96 = rows["kmalloc-96"]
    assert (k96.bytes_requested, k96.bytes_allocated, k96.used_slots) == (210, 288, 3)
    assert k96.slots == 42 and k96.slab_bytes == 4096
    large = rows["kmalloc_large"]
    assert (large.bytes_requested, large.bytes_allocated) == (10000, 16384)
    tops = slabtop_rows(slab)
    assert [row.name for row in tops] == ["kmalloc-96"]


def test_slabinfo_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabinfo", "--active", "--policy", "slab"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "slabinfo - version: 2.1"
    names = [line.split()[0] for line in lines[2:]]
    assert names[:2] == ["pcb", "tcb"]  # newest first
    assert "kmalloc-64" in names
    for line in lines[2:]:
        assert _parse(line).num_slabs > 0


def test_slabinfo_command_runs_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabinfo", "--active", "--scenario", "seed"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "slabinfo - version: 2.1"


def test_slabtop_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabtop", "--limit", "5", "--sort", "cache"]) == 0
    out = capsys.readouterr().out
    assert "Active / Total Objects" in out
    assert "slab counters" in out and "internal fragmentation" in out
    assert "tcb" in out or "pcb" in out
    assert ":0000192: dentry_like <- sock_inode" in out


def test_sysfs_attributes_of_kmalloc_caches_match_the_real_machine() -> None:
    import json

    fixture = Path(__file__).parent / "fixtures" / "sys_kernel_slab_6.18_2cpu.json"
    real = {c["name"]: c for c in json.loads(fixture.read_text())["caches"]}
    slab = SlabAllocator(BuddyAllocator(16 << 20), nr_cpus=2)
    for cache in slab.cache_list():
        attributes = sysfs_attributes(cache)
        want = real[cache.name]
        for key in ("object_size", "slab_size", "align", "objs_per_slab", "order",
                    "min_partial", "cpu_partial", "usersize", "red_zone", "poison",
                    "store_user", "reclaim_account", "hwcache_align", "cache_dma",
                    "destroy_by_rcu"):
            assert attributes[key] == int(want[key]), (cache.name, key)
        assert attributes["aliases"] == len(want["aliases"]) == 0


def test_slabinfo_cache_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabinfo", "--cache", "pcb"]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    assert (lines["object_size"], lines["slab_size"], lines["order"]) == ("7168", "7168", "3")
    assert int(lines["objects"]) == 20 - len(range(0, 20, 3))  # the workload frees every third
    assert main(["slabinfo", "--cache", "no-such-cache"]) == 2
