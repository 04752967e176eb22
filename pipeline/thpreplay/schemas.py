"""Table schemas, declared once as JSON under the repository's schemas/ directory.

Each schemas/<table>.v<N>.json lists columns (name, type, nullability, unit, description). This module
turns them into Arrow and polars schemas, conforms frames to them, and stamps every Parquet file with
the table name and schema version so that a dataset written by another version is recognised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from thpreplay import arrow_c
from thpreplay.atomic import write_parquet
from thpreplay.errors import SchemaError

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
META_KEY = b"thpreplay.schema"
DATASET_FORMAT = 1  # the layout of a dataset directory (dataset.json "version")

_POLARS = {
    "bool": pl.Boolean,
    "int16": pl.Int16,
    "int32": pl.Int32,
    "int64": pl.Int64,
    "uint64": pl.UInt64,
    "float64": pl.Float64,
    "string": pl.String,
    "list<int64>": pl.List(pl.Int64),
    "list<int32>": pl.List(pl.Int32),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    unit: str | None
    description: str


@dataclass(frozen=True)
class TableSchema:
    table: str
    version: int
    description: str
    columns: tuple[Column, ...]

    @property
    def id(self) -> str:
        return f"{self.table}.v{self.version}"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow(self) -> pa.Schema:
        """The declared schema as a pyarrow Schema (pyarrow is imported here: writing does not need it)."""
        import pyarrow as pa

        # polars hands Arrow large_string/large_list; declaring them avoids a copy per chunk. Parquet
        # stores both the same way. (arrow_c.FORMATS: the same types for the writer.)
        types = {"bool": pa.bool_(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
                 "uint64": pa.uint64(), "float64": pa.float64(), "string": pa.large_string(),
                 "list<int64>": pa.large_list(pa.int64()), "list<int32>": pa.large_list(pa.int32())}
        fields = [pa.field(c.name, types[c.type], nullable=c.nullable) for c in self.columns]
        return pa.schema(fields, metadata={META_KEY: self.id.encode()})

    def polars(self) -> dict[str, pl.DataType]:
        return {c.name: _POLARS[c.type] for c in self.columns}

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Select the declared columns in order with the declared types; absent nullable ones become null."""
        if frame.columns == self.names and frame.dtypes == [_POLARS[c.type] for c in self.columns]:
            return frame  # already so (a frame conformed before, as a write validates it again)
        present = set(frame.columns)
        exprs = []
        for c in self.columns:
            dtype = _POLARS[c.type]
            if c.name in present:
                exprs.append(pl.col(c.name).cast(dtype))
            elif c.nullable:
                exprs.append(pl.lit(None, dtype=dtype).alias(c.name))
            else:
                raise SchemaError(f"{self.id}: required column {c.name!r} missing")
        return frame.select(exprs)

    def validated(self, frame: pl.DataFrame) -> pl.DataFrame:
        """conform(), and a SchemaError if a column declared not nullable holds nulls."""
        out = self.conform(frame)
        for c in self.columns:
            if not c.nullable and out.get_column(c.name).null_count():
                raise SchemaError(f"{self.id}: column {c.name!r} has nulls but is declared not nullable")
        return out

    def write(self, frame: pl.DataFrame, path: Path) -> None:
        """One Parquet file with exactly the declared Arrow schema and the schema id in its metadata
        (polars' writer: about twice as fast here as converting to Arrow and writing with pyarrow). A
        failed write is an OSError naming the file (atomic.write_parquet)."""
        write_parquet(self.validated(frame), path, compression="zstd", metadata={META_KEY.decode(): self.id},
                      arrow_schema=arrow_c.Schema([(c.name, c.type, c.nullable) for c in self.columns],
                                                  {META_KEY.decode(): self.id}))  # = self.arrow(), without pyarrow

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars())


@cache
def load(table: str) -> TableSchema:
    files = sorted(SCHEMA_DIR.glob(f"{table}.v*.json"), key=lambda p: int(p.stem.rsplit(".v", 1)[1]))
    if not files:
        raise SchemaError(f"no schema declared for table {table!r} in {SCHEMA_DIR}")
    doc = json.loads(files[-1].read_text())
    cols = tuple(Column(**c) for c in doc["columns"])
    return TableSchema(doc["table"], doc["version"], doc["description"], cols)


# Tables `thpreplay simulate` writes under DATASET/simulation/; every other table is written by ingest.
SIMULATION_TABLES = ("memory_series", "outcome_summary", "outcomes")


def all_tables() -> list[str]:
    return list(_tables())


@cache  # read once per process, as load() is: a dataset's check asks for every table
def _tables() -> tuple[str, ...]:
    return tuple(sorted({p.name.split(".v")[0] for p in SCHEMA_DIR.glob("*.v*.json")}))


def ingest_tables() -> list[str]:
    return [t for t in all_tables() if t not in SIMULATION_TABLES]


def schema_id_of(path: Path) -> str | None:
    """The schema id stamped in a Parquet file, e.g. 'page_alloc.v1'."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path).metadata or {}  # the Parquet file's key/value metadata
    value = meta.get(META_KEY)
    return value.decode() if value else None
