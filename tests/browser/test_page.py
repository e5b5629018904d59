"""The replay page in a real browser: step through the seed example and check what it shows.

Expected values come from the buddy rules, not from the page: 64 free pages boot as one order-6
block; allocating order 3 splits 6 -> 5 -> 4 -> 3 keeping the low half, leaving one free block
at orders 3, 4, 5 (pfns 8, 16, 32); freeing it merges all the way back to one order-6 block.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageStat

from kmem import BuddyAllocator
from kmem.show.scenario import load, parse
from kmem.show.scenario_run import run_all
from kmem.show.snapshot import scenario_document

OpenPage = Callable[[dict[str, Any]], Any]


def free_lists(page: Any) -> dict[int, tuple[int, str]]:
    """{order: (nr_free, listed pfns)} as the page's free-list table shows them."""
    rows = page.eval_on_selector_all(
        "#freelists tbody tr",
        "rows => rows.map(r => [Number(r.dataset.order), r.children[2].textContent,"
        " r.children[3].textContent])",
    )
    return {order: (int(n), pfns) for order, n, pfns in rows}


def nonempty(page: Any) -> dict[int, tuple[int, str]]:
    return {o: v for o, v in free_lists(page).items() if v[0]}


def strip_pixel(page: Any, pfn: int) -> tuple[int, int, int]:
    """The colour at the centre of page ``pfn``'s cell on the memory strip canvas."""
    rgb: list[int] = page.evaluate(
        """pfn => {
            const c = document.getElementById('strip');
            const cols = window.kmem.doc.nr_pages <= 32 ? window.kmem.doc.nr_pages : 32;
            const cell = c.width / cols;
            const x = (pfn % cols) * cell + cell / 2, y = Math.floor(pfn / cols) * cell + cell / 2;
            return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));
        }""",
        pfn,
    )
    return (rgb[0], rgb[1], rgb[2])


def is_greenish(rgb: tuple[int, int, int]) -> bool:
    return rgb[1] > rgb[0] + 20 and rgb[1] > rgb[2]


def is_reddish(rgb: tuple[int, int, int]) -> bool:
    return rgb[0] > rgb[1] + 40 and rgb[0] > rgb[2] + 40


def test_steps_through_the_seed_example(open_page: OpenPage) -> None:
    page = open_page(scenario_document(load("seed-buddy")))
    # Step 0: everything free, one 256 KB block.
    assert nonempty(page) == {6: (1, "0")}
    assert "all free" in page.inner_text("#explanation")
    assert page.inner_text("#stepno").startswith("step 0 / 2")
    assert is_greenish(strip_pixel(page, 0)) and is_greenish(strip_pixel(page, 63))

    page.click("#next")  # alloc C_L 21K
    assert page.inner_text("#source") == "line 4: alloc C_L 21K"
    assert nonempty(page) == {3: (1, "8"), 4: (1, "16"), 5: (1, "32")}
    explanation = page.inner_text("#explanation")
    assert "21 KB rounds up to 32 KB" in explanation
    assert "split 256 KB [0-63] into two 128 KB buddies" in explanation
    assert page.locator("#steps li.split").count() == 3
    assert page.inner_text("#highlight") == "highlighted: [0-7] order 3 (32 KB)"
    assert is_reddish(strip_pixel(page, 3))  # allocated: pages 0-7
    assert is_greenish(strip_pixel(page, 8))  # C_R, free
    changed = page.eval_on_selector_all(
        "#freelists tr.changed", "rows => rows.map(r => Number(r.dataset.order))"
    )
    assert changed == [3, 4, 5, 6]

    page.click("#next")  # free C_L: merges with C_R, B_R, A_R
    assert nonempty(page) == {6: (1, "0")}
    assert page.locator("#steps li.merge").count() == 3
    assert "its buddy [8-15] is free: merge into 64 KB [0-15]" in page.inner_text("#steps")
    assert page.inner_text("#highlight") == "highlighted: [0-63] order 6 (256 KB)"
    assert is_greenish(strip_pixel(page, 3))

    page.click("#prev")  # back to the allocation
    assert nonempty(page) == {3: (1, "8"), 4: (1, "16"), 5: (1, "32")}
    page.click("#next")
    page.click("#next")  # already at the end: stays
    assert page.inner_text("#stepno").startswith("step 2 / 2")


