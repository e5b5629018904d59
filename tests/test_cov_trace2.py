"""The trace layer's paths nothing else reached: perf.data layouts and damage, tracing data,
kernel symbols, and the trace modules' rarer rules and errors.

perf.data files here are built by hand, from tools/perf/Documentation/perf.data-file-format.txt
and include/uapi/linux/perf_event.h (the file header, perf_event_attr, PERF_RECORD_SAMPLE laid
out by its PERF_SAMPLE_* bits) and tools/perf/util/trace-event-read.c (the tracing data), so
each test sets exactly the field it is about; the expected events are worked out from the
bytes written, not read back from kmem.
"""

from __future__ import annotations

import gzip
import lzma
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kmem.trace.events import (
    KFREE,
    KMALLOC,
    MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_EXTFRAG,
    NULL_PTR,
    TraceEvent,
    batch_events,
)
from kmem.trace.perf_data import (
    KernelSymbols,
    PerfData,
    PerfDataError,
    TraceInput,
    _c_constant,
    _kernel_build_id,
    find_kallsyms,
    parse_event_format,
    parse_tracing_data,
)
from kmem.trace.source import TraceFileError

# -- a hand-made perf.data -------------------------------------------------------------------

SAMPLE_IP, SAMPLE_TID, SAMPLE_TIME, SAMPLE_READ = 1, 2, 4, 16
SAMPLE_CALLCHAIN, SAMPLE_ID, SAMPLE_CPU, SAMPLE_PERIOD, SAMPLE_RAW = 32, 64, 128, 256, 1024
# what perf kmem record asks for (tools/perf/builtin-kmem.c: perf record -R, -c 1, -a)
KMEM_SAMPLE = SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME | SAMPLE_CPU | SAMPLE_PERIOD | SAMPLE_RAW
SAMPLE_ID_ALL = 1 << 18
TRACEPOINT = 2
COMMON = [("unsigned short common_type", 0, 2, 0), ("unsigned char common_flags", 2, 1, 0),
          ("unsigned char common_preempt_count", 3, 1, 0), ("int common_pid", 4, 4, 1)]
KMALLOC_FIELDS = [*COMMON,
    ("unsigned long call_site", 8, 8, 0), ("const void * ptr", 16, 8, 0),
    ("size_t bytes_req", 24, 8, 0), ("size_t bytes_alloc", 32, 8, 0),
    ("unsigned long gfp_flags", 40, 8, 0), ("int node", 48, 4, 1)]
KFREE_FIELDS = [*COMMON, ("unsigned long call_site", 8, 8, 0), ("const void * ptr", 16, 8, 0)]
PAGE_ALLOC_FIELDS = [*COMMON,
    ("unsigned long pfn", 8, 8, 0), ("unsigned int order", 16, 4, 0),
    ("unsigned long gfp_flags", 24, 8, 0), ("int migratetype", 32, 4, 1)]
GFP_PRINT = ('"gfp_flags=%s", __print_flags(REC->gfp_flags, "|", '
             '{(unsigned long)(0x400|0x800|0x40|0x80), "GFP_KERNEL"}, '
             '{(unsigned long)0x100, "__GFP_ZERO"})')


def format_text(name: str, event_id: int, fields: Sequence[tuple[str, int, int, int]],
                print_fmt: str = '"x"') -> str:
    """A tracefs format file, as the kernel prints it (kernel/trace/trace_events.c)."""
    lines = [f"name: {name}", f"ID: {event_id}", "format:"]
    lines += [f"\tfield:{decl};\toffset:{offset};\tsize:{size};\tsigned:{signed};"
              for decl, offset, size, signed in fields]
    return "\n".join([*lines, "", f"print fmt: {print_fmt}", ""])


def tracing_data(systems: dict[str, list[str]], *, ftrace: int = 0, endian: int = 0,
                 version: bytes = b"0.6\0") -> bytes:
    """HEADER_TRACING_DATA: magic, version, endianness, long size, page size, the header_page
    and header_event files, ftrace's formats, then each system's event formats."""
    out = b"\x17\x08\x44tracing" + version + bytes([endian, 8]) + struct.pack("<I", 4096)
    for tag in (b"header_page", b"header_event"):
        out += tag + b"\0" + struct.pack("<Q", 4) + b"text"
    out += struct.pack("<I", ftrace) + b"".join(struct.pack("<Q", 3) + b"fmt"
                                                 for _ in range(ftrace))
    out += struct.pack("<I", len(systems))
    for system, texts in systems.items():
        out += system.encode() + b"\0" + struct.pack("<I", len(texts))
        for text in texts:
            out += struct.pack("<Q", len(text.encode())) + text.encode()
    return out


def attr(config: int, sample_type: int = KMEM_SAMPLE, *, kind: int = TRACEPOINT,
         flags: int = SAMPLE_ID_ALL, size: int = 64) -> bytes:
    """A perf_event_attr: type, size, config, sample_period, sample_type, read_format, flags."""
    head = struct.pack("<IIQQQQQ", kind, size, config, 1, sample_type, 0, flags)
    return (head + bytes(size))[:size]


def raw(payload: bytes) -> bytes:
    """PERF_SAMPLE_RAW: a u32 size, then the payload padded so the record stays 8-aligned."""
    padded = payload + bytes(-(len(payload) + 4) % 8)
    return struct.pack("<I", len(padded)) + padded


def sample(payload: bytes, *, time: int, cpu: int = 0, ip: int = 0xffffffff81000000,
           sample_type: int = KMEM_SAMPLE, chain: Sequence[int] = (),
           sample_id: int = 0) -> bytes:
    """A PERF_RECORD_SAMPLE with the fields of ``sample_type``, in the kernel's order."""
    body = b""
    if sample_type & SAMPLE_IP:
        body += struct.pack("<Q", ip)
    if sample_type & SAMPLE_TID:
        body += struct.pack("<II", 100, 100)
    if sample_type & SAMPLE_TIME:
        body += struct.pack("<Q", time)
    if sample_type & SAMPLE_ID:
        body += struct.pack("<Q", sample_id)
    if sample_type & SAMPLE_CPU:
        body += struct.pack("<II", cpu, 0)
    if sample_type & SAMPLE_PERIOD:
        body += struct.pack("<Q", 1)
    if sample_type & SAMPLE_CALLCHAIN:
        body += struct.pack(f"<Q{len(chain)}Q", len(chain), *chain)
    body += raw(payload)
    return struct.pack("<IHH", 9, 0, 8 + len(body)) + body


def record(kind: int, body: bytes) -> bytes:
    return struct.pack("<IHH", kind, 0, 8 + len(body)) + body


