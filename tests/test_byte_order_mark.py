"""A text file saved by an editor that writes a UTF-8 byte order mark reads as the same file
without it: every reader of user text (traces, zoneinfo layouts, slabinfo files, scenarios,
sweep specs) skips a leading BOM, as the kernel's own files never carry one."""

from __future__ import annotations

import lzma
from collections.abc import Callable
from pathlib import Path

import pytest

from fixture_files import FIXTURES, LS_TRACE, SWEEP_TRACES, ZONEINFO
from kmem.cli.main import main
from kmem.show.scenario import BUILTIN

BOM = b"\xef\xbb\xbf"


def _output(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _with_and_without_bom(tmp_path: Path, data: bytes, name: str) -> tuple[Path, Path]:
    (tmp_path / "plain").mkdir()
    (tmp_path / "marked").mkdir()
    plain, marked = tmp_path / "plain" / name, tmp_path / "marked" / name
    plain.write_bytes(data)
    marked.write_bytes(BOM + data)
    return plain, marked


Command = Callable[[Path], list[str]]
CASES: dict[str, tuple[Callable[[], bytes], str, Command]] = {
    "trace": (lambda: lzma.decompress(LS_TRACE.read_bytes()), "trace.txt",
              lambda path: ["stat", "--json", str(path)]),
    "zoneinfo layout": (ZONEINFO.read_bytes, "zoneinfo.txt",
                        lambda path: ["zoneinfo", "--layout", str(path), "--cpus", "2"]),
    "slabinfo file": ((FIXTURES / "proc_slabinfo_6.18_sample.txt").read_bytes, "slabinfo.txt",
                      lambda path: ["slabtop", "-o", "--slabinfo", str(path)]),
    "scenario": (lambda: BUILTIN["seed"].encode(), "scenario.txt",
                 lambda path: ["run", "--json", str(path)]),
}


@pytest.mark.parametrize("case", CASES)
def test_a_leading_bom_changes_nothing(case: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    data, name, command = CASES[case]
    plain, marked = _with_and_without_bom(tmp_path, data(), name)
    expected = _output(capsys, *command(plain))
    assert expected[0] == 0, expected[1]
    assert _output(capsys, *command(marked)) == expected


def test_a_sweep_spec_with_a_bom_reads_as_without(tmp_path: Path) -> None:
    from kmem import load_sweep_spec

    trace = sorted(SWEEP_TRACES.glob("*.xz"))[0]
    text = f'traces = "{trace.name}"\n[parameters]\ncpus = [1, 2]\n'.encode()
    plain, marked = _with_and_without_bom(tmp_path, text, "spec.toml")
    for folder in (plain.parent, marked.parent):
        (folder / trace.name).write_bytes(trace.read_bytes())
    read_plain, read_marked = load_sweep_spec(plain), load_sweep_spec(marked)
    assert [(run.trace.name, run.label) for run in read_marked.runs()] == [
        (run.trace.name, run.label) for run in read_plain.runs()]
    assert len(read_plain.runs()) == 2