def test_slider_keys_and_play(open_page: OpenPage) -> None:
    page = open_page(scenario_document(load("seed-buddy")))
    page.fill("#slider", "1")  # fires input: the page redraws on the next animation frame
    page.wait_for_function("document.body.dataset.step === '1'")
    assert nonempty(page) == {3: (1, "8"), 4: (1, "16"), 5: (1, "32")}
    page.keyboard.press("ArrowLeft")
    assert nonempty(page) == {6: (1, "0")}
    page.keyboard.press("End")
    assert page.inner_text("#stepno").startswith("step 2 / 2")
    page.keyboard.press("Home")
    page.click("#play")
    page.wait_for_function("document.body.dataset.step === '2'", timeout=10_000)
    assert page.inner_text("#play") == "▶ play"  # stopped by itself at the end


def test_hover_and_click_tell_what_a_page_is(open_page: OpenPage) -> None:
    page = open_page(scenario_document(load("seed-buddy")))
    page.click("#next")
    box = page.locator("#strip").bounding_box()
    cell = box["width"] / 32
    page.mouse.move(box["x"] + cell * 2.5, box["y"] + cell / 2)  # pfn 2
    tooltip = page.inner_text("#tooltip")
    assert "pfn 2 (address 0x2000)" in tooltip and "allocated to C_L" in tooltip
    assert "block [0-7] order 3" in tooltip
    page.mouse.click(box["x"] + cell * 9.5, box["y"] + cell / 2)  # pfn 9: inside C_R
    info = page.inner_text("#info")
    assert "pfn 9" in info and "free, block [8-15] order 3" in info and "free list 3" in info


def test_screenshot_is_not_blank(open_page: OpenPage) -> None:
    page = open_page(scenario_document(load("seed-buddy")))
    page.click("#next")
    image = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    stat = ImageStat.Stat(image)
    assert min(stat.stddev) > 10  # not one flat colour
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50


def test_large_run_is_sampled_and_dom_stays_small(open_page: OpenPage) -> None:
    # 100,000 random allocations and frees: the page gets a few hundred frames and the DOM
    # stays a few hundred nodes (pages are drawn on canvases, never one node per event).
    rng = random.Random(5)
    lines = ["memory 64M"]
    live: list[str] = []
    for i in range(100_000):
        if live and rng.random() < 0.5:
            lines.append(f"free {live.pop(rng.randrange(len(live)))}")
        else:
            lines.append(f"pages p{i} {rng.choice((0, 0, 0, 1, 2, 3))}")
            live.append(f"p{i}")
    document = scenario_document(parse("\n".join(lines), "big"), max_frames=300)
    assert document["total_steps"] == 100_000 and len(document["frames"]) <= 302
    page = open_page(document)
    page.keyboard.press("End")
    assert page.inner_text("#stepno").startswith("step 100000 / 100000")
    assert page.evaluate("document.querySelectorAll('*').length") < 600
    page.fill("#slider", "150")
    page.wait_for_function("document.body.dataset.step === '150'")
    shown = sum(n << o for o, (n, _) in free_lists(page).items())
    assert shown == document["frames"][150]["free_pages"]


