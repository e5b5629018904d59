"""`kmem replay --layout`: a trace's page events through the page machine's per-CPU lists.

The machine's predictions are held against linux_zone_model (a plain model of 6.18's rules),
fed the same events by a plain restatement of the replay's rules; the machine's invariants are
checked after every event; the traced side is counted plainly from the events.
"""

from __future__ import annotations

import json
import lzma
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fixture_files import DD_TRACE, LS_TRACE, ZONEINFO
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.page.errors import UnknownZoneError, ZoneinfoFormatError
from kmem.page.gfp import parse_gfp_flags
from kmem.trace.events import (
    GFP,
    KIND,
    MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_ZONE_LOCKED,
    MM_PAGE_FREE,
    MM_PAGE_FREE_BATCHED,
    MM_PAGE_PCPU_DRAIN,
    ORDER,
    PFN,
    TraceEvent,
)
from kmem.trace.parse import TraceParser
from kmem.trace.replay import Replayer
from linux_zone_model import LinuxZoneModel

GFPS = ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_ZERO", "GFP_KERNEL|__GFP_RECLAIMABLE",
        "GFP_ATOMIC", "GFP_NOWAIT"]
PAGE_KINDS = [MM_PAGE_ALLOC, MM_PAGE_ALLOC, MM_PAGE_ALLOC, MM_PAGE_FREE, MM_PAGE_FREE,
              MM_PAGE_FREE_BATCHED, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_PCPU_DRAIN]


def _page_event(kind: int, cpu: int, pfn: int, order: int = 0, gfp: str = "", second: int = 1
                ) -> TraceEvent:
    return (kind, cpu, f"{second}.000000:", "", "", "", 0, 0, gfp, -1, pfn, order, 1)


def _fixture_events(path: Any) -> list[TraceEvent]:
    with lzma.open(path, "rt") as lines:
        return list(TraceParser().parse(lines))


def _model_replay(events: list[TraceEvent], nr_cpus: int, pages: int, batch: int | None
                  ) -> tuple[list[dict[str, int]], dict[str, list[int]]]:
    """What the machine should predict, from the plain model, and the traced counts: the
    replay's rules restated. Traced pfn -> model pfn; a live pfn allocated again is freed
    first. mm_page_free puts the page in its CPU's waiting list; its mm_page_free_batched
    frees it (a batched free of a live pfn nobody freed frees it too, others repeat a free);
    any other page event of the CPU (but a drain right after a free: that free's), a new
    second (then a vmstat tick per second passed) and the end free the CPU's waiting pages
    in order."""
    model = LinuxZoneModel([("Normal", 0, pages, pages, pages)], nr_cpus, pcp_batch=batch)
    live: dict[int, tuple[int, int]] = {}
    waiting: list[list[int]] = [[] for _ in range(nr_cpus)]
    waiting_cpu: dict[int, int] = {}
    just_freed = [False] * nr_cpus  # the CPU's last page event put a page on its pcp
    traced = {"locked": [0] * nr_cpus, "drain": [0] * nr_cpus}

    def free(cpu: int, pfn: int) -> None:
        waiting[cpu].remove(pfn)
        del waiting_cpu[pfn]
        model.free(*live.pop(pfn), cpu)
        just_freed[cpu] = True

    def free_waiting(cpu: int) -> None:
        for pfn in list(waiting[cpu]):
            free(cpu, pfn)

    second = None
    for event in events:
        kind, cpu, pfn, order = event[KIND], event[1] % nr_cpus, event[PFN], event[ORDER]
        now = int(str(event[2]).split(".")[0])
        if second is not None and now != second:
            for each in range(nr_cpus):
                free_waiting(each)
            for _ in range(min(now - second, 64)):
                model.tick()
        second = now
        if kind in (MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_ALLOC):
            just_freed[cpu] = False
        if kind == MM_PAGE_FREE:
            if pfn in live and pfn not in waiting_cpu:
                waiting[cpu].append(pfn)
                waiting_cpu[pfn] = cpu
            continue
        if kind == MM_PAGE_FREE_BATCHED:
            if waiting_cpu.get(pfn) == cpu:
                free(cpu, pfn)
            elif pfn in live and pfn not in waiting_cpu:
                model.free(*live.pop(pfn), cpu)
                just_freed[cpu] = True
            continue
        if kind != MM_PAGE_PCPU_DRAIN or not just_freed[cpu]:
            free_waiting(cpu)
        if kind == MM_PAGE_ALLOC_ZONE_LOCKED:
            traced["locked"][cpu] += 1
        elif kind == MM_PAGE_PCPU_DRAIN:
            traced["drain"][cpu] += 1
        else:
            if pfn in waiting_cpu:
                free(waiting_cpu[pfn], pfn)
            if pfn in live:
                model.free(*live.pop(pfn), cpu)
            got = model.alloc(order, parse_gfp_flags(event[GFP]), cpu)
            if got is not None:
                live[pfn] = (got, order)
    for each in range(nr_cpus):
        free_waiting(each)
    return model.events, traced


