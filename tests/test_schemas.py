"""Schemas are declared once (schemas/*.json); what ingest writes must be exactly that."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from thpreplay import schemas

GOLDEN = Path(__file__).resolve().parent / "golden" / "schemas.json"
REGENERATE = "python tests/test_schemas.py  # after bumping the schema version"


def _fingerprint() -> dict:
    out = {}
    for table in schemas.all_tables():
        s = schemas.load(table)
        out[s.id] = [[c.name, c.type, c.nullable, c.unit] for c in s.columns]
    return out


def test_schema_files_match_golden():
    """A column change without a version bump fails here; regenerate with the command below."""
    golden = json.loads(GOLDEN.read_text())
    assert _fingerprint() == golden, f"schemas changed: bump the version, then run {REGENERATE}"


def test_every_column_is_documented():
    for table in schemas.all_tables():
        for c in schemas.load(table).columns:
            assert c.description.strip(), f"{table}.{c.name} has no description"


@pytest.mark.parametrize("name", ["qemu-6.1-2node"])
def test_written_parquet_has_declared_schema(sample_dataset, name):
    ds = sample_dataset(name)
    tables = sorted(p.name for p in ds.iterdir() if p.is_dir() and p.name not in ("snapshots", "cache", "simulation"))
    assert tables == schemas.ingest_tables()
    for table in tables:
        declared = schemas.load(table).arrow()
        for part in sorted((ds / table).glob("*.parquet")):
            actual = pq.read_schema(part)
            assert actual.equals(declared, check_metadata=False), f"{part}"
            assert schemas.schema_id_of(part) == schemas.load(table).id
    dataset = json.loads((ds / "dataset.json").read_text())
    assert dataset["schemas"] == {t: schemas.load(t).id for t in tables}


_VALUES = {"bool": True, "int16": -7, "int32": 70_000, "int64": -(1 << 40), "uint64": (1 << 63) + 5,
           "float64": 1.5, "string": "kcompactd0", "list<int64>": [1, -(1 << 40)], "list<int32>": [3, 4]}


@pytest.mark.parametrize("table", schemas.all_tables())
def test_parts_are_written_without_pyarrow_as_with_its_schema(tmp_path, table):
    """TableSchema.write gives polars the declared schema through arrow_c (no pyarrow import): each file is
    byte for byte the one the pyarrow Schema gave (nullability, large types, the schema id), with rows
    (nulls where the schema allows them) and empty; nothing of the exported schemas is left behind."""
    import polars as pl

    from thpreplay import arrow_c

    s = schemas.load(table)
    rows = {c.name: [_VALUES[c.type], None if c.nullable else _VALUES[c.type]] for c in s.columns}
    for frame in (s.conform(pl.DataFrame(rows, schema=s.polars())), s.empty()):
        s.write(frame, tmp_path / "new.parquet")
        frame.write_parquet(tmp_path / "pyarrow.parquet", compression="zstd", arrow_schema=s.arrow(),
                            metadata={schemas.META_KEY.decode(): s.id})
        assert (tmp_path / "new.parquet").read_bytes() == (tmp_path / "pyarrow.parquet").read_bytes()
        assert schemas.schema_id_of(tmp_path / "new.parquet") == s.id
    assert arrow_c._alive == {}


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(_fingerprint(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
