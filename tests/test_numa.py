"""Several NUMA nodes under the slab allocator (kmem.slab.numa): the layout, where slab pages
come from, per-node partial lists and barns, remote frees, *_alloc_node, check(), bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kmem import (
    __GFP_THISNODE,
    NUMA_NO_NODE,
    BuddyAllocator,
    InvalidArgumentError,
    InvalidNodeError,
    InvalidTypeError,
    KmemError,
    NodeLayoutError,
    OutOfMemoryError,
    SlabAllocator,
)
from kmem.page.gfp import GFP_KERNEL
from kmem.slab.slub import SlubCache
from kmem.slab.slub_sheaves import PercpuSheavesCache
from test_slab import slab_snapshot

MB = 1 << 20


def numa(kernel: str = "6.18", nr_cpus: int = 4, nr_nodes: int = 2, size: int = 64 * MB,
         **kwargs: Any) -> SlabAllocator:
    return SlabAllocator(BuddyAllocator(size), nr_cpus=nr_cpus, nr_nodes=nr_nodes,
                         kernel=kernel, **kwargs)


def node_of(slab: SlabAllocator, address: int) -> int:
    cache = slab.cache_of(address)
    assert cache is not None
    return cache._slab_of_pfn[address >> 12].node


# -- the layout ---------------------------------------------------------------------------------


def test_one_node_is_the_default_and_changes_nothing() -> None:
    slab = SlabAllocator(BuddyAllocator(64 * MB), nr_cpus=2)
    assert slab.nr_nodes == 1 and slab.numa is None
    cache = slab.kmem_cache_create("x", 128)
    address = cache.alloc(0)
    assert cache.alloc_node(0, GFP_KERNEL, 0) != address  # node 0 is every slab's node
    assert cache.alloc_node(1, GFP_KERNEL, NUMA_NO_NODE)
    assert slab.kmalloc_node(100, node=0) and slab.kmalloc_node(100, node=-1)


@pytest.mark.parametrize(("nr_cpus", "nr_nodes", "cpu_node"), [
    (4, 2, [0, 0, 1, 1]), (3, 2, [0, 0, 1]), (4, 4, [0, 1, 2, 3]), (6, 4, [0, 0, 1, 2, 2, 3]),
])
def test_cpus_are_on_nodes_in_contiguous_runs(nr_cpus: int, nr_nodes: int,
                                              cpu_node: list[int]) -> None:
    slab = numa(nr_cpus=nr_cpus, nr_nodes=nr_nodes)
    assert slab.numa is not None and slab.numa.cpu_node == cpu_node
    assert slab.numa.node_pages == slab.buddy.nr_pages // nr_nodes


@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
def test_a_cpu_gets_slabs_of_its_node_and_node_asks_for_another(kernel: str) -> None:
    slab = numa(kernel)
    cache = slab.kmem_cache_create("x", 512)
    assert slab.numa is not None
    for cpu in range(4):
        address = cache.alloc(cpu)
        assert node_of(slab, address) == slab.numa.cpu_node[cpu]
        assert (address >> 12) // slab.numa.node_pages == slab.numa.cpu_node[cpu]
    for node in (0, 1):
        for cpu in range(4):
            address = cache.alloc_node(cpu, GFP_KERNEL | __GFP_THISNODE, node)
            assert node_of(slab, address) == node
            assert node_of(slab, slab.kmem_cache_alloc_node(cache, GFP_KERNEL, node, cpu)) == node
            assert node_of(slab, slab.kmalloc_node(300, GFP_KERNEL, node, cpu)) == node
            large = slab.kmalloc_node(20000, GFP_KERNEL, node, cpu)
            assert (large >> 12) // slab.numa.node_pages == node
    slab.check()


def test_a_full_node_falls_back_to_the_other_unless_thisnode() -> None:
    slab = numa("6.17", size=8 * MB)  # two nodes of 1024 pages
    cache = slab.kmem_cache_create("x", 4096)
    assert slab.numa is not None
    objects = []
    while True:  # fill node 0 from cpu 0
        address = cache.alloc(0)
        objects.append(address)
        if node_of(slab, address) == 1:
            break  # node 0 is full: the new slab came from node 1 (the zonelist's next)
    assert sum(node_of(slab, a) == 0 for a in objects) > 100
    start = len(objects)
    with pytest.raises(OutOfMemoryError):
        while True:  # node 0 is full: __GFP_THISNODE cannot go elsewhere
            objects.append(cache.alloc_node(1, GFP_KERNEL | __GFP_THISNODE, 0))
    assert all(node_of(slab, a) == 0 for a in objects[start:])
    assert node_of(slab, cache.alloc_node(1, GFP_KERNEL, 0)) == 1  # a preference: fallback
    slab.check()


# -- remote frees -------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["6.18", "7.0"])
def test_a_remote_free_bypasses_the_sheaves(kernel: str) -> None:
    slab = numa(kernel)
    cache = slab.kmem_cache_create("x", 256, sheaf_capacity=32)
    assert isinstance(cache, PercpuSheavesCache)
    local = cache.alloc(0)  # node 0's, from cpu 0's sheaf
    remote = cache.alloc(2)  # node 1's
    assert node_of(slab, local) == 0 and node_of(slab, remote) == 1
    main = list(cache._main[0])
    sheaf_frees = cache._pcs[1]
    cache.free(remote, 0)  # cpu 0 is on node 0: to the slab, not to cpu 0's sheaf
    assert list(cache._main[0]) == main and cache._pcs[1] == sheaf_frees
    cache.free(local, 0)
    assert list(cache._main[0]) == [*main, local] and cache._pcs[1] == sheaf_frees + 1
    slab.check()


def test_a_remote_kfree_rcu_waits_on_its_own() -> None:
    slab = numa("6.18")
    cache = slab.kmem_cache_create("x", 256, sheaf_capacity=4)
    assert isinstance(cache, PercpuSheavesCache)
    remote = cache.alloc(3)
    slab.kfree_rcu(remote, 0)
    assert cache._rcu_free[0] is None  # not batched into cpu 0's rcu_free sheaf
    slab.synchronize_rcu()
    assert not cache.owns(remote)
    slab.check()


def test_617_a_remote_free_of_a_full_slab_joins_the_freeing_cpus_partial_stack() -> None:
    """do_slab_free does not look at nodes in 6.17: __slab_free freezes a full slab onto the
    freeing CPU's partial stack whatever its node; draining it sends it to its own node."""
    slab = numa("6.17")
    cache = slab.kmem_cache_create("x", 4096)
    assert isinstance(cache, SlubCache)
    objects = [cache.alloc(2) for _ in range(2 * cache.objs_per_slab)]  # node 1's slabs
    first = cache._slab_of_pfn[objects[0] >> 12]
    assert first.node == 1 and not first.freelist  # full, no longer cpu 2's cpu slab
    cache.free(objects[0], 0)
    assert cache._cpu_partial[0] == [first]
    cache.flush_cpu(0)
    assert first in cache._nodes[1] and first not in cache._nodes[0]
    slab.check()


