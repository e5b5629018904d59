"""Pictures: PNG and SVG files of the memory map, usage, fragmentation and slab waste."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageStat

from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.show.plot import KINDS, cache_waste, figure, plot
from kmem.show.scenario import load
from kmem.show.snapshot import scenario_document


@pytest.fixture(scope="module")
def seed_document() -> dict[str, object]:
    return scenario_document(load("seed-buddy"))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_writes_a_non_blank_png(
    kind: str, seed_document: dict[str, object], tmp_path: Path
) -> None:
    path = plot(seed_document, tmp_path / f"{kind}.png", kind, step=1)
    image = Image.open(path).convert("RGB")
    assert image.width > 300 and image.height > 200
    assert max(ImageStat.Stat(image).stddev) > 5


def test_svg_is_svg(seed_document: dict[str, object], tmp_path: Path) -> None:
    path = plot(seed_document, tmp_path / "map.svg", "map", step=1)
    text = path.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "alloc C_L 21K" in text  # the map's title names the step's line


def test_memory_map_colours_the_allocated_block(seed_document: dict[str, object]) -> None:
    # At step 1 pages 0-7 are allocated (red-ish), pages 8-63 free (green-ish): the map's
    # image data has a row of 64 cells with those colours.
    fig = figure(seed_document, "map", step=1)
    image = fig.axes[0].get_images()[0].get_array()
    assert image is not None
    row = image[0]
    assert len(row) == 64
    assert all(r > g for r, g, _ in row[:8])
    assert all(g > r for r, g, _ in row[8:])


def test_bad_requests_are_clear(seed_document: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"\.png or \.svg"):
        plot(seed_document, tmp_path / "x.gif")
    with pytest.raises(InvalidArgumentError, match="step 7 is not a frame"):
        plot(seed_document, tmp_path / "x.png", "map", step=7)
    with pytest.raises(InvalidArgumentError, match="unknown plot kind"):
        figure(seed_document, "pie")
    assert not (tmp_path / "x.png").exists()


def test_cache_waste() -> None:
    # 7 KB objects, 4 per order-3 slab (32 KB): 28 KB of objects, 4 KB lost = 1/8.
    cache: dict[str, object] = {"object_size": 7168, "objs_per_slab": 4, "order": 3,
                                "slabs": [], "nr_slabs": 0, "num_objs": 0}
    assert cache_waste(cache, 4096) == pytest.approx(1 / 8)
    cache.update(slabs=[[0, 1, 4], [8, 4, 4]], nr_slabs=2, num_objs=8)
    assert cache_waste(cache, 4096) == pytest.approx(1 / 8)
    # 100-byte objects in 128-byte slots, 32 per 4 KB slab: 3200 of 4096 bytes hold objects.
    cache = {"object_size": 100, "objs_per_slab": 32, "order": 0, "slabs": [[0, 8, 32]],
             "nr_slabs": 1, "num_objs": 32}
    assert cache_waste(cache, 4096) == pytest.approx(1 - 3200 / 4096)


def test_kmem_plot_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seed.svg"
    assert main(["plot", "seed-buddy", "-o", str(out), "--kind", "usage"]) == 0
    assert out.exists() and f"wrote {out}" in capsys.readouterr().out
    assert main(["plot", "seed-buddy", "-o", str(tmp_path / "a.png"), "--step", "9"]) == 2
    assert "step 9 is not a frame" in capsys.readouterr().err


def test_fragmentation_lines_follow_the_kernel_formulas(seed_document: dict[str, object]) -> None:
    # After allocating C_L the 56 free pages lie in blocks of order 3, 4 and 5: none of order 6,
    # so the unusable index at order 6 is 1 (1000), and the extfrag index is
    # 1000 - (1000 + 56 * 1000 / 64) / 3 = 375 (mm/vmstat.c, integer division).
    fig = figure(seed_document, "fragmentation")
    lines = fig.axes[0].get_lines()
    solid = [line for line in lines if line.get_linestyle() == "-"]
    dashed = [line for line in lines if line.get_linestyle() == "--"]
    order6 = next(line for line in solid if line.get_label() == "order 6")
    assert np.asarray(order6.get_ydata(), dtype=float).tolist() == [0.0, 1.0, 0.0]
    assert len(dashed) == 1  # only order 6 ever fails, and only at step 1
    ys = np.asarray(dashed[0].get_ydata(), dtype=float).tolist()
    assert ys[1] == pytest.approx(0.375)
    assert all(y != y for y in (ys[0], ys[2]))  # NaN: the request would succeed


def test_a_picture_to_the_standard_output_in_the_format_asked_for(tmp_path: Path) -> None:
    import subprocess
    import sys

    def kmem(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "kmem", "plot", "seed-buddy", *args],
                              capture_output=True, cwd=tmp_path)

    png = kmem("-o", "-")  # (png unless told otherwise: the picture alone, no status line)
    assert png.returncode == 0 and png.stdout.startswith(b"\x89PNG\r\n\x1a\n")
    svg = kmem("-o", "/dev/stdout", "--format", "svg")
    assert svg.returncode == 0 and b"<svg" in svg.stdout and svg.stdout.startswith(b"<?xml")
    assert not (tmp_path / "-").exists()
    named = kmem("-o", "picture", "--format", "svg")  # (a name without a suffix)
    assert named.returncode == 0 and b"<svg" in (tmp_path / "picture").read_bytes()
    assert named.stdout == b"wrote picture\n"


def test_a_format_that_the_name_contradicts_or_cannot_tell_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.png"
    assert main(["plot", "seed-buddy", "-o", str(out), "--format", "svg"]) == 2
    assert f"--format svg but -o '{out}' names a png file" in capsys.readouterr().err
    assert main(["plot", "seed-buddy", "-o", str(tmp_path / "pic")]) == 2
    assert "cannot tell the format of" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "pic").exists()
