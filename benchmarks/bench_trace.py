"""Trace parsing and replay speed on a 1,000,000-event Linux 6.x trace, and replay memory.

The trace is generated (in /tmp, never committed) by repeating the recorded fixture
tests/fixtures/traces/kmem-6.18-dd-first15000.txt.xz: cycle k shifts every non-NULL pointer and
pfn into its own range (so each cycle allocates new objects, frees its own, and leaves its
leftovers live, as a longer recording would) and continues the timestamps. A second trace repeats
the fixture without shifting, so the live set stays the same size however long it runs: peak RSS
on its first quarter and on all of it shows that replay memory follows the live objects, not the
trace length.

Figures: the time of a bare Python loop that reads the file and split()s every line (the
baseline of issues 4 and 11), of the same loop over kmem.trace.source.open_trace (the bounded,
decoding reader every command uses), of parsing alone with the compiled inline loop
(csrc/parse.c) and with the pure-Python one side by side, of ``kmem stat`` of the whole trace
(both cores, a fresh process each), and of parsing + replaying through kmem's allocators
(slab,page layers, SLUB, 2 CPUs, 4 GiB) in one process, and with the parser in a second process
(kmem.trace.pipeline, what ``kmem replay FILE`` does), with the CPU time of each process; peak
RSS of a replay in a fresh child process; the CPU time spent inside the compiled replay loop
(kmem._core.replay_feed) per event, beside the C limit per operation (benchmarks/c/buddy_limit.c,
issue 11's "operations run inside the core <= 3x the C limit"). Timings on shared machines are
noisy: ratios matter. ``python -m benchmarks.bench_trace replay`` runs the replay figures alone,
``python -m benchmarks.bench_trace stat [PYTHON]`` the kmem stat ones (beside another build).
"""

from __future__ import annotations

import json
import lzma
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.children import installed_environment

FIXTURE = (Path(__file__).parent.parent / "tests" / "fixtures" / "traces"
           / "kmem-6.18-dd-first15000.txt.xz")
EVENTS = 1_000_000
TRACE = Path("/tmp/kmem-bench-trace-1M.txt")
SAME_POINTERS = Path("/tmp/kmem-bench-trace-1M-same-pointers.txt")

_PTR = re.compile(r"(ptr=)0000(\w{12})")
_PFN = re.compile(r"pfn=0x([0-9a-f]+)")
_TIME = re.compile(r" (\d+\.\d{6}): ")


def _fixture_events() -> list[str]:
    with lzma.open(FIXTURE, "rt") as lines:
        return [line for line in lines if not line.startswith("#")]


def _shifted(line: str, cycle: int, offset: float, shift: bool) -> str:
    """``line`` moved into cycle ``cycle``: pointers and pfns (if ``shift``) and timestamp."""
    if shift and cycle:
        line = _PTR.sub(lambda m: m.group(0) if m.group(2) == "000000000000"
                        else f"{m.group(1)}{cycle:04x}{m.group(2)}", line)
        line = _PFN.sub(lambda m: f"pfn={int(m.group(1), 16) + cycle * 0x400000:#x}", line)
    return _TIME.sub(lambda m: f" {float(m.group(1)) + offset:.6f}: ", line, count=1)


def generate(path: Path, shift: bool, events: int = EVENTS) -> None:
    """Write a trace of ``events`` events by cycling the fixture (see the module docstring)."""
    body = _fixture_events()
    first = float(_TIME.search(body[0]).group(1))  # type: ignore[union-attr]
    span = float(_TIME.search(body[-1]).group(1)) - first + 0.001  # type: ignore[union-attr]
    written = cycle = 0
    with path.open("w") as out:
        out.write("# tracer: nop\n#\n")
        while written < events:
            chunk = body[: events - written]
            out.writelines(_shifted(line, cycle, cycle * span, shift) for line in chunk)
            written += len(chunk)
            cycle += 1


def ensure_trace(path: Path, shift: bool, events: int = EVENTS) -> None:
    """generate() unless ``path`` already holds that trace (its header and ``events`` lines)."""
    if not path.exists() or sum(1 for _ in path.open()) != events + 2:
        generate(path, shift, events)


def bare_loop(path: Path) -> tuple[float, float]:
    """(wall, CPU) seconds to read and split() every line: the baseline."""
    start, cpu = time.perf_counter(), time.process_time()
    with path.open() as lines:
        for line in lines:
            line.split()
    return time.perf_counter() - start, time.process_time() - cpu


