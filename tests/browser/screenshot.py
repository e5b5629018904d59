"""Regenerate docs/screenshot.png, the README's picture of the page (not a test).

    .venv/bin/python tests/browser/screenshot.py [STEP_SOURCE]

Opens the seed example's page in headless Chromium, goes to the step whose line is
STEP_SOURCE (default "obj t1 tcb": a new slab split out of the buddy allocator) and saves the
visible page.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from kmem.show.html_page import write_page
from kmem.show.scenario import load
from kmem.show.snapshot import scenario_document

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    wanted = sys.argv[1] if len(sys.argv) > 1 else "obj t1 tcb"
    document = scenario_document(load("seed"))
    step = [frame["source"] for frame in document["frames"]].index(wanted)
    out = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
    out.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        page_file = write_page(document, Path(tmp) / "seed.html")
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(page_file.as_uri())
        page.evaluate("i => window.kmem.go(i)", step)
        page.screenshot(path=str(out))
        browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