@pytest.mark.parametrize("kernel", ["6.18", "7.0"])
def test_every_node_has_its_barn(kernel: str) -> None:
    slab = numa(kernel, nr_nodes=4, nr_cpus=4)
    cache = slab.kmem_cache_create("x", 256, sheaf_capacity=8)
    assert isinstance(cache, PercpuSheavesCache)
    assert len(cache._barns) == 4 and cache._barns[0] is cache._barn
    assert slab.numa is not None
    for node, barn in enumerate(cache._barns):  # kmalloc_node'd on its node
        assert (barn.address >> 12) // slab.numa.node_pages == node
    per_cpu = 4 * cache.sheaf_capacity
    objects = [cache.alloc(cpu) for cpu in range(4) for _ in range(per_cpu)]
    for i, address in enumerate(objects):
        cache.free(address, i // per_cpu)  # each on its own CPU: into that node's barn
    assert all(barn.full or barn.empty for barn in cache._barns)
    slab.check()
    slab.kmem_cache_destroy(cache)
    slab.check()


# -- check() --------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["6.17", "7.0"])
def test_check_finds_a_slab_on_another_nodes_list(kernel: str) -> None:
    slab = numa(kernel)
    cache = slab.kmem_cache_create("x", 256)
    objects = [cache.alloc(2) for _ in range(100)]
    for address in objects[::2]:
        cache.free(address, 2)
    cache.shrink()  # (every cpu slab and sheaf flushed to the node lists)
    nodes = cache._nodes  # type: ignore[attr-defined]
    assert nodes[1] and not nodes[0]
    moved, _ = nodes[1].popitem(last=False)
    nodes[0][moved] = None
    with pytest.raises(AssertionError, match="is on node 0's partial list"):
        slab.check()


def test_check_finds_a_slab_whose_node_is_not_its_pages() -> None:
    slab = numa("6.17")
    cache = slab.kmem_cache_create("x", 256)
    address = cache.alloc(0)
    cache._slab_of_pfn[address >> 12].node = 1
    with pytest.raises(AssertionError, match="says node 1, its pages are on node 0"):
        slab.check()


def test_check_finds_a_missing_barn() -> None:
    slab = numa("6.18")
    cache = slab.kmem_cache_create("x", 256, sheaf_capacity=8)
    assert isinstance(cache, PercpuSheavesCache)
    cache._barns.pop()
    with pytest.raises(AssertionError, match="1 barns for 2 nodes"):
        slab.check()


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("nr_nodes", "error", "message"), [
    (0, NodeLayoutError, "nr_nodes must be at least 1, got 0"),
    (-1, NodeLayoutError, "nr_nodes must be at least 1, got -1"),
    (True, InvalidTypeError, "nr_nodes must be an int, not bool"),
    (1.5, InvalidTypeError, "nr_nodes must be an int, not float"),
    ("2", InvalidTypeError, "nr_nodes must be an int, not str"),
    (5, NodeLayoutError, "nr_nodes 5 is more than the 4 CPUs: every node needs a CPU"),
    (3, NodeLayoutError, "16384 pages do not split into 3 nodes of whole order-10 blocks"),
])
def test_bad_node_counts_are_refused(nr_nodes: Any, error: type[Exception],
                                     message: str) -> None:
    buddy = BuddyAllocator(64 * MB)
    before = buddy.stats()
    with pytest.raises(error, match=message):
        SlabAllocator(buddy, nr_cpus=4, nr_nodes=nr_nodes)
    assert buddy.stats() == before  # nothing was allocated