def source_loop(path: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of bare_loop over open_trace's reader (bounded lines, UTF-8)."""
    from kmem.trace.source import open_trace

    start, cpu = time.perf_counter(), time.process_time()
    with open_trace(path) as lines:
        for line in lines:
            line.split()
    return time.perf_counter() - start, time.process_time() - cpu


def parse_only(path: Path, compiled: bool = True) -> tuple[float, float]:
    """(wall, CPU) seconds to parse every line into EventBatches (what replay reads), read
    through open_trace, with the compiled inline loop or the pure-Python one."""
    from kmem.trace.parse import TraceParser
    from kmem.trace.source import open_trace

    parser = TraceParser()
    if not compiled:
        parser._compiled_lines = None  # the pure loop, as KMEM_PURE=1 chooses it
    elif parser._compiled_lines is None:
        return float("nan"), float("nan")  # (no compiled core here)
    start, cpu = time.perf_counter(), time.process_time()
    with open_trace(path) as lines:
        for _ in parser.parse_batches(lines):  # what replay reads
            pass
    return time.perf_counter() - start, time.process_time() - cpu


def stat_child(path: Path, pure: bool, *options: str, python: str = sys.executable
               ) -> tuple[float, float]:
    """(wall, CPU) seconds of ``kmem stat OPTIONS`` of the trace in a fresh process (startup
    and the report included), on the compiled core (its accumulation in csrc/stat.c) or the
    pure one; ``python``: the interpreter of another build (stat_rounds)."""
    environment = installed_environment(python, KMEM_PURE="1" if pure else "0")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([python, "-m", "kmem", "stat", *options, "--no-progress",
                    str(path)], check=True, capture_output=True, env=environment)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def stat_rounds(other: str | None = None, rounds: int = 4) -> dict[str, object]:
    """The `kmem stat` figures alone (``python -m benchmarks.bench_trace stat [PYTHON]``):
    rounds of the bare loop (in a fresh process too, as kmem stat runs), ``kmem stat`` and
    ``kmem stat --json`` on the compiled core, interleaved with the same commands of another
    build's interpreter (``other``, e.g. main's .venv/bin/python) so that both feel the same
    load; medians of wall and CPU seconds, and the load average."""
    ensure_trace(TRACE, shift=True)
    builds = {"this build": sys.executable, **({"other build": other} if other else {})}
    runs: dict[str, list[tuple[float, float]]] = {}
    bare_code = ("import sys\nwith open(sys.argv[1]) as lines:\n"
                 "    for line in lines:\n        line.split()\n")
    stat_child(TRACE, False)  # (warm: the page cache, the bytecode caches)
    if other:
        stat_child(TRACE, False, python=other)
    loads = [os.getloadavg()[0]]
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", bare_code, str(TRACE)], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        runs.setdefault("bare loop, fresh process", []).append(
            (time.perf_counter() - start,
             (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)))
        for name, python in builds.items():
            for options in ((), ("--json",)):
                label = " ".join(["kmem stat", *options]) + f", {name}"
                runs.setdefault(label, []).append(
                    stat_child(TRACE, False, *options, python=python))
        loads.append(os.getloadavg()[0])
    bare_cpu = statistics.median(cpu for _, cpu in runs["bare loop, fresh process"])
    out: dict[str, object] = {}
    for label, values in runs.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        out[f"{label}: wall / CPU (s), CPU / bare"] = f"{wall:.2f} / {cpu:.2f}, " \
                                                      f"{cpu / bare_cpu:.2f}x"
    out["load average (1 min) over the rounds"] = f"{min(loads):.1f}-{max(loads):.1f}"
    return out


