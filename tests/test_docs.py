"""Every example in README.md and docs/*.md runs as written and prints what the text says.

The conventions a doc writer follows (docs/development.md repeats them):

- A ```python block is a doctest: it must contain ``>>>``. A file's blocks run in order in one
  namespace, with ELLIPSIS, so a later block may use the names of an earlier one.
- A ```console block is a shell session. Each ``$ `` line is run by /bin/sh, the venv's
  ``kmem`` first on PATH; the lines up to the next ``$ `` are what it prints (stdout and stderr
  as a terminal shows them interleaved), compared line by line without trailing blanks, where
  ``...`` matches anything (doctest's ELLIPSIS). The command must exit 0: show a failing one
  as ``$ kmem ... || echo "exit status $?"``.
- A ```sh block lists commands for the reader. Every line that starts with ``kmem `` runs and
  must exit 0 (its output is not compared, but a file it names after ``-o``, ``--plot``,
  ``--report`` or ``--png`` must then exist and not be empty); other lines (sudo, perf, make)
  are not run. A kmem
  command that cannot run in a test ends with the comment ``# not run by the doc tests: WHY``;
  only ``kmem serve`` (it serves until interrupted) may.
- A block whose info string names a file (```text file=my.kmem) is written to that file before
  the examples after it run.

Each file's examples run in a fresh temporary directory in which ``tests`` links to the
repository's tests/, so that fixture paths read as they would from the repository root and
files the examples write are thrown away.
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import itertools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import kmem

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
BIN = Path(sys.executable).parent
NOT_RUN = "# not run by the doc tests:"

# Each guide documents every option of its commands.
GUIDE_OF_COMMAND = {
    "demo": "buddy.md", "slabinfo": "slab.md", "slabtop": "slab.md", "stat": "traces.md",
    "replay": "traces.md", "run": "pictures.md", "html": "pictures.md", "serve": "pictures.md",
    "plot": "pictures.md", "sweep": "sweeps.md", "zoneinfo": "zones.md", "record": "traces.md",
    "leaks": "traces.md", "top": "traces.md", "arena": "arena.md",
}  # fmt: skip
# Options the docs mention that belong to other programs (perf, Chromium, mypy).
OTHER_PROGRAMS_OPTIONS = {
    "--slab", "--page", "--tests", "--headless", "--no-sandbox", "--disable-gpu", "--strict",
}  # fmt: skip  # (perf kmem's, chromium's, mypy's, tools/mutants.py's --tests)


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its info string, text and first line number (1-based)."""

    info: str
    text: str
    line: int

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info else ""

    @property
    def file_name(self) -> str | None:
        found = re.search(r"\bfile=(\S+)", self.info)
        return found.group(1) if found else None


def blocks(page: Path) -> list[Block]:
    found: list[Block] = []
    lines = page.read_text().splitlines()
    number = 0
    while number < len(lines):
        fence = re.match(r"^(```+)(.*)$", lines[number])
        if not fence:
            number += 1
            continue
        end = number + 1
        while not lines[end].startswith(fence.group(1)):
            end += 1
        found.append(Block(fence.group(2).strip(), "\n".join(lines[number + 1 : end]) + "\n",
                           number + 2))
        number = end + 1
    return found


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _shell_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", COLUMNS="80", PYTHONUTF8="1")
    return env


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=_shell_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)


def _normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def console_sessions(block: Block) -> Iterator[tuple[int, str, str]]:
    """(line number, command, expected output) for each ``$ `` line of a console block."""
    command: tuple[int, str] | None = None
    expected: list[str] = []
    for offset, line in enumerate(block.text.splitlines()):
        if line.startswith("$ "):
            if command:
                yield command[0], command[1], "\n".join(expected)
            command, expected = (block.line + offset, line[2:]), []
        else:
            assert command, f"line {block.line + offset}: console output before any command"
            expected.append(line)
    if command:
        yield command[0], command[1], "\n".join(expected)


def sh_commands(block: Block) -> Iterator[tuple[int, str]]:
    for offset, line in enumerate(block.text.splitlines()):
        if line.startswith("kmem "):
            yield block.line + offset, line


class Results:
    """What one page's examples did: counts and failures."""

    def __init__(self) -> None:
        self.python = 0
        self.shell = 0
        self.skipped: list[str] = []
        self.failures: list[str] = []


