"""The trace.dat typed route (parse/tracedat.py typed_chunks, parse/_tracedat.c render_typed) against
the text route (THPREPLAY_TRACEDAT_TEXT=1: every record printed as `trace-cmd report -t` prints it,
which tests/test_tracedat.py compares with trace-cmd's text). Every table equal, column by column, and
the summaries, on every bundled trace.dat; a small first chunk and small typed chunks so that the
typed route reads most of each file across many chunk boundaries.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import polars as pl
import pytest

from test_perfdata_typed import _both_ways
from thpreplay.parse import perfdata, tracedat

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "tracedat"

pytestmark = pytest.mark.skipif(not tracedat.AVAILABLE, reason="the trace.dat renderer is not built")


@pytest.mark.parametrize("name", ["v6.dat.xz", "v7-none.dat.xz", "v7-zlib.dat", "v7-zstd.dat"])
def test_typed_tables_equal_text_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(tracedat, "FIRST_BYTES", 4096)
    seen = _both_ways(tmp_path, monkeypatch, DATA / name, rows=300, text_env=tracedat.TEXT_ENV)
    assert seen["chunks"] > 10 and seen["typed"] > 5000 and seen["text"] > 0


def test_plans_and_reasons() -> None:
    td = tracedat.read(DATA / "v7-zstd.dat")
    holder = tracedat._Typed()
    for _ in tracedat.typed_chunks("v7", td, {}, holder):
        pass
    typed = {event for event, _spec, _plan in holder.plans.values()}
    assert {"mm_page_alloc", "mm_page_free", "page_fault_user"} <= typed
    assert holder.untyped["mm_compaction_isolate_freepages"] == (
        "its print fmt prints keys thpreplay does not type (range: extra_fields)")


def test_a_comm_with_a_dash_or_a_colon_is_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """polars-1, kworker/1:0 (a '-' or ':' in the comm; trace-cmd prints comm-pid): typed, and the tables
    are the text route's. The capture's busiest task, polars-1, renamed po:ars-1 in its cmdlines."""
    raw = lzma.decompress((DATA / "v6.dat.xz").read_bytes())
    assert raw.count(b"\n22427 polars-1\n") == 1
    path = tmp_path / "colon.dat"
    path.write_bytes(raw.replace(b"\n22427 polars-1\n", b"\n22427 po:ars-1\n"))
    monkeypatch.setattr(tracedat, "FIRST_BYTES", 4096)
    seen = _both_ways(tmp_path, monkeypatch, path, rows=300, text_env=tracedat.TEXT_ENV)
    assert seen["typed"] > 8000 and seen["text"] < 300  # of 8,490 records (the text: the first ones, the checked ones)
    comms = pl.read_parquet(str(tmp_path / "typed" / "page_alloc" / "*.parquet")).get_column("comm")
    assert (comms == "po:ars-1").sum() > 500
