"""`kmem replay --kernel` and `--compare`: one trace under the SLUB of Linux 6.17, 6.18 and 7.0.

What a user relies on: each kernel gives sheaves to the caches that kernel gives them; the
kernel's own sheaf kmallocs in a 6.18 trace are never replayed as user objects; the traced gfp
flags decide whether a sheaf refill may block; a comparison is exactly the single replays side by
side (driving several replayers with one parser changes nothing); bad --kernel/--compare values
fail before anything runs.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from fixture_files import DD_TRACE, LS_TRACE, SHEAF_TRACE
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError, KmemError
from kmem.slab.slub_sheaves import PercpuSheavesCache
from kmem.trace.compare import KernelComparer, compare_kernels, parse_kernels
from kmem.trace.events import event_batch
from kmem.trace.parse import TraceParser
from kmem.trace.replay import Replayer

KERNELS = ("6.17", "6.18", "7.0")


def _lines(path: Path) -> list[str]:
    with lzma.open(path, "rt") as text:
        return text.readlines()


def _events(lines: list[str]) -> list[tuple]:  # type: ignore[type-arg]
    return list(TraceParser().parse(lines))


def _line(time: float, event: str, fields: str, cpu: int = 0) -> str:
    return f"          bash-1     [{cpu:03}] .....  {time:.6f}: {event}: {fields}\n"


def _sheaf_kmalloc(time: float, ptr: str) -> str:
    return _line(time, "kmalloc", f"call_site=alloc_empty_sheaf+0x1f/0x40 ptr={ptr}"
                 " bytes_req=288 bytes_alloc=512 gfp_flags=GFP_NOWAIT|__GFP_ZERO node=-1"
                 " accounted=false")


def _maple(time: float, ptr: str, gfp: str = "GFP_KERNEL") -> str:
    return _line(time, "kmem_cache_alloc", f"call_site=mas_alloc_nodes+0x1/0x2 ptr={ptr}"
                 f" name=maple_node bytes_req=256 bytes_alloc=256 gfp_flags={gfp} node=-1"
                 " accounted=false")


def _kfree(time: float, ptr: str) -> str:
    return _line(time, "kfree", f"call_site=free_empty_sheaf+0x1/0x2 ptr={ptr}")


@pytest.mark.parametrize("kernel", KERNELS)
def test_each_kernel_gives_sheaves_to_its_caches(kernel: str) -> None:
    replayer = Replayer(kernel=kernel)
    result = replayer.run(_events(_lines(SHEAF_TRACE)))
    sheaf_caches = {c.name for c in replayer.slab.cache_list() if c.sheaf_capacity}
    created = {c.name for c in replayer.slab.cache_list()
               if c.name in ("maple_node", "vm_area_struct")}
    assert created == {"maple_node", "vm_area_struct"}
    if kernel == "6.17":
        assert sheaf_caches == set()
        assert not any(isinstance(c, PercpuSheavesCache) for c in replayer.slab.cache_list())
    elif kernel == "6.18":  # only those Linux creates with sheaf_capacity = 32
        assert sheaf_caches == {"maple_node", "vm_area_struct"}
        assert {replayer.slab.caches[n].sheaf_capacity for n in sheaf_caches} == {32}
    else:  # every cache that has objects to spare gets sheaves
        assert {"maple_node", "vm_area_struct", "kmalloc-64"} <= sheaf_caches
        assert len(sheaf_caches) > 20
    assert result.kernel == kernel
    assert result.sheaves["caches_with_sheaves"] == len(sheaf_caches)
    held = (result.sheaves["cpu_sheaf_objects"] + result.sheaves["barn_objects"]
            + result.sheaves["rcu_sheaf_objects"])
    assert held == sum(s.sheaf_objects for s in replayer.slab.stats().values())
    assert (held == 0) == (kernel == "6.17")
    replayer.slab.check()


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_kernels_own_sheaf_kmallocs_are_not_replayed(kernel: str) -> None:
    lines = [_sheaf_kmalloc(1.0, "00000000aaaa0001"), _maple(1.1, "00000000bbbb0001"),
             _sheaf_kmalloc(1.2, "00000000aaaa0002"), _kfree(1.3, "00000000aaaa0001")]
    replayer = Replayer(kernel=kernel, layers=("slab",))
    result = replayer.run(_events(lines))
    assert result.sheaves["kernel_sheaf_events"] == 4 - 1  # two kmallocs, one kfree
    assert result.unknown_frees == 0
    assert result.live_objects_at_end == 1  # the maple_node object; no sheaf is a live object
    assert result.events["kmalloc"] == 2 and result.events["kfree"] == 1
    if kernel != "7.0":  # (7.0: kmalloc-512 has sheaves, and other caches' sheaves too)
        # kmalloc-512 holds kmem's own sheaves of maple_node (288 bytes each), none of the trace's
        maple = replayer.slab.caches["maple_node"].stats()
        assert replayer.slab.caches["kmalloc-512"].stats().objects == (
            maple.sheaf_alloc - maple.sheaf_free)
        assert (maple.sheaf_alloc > 0) == (kernel == "6.18")


def test_a_sheaf_pointer_reused_by_a_user_is_a_user_object() -> None:
    lines = [_sheaf_kmalloc(1.0, "00000000aaaa0001"), _kfree(1.1, "00000000aaaa0001"),
             _maple(1.2, "00000000aaaa0001"), _kfree(1.3, "00000000aaaa0001"),
             _kfree(1.4, "00000000aaaa0001")]
    result = Replayer(layers=("slab",)).run(_events(lines))
    assert result.sheaves["kernel_sheaf_events"] == 2
    assert result.unknown_frees == 1  # the second kfree of the user's object
    assert result.live_objects_at_end == 0


def test_nowait_allocations_do_not_refill_sheaves() -> None:
    """__pcs_replace_empty_main may refill only when the gfp flags allow blocking: 6.18 serves
    a GFP_NOWAIT allocation on an empty main sheaf from the slabs instead."""
    figures = {}
    for gfp in ("GFP_KERNEL", "GFP_NOWAIT"):
        lines = [_maple(1 + i / 1000, f"00000000cccc{i:04x}", gfp) for i in range(40)]
        figures[gfp] = Replayer(kernel="6.18", layers=("slab",)).run(_events(lines)).sheaves
    assert figures["GFP_KERNEL"]["sheaf_refill"] > 0
    assert figures["GFP_NOWAIT"]["sheaf_refill"] == 0
    assert figures["GFP_NOWAIT"]["barn_get_fail"] > 0


@pytest.mark.parametrize("path", [SHEAF_TRACE, LS_TRACE])
def test_a_comparison_is_the_single_replays_side_by_side(path: Path) -> None:
    events = _events(_lines(path))
    comparison = compare_kernels([event_batch(events)], KERNELS, every=300, nr_cpus=2)
    for kernel in KERNELS:
        alone = Replayer(kernel=kernel, nr_cpus=2).run(events, every=300)
        assert comparison.results[kernel].to_json() == alone.to_json()
    document = comparison.to_json()
    assert document["kernels"] == list(KERNELS)
    peak = document["comparison"]["slab pages at peak"]
    assert peak == {k: comparison.results[k].memory_in_use["slab"]["peak_bytes"] // 4096
                    for k in KERNELS}
    for name, per_kernel in comparison.per_cache.items():
        assert set(per_kernel) == set(KERNELS), name
    json.dumps(document)  # (all of it JSON-able)


def test_7_0_holds_more_slab_memory_than_6_17_on_a_real_trace() -> None:
    """Sheaves for every cache hold objects that no user asked for: the upgrade's cost."""
    comparison = compare_kernels([event_batch(_events(_lines(DD_TRACE)))], ("6.17", "7.0"))
    rows = dict(comparison.rows())
    assert rows["slab pages at the end"][1] > rows["slab pages at the end"][0]
    assert rows["objects in CPU sheaves at the end"][0] == 0
    assert rows["objects in CPU sheaves at the end"][1] > 0
    assert rows["live objects at the end"][0] == rows["live objects at the end"][1]


