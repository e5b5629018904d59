"""Differential fuzzing of the trace parser (issue #12): mutated lines of every trace fixture,
read (a) by a parser that has learned the fixtures' layouts (its fast paths: the memo tables,
the inline loop) and by a fresh one (the slow path), and (b) by the compiled inline loop
(csrc/parse.c) and the pure-Python one. Each pair must give the same events, or the same error
(class and message), and the same counters.

The mutations are what breaks a trace in practice and what tricks a fast path: a character
replaced, inserted or deleted (other scripts' digits, signs, underscores, x and X, colons,
brackets, whitespace of every kind, carriage returns), a token dropped, repeated or swapped,
a token of another line, a line cut short, or a field value set to a known-bad spelling
(nan, 1e400, a 17-digit pfn, an out-of-range CPU). Marked ``fuzz``: tools/fuzz.sh runs them
under AddressSanitizer with KMEM_FUZZ_EXAMPLES examples each (make test: 20, make fuzz: 2000;
60 in a plain pytest run).
"""

from __future__ import annotations

import lzma
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core_twins import FUZZ_EXAMPLES, needs_compiled
from fixture_files import DD_TRACE, LS_TRACE, OLD_KERNELS, PERF_SCRIPT, SWEEP_TRACES, TRACE_CMD
from kmem._compiled import core
from kmem.errors import KmemError
from kmem.trace.parse import TraceParser

FIXTURES = [LS_TRACE, DD_TRACE, PERF_SCRIPT, OLD_KERNELS, TRACE_CMD,
            *sorted(SWEEP_TRACES.glob("*.txt.xz"))]
LINES_PER_EXAMPLE = 8
SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _lines(path: Path) -> list[str]:
    data = path.read_bytes()
    text = lzma.decompress(data) if path.suffix == ".xz" else data
    return text.decode().splitlines(keepends=True)


@cache
def fixture_lines() -> tuple[str, ...]:
    """Every line of every trace fixture."""
    return tuple(line for path in FIXTURES for line in _lines(path))


@cache
def seed_lines() -> tuple[str, ...]:
    """The lines mutated: every line of the small fixtures and every 7th of the large ones, so
    that each layout and event kind is there (comments and headers included)."""
    seeds: list[str] = []
    for path in FIXTURES:
        lines = _lines(path)
        seeds.extend(lines if len(lines) < 500 else lines[::7])
    return tuple(seeds)


# Lines tried by each test of this module (mutated lines, each read alone and in a batch):
# written to the terminal at the end, for the counts the issue asks for.
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and TRIED:
        with capture.global_and_fixture_disabled():  # (past pytest's capture, even with -q)
            print()
            for name, count in sorted(TRIED.items()):
                print(f"parse fuzz: {name}: {count} lines tried")


def _outcome(parser: TraceParser, lines: list[str]) -> tuple[Any, ...]:
    """What a parser makes of ``lines``: the events or the error, and its counters."""
    try:
        result: Any = ("events", [tuple(batch) for batch in parser.parse_batches(lines, 3)])
    except KmemError as error:
        result = ("error", type(error).__name__, str(error))
    return result, parser.lines, parser.bad_lines, [str(bad) for bad in parser.bad_examples]


def _warmed(*, compiled: bool, skip_bad: bool) -> TraceParser:
    """A parser that has read every fixture line (its memo tables know every layout)."""
    parser = _parser(compiled=compiled, skip_bad=skip_bad)
    list(parser.parse_batches(fixture_lines()))
    return parser


def _parser(*, compiled: bool, skip_bad: bool) -> TraceParser:
    parser = TraceParser(skip_bad=skip_bad)
    if not compiled:
        parser._compiled_lines = None  # the pure-Python loop (what KMEM_PURE=1 chooses)
    assert (parser._compiled_lines is not None) == compiled
    return parser


# -- mutations ------------------------------------------------------------------------------

