"""`thpreplay sweep`: partition naming, resume and failures; and for real, on a Dask scheduler and two
workers started as separate processes with Dask's own commands, one of them killed mid-sweep."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SAMPLES, SAMPLE_NAMES
from thpreplay import sweep as sw
from thpreplay.errors import InputError, OutputError
from thpreplay.sim.params import Params
from thpreplay.simulate import prepare, replay, select_policies

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
THP = str(BIN / "thpreplay")
POLICIES = [p.name for p in select_policies(None, None)]
PARTITION_FILES = ("memory_series.parquet", "outcome_summary.parquet", "outcomes.parquet", "task.json")


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "THPREPLAY_DEBUG"}
    return subprocess.run([THP, *args], capture_output=True, text=True, env=env, timeout=timeout)


def partitions(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("capture=*/policy=*/settings=*") if p.is_dir())


def hidden_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("capture=*/**/.*") if p.is_dir())


def partition_diffs(a: Path, b: Path) -> list[str]:
    """Every partition file that is missing from one side or differs in a single byte."""
    names = {p.relative_to(a) for p in partitions(a)} | {p.relative_to(b) for p in partitions(b)}
    diffs = []
    for rel in sorted(names):
        for f in PARTITION_FILES:
            x, y = a / rel / f, b / rel / f
            if not (x.is_file() and y.is_file() and x.read_bytes() == y.read_bytes()):
                diffs.append(str(rel / f))
    return diffs


# --- naming, planning, resume ---------------------------------------------------------------------

def test_partition_names_are_hive_segments(tmp_path):
    t = sw.Task("qemu-6.1-2node", "relaxed-5.3-rc5", "madvise", "defer+madvise")
    assert t.partition(tmp_path) == tmp_path / "capture=qemu-6.1-2node/policy=relaxed-5.3-rc5/settings=madvise-defer+madvise"
    assert t.label() == "qemu-6.1-2node relaxed-5.3-rc5 madvise-defer+madvise"
    assert sw.tasks_for("c", ["a", "b"], ["always"], ["madvise", "never"]) == [
        sw.Task("c", "a", "always", "madvise"), sw.Task("c", "b", "always", "madvise"),
        sw.Task("c", "a", "always", "never"), sw.Task("c", "b", "always", "never")]


def test_capture_names(tmp_path):
    (tmp_path / "host-17").mkdir()
    for name in ("trace.txt.zst", "perf.data", "web01.txt", "plain"):
        (tmp_path / name).write_text("")
    got = [sw.capture_name(tmp_path / n) for n in ("host-17", "trace.txt.zst", "perf.data", "web01.txt", "plain")]
    assert got == ["host-17", "trace", "perf", "web01", "plain"]


def test_capture_names_must_be_unique_and_safe(tmp_path):
    for d in ("a/x", "b/x", "bad name"):
        (tmp_path / d).mkdir(parents=True)
    with pytest.raises(InputError) as e:
        sw.plan_captures([str(tmp_path / "a/x"), str(tmp_path / "b/x")], tmp_path / "S")
    assert e.value.message == (f"{tmp_path}/b/x: capture name 'x' is also the name of {tmp_path}/a/x; "
                               "capture names must be unique")
    with pytest.raises(InputError, match="capture name is not a safe partition value"):
        sw.plan_captures([str(tmp_path / "bad name")], tmp_path / "S")
    for bad in ("a=b", ".hidden", "a/b", "x'y", ""):
        with pytest.raises(InputError):
            sw.safe_value("capture", bad)


def test_a_dataset_is_used_in_place_a_bundle_is_ingested_into_the_sweep(sample_dataset, tmp_path):
    ds = sample_dataset("qemu-6.1-2node-kpf")
    caps = sw.plan_captures([str(ds), str(SAMPLES / "local-6.18-kpf")], tmp_path / "S")
    assert [(c.name, c.dataset, c.needs_ingest) for c in caps] == [
        ("qemu-6.1-2node-kpf", str(ds), False),
        ("local-6.18-kpf", str((tmp_path / "S").absolute() / "datasets" / "local-6.18-kpf"), True)]


def test_finished_partitions_are_skipped_and_half_made_ones_removed(tmp_path):
    tasks = sw.tasks_for("c", ["p1", "p2"], ["always"], ["madvise", "never"])
    tasks[0].partition(tmp_path).mkdir(parents=True)
    tasks[3].partition(tmp_path).mkdir(parents=True)
    half = tasks[1].partition(tmp_path).parent / ".settings=always-madvise.tmp-999-abc"
    half.mkdir(parents=True)
    todo, done = sw.pending(tasks, tmp_path)
    assert (todo, done) == ([tasks[1], tasks[2]], 2)
    assert sw.clean_partials(tmp_path) == 1
    assert not half.exists() and tasks[0].partition(tmp_path).is_dir()


def test_the_sweep_record_refuses_other_params_and_a_renamed_capture(tmp_path):
    cap = sw.Capture("x", "/data/a/x", "/data/a/x", False)
    sw._record(tmp_path, [cap], ["relaxed-5.3-rc5"], None, ["madvise"], Params())
    rec = json.loads((tmp_path / "sweep.json").read_text())
    assert rec["captures"] == {"x": {"source": "/data/a/x", "dataset": "/data/a/x"}}
    with pytest.raises(OutputError, match="made with other --params"):
        sw._record(tmp_path, [cap], ["relaxed-5.3-rc5"], None, None, Params(seed=2))
    with pytest.raises(InputError, match="capture name 'x' already means /data/a/x"):
        sw._record(tmp_path, [sw.Capture("x", "/data/b/x", "/data/b/x", False)], [], None, None, Params())


def test_a_task_returns_its_error_and_a_refused_setting_is_an_empty_partition(tmp_path):
    inputs = sw.run_prepare(str(tmp_path), "always", "madvise", Params())
    assert inputs == sw.Failed(f"{tmp_path}: not a thpreplay dataset (no dataset.json); make one with thpreplay ingest")
    out = sw.run_simulate(inputs, sw.Task("c", "relaxed-5.3-rc5", "always", "madvise"), Params(), str(tmp_path))
    assert out == {"error": inputs.message} and partitions(tmp_path) == []
    t = sw.Task("c", "prefer-local-4.0", "always", "defer")
    out = sw.run_simulate(None, t, Params(), str(tmp_path))
    assert out["refused"].startswith("policy prefer-local-4.0: defrag mode 'defer' does not exist")
    info = json.loads((t.partition(tmp_path) / "task.json").read_text())
    assert info["refused"] == out["refused"]
    assert sorted(p.name for p in t.partition(tmp_path).iterdir()) == list(PARTITION_FILES)


# --- the command line ----------------------------------------------------------------------------

def test_cli_errors(tmp_path):
    for d in ("a/x", "b/x"):
        (tmp_path / d).mkdir(parents=True)
    r = cli("sweep", str(tmp_path / "a/x"), str(tmp_path / "b/x"), "-o", str(tmp_path / "S"))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == (f"thpreplay: {tmp_path}/b/x: capture name 'x' is also the name of {tmp_path}/a/x; "
                        "capture names must be unique\nhint: rename one of them\n")
    r = cli("sweep", str(tmp_path / "a/x"), "--policy", "nosuch", "-o", str(tmp_path / "S"))
    assert r.returncode == 1 and r.stderr.startswith("thpreplay: unknown policy 'nosuch' (known: prefer-local-4.0, ")
    (tmp_path / "notasweep").mkdir()
    (tmp_path / "notasweep" / "f").write_text("")
    r = cli("sweep", str(tmp_path / "a/x"), "-o", str(tmp_path / "notasweep"))
    assert (r.returncode, r.stderr) == (1, f"thpreplay: {tmp_path}/notasweep: exists and is not a sweep (no sweep.json)\n")
    r = cli("sweep", str(tmp_path / "a/x"))
    assert r.returncode == 2 and "Missing option '-o'" in r.stderr
    # a scheduler that is no address, and more local workers than the CPUs can run: refused before
    # anything is written
    r = cli("sweep", str(tmp_path / "a/x"), "--scheduler", "garbage", "-o", str(tmp_path / "S2"))
    assert (r.returncode, r.stderr) == (1, "thpreplay: --scheduler garbage: not a Dask scheduler address (tcp://HOST:PORT)\n")
    cpus = os.cpu_count() or 1
    r = cli("sweep", str(tmp_path / "a/x"), "--workers", "1000", "-o", str(tmp_path / "S2"))
    assert (r.returncode, r.stderr) == (1, f"thpreplay: --workers 1000: this machine has {cpus} CPUs, so a local "
                                           f"cluster takes 1 to {4 * cpus} worker processes (use --scheduler for a "
                                           "larger cluster)\n")
    assert not (tmp_path / "S2").exists()


def test_a_bad_capture_fails_alone_and_the_sweep_exits_1(sample_dataset, tmp_path):
    bad = tmp_path / "garbage.txt"
    bad.write_text("this is not a trace\n" * 5)
    good = sample_dataset("qemu-6.1-2node-kpf")
    out = tmp_path / "S"
    missing = tmp_path / "missing.txt"
    r = cli("sweep", str(good), str(bad), str(missing), "--policy", "relaxed-5.3-rc5", "--defrag", "madvise",
            "--defrag", "never", "--workers", "1", "-o", str(out))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 3 and lines[2] == "thpreplay: sweep: 2 failed (see above); run again to retry them"
    failed = sorted(lines[:2])
    assert failed[0].startswith("thpreplay: sweep: garbage ingest: ")
    assert failed[1] == f"thpreplay: sweep: missing ingest: {missing}: no such file or directory"
    assert r.stdout.splitlines()[0] == f"sweep {out}: 2 partitions written, 0 skipped (finished before), 2 failed"
    assert [p.relative_to(out).as_posix() for p in partitions(out)] == [
        "capture=qemu-6.1-2node-kpf/policy=relaxed-5.3-rc5/settings=madvise-madvise",
        "capture=qemu-6.1-2node-kpf/policy=relaxed-5.3-rc5/settings=madvise-never"]
    r = cli("query", str(out), "select capture, policy, settings, faults, compact_stall from outcome_summary "
            "order by settings", "--format", "csv")
    # the partition holds what a replay of the same capture, policy and settings gives
    stalls = replay(prepare(good, defrag="madvise"), select_policies(["relaxed-5.3-rc5"], None)).runs[0].counters["compact_stall"]
    assert stalls > 0
    assert r.stdout.splitlines() == ["capture,policy,settings,faults,compact_stall",
                                     f"qemu-6.1-2node-kpf,relaxed-5.3-rc5,madvise-madvise,288,{stalls}",
                                     "qemu-6.1-2node-kpf,relaxed-5.3-rc5,madvise-never,288,0"]


# --- for real: a scheduler and two workers, one killed mid-sweep ------------------------------------

def reference_run(sample_dataset, names: list[str], defrags: list[str], root: Path) -> None:
    """The same sweep in this process, task by task, from datasets ingested here (not by the workers)."""
    for name in names:
        ds = str(sample_dataset(name))
        enabled, _ = sw.capture_settings(ds)
        for defrag in defrags:
            inputs = sw.run_prepare(ds, enabled, defrag, Params())
            for t in sw.tasks_for(name, POLICIES, [enabled], [defrag]):
                assert "error" not in sw.run_simulate(inputs, t, Params(), str(root))


class Cluster:
    """`dask scheduler` and `dask worker` processes on loopback (random ports, one thread per worker)."""

    def __init__(self, tmp: Path, workers: int):
        self.procs: list[subprocess.Popen] = []
        self.logs = tmp / "dask-logs"
        self.logs.mkdir()
        info = tmp / "scheduler.json"
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(info))
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.address = json.loads(info.read_text())["address"]
        # the workers differ in polars' thread pool (all cores, one): results must not
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
        self.workers = [self._start(f"worker{i}", "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
                                    "--no-nanny", "--no-dashboard", "--name", f"w{i}", "--preload",
                                    "sweep_slow_worker", env={**env, "POLARS_MAX_THREADS": "1"} if i else env)
                        for i in range(workers)]
        from distributed import Client

        with Client(self.address, timeout="30s") as c:
            c.wait_for_workers(workers, timeout=60)

    def _start(self, log: str, *args: str, env=None) -> subprocess.Popen:
        with open(self.logs / f"{log}.log", "w") as out:
            p = subprocess.Popen([str(BIN / "dask"), *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
            p.wait()


def kill_one_worker_mid_sweep(sample_dataset, tmp_path, names: list[str], defrags: list[str]) -> None:
    out = tmp_path / "S"
    total = len(names) * len(POLICIES) * len(defrags)
    cluster = Cluster(tmp_path, workers=2)
    try:
        args = [THP, "sweep", *[str(SAMPLES / n) for n in names], *[a for d in defrags for a in ("--defrag", d)],
                "--scheduler", cluster.address, "-o", str(out)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while len(partitions(out)) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        at_kill = len(partitions(out))
        cluster.workers[0].send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=600)
        assert cluster.workers[0].wait() == -signal.SIGKILL
        assert cluster.workers[1].poll() is None  # the other worker finished the sweep
    finally:
        cluster.close()
    assert 4 <= at_kill < total  # killed mid-sweep
    assert (proc.returncode, stderr) == (0, "")
    # a task the killed worker had renamed into place but not reported is run again and finds its
    # partition complete: skipped, not written twice
    m = re.fullmatch(rf"sweep {out}: (\d+) partitions written, (\d+) skipped \(finished before\), 0 failed",
                     stdout.splitlines()[0])
    assert m and int(m[1]) + int(m[2]) == total and int(m[2]) <= 1, stdout
    assert len(partitions(out)) == total

    # resume: nothing is run again, and what the killed worker left half-made is removed
    r = cli("sweep", *[str(SAMPLES / n) for n in names], *[a for d in defrags for a in ("--defrag", d)],
            "--workers", "1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"sweep {out}: 0 partitions written, {total} skipped (finished before), 0 failed"
    assert hidden_dirs(out) == []

    # the settings give different results, so a task fed the other setting's inputs would show below
    by_policy: dict[Path, set[bytes]] = {}
    for p in partitions(out):
        by_policy.setdefault(p.parent, set()).add((p / "outcomes.parquet").read_bytes())
    assert any(len(v) > 1 for v in by_policy.values())

    # the same results as a single-process run, byte for byte
    ref = tmp_path / "R"
    reference_run(sample_dataset, names, defrags, ref)
    assert len(partitions(ref)) == total
    assert partition_diffs(out, ref) == []

    # and the comparison can fail: one changed byte, one missing partition
    victim = partitions(ref)[total // 2] / "outcomes.parquet"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    shutil.rmtree(partitions(ref)[0])
    assert partition_diffs(out, ref) == [str(partitions(out)[0].relative_to(out) / f) for f in PARTITION_FILES] + [
        str(victim.relative_to(ref))]


@pytest.mark.slow  # long: make test-slow runs it
def test_distributed_sweep_survives_a_killed_worker(sample_dataset, tmp_path):
    """Two small captures x every built-in policy x two defrag settings (make test)."""
    kill_one_worker_mid_sweep(sample_dataset, tmp_path, ["local-6.18-kpf", "qemu-6.1-2node-kpf"], ["madvise", "never"])


@pytest.mark.slow
def test_distributed_sweep_of_every_sample_survives_a_killed_worker(sample_dataset, tmp_path):
    """Every bundled sample x every built-in policy x two defrag settings (make test-sweep)."""
    if shutil.which("perf") is None:
        pytest.skip("perf is needed to decode the perf.data sample")
    kill_one_worker_mid_sweep(sample_dataset, tmp_path, SAMPLE_NAMES, ["madvise", "never"])
