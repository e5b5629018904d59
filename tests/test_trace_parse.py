"""The trace parser on real recordings (ftrace and perf script), old layouts and bad lines."""

from __future__ import annotations

import gzip
import io
import lzma
import re
import sys
from pathlib import Path

import pytest

from fixture_files import DD_TRACE, LS_TRACE, OLD_KERNELS, PERF_SCRIPT, TRACE_CMD
from kmem.errors import KmemError
from kmem.trace.events import (
    BYTES_ALLOC,
    BYTES_REQ,
    CALL_SITE,
    CPU,
    EVENT_NAMES,
    GFP,
    KFREE,
    KIND,
    MIGRATETYPE,
    NAME,
    NODE,
    NULL_PTR,
    ORDER,
    PFN,
    PTR,
    event_name,
    event_time,
)
from kmem.trace.parse import TraceFormatError, TraceParser, _Bad
from kmem.trace.source import TraceFileError, open_trace


def _text(path: Path) -> list[str]:
    return lzma.open(path, "rt").read().splitlines(keepends=True)


def _grep_counts(lines: list[str], prefix: str = "") -> dict[str, int]:
    """Events per name counted by plain substring search, independently of the parser."""
    counts = dict.fromkeys(EVENT_NAMES, 0)
    for line in lines:
        if line.startswith("#"):
            continue
        for name in EVENT_NAMES:
            if f" {prefix}{name}: " in line:
                counts[name] += 1
    return counts


@pytest.mark.parametrize("path", [LS_TRACE, DD_TRACE])
def test_ftrace_fixture_every_event_is_read(path: Path) -> None:
    lines = _text(path)
    parser = TraceParser()
    events = list(parser.parse(lines))
    assert parser.events == _grep_counts(lines)
    assert parser.lines == len(events) == sum(1 for x in lines if not x.startswith("#"))
    assert parser.bad_lines == 0


def test_ftrace_header_entry_count_matches() -> None:
    lines = _text(LS_TRACE)
    header = next(x for x in lines if "entries-in-buffer" in x)
    match = re.search(r"entries-in-buffer/entries-written: (\d+)/(\d+)", header)
    assert match is not None
    assert len(list(TraceParser().parse(lines))) == int(match.group(1))


def test_perf_script_fixture_every_event_is_read() -> None:
    lines = _text(PERF_SCRIPT)
    parser = TraceParser()
    events = list(parser.parse(lines))
    assert parser.events == _grep_counts(lines, "kmem:")
    assert len(events) == len(lines)
    assert all(e[PTR].startswith("0xffff") or e[PTR] == NULL_PTR for e in events if e[KIND] < 6)


@pytest.mark.parametrize("path", [LS_TRACE, DD_TRACE, PERF_SCRIPT])
def test_fast_path_equals_the_validating_slow_path(path: Path) -> None:
    """Each 6.x line parsed inline must give exactly what the generic key=value parser gives."""
    parser = TraceParser()
    lines = [x for x in _text(path) if not x.startswith("#")]
    fast = list(parser.parse(lines))
    slow = [parser._slow_line(x.split()) for x in lines]
    assert fast == slow


def test_trace_cmd_report_lines() -> None:
    """trace-cmd report: no irq-flags column, padded event names, ns timestamps, cpus= header."""
    lines = TRACE_CMD.read_text().splitlines()
    parser = TraceParser()
    events = list(parser.parse(lines))
    assert [event_name(e) for e in events] == [
        "kmem_cache_alloc", "kmalloc", "mm_page_alloc", "kfree", "kmem_cache_free",
        "mm_page_free", "kfree"]
    assert parser.lines == 7
    assert events[0][NAME] == "names_cache" and events[0][CPU] == 1
    assert events[3][PTR] == events[1][PTR] and events[3][CPU] == 0
    assert events[2][PFN] == events[5][PFN] == 0x1027DE
    assert events[6][PTR] == NULL_PTR
    assert event_time(events[6]) == pytest.approx(388.062400123)
    assert events == [parser._slow_line(x.split()) for x in lines[1:]]


def test_fields_of_a_6x_kmalloc_line() -> None:
    line = (
        "            bash-2220    [001] ..... 10308.077785: kmalloc: "
        "call_site=lsm_blob_alloc+0x3b/0x60 ptr=0000000045f49f41 bytes_req=11 bytes_alloc=16 "
        "gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO node=-1 accounted=true\n"
    )
    (event,) = TraceParser().parse([line])
    assert event_name(event) == "kmalloc"
    assert event[CPU] == 1
    assert event_time(event) == pytest.approx(10308.077785)
    assert event[CALL_SITE] == "lsm_blob_alloc+0x3b/0x60"
    assert event[PTR] == "0000000045f49f41"
    assert (event[BYTES_REQ], event[BYTES_ALLOC]) == (11, 16)
    assert event[GFP] == "GFP_KERNEL_ACCOUNT|__GFP_ZERO"
    assert event[NODE] == -1