def perf_file(attrs: Sequence[tuple[bytes, Sequence[int]]], records: bytes,
              tracing: bytes | None, *, attr_size: int | None = None) -> bytes:
    """A PERFILE2 file: header, attrs (each followed by its ids section), the ids, the data,
    then the feature sections' table and HEADER_TRACING_DATA (feature bit 1) if given."""
    entry = attr_size if attr_size is not None else (len(attrs[0][0]) + 16 if attrs else 80)
    attrs_at = 104
    ids_at = attrs_at + entry * len(attrs)
    ids_blob = b""
    table = b""
    for raw_attr, ids in attrs:
        table += raw_attr + struct.pack("<QQ", ids_at + len(ids_blob), 8 * len(ids))
        ids_blob += struct.pack(f"<{len(ids)}Q", *ids)
    data_at = ids_at + len(ids_blob)
    features = 0
    tail = b""
    if tracing is not None:
        features = 1 << 1
        section_at = data_at + len(records) + 16
        tail = struct.pack("<QQ", section_at, len(tracing)) + tracing
    header = struct.pack("<8sQQQQQQQQ32s", b"PERFILE2", 104, entry, attrs_at, len(table),
                         data_at, len(records), 0, 0, features.to_bytes(32, "little"))
    return header + table + ids_blob + records + tail


KMALLOC_ID, KFREE_ID, PAGE_ALLOC_ID = 30, 31, 40


def kmalloc_payload(call_site: int, ptr: int, req: int, alloc: int, gfp: int,
                    node: int = -1, event_id: int = KMALLOC_ID) -> bytes:
    return struct.pack("<HBBiQQQQQi", event_id, 0, 0, 100, call_site, ptr, req, alloc, gfp,
                       node)


def page_payload(pfn: int, order: int, gfp: int, migratetype: int) -> bytes:
    # (explicit padding: the format puts gfp_flags at 24, after 4 bytes of hole)
    return struct.pack("<HBBiQI4xQi", PAGE_ALLOC_ID, 0, 0, 1, pfn, order, gfp, migratetype)


def kmem_tracing(*extra: str, kmalloc_fields: Sequence[tuple[str, int, int, int]] =
                 KMALLOC_FIELDS, others: dict[str, list[str]] | None = None) -> bytes:
    texts = [format_text("kmalloc", KMALLOC_ID, kmalloc_fields, GFP_PRINT),
             format_text("kfree", KFREE_ID, KFREE_FIELDS),
             format_text("mm_page_alloc", PAGE_ALLOC_ID, PAGE_ALLOC_FIELDS, GFP_PRINT), *extra]
    return tracing_data({"kmem": texts, **(others or {})})


def events_of(data: bytes, **options: Any) -> list[tuple[object, ...]]:
    reader = PerfData(data, **options)
    try:
        return [event for batch in reader.batches() for event in batch_events(batch)]
    finally:
        reader.close()


def kmem_attrs(sample_type: int = KMEM_SAMPLE) -> list[tuple[bytes, Sequence[int]]]:
    return [(attr(KMALLOC_ID, sample_type), [1]), (attr(KFREE_ID, sample_type), [2]),
            (attr(PAGE_ALLOC_ID, sample_type), [3])]


# -- perf.data: what it holds, read as perf script prints it -----------------------------------

def test_a_hand_made_perf_data_gives_its_events_in_time_order() -> None:
    # Two samples written out of time order, no FINISHED_ROUND: the end of the file flushes
    # perf's queue in time order. GFP_KERNEL is 0xcc0 in GFP_PRINT's table.
    records = (sample(kmalloc_payload(0xffffffff81234567, 0xffff888001000000, 100, 128,
                                      0x400 | 0x800 | 0x40 | 0x80 | 0x100, 0),
                      time=2_000_123_456, cpu=1)
               + sample(struct.pack("<HBBiQQ", KFREE_ID, 0, 0, 100, 0xffffffff81000010, 0),
                        time=1_500_000_999, cpu=0))
    events = events_of(perf_file(kmem_attrs(), records, kmem_tracing()))
    assert events == [
        # kfree(NULL): the pointer 0 is NULL_PTR; times truncated to microseconds
        (KFREE, 0, "1.500000:", "0xffffffff81000010", NULL_PTR, "", 0, 0, "", -1, -1, -1, -1),
        (KMALLOC, 1, "2.000123:", "0xffffffff81234567", "0xffff888001000000", "", 100, 128,
         "GFP_KERNEL|__GFP_ZERO", 0, -1, -1, -1),
    ]


def test_four_byte_fields_of_a_32_bit_kernel_are_read_by_their_format_sizes() -> None:
    # A 32-bit kernel's kmalloc: call_site and ptr are 4-byte longs (the format says so), so
    # the 8-byte fast path does not apply; the same event comes out.
    fields = [*COMMON, ("unsigned long call_site", 8, 4, 0), ("const void * ptr", 12, 4, 0),
                       ("size_t bytes_req", 16, 4, 0), ("size_t bytes_alloc", 20, 4, 0),
                       ("unsigned long gfp_flags", 24, 4, 0), ("int node", 28, 4, 1)]
    small = struct.pack("<HBBiIIIIIi", KMALLOC_ID, 0, 0, 1, 0xc1234567, 0xdf001000, 24, 32,
                        0xcc0, -1)
    null = struct.pack("<HBBiIIIIIi", KMALLOC_ID, 0, 0, 1, 0xc1234567, 0, 24, 32, 0xcc0, -1)
    data = perf_file(kmem_attrs(), sample(small, time=10**9) + sample(null, time=2 * 10**9),
                     kmem_tracing(kmalloc_fields=fields))
    assert events_of(data) == [
        (KMALLOC, 0, "1.000000:", "0xc1234567", "0xdf001000", "", 24, 32, "GFP_KERNEL", -1,
         -1, -1, -1),
        # a failed kmalloc traces ptr 0: NULL_PTR
        (KMALLOC, 0, "2.000000:", "0xc1234567", NULL_PTR, "", 24, 32, "GFP_KERNEL", -1,
         -1, -1, -1)]


def test_other_tracepoints_are_counted_by_name_and_kmem_ones_still_read() -> None:
    switch = format_text("sched_switch", 50, [*COMMON, ("int prev_pid", 8, 4, 1)])
    unknown = format_text("kmem_new_event", 51, COMMON)  # a kmem event kmem does not know
    attrs = [*kmem_attrs(), (attr(50), [4]), (attr(51), [5]), (attr(52), [6])]
    records = (sample(struct.pack("<HBBii", 50, 0, 0, 1, 7), time=1000)
               + sample(struct.pack("<HBBii", 51, 0, 0, 1, 7), time=2000)
               + sample(struct.pack("<HBBii", 50, 0, 0, 1, 7), time=3000)
               + sample(struct.pack("<HBBii", 52, 0, 0, 1, 7), time=3500)  # (no format)
               + sample(kmalloc_payload(0x10, 0x20, 8, 8, 0), time=4000))
    reader = PerfData(perf_file(attrs, records,
                                kmem_tracing(unknown, others={"sched": [switch]})))
    events = [event for batch in reader.batches() for event in batch_events(batch)]
    assert [event[0] for event in events] == [KMALLOC]
    assert reader.other_events == {"sched_switch": 2, "kmem_new_event": 1, "id-52": 1}
    assert reader.samples == 5 and reader.events["kmalloc"] == 1


