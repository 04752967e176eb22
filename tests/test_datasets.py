"""Datasets checked before use, and concurrent commands on one dataset (pipeline/thpreplay/dataset.py).

The dataset is the small real capture tests/data/bad/fragment-6.18.txt, ingested and simulated once;
each test damages a copy of it the way a disk, a copy or a hand can (a part cut short, a part of
another table, a column dropped or retyped, a record that is not JSON or has the wrong types) and runs
every command that reads datasets through the real console script: one line naming the file and what
to do, exit 1, no traceback.

The races are made deterministic with the locks themselves: the test holds the lock a command would
wait for (or waits, through /proc/locks, until a real command holds one), never a sleep.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from test_bad_input import FRAGMENT, _cli, assert_fails, run_cli
from thpreplay import atomic, schemas, simulate as simulate_mod
from thpreplay.dataset import SIM_LOCK, publish
from thpreplay.errors import OutputError
from thpreplay.ingest import ingest
from thpreplay.simulate import simulate
from thpreplay.sweep import Failed, run_prepare
from thpreplay.sim.params import Params

REINGEST = "ingest the capture again"
RESIMULATE = "run thpreplay simulate again"
# every command that reads a dataset, with the arguments it needs
READERS = {"simulate": ["simulate", "ds"], "validate": ["validate", "ds"], "query": ["query", "ds", "select 1"],
           "report": ["report", "ds"]}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The fragment ingested and simulated under one policy (its simulation is read by query and report)."""
    ds = tmp_path_factory.mktemp("base") / "ds"
    ingest([str(FRAGMENT)], ds)
    simulate(ds, policies=["local-only-4.8"])
    return ds


@pytest.fixture
def ds(base, tmp_path, monkeypatch) -> Path:
    """A copy of the base dataset at tmp_path/ds, the working directory (messages say ds/...)."""
    shutil.copytree(base, tmp_path / "ds")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "ds"


