"""How often the lab's real outcomes fall inside the model's 90 % interval (simulate --samples).

    .venv/bin/python sample_traces/lab/score_samples.py [--samples 20] [--seed 1] [--work DIR]

For every capture under sample_traces/fidelity/ (ingested into --work, once): replay it under its own
kernel's policy (as score.py picks it: the bundle's declared `thp_policy`, else the policy its kernel
version resolves to) N times with `validate --samples N --seed S`, each sample drawing what the capture
cannot pin down (sim/samples.py), and count the observed figures of validate's tally (14 per capture)
that lie in the model's p5..p95. Prints the share inside per scenario, per kernel and overall, twice:
over every figure, and over the figures that are not trivially inside (leaving out those where the
observed value, p5 and p95 are one number, mostly zeros on both sides); and a third share, inside the
interval widened as score.py widens a group's observed range, by 10 % or 5 at each end, whichever is
wider (where the model has no spread, a figure off by one or two faults is then not a miss, as it is not
for validate's tolerance). Also the time per sample (a validate with N samples less one with 1, over
N - 1).

With --write (what `make fidelity-samples` runs: 20 samples, seed 1, every capture), it also writes the
shares into docs/fidelity.md between the markers of its "Calibration" section (score.py keeps that section
when it rewrites the rest) and every capture's counts into tests/golden/calibration.csv, which
tests/test_calibration.py checks against the document and, for a subset, against a new run.

The goal: 85-95 % inside. Much less, and the model's spread is too narrow for what the kernels do from
boot to boot; all of it, and the interval may be too wide to say anything.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "sample_traces" / "fidelity"
DOC = ROOT / "docs" / "fidelity.md"
GOLDEN = ROOT / "tests" / "golden" / "calibration.csv"
# docs/fidelity.md's calibration section lies between these (score.py keeps it when it rewrites the rest)
BEGIN, END = "<!-- calibration: score_samples.py --write -->", "<!-- /calibration -->"
NAME = re.compile(r"^(?P<kernel>.+)-s(?P<scenario>\d)-(?P<label>[a-z0-9-]+?)(?:-r(?P<run>\d+))?$")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/score-samples"), help="where the captures are ingested")
    ap.add_argument("--only", default=None, help="a regular expression: the captures to score")
    ap.add_argument("--write", action="store_true", help="write docs/fidelity.md's calibration section and "
                    "tests/golden/calibration.csv (every capture, 20 samples, seed 1 only)")
    args = ap.parse_args()
    if args.write and (args.only or args.samples != 20 or args.seed != 1):
        ap.error("--write publishes the whole lab at 20 samples, seed 1: no --only, --samples or --seed")
    rows = score_captures(args.work, args.samples, args.seed, args.only, verbose=True)
    for line in shares(rows, args.samples, args.seed):
        print(line)
    if args.write:
        GOLDEN.write_text(golden_frame(rows).write_csv())
        write_section(section(rows, args.samples, args.seed))
        print(f"wrote {DOC.relative_to(ROOT)} (calibration section) and {GOLDEN.relative_to(ROOT)}")
    return 0


def score_captures(work: Path, samples: int, seed: int, only: str | None, verbose: bool = False,
                   timed: bool = True) -> list[dict]:
    """One row per capture: the observed figures of validate's tally inside the model's p5..p95 (timed: also
    the time per sample, from one more validate with a single sample)."""

    from thpreplay.ingest import ingest
    from thpreplay.policy.registry import resolve_kernel
    from thpreplay.sim import state
    from thpreplay.validate import validate

    rows = []
    per_sample = []
    for d in sorted(CAPTURES.iterdir()):
        m = NAME.match(d.name)
        if not d.is_dir() or not m or (only and not re.search(only, d.name)):
            continue
        ds = work / d.name
        if not (ds / "dataset.json").is_file():
            ingest([str(d)], ds)
        declared = (state.snapshot_text(ds, "thp_policy") or "").strip()
        release = (state.snapshot_text(ds, "kernel_version") or state.snapshot_text(ds, "kernel_release") or "").strip()
        policy = declared or resolve_kernel(release).name
        t0 = time.perf_counter()
        if timed:
            validate(ds, policy=policy, samples=1, seed=seed)
        t1 = time.perf_counter()
        v = validate(ds, policy=policy, samples=samples, seed=seed)
        t2 = time.perf_counter()
        per_sample.append(((t2 - t1) - (t1 - t0)) / max(samples - 1, 1) if timed else float("nan"))
        inside = sum(1 for r in v.rows if r.in_interval())
        varying = [r for r in v.rows if not (r.interval[0] == r.interval[1] == r.observed)]   # not trivially inside
        vin = sum(1 for r in varying if r.in_interval())
        lo_hi = [(r.interval[0] - max(0.1 * r.interval[0], 5), r.interval[1] + max(0.1 * r.interval[1], 5)) for r in v.rows]
        wide = sum(1 for r, (lo, hi) in zip(v.rows, lo_hi) if lo <= r.observed <= hi)
        kernel = m["kernel"]
        rows.append(dict(capture=d.name, kernel=kernel, scenario=int(m["scenario"]), policy=policy,
                         s_per_sample=per_sample[-1], inside=inside, figures=len(v.rows), vin=vin, varying=len(varying), wide=wide,
                         misses=[f"{r.figure} {r.observed} not in {r.interval[0]:g}..{r.interval[1]:g}"
                                 for r in v.rows if not r.in_interval()]))
        if verbose:
            print(f"{d.name:45} {policy:22} {inside:2}/{len(v.rows)}  not trivial {vin:2}/{len(varying):2}  "
              f"{per_sample[-1]:.2f} s/sample  " + "; ".join(rows[-1]["misses"]), flush=True)

    return rows


def _share(group: list[dict]) -> tuple[int, int, int, int, int]:
    return (sum(r["inside"] for r in group), sum(r["figures"] for r in group), sum(r["vin"] for r in group),
            sum(r["varying"] for r in group), sum(r["wide"] for r in group))


def _pct(a: int, n: int) -> str:
    return f"{100 * a / n:.1f} %" if n else "-"


def _groups(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    return ([(f"scenario {s}", [r for r in rows if r["scenario"] == s]) for s in sorted({r["scenario"] for r in rows})]
            + [(f"kernel {k}", [r for r in rows if r["kernel"] == k]) for k in sorted({r["kernel"] for r in rows})]
            + [("all", rows)])


def shares(rows: list[dict], samples: int, seed: int) -> list[str]:
    """The terminal summary: the shares per scenario, per kernel and overall, and the time per sample."""
    out = [f"\nshare of observed figures inside the model's p5..p95 ({samples} samples, seed {seed})"]
    for name, group in _groups(rows):
        a, n, va, vn, w = _share(group)
        out.append(f"{name}: {a}/{n} = {_pct(a, n)}   not trivially inside {va}/{vn} = {_pct(va, vn)}   "
                   f"widened {w}/{n} = {_pct(w, n)}")
    times = sorted(r["s_per_sample"] for r in rows if r["s_per_sample"] == r["s_per_sample"])
    if times:
        out.append(f"time per sample: median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s "
                   f"({len(rows)} captures, one policy each)")
    return out


GOLDEN_COLUMNS = ("capture", "kernel", "scenario", "policy", "inside", "figures", "vin", "varying", "wide")


def golden_frame(rows: list[dict]):
    import polars as pl

    return pl.DataFrame({c: [r[c] for r in rows] for c in GOLDEN_COLUMNS})


def section(rows: list[dict], samples: int, seed: int) -> str:
    """docs/fidelity.md's calibration section (between its markers)."""
    lines = [
        "## Calibration: how often the kernel's figure lies inside the model's 90 % interval",
        "",
        f"Each capture replayed {samples} times under its own kernel's policy (`validate --samples {samples} --seed "
        f"{seed}`), each sample drawing what the capture cannot pin down (docs/model.md, \"Samples\"): the start "
        "layout where kpageflags is missing, kcompactd's timer phase, the calibrated costs within their scatter, "
        "and how many of the pages the start took untraced the model's start lacks (`untraced_start`). A figure is "
        "inside when the observed value lies in the samples' p5..p95. \"Not trivially inside\" leaves out the "
        "figures where the observed value, p5 and p95 are one number (mostly zeros on both sides); \"widened\" "
        "widens the interval by 10 % or 5 at each end, as validate's tolerance. The goal is 85-95 % inside: much "
        "less, and the model's spread is narrower than the kernels' from boot to boot; all of it, and the interval "
        "may be too wide to tell kernels apart. Written by `make fidelity-samples` "
        "(`sample_traces/lab/score_samples.py --write`), checked by tests/test_calibration.py against "
        "tests/golden/calibration.csv.",
        "",
        "| group | captures | inside p5..p95 | not trivially inside | inside, widened |",
        "|---|---|---|---|---|",
    ]
    for name, group in _groups(rows):
        a, n, va, vn, w = _share(group)
        lines.append(f"| {name} | {len(group)} | {a} / {n} = {_pct(a, n)} | {va} / {vn} = {_pct(va, vn)} | "
                     f"{w} / {n} = {_pct(w, n)} |")
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Put the section between the markers of docs/fidelity.md, or at its end the first time."""
    doc = DOC.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(doc)
    tmp.replace(DOC)


if __name__ == "__main__":
    sys.exit(main())
