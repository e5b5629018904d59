"""`kmem stat`'s compiled accumulation (csrc/stat.c, kmem._core.StatCore) and KmemStat's pure
Python one, in lockstep.

Random event sequences, cut into random EventBatches, go through a KmemStat built on each core:
slab allocations and frees of a few pointers over a few CPUs (so that pointers are freed on
another CPU, freed twice, freed unknown), pointer spellings that name the same number, call
sites perf spells alike, kmalloc size classes of every gfp variant, page allocations and frees
of a few pfns (failures, frees of pfns never allocated, orders and migratetypes beyond perf's
tables), events perf does not read, and odd columns the C code leaves to Python (huge ints,
keys of other types, short tails, a gfp text that makes the cache naming raise). After every
batch the outcome (or error: class and message) and the counters must agree; at the end, and
sometimes in the middle (the C tables then move to Python and the stat goes on there), every
summary under random sort keys, --live, page sizes and call site orders (perf.data's
addresses). `kmem stat` itself is compared byte for byte on the fixtures under every option.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import kmem.trace.stat as stat_module
from core_twins import FUZZ_EXAMPLES, needs_compiled, outcome
from fixture_files import TRACES
from kmem.trace.events import EventBatch
from kmem.trace.stat import PAGE_SORT_KEYS, SLAB_SORT_KEYS, KmemStat

pytestmark = needs_compiled

SLAB_SITES = ["f+0x10/0x20", "f+0x10/0x40", "g+0x1e/0x80 [nf_conntrack]", "ffffffff8123abcd",
              "bad+0x1/0x2", "h"]
PAGE_SITES = ["", "", "", "alloc_pages_bulk+0x3", "0xffffffff81000000", "bad+0x1"]
# (csrc/stat.c compares ASCII keys of up to 16 characters packed in the row, others as strs:
# keys on both sides of that line, one the other's prefix, and one not ASCII)
POINTERS = ["0", "000000004df4a32a", "0x4df4a32a", "00000000deadbeef", "deadbeef",
            "0xffff888102c69fa0", "000000004df4a32a0", "", "d\u00e9adbeef"]
PFNS = [-1, 0, 1, 2, 7, 0x12345, 1 << 40]
NAMES = ["", "", "kmalloc-64", "dentry"]
SIZES = [0, 1, 8, 60, 64, 100, 4096, 8192, 8193, 1 << 20]
GFPS = ["GFP_KERNEL", "GFP_KERNEL|__GFP_ZERO", "GFP_ATOMIC", "GFP_KERNEL_ACCOUNT", "0xcc0",
        "GFP_NOFS|__GFP_NOTRACK", "none", "GFP_DMA"]
ORDERS = [0, 0, 0, 1, 3, 10, 11, -1]
MIGRATETYPES = [0, 0, 1, 2, 4, 5, 6, -1]
# Values the C code leaves to Python, and a gfp text whose kmalloc class raises ValueError.
ODD = [1 << 70, -(1 << 70), None, 1.5, "7", ("x",)]
BAD_GFP = "0xzz"

# Tails shared by many events (as the parser's memo tables share them), and fresh ones.
SHARED_SLAB_TAILS = [(name, req, alloc, gfp, node, -1, -1, -1)
                     for name in NAMES[1:3] for req, alloc in ((8, 8), (60, 64), (100, 128))
                     for gfp in GFPS[:2] for node in (-1, 0, 1)]
SHARED_PAGE_TAILS = [(gfp, order, mt) for gfp in GFPS[:3] for order in (0, 1) for mt in (0, 1)]


@st.composite
def slab_tail(draw: st.DrawFn, alloc: bool) -> tuple[Any, ...]:
    if not alloc:
        return ("", 0, 0, "", -1, -1, -1, -1)
    if draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(SHARED_SLAB_TAILS))
    req = draw(st.sampled_from(SIZES))
    alloc_size = draw(st.sampled_from([req, req + 4, 64, 8192]))
    return (draw(st.sampled_from(NAMES)), req, alloc_size, draw(st.sampled_from(GFPS)),
            draw(st.sampled_from([-1, -1, 0, 1])), -1, -1, -1)


@st.composite
def event(draw: st.DrawFn, odd_values: bool = True
          ) -> tuple[int, int, str, Any, Any, tuple[Any, ...]]:
    """(kind, cpu, time, call site, key, tail) as an EventBatch holds it (``odd_values``:
    now and then a value the C code leaves to Python)."""
    kind = draw(st.sampled_from([0, 0, 1, 2, 2, 3, 4, 4, 5, 5, 6, 6, 6, 7, 7, 8, 9, 10, 11]))
    cpu: Any = draw(st.integers(0, 3))
    site: Any
    if kind <= 5:
        site = draw(st.sampled_from(SLAB_SITES))
        key: Any = draw(st.sampled_from(POINTERS))
        tail = draw(slab_tail(kind <= 3))
    else:
        site = draw(st.sampled_from(PAGE_SITES))
        key = draw(st.sampled_from(PFNS))
        tail = (draw(st.sampled_from(SHARED_PAGE_TAILS)) if draw(st.booleans())
                else (draw(st.sampled_from(GFPS)) if kind == 6 else "",
                      draw(st.sampled_from(ORDERS)), draw(st.sampled_from(MIGRATETYPES))))
    odd = draw(st.integers(0, 60)) if odd_values else -1
    if odd == 0:
        key = draw(st.sampled_from(ODD))
    elif odd == 1:
        cpu = draw(st.sampled_from(ODD))
    elif odd == 2:
        spot = draw(st.integers(0, len(tail) - 1))
        tail = (*tail[:spot], draw(st.sampled_from(ODD)), *tail[spot + 1:])
    elif odd == 3:
        tail = tail[:draw(st.integers(0, len(tail) - 1))]
    elif odd == 4 and kind <= 3:
        tail = (tail[0], tail[1], tail[2], BAD_GFP, *tail[4:])
    elif odd == 5:
        site = draw(st.sampled_from([None, 3]))
    return kind, cpu, "1.000000:", site, key, tail


def _batch(events: list[tuple[Any, ...]]) -> EventBatch:
    if not events:
        return EventBatch(b"", [], [], [], [], [])
    kinds, cpus, times, sites, keys, tails = zip(*events, strict=True)
    return EventBatch(bytes(kinds), list(cpus), list(times), list(sites), list(keys),
                      list(tails))


def _site_order(site: str) -> int:
    """An address for a call site, as perf.data gives them (one raises, as a lookup could)."""
    if site.startswith("bad"):
        raise KeyError(site)
    return sum(map(ord, site)) % 5


@contextmanager
def _pure() -> Iterator[None]:
    """KmemStats built inside run on the pure path (kmem.trace.stat reads its `core`)."""
    saved = vars(stat_module)["core"]
    setattr(stat_module, "core", None)  # noqa: B010 (a module global mypy does not see)
    try:
        yield
    finally:
        setattr(stat_module, "core", saved)  # noqa: B010


def _twins(**options: Any) -> tuple[KmemStat, KmemStat]:
    compiled = KmemStat(**options)
    with _pure():
        pure = KmemStat(**options)
    assert compiled._core is not None and pure._core is None
    return compiled, pure


def _summaries(stat: KmemStat, sorts: tuple[str, str, str, str, str]) -> tuple[Any, ...]:
    slab, alloc, cache, page, page_alloc = sorts
    counters = (outcome(lambda: stat.slab_summary(slab, tables=False)),
                outcome(lambda: stat.page_summary(page, tables=False)))
    return (counters, outcome(lambda: stat.slab_summary(slab, alloc_sort=alloc,
                                                        cache_sort=cache)),
            outcome(lambda: stat.page_summary(page, alloc_sort=page_alloc)),
            stat.unknown_frees, stat.skipped_page_events)


def _sort_keys(keys: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(keys), min_size=1, max_size=3).map(",".join)


SORTS = st.tuples(_sort_keys(SLAB_SORT_KEYS), _sort_keys(SLAB_SORT_KEYS),
                  _sort_keys(SLAB_SORT_KEYS), _sort_keys(PAGE_SORT_KEYS),
                  _sort_keys(PAGE_SORT_KEYS))


def _feed(stats: tuple[KmemStat, KmemStat], batch: EventBatch) -> None:
    compiled, pure = stats
    got = outcome(lambda: compiled.add_batch(batch)), compiled.unknown_frees
    expected = outcome(lambda: pure.add_batch(batch)), pure.unknown_frees
    assert got == expected


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batches=st.booleans().flatmap(lambda odd: st.lists(
           st.lists(event(odd), max_size=40), min_size=1, max_size=8)),
       live=st.booleans(), page_size=st.sampled_from([4096, 16, 1 << 16]),
       ordered=st.booleans(), middle=st.integers(-1, 8), sorts=SORTS, odd_batch=st.integers(0, 9))
def test_compiled_and_pure_stat_agree(batches: list[list[tuple[Any, ...]]], live: bool,
                                      page_size: int, ordered: bool, middle: int,
                                      sorts: tuple[str, str, str, str, str],
                                      odd_batch: int) -> None:
    site_order: Callable[[str], int] | None = _site_order if ordered else None
    stats = _twins(page_size=page_size, live=live, site_order=site_order)
    for number, events in enumerate(batches):
        batch = _batch(events)
        if number == odd_batch and events:  # columns the C code does not read: Python's
            batch = batch._replace(times=batch.times[1:])
        _feed(stats, batch)
        if number == middle:  # a summary between batches: the C tables move to Python
            assert _summaries(stats[0], sorts) == _summaries(stats[1], sorts)
            assert stats[0]._core is None
    assert _summaries(stats[0], sorts) == _summaries(stats[1], sorts)


@given(events=st.lists(event(odd_values=False), max_size=60), sorts=SORTS)
@settings(max_examples=max(20, FUZZ_EXAMPLES // 3), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_add_after_add_batch_goes_on_in_python(events: list[tuple[Any, ...]],
                                               sorts: tuple[str, str, str, str, str]) -> None:
    """add() of event tuples after add_batch: the C tables move over first (events the
    parser could give: a cut tail would already break the conversion to tuples)."""
    half = len(events) // 2
    stats = _twins()
    _feed(stats, _batch(events[:half]))
    tuples = list(stat_module._events_of(_batch(events[half:])))
    got = outcome(lambda: stats[0].add(tuples))
    assert got == outcome(lambda: stats[1].add(tuples))
    assert _summaries(stats[0], sorts) == _summaries(stats[1], sorts)


def test_a_cpu_node_function_or_a_huge_page_runs_in_python() -> None:
    """What the C code does not take runs the Python code from the start."""
    assert KmemStat(cpu_node=lambda cpu: cpu // 2)._core is None
    assert KmemStat(page_size=1 << 40)._core is None
    assert KmemStat()._core is not None


def test_the_c_tables_hold_what_python_would() -> None:
    """A hand-made sequence, counted by hand: the C path's own numbers, not just agreement."""
    stat = KmemStat()
    shared = ("", 60, 64, "GFP_KERNEL", -1, -1, -1, -1)
    stat.add_batch(_batch([
        (0, 0, "1.0:", "f+0x1/0x2", "00000000000000a0", shared),
        (0, 1, "1.0:", "f+0x1/0x4", "00000000000000b0", shared),  # same site for perf
        (4, 1, "1.0:", "k+0x1/0x2", "00000000000000a0", ("", 0, 0, "", -1, -1, -1, -1)),
        (4, 1, "1.0:", "k+0x1/0x2", "00000000000000c0", ("", 0, 0, "", -1, -1, -1, -1)),
        (6, 0, "1.0:", "", 5, ("GFP_KERNEL", 2, 0)),
        (7, 0, "1.0:", "", 5, ("", 2, -1)),
        (7, 0, "1.0:", "", 9, ("", 0, -1)),
    ]))
    assert stat._core is not None and stat.unknown_frees == 1
    slab, page = stat.slab_summary(), stat.page_summary()
    assert (slab.nr_allocs, slab.total_requested, slab.total_allocated, slab.total_freed) == (
        2, 120, 128, 64)
    assert [(r.key, r.hit, r.pingpong) for r in slab.callers] == [("f+1", 2, 1)]
    assert [(r.key, r.hit) for r in slab.caches] == [("kmalloc-64", 2)]
    assert (page.nr_allocs, page.nr_frees, page.nr_free_only, page.alloc_bytes) == (
        1, 2, 1, 4 << 12)


