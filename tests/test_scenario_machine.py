"""Scenario verbs of the page machine (palloc, pfree, zone, pcp, drain): what a student sees
of the per-CPU lists, checked against linux_zone_model and the machine's invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from kmem.cli.main import main
from kmem.errors import InvalidArgumentError, KmemError
from kmem.page.errors import NoMigratetypeError, NoSuchCpuError
from kmem.page.gfp import parse_gfp_flags
from kmem.show.scenario import ScenarioNameError, ScenarioSyntaxError, parse
from kmem.show.scenario_run import ScenarioRun, run_all
from linux_zone_model import LinuxZoneModel

FREED_WAITS = """\
memory 4M cpus 2
palloc a 0 cpu 1 gfp GFP_HIGHUSER_MOVABLE
pfree a cpu 1
pcp cpu 1
zone
drain
"""


def test_a_freed_page_waits_on_its_cpu_list_until_a_drain() -> None:
    runs = list(run_all(parse(FREED_WAITS, "freed.kmem")))
    palloc, pfree, pcp, zone, drain = (result for result, _ in runs)
    machine = runs[-1][1].machine
    assert machine is not None
    pfn = int(palloc.text.split("pfn ")[1].split()[0], 16)
    assert "refilled" in palloc.text and "under the zone lock" in palloc.text
    assert "waits on cpu 1's pcp list" in pfree.text
    assert f"order 0 Movable: {pfn:#x}" in pcp.text
    assert "pageblocks (" in zone.text and zone.text.rstrip().endswith("MM")
    assert drain.text.startswith("drain_all_pages: ")
    assert machine.block_at(pfn)[2] == "free"  # (after the drain)
    machine.check()


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.booleans(), st.sampled_from([0, 0, 1, 3, 4]),
                                st.integers(0, 1), st.sampled_from(
                                    ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE", "GFP_ATOMIC"])),
                      max_size=40))
def test_palloc_and_pfree_follow_the_model(steps: list[tuple[bool, int, int, str]]) -> None:
    lines = ["memory 4M cpus 2"]
    live: list[str] = []
    model_live: list[tuple[int, int]] = []
    model = LinuxZoneModel([("Normal", 0, 1024, 1024, 1024)], 2)
    expected: list[int | None] = []
    for number, (alloc, order, cpu, gfp) in enumerate(steps):
        if alloc or not live:
            name = f"p{number}"
            lines.append(f"palloc {name} {order} cpu {cpu} gfp {gfp}")
            got = model.alloc(order, parse_gfp_flags(gfp), cpu)
            expected.append(got)
            if got is None:
                break  # (kmem raises OutOfMemoryError there: the run stops)
            live.append(name)
            model_live.append((got, order))
        else:
            lines.append(f"pfree {live.pop(0)} cpu {cpu}")
            model.free(*model_live.pop(0), cpu)
            expected.append(-1)
    run = ScenarioRun(parse("\n".join(lines), "random.kmem"))
    for action, want in zip(run.scenario.actions, expected, strict=True):
        try:
            result = run.execute(action)
        except KmemError:
            assert want is None
            break
        assert run.machine is not None
        run.machine.check()
        if action.verb == "palloc":
            assert want is not None and f"pfn {want:#x} " in result.text
    if run.machine is not None:
        for zone, model_zone in zip(run.machine.zones, model.zones, strict=True):
            assert [p.count for p in zone.pcps] == [p.count for p in model_zone.pcps]


@pytest.mark.parametrize(("text", "error", "message"), [
    ("palloc a 0 cpu 5", NoSuchCpuError, "bad.kmem:2: cpu 5 is not in 0..1"),
    ("palloc a 0 gfp __GFP_MOVABLE|__GFP_RECLAIMABLE", NoMigratetypeError, "bad.kmem:2: "),
    ("pfree nobody", ScenarioNameError, "bad.kmem:2: 'nobody' is not a palloc allocation"),
    ("palloc a 0\npalloc a 0", ScenarioNameError, "bad.kmem:3: 'a' is already allocated"),
    ("palloc a 0\npfree a cpu 9", NoSuchCpuError, "bad.kmem:3: cpu 9 is not in 0..1"),
])
def test_bad_lines_change_nothing(text: str, error: type[Exception], message: str) -> None:
    run = ScenarioRun(parse("memory 4M\n" + text, "bad.kmem"))
    *good, bad = run.scenario.actions
    for action in good:
        run.execute(action)
    machine = run._ensure_machine()
    before = (machine.zoneinfo(), machine.pagetypeinfo(), dict(run.machine_pages),
              [p.list(i) for z in machine.zones for p in z.pcps for i in range(14)])
    with pytest.raises(error) as raised:
        run.execute(bad)
    assert str(raised.value).startswith(message)
    assert before == (machine.zoneinfo(), machine.pagetypeinfo(), dict(run.machine_pages),
                      [p.list(i) for z in machine.zones for p in z.pcps for i in range(14)])
    machine.check()


def test_the_machine_needs_4k_pages_and_known_options() -> None:
    run = ScenarioRun(parse("memory 256K page 8K\npalloc a 0", "big.kmem"))
    with pytest.raises(InvalidArgumentError, match=r"big\.kmem:2: the page machine has 4 KiB"):
        run.execute(run.scenario.actions[0])
    with pytest.raises(ScenarioSyntaxError, match=r"x\.kmem:1: unexpected 'node'"):
        parse("pcp node 1", "x.kmem")


def test_kmem_run_shows_the_waiting_page(tmp_path: object, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "freed.kmem"
    path.write_text(FREED_WAITS)
    assert main(["run", "--no-map", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "waits on cpu 1's pcp list" in out and "order 0 Movable:" in out
