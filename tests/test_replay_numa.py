"""``kmem replay --nodes N`` and Replayer(nr_nodes=N): kmalloc_node and kmem_cache_alloc_node
events go to their node=; bad --nodes values are one-line errors, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmem.cli.main import main
from kmem.trace.parse import TraceParser
from kmem.trace.replay import Replayer

E = "{:016x}"


def _line(cpu: int, event: str, fields: str) -> str:
    return f"  t-1 [{cpu:03d}] ..... 1.000000: {event}: {fields}"


def _kmalloc_node(ptr: int, node: int, cpu: int = 0, size: int = 100) -> str:
    return _line(cpu, "kmalloc_node",
                 f"call_site=f+0x1/0x9 ptr={E.format(ptr)} bytes_req={size} bytes_alloc=128"
                 f" gfp_flags=GFP_KERNEL node={node} accounted=false")


def _cache_alloc_node(ptr: int, node: int, cpu: int = 0) -> str:
    return _line(cpu, "kmem_cache_alloc_node",
                 f"call_site=f+0x1/0x9 ptr={E.format(ptr)} name=filp bytes_req=184"
                 f" bytes_alloc=192 gfp_flags=GFP_KERNEL node={node} accounted=true")


def _kfree(ptr: int, cpu: int = 0) -> str:
    return _line(cpu, "kfree", f"call_site=g+0x1/0x9 ptr={E.format(ptr)}")


def _nodes_of(replayer: Replayer) -> dict[int, int]:
    """kmem's node of every live traced object, by traced pointer."""
    numa = replayer.slab.numa
    assert numa is not None
    return {int(ptr, 16): (address >> replayer.buddy.page_shift) // numa.node_pages
            for ptr, (_, address) in replayer._live.items()}


@pytest.mark.parametrize("seed", [None, 7])
def test_node_events_are_replayed_on_their_node(seed: int | None) -> None:
    lines = [_kmalloc_node(0x10, 1), _kmalloc_node(0x11, 1), _kmalloc_node(0x12, -1),
             _cache_alloc_node(0x20, 1), _cache_alloc_node(0x21, 0, cpu=1),
             _cache_alloc_node(0x22, -1, cpu=1), _kmalloc_node(0x13, 3),
             _kmalloc_node(0x14, 0, size=20000), _kmalloc_node(0x15, 1, size=20000)]
    replayer = Replayer(nr_cpus=2, nr_nodes=2, memory=64 << 20, random_kmalloc_seed=seed)
    parser = TraceParser()
    result = replayer.run(parser.parse([*lines, _kfree(0x11)]), every=2, parser=parser)
    assert result.nr_nodes == 2 and result.to_json()["nr_nodes"] == 2
    # node 3 folds onto node 1; node=-1 takes the cpu slab whatever its node (Linux's
    # node_match(slab, NUMA_NO_NODE)): the one the event before on that CPU loaded
    assert _nodes_of(replayer) == {0x10: 1, 0x12: 1, 0x20: 1, 0x21: 0, 0x22: 0, 0x13: 1,
                                   0x14: 0, 0x15: 1}
    replayer.slab.check()


def test_one_node_leaves_the_json_as_it_was() -> None:
    replayer = Replayer(nr_cpus=2, memory=64 << 20)
    parser = TraceParser()
    result = replayer.run(parser.parse([_kmalloc_node(0x10, 1)]), parser=parser)
    assert result.nr_nodes == 1 and "nr_nodes" not in result.to_json()


@pytest.fixture
def node_trace(tmp_path: Path) -> Path:
    path = tmp_path / "t.txt"
    path.write_text("\n".join([_kmalloc_node(0x10, 1), _cache_alloc_node(0x20, 1),
                               _kfree(0x10)]) + "\n")
    return path


def test_replay_nodes_option(node_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--nodes", "2", "--no-progress", str(node_trace)]) == 0
    assert "2 CPUs, 2 nodes," in capsys.readouterr().out
    # (--compare's header says the nodes too: every kernel replays on them)
    assert main(["replay", "--nodes", "2", "--compare", "6.17,7.0", "--no-progress",
                 str(node_trace)]) == 0
    assert "2 CPUs, 2 nodes," in capsys.readouterr().out
    assert main(["replay", "--compare", "6.17,7.0", "--no-progress", str(node_trace)]) == 0
    assert "nodes" not in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize(("argv", "message"), [
    (["--nodes", "0"], "kmem replay: error: argument --nodes: '0': must be 1 or more"),
    (["--nodes", "-1"], "kmem replay: error: argument --nodes: '-1': must be 1 or more"),
    (["--nodes", "1.5"], "kmem replay: error: argument --nodes: '1.5' is not a whole number"),
    (["--nodes", "x"], "kmem replay: error: argument --nodes: 'x' is not a whole number"),
    (["--nodes", "3"], "kmem replay: nr_nodes 3 is more than the 2 CPUs: every node needs a"
                       " CPU"),
    (["--nodes", "2", "--memory", "6M"],
     "kmem replay: 1536 pages do not split into 2 nodes of whole order-10 blocks"),
    (["--nodes", "2", "--slab-on-machine"],
     "kmem replay: nr_nodes 2: a page machine (--slab-on-machine) models one node only"),
    (["--nodes", "2", "--policy", "slab"],
     "kmem replay: nr_nodes 2: the slab policy models one node only"),
])
def test_bad_nodes_values_are_one_line_errors(node_trace: Path, argv: list[str], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        status = main(["replay", *argv, "--no-progress", str(node_trace)])
        raise SystemExit(status)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.strip().splitlines()[-1].startswith("kmem replay: ")
