"""The lab's calibration (issue: predictions with honest error bars): how often the kernel's figure lies in
the model's 90 % interval. sample_traces/lab/score_samples.py --write (make fidelity-samples) publishes it in
docs/fidelity.md and tests/golden/calibration.csv; these tests keep the three in step, and the published
share within the goal."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("score_samples", ROOT / "sample_traces" / "lab" / "score_samples.py")
score_samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(score_samples)

GOLDEN = pl.read_csv(score_samples.GOLDEN, schema_overrides={"kernel": pl.String})
# one capture of each scenario, on the kernel with the most direct reclaim (5.10): what `make test` replays
SUBSET = r"^5\.10-s[1-4]-[a-z-]+$"


def _rows(frame: pl.DataFrame) -> list[dict]:
    return [dict(r, s_per_sample=float("nan")) for r in frame.iter_rows(named=True)]


def test_the_published_section_is_the_golden_s():
    doc = score_samples.DOC.read_text()
    begin, end = doc.index(score_samples.BEGIN) + len(score_samples.BEGIN), doc.index(score_samples.END)
    assert doc[begin:end].strip("\n") == score_samples.section(_rows(GOLDEN), 20, 1)


def test_the_lab_s_share_inside_the_interval_meets_the_goal():
    """85-95 % of the observed figures of every lab capture inside the model's p5..p95 (20 samples)."""
    assert GOLDEN.height == len([d for d in score_samples.CAPTURES.iterdir() if score_samples.NAME.match(d.name)])
    share = GOLDEN["inside"].sum() / GOLDEN["figures"].sum()
    assert 0.85 <= share <= 0.95


def _check(rows: list[dict], names: list[str]) -> None:
    got = pl.DataFrame({c: [r[c] for r in rows] for c in score_samples.GOLDEN_COLUMNS})
    want = GOLDEN.filter(pl.col("capture").is_in(names))
    assert got.equals(want.select(got.columns)), (got, want)


def test_a_new_run_gives_the_golden_counts(tmp_path):
    rows = score_samples.score_captures(tmp_path, 20, 1, SUBSET, timed=False)
    assert len(rows) == 4
    _check(rows, [r["capture"] for r in rows])


@pytest.mark.slow
def test_every_capture_gives_the_golden_counts(tmp_path):
    rows = score_samples.score_captures(tmp_path, 20, 1, None, timed=False)
    _check(rows, GOLDEN["capture"].to_list())