@pytest.mark.parametrize(("text", "message"), [
    ("6.18", "two kernels or more"),
    ("6.18,6.18", "names a kernel twice"),
    ("6.18,5.0", "kernel '5.0' is not modelled"),
    ("", "two kernels or more"),
])
def test_bad_kernel_lists_are_refused(text: str, message: str) -> None:
    with pytest.raises(KmemError, match=message):
        parse_kernels(text)


def test_comparer_options_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="not `kernel`"):
        KernelComparer(KERNELS, kernel="6.18")
    with pytest.raises(KmemError, match="not modelled"):
        Replayer(kernel="5.0")


def test_cli_compare_prints_the_kernels_side_by_side(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    picture = tmp_path / "compare.png"
    assert main(["replay", str(SHEAF_TRACE), "--compare", "6.17,7.0", "--serial",
                 "--plot", str(picture)]) == 0
    out = capsys.readouterr().out
    assert "Linux 6.17" in out and "Linux 7.0" in out
    assert "objects in CPU sheaves at the end" in out
    assert picture.stat().st_size > 10_000
    assert main(["replay", str(SHEAF_TRACE), "--compare", "6.17,6.18", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["results"]["6.18"]["sheaves"]["kernel_sheaf_events"] == 3
    assert document["results"]["6.17"]["kernel"] == "6.17"


@pytest.mark.parametrize("args", [
    ["--compare", "6.18,9.9"],
    ["--compare", "7.0"],
    ["--kernel", "5.0"],
    ["--compare", "6.17,7.0", "--plot", "out.gif"],
    ["--compare", "6.17,7.0", "--layout", "Normal=1G"],
    ["--compare", "6.17,7.0", "--slab-on-machine"],
])
def test_cli_bad_kernel_options_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    try:
        status = main(["replay", str(SHEAF_TRACE), *args])
    except SystemExit as exit_info:  # (argparse's own checks)
        status = exit_info.code  # type: ignore[assignment]
    assert status == 2
    err = capsys.readouterr().err
    assert "kmem" in err and "Traceback" not in err


def test_cli_compare_names_the_machine_options_it_cannot_take(
        capsys: pytest.CaptureFixture[str]) -> None:
    # (the comparison replays each kernel's slab and buddy layers: a machine option would be
    # silently dropped)
    assert main(["replay", str(SHEAF_TRACE), "--compare", "6.17,7.0", "--no-pcp",
                 "--warm", "cold"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--no-pcp, --warm cannot be used with it" in captured.err


@pytest.mark.parametrize("kernel", KERNELS)
def test_slabinfo_cache_lists_the_sheaf_files_of_its_kernel(
        kernel: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabinfo", "--kernel", kernel, "--cache", "kmalloc-64"]) == 0
    files = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    if kernel == "6.17":  # no sheaves, and none of their files
        assert "sheaf_capacity" not in files and "barn_get" not in files
        assert int(files["cpu_partial"]) > 0
        return
    if kernel == "6.18":  # the file exists; a kmalloc cache asks for no sheaves
        assert files["sheaf_capacity"] == "0" and files["alloc_cpu_sheaf"] == "0"
        return
    # 7.0: sheaves are the fast paths (alloc_fastpath counts sheaf pops), no cpu partial list
    assert int(files["sheaf_capacity"]) > 0 and files["cpu_partial"] == "0"
    assert int(files["alloc_fastpath"]) > 0
    assert int(files["sheaf_refill"]) >= int(files["sheaf_capacity"])  # a sheaf filled, at least
