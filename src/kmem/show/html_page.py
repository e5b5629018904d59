"""One self-contained HTML page that replays a scenario or a trace step by step.

``build_page(document)`` inlines the template (kmem/show/web/page.html), its stylesheet and script,
and the snapshot document (kmem.show.snapshot) into a single file: no network, no other file is
needed to open it. The JSON goes into a ``<script type="application/json">`` element; "</" is
escaped as "<\\/" so no string inside the data can close that element early. Each frame's
block list travels encoded (``encode_blocks``: two characters a block, pfns implied) and only
where it changed since the previous frame (``_compact``: stretches of memory), and a cache
entry (or a slab row) that several frames share is sent once; the page rebuilds a frame when it
shows it.

Why a template with placeholders and not a templating library: four substitutions do not need
a dependency, and the web files stay plain HTML/CSS/JS that editors and linters understand.
"""

from __future__ import annotations

import html
import json
from bisect import bisect_left
from contextlib import suppress
from functools import cache
from importlib import resources
from itertools import repeat
from operator import lshift, or_
from pathlib import Path
from typing import Any

from kmem.errors import InvalidArgumentError
from kmem.page.mem_map import ORDER_MASK
from kmem.show.scenario import Scenario
from kmem.show.snapshot import StretchBlocks, scenario_document, stretch_pages


def _web_file(name: str) -> str:
    return resources.files("kmem.show").joinpath("web", name).read_text(encoding="utf-8")


# Block lists travel as strings: a block's pfn follows from the previous block (blocks tile
# memory), so only (order, code) is kept, as ``width`` digits of this 64-letter alphabet.
# That is 2 bytes a block instead of ~15 of JSON numbers: a trace's 400 frames stay small.
BLOCK_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
_ORDER_BITS = ORDER_MASK.bit_length()  # 5: orders 0..31 (page.js decodes with 31 and 5)


def encode_blocks(blocks: list[int], width: int) -> str:
    """A frame's flat [pfn, order, code, ...] list as a string (pfns are implied)."""
    limit = 1 << (6 * width)
    codes = blocks[2::3]
    if codes and max(codes) << _ORDER_BITS >= limit:
        raise ValueError(f"block code {max(codes)} does not fit in {width} digits")
    if width <= 2:  # (nearly every page: a table of every value's digits, one lookup a block)
        digits = _digit_table(width)
        orders = blocks[1::3]
        if len(orders) != len(codes):
            raise ValueError("blocks must be [pfn, order, code, ...] triples")
        # (maps of C functions, no Python bytecode a block: a long trace's page encodes
        # millions of blocks)
        return "".join(map(digits.__getitem__, map(
            or_, map(lshift, codes, repeat(_ORDER_BITS)), orders)))
    alphabet = BLOCK_ALPHABET
    out = []
    for order, code in zip(blocks[1::3], codes, strict=True):
        value = (code << _ORDER_BITS) | order
        for shift in range(6 * (width - 1), -1, -6):
            out.append(alphabet[(value >> shift) & 63])
    return "".join(out)


@cache
def _digit_table(width: int) -> tuple[str, ...]:
    """The ``width``-digit string of every value below 64 ** width."""
    if width == 1:
        return tuple(BLOCK_ALPHABET)
    return tuple(high + low for high in BLOCK_ALPHABET for low in BLOCK_ALPHABET)


# A frame's blocks travel as the stretches of memory that changed since the previous frame
# (kmem.show.snapshot.stretch_pages: whole max-order blocks, at most MAX_STRETCHES of them): a
# frame sends [stretch, digits, stretch, digits, ...] for the stretches whose blocks differ
# (the first frame sends them all); the page rebuilds each frame's digits from the previous
# frame's. A trace's frame changes a few stretches of hundreds: encoding every block of every
# frame was most of the page's bytes and of its build time.


def _stretch_parts(blocks: list[int], pages: int, nr_stretches: int) -> list[list[int]]:
    """The flat [pfn, order, code, ...] list cut at every ``pages`` boundary."""
    pfns = blocks[0::3]
    cuts = [3 * bisect_left(pfns, index * pages) for index in range(nr_stretches)]
    cuts.append(len(blocks))
    return [blocks[cuts[index]:cuts[index + 1]] for index in range(nr_stretches)]


