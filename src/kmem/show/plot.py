"""Pictures of a replay with matplotlib: PNG or SVG, chosen by the output file's suffix.

Every picture is drawn from a snapshot document (kmem.show.snapshot), so scenarios and traces
give the same pictures:

    memory map     the pages at one step, one cell per page (grouped on big machines),
                   coloured as the HTML page colours them: free blocks green by order,
                   labelled allocations (scenario names, slab caches, kmalloc) by label
    usage          pages in use and free over the steps
    fragmentation  Linux's unusable free space and extfrag indices (mm/vmstat.c) per order
                   over the steps
    slab           internal fragmentation per cache at the chosen step: the share of each
                   cache's slab memory not holding object bytes (slot padding, metadata, the
                   slab's tail), and for kmalloc caches the share of the bytes handed out
                   beyond what callers asked for

API: ``plot(document, path, kind="all", step=-1)`` writes the file and returns its path;
``figure(document, kind, step)`` returns the matplotlib Figure. ``kind`` is one of KINDS.
``plot_replay(result, path)`` draws a trace replay's memory and fragmentation over time.

matplotlib is imported inside the functions that draw, so that the commands can check a
picture's file name (``picture_path``) and list the KINDS without loading it.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmem.errors import InvalidArgumentError
from kmem.page.fragmentation import extfrag_index, unusable_index
from kmem.show.snapshot import ALLOCATED_CODE, FREE_CODE, LABEL_BASE, RESERVED_CODE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kmem.trace.compare import KernelComparison
    from kmem.trace.replay import ReplayResult

KINDS = ("all", "map", "usage", "fragmentation", "slab")
FORMATS = (".png", ".svg")
_MAX_CELLS = 256 * 128  # memory map cells: pages are grouped beyond this


def _free_rgb(order: int) -> tuple[float, float, float]:
    light = (88 - min(order, 10) * 4) / 100
    return colorsys.hls_to_rgb(140 / 360, light, 0.45)


# Labels get distinct colours by kind, in order of first appearance (the page does the same).
PALETTES = {
    "slab": ("#7d5ba6", "#3b7dd8", "#1a9e8f", "#b07cc6", "#2c5aa0", "#48c9b0", "#5b2c6f",
             "#85c1e9"),
    "kmalloc": ("#f39c12", "#d35400", "#d4a017", "#ff8c42", "#b9770e"),
    "name": ("#e0525e", "#c2185b", "#a93226", "#f06292", "#922b21", "#e57373"),
}


def _label_kind(label: str) -> str:
    if label.startswith("slab:"):
        return "slab"
    return "kmalloc" if label.startswith("kmalloc") else "name"


def label_colours(labels: list[str]) -> dict[str, str]:
    """{label: "#rrggbb"} for a document's labels, as the HTML page colours them."""
    seen = dict.fromkeys(PALETTES, 0)
    out = {}
    for label in labels:
        kind = _label_kind(label)
        palette = PALETTES[kind]
        out[label] = palette[seen[kind] % len(palette)]
        seen[kind] += 1
    return out


_ALLOCATED_RGB = (0.85, 0.33, 0.31)  # an allocated block without a label; "in use" pages


def _hex_rgb(colour: str) -> tuple[float, float, float]:
    return (int(colour[1:3], 16) / 255, int(colour[3:5], 16) / 255, int(colour[5:7], 16) / 255)


def _code_rgb(
    document: dict[str, Any], code: int, order: int, colours: dict[str, str] | None = None
) -> tuple[float, float, float]:
    if code == FREE_CODE:
        return _free_rgb(order)
    if code == ALLOCATED_CODE:
        return _ALLOCATED_RGB
    if code == RESERVED_CODE:
        return (0.60, 0.64, 0.68)
    labels = document["labels"]
    colours = colours or label_colours(labels)
    return _hex_rgb(colours[labels[code - LABEL_BASE]])


def _frame(document: dict[str, Any], step: int) -> dict[str, Any]:
    frames = document["frames"]
    if not -len(frames) <= step < len(frames):
        raise InvalidArgumentError(
            f"step {step} is not a frame of this replay (0..{len(frames) - 1}, or -1 for the last)"
        )
    frame: dict[str, Any] = frames[step]
    return frame


