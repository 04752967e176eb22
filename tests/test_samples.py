"""End to end on the bundled real captures: what ingest reads, and thp_faults against /proc/vmstat."""

from __future__ import annotations

import filecmp
from pathlib import Path

import polars as pl
import pytest

from thpreplay.ingest import ingest

from conftest import DATA, SAMPLE_NAMES, SAMPLES, metadata, read_table

@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_line_read(sample_dataset, name):
    ds = sample_dataset(name)
    meta = metadata(ds)
    assert meta["rejects"] == 0
    assert meta["header_fallback_rows"] == 0  # the fast path reads every line of a real capture
    assert meta["lost_events"] == 0
    events = meta["events"]
    assert events["page_alloc"] > 0 and events["page_free"] > 0 and events["compaction"] > 0
    for table, n in events.items():
        assert read_table(ds, table).height == n


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_thp_faults_match_vmstat_deltas(sample_dataset, name):
    ds = sample_dataset(name)
    faults = read_table(ds, "thp_faults")
    vm = read_table(ds, "vmstat").filter(pl.col("scope") == "system")
    delta = dict(zip(vm.get_column("counter").to_list(), vm.get_column("delta").to_list()))
    pmd = faults.filter(pl.col("first_order") == 9)
    huge = pmd.filter(pl.col("outcome") != "fallback").height
    assert huge == delta["thp_fault_alloc"]
    assert pmd.height - huge == delta["thp_fault_fallback"]
    view = metadata(ds)["thp_faults_trace_view"]
    # compact_stall counts every task's direct compaction; THP faults are most of it here
    assert view["compact_stall_all_tasks"] == delta["compact_stall"]
    assert faults.get_column("compact_stalls").sum() == view["compact_stall"] <= delta["compact_stall"]


def test_qemu_two_nodes_local_and_remote(sample_dataset):
    ds = sample_dataset("qemu-6.1-2node")
    faults = read_table(ds, "thp_faults")
    counts = dict(faults.group_by("outcome").len().rows())
    # workload.log and README: 27 local, 78 remote, 183 fallbacks
    assert counts == {"huge_local": 27, "huge_remote": 78, "fallback": 183}
    assert faults.filter(pl.col("outcome") == "huge_remote").get_column("node").unique().to_list() == [1]
    topo = read_table(ds, "topology").filter(pl.col("spanned") > 0)
    assert topo.select("node", "zone").rows() == [(0, "DMA"), (0, "DMA32"), (1, "DMA32")]
    assert topo.get_column("cpus").to_list() == ["0", "0", "1"]
    meta = metadata(ds)
    assert meta["kernel_release"] == "6.1.0-50-amd64" and meta["gfp_table"] == "6.1"
    assert meta["thp_enabled"] == "madvise" and meta["thp_defrag"] == "madvise"


def test_hand_filled_bundle_fault_by_fault(tmp_path):
    """A bundle made with cp from /proc and /sys (no manifest), 130 real lines of the 6.1 guest;
    every number below was checked by reading the trace."""
    out = tmp_path / "ds"
    ingest([str(DATA / "bundles" / "qemu61-hand")], out)
    f = read_table(out, "thp_faults")
    assert f.get_column("outcome").to_list() == ["huge_local"] + ["huge_remote"] * 6 + ["fallback"]
    fallback = f.row(7, named=True)
    assert fallback["attempts"] == 2 and fallback["first_thisnode"] is True
    assert (fallback["compaction_calls"], fallback["compact_stalls"]) == (3, 3)
    assert (fallback["reclaim_calls"], fallback["pages_reclaimed"]) == (1, 1)
    # first try_to_compact_pages 33.131244, failed last attempt 33.136992, page fault 33.131127
    assert fallback["stall_ns"] == 5_748_000 and fallback["latency_ns"] == 5_865_000
    assert fallback["address"] == 0x7F6726A00000 and fallback["region"] == 0x7F6726A00000
    remote = f.row(1, named=True)
    assert (remote["node"], remote["local_node"], remote["pfn"]) == (1, 0, 0x75800)
    assert remote["stall_ns"] == 14_358_000  # 32.134056 -> 32.148414
    first = f.row(0, named=True)
    assert first["latency_ns"] is None  # its page fault is before the fragment


def test_ingest_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ingest([str(SAMPLES / "qemu-6.1-2node")], a)
    ingest([str(SAMPLES / "qemu-6.1-2node")], b)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    mismatch = [str(p) for p in files_a if not filecmp.cmp(a / p, b / p, shallow=False)]
    assert mismatch == [] or mismatch == ["metadata/part-000000.parquet"] and _meta_same_but_paths(a, b)


def _meta_same_but_paths(a: Path, b: Path) -> bool:
    ma, mb = metadata(a), metadata(b)
    return {k: v for k, v in ma.items() if k != "bundle"} == {k: v for k, v in mb.items() if k != "bundle"}


def test_chunk_boundaries_change_nothing(tmp_path, monkeypatch, sample_dataset):
    """The 38 MB 6.1 trace read in 256 KiB chunks (about 150 of them, with lines, faults and their
    compaction split across chunk boundaries) gives the same tables as the default chunking."""
    import functools

    import thpreplay.ingest as ingest_module
    from thpreplay.inputs import read_chunks

    small = functools.partial(read_chunks, chunk_bytes=256 << 10, first_bytes=64 << 10)
    monkeypatch.setattr(ingest_module, "read_chunks", small)
    out = tmp_path / "small"
    ingest([str(SAMPLES / "qemu-6.1-2node")], out)
    reference = sample_dataset("qemu-6.1-2node")
    for table in ("thp_faults", "page_alloc", "compaction", "page_fault", "rejects"):
        a, b = read_table(out, table), read_table(reference, table)
        assert a.equals(b), table


def _buffer_bytes(frame: pl.DataFrame) -> int:
    """Bytes of the Arrow buffers a frame holds on to (string views count their whole buffers)."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    return sum(b.size for col in table.columns for chunk in col.chunks for b in chunk.buffers() if b is not None)


def test_kept_fault_rows_do_not_hold_the_chunk(sample_dataset):
    """reduce_chunk's rows stay alive to the end of an ingest: they must be copies, not views into
    the chunk's string buffers (which kept every chunk in memory: peak RSS grew with trace size)."""
    from thpreplay.thp_faults import reduce_chunk

    ds = sample_dataset("qemu-6.1-2node")
    tables = {t: read_table(ds, t) for t in ("page_alloc", "page_fault", "compaction", "reclaim")}
    whole = sum(_buffer_bytes(f) for f in tables.values())
    reduced = reduce_chunk(tables)
    kept = reduced.markers + reduced.slowpath
    rows = sum(f.height for f in kept)
    assert 0 < rows < 20_000
    assert sum(_buffer_bytes(f) for f in kept) < 200 * rows < whole / 4


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_c_prefix_and_polars_paths_agree(tmp_path, monkeypatch, sample_dataset, name):
    """The C helper (parse/_prefix.c) and the pure-polars path read every line the same way."""
    from thpreplay.parse import prefix

    if not prefix.AVAILABLE:
        pytest.skip("the C helper is not built")
    monkeypatch.setattr(prefix, "AVAILABLE", False)
    out = tmp_path / "polars"
    ingest([str(SAMPLES / name)], out)
    reference = sample_dataset(name)
    for table in ("page_alloc", "page_free", "compaction", "reclaim", "page_fault", "thp_faults", "rejects"):
        assert read_table(out, table).equals(read_table(reference, table)), table
