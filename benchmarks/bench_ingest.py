"""Text ingest vs `perf script` on the same real capture, side by side (issue: ingest <= 0.5x).

Records a multi-million-event perf.data with `thpreplay record` (root and perf needed), then runs,
alternating, N times each:
  reference: perf script -F comm,tid,cpu,time,event,trace --ns -i perf.data > perf.txt
  ingest:    thpreplay ingest perf.txt -o DATASET --force -q
and prints medians, the ratio and events per second. Usage: python benchmarks/bench_ingest.py [N]
"""

from __future__ import annotations

import json
import sys

from common import PERF_SCRIPT_ARGS, THP, capture, count_lines, median, rmtree, timed, workdir

PERF_SCRIPT = ["perf", *PERF_SCRIPT_ARGS]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    work = workdir()
    data = capture(work)
    text = work / "perf.txt"
    out = work / "dataset"
    ref, ing = [], []
    for _ in range(runs):
        with open(text, "wb") as f:
            ref.append(timed(PERF_SCRIPT + [str(data)], stdout=f))
        ing.append(timed([THP, "ingest", str(text), "-o", str(out), "--force", "-q"]))
    events = count_lines(text)
    result = {
        "events": events,
        "text_bytes": text.stat().st_size,
        "runs": runs,
        "perf_script_s": [round(x, 3) for x in ref],
        "ingest_s": [round(x, 3) for x in ing],
        "perf_script_median_s": round(median(ref), 3),
        "ingest_median_s": round(median(ing), 3),
        "ratio_ingest_over_perf_script": round(median(ing) / median(ref), 3),
        "perf_script_events_per_s": round(events / median(ref)),
        "ingest_events_per_s": round(events / median(ing)),
    }
    print(json.dumps(result, indent=1))
    rmtree(out)


if __name__ == "__main__":
    main()