events_strategy = st.lists(
    st.tuples(st.sampled_from(PAGE_KINDS), st.integers(0, 3), st.integers(0, 40),
              st.sampled_from([0, 0, 0, 1, 2, 3, 4, 9]), st.sampled_from(GFPS),
              st.sampled_from([0, 0, 0, 0, 0, 0, 1, 2])),
    max_size=120)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=events_strategy, nr_cpus=st.integers(1, 3), batch=st.sampled_from([None, 2, 5]))
def test_predictions_agree_with_the_model_and_invariants_hold(
        raw: list[tuple[int, int, int, int, str, int]], nr_cpus: int, batch: int | None) -> None:
    events, second = [], 1
    for kind, cpu, pfn, order, gfp, gap in raw:
        second += gap
        events.append(_page_event(kind, cpu, pfn << 10, order, gfp, second))
    pages = 2048  # 8 MiB: watermarks, drains and fallbacks come early
    replayer = Replayer(layers=("page",), memory=pages * 4096, machine_cpus=nr_cpus,
                        pcp_batch=batch, warm="cold")
    machine_replay = replayer.machine_replay
    assert machine_replay is not None
    machine = machine_replay.machine
    result = replayer.run(events, every=1, callback=lambda _: machine.check())
    pcp = result.to_json()["pcp"]
    expected, traced = _model_replay(events, nr_cpus, pages, batch)
    for cpu in range(nr_cpus):
        got = pcp["predicted"]["per_cpu"][str(cpu)]
        assert got["mm_page_alloc_zone_locked"] == expected[cpu]["zone_locked"]
        assert got["mm_page_pcpu_drain"] == expected[cpu]["drain"]
        seen = pcp["traced"]["per_cpu"][str(cpu)]
        assert seen["mm_page_alloc_zone_locked"] == traced["locked"][cpu]
        assert seen["mm_page_pcpu_drain"] == traced["drain"][cpu]
    assert pcp["predicted"]["mm_page_alloc_zone_locked"] == sum(
        e["zone_locked"] for e in expected)
    assert sum(pcp["allocations_needing_refill"].values()) == pcp["pages"]["allocs"]
    assert sum(pcp["frees_causing_drain"].values()) == pcp["pages"]["frees"]
    first_second = second - sum(gap for *_, gap in raw) + raw[0][-1] if raw else second
    assert pcp["pages"]["vmstat_ticks"] == second - first_second


def test_which_allocations_refill_and_which_frees_drain() -> None:
    """A traced refill is the zone_locked run before an allocation on its CPU; a traced drain
    the pcpu_drain events after a free on its CPU. kmem's: what its machine did in that call."""
    events = [
        _page_event(MM_PAGE_ALLOC_ZONE_LOCKED, 0, 0x500),
        _page_event(MM_PAGE_ALLOC, 1, 0x600, 0, "GFP_KERNEL"),  # cpu 1: no lock traced
        _page_event(MM_PAGE_ALLOC, 0, 0x500, 0, "GFP_KERNEL"),  # cpu 0: the refill's
        _page_event(MM_PAGE_ALLOC, 0, 0x501, 0, "GFP_KERNEL"),  # from the list
        _page_event(MM_PAGE_FREE, 0, 0x501),
        _page_event(MM_PAGE_PCPU_DRAIN, 0, 0x501),
    ]
    result = Replayer(layers=("page",), machine=True, warm="cold").run(events)
    pcp = result.to_json()["pcp"]
    # kmem (cold) refills on both CPUs' first allocation; the trace only on cpu 0's.
    assert pcp["allocations_needing_refill"] == {
        "both": 1, "traced_only": 0, "predicted_only": 1, "neither": 1}
    # One page freed onto a list far below high: no drain predicted, one traced.
    assert pcp["frees_causing_drain"] == {
        "both": 0, "traced_only": 1, "predicted_only": 0, "neither": 0}
    assert pcp["traced"]["per_cpu"]["0"] == {"mm_page_alloc_zone_locked": 1,
                                             "mm_page_pcpu_drain": 1}


