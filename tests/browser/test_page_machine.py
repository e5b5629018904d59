"""The replay page's page machine panel in a real browser: a freed page waits on its CPU's
pcp list (the panel lists it there), pageblocks are coloured by migratetype, a drain empties
the lists. Expected values come from the machine itself (kmem.page.machine), not the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kmem.show.scenario import parse
from kmem.show.scenario_run import run_all
from kmem.show.snapshot import scenario_document

OpenPage = Callable[[dict[str, Any]], Any]
SCENARIO = """\
memory 4M cpus 2
pages x 0
palloc a 0 cpu 1 gfp GFP_HIGHUSER_MOVABLE
pfree a cpu 1
drain
"""


def _pcp_rows(page: Any) -> dict[str, list[str]]:
    rows = page.eval_on_selector_all(
        "#machine table.pcps tbody tr",
        "rows => rows.map(r => [...r.children].map(td => td.textContent))")
    return {row[0]: row[1:] for row in rows}


def test_the_machine_panel_follows_the_pcp(open_page: OpenPage) -> None:
    scenario = parse(SCENARIO, "pcp.kmem")
    states = [(result.text, run.machine) for result, run in run_all(scenario)]
    pfn = int(states[1][0].split("pfn ")[1].split()[0], 16)  # what palloc got
    page = open_page(scenario_document(scenario))
    assert page.is_hidden("#machine-panel") is False  # (some frame has a machine)
    page.click("#next")  # pages x 0: no machine yet
    assert page.text_content("#machine") == "No page machine yet at this step."
    page.click("#next")  # palloc a
    page.click("#next")  # pfree a: waits on cpu 1's list
    rows = _pcp_rows(page)
    assert f"0x{pfn:x}" in rows["1"][3] and "Movable" in rows["1"][3]
    assert int(rows["1"][0]) > 0 and rows["0"][3] == "empty"
    cells = page.eval_on_selector_all(".pageblock", "cells => cells.map(c => c.dataset.mt)")
    assert cells == ["Movable", "Movable"]  # 4 MiB: two pageblocks, booted MOVABLE
    page.click("#next")  # drain
    assert {row[3] for row in _pcp_rows(page).values()} == {"empty"}
