"""The demand is built window by window (sim/demand.py): its result must not depend on the window size,
the op stream must come back in replay order across chunk and window boundaries, and the op file must
leave nothing behind. Real captures: the bundled 2-node sample (page-fault events present), the same
trace with its page-fault events removed (the 'next 512 allocations' rule), and a fidelity capture with
huge-page releases, migrations and regions released at the same free."""

from __future__ import annotations

import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import zstandard

from conftest import SAMPLES
from thpreplay.ingest import ingest
from thpreplay.sim import demand as dm

ARRAYS = ("observed_huge", "used_at_start", "free_at_start", "traced_pages")


def assert_same(a: dm.Demand, b: dm.Demand) -> None:
    assert a.ops.height == b.ops.height
    assert a.ops.frame().equals(b.ops.frame())
    assert a.faults.equals(b.faults)
    assert a.counts == b.counts and a.notes == b.notes
    assert (a.ops.ts_min, a.ops.ts_max) == (b.ops.ts_min, b.ops.ts_max)
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for mt in (0, 2):
        assert np.array_equal(a.pfns_by_migratetype[mt], b.pfns_by_migratetype[mt]), mt


def whole(dataset: Path) -> dm.Demand:
    return dm.build(dataset, "always", "madvise", window_lines=1 << 40)


@pytest.fixture(scope="module")
def fidelity_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("fid") / "ds"
    ingest([str(SAMPLES / "fidelity" / "6.1-local-only-s3-unmovable")], out)
    return out


@pytest.fixture(scope="module")
def without_page_faults(tmp_path_factory):
    """qemu-6.1-2node with every page_fault_user line taken out of its trace."""
    bundle = tmp_path_factory.mktemp("nopf") / "bundle"
    shutil.copytree(SAMPLES / "qemu-6.1-2node", bundle)
    raw = zstandard.ZstdDecompressor().stream_reader(open(bundle / "trace.txt.zst", "rb")).read()
    kept = b"".join(ln for ln in io.BytesIO(raw) if b"page_fault_user:" not in ln)
    assert len(kept) < len(raw)
    (bundle / "trace.txt.zst").unlink()
    (bundle / "trace.txt").write_bytes(kept)
    out = bundle.parent / "ds"
    ingest([str(bundle)], out)
    return out


@pytest.mark.parametrize("window", [4093, 65536])
def test_window_size_does_not_change_the_demand_page_fault_rule(sample_dataset, window):
    ds = sample_dataset("qemu-6.1-2node")
    ref = whole(ds)
    assert ref.counts["region_4k_allocations"] > 0 and ref.counts["releases"] > 0
    assert_same(dm.build(ds, "always", "madvise", window_lines=window), ref)


def test_window_size_does_not_change_the_demand_next_512_rule(without_page_faults):
    ref = whole(without_page_faults)
    assert any("no page-fault events" in n for n in ref.notes)
    assert ref.counts["region_4k_allocations"] > 0
    assert_same(dm.build(without_page_faults, "always", "madvise", window_lines=3001), ref)


def test_next_512_counts_carry_across_windows(without_page_faults, monkeypatch):
    """In the capture every fallback region's task faults its next THP right after 512 allocations, so
    no count ever passes 512. With every other fault hidden from the rule, the allocations after a
    hidden fault go to the fault before it: more than 512 candidates, counted across windows."""
    faults = dm._Builder._faults

    def every_other_fault(self, *args):
        faults(self, *args)
        self.by_task = self.by_task.filter(pl.col("thp_region") % 2 == 0)

    monkeypatch.setattr(dm._Builder, "_faults", every_other_fault)
    ref = whole(without_page_faults)
    per_region = ref.ops.frame().filter((pl.col("kind") == dm.OP_ALLOC) & (pl.col("region") >= 0)).group_by("region").len()
    assert per_region["len"].max() == dm.REGION_PAGES and per_region.height > 50
    assert_same(dm.build(without_page_faults, "always", "madvise", window_lines=3001), ref)


@pytest.mark.slow  # long: make test-slow runs it
def test_window_size_does_not_change_the_demand_releases_and_migrations(fidelity_dataset):
    ref = whole(fidelity_dataset)
    ops = ref.ops.frame()
    assert (ops["kind"] == dm.OP_MIGRATE).sum() > 0
    releases = ops.filter(ops["kind"] == dm.OP_RELEASE)
    # each region ends once, even when two regions end at the same free (regions ordered by number there)
    assert releases["region"].is_unique().all()
    same_line = releases.group_by("line").len().filter(releases.group_by("line").len()["len"] > 1)
    assert same_line.height > 0
    assert_same(dm.build(fidelity_dataset, "always", "madvise", window_lines=2039), ref)


def test_ops_are_in_replay_order_across_merge_chunks(fidelity_dataset, monkeypatch):
    ref = whole(fidelity_dataset)
    monkeypatch.setattr(dm, "_MERGE_CHUNK", 997)
    small = whole(fidelity_dataset)
    assert_same(small, ref)
    ops = small.ops.frame()
    key = ops["line"].to_numpy() * 8 + ops["kind"].to_numpy()
    assert (np.diff(key) >= 0).all()
    # reading in chunks gives the same records as reading all at once
    chunks = list(small.ops.chunks(1000))
    assert len(chunks) == -(-small.ops.height // 1000)
    for name in dm.OP_NAMES:
        assert np.array_equal(np.concatenate([c[name] for c in chunks]), small.ops.read(0, small.ops.height)[name])


def test_the_op_file_leaves_nothing_behind(fidelity_dataset):
    before = sorted(os.listdir(fidelity_dataset))
    d = whole(fidelity_dataset)
    assert d.ops.height > 0
    assert sorted(os.listdir(fidelity_dataset)) == before  # unnamed: gone when closed, even after a kill
    del d


def test_ops_survive_pickling(fidelity_dataset):
    """A prepared demand can be sent to another process (a Dask worker): its ops travel as columns."""
    d = whole(fidelity_dataset)
    back = pickle.loads(pickle.dumps(d))
    assert_same(back, d)
