"""The event tables' Parquet parts (ingest.write_part): the declared schema and its stamp, the values
TableSchema.write would store, encodings chosen per column, and the same bytes from the same input."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from thpreplay import ingest, schemas

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_traces" / "qemu-6.1-2node"


def _encodings(part: Path) -> dict[str, set[str]]:
    meta = pq.read_metadata(part)
    out: dict[str, set[str]] = {}
    for g in range(meta.num_row_groups):
        for i in range(meta.num_columns):
            c = meta.row_group(g).column(i)
            out.setdefault(c.path_in_schema, set()).update(c.encodings)
    return out


def test_a_part_holds_what_the_schema_writer_holds(tmp_path: Path) -> None:
    schema = schemas.load("page_fault")
    n = 10_000
    frame = pl.DataFrame({
        "ts_ns": [1_000_000 + 17 * i for i in range(n)], "cpu": [i % 2 for i in range(n)],
        "pid": [400 + i % 3 for i in range(n)], "tgid": [None] * n,
        "comm": [["memfd:sealed-91", "kworker/1:2-eve", None][i % 3] for i in range(n)],
        "event": ["page_fault_user"] * n, "source": ["trace.txt"] * n, "line": list(range(1, n + 1)),
        "address": [(0x7F80_0000_0000 + 4096 * i) for i in range(n)], "ip": [0x7F80_23DF_1751] * n,
        "error_code": [6] * n, "region": [0x7F80_0000_0000] * n,
    }, schema_overrides={"address": pl.UInt64, "ip": pl.UInt64, "region": pl.UInt64, "tgid": pl.Int64})
    schema.write(frame, tmp_path / "polars.parquet")
    ingest.write_part(schema, frame, tmp_path / "part.parquet")
    ingest.write_part(schema, frame, tmp_path / "again.parquet")
    assert (tmp_path / "part.parquet").read_bytes() == (tmp_path / "again.parquet").read_bytes()
    got = pl.read_parquet(tmp_path / "part.parquet")
    assert got.equals(pl.read_parquet(tmp_path / "polars.parquet")) and got.equals(schema.validated(frame))
    assert pq.read_schema(tmp_path / "part.parquet").equals(schema.arrow(), check_metadata=True)
    assert schemas.schema_id_of(tmp_path / "part.parquet") == schema.id
    enc = _encodings(tmp_path / "part.parquet")
    for column in ("ts_ns", "line", "address"):  # many values: deltas
        assert "DELTA_BINARY_PACKED" in enc[column], column
    for column in ("comm", "event", "source", "cpu", "pid", "ip", "error_code"):  # few values: a dictionary
        assert "RLE_DICTIONARY" in enc[column], column
    # the line range sim/demand.py reads from the statistics
    stats = pq.read_metadata(tmp_path / "part.parquet").row_group(0).column(schema.names.index("line")).statistics
    assert (stats.min, stats.max) == (1, n)


def test_the_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        ingest.ingest([str(SAMPLE)], tmp_path / name)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    assert files and files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.parquet"))
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert "DELTA_BINARY_PACKED" in _encodings(sorted((tmp_path / "a" / "page_alloc").glob("*.parquet"))[0])["line"]
