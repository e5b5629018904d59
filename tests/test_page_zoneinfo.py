"""The page machine booted on a real machine's layout gives the kernel's own numbers and prints
/proc/zoneinfo, /proc/buddyinfo and /proc/pagetypeinfo in the kernel's exact formats.

The references are /proc outputs of real Linux 6.18 machines (tests/fixtures/README.md): the
kernel computed their watermarks, protection and pcp sizes; kmem recomputes them from the
zones' page counts alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fixture_files import (
    BUDDYINFO,
    PAGETYPEINFO,
    ZONEINFO,
    ZONEINFO_CPUS,
    ZONEINFO_LIVE,
    ZONEINFO_MIN_FREE_KBYTES,
)
from kmem.cli.main import main
from kmem.page.layout import layout_from_zoneinfo, read_zoneinfo
from kmem.page.machine import PageMachine
from kmem.page.watermarks import calculate_min_free_kbytes, default_min_free_kbytes

KERNEL_FILES = [ZONEINFO, ZONEINFO_LIVE]


def _boot(path: Path, **options: object) -> PageMachine:
    layout = layout_from_zoneinfo(path.read_text(), source=str(path))
    return PageMachine(layout, nr_cpus=ZONEINFO_CPUS, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_watermarks_protection_and_pcp_sizes_are_the_kernels(path: Path) -> None:
    kernel = read_zoneinfo(path.read_text())
    ours = read_zoneinfo(_boot(path, min_free_kbytes=ZONEINFO_MIN_FREE_KBYTES).zoneinfo())
    assert [z.name for z in ours] == [z.name for z in kernel]
    for mine, theirs in zip(ours, kernel, strict=True):
        for key in ("min", "low", "high", "promo", "spanned", "present", "managed"):
            assert mine[key] == theirs[key], (theirs.name, key)
        assert mine.protection == theirs.protection, theirs.name
        assert mine.start_pfn == theirs.start_pfn
        assert len(mine.pagesets) == len(theirs.pagesets)
        for cpu, kcpu in zip(mine.pagesets, theirs.pagesets, strict=True):
            assert (cpu.cpu, cpu.batch, cpu.high_min, cpu.high_max, cpu.stat_threshold) == (
                kcpu.cpu, kcpu.batch, kcpu.high_min, kcpu.high_max, kcpu.stat_threshold)


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_the_default_min_free_kbytes_is_the_kernels(path: Path) -> None:
    # Both machines run with THP: khugepaged raised min_free_kbytes to 11 pageblocks per zone.
    layout = layout_from_zoneinfo(path.read_text())
    managed, present = layout.counts("managed"), layout.counts("present")
    assert default_min_free_kbytes(managed, present) == ZONEINFO_MIN_FREE_KBYTES
    assert _boot(path).min_free_kbytes == ZONEINFO_MIN_FREE_KBYTES


@pytest.mark.parametrize(("megabytes", "kbytes"), [
    (16, 512), (32, 724), (64, 1024), (128, 1448), (256, 2048), (512, 2896), (1024, 4096),
    (2048, 5792), (4096, 8192), (16384, 16384)])
def test_calculate_min_free_kbytes_gives_the_table_of_its_kernel_comment(
        megabytes: int, kbytes: int) -> None:
    # The table above calculate_min_free_kbytes in mm/page_alloc.c (but its 8192MB row, 11584:
    # int_sqrt(8192 * 1024 * 16) is 11585, which the kernel computes too).
    assert calculate_min_free_kbytes([0, 0, megabytes * 256, 0, 0]) == kbytes


def _columns(text: str) -> list[str]:
    """Right-aligned number columns blanked, widths kept: what is left is the format."""
    return [re.sub(r" *\d+", lambda m: "#" * len(m.group()), line) for line in text.splitlines()]


def test_zoneinfo_is_line_for_line_the_kernels_format() -> None:
    ours = _boot(ZONEINFO, min_free_kbytes=ZONEINFO_MIN_FREE_KBYTES).zoneinfo().splitlines()
    kernel = ZONEINFO.read_text().splitlines()
    assert len(ours) == len(kernel)
    for mine, theirs in zip(ours, kernel, strict=True):
        if re.findall(r"\d+", mine) == re.findall(r"\d+", theirs):
            assert mine == theirs  # the same numbers: byte for byte the same line
        else:  # a count kmem does not model, or a state the boot has not reached
            assert re.sub(r"\d+", "N", mine).split() == re.sub(r"\d+", "N", theirs).split()


def test_buddyinfo_and_pagetypeinfo_are_the_kernels_format() -> None:
    machine = _boot(ZONEINFO)
    assert _columns(machine.buddyinfo()) == _columns(BUDDYINFO.read_text())
    assert _columns(machine.pagetypeinfo()) == _columns(PAGETYPEINFO.read_text())
    assert machine.buddyinfo().endswith(" \n")


def test_a_fresh_boot_has_the_dma_zone_of_the_real_machine() -> None:
    # The reference DMA zone's 3840 managed pages are pfns 256..4095 (an order-8, an order-9
    # and three order-10 blocks, all Movable), which kmem's placement reproduces.
    machine = _boot(ZONEINFO)
    assert machine.buddyinfo().splitlines()[0] == BUDDYINFO.read_text().splitlines()[0]
    kernel_dma_blocks = PAGETYPEINFO.read_text().splitlines()[-3].split()[4:]
    ours = machine.pagetypeinfo().splitlines()[-3].split()[4:]
    assert sum(map(int, ours)) == sum(map(int, kernel_dma_blocks)) == 8


def test_kmem_zoneinfo_prints_the_kernels_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["zoneinfo", "--layout", str(ZONEINFO), "--cpus", str(ZONEINFO_CPUS),
                   "--min-free-kbytes", str(ZONEINFO_MIN_FREE_KBYTES)])
    assert status == 0
    printed = read_zoneinfo(capsys.readouterr().out)
    kernel = read_zoneinfo(ZONEINFO.read_text())
    assert [(z["min"], z["low"], z["high"], z["promo"], z["managed"]) for z in printed] == [
        (z["min"], z["low"], z["high"], z["promo"], z["managed"]) for z in kernel]
    assert [[(p.batch, p.high_min, p.high_max) for p in z.pagesets] for z in printed] == [
        [(p.batch, p.high_min, p.high_max) for p in z.pagesets] for z in kernel]


def test_kmem_zoneinfo_shows_buddyinfo_of_a_size_layout(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    assert main(["zoneinfo", "--layout", "DMA=16M,Normal=1G", "--show", "buddyinfo"]) == 0
    assert capsys.readouterr().out == (
        "Node 0, zone      DMA" + "      0" * 10 + "      4 \n"
        "Node 0, zone   Normal" + "      0" * 10 + "    256 \n")


def test_kmem_zoneinfo_names_the_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    bad = tmp_path / "zoneinfo"
    lines = ZONEINFO.read_text().splitlines()
    lines[56] = "        min      lots"
    bad.write_text("\n".join(lines) + "\n")
    assert main(["zoneinfo", "--layout", str(bad)]) == 2
    assert capsys.readouterr().err == f"kmem zoneinfo: {bad}:57: cannot read 'min      lots'\n"
