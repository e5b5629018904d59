"""The README's buddy-allocator examples run as written (doctest)."""

from __future__ import annotations

import doctest
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def _section(name: str) -> str:
    text = README.read_text()
    start = text.index(f"<!-- section:{name} ")
    return text[start : text.index(f"<!-- /section:{name} -->", start)]


def test_buddy_section_examples_run() -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(_section("buddy"), {}, "README buddy", str(README), 0)
    assert test.examples, "the buddy section lost its examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
