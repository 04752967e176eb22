"""A capture limited to the workload (`record --workload-only`) against the same workload recorded
system-wide (`record`, the reference): record and ingest wall time (whole process), perf.data size and
the rows of the task-event tables, N alternating runs each. Root and perf needed.

    .venv/bin/python benchmarks/bench_record_filter.py 3

The workload is thpfrag faulting 300 MiB as 4 KiB pages (sample_traces/workload/thpfrag.c); what a
system-wide capture holds beyond it is whatever else the machine runs meanwhile."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import polars as pl

from common import THP, median, thpfrag, timed, workdir

TASK_TABLES = ("page_alloc", "page_free", "page_fault")


def rows(ds: Path) -> tuple[int, int]:
    """(task-event rows, of them thpfrag's)."""
    total = mine = 0
    for t in TASK_TABLES:
        f = pl.scan_parquet(sorted(str(p) for p in (ds / t).glob("*.parquet")), glob=False)
        total += f.select(pl.len()).collect().item()
        mine += f.filter(pl.col("comm") == "thpfrag").select(pl.len()).collect().item()
    return total, mine


def one(work: Path, exe: Path, filtered: bool) -> dict:
    b, ds = work / "b", work / "ds"
    shutil.rmtree(b, ignore_errors=True)
    shutil.rmtree(ds, ignore_errors=True)
    args = [THP, "record", "-o", str(b), *(["--workload-only"] if filtered else []), "--",
            str(exe), "fault", "300", "--no-madvise"]
    rec = timed(args)
    size = (b / "perf.data").stat().st_size
    ing = timed([THP, "ingest", str(b), "-o", str(ds), "-q"])
    total, mine = rows(ds)
    return {"record_s": rec, "ingest_s": ing, "perf_mb": size / 1e6, "rows": total, "workload_rows": mine}


def main(n: int) -> None:
    work = workdir() / "record-filter"
    work.mkdir(parents=True, exist_ok=True)
    exe = thpfrag(workdir())
    runs = {"system-wide": [], "--workload-only": []}
    for _ in range(n):
        for name in runs:
            runs[name].append(one(work, exe, name != "system-wide"))
            r = runs[name][-1]
            print(f"{name:16} record {r['record_s']:.2f} s  ingest {r['ingest_s']:.2f} s  perf.data "
                  f"{r['perf_mb']:.1f} MB  rows {r['rows']:,} (thpfrag {r['workload_rows']:,})", flush=True)
    print(f"\nmedians of {n} alternating runs")
    print("| | record s | ingest s | perf.data MB | task-event rows | thpfrag's |")
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        m = {k: median([r[k] for r in rs]) for k in rs[0]}
        print(f"| {name} | {m['record_s']:.2f} | {m['ingest_s']:.2f} | {m['perf_mb']:.1f} | {m['rows']:,.0f} | "
              f"{m['workload_rows']:,.0f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
