"""What the commands print to a terminal or a pipe: the output console and the progress bar.

Output that imitates a kernel file (buddyinfo, slabinfo, zoneinfo, pagetypeinfo lines) must
come out exactly as the kernel prints it, and tables must show full cache names, whatever the
width of the terminal, and in a pipe (where rich would assume 80 columns). So the output
console never wraps or cuts: it is as wide as a line can be, and a line longer than the
terminal is folded by the terminal itself, which a copy and paste undoes.

A progress bar goes to standard error, only when it is a terminal, so a pipe or a file gets
nothing but the output (``kmem stat trace.xz | less`` or ``2> log``).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Final

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console
    from rich.progress import Progress, TaskID

# Wide enough for any line kmem prints (a /proc/slabinfo line is about 110 characters, a
# rich table of full cache names a little more); rich pads nothing to it.
NO_WRAP_WIDTH: Final = 10_000


def output_console() -> Console:
    """The console a command prints its tables and kernel-format lines on (standard output)."""
    from rich.console import Console

    return Console(width=NO_WRAP_WIDTH, highlight=False)


def wants_progress(no_progress: bool = False) -> bool:
    """A progress bar is shown when standard error is a terminal and --no-progress is not
    given."""
    return not no_progress and sys.stderr.isatty()


def progress_bar() -> Progress:
    """A transient bar on standard error: what is being done, bytes read of the file, time
    left."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)


class ProgressReport:
    """A ``progress(what, done, total)`` callback (kmem.show.snapshot.Progress) that draws a
    bar, started at its first call: after the trace parser's child process has forked (a
    bar's thread must not exist at a fork), and not at all if nothing is read. Use it as a
    context manager; leaving it removes the bar."""

    def __init__(self, enabled: bool) -> None:
        self.enabled: Final = enabled
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            self._progress = progress_bar()
            self._progress.start()
        task = self._tasks.get(what)
        if task is None:
            task = self._tasks[what] = self._progress.add_task(what, total=total)
        self._progress.update(task, completed=done, total=total)

    def __enter__(self) -> ProgressReport:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def read_trace(path: str, progress: bool) -> Iterator[Iterator[str]]:
    """The lines of the trace at ``path`` (kmem.trace.source.open_trace: plain, gzip or xz;
    "-" for standard input), with a progress bar of the file's bytes when ``progress`` and
    the trace is a file of known size."""
    from kmem.trace.source import TraceFileError, open_trace

    if path == "-" or not progress:
        with open_trace(path) as lines:
            yield lines
        return
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below, after the caller's block
    except OSError as error:
        raise TraceFileError(f"cannot open trace {path!r}: {error.strerror}") from error
    if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
        # A pipe named by its path (kmem stat <(xzcat t.xz)): no size, and tell() fails on it
        # (the progress bar's position read broke the stream off after line 0).
        with raw, open_trace(raw) as lines:
            yield lines
        return
    with raw, open_trace(raw) as lines, progress_bar() as bar:
        size = os.fstat(raw.fileno()).st_size
        yield _with_progress(lines, raw, size, bar)


def _with_progress(lines: IO[str], raw: IO[bytes], size: int, bar: Progress) -> Iterator[str]:
    task = bar.add_task("reading", total=size)
    for number, line in enumerate(lines):
        if not number & 0xFFFF:
            bar.update(task, completed=raw.tell())
        yield line
    bar.update(task, completed=size)


def skipped_lines_note(bad_lines: int, examples: Sequence[Exception], path: str) -> str:
    """The line that --skip-bad prints after a report: how many lines it skipped and the first
    one, named FILE:LINE as an error would name it (the parser counts lines, not files)."""
    from kmem.trace.parse import TraceFormatError

    first = examples[0]
    if isinstance(first, TraceFormatError) and first.path is None:
        first.name_file(path)
    return f"{bad_lines} malformed lines skipped; first: {first}"