def test_a_failed_page_allocation_and_an_extfrag_event() -> None:
    # mm_page_alloc of a failed allocation traces pfn 0 (perf prints pfn=0x0): pfn -1, as the
    # text parser gives; mm_page_alloc_extfrag's tail is its alloc order and migratetype.
    extfrag = format_text("mm_page_alloc_extfrag", 41, [*COMMON,
        ("unsigned long pfn", 8, 8, 0), ("int alloc_order", 16, 4, 1),
        ("int fallback_order", 20, 4, 1), ("int alloc_migratetype", 24, 4, 1),
        ("int fallback_migratetype", 28, 4, 1)])
    attrs = [*kmem_attrs(), (attr(41), [7])]
    records = (sample(page_payload(0, 2, 0xcc0, 0),
                      time=1000)
               + sample(struct.pack("<HBBiQiiii", 41, 0, 0, 1, 0x1234, 3, 9, 1, 0), time=2000)
               + sample(page_payload(0x42, 0, 0, 1),
                        time=3000))
    events = events_of(perf_file(attrs, records, kmem_tracing(extfrag)))
    assert [(e[0], e[10], e[8], e[11], e[12]) for e in events] == [
        (MM_PAGE_ALLOC, -1, "GFP_KERNEL", 2, 0),
        (MM_PAGE_ALLOC_EXTFRAG, 0x1234, "", 3, 1),
        (MM_PAGE_ALLOC, 0x42, "none", 0, 1)]  # gfp 0 prints "none" (__print_flags)


def test_a_page_call_site_falls_back_to_the_ip_and_a_deep_chain_to_it_too() -> None:
    # perf kmem's find_callsite: the first of 16 frames outside the page allocator, else the
    # sample's IP. Symbols: __alloc_pages at 0x1000 (an allocator function), f at 0x2000.
    symbols = KernelSymbols("1000 T __alloc_pages\n2000 T f\n3000 T g\n9000 T _etext\n")
    page = page_payload(0x42, 0, 0xcc0, 0)
    kind = KMEM_SAMPLE | SAMPLE_CALLCHAIN
    context = (1 << 64) - 128  # PERF_CONTEXT_KERNEL: a marker, not a frame
    records = (sample(page, time=1, ip=0x3004, sample_type=kind,
                      chain=[context, 0x1010, 0x2020])
               + sample(page, time=2, ip=0x3008, sample_type=kind, chain=[0x1010] * 17)
               + sample(page, time=3, ip=0x300c, sample_type=kind, chain=[0x1010] * 3))
    events = events_of(perf_file(kmem_attrs(kind), records, kmem_tracing()), kallsyms=symbols)
    # chain 1: f; chain 2: 16 allocator frames, none outside: the IP (g); chain 3: the IP too
    assert [e[3] for e in events] == ["f+0x20", "g+0x8", "g+0xc"]


def test_a_repeated_deep_chain_falls_back_to_each_samples_own_ip() -> None:
    # The same 17 allocator frames twice: each sample's call site is its own IP (the call
    # chain decides nothing, so what it decided cannot be reused).
    symbols = KernelSymbols("1000 T __alloc_pages\n2000 T f\n3000 T g\n9000 T _etext\n")
    page = page_payload(0x42, 0, 0xcc0, 0)
    kind = KMEM_SAMPLE | SAMPLE_CALLCHAIN
    records = (sample(page, time=1, ip=0x3008, sample_type=kind, chain=[0x1010] * 17)
               + sample(page, time=2, ip=0x300c, sample_type=kind, chain=[0x1010] * 17))
    events = events_of(perf_file(kmem_attrs(kind), records, kmem_tracing()), kallsyms=symbols)
    assert [e[3] for e in events] == ["g+0x8", "g+0xc"]


def test_samples_without_ip_or_chain_have_no_page_call_site() -> None:
    kind = SAMPLE_TIME | SAMPLE_CPU | SAMPLE_RAW
    page = page_payload(0x42, 0, 0xcc0, 0)
    events = events_of(perf_file(kmem_attrs(kind), sample(page, time=5, sample_type=kind),
                                 kmem_tracing()), kallsyms=KernelSymbols("1000 T f\n"))
    assert [(e[3], e[10]) for e in events] == [("", 0x42)]


def test_a_window_beyond_64_bits_keeps_what_perf_keeps() -> None:
    # perf kmem --time bounds past u64 (the compiled loop cannot hold them): the same rule,
    # inclusive, on the Python loop.
    records = b"".join(sample(kmalloc_payload(0x10, 0x20 + i, 8, 8, 0), time=t)
                       for i, t in enumerate((5, 10, 20)))
    data = perf_file(kmem_attrs(), records, kmem_tracing())
    kept = events_of(data, time_window=(10, 1 << 64))
    assert [e[4] for e in kept] == ["0x21", "0x22"]


def test_lost_samples_without_sample_id_all_have_no_cpu_or_time() -> None:
    # Without attr.sample_id_all the LOST records carry no trailer: cpu and time unknown (-1);
    # a LOST_SAMPLES of 0 adds nothing.
    attrs = [(attr(KMALLOC_ID, flags=0), [1])]
    records = (record(2, struct.pack("<QQ", 1, 7)) + record(13, struct.pack("<Q", 0))
               + record(13, struct.pack("<Q", 3)))
    reader = PerfData(perf_file(attrs, records, kmem_tracing()))
    assert [e for batch in reader.batches() for e in batch_events(batch)] == []
    assert [(r.kind, r.count, r.cpu, r.time) for r in reader.lost] == [
        ("LOST", 7, -1, -1), ("LOST_SAMPLES", 0, -1, -1), ("LOST_SAMPLES", 3, -1, -1)]
    assert reader.lost_events == 7  # the LOST records' sum: LOST_SAMPLES count them again
    assert reader.lost_events_report().per_event == {"?": 3}


def test_lost_trailer_without_time_or_cpu_says_unknown() -> None:
    # sample_id_all with a sample_type of neither TIME nor CPU: the trailer holds the TID only.
    kind = SAMPLE_TID | SAMPLE_RAW
    records = record(2, struct.pack("<QQII", 1, 4, 100, 100))
    reader = PerfData(perf_file([(attr(KMALLOC_ID, kind), [1])], records, kmem_tracing()))
    assert [e for batch in reader.batches() for e in batch_events(batch)] == []
    assert [(r.count, r.cpu, r.time) for r in reader.lost] == [(4, -1, -1)]


# -- perf.data: layouts kmem does not read, and damage: one clear error each ---------------------

