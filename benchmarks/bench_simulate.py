"""Replay-core speed on a multi-million-event real capture (issue: >= 2 M replayed events/s per policy, goal
5 M; the time to simulate every built-in policy; memory proportional to memory size, not trace length).

Records (once, cached in BENCH_DIR) a real capture with many madvised THP faults on fragmented memory
(common.capture_thp: root, perf, ~18 GiB available), ingests it once, then:
  prepare:   thpreplay.simulate.prepare(DATASET), timed once (demand + initial state, shared by policies)
  replay:    thpreplay.simulate.replay(inputs, [policy]) per built-in policy, N rounds (policies
             alternate within a round), medians; events = the dataset's trace events (metadata), ops =
             the demand's ops (what the C core steps through)
  simulate:  `thpreplay simulate DATASET -q` (every built-in policy, the whole command), median of
             E runs, with the process's peak RSS (/usr/bin/time)
  memory:    on the two bundled sample captures, on the first half of the big one's events (perf script
             text of its perf.data, same snapshots) and on the big one: the simulate peak RSS, and the
             peak RSS of prepare alone, and the malloc heap the C engine holds in one policy's replay
             (glibc mallinfo2 around _engine.new/run), against trace events and memory size in pageblocks
Usage: python benchmarks/bench_simulate.py [N] [--e2e-runs E]
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PERF_SCRIPT_ARGS, ROOT, THP, capture_thp, fresh_bundle_dir, median, workdir
from thpreplay.sim import engine as engine_mod
from thpreplay.simulate import _metadata, prepare, replay, select_policies

SAMPLES = ("qemu-6.1-2node", "local-6.18-perf")


def ingest_once(src: Path, out: Path) -> Path:
    if not (out / "dataset.json").is_file():
        subprocess.run([THP, "ingest", str(src), "-o", str(out), "-q", "--force"], check=True)
    return out


def code_version() -> dict:
    """Which replay core was measured: HEAD, whether pipeline/ had uncommitted changes, the built engine."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False).stdout.strip()
    dirty = subprocess.run(git + ["status", "--porcelain", "pipeline"], capture_output=True, check=False,
                           text=True).stdout.split("\n")
    so = Path(engine_mod._engine.__file__)
    return dict(head=head, pipeline_uncommitted=[ln[3:] for ln in dirty if ln.strip()], engine_so=so.name,
                engine_so_mtime=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(so.stat().st_mtime)))


def prefix_bundle(work: Path, bundle: Path, lines: int) -> Path:
    """A copy of the bundle whose trace is only the first LINES events of its perf.data, as perf script
    text (same machine, same snapshots, a shorter trace): WORK/sim-bundle-prefix (reused)."""
    out = work / "sim-bundle-prefix"
    if (out / "perf.txt").exists():
        return out
    tmp = fresh_bundle_dir(bundle, work / ".sim-bundle-prefix.tmp")
    p = subprocess.Popen(["perf", *PERF_SCRIPT_ARGS, str(bundle / "perf.data")], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    n = 0
    with open(tmp / "perf.txt", "wb") as f:
        for line in p.stdout:
            f.write(line)
            n += 1
            if n >= lines:
                break
    p.kill()
    p.wait()
    tmp.rename(out)
    return out


def trace_events(dataset: Path) -> int:
    ev = _metadata(dataset)["events"]
    return int(sum(ev.values()))


def run_child(cmd: list[str]) -> tuple[float, int, int, str]:
    """(wall s, peak RSS MiB, exit code, last stderr line) of one command. The RSS comes from
    /usr/bin/time (its child's rusage): a child forked from this process directly would inherit this
    process's RSS as its starting maxrss."""
    with tempfile.NamedTemporaryFile("r") as tf:
        start = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name, *cmd], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, check=False)
        wall = time.perf_counter() - start
        peak_kb = int(tf.read().split()[-1])
    err = p.stderr.strip().splitlines()
    return wall, peak_kb // 1024, p.returncode, err[-1] if err else ""


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]


