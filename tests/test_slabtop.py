"""`kmem slabtop -o`: procps-ng slabtop -o's text, byte for byte, on a real /proc/slabinfo."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from fixture_files import FIXTURES
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.slab.report import (
    PROCPS_SORT_KEYS,
    format_slabinfo,
    parse_slabinfo,
    procps_slabtop,
    procps_sorted,
    procps_use_percent,
)
from kmem.slab.stats import SlabInfo

SLABTOP = FIXTURES / "slabtop"
SLABINFO = SLABTOP / "proc_slabinfo_6.18_2cpu.txt"


def _slabtop_output(key: str) -> str:
    with lzma.open(SLABTOP / f"slabtop-o-s{key}.txt.xz", "rt") as file:
        return file.read()


@pytest.mark.parametrize("key", sorted(PROCPS_SORT_KEYS))
def test_cli_prints_slabtops_bytes_for_every_sort_key(
        key: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabtop", "-o", "-s", key, "--slabinfo", str(SLABINFO)]) == 0
    assert capsys.readouterr().out == _slabtop_output(key)


def test_the_use_column_is_procps_single_precision_percent() -> None:
    # Every cache line of real slabtop output: its USE column is procps_use_percent.
    rows = {row.name: row for row in parse_slabinfo(SLABINFO.read_text())}
    checked = 0
    for line in _slabtop_output("o").splitlines()[7:]:
        fields = line.split()
        row = rows[fields[-1]]
        assert int(fields[2].rstrip("%")) == procps_use_percent(row.active_objs, row.num_objs)
        checked += 1
    assert checked == len(rows)
    # (float)57 / 100 * 100 is exactly 57.0 in single precision; in double it is 56.99...
    assert procps_use_percent(57, 100) == 57
    assert int(100 * (57 / 100)) == 56
    assert procps_use_percent(0, 0) == 0


def test_summary_counts_empty_caches_and_sizes_objects_not_pages() -> None:
    rows = parse_slabinfo(SLABINFO.read_text())
    summary = procps_slabtop(rows).splitlines()[:5]
    with_objects = [row for row in rows if row.num_objs]
    assert len(with_objects) < len(rows)  # the fixture has empty caches
    assert summary[2] == (f" Active / Total Caches (% used)     : {len(with_objects)} /"
                          f" {len(rows)} ({100 * len(with_objects) / len(rows):.1f}%)")
    total = sum(row.num_objs * row.objsize for row in rows)
    assert f" / {total / 1024:.2f}K (" in summary[3]
    smallest = min(row.objsize for row in rows)  # empty caches too
    assert summary[4].startswith(f" Minimum / Average / Maximum Object : {smallest / 1024:.2f}K")


_names = st.text("abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=30)


@st.composite
def _slabinfo_rows(draw: st.DrawFn) -> list[SlabInfo]:
    rows = []
    for name in draw(st.lists(_names, max_size=12, unique=True)):
        per_slab = draw(st.integers(1, 64))
        slabs = draw(st.integers(0, 50))
        total = per_slab * slabs
        rows.append(SlabInfo(name, draw(st.integers(0, total)), total, draw(st.integers(8, 9000)),
                             per_slab, draw(st.sampled_from([1, 2, 4, 8])), 0, 0, 0, slabs,
                             slabs, 0))
    return rows


@settings(max_examples=60, deadline=None)
@given(_slabinfo_rows(), st.sampled_from(sorted(PROCPS_SORT_KEYS)))
def test_random_slabinfo_round_trips_and_sorts_as_slabtop(rows: list[SlabInfo], key: str
                                                           ) -> None:
    assert parse_slabinfo(format_slabinfo(rows)) == rows
    text = procps_slabtop(rows, key).splitlines()
    assert len(text) == 7 + len(rows)
    names = [line.split()[-1] for line in text[7:]]
    assert sorted(names) == sorted(row.name for row in rows)
    ordered = procps_sorted(rows, key)
    assert [row.name for row in ordered] == names
    if key == "o":  # largest first; ties in /proc/slabinfo order
        expected = sorted(range(len(rows)), key=lambda i: (-rows[i].num_objs, i))
        assert names == [rows[i].name for i in expected]
    if key == "n":
        assert names == sorted(names)


def test_workload_once_lists_every_cache(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabtop", "-o", "--sort", "name"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert main(["slabinfo"]) == 0
    caches = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert sorted(line.split()[-1] for line in text[7:]) == sorted(caches)
    assert text[2].split(": ")[1].split(" (")[0].endswith(f"/ {len(caches)}")


def test_tables_take_the_letters_of_their_sort_words(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    assert main(["slabtop", "-s", "c", "--no-counters", "--no-fragmentation"]) == 0
    by_letter = capsys.readouterr().out
    assert main(["slabtop", "--sort", "cache", "--no-counters", "--no-fragmentation"]) == 0
    assert by_letter == capsys.readouterr().out


def test_tables_summary_is_procps_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabtop", "--limit", "2", "--no-counters", "--no-fragmentation"]) == 0
    tables = capsys.readouterr().out
    assert main(["slabtop", "-o"]) == 0
    assert tables.splitlines()[:5] == capsys.readouterr().out.splitlines()[:5]


@pytest.mark.parametrize(("argv", "message"), [
    (["-o", "-s", "x"], "--sort: unknown key 'x'"),
    (["--slabinfo", str(SLABINFO)], "--slabinfo needs -o"),
    (["-s", "b"], "the letters b, v and p need -o"),
    (["-o", "--slabinfo", "/nonexistent/slabinfo"], "cannot read '/nonexistent/slabinfo'"),
    (["-o", "--slabinfo", str(SLABINFO), "--page-size", "0"], "--page-size must be 1"),
])
def test_bad_options_exit_2_with_one_line(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slabtop", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("kmem slabtop: ") and message in captured.err
    assert captured.err.count("\n") == 1


def test_a_broken_slabinfo_names_its_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "slabinfo"
    lines = SLABINFO.read_text().splitlines(keepends=True)
    broken.write_text("".join(lines[:5]) + "dentry 12 x 192\n")
    assert main(["slabtop", "-o", "--slabinfo", str(broken)]) == 2
    assert f"{broken}:6: not a slabinfo cache line" in capsys.readouterr().err
    with pytest.raises(InvalidArgumentError, match="not a /proc/slabinfo text"):
        parse_slabinfo("hello\n")
    with pytest.raises(InvalidArgumentError, match="unknown slabtop sort key"):
        procps_sorted([], "z")
