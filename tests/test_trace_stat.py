"""`kmem stat` gives perf kmem's numbers: checked against perf kmem's own output on one recording.

The fixture tests/fixtures/traces/perf/ holds one `perf kmem --slab --page record` made on a
Linux 6.18 machine: its `perf script -F comm,tid,cpu,time,event,trace` text (script.txt.xz) and
`LC_ALL=C perf kmem ... stat` outputs with several options (file names say which).
"""

from __future__ import annotations

import json
import lzma
import re
from pathlib import Path

import pytest

from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.page.gfp import __GFP_ACCOUNT, __GFP_ZERO, GFP_KERNEL
from kmem.trace.parse import TraceParser
from kmem.trace.report import (
    format_gfp_legend,
    format_slab_summary,
)
from kmem.trace.stat import (
    KmemStat,
    PageSummary,
    SlabSummary,
    fragmentation,
    gfp_compact,
    gfp_value,
    perf_call_site,
)

PERF = Path(__file__).parent / "fixtures" / "traces" / "perf"


@pytest.fixture(scope="module")
def stat() -> KmemStat:
    result = KmemStat()
    with lzma.open(PERF / "script.txt.xz", "rt") as lines:
        result.add(TraceParser().parse(lines))
    return result


def _perf(name: str) -> str:
    path = PERF / name
    return lzma.open(path, "rt").read() if name.endswith(".xz") else path.read_text()


_SLAB_ROW = re.compile(
    r"^ (\S+)\s+\|\s+(\d+)/(\d+)\s+\|\s+(\d+)/(\d+)\s+\|\s+(\d+) \|\s+(\d+) \|\s+([\d.]+)%$"
)


def _slab_table(text: str, title: str) -> list[tuple[str, int, int, int, int, str]]:
    """Rows (key, bytes_alloc, bytes_req, hit, pingpong, frag) of perf's table ``title``."""
    lines = text.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(f" {title} "))
    rows = []
    for line in lines[start + 2:]:
        if line.startswith("---"):
            break
        match = _SLAB_ROW.match(line)
        if match:
            key, alloc, _, req, _, hit, pingpong, frag = match.groups()
            rows.append((key, int(alloc), int(req), int(hit), int(pingpong), frag))
    return rows


def _ours(rows: tuple[object, ...]) -> list[tuple[str, int, int, int, int, str]]:
    return [(r.key, r.bytes_alloc, r.bytes_req, r.hit, r.pingpong, f"{r.frag:.3f}")  # type: ignore[attr-defined]
            for r in rows]


def _page_rows(text: str, with_pfn: bool) -> list[tuple[object, ...]]:
    """Rows (pfn?, KB, hits, order, migratetype index, gfp compact) of a perf page table."""
    header = " PFN " if with_pfn else " Total alloc (KB)"
    lines = text.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(header))
    names = ["UNMOVABL", "RECLAIM", "MOVABLE", "RESERVED", "CMA/ISLT", "UNKNOWN"]  # perf 6.1
    rows: list[tuple[object, ...]] = []
    for line in lines[start + 2:]:
        if line.startswith("---"):
            break
        cells = [c.strip() for c in re.split(r" \| ", line)]
        if cells[0] == "...":
            continue  # the line perf prints when -l left rows out
        if with_pfn:
            pfn, cells = int(cells[0]), cells[1:]
        numbers = (int(cells[0]), int(cells[1]), int(cells[2]), names.index(cells[3]))
        # perf 6.1's names are pre-4.4's: its index i is today's migratetype i.
        rows.append(((pfn,) if with_pfn else ()) + numbers + (cells[4],))
    return rows


def _our_page_rows(summary: PageSummary, with_pfn: bool) -> list[tuple[object, ...]]:
    table = summary.allocs if with_pfn else summary.callers
    return [((r.pfn,) if with_pfn else ()) + (r.alloc_bytes // 1024, r.nr_alloc, r.order,
                                              r.migratetype, gfp_compact(r.gfp_flags))
            for r in table]


