"""The page machine as /proc shows a real machine: buddyinfo, pagetypeinfo, zoneinfo (mm/vmstat.c).

Design: three functions turn a PageMachine's state into the exact text Linux 6.18 prints, field
widths and all (seq_printf formats of frag_show_print, pagetypeinfo_show*, zoneinfo_show_print).
What the machine does not model prints as 0: the node's LRU, slab and writeback counters, the
zone's per-LRU counts; pcp count/high/batch/high_min/high_max, watermarks, managed/present/
spanned, protection, free pages (NR_FREE_PAGES and NR_FREE_PAGES_BLOCKS), the NUMA hit
counters (one per allocation a zone served, as zone_statistics counts) and the vm stats
threshold are the machine's own.

buddyinfo_line() is shared with kmem.page.buddy.BuddyAllocator (one zone's line).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from kmem.page.migratetype import (
    MIGRATE_TYPES,
    MIGRATETYPE_NAMES,
    NR_PAGE_ORDERS,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
)

if TYPE_CHECKING:
    from kmem.page.machine import PageMachine
    from kmem.page.zone import Zone

# Linux 6.18's node_stat_item names, in /proc/zoneinfo's order (reference machine's output).
NODE_STAT_NAMES: Final = (
    "nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file",
    "nr_unevictable", "nr_slab_reclaimable", "nr_slab_unreclaimable", "nr_isolated_anon",
    "nr_isolated_file", "workingset_nodes", "workingset_refault_anon", "workingset_refault_file",
    "workingset_activate_anon", "workingset_activate_file", "workingset_restore_anon",
    "workingset_restore_file", "workingset_nodereclaim", "nr_anon_pages", "nr_mapped",
    "nr_file_pages", "nr_dirty", "nr_writeback", "nr_shmem", "nr_shmem_hugepages",
    "nr_shmem_pmdmapped", "nr_file_hugepages", "nr_file_pmdmapped",
    "nr_anon_transparent_hugepages", "nr_vmscan_write", "nr_vmscan_immediate_reclaim",
    "nr_dirtied", "nr_written", "nr_throttled_written", "nr_kernel_misc_reclaimable",
    "nr_foll_pin_acquired", "nr_foll_pin_released", "nr_kernel_stack", "nr_page_table_pages",
    "nr_sec_page_table_pages", "nr_iommu_pages", "nr_swapcached", "pgpromote_success",
    "pgpromote_candidate", "pgpromote_candidate_nrl", "pgdemote_kswapd", "pgdemote_direct",
    "pgdemote_khugepaged", "pgdemote_proactive", "nr_hugetlb", "nr_balloon_pages",
    "nr_kernel_file_pages",
)
ZONE_STAT_NAMES: Final = (
    "nr_free_pages", "nr_free_pages_blocks", "nr_zone_inactive_anon", "nr_zone_active_anon",
    "nr_zone_inactive_file", "nr_zone_active_file", "nr_zone_unevictable",
    "nr_zone_write_pending", "nr_mlock", "nr_zspages", "nr_free_cma",
)
NUMA_STAT_NAMES: Final = (
    "numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local", "numa_other",
)
PAGETYPEINFO_LIST_CAP: Final = 100000  # pagetypeinfo stops counting a list there, printing ">"


def buddyinfo_line(node: int, zone: str, nr_free: Sequence[int]) -> str:
    """One zone's line of /proc/buddyinfo."""
    counts = "".join(f"{count:6d} " for count in nr_free)
    return f"Node {node}, zone {zone:>8s} {counts}\n"


def format_buddyinfo(machine: PageMachine) -> str:
    """/proc/buddyinfo: a line per populated zone."""
    return "".join(buddyinfo_line(machine.node, z.name, z.nr_free)
                   for z in machine.zones if z.populated)


def _list_length(zone: Zone, mt: int, order: int) -> str:
    nxt = zone._next
    head = zone._heads[mt * NR_PAGE_ORDERS + order]
    count = 0
    pfn = nxt[head]
    while pfn != head:
        count += 1
        if count >= PAGETYPEINFO_LIST_CAP:
            return f">{count:6d} "
        pfn = nxt[pfn]
    return f"{count:6d} "


