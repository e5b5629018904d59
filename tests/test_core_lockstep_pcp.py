"""The page machine's compiled pcp fast paths (csrc/pcp.c) and its pure path, in lockstep.

A hypothesis state machine runs the same random calls — order-0 pcp hits, refills, drains,
other orders, the vmstat tick, and bad calls of every kind — on a PageMachine built on each
core, over several CPUs, gfp flags and layouts, and compares after every step what each call
returned or raised (class and message) and the whole state: every frame's state byte and
allocation type, every list link, every zone and pcp field (the plain attributes, the
buffer-backed ones and the buffers themselves), the machine's counters, events, and check()'s
verdict.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from core_twins import FUZZ_EXAMPLES, needs_compiled, on_core
from kmem._compiled import core
from kmem.errors import KmemError
from kmem.page.counters import field_names
from kmem.page.gfp import (
    __GFP_RECLAIMABLE,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOWAIT,
)
from kmem.page.layout import MachineLayout, ZoneLayout
from kmem.page.machine import PageMachine

LAYOUTS = {
    # Big enough that the order-0 traffic mostly stays over the high watermark, where the
    # fast paths run; the big orders and frees on other CPUs push it below now and then.
    "normal-64M": (ZoneLayout("Normal", 0, 16384, 16384, 16384),),
    "two-zones": (ZoneLayout("DMA", 1, 4095, 4000, 3900),
                  ZoneLayout("Normal", 4096, 12288, 12288, 12000)),
}
GFPS = [GFP_KERNEL, GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_KERNEL | __GFP_RECLAIMABLE,
        GFP_ATOMIC, GFP_NOWAIT, GFP_DMA, "GFP_KERNEL", -1, 1 << 40]
ORDERS = [0] * 12 + [1, 2, 3, 9, -1, 11, True, 2**70, "0", None]
ODD = st.sampled_from([-1, 2**70, 1 << 31, True, None, "1", 1.0])


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What a call did: ("ok", its result) or ("error", (class name, message)); only kmem's
    own errors count (an AttributeError here is a broken test, not an agreement)."""
    try:
        return "ok", call()
    except KmemError as error:
        return "error", (type(error).__name__, str(error))


def _free(machine: PageMachine, pfn: Any, order: Any, cpu: Any, times: int = 1) -> None:
    for _ in range(times):
        machine.free_pages(pfn, order, cpu)


def _twins(factory: Callable[[], PageMachine]) -> tuple[PageMachine, PageMachine]:
    compiled = factory()
    with on_core(None, PageMachine.__module__):  # (a PageMachine built inside: pure)
        pure = factory()
    return compiled, pure


def _fields(obj: object, names: Any) -> tuple[Any, ...]:
    out = []
    for name in sorted(set(names) | set(field_names(type(obj)))):
        value = getattr(obj, name)
        if isinstance(value, (int, bool, str, tuple)) or (
                isinstance(value, list) and all(isinstance(v, int) for v in value)):
            out.append((name, value))
    return tuple(out)


def machine_state(machine: PageMachine) -> tuple[Any, ...]:
    """Everything a call can change, comparable across two machines."""
    mem_map = machine.mem_map
    zones = []
    for zone in machine.zones:
        pcps = tuple(_fields(pcp, type(pcp).__slots__) for pcp in zone.pcps)
        zones.append((_fields(zone, vars(zone)), pcps))
    return (bytes(mem_map.state), mem_map.next.tobytes(), mem_map.prev.tobytes(),
            bytes(machine._alloc_mt), bytes(machine.pageblock_mt),
            machine._machine_values.tobytes(), machine._zone_values.tobytes(),
            machine._pcp_values.tobytes(), machine.allocations,
            machine.frees, machine.failures, tuple(map(tuple, machine._buddy_events)),
            tuple(zones), tuple(machine.events(cpu) for cpu in range(machine.nr_cpus)))


@needs_compiled
def test_the_compiled_core_serves_the_machine() -> None:
    compiled, pure = _twins(lambda: PageMachine(MachineLayout(LAYOUTS["normal-64M"]), nr_cpus=2))
    assert core is not None
    assert isinstance(getattr(compiled.alloc_pages, "__self__", None), core.PcpCore)
    assert pure.alloc_pages.__func__ is PageMachine.alloc_pages  # type: ignore[attr-defined]
    # a pcp pair runs in C: the pure method is not called for it
    pfn = compiled.alloc_pages(0)
    compiled.free_pages(pfn, 0)
    calls: list[str] = []
    pure_alloc = PageMachine.alloc_pages
    try:
        PageMachine.alloc_pages = lambda *a, **k: calls.append("x") or -1  # type: ignore
        compiled.free_pages(compiled.alloc_pages(0), 0)
    finally:
        PageMachine.alloc_pages = pure_alloc  # type: ignore[method-assign]
    assert calls == []