def test_seed_slab_steps_show_caches(open_page: OpenPage) -> None:
    document = scenario_document(load("seed"))
    page = open_page(document)
    sources = [f["source"] for f in document["frames"]]
    page.evaluate("i => window.kmem.go(i)", sources.index("obj p1 pcb"))
    assert page.inner_text("#source") == "line 11: obj p1 pcb"
    rows = page.eval_on_selector_all(
        "#caches tbody tr",
        "rows => rows.map(r => Array.from(r.children).map(td => td.textContent))",
    )
    by_name = {row[0]: row for row in rows}
    assert set(by_name) == {"tcb", "pcb"}
    # pcb: 1 object in use of the 4 in its one slab of 8 pages; partial.
    assert by_name["pcb"][1:4] == ["1", "4", "7168"]
    assert by_name["pcb"][6:] == ["8", "1", "0 / 1 / 0"]
    assert page.locator(".slab.partial").count() == 2
    assert page.locator(".slab .obj.used").count() == 2
    used = page.locator(".slab .obj.used").first  # p1: object 0 of pcb's slab at pfn 8
    assert used.get_attribute("title") == (
        "pcb object 0 at 0x8000 (slab pfn 8): in use by p1"
    )
    # Both slabs came from the buddy allocator: pages 0-15 taken, 16-63 free.
    assert nonempty(page) == {4: (1, "16"), 5: (1, "32")}
    box = page.locator("#strip").bounding_box()
    cell = box["width"] / 32
    page.mouse.click(box["x"] + cell * 12.5, box["y"] + cell / 2)  # pfn 12: pcb's slab
    info = page.inner_text("#info")
    assert "slab page of cache pcb" in info and "slab of pcb: 1/4 objects" in info
    assert info.endswith("holds p1")
    page.click("#last")
    assert page.inner_text("#source") == "line 13: free p1"
    assert page.locator(".slab.empty").count() == 2


def test_trace_page(open_page: OpenPage) -> None:
    from pathlib import Path

    from kmem.show.snapshot import trace_document

    trace = Path(__file__).parents[1] / "fixtures" / "traces" / "kmem-6.18-ls.txt.xz"
    document = trace_document(trace, max_frames=40, memory=64 << 20)
    page = open_page(document)
    total = document["total_steps"]
    page.keyboard.press("End")
    assert page.inner_text("#stepno").startswith(f"step {total} / {total}")
    last = document["frames"][-1]
    shown = free_lists(page)
    assert {o: n for o, (n, _) in shown.items()} == dict(enumerate(last["nr_free"]))
    assert page.inner_text("#source").startswith("events ")
    assert "live objects" in page.inner_text("#explanation")
    names = page.eval_on_selector_all("#caches tbody tr", "rows => rows.map(r => r.dataset.cache)")
    assert names == [c["name"] for c in last["caches"]]
    # The DOM stays small: caches with many slabs draw bars, not one node per object.
    assert page.evaluate("document.querySelectorAll('*').length") < 5000
    # Hovering pfn 0 names what the replay put there.
    box = page.locator("#strip").bounding_box()
    page.mouse.move(box["x"] + 0.5, box["y"] + 0.5)
    assert page.inner_text("#tooltip").startswith("pfn 0 (address 0x0): ")


