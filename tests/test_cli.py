"""The command line as a whole: its command table, --version, python -m kmem."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from kmem._compiled import core_backend
from kmem.cli.args import COMMANDS
from kmem.cli.main import build_parser, main


def test_version_prints_the_package_version_and_the_core(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"kmem {version('kmem')} ({core_backend()} core)\n"


def test_help_lists_every_command_with_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    words = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal
    for name, line in COMMANDS.items():
        assert f" {name} {line}" in words


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_module_registers_the_command_the_table_names(name: str) -> None:
    # build_parser([name]) registers that command fully, from its own module.
    parser = build_parser([name])
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert name in subparsers.choices  # type: ignore[operator]
    full = build_parser(None)  # every module registered: the same names, the same lines
    sub_full = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub_full._choices_actions}
    assert helps == COMMANDS


def test_python_dash_m_kmem_is_the_kmem_command() -> None:
    done = subprocess.run([sys.executable, "-m", "kmem", "--version"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0
    assert done.stdout == f"kmem {version('kmem')} ({core_backend()} core)\n"


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["nosuch"])
    assert stop.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


def test_the_command_of_a_process_is_main_then_a_frozen_collector(
        capsys: pytest.CaptureFixture[str]) -> None:
    """command() (the console script, python -m kmem) returns main()'s status with main()'s
    whole output written, and leaves what is alive to the end of the process (gc.freeze)."""
    trace = Path(__file__).parent / "fixtures" / "traces" / "kmem-6.18-ls.txt.xz"
    assert main(["stat", str(trace)]) == 0
    expected = capsys.readouterr().out
    code = ("import gc, sys; from kmem.cli.main import command\n"
            f"sys.argv = ['kmem', 'stat', {str(trace)!r}]\n"
            "status = command(); print('frozen', gc.get_freeze_count() > 0, status)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout == expected + "frozen True 0\n"
    done = subprocess.run([sys.executable, "-m", "kmem", "stat", str(trace)],
                          capture_output=True, text=True, check=True)
    assert done.stdout == expected
