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

import pytest

from kmem.trace.events import (
    KFREE,
    KMALLOC,
    MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_EXTFRAG,
    NULL_PTR,
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


def events_of(data: bytes, **options: object) -> list[tuple[object, ...]]:
    reader = PerfData(data, **options)  # type: ignore[arg-type]
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
