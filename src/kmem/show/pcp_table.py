"""The text view of a machine replay's per-CPU lists: the trace's refills and drains beside the
ones kmem's page machine predicts (``kmem replay --layout FILE``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_EVENTS = ("mm_page_alloc_zone_locked", "mm_page_pcpu_drain")


def pcp_rows(pcp: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """(cpu or "all", event, traced, predicted) for each CPU and event, the totals first."""
    traced, predicted = pcp["traced"], pcp["predicted"]
    rows = [("all", event, traced[event], predicted[event]) for event in _EVENTS]
    for cpu, counts in traced["per_cpu"].items():
        rows.extend((cpu, event, counts[event], predicted["per_cpu"][cpu][event])
                    for event in _EVENTS)
    return rows


def print_pcp(pcp: dict[str, Any], console: Console) -> None:
    """The comparison table, which allocations and frees agree, and the machine's totals."""
    from rich.table import Table

    table = Table(title=f"per-CPU page lists: the trace and kmem's machine ({pcp['layout']},"
                        f" {pcp['nr_cpus']} CPUs, warm start {pcp['warm_start']})")
    for name, justify in (("cpu", "left"), ("event", "left"), ("traced", "right"),
                          ("predicted", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for cpu, event, traced, predicted in pcp_rows(pcp):
        table.add_row(cpu, event, str(traced), str(predicted))
    console.print(table)
    refill, drain = pcp["allocations_needing_refill"], pcp["frees_causing_drain"]
    console.print(
        f"allocations taking the zone lock: both {refill['both']}, trace only"
        f" {refill['traced_only']}, kmem only {refill['predicted_only']};"
        f" frees draining: both {drain['both']}, trace only {drain['traced_only']},"
        f" kmem only {drain['predicted_only']}", highlight=False)
    console.print(
        f"kmem's machine: {pcp['zone_lock']} zone-lock acquisitions, {pcp['refills']} refills,"
        f" {pcp['fallbacks']} fallbacks (mm_page_alloc_extfrag), {pcp['pageblocks_claimed']}"
        f" pageblocks claimed; pcp {'on' if pcp['pcp'] else 'off'}, min_free_kbytes"
        f" {pcp['min_free_kbytes']}", highlight=False)
