"""Peak memory of ingest on a >= 5 GB text trace (issue: flat in trace size, peak RSS < 2 GB).

Builds the input by repeating the real perf script text of bench_ingest.py until it passes the
target size, ingests it once, and reads the child's peak RSS from getrusage. The big input is
deleted afterwards unless --keep. Usage: python benchmarks/bench_big.py [GB] [--keep]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from common import PERF_SCRIPT_ARGS, THP, capture, rmtree, workdir


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    target = float(args[0]) if args else 5.0
    work = workdir()
    data = capture(work)
    text = work / "perf.txt"
    if not text.exists():
        with open(text, "wb") as f:
            subprocess.run(["perf", *PERF_SCRIPT_ARGS, str(data)], stdout=f, stderr=subprocess.DEVNULL, check=True)
    big = work / "big.txt"
    piece = text.read_bytes()
    copies = int(target * 1e9 // len(piece)) + 1
    with open(big, "wb") as f:
        for _ in range(copies):
            f.write(piece)
    size = big.stat().st_size
    lines = piece.count(b"\n") * copies
    out = work / "big-dataset"
    start = time.perf_counter()
    subprocess.run([THP, "ingest", str(big), "-o", str(out), "--force", "-q"], check=True)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({
        "input_bytes": size,
        "lines": lines,
        "wall_s": round(wall, 1),
        "lines_per_s": round(lines / wall),
        "peak_rss_mb": round(peak_kb / 1024),
    }, indent=1))
    rmtree(out)
    if "--keep" not in sys.argv:
        big.unlink()


if __name__ == "__main__":
    main()
