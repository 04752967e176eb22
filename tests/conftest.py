"""Shared fixtures: the bundled real captures ingested once per test session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from thpreplay.ingest import ingest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_traces"
DATA = Path(__file__).resolve().parent / "data"
SAMPLE_NAMES = ["local-6.18-ftrace", "local-6.18-kpf", "local-6.18-perf", "qemu-6.1-2node", "qemu-6.1-2node-kpf"]


def read_table(dataset: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(str(dataset / table / "*.parquet"))


def metadata(dataset: Path) -> dict:
    m = read_table(dataset, "metadata")
    return {k: json.loads(v) for k, v in m.iter_rows()}


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory):
    """Ingest a bundled sample once per session; returns a function name -> dataset path."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            if name == "local-6.18-perf" and shutil.which("perf") is None:
                pytest.skip("perf is needed to decode perf.data")
            out = tmp_path_factory.mktemp("ds") / name
            ingest([str(SAMPLES / name)], out)
            cache[name] = out
        return cache[name]

    return get
