"""Scenario lines that drive the slab layer: cache, obj, kmalloc, free/kfree."""

from __future__ import annotations

import pytest

from kmem.errors import KmemError
from kmem.show.scenario import ScenarioNameError, load, parse
from kmem.show.scenario_run import ScenarioRun, run_all
from kmem.show.snapshot import LABEL_BASE, scenario_document

KB = 1024


def test_seed_slab_part() -> None:
    # After the buddy part the segment is one free 256 KB block again. A 3 KB object cache
    # and a 7 KB one then each need a slab; SLUB picks order 3 (32 KB) for both here, so
    # the first slab splits 256 -> 128 -> 64 -> 32 and takes [0-7], the second takes the
    # free 32 KB buddy [8-15] without splitting.
    results = {r.source: (r, run) for r, run in run_all(load("seed"))}
    t1, run = results["obj t1 tcb"]
    assert t1.highlight == ((0, 3),)
    assert [s.kind for s in t1.steps].count("split") == 3
    assert "cache tcb has no free object" in t1.text
    p1, run = results["obj p1 pcb"]
    assert p1.highlight == ((8, 3),)
    assert [s.kind for s in p1.steps] == ["take", "alloc"]
    assert p1.address == 8 * 4 * KB  # object 0 of the slab at pfn 8
    free_t1, run = results["free t1"]
    assert "is empty now" in free_t1.text
    assert run.slab is not None
    run.slab.check()


def test_objects_fill_a_slab_before_a_new_one() -> None:
    # pcb holds objs_per_slab objects per slab: the next one needs a second slab.
    scenario = parse("memory 256K\ncache pcb 7K\n" + "".join(
        f"obj p{i} pcb\n" for i in range(5)))
    results = [r for r, _ in run_all(scenario)]
    run = ScenarioRun(scenario)
    for action in scenario.actions[:1]:
        run.execute(action)
    per_slab = run.caches["pcb"].objs_per_slab
    assert per_slab == 4  # (32 KB // 7 KB) with SLUB's order 3 for 7 KB objects
    new_slabs = [r for r in results[1:] if r.steps]
    assert len(new_slabs) == 2  # p0 and p4 each take a new slab
    assert results[1 + per_slab].name == "p4"
    addresses = [r.address for r in results[1:per_slab + 1]]
    first = addresses[0]
    assert first is not None
    assert addresses == [first + i * 7 * KB for i in range(per_slab)]


def test_kmalloc_small_and_large() -> None:
    scenario = parse("memory 256K\nkmalloc k1 100\nkmalloc big 20K\nkfree big\nfree k1\n")
    results = [r for r, _ in run_all(scenario)]
    assert "kmalloc-128" in results[0].text
    assert "too big for the kmalloc caches" in results[1].text
    assert results[1].highlight[0][1] == 3  # 20 KB: an order-3 (32 KB) block of pages
    assert results[2].steps[0].kind == "free"
    assert "still holds" not in results[3].text and "is empty now" in results[3].text


def test_slab_errors_name_the_line_and_change_nothing() -> None:
    scenario = parse("memory 64K\ncache pcb 7K\nobj p1 pcb\nobj p2 tcb\ncache pcb 1K\n", "s")
    run = ScenarioRun(scenario)
    for action in scenario.actions[:2]:
        run.execute(action)
    before = (run.buddy.nr_free, bytes(run.buddy.mem_map.state), dict(run.names))
    with pytest.raises(ScenarioNameError, match=r"^s:4: no cache 'tcb'"):
        run.execute(scenario.actions[2])
    with pytest.raises(ScenarioNameError, match=r"^s:5: cache 'pcb' already exists"):
        run.execute(scenario.actions[3])
    assert (run.buddy.nr_free, bytes(run.buddy.mem_map.state), dict(run.names)) == before


def test_out_of_memory_in_a_cache_names_the_line() -> None:
    # 64 KB holds two 32 KB slabs of 4 objects: the ninth object finds no pages.
    text = "memory 64K\ncache pcb 7K\n" + "".join(f"obj p{i} pcb\n" for i in range(9))
    scenario = parse(text, "oom")
    run = ScenarioRun(scenario)
    for action in scenario.actions[:-1]:
        run.execute(action)
    before = (run.buddy.nr_free, dict(run.names))
    with pytest.raises(KmemError, match=r"^oom:11: "):
        run.execute(scenario.actions[-1])
    assert (run.buddy.nr_free, dict(run.names)) == before


