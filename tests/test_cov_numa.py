"""The paths of several NUMA nodes that nothing else reached (issue #18's coverage; the order
fallback and the RCU grace period on two nodes are tests/test_mutants_cache.py's): a node's slab
failing at the minimum order, a failing constructor on a node's slab, *_alloc_node's cpu and
destroyed-cache checks, check()'s node lists and barns; and a perf.data feature section past
the end of the file, the recorder's guards when the command or the output goes away after they
were checked."""

from __future__ import annotations

import enum
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kmem import BuddyAllocator, KmemError, OutOfMemoryError, SlabAllocator
from kmem.page.gfp import GFP_KERNEL
from kmem.slab.slub_sheaves import PercpuSheavesCache
from test_mutants_cache import alloc_until_out_of_memory
from test_slab import slab_snapshot

MB = 1 << 20


def numa(kernel: str = "6.18", size: int = 8 * MB, nr_cpus: int = 4) -> SlabAllocator:
    """Two nodes (of 1024 pages each at 8 MB), cpus 0-1 on node 0 and 2-3 on node 1."""
    return SlabAllocator(BuddyAllocator(size), nr_cpus=nr_cpus, nr_nodes=2, kernel=kernel)


def node_of(slab: SlabAllocator, address: int) -> int:
    cache = slab.cache_of(address)
    assert cache is not None
    return cache._slab_of_pfn[address >> 12].node


@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
def test_a_nodes_slab_at_its_minimum_order_fails_with_nothing_changed(kernel: str) -> None:
    slab = numa(kernel)
    cache = slab.kmem_cache_create("small", 256)  # order 0: no smaller order to fall back to
    assert cache.order == cache.min_order == 0
    alloc_until_out_of_memory(lambda: slab.buddy.alloc_pages(0))
    before = slab_snapshot(slab)
    with pytest.raises(OutOfMemoryError):
        cache.alloc(2)
    after = slab_snapshot(slab)  # (the counters count the slow path tried)
    assert after[:4] == before[:4] and after[5:] == before[5:]
    assert [c[:3] for c in after[4]] == [c[:3] for c in before[4]]
    slab.check()


def test_a_failing_constructor_on_a_node_leaves_nothing_behind() -> None:
    calls = []

    def ctor(view: memoryview) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("ctor failed")

    slab = numa("6.17")
    cache = slab.kmem_cache_create("fragile", 100, ctor=ctor)
    before = slab_snapshot(slab)
    with pytest.raises(RuntimeError, match="ctor failed"):
        cache.alloc(2)
    # pages, owners, slabs and lists are as before (the counters may differ), and the free
    # lists hold the same blocks: the block given back goes to its list's head, as
    # __free_one_page puts it, where node 1's came second
    after = slab_snapshot(slab)
    assert after[:3] == before[:3]
    assert [sorted(blocks) for blocks in after[3]] == [sorted(blocks) for blocks in before[3]]
    slab.check()


class Cpu(enum.IntEnum):
    ZERO = 0
    THREE = 3


@pytest.mark.parametrize(("kernel", "capacity"), [("6.17", None), ("6.18", 8), ("7.0", None)])
def test_alloc_node_checks_the_cpu_and_the_cache_as_alloc_does(kernel: str,
                                                                capacity: int | None) -> None:
    slab = numa(kernel)
    options: dict[str, Any] = {} if capacity is None else {"sheaf_capacity": capacity}
    cache = slab.kmem_cache_create("x", 256, **options)
    assert isinstance(cache, PercpuSheavesCache) == (capacity is not None or kernel == "7.0")
    # An IntEnum names the cpu of its value, as alloc takes it.
    assert node_of(slab, cache.alloc_node(Cpu.THREE, GFP_KERNEL, 0)) == 0
    assert node_of(slab, cache.alloc_node(Cpu.ZERO, GFP_KERNEL, 1)) == 1
    before = slab_snapshot(slab)
    bad_cpus: list[Any] = [4, -1, True, 1.0, "0", None]
    for cpu in bad_cpus:
        with pytest.raises(KmemError) as by_alloc:
            cache.alloc(cpu)
        with pytest.raises(type(by_alloc.value)) as by_alloc_node:
            cache.alloc_node(cpu, GFP_KERNEL, 1)
        assert str(by_alloc_node.value) == str(by_alloc.value)
        assert slab_snapshot(slab) == before
    slab.check()
    for address in [a.address for a in cache.live_objects()]:
        cache.free(address, 0)
    slab.kmem_cache_destroy(cache)
    calls: list[Callable[[], object]] = [lambda: cache.alloc(0),
                                         lambda: cache.alloc_node(0, GFP_KERNEL, 1)]
    messages = []
    for call in calls:
        with pytest.raises(KmemError) as destroyed:
            call()
        messages.append((type(destroyed.value), str(destroyed.value)))
    assert messages[0] == messages[1] and "was destroyed" in messages[0][1]


