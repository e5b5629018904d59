"""Lines of the core layers (kmem.page, kmem.slab, kmem.trace) that a fresh ``make test``
reached only by chance (hypothesis-generated cases): each test here reaches its line every
time and asserts what a user relies on there, as Linux's rules (or kmem's documented rules)
give it, worked out by hand."""

from __future__ import annotations

import enum
import io
import lzma
import sys
from pathlib import Path
from typing import Any

import pytest

from kmem.errors import InvalidTypeError, OutOfMemoryError
from kmem.page.buddy import BuddyAllocator
from kmem.page.gfp import GFP_KERNEL
from kmem.page.layout import MachineLayout
from kmem.page.machine import PageMachine
from kmem.page.pcp import order_to_pindex
from kmem.slab.allocator import SlabAllocator
from kmem.slab.errors import InvalidGfpError
from kmem.slab.flags import SLAB_RED_ZONE
from kmem.slab.slub import SlubCache, SlubDebugCache
from kmem.trace.events import MM_PAGE_ALLOC, MM_PAGE_FREE_BATCHED, event_batch
from kmem.trace.machine_replay import MachineReplay
from kmem.trace.perf_data import KernelSymbols, TraceInput
from kmem.trace.source import MAX_LINE_BYTES, TraceFileError

# Linux's values (include/linux/mmzone.h, pageblock-flags.h), not kmem's constants.
UNMOVABLE, MOVABLE = 0, 1
PAGEBLOCK_PAGES = 512  # pageblock_order 9 with 4 KiB pages


# -- kmem.page: __rmqueue's modes in one rmqueue_bulk ----------------------------------------

def test_a_pcp_refill_that_has_to_steal_steals_every_block_of_its_batch() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 128 << 20}), nr_cpus=1)
    zone = machine.zone("Normal")
    # Every pageblock movable, its first 64 pages free and the rest used: no unmovable free
    # page anywhere, and too little of any pageblock free to claim it for unmovable (half of
    # it would have to be free or compatible).
    held = []
    while True:
        try:
            held.append(machine.alloc_pages(3, "GFP_HIGHUSER_MOVABLE|__GFP_MEMALLOC"))
        except OutOfMemoryError:
            break
    for pfn in held:
        if pfn % PAGEBLOCK_PAGES < 64:
            machine.free_pages(pfn, 3)
    machine.drain_all_pages()  # (the freed order-3 blocks merge in the buddy lists)
    blocks = zone.free_pages // 64
    assert blocks > 0
    assert [len(zone.free_list(MOVABLE, order)) for order in range(11)] == (
        [0] * 6 + [blocks] + [0] * 4)
    assert not any(zone.free_list(UNMOVABLE, order) for order in range(11))
    free_before = zone.free_pages
    pcp = zone.pcps[0]
    assert pcp.count == 0
    refills, extfrag = pcp.refill_calls, pcp.refill_extfrag

    pfn = machine.alloc_pages(0, "GFP_KERNEL")
    # A Normal zone of a one-node machine: get_page_from_freelist first tries with
    # ALLOC_NOFRAGMENT (alloc_flags_nofragment), whose refill may claim whole pageblocks
    # only and never steals: it finds nothing. The retry without it is a second rmqueue_bulk,
    # under one zone lock: its first block found no unmovable page and no pageblock to
    # claim, so __rmqueue_steal split the smallest movable block (an order-6 one: the first
    # 64 pages of a pageblock); every block after it is stolen straight away (RMQUEUE_STEAL),
    # each the smallest movable block there is: the pieces that split left, so the batch is
    # the order-6 block's first pages in ascending order, the first handed out, the rest on
    # the unmovable order-0 list.
    got = pcp.count + 1
    assert got > 2
    assert pfn % PAGEBLOCK_PAGES == 0
    assert pcp.list(order_to_pindex(UNMOVABLE, 0)) == list(range(pfn + 1, pfn + got))
    assert pcp.refill_calls == refills + 2
    # An extfrag event per stolen block, no pageblock claimed: they all stay movable.
    assert zone.extfrag == got and pcp.refill_extfrag == extfrag + got and zone.claims == 0
    assert set(machine.pageblock_mt) == {MOVABLE}
    assert zone.free_pages == free_before - got
    machine.check()