def _section(text: str, title: str) -> str:
    start = text.index(f"\nSUMMARY ({title})")
    end = text.find("\nSUMMARY", start + 1)
    end = text.find("\n#", start) if end < 0 and "\n#" in text[start:] else end
    return text[start:] if end < 0 else text[start:end + 1]


def test_slab_summary_equals_perf(stat: KmemStat) -> None:
    perf = _perf("stat-slab-page.txt")
    ours = format_slab_summary(stat.slab_summary())
    assert ours == perf[: perf.index("\nSUMMARY (page")]


def test_page_summary_equals_perf(stat: KmemStat) -> None:
    perf = _perf("stat-slab-page.txt")
    summary = stat.page_summary()
    numbers = [int(x) for x in re.findall(r"(\d+)\s+\[\s+(\d+) KB", perf) for x in x]
    assert numbers == [
        summary.nr_allocs, summary.alloc_bytes // 1024, summary.nr_frees,
        summary.free_bytes // 1024, summary.nr_alloc_freed, summary.alloc_freed_bytes // 1024,
        summary.nr_alloc_only, summary.alloc_only_bytes // 1024, summary.nr_free_only,
        summary.free_only_bytes // 1024, summary.nr_fails, summary.fail_bytes // 1024,
    ]
    table = perf[perf.index("-----  "):].splitlines()[1:]
    for order, line in enumerate(table):
        cells = line.split()
        assert int(cells[0]) == order
        perf_counts = [0 if c == "." else int(c) for c in cells[1:]]
        assert perf_counts == list(summary.order_migratetype[order][:5])


def test_slab_caller_table_equals_perf(stat: KmemStat) -> None:
    perf = _slab_table(_perf("stat-slab-page-caller-alloc.txt.xz"), "Callsite")
    ours = _ours(stat.slab_summary().callers)
    assert sorted(ours) == sorted(perf)
    # Same order on the sort keys frag, hit, bytes (perf breaks exact ties by address).
    assert [(r[5], r[3], r[1]) for r in ours] == [(r[5], r[3], r[1]) for r in perf]
    assert any(r[4] for r in perf)  # the recording has cross-CPU frees to compare


def test_slab_alloc_table_equals_perf_row_for_row(stat: KmemStat) -> None:
    perf = _slab_table(_perf("stat-slab-page-caller-alloc.txt.xz"), "Alloc Ptr")
    assert _ours(stat.slab_summary().allocs) == perf


def test_slab_sort_keys_and_line_limit(stat: KmemStat) -> None:
    perf = _slab_table(_perf("stat-slab-caller-pingpong-hit-l30.txt"), "Callsite")
    ours = _ours(stat.slab_summary("pingpong,hit").callers)[:30]
    assert len(perf) == 30
    assert [(r[4], r[3]) for r in ours] == [(r[4], r[3]) for r in perf]
    last = (perf[-1][4], perf[-1][3])
    assert {r for r in ours if (r[4], r[3]) > last} == {r for r in perf if (r[4], r[3]) > last}
    perf_alloc = _slab_table(_perf("stat-slab-alloc-bytes-ptr-l30.txt"), "Alloc Ptr")
    assert _ours(stat.slab_summary("bytes,ptr").allocs)[:30] == perf_alloc


def test_page_tables_equal_perf(stat: KmemStat) -> None:
    perf_alloc = _page_rows(_perf("stat-page-alloc-hit-order-l40.txt"), with_pfn=True)
    assert _our_page_rows(stat.page_summary("hit,order"), True)[:40] == perf_alloc
    perf_caller = _page_rows(_perf("stat-page-caller-order-migtype-gfp.txt"), with_pfn=False)
    assert _our_page_rows(stat.page_summary("order,migtype,gfp"), False) == perf_caller
    full = _perf("stat-slab-page-caller-alloc.txt.xz")
    assert _our_page_rows(stat.page_summary(), True) == _page_rows(full, with_pfn=True)


