"""Ingest against the tool that prints the same trace, and against the code before (issue 16's ingest goals).

For each input, alternating, N rounds of whole processes (start-up included; wall and CPU = user + system
from wait4; the 1-minute load average after each round, since other work on the machine moves the times):
  tool:  perf script -F comm,tid,cpu,time,event,trace --ns -i F > /dev/null   (a perf.data, or the
         perf.data a text file was printed from: F with .txt replaced by .data)
         trace-cmd report F > /dev/null                                       (a trace.dat)
  ref:   thpreplay ingest F -o DS --force -q [ARGS]  with PYTHONPATH=$REF_PYTHONPATH (the code before)
  new:   the same with this checkout
then the two datasets' tables are compared (polars equals, schema included; metadata but for the
version) and their Parquet bytes counted. Prints JSON: medians, runs, ratios to the tool.

    REF_PYTHONPATH=/path/to/ref/pipeline python benchmarks/bench_ingest_parquet.py N INPUT[=ARGS] ...

ARGS: extra ingest arguments for that input, comma-separated (e.g. big1.perf.data=--kernel-release,6.18.44).
OPENBLAS_NUM_THREADS=1 is set for both ingests (as the console script sets it), so that the two differ only
by the code under test.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import PERF_SCRIPT_ARGS, THP, rmtree, workdir


def run(cmd: list[str], env: dict) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}\n{err[-2000:]}")
    return round(wall, 3), round(usage.ru_utime + usage.ru_stime, 3)


def tool(path: Path) -> list[str]:
    if path.suffix == ".dat":
        return ["trace-cmd", "report", str(path)]
    data = path.with_suffix(".data") if path.suffix == ".txt" else path
    return ["perf", *PERF_SCRIPT_ARGS, str(data)]


def tables_equal(a: Path, b: Path) -> bool:
    import polars as pl
    for table in sorted(p.name for p in a.iterdir() if p.is_dir() and p.name != "snapshots"):
        x, y = (pl.read_parquet(str(d / table / "*.parquet")) for d in (a, b))
        if table == "metadata":
            x, y = (f.filter(pl.col("key") != "thpreplay_version") for f in (x, y))
        if not (x.equals(y) and x.schema == y.schema):
            print(f"{table}: the tables differ", file=sys.stderr)
            return False
    return True


def parquet_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*.parquet"))


def bench(spec: str, rounds: int, ref: str) -> dict:
    path, _, extra = spec.partition("=")
    path = Path(path)
    args = [a for a in extra.split(",") if a]
    work = workdir()
    base = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    here = str(Path(__file__).resolve().parents[1] / "pipeline")
    out = {"ref": work / "parquet-ref", "new": work / "parquet-new"}
    cmds = {"tool": (tool(path), dict(os.environ))}
    for k, pythonpath in (("ref", ref), ("new", here)):
        cmds[k] = ([THP, "ingest", str(path), "-o", str(out[k]), "--force", "-q", *args],
                   {**base, "PYTHONPATH": pythonpath})
    wall: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    load = [round(os.getloadavg()[0], 1)]
    for _ in range(rounds):
        for k, (cmd, env) in cmds.items():
            w, c = run(cmd, env)
            wall[k].append(w)
            cpu[k].append(c)
        load.append(round(os.getloadavg()[0], 1))
    med = {k: round(statistics.median(v), 3) for k, v in wall.items()}
    medc = {k: round(statistics.median(v), 3) for k, v in cpu.items()}
    result = {
        "input": str(path), "args": args, "tool": " ".join(cmds["tool"][0][:2]), "rounds": rounds,
        "wall_s": wall, "cpu_s": cpu, "median_wall_s": med, "median_cpu_s": medc, "load_1min_per_round": load,
        "ratio_to_tool": {k: {"wall": round(med[k] / med["tool"], 3), "cpu": round(medc[k] / medc["tool"], 3)}
                          for k in ("ref", "new")},
        "tables_equal_ref_new": tables_equal(out["ref"], out["new"]),
        "parquet_bytes": {k: parquet_bytes(d) for k, d in out.items()},
    }
    for d in out.values():
        rmtree(d)
    return result


def main() -> None:
    args = sys.argv[1:]
    rounds = int(args.pop(0)) if args and args[0].isdigit() else 5
    ref = os.environ.get("REF_PYTHONPATH")
    if not ref or not args:
        raise SystemExit(__doc__)
    results = {"host": f"{platform.node()} {platform.release()}, {os.cpu_count()} CPUs",
               "inputs": [bench(a, rounds, ref) for a in args]}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
