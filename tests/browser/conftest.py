"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright.

``make test`` runs ensure-chromium.sh first, which installs chromium as root. If chromium is
still missing or cannot start, the tests FAIL — except when we are not root and there is no
chromium at all: then nobody could have installed it, and they skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kmem.show.html_page import write_page

CHROMIUM = os.environ.get("KMEM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM) and os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing and we are not root to install it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Any, tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Any]]:
    """Write a document's page to a file, open it; JavaScript errors fail the test."""
    pages: list[Any] = []
    errors: list[str] = []

    def opener(document: dict[str, Any]) -> Any:
        path = write_page(document, tmp_path / f"page{len(pages)}.html")
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        # Block every network request: the page must be self-contained.
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            "file://") else route.abort())
        page.goto(path.as_uri())
        pages.append(page)
        return page

    yield opener
    for page in pages:
        page.close()
    assert errors == []
