"""Shared helpers for the benchmark scripts: timing, medians, the workload capture."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from thpreplay.ingest import PERF_SCRIPT_ARGS  # the field list thpreplay decodes perf.data with

__all__ = ["PERF_SCRIPT_ARGS"]

ROOT = Path(__file__).resolve().parents[1]
THP = str(Path(sys.executable).parent / "thpreplay")
WORKLOAD_SRC = ROOT / "sample_traces" / "workload" / "thpfrag.c"


def workdir() -> Path:
    d = Path(os.environ.get("BENCH_DIR", "/tmp/thpreplay-bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def thpfrag(work: Path) -> Path:
    exe = work / "thpfrag"
    if not exe.exists():
        subprocess.run(["gcc", "-O2", "-static", "-pthread", "-o", str(exe), str(WORKLOAD_SRC)], check=True)
    return exe


def capture(work: Path) -> Path:
    """A real multi-million-event perf.data: 4 KiB faults of 2 x 2000 MiB (alloc, fault, free events)."""
    bundle = work / "bundle"
    if (bundle / "perf.data").exists():
        return bundle / "perf.data"
    exe = thpfrag(work)
    cmd = f"{exe} fault 2000 --no-madvise; {exe} fault 2000 --no-madvise"
    subprocess.run([THP, "record", "-o", str(bundle), "--", "sh", "-c", cmd], check=True)
    return bundle / "perf.data"


def timed(cmd: list[str], stdout=None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n


def rmtree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)
