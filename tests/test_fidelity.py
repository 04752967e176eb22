"""The fidelity lab's captures (sample_traces/fidelity/), replayed as `make fidelity` does.

Every figure of every capture, under its own kernel's policy, and every cross-prediction, must equal
tests/golden/fidelity.csv, which sample_traces/lab/score.py writes together with docs/fidelity.md: the
published scores cannot drift from what the code computes. After a deliberate model change, run
`make fidelity` and review the diff of docs/fidelity.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fidelity_score", ROOT / "sample_traces" / "lab" / "score.py")
score = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(score)

GOLDEN = score.read_golden()
# run 1 of every kernel and scenario: what `make test` replays (the later runs of a scenario are in the
# slow tests, which `make test-slow` and `make fidelity` run)
FIRST_RUNS = [c[0] for c in score.captures() if c[4] == 1]


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> pl.DataFrame:
    return score.score(tmp_path_factory.mktemp("fidelity"))


def test_first_runs_match_the_published_table(tmp_path):
    """Every figure of each kernel's first run of each scenario, under its own kernel's policy, and every
    cross-prediction from the Debian 6.1 capture, as tests/golden/fidelity.csv has it (the ranges over
    runs are the slow tests')."""
    got = score.score(tmp_path, FIRST_RUNS)
    key = ["kind", "capture", "figure"]
    cols = ["policy", "observed", "simulated"]
    want = GOLDEN.filter(pl.col("capture").is_in(FIRST_RUNS)).select(*key, *cols).sort(key)
    got = got.select(*key, *cols).sort(key)
    assert got.equals(want), got.join(want, on=key, how="full", suffix="_golden").filter(
        (pl.col("simulated") != pl.col("simulated_golden")) | (pl.col("observed") != pl.col("observed_golden"))
        | pl.col("simulated").is_null() | pl.col("simulated_golden").is_null())


@pytest.mark.slow
def test_every_capture_is_scored(scored):
    names = {c[0] for c in score.captures()}
    assert names, "no captures under sample_traces/fidelity"
    assert set(scored.filter(pl.col("kind") == "validate")["capture"]) == names
    assert set(GOLDEN["capture"]) == names


@pytest.mark.slow
def test_scores_match_the_published_table(scored):
    key = ["kind", "capture", "figure"]
    cols = ["policy", "observed", "simulated", "range_min", "range_max", "in_range"]
    got = scored.select(*key, *cols).sort(key)
    want = GOLDEN.select(*key, *cols).sort(key)
    assert got.equals(want), got.join(want, on=key, how="full", suffix="_golden").filter(
        (pl.col("simulated") != pl.col("simulated_golden")) | (pl.col("observed") != pl.col("observed_golden"))
        | pl.col("simulated").is_null() | pl.col("simulated_golden").is_null())


@pytest.mark.slow
def test_runs_of_a_scenario_are_grouped(scored):
    """`<name>-rN` is run N of `<name>`: one group, one observed range, every run's replay checked against it."""
    assert score.group_name("6.1-s1-fragmented-movable-r2") == "6.1-s1-fragmented-movable"
    assert score.NAME.match("6.1-s1-fragmented-movable-r12")["run"] == "12"
    assert score.NAME.match("6.1-local-only-s1-fragmented-movable")["run"] is None
    v = scored.filter(pl.col("kind") == "validate")
    for (group, figure), g in v.group_by(
            pl.col("capture").map_elements(score.group_name, return_dtype=pl.String), "figure"):
        assert g["runs"].to_list() == [g.height] * g.height, group
        assert g["range_min"].unique().to_list() == [g["observed"].min()], (group, figure)
        assert g["range_max"].unique().to_list() == [g["observed"].max()], (group, figure)
        assert g["in_range"].to_list() == [score.within_range(s, g["observed"].min(), g["observed"].max())
                                           for s in g["simulated"]]
        if g.height == 1:
            assert g["in_range"].to_list() == g["ok"].to_list(), (group, figure)
    assert score.within_range(63, 70, 70) and not score.within_range(62, 70, 70)
    assert score.within_range(0, 5, 80) and score.within_range(88, 5, 80) and not score.within_range(89, 5, 80)


@pytest.mark.slow
def test_the_document_is_the_table(scored):
    """docs/fidelity.md is exactly what the script writes from these scores (and the calibration section
    score_samples.py --write keeps in it: tests/test_calibration.py checks that one)."""
    assert (ROOT / "docs" / "fidelity.md").read_text() == score.write_doc(scored) + "\n" + score.kept_calibration()


def test_validate_takes_a_patched_kernels_declared_policy(tmp_path):
    """The self-built kernels' release says 6.1.176; their bundles' thp_policy says what they run."""
    import subprocess
    import sys

    thp = str(Path(sys.executable).parent / "thpreplay")
    cap = ROOT / "sample_traces" / "fidelity" / "6.1-local-only-s3-unmovable"
    assert (cap / "thp_policy").read_text().strip() == "local-only-4.8"
    subprocess.run([thp, "ingest", str(cap), "-o", str(tmp_path / "ds"), "-q"], check=True)
    r = subprocess.run([thp, "validate", str(tmp_path / "ds")], capture_output=True, text=True)
    assert r.stdout.splitlines()[0].endswith("-> policy local-only-4.8; tolerance 10% or ±5"), r.stdout
