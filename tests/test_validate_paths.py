"""`validate`'s per-fault paths and cost figures (issue 13, item 6).

The trace-side labels below were read by hand from the trace text (`zstdcat .../trace.txt.zst`, line
numbers as in the file, which are the dataset's `line`); each fault is named by the line of its last
THP attempt (thp_faults.last_line).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import SAMPLES
from thpreplay.ingest import ingest
from thpreplay.validate import (COST_FIGURES, FIGURES, compare_paths, confusion_matrix, observed_costs,
                                trace_paths, validate)

THP = str(Path(sys.executable).parent / "thpreplay")
QEMU = "qemu-6.1-2node"
FIDELITY = SAMPLES / "fidelity" / "6.1-s1-fragmented-movable"

# qemu-6.1-2node (Debian 6.1, 2 nodes; the first attempt has __GFP_THISNODE, the second not)
QEMU_FAULTS = {
    # 244: mm_page_alloc order=9 pfn=0x3c400 THISNODE, no compaction or reclaim event before it
    244: ("fast → huge_local", None),
    # 324 try_to_compact_pages, 325 suitable continue, 456 end status=success, 457-458 two defer_reset,
    # 459 the THISNODE attempt gets pfn 0x3c200 (node 0)
    459: ("compacted → huge_local", "success"),
    # 462 try, 465 end partial_skipped (DMA32), 466 suitable skipped (DMA); 467 THISNODE attempt fails,
    # 468 the all-node attempt gets pfn 0x75800 (node 1) from the free lists, no second compaction
    468: ("compact_failed → huge_remote", "partial_skipped"),
    # 1433 second try (no THISNODE): node 0 partial_skipped/skipped, 1698 node 1 end status=success,
    # 1699-1700 defer_reset, 1701 pfn 0x43800 (node 1); the first attempt (1432) failed its compaction
    1701: ("compacted → huge_remote", "success"),
    # 1983 try: partial_skipped, skipped, partial_skipped; 2018 direct reclaim (its own suitable checks
    # at 2019/2020/2098 are not the call's); 2100 pfn 0x43a00 (node 1) after reclaim
    2100: ("reclaimed → huge_remote", "partial_skipped"),
    # 4222 the last try (after the reclaim at 4217): deferred (DMA32 node 0), skipped (DMA), deferred
    # (node 1); 4226 pfn=0x0, the fault falls back
    4226: ("reclaimed → fallback", "deferred"),
}
# the lab's Debian 6.1 fragmented-movable run
FIDELITY_FAULTS = {
    244: ("fast → huge_local", None),  # pfn 0x2ca00, nothing before it since the page fault at 241
    376: ("compacted → huge_local", "success"),  # 373 end success, 374-375 defer_reset, 376 pfn 0x2200
    642: ("compact_failed → huge_remote", "partial_skipped"),  # 379 try, 639 partial_skipped, 640 skipped
}


@pytest.fixture
def qemu(sample_dataset, tmp_path) -> Path:
    ds = tmp_path / QEMU
    shutil.copytree(sample_dataset(QEMU), ds)
    return ds


@pytest.fixture(scope="module")
def fidelity(tmp_path_factory) -> Path:
    ds = tmp_path_factory.mktemp("fid") / FIDELITY.name
    ingest([str(FIDELITY)], ds)
    return ds


def _by_last_line(ds: Path) -> dict[int, tuple[str, str | None]]:
    faults = pl.read_parquet(ds / "thp_faults" / "*.parquet").select("fault_id", "last_line")
    t = trace_paths(ds).join(faults, on="fault_id")
    return {line: (path, result) for line, path, result in t.select("last_line", "path", "compact_result").iter_rows()}


def test_trace_paths_by_hand(sample_dataset, fidelity):
    got = _by_last_line(sample_dataset(QEMU))
    for line, want in QEMU_FAULTS.items():
        assert got[line] == want, line
    got = _by_last_line(fidelity)
    for line, want in FIDELITY_FAULTS.items():
        assert got[line] == want, line


def test_trace_paths_agree_with_thp_faults_and_vmstat(sample_dataset, fidelity):
    """Every fault is classified; its stage follows its compaction and reclaim calls; the faults whose
    huge page came from compaction are the kernel's compact_success (vmstat; in these captures only
    the workload's THP faults compact)."""
    for ds in (sample_dataset(QEMU), fidelity):
        faults = pl.read_parquet(ds / "thp_faults" / "*.parquet")
        t = trace_paths(ds).join(faults.select("fault_id", "compaction_calls", "reclaim_calls", "outcome"),
                                 on="fault_id")
        assert t.height == faults.height
        assert (t["stage"] == "reclaimed").equals(t["reclaim_calls"] > 0)
        assert (t["stage"] == "fast").equals((t["compaction_calls"] == 0) & (t["reclaim_calls"] == 0))
        assert t["compact_result"].is_null().equals(t["compaction_calls"] == 0)
        assert (t["placement"] == "fallback").equals(t["outcome"] == "fallback")
        vm = pl.read_parquet(ds / "vmstat" / "*.parquet").filter(
            (pl.col("scope") == "system") & (pl.col("counter") == "compact_success"))["delta"].item()
        assert t.filter(pl.col("stage") == "compacted").height == vm, ds
    # qemu: compact_success 2, the faults ending at 459 and 1701; the lab's 6.1 run: 1 (376)


