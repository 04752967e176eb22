"""Faults: ingest and simulate killed at any point, interrupted, or out of disk space.

A dataset (and a dataset's simulation) is either the old one or the complete new one, never a mix
and never missing: outputs are built in a hidden sibling and swapped in with one atomic
renameat2(RENAME_EXCHANGE) (thpreplay.atomic). What a killed run leaves behind is removed by the next
run that writes the same output.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from thpreplay import atomic

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "tests" / "data" / "bad" / "fragment-6.18.txt"
BUNDLE = ROOT / "sample_traces" / "qemu-6.1-2node"
THP = str(Path(sys.executable).parent / "thpreplay")


def fingerprint(ds: Path) -> dict:
    """What a reader sees: the tables, their row counts and the dataset's own record of itself."""
    out = {}
    for d in sorted(p for p in ds.iterdir() if p.is_dir()):
        parts = sorted(d.glob("*.parquet"))
        out[d.name] = pl.read_parquet(parts).height if parts else 0
    meta = json.loads((ds / "dataset.json").read_text())
    out["dataset.json"] = {k: v for k, v in meta.items() if k not in ("elapsed_s", "created")}
    return out


def sim_fingerprint(ds: Path) -> dict:
    sim = ds / "simulation"
    info = json.loads((sim / "simulation.json").read_text())
    return {"policies": info["policies"],
            **{t: pl.read_parquet(sorted((sim / t).glob("*.parquet"))).height for t in ("outcomes", "outcome_summary")}}


def hidden(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.glob(f".{name}.*"))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "THPREPLAY_DEBUG"} | (env or {})
    return subprocess.run([THP, *args], capture_output=True, env=full, timeout=300)


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """The old dataset (a 28-event fragment) and the new one (the 2-node capture), made once."""
    d = tmp_path_factory.mktemp("states")
    assert cli("ingest", str(SMALL), "-o", str(d / "old"), "-q").returncode == 0
    assert cli("ingest", str(BUNDLE), "-o", str(d / "new"), "-q").returncode == 0
    return fingerprint(d / "old"), fingerprint(d / "new")


