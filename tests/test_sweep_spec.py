"""Sweep specs: the grid a spec stands for, its run keys, and every bad input refused with an
error naming the spec file, its line and the key, before anything runs."""

from __future__ import annotations

import inspect
import itertools
import lzma
import shutil
from pathlib import Path

import pytest

from fixture_files import SWEEP_TRACES
from kmem import Replayer, SweepSpecError, load_sweep_spec
from kmem.cli.main import main
from kmem.trace.sweep_spec import NOT_PARAMETERS, PARAMETERS

TRACE_NAMES = ["find-6.18-first4000.txt.xz", "gzip-6.18-first4000.txt.xz",
               "tar-6.18-first4000.txt.xz"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with the three sweep recordings in traces/."""
    (tmp_path / "traces").mkdir()
    for name in TRACE_NAMES:
        shutil.copy(SWEEP_TRACES / name, tmp_path / "traces" / name)
    return tmp_path


def _spec(folder: Path, text: str) -> Path:
    path = folder / "spec.toml"
    path.write_text(text)
    return path


def test_the_grid_is_every_trace_times_the_product_of_the_parameter_values(folder: Path) -> None:
    spec = load_sweep_spec(_spec(folder, """
traces = ["traces/tar-*.txt.xz", "traces/find-*.txt.xz"]
[parameters]
policy = ["slub", "slab"]
cpus = [1, 2, 4]
memory = "64M"
"""))
    expected = [(trace, policy, cpus) for trace in ("traces/tar-6.18-first4000.txt.xz",
                                                   "traces/find-6.18-first4000.txt.xz")
                for policy, cpus in itertools.product(["slub", "slab"], [1, 2, 4])]
    runs = spec.runs()
    got = [(run.trace.name, dict(run.parameters)["policy"], dict(run.parameters)["cpus"])
           for run in runs]
    assert got == expected
    assert [run.index for run in runs] == list(range(12))
    assert all(dict(run.parameters)["memory"] == 64 << 20 for run in runs)
    assert spec.swept == ("policy", "cpus")
    assert runs[4].label == "policy=slab cpus=2"
    assert runs[4].name == "traces/tar-6.18-first4000.txt.xz policy=slab cpus=2"


def test_labels_write_sizes_as_people_do(folder: Path) -> None:
    spec = load_sweep_spec(_spec(folder, """
traces = ["traces/tar-*.txt.xz"]
[parameters]
memory = ["16M", "1.5G", 1000000, 1048576]
page_size = [4096, 65536]
"""))
    assert [run.label for run in spec.runs()[::2]] == [
        "memory=16M page_size=4K", "memory=1536M page_size=4K", "memory=1000000 page_size=4K",
        "memory=1M page_size=4K"]
    assert spec.runs()[1].label == "memory=16M page_size=64K"


def test_parameters_left_out_take_the_replayers_defaults(folder: Path) -> None:
    spec = load_sweep_spec(_spec(folder, 'traces = "traces/tar-6.18-first4000.txt.xz"\n'))
    (run,) = spec.runs()
    defaults = {name: p.default for name, p in inspect.signature(Replayer).parameters.items()}
    expected = {row.argument: defaults[row.argument] for row in PARAMETERS}
    expected["layers"] = tuple(defaults["layers"])
    assert run.replayer_arguments() == expected
    assert {"policy", "kernel", "nr_cpus", "memory", "max_order", "page_size"} <= set(expected)
    assert dict(run.parameters)["layers"] == "slab,page"
    assert run.label == ""


def test_every_row_sets_a_keyword_of_the_replayer_and_every_option_has_a_row() -> None:
    keywords = set(inspect.signature(Replayer).parameters)
    rows = {row.argument for row in PARAMETERS}
    assert rows <= keywords, f"rows naming no Replayer keyword: {rows - keywords}"
    missing = keywords - rows - NOT_PARAMETERS
    assert not missing, (f"Replayer options no sweep can set: {missing}; add a row to"
                         " kmem.trace.sweep_spec.PARAMETERS")
    assert len({row.key for row in PARAMETERS}) == len(PARAMETERS)


def test_values_are_read_as_the_command_line_reads_them(folder: Path) -> None:
    spec = load_sweep_spec(_spec(folder, """
traces = ["traces/gzip-6.18-first4000.txt.xz"]
[parameters]
memory = ["1.5G", 268435456, "64MiB"]
layers = ["slab,page", "page", " slab "]
"""))
    assert spec.parameters["memory"] == (1536 << 20, 256 << 20, 64 << 20)
    assert spec.parameters["layers"] == ("slab,page", "page", "slab")
    assert spec.runs()[-1].replayer_arguments()["layers"] == ("slab",)


def test_traces_are_found_from_the_spec_folder_and_kept_once(folder: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.chdir("/")  # (not the spec's folder: paths are the spec's, not the caller's)
    spec = load_sweep_spec(_spec(folder, """
traces = ["traces/tar-6.18-first4000.txt.xz", "traces/*.xz", "traces/../traces/tar-*"]
"""))
    assert [t.name for t in spec.traces] == [
        "traces/tar-6.18-first4000.txt.xz", "traces/find-6.18-first4000.txt.xz",
        "traces/gzip-6.18-first4000.txt.xz"]
    tar = spec.traces[0]
    assert tar.path == str(folder / "traces" / "tar-6.18-first4000.txt.xz")
    assert tar.size == (SWEEP_TRACES / TRACE_NAMES[2]).stat().st_size
    import hashlib
    assert tar.sha256 == hashlib.sha256((SWEEP_TRACES / TRACE_NAMES[2]).read_bytes()).hexdigest()


def test_a_run_key_names_the_trace_content_the_parameters_and_the_sampling(folder: Path) -> None:
    text = 'traces = ["traces/tar-6.18-first4000.txt.xz"]\nevery = 500\n[parameters]\ncpus = 2\n'
    key = load_sweep_spec(_spec(folder, text)).runs()[0].key
    assert load_sweep_spec(_spec(folder, text)).runs()[0].key == key  # stable
    assert len(key) == 16 and int(key, 16) >= 0
    assert load_sweep_spec(_spec(folder, text.replace("cpus = 2", "cpus = 3"))).runs()[0].key != key
    assert load_sweep_spec(_spec(folder, text.replace("500", "501"))).runs()[0].key != key
    # The same parameters, the default spelled out: the same replay, the same key.
    spelled = text.replace("cpus = 2", "cpus = 2\npolicy = 'slub'")
    assert load_sweep_spec(_spec(folder, spelled)).runs()[0].key == key
    trace = folder / "traces" / "tar-6.18-first4000.txt.xz"
    with lzma.open(trace, "at") as more:
        more.write("\n")  # new content, same name
    assert load_sweep_spec(_spec(folder, text)).runs()[0].key != key


TRACE = 'traces = ["traces/tar-6.18-first4000.txt.xz"]\n'
BAD_SPECS = [
    ('trace = ["x"]\n', "spec.toml:1: trace: unknown key (a spec has traces, every, skip_bad,"
     " parameters, report)"),
    (TRACE + "[parameters]\nkernels = '7.0'\n",
     "spec.toml:3: parameters.kernels: not a replay option (the options: policy, kernel, cpus,"
     " memory, max_order, page_size, layers, machine, layout, machine_cpus, pcp_high,"
     " pcp_batch, min_free_kbytes, no_pcp, warm, slab_on_machine, random_kmalloc_seed)"),
    (TRACE + "[parameters]\nkernel = '5.0'\n",
     "spec.toml:3: parameters.kernel: "),
    (TRACE + "[parameters]\nrandom_kmalloc_seed = -1\n",
     "spec.toml:3: parameters.random_kmalloc_seed: expected a seed (a u64, or text such as"
     " '0x1f'), got -1"),
    (TRACE + "[parameters]\nrandom_kmalloc_seed = ['0x1', '0x1_0000_0000_0000_0000']\n",
     "spec.toml:3: parameters.random_kmalloc_seed[1]: '0x1_0000_0000_0000_0000' is not a seed"),
    (TRACE + "[parameters]\nrandom_kmalloc_seed = '18446744073709551616'\n",
     "spec.toml:3: parameters.random_kmalloc_seed: '18446744073709551616' is not a seed: above"
     " 2**64-1"),
    (TRACE + "[parameters]\npcp_high = -3\n",
     "spec.toml:3: parameters.pcp_high: expected a whole number >= 1, got -3"),
    (TRACE + "[parameters]\nwarm = 'hot'\n",
     "spec.toml:3: parameters.warm: expected one of 'zoneinfo', 'movable', 'batch', 'cold',"
     " got 'hot'"),
    (TRACE + "[parameters]\ncpus = 'two'\n",
     "spec.toml:3: parameters.cpus: expected a whole number, got 'two'"),
    (TRACE + "[parameters]\ncpus = [1, 0]\n",
     "spec.toml:3: parameters.cpus[1]: expected a whole number >= 1, got 0"),
    (TRACE + "[parameters]\ncpus = [true]\n",
     "spec.toml:3: parameters.cpus[0]: expected a whole number, got True"),
    (TRACE + "[parameters]\ncpus = []\n",
     "spec.toml:3: parameters.cpus: an empty list: give at least one value"),
    (TRACE + "[parameters]\ncpus = [2, 2]\n", "spec.toml:3: parameters.cpus: 2 is listed twice"),
    (TRACE + "[parameters]\nmemory = ['1G', '1024M']\n",
     "spec.toml:3: parameters.memory: '1024M' is listed twice"),
    (TRACE + "[parameters]\nmemory = 'lots'\n",
     "spec.toml:3: parameters.memory: bad size 'lots' (expected e.g. 100, 21K, 1.5M)"),
    (TRACE + "[parameters]\nmemory = 1.5\n", "spec.toml:3: parameters.memory: expected a size"),
    (TRACE + "[parameters]\npolicy = 'slob'\n",
     "spec.toml:3: parameters.policy: expected one of 'slub', 'slab', got 'slob'"),
    (TRACE + "[parameters]\nlayers = 'disk'\n",
     "spec.toml:3: parameters.layers: unknown layer 'disk' (choose from slab, page)"),
    (TRACE + "[parameters]\npage_size = 3000\n",
     "spec.toml: parameters: kmem cannot replay with page_size=3000: page_size must be a power"
     " of two >= 16, got 3000"),
    (TRACE + "[parameters]\nmemory = [1000, '1G']\n",
     "spec.toml: parameters: kmem cannot replay with memory=1000: memory size 1000 is smaller"
     " than one page (4096 bytes)"),
    (TRACE + "parameters = 3\n", "spec.toml:2: parameters: expected a table ([parameters])"),
    (TRACE + "every = 0\n", "spec.toml:2: every: expected a whole number of events >= 1, got 0"),
    (TRACE + "skip_bad = 'yes'\n", "spec.toml:2: skip_bad: expected true or false, got 'yes'"),
    ("every = 10\n", "spec.toml: traces: missing: name the trace files or globs to replay"),
    ("traces = []\n", "spec.toml:1: traces: expected trace files or globs (text), got []"),
    ("traces = [3]\n", "spec.toml:1: traces: expected trace files or globs (text), got [3]"),
    ('traces = ["traces/tar-6.18-first4000.txt.xz", "runs/*.txt"]\n',
     "spec.toml:1: traces[1]: 'runs/*.txt' matches no file"),
    ('traces = ["traces/none.txt"]\n', "spec.toml:1: traces[0]: no such trace file:"
     " 'traces/none.txt'"),
    ('traces = "traces"\n', "spec.toml:1: traces: 'traces' is not a file (a glob such as"
     " 'traces/*' names the files in a folder)"),
    ('traces = ["traces/broken.txt.xz"]\n', "spec.toml:1: traces[0]: cannot read trace"
     " 'traces/broken.txt.xz'"),
    (TRACE + "[parameters]\npolicy = ['slub', 'slab']\n[report]\nheatmap = ['policy', 'cpus']\n",
     "spec.toml:5: report.heatmap: 'cpus' is not a swept parameter (swept: policy)"),
    (TRACE + "[report]\nheat = 1\n",
     "spec.toml:3: report.heat: unknown key (the report has heatmap)"),
    (TRACE + "[parameters\ncpus = 2\n", "spec.toml:2: not valid TOML:"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SPECS, ids=[m[:60] for _, m in BAD_SPECS])
def test_bad_input_names_the_spec_line_and_key(folder: Path, text: str, message: str) -> None:
    (folder / "traces" / "broken.txt.xz").write_bytes(b"\xfd7zXZ\x00" + b"\x00" * 40)
    spec = _spec(folder, text)
    with pytest.raises(SweepSpecError) as raised:
        load_sweep_spec(spec)
    assert str(raised.value).startswith(f"{spec}{message[len('spec.toml'):]}"), str(raised.value)


def test_a_missing_spec_is_named(tmp_path: Path) -> None:
    with pytest.raises(SweepSpecError, match=r"cannot read sweep spec '.*nothing\.toml': No such"):
        load_sweep_spec(tmp_path / "nothing.toml")


def test_the_command_refuses_a_bad_spec_with_status_2_before_any_run(
        folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    _spec(folder, TRACE + "[parameters]\npolicy = ['slub', 'slab']\ncpus = 'two'\n")
    assert main(["sweep", "spec.toml", "-o", "out", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == "kmem sweep: spec.toml:4: parameters.cpus: expected a whole number, got 'two'\n"
    assert not (folder / "out").exists()
    _spec(folder, TRACE + "[parameters]\npolicy = ['slub', 'slab']\n")
    assert main(["sweep", "spec.toml", "-o", "out", "--heatmap", "policy,memory"]) == 2
    assert capsys.readouterr().err == ("kmem sweep: --heatmap: 'memory' is not a swept parameter"
                                       " (swept: policy)\n")
    assert main(["sweep", "spec.toml", "-o", "out", "--report", "out.pdf"]) == 2
    assert "should end in .html" in capsys.readouterr().err
    assert main(["sweep", "spec.toml", "-o", "out", "--ship"]) == 2
    assert capsys.readouterr().err == ("kmem sweep: --ship sends traces to a Dask cluster:"
                                       " give --dask too\n")
    assert not (folder / "out").exists()


def test_a_random_kmalloc_seed_is_a_u64_as_a_number_or_as_text(folder: Path) -> None:
    spec = load_sweep_spec(_spec(folder, TRACE + """[parameters]
random_kmalloc_seed = ["", 5, "0xffffffffffffffff", "18446744073709551614"]
"""))
    seeds = [run.replayer_arguments()["random_kmalloc_seed"] for run in spec.runs()]
    assert seeds == [None, 5, (1 << 64) - 1, (1 << 64) - 2]
    # (the replayer builds random kmalloc caches with it: the copies exist)
    replayer = Replayer(**spec.runs()[1].replayer_arguments())
    assert "kmalloc-rnd-15-8k" in replayer.slab.caches
