"""Differential fuzzing of the line watch (kmem.trace.parse.LineWatch): text trace lines read
by the compiled parse loop (csrc/parse.c), which shows the watch only the lines that can
matter to it, and by the pure loop, which shows it every line through a generator, must give
the same events, errors and counters, and the watch the same record: lost-event markers and
header (kmem.trace.lost), perf script call chains, their page call sites and counts
(kmem.trace.script_callchains), as TraceInput reads a text trace (its _TextWatch).

The lines: those of the lost-event fixtures, of perf script text with and without call
chains, and of ftrace text, with marker, header, frame and blank lines put in, mutated as
tests/test_parse_fuzz.py mutates lines (and a token set to a marker, a frame or a
``kmem:mm_page_`` event), read in batches of a few lines so that dropped frames fall across
batch ends. Marked ``fuzz``: tools/fuzz.sh runs them under AddressSanitizer.
"""

from __future__ import annotations

import copy
import lzma
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core_twins import FUZZ_EXAMPLES, needs_compiled
from fixture_files import LS_TRACE, PERF_SCRIPT, TRACES
from kmem.errors import KmemError
from kmem.trace.lost import LostEvents, LostWatch
from kmem.trace.parse import TraceParser
from kmem.trace.perf_data import _TextWatch
from kmem.trace.script_callchains import ScriptCallchains
from test_parse_fuzz import _mutation

CALLCHAINS = TRACES / "perf-data" / "kmem-record-sleep.script-callchains-first3000.txt.xz"
LOST = sorted((TRACES / "lost").glob("*.txt.xz"))
SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SPECIAL = [
    "CPU:0 [LOST 5 EVENTS]\n", "CPU:1 [LOST EVENTS]\n", "CPU:2 [7 EVENTS DROPPED]\n",
    "CPU:3 [LOST 5 EVENTS]", "CPU:1 [LOST 9 EVENTS] bash-1 [001] ..... 1.000001: kfree:\n",
    "##### CPU 1 buffer started ####\n", "# entries-in-buffer/entries-written: 445/243263   #P:2\n",
    "# tracer: nop\n", "#\n", "\n", " \n", "\t\n", "",
    "\tffffffff81651495 __kmalloc_cache_node_noprof+0x215 ([kernel.kallsyms])\n",
    "\tffffffff8163bbbb __alloc_frozen_pages_noprof+0x26b ([kernel.kallsyms])\n",
    "\tffffffff815a8b66 __filemap_get_folio+0x1a6 ([kernel.kallsyms])\n",
    "\t          146f7c [unknown] (/usr/bin/perf)\n", "\t               0 [unknown] ([unknown])\n",
    "\tffffffff8163bbbb\n",
]
TOKENS = ["CPU:0", "CPU:1 [LOST 3 EVENTS]", "#", "\t", "\tffffffff8163bbbb", "kmem:mm_page_alloc:",
          "kmem:mm_page_free:", "kmem:mm_page_", "kmem:mm_page_x", "kmem:kmalloc:", "1.000001:",
          "1.5:", "[001]"]


def _lines(path: Path) -> list[str]:
    return lzma.decompress(path.read_bytes()).decode().splitlines(keepends=True)


@cache
def seed_lines() -> tuple[str, ...]:
    """Every line of the lost fixtures and of the first call chains, every 5th of the rest."""
    seeds = [line for path in LOST for line in _lines(path)]
    chains = _lines(CALLCHAINS)
    seeds += chains[:400] + chains[400::5]
    seeds += _lines(PERF_SCRIPT)[::5] + _lines(LS_TRACE)[::5] + SPECIAL
    return tuple(seeds)


