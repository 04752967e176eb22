"""Load test (hardening issue): ingest and simulate a >= 20 M-event trace end to end.

Builds the trace from the real THP capture of bench_simulate.py (common.capture_thp, cached in
BENCH_DIR): its perf.data as perf script text, repeated until it holds TARGET million events, each copy's
timestamps shifted past the previous copy's end so that time only moves forward. The snapshots are the
capture's own. Then, each in a child process under /usr/bin/time (wall time, peak RSS):
  ingest:   thpreplay ingest LOAD-BUNDLE -o DATASET --force -q
  simulate: thpreplay simulate DATASET -q            (every built-in policy)
Usage: python benchmarks/bench_load.py [TARGET_MILLION_EVENTS=20] [--keep]
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from bench_simulate import run_child, trace_events
from common import PERF_SCRIPT_ARGS, THP, capture_thp, fresh_bundle_dir, rmtree, workdir

TS = re.compile(rb"^(.*? \d+ \[\d+\] +)(\d+)\.(\d{9}):")


def perf_text(work: Path, data: Path) -> Path:
    out = work / "sim-perf.txt"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            subprocess.run(["perf", *PERF_SCRIPT_ARGS, str(data)], stdout=f, stderr=subprocess.DEVNULL, check=True)
        tmp.rename(out)
    return out


def build(work: Path, bundle: Path, text: Path, target: int) -> tuple[Path, int, int]:
    """WORK/load-bundle with copies of the text, timestamps shifted; returns (bundle, copies, lines)."""
    lines = text.read_bytes().splitlines(keepends=True)
    first = last = None
    for ln in lines:
        m = TS.match(ln)
        if m:
            ns = int(m.group(2)) * 10**9 + int(m.group(3))
            first = ns if first is None else min(first, ns)
            last = ns if last is None else max(last, ns)
    span = last - first + 10**9
    copies = -(-target // len(lines))
    out = fresh_bundle_dir(bundle, work / "load-bundle")
    with open(out / "perf.txt", "wb") as f:
        for k in range(copies):
            if k == 0:
                f.writelines(lines)
                continue
            shift = k * span
            for ln in lines:
                m = TS.match(ln)
                if m:
                    ns = int(m.group(2)) * 10**9 + int(m.group(3)) + shift
                    ln = m.group(1) + b"%d.%09d:" % divmod(ns, 10**9) + ln[m.end():]
                f.write(ln)
    return out, copies, copies * len(lines)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    target = int(float(args[0]) * 1e6) if args else 20_000_000
    work = workdir()
    bundle = capture_thp(work)
    load, copies, lines = build(work, bundle, perf_text(work, bundle / "perf.data"), target)
    ds = work / "load-dataset"
    size = (load / "perf.txt").stat().st_size
    wall_i, rss_i, rc_i, err_i = run_child([THP, "ingest", str(load), "-o", str(ds), "--force", "-q"])
    assert rc_i == 0, err_i
    events = trace_events(ds)
    wall_s, rss_s, rc_s, err_s = run_child([THP, "simulate", str(ds), "-q"])
    assert rc_s == 0, err_s
    result = dict(copies=copies, lines=lines, bytes=size, events=events, ingest_s=round(wall_i, 1),
                  ingest_peak_rss_mib=rss_i, simulate_s=round(wall_s, 1), simulate_peak_rss_mib=rss_s)
    print(json.dumps(result, indent=1))
    print(f"| {events / 1e6:.1f} M events ({size / 1e9:.2f} GB of perf script text, {copies} copies) "
          f"| ingest {wall_i:.0f} s, peak RSS {rss_i:,} MiB | simulate (9 policies) {wall_s:.0f} s, "
          f"peak RSS {rss_s:,} MiB |")
    if "--keep" not in sys.argv:
        rmtree(load)
        rmtree(ds)


if __name__ == "__main__":
    main()
