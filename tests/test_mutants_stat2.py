"""KmemStat's compiled accumulation against its pure one, also in the mutation run.

The mutation tool runs with KMEM_PURE=1, where kmem.trace.stat sees no compiled core: the
Python that wires StatCore up (KmemStat.__init__'s call, add_batch's hand-over, _to_python's
move of the C tables, _events_of for what C leaves to Python) never ran there. Here every
KmemStat is built with kmem._core put back into kmem.trace.stat (when it was built at all), and
fixed event sequences go through a compiled and a pure twin: every summary must agree, and a
few figures are checked against values worked out by hand (perf kmem's definitions).
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pytest

import kmem.trace.stat as stat_module
from kmem.trace.events import EventBatch
from kmem.trace.stat import PAGE_SORT_KEYS, SLAB_SORT_KEYS, KmemStat


def _compiled() -> ModuleType | None:
    try:
        return importlib.import_module("kmem._core")
    except ImportError:
        return None


needs_core = pytest.mark.skipif(_compiled() is None, reason="kmem._core is not built")


@contextmanager
def _core(module: ModuleType | None) -> Iterator[None]:
    saved = vars(stat_module)["core"]
    setattr(stat_module, "core", module)  # noqa: B010 (a module global mypy does not see)
    try:
        yield
    finally:
        setattr(stat_module, "core", saved)  # noqa: B010


def _twins(**options: Any) -> tuple[KmemStat, KmemStat]:
    with _core(_compiled()):
        compiled = KmemStat(**options)
    with _core(None):
        pure = KmemStat(**options)
    assert compiled._core is not None and pure._core is None
    return compiled, pure


SITES = ["f+0x10/0x20", "f+0x10/0x40", "g+0x1e/0x80 [nf_conntrack]", "ffffffff8123abcd", "h"]
PAGE_SITES = ["", "alloc_pages_bulk+0x3", "0xffffffff81000000"]
POINTERS = ["000000004df4a32a", "0x4df4a32a", "00000000deadbeef", "0xffff888102c69fa0", "10"]
NAMES = ["", "", "kmalloc-64", "dentry"]
GFPS = ["GFP_KERNEL", "GFP_KERNEL|__GFP_ZERO", "GFP_ATOMIC", "GFP_KERNEL_ACCOUNT", "GFP_DMA"]


def _events(seed: int, count: int) -> list[tuple[Any, ...]]:
    """(kind, cpu, time, call site, key, tail) as an EventBatch holds them: kinds 0-3 slab
    allocations, 4-5 slab frees, 6 mm_page_alloc, 7 mm_page_free, the rest not read."""
    rng = random.Random(seed)
    events: list[tuple[Any, ...]] = []
    for _ in range(count):
        kind = rng.choice([0, 0, 1, 2, 2, 3, 4, 4, 5, 5, 6, 6, 6, 7, 7, 8, 9])
        cpu = rng.randrange(3)
        if kind <= 5:
            tail: tuple[Any, ...] = ("", 0, 0, "", -1, -1, -1, -1)
            if kind <= 3:
                req = rng.choice([0, 8, 60, 100, 4096, 8193])
                tail = (rng.choice(NAMES), req, rng.choice([req, req + 4, 8192]),
                        rng.choice(GFPS), rng.choice([-1, -1, 0, 1]), -1, -1, -1)
            events.append((kind, cpu, "1.0:", rng.choice(SITES), rng.choice(POINTERS), tail))
        else:
            pfn = rng.choice([-1, 0, 1, 2, 7, 0x12345])
            order = rng.choice([0, 0, 1, 3, 10, 11])
            events.append((kind, cpu, "1.0:", rng.choice(PAGE_SITES), pfn,
                           (rng.choice(GFPS) if kind == 6 else "", order,
                            rng.choice([0, 0, 1, 2, 4, 6]))))
    return events


def _batch(events: list[tuple[Any, ...]]) -> EventBatch:
    kinds, cpus, times, sites, keys, tails = zip(*events, strict=True)
    return EventBatch(bytes(kinds), list(cpus), list(times), list(sites), list(keys),
                      list(tails))


def _summaries(stat: KmemStat, slab_sort: str, page_sort: str) -> tuple[Any, ...]:
    return (stat.slab_summary(slab_sort, tables=False), stat.page_summary(page_sort,
                                                                          tables=False),
            stat.unknown_frees, stat.skipped_page_events,
            stat.slab_summary(slab_sort, alloc_sort="ptr", cache_sort="hit"),
            stat.page_summary(page_sort, alloc_sort="page"),
            stat.unknown_frees, stat.skipped_page_events)


@needs_core
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("live", [False, True])
def test_compiled_and_pure_stat_agree_in_the_pure_run(seed: int, live: bool) -> None:
    page_size = (4096, 16, 1 << 16)[seed % 3]
    site_order = (lambda site: sum(map(ord, site)) % 5) if seed % 2 else None
    compiled, pure = _twins(page_size=page_size, live=live, site_order=site_order)
    events = _events(seed, 300)
    for start in range(0, 300, 75):
        batch = _batch(events[start:start + 75])
        compiled.add_batch(batch)
        pure.add_batch(batch)
        assert compiled.unknown_frees == pure.unknown_frees
        assert compiled.skipped_page_events == pure.skipped_page_events
        if start == 150 and seed % 3 == 0:  # counters only: the C tables stay in C
            assert _summaries(compiled, "hit", "bytes")[:4] == _summaries(pure, "hit",
                                                                         "bytes")[:4]
    slab_sort = ",".join(SLAB_SORT_KEYS[seed % 6:] + SLAB_SORT_KEYS[:1])
    page_sort = ",".join(PAGE_SORT_KEYS[seed % 7:] + PAGE_SORT_KEYS[:1])
    assert _summaries(compiled, slab_sort, page_sort) == _summaries(pure, slab_sort, page_sort)
    assert compiled._core is None  # the tables moved to Python for the summaries


@needs_core
def test_a_batch_the_c_code_leaves_half_done_goes_on_in_python() -> None:
    """An event StatCore does not take (a value beyond 64 bits) in mid-batch: C counts the
    events before it, Python the rest, from the C tables."""
    compiled, pure = _twins()
    events = _events(7, 120)
    events[60] = (0, 1, "1.0:", "f+0x10/0x20", "0x10", ("", 1 << 70, 1 << 70, "GFP_KERNEL",
                                                          -1, -1, -1, -1))
    for stat in (compiled, pure):
        stat.add_batch(_batch(events))
    assert compiled._core is None
    assert _summaries(compiled, "bytes", "hit") == _summaries(pure, "bytes", "hit")
    assert pure.slab_summary().total_requested >= 1 << 70


@needs_core
def test_add_after_add_batch_moves_the_c_tables_first() -> None:
    """Event tuples after a batch: what C counted is kept, the tuples counted on top."""
    compiled, pure = _twins()
    events = _events(3, 200)
    batch, later = _batch(events[:100]), events[100:]
    for stat in (compiled, pure):
        stat.add_batch(batch)
    hand = [(kind, cpu, time, site, key, *tail) if kind <= 5
            else (kind, cpu, time, site, "", "", 0, 0, tail[0], -1, key, tail[1], tail[2])
            for kind, cpu, time, site, key, tail in later]
    compiled.add(hand)
    pure.add_batch(_batch(later))  # (the pure side through _events_of: the same tuples)
    assert _summaries(compiled, "frag,hit,bytes", "bytes,hit") == _summaries(
        pure, "frag,hit,bytes", "bytes,hit")


@needs_core
def test_a_batch_with_columns_of_unequal_length_is_counted_in_python() -> None:
    compiled, pure = _twins()
    batch = _batch(_events(11, 80))
    odd = batch._replace(times=batch.times[1:])  # (the times column is one short)
    for stat in (compiled, pure):  # Python's zip(strict=True) refuses it, on both
        with pytest.raises(ValueError, match="shorter"):
            stat.add_batch(odd)
    assert _summaries(compiled, "hit", "hit") == _summaries(pure, "hit", "hit")


def test_a_small_trace_by_hand() -> None:
    """Two kmallocs on cpu 0 and 1, a free of the first on cpu 1 (a ping-pong), an order-1
    page allocation and its free: perf kmem's figures, by hand, on either core."""
    for module in (_compiled(), None):
        with _core(module):
            stat = KmemStat()
        events = [
            (0, 0, "1.0:", "f+0x10/0x20", "0x100", ("", 60, 64, "GFP_KERNEL", -1, -1, -1, -1)),
            (0, 1, "1.0:", "f+0x10/0x20", "0x200", ("", 100, 128, "GFP_KERNEL", 0, -1, -1,
                                                    -1)),
            (4, 1, "1.0:", "x+0x1/0x2", "0x100", ("", 0, 0, "", -1, -1, -1, -1)),
            (4, 0, "1.0:", "x+0x1/0x2", "0x999", ("", 0, 0, "", -1, -1, -1, -1)),
            (6, 0, "1.0:", "", 5, ("GFP_KERNEL", 1, 0)),
            (7, 0, "1.0:", "", 5, ("", 1, 0)),
            (7, 0, "1.0:", "", 9, ("", 0, 0)),
        ]
        stat.add_batch(_batch(events))
        slab = stat.slab_summary()
        assert (slab.nr_allocs, slab.total_requested, slab.total_allocated, slab.total_freed,
                slab.nr_cross_allocs) == (2, 160, 192, 64, 0)
        assert stat.unknown_frees == 1
        (caller,) = slab.callers
        assert (caller.key, caller.hit, caller.bytes_req, caller.bytes_alloc,
                caller.pingpong) == ("f+10", 2, 160, 192, 1)
        assert [(c.key, c.hit) for c in slab.caches] == [("kmalloc-128", 1), ("kmalloc-64", 1)]
        page = stat.page_summary()
        assert (page.nr_allocs, page.alloc_bytes, page.nr_frees, page.free_bytes,
                page.nr_free_only, page.free_only_bytes) == (1, 8192, 2, 12288, 1, 4096)
        assert page.order_migratetype[1][0] == 1


