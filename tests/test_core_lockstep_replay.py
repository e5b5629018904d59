"""The replay loop on the compiled core (kmem._core.replay_feed) and on the pure one
(Replayer._feed_events), in lockstep.

The same random event streams — kmalloc and kmem_cache_alloc of every kind, frees of live,
unknown, failed and NULL pointers, a pointer allocated again while live, the kernel's own sheaf
kmallocs, CPUs beyond the replay's, page allocations and frees (failed ones, orders above
--max-order, missed frees, slab pages the next event claims, batched duplicates), memory small
enough to run out, and malformed events (a pfn or a pointer that is no number or text) — go to
two Replayers, one on each core, sampled every few events. Every snapshot, the result (or the
error: class and message) and the result after an error must be the same, and check() must
pass on both allocators.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from core_twins import FUZZ_EXAMPLES, needs_compiled, outcome, twins
from kmem.trace.events import NULL_PTR
from kmem.trace.replay import Replayer

POINTERS = [NULL_PTR] + [f"{i:016x}" for i in range(1, 10)] + ["0xffff888100000040"]
GFPS = ["GFP_KERNEL", "GFP_KERNEL|__GFP_ZERO", "GFP_NOWAIT", "GFP_KERNEL_ACCOUNT",
        "GFP_ATOMIC|__GFP_RECLAIMABLE", "GFP_HIGHUSER_MOVABLE", "NOT_A_FLAG"]
SITES = ["f+0x1/0x2", "alloc_empty_sheaf+0x10/0x80", "g+0x8/0x10"]
# (traced name, bytes_req, bytes_alloc): real caches, one unnamed (kernels before 6.2), one
# kmem cannot create (above --max-order's reach)
CACHES = [("filp", 184, 192), ("maple_node", 256, 256), ("", 96, 96), ("huge", 1 << 23, 1 << 23)]
ODD_KEYS: list[Any] = [None, 1.5, ("a",)]


def _slab(kind: int, cpu: int, site: str, ptr: Any, name: str = "", size: int = 0,
          alloc: int = 0, gfp: str = "") -> tuple[Any, ...]:
    return (kind, cpu, "1.000000:", site, ptr, name, size, alloc, gfp, -1, -1, -1, -1)


def _page(kind: int, cpu: int, pfn: Any, order: int, gfp: str = "GFP_KERNEL",
          migratetype: int = 0) -> tuple[Any, ...]:
    return (kind, cpu, "1.000000:", "", "", "", 0, 0, gfp, -1, pfn, order, migratetype)


CPUS = st.integers(0, 4)  # the replays have 2: 2-4 wrap around
kmallocs = st.builds(
    lambda kind, cpu, site, ptr, size, alloc, gfp: _slab(kind, cpu, site, ptr, "", size,
                                                         alloc, gfp),
    st.sampled_from([0, 1]), CPUS, st.sampled_from(SITES), st.sampled_from(POINTERS),
    st.sampled_from([0, 8, 100, 192, 4096, 9000, 1 << 22]), st.sampled_from([8, 128, 8192]),
    st.sampled_from(GFPS))
cache_allocs = st.builds(
    lambda kind, cpu, ptr, cache, gfp: _slab(kind, cpu, "f+0x1/0x2", ptr, cache[0], cache[1],
                                             cache[2], gfp),
    st.sampled_from([2, 3]), CPUS, st.sampled_from(POINTERS), st.sampled_from(CACHES),
    st.sampled_from(GFPS))
frees = st.builds(lambda kind, cpu, ptr: _slab(kind, cpu, "f+0x1/0x2", ptr),
                  st.sampled_from([4, 5]), CPUS, st.sampled_from(POINTERS))
page_allocs = st.builds(
    lambda cpu, pfn, order, gfp, mt: _page(6, cpu, pfn, order, gfp, mt),
    CPUS, st.integers(-1, 12), st.sampled_from([0, 0, 1, 3, 11]),
    st.sampled_from(["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE|__GFP_ZERO"]),
    st.sampled_from([0, 1, 2]))
page_frees = st.builds(lambda kind, cpu, pfn, order: _page(kind, cpu, pfn, order, ""),
                       st.sampled_from([7, 8]), CPUS, st.integers(0, 12),
                       st.sampled_from([0, 1, 3]))
others = st.builds(lambda kind, cpu, pfn: _page(kind, cpu, pfn, 0, "", 1),
                   st.sampled_from([9, 10, 11]), CPUS, st.integers(0, 12))
malformed = st.one_of(
    st.builds(lambda kind, key: _page(kind, 0, key, 0), st.sampled_from([6, 7, 8]),
              st.sampled_from(ODD_KEYS)),
    st.builds(lambda kind, key: _slab(kind, 0, "f+0x1/0x2", key, "filp", 184, 192,
                                      "GFP_KERNEL"),
              st.sampled_from([2, 4]), st.sampled_from(ODD_KEYS)))
good_events = st.one_of(kmallocs, cache_allocs, frees, page_allocs, page_frees, others)
streams = st.lists(good_events, max_size=120)
bad_streams = st.tuples(st.lists(good_events, max_size=40), malformed,
                        st.lists(good_events, max_size=10)).map(
    lambda parts: [*parts[0], parts[1], *parts[2]])


def _lockstep(stream: list[tuple[Any, ...]], every: int, **options: Any) -> tuple[str, Any]:
    """Replay ``stream`` on both cores: what the replay did, the same on each."""
    compiled, pure = twins(lambda: Replayer(nr_cpus=2, **options))
    assert compiled.buddy.compiled_core is not None and pure.buddy.compiled_core is None
    samples: tuple[list[Any], list[Any]] = ([], [])

    def run(replayer: Replayer, seen: list[Any]) -> Any:
        return replayer.run(stream, every=every, callback=seen.append).to_json()

    done = outcome(lambda: run(compiled, samples[0]))
    assert done == outcome(lambda: run(pure, samples[1]))
    assert samples[0] == samples[1]
    if done[0] == "error":  # the state the error left is the same too
        assert outcome(lambda: compiled.result().to_json()) == outcome(
            lambda: pure.result().to_json())
    for replayer in (compiled, pure):
        replayer.slab.check()
        replayer.buddy.check()
    return done


@needs_compiled
@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(stream=streams, layers=st.sampled_from([("slab", "page"), ("slab",), ("page",)]),
       policy=st.sampled_from(["slub", "slab"]), kernel=st.sampled_from(["6.17", "6.18", "7.0"]),
       memory=st.sampled_from([1 << 17, 1 << 20, 64 << 20]), every=st.integers(1, 40))
def test_both_cores_replay_a_stream_alike(stream: list[tuple[Any, ...]], layers: tuple[str, ...],
                                          policy: str, kernel: str, memory: int,
                                          every: int) -> None:
    kernel = kernel if policy == "slub" else "6.18"
    done = _lockstep(stream, every, layers=layers, policy=policy, kernel=kernel, memory=memory,
                     max_order=10)
    assert done[0] == "ok"


@needs_compiled
@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(stream=bad_streams, layers=st.sampled_from([("slab", "page"), ("slab",), ("page",)]),
       every=st.integers(1, 40))
def test_both_cores_stop_at_a_malformed_event_alike(stream: list[tuple[Any, ...]],
                                                    layers: tuple[str, ...], every: int) -> None:
    _lockstep(stream, every, layers=layers, memory=1 << 20)


@needs_compiled
def test_a_malformed_page_event_stops_both_cores_with_the_same_error() -> None:
    """A pfn that is no number: the error of `pfn < 0`, after the events before it."""
    stream = [_page(6, 0, 5, 0), _page(6, 0, "5", 0), _page(6, 0, 7, 0)]
    done = _lockstep(stream, 1, layers=("page",), memory=1 << 20)
    assert done == ("error", ("TypeError",
                              "'<' not supported between instances of 'str' and 'int'"))
