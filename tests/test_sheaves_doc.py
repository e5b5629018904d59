"""docs/sheaves.md's examples run as written (doctest)."""

from __future__ import annotations

import doctest
from pathlib import Path

DOC = Path(__file__).parents[1] / "docs" / "sheaves.md"


def test_sheaves_guide_examples_run() -> None:
    text = DOC.read_text()
    blocks = [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    test = doctest.DocTestParser().get_doctest("\n".join(blocks), {}, "docs/sheaves.md",
                                               str(DOC), 0)
    assert len(test.examples) > 20, "the guide lost its examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