def test_gfp_legend_equals_perf(stat: KmemStat) -> None:
    perf = _perf("stat-page-caller-order-migtype-gfp.txt")
    legend = perf[: perf.index("\n\n")] + "\n"
    assert format_gfp_legend(stat.page_summary()) == legend


def test_perf_definitions_on_hand_made_events() -> None:
    """Derived from builtin-kmem.c: ping-pong, ignored unknown frees, a forgotten alloc CPU."""
    def kmalloc(cpu: int, ptr: str, req: int, alloc: int, site: str = "f+0x1/0x9") -> tuple:  # type: ignore[type-arg]
        return (0, cpu, "1.000000:", site, ptr, "", req, alloc, "GFP_KERNEL", -1, -1, -1, -1)

    def kfree(cpu: int, ptr: str) -> tuple:  # type: ignore[type-arg]
        return (4, cpu, "1.000000:", "g+0x2/0x9", ptr, "", 0, 0, "", -1, -1, -1, -1)

    stat = KmemStat()
    stat.add([kmalloc(0, "10", 10, 16), kfree(1, "10"), kfree(1, "10"), kfree(0, "99"),
              kmalloc(1, "10", 30, 32), kfree(1, "10"), kmalloc(0, "20", 64, 64, "h+0x5/0x9")])
    slab = stat.slab_summary()
    assert slab.nr_allocs == 3
    assert (slab.total_requested, slab.total_allocated) == (104, 112)
    assert slab.total_freed == 16 + 16 + 32  # the unknown 0x99 is ignored, 0x10 counted thrice
    (row,) = [r for r in slab.allocs if r.ptr == 0x10]
    assert (row.hit, row.pingpong, row.bytes_req, row.bytes_alloc) == (2, 2, 40, 48)
    assert {r.key: r.pingpong for r in slab.callers} == {"f+1": 2, "h+5": 0}


def test_page_alloc_of_a_live_pfn_keeps_its_first_order() -> None:
    def page(kind: int, pfn: int, order: int, mt: int = 0) -> tuple:  # type: ignore[type-arg]
        return (kind, 0, "1.000000:", "", "", "", 0, 0, "GFP_KERNEL" if kind == 6 else "", -1,
                pfn, order, mt)

    stat = KmemStat()
    stat.add([page(6, 100, 0), page(6, 100, 1), page(7, 100, 0), page(7, 100, 0),
              page(6, -1, 2), page(7, 5, 3)])
    summary = stat.page_summary()
    assert (summary.nr_allocs, summary.nr_frees, summary.nr_free_only, summary.nr_fails) == (
        3, 3, 2, 1)
    assert summary.alloc_bytes == 4096 * (1 + 2 + 4)
    assert summary.order_migratetype[0][0] == 1 and summary.order_migratetype[1][0] == 1


def test_call_site_spellings() -> None:
    assert perf_call_site("lsm_blob_alloc+0x3b/0x60") == "lsm_blob_alloc+3b"
    assert perf_call_site("sched_setaffinity+0x127") == "sched_setaffinity+127"
    assert perf_call_site("nf_ct_ext_add+0x9e/0x160 [nf_conntrack]") == "nf_ct_ext_add+9e"
    assert perf_call_site("ffffffff811d2d8e") == "0xffffffff811d2d8e"
    assert perf_call_site("0xffffffff811d2d8e") == "0xffffffff811d2d8e"  # no '+': an address
    assert perf_call_site("nf_ct_ext_add+0x9e [nf_conntrack]") == "nf_ct_ext_add+9e"


def test_gfp_text_of_an_older_kernel_sums_the_parts_6_18_knows() -> None:
    # __GFP_NOTRACK (gone since 4.15) counts 0; a raw 0x part counts as its bits.
    assert gfp_value("GFP_KERNEL|__GFP_NOTRACK|0x100") == GFP_KERNEL | __GFP_ZERO
    assert gfp_value("__GFP_COLD|__GFP_ZERO|__GFP_ACCOUNT") == __GFP_ZERO | __GFP_ACCOUNT
    assert gfp_value("__GFP_NOTRACK") == 0