_CHILD = """
import json, resource, sys, time
from itertools import islice
import kmem._compiled
from kmem.trace.parse import TraceParser
from kmem.trace.pipeline import ParserProcess
from kmem.trace.replay import Replayer
from kmem.trace.source import open_trace
path, limit, parallel = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "parallel"
# The CPU time inside the compiled replay loop (replay_feed), per event it was given: what the
# operations cost run inside the core (issue 11's "<= 3x the C limit").
feed = [0, 0]
core = kmem._compiled.core
if core is not None:
    _replay_feed = core.replay_feed
    def _timed_feed(replayer, kinds, *rest):
        before = time.process_time_ns()
        try:
            return _replay_feed(replayer, kinds, *rest)
        finally:
            feed[0] += time.process_time_ns() - before
            feed[1] += len(kinds)
    core.replay_feed = _timed_feed
start = time.perf_counter()
replayer = Replayer(memory=4 << 30)
if parallel:  # kmem replay's default: a second process parses (the whole file)
    assert limit >= 1 << 40
    result = replayer.run_batches(ParserProcess(path).batches(), every=10000)
else:  # kmem replay --serial (limit: the first lines of the file)
    with open_trace(path) as lines:
        result = replayer.run_batches(TraceParser().parse_batches(islice(lines, limit)),
                                      every=10000)
elapsed = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
parser = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": elapsed, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "parser_cpu_seconds": parser.ru_utime + parser.ru_stime,
                  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child of a
                  # big parent would report the parent's peak
                  "maxrss_kb": int(next(line.split()[1] for line in open("/proc/self/status")
                                        if line.startswith("VmHWM:"))),
                  "parser_maxrss_kb": parser.ru_maxrss,
                  "live_objects": result.live_objects_at_end,
                  "live_pages": result.page["live_pages_at_end"],
                  "mismatches": result.bytes_alloc_mismatches,
                  "feed_ns_per_event": feed[0] / feed[1] if feed[1] else float("nan")}))
"""


def replay_child(path: Path, limit: int = 1 << 40, parallel: bool = False) -> dict[str, float]:
    """Replay the first ``limit`` lines of ``path`` (all of it in parallel) in a fresh process."""
    mode = "parallel" if parallel else "serial"
    output = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(limit), mode],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output)  # type: ignore[no-any-return]


def c_limit_ns() -> float:
    """The C limit per operation (benchmarks/c/buddy_limit.c, the mixed workload at 16,384
    pages: intrusive lists, every operation inside C, no checks), in ns."""
    from benchmarks.bench_core import c_limit

    return c_limit()["c_limit_mixed_16384_ns"]


def replay_rounds(rounds: int = 3) -> dict[str, object]:
    """The replay figures alone (``python -m benchmarks.bench_trace replay``): per round the
    bare loop and a serial replay in a fresh process, one after the other; CPU ratios per
    round, the replay loop inside the core per event, and the C limit beside it."""
    ensure_trace(TRACE, shift=True)
    ratios, feeds = [], []
    for _ in range(rounds):
        bare_cpu = bare_loop(TRACE)[1]
        replay = replay_child(TRACE)
        ratios.append(replay["cpu_seconds"] / bare_cpu)
        feeds.append(replay["feed_ns_per_event"])
    limit = c_limit_ns()
    return {
        "CPU time: replay, one process / bare (x), per round":
            ", ".join(f"{r:.2f}" for r in ratios),
        "replay loop inside the core (replay_feed) per event, CPU (ns), per round":
            ", ".join(f"{f:.0f}" for f in feeds),
        "C limit per operation, buddy_limit.c mixed at 16,384 pages (ns)": round(limit, 1),
        "replay_feed per event / C limit (x, target <= 3)":
            round(statistics.median(feeds) / limit, 1),
    }