def pageblock_counts(zone: Zone) -> list[int]:
    """Pageblocks per migratetype, counted as pagetypeinfo does: every 512th pfn from the
    zone's start whose memory is online (here: whose 512 frames reach a present one), by its
    pageblock's type."""
    counts = [0] * MIGRATE_TYPES
    skip = max(0, zone.present_start - zone.start_pfn - (PAGEBLOCK_NR_PAGES - 1))
    first = zone.start_pfn + -(-skip // PAGEBLOCK_NR_PAGES) * PAGEBLOCK_NR_PAGES
    for pfn in range(first, zone.end_pfn, PAGEBLOCK_NR_PAGES):
        counts[zone.pageblock_migratetype(pfn)] += 1
    return counts


def format_pagetypeinfo(machine: PageMachine) -> str:
    """/proc/pagetypeinfo: free blocks per zone, migratetype and order; pageblocks per type."""
    zones = [z for z in machine.zones if z.populated]
    out = [f"Page block order: {PAGEBLOCK_ORDER}\n",
           f"Pages per block:  {PAGEBLOCK_NR_PAGES}\n", "\n",
           f"{'Free pages count per migrate type at order':<43s} ",
           "".join(f"{order:6d} " for order in range(NR_PAGE_ORDERS)), "\n"]
    for zone in zones:
        for mt in range(MIGRATE_TYPES):
            out.append(f"Node {machine.node:4d}, zone {zone.name:>8s}, type"
                       f" {MIGRATETYPE_NAMES[mt]:>12s} ")
            out.extend(_list_length(zone, mt, order) for order in range(NR_PAGE_ORDERS))
            out.append("\n")
    out.append(f"\n{'Number of blocks type ':<23s}")
    out.extend(f"{name:>12s} " for name in MIGRATETYPE_NAMES)
    out.append("\n")
    for zone in zones:
        out.append(f"Node {machine.node}, zone {zone.name:>8s} ")
        out.extend(f"{count:12d} " for count in pageblock_counts(zone))
        out.append("\n")
    return "".join(out)


def format_zoneinfo(machine: PageMachine) -> str:
    """/proc/zoneinfo: every zone of the node, populated or not."""
    out: list[str] = []
    first_populated = next((z for z in machine.zones if z.populated), None)
    for zone in machine.zones:
        out.append(f"Node {machine.node}, zone {zone.name:>8s}")
        if zone is first_populated:
            out.append("\n  per-node stats")
            out.extend(f"\n      {name:<12s} 0" for name in NODE_STAT_NAMES)
        _zone_values(out, zone)
        if not zone.populated:
            out.append("\n")
            continue
        stats = dict.fromkeys(ZONE_STAT_NAMES, 0)
        stats["nr_free_pages"] = zone.free_pages
        stats["nr_free_pages_blocks"] = zone.free_pages_blocks
        out.extend(f"\n      {name:<12s} {value}" for name, value in stats.items())
        numa = dict.fromkeys(NUMA_STAT_NAMES, 0)
        numa["numa_hit"] = numa["numa_local"] = zone.numa_hit
        out.extend(f"\n      {name:<12s} {value}" for name, value in numa.items())
        out.append("\n  pagesets")
        threshold = machine.stat_threshold(zone)
        for pcp in zone.pcps:
            out.append(f"\n    cpu: {pcp.cpu}"
                       f"\n              count:    {pcp.count}"
                       f"\n              high:     {pcp.high}"
                       f"\n              batch:    {pcp.batch}"
                       f"\n              high_min: {pcp.high_min}"
                       f"\n              high_max: {pcp.high_max}"
                       f"\n  vm stats threshold: {threshold}")
        out.append(f"\n  node_unreclaimable:  0\n  start_pfn:           {zone.start_pfn}\n")
    return "".join(out)


def _zone_values(out: list[str], zone: Zone) -> None:
    wmin, low, high, promo = (zone.wmark(i) for i in range(4))  # the boost included
    out.append(f"\n  pages free     {zone.free_pages}"
               f"\n        boost    {zone.watermark_boost}"
               f"\n        min      {wmin}"
               f"\n        low      {low}"
               f"\n        high     {high}"
               f"\n        promo    {promo}"
               f"\n        spanned  {zone.spanned}"
               f"\n        present  {zone.present}"
               f"\n        managed  {zone.managed}"
               f"\n        cma      0")
    out.append("\n        protection: (" + ", ".join(map(str, zone.lowmem_reserve)) + ")")
