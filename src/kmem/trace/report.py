"""Output of `kmem stat` and `kmem replay`: perf kmem's text layout, JSON data, rich tables.

The stat text follows perf kmem's printf formats column for column (LC_ALL=C: no thousands
separators), so the two outputs can be compared line by line. Two differences, both said in the
output: migratetype labels are today's names (perf 6.1 still prints pre-4.4 ones), and the page
tables of a text trace have no Callsite column (text has no callchains; perf.data has them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kmem.trace.stat import (
    MIGRATETYPE_NAMES,
    MIGRATETYPE_SHORT,
    PageRow,
    PageSummary,
    SlabRow,
    SlabSummary,
    gfp_compact,
)

if TYPE_CHECKING:  # (kmem stat needs neither rich nor the replay: imported where drawn)
    from rich.console import Console

    from kmem.trace.replay import ReplayResult

_DOTS = "-" * 105
_ELLIPSIS_SLAB = (
    " ...                                | ...             | ...             | ...      | ...  "
    "     | ...   "
)


def _limited(rows: Sequence[Any], lines: int) -> tuple[Sequence[Any], bool]:
    """perf's -l: at most ``lines`` rows (-1: all), and whether rows were left out."""
    if lines < 0 or len(rows) <= lines:
        return rows, False
    return rows[:lines], True


def format_slab_table(rows: Sequence[SlabRow], by_caller: bool, lines: int = -1,
                      title: str = "") -> str:
    title = title or ("Callsite" if by_caller else "Alloc Ptr")
    out = [_DOTS, f" {title:<34s} | Total_alloc/Per |"
           " Total_req/Per   | Hit      | Ping-pong | Frag", _DOTS]
    shown, cut = _limited(rows, lines)
    for row in shown:
        out.append(
            f" {row.key:<34s} | {row.bytes_alloc:9d}/{row.bytes_alloc // row.hit:<5d} |"
            f" {row.bytes_req:9d}/{row.bytes_req // row.hit:<5d} | {row.hit:8d} |"
            f" {row.pingpong:9d} | {row.frag:6.3f}%"
        )
    if cut:
        out.append(_ELLIPSIS_SLAB)
    out.append(_DOTS)
    return "\n".join(out) + "\n"


def format_slab_summary(summary: SlabSummary) -> str:
    out = [
        "",
        "SUMMARY (SLAB allocator)",
        "========================",
        f"Total bytes requested: {summary.total_requested}",
        f"Total bytes allocated: {summary.total_allocated}",
        f"Total bytes freed:     {summary.total_freed}",
    ]
    if summary.total_allocated > summary.total_freed:
        out.append(f"Net total bytes allocated: {summary.net_allocated}")
    out += [
        f"Total bytes wasted on internal fragmentation: {summary.wasted}",
        f"Internal fragmentation: {summary.fragmentation:f}%",
        f"Cross CPU allocations: {summary.nr_cross_allocs}/{summary.nr_allocs}",
    ]
    return "\n".join(out) + "\n"


def _gfp_width(summary: PageSummary) -> int:
    return max([len(gfp_compact(text)) for _, text in summary.gfp_flags] or [0])


def format_gfp_legend(summary: PageSummary) -> str:
    width = _gfp_width(summary)
    out = ["#", "# GFP flags", "# ---------"]
    for value, text in summary.gfp_flags:
        out.append(f"# {value:08x}: {gfp_compact(text):>{width}s}: {text}")
    return "\n".join(out) + "\n"


def page_site_name(call_site: str) -> str:
    """A page call site as perf kmem's page tables print it: the function's name alone
    (``sym+0x26b`` -> ``sym``), an unresolved address in hex without 0x."""
    if call_site.startswith("0x"):
        return call_site[2:]
    return call_site.split("+", 1)[0]