def _run_python(page: Path, block: Block, globs: dict[str, object], results: Results) -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(block.text, globs, _name(page), str(page), block.line - 1)
    test.globs = globs  # (get_doctest copies them) one namespace for the whole page
    out: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=out.append, clear_globs=False)
    results.python += runner.tries
    results.failures.extend(out)


def _run_console(page: Path, block: Block, cwd: Path, results: Results) -> None:
    checker = doctest.OutputChecker()
    for line, command, expected in console_sessions(block):
        results.shell += 1
        done = _run(command, cwd)
        got, want = _normalised(done.stdout), _normalised(expected)
        if done.returncode:
            results.failures.append(f"{_name(page)}:{line}: `{command}` exited with status"
                                    f" {done.returncode}:\n{done.stdout}")
        elif not checker.check_output(want + "\n", got + "\n", doctest.ELLIPSIS):
            results.failures.append(f"{_name(page)}:{line}: `{command}` printed\n{got}\n"
                                    f"--- where the doc says\n{want}")


# The options of a kmem command that name a file (or a folder) it writes.
OUTPUT_OPTIONS = ("-o", "--output", "--plot", "--report", "--png")


def missing_outputs(command: str, cwd: Path) -> list[str]:
    """The files a kmem command line names as its outputs that are missing or empty."""
    words = shlex.split(command, comments=True)
    missing = []
    for option, value in itertools.pairwise(words):
        if option in OUTPUT_OPTIONS and not value.startswith("-"):  # (slabtop -o is a flag)
            path = cwd / value
            if not (path.is_dir() and any(path.iterdir())) and not (
                    path.is_file() and path.stat().st_size):
                missing.append(value)
    return missing


def _run_sh(page: Path, block: Block, cwd: Path, results: Results) -> None:
    for line, command in sh_commands(block):
        if NOT_RUN in command:
            results.skipped.append(command)
            continue
        results.shell += 1
        done = _run(command, cwd)
        if done.returncode:
            results.failures.append(f"{_name(page)}:{line}: `{command}` exited with status"
                                    f" {done.returncode}:\n{done.stdout}")
        elif missing := missing_outputs(command, cwd):
            results.failures.append(f"{_name(page)}:{line}: `{command}` wrote no {missing}")


def run_page(page: Path, cwd: Path) -> Results:
    results = Results()
    globs: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks(page):
        if block.file_name:
            (cwd / block.file_name).write_text(block.text)
        elif block.language == "python":
            _run_python(page, block, globs, results)
        elif block.language == "console":
            _run_console(page, block, cwd, results)
        elif block.language == "sh":
            _run_sh(page, block, cwd, results)
    return results


# The least each page must exercise, so that a page cannot quietly lose its examples.
MINIMUM_EXAMPLES = {
    "README.md": (8, 3), "docs/buddy.md": (30, 3), "docs/slab.md": (40, 5),
    "docs/traces.md": (15, 10), "docs/pictures.md": (5, 10), "docs/api.md": (10, 0),
    "docs/development.md": (0, 0), "docs/README.md": (0, 0), "docs/sweeps.md": (6, 5),
    "docs/sheaves.md": (20, 0), "docs/zones.md": (10, 4), "docs/arena.md": (20, 3),
}  # fmt: skip


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_examples_run_as_written(page: Path, sandbox: Path) -> None:
    results = run_page(page, sandbox)
    assert not results.failures, "\n\n".join(results.failures)
    least_python, least_shell = MINIMUM_EXAMPLES[_name(page)]
    assert results.python >= least_python, f"only {results.python} python examples ran"
    assert results.shell >= least_shell, f"only {results.shell} shell examples ran"
    for command in results.skipped:
        assert command.startswith("kmem serve "), f"{command!r} may not be skipped"


def test_every_python_block_is_a_doctest() -> None:
    for page in PAGES:
        for block in blocks(page):
            if block.language == "python" and not block.file_name:
                assert ">>>" in block.text, f"{_name(page)}:{block.line}: no >>> in the block"


