"""The fixed-width line prefix cut in C (parse/_prefix.c), wrapped as polars frames.

Used when the C helper was built and the file has a fixed layout (text.Layout.fixed without a tgid
column). Every line the helper does not accept, and every file without a fixed layout, takes the
polars path in parse.text, which reads the same lines the same way (the tests run both on the
bundled samples and compare).

The helper also reads the payload fields of the events thpreplay types, from SPECS (kernel/events.py
as data: each event's name, its fields' keys and kinds, and the keys parse/extra.py knows). Its rows
carry `_spec`, `_clean`, `_more` and, per field slot j, `_sv{j}` (the printed value) and `_si{j}` (its
number); parse/text.py _typed uses them for the clean rows and reads the others itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from thpreplay.kernel.events import EVENTS
from thpreplay.parse.extra import known_keys

try:
    from thpreplay.parse import _prefix
except ImportError:  # not built (no compiler): the polars path does all the work
    _prefix = None

AVAILABLE = _prefix is not None

KINDS = {"str": 0, "gfp": 1, "int": 2, "pfn": 3, "bool": 4, "hex": 5}  # _prefix.c's enum
SPEC_NAMES = tuple(EVENTS)
SPECS = tuple(
    (name, tuple((key, KINDS[kind]) for key, (_column, kind) in spec.fields.items()),
     tuple(sorted(known_keys(spec) - set(spec.fields))))
    for name, spec in EVENTS.items()
)
SLOTS = max(len(spec.fields) for spec in EVENTS.values())


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


def _valid_ints(kind: pa.DataType, raw: bytes, valid: bytes, n: int) -> pa.Array:
    return pa.Array.from_buffers(kind, n, [pa.py_buffer(valid), pa.py_buffer(raw)])


def cut(data: bytes, first_line: int, partial_tail: bool, layout, fields: bool = True) -> Cut:
    """fields: read the payload fields too (the `_spec`, `_clean`, `_more`, `_sv*`, `_si*` columns)."""
    ob, cb, tc, ec = layout.fixed
    out = _prefix.cut(
        data, ob, cb, tc, ec, layout.fmt == "perf", layout.lat_width, layout.frac_digits or 0, partial_tail,
        SPECS if fields else None,
    )
    (index, pid, cpu, ts, comm, lat, event, payload, misfit, nlines), read = out if fields else (out, None)
    n = len(index) // 8
    buf = pa.py_buffer(data)
    columns = {}
    if read is not None:
        spec, clean, more, slots = read
        columns["_spec"] = _ints(pa.int16(), spec, n)
        columns["_clean"] = _ints(pa.uint8(), clean, n)
        columns["_more"] = _ints(pa.uint8(), more, n)
        for j, slot in enumerate(slots):  # None: no event of the chunk has a j-th field
            if slot is None:
                columns[f"_sv{j}"], columns[f"_si{j}"] = pa.nulls(n, pa.string_view()), pa.nulls(n, pa.int64())
                continue
            view, num, valid = slot
            columns[f"_sv{j}"] = pa.Array.from_buffers(pa.string_view(), n, [pa.py_buffer(valid), pa.py_buffer(view), buf])
            columns[f"_si{j}"] = _valid_ints(pa.int64(), num, valid, n)
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
        **columns,
    })
    header = pl.from_arrow(table).with_columns(  # type: ignore[union-attr]
        pl.col("line") + first_line, *[pl.col(c).cast(pl.String) for c in ("comm", "lat", "event", "payload")],
        *([pl.col("_clean").cast(pl.Boolean),
           # null where the helper did not read the line: extra.collect looks at those itself
           pl.when(pl.col("_clean") == 1).then(pl.col("_more").cast(pl.Boolean)).alias("_more"),
           *[pl.col(f"_sv{j}").cast(pl.String) for j in range(len(read[3]))]] if read is not None else []),
    )
    spans = memoryview(misfit).cast("q")
    rows = [
        (first_line + spans[i], data[spans[i + 1]:spans[i + 2]].decode("utf-8", errors="replace"))
        for i in range(0, len(spans), 3)
    ]
    rest = pl.DataFrame(rows, schema={"line": pl.Int64, "text": pl.String}, orient="row")
    return Cut(header, rest, nlines, data, first_line)
