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

GOLDEN = pl.read_csv(score.GOLDEN)


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> pl.DataFrame:
    return score.score(tmp_path_factory.mktemp("fidelity"))


def test_every_capture_is_scored(scored):
    names = {c[0] for c in score.captures()}
    assert names, "no captures under sample_traces/fidelity"
    assert set(scored.filter(pl.col("kind") == "validate")["capture"]) == names
    assert set(GOLDEN["capture"]) == names


def test_scores_match_the_published_table(scored):
    key = ["kind", "capture", "figure"]
    got = scored.select(*key, "policy", "observed", "simulated").sort(key)
    want = GOLDEN.select(*key, "policy", "observed", "simulated").sort(key)
    assert got.equals(want), got.join(want, on=key, how="full", suffix="_golden").filter(
        (pl.col("simulated") != pl.col("simulated_golden")) | (pl.col("observed") != pl.col("observed_golden"))
        | pl.col("simulated").is_null() | pl.col("simulated_golden").is_null())


def test_the_document_is_the_table(scored):
    """docs/fidelity.md is exactly what the script writes from these scores."""
    assert (ROOT / "docs" / "fidelity.md").read_text() == score.write_doc(scored) + "\n"


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
