"""The first and the second `thpreplay simulate` of a dataset: the demand prepared, then read back from
DATASET/cache (sim/cache.py).

Usage: python benchmarks/bench_demand_cache.py N DATASET... [--policy NAME]

N rounds alternate, each a whole process: `rm -rf DATASET/cache` then `thpreplay simulate DATASET
--policy NAME -q` (first: prepares and keeps the demand), then the same simulate again (second: reads
it). Prints the medians, every run and the peak RSS (ru_maxrss of the child), as JSON.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from bench_text import run, summary
from common import THP


def main() -> None:
    args = sys.argv[1:]
    rounds = int(args.pop(0)) if args and args[0].isdigit() else 5
    policy = "no-local-reclaim-7.0"
    if "--policy" in args:
        i = args.index("--policy")
        policy = args[i + 1]
        del args[i:i + 2]
    for ds in map(Path, args):
        first, second = [], []
        for _ in range(rounds):
            shutil.rmtree(ds / "cache", ignore_errors=True)
            first.append(run([THP, "simulate", str(ds), "--policy", policy, "-q"]))
            second.append(run([THP, "simulate", str(ds), "--policy", policy, "-q"]))
        meta = json.loads((ds / "simulation" / "simulation.json").read_text())
        r = {"policy": policy, "demand_ops": meta["demand"].get("ops"), "rounds": rounds,
             "first": summary(first), "second": summary(second)}
        r["second_over_first"] = round(r["second"]["median_s"] / r["first"]["median_s"], 3)
        print(json.dumps({str(ds): r}, indent=1), flush=True)


if __name__ == "__main__":
    main()
