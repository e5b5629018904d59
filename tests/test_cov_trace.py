"""kmem's `stat` text, whole, against perf kmem stat's own outputs of the same recording.

tests/test_trace_stat.py compares the numbers row by row; this compares the text as printed
(column widths, the "..." row of a -l cut, section order), through format_stat_text, which
is what `kmem stat` prints. (The page tables are compared row by row only: perf prints a
Callsite column kmem does not, and perf 6.1 labels migratetypes 1 and 2 the wrong way round,
in its page summary too.) The fixture is described in tests/test_trace_stat.py
(tests/fixtures/traces/perf/: one recording, perf's outputs).
"""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from kmem.trace.parse import TraceParser
from kmem.trace.report import format_stat_text
from kmem.trace.stat import KmemStat

PERF = Path(__file__).parent / "fixtures" / "traces" / "perf"


@pytest.fixture(scope="module")
def stat() -> KmemStat:
    result = KmemStat()
    with lzma.open(PERF / "script.txt.xz", "rt") as lines:
        result.add(TraceParser().parse(lines))
    return result


def test_slab_alloc_table_cut_at_30_lines_is_perfs_text(stat: KmemStat) -> None:
    # perf kmem stat --slab --alloc -s bytes,ptr -l 30 (sort keys without ties: row order too)
    ours = format_stat_text(stat.slab_summary("bytes,ptr"), None, alloc=True, lines=30)
    assert ours == (PERF / "stat-slab-alloc-bytes-ptr-l30.txt").read_text()

