#!/usr/bin/env python3
"""Mutation testing of kmem's core with mutmut, one module at a time (``make mutants``).

    python tools/mutants.py                      # every module below
    python tools/mutants.py page/buddy slab/slub # some of them
    python tools/mutants.py --list               # the modules and their test subsets
    python tools/mutants.py --tests=tests/test_kmalloc.py slab/kmalloc  # another test subset

Each module runs in its own scratch copy, build/mutants/<module>/ (src, tests and a
pyproject.toml whose [tool.mutmut] names the module and a fast test subset), so two modules can
run side by side and a rerun only tries the mutants it has not tried yet. mutmut runs, per
mutant, only the subset's tests that reach the mutated function, forked from a warm process.
Hypothesis runs derandomized there (tests/conftest.py, KMEM_MUTANTS=1), so a kill is
repeatable. At the end each module's counts are printed and its surviving mutants are written
to build/mutants/<module>/survivors.txt with their diffs (``mutmut show`` output), to be killed
by a test or listed as equivalent in docs/development.md (its Mutation testing section).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "mutants"

SLAB_TESTS = ["tests/test_slab.py", "tests/test_slab_errors.py", "tests/test_slab_debug.py",
              "tests/test_slub_model.py", "tests/test_slab_classic_model.py",
              "tests/test_mutants_cpu.py"]
# module -> the tests that exercise it (a fast subset of the whole suite)
MODULES: dict[str, list[str]] = {
    "page/buddy": ["tests/test_buddy.py", "tests/test_buddy_errors.py",
                   "tests/test_buddy_stateful.py", "tests/test_fragmentation.py",
                   "tests/test_cov_page.py", "tests/test_cov_core4.py",
                   "tests/test_mutants_buddy.py"],
    # (the page machine's zones and pcps use its list primitives: their tests too)
    "page/mem_map": ["tests/test_buddy.py", "tests/test_buddy_errors.py",
                     "tests/test_buddy_stateful.py", "tests/test_page_machine.py",
                     "tests/test_cov_page.py"],
    "page/zone": ["tests/test_page_machine.py", "tests/test_page_machine_stateful.py",
                  "tests/test_cov_page.py", "tests/test_page_zoneinfo.py",
                  "tests/test_pfmemalloc.py", "tests/test_pfmemalloc_replay.py",
                  "tests/test_machine_replay.py", "tests/test_scenario_machine.py",
                  "tests/test_cov_core4.py", "tests/test_cov_core5.py", "tests/test_numa.py",
                  "tests/test_mutants_zone.py"],
    # (nearly every test reaches KmemCache, so a mutant costs about a whole subset run: the
    # hypothesis state machines and the Linux model lockstep files, ~25 s of the 35 s a run of
    # SLAB_TESTS and test_slab_stateful.py takes, are left out; the unit, error, coverage and
    # NUMA tests of both policies stand in for them)
    "slab/cache": ["tests/test_slab.py", "tests/test_slab_errors.py", "tests/test_slab_debug.py",
                   "tests/test_mutants_cpu.py", "tests/test_cov_slab.py",
                   "tests/test_cov_slab2.py", "tests/test_mutants_slub.py",
                   "tests/test_mutants_classic.py", "tests/test_numa.py",
                   "tests/test_mutants_cache.py"],
    "slab/slub": [*SLAB_TESTS, "tests/test_slab_stateful.py", "tests/test_mutants_slub.py",
                  "tests/test_pfmemalloc_slab.py", "tests/test_slab_free_cpu.py",
                  "tests/test_cov_slab.py", "tests/test_cov_slab2.py"],
    "slab/classic": [*SLAB_TESTS, "tests/test_slab_stateful.py", "tests/test_cov_slab.py",
                     "tests/test_cov_slab2.py", "tests/test_mutants_classic.py"],
    "slab/kmalloc": ["tests/test_kmalloc.py", "tests/test_mutants_kmalloc.py",
                     "tests/test_mutants_kmalloc2.py", "tests/test_slab.py",
                     "tests/test_slab_errors.py"],
    "slab/kmalloc_sizes": ["tests/test_kmalloc_sizes.py", "tests/test_kmalloc.py",
                           "tests/test_mutants_kmalloc.py", "tests/test_mutants_kmalloc2.py",
                           "tests/test_mutants_kmalloc_sizes.py",
                           "tests/test_sheaves.py"],  # (random kmalloc caches)
    "slab/geometry": ["tests/test_slab_geometry.py", "tests/test_slab_merge.py",
                      "tests/test_cov_slab.py", "tests/test_kmalloc_sizes.py",
                      "tests/test_mutants_geometry.py"],
    "slab/merge": ["tests/test_slab_merge.py", "tests/test_cov_slab.py"],
    "trace/stat": ["tests/test_trace_stat.py", "tests/test_mutants_stat.py",
                   "tests/test_mutants_stat2.py"],
}


def _scratch(module: str, tests: list[str]) -> Path:
    """build/mutants/<module>: a copy of src and tests with the module's mutmut config."""
    work = BUILD / module.replace("/", ".")
    work.mkdir(parents=True, exist_ok=True)
    for name in ("src", "tests"):
        # Copy afresh (mutants/ holds mutmut's own copy and its results: kept between runs).
        if (work / name).exists():
            shutil.rmtree(work / name)
        shutil.copytree(ROOT / name, work / name,
                        ignore=shutil.ignore_patterns("__pycache__", "browser", ".hypothesis"))
    # mutmut picks, per mutant, the tests that reached the mutated function when it ran them
    # once; a module- or session-scoped fixture runs inside the first test that uses it only,
    # so the others would never be picked. In the copy every fixture is per test.
    for test_file in (work / "tests").rglob("*.py"):
        text = test_file.read_text()
        unscoped = re.sub(r'@pytest\.fixture\(scope="(module|session)"\)', "@pytest.fixture",
                          text)
        if unscoped != text:
            test_file.write_text(unscoped)
    shutil.copy2(ROOT / "README.md", work / "README.md")  # doc tests read it
    config = (ROOT / "pyproject.toml").read_text()
    config += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'  # the whole package is copied, so imports find it
        f'only_mutate = ["src/kmem/{module}.py"]\n'
        f"pytest_add_cli_args_test_selection = {tests!r}\n".replace("'", '"')
        # (mutmut's trampolines stand between a test and the allocator, so the tests of the
        # caller names SLAB_STORE_USER records, and of the leak report that quotes them,
        # cannot pass there: they are left out.)
        + 'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "--deselect",'
        ' "tests/test_slab_debug.py::test_store_user_records_callers", "--deselect",'
        ' "tests/test_slab_debug.py::test_leak_report_names_the_allocating_caller"]\n'
        + 'also_copy = ["tests", "README.md"]\n'
    )
    (work / "pyproject.toml").write_text(config)
    return work


