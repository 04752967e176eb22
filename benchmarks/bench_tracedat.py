"""trace.dat: `trace-cmd report F > /dev/null` against `thpreplay ingest F -o DIR` (the whole command), and
the same ingest through the text route (THPREPLAY_TRACEDAT_TEXT=1), whose tables must be equal.

    .venv/bin/python benchmarks/bench_tracedat.py [RUNS] [FILE]

FILE defaults to $BENCH_DIR/tracedat/big.dat (BENCH_DIR: /tmp/thpreplay-bench), recorded here when
missing (root, tracefs and trace-cmd needed): the events `thpreplay record` asks for enabled through
tracefs with a 200 MB per-CPU buffer, `thpfrag fault 2000 --no-madvise` (4 KiB page faults: about
2.4 M events), then `trace-cmd extract` (trace-cmd record cannot run where /proc/sys/kernel/
ftrace_enabled is read-only; extract reads the same buffer). Runs alternate, trace-cmd first; medians
of RUNS (default 5) of each and their ratio are printed, with the pairwise ratios.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import THP, thpfrag, timed, workdir  # noqa: E402

from thpreplay.kernel.events import RECORD_EVENTS  # noqa: E402

TRACEFS = Path("/sys/kernel/tracing")


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def record(out: Path, work: Path) -> None:
    """A real trace.dat of the events thpreplay records, through tracefs and `trace-cmd extract`."""
    exe = thpfrag(work)
    enabled = []
    old_kb = (TRACEFS / "buffer_size_kb").read_text().strip()
    try:
        _write(TRACEFS / "tracing_on", "0")
        _write(TRACEFS / "trace", "")
        _write(TRACEFS / "buffer_size_kb", "200000")
        for system, names in RECORD_EVENTS:
            for name in names:
                enable = TRACEFS / "events" / system / name / "enable"
                if enable.exists():
                    _write(enable, "1")
                    enabled.append(enable)
                    break
        _write(TRACEFS / "tracing_on", "1")
        subprocess.run([str(exe), "fault", "2000", "--no-madvise"], check=True, stdout=subprocess.DEVNULL)
        _write(TRACEFS / "tracing_on", "0")
        for enable in enabled:
            _write(enable, "0")
        subprocess.run(["trace-cmd", "extract", "-o", str(out)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    finally:
        for enable in enabled:
            _write(enable, "0")
        _write(TRACEFS / "trace", "")
        _write(TRACEFS / "buffer_size_kb", old_kb)
        _write(TRACEFS / "tracing_on", "1")


def _cpu() -> float:
    """user + system seconds of the children waited for so far"""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _ingest(path: Path, out: Path, env: dict | None = None) -> float:
    """thpreplay ingest, timed; its message when it fails. env: added to the environment."""
    start = time.perf_counter()
    proc = subprocess.run([THP, "ingest", str(path), "-o", str(out), "--force", "-q"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    if proc.returncode:
        sys.exit(f"thpreplay ingest failed: {proc.stderr.decode(errors='replace').strip()}")
    return time.perf_counter() - start


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    work = workdir() / "tracedat"
    work.mkdir(parents=True, exist_ok=True)
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else work / "big.dat"
    if not path.exists():
        record(path, work)
    tc = shutil.which("trace-cmd")
    if tc is None:
        sys.exit("trace-cmd is needed as the reference")
    lines = subprocess.run([tc, "report", str(path)], capture_output=True).stdout.count(b"\n")
    out, text_out = work / "ds", work / "ds-text"
    ref, ours, ref_cpu, our_cpu, txt, txt_cpu = [], [], [], [], [], []
    for _ in range(runs):
        before = _cpu()
        with open("/dev/null", "wb") as null:
            ref.append(timed([tc, "report", str(path)], stdout=null))
        mid = _cpu()
        ours.append(_ingest(path, out))
        after = _cpu()
        # the text route (every record printed and parsed as text), the route before the typed one
        txt.append(_ingest(path, text_out, {"THPREPLAY_TRACEDAT_TEXT": "1"}))
        ref_cpu.append(mid - before)
        our_cpu.append(after - mid)
        txt_cpu.append(_cpu() - after)
        print(f"trace-cmd report {ref[-1]:.2f} s (cpu {ref_cpu[-1]:.2f} s)   thpreplay ingest {ours[-1]:.2f} s "
              f"(cpu {our_cpu[-1]:.2f} s)   text route {txt[-1]:.2f} s (cpu {txt_cpu[-1]:.2f} s)   "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    import polars as pl
    equal = all(pl.read_parquet(str(out / t / "*.parquet")).equals(pl.read_parquet(str(text_out / t / "*.parquet")))
                for t in sorted(p.name for p in text_out.iterdir() if p.is_dir() and p.name != "snapshots"))
    r, o = statistics.median(ref), statistics.median(ours)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB, {lines:,} lines of trace-cmd report)")
    print(f"trace-cmd report   median {r:.2f} s  runs {' '.join(f'{x:.2f}' for x in ref)}")
    print(f"thpreplay ingest   median {o:.2f} s  runs {' '.join(f'{x:.2f}' for x in ours)}")
    print(f"ratio {o / r:.3f}  (pairwise: {' '.join(f'{b / a:.2f}' for a, b in zip(ref, ours))})")
    print(f"cpu (user+sys) medians: trace-cmd report {statistics.median(ref_cpu):.2f} s, thpreplay ingest "
          f"{statistics.median(our_cpu):.2f} s (ratio {statistics.median(our_cpu) / statistics.median(ref_cpu):.3f})")
    print(f"text route          median {statistics.median(txt):.2f} s  runs {' '.join(f'{x:.2f}' for x in txt)}  "
          f"cpu {statistics.median(txt_cpu):.2f} s;  tables of the two routes equal: {equal}")


if __name__ == "__main__":
    main()
