"""kmem.trace.json_text writes exactly what json.dumps(value, indent=2) writes: random documents
(every scalar json knows, keys it converts, nesting, empty containers) and kmem stat --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from kmem.cli.main import main
from kmem.trace.json_text import json_text

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
           | st.integers(-(1 << 80), 1 << 80))
KEYS = st.text() | st.integers() | st.floats() | st.booleans() | st.none()
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: (st.lists(inner, max_size=5) | st.lists(inner, max_size=3).map(tuple)
                   | st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=40)


@given(DOCUMENTS)
def test_json_text_is_json_dumps_with_indent_2(document: Any) -> None:
    assert json_text(document) == json.dumps(document, indent=2)


def test_what_json_refuses_is_refused_the_same_way() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        json_text({"a": [1, {2, 3}]})
    with pytest.raises(TypeError, match="keys must be str"):
        json_text({(1, 2): 3})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        json_text({"x": loop})


def test_kmem_stat_json_is_the_standard_librarys_text(capsys: pytest.CaptureFixture[str]) -> None:
    trace = Path(__file__).parent / "fixtures" / "traces" / "kmem-6.18-ls.txt.xz"
    assert main(["stat", "--json", str(trace)]) == 0
    out = capsys.readouterr().out
    assert out == json.dumps(json.loads(out), indent=2) + "\n"
    assert json.loads(out)["slab"]  # (a real document, with its tables)
