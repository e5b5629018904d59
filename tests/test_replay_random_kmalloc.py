"""`kmem replay --random-kmalloc-seed N`: a trace's kmallocs grouped by call site as a kernel
with CONFIG_RANDOM_KMALLOC_CACHES groups them.

What a user relies on: every kmalloc of the normal family goes to the kmalloc-rnd-NN-SIZE copy
(or kmalloc-SIZE itself) that hash_64(caller ^ seed, 4) selects for its call site, the -cg, -rcl
and dma families keep their one cache; a raw call-site address is hashed as the kernel hashes
it; the copies together hold what kmalloc-SIZE holds without the seed; the result says which
copies served how many kmallocs; --compare replays every kernel with the same copies; a bad seed
is refused (exit 2, one line; a specific KmemError in the API).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from core_twins import needs_compiled
from fixture_files import LS_TRACE, PERF_SCRIPT, SHEAF_TRACE, TRACES
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError, InvalidTypeError
from kmem.page.gfp import __GFP_ACCOUNT, __GFP_DMA, __GFP_RECLAIMABLE
from kmem.slab.kmalloc_sizes import KMALLOC_CLASS_BY_SIZE, kmalloc_class_name
from kmem.trace.callers import call_site_caller
from kmem.trace.compare import compare_kernels
from kmem.trace.events import (
    KMALLOC_NODE,
    KMEM_CACHE_ALLOC_NODE,
    KMEM_CACHE_FREE,
    NULL_PTR,
    event_batch,
)
from kmem.trace.parse import TraceParser
from kmem.trace.replay import Replayer
from kmem.trace.stat import gfp_value

SEED = 0x5DEECE66D
KERNELS = ("6.17", "6.18", "7.0")
_NOT_NORMAL = __GFP_DMA | __GFP_RECLAIMABLE | __GFP_ACCOUNT  # (KMALLOC_NOT_NORMAL_BITS here)


def _events(path: Path) -> list[tuple]:  # type: ignore[type-arg]
    with lzma.open(path, "rt") as text:
        return list(TraceParser().parse(text))


def _copy(caller: int, seed: int) -> int:
    """include/linux/slab.h kmalloc_type with random caches, written out here: hash_64 of the
    64-bit (caller ^ seed) with 4 bits (the top 4 bits of the product by GOLDEN_RATIO_64)."""
    return (((caller ^ seed) * 0x61C8864680B583EB) % (1 << 64)) >> 60


def _normal_cache(size: int, caller: int, seed: int) -> str:
    size_name = kmalloc_class_name(KMALLOC_CLASS_BY_SIZE[size])
    copy = _copy(caller, seed)
    return f"kmalloc-{size_name}" if copy == 0 else f"kmalloc-rnd-{copy:02d}-{size_name}"


def _is_normal_slab_kmalloc(event: tuple) -> bool:  # type: ignore[type-arg]
    return (event[0] <= KMALLOC_NODE and event[4] != NULL_PTR and 0 < event[6] <= 8192
            and not gfp_value(event[8]) & _NOT_NORMAL)


def _expected_objects(events: list[tuple], seed: int) -> Counter[str]:  # type: ignore[type-arg]
    """Objects each normal-family kmalloc cache holds at the end of ``events``, found from the
    trace alone: a live pointer's cache is the one its last kmalloc's call site selects."""
    live: dict[str, str] = {}
    for event in events:
        kind, ptr = event[0], event[4]
        if kind > KMEM_CACHE_FREE or ptr == NULL_PTR:
            continue
        if kind > KMEM_CACHE_ALLOC_NODE:
            live.pop(ptr, None)
        elif _is_normal_slab_kmalloc(event):
            live[ptr] = _normal_cache(event[6], call_site_caller(event[3]), seed)
        else:
            live[ptr] = ""  # another family, or a kmem_cache_alloc: not counted
    return Counter(name for name in live.values() if name)


def _normal_family_objects(replayer: Replayer) -> Counter[str]:
    return Counter({name: stats.objects for name, stats in replayer.slab.stats().items()
                    if name.startswith("kmalloc-") and "-cg-" not in name
                    and "-rcl-" not in name and stats.objects})


def test_each_kmalloc_goes_to_the_copy_its_call_site_selects() -> None:
    events = _events(PERF_SCRIPT)
    # (6.17: no sheaves, whose own kmallocs would add objects the trace never asked for)
    replayer = Replayer(kernel="6.17", random_kmalloc_seed=SEED)
    result = replayer.run(events)
    expected = _expected_objects(events, SEED)
    assert sum(1 for name in expected if "-rnd-" in name) >= 4  # (the copies are used)
    assert _normal_family_objects(replayer) == expected
    # every call site of the normal family: one cache per size class, the kernel's grouping
    normal = [event for event in events if _is_normal_slab_kmalloc(event)]
    figures = result.random_kmalloc
    assert figures is not None and figures["seed"] == SEED
    assert (figures["call_sites"], figures["kmallocs"]) == (len({e[3] for e in normal}),
                                                           len(normal))
    assert Counter(figures["caches"]) == Counter(
        _normal_cache(event[6], call_site_caller(event[3]), SEED) for event in normal)
    assert result.bytes_alloc_mismatches == 0  # the copies have kmalloc-N's sizes


def test_the_copies_hold_what_kmalloc_size_holds_without_the_seed() -> None:
    events = _events(LS_TRACE)
    plain, seeded = Replayer(kernel="6.17"), Replayer(kernel="6.17", random_kmalloc_seed=1)
    plain_result, seeded_result = plain.run(events), seeded.run(events)

    def by_size(objects: Counter[str]) -> Counter[str]:  # (the copies of a size merged)
        merged: Counter[str] = Counter()
        for name, count in objects.items():
            merged[name.rsplit("-", 1)[1]] += count
        return merged

    seeded_objects = _normal_family_objects(seeded)
    assert any("-rnd-" in name for name in seeded_objects)
    assert by_size(seeded_objects) == by_size(_normal_family_objects(plain))
    assert not any("-rnd-" in name for name in plain.slab.caches)
    assert plain_result.live_objects_at_end == seeded_result.live_objects_at_end
    assert "random_kmalloc" not in plain_result.to_json()  # (unseeded JSON as before)
    assert seeded_result.to_json()["random_kmalloc"]["seed"] == 1


def _line(time: float, event: str, fields: str) -> str:
    return f"          bash-1     [000] .....  {time:.6f}: {event}: {fields}\n"


def test_a_raw_call_site_address_is_hashed_as_the_kernel_hashes_it() -> None:
    callers = [0xFFFFFFFF81234567 + 8 * n for n in range(40)]
    lines = [_line(1 + n / 1000, "kmalloc", f"call_site={caller:#x} ptr={0x1000 + 64 * n:016x}"
                   " bytes_req=40 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false")
             for n, caller in enumerate(callers)]
    lines.append(_line(2, "kmalloc", "call_site=0xffffffff81000000 ptr=000000000000f000"
                       " bytes_req=40 bytes_alloc=64 gfp_flags=GFP_KERNEL_ACCOUNT node=-1"
                       " accounted=true"))
    replayer = Replayer(random_kmalloc_seed=SEED)
    result = replayer.run(TraceParser().parse(lines))
    assert result.random_kmalloc is not None
    assert result.random_kmalloc["caches"] == dict(
        Counter(_normal_cache(40, caller, SEED) for caller in callers))
    assert len(result.random_kmalloc["caches"]) > 8  # 40 callers spread over the 16
    assert replayer.slab.stats()["kmalloc-cg-64"].objects == 1  # (no copies of -cg)


def test_a_call_site_is_one_caller_whatever_perf_or_ftrace_print_after_it() -> None:
    assert call_site_caller("0xffffffffc0a1b2c3") == 0xFFFFFFFFC0A1B2C3
    digest = hashlib.blake2b(b"alloc_fdtable+0x55", digest_size=8).digest()
    assert call_site_caller("alloc_fdtable+0x55/0x140") == int.from_bytes(digest, "little")
    assert call_site_caller("alloc_fdtable+0x55/0x140") == call_site_caller("alloc_fdtable+0x55")
    assert call_site_caller("alloc_fdtable+0x55/0x140") != call_site_caller(
        "alloc_fdtable+0x84/0x140")
    assert call_site_caller("f+0x3b/0x60 [nf_conntrack]") != call_site_caller("f+0x3b/0x60")


def test_every_kernel_of_a_comparison_uses_the_same_copies() -> None:
    events = _events(SHEAF_TRACE)
    comparison = compare_kernels([event_batch(events)], KERNELS, random_kmalloc_seed=SEED)
    figures = [comparison.results[kernel].random_kmalloc for kernel in KERNELS]
    assert figures[0] is not None and figures[0]["kmallocs"] > 0
    assert figures[0] == figures[1] == figures[2]
    # the per-cache table names the copies
    assert any("-rnd-" in name for name in comparison.per_cache)
    # the kernel's own sheaf kmallocs (call_site=alloc_empty_sheaf) are still not replayed
    plain = compare_kernels([event_batch(events)], KERNELS)
    for kernel in KERNELS:
        sheaf_events = plain.results[kernel].sheaves["kernel_sheaf_events"]
        assert sheaf_events == 3  # (the recording's three alloc_empty_sheaf kmallocs)
        assert comparison.results[kernel].sheaves["kernel_sheaf_events"] == sheaf_events
        assert comparison.results[kernel].events == plain.results[kernel].events


@pytest.mark.parametrize("seed", [-1, 1 << 64])
def test_the_api_refuses_a_seed_that_is_no_u64(seed: int) -> None:
    with pytest.raises(InvalidArgumentError, match="u64"):
        Replayer(random_kmalloc_seed=seed)


@pytest.mark.parametrize("seed", ["5", True, 1.0])
def test_the_api_refuses_a_seed_that_is_no_int(seed: object) -> None:
    with pytest.raises(InvalidTypeError, match="random_kmalloc_seed"):
        Replayer(random_kmalloc_seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", ["-1", "18446744073709551616", "0x1" + "0" * 16, "0x", "",
                                  "ten", "1.5", "1_000", "\u0663", "0x-5"])
def test_the_command_line_refuses_a_bad_seed_in_one_line(
        seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["replay", str(LS_TRACE), "--random-kmalloc-seed", seed])
    out, err = capsys.readouterr()
    assert stop.value.code == 2 and out == "" and "Traceback" not in err
    assert err.rstrip("\n").split("\n")[-1].startswith(
        f"kmem replay: error: argument --random-kmalloc-seed: {seed!r} is not a seed")


def test_the_command_line_takes_a_seed_in_decimal_or_hex(
        capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for seed in ("0xffffffffffffffff", str((1 << 64) - 1)):
        assert main(["replay", str(LS_TRACE), "--random-kmalloc-seed", seed, "--json",
                     "--serial"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0]["random_kmalloc"]["seed"] == (1 << 64) - 1
    assert outputs[0] == outputs[1]
    assert main(["replay", str(LS_TRACE), "--random-kmalloc-seed", "7", "--no-progress",
                 "--caches", "0"]) == 0
    text = capsys.readouterr().out
    assert "Random kmalloc caches (seed 0x7)" in text
    assert "kmalloc-rnd-" in text.split("Random kmalloc caches")[0]  # (the slabinfo table)


@needs_compiled
def test_a_perf_data_replay_with_a_seed_is_the_same_on_both_cores() -> None:
    folder = TRACES / "perf-data"
    args = [sys.executable, "-m", "kmem", "replay", str(folder / "kmem-record-sleep.data.xz"),
            "--kallsyms", str(folder / "kallsyms.txt.xz"), "--random-kmalloc-seed", "99",
            "--json"]
    outputs = []
    for pure in (False, True):
        env = {key: value for key, value in os.environ.items() if key != "KMEM_PURE"}
        if pure:
            env["KMEM_PURE"] = "1"
        outputs.append(subprocess.run(args, capture_output=True, env=env, check=True).stdout)
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["random_kmalloc"]["kmallocs"] > 100