def test_more_nodes_than_memory_allows() -> None:
    with pytest.raises(NodeLayoutError, match="each node needs a multiple of 1024 pages"):
        SlabAllocator(BuddyAllocator(4 * MB), nr_cpus=4, nr_nodes=2)  # 512 pages a node
    SlabAllocator(BuddyAllocator(4 * MB, max_order=8), nr_cpus=4, nr_nodes=4)  # 256 each


def test_nodes_are_refused_where_one_node_is_modelled() -> None:
    from kmem.page.machine import PageMachine

    with pytest.raises(NodeLayoutError, match="the slab policy models one node only"):
        SlabAllocator(BuddyAllocator(64 * MB), nr_cpus=4, nr_nodes=2, policy="slab")
    machine = object.__new__(PageMachine)  # (refused before the machine is looked at)
    with pytest.raises(NodeLayoutError, match=r"a page machine .* models one node only"):
        SlabAllocator(BuddyAllocator(64 * MB), nr_cpus=4, nr_nodes=2, machine=machine)


@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
@pytest.mark.parametrize(("node", "error", "message"), [
    (5, InvalidNodeError, r"node 5 is not NUMA_NO_NODE \(-1\) nor in 0..1"),
    (2, InvalidNodeError, r"node 2 is not NUMA_NO_NODE \(-1\) nor in 0..1"),
    (-2, InvalidNodeError, r"node -2 is not NUMA_NO_NODE \(-1\) nor in 0..1"),
    (True, InvalidTypeError, "node must be an int, not bool"),
    (1.0, InvalidTypeError, "node must be an int, not float"),
    (None, InvalidTypeError, "node must be an int, not NoneType"),
])
def test_bad_nodes_are_refused_with_nothing_changed(kernel: str, node: Any,
                                                    error: type[Exception],
                                                    message: str) -> None:
    slab = numa(kernel)
    cache = slab.kmem_cache_create("x", 256)
    cache.alloc(0)
    before = slab_snapshot(slab)
    calls: list[Callable[[], object]] = [
             lambda: cache.alloc_node(0, GFP_KERNEL, node),
             lambda: slab.kmem_cache_alloc_node(cache, GFP_KERNEL, node),
             lambda: slab.kmalloc_node(100, GFP_KERNEL, node),
             lambda: slab.kmalloc_node(20000, GFP_KERNEL, node)]
    for call in calls:
        with pytest.raises(error, match=message):
            call()
        assert slab_snapshot(slab) == before
    slab.check()


