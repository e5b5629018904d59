#!/usr/bin/env python3
"""Line and branch coverage per layer, from the data ``make test`` collects (pytest --cov).

    python tools/coverage_layers.py              # the table
    python tools/coverage_layers.py --check 98   # and exit 1 if a core layer is below 98 %

``make test`` checks that each core layer is at 98 %, issue #18's target (a fresh run of
2026-12-07 measured page 99.94, slab 99.90, trace 99.87), so coverage cannot slide back. CI
measures what a local ``make test`` measures (the same skips: see docs/development.md,
Coverage), so the floor's margin is for new code, not for CI.

Coverage is measured with branches, in the forked trace-parser child too (the
``concurrency = multiprocessing`` setting in pyproject.toml). The core layers (page, slab,
trace) are the ones held to the bar; a line that cannot be reached by a test is marked
``# pragma: no cover`` with the reason beside it.
"""

from __future__ import annotations

import io
import sys

import coverage

LAYERS = {
    "errors": "*/kmem/errors.py",
    "page": "*/kmem/page/*",
    "slab": "*/kmem/slab/*",
    "trace": "*/kmem/trace/*",
    "show": "*/kmem/show/*",
    "cli": "*/kmem/cli/*",
    "top": "*/kmem/__*__.py",
}
CORE = ("page", "slab", "trace")


def layer_percentages(cov: coverage.Coverage) -> dict[str, float]:
    return {layer: cov.report(include=[pattern], file=io.StringIO())
            for layer, pattern in LAYERS.items()}


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Coverage per layer, from make test's data.")
    parser.add_argument("--check", type=float, metavar="PERCENT",
                        help="exit 1 if a core layer (page, slab, trace) is below PERCENT")
    bar = parser.parse_args(argv).check
    cov = coverage.Coverage()
    try:
        cov.load()
    except coverage.CoverageException as error:
        print(f"coverage_layers: {error}", file=sys.stderr)
        return 2
    if not cov.get_data().measured_files():
        print("coverage_layers: no coverage data (make test collects it)", file=sys.stderr)
        return 2
    percentages = layer_percentages(cov)
    total = cov.report(file=io.StringIO())
    print("coverage (lines and branches) per layer:")
    for layer, percent in percentages.items():
        mark = " (core)" if layer in CORE else ""
        print(f"  {layer:7s} {percent:6.2f} %{mark}")
    print(f"  {'all':7s} {total:6.2f} %")
    low = [layer for layer in CORE if bar is not None and percentages[layer] < bar]
    if low:
        print(f"coverage: {', '.join(low)} below {bar} %; `coverage report` lists the lines",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
