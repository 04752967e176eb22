"""Text ingest against `perf script` on the same captures, side by side, and the ftrace sample.

Usage: python benchmarks/bench_text.py N PERF_DATA... [--ftrace DIR] [--native RELEASE]

For each perf.data: its text is rendered once (`perf script -F comm,tid,cpu,time,event,trace --ns -i F
> F.txt`, ingest's own arguments), then N rounds alternate, each a whole process:
  reference: perf script ... -i F > /dev/null          (what rendering the same events as text costs)
  ingest:    thpreplay ingest F.txt -o DATASET --force -q
  old:       the same ingest with PYTHONPATH=$REF_PYTHONPATH (optional: a checkout of the code before)
The ftrace sample (default sample_traces/local-6.18-ftrace, its trace decompressed once) is ingested N
times alternating with the old code when REF_PYTHONPATH is set. --native RELEASE: ingest each perf.data
itself (thpreplay's reader, `--kernel-release RELEASE`) instead of its text. Prints medians, ratios and the peak
RSS (ru_maxrss of the child) of every command, as JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import PERF_SCRIPT_ARGS, ROOT, count_lines, rmtree, workdir

PY = sys.executable


def run(cmd: list[str], stdout=None, env: dict | None = None) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of one child process."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    took = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}")
    return took, usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime


def summary(runs: list[tuple[float, int, float]]) -> dict:
    """Wall time is the figure; CPU time is printed beside it because this machine is shared (a busy
    neighbour stretches the wall time of a process that uses both cores more than one that uses one)."""
    return {"median_s": round(statistics.median(t for t, _, _ in runs), 3), "runs_s": [round(t, 2) for t, _, _ in runs],
            "median_cpu_s": round(statistics.median(c for _, _, c in runs), 3),
            "max_rss_mib": max(r for _, r, _ in runs)}


def main() -> None:
    args = sys.argv[1:]
    rounds = int(args.pop(0)) if args and args[0].isdigit() else 5
    ftrace = ROOT / "sample_traces" / "local-6.18-ftrace"
    if "--ftrace" in args:
        i = args.index("--ftrace")
        ftrace = Path(args[i + 1]) if args[i + 1] else None  # --ftrace "": none
        del args[i:i + 2]
    native = None
    if "--native" in args:
        i = args.index("--native")
        native = args[i + 1]
        del args[i:i + 2]
    ref = os.environ.get("REF_PYTHONPATH")
    old_env = {**os.environ, "PYTHONPATH": ref} if ref else None
    work = workdir()
    out = work / "text-dataset"
    results = {}
    for data in map(Path, args):
        text = data.with_suffix(".txt")
        if native and not text.exists():
            text = None
        elif not text.exists():
            with open(text, "wb") as f:
                subprocess.run(["perf", *PERF_SCRIPT_ARGS, str(data)], stdout=f, stderr=subprocess.DEVNULL, check=True)
        perf, new, old = [], [], []
        cmd = [PY, "-m", "thpreplay", "ingest", str(data if native else text), "-o", str(out), "--force", "-q",
               *(["--kernel-release", native] if native else [])]
        for _ in range(rounds):
            perf.append(run(["perf", *PERF_SCRIPT_ARGS, str(data)]))
            new.append(run(cmd))
            if old_env:
                old.append(run(cmd, env=old_env))
        r = {"input": "perf.data (thpreplay's reader)" if native else "perf script's text", "rounds": rounds,
             **({"events": count_lines(text), "text_bytes": text.stat().st_size} if text else {}),
             "perf_script": summary(perf), "ingest": summary(new)}
        r["ratio_ingest_over_perf_script"] = round(r["ingest"]["median_s"] / r["perf_script"]["median_s"], 3)
        r["pairwise_ratios"] = [round(n[0] / p[0], 2) for n, p in zip(new, perf)]
        if old:
            r["ingest_old"] = summary(old)
            r["ratio_old_over_perf_script"] = round(r["ingest_old"]["median_s"] / r["perf_script"]["median_s"], 3)
        results[str(data)] = r
        print(json.dumps({str(data): r}, indent=1), flush=True)
    if ftrace:
        src = ftrace / "trace.txt.zst"
        text = work / "ftrace-sample.txt"
        if src.exists() and not text.exists():
            subprocess.run(["zstd", "-d", "-q", "-f", str(src), "-o", str(text)], check=True)
        elif not src.exists():
            text = ftrace / "trace.txt"
        new, old = [], []
        for _ in range(rounds):
            new.append(run([PY, "-m", "thpreplay", "ingest", str(text), "-o", str(out), "--force", "-q"]))
            if old_env:
                old.append(run([PY, "-m", "thpreplay", "ingest", str(text), "-o", str(out), "--force", "-q"], env=old_env))
        r = {"events": count_lines(text), "text_bytes": text.stat().st_size, "ingest": summary(new)}
        if old:
            r["ingest_old"] = summary(old)
            r["ratio_new_over_old"] = round(r["ingest"]["median_s"] / r["ingest_old"]["median_s"], 3)
        results["ftrace"] = r
        print(json.dumps({"ftrace": r}, indent=1), flush=True)
    rmtree(out)


if __name__ == "__main__":
    main()