ODD_CHARACTERS = [
    *"0123456789abcdefABCDEFxXzZg_+-.:=[]()#|/ ",
    "\t", "\r", "\n", "\x0b", "\x0c", "\x1c", "\x00", "\x7f",
    "٠", "١", "٩", "０", "¹", "\u00a0", "\u2028", "\u3000", "é", "\ufffd",
]
ODD_TOKENS = [
    "nan:", "inf:", "-inf:", "1e400:", "+388.06:", "zzz.zzzzzz:", "388.061916:", "1.5:",
    "٣٨٨.٠٦١٩١٦:", "3_88.061916:", "9" * 25 + ".000001:", "388.0619161234:",
    "[000]", "[001]", "[8191]", "[8192]", "[٠٠١]", "[1]", "[0001]", "[-1]", "[+1]", "[ 1]",
    ".....", "d.s2", "kmalloc:", "kfree:", "kmem:kfree:", "kmem_cache_alloc:", "mm_page_alloc:",
    "mm_page_free:", "sched_switch:", "kmalloc", "#", "cpus=2", "CPU",
    "ptr=0xffff8881690bz200", "ptr=0Xffff8881690bc200", "ptr=(nil)", "ptr=0x0", "ptr=0",
    "ptr=0000000045f49f41", "ptr=0x0000000000000000", "ptr=45f49f41", "ptr=0x" + "f" * 17,
    "ptr=٠٠٠٠٠٠٠٠45f49f41", "ptr=0x_ffff888100868000", "ptr=+0x1",
    "call_site=f+0x1/0x2", "call_site=", "[nf_conntrack]", "[nf_conntrack",
    "bytes_req=1_28", "bytes_req=١٠٠", "bytes_req=-1", "bytes_req=+1", "bytes_req= 1",
    "bytes_alloc=" + "9" * 30, "gfp_flags=GFP_KERNEL", "gfp_flags=GFP_KERN", "gfp_flags=0x_1",
    "node=-1", "node=+1", "node=--1", "accounted=true", "accounted=True", "name=", "name=filp",
    "page=0x0", "page=zz", "page=(nil)", "page=00000000200ac740", "pfn=0x1_0", "pfn=0x١٠",
    "pfn=0x" + "1" * 17, "pfn=0x-1", "pfn=0x0x1", "pfn=12", "pfn=-12", "order=0", "order=٠",
    "order=32", "order=-1", "migratetype=-1", "migratetype=1_0", "percpu_refill=1",
    "alloc_order=1", "alloc_migratetype=2", "x=1", "=1", "junk",
]


@st.composite
def mutated_line(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(seed_lines()))
    for _ in range(draw(st.integers(1, 3))):
        line = draw(_mutation(line))
    return line


def _mutation(line: str) -> st.SearchStrategy[str]:
    size = len(line)
    positions = st.integers(0, max(size - 1, 0))
    characters = st.sampled_from(ODD_CHARACTERS)
    tokens = line.split(" ")
    token_index = st.integers(0, len(tokens) - 1)

    def joined(parts: list[str]) -> str:
        return " ".join(parts)

    return st.one_of(
        st.tuples(positions, characters).map(lambda pc: line[:pc[0]] + pc[1] + line[pc[0] + 1:]),
        st.tuples(positions, characters).map(lambda pc: line[:pc[0]] + pc[1] + line[pc[0]:]),
        st.tuples(positions, st.integers(1, 8)).map(lambda pn: line[:pn[0]] + line[pn[0] + pn[1]:]),
        positions.map(lambda p: line[:p]),  # cut short (no newline)
        positions.map(lambda p: line[:p] + "\n"),
        st.tuples(token_index, st.sampled_from(ODD_TOKENS)).map(
            lambda it: joined([*tokens[:it[0]], it[1], *tokens[it[0] + 1:]])),
        token_index.map(lambda i: joined(tokens[:i] + tokens[i + 1:])),
        token_index.map(lambda i: joined(tokens[:i + 1] + tokens[i:])),
        st.tuples(token_index, token_index).map(lambda ij: joined(_swapped(tokens, *ij))),
        st.tuples(token_index, st.sampled_from(seed_lines())).map(
            lambda it: joined(_with_token_of(tokens, it[0], it[1]))),
        st.sampled_from(["\r\n", "\r", "\n\n", " \n", "\t\n", ""]).map(
            lambda end: line.rstrip("\n") + end),
    )


def _swapped(tokens: list[str], i: int, j: int) -> list[str]:
    swapped = list(tokens)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    return swapped


def _with_token_of(tokens: list[str], index: int, other: str) -> list[str]:
    """``tokens`` with the token at ``index`` replaced by the same-numbered token of another
    line (its timestamp, pointer, event, ...)."""
    theirs = other.split(" ")
    return [*tokens[:index], theirs[min(index, len(theirs) - 1)], *tokens[index + 1:]]


def _batches(lines: list[str]) -> Iterator[list[str]]:
    """Each line alone (a line's own error), then all of them with good lines between."""
    for line in lines:
        yield [line]
    seeds = seed_lines()
    yield [part for k, line in enumerate(lines) for part in (seeds[k * 31 % len(seeds)], line)]


# -- (a) a warmed parser reads exactly what a fresh one reads --------------------------------

@pytest.fixture(scope="module")
def warmed_parsers() -> dict[bool, TraceParser]:
    compiled = core is not None
    return {skip_bad: _warmed(compiled=compiled, skip_bad=skip_bad) for skip_bad in (False, True)}


def _fresh_and_warmed(lines: list[str], warmed_parsers: dict[bool, TraceParser],
                      name: str) -> None:
    TRIED[name] += len(lines)
    compiled = core is not None
    for skip_bad in (False, True):
        warmed = warmed_parsers[skip_bad]
        for batch in _batches(lines):
            warmed.lines = warmed.bad_lines = 0
            warmed.bad_examples.clear()
            fresh = _parser(compiled=compiled, skip_bad=skip_bad)
            assert _outcome(warmed, batch) == _outcome(fresh, batch), batch


