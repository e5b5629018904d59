"""The page machine's scenario verbs: zones, pageblock migratetypes and per-CPU lists, for
seeing why a freed page does not go back to the buddy lists at once.

The verbs (mixed into ScenarioRun; the machine — one Normal zone of the scenario's memory, its
``cpus`` — boots on the first of them, beside the scenario's buddy allocator, which it does not
touch)::

    palloc NAME ORDER [cpu N] [gfp FLAGS]   alloc_pages(ORDER, FLAGS, cpu) through the pcp of
                                            the CPU (default cpu 0, GFP_KERNEL)
    pfree NAME [cpu N]                      free_pages: onto the CPU's pcp list; drained back
                                            to the buddy lists only when the list passes high
    zone                                    the zone: free pages per migratetype and order,
                                            each pageblock's migratetype (a letter each)
    pcp [cpu N]                             each CPU's pcp (or one): count, high, batch, and
                                            the pfns on every non-empty list
    drain                                   drain_all_pages: every pcp back to the buddy lists

Each step's text says what happened under the zone lock (a refill of how many blocks, a drain
of how many pages) and what waits on the lists. Errors are the machine's own KmemErrors (no
such CPU, flags that name no migratetype, out of memory), with the line prepended; a failing
line changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kmem.errors import InvalidArgumentError
from kmem.show.scenario import Action, Scenario, ScenarioNameError, StepResult

if TYPE_CHECKING:
    from kmem.page.machine import PageMachine
    from kmem.show.explain import Step

MACHINE_VERBS = frozenset({"palloc", "pfree", "zone", "pcp", "drain"})
PAGEBLOCK_LETTERS = "UMRHI"  # Unmovable, Movable, Reclaimable, HighAtomic, Isolate


class MachineVerbs:
    """The page machine's verbs; mixed into ScenarioRun."""

    scenario: Scenario
    machine: PageMachine | None
    machine_pages: dict[str, tuple[int, int, int]]  # name -> (pfn, order, line)

    def _result(self, action: Action, name: str, steps: list[Step],
                highlight: list[tuple[int, int]], address: int | None = None,
                text: str | None = None) -> StepResult:
        raise NotImplementedError

    def _new_name(self, action: Action) -> str:
        raise NotImplementedError

    def _ensure_machine(self) -> PageMachine:
        if self.machine is None:
            from kmem.page.layout import MachineLayout
            from kmem.page.machine import PageMachine

            if self.scenario.page_size != 4096:
                raise InvalidArgumentError("the page machine has 4 KiB pages: use 'page 4K'")
            layout = MachineLayout.from_sizes({"Normal": self.scenario.memory})
            self.machine = PageMachine(layout, nr_cpus=self.scenario.nr_cpus)
        return self.machine

    def _do_palloc(self, action: Action) -> StepResult:
        machine = self._ensure_machine()
        name = self._new_name(action)
        if name in self.machine_pages:
            raise ScenarioNameError(
                f"{self.scenario.name}:{action.line}: {name!r} is already allocated"
                f" (line {self.machine_pages[name][2]}); free it first or pick another name")
        order = int(action.args[1])
        cpu = int(action.option("cpu", 0))
        gfp = str(action.option("gfp", "GFP_KERNEL"))
        pcp = machine.pcp("Normal", cpu)  # (a CPU out of range: NoSuchCpuError, nothing done)
        before, held = machine.events(cpu), pcp.count
        pfn = machine.alloc_pages(order, gfp, cpu)
        self.machine_pages[name] = (pfn, order, action.line)
        after = machine.events(cpu)
        locked = after.mm_page_alloc_zone_locked - before.mm_page_alloc_zone_locked
        if after.refills > before.refills:
            brought = pcp.count - held + (1 << order)
            how = (f"cpu {cpu}'s list was empty: refilled with {brought} pages from the buddy"
                   f" lists under the zone lock, took the first")
        elif locked:
            how = "straight from the buddy lists under the zone lock (no pcp for this order)"
        else:
            how = f"from cpu {cpu}'s pcp list, no zone lock taken"
        text = (f"{name}: order-{order} block at pfn {pfn:#x} ({gfp}), {how}; cpu {cpu}'s pcp"
                f" now holds {pcp.count} pages (high {pcp.high}, batch {pcp.batch}).")
        return self._result(action, name, [], [], None, text)

    def _do_pfree(self, action: Action) -> StepResult:
        machine = self._ensure_machine()
        name = str(action.args[0])
        entry = self.machine_pages.get(name)
        if entry is None:
            known = ", ".join(sorted(self.machine_pages)) or "none"
            raise ScenarioNameError(
                f"{self.scenario.name}:{action.line}: {name!r} is not a palloc allocation"
                f" (live: {known})")
        pfn, order, _ = entry
        cpu = int(action.option("cpu", 0))
        pcp = machine.pcp("Normal", cpu)
        before = machine.events(cpu)
        machine.free_pages(pfn, order, cpu)
        del self.machine_pages[name]
        after = machine.events(cpu)
        drained = after.mm_page_pcpu_drain - before.mm_page_pcpu_drain
        first, _, kind = machine.block_at(pfn)
        if kind == "pcp":
            where = (f"waits on cpu {cpu}'s pcp list (count {pcp.count} < high {pcp.high}):"
                     " not back in the buddy lists yet")
        else:
            where = f"is back in the buddy lists (in the free block at pfn {first:#x})"
        if drained:
            where += (f"; the list passed high, so {drained} blocks were drained back from"
                      " its tails under the zone lock")
        return self._result(action, name, [], [], None,
                            f"{name}: pfn {pfn:#x} freed on cpu {cpu}, {where}.")

    def _do_zone(self, action: Action) -> StepResult:
        machine = self._ensure_machine()
        from kmem.page.migratetype import MIGRATETYPE_NAMES, NR_PAGE_ORDERS, PAGEBLOCK_ORDER

        lines = []
        for zone in machine.zones:
            if not zone.populated:
                continue
            lines.append(f"zone {zone.name}: {zone.free_pages} pages free in the buddy lists,"
                         f" watermarks min {zone.watermark[0]} low {zone.watermark[1]} high"
                         f" {zone.watermark[2]}")
            for mt, type_name in enumerate(MIGRATETYPE_NAMES):
                counts = [len(zone.free_list(mt, order)) for order in range(NR_PAGE_ORDERS)]
                if any(counts):
                    lines.append(f"  {type_name:<12} free blocks per order {counts}")
            first = zone.start_pfn >> PAGEBLOCK_ORDER
            last = (zone.end_pfn - 1) >> PAGEBLOCK_ORDER
            letters = "".join(PAGEBLOCK_LETTERS[machine.pageblock_mt[b]]
                              for b in range(first, last + 1))
            lines.append(f"  pageblocks (U M R H I = Unmovable Movable Reclaimable HighAtomic"
                         f" Isolate): {letters}")
        return self._result(action, "", [], [], None, "\n".join(lines))

    def _do_pcp(self, action: Action) -> StepResult:
        machine = self._ensure_machine()
        from kmem.page.migratetype import MIGRATETYPE_NAMES
        from kmem.page.pcp import NR_LOWORDER_PCP_LISTS, NR_PCP_LISTS, pindex_to_order

        cpu = action.option("cpu")
        cpus = range(machine.nr_cpus) if cpu is None else [machine.pcp("Normal", int(cpu)).cpu]
        lines = []
        for zone in machine.zones:
            if not zone.populated:
                continue
            for number in cpus:
                pcp = zone.pcps[number]
                lines.append(f"zone {zone.name} cpu {number}: count {pcp.count}, high"
                             f" {pcp.high}, batch {pcp.batch}")
                for pindex in range(NR_PCP_LISTS):
                    pfns = pcp.list(pindex)
                    if not pfns:
                        continue
                    order = pindex_to_order(pindex)
                    kind = (MIGRATETYPE_NAMES[pindex % 3] if pindex < NR_LOWORDER_PCP_LISTS
                            else "THP")
                    shown = " ".join(f"{p:#x}" for p in pfns[:8])
                    more = f" … ({len(pfns)} blocks)" if len(pfns) > 8 else ""
                    lines.append(f"  order {order} {kind}: {shown}{more}")
        return self._result(action, "", [], [], None, "\n".join(lines))

    def _do_drain(self, action: Action) -> StepResult:
        machine = self._ensure_machine()
        held = sum(p.count for z in machine.zones for p in z.pcps)
        machine.drain_all_pages()
        return self._result(action, "", [], [], None,
                            f"drain_all_pages: {held} pages back from every pcp to the buddy"
                            " lists.")
