"""perf.data read directly gives the events and numbers `perf script` text gives.

Fixtures (tests/fixtures/traces/perf-data/, README there says how each was made): three real
recordings of a 2-CPU Linux 6.18 machine with perf 6.1 (`perf kmem record` with call chains and
both CPUs; a `perf record` with a one-page buffer that lost 67% of its events; a pipe capture
`perf record -o -`), each with its `perf script -F comm,tid,cpu,time,event,trace` text, the
kernel symbols they use (kallsyms.txt.xz, trimmed from that boot's kallsyms) and perf kmem's own
stat output of the first.
"""

from __future__ import annotations

import functools
import json
import lzma
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core_twins import FUZZ_EXAMPLES, needs_compiled
from kmem._compiled import core
from kmem.cli.main import main
from kmem.page.gfp import GFP_FLAG_NAMES
from kmem.trace.events import EVENT_NAMES, MM_PAGE_ALLOC, TraceEvent, batch_events
from kmem.trace.parse import TraceParser
from kmem.trace.perf_data import (
    KernelSymbols,
    PerfData,
    PerfDataError,
    TraceInput,
    parse_event_format,
    time_text,
)
from kmem.trace.source import TraceFileError, open_trace
from kmem.trace.stat import KmemStat

HERE = Path(__file__).parent / "fixtures" / "traces" / "perf-data"


def _unxz(path: Path) -> bytes:
    with lzma.open(path) as file:
        return file.read()

KALLSYMS = HERE / "kallsyms.txt.xz"
RECORDINGS = ("kmem-record-sleep", "lost-cat", "pipe-ls")


@pytest.fixture(scope="module")
def symbols() -> KernelSymbols:
    return KernelSymbols(_unxz(KALLSYMS).decode())


def _perf_events(name: str, symbols: KernelSymbols) -> tuple[PerfData, list[TraceEvent]]:
    # (a pipe capture has no build id: perf script printed its call sites as addresses)
    data = PerfData(_unxz(HERE / f"{name}.data.xz"), name=name,
                    kallsyms=None if name == "pipe-ls" else symbols)
    return data, [event for batch in data.batches() for event in batch_events(batch)]


def _text_events(name: str) -> list[TraceEvent]:
    with lzma.open(HERE / f"{name}.script.txt.xz", "rt") as lines:
        return list(TraceParser().parse(lines))


def _without_page_sites(events: list[TraceEvent]) -> list[TraceEvent]:
    """Page events' call sites blanked: perf script -F trace text has no callchain."""
    return [event if event[0] < MM_PAGE_ALLOC else (*event[:3], "", *event[4:])
            for event in events]


@pytest.mark.parametrize("name", RECORDINGS)
def test_events_equal_perf_script_text(name: str, symbols: KernelSymbols) -> None:
    data, events = _perf_events(name, symbols)
    text = _text_events(name)
    assert len(events) == len(text) > 300
    assert _without_page_sites(events) == text  # same events, same order, same call sites
    assert data.events == dict(zip(EVENT_NAMES, [sum(e[0] == k for e in text)
                                                 for k in range(len(EVENT_NAMES))], strict=True))


def test_several_cpus_and_call_chains_are_read(symbols: KernelSymbols) -> None:
    _, events = _perf_events("kmem-record-sleep", symbols)
    assert {event[1] for event in events} == {0, 1}
    times = [float(event[2][:-1]) for event in events]
    assert times == sorted(times)  # perf's ordered delivery, though CPUs' buffers interleave
    page_sites = {event[3] for event in events if event[0] == MM_PAGE_ALLOC}
    assert page_sites and "" not in page_sites


def test_page_call_site_is_the_first_frame_outside_the_page_allocator(
        symbols: KernelSymbols) -> None:
    _, events = _perf_events("kmem-record-sleep", symbols)
    sites = [event[3] for event in events if event[0] == MM_PAGE_ALLOC]
    # 6.18's first frames (__alloc_frozen_pages_noprof, alloc_pages_mpol, folio_alloc_noprof)
    # are skipped: no page call site is an allocator function
    assert not [site for site in sites if site.startswith(
        ("__alloc_frozen_pages", "alloc_pages", "__alloc_pages", "folio_alloc"))]
    assert any(site.startswith("__filemap_get_folio+") for site in sites)


