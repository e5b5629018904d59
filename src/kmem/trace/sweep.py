"""Sweeps: many independent replays (traces × parameter sets), gathered into one results table.

``sweep(spec)`` reads a spec (kmem.trace.sweep_spec: a TOML file, or a checked SweepSpec), cuts
it into its grid of runs, replays each run as ``kmem replay`` would (its own Replayer and
TraceParser, nothing shared between runs), and gathers one row per run::

    result = sweep("fleet.toml", output="fleet-results", jobs=4)
    result.rows          # the results table, in grid order
    result.failures      # the runs that failed, with their parameters and error

Executors. A run is the unit of work: one trace, one parameter set, one process at a time.
``executor="process"`` runs them on a local process pool of ``jobs`` workers (default: every
core; 1 runs them here, one after the other), the largest traces first so the last runs to
finish are short. ``executor="dask"`` submits the same runs to a dask.distributed cluster
(``address`` of its scheduler; None or "local" starts a LocalCluster of ``jobs`` workers).
Workers read each trace at its absolute path (a file system they share), or with ``ship=True``
from chunks of the file's bytes that the cluster holds (scattered once per trace, however many
runs read it). The rows are the same whichever executor ran them: a run's row is a function of
its trace and parameters alone.

States of a run: pending -> done (a row and a timeline) or failed (its error). A run that fails
(a malformed line, a worker that died) is recorded with its parameters and error; the others go
on. The output folder holds, in grid order:

- ``results.jsonl``: the results table, one JSON object a line (RESULT_COLUMNS describes them);
  the same spec and traces give the same bytes. Parquet too (``results.parquet``) with
  ``parquet=True``, if pyarrow is installed.
- ``timelines.jsonl``: per run, slab and page-layer pages over the trace's time (for plots).
- ``failures.jsonl``: the failed runs. ``timings.jsonl``: each run's replay time in seconds,
  kept apart since no two runs take the same time twice.

Rows and timelines are appended as runs finish, and rewritten in grid order at the end, so an
interrupted sweep loses only its unfinished runs: ``resume=True`` reuses every row whose run
key (trace digest, full parameter set, sampling settings) is in the folder and runs the rest.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Final, Literal

from kmem.errors import InvalidArgumentError
from kmem.trace.lost import LostEvents
from kmem.trace.parse import TraceParser
from kmem.trace.perf_data import text_batches
from kmem.trace.replay import Replayer, ReplayResult, ReplaySnapshot
from kmem.trace.source import TraceFileError, open_trace
from kmem.trace.sweep_spec import (
    SweepRun,
    SweepSpec,
    SweepSpecError,
    load_sweep_spec,
    parameters_text,
    sweep_spec,
)

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

Executor = Literal["process", "dask"]
EXECUTORS: Final = ("process", "dask")
COSTLY_ORDER: Final = 3  # PAGE_ALLOC_COSTLY_ORDER: above it the kernel treats requests as costly
TIMELINE_SAMPLES: Final = 256  # a run's timeline is halved to stay below this (peaks stay exact)
CHUNK_BYTES: Final = 8 << 20  # a shipped trace travels in chunks of this size

RESULTS: Final = "results.jsonl"
TIMELINES: Final = "timelines.jsonl"
FAILURES: Final = "failures.jsonl"
TIMINGS: Final = "timings.jsonl"
PARQUET: Final = "results.parquet"

# The results table's columns after the parameters (one per row of PARAMETERS): what each is.
RESULT_COLUMNS: Final = {
    "events": "trace events replayed, every kind",
    "slab_peak_pages": "most pages kmem's slab layer held (sampled every `every` events)",
    "slab_end_pages": "pages the slab layer held at the end",
    "page_layer_peak_pages": "most pages the replayed page events held (exact)",
    "page_layer_end_pages": "pages the page events held at the end",
    "total_peak_pages": "most pages in use, both layers (sampled)",
    "total_end_pages": "pages in use at the end",
    "live_objects_at_end": "slab objects still allocated at the end",
    "unusable_costly_peak": "highest unusable free space index at order 3 (thousandths)",
    "unusable_costly_end": "unusable free space index at order 3 at the end (thousandths)",
    "unusable_max_order_peak": "highest unusable free space index at max_order (thousandths)",
    "unusable_max_order_end": "unusable free space index at max_order at the end (thousandths)",
    "extfrag_costly_end": "extfrag index at order 3 at the end (thousandths; -1000: would succeed)",
    "traced_pcp_refills": "mm_page_alloc_zone_locked events (per-CPU list refills, counted)",
    "traced_pcp_drains": "mm_page_pcpu_drain events (per-CPU list drains, counted)",
    "predicted_pcp_refills": "the machine's mm_page_alloc_zone_locked events (-1: no machine)",
    "predicted_pcp_drains": "the machine's mm_page_pcpu_drain events (-1: no machine)",
    "zone_lock": "the machine's zone->lock acquisitions (-1: no machine)",
    "fallbacks": "the machine's mm_page_alloc_extfrag events (-1: no machine)",
    "machine_unusable_costly_end": "the machine's unusable index at order 3 at the end (-1: none)",
    "kmem_oom": "allocations kmem could not satisfy (raise memory)",
    "too_large": "requests above what max_order lets kmem serve",
    "traced_slab_failures": "slab allocations that failed in the traced kernel",
    "traced_page_failures": "page allocations that failed in the traced kernel",
    "unknown_frees": "slab frees of pointers the trace never allocated",
    "missed_frees": "slab allocations of a live pointer (its free was not traced)",
    "page_unknown_frees": "page frees of pfns the trace never allocated",
    "page_missed_frees": "page allocations of a live pfn",
    "bytes_alloc_mismatches": "kmalloc events whose bytes_alloc kmem does not give",
    "bytes_alloc_checked": "kmalloc events compared",
    "cache_size_mismatches": "caches whose traced bytes_alloc is not kmem's slab size",
    "page_order_mismatches": "page frees of another order than allocated",
    "bad_lines": "malformed lines skipped (skip_bad)",
}


class SweepOptionError(InvalidArgumentError):
    """A sweep option is wrong or cannot be served (the output folder, the executor, ...)."""


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What a worker sends back: the run's row and timeline, or its error."""

    key: str
    row: dict[str, Any] | None
    timeline: dict[str, Any] | None
    error: str | None  # "TraceFormatError: line 12: ..."
    seconds: float  # the replay's wall time in the worker
    worker: str  # host:pid, for timings.jsonl


