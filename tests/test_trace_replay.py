"""`kmem replay`: real traces through kmem's allocators, and what the trace missed."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from fixture_files import DD_TRACE, LS_TRACE, PERF_SCRIPT
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.page.buddy import BuddyAllocator
from kmem.trace.events import (
    BYTES_ALLOC,
    KFREE,
    KIND,
    KMALLOC,
    KMEM_CACHE_ALLOC,
    KMEM_CACHE_FREE,
    NULL_PTR,
    PTR,
    TraceEvent,
)
from kmem.trace.parse import TraceParser
from kmem.trace.replay import Replayer, ReplayResult, ReplaySnapshot, parse_layers


def _events(path: Path) -> list[TraceEvent]:
    with lzma.open(path, "rt") as lines:
        return list(TraceParser().parse(lines))


def _model(events: list[TraceEvent]) -> dict[str, int]:
    """The issue's definitions, as a plain set over pointers (no allocator involved)."""
    live: set[str] = set()
    counts = {"unknown_frees": 0, "null_frees": 0, "missed_frees": 0}
    for event in events:
        if KMALLOC <= event[KIND] <= 3:
            if event[PTR] in live:
                counts["missed_frees"] += 1
            live.add(event[PTR])
        elif event[KIND] in (KFREE, KMEM_CACHE_FREE):
            if event[PTR] == NULL_PTR:
                counts["null_frees"] += 1
            elif event[PTR] in live:
                live.discard(event[PTR])
            else:
                counts["unknown_frees"] += 1
    counts["live_objects_at_end"] = len(live)
    return counts


@pytest.mark.parametrize("path", [LS_TRACE, DD_TRACE, PERF_SCRIPT])
@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_real_trace_replays_with_kernel_sizes(path: Path, policy: str) -> None:
    events = _events(path)
    replayer = Replayer(policy=policy)
    result = replayer.run(events, every=500)
    # kmem's kmalloc gives every request the size class the real kernel gave it.
    assert result.bytes_alloc_checked == sum(1 for e in events if e[KIND] == KMALLOC) > 100
    assert result.bytes_alloc_mismatches == 0
    assert result.cache_size_mismatches == {}
    assert result.kmem_oom == 0
    model = _model(events)
    assert {k: getattr(result, k) for k in model} == model
    replayer.slab.check()
    replayer.buddy.check()


def test_every_cache_gets_the_traced_slab_size() -> None:
    events = _events(LS_TRACE)
    replayer = Replayer()
    replayer.run(events)
    for event in events:
        if event[KIND] == KMEM_CACHE_ALLOC:
            assert replayer.slab.caches[event[5]].slab_size == event[BYTES_ALLOC]


def test_unnamed_cache_events_of_old_kernels_go_to_the_cache_of_their_size() -> None:
    # Before 6.2 kmem_cache_alloc has no name=: each size is a cache of its own, and every
    # object used to land in the first such cache.
    lines = [_line(0, "kmem_cache_alloc", f"call_site=f+0x1/0x9 ptr={E.format(ptr)}"
                   f" bytes_req={size} bytes_alloc={size} gfp_flags=GFP_KERNEL")
             for ptr, size in ((1, 256), (2, 64), (3, 256), (4, 4096))]
    replayer, result = _replay(lines)
    assert result.cache_size_mismatches == {}
    objects = {name: replayer.slab.caches[name].stats().objects
               for name in ("cache-256", "cache-64", "cache-4096")}
    assert objects == {"cache-256": 2, "cache-64": 1, "cache-4096": 1}


E = "000000000000{:04x}"


def _line(cpu: int, event: str, fields: str) -> str:
    return f"  t-1 [{cpu:03d}] ..... 1.000000: {event}: {fields}"


def _kmalloc(ptr: int, size: int = 40, alloc: int = 64, cpu: int = 0) -> str:
    return _line(cpu, "kmalloc", f"call_site=f+0x1/0x9 ptr={E.format(ptr)} bytes_req={size} "
                 f"bytes_alloc={alloc} gfp_flags=GFP_KERNEL node=-1 accounted=false")