@pytest.mark.parametrize(("sample_type", "message"), [
    (KMEM_SAMPLE | SAMPLE_READ, "perf.data samples with PERF_SAMPLE_READ: not supported"),
    (KMEM_SAMPLE & ~SAMPLE_RAW, "perf.data samples without raw tracepoint data"
     r" \(PERF_SAMPLE_RAW\): record with perf kmem record"),
])
def test_sample_layouts_kmem_cannot_read_are_refused(sample_type: int, message: str) -> None:
    data = perf_file([(attr(KMALLOC_ID, sample_type), [1])],
                     sample(kmalloc_payload(1, 2, 8, 8, 0), time=1, sample_type=KMEM_SAMPLE),
                     kmem_tracing())
    with pytest.raises(PerfDataError, match=f"^{message}$"):
        events_of(data)


def test_a_kmem_format_without_its_pointer_field_is_refused() -> None:
    fields = [f for f in KMALLOC_FIELDS if "ptr" not in f[0]]
    data = perf_file(kmem_attrs(), sample(kmalloc_payload(1, 2, 8, 8, 0), time=1),
                     kmem_tracing(kmalloc_fields=fields))
    with pytest.raises(PerfDataError, match=r"^tracepoint kmem:kmalloc has no ptr field$"):
        events_of(data)


def test_samples_without_tracing_data_are_refused() -> None:
    data = perf_file(kmem_attrs(), sample(kmalloc_payload(1, 2, 8, 8, 0), time=1), None)
    with pytest.raises(PerfDataError, match=r"^x.data: perf.data without tracing data \(no"
                       r" event formats\): record with perf kmem record$"):
        events_of(data, name="x.data")


def test_attrs_of_different_layouts_without_an_id_are_refused() -> None:
    attrs = [(attr(KMALLOC_ID, KMEM_SAMPLE), [1]),
             (attr(KFREE_ID, KMEM_SAMPLE | SAMPLE_CALLCHAIN), [2])]
    data = perf_file(attrs, sample(kmalloc_payload(1, 2, 8, 8, 0), time=1), kmem_tracing())
    with pytest.raises(PerfDataError, match=r"^perf.data events with different sample layouts"
                       " and no common id$"):
        events_of(data)


def test_attrs_of_different_layouts_are_told_apart_by_their_id() -> None:
    # With PERF_SAMPLE_ID each sample names its attr: the kmalloc attr's layout has no
    # callchain, the page one's has; each sample is read with its own.
    plain = KMEM_SAMPLE | SAMPLE_ID
    chained = plain | SAMPLE_CALLCHAIN
    attrs = [(attr(KMALLOC_ID, plain), [11]), (attr(PAGE_ALLOC_ID, chained), [13])]
    page = page_payload(0x42, 0, 0xcc0, 0)
    records = (sample(kmalloc_payload(0x10, 0x20, 8, 8, 0), time=1, sample_type=plain,
                      sample_id=11)
               + sample(page, time=2, sample_type=chained, sample_id=13, chain=[0x2008])
               + sample(page, time=3, sample_type=plain, sample_id=99))  # an id of no attr
    events = events_of(perf_file(attrs, records, kmem_tracing()),
                       kallsyms=KernelSymbols("2000 T f\n3000 T g\n"))
    assert [(e[0], e[3]) for e in events] == [(KMALLOC, "0x10"), (MM_PAGE_ALLOC, "f+0x8")]


@pytest.mark.parametrize(("change", "message"), [
    ("attr_size", r"^a.data: bad attr size 8$"),
    ("short_attr", r"^perf_event_attr of 32 bytes: too short$"),
    ("ids", r"^a.data: perf.data truncated \(attr ids\)$"),
])
def test_a_damaged_header_is_one_clear_error(change: str, message: str) -> None:
    good = perf_file(kmem_attrs(), b"", kmem_tracing())
    data = bytearray(good)
    if change == "attr_size":
        data[16:24] = struct.pack("<Q", 8)
    elif change == "short_attr":
        data = bytearray(perf_file([(attr(KMALLOC_ID, size=32), [1])], b"", kmem_tracing()))
    else:  # the first attr's ids section said to end past the file
        data[104 + 64:104 + 80] = struct.pack("<QQ", len(good), 8)
    with pytest.raises(PerfDataError, match=message):
        PerfData(bytes(data), name="a.data")


def test_a_header_the_checks_miss_is_still_one_error() -> None:
    # Feature bits whose section table runs past the file: a struct.error inside, reported
    # as damage of the header, in one line.
    data = bytearray(perf_file(kmem_attrs(), b"", None))
    data[96:104] = b"\xff" * 8  # feature bits 192..255 set: their table runs past the file
    with pytest.raises(PerfDataError, match=r"^a.data: damaged perf.data header \(") as error:
        PerfData(bytes(data), name="a.data")
    assert "\n" not in str(error.value)


def test_a_compressed_perf_data_says_how_to_read_it() -> None:
    data = perf_file(kmem_attrs(), record(81, bytes(8)), kmem_tracing())
    with pytest.raises(PerfDataError, match=r"^a.data: compressed perf.data \(perf record -z\):"
                       " run perf inject -i FILE -o PLAIN first$"):
        events_of(data, name="a.data")


def test_a_data_section_ending_inside_a_record_header_is_refused() -> None:
    body = sample(kmalloc_payload(1, 2, 8, 8, 0), time=1)
    data = perf_file(kmem_attrs(), body + bytes(4), kmem_tracing())
    with pytest.raises(PerfDataError, match=rf"^a.data: perf.data truncated \(a record header"
                       rf" cut at byte {104 + 3 * 80 + 3 * 8 + len(body)}\)$"):
        events_of(data, name="a.data")


def test_damage_inside_a_sample_is_one_line() -> None:
    # A callchain count far past the record: reading it raises inside, reported as damage.
    kind = KMEM_SAMPLE | SAMPLE_CALLCHAIN
    body = bytearray(sample(kmalloc_payload(1, 2, 8, 8, 0), time=1, sample_type=kind,
                            chain=[0x10]))
    body[8 + 8 + 8 + 8 + 8 + 8:8 + 8 + 8 + 8 + 8 + 8 + 8] = struct.pack("<Q", 1 << 40)
    data = perf_file(kmem_attrs(kind), bytes(body), kmem_tracing())
    with pytest.raises(PerfDataError, match=r"^a.data: damaged perf.data \(\w+: ") as error:
        events_of(data, name="a.data")
    assert "\n" not in str(error.value)


