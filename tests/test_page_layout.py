"""kmem.page.layout's refusals: every bad zone description, /proc/zoneinfo line and --layout
spec raises its own KmemError naming what is wrong (and, for a zoneinfo, the line), and a good
one gives the layout the docstrings promise.

The zoneinfo texts are written here in the format of Linux 6.18's mm/vmstat.c (zoneinfo_show),
cut down to the lines kmem reads; tests/test_page_zoneinfo.py reads a whole real one.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kmem.errors import KmemError
from kmem.page.errors import (
    InvalidLayoutError,
    LayoutOverlapError,
    NoManagedPagesError,
    UnknownZoneError,
    ZoneinfoFormatError,
)
from kmem.page.layout import (
    MachineLayout,
    ZoneLayout,
    layout_from_zoneinfo,
    read_layout_spec,
    read_zoneinfo,
)

FIXTURES = Path(__file__).parent / "fixtures"

NORMAL = """\
Node 0, zone   Normal
  pages free     100
        min      1
        low      2
        high     3
        spanned  1024
        present  1024
        managed  1000
        protection: (0, 0, 0, 0, 0)
      nr_free_pages 100
  pagesets
    cpu: 0
              count:    5
              high:     42
              batch:    7
  vm stats threshold: 4
  node_unreclaimable:  0
  start_pfn:           4096