def test_old_kernel_layouts() -> None:
    parser = TraceParser()
    events = list(parser.parse(OLD_KERNELS.read_text().splitlines()))
    names = [event_name(e) for e in events]
    assert names == [
        "kmalloc", "kmalloc_node", "kmem_cache_alloc", "kmem_cache_alloc_node", "kfree",
        "kmem_cache_free", "mm_page_alloc", "mm_page_free", "mm_page_free_batched",
        "mm_page_alloc_zone_locked", "mm_page_pcpu_drain", "kmalloc", "kmem_cache_free",
        "mm_page_alloc", "kfree", "mm_page_alloc_extfrag",
    ]
    kmalloc, kmalloc_node, cache_alloc = events[0], events[1], events[2]
    assert kmalloc[CALL_SITE] == "ffffffff811d2d8e" and kmalloc[NODE] == -1
    assert (kmalloc[BYTES_REQ], kmalloc[BYTES_ALLOC]) == (512, 512)
    assert kmalloc_node[GFP] == "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY"
    assert cache_alloc[NAME] == "" and cache_alloc[BYTES_ALLOC] == 256
    assert events[4][PTR] == kmalloc[PTR]  # the kfree pairs with the kmalloc
    assert events[6][PFN] == 504488  # decimal pfn of 4.x
    assert events[8][PFN] == 504489 and events[8][ORDER] == 0  # batched, with cold=0
    assert events[9][MIGRATETYPE] == 1
    assert events[11][CALL_SITE] == "nf_ct_ext_add+0x9e/0x160 [nf_conntrack]"
    assert events[12][PTR] == NULL_PTR  # kmem_cache_free(NULL)
    assert events[13][PFN] == -1 and events[13][ORDER] == 9  # a failed allocation
    assert events[14][CPU] == 0  # "Web Content" has a space in its name
    assert events[15][PFN] == 0x1F000 and events[15][ORDER] == 0
    assert parser.lines == 16


@pytest.mark.parametrize("null", ["(nil)", "(null)", "0000000000000000", "0x0"])
def test_every_spelling_of_null(null: str) -> None:
    line = f"a-1 [000] ..... 1.000000: kfree: call_site=f+0x1/0x2 ptr={null}"
    (event,) = TraceParser().parse([line])
    assert event[PTR] == NULL_PTR


