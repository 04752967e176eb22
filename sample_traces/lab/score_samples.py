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
NAME = re.compile(r"^(?P<kernel>.+)-s(?P<scenario>\d)-(?P<label>[a-z0-9-]+?)(?:-r(?P<run>\d+))?$")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/score-samples"), help="where the captures are ingested")
    ap.add_argument("--only", default=None, help="a regular expression: the captures to score")
    args = ap.parse_args()

    from thpreplay.ingest import ingest
    from thpreplay.policy.registry import resolve_kernel
    from thpreplay.sim import state
    from thpreplay.validate import validate

    rows = []
    per_sample = []
    for d in sorted(CAPTURES.iterdir()):
        m = NAME.match(d.name)
        if not d.is_dir() or not m or (args.only and not re.search(args.only, d.name)):
            continue
        ds = args.work / d.name
        if not (ds / "dataset.json").is_file():
            ingest([str(d)], ds)
        declared = (state.snapshot_text(ds, "thp_policy") or "").strip()
        release = (state.snapshot_text(ds, "kernel_version") or state.snapshot_text(ds, "kernel_release") or "").strip()
        policy = declared or resolve_kernel(release).name
        t0 = time.perf_counter()
        validate(ds, policy=policy, samples=1, seed=args.seed)
        t1 = time.perf_counter()
        v = validate(ds, policy=policy, samples=args.samples, seed=args.seed)
        t2 = time.perf_counter()
        per_sample.append(((t2 - t1) - (t1 - t0)) / max(args.samples - 1, 1))
        inside = sum(1 for r in v.rows if r.in_interval())
        varying = [r for r in v.rows if not (r.interval[0] == r.interval[1] == r.observed)]   # not trivially inside
        vin = sum(1 for r in varying if r.in_interval())
        lo_hi = [(r.interval[0] - max(0.1 * r.interval[0], 5), r.interval[1] + max(0.1 * r.interval[1], 5)) for r in v.rows]
        wide = sum(1 for r, (lo, hi) in zip(v.rows, lo_hi) if lo <= r.observed <= hi)
        kernel = m["kernel"]
        rows.append(dict(capture=d.name, kernel=kernel, scenario=int(m["scenario"]), policy=policy,
                         inside=inside, figures=len(v.rows), vin=vin, varying=len(varying), wide=wide,
                         misses=[f"{r.figure} {r.observed} not in {r.interval[0]:g}..{r.interval[1]:g}"
                                 for r in v.rows if not r.in_interval()]))
        print(f"{d.name:45} {policy:22} {inside:2}/{len(v.rows)}  not trivial {vin:2}/{len(varying):2}  "
              f"{per_sample[-1]:.2f} s/sample  " + "; ".join(rows[-1]["misses"]), flush=True)

    def share(group: list[dict]) -> str:
        a, n = sum(r["inside"] for r in group), sum(r["figures"] for r in group)
        va, vn = sum(r["vin"] for r in group), sum(r["varying"] for r in group)
        w = sum(r["wide"] for r in group)
        return (f"{a}/{n} = {100 * a / n:.1f} %   not trivially inside {va}/{vn} = "
                f"{(100 * va / vn) if vn else float('nan'):.1f} %   widened {w}/{n} = {100 * w / n:.1f} %")

    print(f"\nshare of observed figures inside the model's p5..p95 ({args.samples} samples, seed {args.seed})")
    for scenario in sorted({r["scenario"] for r in rows}):
        print(f"scenario {scenario}: " + share([r for r in rows if r["scenario"] == scenario]))
    for kernel in sorted({r["kernel"] for r in rows}):
        print(f"kernel {kernel}: " + share([r for r in rows if r["kernel"] == kernel]))
    print("all: " + share(rows))
    per_sample.sort()
    print(f"time per sample: median {per_sample[len(per_sample) // 2]:.2f} s, max {per_sample[-1]:.2f} s "
          f"({len(rows)} captures, one policy each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