# -- kmem.slab -------------------------------------------------------------------------------

def test_slab_usage_rows_are_the_same_when_the_compiled_core_declines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1)
    cache: Any = slab.kmem_cache_create("usage", 512)
    per_slab = cache.objs_per_slab
    objects = [cache.alloc(0) for _ in range(per_slab + 3)]
    cache.free(objects[1], 0)
    # One slab full but for its second object, one with its first 3 objects a user's.
    first, second = cache.slab_extents()
    expected = [
        (first[0], per_slab - 1, objects[0], bytes([1, 0] + [1] * (per_slab - 2))),
        (second[0], 3, objects[per_slab], bytes([1, 1, 1] + [0] * (per_slab - 3))),
    ]
    core = cache._buddy.compiled_core  # (None on the pure core)
    declined = []
    if core is not None:  # (the compiled core: make it decline, as for slabs it cannot read)
        def decline(*args: object) -> object:
            declined.append(args)
            return NotImplemented

        monkeypatch.setattr(core, "slab_usage", decline)
    assert cache.slab_usage() == expected
    assert cache.slab_usage() == expected  # (nothing of the declined answer was kept)
    assert len(declined) == (2 if core is not None else 0)
    monkeypatch.undo()
    assert cache.slab_usage() == expected  # and the core's own rows again, alike


class _Gfp(enum.IntFlag):
    """A caller's own flag type: its members are ints (not plain ones)."""

    KERNEL = GFP_KERNEL


def _unlocked_caches() -> list[Any]:
    """A plain SLUB cache (its cpu-slab fast path) and a debug one (alloc_single_from_partial),
    both of a thread_safe=False allocator: alloc is the cache's unlocked path itself."""
    slab = SlabAllocator(BuddyAllocator(8 << 20), nr_cpus=1, kernel="6.18", thread_safe=False)
    plain = slab.kmem_cache_create("plain", 128)
    debug = slab.kmem_cache_create("debugged", 128, flags=SLAB_RED_ZONE)
    assert type(plain) is SlubCache and type(debug) is SlubDebugCache
    return [plain, debug]


@pytest.mark.parametrize("which", [0, 1], ids=["cpu-slab", "debug"])
def test_unlocked_slub_alloc_refuses_a_gfp_that_is_no_gfp_t_before_any_change(
        which: int) -> None:
    cache = _unlocked_caches()[which]
    buddy = cache._buddy
    free_before = buddy.nr_free_pages
    # gfp_t is an unsigned int: a bool is no gfp_t, nor is a value of more than 32 bits.
    with pytest.raises(InvalidTypeError, match=r"^gfp flags must be an int, not bool$"):
        cache.alloc(0, True)
    with pytest.raises(InvalidGfpError,
                       match=r"^gfp flags must be in 0\.\.0xffffffff, not 0x100000cc0$"):
        cache.alloc(0, (1 << 32) | GFP_KERNEL)
    with pytest.raises(InvalidGfpError, match=r"^gfp flags must be in 0\.\.0xffffffff, not -0x1$"):
        cache.alloc(0, -1)
    # Nothing changed: no slab made, no page taken, no object handed out.
    assert cache.slab_extents() == [] and cache.live_objects() == []
    assert buddy.nr_free_pages == free_before
    # An int of another type holding a gfp_t is one: the allocation goes ahead, the cache's
    # first object (at the start of its first slab).
    address = cache.alloc(0, _Gfp.KERNEL)
    ((pfn, order),) = cache.slab_extents()
    assert address == (pfn << 12) + cache.red_left_pad
    assert [obj.address for obj in cache.live_objects()] == [address]
    assert buddy.nr_free_pages == free_before - (1 << order)
    cache.free(address, 0)
    cache.check()