GOOD = "a-1 [000] ..... 1.000000: kfree: call_site=f+0x1/0x2 ptr=0000000045f49f41"
KMALLOC = (
    "a-1 [000] ..... 1.000000: kmalloc: call_site=f+0x1/0x2 ptr=0000000045f49f41 bytes_req=11 "
    "bytes_alloc=16 gfp_flags=GFP_KERNEL node=-1 accounted=true"
)
MALFORMED = {
    "truncated in gfp_flags": KMALLOC[: KMALLOC.index("gfp_flags") + 6],
    "truncated inside a flag name": KMALLOC[: KMALLOC.index("GFP_KERNEL") + 5],
    "truncated after bytes_req": KMALLOC[: KMALLOC.index(" bytes_alloc")],
    "truncated in the header": "a-1 [000] ..... 1.00",
    "truncated before the fields": "a-1 [000] ..... 1.000000: kmalloc:",
    "non-numeric size": KMALLOC.replace("bytes_req=11", "bytes_req=1x"),
    "negative size": KMALLOC.replace("bytes_req=11", "bytes_req=-11"),
    "truncated pointer": GOOD.replace("ptr=0000000045f49f41", "ptr=0000000045f4"),
    "bad pointer (old layout)": GOOD.replace("ptr=0000000045f49f41", "ptr=00000000zz5f49f4")
    + " extra=1",
    "missing pointer": GOOD.replace(" ptr=0000000045f49f41", ""),
    "bad node": KMALLOC.replace("node=-1", "node=x"),
    "bad accounted": KMALLOC.replace("accounted=true", "accounted=maybe"),
    "field without =": GOOD + " junk",
    "no cpu column": "garbage that is not a trace line",
    "bad timestamp": GOOD.replace("1.000000:", "1,000000:"),
    "bad event name": GOOD.replace("kfree:", "kfree"),
    "bad pfn": "a-1 [000] ..... 1.000000: mm_page_free: page=0 pfn=0xzz order=0",
    "order out of range": "a-1 [000] ..... 1.000000: mm_page_free: page=0 pfn=0x10 order=40",
    "page alloc without migratetype": (
        "a-1 [000] ..... 1.000000: mm_page_alloc: page=0 pfn=0x10 order=0 gfp_flags=GFP_KERNEL"
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_line_names_its_number_and_content(case: str) -> None:
    bad = MALFORMED[case]
    lines = ["# a comment", GOOD, "", bad, GOOD]
    with pytest.raises(TraceFormatError) as caught:
        list(TraceParser().parse(lines))
    assert caught.value.line_number == 4
    assert str(caught.value).startswith("line 4: ")
    assert bad.strip()[:60] in str(caught.value)
    assert isinstance(caught.value, KmemError)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_skip_bad_counts_and_goes_on(case: str) -> None:
    parser = TraceParser(skip_bad=True)
    events = list(parser.parse([GOOD, MALFORMED[case], GOOD]))
    assert len(events) == 2
    assert parser.bad_lines == 1
    assert parser.bad_examples[0].line_number == 2
    assert parser.lines == 3


def test_other_tracepoints_and_trace_cmd_headers_are_skipped() -> None:
    lines = [
        "version = 6",
        "cpus=2",
        "a-1 [000] ..... 1.000000: sched_switch: prev_comm=a prev_pid=1",
        "  a-1 [001]  1.000001: kfree:  call_site=f+0x1/0x2 ptr=0000000045f49f41",  # trace-cmd
        GOOD,
    ]
    parser = TraceParser()
    events = list(parser.parse(lines))
    assert [e[CPU] for e in events] == [1, 0]
    assert parser.other_events == {"sched_switch": 1}
    assert parser.lines == 3


@pytest.mark.parametrize("kind", ["plain", "gzip", "xz"])
def test_open_trace_plain_gzip_xz(kind: str, tmp_path: Path) -> None:
    raw = lzma.decompress(LS_TRACE.read_bytes())
    path = tmp_path / "trace"
    path.write_bytes({"plain": raw, "gzip": gzip.compress(raw), "xz": lzma.compress(raw)}[kind])
    with open_trace(path) as lines:
        events = list(TraceParser().parse(lines))
    assert events == list(TraceParser().parse(raw.decode().splitlines()))


def test_open_trace_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = lzma.decompress(LS_TRACE.read_bytes())
    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(gzip.compress(raw))))
    monkeypatch.setattr(sys, "stdin", stdin)
    with open_trace("-") as lines:
        assert sum(1 for _ in TraceParser().parse(lines)) == 5459


def test_truncated_compressed_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.xz"
    path.write_bytes(LS_TRACE.read_bytes()[:20000])
    with pytest.raises(TraceFileError, match="broke off"), open_trace(path) as lines:
        list(TraceParser().parse(lines))


def test_corrupt_gzip_file_is_a_clear_error(tmp_path: Path) -> None:
    data = bytearray(gzip.compress("".join(_text(LS_TRACE)).encode()))
    data[10] = 0xFF  # the first deflate block's header, after gzip's: a reserved block type
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(TraceFileError, match="broke off"), open_trace(path) as lines:
        list(TraceParser().parse(lines))


def test_perf_script_lines_without_comm_and_tid() -> None:
    # perf script -F cpu,time,event,trace: the [cpu] column comes first
    line = GOOD.replace("a-1 [000] .....", "[001]").replace("kfree:", "kmem:kfree:")
    assert [event[:5] for event in TraceParser().parse([line])] == [
        (KFREE, 1, "1.000000:", "f+0x1/0x2", "0000000045f49f41")]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceFileError, match="cannot open"), open_trace(tmp_path / "nope"):
        pass