def run_all(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """The commands at once (each is a fresh interpreter: most of a run is its start-up)."""
    env = {k: v for k, v in os.environ.items() if k != "THPREPLAY_DEBUG"}
    procs = [subprocess.Popen([*_cli(), *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env) for args in commands]
    out = []
    for args, p in zip(commands, procs):
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(args, p.returncode, stdout, stderr))
    return out


def assert_all_fail(ds: Path, commands: list[str], line: str) -> None:
    for proc in run_all([READERS[c] for c in commands], ds.parent):
        assert_fails(proc, line)


def part(ds: Path, table: str) -> Path:
    return sorted((ds / table).glob("*.parquet"))[0]


def rel(p: Path) -> str:
    return str(p.relative_to(Path.cwd()))


# ------------------------------------------------------------------------------- damaged datasets


def test_a_whole_dataset_passes_its_checks(ds):
    """The checks accept what ingest and simulate write (a capture without THP faults: its report shows
    an empty latency figure rather than failing on the log scale)."""
    procs = run_all([["simulate", "ds", "--policy", "local-only-4.8", "-q"], ["query", "ds", "select count(*) AS n "
                     "FROM page_alloc", "--format", "csv"], ["report", "ds", "-q", "-o", "r.html"]], ds.parent)
    assert [(p.returncode, p.stderr) for p in procs] == [(0, b"")] * 3
    assert procs[1].stdout == b"n\n18\n" and procs[2].stdout == b"report: r.html\n"


def test_a_part_cut_short(ds):
    """A Parquet file keeps its footer at the end: a copy cut short has none."""
    p = part(ds, "page_alloc")
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    assert_all_fail(ds, list(READERS), f"thpreplay: {rel(p)}: not a whole Parquet file (cut short or damaged); {REINGEST}")


def test_a_part_that_is_not_parquet(ds):
    p = part(ds, "page_fault")
    p.write_bytes(FRAGMENT.read_bytes())
    assert_all_fail(ds, ["query"], f"thpreplay: {rel(p)}: not a whole Parquet file (cut short or damaged); {REINGEST}")


def test_a_part_of_another_table(ds):
    p = part(ds, "page_alloc")
    shutil.copyfile(part(ds, "reclaim"), p)
    want = f"thpreplay: {rel(p)}: holds table {schemas.load('reclaim').id}, not {schemas.load('page_alloc').id}; {REINGEST}"
    assert_all_fail(ds, list(READERS), want)


def _rewrite(p: Path, change) -> None:
    """Rewrite a part with pyarrow, its schema stamp kept (as a tool that edits a table in place would)."""
    table = pq.read_table(p)
    pq.write_table(change(table), p)
    assert schemas.schema_id_of(p) == schemas.load(p.parent.name).id


def test_a_dropped_column(ds):
    p = part(ds, "page_alloc")
    _rewrite(p, lambda t: t.drop_columns(["order"]))
    want = f"thpreplay: {rel(p)}: column 'order' missing ({schemas.load('page_alloc').id} declares it); {REINGEST}"
    assert_all_fail(ds, list(READERS), want)


def test_a_retyped_column(ds):
    import pyarrow as pa

    p = part(ds, "page_alloc")
    _rewrite(p, lambda t: t.set_column(t.schema.get_field_index("order"), "order", t["order"].cast(pa.string())))
    want = f"thpreplay: {rel(p)}: column 'order' is string, {schemas.load('page_alloc').id} declares int16; {REINGEST}"
    assert_all_fail(ds, list(READERS), want)


def test_an_extra_column_and_a_part_without_the_stamp(ds):
    import pyarrow as pa

    p = part(ds, "page_alloc")
    _rewrite(p, lambda t: t.append_column("note", pa.array(["x"] * t.num_rows)))
    sid = schemas.load("page_alloc").id
    assert_all_fail(ds, ["query"], f"thpreplay: {rel(p)}: column 'note' is not in {sid}; {REINGEST}")
    pq.write_table(pq.read_table(p).drop_columns(["note"]).replace_schema_metadata(None), p)
    assert_all_fail(ds, ["query"], f"thpreplay: {rel(p)}: not written by thpreplay (no {sid} stamp); {REINGEST}")


def test_a_table_missing(ds):
    shutil.rmtree(ds / "thp_faults")
    assert_all_fail(ds, ["query", "simulate"], f"thpreplay: ds/thp_faults: table missing from the dataset; {REINGEST}")


def test_damage_inside_a_part_whose_footer_is_whole(ds):
    """The cheap check reads footers only; a read that then fails names the part, in one line."""
    p = part(ds, "page_alloc")
    data = bytearray(p.read_bytes())
    start = 4  # the column chunks follow the magic bytes; the footer is the last 8 bytes plus its length
    footer = int.from_bytes(data[-8:-4], "little") + 8
    for i in range(start, len(data) - footer):
        data[i] = 0xFF
    p.write_bytes(bytes(data))
    # simulate reads it with polars, query with DuckDB (a failed read is not blamed on the SQL)
    for proc in run_all([READERS["simulate"], ["query", "ds", "select sum(pfn) from page_alloc"]], ds.parent):
        err = proc.stderr.decode()
        assert proc.returncode == 1 and "Traceback" not in err and len(err.splitlines()) == 1, err
        assert err.startswith(f"thpreplay: {rel(p)}: damaged Parquet data (") and err.endswith(f"); {REINGEST}\n"), err


def test_a_dataset_record_that_is_not_json(ds):
    (ds / "dataset.json").write_text('{"format": "thpreplay-dataset", "version": 1,\n')
    assert_all_fail(ds, list(READERS), f"thpreplay: ds/dataset.json: damaged dataset record (not JSON: line 2 "
                    f"column 1); {REINGEST}")


@pytest.mark.parametrize("change, why", [
    (lambda r: {**r, "schemas": [1]}, "'schemas' is not an object of schema ids"),
    (lambda r: {**r, "version": "1"}, "'version' is not a number"),
    (lambda r: {k: v for k, v in r.items() if k != "schemas"}, "'schemas' is not an object of schema ids"),
    (lambda r: [r], "not a JSON object"),
])
def test_a_dataset_record_of_the_wrong_types(ds, change, why):
    record = json.loads((ds / "dataset.json").read_text())
    (ds / "dataset.json").write_text(json.dumps(change(record)))
    assert_all_fail(ds, ["query"], f"thpreplay: ds/dataset.json: damaged dataset record ({why}); {REINGEST}")


def test_a_dataset_from_before_a_table_existed(ds):
    record = json.loads((ds / "dataset.json").read_text())
    del record["schemas"]["topology"]
    (ds / "dataset.json").write_text(json.dumps(record))
    assert_all_fail(ds, ["query"], f"thpreplay: ds: made without table 'topology', which this thpreplay reads: {REINGEST}")


def test_a_dataset_record_missing(ds):
    (ds / "dataset.json").unlink()
    assert_all_fail(ds, list(READERS), "thpreplay: ds: not a thpreplay dataset (no dataset.json); make one with "
                    "thpreplay ingest")


def test_a_damaged_simulation_is_refused_by_its_readers_and_replaced_by_simulate(ds, base):
    sim = ds / "simulation"
    (sim / "simulation.json").write_text('{"policies": ["local-only-4.8"], "settings": ')
    assert_all_fail(ds, ["query", "report"], f"thpreplay: ds/simulation/simulation.json: damaged simulation record "
                    f"(not JSON: line 1 column 46); {RESIMULATE}")
    (sim / "simulation.json").write_text(json.dumps({"policies": [], "settings": {"enabled": "always"}, "demand": {},
                                                     "initial_state": {}, "notes": [], "schemas": {}}))
    assert_all_fail(ds, ["report"], f"thpreplay: ds/simulation/simulation.json: damaged simulation record "
                    f"('settings.defrag' is not a string); {RESIMULATE}")
    shutil.copyfile(base / "simulation" / "simulation.json", sim / "simulation.json")
    p = part(ds, "simulation/outcomes")
    p.write_bytes(p.read_bytes()[:100])
    assert_all_fail(ds, ["query"], f"thpreplay: {rel(p)}: not a whole Parquet file (cut short or damaged); {RESIMULATE}")
    # simulate does not read the old simulation: it replaces it
    proc = run_cli(["simulate", "ds", "--policy", "local-only-4.8", "-q"], ds.parent)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert json.loads((ds / "simulation" / "simulation.json").read_text())["policies"] == ["local-only-4.8"]


def test_a_sweep_task_reports_a_damaged_input_dataset(ds):
    p = part(ds, "page_alloc")
    p.write_bytes(p.read_bytes()[:100])
    got = run_prepare(str(ds), "always", "madvise", Params())
    assert got == Failed(f"{p}: not a whole Parquet file (cut short or damaged); {REINGEST}")


# ------------------------------------------------------------------------------------------ locks


def _locks(path: Path) -> list[tuple[int, str, bool]]:
    """(pid, READ or WRITE, waiting) of every flock on path, from /proc/locks."""
    ino = str(os.stat(path).st_ino)
    out = []
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        waiting = len(f) > 1 and f[1] == "->"
        if waiting:
            f = f[:1] + f[2:]
        if len(f) >= 6 and f[1] == "FLOCK" and f[5].rsplit(":", 1)[-1] == ino:
            out.append((int(f[4]), f[3], waiting))
    return out


def until(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, f"{proc.args} ended before {what}: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "THPREPLAY_DEBUG"}
    return subprocess.Popen([*_cli(), *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def hold(path: Path, mode: int) -> int:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else os.O_CREAT))
    fcntl.flock(fd, mode | fcntl.LOCK_NB)
    return fd


def ten_events(tmp_path: Path) -> Path:
    """Another capture to re-ingest: the fragment's header and first 10 events."""
    new = tmp_path / "ten.txt"
    new.write_text("\n".join(FRAGMENT.read_text().splitlines()[:22]) + "\n")
    return new


def count(ds: Path, table: str) -> int:
    return sum(pq.read_metadata(p).num_rows for p in (ds / table).glob("*.parquet"))


def test_ingest_force_is_refused_while_a_simulate_uses_the_dataset_and_waits_with_wait(ds, tmp_path):
    """The reported race: ingest --force replacing a dataset while simulate ran on it left the old
    dataset's simulation in the new one. Here a real simulate is held inside its run (the test holds the
    simulate lock it waits for with --wait, after it has read-locked the dataset)."""
    assert count(ds, "page_alloc") == 18
    shutil.rmtree(ds / "simulation")
    new = ten_events(tmp_path)
    mine = hold(ds / SIM_LOCK, fcntl.LOCK_EX)
    sim = start(["simulate", "ds", "--policy", "local-only-4.8", "--wait", "-q"], tmp_path)
    try:
        until(lambda: (sim.pid, "READ", False) in _locks(ds), sim, "the simulate read-locked the dataset")
        # a second simulate is refused, naming the holder of the simulate lock (this test)
        assert_fails(run_cli(["simulate", "ds"], tmp_path),
                     f"thpreplay: ds: being simulated by pid {os.getpid()}; wait for it to finish, or pass --wait")
        # ingest --force refuses at once, naming the simulate; nothing is replaced or left behind
        assert_fails(run_cli(["ingest", str(new), "-o", "ds", "--force"], tmp_path),
                     f"thpreplay: ds: in use by pid {sim.pid} (thpreplay simulate); wait for it to finish before "
                     "replacing the dataset, or pass --wait")
        assert count(ds, "page_alloc") == 18 and sorted(p.name for p in tmp_path.glob(".ds.*")) == []
        # with --wait it waits for the simulate, and says so
        ing = start(["ingest", str(new), "-o", "ds", "--force", "--wait", "-q"], tmp_path)
        line = ing.stderr.readline().decode()
        assert line == f"thpreplay: waiting for pid {sim.pid} (thpreplay simulate) to finish with ds\n"
        assert ing.poll() is None and count(ds, "page_alloc") == 18
    finally:
        os.close(mine)
    assert sim.wait(timeout=300) == 0, sim.stderr.read().decode()
    assert ing.wait(timeout=300) == 0, ing.stderr.read().decode()
    # the new dataset is in place, without the old one's simulation
    assert count(ds, "page_alloc") == 10 and not (ds / "simulation").exists()


def test_a_reader_waiting_for_a_replacement_reads_the_new_dataset(ds, tmp_path):
    """A query that opened the old dataset just as ingest replaced it reads the new one, whole: the
    test takes the exclusive lock as ingest does, lets a query block on it, replaces the dataset as
    ingest does, and lets go."""
    newer = tmp_path / "newer"
    ingest([str(ten_events(tmp_path))], newer)
    mine = hold(ds, fcntl.LOCK_EX)
    q = start(["query", "ds", "select count(*) AS n FROM page_alloc", "--format", "csv"], tmp_path)
    try:
        until(lambda: (q.pid, "READ", True) in _locks(ds), q, "the query waited for the dataset")
        atomic.replace_dir(newer, ds)
    finally:
        os.close(mine)
    out, err = q.communicate(timeout=300)
    assert (q.returncode, out, err) == (0, b"n\n10\n", b"")


def test_simulate_does_not_write_into_a_dataset_moved_away_meanwhile(ds, tmp_path, monkeypatch):
    """Locks are advisory: a dataset moved by hand during a simulate is detected before publishing."""
    replay = simulate_mod.replay

    def replay_then_move(*args, **kwargs):
        result = replay(*args, **kwargs)
        ds.rename(tmp_path / "moved")
        shutil.copytree(tmp_path / "moved", ds, ignore=shutil.ignore_patterns("simulation"))
        return result

    monkeypatch.setattr(simulate_mod, "replay", replay_then_move)
    shutil.rmtree(ds / "simulation")
    with pytest.raises(OutputError) as e:
        simulate(ds, policies=["local-only-4.8"])
    assert e.value.message == (f"{ds}: the dataset was replaced or moved while it was simulated; the simulation "
                               f"was not written: {RESIMULATE}")
    assert not (ds / "simulation").exists() and not (tmp_path / "moved" / "simulation").exists()
    assert sorted(p.name for p in ds.glob(".simulation.*")) == []


def test_a_new_dataset_that_appeared_meanwhile_is_not_replaced_without_force(tmp_path):
    """Two ingests into the same new -o: the later one finds the other's dataset and refuses."""
    out, tmp = tmp_path / "ds", tmp_path / "built"
    out.mkdir()
    (out / "dataset.json").write_text("{}")
    tmp.mkdir()
    with pytest.raises(OutputError) as e:
        publish(tmp, out, False, atomic.replace_dir)
    assert e.value.message == f"{out}: already exists; use --force to replace it"
    assert (out / "dataset.json").read_text() == "{}"


def test_ingest_waits_at_the_end_for_a_command_that_began_during_it(tmp_path):
    """ingest --force checked at its start that nobody used the dataset; one that began meanwhile is
    waited for (and the wait said), not replaced under it. The test is the reader, and lets go when told."""
    out, built = tmp_path / "ds", tmp_path / "built"
    for d, text in ((out, "old"), (built, "new")):
        d.mkdir()
        (d / "dataset.json").write_text(text)
    fd = hold(out, fcntl.LOCK_SH)
    told = []

    def on_wait(message: str) -> None:
        told.append(message)
        assert (out / "dataset.json").read_text() == "old"  # not replaced while the reader holds it
        os.close(fd)

    publish(built, out, True, atomic.replace_dir, on_wait)
    assert told == [f"waiting for another process to finish with {out}"]  # /proc/locks names other processes
    assert (out / "dataset.json").read_text() == "new" and not built.exists()
