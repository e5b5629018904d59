"""Pictures of a trace through the page machine: free pages per migratetype, pcp pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageStat

from fixture_files import DD_TRACE, LS_TRACE, ZONEINFO
from kmem.cli.main import main
from kmem.errors import InvalidArgumentError
from kmem.show.plot_pcp import pcp_figure, plot_pcp
from kmem.trace.parse import TraceParser
from kmem.trace.replay import Replayer
from kmem.trace.source import open_trace


@pytest.fixture(scope="module")
def pcp() -> dict[str, object]:
    with open_trace(str(DD_TRACE)) as lines:
        result = Replayer(layers=("page",), layout=str(ZONEINFO)).run(
            TraceParser().parse(lines), every=500)
    assert result.pcp is not None
    return result.pcp


def test_the_timeline_follows_the_machine(pcp: dict[str, object]) -> None:
    timeline = pcp["timeline"]
    assert isinstance(timeline, dict)
    samples = len(timeline["time"])
    assert samples > 10 and timeline["time"] == sorted(timeline["time"])
    assert all(len(pages) == samples for pages in timeline["free_pages"].values())
    assert all(len(pages) == samples for pages in timeline["pcp_pages"].values())
    zones = pcp["zones"]
    assert isinstance(zones, dict)
    # The last sample is the end: its free pages are the zones' and its pcp pages the CPUs'.
    assert sum(pages[-1] for name, pages in timeline["free_pages"].items()
               if name != "Isolate") == sum(z["free_pages"] for z in zones.values())
    assert [pages[-1] for pages in timeline["pcp_pages"].values()] == [
        sum(z["pcp_pages"][cpu] for z in zones.values()) for cpu in range(2)]


def test_png_and_svg(pcp: dict[str, object], tmp_path: Path) -> None:
    image = Image.open(plot_pcp(pcp, tmp_path / "pcp.png")).convert("RGB")
    assert image.width > 300 and max(ImageStat.Stat(image).stddev) > 5
    text = plot_pcp(pcp, tmp_path / "pcp.svg").read_text()
    assert "<svg" in text and "Movable" in text and "cpu 1" in text


def test_nothing_to_plot_without_a_machine(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="no machine timeline"):
        pcp_figure({})
    with pytest.raises(InvalidArgumentError, match=r"use a \.png or \.svg"):
        plot_pcp({}, tmp_path / "pcp.gif")


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pcp.png"
    assert main(["plot", str(LS_TRACE), "--kind", "pcp", "--warm", "cold", "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert Image.open(out).width > 300
    assert main(["plot", str(LS_TRACE), "--kind", "pcp", "-o", str(tmp_path / "x.bmp")]) == 2
    assert "use a .png or .svg" in capsys.readouterr().err