def draw_memory_map(ax: Any, document: dict[str, Any], step: int = -1) -> None:
    """The pages at ``step`` as a grid of coloured cells, one per page (or group of pages)."""
    frame = _frame(document, step)
    nr_pages = document["nr_pages"]
    per_cell = 1
    while -(-nr_pages // per_cell) > _MAX_CELLS:
        per_cell *= 2
    cells = -(-nr_pages // per_cell)
    cols = min(cells, 64 if cells <= 4096 else 256)
    rows = -(-cells // cols)
    grid = [[(1.0, 1.0, 1.0)] * cols for _ in range(rows)]
    blocks = frame["blocks"]
    colours = label_colours(document["labels"])
    for i in range(0, len(blocks), 3):
        pfn, order, code = blocks[i], blocks[i + 1], blocks[i + 2]
        rgb = _code_rgb(document, code, order, colours)
        first = pfn // per_cell
        last = (pfn + (1 << order) - 1) // per_cell
        for cell in range(first, last + 1):
            grid[cell // cols][cell % cols] = rgb
    ax.imshow(grid, aspect="auto" if rows > 4 else "equal", interpolation="nearest")
    if per_cell == 1 and cols <= 256 and len(blocks) <= 3 * 512:  # block starts: thin lines
        for i in range(0, len(blocks), 3):
            pfn = blocks[i]
            if pfn:
                row, col = divmod(pfn, cols)
                ax.plot([col - 0.5, col - 0.5], [row - 0.5, row + 0.5], color="white", lw=1.2)
    ax.set_yticks([])
    ax.set_xlabel(f"page (x {per_cell})" if per_cell > 1 else "page in row")
    step_no = frame["step"]
    title = f"memory at step {step_no}"
    if frame.get("source"):
        title += f": {frame['source']}"
    ax.set_title(title, fontsize=10)
    from matplotlib.patches import Patch

    handles = [Patch(color=_free_rgb(0), label="free (order 0)"),
               Patch(color=_free_rgb(6), label="free (larger order)"),
               Patch(color=_ALLOCATED_RGB, label="allocated")]
    shown = sorted({code for code in blocks[2::3] if code >= LABEL_BASE})
    handles += [Patch(color=_code_rgb(document, c, 0), label=document["labels"][c - LABEL_BASE])
                for c in shown[:12]]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
              frameon=False)


def _steps(document: dict[str, Any]) -> list[int]:
    return [int(frame["step"]) for frame in document["frames"]]


def draw_usage(ax: Any, document: dict[str, Any]) -> None:
    from matplotlib.ticker import MaxNLocator

    """Pages in use and free at every frame."""
    steps = _steps(document)
    frames = document["frames"]
    ax.plot(steps, [f["used_pages"] for f in frames], color=_ALLOCATED_RGB, label="in use")
    ax.plot(steps, [f["free_pages"] for f in frames], color=(0.18, 0.55, 0.34), label="free")
    ax.set_ylim(0, document["nr_pages"] * 1.05)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("pages")
    ax.set_title("memory in use", fontsize=10)
    ax.legend(fontsize=8, frameon=False)


def draw_fragmentation(ax: Any, document: dict[str, Any]) -> None:
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    """Linux's fragmentation indices per order over the steps, for the orders that matter.

    Solid: the unusable free space index (0..1). Dashed: the extfrag index (0..1, towards 1 when
    a failing request fails for fragmentation rather than lack of memory), drawn only while a
    request of that order would fail (Linux reports -1 then).
    """
    steps = _steps(document)
    frames = document["frames"]
    top = min(document["max_order"], max(document["nr_pages"].bit_length() - 1, 0))
    orders = sorted({o for o in (1, 2, 3, 4, 6, 9) if o <= top} | {top})
    cmap = matplotlib.colormaps["viridis"]
    for n, order in enumerate(orders):
        colour = cmap(n / max(1, len(orders) - 1))
        values = [unusable_index(f["nr_free"], order) / 1000 for f in frames]
        ax.plot(steps, values, color=colour, label=f"order {order}")
        extfrag = [extfrag_index(f["nr_free"], order) for f in frames]
        if any(v >= 0 for v in extfrag):
            ax.plot(steps, [v / 1000 if v >= 0 else math.nan for v in extfrag], color=colour,
                    linestyle="--", linewidth=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("index (solid: unusable, dashed: extfrag)")
    ax.set_title("external fragmentation", fontsize=10)
    ax.legend(fontsize=7, frameon=False, ncol=2)


def cache_waste(cache: dict[str, Any], page_size: int) -> float:
    """Share of a cache's slab bytes that hold no object bytes (0..1); 0 for a slabless cache.

    A slab of ``page_size << order`` bytes holds ``num_objs / nr_slabs`` slots; all but the
    ``object_size`` bytes of each slot is lost to padding, metadata and the slab's tail.
    """
    slab_bytes: int = page_size << int(cache["order"])
    object_size = int(cache["object_size"])
    nr_slabs = int(cache.get("nr_slabs", len(cache["slabs"])))
    if not nr_slabs:
        return 1 - object_size * int(cache["objs_per_slab"]) / slab_bytes
    return 1 - object_size * int(cache["num_objs"]) / (nr_slabs * slab_bytes)


def kmalloc_rounding(cache: dict[str, Any]) -> float:
    """Share of the bytes kmalloc handed out from this cache that nobody asked for (0..1)."""
    allocated = int(cache.get("bytes_allocated", 0))
    if not allocated:
        return 0.0
    return 1 - int(cache.get("bytes_requested", 0)) / allocated


MAX_CACHE_BARS = 16


def draw_slab(ax: Any, document: dict[str, Any], step: int = -1) -> None:
    """Internal fragmentation of the caches at ``step`` (the 16 holding most memory).

    Two bars a cache: the slab memory not holding object bytes (slot padding, metadata, the
    slab's tail) and, for kmalloc caches, the bytes handed out beyond what was asked.
    """
    frame = _frame(document, step)
    caches = frame.get("caches") or []
    if not caches:
        ax.text(0.5, 0.5, "no slab caches at this step", ha="center", va="center")
        ax.set_axis_off()
        return
    page_size = document["page_size"]
    caches = sorted(caches, key=lambda c: -int(c.get("nr_slabs", 0)) * (page_size << c["order"]))
    caches = caches[:MAX_CACHE_BARS]
    names = [c["name"] for c in caches]
    waste = [100 * cache_waste(c, page_size) for c in caches]
    rounding = [100 * kmalloc_rounding(c) for c in caches]
    # The map's colours where the cache has slab pages in the document, else the next ones.
    colours = label_colours(list(document["labels"]) + [f"slab:{n}" for n in names])
    ys = range(len(names))
    ax.barh([y - 0.2 for y in ys], waste, height=0.4,
            color=[_hex_rgb(colours[f"slab:{n}"]) for n in names], label="slab memory not"
            " holding objects")
    if any(rounding):
        ax.barh([y + 0.2 for y in ys], rounding, height=0.4, color="#f39c12",
                label="kmalloc bytes beyond the request")
    ax.set_yticks(list(ys), names, fontsize=8 if len(names) > 8 else 10)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% wasted")
    shown = f", the {len(names)} largest" if len(frame["caches"]) > len(names) else ""
    ax.set_title(f"internal fragmentation per cache (step {frame['step']}{shown})", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    for y, value in enumerate(waste):
        ax.text(value + 1, y - 0.2, f"{value:.1f}%", va="center", fontsize=7)
    for y, value in enumerate(rounding):
        if value:
            ax.text(value + 1, y + 0.2, f"{value:.1f}%", va="center", fontsize=7)


def figure(document: dict[str, Any], kind: str = "all", step: int = -1) -> Figure:
    """A matplotlib Figure of one kind of picture (or all of them) for the document."""
    from matplotlib.figure import Figure

    if kind not in KINDS:
        raise InvalidArgumentError(f"unknown plot kind {kind!r} (kinds: {', '.join(KINDS)})")
    _frame(document, step)  # a clear error for a bad step, whatever the kind
    if kind == "all":
        # Figure objects, not pyplot: no global backend or figure registry is touched, and
        # files are written with the Agg canvas that Figure.savefig picks by itself.
        with_slab = any(frame.get("caches") for frame in document["frames"])
        fig = Figure(figsize=(11, 9 if with_slab else 6.5), layout="constrained")
        grid = fig.add_gridspec(3 if with_slab else 2, 2)
        draw_memory_map(fig.add_subplot(grid[0, :]), document, step)
        draw_usage(fig.add_subplot(grid[1, 0]), document)
        draw_fragmentation(fig.add_subplot(grid[1, 1]), document)
        if with_slab:
            draw_slab(fig.add_subplot(grid[2, :]), document, step)
        fig.suptitle(str(document.get("title", "kmem")))
        return fig
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    if kind == "map":
        draw_memory_map(ax, document, step)
    elif kind == "usage":
        draw_usage(ax, document)
    elif kind == "fragmentation":
        draw_fragmentation(ax, document)
    else:
        draw_slab(ax, document, step)
    return fig


def picture_path(path: str | Path) -> Path:
    """``path`` as a Path when its suffix is a format kmem writes (FORMATS), else a clear error."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise InvalidArgumentError(
            f"cannot tell the format of {str(path)!r}: use a .png or .svg file name"
        )
    return path


def plot(document: dict[str, Any], path: str | Path, kind: str = "all", step: int = -1) -> Path:
    """Write the picture to ``path`` (.png or .svg); return the path."""
    path = picture_path(path)
    figure(document, kind, step).savefig(path, dpi=110)
    return path


def plot_replay(result: ReplayResult, path: str) -> None:
    """Memory in use per layer and the fragmentation indices over the trace's time (.png or
    .svg, as plot(): a Figure of its own, no pyplot state or backend is touched)."""
    from matplotlib.figure import Figure

    output = picture_path(path)
    samples = [s for s in result.timeline if s.events] or list(result.timeline)
    times = [s.time for s in samples]
    mib = result.page_size / (1 << 20)
    figure = Figure(figsize=(10, 7))
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.plot(times, [s.slab_pages * mib for s in samples], label="slab layer")
    top.plot(times, [s.page_layer_pages * mib for s in samples], label="page layer")
    top.plot(times, [(s.slab_pages + s.page_layer_pages) * mib for s in samples],
             label="total", linestyle="--")
    top.set_ylabel("memory in use (MiB)")
    top.set_title(f"kmem replay ({result.policy}, {','.join(result.layers)})")
    top.legend()
    for order in sorted({min(3, result.max_order), result.max_order}):
        bottom.plot(times, [s.unusable_index[order] / 1000 for s in samples],
                    label=f"unusable free space index, order {order}")
    bottom.set_ylabel("index")
    bottom.set_xlabel("trace time (s)")
    bottom.set_ylim(-0.05, 1.05)
    bottom.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=100)


def plot_comparison(comparison: KernelComparison, path: str) -> None:
    """Slab pages over the trace's time under each kernel of a ``kmem replay --compare``, and
    the objects each holds in sheaves and barns at the end (.png or .svg)."""
    from matplotlib.figure import Figure

    output = picture_path(path)
    figure = Figure(figsize=(10, 7))
    top, bottom = figure.subplots(2, 1, gridspec_kw={"height_ratios": (3, 1)})
    for kernel in comparison.kernels:
        result = comparison.results[kernel]
        samples = [s for s in result.timeline if s.events] or list(result.timeline)
        top.plot([s.time - samples[0].time for s in samples],
                 [s.slab_pages * result.page_size / (1 << 20) for s in samples],
                 label=f"Linux {kernel}")
    top.set_ylabel("slab memory (MiB)")
    top.set_xlabel("seconds since the first event")
    top.set_title("kmem replay --compare: the same trace under each kernel's SLUB")
    top.legend()
    held = [comparison.results[k].sheaves for k in comparison.kernels]
    labels = [f"Linux {k}" for k in comparison.kernels]
    bottom.barh(labels, [h["cpu_sheaf_objects"] for h in held], label="in CPU sheaves")
    bottom.barh(labels, [h["barn_objects"] for h in held],
                left=[h["cpu_sheaf_objects"] for h in held], label="in barns")
    bottom.set_xlabel("objects held in sheaves at the end")
    bottom.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(output, dpi=100)
