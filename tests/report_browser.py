"""Open a `thpreplay report` page in headless Chromium (Debian's package, driven by Playwright) and check it.

Used by tests/test_report_browser.py, and on its own to refresh the screenshot in docs/ (`make screenshot`):

    .venv/bin/python tests/report_browser.py out/qemu-6.1-2node/report.html docs/report.png

The screenshot carries the text of the page's summary table (a PNG tEXt chunk, `thpreplay-summary`), so
tests/test_screens.py can tell when the figures it shows are no longer what a fresh report prints.

The page must load from file:// with no request anywhere else, no console message of level warning or
error, no script error, every chart's SVG drawn at a visible size with marks in it, and nothing wider
than the window (a 1366x768 laptop screen by default: wide tables scroll inside their box).
"""

from __future__ import annotations

import html
import re
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

FIGURES = ("outcomes", "latency", "free-huge", "fragmentation")
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
    table_overflow: int = 0  # pixels the widest table is wider than its box (it scrolls inside it)


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
            result.table_overflow = page.evaluate(
                "Math.max(0, ...Array.from(document.querySelectorAll('.scroll')).map(d => d.scrollWidth - d.clientWidth))")
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=full_page)
        finally:
            browser.close()
    return result


SUMMARY_KEY = b"thpreplay-summary"


def summary_text(page: str) -> str:
    """The summary table of a report page as text: one line per row, cells separated by ' | '."""
    m = re.search(r"<table class='summary'>(.*?)</table>", page, re.S)
    if m is None:
        return ""
    lines = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(1), re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)
        lines.append(" | ".join(" ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split()) for c in cells))
    return "\n".join(lines)


def embed_text(png: Path, key: bytes, text: str) -> None:
    """Add a tEXt chunk (Latin-1 by the PNG spec, so the text goes as UTF-8 escaped) after the header."""
    data = png.read_bytes()
    body = key + b"\0" + text.encode("unicode_escape")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, then IHDR (length, type, 13 bytes, crc)
    png.write_bytes(data[:ihdr_end] + chunk + data[ihdr_end:])


def read_text(png: Path, key: bytes) -> str | None:
    data = png.read_bytes()
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and body.startswith(key + b"\0"):
            return body[len(key) + 1:].decode("latin-1").encode("latin-1").decode("unicode_escape")
        pos += 12 + length
    return None


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: report_browser.py REPORT.html [SCREENSHOT.png]")
    shot = Path(sys.argv[2]) if len(sys.argv) == 3 else None
    out = check(Path(sys.argv[1]), shot)
    if shot is not None:
        embed_text(shot, SUMMARY_KEY, summary_text(Path(sys.argv[1]).read_text(encoding="utf-8")))
    print(out)
    bad = out.console or out.page_errors or out.foreign_requests or out.overflow > 0 or any(
        f["width"] < 100 or f["marks"] == 0 for f in out.figures.values())
    sys.exit(1 if bad else 0)