def _kfree(ptr: int, cpu: int = 0) -> str:
    return _line(cpu, "kfree", f"call_site=g+0x1/0x9 ptr={E.format(ptr)}")


def _cache_alloc(ptr: int, name: str = "filp", size: int = 192, cpu: int = 0) -> str:
    return _line(cpu, "kmem_cache_alloc",
                 f"call_site=f+0x1/0x9 ptr={E.format(ptr)} name={name} bytes_req={size - 8} "
                 f"bytes_alloc={size} gfp_flags=GFP_KERNEL node=-1 accounted=true")


def _page_alloc(pfn: int, order: int = 0, cpu: int = 0, mt: int = 0,
                gfp: str = "GFP_KERNEL") -> str:
    return _line(cpu, "mm_page_alloc",
                 f"page=0 pfn={pfn:#x} order={order} migratetype={mt} gfp_flags={gfp}")


def _page_free(pfn: int, order: int = 0, cpu: int = 0, batched: bool = False) -> str:
    name = "mm_page_free_batched" if batched else "mm_page_free"
    return _line(cpu, name, f"page=0 pfn={pfn:#x} order={order}")


def _replay(lines: list[str], **options: object) -> tuple[Replayer, ReplayResult]:
    replayer = Replayer(**options)  # type: ignore[arg-type]
    parser = TraceParser()
    return replayer, replayer.run(parser.parse(lines), every=2, parser=parser)


def test_what_the_trace_missed_is_counted_not_fatal() -> None:
    replayer, result = _replay([
        _kfree(0x1),                       # allocated before the trace began
        _kfree(0x0),                       # kfree(NULL)
        _kmalloc(0x2), _kmalloc(0x2),      # the first one's free was not traced
        _cache_alloc(0x3), _kfree(0x3),    # a kmem_cache object freed by kfree
        _cache_alloc(0x4),
    ])
    assert (result.unknown_frees, result.null_frees, result.missed_frees) == (1, 1, 1)
    assert result.live_objects_at_end == 2
    assert replayer.slab.caches["filp"].stats().objects == 1
    replayer.slab.check()


def test_an_allocation_the_kernel_failed_is_not_replayed() -> None:
    replayer, result = _replay([_kmalloc(0x0), _kfree(0x0), _cache_alloc(0x0)])
    assert result.traced_slab_failures == 2
    assert result.null_frees == 1 and result.live_objects_at_end == 0
    assert replayer.buddy.stats().allocated_pages == 0  # nothing was allocated


def test_bytes_alloc_disagreement_is_counted() -> None:
    _, result = _replay([_kmalloc(0x1, size=40, alloc=64), _kmalloc(0x2, size=40, alloc=48)])
    assert result.bytes_alloc_mismatches == 1
    assert result.mismatch_examples == ((40, "GFP_KERNEL", 48, 64),)


def test_page_events_map_onto_kmem_pfns_and_free_back() -> None:
    fresh = BuddyAllocator(1 << 30).nr_free
    replayer, result = _replay([
        _page_alloc(0x123456, order=2), _page_alloc(0x7, order=0), _page_free(0x7),
        _page_free(0x7, batched=True),     # 6.x repeats the free as mm_page_free_batched
        _page_free(0x999),                 # allocated before the trace began
        _page_free(0x123456, order=2),
    ], layers=("page",))
    assert replayer.buddy.nr_free == fresh
    page = result.page
    assert (page["allocs"], page["frees"], page["unknown_frees"]) == (2, 2, 1)
    assert page["batched_duplicates"] == 1 and page["peak_pages"] == 5
    assert result.memory_in_use["page"]["peak_bytes"] == 5 * 4096


