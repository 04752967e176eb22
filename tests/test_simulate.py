"""simulate and validate end to end on the bundled real captures."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import SAMPLES
from thpreplay import schemas
from thpreplay.errors import InputError
from thpreplay.sim.params import Params
from thpreplay.simulate import simulate
from thpreplay.validate import validate

THP = str(Path(sys.executable).parent / "thpreplay")
GOLDEN = Path(__file__).resolve().parent / "golden" / "qemu-6.1-2node.outcome_summary.csv"
QEMU = "qemu-6.1-2node"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([THP, *args], capture_output=True, timeout=300)


@pytest.fixture
def qemu(sample_dataset, tmp_path) -> Path:
    """A private copy of the ingested 2-node sample (simulate writes into the dataset)."""
    ds = tmp_path / QEMU
    shutil.copytree(sample_dataset(QEMU), ds)
    return ds


def _write(ds: Path, table: str, frame: pl.DataFrame) -> None:
    for f in (ds / table).glob("*.parquet"):
        f.unlink()
    schemas.load(table).write(schemas.load(table).conform(frame), ds / table / "part-000000.parquet")


def _scramble_observed(ds: Path) -> None:
    """Change everything the capturing kernel decided: which fault got a huge page where, on which
    attempt, and what thp_faults says the outcome was. Huge pfns are permuted consistently (allocation,
    free, thp_faults row) so each region still ends when the workload freed it."""
    rng = np.random.default_rng(11)
    faults = pl.read_parquet(ds / "thp_faults")
    alloc = pl.read_parquet(ds / "page_alloc")
    free = pl.read_parquet(ds / "page_free")
    huge = sorted(set(alloc.filter(pl.col("thp_attempt") & pl.col("success"))["pfn"].to_list()))
    mapping = dict(zip(huge, rng.permutation(huge).tolist()))
    remap = pl.col("pfn").replace(mapping)
    alloc = alloc.with_columns(pl.when(pl.col("thp_attempt")).then(remap).otherwise(pl.col("pfn")).alias("pfn"))
    # which attempt succeeded: in two-attempt faults, the success moves to the other attempt
    thp_lines = alloc.filter(pl.col("thp_attempt")).select("line", "success", "pfn").sort("line")
    swapped = []
    for f in faults.filter(pl.col("attempts") == 2).iter_rows(named=True):
        a, b = f["first_line"], f["last_line"]
        swapped.append((a, b))
    if swapped:
        rows = {r["line"]: r for r in thp_lines.iter_rows(named=True)}
        new = {}
        for a, b in swapped:
            if a in rows and b in rows:
                new[a], new[b] = rows[b], rows[a]
        fix = pl.DataFrame({"line": list(new), "s2": [r["success"] for r in new.values()],
                            "p2": [r["pfn"] for r in new.values()]})
        alloc = alloc.join(fix, on="line", how="left").with_columns(
            pl.coalesce("s2", "success").alias("success"), pl.coalesce("p2", "pfn").alias("pfn")).drop("s2", "p2")
    alloc = alloc.with_columns(pl.when(pl.col("thp_attempt")).then(pl.lit(1 - 0, pl.Int16) - pl.col("node").fill_null(0))
                               .otherwise(pl.col("node")).alias("node"))
    free = free.with_columns(pl.when(pl.col("order") >= 9).then(remap).otherwise(pl.col("pfn")).alias("pfn"))
    outcomes = ["huge_local", "huge_remote", "fallback"]
    faults = faults.with_columns(
        pl.Series("outcome", [outcomes[i] for i in rng.integers(0, 3, faults.height)]),
        pl.Series("node", rng.integers(0, 2, faults.height).astype(np.int16)),
        pl.col("pfn").replace(mapping),
    )
    _write(ds, "page_alloc", alloc)
    _write(ds, "page_free", free)
    _write(ds, "thp_faults", faults)


def test_the_model_never_reads_what_the_kernel_decided(qemu, tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(qemu, reference)
    # thp_prep_us is measured on the faults the kernel served on the fast path (a cost, not a decision):
    # pinned here so that only decisions could differ
    pinned = tmp_path / "pinned.toml"
    pinned.write_text("thp_prep_us = 100.0\n")
    policies = ["thisnode-noretry-5.6", "local-only-4.8", "relaxed-5.3-rc5"]
    before = simulate(reference, policies=policies, params_file=str(pinned))
    _scramble_observed(qemu)
    assert pl.read_parquet(qemu / "thp_faults")["outcome"].to_list() != pl.read_parquet(reference / "thp_faults")[
        "outcome"].to_list()
    after = simulate(qemu, policies=policies, params_file=str(pinned))
    for b, a in zip(before.runs, after.runs):
        assert b.outcomes.drop("observed_outcome").equals(a.outcomes.drop("observed_outcome")), b.policy
        assert b.counters == a.counters


def test_simulate_writes_every_table_with_its_schema_and_is_deterministic(qemu, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(qemu, other)
    r = run("simulate", str(qemu), "-q")
    assert r.returncode == 0, r.stderr.decode()
    assert run("simulate", str(other), "-q").returncode == 0
    for table in schemas.SIMULATION_TABLES:
        parts = sorted((qemu / "simulation" / table).glob("*.parquet"))
        assert parts and schemas.schema_id_of(parts[0]) == schemas.load(table).id
        for p in parts:
            assert p.read_bytes() == (other / "simulation" / table / p.name).read_bytes(), p
    outcomes = pl.read_parquet(qemu / "simulation" / "outcomes")
    faults = pl.read_parquet(qemu / "thp_faults").height
    assert outcomes.group_by("policy").len()["len"].to_list() == [faults] * 9
    assert set(outcomes["result"].unique()) <= {"huge_local", "huge_remote", "base_local", "base_remote", "failed"}


def test_outcome_summary_golden(qemu):
    """The simulator's totals on the 2-node sample, every built-in policy. Regenerate after a deliberate
    model change with: python tests/test_simulate.py"""
    simulate(qemu)
    summary = _deterministic(pl.read_parquet(qemu / "simulation" / "outcome_summary").drop("kernels"))
    golden = pl.read_csv(GOLDEN, schema_overrides=summary.schema)
    assert summary.equals(golden), summary.select("policy", "huge_local", "huge_remote", "base_local", "compact_stall")


def _deterministic(summary: pl.DataFrame) -> pl.DataFrame:
    """The summary's columns of a run without --samples: its samples column is 0 and every percentile
    column null (outcome_summary.v3), and the golden holds the rest."""
    from thpreplay.simulate import SAMPLED_FIGURES

    sampled = [f"{f}_{q}" for f in SAMPLED_FIGURES for q in ("p5", "p50", "p95")]
    assert summary["samples"].to_list() == [0] * summary.height
    assert all(summary[c].null_count() == summary.height for c in sampled)
    return summary.drop("samples", *sampled)


def test_validate_qemu_sample_is_within_ten_percent(qemu):
    v = validate(qemu)
    assert v.policy == "no-local-reclaim-7.0"  # 6.1.176 carries 9c9828d3ead6 (docs/policies.md)
    rows = {r.figure: r for r in v.rows}
    for figure in ("huge_local", "huge_remote", "fallback", "thp_fault_alloc", "thp_fault_fallback",
                   "compact_stall", "compact_fail", "allocstall", "direct_reclaims"):
        assert rows[figure].ok(0.10, 5), (figure, rows[figure])


def test_validate_kpageflags_sample(sample_dataset, tmp_path):
    """The second 2-node capture starts from /proc/kpageflags: every trace allocation finds its page
    free in the model, and the THP placements, compaction stalls and failures are within 10 %.
    The model's compaction succeeds less often (46 in the kernel, 24: pages freed by migration wait on
    the per-cpu lists until a drain; 36 before its free-list search passed over free blocks the trace
    allocates later and a batch finished the pageblock it had begun, as the kernel's does, 2026-12-04:
    both bring the QEMU host capture to 14 of 14 figures), so it falls back more (10, 24) and reclaims
    directly more often (45, 58); its numa_miss counts one per remote THP where the kernel counted 184
    for its 230 (docs/model.md)."""
    ds = tmp_path / "kpf"
    shutil.copytree(sample_dataset("qemu-6.1-2node-kpf"), ds)
    v = validate(ds)
    rows = {r.figure: r for r in v.rows}
    for figure in ("huge_local", "huge_remote", "thp_fault_alloc", "compact_stall", "compact_fail"):
        assert rows[figure].ok(0.10, 5), (figure, rows[figure])
    for figure in ("direct_reclaims", "allocstall"):
        assert rows[figure].ok(0.30, 5), (figure, rows[figure])
    assert rows["compact_success"].ok(0.50, 5), rows["compact_success"]
    assert v.result.inputs.state.summary["source"] == "kpageflags"
    c = v.result.runs[0].counters
    assert c["placed_by_allocator"] < 0.01 * c["placed_as_traced"]


def test_validate_cli_exit_codes(qemu):
    r = run("validate", str(qemu), "--tolerance", "100")
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert "figures within tolerance" in r.stdout.decode()
    r = run("validate", str(qemu), "--tolerance", "0", "--small", "0")
    assert r.returncode == 1
    assert "off" in r.stdout.decode()


def test_cli_errors_are_one_line(qemu, tmp_path):
    r = run("simulate", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.decode() == f"thpreplay: {tmp_path}: not a thpreplay dataset (no dataset.json); make one with thpreplay ingest\n"
    r = run("simulate", str(qemu), "--policy", "linux-9.9")
    assert r.returncode == 1 and r.stderr.decode().startswith("thpreplay: unknown policy 'linux-9.9'")
    assert len(r.stderr.decode().splitlines()) == 1
    params = tmp_path / "p.toml"
    params.write_text("migrate_us_per_page = 3.0\nwarp_factor = 9\n")
    r = run("simulate", str(qemu), "--params", str(params))
    assert r.returncode == 1
    assert r.stderr.decode().startswith(f"thpreplay: {params}: unknown parameter 'warp_factor' (known: ")
    params.write_text("migrate_us_per_page = [\n")
    r = run("simulate", str(qemu), "--params", str(params))
    assert r.returncode == 1 and r.stderr.decode().startswith(f"thpreplay: {params}: not valid TOML")
    r = run("simulate", str(qemu), "--madvised", "maybe")
    assert r.returncode == 2


@pytest.mark.parametrize("line, message", [
    ("migrate_us_per_page = nan", "parameter 'migrate_us_per_page' = nan is outside 0..8.64e+10 (µs)"),
    ("compact_call_us = -5", "parameter 'compact_call_us' = -5 is outside 0..8.64e+10 (µs)"),
    ("reclaim_us_per_page = 1e308", "parameter 'reclaim_us_per_page' = 1e+308 is outside 0..8.64e+10 (µs)"),
    ("sample_interval_ns = -1", "parameter 'sample_interval_ns' = -1 is outside 0..4.61169e+18 (ns)"),
    ("seed = inf", "parameter 'seed' = inf is outside 0..9.0072e+15 (an integer)"),
    ("seed = 2.5", "parameter 'seed' must be a whole number, not 2.5"),
    ("compact_contention = 1.5", "parameter 'compact_contention' = 1.5 is outside 0..1 (a probability)"),
    ("compaction_proactiveness = 101", "parameter 'compaction_proactiveness' = 101 is outside 0..100 "
                                       "(vm.compaction_proactiveness)"),
])
def test_params_out_of_range_are_refused(tmp_path, line, message):
    """Every number of a --params file is checked against its documented range (sim/params.py RANGES):
    NaN, infinities, negative costs and absurd magnitudes are one line naming the file and the parameter."""
    params = tmp_path / "p.toml"
    params.write_text(line + "\n")
    with pytest.raises(InputError) as e:
        Params.load(params)
    assert str(e.value) == f"{params}: {message}"


def test_every_number_has_a_range():
    from dataclasses import fields
    from thpreplay.sim.params import RANGES
    numbers = {f.name for f in fields(Params) if type(getattr(Params(), f.name)) in (int, float)}
    assert numbers == set(RANGES)
    for name in numbers:   # the defaults lie inside
        lo, hi, _ = RANGES[name]
        assert lo <= getattr(Params(), name) <= hi, name


def test_one_trace_per_dataset(tmp_path):
    """Events are ordered by their line in the trace: two traces in one dataset have no common order."""
    from conftest import DATA
    ds = tmp_path / "two"
    r = run("ingest", str(SAMPLES / QEMU / "trace.txt.zst"), str(DATA / "trace-cmd-report-6.18.txt"), "-o", str(ds), "-q")
    assert r.returncode == 0, r.stderr.decode()
    r = run("simulate", str(ds))
    assert r.returncode == 1
    assert r.stderr.decode() == (
        f"thpreplay: {ds}: simulate replays one trace per dataset; this one holds 2 "
        f"({SAMPLES / QEMU / 'trace.txt.zst'}, {DATA / 'trace-cmd-report-6.18.txt'}): ingest each into its own dataset\n")


def test_params_file_changes_costs_not_decisions(qemu, tmp_path):
    base = simulate(qemu, policies=["local-only-4.8"]).runs[0].outcomes
    params = tmp_path / "p.toml"
    params.write_text("fault_entry_us = 600.0\nmigrate_us_per_page = 1000.0\n")   # dearer than the capture's own
    dear = simulate(qemu, policies=["local-only-4.8"], params_file=str(params)).runs[0].outcomes
    assert base["result"].equals(dear["result"])
    assert dear["latency_ns"].sum() > base["latency_ns"].sum()


def test_costs_come_from_the_capture_and_a_params_file_wins(qemu, tmp_path):
    """The QEMU capture's own direct compactions and kcompactd runs set the costs (sim/calibrate.py):
    they are noted, stored in simulation.json, and a --params value replaces its estimate."""
    result = simulate(qemu, policies=["local-only-4.8"])
    measured = {e["param"]: e for e in json.loads((qemu / "simulation" / "simulation.json").read_text())["calibration"]}
    assert {"compact_call_us", "migrate_us_per_page", "kcompactd_us_per_page"} <= set(measured)
    assert result.inputs.params.migrate_us_per_page == measured["migrate_us_per_page"]["value"] > 20   # QEMU TCG
    assert any(n.startswith("migrate_us_per_page = ") and "measured in the capture" in n for n in result.inputs.notes)
    params = tmp_path / "p.toml"
    params.write_text("migrate_us_per_page = 3.0\n")
    result = simulate(qemu, policies=["local-only-4.8"], params_file=str(params))
    assert result.inputs.params.migrate_us_per_page == 3.0
    assert not any(n.startswith("migrate_us_per_page = ") for n in result.inputs.notes)


def test_a_second_simulate_is_refused_while_one_runs(qemu):
    fd = os.open(qemu / ".simulate.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = run("simulate", str(qemu), "-q")
    finally:
        os.close(fd)
    assert r.returncode == 1
    assert r.stderr.decode() == (f"thpreplay: {qemu}: being simulated by pid {os.getpid()}; wait for it to finish, "
                                 "or pass --wait\n")


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_progress_bar_on_a_terminal(qemu):
    """On a terminal simulate shows a progress bar (rich, on stderr); it must not break the run."""
    r = subprocess.run(["script", "-qec", f"{THP} simulate {qemu} --policy local-only-4.8", "/dev/null"],
                       capture_output=True, timeout=300)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out
    assert "internal error" not in out, out[out.find("internal error") - 100:][:400]
    assert "replaying" in out and "tables:" in out


def test_kernel_option_resolves_the_policy(qemu):
    r = run("simulate", str(qemu), "--kernel", "5.3-rc4", "--kernel", "5.3-rc5", "-q")
    assert r.returncode == 0, r.stderr.decode()
    policies = pl.read_parquet(qemu / "simulation" / "outcome_summary")["policy"].to_list()
    assert policies == ["local-only-4.8", "relaxed-5.3-rc5"]


if __name__ == "__main__":  # regenerate the golden summary
    from thpreplay.ingest import ingest

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "thpreplay-golden"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ingest([str(SAMPLES / QEMU)], tmp / QEMU)
    simulate(tmp / QEMU)
    _deterministic(pl.read_parquet(tmp / QEMU / "simulation" / "outcome_summary").drop("kernels")).write_csv(GOLDEN)
    print(f"wrote {GOLDEN}")
