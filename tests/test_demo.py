"""The seed example, state by state, as `kmem demo` tells it."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from kmem.cli.main import main
from kmem.show.demo import DemoBlock, run_demo

KiB = 1024


def _layout(blocks: Sequence[DemoBlock]) -> list[tuple[str, int, str]]:
    return [(b.name, 1 << b.order, b.state) for b in blocks]


def test_seed_example_splits_then_coalesces_state_by_state() -> None:
    demo = run_demo(256 * KiB, 21 * KiB)
    assert demo.order == 3  # 21 KB rounds up to 32 KB: 8 pages
    by_title = [(step.title, _layout(step.blocks)) for step in demo.steps]
    pages = 64
    assert by_title[0] == ("start", [("256 KB segment", pages, "free")])
    assert by_title[2] == ("split", [("A_L", 32, "splitting"), ("A_R", 32, "free")])
    assert by_title[3] == (
        "split", [("B_L", 16, "splitting"), ("B_R", 16, "free"), ("A_R", 32, "free")]
    )
    assert by_title[5] == (
        "allocate",
        [("C_L", 8, "allocated"), ("C_R", 8, "free"), ("B_R", 16, "free"), ("A_R", 32, "free")],
    )
    assert demo.steps[5].nr_free == (0, 0, 0, 1, 1, 1, 0)
    coalesces = [step for step in demo.steps if step.title == "coalesce"]
    assert [step.text.split(":")[0] for step in coalesces] == [
        "Coalesce C_L with its buddy C_R into B_L",
        "Coalesce B_L with its buddy B_R into A_L",
        "Coalesce A_L with its buddy A_R into 256 KB segment",
    ]
    assert demo.steps[-1].nr_free == (0, 0, 0, 0, 0, 0, 1)
    assert _layout(demo.steps[-1].blocks) == [("256 KB segment", pages, "free")]


def test_other_sizes_split_as_deep_as_needed() -> None:
    demo = run_demo(1024 * KiB, 4 * KiB)
    splits = [step for step in demo.steps if step.title == "split"]
    assert len(splits) == 8  # order 8 down to order 0
    assert demo.steps[-1].nr_free[-1] == 1


def test_demo_json_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["request"] == 21 * KiB
    assert [s["title"] for s in data["steps"]].count("coalesce") == 3


def test_demo_terminal_output_names_every_buddy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for name in ("A_L", "A_R", "B_L", "B_R", "C_L", "C_R", "21 KB rounds up to 32 KB"):
        assert name in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--memory", "100K"], "power-of-two number of pages"),
        (["demo", "--request", "1M"], "does not fit"),
        (["demo", "--page-size", "3K"], "page_size must be a power of two"),
    ],
)
def test_demo_bad_options_get_clear_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