@pytest.mark.slow  # long: make test-slow runs it
def test_killed_ingest_leaves_the_old_or_the_new_dataset(states, tmp_path):
    old, new = states
    ds = tmp_path / "ds"
    rng = random.Random(7)
    seen = set()
    delays = [0.05, 0.3, 0.8] + sorted(rng.uniform(0.5, 6.0) for _ in range(7))
    for delay in delays:
        shutil.rmtree(ds, ignore_errors=True)
        assert cli("ingest", str(SMALL), "-o", str(ds), "-q").returncode == 0
        proc = subprocess.Popen([THP, "ingest", str(BUNDLE), "-o", str(ds), "--force", "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        got = fingerprint(ds)  # the dataset is there and readable...
        assert got in (old, new), delay  # ...and it is one of the two, whole
        seen.add("new" if got == new else "old")
    assert "old" in seen  # killed before the swap at least once (the machine's speed decides the rest)
    # the next run clears what the killed ones left behind
    assert cli("ingest", str(SMALL), "-o", str(ds), "--force", "-q").returncode == 0
    assert hidden(tmp_path, "ds") == []
    assert fingerprint(ds) == old


def test_interrupted_ingest_keeps_the_old_dataset(states, tmp_path):
    old, _ = states
    ds = tmp_path / "ds"
    assert cli("ingest", str(SMALL), "-o", str(ds), "-q").returncode == 0
    proc = subprocess.Popen([THP, "ingest", str(BUNDLE), "-o", str(ds), "--force", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not hidden(tmp_path, "ds") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # interrupt while it writes (its build directory exists)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the ingest finished before the interrupt on this machine")
    assert proc.returncode == 130 and err.decode() == "thpreplay: interrupted; no dataset written\n"
    assert fingerprint(ds) == old and hidden(tmp_path, "ds") == []


@pytest.mark.slow  # long: make test-slow runs it
def test_killed_simulate_leaves_the_old_or_the_new_simulation(tmp_path):
    ds = tmp_path / "ds"
    assert cli("ingest", str(BUNDLE), "-o", str(ds), "-q").returncode == 0
    assert cli("simulate", str(ds), "--policy", "local-only-4.8", "-q").returncode == 0
    old = sim_fingerprint(ds)
    rng = random.Random(11)
    seen = set()
    for delay in [0.1, 1.0] + sorted(rng.uniform(1.0, 8.0) for _ in range(4)):
        proc = subprocess.Popen([THP, "simulate", str(ds), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        got = sim_fingerprint(ds)
        assert got == old or (len(got["policies"]) == 9 and got["outcome_summary"] == 9), (delay, got)
        seen.add("new" if got != old else "old")
        if got != old:  # finished before the kill: start again from the old one
            assert cli("simulate", str(ds), "--policy", "local-only-4.8", "-q").returncode == 0
    assert "old" in seen
    assert cli("simulate", str(ds), "--policy", "local-only-4.8", "-q").returncode == 0
    assert hidden(ds, "simulation") == []


def test_a_second_simulate_of_the_same_dataset_is_refused_while_one_runs(tmp_path):
    """Two real processes: the second is refused in one line while the first holds the dataset's lock
    (stopped there with SIGSTOP, so that the test does not race it), and the first completes as if alone."""
    ds = tmp_path / "ds"
    assert cli("ingest", str(BUNDLE), "-o", str(ds), "-q").returncode == 0
    first = subprocess.Popen([THP, "simulate", str(ds), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lock = ds / ".simulate.lock"
    deadline = time.monotonic() + 60
    while True:  # until the first holds the lock (a non-blocking attempt fails)
        assert first.poll() is None, "the first simulate ended before the test saw it hold the lock"
        if lock.exists():
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                break
            finally:
                os.close(fd)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)  # keep it holding the lock however fast it would finish
    try:
        second = cli("simulate", str(ds), "-q")
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 1
    assert second.stderr.decode() == (f"thpreplay: {ds}: being simulated by pid {first.pid} (thpreplay simulate); "
                                      "wait for it to finish, or pass --wait\n")
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    assert sim_fingerprint(ds)["outcome_summary"] == 9 and hidden(ds, "simulation") == []


def test_replace_dir_swaps_in_one_step_and_without_renameat2(tmp_path, monkeypatch):
    final = tmp_path / "ds"
    final.mkdir()
    (final / "old").write_text("old")
    tmp = atomic.make_tmp(final)
    (tmp / "new").write_text("new")
    assert atomic._exchange(tmp, final)  # this machine's kernel and file system have the exchange
    atomic._exchange(tmp, final)  # swap back for the real call
    atomic.replace_dir(tmp, final)
    assert [p.name for p in final.iterdir()] == ["new"] and hidden(tmp_path, "ds") == []
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # e.g. a file system without it
    tmp = atomic.make_tmp(final)
    (tmp / "newer").write_text("newer")
    atomic.replace_dir(tmp, final)
    assert [p.name for p in final.iterdir()] == ["newer"] and hidden(tmp_path, "ds") == []


def test_stale_directories_of_live_processes_are_kept(tmp_path):
    final = tmp_path / "ds"
    mine = tmp_path / f".ds.tmp-{os.getpid()}-abc"
    dead = tmp_path / ".ds.tmp-999999999-abc"
    dead_old = tmp_path / ".ds.old-999999999"
    other = tmp_path / ".dsx.tmp-999999999-abc"
    for d in (mine, dead, dead_old, other):
        d.mkdir()
    removed = atomic.clean_stale(final)
    assert sorted(p.name for p in removed) == sorted([dead.name, dead_old.name])
    assert mine.exists() and other.exists()


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs: too small for the 2-node capture's dataset (about 0.5 MB)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@needs_root
def test_full_disk_gives_one_line_and_no_output(small_disk):
    ds = small_disk / "ds"
    r = cli("ingest", str(BUNDLE), "-o", str(ds))
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err, err
    assert err == f"thpreplay: {ds}: write failed: No space left on device\n"
    assert list(small_disk.iterdir()) == []


@needs_root
def test_full_disk_keeps_the_old_simulation(tmp_path):
    """A simulate that runs out of space leaves the dataset's previous simulation as it was."""
    ds = tmp_path / "src"
    assert cli("ingest", str(BUNDLE), "-o", str(ds), "-q").returncode == 0
    assert cli("simulate", str(ds), "--policy", "local-only-4.8", "-q").returncode == 0
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr.decode().strip()}")
    try:
        shutil.copytree(ds, mnt / "ds")
        shutil.rmtree(mnt / "ds" / "cache", ignore_errors=True)  # the op file below, not the demand cache
        st = os.statvfs(mnt)
        with open(mnt / "filler", "wb") as f:  # leave 16 KiB: less than a nine-policy simulation needs
            f.truncate(0)
            f.write(b"\0" * (st.f_bavail * st.f_frsize - 16 * 1024))
        before = sim_fingerprint(mnt / "ds")
        # the demand's op file goes elsewhere ($THPREPLAY_TMPDIR): the simulation's own write fails
        r = cli("simulate", str(mnt / "ds"), env={"THPREPLAY_TMPDIR": str(tmp_path), "THPREPLAY_NO_CACHE": "1"})
        err = r.stderr.decode()
        assert r.returncode == 1 and "Traceback" not in err, err
        assert err.startswith(f"thpreplay: {mnt / 'ds'}: writing the simulation failed: No space left on device"), err
        assert len(err.splitlines()) == 1
        assert sim_fingerprint(mnt / "ds") == before and hidden(mnt / "ds", "simulation") == []
        # the op file next to the dataset (the default): no room for it either
        r = cli("simulate", str(mnt / "ds"), env={"THPREPLAY_NO_CACHE": "1"})
        err = r.stderr.decode()
        assert r.returncode == 1 and err == (f"thpreplay: {mnt / 'ds'}: writing the demand's op file failed: "
                                             "No space left on device\n"), err
        assert sim_fingerprint(mnt / "ds") == before and hidden(mnt / "ds", "simulation") == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
