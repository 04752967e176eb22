"""The fixed-width line prefix cut in C (parse/_prefix.c), wrapped as polars frames.

Used when the C helper was built and the file has a fixed layout (text.Layout.fixed without a tgid
column). Every line the helper does not accept, and every file without a fixed layout, takes the
polars path in parse.text, which reads the same lines the same way (the tests run both on the
bundled samples and compare).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

try:
    from thpreplay.parse import _prefix
except ImportError:  # not built (no compiler): the polars path does all the work
    _prefix = None

AVAILABLE = _prefix is not None


@dataclass
class Cut:
    header: pl.DataFrame  # header columns (text._HEADER_COLS) of the lines that fit
    rest: pl.DataFrame  # (line, text) of the others
    lines: int  # lines in the chunk, its cut-off tail not counted
    data: bytes
    first_line: int

    def text_of(self, lines: pl.Series) -> pl.DataFrame:
        """(line, text) of some header rows, for rejects: rare, so plain Python."""
        wanted = {n - self.first_line for n in lines.to_list()}
        rows = [
            (self.first_line + i, raw.rstrip(b"\r").decode("utf-8", errors="replace"))
            for i, raw in enumerate(self.data.split(b"\n"))
            if i in wanted
        ]
        return pl.DataFrame(rows, schema={"line": pl.Int64, "text": pl.String}, orient="row")


def _views(data: pa.Buffer, views: bytes, n: int) -> pa.Array:
    return pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(views), data])


def _ints(kind: pa.DataType, raw: bytes, n: int) -> pa.Array:
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(raw)])


def cut(data: bytes, first_line: int, partial_tail: bool, layout) -> Cut:
    ob, cb, tc, ec = layout.fixed
    index, pid, cpu, ts, comm, lat, event, payload, misfit, nlines = _prefix.cut(
        data, ob, cb, tc, ec, layout.fmt == "perf", layout.lat_width, layout.frac_digits or 0, partial_tail
    )
    n = len(index) // 8
    buf = pa.py_buffer(data)
    table = pa.table({
        "line": _ints(pa.int64(), index, n),
        "comm": _views(buf, comm, n),
        "pid": _ints(pa.int64(), pid, n),
        "tgid": pa.nulls(n, pa.int64()),
        "cpu": _ints(pa.int64(), cpu, n),
        "lat": _views(buf, lat, n) if layout.lat_width else pa.nulls(n, pa.string_view()),
        "ts_ns": _ints(pa.int64(), ts, n),
        "event": _views(buf, event, n),
        "payload": _views(buf, payload, n),
    })
    header = pl.from_arrow(table).with_columns(  # type: ignore[union-attr]
        pl.col("line") + first_line, *[pl.col(c).cast(pl.String) for c in ("comm", "lat", "event", "payload")]
    )
    spans = memoryview(misfit).cast("q")
    rows = [
        (first_line + spans[i], data[spans[i + 1]:spans[i + 2]].decode("utf-8", errors="replace"))
        for i in range(0, len(spans), 3)
    ]
    rest = pl.DataFrame(rows, schema={"line": pl.Int64, "text": pl.String}, orient="row")
    return Cut(header, rest, nlines, data, first_line)