@pytest.mark.fuzz
@SETTINGS
@given(st.lists(mutated_line(), min_size=1, max_size=LINES_PER_EXAMPLE))
def test_a_warmed_parser_reads_mutated_lines_as_a_fresh_one(
        warmed_parsers: dict[bool, TraceParser], lines: list[str]) -> None:
    _fresh_and_warmed(lines, warmed_parsers, "warmed vs fresh, mutated lines")


def test_a_warmed_parser_reads_every_known_bad_spelling_as_a_fresh_one(
        warmed_parsers: dict[bool, TraceParser]) -> None:
    """Every odd token in place of every token of a line of each event kind (deterministic)."""
    kinds: dict[str, str] = {}
    for line in seed_lines():
        parts = line.split()
        if len(parts) > 5 and parts[4] not in kinds:
            kinds[parts[4]] = line
    for line in kinds.values():
        tokens = line.split(" ")
        lines = [" ".join([*tokens[:i], odd, *tokens[i + 1:]])
                 for i in range(len(tokens)) if tokens[i] for odd in ODD_TOKENS]
        _fresh_and_warmed(lines, warmed_parsers, "warmed vs fresh, every odd token in place")


# -- (b) the compiled loop reads exactly what the Python loop reads --------------------------

@pytest.fixture(scope="module")
def twin_parsers() -> dict[tuple[bool, bool], TraceParser]:
    if core is None:
        pytest.skip("the compiled core is not built (or KMEM_PURE=1)")
    parsers = {(compiled, skip_bad): _warmed(compiled=compiled, skip_bad=skip_bad)
               for compiled in (True, False) for skip_bad in (False, True)}
    for skip_bad in (False, True):  # the warm-up itself: the same counters and memo tables
        compiled, pure = parsers[True, skip_bad], parsers[False, skip_bad]
        assert (compiled.lines, compiled.events, compiled.bad_lines, compiled.other_events) == (
            pure.lines, pure.events, pure.bad_lines, pure.other_events)
        assert compiled._tails == pure._tails and compiled._call_sites == pure._call_sites
    return parsers


def _compiled_and_pure(lines: list[str],
                       twin_parsers: dict[tuple[bool, bool], TraceParser]) -> None:
    TRIED["compiled vs pure, mutated lines"] += len(lines)
    for skip_bad in (False, True):
        for batch in _batches(lines):
            outcomes = []
            for compiled in (True, False):
                for parser in (twin_parsers[compiled, skip_bad],
                               _parser(compiled=compiled, skip_bad=skip_bad)):
                    parser.lines = parser.bad_lines = 0
                    parser.bad_examples.clear()
                    outcomes.append(_outcome(parser, batch))
            warmed_compiled, fresh_compiled, warmed_pure, fresh_pure = outcomes
            assert warmed_compiled == warmed_pure, batch
            assert fresh_compiled == fresh_pure, batch


@needs_compiled
@pytest.mark.fuzz
@SETTINGS
@given(st.lists(mutated_line(), min_size=1, max_size=LINES_PER_EXAMPLE))
def test_the_compiled_loop_reads_mutated_lines_as_the_pure_one(
        twin_parsers: dict[tuple[bool, bool], TraceParser], lines: list[str]) -> None:
    _compiled_and_pure(lines, twin_parsers)


@needs_compiled
def test_the_compiled_loop_reads_every_fixture_as_the_pure_one() -> None:
    for path in FIXTURES:
        lines = _lines(path)
        for skip_bad in (False, True):
            compiled = _outcome(_parser(compiled=True, skip_bad=skip_bad), lines)
            assert compiled == _outcome(_parser(compiled=False, skip_bad=skip_bad), lines)
            assert compiled[0][0] == "events"


class _Broken:
    """Lines, then the error a stream breaks off with."""

    def __init__(self, lines: list[str], error: BaseException) -> None:
        self._lines = iter(lines)
        self._error = error

    def __iter__(self) -> _Broken:
        return self

    def __next__(self) -> str:
        for line in self._lines:
            return line
        raise self._error


@needs_compiled
@pytest.mark.parametrize("error", [EOFError("cut"), OSError("gone"), lzma.LZMAError("bad"),
                                   ValueError("a bug")], ids=repr)
def test_the_compiled_loop_sorts_a_broken_stream_as_the_pure_one(error: BaseException) -> None:
    lines = list(seed_lines()[:50])
    outcomes = []
    for compiled in (True, False):
        parser = _parser(compiled=compiled, skip_bad=False)
        try:
            outcomes.append(_outcome(parser, _Broken(lines, error)))  # type: ignore[arg-type]
        except ValueError as raised:  # not the trace's fault: raised as it is, by both
            outcomes.append(("raised", raised))
    assert outcomes[0] == outcomes[1]
    if isinstance(error, ValueError):
        assert outcomes[0] == ("raised", error)
    else:
        assert outcomes[0][0][1] == "TraceFileError"
