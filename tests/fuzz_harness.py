"""The parser check the fuzzer runs (tests/fuzz/fuzz_parse.py) and its findings' tests reuse.

Any bytes, as lines of text, go through format detection and the parser exactly as ingest runs them.
Allowed: a parse in which every line is in at most one table or in the rejects, or thpreplay's own
InputError for a file that is no trace at all. Anything else raises.
"""

from __future__ import annotations

import polars as pl

from thpreplay.errors import InputError
from thpreplay.parse.text import detect_format, detect_layout, parse_lines


def parse_bytes(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    try:
        fmt = detect_format(lines, "fuzz")
    except InputError:
        return
    layout = detect_layout(lines, fmt)
    frame = pl.DataFrame({"line": list(range(1, len(lines) + 1)), "text": lines},
                         schema={"line": pl.Int64, "text": pl.String})
    r = parse_lines(frame, layout, "fuzz", unterminated_last=False)
    seen = [n for f in r.tables.values() if f.height for n in f["line"].to_list()]
    seen += r.rejects["line"].to_list() if r.rejects.height else []
    assert len(seen) == len(set(seen)), "a line parsed twice"
    assert set(seen) <= set(range(1, len(lines) + 1)), "a line number that is not in the input"