def run(module: str, max_children: int, tests: list[str] | None = None) -> Counter[str]:
    """Run (or resume) the module's mutants with ``tests`` (default: its MODULES subset)."""
    work = _scratch(module, tests or MODULES[module])
    # KMEM_PURE=1: the Python modules mutated here are the ones that run (not the C core).
    env = {**os.environ, "KMEM_MUTANTS": "1", "KMEM_PURE": "1"}
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    subprocess.run([mutmut, "run", "--max-children", str(max_children)], cwd=work, env=env,
                   check=False)
    results = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=env,
                             capture_output=True, text=True, check=False).stdout
    counts: Counter[str] = Counter()
    survivors = []
    for line in results.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name:
            continue
        counts[status] += 1
        if status in ("survived", "no tests", "timeout", "suspicious"):
            survivors.append(name)
    with open(work / "survivors.txt", "w") as out:
        for name in survivors:
            shown = subprocess.run([mutmut, "show", name], cwd=work, env=env,
                                   capture_output=True, text=True, check=False).stdout
            out.write(f"## {name}\n{shown}\n")
    return counts


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for module, subset in MODULES.items():
            print(f"{module:20s} {' '.join(subset)}")
        return 0
    max_children = 1
    tests: list[str] | None = None
    while argv and argv[0].startswith("--"):
        option, _, value = argv.pop(0).partition("=")
        if option == "--jobs":
            max_children = int(value)
        elif option == "--tests":  # test files (comma-separated, or the option repeated)
            named = [name for name in value.split(",") if name]
            missing = [name for name in named if not (ROOT / name).is_file()]
            if missing or not named:
                print(f"mutants: no test file {', '.join(missing) or repr(value)}",
                      file=sys.stderr)
                return 2
            tests = [*(tests or []), *named]
        else:
            print(f"mutants: unknown option {option}", file=sys.stderr)
            return 2
    modules = [m.removeprefix("kmem/").removeprefix("src/kmem/").removesuffix(".py")
               .replace(".", "/") for m in argv] or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        print(f"mutants: unknown module(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    for module in modules:
        counts = run(module, max_children, tests)
        killed = counts["killed"]
        total = sum(counts.values())
        print(f"{module}: {total} mutants, {dict(sorted(counts.items()))}, killed "
              f"{killed}/{total}; survivors in build/mutants/{module.replace('/', '.')}/"
              "survivors.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