def _synthetic_trace(events: int) -> str:
    """An ftrace kmem trace in Linux 6.18's format: random kmalloc/kfree, cache objects, pages."""
    rng = random.Random(11)
    lines = ["# tracer: nop"]
    live: list[tuple[str, str]] = []  # (ptr, kind)
    pages: list[tuple[int, int]] = []
    next_ptr, next_pfn = 0x1000, 0x100000
    head = "            bash-4479    [000] .....   {t:.6f}: "
    for i in range(events):
        t = 100 + i * 1e-6
        roll = rng.random()
        if roll < 0.45 or (not live and not pages):
            next_ptr += 1
            ptr = f"{next_ptr:016x}"
            if rng.random() < 0.5:
                size = rng.choice((8, 24, 100, 200, 1000))
                alloc = 1 << (size - 1).bit_length()
                lines.append(head.format(t=t) + f"kmalloc: call_site=f+0x1/0x2 ptr={ptr} "
                             f"bytes_req={size} bytes_alloc={max(alloc, 8)} gfp_flags=GFP_KERNEL"
                             " node=-1 accounted=false")
                live.append((ptr, "kfree"))
            else:
                lines.append(head.format(t=t) + f"kmem_cache_alloc: call_site=f+0x1/0x2 "
                             f"ptr={ptr} name=dentry bytes_req=192 bytes_alloc=192 "
                             "gfp_flags=GFP_KERNEL node=-1 accounted=false")
                live.append((ptr, "cache"))
        elif roll < 0.9 and live:
            ptr, kind = live.pop(rng.randrange(len(live)))
            if kind == "kfree":
                lines.append(head.format(t=t) + f"kfree: call_site=f+0x1/0x2 ptr={ptr}")
            else:
                lines.append(head.format(t=t) + f"kmem_cache_free: call_site=f+0x1/0x2 "
                             f"ptr={ptr} name=dentry")
        elif roll < 0.95 or not pages:
            order = rng.choice((0, 0, 1, 2))
            next_pfn += 8
            lines.append(head.format(t=t) + f"mm_page_alloc: page=00000000200ac740 "
                         f"pfn={next_pfn:#x} order={order} migratetype=1 gfp_flags=GFP_KERNEL")
            pages.append((next_pfn, order))
        else:
            pfn, order = pages.pop(rng.randrange(len(pages)))
            lines.append(head.format(t=t) + f"mm_page_free: page=00000000750f8522 "
                         f"pfn={pfn:#x} order={order}")
    return "\n".join(lines) + "\n"


def test_100k_event_trace_page_stays_small(open_page: OpenPage, tmp_path: Any) -> None:
    from kmem.show.snapshot import trace_document

    trace = tmp_path / "big.trace"
    trace.write_text(_synthetic_trace(100_000))
    document = trace_document(trace, max_frames=300, memory=64 << 20)
    assert document["total_steps"] == 100_000
    assert len(document["frames"]) <= 302
    page = open_page(document)
    page.keyboard.press("End")
    assert page.inner_text("#stepno").startswith("step 100000 / 100000")
    assert page.evaluate("document.querySelectorAll('*').length") < 5000
    for index in (10, 150, 299):  # the slider jumps anywhere, drawing one frame
        page.fill("#slider", str(index))
        page.wait_for_function(f"document.body.dataset.step === '{index}'")
        shown = {o: n for o, (n, _) in free_lists(page).items()}
        assert shown == dict(enumerate(document["frames"][index]["nr_free"]))


def _tree_marks(page: Any) -> dict[str, int]:
    """Pixels of the buddy tree in the split (orange) and merge (blue) mark colours."""
    counts: dict[str, int] = page.evaluate(
        """() => {
            const c = document.getElementById('tree');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let split = 0, merge = 0;
            for (let i = 0; i < d.length; i += 4) {
                const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
                if (r > 200 && g > 100 && g < 150 && b < 80) split++;
                if (r < 80 && g > 100 && g < 150 && b > 200) merge++;
            }
            return {split, merge};
        }"""
    )
    return counts


def test_tree_marks_this_steps_splits_and_merges(open_page: OpenPage) -> None:
    page = open_page(scenario_document(load("seed-buddy")))
    assert _tree_marks(page) == {"split": 0, "merge": 0}
    page.click("#next")  # three splits
    marks = _tree_marks(page)
    assert marks["split"] > 50 and marks["merge"] == 0
    page.click("#next")  # three merges
    marks = _tree_marks(page)
    assert marks["merge"] > 50 and marks["split"] == 0


def test_listing_marks_the_current_line(open_page: OpenPage) -> None:
    page = open_page(scenario_document(load("seed")))
    page.click("#next")
    current = page.locator("#listing li.current")
    assert current.count() == 1 and current.inner_text() == "alloc C_L 21K"
    # An <ol> numbers its items from its start: the current item is line 4.
    number = page.evaluate(
        "() => { const ol = document.getElementById('listing');"
        " const items = Array.from(ol.children);"
        " return ol.start + items.findIndex(li => li.classList.contains('current')); }"
    )
    assert number == 4
    page.keyboard.press("End")
    assert page.locator("#listing li.current").inner_text() == "free p1"