def _outcomes_like(trace: pl.DataFrame) -> pl.DataFrame:
    """A model outcomes frame that did exactly what the trace did."""
    return trace.select(
        "fault_id",
        pl.when(pl.col("placement") == "fallback").then(pl.lit("base_local")).otherwise(pl.col("placement"))
        .alias("result"),
        (pl.col("stage") == "reclaimed").cast(pl.Int16).alias("reclaim_calls"),
        (pl.col("stage") == "compacted").alias("compaction_succeeded"),
        pl.col("compact_result").is_in(["complete", "partial_skipped", "success", "contended"]).cast(pl.Int16)
        .alias("compaction_attempted"),
        "compact_result",
    )


def test_agreement_on_frames_altered_by_hand(sample_dataset):
    trace = trace_paths(sample_dataset(QEMU))
    n = trace.height
    model = _outcomes_like(trace)
    same = compare_paths(trace, model)
    assert same.agreement == 1.0 and same.agreeing == n
    assert same.compact_agreeing == same.compact_total == trace["compact_result"].is_not_null().sum()

    # ten remote huge pages become base pages in the model: ten faults off, in one cell
    moved = trace.filter(pl.col("path") == "compact_failed → huge_remote").head(10)["fault_id"]
    altered = model.with_columns(pl.when(pl.col("fault_id").is_in(moved.implode())).then(pl.lit("base_remote"))
                                 .otherwise(pl.col("result")).alias("result"))
    c = compare_paths(trace, altered)
    assert c.agreeing == n - 10 and c.agreement == pytest.approx((n - 10) / n)
    off = c.confusion.filter(pl.col("trace_path") != pl.col("model_path"))
    assert off.rows() == [("compact_failed → huge_remote", "compact_failed → fallback", 10)]
    assert c.compact_agreeing == same.compact_agreeing  # the compaction results did not change

    # the fast faults' pages "came from compaction" in the model; one deferred result becomes complete
    fast = trace.filter(pl.col("stage") == "fast")["fault_id"]
    deferred = trace.filter(pl.col("compact_result") == "deferred")["fault_id"][0]
    altered = model.with_columns(
        (pl.col("compaction_succeeded") | pl.col("fault_id").is_in(fast.implode())).alias("compaction_succeeded"),
        pl.when(pl.col("fault_id") == deferred).then(pl.lit("complete")).otherwise(pl.col("compact_result"))
        .alias("compact_result"))
    c = compare_paths(trace, altered)
    assert c.agreeing == n - fast.len()
    assert c.confusion.filter(pl.col("model_path") == "compacted → huge_local")["faults"].sum() == fast.len() + 1
    assert c.compact_total == same.compact_total and c.compact_agreeing == same.compact_agreeing - 1
    assert c.compact_results.filter(pl.col("trace_result") != pl.col("model_result")).rows() == [
        ("deferred", "complete", 1)]

    # a fault the model did not replay is not counted
    c = compare_paths(trace, model.filter(pl.col("fault_id") != moved[0]))
    assert c.total == n - 1 and c.agreement == 1.0