def test_compressed_files_are_opened_and_bad_ones_refused(tmp_path: Path) -> None:
    data = perf_file(kmem_attrs(), sample(kmalloc_payload(0x10, 0x20, 8, 8, 0), time=1),
                     kmem_tracing())
    (tmp_path / "p.data.gz").write_bytes(gzip.compress(data))
    (tmp_path / "p.data.xz").write_bytes(lzma.compress(data))
    for name in ("p.data.gz", "p.data.xz"):
        with TraceInput.open(tmp_path / name) as trace:
            assert trace.kind == "perf.data"
            assert [e[4] for b in trace.batches() for e in batch_events(b)] == ["0x20"]
    bad = tmp_path / "bad.data.gz"
    bad.write_bytes(gzip.compress(data)[:40])
    with pytest.raises(PerfDataError, match=rf"^{bad}: cannot decompress: "):
        PerfData.open(bad)
    with pytest.raises(TraceFileError, match=r"^cannot open trace '.*nothing.data': No such"
                       " file or directory$"):
        PerfData.open(tmp_path / "nothing.data")


def test_a_damaged_compressed_trace_is_not_taken_for_perf_data(tmp_path: Path) -> None:
    # Its first bytes cannot be decompressed: not perf.data; open_trace then says why.
    path = tmp_path / "t.txt.xz"
    path.write_bytes(lzma.compress(b"x" * 100)[:12])
    with TraceInput.open(path) as trace, pytest.raises(
            TraceFileError, match=r"the trace stream broke off after line 0: .*a truncated xz"):
        list(trace.batches())
    gz = tmp_path / "t.txt.gz"
    gz.write_bytes(gzip.compress(b"  <idle>-0 [000] 1.0: kmalloc: x\n"))
    with TraceInput.open(gz) as trace:
        assert trace.kind == "text"


# -- tracing data and formats --------------------------------------------------------------------

def test_tracing_data_with_ftrace_formats_is_read() -> None:
    text = format_text("kmalloc", 30, KMALLOC_FIELDS, GFP_PRINT)
    data = parse_tracing_data(tracing_data({"kmem": [text]}, ftrace=2))
    assert (data.long_size, data.page_size) == (8, 4096)
    assert data.formats[30].fields["node"].signed and data.formats[30].system == "kmem"


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda b: b"\x17\x08\x44tracinG" + b[10:], r"bad tracing data \(no 'tracing' tag\)"),
    (lambda b: b[:10] + b"\x01" * 20, "bad tracing data version"),
    (lambda b: b[:14] + b"\x01" + b[15:], "recorded on a big-endian machine: not supported"),
    (lambda b: b[:20] + b"header_paxe" + b[31:], r"bad tracing data \(no header_page\)"),
    (lambda b: b[:20] + b"h" * 5000, r"bad tracing data \(unterminated name\)"),
    (lambda b: b[:len(b) - 5], "tracing data truncated"),
])
def test_damaged_tracing_data_is_one_clear_error(mangle: object, message: str) -> None:
    good = tracing_data({"kmem": [format_text("kfree", 31, KFREE_FIELDS)]})
    assert callable(mangle)
    with pytest.raises(PerfDataError, match=f"^perf.data{':' if 'big' not in message else ''}"
                       f" {message}$"):
        parse_tracing_data(mangle(good))


def test_a_format_without_name_or_id_is_refused() -> None:
    with pytest.raises(PerfDataError, match=r"^unreadable tracepoint format: 'ID: 5\\nformat"):
        parse_event_format("ID: 5\nformat:\n")


def test_gfp_flags_without_a_table_print_in_hex() -> None:
    # A print fmt without __print_flags (or with an entry kmem cannot evaluate): libtraceevent
    # would print the number; kmem prints it in hex.
    plain = parse_event_format(format_text("kmalloc", 1, KMALLOC_FIELDS, '"gfp=%lx"'))
    odd = parse_event_format(format_text("kmalloc", 1, KMALLOC_FIELDS, (
        '"%s", __print_flags(REC->gfp_flags, "|", {(unsigned long)FOO, "GFP_FOO"})')))
    assert plain.gfp_table is None and odd.gfp_table is None
    assert plain.gfp_text(0xcc0) == odd.gfp_text(0xcc0) == "0xcc0"
    assert plain.gfp_text(0) == "none"


@pytest.mark.parametrize(("expression", "value"), [
    ("((gfp_t)0x400u)", 0x400), ("(1UL << 3)", 8), ("0xf0 >> 4", 0xf), ("~0x1 & 0xff", 0xfe),
    ("0x3 | 0x4", 7), ("1 +", None), ("1 + 2", None), ("FOO", None), ("-1", None),
])
def test_c_constants_of_trace_formats(expression: str, value: int | None) -> None:
    # only the shapes trace formats print: anything else is "cannot evaluate", never run
    assert _c_constant(expression) == value


# -- kernel symbols ------------------------------------------------------------------------------

def test_kallsyms_lines_that_are_not_symbols_are_skipped(tmp_path: Path) -> None:
    symbols = KernelSymbols("zzzz T bad\n1000 T f\n1000 t\n2000 A abs\n3000 T end\n")
    assert symbols.name(0x1004) == "f+0x4"


def test_a_damaged_compressed_kallsyms_is_one_clear_error(tmp_path: Path) -> None:
    cut = tmp_path / "kallsyms.gz"
    cut.write_bytes(gzip.compress(b"1000 T f\n" * 1000)[:30])
    bad = tmp_path / "kallsyms2.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(TraceFileError, match=r"^cannot read kallsyms '.*kallsyms.gz': Compressed"
                       " file ended before the end-of-stream marker was reached$"):
        KernelSymbols.from_file(cut)
    with pytest.raises(TraceFileError, match=r"^cannot read kallsyms '.*kallsyms2.gz': Not a"
                       " gzipped file"):
        KernelSymbols.from_file(bad)
    with pytest.raises(TraceFileError, match=r"^cannot open trace '.*none': No such file"):
        KernelSymbols.from_file(tmp_path / "none")


def _build_id_record(build_id: bytes, name: bytes, *, sized: bool = True) -> bytes:
    """A HEADER_BUILD_ID entry: header (misc bit 15: the id's size is given), pid, the
    20-byte id, its size and 3 reserved bytes, then the file name padded to 8."""
    body = struct.pack("<i", -1) + build_id.ljust(20, b"\0") + bytes([len(build_id)]) + bytes(3)
    body += name + bytes(8 - len(name) % 8)
    return struct.pack("<IHH", 0, (1 << 15) if sized else 0, 8 + len(body)) + body