"""


def test_a_small_zoneinfo_reads_into_its_zone_and_layout() -> None:
    (zone,) = read_zoneinfo(NORMAL)
    assert (zone.node, zone.name, zone.start_pfn) == (0, "Normal", 4096)
    assert (zone["free"], zone["managed"], zone.protection) == (100, 1000, (0,) * 5)
    assert zone.stats == {"nr_free_pages": 100}
    (pageset,) = zone.pagesets
    assert (pageset.cpu, pageset.count, pageset.high, pageset.batch) == (0, 5, 42, 7)
    assert (pageset.high_min, pageset.stat_threshold) == (None, 4)
    layout = layout_from_zoneinfo(NORMAL)
    assert layout.zones == (ZoneLayout("Normal", 4096, 1024, 1024, 1000),)


def test_the_managed_pages_are_the_top_of_a_zones_span() -> None:
    # The reference machine's DMA zone: start_pfn 1, spanned 4095, present 3998, managed
    # 3840: the managed pages are pfns 256..4095 (kmem.page.layout's docstring), the other
    # present ones just below them.
    layout = layout_from_zoneinfo((FIXTURES / "proc_zoneinfo_6.18_2cpu.txt").read_text())
    dma = layout.zone("DMA")
    assert dma is not None
    assert (dma.managed_start, dma.present_start, dma.end_pfn) == (256, 98, 4096)


def _replace(old: str, new: str) -> str:
    assert old in NORMAL
    return NORMAL.replace(old, new)


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("", 1, "not a /proc/zoneinfo text"),
    ("  pages free 1\n" + NORMAL, 1, "expected a 'Node N, zone NAME' line"),
    (_replace("zone   Normal", "zone   Highmem"), 1, "unknown zone 'Highmem'"),
    (NORMAL + NORMAL, 19, "zone Normal of node 0 appears twice"),
    (_replace("(0, 0, 0, 0, 0)", "(0, 0; 0)"), 9, "cannot read the protection line"),
    (_replace("(0, 0, 0, 0, 0)", "(0, , 0)"), 9, "cannot read the protection line"),
    (_replace("  pagesets\n", ""), 11, "a 'cpu:' line outside 'pagesets'"),
    (_replace("cpu: 0", "cpu: zero"), 12, "cannot read the CPU number"),
    (_replace("    cpu: 0\n", ""), 12, "a pageset 'count' line before any 'cpu:' line"),
    (_replace("count:    5", "count:    five"), 13, "cannot read"),
    (_replace("vm stats threshold: 4", "vm stats threshold: x"), 16, "cannot read the number"),
    # (noticed where the pageset ends, named at its 'cpu:' line)
    (_replace("              batch:    7\n", ""), 12, "the pageset of cpu 0 has no batch"),
    (_replace("start_pfn:           4096", "start_pfn:           -1"), 18,
     "cannot read the number in 'start_pfn:"),
    (_replace("        managed  1000\n", ""), 1, "zone Normal has no managed line"),
    (_replace("  start_pfn:           4096\n", ""), 1,
     "populated zone Normal has no start_pfn line"),
    (_replace("        min      1\n", "        min      one\n"), 3, "cannot read 'min"),
])
def test_a_zoneinfo_line_kmem_cannot_read_is_named_with_its_line(
        text: str, line: int, reason: str) -> None:
    with pytest.raises(ZoneinfoFormatError) as caught:
        read_zoneinfo(text, source="zi")
    assert caught.value.line_number == line
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"zi:{line}: ")


def test_a_zoneinfo_of_a_second_node_is_refused() -> None:
    text = NORMAL + _replace("Node 0,", "Node 1,")
    assert [z.node for z in read_zoneinfo(text)] == [0, 1]  # read, every node
    with pytest.raises(ZoneinfoFormatError, match=r"^zi:19: node 1: .*nodes 0, 1"):
        layout_from_zoneinfo(text, source="zi")


@pytest.mark.parametrize(("old", "new", "error", "message"), [
    ("managed  1000", "managed  2000", InvalidLayoutError, "0 <= managed"),
    ("managed  1000", "managed  0", NoManagedPagesError, "no managed pages"),
])
def test_a_zoneinfo_whose_zones_cannot_be_names_its_source(
        old: str, new: str, error: type[KmemError], message: str) -> None:
    with pytest.raises(error, match=f"^zi: .*{message}"):
        layout_from_zoneinfo(_replace(old, new), source="zi")


def test_a_zoneinfo_zone_with_nothing_spanned_is_left_out_of_the_layout() -> None:
    empty = _replace("spanned  1024", "spanned  0").replace("present  1024", "present  0")
    empty = empty.replace("managed  1000", "managed  0").replace("Normal", "Movable")
    layout = layout_from_zoneinfo(NORMAL + "\n  \n" + empty)  # blank lines are skipped
    assert [z.name for z in layout.zones] == ["Normal"]


@pytest.mark.parametrize(("sizes", "message"), [
    ({"Normal": "1G"}, "zone Normal: size must be an int of bytes"),
    ({"Normal": True}, "zone Normal: size must be an int of bytes"),
    ({"Normal": (1 << 20, 1.5)}, "zone Normal: start must be an int of bytes"),
    ({"Normal": 4097}, "size 4097 is not a whole number of 4096-byte pages"),
    ({"Normal": -4096}, "size -4096 is not a whole number"),
    ({"Normal": (1 << 20, 100)}, "start 100 is not a whole number"),
])
def test_from_sizes_refuses_a_size_that_is_not_whole_pages(
        sizes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidLayoutError, match=message):
        MachineLayout.from_sizes(sizes)  # type: ignore[arg-type]


def test_from_sizes_stacks_zones_in_zone_order_or_at_their_starts() -> None:
    layout = MachineLayout.from_sizes({"Normal": 1 << 30, "DMA": 16 << 20})
    assert [(z.name, z.start_pfn, z.spanned) for z in layout.zones] == [
        ("DMA", 0, 4096), ("Normal", 4096, 1 << 18)]
    layout = MachineLayout.from_sizes({"Normal": (1 << 30, 4 << 30)})
    assert (layout.zones[0].start_pfn, layout.end_pfn) == (1 << 20, (1 << 20) + (1 << 18))
    assert layout.counts("managed") == [0, 0, 1 << 18, 0, 0]


def test_a_layout_names_only_linuxs_zones() -> None:
    layout = MachineLayout.default()
    assert layout.zone("DMA") is None and layout.zone("Normal") is not None
    with pytest.raises(UnknownZoneError, match="unknown zone 'normal'"):
        layout.zone("normal")
    with pytest.raises(UnknownZoneError, match="unknown zone 'HighMem'"):
        MachineLayout.from_sizes({"HighMem": 1 << 20})


@pytest.mark.parametrize(("zones", "error", "message"), [
    ((ZoneLayout("Normal", 0, 8, 8, 8), ZoneLayout("Normal", 8, 8, 8, 8)),
     LayoutOverlapError, "zone Normal is given twice"),
    ((ZoneLayout("Normal", 0, 8.0, 8, 8),), InvalidLayoutError,  # type: ignore[arg-type]
     "page counts must be ints"),
    ((ZoneLayout("Normal", False, 8, 8, 8),), InvalidLayoutError, "page counts must be ints"),
    ((ZoneLayout("Normal", -1, 8, 8, 8),), InvalidLayoutError, "need start_pfn >= 0"),
    ((ZoneLayout("Normal", 0, 8, 9, 8),), InvalidLayoutError, r"present \(9\) <= spanned"),
    ((ZoneLayout("Normal", 0, 8, 8, 8), ZoneLayout("Device", 8, 8, 8, 0)),
     InvalidLayoutError, "zone Device holds device memory"),
    ((ZoneLayout("DMA32", 0, 16, 16, 16), ZoneLayout("Normal", 8, 8, 8, 8)),
     LayoutOverlapError, r"zone Normal \[0x8, 0x10\) overlaps or lies below zone DMA32"),
    ((ZoneLayout("Normal", 0, 8, 8, 0),), NoManagedPagesError, "nothing to allocate"),
])
def test_a_layout_that_cannot_be_is_refused(
        zones: tuple[ZoneLayout, ...], error: type[KmemError], message: str) -> None:
    with pytest.raises(error, match=message):
        MachineLayout(zones)


def test_a_device_zone_that_spans_but_holds_no_pages_is_accepted() -> None:
    layout = MachineLayout((ZoneLayout("Normal", 0, 8, 8, 8), ZoneLayout("Device", 8, 8, 0, 0)))
    assert layout.counts("spanned") == [0, 0, 8, 0, 8]


def test_read_layout_spec_reads_sizes_with_starts() -> None:
    layout, text = read_layout_spec("DMA=16M, Normal=1G@4G")
    assert text is None and layout.source == "DMA=16M, Normal=1G@4G"
    assert [(z.name, z.start_pfn, z.spanned) for z in layout.zones] == [
        ("DMA", 0, 4096), ("Normal", 1 << 20, 1 << 18)]


@pytest.mark.parametrize(("spec", "error", "message"), [
    ("Normal=1G,Normal=2G", InvalidLayoutError, "layout 'Normal=1G,Normal=2G': zone Normal"
     " given twice"),
    ("Normal=lots", InvalidLayoutError, "layout 'Normal=lots': zone Normal: "),
    ("Normal=1G@far", InvalidLayoutError, "layout 'Normal=1G@far': zone Normal: "),
    ("Normal=1G,Hi=1G", UnknownZoneError, "unknown zone 'Hi'"),
    ("/no/such/zoneinfo", InvalidLayoutError,
     "cannot read layout '/no/such/zoneinfo': No such file or directory"),
])
def test_read_layout_spec_refuses_a_bad_spec(
        spec: str, error: type[KmemError], message: str) -> None:
    with pytest.raises(error, match=f"^{message}"):
        read_layout_spec(spec)


def test_read_layout_spec_reads_a_zoneinfo_file_or_standard_input(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file whose name has an '=' is a file, not sizes, when it exists.
    path = tmp_path / "zone=info"
    path.write_text(NORMAL)
    layout, text = read_layout_spec(str(path))
    assert text == NORMAL and layout.source == str(path)
    assert layout.zones == (ZoneLayout("Normal", 4096, 1024, 1024, 1000),)
    monkeypatch.setattr("sys.stdin", io.StringIO(_replace("cpu: 0", "cpu: x")))
    with pytest.raises(ZoneinfoFormatError, match=r"^<stdin>:12: cannot read the CPU"):
        read_layout_spec("-")


def test_a_zoneinfo_error_survives_pickling_with_its_line() -> None:
    import pickle

    error = ZoneinfoFormatError("zi", 3, "cannot read 'x'")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.line_number, copy.reason) == (
        ZoneinfoFormatError, "zi:3: cannot read 'x'", 3, "cannot read 'x'")