def test_fragmentation_is_perfs() -> None:
    assert fragmentation(0, 0) == 0.0  # nothing allocated: no waste, no division by zero
    assert fragmentation(0, 1) == 100.0
    assert fragmentation(24, 32) == 25.0


def test_page_events_beyond_perfs_tables_are_skipped_and_counted() -> None:
    def page(pfn: int, order: int, mt: int) -> tuple:  # type: ignore[type-arg]
        return (6, 0, "1.000000:", "", "", "", 0, 0, "GFP_KERNEL", -1, pfn, order, mt)

    stat = KmemStat()
    assert stat.skipped_page_events == 0
    stat.add([page(1, 0, 0), page(2, 11, 0), page(3, 0, 9)])  # order 11, migratetype 9
    assert stat.skipped_page_events == 2 and stat.page_summary().nr_allocs == 1


def test_bad_sort_key_is_a_clear_error(stat: KmemStat) -> None:
    with pytest.raises(InvalidArgumentError, match=r"^unknown slab sort key 'size' \(choose from"
                       r" ptr, callsite, hit, bytes, frag, pingpong\)$"):
        stat.slab_summary("hit,size")


@pytest.mark.parametrize("page_size", [0, 3000, -4096])
def test_bad_page_size_is_a_clear_error(page_size: int) -> None:
    with pytest.raises(InvalidArgumentError, match="page_size must be a power of two"):
        KmemStat(page_size=page_size)


def test_stat_command_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stat", str(PERF / "script.txt.xz")]) == 0
    text = capsys.readouterr().out
    perf = _perf("stat-slab-page.txt")
    assert text[: text.index("Order")] == perf[: perf.index("Order")]
    assert main(["stat", "--json", "--slab", "-l", "3", str(PERF / "script.txt.xz")]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["slab"]["total_bytes_allocated"] == 15425888
    assert len(document["slab"]["callers"]) == 3 and "page" not in document
    assert document["events"]["kmalloc"] + document["events"]["kmem_cache_alloc"] == 9957


def test_summaries_are_frozen(stat: KmemStat) -> None:
    assert isinstance(stat.slab_summary(), SlabSummary)
    with pytest.raises(AttributeError):
        stat.slab_summary().nr_allocs = 0  # type: ignore[misc]


def test_per_cache_table_adds_up_and_names_the_kernel_size_class(stat: KmemStat) -> None:
    slab = stat.slab_summary()
    assert sum(r.hit for r in slab.caches) == slab.nr_allocs
    assert sum(r.bytes_alloc for r in slab.caches) == slab.total_allocated
    assert sum(r.pingpong for r in slab.caches) == sum(r.pingpong for r in slab.callers)
    sizes = {"k": 1024}
    kmalloc_rows = [r for r in slab.caches if re.fullmatch(r"kmalloc-(cg-|rcl-)?\d+k?", r.key)]
    assert len(kmalloc_rows) > 5
    for row in kmalloc_rows:
        # The cache named from (bytes_req, gfp) has the size the kernel traced as bytes_alloc.
        number = row.key.rsplit("-", 1)[1]
        size = int(number[:-1]) * sizes["k"] if number.endswith("k") else int(number)
        assert row.bytes_alloc == row.hit * size, row


def test_per_cache_rows_of_an_old_kernel_trace() -> None:
    stat = KmemStat()
    stat.add(TraceParser().parse((PERF.parent / "old-kernels.txt").read_text().splitlines()))
    rows = {r.key: (r.hit, r.bytes_alloc) for r in stat.slab_summary().caches}
    # kmalloc 512, kmalloc_node 2048, kmalloc 128 (module call site); the two nameless
    # kmem_cache_alloc events of 256-byte objects.
    assert rows == {"kmalloc-512": (1, 512), "kmalloc-2k": (1, 2048),
                    "kmalloc-128": (1, 128), "cache-256": (2, 512)}
