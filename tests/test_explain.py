"""Why, per fault (issue 15 item 3): outcomes.why (the model's path), `thpreplay explain` (the trace's
events and path beside each policy's) and what_changed's reasons.

The trace's side of fault 104 of qemu-6.1-2node was read by hand from the trace text (`zstdcat
sample_traces/qemu-6.1-2node/trace.txt.zst | sed -n 1976,2100p`): the page fault at line 1976, an async
compaction of node 0 that ends partial_skipped, the __GFP_THISNODE attempt failing at 1982, a second
compaction of both nodes (node 1 migrates 26 pages, partial_skipped), a direct reclaim that returns 1,
and the all-node attempt getting pfn 0x43a00 on node 1 at line 2100."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from thpreplay.explain import explain, lines
from thpreplay.query import run as query
from thpreplay.sim.engine import BAIL_REASONS, MAX_STEPS, why_text
from thpreplay.simulate import simulate

THP = str(Path(sys.executable).parent / "thpreplay")
QEMU = "qemu-6.1-2node"


@pytest.fixture
def qemu(sample_dataset, tmp_path) -> Path:
    ds = tmp_path / QEMU
    shutil.copytree(sample_dataset(QEMU), ds)
    return ds


def _step(kind: int, code: int = 0, node: int = -1) -> int:
    return kind | code << 8 | (node + 1) << 16   # engine.h STEP()


def test_why_text_formats_the_engine_steps():
    steps = np.zeros(MAX_STEPS, dtype=np.int32)
    path = [_step(1, 1 | 2 | 4, 9), _step(2), _step(5, 2 | 2 << 4), _step(8, 4),
            _step(1, 2, 9), _step(2), _step(3), _step(5, 6 | 2 << 4), _step(6), _step(7), _step(5, 8 | 1 << 4, 1)]
    steps[: len(path)] = path
    assert why_text(steps) == (
        "try local node only (NORETRY): fast path: none → compaction async deferred → gives up: " + BAIL_REASONS[4]
        + " | try any node: fast path: none → kswapd woken → compaction async partial_skipped → direct reclaim"
        " → after reclaim: none → compaction sync-light success, page on node 1")


def test_every_fault_says_why_and_its_last_step_is_its_result(qemu):
    result = simulate(qemu, policies=["no-local-reclaim-7.0", "local-only-4.8", "relaxed-5.3-rc5"])
    for run in result.runs:
        o = run.outcomes
        assert o["why"].null_count() == 0 and o.height == 288
        for res, node, why in o.select("result", "node", "why").iter_rows():
            last = why.split(" | ")[-1]
            if res.startswith("huge"):
                assert last.endswith(f"page on node {node}"), (run.policy, why)
            else:
                assert all("gives up: " in attempt for attempt in why.split(" | ")), (run.policy, why)
    seven = result.runs[0].outcomes
    counts = dict(seven.group_by("why").len().iter_rows())
    assert counts["try local node only (NORETRY): fast path: page on node 0"] == 27
    remote = ("try local node only (NORETRY): fast path: none → min watermark: none → compaction async "
              "partial_skipped → gives up: " + BAIL_REASONS[5] + " | try any node: fast path: page on node 1")
    assert counts[remote] == 76


def test_explain_prints_the_trace_beside_each_policy(qemu):
    simulate(qemu, policies=["no-local-reclaim-7.0", "local-only-4.8"])
    r = subprocess.run([THP, "explain", str(qemu), "104"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == (f"fault 104 of {qemu}: thpfrag pid 364 on cpu 0 (node 0), 2 THP attempt(s), "
                      "trace lines 1982..2100")
    assert out[2] == "as captured: huge_remote (node 1, pfn 0x43a00); latency 33,903 µs, stall 33,810 µs"
    assert out[3] == ("  why: try local node only (NORETRY): compaction async partial_skipped → none | try any node: "
                      "compaction async partial_skipped → direct reclaim (1 page) → page on node 1")
    timeline = [re.sub(r"\s+", " ", s.strip()) for s in out[4:out.index("", 4)] if s]
    assert timeline[0] == "+0.0 µs line 1976 page fault at 0x7f6726800000"
    assert timeline[1] == "+93.0 µs line 1977 direct compaction (try_to_compact_pages order 9, priority async)"
    assert "line 2016 migrated 26, failed 6" in timeline[14]
    assert timeline[-2] == "+24,839.0 µs line 2099 direct reclaim ends: 1 page"
    assert timeline[-1] == "+33,903.0 µs line 2100 THP attempt order 9 (GFP_TRANSHUGE): pfn 0x43a00 on node 1"
    models = [s for s in out if s and not s.startswith(" ") and ":" in s and s.split(":")[0] in
              ("no-local-reclaim-7.0", "local-only-4.8")]
    assert [m.split(":")[0] for m in models] == ["no-local-reclaim-7.0", "local-only-4.8"]
    assert models[1].startswith("local-only-4.8: base_local (node 0); latency ")


def test_explain_replays_policies_asked_for_without_writing(qemu):
    e = explain(qemu, 27, policies=["relaxed-5.3-rc5"], kernels=["4.19"])
    assert [m.policy for m in e.models] == ["relaxed-5.3-rc5", "local-only-4.8"]
    assert e.models[0].result == "huge_remote" and e.models[0].why == "try any node: fast path: page on node 1"
    assert not (qemu / "simulation").exists()
    # without a stored simulation and without a choice: the capturing kernel's policy
    assert [m.policy for m in explain(qemu, 27).models] == ["no-local-reclaim-7.0"]
    assert lines(e)[2].startswith("as captured: huge_remote (node 1, pfn ")


def test_explain_refuses_a_fault_that_is_not_there(qemu):
    r = subprocess.run([THP, "explain", str(qemu), "288"], capture_output=True, text=True, timeout=300)
    assert (r.returncode, r.stderr) == (1, f"thpreplay: {qemu}: no THP fault 288 (fault ids are 0..287)\n")


def test_what_changed_says_why(qemu):
    simulate(qemu, policies=["local-only-4.8", "relaxed-5.3-rc5"])
    changed = query([qemu], "SELECT fault_id, result_a, result_b, why_a, why_b FROM "
                            "what_changed('local-only-4.8', 'relaxed-5.3-rc5') ORDER BY fault_id")
    assert changed.height > 0
    first = changed.row(0, named=True)
    assert (first["result_a"], first["result_b"]) == ("base_local", "huge_remote")
    assert first["why_b"] == "try any node: fast path: page on node 1"
    assert first["why_a"].startswith("try local node only: fast path: none")
    assert pl.Series(changed["why_a"]).str.contains("gives up").all()


def test_the_readme_example_is_what_explain_prints(qemu):
    """README's explain excerpt: every line it shows is a line of the real output, in order (`...` elides)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines()
    start = next(i for i, s in enumerate(readme) if s.startswith("$ thpreplay explain out/qemu-6.1-2node 104"))
    shown = readme[start + 1: readme.index("```", start)]
    argv = readme[start].split()[2:]
    r = subprocess.run([THP, *[str(qemu) if a == "out/qemu-6.1-2node" else a for a in argv]],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = [s.replace(str(qemu), "out/qemu-6.1-2node") for s in r.stdout.splitlines()]
    at = 0
    for line in shown:
        if line.strip() == "...":
            continue
        assert line in out[at:], line
        at = out.index(line, at) + 1


def test_the_report_says_why_per_policy(qemu, tmp_path):
    """The report's "Why" table: the capture's paths as validate reads them, each policy's from its
    outcomes, and the rule that most often ended a policy's failed attempt."""
    from thpreplay.report import build, paths_by_policy

    simulate(qemu, policies=["local-only-4.8", "no-local-reclaim-7.0"])
    outcomes = pl.read_parquet(qemu / "simulation" / "outcomes")
    table = paths_by_policy(qemu, outcomes, ["local-only-4.8", "no-local-reclaim-7.0"])
    assert table["policy"].to_list() == ["as captured", "local-only-4.8", "no-local-reclaim-7.0"]
    assert table["paths"][0].startswith("reclaimed → fallback (183); compact_failed → huge_remote (76); "
                                        "fast → huge_local (26)")
    assert table["paths"][1] == "reclaimed → fallback (261); fast → huge_local (27)"
    assert table["gave up most often"][1] == f"{BAIL_REASONS[8]} (261)"
    page = build(qemu, tmp_path / "r.html").path.read_text(encoding="utf-8")
    assert "Why: the faults' paths" in page and "reclaimed → fallback (261)" in page
