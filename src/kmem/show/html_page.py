"""One self-contained HTML page that replays a scenario or a trace step by step.

``build_page(document)`` inlines the template (kmem/show/web/page.html), its stylesheet and script,
and the snapshot document (kmem.show.snapshot) into a single file: no network, no other file is
needed to open it. The JSON goes into a ``<script type="application/json">`` element; "</" is
escaped as "<\\/" so no string inside the data can close that element early. Each frame's
block list travels encoded (``encode_blocks``: two characters a block, pfns implied), which
keeps a 400-frame trace page a few MB; the page decodes a frame when it shows it.

Why a template with placeholders and not a templating library: four substitutions do not need
a dependency, and the web files stay plain HTML/CSS/JS that editors and linters understand.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources
from itertools import repeat
from operator import lshift, or_
from pathlib import Path
from typing import Any

from kmem.errors import InvalidArgumentError
from kmem.page.mem_map import ORDER_MASK
from kmem.show.scenario import Scenario
from kmem.show.snapshot import scenario_document


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


def _compact(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every frame's blocks encoded; the input is not changed."""
    largest = max((max(f["blocks"][2::3], default=0) for f in document["frames"]), default=0)
    width = 1
    while (largest + 1) << _ORDER_BITS > 1 << (6 * width):
        width += 1
    frames = []
    for frame in document["frames"]:
        compact = {key: value for key, value in frame.items() if key != "blocks"}
        compact["b"] = encode_blocks(frame["blocks"], width)
        frames.append(compact)
    return {**document, "frames": frames, "block_width": width}


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
    path = Path(path)
    page = build_page(document)
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
