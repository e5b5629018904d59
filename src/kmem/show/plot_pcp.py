"""Pictures of a machine replay (``result.pcp``): free pages per migratetype over the trace's
time, and the pages each CPU's per-CPU lists hold — where the freed pages wait instead of going
back to the buddy lists. PNG or SVG by the file's suffix, as kmem.show.plot.

matplotlib is imported inside the drawing functions (the CLI's startup stays light).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmem.errors import InvalidArgumentError
from kmem.show.machine_view import MIGRATETYPE_COLOURS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The colours of /proc/pagetypeinfo's types as the HTML page draws pageblocks.


def pcp_figure(pcp: dict[str, Any]) -> Figure:
    """Two panels over trace time: free pages per migratetype (MiB), pages on each CPU's pcp."""
    from matplotlib.figure import Figure

    timeline = pcp.get("timeline") if isinstance(pcp, dict) else None
    if not timeline or not timeline["time"]:
        raise InvalidArgumentError("no machine timeline to plot (replay with the page machine)")
    times = [t - timeline["time"][0] for t in timeline["time"]]
    mib = 4096 / (1 << 20)
    figure = Figure(figsize=(10, 7))
    top, bottom = figure.subplots(2, 1, sharex=True)
    for name, pages in timeline["free_pages"].items():
        if any(pages):
            top.plot(times, [p * mib for p in pages], label=name,
                     color=MIGRATETYPE_COLOURS.get(name))
    top.set_yscale("log")  # (Movable dwarfs the others, whose changes tell the story)
    top.set_ylabel("free pages in the buddy lists (MiB, log)")
    top.set_title(f"kmem's page machine ({pcp['layout']}, warm start {pcp['warm_start']})")
    top.legend()
    for cpu, pages in timeline["pcp_pages"].items():
        bottom.plot(times, pages, label=f"cpu {cpu}", drawstyle="steps-post")
    bottom.set_ylabel("pages on the per-CPU lists")
    bottom.set_xlabel(f"trace time (s after {timeline['time'][0]:.6f})")
    bottom.legend()
    figure.tight_layout()
    return figure


def plot_pcp(pcp: dict[str, Any], path: str | Path) -> Path:
    """Write pcp_figure to ``path`` (.png or .svg); return the path."""
    from kmem.show.plot import picture_path

    output = picture_path(path)
    pcp_figure(pcp).savefig(output, dpi=100)
    return output
