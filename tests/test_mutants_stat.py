"""kmem stat's rules on small hand-made traces: what the mutation run of kmem.trace.stat found
untested (tools/mutants.py).

The expected numbers are worked out here from perf kmem's definitions (tools/perf/builtin-kmem.c,
summarised in kmem.trace.stat's docstring), never read back from the module under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from kmem.errors import InvalidArgumentError
from kmem.page.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_KERNEL_ACCOUNT
from kmem.trace.events import (
    KFREE,
    KMALLOC,
    KMALLOC_NODE,
    KMEM_CACHE_ALLOC,
    KMEM_CACHE_FREE,
    MM_PAGE_ALLOC,
    MM_PAGE_FREE,
)
from kmem.trace.stat import KmemStat, perf_call_site

Event = tuple[Any, ...]


def slab_alloc(cpu: int, ptr: str, req: int, alloc: int, site: str = "f+0x1/0x9", *,
               kind: int = KMALLOC, name: str = "", gfp: str = "GFP_KERNEL",
               node: int = -1) -> Event:
    return (kind, cpu, "1.000000:", site, ptr, name, req, alloc, gfp, node, -1, -1, -1)


def slab_free(cpu: int, ptr: str, kind: int = KFREE) -> Event:
    return (kind, cpu, "1.000000:", "g+0x2/0x9", ptr, "", 0, 0, "", -1, -1, -1, -1)


def page_alloc(pfn: int, order: int, mt: int = 0, gfp: str = "GFP_KERNEL",
               site: str = "") -> Event:
    return (MM_PAGE_ALLOC, 0, "1.000000:", site, "", "", 0, 0, gfp, -1, pfn, order, mt)


def page_free(pfn: int, order: int) -> Event:
    return (MM_PAGE_FREE, 0, "1.000000:", "", "", "", 0, 0, "", -1, pfn, order, -1)


# -- slab ----------------------------------------------------------------------------------------


def test_cross_cpu_allocations_compare_the_node_with_the_cpus_node() -> None:
    """perf counts an allocation cross-CPU when its node is set (not -1) and is not the node
    of the CPU that allocated."""
    stat = KmemStat(cpu_node=lambda cpu: cpu // 2)  # CPUs 0, 1 on node 0; 2, 3 on node 1
    stat.add([slab_alloc(0, "10", 8, 8, node=-1), slab_alloc(3, "20", 8, 8, node=-1),
              slab_alloc(1, "30", 8, 8, kind=KMALLOC_NODE, node=0),
              slab_alloc(2, "40", 8, 8, kind=KMALLOC_NODE, node=1),
              slab_alloc(1, "50", 8, 8, kind=KMALLOC_NODE, node=1),
              slab_alloc(3, "60", 8, 8, kind=KMALLOC_NODE, node=0),
              slab_alloc(3, "70", 8, 8, kind=KMALLOC_NODE, node=0)])
    summary = stat.slab_summary()
    assert (summary.nr_cross_allocs, summary.nr_allocs) == (3, 7)
    default = KmemStat()  # every CPU on node 0
    default.add([slab_alloc(5, "10", 8, 8, node=0), slab_alloc(5, "20", 8, 8, node=1)])
    assert default.slab_summary().nr_cross_allocs == 1


def test_unknown_frees_are_counted_apart_and_change_nothing() -> None:
    stat = KmemStat()
    assert stat.unknown_frees == 0
    stat.add([slab_alloc(0, "10", 24, 32), slab_free(1, "99"), slab_free(0, "98", KMEM_CACHE_FREE)])
    summary = stat.slab_summary()
    assert stat.unknown_frees == 2
    assert (summary.total_freed, summary.nr_allocs) == (0, 1)
    assert [r.pingpong for r in summary.callers] == [0]


def test_rows_remember_the_latest_call_site_cpu_and_size() -> None:
    stat = KmemStat()
    stat.add([slab_alloc(0, "10", 20, 32, "a+0x1/0x9"), slab_free(0, "10"),
              slab_alloc(1, "10", 100, 128, "b+0x2/0x9"), slab_free(0, "10"),
              slab_alloc(0, "20", 8, 8, "a+0x1/0x9")])
    summary = stat.slab_summary(alloc_sort="ptr")
    ten, twenty = sorted(summary.allocs, key=lambda r: r.ptr)
    assert (ten.key, ten.ptr, ten.call_site) == ("0x10", 0x10, "b+2")
    assert (ten.hit, ten.bytes_req, ten.bytes_alloc, ten.pingpong) == (2, 120, 160, 1)
    assert (twenty.key, twenty.call_site, twenty.hit) == ("0x20", "a+1", 1)
    # freed: the row's last bytes_alloc each time: 32, then 128
    assert summary.total_freed == 32 + 128
    assert summary.net_allocated == 32 + 128 + 8 - 160
    assert summary.wasted == 168 - 128
    callers = {r.key: (r.hit, r.bytes_req, r.bytes_alloc, r.pingpong, r.ptr, r.call_site)
               for r in summary.callers}
    assert callers == {"a+1": (2, 28, 40, 0, 0, "a+1"), "b+2": (1, 100, 128, 1, 0, "b+2")}


def test_per_cache_rows_name_and_count_each_kind_of_event() -> None:
    stat = KmemStat()
    stat.add([
        slab_alloc(0, "10", 0, 0),  # kmalloc(0): ZERO_SIZE_PTR, no cache
        slab_alloc(0, "20", 10000, 16384),  # above 8 KiB: kmalloc_large
        slab_alloc(0, "30", 70, 96, kind=KMALLOC_NODE, gfp="GFP_KERNEL_ACCOUNT"),
        slab_alloc(0, "40", 70, 96, gfp="GFP_KERNEL|__GFP_RECLAIMABLE"),
        slab_alloc(0, "50", 200, 256, kind=KMEM_CACHE_ALLOC, name="dentry"),
        slab_alloc(0, "60", 200, 256, kind=KMEM_CACHE_ALLOC, name="dentry"),
        slab_alloc(0, "70", 40, 48, kind=KMEM_CACHE_ALLOC),  # before 6.2: no name traced
        slab_alloc(0, "80", 70, 96, name="kmalloc-96"),  # a named event keeps its name
        slab_free(1, "50", KMEM_CACHE_FREE), slab_free(0, "60", KMEM_CACHE_FREE),
        slab_free(1, "30"),
    ])
    rows = {r.key: (r.hit, r.bytes_req, r.bytes_alloc, r.pingpong)
            for r in stat.slab_summary().caches}
    assert rows == {
        "kmalloc-0 (ZERO_SIZE_PTR)": (1, 0, 0, 0),
        "kmalloc-large": (1, 10000, 16384, 0),
        "kmalloc-cg-96": (1, 70, 96, 1),
        "kmalloc-rcl-96": (1, 70, 96, 0),
        "dentry": (2, 400, 512, 1),
        "cache-48": (1, 40, 48, 0),
        "kmalloc-96": (1, 70, 96, 0),
    }
    assert all(r.call_site == r.key and r.ptr == 0 for r in stat.slab_summary().caches)


def _three_sites(site_order: Any = None) -> KmemStat:
    stat = KmemStat(site_order=site_order)
    # b and a tie on every key; c has more hits, the most bytes and the least fragmentation
    stat.add([slab_alloc(0, "100", 8, 16, "b_site+0x1/0x9"),
              slab_alloc(1, "200", 8, 16, "a_site+0x1/0x9"),
              slab_alloc(0, "300", 64, 64, "c_site+0x1/0x9"),
              slab_alloc(0, "400", 64, 64, "c_site+0x1/0x9"),
              slab_free(1, "100")])
    return stat


def test_slab_sort_keys_each_sort_descending() -> None:
    stat = _three_sites()
    keys = {
        "hit": ["c_site+1", "a_site+1", "b_site+1"],  # ties by name (no addresses known)
        "bytes": ["c_site+1", "a_site+1", "b_site+1"],
        "frag": ["a_site+1", "b_site+1", "c_site+1"],  # 50 % before 0 %
        "pingpong": ["b_site+1", "a_site+1", "c_site+1"],
        "callsite": ["c_site+1", "b_site+1", "a_site+1"],
        "frag,hit,bytes": ["a_site+1", "b_site+1", "c_site+1"],
    }
    for key, expected in keys.items():
        assert [r.key for r in stat.slab_summary(key).callers] == expected, key
    pointers = stat.slab_summary("ptr").allocs
    assert [r.ptr for r in pointers] == [0x400, 0x300, 0x200, 0x100]
    # one sort per table: the pointer and cache tables take their own when given
    summary = stat.slab_summary("hit", alloc_sort="ptr", cache_sort="bytes")
    assert [r.key for r in summary.callers] == ["c_site+1", "a_site+1", "b_site+1"]
    assert [r.ptr for r in summary.allocs] == [0x400, 0x300, 0x200, 0x100]
    assert [r.key for r in summary.caches] == ["kmalloc-64", "kmalloc-8"]
    assert [r.ptr for r in stat.slab_summary("ptr", alloc_sort="bytes").allocs][:2] == [
        0x300, 0x400]  # tied on bytes: in pointer order
    with pytest.raises(InvalidArgumentError, match=r"^unknown slab sort key 'page' \(choose"):
        stat.slab_summary(alloc_sort="page")
    with pytest.raises(InvalidArgumentError, match=r"^unknown slab sort key 'order' \(choose"):
        stat.slab_summary(cache_sort="hit,order")


def test_site_addresses_order_ties_and_the_callsite_key_as_perf_does() -> None:
    """With the call sites' addresses known, perf orders by address where kmem otherwise
    orders by name: b_site (0x100) before a_site (0x200) on a tie; callsite sorts by address."""
    addresses = {"b_site+0x1/0x9": 0x100, "a_site+0x1/0x9": 0x200, "c_site+0x1/0x9": 0x50}
    asked: list[str] = []

    def site_order(site: str) -> int:
        asked.append(site)
        return addresses[site]

    stat = _three_sites(site_order)
    assert sorted(asked) == sorted(addresses)  # each traced call site looked up once
    assert [r.key for r in stat.slab_summary("hit").callers] == [
        "c_site+1", "b_site+1", "a_site+1"]
    assert [r.key for r in stat.slab_summary("callsite").callers] == [
        "a_site+1", "b_site+1", "c_site+1"]
    # (c_site's two pointers tie: in pointer order)
    assert [r.ptr for r in stat.slab_summary("callsite").allocs] == [0x200, 0x100, 0x300, 0x400]


def test_call_site_spellings_perf_leaves_alone() -> None:
    assert perf_call_site("foo+bar") == "foo+bar"  # no 0x offset, not hex: as traced
    assert perf_call_site("do_it+0x10") == "do_it+10"
    assert perf_call_site("abc") == "0xabc"  # hex digits alone: an address


# -- page ----------------------------------------------------------------------------------------


def _page_trace() -> list[Event]:
    return [page_alloc(100, 1, 0, "GFP_KERNEL", "site_a"),
            page_alloc(200, 0, 1, "GFP_HIGHUSER_MOVABLE", "site_b"),
            page_alloc(300, 0, 0, "GFP_KERNEL", "site_a"),
            page_alloc(300, 2, 2, "GFP_KERNEL_ACCOUNT", "site_c"),  # a live pfn again
            page_free(100, 1), page_free(999, 0), page_alloc(-1, 3, 0), page_free(5, 11),
            page_alloc(7, 10, 5, "GFP_KERNEL", "site_a"), page_alloc(8, 0, 6)]


def test_page_tables_count_allocations_and_frees_per_pfn_and_caller() -> None:
    stat = KmemStat()
    stat.add(_page_trace())
    summary = stat.page_summary("page")
    assert not summary.live and summary.page_size == 4096
    # order 11 free and migratetype 6 alloc are beyond perf's tables
    assert stat.skipped_page_events == 2
    assert (summary.nr_allocs, summary.nr_frees, summary.nr_free_only, summary.nr_fails) == (
        6, 2, 1, 1)
    assert summary.alloc_bytes == 4096 * (2 + 1 + 1 + 4 + 8 + 1024)
    assert (summary.free_bytes, summary.free_only_bytes, summary.fail_bytes) == (
        4096 * 3, 4096, 4096 * 8)
    rows = [(r.pfn, r.order, r.migratetype, r.gfp_flags, r.nr_alloc, r.alloc_bytes, r.nr_free,
             r.free_bytes, r.call_site) for r in summary.allocs]
    assert rows == [  # (the two rows of pfn 300 tie on "page": in (order, migtype, gfp) order)
        (300, 0, 0, "GFP_KERNEL", 1, 4096, 0, 0, "site_a"),
        (300, 2, 2, "GFP_KERNEL_ACCOUNT", 1, 16384, 0, 0, "site_c"),
        (200, 0, 1, "GFP_HIGHUSER_MOVABLE", 1, 4096, 0, 0, "site_b"),
        (100, 1, 0, "GFP_KERNEL", 1, 8192, 1, 8192, "site_a"),
        (7, 10, 5, "GFP_KERNEL", 1, 4096 << 10, 0, 0, "site_a"),
    ]
    assert [r.gfp for r in summary.allocs][:3] == [GFP_KERNEL, GFP_KERNEL_ACCOUNT,
                                                   GFP_HIGHUSER_MOVABLE]
    callers = {(r.call_site, r.order, r.migratetype, r.gfp_flags):
               (r.pfn, r.nr_alloc, r.alloc_bytes, r.nr_free, r.free_bytes)
               for r in summary.callers}
    assert callers == {
        ("site_a", 1, 0, "GFP_KERNEL"): (-1, 1, 8192, 1, 8192),
        ("site_b", 0, 1, "GFP_HIGHUSER_MOVABLE"): (-1, 1, 4096, 0, 0),
        ("site_a", 0, 0, "GFP_KERNEL"): (-1, 1, 4096, 0, 0),
        ("site_c", 2, 2, "GFP_KERNEL_ACCOUNT"): (-1, 1, 16384, 0, 0),
        ("site_a", 10, 5, "GFP_KERNEL"): (-1, 1, 4096 << 10, 0, 0),
    }
    table = summary.order_migratetype
    assert (table[1][0], table[0][1], table[0][0], table[2][2], table[10][5]) == (1, 1, 1, 1, 1)
    assert sum(map(sum, table)) == 5  # the failure is not in it
    # by value (__GFP_ACCOUNT is bit 22, __GFP_MOVABLE bit 3, __GFP_HARDWALL bit 20)
    assert summary.gfp_flags == ((GFP_KERNEL, "GFP_KERNEL"),
                                 (GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
                                 (GFP_KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT"))


def test_live_page_tables_hold_what_is_still_allocated() -> None:
    """perf kmem --live: the per-pfn table is the live pages (first allocation's order, gfp
    and migratetype, the latest call site), from the highest pfn down; a free takes its
    allocation back out of the caller row (gone at zero) and of the order table."""
    stat = KmemStat(live=True)
    stat.add(_page_trace())
    summary = stat.page_summary("page")
    assert summary.live
    rows = [(r.pfn, r.order, r.migratetype, r.gfp_flags, r.nr_alloc, r.alloc_bytes, r.nr_free,
             r.call_site) for r in summary.allocs]
    assert rows == [(300, 0, 0, "GFP_KERNEL", 2, 4096 + 16384, 0, "site_c"),
                    (200, 0, 1, "GFP_HIGHUSER_MOVABLE", 1, 4096, 0, "site_b"),
                    (7, 10, 5, "GFP_KERNEL", 1, 4096 << 10, 0, "site_a")]
    callers = {(r.call_site, r.order, r.migratetype, r.gfp_flags): (r.nr_alloc, r.alloc_bytes)
               for r in summary.callers}
    assert callers == {("site_b", 0, 1, "GFP_HIGHUSER_MOVABLE"): (1, 4096),
                       ("site_a", 0, 0, "GFP_KERNEL"): (1, 4096),
                       ("site_c", 2, 2, "GFP_KERNEL_ACCOUNT"): (1, 16384),
                       ("site_a", 10, 5, "GFP_KERNEL"): (1, 4096 << 10)}
    table = summary.order_migratetype
    assert (table[1][0], table[0][1], table[0][0], table[2][2], table[10][5]) == (0, 1, 1, 1, 1)
    # a free under another order than its allocation: perf subtracts it from the free's order
    other = KmemStat(live=True)
    other.add([page_alloc(50, 2), page_alloc(60, 0), page_free(50, 0)])
    assert other.page_summary().order_migratetype[0][0] == 0
    assert other.page_summary().order_migratetype[2][0] == 1


def test_page_sort_keys_each_sort_descending() -> None:
    stat = KmemStat()
    stat.add([page_alloc(10, 0, 2, "GFP_KERNEL", "s1"), page_alloc(20, 3, 0, "GFP_ATOMIC", "s2"),
              page_alloc(30, 1, 1, "GFP_KERNEL_ACCOUNT", "s3"),
              page_alloc(10, 0, 2, "GFP_KERNEL", "s1"), page_free(10, 0)])
    pfns = {
        # (ties in pfn order)
        "page": [30, 20, 10], "hit": [10, 20, 30], "bytes": [20, 10, 30], "order": [20, 30, 10],
        "migtype": [10, 30, 20], "gfp": [30, 10, 20], "callsite": [30, 20, 10],
    }
    for key, expected in pfns.items():
        assert [r.pfn for r in stat.page_summary(key).allocs] == expected, key
    summary = stat.page_summary("order", alloc_sort="hit")
    assert [r.order for r in summary.callers] == [3, 1, 0]
    assert [r.pfn for r in summary.allocs] == [10, 20, 30]
    assert [r.call_site for r in stat.page_summary("callsite").callers] == ["s3", "s2", "s1"]
    with pytest.raises(InvalidArgumentError, match=r"^unknown page sort key 'ptr' \(choose from"
                       r" page, callsite, hit, bytes, order, migtype, gfp\)$"):
        stat.page_summary("ptr")
    with pytest.raises(InvalidArgumentError, match=r"^unknown page sort key 'frag'"):
        stat.page_summary(alloc_sort="hit,frag")


def test_page_sizes_scale_the_bytes() -> None:
    stat = KmemStat(page_size=16384)
    stat.add([page_alloc(1, 2, gfp=""), page_free(1, 2), page_alloc(-1, 1)])
    summary = stat.page_summary()
    assert (summary.page_size, summary.alloc_bytes, summary.free_bytes, summary.fail_bytes) == (
        16384, 16384 * 4 + 16384 * 2, 16384 * 4, 16384 * 2)
    assert summary.gfp_flags == ()  # an empty gfp text has no legend line