def test_check_finds_node_lists_missing() -> None:
    slab = numa("6.17")
    cache = slab.kmem_cache_create("x", 256)
    cache.alloc(0)
    cache._nodes.pop()  # type: ignore[attr-defined]
    with pytest.raises(AssertionError, match="1 node lists for 2 nodes"):
        slab.check()


def test_check_finds_node_barns_on_a_cache_without_sheaves() -> None:
    slab = numa("7.0")
    cache = slab.kmem_cache_create("x", 256)
    assert isinstance(cache, PercpuSheavesCache) and len(cache._barns) == 2
    # a cache without sheaves (as before enable_sheaves) that kept its nodes' barns
    cache._barn = None
    cache._main = dict.fromkeys(cache._main, cache._bootstrap)
    with pytest.raises(AssertionError, match="node barns without sheaves"):
        slab.check()


# -- the trace layer ------------------------------------------------------------------------


def test_a_perf_data_feature_section_past_the_end_is_one_clear_error(tmp_path: Path) -> None:
    from kmem.trace.perf_data import PerfData, PerfDataError
    from test_perf_data import HERE, _unxz

    raw = bytearray(_unxz(HERE / "lost-cat.data.xz"))
    data_offset, data_size, _, _, features = struct.unpack_from("<QQQQ32s", raw, 40)
    bits = int.from_bytes(features, "little")
    assert bits, "the fixture has feature sections"
    first = (bits & -bits).bit_length() - 1
    table = data_offset + data_size  # the first set bit's (offset, size)
    offset, _ = struct.unpack_from("<QQ", raw, table)
    struct.pack_into("<QQ", raw, table, offset, len(raw))  # ends past the file
    path = tmp_path / "feature.data"
    path.write_bytes(bytes(raw))
    with pytest.raises(PerfDataError, match=rf"perf.data truncated \(feature {first}\)"):
        PerfData.open(path)


def _tracefs() -> Path | None:
    from kmem.trace.record import find_tracefs

    root = find_tracefs()
    return root if root is not None and (root / "events" / "kmem").is_dir() else None


def _instances(root: Path) -> set[str]:
    return {p.name for p in (root / "instances").iterdir()}


needs_tracefs = pytest.mark.skipif(
    os.geteuid() != 0 or _tracefs() is None, reason="needs root and tracefs's kmem events")


@needs_tracefs
def test_an_output_gone_unwritable_after_its_check_leaves_no_instance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # (the race _check_output cannot close: the folder goes away between the check and the
    # open, after the tracefs instance was made)
    from kmem.trace import record

    root = _tracefs()
    assert root is not None
    before = _instances(root)
    monkeypatch.setattr(record, "_check_output", lambda output: None)
    output = tmp_path / "gone" / "out.txt"
    with pytest.raises(record.RecordError, match=r"cannot write .*out.txt.*No such file"):
        record.record_tracefs([sys.executable, "-c", "pass"], output)
    assert _instances(root) == before
    assert not output.parent.exists()


@needs_tracefs
def test_a_command_gone_after_its_check_leaves_no_instance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kmem.trace import record

    root = _tracefs()
    assert root is not None
    before = _instances(root)
    monkeypatch.setattr(record, "_check_command", lambda command: None)
    output = tmp_path / "out.txt"
    with pytest.raises(record.RecordError, match="cannot run '/nonexistent/cmd'"):
        record.record_tracefs(["/nonexistent/cmd"], output)
    assert _instances(root) == before
