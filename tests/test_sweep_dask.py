"""The Dask executor on a LocalCluster of two worker processes: the same runs give the same
results table as the local process pool, whether the workers read the traces at their path or
from chunks shipped to the cluster; a failing run is reported as the pool reports it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmem import SweepOptionError, sweep
from kmem.trace.sweep import FAILURES, RESULTS, TIMELINES
from sweep_fixtures import broken_trace, sweep_folder

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def pool_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spec (three recordings and a broken trace) and its results from the process pool."""
    folder = tmp_path_factory.mktemp("sweep")
    spec = sweep_folder(folder)
    broken_trace(folder / "traces" / "zz-broken.txt.xz")
    sweep(spec, output=folder / "pool", jobs=2)
    return spec


@pytest.mark.parametrize("ship", [False, True], ids=["shared-path", "shipped"])
def test_the_cluster_gives_the_pools_results(pool_sweep: Path, scheduler: str, ship: bool
                                             ) -> None:
    output = pool_sweep.parent / f"dask-{ship}"
    result = sweep(pool_sweep, output=output, executor="dask", address=scheduler, ship=ship)
    assert len(result.rows) == 12 and len(result.failures) == 4
    for name in (RESULTS, TIMELINES, FAILURES):
        assert (output / name).read_bytes() == (pool_sweep.parent / "pool" / name).read_bytes()
    assert all(f.error.startswith("TraceFormatError: line 301: ") for f in result.failures)


def test_the_command_runs_on_the_cluster(pool_sweep: Path, scheduler: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from kmem.cli.main import main

    output = pool_sweep.parent / "cli"
    assert main(["sweep", str(pool_sweep), "-o", str(output), "--dask", scheduler, "--ship",
                 "--no-progress", "--top", "0"]) == 1  # (the broken trace's runs fail)
    assert "16 runs: 12 done (0 resumed), 4 failed" in capsys.readouterr().out
    assert (output / RESULTS).read_bytes() == (pool_sweep.parent / "pool" / RESULTS).read_bytes()


def test_without_dask_the_executor_is_refused_before_any_run(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    spec = sweep_folder(tmp_path)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(SweepOptionError, match=r"needs dask.distributed: pip install 'kmem\[dask"):
        sweep(spec, output=tmp_path / "out", executor="dask")
    assert not (tmp_path / "out").exists()
