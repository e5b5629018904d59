"""`kmem record`: a real recording of a command (root only: skipped otherwise), read back by
kmem stat; and its errors when it cannot record."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from kmem.cli.main import main
from kmem.trace.events import MM_PAGE_ALLOC, batch_events
from kmem.trace.perf_data import TraceInput
from kmem.trace.record import RecordError, find_tracefs, perf_command, record_tracefs

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT or find_tracefs() is None,
                                reason="recording needs root and tracefs")
needs_perf = pytest.mark.skipif(shutil.which("perf") is None, reason="perf is not installed")
WORK = ["sh", "-c", "cat /etc/passwd /etc/group > /dev/null"]


def _stat_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["stat", "--json", str(path)]) == 0
    document: dict[str, object] = json.loads(capsys.readouterr().out)
    return document


def _instances() -> set[str]:
    root = find_tracefs()
    return {p.name for p in (root / "instances").iterdir()} if root else set()


@needs_root
def test_tracefs_recording_is_read_by_stat(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = _instances()
    out = tmp_path / "trace.txt"
    assert main(["record", "-o", str(out), "--", *WORK]) == 0
    assert "lines written to" in capsys.readouterr().err
    events = _stat_json(out, capsys)["events"]
    assert isinstance(events, dict)
    assert events["kmalloc"] + events["kmem_cache_alloc"] > 0
    assert _instances() == before  # the private instance is gone


@needs_root
def test_slab_only_records_no_page_events(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "slab.txt"
    assert main(["record", "--slab", "-o", str(out), "--", *WORK]) == 0
    events = _stat_json(out, capsys)["events"]
    assert isinstance(events, dict)
    assert events["kmem_cache_alloc"] > 0
    assert not any(events[name] for name in events if name.startswith("mm_page"))


@needs_root
def test_the_commands_exit_status_is_kmem_records(tmp_path: Path) -> None:
    assert main(["record", "-o", str(tmp_path / "t.txt"), "--", "sh", "-c", "exit 3"]) == 3


@needs_root
@needs_perf
def test_call_graph_recording_goes_through_perf(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "perf.data"
    assert main(["record", "-g", "-o", str(out), "--", *WORK]) == 0
    with TraceInput.open(out) as trace:
        assert trace.kind == "perf.data"
        events = [event for batch in trace.batches() for event in batch_events(batch)]
    pages = [event for event in events if event[0] == MM_PAGE_ALLOC]
    assert pages and all(event[3] for event in pages)  # page call sites from the callchains
    assert _stat_json(out, capsys)["events"] == trace.events


def test_perf_command_line() -> None:
    assert perf_command(["true"], "x.data", page=False) == [
        "perf", "record", "-a", "-c", "1", "-e",
        "kmem:kmalloc,kmem:kfree,kmem:kmem_cache_alloc,kmem:kmem_cache_free", "-o", "x.data",
        "--", "true"]
    assert "-g" in perf_command(["true"], "x.data", callchains=True)


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for perf in ([], ["--perf"]):
        assert main(["record", *perf, "-o", str(tmp_path / "x"), "--", "true"]) == 2
        assert "needs root" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not ROOT, reason="the root check comes first")
def test_missing_tracefs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="tracefs with the kmem events not found"):
        record_tracefs(["true"], tmp_path / "x", tracefs=tmp_path / "no-tracefs")
    assert not (tmp_path / "x").exists()


def test_no_command_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "-o", "/nonexistent/x"]) == 2
    assert "no command to record" in capsys.readouterr().err


@needs_root
def test_unwritable_output_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    before = _instances()
    assert main(["record", "-o", "/nonexistent/dir/x", "--", "true"]) == 2
    assert "cannot write '/nonexistent/dir/x'" in capsys.readouterr().err
    assert _instances() == before


@pytest.mark.parametrize("method", [[], ["--perf"], ["-g"]])
def test_a_command_that_cannot_run_is_a_clear_error(method: list[str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before anything starts, through tracefs or perf alike, in one line of kmem's:
    # the output is neither made nor touched (perf moved an existing one to .old, then said
    # "Failed to collect ..." and exited 255), and no tracefs instance is left.
    before = _instances()
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")  # (not executable)
    kept = tmp_path / "kept.data"
    kept.write_text("an earlier recording\n")
    for command, reason in (("no-such-command-kmem", "No such file or directory"),
                            (str(tmp_path / "none"), "No such file or directory"),
                            (str(script), "Permission denied"),
                            (str(tmp_path), "Is a directory")):
        for output in (tmp_path / "x", kept):
            assert main(["record", *method, "-o", str(output), "--", command]) == 2
            assert capsys.readouterr().err == f"kmem record: cannot run {command!r}: {reason}\n"
    assert not (tmp_path / "x").exists()
    assert kept.read_text() == "an earlier recording\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.data", "script.sh"]
    assert _instances() == before


@pytest.mark.parametrize("method", [[], ["--perf"]])
def test_an_output_that_cannot_be_written_is_refused_before_recording(
        method: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # (perf took a folder given as its output, moved it to FOLDER.old and wrote a file there)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "inside.txt").write_text("mine\n")
    for output, reason in ((folder, "Is a directory"),
                           (tmp_path / "none" / "x", "No such file or directory")):
        assert main(["record", *method, "-o", str(output), "--", "true"]) == 2
        assert capsys.readouterr().err == f"kmem record: cannot write {str(output)!r}: {reason}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
    assert (folder / "inside.txt").read_text() == "mine\n"


@needs_root
def test_an_instance_that_cannot_be_created_leaves_the_output_as_it_was(tmp_path: Path) -> None:
    # A tracefs with the kmem events where no instance can be made ("instances" is a file).
    fake = tmp_path / "tracefs"
    (fake / "events" / "kmem" / "kmalloc").mkdir(parents=True)
    (fake / "instances").write_text("")
    output = tmp_path / "kept.txt"
    output.write_text("an earlier recording\n")
    with pytest.raises(RecordError, match="cannot create the tracefs instance"):
        record_tracefs(["true"], output, tracefs=fake)
    assert output.read_text() == "an earlier recording\n"
    with pytest.raises(RecordError, match="cannot create the tracefs instance"):
        record_tracefs(["true"], tmp_path / "new.txt", tracefs=fake)
    assert not (tmp_path / "new.txt").exists()  # (no empty file left behind)
