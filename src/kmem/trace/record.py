"""Recording a kmem trace of a command: through tracefs, or through perf.

tracefs (the default): a private tracefs instance (``instances/kmem-record-<pid>``: its own ring
buffer, so tracing that others run at the top level or in other instances is left alone), the
kmem events enabled in it, its ``trace_pipe`` read while the command runs and written to the
output as ftrace text. Reading while tracing keeps the buffer from overflowing; if the reader
falls behind anyway the kernel writes its ``CPU:N [LOST M EVENTS]`` markers into the text, which
kmem stat and kmem replay report. At the end the instance is removed (events off first), also
when the command fails or recording is interrupted.

perf (``use_perf``, and for call chains: ftrace's stack traces are not a format kmem reads):
``perf record -a -c 1 -e kmem:... [-g] -o OUTPUT -- CMD``, as perf kmem record does (every event
sampled, system-wide): a perf.data file that kmem reads directly.

Both record the whole system while the command runs (as perf kmem record does), not the command
alone. Needs root, and tracefs mounted (or perf installed).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from kmem.errors import InvalidArgumentError, output_file_errno

SLAB_EVENTS: Final = ("kmalloc", "kmalloc_node", "kmem_cache_alloc", "kmem_cache_alloc_node",
                      "kfree", "kmem_cache_free")
PAGE_EVENTS: Final = ("mm_page_alloc", "mm_page_free", "mm_page_free_batched",
                      "mm_page_alloc_zone_locked", "mm_page_pcpu_drain", "mm_page_alloc_extfrag")
# perf kmem stat reads these: perf records only them (a perf.data has no use for the others)
PERF_SLAB_EVENTS: Final = ("kmalloc", "kfree", "kmem_cache_alloc", "kmem_cache_free")
PERF_PAGE_EVENTS: Final = ("mm_page_alloc", "mm_page_free")
TRACEFS_MOUNTS: Final = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
DEFAULT_BUFFER_KB: Final = 16384  # per CPU
_POLL_SECONDS: Final = 0.05


class RecordError(InvalidArgumentError):
    """A trace cannot be recorded here: not root, no tracefs, no perf, no kmem events."""


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What a recording wrote: the file, how (``"tracefs"`` or ``"perf"``), the command's exit
    status, the event lines written (tracefs) and the events the kernel said were lost."""

    output: Path
    method: str
    status: int
    lines: int
    lost: int


def find_tracefs() -> Path | None:
    """Where tracefs is mounted (its kmem events directory present), or None."""
    candidates = list(TRACEFS_MOUNTS)
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            candidates = [line.split()[1] for line in mounts
                          if line.split()[2:3] == ["tracefs"]] + candidates
    except OSError:
        pass
    for candidate in candidates:
        if (Path(candidate) / "events" / "kmem").is_dir():
            return Path(candidate)
    return None


def _check_root() -> None:
    if os.geteuid() != 0:
        raise RecordError("kmem record needs root: only root may enable kernel tracepoints"
                          " (run it with sudo)")


def _check_command(command: Sequence[str]) -> None:
    """A command that can run, checked before anything is started or written: perf would
    say so in its own words (exit status 255) after moving an existing output to .old, and
    tracefs's output would be left holding a header."""
    if not command:
        raise RecordError("no command to record: kmem record [options] -- CMD [ARGS...]")
    name = command[0]
    if shutil.which(name) is not None:
        return
    # (why it cannot run, in the words of the OSError that running it would raise)
    if os.sep not in name or not os.path.exists(name):
        reason = os.strerror(errno.ENOENT)
    elif os.path.isdir(name):
        reason = os.strerror(errno.EISDIR)
    else:
        reason = os.strerror(errno.EACCES)
    raise RecordError(f"cannot run {name!r}: {reason}")


def _check_output(output: str | os.PathLike[str]) -> None:
    """An output that can be written, checked before recording starts (perf would move a
    folder given as its output aside, to NAME.old, and write a file in its place)."""
    path = os.fspath(output)
    problem = output_file_errno(path)
    if problem:
        raise RecordError(f"cannot write {path!r}: {os.strerror(problem)}")


