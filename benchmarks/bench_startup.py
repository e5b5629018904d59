"""How fast the command line starts: ``kmem --help`` and ``kmem demo --help`` against the
least a rich command line costs here (``python -c "import rich.console, rich.table, argparse"``).

Issue 10's target: both within 1.5x of that baseline, measured in the same run. Each command
runs as its own process (as a user starts it), interleaved with the baseline so that a change in
the shared machine's speed hits all three alike; the figures are medians of 21 runs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.children import installed_environment

KMEM = [sys.executable, "-m", "kmem"]
if (Path(sys.executable).parent / "kmem").exists():  # the installed entry point, as users run it
    KMEM = [str(Path(sys.executable).parent / "kmem")]

COMMANDS = {
    "baseline": [sys.executable, "-c", "import rich.console, rich.table, argparse"],
    "kmem --help": [*KMEM, "--help"],
    "kmem demo --help": [*KMEM, "demo", "--help"],
    "kmem --version": [*KMEM, "--version"],
}


def _once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=installed_environment())
    return time.perf_counter() - start


def run() -> dict[str, object]:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(21):
        for name, argv in COMMANDS.items():
            times[name].append(_once(argv))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["baseline"]
    figures: dict[str, object] = {"baseline import rich.console, rich.table, argparse (ms)":
                                  round(base * 1000, 1)}
    for name in COMMANDS:
        if name != "baseline":
            figures[f"{name} (ms)"] = round(medians[name] * 1000, 1)
            figures[f"{name} / baseline (target <= 1.5)"] = round(medians[name] / base, 2)
    return figures
