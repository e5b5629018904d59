"""The command line as a user meets it (issue 12): bad input is exit status 2 and one line
``kmem CMD: what is wrong`` (argparse's usage error for a bad option value), never a traceback,
and no output file is left half written; output is never wrapped; every option has one name,
one default and a checked value across commands."""

from __future__ import annotations

import io
import json
import lzma
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fixture_files import LS_TRACE
from kmem.cli import terminal
from kmem.cli.args import DEFAULT_CPUS, DEFAULT_MEMORY, MIN_MEMORY
from kmem.cli.main import build_parser, main
from kmem.cli.serve import make_server

NONEXISTENT = "/nonexistent-kmem-folder/d"


def kmem(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``kmem ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's usage errors and --help
        status = int(stop.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of ``kmem ARGV``, checked to be exit status 2 with nothing on
    standard output and no traceback."""
    status, out, err = kmem(argv, capsys)
    assert status == 2, (argv, out, err)
    assert "Traceback" not in err and out == ""
    lines = err.rstrip("\n").split("\n")
    command = argv[0]
    if lines[0].startswith("usage:"):  # argparse: usage, then its one error line
        assert lines[-1].startswith(f"kmem {command}: error: ")
    else:
        assert len(lines) == 1 and lines[0].startswith(f"kmem {command}: "), err
    return lines[-1]


@pytest.fixture
def small_trace(tmp_path: Path) -> Path:
    """The first 400 lines of the ls recording, as plain text."""
    with lzma.open(LS_TRACE, "rt") as source:
        lines = [next(source) for _ in range(400)]
    path = tmp_path / "small.txt"
    path.write_text("".join(lines))
    return path


@pytest.fixture
def bad_line_trace(small_trace: Path, tmp_path: Path) -> Path:
    """The small trace with one line that is no trace event, in the middle (line 201)."""
    lines = small_trace.read_text().splitlines(keepends=True)
    path = tmp_path / "bad-line.txt"
    path.write_text("".join([*lines[:200], "this is not an event\n", *lines[200:]]))
    return path


RANDOM_BYTES = bytes((index * 7919 + 13) % 251 for index in range(4000))  # not UTF-8


# -- output files: checked before the work, written whole or not at all ------------------------

@pytest.mark.parametrize("argv", [
    ["html", "-o", f"{NONEXISTENT}/x.html"],
    ["plot", "-o", f"{NONEXISTENT}/x.png"],
    ["html", "-o", ""],
    ["html", "-o", "new-folder/"],
])
def test_an_output_file_that_cannot_be_written_is_one_line(
        argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = refused(argv, capsys)
    assert "-o" in line and ("no folder" in line or "is a folder" in line)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["html", "plot"])
def test_an_output_that_is_a_folder_is_refused(
        command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = refused([command, "-o", str(tmp_path)], capsys)
    assert f"-o {str(tmp_path)!r} is a folder" in line
    assert list(tmp_path.iterdir()) == []


def test_replay_checks_its_plot_file_before_the_replay(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # The trace is bad from line 1: a check made after the replay would report the trace.
    trace = tmp_path / "bad.txt"
    trace.write_text("not a trace\n")
    line = refused(["replay", "--plot", f"{NONEXISTENT}/x.png", str(trace)], capsys)
    assert line == f"kmem replay: --plot '{NONEXISTENT}/x.png': no folder '{NONEXISTENT}'"


def test_a_failed_page_leaves_no_file_and_an_old_one_unchanged(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, bad_line_trace: Path) -> None:
    page = tmp_path / "page.html"
    refused(["html", str(bad_line_trace), "-o", str(page)], capsys)
    assert not page.exists()
    page.write_text("the old page")
    refused(["html", str(bad_line_trace), "-o", str(page)], capsys)
    assert page.read_text() == "the old page"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad-line.txt", "page.html",
                                                          "small.txt"]


def test_a_failed_plot_leaves_no_file(capsys: pytest.CaptureFixture[str], tmp_path: Path
                                      ) -> None:
    picture = tmp_path / "p.png"
    line = refused(["plot", "seed-buddy", "--step", "999", "-o", str(picture)], capsys)
    assert "step 999 is not a frame" in line
    assert list(tmp_path.iterdir()) == []


def test_a_page_is_written_readable_as_before(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    status, _, err = kmem(["html", "seed-buddy", "-o", str(page)], capsys)
    assert status == 0 and err.startswith(f"wrote {page} ")
    mask = os.umask(0)
    os.umask(mask)
    assert page.stat().st_mode & 0o777 == 0o666 & ~mask  # not the temporary file's 0600


# -- input that is not what it should be ---------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["html", "{}", "-o", "x.html"],
    ["plot", "{}", "-o", "x.png"],
    ["run", "{}"],
    ["slabinfo", "--scenario", "{}"],
    ["slabtop", "--scenario", "{}"],
])
def test_binary_or_non_utf8_input_is_one_line_with_its_line(
        argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    binary = tmp_path / "random.bin"
    binary.write_bytes(RANDOM_BYTES)
    line = refused([word.replace("{}", str(binary)) for word in argv], capsys)
    assert "random.bin:1: not a scenario: byte 0x" in line
    latin1 = tmp_path / "latin1.kmem"
    latin1.write_bytes("memory 1M\n# caf\xe9\nalloc a 4K\n".encode("latin-1"))
    line = refused([word.replace("{}", str(latin1)) for word in argv], capsys)
    assert "latin1.kmem:2: not a scenario: byte 0xe9 is not UTF-8 text" in line
    nul = tmp_path / "nul.kmem"
    nul.write_bytes(b"memory 1M\nalloc a 4K\n\0\0\0")
    assert "nul.kmem:3: not a scenario: binary data" in refused(
        [word.replace("{}", str(nul)) for word in argv], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latin1.kmem", "nul.kmem",
                                                          "random.bin"]


def test_a_corrupt_compressed_file_is_read_as_a_broken_trace(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.xz"
    corrupt.write_bytes(lzma.compress(b"x" * 1000)[:30])  # cut off: EOFError once
    expected = refused(["stat", str(corrupt)], capsys).removeprefix("kmem stat: ")
    assert "broke off" in expected
    assert refused(["html", str(corrupt), "-o", str(tmp_path / "x.html")], capsys) == (
        f"kmem html: {expected}")  # the trace reader's error, not a scenario's
    assert refused(["plot", str(corrupt), "-o", str(tmp_path / "x.png")], capsys) == (
        f"kmem plot: {expected}")
    assert [p.name for p in tmp_path.iterdir()] == ["corrupt.xz"]


@pytest.mark.parametrize("make", ["random", "bad_line"])
def test_html_reads_a_trace_exactly_as_stat_and_replay_do(
        make: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        bad_line_trace: Path) -> None:
    if make == "random":
        trace = tmp_path / "random.txt"
        trace.write_bytes(RANDOM_BYTES)
    else:
        trace = bad_line_trace
    stat = refused(["stat", str(trace)], capsys).removeprefix("kmem stat: ")
    assert refused(["replay", str(trace)], capsys) == f"kmem replay: {stat}"
    for command, suffix in (("html", "html"), ("plot", "png")):
        line = refused([command, "--trace", str(trace), "-o", str(tmp_path / f"x.{suffix}")],
                       capsys)
        assert line == f"kmem {command}: {stat}"  # not a page of 0 steps
    if make == "bad_line":
        assert stat.startswith(f"{trace}:201: ")  # FILE:LINE: what is wrong
        assert refused(["html", str(trace), "-o", str(tmp_path / "x.html")],
                       capsys) == f"kmem html: {stat}"  # guessed a trace: the same


def test_html_skip_bad_counts_the_bad_line_as_replay_does(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, bad_line_trace: Path) -> None:
    from test_html import embedded

    page = tmp_path / "p.html"
    status, _, err = kmem(["html", "--skip-bad", str(bad_line_trace), "-o", str(page)], capsys)
    assert status == 0 and err.startswith(f"wrote {page} ")  # (the status line alone)
    trace = embedded(page.read_text())["trace"]
    status, out, _ = kmem(["replay", "--skip-bad", "--json", str(bad_line_trace)], capsys)
    replay = json.loads(out)
    assert trace["bad_lines"] == replay["bad_lines"] == 1
    assert trace["lines"] == replay["lines"]
    assert trace["events"] == replay["events"]


def test_html_reads_a_trace_or_a_scenario_from_standard_input(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, small_trace: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from test_html import embedded

    def stdin(data: bytes) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    from_file = tmp_path / "file.html"
    assert kmem(["html", "--trace", str(small_trace), "-o", str(from_file)], capsys)[0] == 0
    for argv in (["html", "--trace", "-"], ["html", "-"]):  # said, or guessed
        stdin(small_trace.read_bytes())
        from_stdin = tmp_path / "stdin.html"
        status, _, err = kmem([*argv, "-o", str(from_stdin)], capsys)
        assert status == 0, err
        assert embedded(from_stdin.read_text())["frames"] == embedded(
            from_file.read_text())["frames"]
    stdin(b"memory 64K\nalloc A 8K\n")
    assert kmem(["html", "-", "-o", str(from_stdin)], capsys)[0] == 0
    assert embedded(from_stdin.read_text())["total_steps"] == 1


# -- arguments: one vocabulary, the same defaults, checked values --------------------------

MACHINE_COMMANDS = ["replay", "html", "plot", "serve", "slabinfo", "slabtop"]


@pytest.mark.parametrize("command", MACHINE_COMMANDS)
def test_every_command_has_the_same_memory_and_cpus_defaults(command: str) -> None:
    argv = [command, "trace.txt"] if command == "replay" else [command]
    args = build_parser(argv).parse_args(argv)
    assert (args.memory, args.cpus) == (DEFAULT_MEMORY, DEFAULT_CPUS) == (1 << 30, 2)
    # --nr-cpus, replay's old name, is the same option everywhere (and not in --help).
    assert build_parser(argv).parse_args([*argv, "--nr-cpus", "3"]).cpus == 3
    subparsers = next(a for a in build_parser(argv)._actions if a.dest == "command")
    assert "--nr-cpus" not in subparsers.choices[command].format_help()  # type: ignore[index]


def test_zoneinfo_takes_the_same_cpus_option() -> None:
    assert build_parser(["zoneinfo"]).parse_args(["zoneinfo", "--nr-cpus", "3"]).cpus == 3


@pytest.mark.parametrize(("argv", "message"), [
    (["stat", "-l", "-1", "t"], "argument -l/--lines: '-1': must be 1 or more"),
    (["stat", "-l", "1_0", "t"], "argument -l/--lines: '1_0' is not a whole number"),
    (["stat", "--page-size", "lots", "t"], "argument --page-size: bad size 'lots'"),
    (["slabtop", "--limit", "0"], "argument --limit: '0': must be 1 or more"),
    (["slabinfo", "--memory", "4K"], "argument --memory: '4K' is too small: a machine needs"
                                     f" at least {MIN_MEMORY >> 20}M"),
    (["replay", "--memory", "4K", "t"], "argument --memory: '4K' is too small"),
    (["replay", "--memory", "4097K", "t"], "'4097K' is not a whole number of 4K pages"),
    (["replay", "--memory", "-1G", "t"], "argument --memory: bad size '-1G'"),
    (["html", "--memory", "-1G"], "argument --memory: bad size '-1G'"),
    (["slabtop", "--memory", "-1.5M"], "argument --memory: bad size '-1.5M'"),
    (["replay", "--memory", "４G", "t"], "argument --memory: bad size '４G'"),  # not ASCII
    (["slabinfo", "--cpus", "0"], "argument --cpus: '0': CPUs are 1 to 4096"),
    (["replay", "--cpus", "5000", "t"], "argument --cpus: '5000': CPUs are 1 to 4096"),
    (["replay", "--every", "0", "t"], "argument --every: '0': must be 1 or more"),
    (["replay", "--caches", "-3", "t"], "argument --caches: '-3': must be 0 or more"),
    (["html", "--frames", "٣"], "argument --frames: '٣' is not a whole number"),
    (["plot", "--step", "x"], "argument --step: 'x' is not a whole number"),
    (["zoneinfo", "--cpus", "-3"], "argument --cpus: '-3': CPUs are 1 to 4096"),
    (["zoneinfo", "--min-free-kbytes", "-5"], "argument --min-free-kbytes: '-5': must be 0"),
    (["sweep", "--jobs", "0", "s.toml"], "argument --jobs: '0': must be 1 or more"),
    (["sweep", "--top", "-1", "s.toml"], "argument --top: '-1': must be 0 or more"),
    (["run", "--width", "0"], "argument --width: '0': must be 1 or more"),
    (["serve", "--port", "8o"], "argument --port: '8o' is not a whole number"),
])
def test_bad_option_values_are_usage_errors_before_any_work(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert message in refused(argv, capsys)


def test_replay_memory_4k_was_a_report_of_zero_mib(capsys: pytest.CaptureFixture[str],
                                                   small_trace: Path) -> None:
    # The least memory a machine may have replays: nothing reads "0.00 MiB of memory".
    status, out, _ = kmem(["replay", "--memory", f"{MIN_MEMORY >> 20}M", str(small_trace)],
                          capsys)
    assert status == 0 and "4.00 MiB of memory" in out


def test_slabinfo_cache_suggests_close_names_only(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(["slabinfo", "--cache", "kmalloc-9"], capsys)
    assert line.startswith("kmem slabinfo: no cache named 'kmalloc-9' (did you mean: ")
    suggested = line.split("did you mean: ")[1].rstrip("?)").split(", ")
    assert "kmalloc-96" in suggested and all(name.startswith("kmalloc") for name in suggested)
    assert refused(["slabinfo", "--cache", "nosuch"], capsys) == (
        "kmem slabinfo: no cache named 'nosuch' (kmem slabinfo lists every cache)")


# -- output: never wrapped or cut, in a pipe or a narrow terminal -----------------------------

def _kmem_piped(*argv: str, columns: int = 40) -> str:
    done = subprocess.run([sys.executable, "-m", "kmem", *argv], capture_output=True, text=True,
                          check=False, env={**os.environ, "COLUMNS": str(columns)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar in a pipe
    return done.stdout


BUDDYINFO_LINE = re.compile(r"^Node 0, zone +\w+( +\d+){11}$", re.M)


def test_replay_output_in_a_pipe_keeps_kernel_lines_and_names_whole(small_trace: Path
                                                                    ) -> None:
    out = _kmem_piped("replay", str(small_trace))
    assert BUDDYINFO_LINE.search(out), out  # one line, as /proc/buddyinfo
    assert re.search(r"^kmem replay: layers .* max order 10$", out, re.M)
    assert "…" not in out  # no cut name or number


def test_slabtop_and_run_in_a_narrow_terminal_keep_full_names() -> None:
    out = _kmem_piped("slabtop", "--limit", "40")
    assert "…" not in out
    assert re.search(r"\bkmalloc-cg-8k\b", out) and re.search(r"\bsock_inode\b", out)
    out = _kmem_piped("run", "seed")
    assert BUDDYINFO_LINE.search(out) or re.search(r"^Node 0, zone +\w+( +\d+)+$", out, re.M)


def test_the_output_console_does_not_wrap_at_the_terminal_width(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    console = terminal.output_console()
    with console.capture() as captured:
        console.print("Node 0, zone   Normal" + "      1" * 11)
    assert captured.get() == "Node 0, zone   Normal" + "      1" * 11 + "\n"


# -- progress bars: on a terminal, for every command that reads a trace ---------------------

@pytest.mark.parametrize("argv", [
    ["stat", "{trace}"],
    ["replay", "{trace}"],
    ["replay", "--serial", "{trace}"],
    ["html", "--trace", "{trace}", "-o", "{out}.html"],
    ["plot", "--trace", "{trace}", "-o", "{out}.png"],
])
def test_a_command_reading_a_trace_shows_a_bar_on_a_terminal_only(
        argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        small_trace: Path, tmp_path: Path) -> None:
    made: list[Any] = []
    real: Callable[[], Any] = terminal.progress_bar

    def recording() -> Any:
        made.append(real())
        return made[-1]

    monkeypatch.setattr(terminal, "progress_bar", recording)
    words = [w.format(trace=small_trace, out=tmp_path / "out") for w in argv]
    assert kmem(words, capsys)[0] == 0
    assert made == []  # standard error is not a terminal here
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert kmem(words, capsys)[0] == 0
    assert len(made) == 1
    assert kmem([*words, "--no-progress"], capsys)[0] == 0
    assert len(made) == 1


# -- kmem serve: idle connections do not hold threads forever -------------------------------

def test_serve_bounds_its_threads_and_closes_idle_connections() -> None:
    server = make_server("<p>kmem</p>", port=0, timeout=0.5, max_connections=4)
    host, port = server.server_address[:2]
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    before = threading.active_count()
    idle = [socket.create_connection((str(host), port)) for _ in range(60)]
    try:
        for connection in idle:
            connection.settimeout(60)  # (a bound on the wait, not a timing assertion)
        # Each idle connection is closed by the server: at once beyond the bound of 4, after
        # the timeout for the 4 it served; recv() then reads the end of the stream.
        most = 0
        for connection in idle:
            assert connection.recv(1) == b""
            most = max(most, threading.active_count())
        assert most <= before + 4  # (300 idle connections once held 300 threads)
        page = urllib.request.urlopen(f"http://{host!s}:{port}/", timeout=60).read()
        assert page == b"<p>kmem</p>"
    finally:
        for connection in idle:
            connection.close()
        server.shutdown()
        server.server_close()


def test_serve_refuses_a_nonsense_bound() -> None:
    from kmem.cli.serve import ServeError

    with pytest.raises(ServeError, match="must be positive"):
        make_server("", port=0, timeout=0)


@pytest.mark.parametrize(("command", "name"), [("html", "p.html"), ("plot", "p.svg")])
def test_an_output_through_a_link_or_into_a_fifo_keeps_the_link_and_the_fifo(
        command: str, name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    real, link = tmp_path / f"real-{name}", tmp_path / name
    real.write_text("old")
    link.symlink_to(real.name)
    assert kmem([command, "seed-buddy", "-o", str(link)], capsys)[0] == 0
    assert link.is_symlink() and real.read_text() != "old"  # the file replaced, not the link
    fifo = tmp_path / f"fifo-{name}"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert kmem([command, "seed-buddy", "-o", str(fifo)], capsys)[0] == 0  # (/dev/stdout too)
    reader.join(60)
    assert received and received[0].lstrip().startswith(b"<")
    assert fifo.is_fifo()  # written into, not renamed over


@pytest.mark.parametrize(("error", "status", "line"), [
    (OSError(28, "No space left on device", "out.txt"),
     2, "kmem stat: cannot read or write 'out.txt': No space left on device"),
    (KeyboardInterrupt(), 130, "kmem stat: interrupted"),
])
def test_what_no_check_foresees_is_still_one_line(
        error: BaseException, status: int, line: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kmem.cli import stat as stat_command

    def fail(args: object) -> int:
        raise error

    monkeypatch.setattr(stat_command, "run", fail)
    assert kmem(["stat", "trace.txt"], capsys) == (status, "", line + "\n")


def test_a_layout_giving_a_zone_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert refused(["zoneinfo", "--layout", "Normal=1G,Normal=2G"], capsys) == (
        "kmem zoneinfo: layout 'Normal=1G,Normal=2G': zone Normal given twice")


def test_html_reads_a_trace_from_a_pipe_whole(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path, small_trace: Path) -> None:
    # ``kmem html <(xzcat trace.xz)``: a FIFO reads once, and the page builder reads a trace
    # twice (to space its frames); the second read once found it empty: a page of 0 steps.
    from test_html import embedded

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(small_trace.read_bytes()))
    writer.start()
    page = tmp_path / "p.html"
    status, _, err = kmem(["html", "--trace", str(fifo), "-o", str(page)], capsys)
    writer.join(60)
    assert status == 0, err
    from_file = tmp_path / "f.html"
    assert kmem(["html", "--trace", str(small_trace), "-o", str(from_file)], capsys)[0] == 0
    assert embedded(page.read_text())["total_steps"] == embedded(
        from_file.read_text())["total_steps"] > 0


@pytest.mark.parametrize(("option", "value"), [
    ("--report", f"{NONEXISTENT}/r.html"), ("--png", f"{NONEXISTENT}/png"),
    ("-o", f"{NONEXISTENT}/out"),
])
def test_sweep_checks_where_it_writes_before_the_runs(
        option: str, value: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sweep_fixtures import sweep_folder

    def no_runs(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sweep ran before its outputs were checked")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("kmem.trace.sweep.sweep", no_runs)
    spec = sweep_folder(tmp_path)
    line = refused(["sweep", str(spec), option, value], capsys)
    assert f"no folder '{NONEXISTENT}'" in line  # (the whole tree was once made, as root)
    assert not Path(NONEXISTENT).parent.exists()


@pytest.mark.parametrize("argv", [
    ["html", "--trace", "{trace}", "-o", "{out}.html"],
    ["plot", "--trace", "{trace}", "-o", "{out}.png"],
    ["plot", "--kind", "pcp", "--trace", "{trace}", "-o", "{out}.png"],
    ["serve", "--trace", "{trace}", "--port", "0"],
])
def test_a_trace_without_kmem_events_is_no_page_nor_picture_but_exit_3(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As kmem stat (issue 16): a warning, nothing written, exit status 3; a page of an empty
    replay would look like a result."""
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    other = tmp_path / "sched.txt"
    other.write_text("  bash-1 [000] ..... 1.000001: sched_switch: prev_comm=bash\n")
    for trace, what in ((empty, "(it is empty)"), (other, "(1 lines/samples read")):
        out = tmp_path / "out"
        filled = [part.format(trace=trace, out=out) for part in argv]
        status, stdout, stderr = kmem(filled, capsys)
        assert (status, stdout) == (3, "")
        assert stderr.startswith(f"kmem: warning: {trace} holds no kmem events {what}")
        assert stderr.endswith("; nothing to report\n") and stderr.count("\n") == 1
        assert list(tmp_path.glob("out*")) == []


def test_a_sweep_trace_without_kmem_events_is_a_failed_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep goes on past it (its other runs are results), but the run is no row of zeros:
    a failed run that says why (a row of zeros ranked first once, then crashed the ranking)."""
    (tmp_path / "sched.txt").write_text(
        "  bash-1 [000] ..... 1.000001: sched_switch: prev_comm=bash\n")
    (tmp_path / "spec.toml").write_text('traces = ["sched.txt"]\n[parameters]\ncpus = [1, 2]\n')
    status, stdout, stderr = kmem(["sweep", str(tmp_path / "spec.toml"), "--jobs", "1",
                                   "-o", str(tmp_path / "out"), "--no-progress"], capsys)
    assert status == 1
    assert "2 runs: 0 done (0 resumed), 2 failed" in stdout
    assert stderr.count("holds no kmem events (1 lines read); nothing to replay") == 2
    assert "Traceback" not in stderr