def _compact(document: dict[str, Any]) -> dict[str, Any]:
    """The document as the page reads it; the input is not changed. Each frame's blocks
    become "bd" (the changed stretches, encoded), its caches "c" (indices into the document's
    "cache_entries", where an entry several frames hold is sent once)."""
    frames_in = document["frames"]
    # (the largest block code sets the digits a block: of every block of every frame, or of
    # every stretch a frame of changes sends, which is every block a frame holds)
    largest = max((max(f["blocks"][2::3], default=0) if "blocks" in f else
                   max((max(part[2::3], default=0) for part in f["block_changes"][1::2]),
                       default=0) for f in frames_in), default=0)
    width = 1
    while (largest + 1) << _ORDER_BITS > 1 << (6 * width):
        width += 1
    nr_pages = int(document["nr_pages"])
    pages = stretch_pages(nr_pages, int(document["max_order"]))
    nr_stretches = max(1, -(-nr_pages // pages))
    entries: list[Any] = []
    # An entry sent once for all the frames that hold that very object: a trace's replay
    # keeps an unchanged cache's entry (kmem.show.snapshot._CacheFrames). (Equal entries that
    # are distinct objects are sent apiece: comparing them would cost what sending them does.)
    # Its slab rows likewise: a changed cache's new entry keeps most rows of its previous one
    # (the same row objects), so an entry sends its rows' numbers in "slab_rows" (a 1,600-frame
    # page of a 300,000-event trace: 249,000 rows in its entries, 14,000 distinct objects).
    by_id: SentOnce = SentOnce(entries)
    rows = SentOnce([])
    before: list[list[int]] | None = None
    frames = []
    for frame in frames_in:
        compact = {key: value for key, value in frame.items()
                   if key not in ("blocks", "block_changes", "caches")}
        changed: list[Any] = []
        if "blocks" not in frame:  # (trace_document(for_page=True): the changes are known)
            if document.get("block_changes_pages") != pages:
                raise ValueError("the frames' block changes are not cut as this page cuts")
            changes = frame["block_changes"]
            for index in range(0, len(changes), 2):
                changed += (changes[index], encode_blocks(changes[index + 1], width))
            compact["bd"] = changed
            if "caches" in frame:
                compact["c"] = _entry_numbers(frame["caches"], by_id, rows)
            frames.append(compact)
            continue
        blocks = frame["blocks"]
        if (before is not None and isinstance(blocks, StretchBlocks)
                and blocks.parts_before is before and blocks.stretch_pages == pages):
            # Cut as this page cuts, and only the walked stretches can differ from the
            # previous frame's (the others are the very lists): compare those alone.
            parts = blocks.parts
            for index in sorted(blocks.walked):
                if parts[index] != before[index]:
                    changed += (index, encode_blocks(parts[index], width))
        else:
            parts = (blocks.parts if isinstance(blocks, StretchBlocks)
                     and blocks.stretch_pages == pages and len(blocks.parts) == nr_stretches
                     else _stretch_parts(blocks, pages, nr_stretches))
            for index, part in enumerate(parts):
                if before is None or part != before[index]:
                    changed += (index, encode_blocks(part, width))
        before = parts
        compact["bd"] = changed
        if "caches" in frame:
            compact["c"] = _entry_numbers(frame["caches"], by_id, rows)
        frames.append(compact)
    return {**{key: value for key, value in document.items() if key != "block_changes_pages"},
            "frames": frames, "block_width": width,
            "block_stretch_pages": pages, "block_stretches": nr_stretches,
            "cache_entries": entries, "slab_rows": rows.sent}


class SentOnce(dict[int, int]):
    """The objects a page sends once, in ``sent``, and their numbers there by id() (the
    document holds every one of them while the page is built, so no id is reused)."""

    def __init__(self, sent: list[Any]) -> None:
        super().__init__()
        self.sent = sent

    def numbers(self, objects: list[Any], make: Any = None) -> list[int | None]:
        """The numbers of ``objects`` in ``sent``, where those not sent yet go (as
        ``make(object)`` if given)."""
        # (maps of C functions: most objects were sent already, by an earlier frame)
        ids = list(map(id, objects))
        numbers = list(map(self.get, ids))
        sent = self.sent
        index = -1
        with suppress(ValueError):  # (list.index finds the next new one at C speed too)
            while True:
                index = numbers.index(None, index + 1)
                number = self.get(ids[index])  # (the same object twice in ``objects``)
                if number is None:
                    number = self[ids[index]] = len(sent)
                    item = objects[index]
                    sent.append(item if make is None else make(item))
                numbers[index] = number
        return numbers


def _entry_numbers(caches: list[Any], entries: SentOnce, rows: SentOnce) -> list[int | None]:
    """The numbers of a frame's cache entries in the page's "cache_entries", where those not
    sent yet go, their slab rows as numbers in its "slab_rows"."""
    def sent(entry: dict[str, Any]) -> dict[str, Any]:
        out = dict(entry)
        out["slab_rows"] = rows.numbers(out.pop("slabs"))
        return out

    return entries.numbers(caches, sent)


def build_page(document: dict[str, Any]) -> str:
    """The complete page for a snapshot document, as one HTML string."""
    compact = _compact(document)
    data = json.dumps(compact, separators=(",", ":")).replace("</", "<\\/")
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
    """Write the page for ``document`` to ``path``; return the path. The page is written
    whole or not at all (into a temporary file beside it, then renamed), so a failure leaves
    no half page and an existing file unchanged; one that cannot be written is a
    PageWriteError naming it."""
    return write_page_text(build_page(document), path)


def write_page_text(page: str, path: str | Path) -> Path:
    """write_page() of a page already built (build_page)."""
    path = Path(path)
    write_atomically(path, page.encode("utf-8"))
    return path


class PageWriteError(InvalidArgumentError):
    """A page or picture cannot be written where it was asked for."""


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` into ``path``, through a temporary file in the same folder and a rename (a
    symbolic link is followed: the file it names is replaced, the link stays). A path that is
    no regular file (/dev/stdout, a FIFO) is written to directly: a rename would replace it."""
    import os
    import stat
    import tempfile

    if path.is_dir():
        raise PageWriteError(f"cannot write {str(path)!r}: it is a folder")
    try:
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            with open(path, "wb") as file:
                file.write(data)
            return
        target = Path(os.path.realpath(path))
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                             dir=target.parent)
    except OSError as error:
        raise PageWriteError(f"cannot write {str(path)!r}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except OSError as error:
        os.unlink(temporary)
        raise PageWriteError(f"cannot write {str(path)!r}: {error.strerror}") from None


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