def test_confusion_matrix_has_an_other_bucket():
    rows = [(f"p{i}", f"p{i}", 10 - i) for i in range(10)] + [("p0", "p9", 1)]
    confusion = pl.DataFrame(rows, schema=["trace_path", "model_path", "faults"], orient="row")
    labels, matrix = confusion_matrix(confusion, "trace_path", "model_path", top=8)
    assert labels == ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "other"]
    assert matrix[0][0] == 10 and matrix[0][7] == 1  # p0 -> p9 lands in other
    assert matrix[7][7] == 3 + 2 + 1  # p7, p8, p9 on the diagonal of other
    assert sum(map(sum, matrix)) == confusion["faults"].sum()


def test_validate_agreement_is_the_diagonal(qemu):
    v = validate(qemu)
    paths = v.paths
    assert paths.columns == ["trace_path", "model_path", "faults"]
    total = int(paths["faults"].sum())
    diagonal = int(paths.filter(pl.col("trace_path") == pl.col("model_path"))["faults"].sum())
    assert total == pl.read_parquet(qemu / "thp_faults" / "*.parquet").height == 288
    assert v.agreement == diagonal / total
    assert v.fault_paths.height == total
    cr = v.compact_results
    assert cr.columns == ["trace_result", "model_result", "faults"]
    both = v.fault_paths.filter(pl.col("trace_compact_result").is_not_null()
                                & pl.col("model_compact_result").is_not_null())
    assert int(cr["faults"].sum()) == both.height
    # the 14 figures are unchanged; the cost figures are apart and not in the tally
    assert [r.figure for r in v.rows] == [f for f, _ in FIGURES]
    assert [r.figure for r in v.cost_rows] == [f for f, _ in COST_FIGURES] + [
        "free_huge_pages_node0", "free_huge_pages_node1"]
    assert all(r in v.rows for r in v.failures)


def test_observed_cost_figures(sample_dataset, fidelity):
    """vmstat deltas, and the after-snapshot's free blocks of order >= 9 per node, an order-10 block as
    two. qemu buddyinfo.after: node 0 DMA 2 + 2x2, DMA32 1 + 2x3 = 13; node 1 2 + 2x38 = 78."""
    obs = observed_costs(sample_dataset(QEMU))
    assert obs == {"pgmigrate_success": 1308, "compact_migrate_scanned": 555229, "compact_free_scanned": 18189,
                   "compact_daemon_wake": 0, "pgsteal_kswapd": 0,
                   "free_huge_pages_node0": 13, "free_huge_pages_node1": 78}
    # the lab run's buddyinfo.after: node 0 DMA 2, DMA32 1 (no order 10); node 1 2 + 2x145
    obs = observed_costs(fidelity)
    assert (obs["free_huge_pages_node0"], obs["free_huge_pages_node1"]) == (3, 292)


def test_cli_prints_the_agreement(qemu):
    v = validate(qemu)
    r = subprocess.run([THP, "validate", str(qemu), "--tolerance", "100"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    want = (f"per-fault path agreement: {100 * v.agreement:.1f} % "
            f"({v.path_comparison.agreeing} of {v.path_comparison.total} faults)")
    assert want in lines
    assert re.fullmatch(r"per-fault path agreement: \d{1,3}\.\d % \(\d+ of 288 faults\)", want)
    # after the figures table and its tally; the confusion table's rows are the trace's paths, numbered
    assert lines.index(want) == next(i for i, s in enumerate(lines) if s.endswith("figures within tolerance")) + 1
    assert any(re.search(r"│ 1 reclaimed → fallback +│ +18\d │.*│ +183 │$", s) for s in lines), r.stdout
    assert "cost figures (not in the tally above)" in lines
    assert any(s.startswith("│ free_huge_pages_node1 ") for s in lines)