def test_one_node_refuses_node_1() -> None:
    slab = SlabAllocator(BuddyAllocator(64 * MB), nr_cpus=2)
    cache = slab.kmem_cache_create("x", 256)
    before = slab_snapshot(slab)
    with pytest.raises(InvalidNodeError, match=r"node 1 is not NUMA_NO_NODE \(-1\) nor 0"):
        cache.alloc_node(0, GFP_KERNEL, 1)
    with pytest.raises(InvalidNodeError, match="one node"):
        slab.kmalloc_node(64, GFP_KERNEL, 1)
    assert slab_snapshot(slab) == before


def test_node_of_an_address() -> None:
    slab = numa("6.17")
    assert slab.node_of(0) == 0 and slab.node_of((64 * MB) - 1) == 1
    assert slab.node_of(32 * MB) == 1 and slab.node_of(32 * MB - 1) == 0
    assert SlabAllocator(BuddyAllocator(64 * MB), nr_cpus=2).node_of(40 * MB) == 0
    with pytest.raises(InvalidTypeError, match="address must be an int, not bool"):
        slab.node_of(True)
    with pytest.raises(InvalidArgumentError, match="address 0x4000000 is not in the memory"):
        slab.node_of(64 * MB)


@pytest.mark.parametrize(("args", "error"), [
    ((True, GFP_KERNEL, 1, 0), "size must be an int, not bool"),
    ((-1, GFP_KERNEL, 1, 0), "kmalloc size must be >= 0, got -1"),
    ((64, 2**40, 1, 0), "gfp flags must be in"),
    ((64, GFP_KERNEL, 1, 9), "cpu 9 is not in 0..3"),
    ((64, GFP_KERNEL, 1, True), "cpu must be an int, not bool"),
])
def test_kmalloc_node_checks_what_kmalloc_checks(args: tuple[Any, ...], error: str) -> None:
    slab = numa("7.0")
    before = slab_snapshot(slab)
    with pytest.raises(KmemError, match=error) as raised:
        slab.kmalloc_node(*args)
    with pytest.raises(type(raised.value), match=error):  # kmalloc: the same error
        slab.kmalloc(args[0], args[1], args[3])
    assert slab_snapshot(slab) == before


def test_kmalloc_node_of_zero_and_of_families() -> None:
    from kmem import __GFP_ACCOUNT, __GFP_ZERO

    slab = numa("6.18", random_kmalloc_seed=5)
    assert slab.kmalloc_node(0, GFP_KERNEL, 1) == slab.zero_size_ptr
    address = slab.kmalloc_node(100, GFP_KERNEL | __GFP_ZERO | __GFP_ACCOUNT, 1, cpu=0)
    cache = slab.cache_of(address)
    assert cache is not None and cache.name == "kmalloc-cg-128" and slab.node_of(address) == 1
    assert bytes(cache.view(address)) == bytes(cache.object_size)
    copy = slab.kmalloc_node(100, GFP_KERNEL, 1, cpu=0, caller=0x1234)
    assert slab.node_of(copy) == 1 and slab.cache_of(copy) is slab.kmalloc_cache_for(
        100, GFP_KERNEL, 0x1234)
    assert slab.kmalloc_cache_for(100, GFP_KERNEL | __GFP_ACCOUNT) is cache
    assert cache.kmalloc_requests()[0] == 1  # counted as kmalloc counts it
    slab.check()


def test_debug_caches_follow_the_nodes_too() -> None:
    from kmem import SLAB_RED_ZONE

    slab = numa("6.17")
    cache = slab.kmem_cache_create("dbg", 200, flags=SLAB_RED_ZONE)
    objects = [cache.alloc_node(0, GFP_KERNEL | __GFP_THISNODE, 1) for _ in range(50)]
    assert {slab.node_of(a) for a in objects} == {1}
    assert slab.node_of(cache.alloc(3)) == 1 and slab.node_of(cache.alloc(0)) == 0
    for address in objects:
        cache.free(address, 0)
    slab.check()


