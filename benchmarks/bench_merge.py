"""Adding one policy to a simulated dataset (simulate keeps the other policies' stored results) against
simulating every policy again, which was the only way to have them all stored before.

    .venv/bin/python benchmarks/bench_merge.py [RUNS]

Both on the ingested sample_traces/qemu-6.1-2node, whole `thpreplay simulate` processes, alternating:
  add   `simulate DS --policy no-local-reclaim-7.0` on a dataset that holds the other eight built-ins
  all   `simulate DS --policy <each of the nine built-ins>`
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys

from common import ROOT, THP, timed, workdir

from thpreplay.policy.builtin import BUILTINS

NEW = "no-local-reclaim-7.0"


def main(runs: int) -> None:
    work = workdir() / "merge"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ds = work / "qemu"
    subprocess.run([THP, "ingest", str(ROOT / "sample_traces" / "qemu-6.1-2node"), "-o", str(ds), "-q"], check=True)
    names = [p.name for p in BUILTINS]
    others = [n for n in names if n != NEW]
    subprocess.run([THP, "simulate", str(ds), "-q", *[a for n in others for a in ("--policy", n)]], check=True)
    eight = work / "eight"
    shutil.copytree(ds / "simulation", eight)
    add, full = [], []
    for _ in range(runs):
        shutil.rmtree(ds / "simulation")
        shutil.copytree(eight, ds / "simulation")
        add.append(timed([THP, "simulate", str(ds), "-q", "--policy", NEW]))
        full.append(timed([THP, "simulate", str(ds), "-q", *[a for n in names for a in ("--policy", n)]]))
    fmt = " ".join(f"{t:.2f}" for t in add), " ".join(f"{t:.2f}" for t in full)
    print(f"add one policy to eight stored: {fmt[0]} s (median {statistics.median(add):.2f} s)")
    print(f"simulate all nine again:        {fmt[1]} s (median {statistics.median(full):.2f} s)")
    print(f"ratio: {statistics.median(full) / statistics.median(add):.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
