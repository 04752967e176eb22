"""What `simulate --samples N` costs: the same one-policy simulate, whole process, without samples (the
reference: the deterministic replay) and with --samples N, alternating.

Usage: python benchmarks/bench_samples.py [ROUNDS] [--samples N] [--policy NAME] DATASET...

Each round runs, for each dataset, `thpreplay simulate DATASET --policy NAME -q` then the same with
`--samples N --seed 1` (the demand cache warmed by a first, untimed run of each, as any second simulate
of a dataset finds it). Prints per dataset the medians and every run, and the time per sample:
(median with samples - median without) / N, as JSON.
"""

from __future__ import annotations

import json
import statistics
import sys

from common import THP, timed


def main() -> None:
    args = sys.argv[1:]
    rounds = int(args.pop(0)) if args and args[0].isdigit() else 5
    n, policy = 20, "no-local-reclaim-7.0"
    for flag in ("--samples", "--policy"):
        if flag in args:
            i = args.index(flag)
            value = args[i + 1]
            del args[i:i + 2]
            n, policy = (int(value), policy) if flag == "--samples" else (n, value)
    out = {}
    for ds in args:
        plain = [THP, "simulate", ds, "--policy", policy, "-q"]
        sampled = plain + ["--samples", str(n), "--seed", "1"]
        timed(plain), timed(sampled)   # warm: the demand cache and the byte-compiled modules
        runs = {"plain": [], "samples": []}
        for _ in range(rounds):
            runs["plain"].append(timed(plain))
            runs["samples"].append(timed(sampled))
        med = {k: statistics.median(v) for k, v in runs.items()}
        out[ds] = dict(policy=policy, samples=n, median_s=med, runs_s=runs,
                       per_sample_s=(med["samples"] - med["plain"]) / n)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