_libc = ctypes.CDLL(None)
_libc.mallinfo2.restype = _Mallinfo2


def heap_in_use() -> int:
    """Bytes allocated from glibc malloc (what the C engine and numpy use; polars has its own allocator)."""
    m = _libc.mallinfo2()
    return m.uordblks + m.hblkhd


class EngineHeap:
    """The malloc heap the C engine itself holds: what `_engine.new` and every `_engine.run` call add to
    glibc's heap in use (blocks, maps of relocated pages, regions, series), measured around each call;
    `peak_mb` is the whole heap's growth during the replay (with the per-fault outputs and one chunk of op
    arrays)."""

    def __enter__(self):
        self.real = engine_mod._engine
        self.base = heap_in_use()
        self.peak = self.base
        self.engine = 0
        outer = self

        def counted(fn):
            def call(*args):
                before = heap_in_use()
                r = fn(*args)
                after = heap_in_use()
                outer.engine += after - before
                outer.peak = max(outer.peak, after)
                return r
            return call

        class Proxy:
            new = staticmethod(counted(self.real.new))
            run = staticmethod(counted(self.real.run))

            def __getattr__(self, name):
                return getattr(outer.real, name)

        engine_mod._engine = Proxy()
        return self

    def __exit__(self, *exc):
        engine_mod._engine = self.real
        self.engine_mb = round(self.engine / 2**20, 1)
        self.peak_mb = round((self.peak - self.base) / 2**20, 1)


def timed_replay(inputs, policy) -> tuple[float, str | None]:
    """Seconds of replay(inputs, [policy]); an exception is recorded, not raised (the C run has
    finished by the time the engine's consistency check raises)."""
    start = time.perf_counter()
    err = None
    try:
        replay(inputs, [policy])
    except Exception as e:  # noqa: BLE001 - reported in the result
        err = f"{type(e).__name__}: {str(e)[:160]}"
    return time.perf_counter() - start, err


def memory_row(name: str, dataset: Path, e2e: bool = True) -> dict:
    inputs = prepare(dataset)
    policy = select_policies(None, None)[-1]
    with EngineHeap() as heap:
        secs, err = timed_replay(inputs, policy)
    row = dict(
        dataset=name, trace_events=trace_events(dataset), ops=inputs.demand.ops.height,
        thp_faults=len(inputs.demand.observed_huge), pageblocks=len(inputs.state.block_zone),
        replay_policy=policy.name, replay_s=round(secs, 3), engine_heap_mb=heap.engine_mb,
        replay_heap_peak_mb=heap.peak_mb, replay_error=err,
    )
    del inputs
    _, row["prepare_peak_rss_mb"], _, _ = run_child(
        [sys.executable, "-c", f"from thpreplay.simulate import prepare; prepare({str(dataset)!r})"])
    if e2e:
        wall, peak, code, tail = run_child([THP, "simulate", str(dataset), "-q"])
        row.update(simulate_s=round(wall, 2), simulate_peak_rss_mb=peak, simulate_exit=code,
                   simulate_error=tail if code else None)
    return row