# -- figures by hand ---------------------------------------------------------------------------


def _page(kind: int, pfn: int, order: int, site: str = "", mt: int = 0,
          gfp: str = "GFP_KERNEL") -> tuple[Any, ...]:
    return (kind, 0, "1.0:", site, pfn, (gfp if kind == 6 else "", order, mt))


def _on_each_core(**options: Any) -> Iterator[KmemStat]:
    for module in (_compiled(), None):
        with _core(module):
            yield KmemStat(**options)


@pytest.mark.parametrize("live", [False, True])
def test_counters_alone_have_empty_tables(live: bool) -> None:
    """tables=False: the counters (a failed allocation counted apart from its bytes), the page
    size and --live as asked, every table and the gfp legend empty."""
    for stat in _on_each_core(page_size=16384, live=live):
        stat.add_batch(_batch([
            (0, 0, "1.0:", "f+0x1/0x2", "0x100", ("", 60, 64, "GFP_KERNEL", -1, -1, -1, -1)),
            _page(6, -1, 0), _page(6, -1, 0), _page(6, 3, 1)]))
        slab = stat.slab_summary(tables=False)
        assert (slab.callers, slab.allocs, slab.caches) == ((), (), ())
        page = stat.page_summary(tables=False)
        assert (page.callers, page.allocs, page.gfp_flags) == ((), (), ())
        assert page.page_size == 16384 and page.live is live
        assert (page.nr_allocs, page.alloc_bytes, page.nr_fails, page.fail_bytes) == (
            3, 16384 * 4, 2, 32768)