def format_page_table(summary: PageSummary, by_caller: bool, lines: int = -1) -> str:
    """perf kmem's page table; the Callsite column only when the trace had call sites
    (perf.data: its callchains)."""
    width = max(len("GFP flags"), _gfp_width(summary))
    rows: Sequence[PageRow] = summary.callers if by_caller else summary.allocs
    sites = any(row.call_site for row in rows)
    head = "" if by_caller else f" {'PFN':<16s} |"
    total = "Live" if summary.live else "Total"
    out = ["", _DOTS, f"{head} {total:>5s} alloc (KB) | Hits      | Order | Mig.type |"
           f" {'GFP flags':<{width}s}" + (" | Callsite" if sites else ""), _DOTS]
    shown, cut = _limited(rows, lines)
    for row in shown:
        pfn = "" if by_caller else f" {row.pfn:16d} |"
        out.append(
            f"{pfn} {row.alloc_bytes // 1024:16d} | {row.nr_alloc:9d} | {row.order:5d} |"
            f" {MIGRATETYPE_SHORT[row.migratetype]:>8s} | {gfp_compact(row.gfp_flags):<{width}s}"
            + (f" | {page_site_name(row.call_site)}" if sites else "")
        )
    if cut:
        pfn = "" if by_caller else " ...              |"
        out.append(f"{pfn} ...              | ...       | ...   | ...      | {'...':<{width}s}"
                   + (" | ..." if sites else ""))
    out.append(_DOTS)
    return "\n".join(out) + "\n"


def format_page_summary(summary: PageSummary) -> str:
    def line(label: str, count: int, size: int) -> str:
        return f"{label:<30s}: {count:16d}   [ {size // 1024:16d} KB ]"

    out = [
        "",
        "SUMMARY (page allocator)",
        "========================",
        line("Total allocation requests", summary.nr_allocs, summary.alloc_bytes),
        line("Total free requests", summary.nr_frees, summary.free_bytes),
        "",
        line("Total alloc+freed requests", summary.nr_alloc_freed, summary.alloc_freed_bytes),
        line("Total alloc-only requests", summary.nr_alloc_only, summary.alloc_only_bytes),
        line("Total free-only requests", summary.nr_free_only, summary.free_only_bytes),
        "",
        line("Total allocation failures", summary.nr_fails, summary.fail_bytes),
        "",
        f"{'Order':>5s}" + "".join(f"  {name:>12s}" for name in MIGRATETYPE_NAMES),
        "-----" + "  ------------" * len(MIGRATETYPE_NAMES),
    ]
    for order, counts in enumerate(summary.order_migratetype):
        cells = "".join(
            f"  {count:12d}" if count else f"  {'.':>12s}"
            for count in counts[: len(MIGRATETYPE_NAMES)]
        )
        out.append(f"{order:5d}{cells}")
    return "\n".join(out) + "\n"


def format_stat_text(
    slab: SlabSummary | None,
    page: PageSummary | None,
    *,
    caller: bool = False,
    alloc: bool = False,
    cache: bool = False,
    lines: int = -1,
) -> str:
    """The whole `kmem stat` text, in the order perf kmem prints its sections."""
    parts: list[str] = []
    if slab is not None:
        if cache:
            parts.append(format_slab_table(slab.caches, True, lines, title="Cache"))
        if caller:
            parts.append(format_slab_table(slab.callers, True, lines))
        if alloc:
            parts.append(format_slab_table(slab.allocs, False, lines))
        parts.append(format_slab_summary(slab))
    if page is not None:
        if caller or alloc:
            parts.append(format_gfp_legend(page))
        if caller:
            parts.append(format_page_table(page, True, lines))
        if alloc:
            parts.append(format_page_table(page, False, lines))
        parts.append(format_page_summary(page))
    return "".join(parts)


def slab_json(summary: SlabSummary, lines: int = -1) -> dict[str, Any]:
    def rows(table: Sequence[SlabRow]) -> list[dict[str, Any]]:
        shown, _ = _limited(table, lines)
        return [
            {"key": r.key, "call_site": r.call_site, "bytes_alloc": r.bytes_alloc,
             "bytes_req": r.bytes_req, "hit": r.hit, "pingpong": r.pingpong,
             "fragmentation_percent": r.frag}
            for r in shown
        ]

    return {
        "nr_allocs": summary.nr_allocs,
        "total_bytes_requested": summary.total_requested,
        "total_bytes_allocated": summary.total_allocated,
        "total_bytes_freed": summary.total_freed,
        "net_total_bytes_allocated": summary.net_allocated,
        "bytes_wasted": summary.wasted,
        "internal_fragmentation_percent": summary.fragmentation,
        "cross_cpu_allocations": summary.nr_cross_allocs,
        "callers": rows(summary.callers),
        "allocs": rows(summary.allocs),
        "caches": rows(summary.caches),
    }