@dataclass(frozen=True, slots=True)
class RunFailure:
    """A run that failed: its trace, full parameter set and error."""

    run: str  # the run key
    name: str
    trace: str
    parameters: dict[str, Any]
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "trace": self.trace, **self.parameters, "error": self.error}


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: the results table and what goes with it."""

    spec: SweepSpec
    rows: tuple[dict[str, Any], ...]  # the results table, grid order (failed runs have none)
    timelines: dict[str, dict[str, Any]]  # run key -> its timeline
    failures: tuple[RunFailure, ...]
    seconds: dict[str, float]  # run key -> its replay time (apart from the table: it varies)
    resumed: int  # runs whose rows came from the output folder
    output: Path | None

    @property
    def runs(self) -> int:
        """How many runs the grid has."""
        return len(self.rows) + len(self.failures)

    def table_text(self) -> str:
        """The results table as results.jsonl holds it."""
        return _jsonl(self.rows)


# -- one run (what a worker does) ----------------------------------------------------------------

class _ChunkReader(io.RawIOBase):
    """A shipped trace: its file's bytes, read from the chunks a worker was given."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = chunks
        self._index = 0
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._index < len(self._chunks):
            chunk = self._chunks[self._index]
            if self._offset < len(chunk):
                size = min(len(view), len(chunk) - self._offset)
                view[:size] = chunk[self._offset:self._offset + size]
                self._offset += size
                return size
            self._index += 1
            self._offset = 0
        return 0


