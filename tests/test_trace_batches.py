"""Events in bulk: EventBatch columns (kmem.trace.events), TraceParser.parse_batches and the
Replayer's batch path give exactly what the event tuples give."""

from __future__ import annotations

import lzma
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixture_files import DD_TRACE, LS_TRACE, OLD_KERNELS, PERF_SCRIPT, TRACE_CMD
from kmem.errors import InvalidArgumentError
from kmem.trace.events import EventBatch, TraceEvent, batch_events, event_batch
from kmem.trace.parse import BATCH, TraceFormatError, TraceParser
from kmem.trace.replay import Replayer
from kmem.trace.source import TraceFileError, open_trace

FIXTURES = [LS_TRACE, DD_TRACE, PERF_SCRIPT, TRACE_CMD, OLD_KERNELS]


def _lines(path: Path) -> list[str]:
    with open_trace(path) as lines:
        return list(lines)


def _tuples(lines: list[str]) -> tuple[list[TraceEvent], TraceParser]:
    parser = TraceParser()
    return list(parser.parse(lines)), parser


@pytest.mark.parametrize("size", [1, 7, BATCH])
@pytest.mark.parametrize("path", FIXTURES)
def test_batches_hold_the_events_and_counters_of_the_tuples(path: Path, size: int) -> None:
    lines = _lines(path)
    expected, by_tuple = _tuples(lines)
    parser = TraceParser()
    batches = list(parser.parse_batches(lines, size))
    assert [event for batch in batches for event in batch_events(batch)] == expected
    for batch in batches:
        assert 0 < len(batch.kinds) <= size
        assert len({len(column) for column in batch}) == 1  # every column, one entry per event
    assert (parser.lines, parser.events, parser.other_events) == (
        by_tuple.lines, by_tuple.events, by_tuple.other_events)


@pytest.mark.parametrize("path", FIXTURES)
def test_event_batch_is_the_inverse_of_batch_events(path: Path) -> None:
    for batch in TraceParser().parse_batches(_lines(path), 500):
        events = batch_events(batch)
        assert event_batch(events) == batch
        assert batch_events(batch.part(3, 17)) == events[3:17]


def test_counters_count_the_batches_yielded_so_far() -> None:
    lines = _lines(DD_TRACE)
    comments = sum(1 for line in lines[:100] if line.startswith("#"))
    parser = TraceParser()
    batches = parser.parse_batches(lines, 100)
    first = next(batches)
    assert len(first.kinds) == 100 - comments
    assert sum(parser.events.values()) == len(first.kinds)
    assert parser.lines == 100 - comments
    batches.close()  # stopped at a batch: the lines of the batches read, no more
    assert parser.lines == 100 - comments


def test_a_bad_line_comes_after_the_batch_of_the_events_before_it() -> None:
    lines = _lines(LS_TRACE)
    lines[3000] = lines[3000].replace("ptr=", "ptr=zz", 1)
    events_before = _tuples(lines[:3000])[0]
    parser = TraceParser()
    seen: list[TraceEvent] = []
    with pytest.raises(TraceFormatError) as error:
        for batch in parser.parse_batches(lines, 2048):
            seen.extend(batch_events(batch))
    assert error.value.line_number == 3001
    assert seen == events_before
    comments = sum(1 for line in lines[:3001] if line.startswith("#"))
    assert parser.lines == 3001 - comments
    assert sum(parser.events.values()) == len(events_before)


def test_a_stream_that_breaks_off_comes_after_the_events_read_before_it(tmp_path: Path
                                                                         ) -> None:
    expected = _tuples(_lines(LS_TRACE))[0]
    cut = tmp_path / "cut.xz"
    cut.write_bytes(LS_TRACE.read_bytes()[:20000])
    parser = TraceParser()
    seen: list[TraceEvent] = []
    with pytest.raises(TraceFileError, match="broke off after line"), open_trace(cut) as lines:
        seen.extend(parser.parse(lines))
    # every line read before the break gave its event (the trace has comments only at its top)
    assert 2048 < len(seen) == sum(parser.events.values()) == parser.lines < len(expected)
    assert seen == expected[:len(seen)]


def _breaking_at(lines: list[str], number: int) -> Iterator[str]:
    yield from lines[:number - 1]
    raise OSError("the disk went away")


@pytest.mark.parametrize("number", [1, 2, 7, 8, 9, 20])
def test_a_read_error_comes_after_the_events_before_it(number: int) -> None:
    lines = [line for line in _lines(DD_TRACE)[:40] if not line.startswith("#")]
    parser = TraceParser()
    batches: list[EventBatch] = []
    with pytest.raises(TraceFileError, match=f"after line {number - 1}: the disk went away"):
        batches.extend(parser.parse_batches(_breaking_at(lines, number), 8))
    assert [e for batch in batches for e in batch_events(batch)] == _tuples(lines[:number - 1])[0]
    assert parser.lines == number - 1


def test_batch_size_is_checked() -> None:
    parser = TraceParser()
    lines = iter(_lines(TRACE_CMD))
    with pytest.raises(InvalidArgumentError, match="size must be >= 1, got 0"):
        list(parser.parse_batches(lines, 0))
    # nothing read, nothing counted: the same parser then reads the whole trace
    assert (parser.lines, sum(parser.events.values())) == (0, 0)
    assert len([e for batch in parser.parse_batches(lines) for e in batch_events(batch)]) == 7


def test_nothing_to_read_gives_no_batch() -> None:
    parser = TraceParser()
    assert list(parser.parse_batches(["# tracer: nop\n", "\n"])) == []
    assert parser.lines == 0


@pytest.mark.parametrize("every", [1, 7, 1000])
@pytest.mark.parametrize("path", [LS_TRACE, DD_TRACE])
def test_replaying_batches_equals_replaying_tuples(path: Path, every: int) -> None:
    with lzma.open(path, "rt") as text:
        lines = text.readlines()
    events = _tuples(lines)[0]
    by_tuple = Replayer().run(events, every=every).to_json()
    # Batches of another size than the sampling interval: the replay splits them.
    batches: list[EventBatch] = list(TraceParser().parse_batches(lines, 333))
    assert Replayer().run_batches(batches, every=every).to_json() == by_tuple
