"""Sweep specs: a grid of traces × replay parameters, read from TOML and checked before any run.

A spec (TOML, read with tomllib)::

    traces = ["recordings/*.txt.xz", "boot.txt"]   # files or globs, relative to the spec's folder
    every = 1000                                    # sample every N events (optional)
    skip_bad = false                                # count malformed lines instead (optional)

    [parameters]               # key = one value, or a list of the values to sweep
    policy = ["slub", "slab"]
    cpus = [1, 2, 4]
    memory = "512M"

    [report]                   # optional
    heatmap = ["policy", "cpus"]

States: TOML text -> a checked SweepSpec (every key known, every value canonical, every trace
found, opened and digested, every parameter set's allocators built once) -> its grid of
SweepRuns. Nothing runs until the whole spec is checked: bad input raises SweepSpecError naming
the spec file, the line where the TOML has it, and the key.

The grid, in order (the order of the results table): traces as listed, a glob's matches sorted,
a file listed twice kept once; for each trace the Cartesian product of the parameter values,
parameters in spec order, the last varying fastest.

Tunable: PARAMETERS, the table of spec keys -> Replayer keyword arguments. A row names the key,
the keyword, and how a TOML value becomes its canonical value (the one the results table holds:
sizes in bytes, layers as "slab,page") and then the keyword's argument. Every row's keyword is
checked against Replayer's signature, and parameters left out of a spec take Replayer's
defaults, so a new replay option plugs in by adding a row.

Invariants: a run's key (16 hex digits) is a digest of its trace's name and content (sha256),
its full parameter set and the sampling settings: the same key means the same replay, so a
resumed sweep may reuse the row. A run's parameters name every row of PARAMETERS, in table order.
"""

from __future__ import annotations

import glob
import hashlib
import inspect
import itertools
import json
import lzma
import os
import re
import tomllib
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kmem.errors import InvalidArgumentError, KmemError
from kmem.page.size import parse_size
from kmem.slab.allocator import POLICIES
from kmem.slab.sheaves import KERNELS
from kmem.trace.callers import parse_seed
from kmem.trace.machine_replay import WARM_MODES
from kmem.trace.replay import Replayer, parse_layers
from kmem.trace.source import open_trace

ParameterValue = str | int | float | bool

SPEC_KEYS: Final = ("traces", "every", "skip_bad", "parameters", "report")
REPORT_KEYS: Final = ("heatmap",)
DEFAULT_EVERY: Final = 1000


class SweepSpecError(InvalidArgumentError):
    """A sweep spec is unreadable or wrong: the message names the file, line and key."""


class _BadValue(Exception):
    """What is wrong with one value (a converter raises it; the spec reader adds where)."""


# -- converters: a TOML value -> its canonical value ---------------------------------------------

def _whole(minimum: int) -> Callable[[object], ParameterValue]:
    def convert(value: object) -> ParameterValue:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _BadValue(f"expected a whole number, got {value!r}")
        if value < minimum:
            raise _BadValue(f"expected a whole number >= {minimum}, got {value}")
        return value
    return convert


def _choice(names: Sequence[str]) -> Callable[[object], ParameterValue]:
    def convert(value: object) -> ParameterValue:
        if not isinstance(value, str) or value not in names:
            raise _BadValue(f"expected one of {', '.join(map(repr, names))}, got {value!r}")
        return value
    return convert


def _size(value: object) -> ParameterValue:
    """A size in bytes: a positive whole number, or text such as "512M"."""
    if isinstance(value, str):
        try:
            return parse_size(value.strip())
        except KmemError as error:
            raise _BadValue(str(error)) from None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _BadValue(f"expected a size (a number of bytes, or text such as '512M'),"
                        f" got {value!r}")
    return value