def _rows(section: dict[str, object], drop: str = "") -> dict[str, object]:
    """A stat JSON section with its tables as sorted lists of rows (``drop`` left out)."""
    out: dict[str, object] = {}
    for key, value in section.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            out[key] = sorted(json.dumps({k: v for k, v in row.items() if k != drop},
                                         sort_keys=True) for row in value)
        else:
            out[key] = value
    return out


def _by_order_migratetype_gfp(rows: list[dict[str, int]]) -> dict[tuple[int, ...], list[int]]:
    sums: dict[tuple[int, ...], list[int]] = {}
    for row in rows:
        total = sums.setdefault((row["order"], row["migratetype"], row["gfp"]), [0, 0, 0, 0])
        for index, key in enumerate(("nr_alloc", "alloc_bytes", "nr_free", "free_bytes")):
            total[index] += row[key]
    return sums


@pytest.mark.parametrize("name", RECORDINGS)
def test_stat_json_of_perf_data_equals_stat_of_perf_script_text(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / f"{name}.data"
    data.write_bytes(_unxz(HERE / f"{name}.data.xz"))
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text(_unxz(KALLSYMS).decode())
    options = [] if name == "pipe-ls" else ["--kallsyms", str(kallsyms)]
    assert main(["stat", "--json", *options, str(data)]) == 0
    from_data = json.loads(capsys.readouterr().out)
    assert main(["stat", "--json", str(HERE / f"{name}.script.txt.xz")]) == 0
    from_text = json.loads(capsys.readouterr().out)
    # the same rows; ties of the sort keys are ordered by call site address (perf's order)
    # from perf.data, by name from text, and text has no page call sites
    assert _rows(from_data["slab"]) == _rows(from_text["slab"])
    page_data, page_text = from_data["page"], from_text["page"]
    callers = page_data.pop("callers"), page_text.pop("callers")
    assert _rows(page_data, drop="call_site") == _rows(page_text, drop="call_site")
    # perf.data's page callers split text's (order, migratetype, gfp) rows by call site
    assert _by_order_migratetype_gfp(callers[0]) == _by_order_migratetype_gfp(callers[1])
    assert from_data["events"] == from_text["events"]
    assert from_data["lines"] == from_text["lines"]  # one sample, one line


def test_compressed_perf_data_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert main(["stat", "--json", str(HERE / "pipe-ls.data.xz")]) == 0
    assert json.loads(capsys.readouterr().out)["events"]["kmalloc"] > 0


def test_stat_text_equals_perf_kmem_on_the_same_file(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "perf.data"
    data.write_bytes(_unxz(HERE / "kmem-record-sleep.data.xz"))
    assert main(["stat", "--slab", "--page", str(data)]) == 0
    text = capsys.readouterr().out
    perf = (HERE / "kmem-record-sleep.stat-slab-page.txt").read_text()
    assert text[:text.index("Order")] == perf[:perf.index("Order")]


def test_lost_records_are_counted_and_placed(symbols: KernelSymbols) -> None:
    data, events = _perf_events("lost-cat", symbols)
    lost = data.lost_events_report()
    # perf record: "Processed 928 samples and lost 67.03%!": 622 of 928
    assert lost.total == 622 == data.lost_events
    assert len(events) + lost.total == 928
    assert [(s.cpu, s.count) for s in lost.stretches] == [(1, 50), (1, 572)]
    assert sum(lost.per_event.values()) == 622  # LOST_SAMPLES: the same losses, per event
    assert set(lost.per_event) <= set(EVENT_NAMES)
    first_after = [float(e[2][:-1]) for e in events if e[1] == 1 and
                   float(e[2][:-1]) >= lost.stretches[0].time]
    assert first_after  # the loss lies inside the trace, on CPU 1


def test_stat_says_what_was_lost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(HERE / "lost-cat.data.xz")
    assert main(["stat", path]) == 0
    out = capsys.readouterr().out
    assert "LOST EVENTS: 622 (67.0% of 928)" in out
    assert "CPU 1: 572 lost before" in out and "slab frees of pointers never seen" in out
    assert main(["stat", "--json", path]) == 0
    lost = json.loads(capsys.readouterr().out)["lost"]
    assert lost["total"] == 622 and lost["unknown_slab_frees"] > 0
    assert [s["count"] for s in lost["stretches"]] == [50, 572]


def test_format_offsets_come_from_the_format_text() -> None:
    text = """name: kfree
ID: 7
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long call_site;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const void * ptr;\toffset:8;\tsize:8;\tsigned:0;

print fmt: "call_site=%pS ptr=%p", (void *)REC->call_site, REC->ptr
"""
    fmt = parse_event_format(text, "kmem")
    assert (fmt.id, fmt.name) == (7, "kfree")
    assert fmt.fields["ptr"].offset == 8 and fmt.fields["call_site"].offset == 16
    payload = struct.pack("<HHiQQ", 7, 0, 1, 0xFFFF888100001000, 0xFFFFFFFF81000010)
    assert fmt.fields["ptr"].read(payload) == 0xFFFF888100001000
    assert fmt.fields["call_site"].read(payload) == 0xFFFFFFFF81000010


def test_gfp_table_is_evaluated_from_the_print_fmt(symbols: KernelSymbols) -> None:
    data = PerfData(_unxz(HERE / "pipe-ls.data.xz"), kallsyms=symbols)
    list(data.batches())
    assert data.tracing is not None
    kmalloc = next(f for f in data.tracing.formats.values() if f.name == "kmalloc")
    assert kmalloc.gfp_table is not None and len(kmalloc.gfp_table) > 30
    for value, name in kmalloc.gfp_table:
        assert GFP_FLAG_NAMES[name] == value, name  # the C expressions, evaluated
    assert kmalloc.gfp_text(0) == "none"
    assert kmalloc.gfp_text(GFP_FLAG_NAMES["GFP_KERNEL"] | 1 << 30) == "GFP_KERNEL|0x40000000"


def test_symbols_resolve_as_perf_prints_them() -> None:
    symbols = KernelSymbols("ffffffff81000000 T _stext\nffffffff81000000 t alias\n"
                            "ffffffff81000100 W weak_one\nffffffff81000100 T strong\n"
                            "ffffffff81000200 T end_marker\n")
    assert symbols.name(0xFFFFFFFF81000010) == "_stext+0x10"  # global over local
    assert symbols.name(0xFFFFFFFF81000100) == "strong+0x0"  # non-weak over weak
    assert symbols.name(0xFFFFFFFF80000000) == "0xffffffff80000000"
    assert symbols.name(0xFFFFFFFF81000300) == "0xffffffff81000300"  # past the last symbol


def test_time_text_truncates_to_microseconds_as_perf_script() -> None:
    assert time_text(501_914_888_999) == "501.914888:"
    assert time_text(5_000_001_000) == "5.000001:"


def test_truncated_perf_data_is_one_clear_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    raw = _unxz(HERE / "lost-cat.data.xz")
    path = tmp_path / "cut.data"
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(PerfDataError, match="truncated"):
        PerfData.open(path)
    assert main(["stat", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err


def test_perf_data_without_kmem_events_says_how_to_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = bytearray(_unxz(HERE / "lost-cat.data.xz"))
    _, _, attr_size, attrs_offset, attrs_size = struct.unpack_from("<8sQQQQ", raw)
    for pos in range(attrs_offset, attrs_offset + attrs_size, attr_size):
        raw[pos:pos + 4] = struct.pack("<I", 1)  # every attr a software event
    path = tmp_path / "cycles.data"
    path.write_bytes(bytes(raw))
    assert main(["stat", str(path)]) == 2
    assert capsys.readouterr().err == (f"kmem stat: {path}: perf.data without kmem events:"
                                       " record with perf kmem record\n")


def test_binary_files_are_refused_in_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    elf = tmp_path / "a.out"
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(200))
    blob = tmp_path / "blob"
    blob.write_bytes(b"hello\0world" * 10)
    for path, what in ((elf, "an ELF file"), (blob, "a binary file")):
        for command in ("stat", "replay"):
            assert main([command, str(path)]) == 2
            assert capsys.readouterr().err == f"kmem {command}: {path}: not a kmem trace: {what}\n"
    with pytest.raises(TraceFileError, match=r"perf\.data file"), \
            open_trace(HERE / "lost-cat.data.xz") as lines:
        next(lines)


def test_empty_trace_and_trace_without_kmem_events_warn_and_exit_3(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    other = tmp_path / "sched.txt"
    other.write_text("# tracer: nop\n"
                     "  bash-1 [000] ..... 1.000001: sched_switch: prev_comm=bash\n")
    for command in ("stat", "replay"):
        assert main([command, str(empty)]) == 3
        captured = capsys.readouterr()
        assert captured.out == "" and "it is empty" in captured.err
        assert main([command, str(other)]) == 3
        captured = capsys.readouterr()
        assert captured.out == "" and "sched_switch 1" in captured.err


def test_trace_input_counters_of_perf_data(symbols: KernelSymbols) -> None:
    with TraceInput.open(HERE / "pipe-ls.data.xz") as trace:
        assert trace.kind == "perf.data"
        stat = KmemStat()
        for batch in trace.batches():
            stat.add(batch_events(batch))
    assert trace.nr_events == trace.lines == 1144 and trace.bad_lines == 0
    assert not trace.lost.any


# -- perf kmem's options, against perf kmem on the same file --------------------------------

def _kmem(capsys: pytest.CaptureFixture[str], *options: str) -> str:
    capsys.readouterr()
    assert main(["stat", *options, str(HERE / "kmem-record-sleep.data.xz")]) == 0
    return capsys.readouterr().out


def _perf_text(name: str) -> str:
    return (HERE / f"kmem-record-sleep.{name}.txt").read_text()


# perf 6.1 labels migratetype 1 "RECLAIM" and 2 "MOVABLE" (the order before Linux 4.4); kmem
# prints the kernel's names: 1 is MOVABLE, 2 RECLAIMABLE.
_PERF_LABEL = {"RECLAIM": "MOVABLE", "MOVABLE": "RECLAIM"}


def _page_rows(text: str) -> list[str]:
    """The page table rows of a stat text, perf's stale labels made the kernel's and the
    Callsite column left out (perf 6.1 prints mis-mapped addresses there on 6.18)."""
    rows = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split(" | ")]
        if len(cells) >= 6 and cells[1].isdigit():
            rows.append(" | ".join(cells[:-1]))
    return rows


def _relabelled(rows: list[str]) -> list[str]:
    out = []
    for row in rows:
        cells = row.split(" | ")
        index = 4 if len(cells) == 6 else 3  # (per pfn: a PFN column first)
        cells[index] = _PERF_LABEL.get(cells[index], cells[index])
        out.append(" | ".join(cells))
    return out


def test_slab_callers_and_raw_ip_equal_perf_byte_for_byte(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_bytes(_unxz(KALLSYMS))
    # ties broken by call site address, as perf's tree does
    assert _kmem(capsys, "--slab", "--caller", "-l", "25", "--kallsyms", str(kallsyms)) == \
        _perf_text("stat-slab-caller-l25")
    assert _kmem(capsys, "--slab", "--caller", "--raw-ip", "-l", "25") == \
        _perf_text("stat-slab-caller-raw-ip-l25")


def test_time_window_equals_perf(capsys: pytest.CaptureFixture[str]) -> None:
    text = _kmem(capsys, "--slab", "--page", "--time", "464.809017,464.879863")
    perf = _perf_text("stat-slab-page-time")
    assert text[:text.index("Order")] == perf[:perf.index("Order")]
    assert "Cross CPU allocations: 0/1605" in text  # of 3433 in the whole recording


def test_live_pages_equal_perf(capsys: pytest.CaptureFixture[str]) -> None:
    text = _kmem(capsys, "--page", "--live", "--alloc", "-l", "30")
    perf = _perf_text("stat-page-live-alloc-l30")
    assert " PFN              |  Live alloc (KB) |" in text
    assert _page_rows(text) == _relabelled(_page_rows(perf))
    assert len(_page_rows(text)) == 30
    text = _kmem(capsys, "--page", "--live", "--caller", "-s", "order,migtype,gfp")
    perf = _perf_text("stat-page-live-caller-order-migtype-gfp")
    assert _page_rows(text) == _relabelled(_page_rows(perf))
    # the order x migratetype counts of --live are what is still allocated
    live = [line for line in text.splitlines() if line[:5].strip().isdigit()]
    perf_live = [line for line in perf.splitlines() if line[:5].strip().isdigit()]
    assert [line.split()[:2] for line in live] == [line.split()[:2] for line in perf_live]


def test_sort_option_applies_to_the_table_perf_chooses(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    by_hit = _kmem(capsys, "--slab", "--caller", "--alloc", "-s", "hit", "-l", "5")
    default = _kmem(capsys, "--slab", "--caller", "--alloc", "-l", "5")
    # -s after --alloc sorts the per-pointer table only
    assert by_hit.split("Alloc Ptr")[0] == default.split("Alloc Ptr")[0]
    assert by_hit.split("Alloc Ptr")[1] != default.split("Alloc Ptr")[1]
    # before --page, -s is the slab sort (perf's rule): a page key is refused there
    capsys.readouterr()
    assert main(["stat", "-s", "order", "--page", str(HERE / "pipe-ls.data.xz")]) == 2
    assert "unknown slab sort key 'order'" in capsys.readouterr().err
    page = _kmem(capsys, "--page", "--caller", "-s", "order", "-s", "hit", "-l", "8")
    orders = [int(row.split(" | ")[2]) for row in _page_rows(page)]
    assert orders == sorted(orders, reverse=True) and len(orders) == 8


def test_raw_ip_of_a_text_trace_and_bad_time_are_clear_errors(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = str(HERE / "pipe-ls.script.txt.xz")
    assert main(["stat", "--raw-ip", text]) == 2
    assert "--raw-ip needs a perf.data file" in capsys.readouterr().err
    for bad in ("5", "a,b", "9,3"):
        assert main(["stat", "--time", bad, text]) == 2
        assert "bad --time" in capsys.readouterr().err


def test_raw_ip_of_a_named_pipe_says_it_is_read_as_text(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A pipe named by its path (kmem stat --raw-ip <(cat x.data)) is read once, as text,
    # without a look at its bytes: the error says so, not that it holds trace text.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert main(["stat", "--raw-ip", str(fifo)]) == 2
    assert capsys.readouterr().err == (
        f"kmem stat: --raw-ip needs a perf.data file: {fifo} is a pipe, which kmem reads as"
        " trace text (give perf.data as a file, or on standard input)\n")


def test_time_window_of_text_equals_that_of_perf_data(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    window = "505.670000,505.690000"
    capsys.readouterr()
    assert main(["stat", "--json", "--time", window, str(HERE / "pipe-ls.data.xz")]) == 0
    from_data = json.loads(capsys.readouterr().out)
    assert main(["stat", "--json", "--time", window, str(HERE / "pipe-ls.script.txt.xz")]) == 0
    from_text = json.loads(capsys.readouterr().out)
    assert from_data["events"] == from_text["events"]
    assert 0 < sum(from_data["events"].values()) < 1144
    assert from_data["slab"]["total_bytes_allocated"] == \
        from_text["slab"]["total_bytes_allocated"]


# -- plain perf script text with call chains ---------------------------------------------------

def test_plain_perf_script_with_call_chains_gives_perf_datas_events(
        symbols: KernelSymbols) -> None:
    _, events = _perf_events("kmem-record-sleep", symbols)
    with TraceInput.open(HERE / "kmem-record-sleep.script-callchains-first3000.txt.xz") as trace:
        text = [event for batch in trace.batches() for event in batch_events(batch)]
    assert len(text) == 3000
    assert text == events[:3000]  # page call sites included, from the frames of each event
    assert any(event[3] for event in text if event[0] >= MM_PAGE_ALLOC)


def test_call_chain_rules_on_hand_made_frames() -> None:
    from kmem.trace.script_callchains import ScriptCallchains

    head = "  a  1 [000]   1.000001:    kmem:mm_page_alloc: page=0x1 pfn=0x1 order=0" \
        " migratetype=0 gfp_flags=GFP_KERNEL\n"
    kernel = "\tffffffff81000010 {}+0x10 ([kernel.kallsyms])\n"
    chains = ScriptCallchains()
    lines = [
        head, kernel.format("__alloc_pages_noprof"), kernel.format("alloc_pages_mpol"),
        kernel.format("my_driver_fill"), "\n",  # the first frame outside the allocator
        head, kernel.format("__get_free_pages"), "\n",  # allocator frames only: no site
        head, kernel.format("alloc_pages_noprof"),
        "\t          f8350 __GI___libc_write+0x10 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n",
        head, *[kernel.format("__alloc_pages_noprof")] * 17, kernel.format("late"),
    ]
    kept = list(chains.lines(lines))
    assert kept == [head, "\n", head, "\n", head, head]
    # a frame outside the kernel is its address (as perf.data's kernel symbols leave it)
    assert list(chains.sites) == ["my_driver_fill+0x10", "", "0xf8350", ""]


@pytest.mark.parametrize("command", [["replay", "--json", "--no-progress"],
                                     ["replay", "--json", "--serial"],
                                     ["html", "--no-progress", "-o", "-", "--trace"]])
def test_replay_and_html_read_plain_perf_script_call_chains_as_stat_does(
        command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # (they failed on the first frame: "no [cpu] column: not a trace event line")
    with lzma.open(HERE / "kmem-record-sleep.script-callchains-first3000.txt.xz", "rt") as text:
        lines = text.readlines()
    events = [line for line in lines if line.strip() and not line.startswith("\t")]
    assert len(events) < len(lines) - 3000  # (the frames, and a blank line after each chain)
    (tmp_path / "chains").mkdir()
    (tmp_path / "events").mkdir()
    (tmp_path / "chains" / "trace.txt").write_text("".join(lines))
    (tmp_path / "events" / "trace.txt").write_text("".join(events))
    capsys.readouterr()
    assert main([*command, str(tmp_path / "chains" / "trace.txt")]) == 0
    with_chains = capsys.readouterr().out
    assert main([*command, str(tmp_path / "events" / "trace.txt")]) == 0
    assert with_chains == capsys.readouterr().out
    if command[0] == "replay":
        assert sum(json.loads(with_chains)["events"].values()) == 3000


@pytest.mark.parametrize("address", ["zz", "\u0661\u0662", "ff_ff", "1" * 17, "-1"])
def test_a_page_events_frame_with_no_hex_address_is_a_malformed_line(
        address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = "  a  1 [000]   1.000001:    kmem:mm_page_alloc: page=0x1 pfn=0x1 order=0" \
        " migratetype=0 gfp_flags=GFP_KERNEL\n"
    trace = tmp_path / "chain.txt"
    trace.write_text(f"{head}\t{address} my_driver_fill+0x10 ([kernel.kallsyms])\n\n{head}")
    capsys.readouterr()
    assert main(["stat", "--page", str(trace)]) == 2  # (it was a ValueError traceback)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{trace}:2: " in captured.err and address in captured.err
    assert "Traceback" not in captured.err
    assert main(["stat", "--page", "--skip-bad", "--json", str(trace)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["page"]["allocation_requests"] == 2  # both events, the bad frame skipped
    assert report["bad_lines"] == 1


def test_a_malformed_line_after_call_chain_frames_is_named_with_its_line_in_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # (bug: the frames a call chain's reader kept from the parser were not counted, so every
    # line after them was named by a smaller number: here 2 and 4 instead of 3 and 7)
    head = "  a  1 [000]   1.000001:    kmem:mm_page_alloc: page=0x1 pfn=0x1 order=0" \
        " migratetype=0 gfp_flags=GFP_KERNEL\n"
    frame = "\tffffffff81000000 __alloc_pages+0x10 ([kernel.kallsyms])\n"
    trace = tmp_path / "chain.txt"
    for text, number in [(f"{head}{frame}\tzz my_driver_fill+0x10 ([kernel.kallsyms])\n", 3),
                         (f"{head}{frame}{frame}\n{head}\n  a  1 [000] bad\n", 7)]:
        trace.write_text(text)
        capsys.readouterr()
        assert main(["stat", "--page", str(trace)]) == 2
        assert f"{trace}:{number}: " in capsys.readouterr().err
    assert main(["stat", "--page", "--json", "--skip-bad", str(trace)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["lines"], report["bad_lines"]) == (3, 1)  # (frames and blank lines: none)


@pytest.mark.parametrize("name", ["kmem-record-sleep", "lost-cat"])
def test_replay_of_perf_data_equals_replay_of_perf_script_text(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["replay", "--json", "--no-progress", str(HERE / f"{name}.data.xz")]) == 0
    from_data = json.loads(capsys.readouterr().out)
    assert main(["replay", "--json", "--serial", str(HERE / f"{name}.script.txt.xz")]) == 0
    from_text = json.loads(capsys.readouterr().out)
    lost_data, lost_text = from_data.pop("lost"), from_text.pop("lost")
    assert from_data == from_text  # every count, memory figure, slabinfo and timeline
    assert lost_data["unknown_slab_frees"] == lost_text["unknown_slab_frees"]
    if name == "lost-cat":
        assert lost_data["total"] == 622 and lost_text["total"] == 0  # (text has no trace of it)


def test_a_perf_pipe_on_standard_input_is_read(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import io

    raw = io.BufferedReader(io.BytesIO(_unxz(HERE / "pipe-ls.data.xz")))
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(raw))
    capsys.readouterr()
    assert main(["stat", "--json", "-"]) == 0
    assert sum(json.loads(capsys.readouterr().out)["events"].values()) == 1144


_PIPE = _unxz(HERE / "pipe-ls.data.xz")
_FILE = _unxz(HERE / "lost-cat.data.xz")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.integers(0, len(_FILE)),
       st.lists(st.tuples(st.integers(0, len(_FILE) - 1), st.integers(0, 255)), max_size=6))
def test_a_damaged_perf_data_is_read_or_refused_in_one_error(
        pipe: bool, cut: int, changes: list[tuple[int, int]]) -> None:
    data = bytearray(_PIPE if pipe else _FILE)[:cut]
    for position, value in changes:
        if position < len(data):
            data[position] = value
    try:
        reader = PerfData(bytes(data), kallsyms=KernelSymbols(""))
        events = [event for batch in reader.batches() for event in batch_events(batch)]
    except PerfDataError as error:
        assert "\n" not in str(error)
    else:
        assert all(isinstance(event[2], str) for event in events)


# -- the compiled sample loop (csrc/perf_data.c) against the pure one -----------------------
# Marked fuzz: tools/fuzz.sh runs these under AddressSanitizer with KMEM_FUZZ_EXAMPLES examples.

@functools.cache
def _recording(name: str) -> tuple[bytes, tuple[int, ...]]:
    """A fixture's bytes and the offsets of its data records (where mutations aim)."""
    buffer = _unxz(HERE / f"{name}.data.xz")
    data = PerfData(buffer, name=name)
    offsets = tuple(pos for _, _, pos, _ in data._records())
    data.close()
    return buffer, offsets


@functools.cache
def _fixture_symbols() -> KernelSymbols:
    return KernelSymbols(_unxz(KALLSYMS).decode())


def _outcome(buffer: bytes, compiled: bool, *, symbols: bool, window: tuple[int, int] | None,
             raw_ip: bool, times: bool = True) -> tuple[Any, ...]:
    """Everything a reader of ``buffer`` gives: batches, counters, and the error that stopped
    it (class and message), on the compiled loop or the pure one."""
    batches: list[tuple[Any, ...]] = []
    data: PerfData | None = None
    error: tuple[str, str] | None = None
    try:
        data = PerfData(buffer, name="fuzz.data", raw_ip=raw_ip, time_window=window,
                        kallsyms=_fixture_symbols() if symbols else None, times=times)
        if not compiled:
            data._compiled_loop = data._compiled_batch = None  # what KMEM_PURE=1 chooses
        assert (data._compiled_loop is not None) == compiled
        batches.extend(tuple(batch) for batch in data.batches())
    except Exception as failure:  # (compared, class and message: both must fail alike)
        error = (type(failure).__name__, str(failure))
    if data is None:
        return (error,)
    counters = (data.samples, data.lines, data.events, data.other_events, data.lost,
                dict(data._site_addresses))
    data.close()
    return batches, counters, error


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A fixture with a few of the damages a perf.data meets: cut short, a record's size or
    type changed, bytes inside a record overwritten (its call chain length, its raw size,
    its tracepoint id, its fields), a record repeated or dropped (in a file, whose feature
    sections follow the data, the data section cut by its size in the header and records
    overwritten by others in place, so that the damage reaches the sample loop)."""
    buffer, offsets = _recording(draw(st.sampled_from(RECORDINGS)))
    data = bytearray(buffer)
    for _ in range(draw(st.integers(1, 4))):
        at = offsets[draw(st.integers(0, len(offsets) - 1))]
        size = int.from_bytes(data[at + 6:at + 8], "little") if at + 8 <= len(data) else 8
        how = draw(st.sampled_from(["cut", "size", "type", "bytes", "u64", "repeat", "drop"]))
        pipe = int.from_bytes(data[8:16], "little") == 16
        if how == "cut" and not pipe:  # (a file cut short fails in its header: a record
            # that claims bytes past the data section's end instead)
            end = int.from_bytes(data[40:48], "little") + int.from_bytes(data[48:56], "little")
            data[at + 6:at + 8] = min(0xFFFF, max(8, end - at + 8)).to_bytes(2, "little")
        elif how == "cut":
            del data[at + draw(st.integers(0, max(0, size - 1))):]
        elif how == "size" and at + 8 <= len(data):
            data[at + 6:at + 8] = (draw(st.sampled_from(
                [0, 7, 8, size - 8, size + 8, 0xFFFF, draw(st.integers(0, 0xFFFF))]
                )) & 0xFFFF).to_bytes(2, "little")
        elif how == "type" and at + 4 <= len(data):
            data[at:at + 4] = draw(st.sampled_from([2, 3, 9, 13, 64, 66, 68, 81, 1000])
                                   ).to_bytes(4, "little")
        elif how == "bytes":
            where = at + draw(st.integers(0, max(0, size - 1)))
            data[where:where + 4] = draw(st.binary(min_size=4, max_size=4))
        elif how == "u64":  # a count, an offset or a size: out of range on purpose
            where = at + 8 * draw(st.integers(1, max(1, size // 8 - 1)))
            data[where:where + 8] = draw(st.sampled_from(
                [0, 1, 24, 0xFFFF, 1 << 32, 1 << 63, (1 << 64) - 1])).to_bytes(8, "little")
        elif how in ("repeat", "drop") and not pipe:  # (in place: the sections stay put)
            other = offsets[draw(st.integers(0, len(offsets) - 1))]
            data[at:at + size] = data[other:other + size]
        elif how == "repeat":
            data[at:at] = data[at:at + size]
        elif how == "drop":
            del data[at:at + size]
    return bytes(data)


@needs_compiled
@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_mutated(), st.booleans(), st.booleans(),
       st.one_of(st.none(), st.tuples(st.integers(0, 470 * 10**9), st.integers(0, 470 * 10**9))),
       st.booleans())
def test_the_compiled_loop_reads_mutated_perf_data_as_the_pure_one(
        buffer: bytes, symbols: bool, raw_ip: bool, window: tuple[int, int] | None,
        times: bool) -> None:
    assert _outcome(buffer, True, symbols=symbols, window=window, raw_ip=raw_ip,
                    times=times) == _outcome(buffer, False, symbols=symbols, window=window,
                                             raw_ip=raw_ip, times=times)


@needs_compiled
@pytest.mark.parametrize("name", RECORDINGS)
def test_the_compiled_loop_reads_the_recordings_as_the_pure_one(name: str) -> None:
    """The fixtures whole, with most samples read by the compiled loop (else the fuzz test
    above would compare the pure loop with itself)."""
    buffer, _ = _recording(name)
    assert _outcome(buffer, True, symbols=True, window=None, raw_ip=False) == _outcome(
        buffer, False, symbols=True, window=None, raw_ip=False)
    data = PerfData(buffer, kallsyms=_fixture_symbols())
    compiled = data._compiled_loop
    assert compiled is not None
    read = 0

    def counting(*args: Any) -> tuple[int, int, int]:
        nonlocal read
        result = compiled(*args)
        read += result[1]
        return result

    data._compiled_loop = counting
    for _ in data.batches():
        pass
    assert read > 0.6 * data.samples  # (the rest: first sightings of a tail, a site, a chain)


@needs_compiled
@pytest.mark.fuzz
@pytest.mark.parametrize("name", ["kmem-record-sleep", "pipe-ls"])
def test_the_compiled_loops_kept_memo_slots_answer_only_for_their_own_dicts(name: str) -> None:
    """The memo slots the compiled loop keeps between calls (perf_cache), shared here by two
    readers read in turns (one with --raw-ip: other call site texts for the same addresses)
    and by a second reading of one of them (new memo dicts): each gives the pure loop's
    events, as if it had slots of its own."""
    buffer, _ = _recording(name)
    expected = [_outcome(buffer, False, symbols=True, window=None, raw_ip=raw_ip)[0]
                for raw_ip in (False, True)]
    readers = [PerfData(buffer, kallsyms=_fixture_symbols(), raw_ip=raw_ip)
               for raw_ip in (False, True)]
    readers[1]._compiled_cache = readers[0]._compiled_cache
    for _ in range(2):
        got: list[list[tuple[Any, ...]]] = [[], []]
        for first, second in zip(readers[0].batches(), readers[1].batches(), strict=True):
            got[0].append(tuple(first))
            got[1].append(tuple(second))
        assert got == expected


@pytest.mark.fuzz
@pytest.mark.parametrize("name", RECORDINGS)
def test_without_times_the_batches_are_those_with_an_empty_time_column(name: str) -> None:
    """PerfData(times=False), kmem stat's reading: the same batches, each TIME "" (on the
    core in use, and on the pure one beside it)."""
    buffer, _ = _recording(name)
    for compiled in {core is not None, False}:
        with_times = _outcome(buffer, compiled, symbols=True, window=None, raw_ip=False)
        without = _outcome(buffer, compiled, symbols=True, window=None, raw_ip=False,
                           times=False)
        assert without[1:] == with_times[1:]
        assert without[0] == [(kinds, cpus, [""] * len(times), *rest)
                              for kinds, cpus, times, *rest in with_times[0]]
        assert sum(len(batch[2]) for batch in without[0]) > 300