BLOCKS_SCENARIO = """\
memory 256K page 4K
alloc A 4K
alloc B 8K
alloc C 21K
alloc D 4K
free A
free C
"""


def _kmem_states() -> list[tuple[list[tuple[int, int]], str]]:
    """Per frame, kmem's own (first pfn, order) of the block holding every pfn, and its
    /proc/buddyinfo line: what the page must show."""
    scenario = parse(BLOCKS_SCENARIO, "blocks")
    out = []
    empty = BuddyAllocator(256 << 10)
    out.append(([(empty.block_at(p).pfn, empty.block_at(p).order) for p in range(64)],
                 empty.buddyinfo().rstrip("\n")))
    for _, live in run_all(scenario):
        buddy = live.buddy
        out.append(([(buddy.block_at(p).pfn, buddy.block_at(p).order) for p in range(64)],
                    buddy.buddyinfo().rstrip("\n")))
    return out


def test_every_pfn_and_the_buddyinfo_line_are_the_allocators(open_page: OpenPage) -> None:
    """Hovering a page, a block's first and last included, names the block the allocator has;
    the buddyinfo line is byte for byte the allocator's (mm/vmstat.c's widths)."""
    page = open_page(scenario_document(parse(BLOCKS_SCENARIO, "blocks")))
    for step, (blocks, buddyinfo) in enumerate(_kmem_states()):
        box = page.locator("#strip").bounding_box()  # the text above it changes with the step
        cell = box["width"] / 32
        assert page.inner_text("#stepno").startswith(f"step {step} /")
        assert page.eval_on_selector("#buddyinfo", "e => e.textContent") == buddyinfo
        for pfn, (first, order) in enumerate(blocks):
            if pfn not in (first, first + (1 << order) - 1):
                continue  # a block's edges are where an off-by-one shows; its inside is like them
            page.mouse.move(box["x"] + cell * (pfn % 32 + 0.5),
                            box["y"] + cell * (pfn // 32 + 0.5))
            tooltip = page.inner_text("#tooltip")
            span = f"[{first}-{first + (1 << order) - 1}]" if order else f"[{first}]"
            assert f"pfn {pfn} (" in tooltip and f"block {span} order {order} " in tooltip, (
                step, pfn, tooltip)
        page.click("#next")


SHEAF_SCENARIO = """\
memory 1M page 4K cpus 2 kernel 6.18
cache maple 256 sheaves 4
obj a maple
obj b maple
free a
"""


def test_a_sheaf_cache_shows_its_sheaves_and_the_objects_waiting_in_them(
        open_page: OpenPage, tmp_path: Path) -> None:
    path = tmp_path / "sheaf.kmem"
    path.write_text(SHEAF_SCENARIO)
    document = scenario_document(load(str(path)))
    page = open_page(document)
    page.click("#last")
    assert page.inner_text("#source") == "line 5: free a"
    # a's object went onto CPU 0's main sheaf: 3 of 4 objects wait there (the refill took 4,
    # b holds one), and the slab still counts them as allocated
    rows = page.eval_on_selector_all(".sheaf-cpu", "rows => rows.map(r => r.textContent)")
    assert rows == ["CPU 0: main 3/4", "CPU 1: main 0/4"]
    assert page.inner_text(".barn") == "barn: 0 full, 1 empty sheaves"
    maple = page.locator(".cache").filter(has_text="maple")
    assert maple.locator(".obj.sheaf").count() == 3
    assert maple.locator(".obj.used").count() == 1  # b's (the sheaves are kmalloc-64 objects)
    title = maple.locator(".obj.sheaf").first.get_attribute("title")
    assert title is not None and "waiting in a sheaf" in title
    assert "goes onto the main sheaf of CPU 0" in page.inner_text("#explanation")