def page_json(summary: PageSummary, lines: int = -1) -> dict[str, Any]:
    def rows(table: Sequence[PageRow], with_pfn: bool) -> list[dict[str, Any]]:
        shown, _ = _limited(table, lines)
        return [
            {**({"pfn": r.pfn} if with_pfn else {}), "order": r.order,
             "migratetype": r.migratetype, "gfp_flags": r.gfp_flags, "gfp": r.gfp,
             "nr_alloc": r.nr_alloc, "alloc_bytes": r.alloc_bytes, "nr_free": r.nr_free,
             "free_bytes": r.free_bytes, "call_site": r.call_site}
            for r in shown
        ]

    return {
        "page_size": summary.page_size,
        "live": summary.live,
        "allocation_requests": summary.nr_allocs,
        "allocation_bytes": summary.alloc_bytes,
        "free_requests": summary.nr_frees,
        "free_bytes": summary.free_bytes,
        "alloc_freed_requests": summary.nr_alloc_freed,
        "alloc_freed_bytes": summary.alloc_freed_bytes,
        "alloc_only_requests": summary.nr_alloc_only,
        "alloc_only_bytes": summary.alloc_only_bytes,
        "free_only_requests": summary.nr_free_only,
        "free_only_bytes": summary.free_only_bytes,
        "allocation_failures": summary.nr_fails,
        "allocation_failure_bytes": summary.fail_bytes,
        "migratetype_names": list(MIGRATETYPE_NAMES),
        "allocations_by_order_migratetype": [list(r[: len(MIGRATETYPE_NAMES)])
                                             for r in summary.order_migratetype],
        "callers": rows(summary.callers, False),
        "allocs": rows(summary.allocs, True),
    }


# -- kmem replay ---------------------------------------------------------------------------


def _mib(value: int) -> str:
    return f"{value / (1 << 20):,.2f} MiB"


def _print_random_kmalloc(figures: dict[str, Any], console: Console, rows: int) -> None:
    """Which of the normal family's caches (kmalloc-N and its kmalloc-rnd-NN-N copies) the
    kmallocs of a replay with random kmalloc caches went to, most used first."""
    from rich.table import Table

    caches = sorted(figures["caches"].items(), key=lambda item: -item[1])
    console.print(f"[bold]Random kmalloc caches[/bold] (seed {figures['seed']:#x}):"
                  f" {figures['kmallocs']:,} kmallocs of the normal family from"
                  f" {figures['call_sites']:,} call sites went to {len(caches)} caches",
                  highlight=False)
    table = Table(show_edge=False)
    table.add_column("name")
    table.add_column("kmallocs", justify="right")
    for name, count in caches[:rows]:
        table.add_row(name, f"{count:,}")
    console.print(table)


