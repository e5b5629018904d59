"""docs/zones.md's examples run as written (doctest): the page machine's guide stays true."""

from __future__ import annotations

import doctest
from pathlib import Path

GUIDE = Path(__file__).parents[1] / "docs" / "zones.md"


def test_the_zones_guide_examples_run() -> None:
    text = GUIDE.read_text()
    section = text[text.index("<!-- section:zones "):text.index("<!-- /section:zones -->")]
    test = doctest.DocTestParser().get_doctest(section, {}, "docs/zones.md", str(GUIDE), 0)
    assert len(test.examples) >= 10, "the guide lost its examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