# -- kmem.trace ------------------------------------------------------------------------------

def _page_event(kind: int, pfn: int) -> tuple[Any, ...]:
    return (kind, 0, "1.000000:", "", "", "", 0, 0, "GFP_KERNEL", -1, pfn, 0, 1)


def test_a_batched_free_whose_mm_page_free_was_lost_frees_the_live_page() -> None:
    machine = PageMachine(MachineLayout.from_sizes({"Normal": 64 << 20}), nr_cpus=1)
    replay = MachineReplay(machine, warm="cold")
    pcp = machine.zone("Normal").pcps[0]

    def feed(*events: tuple[Any, ...]) -> None:
        batch = event_batch(list(events))
        replay.feed(batch.kinds, batch.cpus, batch.keys, batch.tails, batch.times)

    feed(_page_event(MM_PAGE_ALLOC, 0x4242))
    assert replay.counts["allocs"] == 1
    on_pcp = pcp.count
    # free_unref_folios traces mm_page_free then mm_page_free_batched: the first was lost,
    # the page is live, so the batched free is its free (to this CPU's pcp, at once).
    feed(_page_event(MM_PAGE_FREE_BATCHED, 0x4242))
    assert (replay.counts["frees"], replay.counts["unknown_frees"],
            replay.counts["batched_duplicates"]) == (1, 0, 0)
    assert pcp.count == on_pcp + 1
    # The page is free now: another batched free of it repeats a free, nothing changes.
    feed(_page_event(MM_PAGE_FREE_BATCHED, 0x4242))
    assert (replay.counts["frees"], replay.counts["batched_duplicates"]) == (1, 1)
    assert pcp.count == on_pcp + 1
    replay.finish()
    machine.check()


def test_a_kallsyms_with_a_line_too_long_for_the_quick_reading_reads_as_trace_text(
        tmp_path: Path) -> None:
    prefix = b"ffffffff81000100 T "
    whole = b"a" * (MAX_LINE_BYTES - len(prefix))  # a line of MAX_LINE_BYTES bytes: kept
    cut = b"b" * (MAX_LINE_BYTES + 100)  # a longer one: cut to its first MAX_LINE_BYTES
    for name, expected in ((whole, whole), (cut, cut[:MAX_LINE_BYTES - len(prefix)])):
        path = tmp_path / "kallsyms"
        path.write_bytes(b"ffffffff81000000 T first\n" + prefix + name
                         + b"\nffffffff81000200 t last\nffffffff81000300 T end\n")
        symbols = KernelSymbols.from_file(path)
        starts, names = symbols.table()
        assert starts == [0xffffffff81000000, 0xffffffff81000100, 0xffffffff81000200,
                          0xffffffff81000300]
        assert names == ["first", expected.decode(), "last", "end"]
        # Each symbol ends where the next begins: the ones after the long line too.
        assert symbols.name(0xffffffff81000210) == "last+0x10"
        assert symbols.name(0xffffffff81000101) == expected.decode() + "+0x1"


@pytest.mark.parametrize("stream", [lzma.compress(b"x" * 100)[:12], b"\x1f\x8b" + bytes(20)],
                         ids=["truncated-xz", "bad-gzip"])
def test_a_broken_compressed_stream_on_stdin_is_read_as_text_and_refused_there(
        monkeypatch: pytest.MonkeyPatch, stream: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stream)))
    # The perf.data check cannot read its first bytes: not perf.data; the text reader then
    # says where the stream broke off (before any line).
    with TraceInput("-") as trace:
        assert trace.kind == "text" and trace.perf is None
        with pytest.raises(TraceFileError,
                           match=r"^<stdin>: the trace stream broke off after line 0: "):
            list(trace.batches())
        assert trace.nr_events == 0
