"""What changed from one kernel era to the next, and whether it is larger than the spread (changes.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from conftest import SAMPLES
from test_bad_input import run_cli
from thpreplay import changes
from thpreplay.ingest import ingest
from thpreplay.query import describe, run
from thpreplay.report_text import CHANGES_HEAD


def _summary(rows: dict[str, dict]) -> pl.DataFrame:
    return pl.DataFrame([dict(policy=p, huge_local=r["huge_local"], huge_remote=0, base_local=r["fallback"],
                              base_remote=0, failed=0, compact_stall=0, allocstall=0, pgsteal_direct=0, pswpout=0,
                              latency_p99_us=100.0) for p, r in rows.items()])


def _samples(values: dict[str, list[tuple[int, int]]]) -> dict:
    return {p: [dict(sample=i, huge_local=h, huge_remote=0, base_local=f, base_remote=0, failed=0, compact_stall=0,
                     allocstall=0, pgsteal_direct=0, pswpout=0, latency_p99_us=100.0) for i, (h, f) in enumerate(v)]
            for p, v in values.items()}


def test_a_change_is_beyond_the_spread_only_when_the_intervals_are_apart():
    summary = _summary({"a": dict(huge_local=50, fallback=10), "b": dict(huge_local=20, fallback=12),
                        "c": dict(huge_local=20, fallback=30)})
    figures = _samples({"a": [(50, 10), (48, 12), (52, 8), (49, 11)],
                        "b": [(20, 12), (22, 9), (19, 13), (21, 11)],     # huge_local apart, fallback overlaps
                        "c": [(20, 30), (21, 28), (19, 31), (20, 29)]})   # fallback apart from b's
    got = changes.kernel_changes(summary, figures)
    assert got.height == 2 * len(changes.FIGURES)
    row = {(r["policy_a"], r["figure"]): r for r in got.iter_rows(named=True)}
    assert row["a", "huge_local"]["beyond_spread"] is True and row["a", "huge_local"]["change"] == -30
    assert row["a", "fallback"]["beyond_spread"] is False
    assert row["b", "huge_local"]["beyond_spread"] is False and row["b", "huge_local"]["change"] == 0
    assert row["b", "fallback"]["beyond_spread"] is True
    # the paired change: sample i of b less sample i of a (-30, -26, -33, -28), numpy's linear quantiles
    assert (row["a", "huge_local"]["change_p5"], row["a", "huge_local"]["change_p95"]) == pytest.approx((-32.55, -26.3))
    assert changes.verdicts(got) == [
        "a → b: beyond the spread: huge_local 50 → 20 (1 other change within it)",
        "b → c: beyond the spread: fallback 12 → 30",
    ]


def test_without_samples_there_is_no_verdict():
    summary = _summary({"a": dict(huge_local=50, fallback=10), "b": dict(huge_local=20, fallback=12)})
    got = changes.kernel_changes(summary, None)
    assert got["beyond_spread"].null_count() == got.height and got["change"].to_list()[0] == -30
    assert changes.verdicts(got) == []


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> Path:
    """qemu-6.1-2node-kpf simulated under every policy with 4 samples."""
    ds = tmp_path_factory.mktemp("changes") / "ds"
    ingest([str(SAMPLES / "qemu-6.1-2node-kpf")], ds)
    proc = run_cli(["simulate", str(ds), "--samples", "4"], ds.parent)
    assert proc.returncode == 0, proc.stderr.decode()
    (ds.parent / "simulate.out").write_bytes(proc.stdout)
    return ds


def test_simulate_and_report_say_what_changed_beyond_the_spread(sampled):
    out = (sampled.parent / "simulate.out").read_text().splitlines()
    head = out.index(CHANGES_HEAD)
    # one line per step, wrapped at the console's width
    steps = [line for line in out[head + 1:] if re.match(r"^  [a-z0-9.-]+ → [a-z0-9.-]+: ", line)]
    assert len(steps) == 8 and steps[3].startswith("  local-only-4.8 → relaxed-5.3-rc5: beyond the spread: ")
    report = run_cli(["report", str(sampled)], sampled.parent)
    assert report.returncode == 0 and CHANGES_HEAD in report.stdout.decode()
    page = (sampled / "report.html").read_text()
    assert "<h2>What changed from kernel to kernel</h2>" in page and "local-only-4.8 → relaxed-5.3-rc5" in page


def test_kernel_changes_is_a_table_of_query(sampled):
    got = run([sampled], "select * from kernel_changes order by policy_a, policy_b, figure")
    assert got.height == 8 * len(changes.FIGURES) and set(got["dataset"]) == {sampled.name}
    step = got.filter((pl.col("policy_a") == "local-only-4.8") & (pl.col("figure") == "huge_remote")).row(0, named=True)
    assert step["policy_b"] == "relaxed-5.3-rc5" and step["beyond_spread"] in (True, False)
    assert step["a_p5"] is not None and step["a_p5"] <= step["a_p95"] and step["b_p5"] <= step["b_p95"]
    assert "kernel_changes (computed): " in describe()


def test_kernel_changes_without_samples_has_no_verdict(sampled, tmp_path):
    ds = tmp_path / "plain"
    shutil.copytree(sampled, ds)
    assert run_cli(["simulate", str(ds), "--replace"], tmp_path).returncode == 0
    got = run([ds], "select count(*) as n, count(beyond_spread) as verdicts from kernel_changes")
    assert got.row(0) == (8 * len(changes.FIGURES), 0)