def record_tracefs(command: Sequence[str], output: str | os.PathLike[str], *, slab: bool = True,
                   page: bool = True, buffer_kb: int = DEFAULT_BUFFER_KB,
                   tracefs: str | os.PathLike[str] | None = None) -> RecordResult:
    """Record the kmem events while ``command`` runs into ``output`` (ftrace text)."""
    _check_command(command)
    _check_output(output)
    _check_root()
    if buffer_kb < 4:
        raise RecordError(f"buffer size must be at least 4 KB per CPU, got {buffer_kb}")
    root = Path(tracefs) if tracefs is not None else find_tracefs()
    if root is None or not (root / "events" / "kmem").is_dir():
        where = os.fspath(root) if root is not None else "/sys/kernel/tracing"
        raise RecordError(f"tracefs with the kmem events not found at {where}: mount it"
                          " (mount -t tracefs nodev /sys/kernel/tracing)")
    wanted = (SLAB_EVENTS if slab else ()) + (PAGE_EVENTS if page else ())
    events = [name for name in wanted if (root / "events" / "kmem" / name).is_dir()]
    if not events:
        raise RecordError("this kernel has none of the kmem events asked for")
    instance = root / "instances" / f"kmem-record-{os.getpid()}"
    try:
        instance.mkdir()
    except OSError as error:
        raise RecordError(f"cannot create the tracefs instance {instance}: {error.strerror}"
                          ) from error
    out: BinaryIO | None = None
    try:
        _write(instance / "buffer_size_kb", str(buffer_kb))
        for name in events:
            _write(instance / "events" / "kmem" / name / "enable", "1")
        # (opened once tracing is ready: a failure before leaves an existing file as it was)
        try:
            out = open(output, "wb")  # noqa: SIM115 - closed in the finally below
        except OSError as error:
            raise RecordError(f"cannot write {os.fspath(output)!r}: {error.strerror}"
                              ) from error
        out.write(f"# tracer: nop\n# kmem record: {' '.join(command)} (tracefs instance,"
                  f" {buffer_kb} KB per CPU; events: {' '.join(events)})\n".encode())
        return _run_and_read(command, instance, out, Path(output))
    finally:
        try:
            _write(instance / "tracing_on", "0")
            for name in events:
                _write(instance / "events" / "kmem" / name / "enable", "0")
        finally:
            if out is not None:
                out.close()
            _remove_instance(instance)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text + "\n", encoding="ascii")
    except OSError as error:
        raise RecordError(f"cannot write {path}: {error.strerror}") from error


def _remove_instance(instance: Path) -> None:
    for _ in range(50):  # (the kernel refuses while a reader still holds trace_pipe)
        try:
            instance.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


def _run_and_read(command: Sequence[str], instance: Path, out: BinaryIO, output: Path
                  ) -> RecordResult:
    """Start tracing and ``command``; copy trace_pipe to ``out`` until the command ended and
    the buffer is drained."""
    pipe = os.open(instance / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
    lines = lost = 0
    tail = b""
    try:
        _write(instance / "tracing_on", "1")
        try:
            process = subprocess.Popen(list(command))
        except OSError as error:
            raise RecordError(f"cannot run {command[0]!r}: {error.strerror}") from error
        status: int | None = None
        while True:
            # (asked at every read: on a busy machine the buffer may never run empty)
            if status is None:
                status = process.poll()
                if status is not None:
                    _write(instance / "tracing_on", "0")  # then drain what was recorded
            try:
                chunk = os.read(pipe, 1 << 16)
            except BlockingIOError:
                chunk = b""
            if chunk:
                out.write(chunk)
                text = tail + chunk
                lines += text.count(b"\n")
                lost += _lost_in(text)
                tail = text[text.rfind(b"\n") + 1:]
            elif status is not None:
                break  # the command ended, tracing is off and the buffer is empty
            else:
                time.sleep(_POLL_SECONDS)
    except BaseException:
        if "process" in locals() and process.poll() is None:
            process.kill()
            process.wait()
        raise
    finally:
        os.close(pipe)
    return RecordResult(output, "tracefs", status, lines, lost)


def _lost_in(text: bytes) -> int:
    """The events of the ``CPU:N [LOST M EVENTS]`` markers in ``text`` (whole lines)."""
    if b"[LOST" not in text:
        return 0
    total = 0
    for line in text.split(b"\n"):
        if line.startswith(b"CPU:") and b"[LOST " in line:
            count = line.split(b"[LOST ", 1)[1].split(b" ", 1)[0]
            total += int(count) if count.isdigit() else 0
    return total


def perf_command(command: Sequence[str], output: str | os.PathLike[str], *, slab: bool = True,
                 page: bool = True, callchains: bool = False, perf: str = "perf") -> list[str]:
    """The perf record command line that records ``command``'s kmem events into ``output``."""
    names = (PERF_SLAB_EVENTS if slab else ()) + (PERF_PAGE_EVENTS if page else ())
    events = ",".join(f"kmem:{name}" for name in names)
    return [perf, "record", "-a", "-c", "1", "-e", events, *(["-g"] if callchains else []),
            "-o", os.fspath(output), "--", *command]


def record_perf(command: Sequence[str], output: str | os.PathLike[str], *, slab: bool = True,
                page: bool = True, callchains: bool = False) -> RecordResult:
    """Record with perf record (a perf.data file at ``output``)."""
    _check_command(command)
    _check_output(output)
    _check_root()
    perf = shutil.which("perf")
    if perf is None:
        raise RecordError("perf is not installed (kmem record without --perf and -g records"
                          " through tracefs)")
    argv = perf_command(command, output, slab=slab, page=page, callchains=callchains, perf=perf)
    status = subprocess.run(argv, check=False).returncode
    if not Path(output).is_file():
        raise RecordError(f"perf record wrote no {os.fspath(output)!r} (exit status {status})")
    return RecordResult(Path(output), "perf", status, 0, 0)


__all__ = ["RecordError", "RecordResult", "find_tracefs", "perf_command", "record_perf",
           "record_tracefs"]