class _FragmentationPeaks:
    """The highest unusable free space indices a run's snapshots show (every snapshot: the
    timeline the result keeps is thinned, the peaks must not be)."""

    def __init__(self, max_order: int) -> None:
        self.costly = min(COSTLY_ORDER, max_order)
        self.top = max_order
        self.costly_peak = 0
        self.top_peak = 0

    def see(self, snapshot: ReplaySnapshot) -> None:
        unusable = snapshot.unusable_index
        self.costly_peak = max(self.costly_peak, unusable[self.costly])
        self.top_peak = max(self.top_peak, unusable[self.top])


def replay_run(run: SweepRun, chunks: Sequence[bytes] | None = None) -> RunOutcome:
    """Replay one run (from its trace's path, or from shipped ``chunks`` of the file). Never
    raises for a run that fails: the error is in the outcome, so the other runs go on."""
    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        row, timeline = _replay(run, chunks)
    except Exception as error:  # (every failure of one run is that run's, reported with it)
        return RunOutcome(run.key, None, None, f"{type(error).__name__}: {error}",
                          time.perf_counter() - start, worker)
    return RunOutcome(run.key, row, timeline, None, time.perf_counter() - start, worker)


def _replay(run: SweepRun, chunks: Sequence[bytes] | None
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    replayer = Replayer(**run.replayer_arguments(), max_samples=TIMELINE_SAMPLES)
    parser = TraceParser(skip_bad=run.skip_bad)
    peaks = _FragmentationPeaks(replayer.buddy.max_order)
    source: str | BinaryIO = (run.trace.path if chunks is None
                               else io.BufferedReader(_ChunkReader(chunks)))
    with open_trace(source, name_errors=False) as lines:  # (a failure names its run's trace)
        # (read as kmem replay reads text: perf script's call chains, lost-event markers)
        result = replayer.run_batches(text_batches(parser, lines, LostEvents()),
                                      every=run.every, callback=peaks.see, parser=parser)
    if not sum(result.events.values()):  # (a row of zeros would rank as the best run)
        raise TraceFileError(f"holds no kmem events ({parser.lines} lines read); nothing to"
                             " replay")
    return result_row(run, result, peaks), _timeline(run, result)


def result_row(run: SweepRun, result: ReplayResult, peaks: _FragmentationPeaks
               ) -> dict[str, Any]:
    """The results table's row of a run (its columns: run, trace, the parameters, then
    RESULT_COLUMNS in that order)."""
    page = result.page_size
    memory = result.memory_in_use
    final = result.timeline[-1]
    figures = {
        "events": sum(result.events.values()),
        "slab_peak_pages": memory["slab"]["peak_bytes"] // page,
        "slab_end_pages": memory["slab"]["final_bytes"] // page,
        "page_layer_peak_pages": memory["page"]["peak_bytes"] // page,
        "page_layer_end_pages": memory["page"]["final_bytes"] // page,
        "total_peak_pages": memory["total"]["peak_bytes"] // page,
        "total_end_pages": memory["total"]["final_bytes"] // page,
        "live_objects_at_end": result.live_objects_at_end,
        "unusable_costly_peak": peaks.costly_peak,
        "unusable_costly_end": final.unusable_index[peaks.costly],
        "unusable_max_order_peak": peaks.top_peak,
        "unusable_max_order_end": final.unusable_index[peaks.top],
        "extfrag_costly_end": final.extfrag_index[peaks.costly],
        "traced_pcp_refills": result.events["mm_page_alloc_zone_locked"],
        "traced_pcp_drains": result.events["mm_page_pcpu_drain"],
        **_machine_figures(result.pcp),
        "kmem_oom": result.kmem_oom,
        "too_large": result.too_large,
        "traced_slab_failures": result.traced_slab_failures,
        "traced_page_failures": result.page["traced_failures"],
        "unknown_frees": result.unknown_frees,
        "missed_frees": result.missed_frees,
        "page_unknown_frees": result.page["unknown_frees"],
        "page_missed_frees": result.page["missed_frees"],
        "bytes_alloc_mismatches": result.bytes_alloc_mismatches,
        "bytes_alloc_checked": result.bytes_alloc_checked,
        "cache_size_mismatches": len(result.cache_size_mismatches),
        "page_order_mismatches": result.page["order_mismatches"],
        "bad_lines": result.bad_lines,
    }
    assert list(figures) == list(RESULT_COLUMNS)  # (the columns' documentation stays true)
    return {"run": run.key, "trace": run.trace.name, **dict(run.parameters), **figures}


def _machine_figures(pcp: dict[str, Any] | None) -> dict[str, int]:
    """The page machine's columns of a run (kmem.trace.machine_replay), -1 without one."""
    if pcp is None:
        return dict.fromkeys(("predicted_pcp_refills", "predicted_pcp_drains", "zone_lock",
                              "fallbacks", "machine_unusable_costly_end"), -1)
    return {"predicted_pcp_refills": pcp["predicted"]["mm_page_alloc_zone_locked"],
            "predicted_pcp_drains": pcp["predicted"]["mm_page_pcpu_drain"],
            "zone_lock": pcp["zone_lock"], "fallbacks": pcp["fallbacks"],
            "machine_unusable_costly_end": pcp["fragmentation"]["unusable_index"][3]}


def _timeline(run: SweepRun, result: ReplayResult) -> dict[str, Any]:
    samples = result.timeline
    return {
        "run": run.key,
        "events": [s.events for s in samples],
        "time": [s.time for s in samples],
        "slab_pages": [s.slab_pages for s in samples],
        "page_layer_pages": [s.page_layer_pages for s in samples],
    }


# -- executors: each yields a run's outcome as it finishes ------------------------------------

def default_jobs() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux (sched_getaffinity is Linux's)
        return os.cpu_count() or 1


def _largest_first(runs: Sequence[SweepRun]) -> list[SweepRun]:
    """Runs by trace size, largest first (stable): long runs start early, short ones fill the
    gaps at the end (the longest-processing-time rule)."""
    return sorted(runs, key=lambda run: -run.trace.size)


def _run_here(runs: Sequence[SweepRun]) -> Iterator[RunOutcome]:
    for run in runs:
        yield replay_run(run)


def _died(run: SweepRun, error: BaseException) -> RunOutcome:
    return RunOutcome(run.key, None, None, f"{type(error).__name__}: the worker running it"
                      f" failed: {error}", 0.0, "")


def _run_on_pool(runs: Sequence[SweepRun], jobs: int) -> Iterator[RunOutcome]:
    """A local process pool. Workers come from a fork server that has imported this module:
    no worker inherits the caller's threads (a progress bar's, a notebook's)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:  # pragma: no branch - every POSIX system has it
        context.set_forkserver_preload([__name__])
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    try:
        pending: dict[Future[RunOutcome], SweepRun] = {
            pool.submit(replay_run, run): run for run in _largest_first(runs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                run = pending.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool as error:  # a worker was killed (out of memory...)
                    yield _died(run, error)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise SweepOptionError("the dask executor needs dask.distributed:"
                               " pip install 'kmem[dask]'") from None
    return distributed


def _file_chunks(path: str) -> list[bytes]:
    with open(path, "rb") as raw:
        return list(iter(lambda: raw.read(CHUNK_BYTES), b""))


def _connect(stack: ExitStack, address: str | None, workers: int) -> Any:
    """A dask.distributed Client of the scheduler at ``address`` (None or "local": of a
    LocalCluster of ``workers`` processes started here), closed when ``stack`` closes."""
    distributed = _dask()
    if address in (None, "local"):
        cluster = stack.enter_context(distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=None))
        address = cluster.scheduler_address
    try:
        return stack.enter_context(distributed.Client(address, timeout="20s"))
    except (OSError, TimeoutError, ValueError) as error:
        raise SweepOptionError(f"cannot reach the Dask scheduler at {address!r}:"
                               f" {error}") from None


def _run_on_dask(client: Any, runs: Sequence[SweepRun], ship: bool) -> Iterator[RunOutcome]:
    """The runs on a dask.distributed cluster, one task a run. With ``ship``, each trace's
    bytes are scattered to the cluster once, in CHUNK_BYTES chunks, and its runs read them."""
    shipped: dict[str, Any] = {}  # trace path -> its chunks' futures
    pending: dict[Any, SweepRun] = {}
    tag = uuid.uuid4().hex[:8]  # task names: unique per sweep (a client may run several)
    for run in _largest_first(runs):
        chunks = None
        if ship:
            if run.trace.path not in shipped:
                shipped[run.trace.path] = client.scatter(_file_chunks(run.trace.path),
                                                         hash=False)
            chunks = shipped[run.trace.path]
        future = client.submit(replay_run, run, chunks, pure=False,
                               key=f"kmem-replay-{run.key}-{tag}")
        pending[future] = run
    for future in _dask().as_completed(list(pending)):
        run = pending.pop(future)
        try:
            yield future.result()
        except Exception as error:  # (KilledWorker, a lost connection: this run's failure)
            yield _died(run, error)
        future.release()


# -- the output folder ---------------------------------------------------------------------------

def _jsonl(records: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON lines file; a line cut short (an interrupted write) is left out."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("run"), str):
            records.append(record)
    return records


def _ends_a_line(path: Path) -> bool:
    with path.open("rb") as raw:
        raw.seek(-1, os.SEEK_END)
        return raw.read(1) == b"\n"


class SweepFolder:
    """The output folder: rows appended as runs finish, everything rewritten in grid order at
    the end (write to a temporary file, then rename: a reader never sees half a table)."""

    def __init__(self, path: str | os.PathLike[str], resume: bool) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise SweepOptionError(f"output {str(self.path)!r} is a file, not a folder")
        if not resume and (self.path / RESULTS).exists():
            raise SweepOptionError(
                f"{str(self.path)!r} already holds a sweep's results: pass --resume"
                " (resume=True) to continue it, or choose another folder")
        self._files: dict[str, IO[str]] = {}

    def previous(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]],
                                dict[str, float]]:
        """(rows, timelines, seconds) by run key, of the runs a previous sweep finished."""
        rows = {row["run"]: row for row in _read_jsonl(self.path / RESULTS)}
        timelines = {line["run"]: line for line in _read_jsonl(self.path / TIMELINES)}
        seconds = {t["run"]: float(t["seconds"]) for t in _read_jsonl(self.path / TIMINGS)
                   if isinstance(t.get("seconds"), (int, float))}
        done = rows.keys() & timelines.keys()
        return ({k: rows[k] for k in done}, {k: timelines[k] for k in done},
                {k: seconds[k] for k in done if k in seconds})

    def open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (RESULTS, TIMELINES, TIMINGS):
            stream = self._files[name] = (self.path / name).open("a", encoding="utf-8")
            if stream.tell() and not _ends_a_line(self.path / name):
                stream.write("\n")  # (an interrupted write: the next record starts its own line)
        self._files[FAILURES] = (self.path / FAILURES).open("w", encoding="utf-8")

    def record(self, outcome: RunOutcome, failure: RunFailure | None) -> None:
        """Append a finished run (flushed: an interrupted sweep keeps it)."""
        if failure is not None:
            self._append(FAILURES, failure.to_json())
            return
        assert outcome.row is not None and outcome.timeline is not None
        self._append(RESULTS, outcome.row)
        self._append(TIMELINES, outcome.timeline)
        self._append(TIMINGS, {"run": outcome.key, "seconds": round(outcome.seconds, 4),
                               "worker": outcome.worker})

    def _append(self, name: str, record: Mapping[str, Any]) -> None:
        stream = self._files[name]
        stream.write(json.dumps(record) + "\n")
        stream.flush()

    def close(self) -> None:
        for stream in self._files.values():
            stream.close()
        self._files.clear()

    def finish(self, result: SweepResult, parquet: bool) -> None:
        """Rewrite every file in grid order (and the Parquet table if asked)."""
        self.close()
        self._replace(RESULTS, result.table_text())
        self._replace(TIMELINES, _jsonl(result.timelines[row["run"]] for row in result.rows))
        self._replace(FAILURES, _jsonl(failure.to_json() for failure in result.failures))
        self._replace(TIMINGS, _jsonl({"run": row["run"],
                                       "seconds": round(result.seconds[row["run"]], 4)}
                                      for row in result.rows if row["run"] in result.seconds))
        if parquet:  # pragma: no cover - needs pyarrow (optional; test_sweep.py where installed)
            _write_parquet(result.rows, self.path / PARQUET)

    def _replace(self, name: str, text: str) -> None:
        temporary = self.path / f".{name}.tmp"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.path / name)


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # pragma: no cover - pyarrow is optional, not in the dev extras
    except ImportError:
        raise SweepOptionError("Parquet output needs pyarrow (pip install pyarrow);"
                               " the JSON lines table needs nothing") from None
    return pyarrow  # pragma: no cover - (with pyarrow installed: test_sweep.py's Parquet test)


def _write_parquet(rows: Sequence[Mapping[str, Any]], path: Path
                   ) -> None:  # pragma: no cover - needs pyarrow (optional)
    pyarrow = _pyarrow()
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(list(rows)), path)


# -- progress ------------------------------------------------------------------------------------

class SweepProgress:
    """A rich progress bar over runs done / total, with the slowest run so far; a failed run is
    printed with its parameters and error as it happens. Use as a context manager."""

    def __init__(self, total: int, resumed: int = 0, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress: Progress = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), "{task.fields[slowest]}",
            console=console or Console(stderr=True), transient=False)
        self._task: TaskID = self._progress.add_task(
            "sweep", total=total, completed=resumed, slowest="")
        self._slowest = (0.0, "")

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, run: SweepRun, outcome: RunOutcome, failure: RunFailure | None) -> None:
        if failure is not None:
            parameters = parameters_text(failure.parameters.items())
            self._progress.console.print(
                f"kmem sweep: run failed: {failure.trace} {parameters}: {failure.error}",
                highlight=False, markup=False, soft_wrap=True, style="red")
        if outcome.seconds >= self._slowest[0]:
            self._slowest = (outcome.seconds, run.name)
        seconds, name = self._slowest
        self._progress.update(self._task, advance=1, slowest=f"slowest: {name} ({seconds:.1f} s)")


# -- the sweep -----------------------------------------------------------------------------------

RunCallback = Callable[[SweepRun, RunOutcome, RunFailure | None], object]


def _spec_of(spec: SweepSpec | str | os.PathLike[str] | Mapping[str, Any]) -> SweepSpec:
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, Mapping):
        return sweep_spec(spec)
    return load_sweep_spec(spec)


def _check_options(executor: str, jobs: int | None, ship: bool, resume: bool,
                   output: object, parquet: bool) -> int:
    """The number of jobs, once every option is known to be servable (before any run)."""
    if executor not in EXECUTORS:
        raise SweepOptionError(f"unknown executor {executor!r} (choose from process, dask)")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise SweepOptionError(f"jobs must be a whole number >= 1, got {jobs!r}")
    if ship and executor != "dask":
        raise SweepOptionError("shipping traces (--ship) is for a Dask cluster (--dask):"
                               " local workers read the files themselves")
    if resume and output is None:
        raise SweepOptionError("resume needs the output folder of the sweep to continue")
    if parquet:
        _pyarrow()
    if executor == "dask":
        _dask()
    return jobs or default_jobs()


def _failure(run: SweepRun, outcome: RunOutcome) -> RunFailure | None:
    if outcome.error is None:
        return None
    return RunFailure(run.key, run.name, run.trace.name, dict(run.parameters), outcome.error)


def sweep(spec: SweepSpec | str | os.PathLike[str] | Mapping[str, Any], *,
          output: str | os.PathLike[str] | None = None, jobs: int | None = None,
          executor: Executor = "process", address: str | None = None, ship: bool = False,
          resume: bool = False, parquet: bool = False, progress: bool = False,
          on_run: RunCallback | None = None) -> SweepResult:
    """Run a sweep: every trace of ``spec`` × every parameter set, one replay each.

    ``spec``: a spec file's path, a mapping as tomllib reads one, or a SweepSpec. ``output``:
    the folder for results.jsonl and the rest (None: nothing is written). ``jobs``: local
    workers (default: every core). ``executor``: "process" (a local pool) or "dask" (the
    cluster whose scheduler is at ``address``; None or "local": a LocalCluster of ``jobs``
    workers). ``ship``: send the traces' bytes to the cluster instead of reading them at a
    shared path. ``resume``: keep the rows ``output`` already has for the same runs.
    ``parquet``: write results.parquet too. ``progress``: a progress bar on standard error.
    ``on_run(run, outcome, failure)`` is called as each run finishes.

    Every input is checked before any run starts (SweepSpecError, SweepOptionError); a run
    that fails is in ``failures``, and the others go on.
    """
    spec = _spec_of(spec)
    workers = _check_options(executor, jobs, ship, resume, output, parquet)
    folder = SweepFolder(output, resume) if output is not None else None
    runs = spec.runs()
    rows, timelines, seconds = folder.previous() if folder and resume else ({}, {}, {})
    keys = {run.key for run in runs}
    rows = {key: row for key, row in rows.items() if key in keys}
    resumed = len(rows)
    todo = [run for run in runs if run.key not in rows]
    by_key = {run.key: run for run in todo}
    failures: dict[str, RunFailure] = {}
    with ExitStack() as stack:
        outcomes: Iterator[RunOutcome]
        if executor == "dask":
            client = _connect(stack, address, workers) if todo else None
            outcomes = _run_on_dask(client, todo, ship) if todo else iter(())
        elif min(workers, len(todo)) <= 1:
            outcomes = _run_here(todo)
        else:
            outcomes = _run_on_pool(todo, min(workers, len(todo)))
        if folder is not None:
            folder.open()
            stack.callback(folder.close)
        bar = stack.enter_context(SweepProgress(len(runs), resumed)) if progress else None
        for outcome in outcomes:
            run = by_key[outcome.key]
            failure = _failure(run, outcome)
            if failure is None:
                assert outcome.row is not None and outcome.timeline is not None
                rows[run.key], timelines[run.key] = outcome.row, outcome.timeline
                seconds[run.key] = outcome.seconds
            else:
                failures[run.key] = failure
            if folder is not None:
                folder.record(outcome, failure)
            if bar is not None:
                bar.update(run, outcome, failure)
            if on_run is not None:
                on_run(run, outcome, failure)
    result = SweepResult(
        spec=spec,
        rows=tuple(rows[run.key] for run in runs if run.key in rows),
        timelines={run.key: timelines[run.key] for run in runs if run.key in rows},
        failures=tuple(failures[run.key] for run in runs if run.key in failures),
        seconds={run.key: seconds[run.key] for run in runs if run.key in seconds},
        resumed=resumed, output=folder.path if folder else None,
    )
    if folder is not None:
        folder.finish(result, parquet)
    return result


__all__ = ["EXECUTORS", "RESULT_COLUMNS", "RunFailure", "RunOutcome", "SweepOptionError",
           "SweepProgress", "SweepResult", "SweepSpecError", "replay_run", "sweep"]
