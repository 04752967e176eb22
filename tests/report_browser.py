"""Open a `thpreplay report` page in headless Chromium (Debian's package, driven by Playwright) and check it.

Used by tests/test_report_browser.py, and on its own to refresh the screenshot in docs/:

    .venv/bin/python tests/report_browser.py out/qemu-6.1-2node/report.html docs/report.png

The page must load from file:// with no request anywhere else, no console message of level warning or
error, no script error, every chart's SVG drawn at a visible size with marks in it, and nothing wider
than the window (a 1366x768 laptop screen by default: wide tables scroll inside their box).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

FIGURES = ("outcomes", "latency", "free-huge")
# Flags for a root, offline, headless Chromium: without the background-networking ones it tries to
# reach Google's hosts at start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    console: list[str] = field(default_factory=list)   # "level: text" of warnings and errors
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)  # anything not the page itself
    figures: dict[str, dict] = field(default_factory=dict)  # id -> {"width", "height", "marks"}
    tables: int = 0
    title: str = ""
    overflow: int = 0  # pixels the page is wider than the window (0: no horizontal scroll bar)


def check(page_path: Path, screenshot: Path | None = None, figures: tuple[str, ...] = FIGURES,
          width: int = 1366, height: int = 768, full_page: bool = True) -> PageCheck:
    from playwright.sync_api import sync_playwright

    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install chromium)")
    url = page_path.resolve().as_uri()
    result = PageCheck()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: result.console.append(f"{m.type}: {m.text}")
                    if m.type in ("warning", "error") else None)
            page.on("pageerror", lambda e: result.page_errors.append(str(e)))

            def route(r):
                if r.request.url != url:
                    result.foreign_requests.append(r.request.url)
                    return r.abort()
                return r.continue_()

            page.route("**/*", route)
            page.goto(url, wait_until="load")
            result.title = page.title()
            for fig in figures:
                svg = page.locator(f"figure#{fig} > svg")
                box = svg.bounding_box() if svg.count() == 1 and svg.is_visible() else None
                marks = svg.locator("path, rect, use").count() if box else 0
                result.figures[fig] = {"width": box["width"] if box else 0,
                                       "height": box["height"] if box else 0, "marks": marks}
            result.tables = page.locator("table").count()
            result.overflow = page.evaluate(
                "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth")
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=full_page)
        finally:
            browser.close()
    return result


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: report_browser.py REPORT.html [SCREENSHOT.png]")
    out = check(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else None)
    print(out)
    bad = out.console or out.page_errors or out.foreign_requests or out.overflow > 0 or any(
        f["width"] < 100 or f["marks"] == 0 for f in out.figures.values())
    sys.exit(1 if bad else 0)