def test_the_traced_side_is_the_trace_s_own_event_counts() -> None:
    events = _fixture_events(DD_TRACE)
    result = Replayer(layout=str(ZONEINFO)).run(events)
    document = result.to_json()
    pcp = document["pcp"]
    assert set(pcp["traced"]) == set(pcp["predicted"]) == {
        "mm_page_alloc_zone_locked", "mm_page_pcpu_drain", "per_cpu"}
    for event in ("mm_page_alloc_zone_locked", "mm_page_pcpu_drain"):
        assert pcp["traced"][event] == document["events"][event]
        for side in ("traced", "predicted"):
            assert sum(c[event] for c in pcp[side]["per_cpu"].values()) == pcp[side][event]
    assert document["events"]["mm_page_alloc_zone_locked"] > 0  # (the fixture has refills)
    assert pcp["predicted"]["mm_page_alloc_zone_locked"] > 0  # (and kmem's direct buddy ones)
    # The machine sees the kernel's slab pages too, unlike the page layer's replay.
    assert pcp["pages"]["allocs"] == document["events"]["mm_page_alloc"]
    json.dumps(document)


def test_a_replay_without_a_machine_has_no_pcp_report() -> None:
    result = Replayer(layers=("page",)).run(_fixture_events(LS_TRACE))
    assert result.pcp is None
    assert "pcp" not in result.to_json()


def _allocations(count: int, cpu: int = 0) -> list[TraceEvent]:
    return [_page_event(MM_PAGE_ALLOC, cpu, 0x1000 + i, 0, "GFP_KERNEL") for i in range(count)]


def test_a_zoneinfo_warm_start_serves_allocations_from_its_counts() -> None:
    """The reference zoneinfo says cpu 0's Normal pcp held 2435 pages (high 4844): the first
    allocations come from that hidden stock without a refill, until it runs out."""
    cold = Replayer(layers=("page",), layout=str(ZONEINFO), warm="cold").run(_allocations(1))
    assert cold.pcp is not None and cold.pcp["predicted"]["mm_page_alloc_zone_locked"] > 0
    replayer = Replayer(layers=("page",), layout=str(ZONEINFO))
    warm = replayer.run(_allocations(1))
    assert warm.pcp is not None
    assert warm.pcp["predicted"]["mm_page_alloc_zone_locked"] == 0
    assert warm.pcp["zones"]["Normal"]["pcp_high"][0] == 4844
    assert replayer.machine_replay is not None
    pcp = replayer.machine_replay.machine.pcp("Normal", 0)
    assert pcp.count == warm.pcp["pages"]["warm_pages"] - 1
    many = Replayer(layers=("page",), layout=str(ZONEINFO)).run(_allocations(4000)).pcp
    assert many is not None
    assert many["pages"]["warm_pages"] <= 2435
    assert many["predicted"]["mm_page_alloc_zone_locked"] >= 4000 - 2435


def test_no_pcp_sends_every_allocation_to_the_buddy_lists() -> None:
    events = _allocations(100)
    result = Replayer(layers=("page",), no_pcp=True).run(events).pcp
    assert result is not None and result["pcp"] is False
    assert result["zone_lock"] == 100 and result["refills"] == 0  # each one a zone lock
    batched = Replayer(layers=("page",), pcp_batch=10, warm="cold").run(events).pcp
    assert batched is not None and batched["zone_lock"] < 100


@pytest.mark.parametrize(("options", "error"), [
    ({"warm": "lukewarm"}, InvalidArgumentError),
    ({"machine_cpus": 0}, InvalidArgumentError),
    ({"pcp_high": 0}, InvalidArgumentError),
    ({"min_free_kbytes": -1}, InvalidArgumentError),
    ({"layout": "Bogus=1G"}, UnknownZoneError),
])
def test_bad_machine_options_are_refused(options: dict[str, Any], error: type[Exception]
                                         ) -> None:
    with pytest.raises(error):
        Replayer(**options)


