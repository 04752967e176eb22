"""Sweep throughput on Dask distributed: tasks/s with 1 and 2 local workers, per-task costs, and a paper
estimate of a 10,000-capture sweep on N nodes (BENCHMARKS.md, "Sweep").

    .venv/bin/python benchmarks/bench_sweep.py [REPEATS]      (make bench-sweep; default 3 repeats)

Workload: the bundled samples (sample_traces/*/ but workload, lab, fidelity), ingested once, x every
built-in policy x defrag madvise and never (the capture's enabled setting): 5 x 9 x 2 = 90 partitions.
Each repeat runs the sweep from empty with 1 worker and with 2 (alternating), the LocalCluster's start
included. Per-task costs are measured in this process with the same task functions the workers run.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

from common import ROOT, median, rmtree, workdir

from thpreplay import sweep as sw
from thpreplay.ingest import ingest
from thpreplay.sim.params import Params
from thpreplay.simulate import select_policies

SKIP = {"workload", "lab", "fidelity"}
DEFRAGS = ["madvise", "never"]
FLEET = 10_000


def samples() -> list[Path]:
    found = sorted(p for p in (ROOT / "sample_traces").iterdir() if p.is_dir() and p.name not in SKIP)
    return [p for p in found if p.name != "local-6.18-perf" or shutil.which("perf")]


def task_costs(datasets: dict[str, Path], work: Path) -> dict[str, dict]:
    """Seconds per capture: prepare per setting, and replay + partition write per policy (medians)."""
    policies = [p.name for p in select_policies(None, None)]
    out = {}
    for name, ds in datasets.items():
        prep, sim = [], []
        root = work / "costs"
        rmtree(root)
        enabled, _ = sw.capture_settings(ds)
        for defrag in DEFRAGS:
            t = time.perf_counter()
            inputs = sw.run_prepare(str(ds), enabled, defrag, Params())
            prep.append(time.perf_counter() - t)
            for task in sw.tasks_for(name, policies, [enabled], [defrag]):
                t = time.perf_counter()
                sw.run_simulate(inputs, task, Params(), str(root))
                sim.append(time.perf_counter() - t)
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        out[name] = {"prepare_s": median(prep), "simulate_s": median(sim), "partition_bytes": size // len(sim)}
    return out


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def sweep_wall(datasets: dict[str, Path], work: Path, workers: int) -> tuple[float, float]:
    """Wall seconds of the sweep (cluster start and stop included) and the CPU seconds its worker
    processes used (children of this process, counted once they exit with the cluster)."""
    out = work / f"sweep-{workers}"
    rmtree(out)
    cpu = _children_cpu()
    t = time.perf_counter()
    summary = sw.sweep([str(d) for d in datasets.values()], out, defrag=DEFRAGS, workers=workers)
    wall = time.perf_counter() - t
    assert not summary.failures and summary.written == len(datasets) * 9 * len(DEFRAGS), summary
    return wall, _children_cpu() - cpu


def cluster_start(workers: int) -> float:
    from distributed import Client

    t = time.perf_counter()
    engine = sw._Engine(None, workers)
    engine.client.run(lambda: None)  # every worker up and answering
    elapsed = time.perf_counter() - t
    engine.close()
    assert isinstance(engine.client, Client)
    return elapsed


def main(repeats: int) -> None:
    work = workdir() / "sweep"
    work.mkdir(parents=True, exist_ok=True)
    datasets, ingest_s = {}, {}
    for src in samples():
        ds = work / "ds" / src.name
        rmtree(ds)
        ds.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        ingest([str(src)], ds)
        ingest_s[src.name] = time.perf_counter() - t
        datasets[src.name] = ds
    costs = task_costs(datasets, work)
    walls: dict[int, list[float]] = {1: [], 2: []}
    starts: dict[int, list[float]] = {1: [], 2: []}
    cpus: dict[int, list[float]] = {1: [], 2: []}
    loads = []  # 1-minute load average before each run: the machine is shared
    for _ in range(repeats):
        for w in (1, 2):
            loads.append(round(os.getloadavg()[0], 2))
            starts[w].append(cluster_start(w))
            wall, cpu = sweep_wall(datasets, work, w)
            walls[w].append(wall)
            cpus[w].append(cpu)
    tasks = len(datasets) * 9 * len(DEFRAGS)
    med = {w: median(v) for w, v in walls.items()}
    result = {
        "samples": list(datasets), "tasks": tasks, "repeats": repeats,
        "ingest_s": ingest_s, "costs": costs,
        "wall_s": walls, "cluster_start_s": starts, "worker_cpu_s": cpus, "load_before_runs": loads,
        "tasks_per_s": {w: tasks / med[w] for w in walls}, "speedup_2_over_1": med[1] / med[2],
    }
    # Paper estimate: a fleet capture costs what the mean bundled sample costs (their sizes span 0.3 MB
    # to 2.9 MB of trace; real fleet captures will be larger: scale by their size).
    n = len(datasets)
    per_capture = (sum(ingest_s.values()) + sum(c["prepare_s"] * len(DEFRAGS) + c["simulate_s"] * 9 * len(DEFRAGS)
                                                for c in costs.values())) / n
    efficiency = result["speedup_2_over_1"] / 2
    cpu_s = FLEET * per_capture
    estimate = {N: cpu_s / (N * 2 * efficiency) for N in (1, 10, 50, 100)}
    result.update(per_capture_cpu_s=per_capture, fleet_cpu_s=cpu_s, efficiency_2_workers=efficiency,
                  fleet_wall_s_by_nodes=estimate,
                  fleet_output_bytes=FLEET * 9 * len(DEFRAGS) * median([c["partition_bytes"] for c in costs.values()]))
    (work / "bench_sweep.json").write_text(json.dumps(result, indent=1) + "\n")

    print(f"workload: {n} captures x 9 policies x {len(DEFRAGS)} defrag = {tasks} partitions ({repeats} repeats)")
    print("| capture | ingest s | prepare s (per setting) | replay+write s (per task) | partition KB |")
    print("|---|---|---|---|---|")
    for name, c in costs.items():
        print(f"| {name} | {ingest_s[name]:.2f} | {c['prepare_s']:.2f} | {c['simulate_s']:.3f} | "
              f"{c['partition_bytes'] / 1024:.0f} |")
    print("| workers | sweep wall s (runs) | median | tasks/s | worker CPU s (median) | cluster start s (median) |")
    print("|---|---|---|---|---|---|")
    for w in (1, 2):
        print(f"| {w} | {' '.join(f'{x:.1f}' for x in walls[w])} | {med[w]:.1f} | {tasks / med[w]:.2f} | "
              f"{median(cpus[w]):.1f} | {median(starts[w]):.1f} |")
    print(f"load average before each run (1, 2, 1, 2, ...): {loads}")
    print(f"speed-up 2 over 1 workers: {result['speedup_2_over_1']:.2f} (efficiency {efficiency:.2f})")
    print(f"per capture: {per_capture:.1f} CPU s (ingest + 2 prepares + 18 replays); "
          f"10,000 captures: {cpu_s / 3600:.1f} CPU h")
    for N, s in estimate.items():
        print(f"  {N:>3} nodes x 2 workers: {s / 3600:.2f} h")
    print(f"output: {result['fleet_output_bytes'] / 1e9:.1f} GB of partitions")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