def _count_slow_calls(parser: TraceParser, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    slow_line = parser._slow_line

    def counting(tokens: list[str]) -> object:
        calls[0] += 1
        return slow_line(tokens)

    monkeypatch.setattr(parser, "_slow_line", counting)
    return calls


@pytest.mark.parametrize("path", [LS_TRACE, PERF_SCRIPT, TRACE_CMD])
def test_lines_seen_once_take_the_fast_path_in_every_layout(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ftrace, perf script (raw pointers, "(nil)") and trace-cmd lines (nanosecond timestamps)
    all teach the memo tables: read a second time, no event line needs the slow path."""
    lines = path.read_text().splitlines() if path.suffix == ".txt" else _text(path)
    parser = TraceParser()
    calls = _count_slow_calls(parser, monkeypatch)
    first = list(parser.parse(lines))
    cold = calls[0]
    second = list(parser.parse(lines))
    assert second == first
    assert cold > 0
    headers = sum(1 for x in lines if x.startswith("cpus="))  # trace-cmd's: not events
    assert calls[0] - cold == headers


def test_old_kernel_lines_take_the_fast_path_once_known(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = OLD_KERNELS.read_text().splitlines()
    parser = TraceParser()
    first = list(parser.parse(lines))
    calls = _count_slow_calls(parser, monkeypatch)
    assert list(parser.parse(lines)) == first
    # The 4.x page events print decimal pfns and extfrag its own layout: slow path each time;
    # so do lines with a space in the task name or a module suffix in the call site.
    assert calls[0] < len(lines) // 2


def test_memo_tables_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trace of ever-new tails (sizes) does not grow the memo past MAX_MEMO: lines past the
    bound are still read, by the slow path."""
    monkeypatch.setattr("kmem.trace.parse.MAX_MEMO", 50)
    lines = [KMALLOC.replace("bytes_req=11", f"bytes_req={n}") for n in range(200)]
    parser = TraceParser()
    events = list(parser.parse(lines))
    assert [e[BYTES_REQ] for e in events] == list(range(200))
    assert parser._memo_size <= 50
    assert sum(map(len, parser._tails)) + len(parser._call_sites) + len(parser._gfp_flags) <= 50


def test_call_sites_in_modules_take_the_fast_path_once_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module_line = KMALLOC.replace("call_site=f+0x1/0x2", "call_site=nf_ct_ext_add+0x9e/0x160"
                                  " [nf_conntrack]")
    other_pointer = module_line.replace("45f49f41", "12345678")
    parser = TraceParser()
    (first,) = parser.parse([module_line])
    assert first[CALL_SITE] == "nf_ct_ext_add+0x9e/0x160 [nf_conntrack]"
    calls = _count_slow_calls(parser, monkeypatch)
    (second,) = parser.parse([other_pointer])
    assert calls[0] == 0
    assert second == (*first[:PTR], "0000000012345678", *first[PTR + 1:])
    # An unclosed module bracket is still a bad line, whatever the memo tables know.
    with pytest.raises(TraceFormatError):
        list(parser.parse([module_line.replace("[nf_conntrack]", "[nf_conntrack")]))


_HEAD = "a-1 [000] ..... 1.000000: "
_PAGE_FREE = _HEAD + "mm_page_free: page=0000000045f49f41 pfn=0x12 order=0"
# (a line that teaches the memo tables, a probe with the same tail the fast path must not misread)
_MEMO_PROBES = {
    "0x NULL pointer": (GOOD.replace("ptr=0000000045f49f41", "ptr=0x0000000000000000"),
                        GOOD.replace("ptr=0000000045f49f41", "ptr=0x0000000000000000")),
    "repeated ptr in the tail": (GOOD + " ptr=1111111111111111",
                                 GOOD.replace("45f49f41", "22222222") + " ptr=1111111111111111"),
    "repeated call_site in the tail": (
        GOOD + " call_site=a+0x1/0x2", GOOD.replace("f+0x1", "b+0x1") + " call_site=a+0x1/0x2"),
    "space inside the pointer": (KMALLOC, KMALLOC.replace("ptr=0000000045f49f41 ",
                                                          "ptr=000000045f49f41  ")),
    "newline inside the pointer": (GOOD, GOOD.replace("45f49f41", "45f49f4\n")),
    "gfp_flags where call_site belongs": (
        KMALLOC, GOOD.replace("call_site=f+0x1/0x2", "gfp_flags=GFP_KERNEL")),
    "signed pfn": (_PAGE_FREE, _PAGE_FREE.replace("pfn=0x12", "pfn=0x-12")),
    "pfn with two 0x": (_PAGE_FREE, _PAGE_FREE.replace("pfn=0x12", "pfn=0x0x12")),
    "page field without a value": (_PAGE_FREE, _PAGE_FREE.replace("page=0000000045f49f41",
                                                                   "garbage")),
    "perf script line of a task named like a CPU": (
        GOOD.replace("a-1 [000] .....", "a  1 [001]"),
        GOOD.replace("a-1 [000] .....", "[005]  1 [001]")),
}


@pytest.mark.parametrize("case", sorted(_MEMO_PROBES))
def test_memo_tables_never_read_a_line_otherwise_than_the_slow_path(case: str) -> None:
    teacher, probe = _MEMO_PROBES[case]
    parser = TraceParser()
    list(parser.parse([teacher]))
    try:
        expected = parser._slow_line(probe.split())
    except (_Bad, ValueError, IndexError, KeyError):  # what the slow path rejects
        expected = None
    if expected is None:
        with pytest.raises(TraceFormatError):
            list(parser.parse([probe]))
    else:
        assert list(parser.parse([probe])) == [expected]