def test_a_bad_layout_file_names_its_line(tmp_path: Any, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    bad = tmp_path / "zoneinfo.txt"
    bad.write_text("Node 0, zone   Normal\n  pages free 5\n  bogus line\n")
    with pytest.raises(ZoneinfoFormatError, match=":3: cannot read 'bogus line'"):
        Replayer(layout=str(bad))
    assert main(["replay", "--layout", str(bad), str(LS_TRACE)]) == 2
    assert capsys.readouterr().err == (
        f"kmem replay: {bad}:3: cannot read 'bogus line'\n")
    with pytest.raises(SystemExit) as exit_info:  # (--cpus is checked by its argument type)
        main(["replay", "--cpus", "0", str(LS_TRACE)])
    assert exit_info.value.code == 2
    assert "argument --cpus: '0': CPUs are 1 to 4096" in capsys.readouterr().err


def test_the_cli_prints_the_comparison(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--layers", "page", "--layout", str(ZONEINFO), "--no-progress",
                 "--json", str(DD_TRACE)]) == 0
    document = json.loads(capsys.readouterr().out)
    traced = document["pcp"]["traced"]["mm_page_alloc_zone_locked"]
    predicted = document["pcp"]["predicted"]["mm_page_alloc_zone_locked"]
    assert main(["replay", "--layers", "page", "--layout", str(ZONEINFO), "--no-progress",
                 str(DD_TRACE)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines()
               if "all" in line.split() and "mm_page_alloc_zone_locked" in line)
    assert [word for word in row.split() if word.isdigit()] == [str(traced), str(predicted)]
    assert "zone-lock acquisitions" in out


def test_a_folio_batch_reaches_the_pcp_at_its_batched_events() -> None:
    """free_unref_folios traces every folio's mm_page_free, then commits each with its
    mm_page_free_batched: a drain after the first batched event is that page's."""
    events = [
        _page_event(MM_PAGE_ALLOC, 0, 0xA0, 0, "GFP_HIGHUSER_MOVABLE"),
        _page_event(MM_PAGE_ALLOC, 0, 0xB0, 0, "GFP_HIGHUSER_MOVABLE"),
        _page_event(MM_PAGE_FREE, 0, 0xA0),
        _page_event(MM_PAGE_FREE, 0, 0xB0),
        _page_event(MM_PAGE_FREE_BATCHED, 0, 0xA0),
        _page_event(MM_PAGE_PCPU_DRAIN, 0, 0x123),
        _page_event(MM_PAGE_FREE_BATCHED, 0, 0xB0),
        _page_event(MM_PAGE_FREE_BATCHED, 0, 0xB0),  # (a repeat)
    ]
    replayer = Replayer(layers=("page",), machine=True, warm="cold")
    seen: list[int] = []
    machine_replay = replayer.machine_replay
    assert machine_replay is not None
    pcp = machine_replay.machine.pcp("Normal", 0)
    result = replayer.run(events, every=1, callback=lambda _: seen.append(pcp.count))
    # After both mm_page_free events the pages are not on the list yet; each batched event
    # puts one there.
    assert seen[3] - seen[2] == 0 and seen[4] - seen[3] == 0
    assert seen[5] - seen[4] == 1 and seen[7] - seen[6] == 1
    assert result.pcp is not None
    drains = result.pcp["frees_causing_drain"]
    assert drains["both"] + drains["traced_only"] == 1 and sum(drains.values()) == 2
    assert result.pcp["pages"]["batched_duplicates"] == 1


@pytest.mark.parametrize(("layout", "message"), [
    ("Normal=1G,Normal=2G", "layout 'Normal=1G,Normal=2G': zone Normal given twice"),
    ("Normal=４G", "layout 'Normal=４G': zone Normal: bad size '４G'"),
])
def test_replay_reads_a_layout_of_sizes_as_zoneinfo_does(
        layout: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """One reader of --layout for every command: the same errors, nothing replayed."""
    for command in (["replay", "--layers", "page"], ["zoneinfo"]):
        assert main([*command, "--layout", layout, *([str(LS_TRACE)] if command[0] == "replay"
                                                      else [])]) == 2
        assert message in capsys.readouterr().err
