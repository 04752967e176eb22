"""Fault latency defined once (schemas: thp_faults.latency_ns = outcomes.latency_ns) and compared by
`validate` per placement (issue 15 item 4).

The trace's side was read from qemu-6.1-2node's thp_faults; the model's side is the calibrated entry cost
plus its slowpath costs plus, for a huge page, the page's preparation (sim/params.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from thpreplay import schemas
from thpreplay.query import run as query
from thpreplay.sim.params import Params
from thpreplay.simulate import simulate
from thpreplay.validate import LatencyRow, compare_latency, validate

THP = str(Path(sys.executable).parent / "thpreplay")
QEMU = "qemu-6.1-2node"


@pytest.fixture
def qemu(sample_dataset, tmp_path) -> Path:
    ds = tmp_path / QEMU
    shutil.copytree(sample_dataset(QEMU), ds)
    return ds


def test_both_sides_declare_the_same_span():
    trace = {c.name: c.description for c in schemas.load("thp_faults").columns}
    model = {c.name: c.description for c in schemas.load("outcomes").columns}
    for column in ("latency_ns", "stall_ns"):
        # the model's description adds how it is made; the definition itself is the trace's word for word
        definition = trace[column].split(";")[0]
        assert model[column].startswith(definition), column


def test_compare_latency_groups_each_side_by_its_own_placement():
    faults = pl.DataFrame({"fault_id": [0, 1, 2, 3], "outcome": ["huge_local", "huge_local", "fallback", "huge_local"],
                           "latency_ns": [10_000, 30_000, 500_000, None]})
    outcomes = pl.DataFrame({"fault_id": [0, 1, 2, 3], "result": ["huge_local", "base_local", "base_remote", "huge_local"],
                             "latency_ns": [12_000, 400_000, 600_000, 7]})
    rows = {(r.placement, r.stat): r for r in compare_latency(faults, outcomes)}
    # fault 3 has no page-fault event: in neither side; no huge_remote on either side: no row
    assert sorted({p for p, _ in rows}) == ["all", "fallback", "huge_local"]
    assert rows["huge_local", "p50"] == LatencyRow("huge_local", "p50", 2, 1, 20.0, 12.0)
    assert rows["fallback", "p50"] == LatencyRow("fallback", "p50", 1, 2, 500.0, 500.0)
    assert rows["all", "p50"].observed == 30.0 and rows["all", "p50"].simulated == 400.0
    assert rows["fallback", "p50"].ok(0.10, 5) and not rows["huge_local", "p50"].ok(0.10, 5)
    # a placement only one side has is within when it holds at most `small` faults
    assert LatencyRow("huge_remote", "p50", 3, 0, 100.0, None).ok(0.10, 5)
    assert not LatencyRow("huge_remote", "p50", 7, 0, 100.0, None).ok(0.10, 5)


def test_model_latency_is_entry_plus_stall_plus_preparation(qemu):
    result = simulate(qemu, policies=["no-local-reclaim-7.0"])
    run, p = result.runs[0], result.inputs.params
    assert (p.fault_entry_us, p.thp_prep_us) == (42.0, 10861.0)
    o = run.outcomes
    huge = o["result"].str.starts_with("huge")
    slow = o["compact_result"].is_not_null() | (o["reclaim_calls"] > 0)
    expect = (o["stall_ns"] - pl.Series([10_861_000]) * (huge & slow).cast(pl.Int64)
              + 42_000 + pl.Series([10_861_000]) * huge.cast(pl.Int64))
    assert o["latency_ns"].equals(expect.alias("latency_ns"))
    # a fast-path huge page is exactly entry + preparation, as the trace's median fast fault
    fast = o.filter(huge & ~slow)
    assert fast.height and set(fast["latency_ns"].to_list()) == {42_000 + 10_861_000}
    assert set(fast["stall_ns"].to_list()) == {0}


def test_validate_prints_latency_per_placement(qemu):
    v = validate(qemu)
    rows = {(r.placement, r.stat): r for r in v.latency_rows}
    assert [k for k in rows] == [(p, s) for p in ("huge_local", "huge_remote", "fallback", "all") for s in ("p50", "p99")]
    # the trace's own figures (thp_faults of the capture)
    assert (rows["huge_local", "p50"].observed, rows["huge_local", "p50"].observed_n) == (10_908.5, 26)
    assert (rows["fallback", "p50"].observed, rows["fallback", "p50"].observed_n) == (406.0, 183)
    r = subprocess.run([THP, "validate", str(qemu), "--tolerance", "100"], capture_output=True, text=True, timeout=300)
    lines = r.stdout.splitlines()
    head = "fault latency, µs: page-fault event to the allocation's return (not in the tally above)"
    assert head in lines
    assert any(s.startswith("│ huge_local  │ p50 │          26/26 │   10,908 │") for s in lines), r.stdout
    assert any(s.endswith("latency figures within tolerance") for s in lines)


def test_latency_by_outcome_view_puts_the_capture_first(qemu):
    simulate(qemu, policies=["no-local-reclaim-7.0", "local-only-4.8"])
    view = query([qemu], "SELECT policy, placement, faults, p50_us FROM latency_by_outcome")
    assert view["policy"][0] == "as captured"
    captured = view.filter(pl.col("policy") == "as captured")
    assert captured.select("placement", "faults").rows() == [("fallback", 183), ("huge_local", 26), ("huge_remote", 78)]
    assert captured.filter(pl.col("placement") == "fallback")["p50_us"][0] == 406.0
    assert set(view["policy"]) == {"as captured", "no-local-reclaim-7.0", "local-only-4.8"}


def test_an_old_params_file_naming_zeroing_is_refused(qemu, tmp_path):
    params = tmp_path / "old.toml"
    params.write_text("thp_zero_us = 300.0\n")
    r = subprocess.run([THP, "simulate", str(qemu), "--params", str(params)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1
    assert r.stderr == (f"thpreplay: {params}: parameter 'thp_zero_us' is gone: fault latency now ends when the "
                        "allocation returns, as the trace's does, so zeroing is in neither side (see fault_entry_us "
                        "and thp_prep_us)\n")
    assert Params().thp_prep_us == 0.0 and Params().fault_entry_us == 1.0