def test_document_labels_slab_pages_and_lists_caches() -> None:
    document = scenario_document(load("seed"))
    frame = next(f for f in document["frames"] if f["source"] == "obj p1 pcb")
    codes = {frame["blocks"][i]: frame["blocks"][i + 2] for i in range(0, len(frame["blocks"]), 3)}
    labels = document["labels"]
    assert labels[codes[0] - LABEL_BASE] == "slab:tcb"
    assert labels[codes[8] - LABEL_BASE] == "slab:pcb"
    caches = {c["name"]: c for c in frame["caches"]}
    assert set(caches) == {"tcb", "pcb"}  # empty kmalloc caches are not listed
    # pcb's one slab at pfn 8: 1 of 4 objects used, object 0 at the slab's first byte (SLUB
    # without debugging puts nothing before it), and it is object 0 that is in use.
    assert caches["pcb"]["slabs"] == [[8, 1, 4, 8 * 4096, "1000"]]
    assert caches["tcb"]["slabs"][0][:2] == [0, 1]
    assert frame["owners"] == [[0, "t1"], [8 * 4096, "p1"]]


def test_shrink_gives_empty_slabs_back_and_destroy_needs_an_empty_cache() -> None:
    text = ("memory 256K\ncache pcb 7K\nobj p1 pcb\nshrink pcb\ndestroy pcb\nfree p1\n"
            "shrink pcb\ndestroy pcb\n")
    scenario = parse(text, "sd")
    run = ScenarioRun(scenario)
    results = [run.execute(action) for action in scenario.actions[:3]]
    assert "no slab was empty" in results[2].text
    slab = run.slab
    assert slab is not None
    before = (run.buddy.nr_free, dict(run.names), slab.slab_pages())
    with pytest.raises(KmemError, match=r"^sd:5: cache 'pcb' still has 1 allocated") as info:
        run.execute(scenario.actions[3])
    assert len(getattr(info.value, "leaks", ())) == 1  # the error keeps its details
    assert (run.buddy.nr_free, dict(run.names), slab.slab_pages()) == before
    run.execute(scenario.actions[4])  # free p1: its slab stays, empty
    assert run.buddy.nr_free_pages == 64 - 8
    shrink = run.execute(scenario.actions[5])
    # The slab's 8 pages go back and merge all the way: one free 256 KB block again.
    assert run.buddy.nr_free_pages == 64 and run.buddy.nr_free[6] == 1
    assert shrink.highlight == ((0, 6),) and "256 KB block [pfn 0-63]" in shrink.text
    destroy = run.execute(scenario.actions[6])
    assert "holds no slab" in destroy.text and "pcb" not in run.caches
    with pytest.raises(ScenarioNameError, match=r"^sd:\d+: no cache 'pcb'"):
        run.execute(parse(text + "obj p2 pcb\n", "sd").actions[-1])
    slab.check()


def test_kmem_run_draws_slab_pages(capsys: pytest.CaptureFixture[str]) -> None:
    from kmem.cli.main import main

    assert main(["run", "seed"]) == 0
    out = capsys.readouterr().out
    # After "obj p1 pcb": tcb's slab [0-7], pcb's slab [8-15], free 64 KB [16-31] and
    # 128 KB [32-63]; each block marked by its first cell.
    section = out.split("line 11: obj p1 pcb")[1]
    assert "t" + "█" * 7 + "p" + "█" * 7 + "4" + "·" * 15 + "5" + "·" * 31 in section


def test_kmem_run_json_lists_caches(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from kmem.cli.main import main

    assert main(["run", "seed", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    by_source = {step["source"]: step for step in steps}
    caches = {c["name"]: c for c in by_source["obj p1 pcb"]["caches"]}
    assert caches["pcb"]["active_objs"] == 1 and caches["pcb"]["nr_slabs"] == 1
    assert by_source["obj p1 pcb"]["live"] == ["p1", "t1"]


def test_merged_caches_share_slabs_under_both_names() -> None:
    # Two 3 KB caches without constructor or special flags merge (Linux find_mergeable):
    # objects of either name come from the same slabs, and destroying one name keeps the
    # cache alive for the other, objects included. Found by the stateful test.
    text = ("memory 256K\ncache tcb 3K\ncache pcb 3K\nobj a pcb\nobj b tcb\ndestroy tcb\n"
            "free a\nfree b\ndestroy pcb\n")
    results = {r.source: r for r, _ in run_all(parse(text, "m"))}
    assert "merged into the existing cache tcb" in results["cache pcb 3K"].text
    assert results["obj a pcb"].highlight == results["obj b tcb"].highlight == ((0, 3),)
    assert "only the name goes" in results["destroy tcb"].text
    assert "still holds 1 object" in results["free a"].text
    assert "256 KB block [pfn 0-63]" in results["destroy pcb"].text
