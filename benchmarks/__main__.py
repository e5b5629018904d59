"""Run every benchmark module (``bench_*.py``), print its figures, write benchmarks/results/.

Each module defines ``run() -> dict[str, object]``: figure name -> value. Results go to
``benchmarks/results/<module>.json`` so they can be committed and compared across changes.
Pass module names (``python -m benchmarks bench_buddy``) to run only those. Each module runs in
a process of its own, so one benchmark's memory (the 64 GiB machine) never shows in another's
peak RSS.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def run_one(name: str) -> int:
    """Run one benchmark module in this process; print and write its figures."""
    module = importlib.import_module(f"benchmarks.{name}")
    print(f"== {name}", flush=True)
    figures = module.run()
    record = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "figures": figures,
    }
    for key, value in figures.items():
        print(f"  {key:<55} {value}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        return run_one(argv[1])
    known = sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip() + "\n\nBenchmarks: " + " ".join(known))
        return 0
    unknown = [name for name in argv if name not in known]
    if unknown:
        print(f"benchmarks: no benchmark {' '.join(unknown)} (there are: {' '.join(known)})",
              file=sys.stderr)
        return 2
    names = argv or known
    status = 0
    for name in names:
        done = subprocess.run([sys.executable, "-m", "benchmarks", "--one", name], check=False)
        status = status or done.returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