def print_replay(result: ReplayResult, console: Console, *, slabinfo_rows: int = 20) -> None:
    """The replay's findings as rich tables on ``console``."""
    from rich.table import Table

    kernel = f" {result.kernel}" if result.policy == "slub" else ""
    settings = (f"layers {','.join(result.layers)}, policy {result.policy}{kernel},"
                f" {result.nr_cpus} CPUs,"
                + (f" {result.nr_nodes} nodes," if result.nr_nodes > 1 else "")
                + f" {_mib(result.memory)} of memory, max order {result.max_order}")
    console.print(f"[bold]kmem replay[/bold]: {settings}")

    events = Table(title="Events", show_edge=False)
    events.add_column("event")
    events.add_column("count", justify="right")
    for name, count in result.events.items():
        if count:
            events.add_row(name, f"{count:,}")
    events.add_row("[dim]trace lines[/dim]", f"{result.lines:,}")
    events.add_row("[dim]bad lines[/dim]", f"{result.bad_lines:,}")
    console.print(events)

    findings = Table(title="What the trace missed, and kmem's agreement", show_edge=False)
    findings.add_column("")
    findings.add_column("count", justify="right")
    rows = [
        ("frees of pointers never allocated in the trace", result.unknown_frees),
        ("kfree(NULL)", result.null_frees),
        ("missed frees (pointer allocated again while live)", result.missed_frees),
        ("live objects at the end", result.live_objects_at_end),
        ("kmalloc events checked for bytes_alloc", result.bytes_alloc_checked),
        ("bytes_alloc disagreements (kmem vs trace)", result.bytes_alloc_mismatches),
        ("allocations kmem could not satisfy (OOM)", result.kmem_oom),
        ("requests above what --max-order lets kmem serve", result.too_large),
        ("allocations the kernel failed (NULL)", result.traced_slab_failures),
        ("page frees of pfns never allocated in the trace", result.page["unknown_frees"]),
        ("slab page events skipped (counted by the slab layer)",
         result.page["slab_page_events_skipped"]),
        ("mm_page_free_batched repeating an mm_page_free", result.page["batched_duplicates"]),
        ("page events not replayed (pcp refills and drains)", result.page["not_replayed"]),
    ]
    for label, count in rows:
        findings.add_row(label, f"{count:,}")
    console.print(findings)
    for bytes_req, gfp, traced, ours in result.mismatch_examples:
        console.print(f"  bytes_alloc differs: kmalloc({bytes_req}, {gfp}): trace {traced},"
                      f" kmem {ours}")
    for name, why in result.cache_errors.items():
        console.print(f"  cache {name} not replayed: {why}", highlight=False)
    for name, (traced, ours) in result.cache_size_mismatches.items():
        console.print(f"  cache {name}: traced bytes_alloc {traced}, kmem slab_size {ours}")

    memory = Table(title="Memory in use", show_edge=False)
    memory.add_column("layer")
    memory.add_column("peak", justify="right")
    memory.add_column("at the end", justify="right")
    for layer, values in result.memory_in_use.items():
        memory.add_row(layer, _mib(values["peak_bytes"]), _mib(values["final_bytes"]))
    console.print(memory)

    if result.slabinfo:
        lines = result.slabinfo.splitlines()
        caches = [line.split() for line in lines[2:]]
        caches = [c for c in caches if int(c[2]) > 0]
        caches.sort(key=lambda c: -int(c[2]) * int(c[3]))
        nr_shown = min(slabinfo_rows, len(caches))
        table = Table(title=f"slabinfo at the end (the largest {nr_shown} of {len(caches)} caches"
                      " in use)", show_edge=False)
        for column in ("name", "active_objs", "num_objs", "objsize", "objperslab",
                       "pagesperslab"):
            table.add_column(column, justify="left" if column == "name" else "right")
        for cache in caches[:slabinfo_rows]:
            table.add_row(*cache[:6])
        console.print(table)
    if result.random_kmalloc is not None:
        _print_random_kmalloc(result.random_kmalloc, console, slabinfo_rows)
    console.print("[bold]buddyinfo at the end[/bold]")
    console.print(result.buddyinfo.rstrip(), highlight=False)

    if result.timeline:
        table = Table(title="Over the trace (unusable free space index, thousandths)",
                      show_edge=False)
        for column in ("events", "time (s)", "slab", "page",
                       "unusable o3", f"unusable o{result.max_order}"):
            table.add_column(column, justify="right")
        samples = [s for s in result.timeline if s.events]
        step = max(1, len(samples) // 10)
        shown = samples[::step]
        if samples and shown[-1] is not samples[-1]:
            shown.append(samples[-1])
        for snap in shown:
            table.add_row(
                f"{snap.events:,}", f"{snap.time:.6f}", _mib(snap.slab_pages * result.page_size),
                _mib(snap.page_layer_pages * result.page_size),
                str(snap.unusable_index[min(3, result.max_order)]),
                str(snap.unusable_index[result.max_order]),
            )
        console.print(table)