# -- the command, byte for byte ------------------------------------------------------------

TEXT = TRACES / "kmem-6.18-dd-first15000.txt.xz"
PERF_DATA = TRACES / "perf-data" / "kmem-record-sleep.data.xz"
OPTIONS = [
    [],
    ["--page", "--live"],
    ["--caller", "--alloc", "--cache"],
    ["--slab", "--caller", "-s", "pingpong,hit", "--alloc", "-s", "bytes,ptr", "-l", "7"],
    ["--page", "--caller", "-s", "order,migtype,gfp", "--alloc", "-s", "hit,page", "-l", "9"],
    ["--live", "--caller", "--alloc", "--page-sort", "gfp,order"],
    ["--time", "401.07,", "--caller", "--alloc", "--json"],
    ["--json", "-l", "5", "--page-size", "16K"],
    ["--cache", "--slab", "-s", "frag,callsite"],
    ["--raw-ip", "--caller"],
]


def _kmem(args: list[str], pure: bool) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env.pop("KMEM_PURE", None)
    if pure:
        env["KMEM_PURE"] = "1"
    return subprocess.run([sys.executable, "-m", "kmem", "stat", *args], capture_output=True,
                          env=env, check=False)


@pytest.mark.parametrize("trace", [TEXT, PERF_DATA], ids=lambda p: p.name)
@pytest.mark.parametrize("options", OPTIONS, ids=" ".join)
def test_kmem_stat_prints_the_same_bytes_on_both_cores(trace: Path, options: list[str],
                                                       tmp_path: Path) -> None:
    path = trace
    if trace.suffix == ".xz" and trace.name.endswith(".data.xz"):  # perf.data is read raw
        import lzma

        path = tmp_path / trace.name[:-3]
        path.write_bytes(lzma.decompress(trace.read_bytes()))
    args = [*options, str(path), "--no-progress"]
    compiled, pure = _kmem(args, pure=False), _kmem(args, pure=True)
    assert (compiled.returncode, compiled.stdout, compiled.stderr) == (
        pure.returncode, pure.stdout, pure.stderr)
    assert compiled.returncode in (0, 2)
    assert len(compiled.stdout) > 200 or compiled.returncode == 2
