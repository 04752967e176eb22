"""The first and the second `thpreplay simulate` of a dataset: the demand prepared, then read back from
DATASET/cache (sim/cache.py); and the start-up of `thpreplay --version` and `--help`.

Usage: python benchmarks/bench_demand_cache.py N DATASET... [--policy NAME]

N rounds alternate, each a whole process: `rm -rf DATASET/cache` then `thpreplay simulate DATASET
--policy NAME -q` (first: prepares and keeps the demand), then the same simulate again (second: reads
it). With REF_PYTHONPATH set (the pipeline/ directory of a checkout of the code before), each round
also runs the reference's first and second simulate (the cache entries of the two codes are kept side
by side: the key hashes the cache code), and its --version and --help. Prints the medians, every run
and the peak RSS (ru_maxrss of the child), as JSON, with the load average (1 min) before and after
each dataset's rounds: the machine is shared.

Every command runs with its modules byte-compiled (__pycache__ written by a first run, as for any
installed or once-run thpreplay), even where the calling shell sets PYTHONDONTWRITEBYTECODE: importing
from source costs 0.1-0.2 s more and is no user's case.
"""

from __future__ import annotations

import json
import os
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
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    envs = {"new": env}
    if os.environ.get("REF_PYTHONPATH"):
        envs["ref"] = {**env, "PYTHONPATH": os.environ["REF_PYTHONPATH"]}
    results: dict = {}
    for label, e in envs.items():  # byte-compile both codes once
        run([THP, "--help"], env=e)
    start = {f"{label} {what}": [] for label in envs for what in ("--version", "--help")}
    for _ in range(rounds):
        for label, e in envs.items():
            for what in ("--version", "--help"):
                start[f"{label} {what}"].append(run([THP, what], env=e))
    results["start-up"] = {k: summary(v) for k, v in start.items()}
    print(json.dumps({"start-up": results["start-up"]}, indent=1), flush=True)
    for ds in map(Path, args):
        runs = {f"{label} {n}": [] for label in envs for n in ("first", "second")}
        shutil.rmtree(ds / "cache", ignore_errors=True)
        for label, e in envs.items():  # byte-compile the simulate path too
            run([THP, "simulate", str(ds), "--policy", policy, "-q"], env=e)
        load = [round(os.getloadavg()[0], 1)]
        for _ in range(rounds):
            shutil.rmtree(ds / "cache", ignore_errors=True)
            for label, e in envs.items():
                cmd = [THP, "simulate", str(ds), "--policy", policy, "-q"]
                runs[f"{label} first"].append(run(cmd, env=e))
                runs[f"{label} second"].append(run(cmd, env=e))
        load.append(round(os.getloadavg()[0], 1))
        meta = json.loads((ds / "simulation" / "simulation.json").read_text())
        r = {"policy": policy, "demand_ops": meta["demand"].get("ops"), "rounds": rounds, "load_average": load,
             **{k: summary(v) for k, v in runs.items()}}
        r["second_over_first"] = round(r["new second"]["median_s"] / r["new first"]["median_s"], 3)
        if "ref" in envs:
            r["second_new_over_ref"] = round(r["new second"]["median_s"] / r["ref second"]["median_s"], 3)
        results[str(ds)] = r
        print(json.dumps({str(ds): r}, indent=1), flush=True)


if __name__ == "__main__":
    main()
