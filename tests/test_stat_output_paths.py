"""`kmem stat`'s output paths: the JSON written in chunks, the garbage collector paused only
while the tables are built, and the summary rows as immutable named rows."""

from __future__ import annotations

import gc
import io
import json
from pathlib import Path

import pytest

from kmem.cli import stat as stat_command
from kmem.cli.collector import collector_paused
from kmem.cli.main import main
from kmem.trace.stat import PageRow, SlabRow

PERF = Path(__file__).parent / "fixtures" / "traces" / "perf"


def test_long_text_is_written_whole_and_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    # (chunk edges inside a line and at a line end; lines numbered so a lost or
    # reordered chunk shows)
    text = "".join(f"{number:09d} {'x' * (number % 97)}\n" for number in range(60_000))
    assert len(text) > 2 * stat_command._WRITE_CHUNK
    stat_command._write_text(text)
    assert out.getvalue() == text


def test_empty_text_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    stat_command._write_text("")
    assert out.getvalue() == ""


@pytest.mark.parametrize("options", [["--json"], ["--caller", "--alloc"], []])
def test_collector_is_enabled_after_the_command(options: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert gc.isenabled()
    assert main(["stat", *options, str(PERF / "script.txt.xz")]) == 0
    assert gc.isenabled()
    out = capsys.readouterr().out
    if options == ["--json"]:
        assert json.loads(out)["slab"]["total_bytes_allocated"] == 15425888


def test_collector_is_enabled_again_after_an_error() -> None:
    with pytest.raises(ZeroDivisionError), collector_paused(True):
        assert not gc.isenabled()
        raise ZeroDivisionError
    assert gc.isenabled()


def test_collector_left_disabled_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused(True):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_rows_are_immutable_and_named() -> None:
    row = SlabRow("0x10", 64, 60, 1, 0, 16, "f+0x1/0x2", 6.25)
    assert (row.key, row.bytes_alloc, row.frag) == ("0x10", 64, 6.25)
    with pytest.raises(AttributeError):
        row.hit = 2  # type: ignore[misc]
    page = PageRow(5, 0, 1, "GFP_KERNEL", 0xCC0, 1, 4096, 0, 0)
    assert page.call_site == ""  # (the default: text traces name no page call site)
