"""The self-contained page (without a browser): contents, escaping, `kmem html`, `kmem serve`."""

from __future__ import annotations

import gc
import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from kmem.cli.main import main
from kmem.cli.serve import make_server
from kmem.errors import KmemError
from kmem.show import snapshot
from kmem.show.html_page import build_page, scenario_page
from kmem.show.scenario import load, parse
from kmem.show.snapshot import FREE_CODE, LABEL_BASE, scenario_document


def embedded(page: str) -> dict[str, Any]:
    match = re.search(r'<script id="kmem-data" type="application/json">(.*?)</script>', page,
                      re.S)
    assert match is not None
    document: dict[str, Any] = json.loads(match.group(1))
    return document


def test_page_is_self_contained() -> None:
    page = scenario_page(load("seed-buddy"))
    assert "__KMEM_" not in page  # every placeholder filled
    # No external resource: nothing loaded by src= or href=, no @import or url() to a server.
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "@import" not in page and "url(http" not in page
    assert embedded(page)["nr_pages"] == 64
    assert "blocks" not in embedded(page)["frames"][0]  # sent encoded, as "b"


def test_data_cannot_close_the_script_element() -> None:
    scenario = parse("alloc A 4K # </script><script>alert(1)</script>\n", "x</script>y")
    page = scenario_page(scenario)
    assert page.count("</script>") == 2  # the data element's and the code's, nothing more
    assert embedded(page)["title"] == "kmem: x</script>y"
    assert "<title>kmem: x&lt;/script&gt;y</title>" in page


def test_document_frames_follow_the_scenario() -> None:
    document = scenario_document(load("seed-buddy"))
    frames = document["frames"]
    assert [f["step"] for f in frames] == [0, 1, 2]
    assert frames[0]["blocks"] == [0, 6, FREE_CODE]
    # After the allocation: C_L [0-7] allocated (labelled), C_R, B_R, A_R free.
    label = LABEL_BASE + document["labels"].index("C_L")
    assert frames[1]["blocks"] == [0, 3, label, 8, 3, 0, 16, 4, 0, 32, 5, 0]
    assert frames[1]["free_lists"][3:6] == [[8], [16], [32]]
    assert frames[2]["blocks"] == [0, 6, FREE_CODE]


def test_long_scenarios_are_sampled() -> None:
    lines = ["memory 1M"] + [f"pages p{i} 0\nfree p{i}" for i in range(500)]
    document = scenario_document(parse("\n".join(lines)), max_frames=100)
    steps = [f["step"] for f in document["frames"]]
    assert document["total_steps"] == 1000
    assert steps[0] == 0 and steps[-1] == 1000 and len(steps) == 101
    assert steps == sorted(steps)


def test_kmem_html_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seed.html"
    assert main(["html", "seed-buddy", "-o", str(out)]) == 0
    said = capsys.readouterr()
    assert "frames of 2 steps" in said.err and not said.out  # (a status line: stderr)
    assert embedded(out.read_text())["total_steps"] == 2
    scenario = tmp_path / "mine.kmem"
    scenario.write_text("memory 64K\nalloc A 8K\n")
    assert main(["html", str(scenario), "-o", str(out)]) == 0
    assert embedded(out.read_text())["nr_pages"] == 16


def test_kmem_html_to_the_standard_output_writes_the_page_alone(tmp_path: Path) -> None:
    import subprocess
    import sys

    for target in ("-", "/dev/stdout", "/proc/self/fd/1"):
        done = subprocess.run([sys.executable, "-m", "kmem", "html", "seed-buddy", "-o", target],
                              capture_output=True, check=True, cwd=tmp_path)
        assert done.stdout.startswith(b"<!DOCTYPE html>") and done.stderr == b""
        assert embedded(done.stdout.decode())["total_steps"] == 2
    assert not (tmp_path / "-").exists()  # ("-" is the standard output, never a file of that name)
    # Redirected into a file that is also -o: the file holds the page, nothing else.
    page = tmp_path / "page.html"
    with open(page, "wb") as stdout:
        subprocess.run([sys.executable, "-m", "kmem", "html", "seed-buddy", "-o", str(page)],
                       stdout=stdout, check=True)
    assert embedded(page.read_text())["total_steps"] == 2


