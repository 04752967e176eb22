"""Fragmentation you can see (issue 15 item 5): memory_series carries free blocks per order, the unusable
free space index and the pageblock migratetype mix per node over time, and the `fragmentation` view puts
the capture's own before/after snapshots first.

The snapshot figures were read by hand from sample_traces/qemu-6.1-2node/buddyinfo.before:
    Node 0, zone      DMA      0      0      0      0      0      0      1      1      0      1      3
    Node 0, zone    DMA32  92628      7      4      3      3      3      3      3      0      2     10
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from thpreplay.query import run as query
from thpreplay.sim.engine import unusable_index
from thpreplay.simulate import simulate

QEMU = "qemu-6.1-2node"


@pytest.fixture
def qemu(sample_dataset, tmp_path) -> Path:
    ds = tmp_path / QEMU
    shutil.copytree(sample_dataset(QEMU), ds)
    return ds


def test_unusable_index_is_the_share_of_free_pages_below_the_order():
    blocks = np.array([[4, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0] * 10, [0, 0, 0, 0, 0, 0, 0, 0, 0, 3]])
    assert unusable_index(blocks).tolist() == [4 / 516, 0.0, 0.0]


def test_every_sample_adds_up(qemu):
    run = simulate(qemu, policies=["no-local-reclaim-7.0"]).runs[0]
    s = run.series
    assert s.height > 100 and set(s["node"]) == {0, 1}
    blocks = np.array(s["free_blocks"].to_list())
    assert blocks.shape[1] == 10
    assert (blocks @ (1 << np.arange(10)) == s["free_pages"].to_numpy()).all()
    assert (blocks[:, 9] == s["free_huge_pages"].to_numpy()).all()
    assert np.allclose(unusable_index(blocks), s["unusable_index"].to_numpy())
    # each node's pageblocks: 1 GiB nodes of 512 blocks, whatever their types become
    total = s["unmovable_blocks"] + s["movable_blocks"] + s["reclaimable_blocks"]
    assert set(total.to_list()) <= {512, 511, 510}
    first = s.filter(pl.col("ts_ns") == s["ts_ns"].min()).sort("node")
    # the pagetypeinfo snapshot's block counts, node 0: 1 + 80 unmovable (DMA, DMA32), 2 reclaimable
    assert first["unmovable_blocks"].to_list()[0] == 81 and first["reclaimable_blocks"].to_list()[0] == 2


def test_the_view_puts_the_capture_first(qemu):
    simulate(qemu, policies=["no-local-reclaim-7.0", "local-only-4.8"])
    view = query([qemu], "SELECT * FROM fragmentation")
    assert view["policy"][0] == "as captured"
    captured = view.filter(pl.col("policy") == "as captured").sort("node", "ts_ns")
    assert captured.height == 4   # before and after, two nodes
    before0 = captured.row(0, named=True)
    assert before0["free_huge_pages"] == 3 + 2 * 13          # order 9 (1 + 2) and order 10 (3 + 10) twice
    assert before0["free_blocks"][0] == 92628 and before0["free_blocks"][9] == 29
    free = 92628 + 2 * 7 + 4 * 4 + 8 * 3 + 16 * 3 + 32 * 3 + 64 * 4 + 128 * 4 + 512 * 3 + 1024 * 13
    assert before0["free_pages"] == free
    assert before0["unusable_index"] == pytest.approx((free - 512 * 29) / free)
    assert before0["unmovable_blocks"] is None
    assert set(view["policy"]) == {"as captured", "no-local-reclaim-7.0", "local-only-4.8"}


def test_the_report_draws_fragmentation_and_latency_by_placement(qemu, tmp_path):
    """The page has the fragmentation panels (with the snapshots' marks) and the latency table whose first
    row is the capture's, in the same figures as validate's latency rows."""
    from thpreplay.report import build, fragmentation_snapshots, latency_by_placement

    simulate(qemu, policies=["no-local-reclaim-7.0"])
    page = build(qemu, tmp_path / "r.html").path.read_text(encoding="utf-8")
    assert "<figure id='fragmentation'>" in page and "unusable index" in page
    snaps = fragmentation_snapshots(qemu)
    assert snaps.height == 4 and snaps.filter(pl.col("snapshot") == "before")["unusable_index"][0] == pytest.approx(
        1 - 512 * 29 / (92628 + 2 * 7 + 4 * 4 + 8 * 3 + 16 * 3 + 32 * 3 + 64 * 4 + 128 * 4 + 512 * 3 + 1024 * 13))
    outcomes = pl.read_parquet(qemu / "simulation" / "outcomes")
    table = latency_by_placement(qemu, outcomes, ["no-local-reclaim-7.0"])
    assert table.row(0) == ("as captured", "10.9 ms / 39.8 ms (26)", "10.0 ms / 24.2 ms (78)", "406 µs / 11.0 ms (183)")
    assert "Fault latency by placement" in page and "10.9 ms / 39.8 ms (26)" in page
