"""A picture of slab allocation rates over a trace (kmem.trace.rates): the busiest caches'
bytes allocated per second, one line per cache, against trace time. PNG or SVG by suffix;
matplotlib is imported only inside the drawing function."""

from __future__ import annotations

from pathlib import Path

from kmem.show.plot import picture_path
from kmem.trace.rates import SlabRates


def plot_rates(rates: SlabRates, path: str | Path, caches: int = 8) -> Path:
    """Draw the ``caches`` caches with most bytes over the trace, their bytes per second in
    each interval (KiB/s), and write the picture to ``path``; return the path."""
    from matplotlib.figure import Figure

    output = picture_path(path)
    names = rates.busiest(caches)
    figure = Figure(figsize=(10, 5))
    axes = figure.subplots()
    times = [interval.start - rates.first_time for interval in rates.intervals]
    for name in names:
        per_interval = [next((c.bytes for c in interval.caches if c.name == name), 0)
                        for interval in rates.intervals]
        axes.step(times, [size / rates.interval / 1024 for size in per_interval], where="post",
                  label=name)
    axes.set_xlabel(f"seconds since {rates.first_time:.6f} (intervals of {rates.interval:g} s)")
    axes.set_ylabel("allocated (KiB/s)")
    axes.set_title(f"busiest slab caches ({len(names)} of {len(rates.totals())})")
    if names:
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    return output