def test_kmem_serve_answers_with_the_page() -> None:
    page = build_page(scenario_document(load("seed-buddy")))
    server = make_server(page, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as response:
            assert response.headers["Content-Type"].startswith("text/html")
            assert response.read().decode() == page
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/etc/passwd")
        assert info.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


TRACE = Path(__file__).parent / "fixtures" / "traces" / "kmem-6.18-ls.txt.xz"
# (a kmalloc line cut short: a malformed line, which stops a replay)
MALFORMED_TRACE_LINE = "  ls-1 [000] ..... 1.000000: kmalloc: call_site=zz ptr=0xq\n"


def test_trace_document_samples_the_replay() -> None:
    from kmem.show.snapshot import trace_document
    from kmem.trace.parse import TraceParser
    from kmem.trace.source import open_trace

    with open_trace(TRACE) as lines:
        events = sum(1 for _ in TraceParser().parse(lines))
    document = trace_document(TRACE, max_frames=20, memory=64 << 20)
    frames = document["frames"]
    assert document["total_steps"] == events
    assert document["nr_pages"] == (64 << 20) // 4096
    assert 2 <= len(frames) <= 22
    assert frames[0]["step"] == 0 and frames[-1]["step"] == events
    assert frames[0]["blocks"][2::3] == [FREE_CODE] * (len(frames[0]["blocks"]) // 3)
    last = frames[-1]
    # Slab pages are labelled with their cache, and each labelled cache is listed.
    slab_labels = {document["labels"][c - LABEL_BASE] for c in last["blocks"][2::3]
                   if c >= LABEL_BASE}
    assert slab_labels and all(label.startswith("slab:") for label in slab_labels)
    assert {label[5:] for label in slab_labels} <= {c["name"] for c in last["caches"]}
    # Pages in use add up: blocks not free cover exactly used_pages.
    used = sum(1 << last["blocks"][i + 1] for i in range(0, len(last["blocks"]), 3)
               if last["blocks"][i + 2] != FREE_CODE)
    assert used == last["used_pages"]


def test_kmem_html_recognises_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trace.html"
    assert main(["html", str(TRACE), "-o", str(out), "--frames", "10", "--memory", "64M"]) == 0
    document = embedded(out.read_text())
    assert str(document["title"]).startswith("kmem: trace ")
    with pytest.raises(SystemExit) as exit_status:
        main(["html", str(TRACE), "--memory", "lots"])
    assert exit_status.value.code == 2
    assert "argument --memory: bad size 'lots'" in capsys.readouterr().err


def test_kmem_html_collects_garbage_again_after_its_page(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The page is built with the cyclic collector paused (kmem.cli.collector): it runs again
    # after the command, whether the page was written or the trace refused.
    assert gc.isenabled()
    out = tmp_path / "trace.html"
    assert main(["html", str(TRACE), "-o", str(out), "--frames", "4", "--memory", "64M"]) == 0
    assert gc.isenabled()
    bad = tmp_path / "bad.txt"
    bad.write_text(MALFORMED_TRACE_LINE)
    assert main(["html", "--trace", str(bad), "-o", str(out)]) == 2
    assert gc.isenabled()
    assert f"{bad}:1:" in capsys.readouterr().err


def test_blocks_are_encoded_compactly_and_losslessly() -> None:
    from kmem.show.html_page import BLOCK_ALPHABET, encode_blocks

    def decode(text: str, width: int) -> list[tuple[int, int]]:
        values = []
        for i in range(0, len(text), width):
            value = 0
            for digit in text[i:i + width]:
                value = value * 64 + BLOCK_ALPHABET.index(digit)
            values.append((value & 31, value >> 5))  # (order, code)
        return values

    blocks = [0, 3, 5, 8, 3, 0, 16, 4, 1, 32, 5, 127]
    assert len(encode_blocks(blocks, 2)) == 8  # two characters a block
    assert decode(encode_blocks(blocks, 2), 2) == [(3, 5), (3, 0), (4, 1), (5, 127)]
    blocks[-1] = 128  # (128 << 5) | 5 needs 13 bits: three digits
    with pytest.raises(ValueError):
        encode_blocks(blocks, 2)
    assert decode(encode_blocks(blocks, 3), 3)[-1] == (5, 128)


def test_kmem_serve_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    busy = make_server("x", "127.0.0.1", 0)
    try:
        port = busy.server_address[1]
        assert main(["serve", "seed-buddy", "--port", str(port)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    finally:
        busy.server_close()
    for port in (65536, -1):  # once an OverflowError traceback from bind()
        assert main(["serve", "seed-buddy", "--port", str(port)]) == 2
        assert "a port is 0 to 65535" in capsys.readouterr().err


def test_kmem_html_rejects_no_frames(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stop:  # a usage error, found by the parser
        main(["html", "seed-buddy", "--frames", "0", "-o", str(tmp_path / "x.html")])
    assert stop.value.code == 2
    assert "argument --frames: '0': must be 1 or more" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_traces_and_scenarios_are_told_apart(tmp_path: Path) -> None:
    from kmem.show.snapshot import looks_like_trace

    assert looks_like_trace(TRACE)  # ftrace text, xz
    assert looks_like_trace(TRACE.parent / "perf" / "script.txt.xz")  # perf script
    scenario = tmp_path / "s.kmem"
    scenario.write_text("memory 64K\nkmalloc k 100\nkfree k\n")  # no "kmalloc:" event lines
    assert not looks_like_trace(scenario)
    assert not looks_like_trace(tmp_path / "missing")


def test_document_for_rejects_an_unknown_kind() -> None:
    from kmem.errors import InvalidArgumentError
    from kmem.show.snapshot import document_for

    with pytest.raises(InvalidArgumentError, match="kind must be 'scenario' or 'trace'"):
        document_for("seed", "picture")


def _encode_plainly(blocks: list[int], width: int) -> str:
    """The reference encoding: each block's (code << 5 | order) as ``width`` base-64 digits."""
    from kmem.show.html_page import BLOCK_ALPHABET

    out = ""
    for i in range(0, len(blocks), 3):
        value = blocks[i + 2] << 5 | blocks[i + 1]
        out += "".join(BLOCK_ALPHABET[value >> (6 * k) & 63] for k in range(width - 1, -1, -1))
    return out


@pytest.mark.parametrize("width", [1, 2, 3])
def test_block_encoding_matches_its_plain_definition(width: int) -> None:
    from kmem.show.html_page import encode_blocks

    largest = (1 << (6 * width - 5)) - 1  # the largest code that fits
    codes = [0, largest, largest // 3, min(2, largest)]
    blocks = [n for i, code in enumerate(codes) for n in (i, i % 32, code)]
    assert encode_blocks(blocks, width) == _encode_plainly(blocks, width)
    with pytest.raises(ValueError, match="does not fit"):
        encode_blocks([0, 0, largest + 1], width)


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_frames_of_a_replay_are_those_computed_afresh(policy: str) -> None:
    # trace_document reuses a cache's entry while its counters and slabs stay the same (the
    # page builder walks only the caches that changed): at every frame, the entries must be
    # exactly those cache_frames computes from nothing.
    from fixture_files import DD_TRACE
    from kmem.show.scenario_slab import slab_page_labels
    from kmem.show.snapshot import LabelTable, _BuddyFrames, _CacheFrames, buddy_frame, cache_frames
    from kmem.trace.parse import TraceParser
    from kmem.trace.replay import Replayer
    from kmem.trace.source import open_trace

    replayer = Replayer(memory=64 << 20, policy=policy)
    incremental = _CacheFrames()
    # (and the blocks: _BuddyFrames walks only the stretches of memory that changed)
    table = LabelTable()
    # (slab pages labelled by their mem_map owner, not a label by pfn sent every frame)
    buddy_frames = _BuddyFrames(replayer.buddy, LabelTable())
    frames = reused = 0
    with open_trace(DD_TRACE) as lines:
        for _ in replayer.iter_batch_snapshots(TraceParser().parse_batches(lines), every=97):
            by_pfn, by_owner = incremental.slab_labels(replayer.slab)
            pages = replayer.slab.slab_pages()
            fresh = cache_frames(replayer.slab, pages)
            before = dict(incremental._previous)
            assert incremental.frames(replayer.slab) == fresh
            assert buddy_frames.frame(by_pfn, by_owner) == buddy_frame(
                replayer.buddy, table, slab_page_labels(pages), large_kmalloc="kmalloc:large")
            assert buddy_frames._table.labels == table.labels
            reused += sum(1 for name, (_, _, _, entry) in incremental._previous.items()
                          if entry is not None and name in before and before[name][3] is entry)
            frames += 1
    assert frames > 100 and reused > 0  # (the reuse happened, and was right)


@pytest.mark.parametrize("policy", ["slub", "slab"])
def test_a_page_skipping_unchanged_caches_is_the_page_reading_every_cache(
        policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The page builder reads a cache again only when its change_count() moved: the page must
    # be, byte for byte, the one built reading every cache at every frame.
    from fixture_files import DD_TRACE
    from kmem.show.html_page import build_page
    from kmem.show.snapshot import _CacheFrames, trace_document

    def document(skip: bool) -> dict[str, Any]:
        monkeypatch.setattr(_CacheFrames, "skip_unchanged", skip)
        return trace_document(DD_TRACE, 150, memory=64 << 20, policy=policy)

    built = document(True)
    page = build_page(built)
    assert page == build_page(document(False))
    # (and the blocks: the page builder cuts and compares only the stretches of memory the
    # frames say they walked; the page of the same blocks as plain lists is the same)
    plain = {**built, "frames": [{**frame, "blocks": list(frame["blocks"])}
                                 for frame in built["frames"]]}
    assert type(plain["frames"][1]["blocks"]) is list
    assert build_page(plain) == page


# -- the slab rows of a frame, against live_objects() ---------------------------------------------

def _entry_slabs_from_objects(cache: Any, pfns: list[int], page_size: int) -> dict[str, Any]:
    """The reference: a cache entry's slab rows and counts from live_objects() and sheaves(),
    one object at a time (how the page builder computed them before slab_usage())."""
    from kmem.show.snapshot import MAX_OBJECT_BITS, MAX_SLABS_LISTED

    total, slot = cache.objs_per_slab, cache.slab_size
    objects = cache.live_objects()
    inuse: dict[int, int] = {}
    for obj in objects:
        inuse[obj.slab_pfn] = inuse.get(obj.slab_pfn, 0) + 1
    order = sorted(set(pfns) | inuse.keys())
    rows = []
    for pfn in order[:MAX_SLABS_LISTED]:
        mine = [obj for obj in objects if obj.slab_pfn == pfn]
        base = mine[0].address - mine[0].index * slot if mine else pfn * page_size
        row: list[Any] = [pfn, len(mine), total, base]
        if total <= MAX_OBJECT_BITS:
            bits = ["0"] * total
            for obj in mine:
                bits[obj.index] = "1"
            row.append(bits)
        rows.append(row)
    held = [address for _, _, sheaf in getattr(cache, "sheaves", list)() for address in sheaf]
    extents = cache.slab_extents()
    for address in held if getattr(cache, "sheaf_capacity", 0) else []:
        head = next(pfn for pfn, order_ in extents
                    if pfn <= address // page_size < pfn + (1 << order_))
        for row in rows:
            if row[0] == head and len(row) > 4:
                row[4][(address - row[3]) // slot] = "s"
    for row in rows:
        if len(row) > 4:
            row[4] = "".join(row[4])
    counts = [inuse.get(pfn, 0) for pfn in order]
    return {"active_objs": len(objects), "nr_slabs": len(order), "slabs": rows,
            "full": counts.count(total), "empty": counts.count(0),
            "num_objs": total * len(order)}


_CACHE_KINDS = ["slub", "slab", "slub-debug", "slub-sheaves"]


def _slab_world(kind: str) -> tuple[Any, Any]:
    from kmem.page.buddy import BuddyAllocator
    from kmem.slab.allocator import SlabAllocator
    from kmem.slab.flags import SLAB_POISON, SLAB_RED_ZONE, SLAB_STORE_USER

    policy = "slab" if kind == "slab" else "slub"
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=2, policy=policy, kernel="6.18")
    flags = SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER if kind == "slub-debug" else 0
    cache = slab.kmem_cache_create("objects", 200, flags=flags,
                                   sheaf_capacity=4 if kind == "slub-sheaves" else 0)
    return slab, cache


_steps = st.lists(st.tuples(st.booleans(), st.integers(0, 1), st.integers(0, 1 << 16)),
                  max_size=120)


@pytest.mark.parametrize("kind", _CACHE_KINDS)
@settings(max_examples=25, deadline=None)
@given(steps=_steps)
def test_slab_usage_agrees_with_live_objects(kind: str, steps: list[tuple[bool, int, int]]
                                              ) -> None:
    # slab_usage() is the per-slab view of live_objects(): after every alloc and free, each
    # slab's users, object 0 and used bytes say exactly which objects live_objects() lists
    # (sheaf-held objects, used 2, are no user's: not live).
    from kmem.slab.slabs import SHEAF_HELD

    _slab, cache = _slab_world(kind)
    held: list[int] = []
    for alloc, cpu, pick in steps:
        if alloc or not held:
            held.append(cache.alloc(cpu))
        else:
            cache.free(held.pop(pick % len(held)), cpu)
        usage = cache.slab_usage()
        assert [pfn for pfn, _, _, _ in usage] == [pfn for pfn, _ in cache.slab_extents()]
        listed = [(pfn, index, base + index * cache.slab_size)
                  for pfn, _, base, used in usage for index, mark in enumerate(used)
                  if mark == 1]
        assert listed == [(o.slab_pfn, o.index, o.address) for o in cache.live_objects()]
        assert all(inuse == used.count(1) for _, inuse, _, used in usage)
        in_sheaves = sorted(a for _, _, sheaf in getattr(cache, "sheaves", list)() for a in sheaf)
        assert sorted(base + index * cache.slab_size for _, _, base, used in usage
                      for index, mark in enumerate(used) if mark == SHEAF_HELD) == in_sheaves


@pytest.mark.parametrize("kind", _CACHE_KINDS)
@settings(max_examples=25, deadline=None)
@given(steps=_steps)
def test_cache_entries_match_their_objects(kind: str, steps: list[tuple[bool, int, int]]
                                           ) -> None:
    # The page's slab rows (from slab_usage()) are those the cache's objects say, one by one,
    # "s" marking the objects waiting in a sheaf.
    from kmem.show.snapshot import cache_frames

    slab, cache = _slab_world(kind)
    held: list[int] = []
    for alloc, cpu, pick in steps:
        if alloc or not held:
            held.append(cache.alloc(cpu))
        else:
            cache.free(held.pop(pick % len(held)), cpu)
        pages = slab.slab_pages()
        (entry,) = [e for e in cache_frames(slab, pages) if e["name"] == "objects"]
        pfns = [pfn for pfn, name in pages if name == "objects"]
        expected = _entry_slabs_from_objects(cache, pfns, slab.buddy.page_size)
        assert {key: entry[key] for key in expected} == expected


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 16)), max_size=80),
       labelled=st.integers(0, 7))
def test_buddy_frames_walk_only_what_changed(steps: list[tuple[int, int]], labelled: int
                                             ) -> None:
    # After every alloc and free on a machine with reserved frames and several max-order
    # stretches, the blocks reused from the previous frame and those walked again are exactly
    # buddy_frame's, labels interned in the same order.
    from kmem.page.buddy import BuddyAllocator
    from kmem.show.snapshot import LabelTable, _BuddyFrames, buddy_frame

    # (25 stretches of 4 pages: more than the 16 compared at a time)
    buddy = BuddyAllocator(100 * 4096, max_order=2, reserved=[(37 * 4096, 3 * 4096)])
    incremental = _BuddyFrames(buddy, LabelTable())
    # (and frames of changes only, in stretches of two max-order blocks, the last one short:
    # the stretches they send, laid over the previous frame's, are the frame's blocks)
    changes = _BuddyFrames(buddy, LabelTable(), 8, flat=False)
    stretches: list[list[int]] = [[] for _ in range(-(-100 // 8))]
    table = LabelTable()
    first = True
    held: list[tuple[int, int]] = []
    for order, pick in steps:
        if pick % 3 or not held:
            try:
                held.append((buddy.alloc_pages(order), order))
            except KmemError:
                continue
        else:
            buddy.free_pages(*held.pop(pick % len(held)))
        labels = {pfn: f"L{pfn % (labelled + 1)}" for pfn, _ in held[::2]}
        if pick % 4 == 1:  # (labels of no frame, off either end of memory, label nothing)
            labels.update({100 + pick % 9: "beyond", -1 - pick % 5: "before"})
        expected = buddy_frame(buddy, table, labels)
        assert incremental.frame(labels) == expected
        assert incremental._table.labels == table.labels
        frame = changes.frame(labels)
        sent = frame.pop("block_changes")
        assert frame == {key: value for key, value in expected.items() if key != "blocks"}
        for index, part in zip(sent[0::2], sent[1::2], strict=True):
            assert first or part != stretches[index]  # (only stretches that changed)
            assert all(index * 8 <= pfn < index * 8 + 8 for pfn in part[0::3])
            stretches[index] = part
        assert [block for part in stretches for block in part] == expected["blocks"]
        assert changes._table.labels == table.labels
        first = False


def test_buddy_frames_stretches_hold_whole_max_order_blocks() -> None:
    from kmem.errors import InvalidArgumentError
    from kmem.page.buddy import BuddyAllocator
    from kmem.show.snapshot import LabelTable, _BuddyFrames

    buddy = BuddyAllocator(64 * 4096, max_order=3)
    for stretch in (4, 12, 0):  # (below a max-order block, or not a power of two)
        with pytest.raises(InvalidArgumentError, match="power of two of at least 8 pages"):
            _BuddyFrames(buddy, LabelTable(), stretch)


@pytest.mark.parametrize("memory", [64 << 20, 4 << 30])
def test_a_page_of_block_changes_is_the_page_of_whole_frames(memory: int) -> None:
    # kmem html asks for the frames as only the page reads them: each frame's stretches of
    # memory that changed, no frame's whole block list (on 4 GiB, stretches wider than a
    # max-order block). The page must be, byte for byte, the one of the whole frames.
    from kmem.show.snapshot import trace_document

    whole = trace_document(TRACE, max_frames=30, memory=memory, nr_cpus=1)
    changes = trace_document(TRACE, max_frames=30, memory=memory, nr_cpus=1, for_page=True)
    assert all("blocks" not in frame for frame in changes["frames"])
    assert len(changes["frames"]) == len(whole["frames"]) > 10
    assert build_page(changes) == build_page(whole)
    # (a document of changes cut otherwise than the page cuts is refused, not misdrawn)
    with pytest.raises(ValueError, match="not cut as this page cuts"):
        build_page({**changes, "block_changes_pages": changes["block_changes_pages"] * 2})


# -- what the page sends: only what changed, decoded back to every frame ------------------------

def _decoded_frames(page: str) -> tuple[dict[str, Any], list[list[int]], list[Any]]:
    """The embedded document decoded as page.js decodes it: each frame's stretches from the
    previous frame's and its "bd", joined and read as (order, code) digits from pfn 0; its
    caches from the shared cache entries."""
    from kmem.show.html_page import BLOCK_ALPHABET

    sent = embedded(page)
    width = sent["block_width"]
    stretches: list[str] = [""] * sent["block_stretches"]
    blocks_of, caches_of = [], []
    for frame in sent["frames"]:
        assert "blocks" not in frame and "caches" not in frame
        changed = frame["bd"]
        for index in range(0, len(changed), 2):
            stretches[changed[index]] = changed[index + 1]
        digits = "".join(stretches)
        blocks, pfn = [], 0
        for at in range(0, len(digits), width):
            value = 0
            for digit in digits[at:at + width]:
                value = value * 64 + BLOCK_ALPHABET.index(digit)
            blocks += [pfn, value & 31, value >> 5]
            pfn += 1 << (value & 31)
        blocks_of.append(blocks)
        caches_of.append([_with_rows(sent, sent["cache_entries"][i]) for i in frame["c"]])
    return sent, blocks_of, caches_of


def _with_rows(sent: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A cache entry as sent, its slab rows taken from the page's shared rows by number."""
    assert "slabs" not in entry
    rows = [sent["slab_rows"][number] for number in entry["slab_rows"]]
    return {**{k: v for k, v in entry.items() if k != "slab_rows"}, "slabs": rows}


def _document(which: int) -> dict[str, Any]:
    from kmem.show.snapshot import trace_document

    if which == 0:
        return scenario_document(load("seed"))
    if which == 1:
        return trace_document(TRACE, max_frames=30, memory=64 << 20)
    # (a machine of more max-order blocks than the page cuts stretches: wider stretches)
    return trace_document(TRACE, max_frames=12, memory=4 << 30, nr_cpus=1)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_the_page_sends_each_frame_whole_in_what_changed(which: int) -> None:
    from kmem.show.snapshot import MAX_STRETCHES

    document = _document(which)
    page = build_page(document)
    sent, blocks_of, caches_of = _decoded_frames(page)
    frames = document["frames"]
    assert blocks_of == [f["blocks"] for f in frames]
    assert caches_of == [f["caches"] for f in frames]
    rest = [{k: v for k, v in f.items() if k not in ("blocks", "caches")} for f in frames]
    assert [{k: v for k, v in f.items() if k not in ("bd", "c")} for f in sent["frames"]] == rest
    assert sent["block_stretches"] <= MAX_STRETCHES
    # Only what changed travels: a frame sends fewer stretches than there are, after the first.
    sizes = [len(f["bd"]) // 2 for f in sent["frames"]]
    assert sizes[0] == sent["block_stretches"]
    if which:
        assert sum(sizes[1:]) < (len(sizes) - 1) * sent["block_stretches"]
        assert len(sent["cache_entries"]) < sum(len(c) for c in caches_of)
        assert len(sent["slab_rows"]) < sum(len(e["slab_rows"]) for e in sent["cache_entries"])


@settings(max_examples=30, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 1 << 16)), max_size=120))
def test_slab_pages_labelled_by_owner_are_those_labelled_by_pfn(
        steps: list[tuple[int, int]]) -> None:
    # A trace's frames label slab pages by their mem_map owner (a cache's id), not by pfn:
    # after allocs, frees, large kmallocs, caches created and destroyed, and slabs of a
    # SLAB_TYPESAFE_BY_RCU cache waiting for a grace period (their owner stays, they are no
    # slabs of it), the frames are exactly buddy_frame's with slab_page_labels(slab_pages()).
    from kmem.page.buddy import BuddyAllocator
    from kmem.show.scenario_slab import slab_page_labels
    from kmem.show.snapshot import LabelTable, _BuddyFrames, _CacheFrames, buddy_frame
    from kmem.slab.allocator import SlabAllocator
    from kmem.slab.flags import SLAB_TYPESAFE_BY_RCU

    slab = SlabAllocator(BuddyAllocator(4 << 20, max_order=4), nr_cpus=1)
    caches = [slab.kmem_cache_create("rcu", 1000, flags=SLAB_TYPESAFE_BY_RCU),
              slab.kmem_cache_create("plain", 700)]
    held: list[tuple[Any, int]] = []  # (cache or None for kmalloc, address)
    incremental, labels_of = _BuddyFrames(slab.buddy, LabelTable()), _CacheFrames()
    table = LabelTable()
    # (first: 200 objects of the typesafe cache, all freed: empty slabs wait for a grace period)
    for what, pick in [(0, 38)] * 6 + [(2, 39)] * 6 + steps:
        try:
            if what <= 1:
                if caches:
                    cache = caches[pick % 2 and len(caches) - 1]
                    for _ in range(pick % 40):  # (many slabs at once)
                        held.append((cache, cache.alloc()))
            elif what == 2 and held:  # (frees many: empty slabs, a typesafe one's wait)
                for _ in range(min(len(held), pick % 40 + 1)):
                    cache, address = held.pop(pick % len(held) and -1)
                    cache.free(address) if cache is not None else slab.kfree(address)
            elif what == 3:
                held.append((None, slab.kmalloc(8192 << (pick % 3))))  # large: whole pages
            elif what == 4:
                slab.synchronize_rcu() if pick % 2 else slab.shrink()
            elif len(caches) < 4 and pick % 2:
                caches.append(slab.kmem_cache_create(f"new{pick}", 64 + pick % 2000))
            elif caches and not any(c is caches[-1] for c, _ in held):
                slab.kmem_cache_destroy(caches.pop())
        except KmemError:
            continue
        by_pfn, by_owner = labels_of.slab_labels(slab)
        expected = buddy_frame(slab.buddy, table, slab_page_labels(slab.slab_pages()),
                               large_kmalloc="kmalloc:large")
        assert incremental.frame(by_pfn, by_owner) == expected
        assert incremental._table.labels == table.labels


def test_a_trace_counts_its_event_lines_across_chunks(tmp_path: Path) -> None:
    # A frame of a call chain or a blank line that starts a 1 MiB chunk is no event line,
    # whichever chunk holds the newline before it (kmem html spaces its frames by them).
    line = b"x" * 99 + b"\n"
    body = line * ((1 << 20) // 100) + b"y" * ((1 << 20) % 100 - 1) + b"\n"
    assert len(body) == 1 << 20
    for after, events in ((b"\tframe\n", 0), (b"\nlast\n", 1), (b"last\n", 1)):
        path = tmp_path / "trace.txt"
        path.write_bytes(body + after)
        assert snapshot._count_lines(path, None) == (1 << 20) // 100 + 1 + events