def test_enable_sheaves_out_of_memory_frees_every_barn() -> None:
    from kmem.slab.sheaves import SheafHost

    slab = numa("6.18")
    host = slab._sheaf_host
    calls: list[int] = []

    def kzalloc_node(size: int, gfp: int, node: int, cpu: int, caller: int) -> int:
        if calls:
            raise OutOfMemoryError("the second barn")
        calls.append(node)
        return host.kzalloc_node(size, gfp, node, cpu, caller)

    slab._sheaf_host = SheafHost(host.kzalloc, host.kfree, host.call_rcu, kzalloc_node)
    before = slab.buddy.stats().allocations
    with pytest.raises(OutOfMemoryError):
        slab.kmem_cache_create("x", 256, sheaf_capacity=8)
    assert "x" not in slab.caches and calls == [0]
    assert slab.buddy.stats().allocations >= before
    slab.check()


class _ReserveBuddy(BuddyAllocator):
    """Pages from the memory reserves while ``reserves`` is set: pfmemalloc slabs."""

    reserves = False

    def page_is_pfmemalloc(self, pfn: int) -> bool:
        return self.reserves


@pytest.mark.parametrize(("kernel", "flags"), [("6.17", 0), ("6.17", 1), ("7.0", 0)])
def test_pfmemalloc_slabs_on_nodes_are_passed_over_without_the_rights(kernel: str,
                                                                       flags: int) -> None:
    from kmem import SLAB_RED_ZONE

    buddy = _ReserveBuddy(64 * MB)
    slab = SlabAllocator(buddy, nr_cpus=4, nr_nodes=2, kernel=kernel)
    cache = slab.kmem_cache_create("x", 512, flags=SLAB_RED_ZONE if flags else 0)
    buddy.reserves = True
    reserve = [cache.alloc_node(0, GFP_KERNEL | __GFP_THISNODE, 1) for _ in range(40)]
    buddy.reserves = False
    for address in reserve[::2]:
        cache.free(address, 2)
    if isinstance(cache, SlubCache) and not flags:
        cache.flush_cpu(2)
        cache.flush_cpu(0)
    fresh = [cache.alloc_node(2, GFP_KERNEL, 1) for _ in range(10)]
    assert not any(cache._slab_of_pfn[a >> 12].pfmemalloc for a in fresh)
    slab.check()


def test_thisnode_on_an_empty_node_list_makes_a_slab_there() -> None:
    slab = numa("6.17")
    cache = slab.kmem_cache_create("x", 512)
    cache.alloc(0)
    address = cache.alloc_node(0, GFP_KERNEL | __GFP_THISNODE, 1)
    assert slab.node_of(address) == 1 and cache.stats().alloc_node_mismatch == 1
    slab.check()


def test_alloc_pages_in_takes_a_block_of_the_first_range_that_has_one() -> None:
    buddy = BuddyAllocator(64 * 4096, max_order=3)  # 8 blocks of 8 pages
    assert buddy.alloc_pages_in(0, [(32, 64)]) == 32  # split there, not at pfn 0
    assert buddy.alloc_pages_in(3, [(32, 40), (8, 16)]) == 8  # 32..39 is split: the next
    failures = buddy.stats().failures
    before = buddy.free_blocks(0), buddy.nr_free
    with pytest.raises(OutOfMemoryError):
        buddy.alloc_pages_in(3, [(32, 40)])
    assert buddy.stats().failures == failures + 1 and (buddy.free_blocks(0),
                                                       buddy.nr_free) == before
    for ranges, error, message in [
        ([(0, 65)], InvalidArgumentError, "range 0..65 is not inside pfns 0..64"),
        ([(9, 8)], InvalidArgumentError, "range 9..8 is not inside"),
        ((1, 2), InvalidTypeError, "a range must be a"),
        ("ab", InvalidTypeError, "ranges must be a list"),
        ([(0.5, 8)], InvalidTypeError, "range start must be an int"),
    ]:
        with pytest.raises(error, match=message):
            buddy.alloc_pages_in(0, ranges)  # type: ignore[arg-type]
    buddy.check()
