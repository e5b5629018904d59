"""The slab layer on a page machine: watermarks, memory reserves and pfmemalloc slabs in a replay.

``SlabAllocator(buddy, machine=PageMachine(...))`` backs every slab block of the buddy allocator
by a machine block taken with the allocation's gfp flags; ``Replayer(slab_on_machine=True)``
replays a trace that way. The expectations are Linux's rules (mm/page_alloc.c: only
__GFP_MEMALLOC gets past the min watermark, in the ALLOC_NO_WATERMARKS pass that marks the page
pfmemalloc; mm/slub.c: allocate_slab's first try, pfmemalloc_match, 7.0's __GFP_NOMEMALLOC
refills), counted by hand.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kmem import BuddyAllocator, SlabAllocator
from kmem.errors import InvalidArgumentError, InvalidTypeError, OutOfMemoryError
from kmem.page.gfp import __GFP_MEMALLOC, GFP_ATOMIC, GFP_KERNEL
from kmem.page.layout import MachineLayout
from kmem.page.machine import PageMachine
from kmem.slab.machine_pages import first_try_gfp
from kmem.slab.slub import SlubCache
from kmem.trace.events import (
    KMEM_CACHE_ALLOC,
    KMEM_CACHE_FREE,
    MM_PAGE_ALLOC,
    MM_PAGE_FREE,
    TraceEvent,
)
from kmem.trace.replay import Replayer

MEMALLOC = GFP_ATOMIC | __GFP_MEMALLOC  # may use the reserves, may not block
LAYOUT = MachineLayout.from_sizes({"Normal": 16 << 20}, source="Normal=16M")  # 4096 frames
MIN_FREE_KBYTES = 1024  # min watermark 256 pages


def _machine() -> PageMachine:
    return PageMachine(LAYOUT, nr_cpus=2, min_free_kbytes=MIN_FREE_KBYTES, pcp=False)


def _exhaust(machine: PageMachine) -> list[int]:
    """Take pages with GFP_ATOMIC (the deepest a caller without reserves may dig) until the
    machine refuses: from then on only the ALLOC_NO_WATERMARKS pass gives pages."""
    taken = []
    while True:
        try:
            taken.append(machine.alloc_pages(0, GFP_ATOMIC))
        except OutOfMemoryError:
            return taken


def _slab_of(cache: Any, address: int) -> Any:
    return cache._slab_of_pfn[address >> cache._page_shift]


# -- SlabAllocator(machine=) ---------------------------------------------------------------


def test_slab_pages_come_from_the_machine_and_go_back_to_it() -> None:
    machine = _machine()
    free_at_boot = machine.nr_free_pages
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, machine=machine)
    boot = free_at_boot - machine.nr_free_pages  # the kmalloc caches' own (none in 6.18)
    cache = slab.kmem_cache_create("machine_backed", 400)
    objects = [cache.alloc(0) for _ in range(cache.objs_per_slab * 3)]
    assert free_at_boot - machine.nr_free_pages == boot + 3 << cache.order
    assert slab.pages is not None and slab.pages.blocks == 3
    slab.check()
    for address in objects:
        cache.free(address)
    cache.shrink()
    assert free_at_boot - machine.nr_free_pages == boot
    large = slab.kmalloc(5 << 12)  # a large kmalloc: order 3 pages of the machine too
    assert free_at_boot - machine.nr_free_pages == boot + 8
    slab.kfree(large)
    assert free_at_boot - machine.nr_free_pages == boot
    slab.check()


def test_no_slab_is_pfmemalloc_while_the_machine_has_memory() -> None:
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, machine=_machine(), kernel="7.0")
    addresses = [slab.kmalloc(size, MEMALLOC) for size in (8, 200, 1000) for _ in range(40)]
    assert not any(s.pfmemalloc for c in slab.cache_list() for s in c._slabs())
    for address in addresses:
        slab.kfree(address)
    slab.check()


@pytest.mark.parametrize("kernel", ["6.17", "6.18", "7.0"])
def test_past_the_watermarks_only_memalloc_gets_a_slab_and_it_is_pfmemalloc(kernel: str) -> None:
    machine = _machine()
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, machine=machine, kernel=kernel)
    cache = slab.kmem_cache_create("reserve", 400)
    _exhaust(machine)
    before = slab.buddy.nr_free_pages
    with pytest.raises(OutOfMemoryError):
        cache.alloc(0, GFP_ATOMIC)  # no rights: the machine refuses the page
    assert slab.buddy.nr_free_pages == before  # the buddy's block went back
    assert not cache._slabs()
    address = cache.alloc(0, MEMALLOC)  # the reserves: a pfmemalloc slab
    assert _slab_of(cache, address).pfmemalloc
    assert cache.stats().alloc_slab == 1
    slab.check()


def test_allocate_slab_first_try_never_takes_the_reserves_of_a_caller_that_may_reclaim() -> None:
    # A cache of order 1 whose minimum order is 0: the order-1 try of a GFP_KERNEL|MEMALLOC
    # allocation carries __GFP_NOMEMALLOC and no reclaim; only the order-0 fallback may use
    # the reserves (ORDER_FALLBACK)
    machine = _machine()
    slab = SlabAllocator(BuddyAllocator(64 << 20), nr_cpus=2, machine=machine, kernel="6.17")
    cache = slab.kmem_cache_create("fallback", 400)
    assert (cache.order, cache.min_order) == (1, 0)
    _exhaust(machine)
    address = cache.alloc(0, GFP_KERNEL | __GFP_MEMALLOC)
    owner = _slab_of(cache, address)
    assert (owner.order, owner.pfmemalloc) == (0, True)
    assert cache.stats().order_fallback == 1
    assert first_try_gfp(GFP_KERNEL | __GFP_MEMALLOC, 1, 0) & __GFP_MEMALLOC  # (kept, but...)
    slab.check()


def test_bad_machine_arguments_are_refused() -> None:
    with pytest.raises(InvalidTypeError, match="PageMachine"):
        SlabAllocator(BuddyAllocator(64 << 20), machine="machine")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="same size"):
        SlabAllocator(BuddyAllocator(64 << 20, page_size=8192), machine=_machine())
    with pytest.raises(InvalidTypeError, match="slab_on_machine"):
        Replayer(slab_on_machine=1)  # type: ignore[arg-type]


# -- a replay near the min watermark -------------------------------------------------------

FILL = 4096  # traced GFP_ATOMIC pages on CPU 0: more than the machine can give
CACHE = "skb_test"


def _page(kind: int, cpu: int, pfn: int, gfp: str = "", mt: int = 0) -> TraceEvent:
    return (kind, cpu, "1.000000:", "", "", "", 0, 0, gfp, -1, pfn, 0, mt)


def _obj(kind: int, ptr: str, gfp: str = "", cpu: int = 1) -> TraceEvent:
    return (kind, cpu, "1.000000:", "site", ptr, CACHE, 256, 256, gfp, -1, 0, 0, 0)


def _fill() -> list[TraceEvent]:
    """CPU 0 takes FILL unmovable pages with GFP_ATOMIC (the machine refuses the last ones: it
    is past its watermarks); a movable page event settles CPU 0's last one (it waits for its
    CPU's next event: it could have been a slab page)."""
    events = [_page(MM_PAGE_ALLOC, 0, 0x10000 + i, "GFP_ATOMIC") for i in range(FILL)]
    return [*events, _page(MM_PAGE_ALLOC, 0, 0x20000, "GFP_HIGHUSER_MOVABLE", mt=1)]