def test_per_cache_rows_have_their_own_fragmentation() -> None:
    for stat in _on_each_core():
        stat.add_batch(_batch([
            (0, 0, "1.0:", "f+0x1/0x2", "0x100", ("", 48, 64, "GFP_KERNEL", -1, -1, -1, -1)),
            (4, 0, "1.0:", "f+0x1/0x2", "0x100", ("", 0, 0, "", -1, -1, -1, -1))]))
        (cache,) = stat.slab_summary().caches
        assert (cache.key, cache.bytes_req, cache.bytes_alloc, cache.frag) == (
            "kmalloc-64", 48, 64, 25.0)


def test_a_page_caller_row_counts_every_free() -> None:
    for stat in _on_each_core():
        stat.add_batch(_batch([_page(6, 1, 1), _page(6, 5, 1), _page(7, 1, 1),
                               _page(7, 5, 1)]))
        (caller,) = stat.page_summary().callers
        assert (caller.nr_alloc, caller.alloc_bytes, caller.nr_free, caller.free_bytes) == (
            2, 16384, 2, 16384)


def test_live_pages_come_highest_pfn_first_with_nothing_freed() -> None:
    for stat in _on_each_core(live=True):
        stat.add_batch(_batch([_page(6, pfn, 0) for pfn in (5, 9, 2)]))
        allocs = stat.page_summary().allocs
        assert [r.pfn for r in allocs] == [9, 5, 2]
        assert {(r.gfp, r.nr_free, r.free_bytes) for r in allocs} == {(0xCC0, 0, 0)}


