"""perf.data: `perf script` vs thpreplay's own reader, side by side on real captures.

For each perf.data given (default: the two captures of BENCHMARKS.md in /tmp/perfdata), alternating,
N times each (whole processes, start-up included; wall and CPU time from wait4, peak RSS from /usr/bin/time; the machine's load
average after each round, since other work on the machine moves the wall times):
  perf script:  perf script -F comm,tid,cpu,time,event,trace --ns -i F > /dev/null
                (what ingest ran before, and still runs for the files the reader does not read)
  reader:       the native reader alone, as ingest runs it (typed columns, and the text of what the typed
                route leaves to the text parser), its output thrown away (python -c ..., parse/perfdata.py)
  ingest:       thpreplay ingest F -o DATASET --force -q --kernel-release RELEASE (native reader, typed route)
  ingest_text:  the same with THPREPLAY_PERF_TEXT=1: the reader's text through the text pipeline (the route
                before the typed one)
and prints medians and ratios as JSON. First, once: the reader's text is compared with perf script's
(byte for byte) and the event count taken; last, the two ingests' tables are compared (polars equals,
every table).

    python benchmarks/bench_perfdata.py [N] [FILE ...]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PERF_SCRIPT_ARGS, THP, median, rmtree

DEFAULT = [Path("/tmp/perfdata/big1.perf.data"), Path("/tmp/perfdata/big3.perf.data")]
READER = ("import sys\nfrom thpreplay.parse import perfdata\n"
          "n, _ = perfdata.open_native(sys.argv[1], sys.argv[1])\n"
          "assert n is not None\nfor c in n.chunks(): pass\n")


def run(cmd: list[str], stdout=subprocess.DEVNULL, env: dict | None = None) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of one whole process."""
    # Peak RSS from /usr/bin/time, not from wait4: a child's ru_maxrss starts at its parent's RSS at the
    # fork (it is kept across exec), and this process holds a few hundred MiB after identical()
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", *cmd], stdout=stdout, stderr=err,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err.seek(0)
        last = err.read().decode(errors="replace").strip().splitlines()[-1:]
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not last or not last[0].isdigit():
        raise SystemExit(f"{cmd[0]} failed (exit {proc.returncode}): {' '.join(cmd)}")
    return wall, int(last[0]) // 1024, usage.ru_utime + usage.ru_stime


def identical(path: Path) -> int:
    """perf script's text and the reader's, compared in full; returns the line count."""
    from thpreplay.parse import perfdata
    perf = subprocess.Popen(["perf", *PERF_SCRIPT_ARGS, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    native, why = perfdata.open_native(str(path), str(path))
    assert native is not None, why
    lines = 0
    while (part := native.reader.read(perfdata.CHUNK_BYTES))[1]:  # the reader's text route
        theirs = perf.stdout.read(len(part[0]))
        if theirs != part[0]:
            raise SystemExit(f"{path}: the reader's text differs from perf script's near line {lines}")
        lines += part[0].count(b"\n")
    if perf.stdout.read(1):
        raise SystemExit(f"{path}: perf script printed more lines than the reader ({lines})")
    perf.wait()
    return lines


def bench(path: Path, runs: int) -> dict:
    from thpreplay.parse import perfdata
    native, _ = perfdata.open_native(str(path), str(path))
    release = native.info["osrelease"]
    events = identical(path)
    out = Path(os.environ.get("BENCH_DIR", "/tmp/perfdata")) / "bench-dataset"
    text_out = out.with_name("bench-dataset-text")
    cmds = {
        "perf_script": ["perf", *PERF_SCRIPT_ARGS, str(path)],
        "reader": [sys.executable, "-c", READER, str(path)],
        "ingest": [THP, "ingest", str(path), "-o", str(out), "--force", "-q", "--kernel-release", release],
        "ingest_text": [THP, "ingest", str(path), "-o", str(text_out), "--force", "-q", "--kernel-release", release],
    }
    envs = {"ingest_text": {perfdata.TEXT_ENV: "1"}}
    times: dict[str, list[float]] = {k: [] for k in cmds}
    rss: dict[str, list[int]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    load = [round(os.getloadavg()[0], 1)]
    for _ in range(runs):
        for name, cmd in cmds.items():
            wall, peak, used = run(cmd, env=envs.get(name))
            times[name].append(round(wall, 3))
            rss[name].append(peak)
            cpu[name].append(round(used, 2))
        load.append(round(os.getloadavg()[0], 1))
    equal = tables_equal(out, text_out)
    rmtree(out)
    rmtree(text_out)
    med = {k: round(median(v), 3) for k, v in times.items()}
    return {
        "file": str(path), "bytes": path.stat().st_size, "events": events, "identical_text": True,
        "tables_equal_typed_and_text": equal, "untyped": untyped(path), "runs": runs,
        "seconds": times, "median_s": med, "max_rss_mib": {k: max(v) for k, v in rss.items()},
        "cpu_seconds": cpu, "median_cpu_s": {k: round(median(v), 2) for k, v in cpu.items()},
        "load_1min_per_round": load,
        "ratio_ingest_over_perf_script_cpu": round(median(cpu["ingest"]) / median(cpu["perf_script"]), 3),
        "ratio_ingest_over_perf_script": round(med["ingest"] / med["perf_script"], 3),
        "ratio_reader_over_perf_script": round(med["reader"] / med["perf_script"], 3),
        "ratio_ingest_text_over_perf_script": round(med["ingest_text"] / med["perf_script"], 3),
        "ratio_ingest_text_over_perf_script_cpu": round(median(cpu["ingest_text"]) / median(cpu["perf_script"]), 3),
    }


def tables_equal(a: Path, b: Path) -> bool:
    """Every table of the two datasets equal (metadata: but for the inputs' names, which are the same)."""
    import polars as pl
    for table in sorted(p.name for p in b.iterdir() if p.is_dir() and p.name != "snapshots"):
        x, y = (pl.read_parquet(str(d / table / "*.parquet")) for d in (a, b))
        if not x.equals(y):
            print(f"{table}: the typed route's table differs from the text route's", file=sys.stderr)
            return False
    return True


def untyped(path: Path) -> dict:
    """The events the typed route leaves to the text parser, and why (parse/perfdata.py Native.untyped)."""
    from thpreplay.parse import perfdata
    native, _ = perfdata.open_native(str(path), str(path))
    for _ in native.chunks():
        pass
    return native.untyped


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    files = [Path(a) for a in sys.argv[2:]] or DEFAULT
    result = {"host": f"{platform.node()} {platform.release()}, {os.cpu_count()} CPUs",
              "captures": [bench(p, runs) for p in files]}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