def test_the_kernels_build_id_is_found_among_the_modules() -> None:
    entries = (_build_id_record(b"\x11" * 20, b"/lib/modules/x.ko")
               + _build_id_record(b"\xab\xcd" * 8, b"[kernel.kallsyms]"))
    view = memoryview(b"pad" + entries)
    assert _kernel_build_id(view, 3, len(entries)) == "abcd" * 8  # its own 16-byte size
    # without the size bit the id is the whole 20 bytes
    old = _build_id_record(b"\x22" * 20, b"[kernel.kallsyms]", sized=False)
    assert _kernel_build_id(memoryview(old), 0, len(old)) == "22" * 20
    # no kernel entry, or an entry too short to hold a name: none
    assert _kernel_build_id(memoryview(entries[:len(entries) // 2 + 8]), 0,
                            len(entries) // 2) is None
    short = struct.pack("<IHH", 0, 0, 16) + bytes(8)
    assert _kernel_build_id(memoryview(short), 0, len(short)) is None


def _notes(*entries: tuple[bytes, int, bytes]) -> bytes:
    """ELF notes: namesz, descsz, type, name and desc each padded to 4."""
    out = b""
    for name, kind, desc in entries:
        out += struct.pack("<III", len(name), len(desc), kind)
        out += name + bytes(-len(name) % 4) + desc + bytes(-len(desc) % 4)
    return out


def test_kallsyms_is_found_for_the_running_kernel_by_its_build_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The build id is the GNU note of type 3 (NT_GNU_BUILD_ID); other notes come before it.
    notes = _notes((b"Xen\0", 5, b"\1\2\3"), (b"GNU\0", 3, b"\xde\xad\xbe\xef"))
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: notes if str(self) == (
        "/sys/kernel/notes") else real_read(self))
    monkeypatch.setenv("PERF_BUILDID_DIR", str(tmp_path))
    if Path("/proc/kallsyms").is_file():
        assert find_kallsyms("deadbeef") == Path("/proc/kallsyms")
    assert find_kallsyms("00") is None
    monkeypatch.setattr(Path, "read_bytes", lambda self: _notes((b"Xen\0", 5, b"\1")))
    assert find_kallsyms("deadbeef") is None

    def unreadable(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    assert find_kallsyms("deadbeef") is None


# -- kmem stat: perf kmem's rarer rules -----------------------------------------------------------

def _slab(kind: int, cpu: int, site: str, ptr: str, req: int = 0, alloc: int = 0,
          node: int = -1, time: str = "1.000000:") -> TraceEvent:
    return (kind, cpu, time, site, ptr, "", req, alloc, "GFP_KERNEL" if req else "", node,
            -1, -1, -1)


def _page(kind: int, pfn: int, order: int, site: str = "", cpu: int = 0, mt: int = 0,
          gfp: str = "GFP_KERNEL", time: str = "1.000000:") -> TraceEvent:
    return (kind, cpu, time, site, "", "", 0, 0, gfp, -1, pfn, order, mt)


def test_sorting_by_call_site_orders_by_address_as_perf_does() -> None:
    # perf kmem's callsite_cmp compares the call sites' addresses, sort_slab_insert puts the
    # larger first; among a site's pointers the next keys decide (ptr descending here).
    from kmem.trace.stat import KmemStat

    addresses = {"a_func+0x1/0x10": 0x3000, "b_func+0x1/0x10": 0x1000,
                 "c_func+0x1/0x10": 0x2000}
    events = [_slab(KMALLOC, 0, "b_func+0x1/0x10", "0x10", 8, 8),
              _slab(KMALLOC, 0, "a_func+0x1/0x10", "0x20", 8, 8),
              _slab(KMALLOC, 0, "c_func+0x1/0x10", "0x30", 8, 8),
              _slab(KMALLOC, 0, "c_func+0x1/0x10", "0x40", 8, 8)]
    stat = KmemStat(site_order=addresses.__getitem__)
    stat.add(events)
    every = "callsite,ptr,hit,bytes,frag,pingpong"
    summary = stat.slab_summary(every, alloc_sort=every)
    assert [row.key for row in summary.callers] == ["a_func+1", "c_func+1", "b_func+1"]
    assert [row.key for row in summary.allocs] == ["0x20", "0x40", "0x30", "0x10"]
    # without addresses (a text trace) kmem orders the names, descending as well
    by_name = KmemStat()
    by_name.add(events)
    assert [row.key for row in by_name.slab_summary("callsite").callers] == [
        "c_func+1", "b_func+1", "a_func+1"]


def test_page_tables_sorted_by_call_site_order_by_address() -> None:
    from kmem.trace.stat import KmemStat

    addresses = {"f+0x10": 0x1000, "g+0x10": 0x2000}
    stat = KmemStat(site_order=addresses.__getitem__)
    stat.add([_page(MM_PAGE_ALLOC, 0x100, 0, "f+0x10"),
              _page(MM_PAGE_ALLOC, 0x200, 1, "g+0x10"),
              _page(MM_PAGE_ALLOC, 0x300, 0, "f+0x10")])
    summary = stat.page_summary("callsite,hit,bytes,order,migtype,gfp,page",
                                alloc_sort="callsite,page")
    assert [(row.call_site, row.nr_alloc) for row in summary.callers] == [
        ("g+0x10", 1), ("f+0x10", 2)]
    assert [row.pfn for row in summary.allocs] == [0x200, 0x300, 0x100]


def test_cross_node_allocations_are_those_on_another_node_than_the_cpu() -> None:
    # perf kmem: node != -1 and node != cpunode_map[cpu] (a kmalloc_node elsewhere).
    from kmem.trace.stat import KmemStat

    stat = KmemStat(cpu_node=lambda cpu: cpu // 2)
    stat.add([_slab(KMALLOC, 0, "f+0x1", "0x10", 8, 8, node=0),
              _slab(KMALLOC, 3, "f+0x1", "0x20", 8, 8, node=0),  # cpu 3 is on node 1
              _slab(KMALLOC, 2, "f+0x1", "0x30", 8, 8, node=-1)])
    summary = stat.slab_summary()
    assert (summary.nr_cross_allocs, summary.nr_allocs) == (1, 3)


def test_page_events_beyond_perfs_tables_are_skipped_and_counted() -> None:
    # perf kmem's order table has MAX_PAGE_ORDER (11) rows: an order 11 event is not counted.
    from kmem.trace.events import MM_PAGE_FREE
    from kmem.trace.stat import KmemStat

    stat = KmemStat()
    stat.add([_page(MM_PAGE_ALLOC, 0x1000, 11), _page(MM_PAGE_FREE, 0x1000, 11),
              _page(MM_PAGE_ALLOC, 0x2000, 0), _page(MM_PAGE_ALLOC, 0x3000, 0, mt=6)])
    page = stat.page_summary()
    assert stat.skipped_page_events == 3 and (page.nr_allocs, page.nr_frees) == (1, 0)


def test_a_bare_symbol_call_site_stays_as_traced() -> None:
    from kmem.trace.stat import perf_call_site

    assert perf_call_site("do_sys_open") == "do_sys_open"
    assert perf_call_site("ffffffff81000010") == "0xffffffff81000010"
    assert perf_call_site("f+0x3b/0x60 [nf_conntrack]") == "f+3b"


# -- lost events: the report's lines -------------------------------------------------------------

def test_lost_events_are_described_where_and_how_many() -> None:
    from kmem.trace.lost import LostEvents, LostStretch

    assert LostEvents().describe(100) == ""  # nothing lost: nothing said
    stretches = [LostStretch(1, -1, 12.5, "buffer started")]
    stretches += [LostStretch(cpu % 2, 5, 13.0 + cpu, "LOST marker") for cpu in range(11)]
    lost = LostEvents(entries_in_buffer=445, entries_written=1445, stretches=stretches)
    text = lost.describe(9000, unknown_frees=3, limit=4)
    # 1000 overwritten + 11 markers of 5 = 1055 of 10055 events
    assert text.splitlines() == [
        "LOST EVENTS: 1055 (10.5% of 10055) events were lost while recording.",
        "  ftrace ring buffer overwrote the oldest 1000 of 1445 events written"
        " (entries-in-buffer 445): a larger buffer_size_kb keeps them",
        "  CPU 1: kept events start at 12.500000 (older ones overwritten)",
        "  CPU 0: 5 lost before 13.000000 (LOST marker)",
        "  CPU 1: 5 lost before 14.000000 (LOST marker)",
        "  CPU 0: 5 lost before 15.000000 (LOST marker)",
        "  ... 8 more (--json lists them all)",
        "  This explains 3 slab frees of pointers never seen allocated (their allocations were"
        " among the lost events); allocations freed in lost stretches stay outstanding."]


def test_lost_samples_alone_give_the_total() -> None:
    # perf.data with only LOST_SAMPLES records (no LOST): their per-event counts are the total
    from kmem.trace.lost import LostEvents

    lost = LostEvents(per_event={"kmalloc": 3, "kfree": 4})
    assert lost.total == 7 and lost.any
    assert "  kfree: 4 samples lost\n  kmalloc: 3 samples lost\n" in lost.describe(93)


def test_cpu_lines_that_are_not_lost_markers_pass_unnoticed() -> None:
    from kmem.trace.lost import LostEvents, watch_lines

    lost = LostEvents()
    lines = ["CPU:0 something else\n", "CPU:1 [LOST EVENTS]\n",
             "  ls-1 [001] ..... 5.000001: kfree: call_site=f ptr=0x0\n"]
    assert list(watch_lines(lines, lost)) == lines
    assert lost.uncounted == 1 and [(s.cpu, s.count, s.time) for s in lost.stretches] == [
        (1, -1, 5.000001)]


# -- call sites, leaks, the comparison, the replay report ----------------------------------------

def test_call_site_callers_of_empty_and_odd_texts() -> None:
    from kmem.trace.callers import call_site_caller

    assert call_site_caller("  ") == 0  # an event that names no call site
    # "0xzz" is no number: hashed as a name, the same as any spelling of that name
    assert call_site_caller("0xzz+0x4/0x10") == call_site_caller("0xzz+0x4")
    assert call_site_caller("0xzz+0x4") != call_site_caller("0xzz+0x5")


def test_leak_tracker_checks_and_report_time() -> None:
    from kmem.errors import InvalidArgumentError
    from kmem.trace.leaks import LeakTracker

    with pytest.raises(InvalidArgumentError, match=r"^page size must be >= 1, got 0$"):
        LeakTracker(page_size=0)
    tracker = LeakTracker(layers=("slab",))
    tracker.add([_slab(KMALLOC, 0, "f+0x1", "0x10", 8, 16, time="1.000000:"),
                 _slab(KMALLOC, 0, "g+0x1", "0x20", 8, 16, time="3.000000:")])
    assert tracker.slab_objects == 2
    # ages measured from `at`: at 4 s, f's object is 3 s old, g's 1 s: only f's is >= 2 s
    report = tracker.report(at=4.0, min_age=2.0)
    assert [(site.call_site, site.oldest_age) for site in report.sites] == [("f+0x1", 3.0)]


def test_the_replay_report_names_each_disagreement() -> None:
    # kmalloc(100) is served from kmalloc-128 (the trace said 100); cache foo of 100-byte
    # objects gets slab_size 104 (SLUB aligns to sizeof(void *)); a 16 MiB cache is above
    # KMALLOC_MAX_SIZE (1 << (MAX_PAGE_ORDER + PAGE_SHIFT) = 4 MiB): not replayed.
    from rich.console import Console

    from kmem.trace.events import KMEM_CACHE_ALLOC
    from kmem.trace.replay import Replayer
    from kmem.trace.report import print_replay

    def cache_alloc(ptr: str, name: str, size: int) -> TraceEvent:
        return (KMEM_CACHE_ALLOC, 0, "1.000001:", "f+0x1", ptr, name, size, size, "GFP_KERNEL",
                -1, -1, -1, -1)

    events = [_slab(KMALLOC, 0, "f+0x1", "0x10", 100, 100), cache_alloc("0x20", "foo", 100),
              cache_alloc("0x30", "huge", 1 << 24)]
    result = Replayer(layers=("slab",)).run(events)
    console = Console(record=True, width=200)
    print_replay(result, console)
    text = console.export_text()
    assert "  bytes_alloc differs: kmalloc(100, GFP_KERNEL): trace 100, kmem 128\n" in text
    assert ("  cache huge not replayed: object_size 16777216 is above KMALLOC_MAX_SIZE"
            " (4194304)\n") in text
    assert "  cache foo: traced bytes_alloc 100, kmem slab_size 104\n" in text


def test_the_replay_reports_timeline_ends_with_the_last_sample() -> None:
    # 24 samples: every 2nd is shown (24 // 10), 1, 3, ..., 23, and the last one, 24, too.
    from rich.console import Console

    from kmem.trace.replay import Replayer
    from kmem.trace.report import print_replay

    events = [_slab(KMALLOC, 0, "f+0x1", f"0x{16 * (i + 1):x}", 8, 8,
                    time=f"1.{i:06d}:") for i in range(24)]
    result = Replayer(layers=("slab",)).run(events, every=1)
    console = Console(record=True, width=200)
    print_replay(result, console)
    lines = console.export_text().split("Over the trace")[1].splitlines()[3:]
    assert [int(line.split()[0]) for line in lines if line.strip()] == [*range(1, 24, 2), 24]


def test_stat_text_with_the_cache_table_and_page_site_names() -> None:
    from kmem.trace.report import format_stat_text, page_site_name
    from kmem.trace.stat import KmemStat

    assert page_site_name("0xffffffff81000010") == "ffffffff81000010"
    assert page_site_name("alloc_pages_mpol+0x8a") == "alloc_pages_mpol"
    stat = KmemStat()
    stat.add([_slab(KMALLOC, 0, "f+0x1", "0x10", 100, 128)])
    text = format_stat_text(stat.slab_summary(), None, cache=True)
    # kmalloc(100, GFP_KERNEL) is kmalloc-128's: the Cache table's row, then the summary
    assert text.splitlines()[1].startswith(" Cache ")
    assert " kmalloc-128                        |       128/128   |       100/100   |        1 |" \
           in text
    assert "Net total bytes allocated: 128" in text


def test_a_kernel_comparison_needs_a_kernel_and_says_when_caches_agree() -> None:
    from rich.console import Console

    from kmem.errors import InvalidArgumentError
    from kmem.trace.compare import KernelComparer, print_comparison
    from kmem.trace.events import MM_PAGE_FREE, event_batch

    with pytest.raises(InvalidArgumentError, match=r"^a comparison needs at least one kernel$"):
        KernelComparer([])
    comparer = KernelComparer(["6.17", "6.18"], layers=("page",))
    # before any replay: no timeline, the unusable indexes read 0
    assert dict(comparer.comparison().rows())["unusable free space index, order 3 (%)"] == [
        0.0, 0.0]
    snapshots: list[Any] = []
    batch = event_batch([_page(MM_PAGE_ALLOC, 0x100, 0), _page(MM_PAGE_FREE, 0x100, 0)])
    comparison = comparer.run_batches([batch], every=1, callback=snapshots.append)
    # each kernel's snapshots: at its start (0 events), then every event (every=1)
    assert sorted(s.events for s in snapshots) == [0, 0, 1, 1, 2, 2]
    console = Console(record=True, width=120)
    print_comparison(comparison, console)  # (page events only: no slab caches at all)
    assert "every cache holds the same slab pages under each kernel" in console.export_text()


# -- the page machine's replay: warm starts and odd events ---------------------------------------

def test_a_batch_warm_start_fills_each_list_once() -> None:
    # "batch": each list starts as if refilled once (pcp.batch pages, uncounted); its next
    # empty moment is a real refill (a zone lock).
    from kmem.trace.replay import Replayer

    replayer = Replayer(layers=("page",), machine=True, warm="batch")
    assert replayer.machine_replay is not None
    batch = replayer.machine_replay.machine.pcp("Normal", 0).batch
    events = [_page(MM_PAGE_ALLOC, 0x1000 + i, 0, time="1.000000:") for i in range(batch)]
    first = Replayer(layers=("page",), machine=True, warm="batch").run(events).pcp
    assert first is not None
    assert first["pages"]["warm_pages"] == batch
    assert first["predicted"]["mm_page_alloc_zone_locked"] == 0
    more = [*events, _page(MM_PAGE_ALLOC, 0x5000, 0, time="1.000000:")]
    second = Replayer(layers=("page",), machine=True, warm="batch").run(more).pcp
    assert second is not None
    assert second["pages"]["warm_pages"] == batch
    assert second["predicted"]["mm_page_alloc_zone_locked"] > 0
    # without pcp lists there is nothing to warm
    off = Replayer(layers=("page",), no_pcp=True, warm="batch").run(events).pcp
    assert off is not None and off["pages"]["warm_pages"] == 0


def test_a_movable_warm_start_puts_the_printed_counts_on_the_movable_lists() -> None:
    # The reference zoneinfo's Normal pagesets hold 2435 (cpu 0) and 2442 (cpu 1) pages; with
    # one machine CPU only cpu 0's. They go on order-0 MOVABLE at once: a movable allocation
    # takes from them, an unmovable one finds its list empty and refills.
    from fixture_files import ZONEINFO
    from kmem.trace.replay import Replayer

    movable = [_page(MM_PAGE_ALLOC, 0x1000, 0, gfp="GFP_HIGHUSER_MOVABLE")]
    both = Replayer(layers=("page",), layout=str(ZONEINFO), warm="movable").run(movable).pcp
    assert both is not None and both["pages"]["warm_pages"] == 2435 + 2442
    assert both["predicted"]["mm_page_alloc_zone_locked"] == 0
    one = Replayer(layers=("page",), layout=str(ZONEINFO), warm="movable", machine_cpus=1
                   ).run([_page(MM_PAGE_ALLOC, 0x1000, 0)]).pcp
    assert one is not None and one["pages"]["warm_pages"] == 2435
    assert one["predicted"]["mm_page_alloc_zone_locked"] > 0


def test_the_machine_replay_counts_odd_page_events() -> None:
    from kmem.trace.events import MM_PAGE_FREE
    from kmem.trace.replay import Replayer

    events = [
        _page(MM_PAGE_ALLOC, -1, 0),  # the kernel's allocation failed
        _page(MM_PAGE_ALLOC, 0x100, 0, cpu=0),
        _page(MM_PAGE_FREE, 0x100, 0, cpu=0),  # waits on cpu 0 for its commit...
        _page(MM_PAGE_ALLOC, 0x100, 0, cpu=1),  # ...which comes first: the page was free
        _page(MM_PAGE_ALLOC, 0x200, 11),  # an order no zone serves: refused
    ]
    pcp = Replayer(layers=("page",), machine=True, warm="cold").run(events).pcp
    assert pcp is not None
    pages = pcp["pages"]
    assert (pages["traced_failures"], pages["allocs"], pages["frees"], pages["missed_frees"],
            pages["refused"]) == (1, 2, 1, 0, 1)


def test_the_machine_replay_runs_out_of_memory_in_a_small_zone() -> None:
    # A 1 MiB Normal zone has 256 pages: an order-9 (512-page) allocation cannot be served.
    from kmem.trace.replay import Replayer

    pcp = Replayer(layers=("page",), layout="Normal=1M", warm="cold").run(
        [_page(MM_PAGE_ALLOC, 0x1000, 9)]).pcp
    assert pcp is not None and pcp["pages"]["kmem_oom"] == 1 and pcp["pages"]["allocs"] == 0


def test_machine_replay_options_and_its_timeline_halving() -> None:
    from kmem.errors import InvalidArgumentError
    from kmem.trace.events import event_batch
    from kmem.trace.machine_replay import MachineReplay
    from kmem.trace.replay import Replayer

    replayer = Replayer(layers=("page",), machine=True, warm="cold")
    assert replayer.machine_replay is not None
    machine = replayer.machine_replay.machine
    with pytest.raises(InvalidArgumentError, match=r"^unknown warm start 'hot' \(choose from"
                       " zoneinfo, movable, batch, cold\\)$"):
        MachineReplay(machine, warm="hot")
    replay = MachineReplay(machine, warm="cold", max_samples=4)
    batch = event_batch([_page(MM_PAGE_ALLOC, 0x100, 0)])
    replay.feed(batch.kinds, batch.cpus, batch.keys, batch.tails, batch.times)
    for time in range(1, 8):
        replay.sample(float(time))
    # at 4 samples the middle ones are halved: the first and the last always stay
    times = [t for t, _, _ in replay.timeline]
    assert times[0] == 1.0 and times[-1] == 7.0 and len(times) < 4
    # a timestamp kmem cannot read (events given by hand) makes no vmstat tick
    odd = MachineReplay(machine, warm="cold")
    odd.feed(bytes([MM_PAGE_ALLOC]) * 2, [0, 0], [0x200, 0x201],
             [("GFP_KERNEL", 0, 0)] * 2, ["x.5:", "y.5:"])
    assert odd.counts["vmstat_ticks"] == 0 and odd.counts["allocs"] == 2