def run() -> dict[str, object]:
    ensure_trace(TRACE, shift=True)
    ensure_trace(SAME_POINTERS, shift=False)
    size_mb = TRACE.stat().st_size / 1e6
    bares = [bare_loop(TRACE) for _ in range(3)]
    sources = [source_loop(TRACE) for _ in range(3)]
    parses = [parse_only(TRACE) for _ in range(3)]
    pure_parses = [parse_only(TRACE, compiled=False) for _ in range(2)]
    bare = statistics.median(b[0] for b in bares)
    bare_cpu = statistics.median(b[1] for b in bares)
    source = statistics.median(b[0] for b in sources)
    parse = statistics.median(p[0] for p in parses)
    parse_cpu = statistics.median(p[1] for p in parses)
    pure_parse = statistics.median(p[0] for p in pure_parses)
    # kmem stat (the summaries, the target) and --json (every table), each core, rounds
    # interleaved so that both feel the same load; medians; the bare loop measured beside.
    stat_runs: dict[tuple[bool, bool], list[tuple[float, float]]] = {
        (pure, as_json): [] for pure in (False, True) for as_json in (False, True)}
    stat_bares = []
    for _ in range(3):
        stat_bares.append(bare_loop(TRACE))
        for (pure, as_json), runs in stat_runs.items():
            if pure and len(runs) == 2:
                continue  # (the pure core twice: it is the slow one)
            runs.append(stat_child(TRACE, pure, *(["--json"] if as_json else [])))
    stat_bare = statistics.median(b[0] for b in stat_bares)
    stat_bare_cpu = statistics.median(b[1] for b in stat_bares)
    stat_wall = {key: statistics.median(r[0] for r in runs) for key, runs in stat_runs.items()}
    stat_cpu = {key: statistics.median(r[1] for r in runs) for key, runs in stat_runs.items()}
    replay = replay_child(TRACE)
    # The median of three runs: two processes feel the machine's other load twice.
    parallel = sorted((replay_child(TRACE, parallel=True) for _ in range(3)),
                      key=lambda run: run["seconds"])[1]
    limit = c_limit_ns()
    quarter = replay_child(SAME_POINTERS, EVENTS // 4)
    whole = replay_child(SAME_POINTERS)
    return {
        "trace events": EVENTS,
        "trace size (MB)": round(size_mb, 1),
        "bare read+split loop (s)": round(bare, 2),
        "read+split loop over open_trace (s)": round(source, 2),
        "parse only, compiled loop (s)": round(parse, 2),
        "parse only, pure loop (s)": round(pure_parse, 2),
        "bare loop beside kmem stat, wall / CPU (s)": f"{stat_bare:.2f} / {stat_bare_cpu:.2f}",
        "kmem stat, compiled core / pure core (s)":
            f"{stat_wall[False, False]:.2f} / {stat_wall[True, False]:.2f}",
        "kmem stat --json, compiled core / pure core (s)":
            f"{stat_wall[False, True]:.2f} / {stat_wall[True, True]:.2f}",
        "parse + replay slab,page, one process (s)": round(replay["seconds"], 2),
        "parse + replay, parser in a second process (s)": round(parallel["seconds"], 2),
        "parse / bare (x): compiled loop, pure loop": f"{parse / bare:.2f}, "
                                                      f"{pure_parse / bare:.2f}",
        "kmem stat / bare (x, target <= 1): compiled, pure":
            f"{stat_wall[False, False] / stat_bare:.2f}, {stat_wall[True, False] / stat_bare:.2f}",
        "kmem stat / bare, CPU time (x): compiled, pure":
            f"{stat_cpu[False, False] / stat_bare_cpu:.2f},"
            f" {stat_cpu[True, False] / stat_bare_cpu:.2f}",
        "kmem stat --json / bare (x): compiled, pure":
            f"{stat_wall[False, True] / stat_bare:.2f}, {stat_wall[True, True] / stat_bare:.2f}",
        "replay, one process / bare (x, target <= 1)": round(replay["seconds"] / bare, 2),
        "replay, parser in a second process / bare (x, target <= 4)":
            round(parallel["seconds"] / bare, 2),
        "CPU time: bare / parse / replay (s)": f"{bare_cpu:.2f} / {parse_cpu:.2f} /"
                                               f" {replay['cpu_seconds']:.2f}",
        "CPU time: parse / bare (x)": round(parse_cpu / bare_cpu, 2),
        "CPU time: replay, one process / bare (x)": round(replay["cpu_seconds"] / bare_cpu, 2),
        "CPU time of the two processes: replaying / parsing (s)":
            f"{parallel['cpu_seconds']:.2f} / {parallel['parser_cpu_seconds']:.2f}",
        "replay per event, one process (us)": round(replay["seconds"] / EVENTS * 1e6, 2),
        "replay loop inside the core (replay_feed) per event, CPU (ns)":
            round(replay["feed_ns_per_event"], 1),
        "C limit per operation, buddy_limit.c mixed at 16,384 pages (ns)": round(limit, 1),
        "replay_feed per event / C limit (x, target <= 3)":
            round(replay["feed_ns_per_event"] / limit, 1),
        "replay peak RSS (MB)": round(replay["maxrss_kb"] / 1024, 1),
        "parser process peak RSS (MB)": round(parallel["parser_maxrss_kb"] / 1024, 1),
        "replay live objects / live pages at end": f"{replay['live_objects']}"
                                                   f" / {replay['live_pages']}",
        "bytes_alloc mismatches": replay["mismatches"],
        "same-pointer trace: peak RSS 250k events (MB)": round(quarter["maxrss_kb"] / 1024, 1),
        "same-pointer trace: peak RSS 1M events (MB)": round(whole["maxrss_kb"] / 1024, 1),
        "this process peak RSS (MB)": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["stat"]:
        figures = stat_rounds(sys.argv[2] if len(sys.argv) > 2 else None)
    else:
        figures = replay_rounds() if sys.argv[1:] == ["replay"] else run()
    for key, value in figures.items():
        print(f"{key:<55} {value}")
