"""`python -m benchmarks` (make bench) names what it can run and refuses what it cannot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _benchmarks(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks", *argv], cwd=ROOT,
                          capture_output=True, text=True, check=False)


def test_an_unknown_benchmark_is_refused_with_the_list() -> None:
    done = _benchmarks("bench_buddy", "--help-me")  # (it was a ModuleNotFoundError traceback)
    assert done.returncode == 2 and done.stdout == ""  # (nothing run, not even bench_buddy)
    assert done.stderr.startswith("benchmarks: no benchmark --help-me (there are: ")
    assert "Traceback" not in done.stderr and "bench_html" in done.stderr


def test_help_lists_every_benchmark() -> None:
    done = _benchmarks("--help")
    assert done.returncode == 0
    names = done.stdout.splitlines()[-1].split()[1:]
    expected = sorted(path.stem for path in (ROOT / "benchmarks").glob("bench_*.py"))
    assert names == expected