def test_page_events_the_trace_got_wrong_are_counted() -> None:
    """A pfn allocated again before its free was traced is a missed free (the old block is
    given back first); a free whose order is not the allocation's is an order mismatch (kmem
    frees the block it gave); a batched free has no order of its own to disagree with."""
    fresh = BuddyAllocator(1 << 30).nr_free
    replayer, result = _replay([
        _page_alloc(0x40, order=1), _page_alloc(0x40, order=3),   # the first free was missed
        _page_free(0x40, order=2),                                  # traced with another order
        _page_alloc(0x80, order=1), _page_free(0x80, batched=True),  # batched: order 0, fine
    ], layers=("page",))
    page = result.page
    assert (page["missed_frees"], page["order_mismatches"]) == (1, 1)
    assert (page["allocs"], page["frees"], page["unknown_frees"]) == (3, 2, 0)
    assert page["live_pages_at_end"] == 0 and replayer.buddy.nr_free == fresh
    replayer.buddy.check()


def test_slab_pages_are_not_counted_twice() -> None:
    lines = [
        _page_alloc(0x100, order=1, cpu=1),   # the kernel's new slab for the kmalloc below
        _page_alloc(0x200, cpu=0),            # an ordinary page: cpu 0 goes on elsewhere
        _kmalloc(0x5, cpu=1),
        _kfree(0x5, cpu=0),
        _page_alloc(0x300, cpu=0, mt=1, gfp="GFP_HIGHUSER_MOVABLE"),  # never a slab page
        _kmalloc(0x6, cpu=0),
        _page_free(0x100, order=1, cpu=1),    # the slab page goes back: skipped too
    ]
    _, both = _replay(lines)
    assert both.page["slab_page_events_skipped"] == 2
    assert both.page["live_pages_at_end"] == 2
    _, page_only = _replay(lines, layers=("page",))
    assert page_only.page["slab_page_events_skipped"] == 0
    assert page_only.page["live_pages_at_end"] == 2
    assert page_only.live_objects_at_end == 0
    _, slab_only = _replay(lines, layers=("slab",))
    assert slab_only.page["allocs"] == 0
    assert slab_only.live_objects_at_end == 1


def test_kmem_running_out_of_memory_is_counted() -> None:
    lines = [_kmalloc(i, size=4000, alloc=4096) for i in range(1, 40)]
    lines += [_kfree(i) for i in range(1, 40)]
    replayer, result = _replay(lines, memory=64 << 10, max_order=4)
    assert result.kmem_oom > 0
    assert result.unknown_frees == 0
    replayer.slab.check()


def test_requests_above_max_order_are_counted() -> None:
    _, result = _replay([
        _kmalloc(0x1, size=3 << 20, alloc=4 << 20),       # order 10 > --max-order 9
        _cache_alloc(0x2, name="huge", size=5 << 20),      # above KMALLOC_MAX_SIZE
        _cache_alloc(0x3, name="huge", size=5 << 20),
        _page_alloc(0x10, order=10),
        _kfree(0x1), _kfree(0x2),
    ], max_order=9)
    assert result.too_large == 4
    assert "huge" in result.cache_errors
    assert result.unknown_frees == 0 and result.live_objects_at_end == 0


def test_snapshots_every_n_events_and_callback() -> None:
    events = _events(LS_TRACE)
    seen: list[ReplaySnapshot] = []
    replayer = Replayer()
    result = replayer.run(events, every=1000, callback=seen.append)
    assert [s.events for s in seen] == [0, 1000, 2000, 3000, 4000, 5000, len(events)]
    assert seen[-1].live_objects == result.live_objects_at_end
    assert seen[-1].page_layer_pages == result.page["live_pages_at_end"]
    times = [s.time for s in seen[1:]]
    assert times == sorted(times)


