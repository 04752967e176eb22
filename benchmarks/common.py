"""Shared helpers for the benchmark scripts: timing, medians, the workload capture."""

from __future__ import annotations

import json
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


def fresh_bundle_dir(bundle: Path, out: Path) -> Path:
    """An empty OUT holding copies of BUNDLE's snapshot files (everything but its perf.data)."""
    rmtree(out)
    out.mkdir()
    for f in bundle.iterdir():
        if f.is_file() and f.name != "perf.data":
            shutil.copy2(f, out / f.name)
    return out


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


# ---------------------------------------------------------------------------------------------------
# A real capture with THP faults (for bench_simulate.py): fragmented memory, madvised faults that get
# huge pages directly, after compaction, or fall back; plus 4 KiB faults for volume.

# The protocol. Background (not recorded): an mlocked fragmenter (every 8th page kept and mlocked in
# FRAG_MLOCK_MB; with vm.compact_unevictable_allowed=0 compaction cannot empty those pageblocks), a
# movable one (every 8th page kept, migratable: compaction can empty them), and a madvised holder that
# takes the free pageblocks down to about LEAVE_FREE_MB. Recorded: SIM_WORKLOAD.
FRAG_MLOCK_MB = 8000
FRAG_MOVABLE_MB = 2000
KEEP_EVERY = 8
LEAVE_FREE_MB = 1000
FAULT_MADVISE_MB = 8000
FAULT_4K_MB = 2000
MIN_AVAILABLE_MB = 4096  # never let MemAvailable go below this: the watchdog kills what it started


def meminfo_mb(key: str = "MemAvailable") -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    raise KeyError(key)


def free_pageblock_mb() -> int:
    """MiB of free memory in blocks of order >= 9 (whole free pageblocks), from /proc/buddyinfo."""
    pages = 0
    with open("/proc/buddyinfo") as f:
        for line in f:
            counts = [int(x) for x in line.split()[4:]]
            pages += sum(c << o for o, c in enumerate(counts) if o >= 9)
    return pages * 4 // 1024


def _sysctl_get(name: str) -> str:
    return Path("/proc/sys/vm", name).read_text().strip()


def _sysctl_set(name: str, value: str) -> None:
    Path("/proc/sys/vm", name).write_text(value + "\n")


class _Watchdog:
    """Polls MemAvailable; below MIN_AVAILABLE_MB it kills the processes it was given (by pid)."""

    def __init__(self, procs: list[subprocess.Popen]):
        import threading
        self.procs = procs
        self.min_mb = meminfo_mb()
        self.tripped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            mb = meminfo_mb()
            self.min_mb = min(self.min_mb, mb)
            if mb < MIN_AVAILABLE_MB and not self.tripped:
                self.tripped = True
                for p in self.procs:
                    if p.poll() is None:
                        p.kill()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _start_ready(cmd: list[str], marker: str) -> subprocess.Popen:
    """Start a background thpfrag and wait for the line that says it holds its memory."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if marker not in line:
        p.kill()
        p.wait()
        raise RuntimeError(f"{' '.join(cmd)}: exited before {marker!r} (got {line!r})")
    return p


def sim_workload(exe: Path) -> str:
    return f"{exe} fault {FAULT_MADVISE_MB}; {exe} fault {FAULT_4K_MB} --no-madvise"


def capture_thp(work: Path, log=print) -> Path:
    """A real multi-million-event capture with many madvised THP faults (direct successes, compaction,
    fallbacks): WORK/sim-bundle (reused when present). Needs root, perf and about 18 GiB available."""
    bundle = work / "sim-bundle"
    if (bundle / "perf.data").exists():
        return bundle
    exe = thpfrag(work)
    avail = meminfo_mb()
    need = FRAG_MLOCK_MB + FRAG_MOVABLE_MB // KEEP_EVERY + FAULT_MADVISE_MB + MIN_AVAILABLE_MB
    if avail < need:
        raise RuntimeError(f"MemAvailable {avail} MiB < {need} MiB needed for the THP capture")
    saved = {n: _sysctl_get(n) for n in ("compact_unevictable_allowed", "max_map_count")}
    procs: list[subprocess.Popen] = []
    dog = None
    info: dict = {"available_mb_at_start": avail}
    try:
        _sysctl_set("compact_unevictable_allowed", "0")
        # every mlocked page is its own VMA (and so is every hole between two of them)
        map_count = max(int(saved["max_map_count"]), 2 * (FRAG_MLOCK_MB * 256 // KEEP_EVERY) + 65536)
        _sysctl_set("max_map_count", str(map_count))
        dog = _Watchdog(procs)
        frag = [str(exe), "frag"]
        procs.append(_start_ready(frag + [str(FRAG_MLOCK_MB), "--mlock", "--keep-every", str(KEEP_EVERY)], "ready"))
        procs.append(_start_ready(frag + [str(FRAG_MOVABLE_MB), "--keep-every", str(KEEP_EVERY)], "ready"))
        free_pb = free_pageblock_mb()
        hold = max(0, (free_pb - LEAVE_FREE_MB) // 2 * 2)
        hold = min(hold, max(0, (meminfo_mb() - FAULT_MADVISE_MB - MIN_AVAILABLE_MB - 1024) // 2 * 2))
        info.update(free_pageblock_mb_after_frag=free_pb, holder_mb=hold)
        if hold:
            procs.append(_start_ready([str(exe), "fault", str(hold), "--hold"], "regions="))
        info.update(free_pageblock_mb_before=free_pageblock_mb(), available_mb_before=meminfo_mb())
        log(f"capture_thp: {info}")
        wl = work / "sim-workload.log"
        with open(wl, "w") as out:
            subprocess.run([THP, "record", "-o", str(bundle), "--", "sh", "-c", sim_workload(exe)], check=True,
                           stdout=out)
        info["workload_output"] = wl.read_text().split("\n")
        (bundle / "workload.log").write_text(wl.read_text())
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
            p.wait()
        if dog:
            dog.stop()
        for n, v in saved.items():
            _sysctl_set(n, v)
    info["min_available_mb"] = dog.min_mb
    if dog.tripped:
        rmtree(bundle)
        raise RuntimeError(f"MemAvailable fell below {MIN_AVAILABLE_MB} MiB: background processes killed, "
                           "capture dropped")
    info.update(
        background=[f"thpfrag frag {FRAG_MLOCK_MB} --mlock --keep-every {KEEP_EVERY}",
                    f"thpfrag frag {FRAG_MOVABLE_MB} --keep-every {KEEP_EVERY}",
                    f"thpfrag fault {info['holder_mb']} --hold"],
        sysctl_during={"compact_unevictable_allowed": "0", "max_map_count": str(map_count)}, sysctl_restored=saved,
        recorded=f"thpreplay record -o {bundle} -- sh -c '{sim_workload(Path('thpfrag'))}'",
    )
    (bundle / "bench_capture.json").write_text(json.dumps(info, indent=1) + "\n")
    log(f"capture_thp: done, {info}")
    return bundle
