"""The scenario language: parsing, line-numbered errors, running, and `kmem run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmem.cli.main import main
from kmem.errors import InvalidArgumentError, KmemError, OutOfMemoryError
from kmem.show.scenario import (
    BUILTIN,
    ScenarioNameError,
    ScenarioSyntaxError,
    load,
    parse,
    parse_size,
)
from kmem.show.scenario_run import ScenarioRun, run_all

KB = 1024


def test_parse_sizes() -> None:
    assert parse_size("21K") == 21 * KB
    assert parse_size("1.5M") == 1536 * KB
    assert parse_size("100") == 100
    assert parse_size("4KB") == 4 * KB
    assert parse_size("9007199254740993") == 2**53 + 1  # exact, where a float rounds
    assert parse_size("1.0009765625K") == 1025
    assert parse_size("1") == 1
    with pytest.raises(InvalidArgumentError, match="too many digits"):
        parse_size("9" * 5000)
    for bad in ("", "K", "-1", "0", "1.3", "12X", "1.0001K", "0.1", "1.00000000000000001"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_parse_machine_and_comments() -> None:
    scenario = parse("# c\nmemory 1M page 8K max_order 5  # tail\n\nalloc A 21K # x\n", "t")
    assert (scenario.memory, scenario.page_size, scenario.max_order) == (1 << 20, 8 * KB, 5)
    assert len(scenario.actions) == 1
    action = scenario.actions[0]
    assert (action.line, action.verb, action.args) == (4, "alloc", ("A", 21 * KB))


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("alloc A 21K\nallocate B 3K\n", 2, "unknown command 'allocate'"),
        ("memory 256K\nalloc A\n", 2, "alloc needs 2 argument(s)"),
        ("alloc A 2Q\n", 1, "bad size '2Q'"),
        ("alloc A 21K\nmemory 256K\n", 2, "'memory' must be the first command"),
        ("memory 256K colour red\n", 1, "unexpected 'colour'"),
        ("memory 256K page=8K\n", 1, "write option 'page=8K' as page 8K, without '='"),
        ("memory 256K\nkmalloc a 64 cpu=\n", 2, "write option 'cpu=' as cpu VALUE, without '='"),
        ("memory 256K colour=red\n", 1, "unexpected 'colour=red' (options: page,"),
        ("memory 256K page\n", 1, "option 'page' needs a value"),
        ("memory 256K policy slob\n", 1, "policy must be slub or slab"),
        ("\n\nalloc A? 4K\n", 3, "bad name 'A?'"),
        ("pages A x\n", 1, "expected a whole number"),
    ],
)
def test_syntax_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ScenarioSyntaxError) as info:
        parse(text, "s.kmem")
    assert str(info.value).startswith(f"s.kmem:{line}: ")
    assert words in str(info.value)


def _state(run: ScenarioRun) -> tuple[object, ...]:
    buddy = run.buddy
    return (buddy.nr_free, bytes(buddy.mem_map.state), dict(run.names))


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("memory 64K\nalloc A 8K\nfree B\n", ScenarioNameError, "'B' is not allocated"),
        ("memory 64K\nalloc A 8K\nalloc A 4K\n", ScenarioNameError, "'A' is already allocated"),
        ("memory 64K\nalloc A 64K\nalloc B 4K\n", OutOfMemoryError, "no free block"),
        ("memory 64K\nalloc A 8K\nalloc B 8M\n", InvalidArgumentError, "above max_order"),
    ],
)
def test_run_errors_name_the_line_and_change_nothing(
    text: str, error: type[KmemError], words: str
) -> None:
    scenario = parse(text, "r.kmem")
    run = ScenarioRun(scenario)
    for action in scenario.actions[:-1]:
        run.execute(action)
    before = _state(run)
    with pytest.raises(error) as info:
        run.execute(scenario.actions[-1])
    assert str(info.value).startswith("r.kmem:3: ")
    assert words in str(info.value)
    assert _state(run) == before
    run.buddy.check()


def test_seed_buddy_part_matches_the_textbook() -> None:
    # The textbook: 21 KB -> 32 KB; 256 KB splits into A_L/A_R (128 KB), B_L/B_R (64 KB),
    # C_L/C_R (32 KB); C_L (pfns 0-7) is allocated, leaving one free block of 32, 64 and 128 KB.
    results = list(run_all(load("seed-buddy")))
    alloc, state = results[0]
    assert alloc.highlight == ((0, 3),)
    assert "21 KB rounds up to 32 KB" in alloc.text
    assert [s.kind for s in alloc.steps].count("split") == 3
    free, state = results[1]
    assert [s.kind for s in free.steps] == ["free", "merge", "merge", "merge", "place"]
    assert state.buddy.nr_free[6] == 1 and state.buddy.nr_free_pages == 64
    assert free.highlight == ((0, 6),)


def test_pages_and_names_are_reusable_after_free() -> None:
    scenario = parse("memory 64K\npages A 2\nfree A\npages A 0\n")
    results = [r for r, _ in run_all(scenario)]
    assert [r.highlight for r in results] == [((0, 2),), ((0, 4),), ((0, 0),)]


def test_load_builtin_and_file(tmp_path: Path) -> None:
    assert set(BUILTIN) >= {"seed", "seed-buddy"}
    assert load().name == "seed"
    path = tmp_path / "x.kmem"
    path.write_text("alloc A 4K\n")
    assert load(str(path)).name == "x.kmem"
    with pytest.raises(ScenarioNameError, match="cannot read scenario"):
        load(str(tmp_path / "missing.kmem"))


def test_kmem_run_prints_steps_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "seed-buddy"]) == 0
    out = capsys.readouterr().out
    assert "line 4" in out and "21 KB rounds up to 32 KB" in out
    assert main(["run", "seed-buddy", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [s["verb"] for s in document["steps"]] == ["alloc", "free"]
    assert document["steps"][0]["nr_free"][3:7] == [1, 1, 1, 0]


def test_kmem_run_prints_a_scenario_name_with_brackets_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s[bold].txt"
    path.write_text("memory 256K\nalloc A 4K\n")
    assert main(["run", "--no-map", str(path)]) == 0
    assert capsys.readouterr().out.startswith("s[bold].txt: 256 KB")


def test_kmem_run_reports_errors_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.kmem"
    path.write_text("memory 64K\nalloc A 8K\nfree B\n")
    assert main(["run", str(path)]) == 2
    assert "bad.kmem:3: 'B' is not allocated" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # once looped forever; now a usage error
        main(["run", "seed-buddy", "--width", "0"])
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert "argument --width: '0': must be 1 or more" in captured.err and captured.out == ""
