"""The report page in a real headless browser (Debian's Chromium, driven by Playwright).

`make test` installs Chromium when it is missing and sets THPREPLAY_REQUIRE_BROWSER=1, so there the
test cannot skip; run by hand without Chromium, it skips and says why.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from report_browser import FIGURES, check, chromium
from thpreplay.report import build as write_report
from thpreplay.simulate import simulate

needs_browser = pytest.mark.skipif(
    chromium() is None and os.environ.get("THPREPLAY_REQUIRE_BROWSER") != "1",
    reason="chromium is not installed (make test installs it)")


@pytest.fixture(scope="module")
def report_page(sample_dataset, tmp_path_factory) -> Path:
    ds = tmp_path_factory.mktemp("browser") / "qemu-6.1-2node"
    shutil.copytree(sample_dataset("qemu-6.1-2node"), ds)
    simulate(ds, policies=["local-only-4.8", "relaxed-5.3-rc5", "no-local-reclaim-7.0"])
    return write_report(ds).path


@needs_browser
def test_the_report_loads_offline_with_every_chart(report_page, tmp_path):
    shot = tmp_path / "report.png"
    page = check(report_page, screenshot=shot)
    assert page.title == "thpreplay report: qemu-6.1-2node"
    assert page.console == [] and page.page_errors == []
    assert page.foreign_requests == []  # the page needs nothing but itself
    assert set(page.figures) == set(FIGURES)
    for name, fig in page.figures.items():
        assert fig["width"] > 300 and fig["height"] > 100, (name, fig)
        assert fig["marks"] > 10, (name, fig)  # bars, boxes, lines: something is drawn
    assert page.tables == 5  # topology, summary, latency by placement, why, validation
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


@needs_browser
@pytest.mark.parametrize("width", [1366, 1400])
def test_the_report_fits_a_laptop_screen(report_page, width):
    """No horizontal scroll bar on a 1366x768 laptop (the summary table scrolls inside its box if it must),
    and the charts fit the window."""
    page = check(report_page, width=width, height=768)
    assert page.overflow == 0 and page.table_overflow == 0  # the summary fits whole, no scrolling in its box
    for name, fig in page.figures.items():
        assert fig["width"] <= width - 40, (name, fig)


@needs_browser
def test_the_browser_check_sees_a_broken_page(tmp_path):
    """The check can fail: a page that fetches from the network, logs an error and lost a chart."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><head><title>x</title><link rel='stylesheet' href='http://192.0.2.1/x.css'>"
                   "</head><body><figure id='outcomes'><svg width='400' height='200'><rect width='10' height='10'/>"
                   "</svg></figure><script>console.error('boom'); undefined_call();</script></body></html>")
    page = check(bad)
    assert page.foreign_requests == ["http://192.0.2.1/x.css"]
    assert any(c.startswith("error: boom") for c in page.console)
    assert page.page_errors and "undefined_call" in page.page_errors[0]
    assert page.figures["latency"] == {"width": 0, "height": 0, "marks": 0}


@pytest.fixture(scope="module")
def fleet_page(sample_dataset, tmp_path_factory) -> Path:
    """A small sweep made in this process: two captures x three policies x two defrag settings."""
    from thpreplay import sweep as sw
    from thpreplay.sim.params import Params

    root = tmp_path_factory.mktemp("fleet") / "S"
    root.mkdir()
    names = ["qemu-6.1-2node-kpf", "local-6.18-kpf"]
    policies = ["local-only-4.8", "relaxed-5.3-rc5", "no-local-reclaim-7.0"]
    caps = sw.plan_captures([str(sample_dataset(n)) for n in names], root)
    sw._record(root, caps, policies, None, ["madvise", "never"], Params())
    for c in caps:
        for defrag in ("madvise", "never"):
            inputs = sw.run_prepare(c.dataset, "madvise", defrag, Params())
            for t in sw.tasks_for(c.name, policies, ["madvise"], [defrag]):
                assert sw.run_simulate(inputs, t, Params(), str(root)) == {}
    return write_report(root).path


@needs_browser
def test_the_fleet_report_loads_offline_with_both_charts(fleet_page):
    from thpreplay.report import FLEET_FIGURES

    page = check(fleet_page, figures=FLEET_FIGURES)
    assert page.title == f"thpreplay fleet report: {fleet_page.parent.name}"
    assert page.console == [] and page.page_errors == [] and page.foreign_requests == []
    for name, fig in page.figures.items():
        assert fig["width"] > 300 and fig["height"] > 100 and fig["marks"] > 10, (name, fig)
    assert page.tables == 3  # pooled, then one per capture
    assert page.overflow == 0  # at 1366 px
    text = fleet_page.read_text()
    assert "2 captures with THP faults (of 2 in the sweep), 6 policy and setting pairs" in text


def test_the_fleet_page_orders_by_era_and_shows_each_capture(fleet_page):
    """No browser needed: policies in era order (not alphabetical), one dot per capture rather than boxes of
    two values, and a table per capture with its as-captured row first."""
    import re

    text = fleet_page.read_text()
    pooled = re.search(r"<table>(.*?)</table>", text, re.S).group(1)
    # the captures' own figures pooled first: 493 + 7 faults of local-6.18-kpf, 48 + 230 + 10 of qemu-6.1-2node-kpf
    assert "<tbody><tr class='cap'><td>as captured</td><td></td><td>2</td><td>788</td><td>97.8%</td><td>—</td>" in pooled
    order = re.findall(r"<tr><td>([a-z0-9.-]+)</td><td>madvise-madvise</td>", pooled)
    assert order == ["local-only-4.8", "relaxed-5.3-rc5", "no-local-reclaim-7.0"]
    figure = text[text.index("<figure id='fleet-coverage'>"):text.index("<figure id='fleet-local'>")]
    assert figure.count("<title>qemu-6.1-2node-kpf, ") == 7  # as captured, then 3 policies x 2 settings
    assert "<title>local-6.18-kpf, as captured: " in figure
    for name in ("local-6.18-kpf", "qemu-6.1-2node-kpf"):
        table = text[text.index(f"<h3>{name}</h3>"):]
        rows = re.findall(r"<tr[^>]*><th>([^<]+)</th><td>([^<]*)</td>", table[:table.index("</table>")])
        assert rows[0] == ("as captured", "")
        assert [p for p, _ in rows[1:4]] == ["local-only-4.8", "local-only-4.8", "relaxed-5.3-rc5"]
