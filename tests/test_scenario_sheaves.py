"""Scenarios with sheaves (`memory ... kernel K`, `cache NAME SIZE sheaves N`): what a student
sees of 6.18's sheaves, step by step, and the snapshot the page draws."""

from __future__ import annotations

import pytest

from kmem.errors import KmemError
from kmem.show.scenario import ScenarioSyntaxError, parse
from kmem.show.scenario_run import run_all
from kmem.show.snapshot import scenario_document

SCENARIO = """\
memory 1M page 4K cpus 2 kernel 6.18
cache maple 256 sheaves 4
obj a maple
obj b maple
free a
obj c maple cpu 1
"""


def test_the_steps_say_where_each_object_goes() -> None:
    texts = [result.text for result, _ in run_all(parse(SCENARIO))]
    assert "a main sheaf of up to 4 objects" in texts[0]
    assert "refilled with 4 objects from the slabs" in texts[1]
    assert "the main sheaf of CPU 0 of cache maple held a free object" in texts[2]
    assert "goes onto the main sheaf of CPU 0 of cache maple, not back to its slab" in texts[3]
    assert "refilled with 4 objects" in texts[4]  # CPU 1's main sheaf was empty


def test_the_snapshot_has_each_cpus_sheaves_and_marks_the_objects_in_them() -> None:
    frames = scenario_document(parse(SCENARIO))["frames"]
    maple = [next(c for c in frame["caches"] if c["name"] == "maple") for frame in frames[2:]]
    assert [m["sheaves"]["cpus"] for m in maple] == [
        [[3, -1], [0, -1]], [[2, -1], [0, -1]], [[3, -1], [0, -1]], [[3, -1], [3, -1]]]
    for m in maple:
        held = sum(main + max(spare, 0) for main, spare in m["sheaves"]["cpus"])
        bits = "".join(slab[4] for slab in m["slabs"])
        assert bits.count("s") == held  # every object in a sheaf is marked, none twice
        assert m["sheaves"]["capacity"] == 4
    # users hold a, b / b / b, c: the slab's "1" marks are exactly the live names
    assert ["".join(s[4] for s in m["slabs"]).count("1") for m in maple] == [1, 2, 1, 2]


def test_a_cache_without_sheaves_has_no_sheaves_entry() -> None:
    text = SCENARIO.replace(" sheaves 4", "")
    frames = scenario_document(parse(text))["frames"]
    assert all("sheaves" not in c for f in frames for c in f["caches"])
    assert all("s" not in slab[4] for f in frames for c in f["caches"] for slab in c["slabs"]
               if len(slab) > 4)


@pytest.mark.parametrize(("text", "message"), [
    ("memory 1M kernel 5.0\n", "<scenario>:1: kernel must be one of 6.17, 6.18, 7.0, got '5.0'"),
    ("cache x 64 sheaves many\n", "<scenario>:1: expected a whole number, got 'many'"),
])
def test_bad_kernel_and_sheaf_options_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ScenarioSyntaxError) as error:
        parse(text)
    assert str(error.value) == message


def test_sheaves_on_a_kernel_without_them_fail_on_their_line() -> None:
    scenario = parse("memory 1M kernel 6.17\ncache x 64 sheaves 4\n")
    with pytest.raises(KmemError) as error:
        list(run_all(scenario))
    assert str(error.value).startswith("<scenario>:2: sheaf_capacity needs SLUB of Linux 6.18")