def _layers(value: object) -> ParameterValue:
    """"slab,page", "slab" or "page" (Replayer's default, a tuple, reads the same)."""
    if isinstance(value, tuple) and all(isinstance(part, str) for part in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise _BadValue(f"expected layers as text ('slab,page', 'slab' or 'page'), got {value!r}")
    try:
        return ",".join(parse_layers(value))
    except KmemError as error:
        raise _BadValue(str(error)) from None


def _show_size(value: ParameterValue) -> str:
    """A size as people write it: 16M, 4K, 1G (bytes when no unit divides it)."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if isinstance(value, int) and value >= 1 << shift and value % (1 << shift) == 0:
            return f"{value >> shift}{unit}"
    return str(value)


def _flag(value: object) -> ParameterValue:
    if not isinstance(value, bool):
        raise _BadValue(f"expected true or false, got {value!r}")
    return value


def _whole_or_default(minimum: int) -> Callable[[object], ParameterValue]:
    """A whole number >= minimum, or 0 for the default (Replayer's None)."""
    whole = _whole(minimum)

    def convert(value: object) -> ParameterValue:
        if value is None or (value == 0 and not isinstance(value, bool)):
            return 0
        return whole(value)
    return convert


def _layout(value: object) -> ParameterValue:
    """A --layout text: a zoneinfo file or zone sizes; "" (Replayer's None) for the default."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _BadValue(f"expected a zoneinfo file or zone sizes as text, got {value!r}")
    return value


def _seed(value: object) -> ParameterValue:
    """A random_kmalloc_seed: a u64 as a whole number or as text (decimal or "0x..": TOML's
    integers stop at 2**63-1); "" (Replayer's None) for no random kmalloc caches."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            return parse_seed(value)
        except ValueError as error:
            raise _BadValue(str(error)) from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise _BadValue(f"expected a seed (a u64, or text such as '0x1f'), got {value!r}")
    return value


def _none_if_zero(value: ParameterValue) -> object:
    return None if value == 0 else value


def _none_if_empty(value: ParameterValue) -> object:
    return None if value == "" else value


def _layer_tuple(value: ParameterValue) -> object:
    return tuple(str(value).split(","))


def _same(value: ParameterValue) -> object:
    return value


@dataclass(frozen=True, slots=True)
class ReplayParameter:
    """One row of PARAMETERS: a spec key and the Replayer keyword argument it sets."""

    key: str  # the spec key and the results table's column
    argument: str  # Replayer's keyword
    canonical: Callable[[object], ParameterValue]  # TOML value -> the table's value
    to_argument: Callable[[ParameterValue], object] = _same  # table value -> the argument
    help: str = ""
    show: Callable[[ParameterValue], str] = str  # how labels and messages write a value


# Spec key -> Replayer keyword. A new replay option is one more row (tests check every row
# against Replayer's signature, and that every option of Replayer has a row).
PARAMETERS: Final = (
    ReplayParameter("policy", "policy", _choice(POLICIES), help="slab allocator: slub or slab"),
    ReplayParameter("kernel", "kernel", _choice(KERNELS),
                    help="whose SLUB: 6.17, 6.18 (sheaves where Linux asks) or 7.0"),
    ReplayParameter("cpus", "nr_cpus", _whole(1), help="CPUs of the slab layer"),
    ReplayParameter("memory", "memory", _size, help="kmem's memory size (bytes or '1G')",
                    show=_show_size),
    ReplayParameter("max_order", "max_order", _whole(0), help="the buddy's MAX_PAGE_ORDER"),
    ReplayParameter("page_size", "page_size", _size, help="page size in bytes",
                    show=_show_size),
    ReplayParameter("layers", "layers", _layers, _layer_tuple,
                    help="layers replayed: 'slab,page', 'slab' or 'page'"),
    # The page machine (kmem.trace.machine_replay): any of these but warm turns it on.
    ReplayParameter("machine", "machine", _flag, help="true: feed page events to the machine"),
    ReplayParameter("layout", "layout", _layout, _none_if_empty,
                    help="the machine: a /proc/zoneinfo file or zone sizes ('' : one Normal"
                    " zone of memory)"),
    ReplayParameter("machine_cpus", "machine_cpus", _whole_or_default(1), _none_if_zero,
                    help="the machine's CPUs (0: cpus)"),
    ReplayParameter("pcp_high", "pcp_high", _whole_or_default(1), _none_if_zero,
                    help="a fixed pcp high for every CPU (0: 6.18's tuning)"),
    ReplayParameter("pcp_batch", "pcp_batch", _whole_or_default(1), _none_if_zero,
                    help="a fixed pcp batch (0: zone_batchsize)"),
    ReplayParameter("min_free_kbytes", "min_free_kbytes", _whole_or_default(1), _none_if_zero,
                    help="vm.min_free_kbytes (0: the kernel's formula)"),
    ReplayParameter("no_pcp", "no_pcp", _flag, help="true: no per-CPU lists at all"),
    ReplayParameter("warm", "warm", _choice(WARM_MODES),
                    help="what the pcp lists hold when the trace starts"),
    ReplayParameter("slab_on_machine", "slab_on_machine", _flag,
                    help="true: the slab layer's pages from the machine (watermarks, reserves,"
                    " pfmemalloc slabs)"),
    ReplayParameter("random_kmalloc_seed", "random_kmalloc_seed", _seed, _none_if_empty,
                    help="CONFIG_RANDOM_KMALLOC_CACHES with this seed ('': none)"),
)
PARAMETER_KEYS: Final = tuple(row.key for row in PARAMETERS)
# Replayer's keywords that are no what-if parameter (sampling, not the machine), and those no
# sweep sets yet: nr_nodes (a sweep replays on one node; a row would change every run's
# parameters, and so the keys resumed sweeps reuse: left for its own change).
NOT_PARAMETERS: Final = frozenset({"max_samples", "nr_nodes"})


def replayer_keywords() -> dict[str, inspect.Parameter]:
    """Replayer's keyword arguments, from its signature."""
    return dict(inspect.signature(Replayer).parameters)


def replayer_arguments(parameters: Sequence[tuple[str, ParameterValue]]) -> dict[str, Any]:
    """Replayer's keyword arguments for a full parameter set (every row's key and value)."""
    values = dict(parameters)
    return {row.argument: row.to_argument(values[row.key]) for row in PARAMETERS}


def parameters_text(pairs: Iterable[tuple[str, Any]]) -> str:
    """"policy=slab memory=16M": parameters as labels and messages write them."""
    return " ".join(f"{key}={show_value(key, value)}" for key, value in pairs)


def show_value(key: str, value: Any) -> str:
    """One parameter's value as labels write it (16M for a memory size)."""
    return _row(key).show(value)


def _row(key: str) -> ReplayParameter:
    return next(row for row in PARAMETERS if row.key == key)


def parameter_defaults() -> dict[str, ParameterValue]:
    """Every row's canonical value when a spec leaves it out: Replayer's own default."""
    keywords = replayer_keywords()
    defaults = {}
    for row in PARAMETERS:
        if row.argument not in keywords:
            raise InvalidArgumentError(
                f"sweep parameter {row.key!r} sets Replayer's {row.argument!r}, which Replayer"
                " does not take (fix kmem.trace.sweep_spec.PARAMETERS)")
        defaults[row.key] = row.canonical(keywords[row.argument].default)
    return defaults


# -- the spec's parts --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TraceFile:
    """A trace of the sweep: its name in the results table, where it is, its size and digest."""

    name: str  # as the spec's folder sees it (a relative path), or absolute if given so
    path: str  # absolute: where workers that share the file system read it
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class SweepRun:
    """One replay of the grid: a trace and one full parameter set."""

    index: int  # position in the grid: the results table's row order
    trace: TraceFile
    parameters: tuple[tuple[str, ParameterValue], ...]  # every row of PARAMETERS, table order
    label: str  # the swept parameters' values, e.g. "policy=slab cpus=2"
    every: int
    skip_bad: bool
    key: str = field(init=False)

    def __post_init__(self) -> None:
        identity = json.dumps({
            "trace": self.trace.name, "sha256": self.trace.sha256,
            "parameters": dict(self.parameters), "every": self.every,
            "skip_bad": self.skip_bad,
        }, sort_keys=True)
        object.__setattr__(self, "key", hashlib.sha256(identity.encode()).hexdigest()[:16])

    @property
    def name(self) -> str:
        """What progress and failure reports call the run: its trace and swept values."""
        return f"{self.trace.name} {self.label}".rstrip()

    def replayer_arguments(self) -> dict[str, Any]:
        """Replayer's keyword arguments for this run."""
        return replayer_arguments(self.parameters)


@dataclass(frozen=True)
class SweepSpec:
    """A checked spec: its traces, each parameter's values, and the sampling settings."""

    source: str  # the spec file's name, for messages ("<spec>" when built from a mapping)
    traces: tuple[TraceFile, ...]
    parameters: dict[str, tuple[ParameterValue, ...]]  # spec key -> its values, spec order
    every: int = DEFAULT_EVERY
    skip_bad: bool = False
    heatmap: tuple[str, str] | None = None  # two swept keys, if the spec names them

    @property
    def swept(self) -> tuple[str, ...]:
        """The keys with more than one value, in spec order."""
        return tuple(key for key, values in self.parameters.items() if len(values) > 1)

    def parameter_sets(self) -> list[tuple[tuple[str, ParameterValue], ...]]:
        """Every full parameter set of the grid, in grid order (defaults filled in)."""
        defaults = parameter_defaults()
        keys = list(self.parameters)
        sets = []
        for values in itertools.product(*self.parameters.values()):
            chosen = {**defaults, **dict(zip(keys, values, strict=True))}
            sets.append(tuple((key, chosen[key]) for key in PARAMETER_KEYS))
        return sets

    def runs(self) -> list[SweepRun]:
        """The grid: every trace × every parameter set, in results-table order."""
        swept = self.swept
        runs: list[SweepRun] = []
        sets = self.parameter_sets()
        for trace in self.traces:
            for parameters in sets:
                values = dict(parameters)
                label = parameters_text((key, values[key]) for key in swept)
                runs.append(SweepRun(len(runs), trace, parameters, label, self.every,
                                     self.skip_bad))
        return runs


# -- reading a spec ------------------------------------------------------------------------------

class _Where:
    """Names a spec's keys in messages: "sweep.toml:7: parameters.cpus: ..." (the line where the
    TOML text assigns the key, when one is found)."""

    def __init__(self, source: str, text: str | None) -> None:
        self.source = source
        self._lines: dict[tuple[str, str], int] = {}
        table = ""
        for number, line in enumerate((text or "").splitlines(), 1):
            header = re.match(r"\s*\[\s*([\w.\-]+)\s*\]", line)
            if header:
                table = header.group(1)
                continue
            assigned = re.match(r"\s*\"?([\w\-]+)\"?\s*=", line)
            if assigned:
                self._lines.setdefault((table, assigned.group(1)), number)

    def error(self, dotted: str, what: str) -> SweepSpecError:
        table, _, key = dotted.rpartition(".")
        key = key.split("[")[0]
        line = self._lines.get((table, key)) if key else None
        place = f"{self.source}:{line}" if line else self.source
        return SweepSpecError(f"{place}: {dotted}: {what}" if dotted else f"{place}: {what}")


def load_sweep_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and check the spec at ``path`` (trace paths are relative to its folder)."""
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise SweepSpecError(f"cannot read sweep spec {source!r}: {reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _toml_error(source, str(error)) from None
    return sweep_spec(data, source=source, base=Path(path).resolve().parent, text=text)


def _toml_error(source: str, message: str) -> SweepSpecError:
    found = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if not found:
        return SweepSpecError(f"{source}: not valid TOML: {message}")
    what = message[: found.start()].strip()
    return SweepSpecError(f"{source}:{found.group(1)}: not valid TOML: {what}"
                          f" (column {found.group(2)})")


def sweep_spec(data: Mapping[str, Any], *, source: str = "<spec>",
               base: str | os.PathLike[str] | None = None, text: str | None = None) -> SweepSpec:
    """Check a spec given as a mapping (what tomllib reads); trace paths are relative to
    ``base`` (default: the current directory)."""
    where = _Where(source, text)
    unknown = [key for key in data if key not in SPEC_KEYS]
    if unknown:
        raise where.error(unknown[0], f"unknown key (a spec has {', '.join(SPEC_KEYS)})")
    every = data.get("every", DEFAULT_EVERY)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise where.error("every", f"expected a whole number of events >= 1, got {every!r}")
    skip_bad = data.get("skip_bad", False)
    if not isinstance(skip_bad, bool):
        raise where.error("skip_bad", f"expected true or false, got {skip_bad!r}")
    parameters = _parameters(data.get("parameters", {}), where)
    heatmap = _heatmap(data.get("report", {}), parameters, where)
    traces = _traces(data.get("traces"), Path(base) if base is not None else Path.cwd(), where)
    spec = SweepSpec(source, traces, parameters, every, skip_bad, heatmap)
    _check_parameter_sets(spec, where)
    return spec


def _parameters(table: object, where: _Where) -> dict[str, tuple[ParameterValue, ...]]:
    if not isinstance(table, Mapping):
        raise where.error("parameters", "expected a table ([parameters])")
    defaults = parameter_defaults()  # (checks the table against Replayer first)
    parameters: dict[str, tuple[ParameterValue, ...]] = {}
    for key, given in table.items():
        dotted = f"parameters.{key}"
        if key not in defaults:
            raise where.error(dotted, "not a replay option (the options: "
                              f"{', '.join(PARAMETER_KEYS)})")
        values = given if isinstance(given, list) else [given]
        if not values:
            raise where.error(dotted, "an empty list: give at least one value")
        canonical: list[ParameterValue] = []
        for index, value in enumerate(values):
            try:
                converted = _row(key).canonical(value)
            except _BadValue as error:
                at = f"{dotted}[{index}]" if isinstance(given, list) else dotted
                raise where.error(at, str(error)) from None
            if converted in canonical:
                raise where.error(dotted, f"{value!r} is listed twice")
            canonical.append(converted)
        parameters[key] = tuple(canonical)
    return parameters


def _heatmap(table: object, parameters: Mapping[str, tuple[ParameterValue, ...]],
             where: _Where) -> tuple[str, str] | None:
    if not isinstance(table, Mapping):
        raise where.error("report", "expected a table ([report])")
    unknown = [key for key in table if key not in REPORT_KEYS]
    if unknown:
        raise where.error(f"report.{unknown[0]}",
                          f"unknown key (the report has {', '.join(REPORT_KEYS)})")
    if "heatmap" not in table:
        return None
    return check_heatmap(table["heatmap"], parameters, where.error)


def check_heatmap(keys: object, parameters: Mapping[str, tuple[ParameterValue, ...]],
                  error: Callable[[str, str], KmemError] | None = None) -> tuple[str, str]:
    """Two different swept parameters of ``parameters``, as the heat map's (x, y)."""
    def fail(what: str) -> KmemError:
        return error("report.heatmap", what) if error else SweepSpecError(f"heat map: {what}")

    if (not isinstance(keys, Sequence) or isinstance(keys, str) or len(keys) != 2
            or not all(isinstance(key, str) for key in keys)):
        raise fail(f"expected two parameter names, got {keys!r}")
    x, y = keys
    swept = [key for key, values in parameters.items() if len(values) > 1]
    for key in (x, y):
        if key not in swept:
            raise fail(f"{key!r} is not a swept parameter (swept: {', '.join(swept) or 'none'})")
    if x == y:
        raise fail(f"two different parameters, not {x!r} twice")
    return x, y


def _traces(given: object, base: Path, where: _Where) -> tuple[TraceFile, ...]:
    if given is None:
        raise where.error("traces", "missing: name the trace files or globs to replay")
    patterns = given if isinstance(given, list) else [given]
    if not patterns or not all(isinstance(p, str) and p.strip() for p in patterns):
        raise where.error("traces", f"expected trace files or globs (text), got {given!r}")
    found: dict[str, TraceFile] = {}
    for index, pattern in enumerate(patterns):
        dotted = f"traces[{index}]" if isinstance(given, list) else "traces"
        for name in _expand(os.path.expanduser(pattern), base, where, dotted):
            path = os.path.normpath(base / name)
            if not any(trace.path == path for trace in found.values()):
                found[name] = _trace_file(name, path, where, dotted)
    return tuple(found.values())


def _expand(pattern: str, base: Path, where: _Where, dotted: str) -> list[str]:
    """The names a pattern stands for: itself (a file), or a glob's matches, sorted."""
    if not glob.has_magic(pattern):
        path = base / pattern
        if not path.exists():
            raise where.error(dotted, f"no such trace file: {pattern!r}")
        if not path.is_file():
            raise where.error(dotted, f"{pattern!r} is not a file (a glob such as"
                              f" '{pattern.rstrip('/')}/*' names the files in a folder)")
        return [pattern]
    matches = sorted(name for name in glob.glob(pattern, root_dir=base, recursive=True)
                     if (base / name).is_file())
    if not matches:
        raise where.error(dotted, f"{pattern!r} matches no file")
    return matches


def _trace_file(name: str, path: str, where: _Where, dotted: str) -> TraceFile:
    """The trace, opened once (a first line read and decompressed) and digested."""
    try:
        with open_trace(path) as lines:
            lines.readline()
        with open(path, "rb") as raw:
            digest = hashlib.file_digest(raw, "sha256").hexdigest()
            size = os.fstat(raw.fileno()).st_size
    except KmemError as error:
        raise where.error(dotted, str(error)) from None
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as error:  # (unreadable,
        # or its compression is broken)
        raise where.error(dotted, f"cannot read trace {name!r}: {error}") from None
    return TraceFile(name.replace(os.sep, "/"), path, size, digest)


def _check_parameter_sets(spec: SweepSpec, where: _Where) -> None:
    """Build each parameter set's allocators once: a combination kmem refuses (a memory size
    that is no whole number of pages, too large an order) fails now, not in a run."""
    for parameters in spec.parameter_sets():
        try:
            Replayer(**replayer_arguments(parameters))
        except KmemError as error:
            values = dict(parameters)
            given = parameters_text((key, values[key]) for key in spec.parameters)
            raise where.error("parameters", f"kmem cannot replay with {given}: {error}") from None


__all__ = ["PARAMETERS", "ReplayParameter", "SweepRun", "SweepSpec", "SweepSpecError",
           "TraceFile", "load_sweep_spec", "sweep_spec"]
