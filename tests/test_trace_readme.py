"""The README's trace section works as written: its Python examples and its kmem commands."""

from __future__ import annotations

import doctest
import shlex
from pathlib import Path

import pytest

from kmem.cli.main import main

ROOT = Path(__file__).parents[1]


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- section:trace ")
    return text[start : text.index("<!-- /section:trace -->", start)]


def test_trace_section_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    test = doctest.DocTestParser().get_doctest(_section(), {}, "README trace", "README.md", 0)
    assert len(test.examples) > 5
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_trace_section_commands_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    commands = []
    in_shell = False
    for line in _section().splitlines():
        if line.startswith("```"):
            in_shell = line == "```sh"
        elif in_shell and line.startswith("kmem "):
            commands.append(line)
    assert len(commands) >= 6
    for command in commands:
        argv = [a if a != "replay.png" else str(tmp_path / a) for a in shlex.split(command)[1:]]
        assert main(argv) == 0, command
    assert (tmp_path / "replay.png").exists()
    capsys.readouterr()
