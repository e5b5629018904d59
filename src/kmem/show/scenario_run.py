"""Running a scenario: its allocators, its live names, one StepResult per line.

``ScenarioRun(scenario)`` boots a BuddyAllocator as the scenario's ``memory`` line says (the
slab layer comes on the first line that needs it); ``execute(action)`` performs one line and
returns what it did, in words and as the blocks to highlight, or raises a KmemError whose
message starts with ``SOURCE:LINE:`` and changes nothing. ``run_all(scenario)`` yields
(result, run) after each line. The buddy verbs (alloc, pages, free of pages) are here; the slab
verbs are kmem.show.scenario_slab's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from kmem.errors import KmemError
from kmem.page.buddy import BuddyAllocator
from kmem.page.machine import PageMachine
from kmem.page.order import get_order
from kmem.show.explain import Step, alloc_steps, free_steps, sentence
from kmem.show.scenario import (
    Action,
    Allocation,
    Scenario,
    ScenarioNameError,
    ScenarioSyntaxError,
    StepResult,
    at_line,
)
from kmem.show.scenario_machine import MachineVerbs
from kmem.show.scenario_slab import SlabVerbs, slab_page_labels
from kmem.slab.allocator import SlabAllocator
from kmem.slab.cache import KmemCache


@dataclass
class ScenarioRun(SlabVerbs, MachineVerbs):
    """The allocators of a scenario and its live names; ``execute`` performs one action."""

    scenario: Scenario
    buddy: BuddyAllocator = field(init=False)
    slab: SlabAllocator | None = field(init=False, default=None)
    names: dict[str, Allocation] = field(init=False, default_factory=dict)
    caches: dict[str, KmemCache] = field(init=False, default_factory=dict)
    lines: dict[str, int] = field(init=False, default_factory=dict)  # name -> line allocated
    # (id of the cache, slab pfn) -> named objects in that slab: every object a scenario
    # allocates has a name, so this counts a slab's objects in O(1) (live_objects() is O(n)).
    # Keyed by the cache object, not a name: merged caches share one cache under two names.
    _slab_use: dict[tuple[int, int], int] = field(init=False, default_factory=dict)
    _object_cache: dict[str, KmemCache] = field(init=False, default_factory=dict)
    executed: int = field(init=False, default=0)
    machine: PageMachine | None = field(init=False, default=None)  # (the first machine verb's)
    machine_pages: dict[str, tuple[int, int, int]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        sc = self.scenario
        where = f"{sc.name}:1"
        try:
            self.buddy = BuddyAllocator(sc.memory, sc.page_size, sc.max_order)
        except KmemError as error:
            raise at_line(error, where) from None

    # -- labels for pictures ---------------------------------------------------------------

    def block_labels(self) -> dict[int, str]:
        """{first pfn of an allocated block: label}: scenario names, slab caches, kmalloc."""
        labels: dict[int, str] = {}
        if self.slab is not None:
            labels.update(slab_page_labels(self.slab.slab_pages()))
        for alloc in self.names.values():
            if alloc.kind == "pages":
                labels[alloc.pfn] = alloc.name
            elif alloc.kind == "kmalloc" and alloc.cache is None:
                labels[alloc.pfn] = f"kmalloc:{alloc.name}"
        return labels

    # -- actions ---------------------------------------------------------------------------

    def execute(self, action: Action) -> StepResult:
        where = f"{self.scenario.name}:{action.line}"
        handler = getattr(self, f"_do_{action.verb}")
        try:
            result: StepResult = handler(action)
        except (ScenarioNameError, ScenarioSyntaxError):
            raise
        except KmemError as error:
            raise at_line(error, where) from None
        self.executed += 1
        return result

    def _result(self, action: Action, name: str, steps: list[Step],
                highlight: list[tuple[int, int]], address: int | None = None,
                text: str | None = None) -> StepResult:
        return StepResult(
            self.executed, action.line, action.source, action.verb, name,
            text if text is not None else sentence(steps), tuple(steps), tuple(highlight),
            address,
        )

    def _new_name(self, action: Action) -> str:
        name = str(action.args[0])
        if name in self.names:
            raise ScenarioNameError(
                f"{self.scenario.name}:{action.line}: {name!r} is already allocated"
                f" (line {self.lines[name]}); free it first or pick another name"
            )
        return name

    def _do_alloc(self, action: Action) -> StepResult:
        name = self._new_name(action)
        size = int(action.args[1])
        order = get_order(size, self.buddy.page_shift)
        if order > self.buddy.max_order:
            self.buddy.alloc(size)  # raises the allocator's own clear error
        pfn, steps = alloc_steps(self.buddy, order, size=size)
        return self._remember(action, Allocation(name, "pages", pfn << self.buddy.page_shift,
                                                 size, pfn, order), steps)

    def _do_pages(self, action: Action) -> StepResult:
        name = self._new_name(action)
        order = int(action.args[1])
        pfn, steps = alloc_steps(self.buddy, order)
        size = self.buddy.page_size << order
        return self._remember(action, Allocation(name, "pages", pfn << self.buddy.page_shift,
                                                 size, pfn, order), steps)

    def _remember(self, action: Action, alloc: Allocation, steps: list[Step]) -> StepResult:
        self.names[alloc.name] = alloc
        self.lines[alloc.name] = action.line
        text = f"{alloc.name}: {sentence(steps)}" if steps else f"{alloc.name} allocated."
        return self._result(action, alloc.name, steps, [(alloc.pfn, alloc.order)],
                            alloc.address, text)

    def _lookup(self, action: Action, name: str) -> Allocation:
        alloc = self.names.get(name)
        if alloc is None:
            known = ", ".join(sorted(self.names)) or "none"
            raise ScenarioNameError(
                f"{self.scenario.name}:{action.line}: {name!r} is not allocated"
                f" (live names: {known})"
            )
        return alloc

    def _do_free(self, action: Action) -> StepResult:
        name = str(action.args[0])
        alloc = self._lookup(action, name)
        if alloc.kind == "pages":
            steps = free_steps(self.buddy, alloc.pfn, alloc.order)
            highlight = [(s.pfn, s.order) for s in steps if s.kind == "place"]
            del self.names[name]
            return self._result(action, name, steps, highlight, alloc.address,
                                f"{name}: {sentence(steps)}")
        return self._slab_free(action, alloc)

    _do_kfree = _do_free


def run_all(scenario: Scenario) -> Iterator[tuple[StepResult, ScenarioRun]]:
    """Execute every action; yield (result, run) after each, so callers can look at the state."""
    run = ScenarioRun(scenario)
    for action in scenario.actions:
        yield run.execute(action), run
