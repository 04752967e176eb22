"""One policy's replay rate on an ingested dataset: prepare once, then replay each policy N times
(alternating), medians, with the dataset's trace events from its metadata (events/s per policy).

Usage: python benchmarks/bench_replay_rate.py DATASET [N] [POLICY ...]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from thpreplay.sim.state import read_table
from thpreplay.simulate import prepare, replay, select_policies


def main() -> None:
    ds = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    policies = sys.argv[3:] or ["no-local-reclaim-7.0", "local-only-4.8"]
    meta = dict(read_table(ds, "metadata").iter_rows())
    events = sum(json.loads(meta["events"]).values())
    inputs = prepare(ds)
    times: dict[str, list[float]] = {p: [] for p in policies}
    for _ in range(n):
        for p in policies:
            t = time.perf_counter()
            replay(inputs, select_policies([p], None))
            times[p].append(time.perf_counter() - t)
    for p, ts in times.items():
        m = statistics.median(ts)
        print(f"{p:24s} median {m:.2f} s  ({' '.join(f'{t:.2f}' for t in ts)})  {events / m / 1e6:.2f} M events/s")


if __name__ == "__main__":
    main()