def test_a_page_allocation_left_waiting_at_the_end_gets_its_own_snapshot() -> None:
    # The trace ends before the CPU's next event tells whether the page was the kernel's slab
    # page: the end snapshot shows the events, a last one the page replayed.
    lines = [_kmalloc(0x1), _page_alloc(0x100), _kmalloc(0x2, cpu=1)]
    for every in (2, 1000):
        seen = list(Replayer().iter_snapshots(TraceParser().parse(lines), every=every))
        expected = [0, 2, 3, 3] if every == 2 else [0, 3, 3]
        assert [s.events for s in seen] == expected
        assert [s.page_layer_pages for s in seen[-2:]] == [0, 1]


def test_timeline_stays_bounded() -> None:
    replayer = Replayer(max_samples=16)
    replayer.run(_events(LS_TRACE), every=10)
    assert len(replayer.timeline) < 16
    assert replayer.timeline[-1].events == 5459


def test_layers_are_checked() -> None:
    assert parse_layers("slab,page") == ("slab", "page")
    with pytest.raises(InvalidArgumentError, match="unknown layer 'pages'"):
        parse_layers("slab,pages")


def test_replay_command_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plot = tmp_path / "replay.png"
    assert main(["replay", "--json", "--plot", str(plot), str(LS_TRACE)]) == 0
    document = json.loads(capsys.readouterr().out)
    events = _events(LS_TRACE)
    model = _model(events)
    for key in ("events", "lines", "bad_lines", "unknown_frees", "null_frees", "missed_frees",
                "live_objects_at_end", "bytes_alloc_mismatches"):
        assert key in document
    assert document["lines"] == 5459 and document["bad_lines"] == 0
    assert document["events"]["kmem_cache_alloc"] == 1756
    assert document["null_frees"] == model["null_frees"]
    assert document["unknown_frees"] == model["unknown_frees"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_command_text_and_bad_lines(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    trace = tmp_path / "t.txt"
    trace.write_text("\n".join([_kmalloc(1), "t-1 [000] ..... 1.000000: kfree: call_site=", ""]))
    assert main(["replay", str(trace)]) == 2
    assert f"{trace}:2: " in capsys.readouterr().err
    assert main(["replay", "--skip-bad", "--policy", "slab", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "1 malformed lines skipped" in out and f"first: {trace}:2: " in out
    assert main(["replay", "--json", "--skip-bad", str(trace)]) == 0
    assert json.loads(capsys.readouterr().out)["bad_lines"] == 1


def test_replay_command_rejects_a_negative_caches_count(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:  # a usage error, found by the parser
        main(["replay", "--caches", "-1", str(LS_TRACE)])
    assert stop.value.code == 2
    assert "argument --caches: '-1': must be 0 or more" in capsys.readouterr().err
    # A picture kmem cannot write fails before the replay (matplotlib's ValueError once came
    # after it, as a traceback).
    assert main(["replay", "--plot", "replay.foo", str(LS_TRACE)]) == 2
    assert "use a .png or .svg file name" in capsys.readouterr().err


def test_memory_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from kmem.cli.args import size_argument

    assert size_argument("1G") == 1 << 30
    assert size_argument("512M") == size_argument("512MiB") == 512 << 20
    assert size_argument("65536") == 65536
    assert size_argument("1T") == 1 << 40
    for bad in ("lots", "0", "1.5", "-1G"):  # kmem.show.scenario.parse_size's rules
        with pytest.raises(argparse.ArgumentTypeError, match="size"):
            size_argument(bad)
    # Every command words a bad size the same: an argparse usage error, exit status 2.
    for command in (["replay", "-"], ["html"], ["slabinfo"], ["demo"]):
        with pytest.raises(SystemExit) as exit_status:
            main([*command, "--memory", "lots"])
        assert exit_status.value.code == 2
        assert "argument --memory: bad size 'lots'" in capsys.readouterr().err


def test_replay_and_stat_read_stdin(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import sys

    for command in (["replay", "--json", "-"], ["stat", "--json", "-"]):
        stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(LS_TRACE.read_bytes())))
        monkeypatch.setattr(sys, "stdin", stdin)
        assert main(command) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["lines"] == 5459
        assert document["events"]["kfree"] == 1029