@st.composite
def watched_lines(draw: st.DrawFn) -> list[str]:
    """A run of consecutive seed lines (frames after their event), some mutated, some of the
    special lines put in."""
    seeds = seed_lines()
    start = draw(st.integers(0, len(seeds) - 1))
    lines = list(seeds[start:start + draw(st.integers(1, 24))])
    for _ in range(draw(st.integers(0, 4))):
        index = draw(st.integers(0, len(lines)))
        what = draw(st.integers(0, 2))
        if what == 0:
            lines.insert(index, draw(st.sampled_from(SPECIAL)))
        elif index < len(lines):
            line = lines[index]
            if what == 1:
                lines[index] = draw(_mutation(line))
            else:
                tokens = line.split(" ")
                at = draw(st.integers(0, len(tokens) - 1))
                tokens[at] = draw(st.sampled_from(TOKENS))
                lines[index] = " ".join(tokens)
    return lines


def _outcome(parser: TraceParser, lines: list[str], size: int) -> tuple[Any, ...]:
    """Everything parsing ``lines`` with a _TextWatch makes: events or error, the parser's
    counters, the lost-event record and the call chains' record."""
    lost = LostEvents()
    chains = ScriptCallchains()
    watch = _TextWatch(LostWatch(lost), chains)
    try:
        result: Any = ("events", [tuple(chains.attach(batch))
                                  for batch in parser.parse_batches(lines, size, watch)])
    except KmemError as error:
        result = ("error", type(error).__name__, str(error))
    except ValueError as error:  # (a frame's address that is no hex number: raised as it is)
        result = ("raised", type(error).__name__, str(error))
    return (result, parser.lines, parser.bad_lines, [str(bad) for bad in parser.bad_examples],
            parser.events, parser.other_events, lost.to_json(), list(chains.sites),
            chains.chains, chains.page_lines, watch.see("CPU:0 [LOST 1 EVENTS]\n"))


def _parser(*, compiled: bool, skip_bad: bool) -> TraceParser:
    parser = TraceParser(skip_bad=skip_bad)
    if not compiled:
        parser._compiled_lines = None  # the pure-Python loop (what KMEM_PURE=1 chooses)
    assert (parser._compiled_lines is not None) == compiled
    return parser


@cache
def _warmed(*, compiled: bool, skip_bad: bool) -> TraceParser:
    """A parser that has learned the seed lines' tails (then most lines are read inline, and
    the compiled loop leaves them out of the watch's sight), its counters at zero."""
    parser = _parser(compiled=compiled, skip_bad=True)
    list(parser.parse_batches(line for line in seed_lines() if line[:1] != "\t"))
    warmed = _parser(compiled=compiled, skip_bad=skip_bad)
    warmed._call_sites, warmed._gfp_flags, warmed._tails = (
        parser._call_sites, parser._gfp_flags, parser._tails)
    warmed._memo_size, warmed._memo_chars = parser._memo_size, parser._memo_chars
    return warmed


def _compare(lines: list[str], size: int) -> None:
    for skip_bad in (False, True):
        outcomes = []
        for compiled in (True, False):
            for warm in (False, True):
                parser = (copy.deepcopy(_warmed(compiled=compiled, skip_bad=skip_bad)) if warm
                          else _parser(compiled=compiled, skip_bad=skip_bad))
                outcomes.append(_outcome(parser, lines, size))
        fresh_compiled, warm_compiled, fresh_pure, warm_pure = outcomes
        assert fresh_compiled == fresh_pure, lines
        assert warm_compiled == warm_pure, lines


@needs_compiled
@pytest.mark.fuzz
@SETTINGS
@given(watched_lines(), st.integers(1, 6))
def test_the_compiled_loop_shows_a_watch_what_the_pure_one_shows(lines: list[str],
                                                                 size: int) -> None:
    _compare(lines, size)


@needs_compiled
@pytest.mark.parametrize("path", [*LOST, CALLCHAINS, PERF_SCRIPT, LS_TRACE], ids=lambda p: p.name)
def test_the_compiled_loop_watches_every_fixture_as_the_pure_one(path: Path) -> None:
    lines = _lines(path)
    for size in (2048, 7):
        _compare(lines, size)