def _relief() -> list[TraceEvent]:
    """CPU 0 frees 1000 of them; its next page event commits those frees."""
    events = [_page(MM_PAGE_FREE, 0, 0x10000 + i) for i in range(1000)]
    return [*events, _page(MM_PAGE_ALLOC, 0, 0x20001, "GFP_HIGHUSER_MOVABLE", mt=1)]


def _pressure_trace(after: list[TraceEvent]) -> list[TraceEvent]:
    """The fill; CPU 1 allocates an object with __GFP_MEMALLOC and frees it; the relief; then
    ``after``."""
    return [*_fill(), _obj(KMEM_CACHE_ALLOC, "0xa", "GFP_ATOMIC|__GFP_MEMALLOC"),
            _obj(KMEM_CACHE_FREE, "0xa"), *_relief(), *after]


def _replay(kernel: str, events: list[TraceEvent]) -> tuple[Replayer, Any]:
    replayer = Replayer(kernel=kernel, memory=64 << 20, layout=LAYOUT,
                        min_free_kbytes=MIN_FREE_KBYTES, no_pcp=True, slab_on_machine=True)
    result = replayer.run(events)
    replayer.slab.check()
    return replayer, result


def test_7_0_replay_makes_a_pfmemalloc_slab_and_refills_pass_over_it() -> None:
    # (the cache is created before the fill: 7.0 kmallocs its sheaves and barn, and past the
    # watermarks that GFP_KERNEL kmalloc would fail, as in the kernel)
    warm = [_obj(KMEM_CACHE_ALLOC, "0x1", "GFP_KERNEL", cpu=0)]
    drain = [_obj(KMEM_CACHE_ALLOC, f"0x{i}", "GFP_ATOMIC") for i in range(2, 6)]
    events = (warm + _fill() + drain
              + [_obj(KMEM_CACHE_ALLOC, "0xa", "GFP_ATOMIC|__GFP_MEMALLOC"),
                 _obj(KMEM_CACHE_FREE, "0xa")] + _relief()
              + [_obj(KMEM_CACHE_ALLOC, "0xb", "GFP_KERNEL"),
                 _obj(KMEM_CACHE_ALLOC, "0xc", "GFP_ATOMIC")])
    replayer, result = _replay("7.0", events)
    cache = replayer.slab.caches[CACHE]
    capacity, per_slab = cache.sheaf_capacity, cache.objs_per_slab
    assert capacity % per_slab  # (so a refill leaves a partial slab: drain's 4 objects)
    assert capacity % per_slab == per_slab - 4
    # 0x1: CPU 0's main sheaf refilled from new slabs, the last one's rest partial; 0x2-0x5:
    # CPU 1's main is empty and GFP_ATOMIC may not refill it: the partial slab's objects
    (pfm,) = [s for s in cache._slabs() if s.pfmemalloc]
    s = cache.stats()
    # 0xa: no partial slab left: one object from a new slab, from the reserves; its free goes
    # to the slab, not a sheaf (7.0)
    assert s.free_slowpath == 1 and pfm.inuse == 0
    # 0xb: a refill of a whole sheaf with __GFP_NOMEMALLOC: new slabs, none of pfm's objects;
    # 0xc: popped from the sheaf
    assert s.sheaf_refill == 2 * capacity
    assert s.alloc_slab == 2 * -(-capacity // per_slab) + 1
    assert s.alloc_fastpath == 3
    assert result.kmem_oom == 0
    assert result.pcp["pages"]["kmem_oom"] > 0  # the fill did reach the watermarks
    assert result.pcp["slab_layer_on_machine"] is True


def test_6_17_replay_pfmemalloc_cpu_slab_serves_its_freelist_then_is_dropped() -> None:
    per_slab = 16  # (checked below: the cache of 256-byte objects, order 0)
    after = [_obj(KMEM_CACHE_ALLOC, f"0x{i:x}", "GFP_KERNEL") for i in range(0x100, 0x100 +
                                                                              per_slab + 1)]
    replayer, _ = _replay("6.17", _pressure_trace(after))
    cache = replayer.slab.caches[CACHE]
    assert cache.objs_per_slab == per_slab
    (pfm,) = [s for s in cache._slabs() if s.pfmemalloc]
    s = cache.stats()
    # 0xa made pfm the cpu slab (it had the rights) and was freed to it; the fast path does
    # not look at pfmemalloc: the next per_slab GFP_KERNEL objects are all pfm's; the one
    # after that finds it full, and without the rights it is not refilled from: a new slab
    assert pfm.inuse == per_slab
    assert s.alloc_fastpath == per_slab and s.alloc_slowpath == 2
    assert s.alloc_slab == 2 and s.deactivate_full == 1
    assert isinstance(cache, SlubCache)
    cpu_slab = cache._cpu_slab[1]
    assert cpu_slab is not None and cpu_slab is not pfm and not cpu_slab.pfmemalloc


def test_the_kernels_slab_page_events_are_not_fed_to_the_machine_twice() -> None:
    # an unmovable page right before a slab allocation on its CPU is the kernel's slab page:
    # kmem's slab layer takes its own from the machine instead
    events = [_page(MM_PAGE_ALLOC, 1, 0x500, "GFP_KERNEL"),
              _obj(KMEM_CACHE_ALLOC, "0xa", "GFP_KERNEL"),
              _page(MM_PAGE_ALLOC, 0, 0x600, "GFP_KERNEL"),  # an ordinary page: no slab follows
              _page(MM_PAGE_ALLOC, 0, 0x601, "GFP_HIGHUSER_MOVABLE", mt=1),
              _page(MM_PAGE_FREE, 1, 0x500), _page(MM_PAGE_FREE, 0, 0x600)]
    replayer, result = _replay("6.18", events)
    pages = result.pcp["pages"]
    assert pages["slab_page_events_skipped"] == 2  # 0x500's alloc and its free
    assert pages["allocs"] == 2 and pages["frees"] == 1  # 0x600 and 0x601, 0x600
    assert replayer.machine_replay is not None and replayer.slab.pages is not None
    machine = replayer.machine_replay.machine
    slab_blocks = replayer.slab.pages.blocks
    # the machine holds 0x601 and the slab layer's blocks, nothing of 0x500
    assert machine.allocations - machine.frees == 1 + slab_blocks


def test_without_slab_on_machine_the_machine_replay_is_unchanged() -> None:
    events = _pressure_trace([])
    plain = Replayer(memory=64 << 20, layout=LAYOUT, min_free_kbytes=MIN_FREE_KBYTES,
                     no_pcp=True)
    result = plain.run(events)
    assert result.pcp is not None
    assert plain.slab.pages is None  # the slab layer on the buddy allocator, as before
    assert "slab_layer_on_machine" not in result.pcp
    assert "slab_page_events_skipped" not in result.pcp["pages"]
    assert not any(s.pfmemalloc for c in plain.slab.cache_list() for s in c._slabs())


def test_the_command_line_puts_the_slab_layer_on_the_machine(
        capsys: pytest.CaptureFixture[str]) -> None:
    from fixture_files import LS_TRACE
    from kmem.cli.main import main

    def replay(*options: str) -> dict[str, Any]:
        assert main(["replay", str(LS_TRACE), "--serial", "--no-progress", "--json",
                     "--layout", "Normal=256M", *options]) == 0
        document: dict[str, Any] = json.loads(capsys.readouterr().out)
        return document

    on, off = replay("--slab-on-machine"), replay()
    assert on["pcp"]["slab_layer_on_machine"] is True
    # every page event the kernel's slab layer made stays off the machine (kmem's own slab
    # layer took its pages there), and the trace's other page events reach it as before
    skipped = on["pcp"]["pages"]["slab_page_events_skipped"]
    assert skipped > 0
    assert "slab_layer_on_machine" not in off["pcp"]
    assert on["events"] == off["events"]