def test_rows_of_one_pfn_keep_perf_tree_order_on_a_tie() -> None:
    """The per-pfn table sorted by page alone: rows of the same pfn stay in perf's tree order,
    (order, migratetype, gfp) ascending."""
    for stat in _on_each_core():
        stat.add_batch(_batch([_page(6, 8, 1, mt=0), _page(7, 8, 1), _page(6, 8, 0, mt=1),
                               _page(7, 8, 0), _page(6, 8, 0, mt=0)]))
        rows = stat.page_summary(alloc_sort="page").allocs
        assert [(r.order, r.migratetype) for r in rows] == [(0, 0), (0, 1), (1, 0)]


PAGE_ADDRESSES = {"low+0x1": 1, "high+0x2": 9, "zero+0x3": 0, "": 7}


def test_page_call_sites_are_ordered_by_their_addresses() -> None:
    """With addresses (perf.data), page callers sort by address: descending for the callsite
    key, ascending among rows tied on the others; the empty site (no callchain) has none: 0."""
    for stat in _on_each_core(site_order=PAGE_ADDRESSES.__getitem__):
        stat.add_batch(_batch([_page(6, 1, 0, "high+0x2"), _page(6, 2, 0, ""),
                               _page(6, 3, 0, "low+0x1"), _page(6, 4, 0, "zero+0x3")]))
        by_site = stat.page_summary("callsite").callers
        assert [r.call_site for r in by_site] == ["high+0x2", "low+0x1", "zero+0x3", ""]
        tied = stat.page_summary("bytes,hit").callers
        assert [r.call_site for r in tied] == ["", "zero+0x3", "low+0x1", "high+0x2"]


def _slab(kind: int, cpu: int, ptr: str, req: int = 0, alloc: int = 0,
          site: str = "f+0x1/0x2") -> tuple[Any, ...]:
    tail = ("", req, alloc, "GFP_KERNEL", -1, -1, -1, -1) if kind <= 3 else (
        "", 0, 0, "", -1, -1, -1, -1)
    return (kind, cpu, "1.0:", site, ptr, tail)


def test_pointer_rows_tied_on_the_call_site_sort_by_the_next_key() -> None:
    """Four pointers of one call site: after "callsite" (all tied) each other key orders them,
    descending, as perf's sort chain does."""
    events = [
        _slab(0, 0, "0x10", 8, 8), _slab(0, 0, "0x10", 8, 8), _slab(4, 1, "0x10"),  # 2 hits
        _slab(0, 0, "0x20", 100, 128), _slab(4, 1, "0x20"), _slab(0, 0, "0x20", 100, 128),
        _slab(4, 1, "0x20"),  # 2 ping-pongs, frag 21.875
        _slab(0, 0, "0x30", 1000, 1024),  # the most bytes
        _slab(0, 0, "0x40", 8, 16), _slab(0, 1, "0x40", 8, 16),
        _slab(0, 1, "0x40", 8, 16),  # the most hits (3), the worst frag (50)
    ]
    expected = {"ptr": [0x40, 0x30, 0x20, 0x10], "hit": [0x40, 0x10, 0x20, 0x30],
                "bytes": [0x30, 0x20, 0x40, 0x10], "frag": [0x40, 0x20, 0x30, 0x10],
                "pingpong": [0x20, 0x10, 0x30, 0x40]}
    for stat in _on_each_core():
        stat.add_batch(_batch(events))
        for key, order in expected.items():
            rows = stat.slab_summary(alloc_sort=f"callsite,{key}").allocs
            assert [r.ptr for r in rows] == order, key


def test_page_callers_tied_on_the_call_site_sort_by_the_next_key() -> None:
    events = [_page(6, 1, 0, "s+0x1"), _page(6, 2, 0, "s+0x1"), _page(6, 3, 2, "s+0x1"),
              _page(6, 4, 1, "s+0x1", mt=1)]
    for stat in _on_each_core(site_order=lambda site: 5):
        stat.add_batch(_batch(events))
        hits = stat.page_summary("callsite,hit").callers
        assert (hits[0].order, hits[0].nr_alloc) == (0, 2)
        orders = stat.page_summary("callsite,order").callers
        assert [r.order for r in orders] == [2, 1, 0]
        migratetypes = stat.page_summary("callsite,migtype").callers
        assert migratetypes[0].migratetype == 1
