"""docs/sweeps.md's examples run as written and print what the page says.

The page follows the docs' conventions (tests/test_docs.py on the docs branch runs every page
so): a block whose info string names a file (```toml file=fleet.toml) is written to that file;
a ```console block's ``$ `` lines run in /bin/sh with the venv's kmem first on PATH, and what
follows each is its output (stdout and stderr), compared line by line with ``...`` matching
anything; a ```python block is a doctest, all of a page's blocks in one namespace; in a ```sh
block every line starting with ``kmem `` runs and must exit 0. The examples run in a temporary
folder in which ``tests`` links to the repository's tests/.

Until that runner covers docs/ this test runs the sweep guide itself.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGE = ROOT / "docs" / "sweeps.md"
BIN = Path(sys.executable).parent


def _blocks(text: str) -> list[tuple[str, str, int]]:
    """(info string, text, first line number) of every fenced block."""
    found = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        fence = re.match(r"^(```+)(.*)$", lines[number])
        if not fence:
            number += 1
            continue
        end = number + 1
        while not lines[end].startswith(fence.group(1)):
            end += 1
        found.append((fence.group(2).strip(), "\n".join(lines[number + 1:end]) + "\n",
                      number + 2))
        number = end + 1
    return found


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", COLUMNS="80", PYTHONUTF8="1")
    return subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)


def _normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _console(block: str, line: int, cwd: Path, failures: list[str]) -> int:
    sessions: list[tuple[int, str, list[str]]] = []
    for offset, text in enumerate(block.splitlines()):
        if text.startswith("$ "):
            sessions.append((line + offset, text[2:], []))
        else:
            assert sessions, f"docs/sweeps.md:{line + offset}: output before any command"
            sessions[-1][2].append(text)
    checker = doctest.OutputChecker()
    for number, command, expected in sessions:
        done = _run(command, cwd)
        got, want = _normalised(done.stdout), _normalised("\n".join(expected))
        if done.returncode:
            failures.append(f"line {number}: `{command}` exited {done.returncode}:\n{got}")
        elif not checker.check_output(want + "\n", got + "\n", doctest.ELLIPSIS):
            failures.append(f"line {number}: `{command}` printed\n{got}\n--- the page says\n{want}")
    return len(sessions)


def test_the_sweep_guide_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.chdir(tmp_path)
    failures: list[str] = []
    shell = python = 0
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for info, text, line in _blocks(PAGE.read_text()):
        named = re.search(r"\bfile=(\S+)", info)
        language = info.split()[0] if info else ""
        if named:
            (tmp_path / named.group(1)).write_text(text)
        elif language == "console":
            shell += _console(text, line, tmp_path, failures)
        elif language == "sh":
            for offset, command in enumerate(text.splitlines()):
                if command.startswith("kmem "):
                    shell += 1
                    done = _run(command, tmp_path)
                    if done.returncode:
                        failures.append(f"line {line + offset}: `{command}` exited"
                                        f" {done.returncode}:\n{done.stdout}")
        elif language == "python":
            assert ">>>" in text, f"docs/sweeps.md:{line}: a python block that is no doctest"
            test = doctest.DocTestParser().get_doctest(text, namespace, "sweeps.md", str(PAGE),
                                                       line - 1)
            test.globs = namespace
            out: list[str] = []
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
            runner.run(test, out=out.append, clear_globs=False)
            python += runner.tries
            failures.extend(out)
    assert not failures, "\n\n".join(failures)
    assert shell >= 5 and python >= 6
    assert (tmp_path / "fleet.html").exists() and (tmp_path / "fleet-pictures").is_dir()
