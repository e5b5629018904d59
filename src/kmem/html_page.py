"""One self-contained HTML page that replays a scenario or a trace step by step.

``build_page(document)`` inlines the template (kmem/web/page.html), its stylesheet and script,
and the snapshot document (kmem/snapshot.py) into a single file: no network, no other file is
needed to open it. The JSON goes into a ``<script type="application/json">`` element; "</" is
escaped as "<\\/" so no string inside the data can close that element early.

Why a template with placeholders and not a templating library: three substitutions do not need
a dependency, and the web files stay plain HTML/CSS/JS that editors and linters understand.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

from kmem.scenario import Scenario
from kmem.snapshot import scenario_document


def _web_file(name: str) -> str:
    return resources.files("kmem").joinpath("web", name).read_text(encoding="utf-8")


def build_page(document: dict[str, Any]) -> str:
    """The complete page for a snapshot document, as one HTML string."""
    data = json.dumps(document, separators=(",", ":")).replace("</", "<\\/")
    page = _web_file("page.html")
    # The data goes in last: nothing inside it is ever mistaken for a placeholder.
    page = page.replace("__KMEM_TITLE__", html.escape(str(document.get("title", "kmem"))))
    page = page.replace("__KMEM_CSS__", _web_file("page.css"))
    page = page.replace("__KMEM_JS__", _web_file("page.js"))
    return page.replace("__KMEM_DATA__", data)


def scenario_page(scenario: Scenario) -> str:
    """The page replaying a scenario."""
    return build_page(scenario_document(scenario))


def write_page(document: dict[str, Any], path: str | Path) -> Path:
    """Write the page for ``document`` to ``path``; return the path."""
    path = Path(path)
    path.write_text(build_page(document), encoding="utf-8")
    return path