def test_the_console_convention_compares_outputs(tmp_path: Path) -> None:
    # The checker the console blocks rely on: a wrong expected output or a failing command
    # is a failure, `...` elides.
    page = tmp_path / "page.md"
    page.write_text("```console\n$ echo one; echo two\none\n...\n$ echo three\nfour\n```\n"
                    "```console\n$ false\n```\n")
    results = Results()
    for block in blocks(page):
        _run_console(page, block, tmp_path, results)
    assert results.shell == 3
    assert len(results.failures) == 2
    assert "where the doc says\nfour" in results.failures[0]
    assert "exited with status 1" in results.failures[1]


def test_the_sh_convention_checks_the_files_a_command_writes(tmp_path: Path) -> None:
    (tmp_path / "written.png").write_bytes(b"\x89PNG")
    (tmp_path / "empty.html").write_text("")
    (tmp_path / "pictures").mkdir()
    command = ("kmem plot -o written.png --report empty.html --png pictures"
               " --plot absent.png  # a comment -o ignored.png")
    assert missing_outputs(command, tmp_path) == ["empty.html", "pictures", "absent.png"]
    assert missing_outputs("kmem stat --json trace.txt", tmp_path) == []


def test_readme_is_short_and_has_no_section_markers() -> None:
    text = README.read_text()
    assert len(text.encode()) < 15_000
    assert "<!--" not in text


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """kmem's parser (under "") and each command's, by name."""
    from kmem.cli.main import build_parser

    top = build_parser()
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {"": top, **action.choices}
    raise AssertionError("kmem has no subcommands")


def test_each_guide_documents_every_option_of_its_commands() -> None:
    parsers = _parsers()
    del parsers[""]
    assert set(parsers) == set(GUIDE_OF_COMMAND), "a command without a guide, or a guide too many"
    readme = README.read_text()
    for command, parser in parsers.items():
        assert f"`kmem {command}" in readme, f"the README's command table lacks kmem {command}"
        guide = (ROOT / "docs" / GUIDE_OF_COMMAND[command]).read_text()
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in guide, (
                        f"docs/{GUIDE_OF_COMMAND[command]} lacks kmem {command} {option}")


def test_every_option_the_docs_mention_exists() -> None:
    known = set(OTHER_PROGRAMS_OPTIONS)
    for parser in _parsers().values():
        for action in parser._actions:
            known.update(action.option_strings)
    for page in PAGES:
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", page.read_text()):
            assert option in known, f"{_name(page)} mentions {option}, which no kmem command has"


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_every_module_path_the_docs_name_exists() -> None:
    for page in PAGES:
        names = set(re.findall(r"`(kmem(?:\.[A-Za-z_]\w*)+)", page.read_text()))
        for dotted in sorted(names):
            assert _resolves(dotted), f"{_name(page)} names {dotted}, which does not exist"


def _api_homes() -> dict[str, list[str]]:
    """Each name docs/api.md gives as re-exported by kmem (a table row marked **kmem**) -> the
    modules of the section (### heading) that lists it."""
    homes: dict[str, list[str]] = {}
    modules: list[str] = []
    for line in (ROOT / "docs" / "api.md").read_text().splitlines():
        if line.startswith("### "):
            modules = re.findall(r"`(kmem(?:\.\w+)+)`", line)
        elif line.startswith("| `") and "**kmem**" in line.split("|")[1]:
            for name in re.findall(r"`(\w+)", line.split("|")[1]):
                homes.setdefault(name, []).extend(modules)
    return homes


def test_the_api_reference_lists_every_public_name_where_it_lives() -> None:
    homes = _api_homes()
    missing = [name for name in kmem.__all__ if name not in homes]
    assert not missing, f"docs/api.md does not list {missing} as re-exported by kmem"
    for name, modules in homes.items():
        assert name in kmem.__all__, f"docs/api.md says kmem exports {name}; it does not"
        public = getattr(kmem, name)
        assert any(getattr(importlib.import_module(module), name, None) is public
                   for module in modules), f"docs/api.md puts {name} in {modules}"


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, - for spaces)."""
    anchors = set()
    in_block = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif not in_block and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_links_and_fixture_paths_exist() -> None:
    for page in PAGES:
        text = page.read_text()
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)]*))?\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            linked = page.parent / target if target else page
            assert linked.exists(), f"{_name(page)} links to {target}"
            if anchor:
                assert anchor in _anchors(linked), f"{_name(page)} links to {target}#{anchor}"
        for path in re.findall(r"tests/fixtures/[\w./-]*\w", text):
            assert (ROOT / path).exists(), f"{_name(page)} names {path}, which does not exist"