@needs_compiled
class PcpLockstep(RuleBasedStateMachine):
    """Both cores, the same calls; ``live`` holds the blocks allocated so far."""

    @initialize(layout=st.sampled_from(sorted(LAYOUTS)), nr_cpus=st.integers(1, 3),
                batch=st.sampled_from([None, None, 1, 2, 7]),
                high=st.sampled_from([None, None, 4, 40]))
    def boot(self, layout: str, nr_cpus: int, batch: int | None, high: int | None) -> None:
        zones = LAYOUTS[layout]
        self.pair = _twins(lambda: PageMachine(MachineLayout(zones), nr_cpus=nr_cpus,
                                               pcp_batch=batch, pcp_high=high))
        self.live: list[tuple[int, int, int]] = []

    def _both(self, call: Callable[[PageMachine], Any]) -> Any:
        compiled, pure = self.pair
        done = outcome(lambda: call(compiled))
        assert done == outcome(lambda: call(pure))
        return done

    @rule(order=st.sampled_from(ORDERS), gfp=st.sampled_from(GFPS), cpu=st.integers(-1, 3),
          many=st.integers(1, 40))
    def alloc(self, order: Any, gfp: Any, cpu: int, many: int) -> None:
        for _ in range(many):
            kind, pfn = self._both(lambda m: m.alloc_pages(order, gfp, cpu))
            if kind != "ok":
                return
            self.live.append((pfn, order, cpu))

    @rule(ops=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2),
                                 st.sampled_from(GFPS[:6])), min_size=1, max_size=80))
    def order0_traffic(self, ops: list[tuple[int, int, int]]) -> None:
        """What the fast paths serve: order-0 allocations and frees mixed on several CPUs
        (a free of the newest or the oldest block, as 0 or 1 says; 2 allocates)."""
        for what, cpu, gfp in ops:
            cpu %= self.pair[0].nr_cpus
            if what == 2 or not self.live:
                kind, pfn = self._both(lambda m: m.alloc_pages(0, gfp, cpu))  # noqa: B023
                if kind == "ok":
                    self.live.append((pfn, 0, cpu))
            else:
                pfn, order, _ = self.live.pop(-1 if what else 0)
                self._both(functools.partial(_free, pfn=pfn, order=order, cpu=cpu))

    @rule(data=st.data())
    def alloc_by_keyword(self, data: st.DataObject) -> None:
        cpu = data.draw(st.integers(0, 2))
        kind, pfn = self._both(lambda m: m.alloc_pages(0, cpu=cpu))
        if kind == "ok":
            self.live.append((pfn, 0, cpu))

    @rule(data=st.data(), many=st.integers(1, 40), other_cpu=st.booleans())
    def free(self, data: st.DataObject, many: int, other_cpu: bool) -> None:
        for _ in range(min(many, len(self.live))):
            index = data.draw(st.integers(0, len(self.live) - 1))
            pfn, order, cpu = self.live.pop(index)
            cpu = (cpu + other_cpu) % self.pair[0].nr_cpus
            self._both(functools.partial(_free, pfn=pfn, order=order, cpu=cpu))

    @rule(data=st.data(), how=st.sampled_from(["double", "order", "cpu", "odd", "beyond",
                                                "keyword"]), odd=ODD)
    def bad_free(self, data: st.DataObject, how: str, odd: Any) -> None:
        pfn, order, cpu = self.live[data.draw(st.integers(0, len(self.live) - 1))] \
            if self.live else (5, 0, 0)
        if how == "double":
            done = self._both(functools.partial(_free, pfn=pfn, order=order, cpu=cpu, times=2))
            self.live = [b for b in self.live if b[0] != pfn]
        elif how == "order":
            done = self._both(lambda m: m.free_pages(pfn, 1 if order == 0 else 0, cpu))
        elif how == "cpu":
            done = self._both(lambda m: m.free_pages(pfn, order, odd))
        elif how == "odd":
            done = self._both(lambda m: m.free_pages(odd, 0, 0))
        elif how == "beyond":
            done = self._both(lambda m: m.free_pages(m.nr_pages + 3, 0, 0))
        else:
            done = self._both(lambda m: m.free_pages(pfn, order, cpu=odd))
        if how != "double" and done[0] == "ok":  # the odd value was a valid one
            self.live = [b for b in self.live if b[0] != pfn]

    @rule()
    def drain(self) -> None:
        self._both(lambda m: m.drain_all_pages())

    @rule()
    def vmstat_tick(self) -> None:
        self._both(lambda m: m.vmstat_tick())

    @rule(cpu=st.integers(0, 2), count=st.integers(0, 70), mt=st.integers(0, 2))
    def warm(self, cpu: int, count: int, mt: int) -> None:
        self._both(lambda m: m.warm_pcp(cpu % m.nr_cpus, count, migratetype=mt))

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "pair"):
            return
        compiled, pure = self.pair
        assert machine_state(compiled) == machine_state(pure)
        assert outcome(compiled.check) == outcome(pure.check) == ("ok", None)


PcpLockstep.TestCase.settings = settings(max_examples=25, stateful_step_count=30,
                                         deadline=None)
# (marks on the machine do not reach the TestCase hypothesis makes of it: given again)
TestPcpLockstep = needs_compiled(PcpLockstep.TestCase)


class PcpLockstepLong(PcpLockstep):
    pass


PcpLockstepLong.TestCase.settings = settings(max_examples=FUZZ_EXAMPLES * 4,
                                             stateful_step_count=80, deadline=None)
TestPcpLockstepLong = pytest.mark.fuzz(PcpLockstepLong.TestCase)