def main() -> None:
    args = sys.argv[1:]
    e2e_runs = 3
    if "--e2e-runs" in args:
        i = args.index("--e2e-runs")
        e2e_runs = int(args[i + 1])
        del args[i:i + 2]
    runs = int(args[0]) if args else 5
    work = workdir()
    bundle = capture_thp(work)
    dataset = ingest_once(bundle, work / "sim-dataset")
    events = trace_events(dataset)
    policies = select_policies(None, None)

    start = time.perf_counter()
    inputs = prepare(dataset)
    prepare_s = time.perf_counter() - start
    ops = inputs.demand.ops.height

    times: dict[str, list[float]] = {p.name: [] for p in policies}
    errors: dict[str, str] = {}
    for _ in range(runs):
        for p in policies:
            secs, err = timed_replay(inputs, p)
            times[p.name].append(secs)
            if err:
                errors[p.name] = err
    per_policy = []
    for p in policies:
        m = median(times[p.name])
        per_policy.append(dict(
            policy=p.name, median_s=round(m, 3), runs_s=[round(x, 3) for x in times[p.name]],
            ops_per_s=round(ops / m), events_per_s=round(events / m), error=errors.get(p.name),
        ))
    blocks = len(inputs.state.block_zone)
    faults = len(inputs.demand.observed_huge)
    del inputs

    e2e, peaks, e2e_err = [], [], None
    for _ in range(e2e_runs):
        wall, peak, code, tail = run_child([THP, "simulate", str(dataset), "-q"])
        e2e.append(wall)
        peaks.append(peak)
        if code:
            e2e_err = f"exit {code}: {tail}"

    mem = [memory_row(name, ingest_once(ROOT / "sample_traces" / name, work / f"sim-sample-{name}"))
           for name in SAMPLES]
    half = prefix_bundle(work, bundle, events // 2)
    mem.append(memory_row("sim-bundle 1st half", ingest_once(half, work / "sim-dataset-prefix")))
    mem.append(memory_row("sim-bundle", dataset, e2e=False) | dict(
        simulate_s=round(median(e2e), 2), simulate_peak_rss_mb=max(peaks), simulate_exit=1 if e2e_err else 0,
        simulate_error=e2e_err))
    _, floor_rss, _, _ = run_child([sys.executable, "-c", "import thpreplay.simulate"])

    result = dict(
        date=time.strftime("%Y-%m-%d %H:%M"), code=code_version(), dataset=str(dataset), trace_events=events,
        ops=ops, thp_faults=faults, pageblocks=blocks,
        runs=runs, prepare_s=round(prepare_s, 2), policies=per_policy,
        replay_all_policies_s=round(sum(r["median_s"] for r in per_policy), 2),
        slowest_events_per_s=min(r["events_per_s"] for r in per_policy),
        simulate_all_s=[round(x, 2) for x in e2e], simulate_all_median_s=round(median(e2e), 2),
        simulate_peak_rss_mb=max(peaks), simulate_error=e2e_err,
        import_only_rss_mb=floor_rss, memory=mem,
    )
    print(json.dumps(result, indent=1))

    print(f"\n{events:,} trace events, {ops:,} demand ops, {faults:,} THP faults, {blocks:,} pageblocks; "
          f"prepare {prepare_s:.1f} s; medians of {runs}")
    print(f"{'policy':<22} {'median s':>9} {'ops/s':>11} {'events/s':>11}  note")
    for r in per_policy:
        note = "below 2 M events/s" if r["events_per_s"] < 2_000_000 else ""
        if r["error"]:
            note += (" | " if note else "") + r["error"][:60]
        print(f"{r['policy']:<22} {r['median_s']:>9.3f} {r['ops_per_s']:>11,} {r['events_per_s']:>11,}  {note}")
    print(f"replay, all {len(per_policy)} policies (sum of medians): {result['replay_all_policies_s']} s; "
          f"thpreplay simulate (all, median of {e2e_runs}): {result['simulate_all_median_s']} s, "
          f"peak RSS {result['simulate_peak_rss_mb']} MiB" + (f"  [{e2e_err}]" if e2e_err else ""))
    print(f"\n{'dataset':<20} {'events':>10} {'ops':>10} {'blocks':>7} {'engine heap MiB':>16} "
          f"{'prepare peak MiB':>17} {'simulate peak MiB':>18}")
    for r in mem:
        print(f"{r['dataset']:<20} {r['trace_events']:>10,} {r['ops']:>10,} {r['pageblocks']:>7,} "
              f"{r['engine_heap_mb']:>16} {r['prepare_peak_rss_mb']:>17} {r['simulate_peak_rss_mb']:>18}")
    print(f"(python + import thpreplay.simulate alone: {floor_rss} MiB)")


if __name__ == "__main__":
    main()
