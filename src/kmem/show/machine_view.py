"""The page machine's part of a snapshot frame (kmem.show.snapshot), for the replay page:
each pageblock's migratetype (coloured cells), free blocks per migratetype and order, and every
CPU's per-CPU lists with the pfns waiting on them.

Frame layout (JSON)::

    {"types": ["Unmovable", ...], "colours": ["#d62728", ...],
     "zones": [{"name", "free_pages", "pageblocks": [mt, ...], "free": {type: [blocks/order]},
                "pcps": [{"cpu", "count", "high", "batch",
                          "lists": [[order, "Movable" | ... | "THP", [pfn, ...], n]]}]}],
     "buddyinfo": "Node 0, zone   Normal ..."}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

# The page's and the plots' colour of each migratetype (kmem plot --kind pcp draws the same).
MIGRATETYPE_COLOURS: Final = {"Unmovable": "#d62728", "Movable": "#2ca02c",
                              "Reclaimable": "#1f77b4", "HighAtomic": "#ff7f0e",
                              "Isolate": "#7f7f7f"}


if TYPE_CHECKING:
    from kmem.page.machine import PageMachine

MAX_LISTED = 32  # pfns shown per pcp list (the count says how many more)


def machine_frame(machine: PageMachine) -> dict[str, Any]:
    from kmem.page.migratetype import MIGRATETYPE_NAMES, NR_PAGE_ORDERS, PAGEBLOCK_ORDER
    from kmem.page.pcp import NR_LOWORDER_PCP_LISTS, NR_PCP_LISTS, pindex_to_order

    zones = []
    for zone in machine.zones:
        if not zone.populated:
            continue
        first = zone.start_pfn >> PAGEBLOCK_ORDER
        last = (zone.end_pfn - 1) >> PAGEBLOCK_ORDER
        pcps = []
        for pcp in zone.pcps:
            lists = []
            for pindex in range(NR_PCP_LISTS):
                pfns = pcp.list(pindex)
                if pfns:
                    kind = (MIGRATETYPE_NAMES[pindex % 3] if pindex < NR_LOWORDER_PCP_LISTS
                            else "THP")
                    lists.append([pindex_to_order(pindex), kind, pfns[:MAX_LISTED],
                                  len(pfns)])
            pcps.append({"cpu": pcp.cpu, "count": pcp.count, "high": pcp.high,
                         "batch": pcp.batch, "lists": lists})
        zones.append({
            "name": zone.name, "free_pages": zone.free_pages,
            "pageblocks": list(machine.pageblock_mt[first:last + 1]),
            "free": {name: [len(zone.free_list(mt, order)) for order in range(NR_PAGE_ORDERS)]
                     for mt, name in enumerate(MIGRATETYPE_NAMES)},
            "pcps": pcps,
        })
    return {"types": list(MIGRATETYPE_NAMES),
            "colours": [MIGRATETYPE_COLOURS[name] for name in MIGRATETYPE_NAMES],
            "zones": zones, "buddyinfo": machine.buddyinfo()}
