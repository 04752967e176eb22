"""The prepared demand kept in DATASET/cache (sim/cache.py): built once per dataset and settings, the same
results with and without it, never trusted when damaged, never needed when it cannot be written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from thpreplay import schemas
from thpreplay.errors import InputError
from thpreplay.sim import cache as cache_mod
from thpreplay.sim import demand as demand_mod
from thpreplay.simulate import prepare

THP = str(Path(sys.executable).parent / "thpreplay")
QEMU = "qemu-6.1-2node"
POLICY = "no-local-reclaim-7.0"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("THPREPLAY_NO_CACHE", "THPREPLAY_DEBUG")}
    e.update(env)
    return subprocess.run([THP, *args], capture_output=True, timeout=300, env=e)


def text(r: subprocess.CompletedProcess) -> str:
    """stdout as one line of words (rich wraps long note lines)."""
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert b"Traceback" not in r.stderr
    return " ".join(r.stdout.decode().split())


def tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def entries(ds: Path) -> list[Path]:
    return sorted((ds / "cache").glob("demand-*"))


@pytest.fixture
def qemu(sample_dataset, tmp_path) -> Path:
    ds = tmp_path / QEMU
    shutil.copytree(sample_dataset(QEMU), ds, ignore=shutil.ignore_patterns("cache", "simulation"))
    return ds


@pytest.fixture(scope="module")
def without(sample_dataset, tmp_path_factory) -> dict[str, bytes]:
    """The simulation's files when no cache is used at all."""
    ds = tmp_path_factory.mktemp("nocache") / QEMU
    shutil.copytree(sample_dataset(QEMU), ds, ignore=shutil.ignore_patterns("cache", "simulation"))
    r = run("simulate", str(ds), "--policy", POLICY, THPREPLAY_NO_CACHE="1")
    assert not (ds / "cache").exists() and "demand cache" not in text(r)
    return tree(ds / "simulation")


def test_same_results_without_with_and_from_the_cache(qemu, without):
    r = run("simulate", str(qemu), "--policy", POLICY)  # builds and keeps it
    assert "demand cache" not in text(r)
    assert tree(qemu / "simulation") == without
    [entry] = entries(qemu)
    assert sorted(p.name for p in entry.iterdir()) == ["arrays.bin", "faults.parquet", "manifest.json", "ops.bin"]
    kept = tree(entry)
    r = run("simulate", str(qemu), "--policy", POLICY)  # reads it
    assert "demand cache" not in text(r)
    assert tree(qemu / "simulation") == without
    assert tree(entry) == kept


def test_a_second_simulate_starts_without_pyarrow_or_the_plugins(qemu, without):
    """The second simulate of a dataset is mostly the command's start-up: it reads the parts' footers with
    polars and writes its parts without pyarrow (arrow_c), checks the dataset once, and finds a built-in
    policy without reading the installed packages' entry points. Same results."""
    assert run("simulate", str(qemu), "--policy", POLICY, "-q").returncode == 0  # builds the cache
    code = ("import sys\nfrom thpreplay._entry import main\nfrom thpreplay import dataset\n"
            "from thpreplay.policy import registry\nchecks = []\ncheck = dataset.check\n"
            "dataset.check = lambda d: checks.append(d) or check(d)\nimport thpreplay.simulate as s\n"
            "s.check = dataset.check\nsys.argv = ['thpreplay', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print(code, 'pyarrow' in sys.modules, len(checks), registry._installed.cache_info().currsize, "
            "file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code, "simulate", str(qemu), "--policy", POLICY, "-q"],
                       capture_output=True, text=True, timeout=300)
    assert p.stderr.splitlines()[-1] == "0 False 1 0", p.stderr
    assert tree(qemu / "simulation") == without


def test_a_dataset_replaced_before_the_lock_is_checked_again(qemu, tmp_path, monkeypatch):
    """simulate checks the dataset before it takes the dataset's lock and does not check it again, unless
    the path names another directory by then (ingest --force put a new one there): that one is checked."""
    import thpreplay.simulate as sim

    other = tmp_path / "other"
    shutil.copytree(qemu, other)
    part = sorted((other / "page_alloc").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:-100])  # cut short
    simulating = sim.simulating

    def replaced_meanwhile(dataset, wait=False):
        os.rename(qemu, tmp_path / "old")
        os.rename(other, qemu)
        return simulating(dataset, wait=wait)

    monkeypatch.setattr(sim, "simulating", replaced_meanwhile)
    with pytest.raises(InputError) as e:
        sim.simulate(qemu, policies=[POLICY])
    assert e.value.message == (f"{qemu / 'page_alloc' / part.name}: not a whole Parquet file (cut short or damaged); "
                               "ingest the capture again")


def test_a_second_prepare_does_not_build(qemu, monkeypatch):
    first = prepare(qemu)
    assert len(entries(qemu)) == 1

    def no_build(*a, **k):
        raise AssertionError("the demand was built again")

    monkeypatch.setattr(demand_mod, "build", no_build)
    second = prepare(qemu)
    a, b = first.demand, second.demand
    assert a.ops.frame().equals(b.ops.frame()) and a.faults.equals(b.faults)
    for name in ("observed_huge", "used_at_start", "free_at_start", "traced_pages"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert {k: v.tolist() for k, v in a.pfns_by_migratetype.items()} == \
           {k: v.tolist() for k, v in b.pfns_by_migratetype.items()}
    assert (a.notes, a.counts) == (b.notes, b.counts)
    s, t = first.state, second.state
    for name in ("block_zone", "block_mt", "used", "anon", "file", "mlock", "hint", "zonelists", "distances"):
        x, y = getattr(s, name), getattr(t, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (s.zones, s.base_pfn, s.nodes, s.cpu_node, s.swap_pages, s.assumptions, s.summary) == \
           (t.zones, t.base_pfn, t.nodes, t.cpu_node, t.swap_pages, t.assumptions, t.summary)
    assert first.notes == second.notes


def test_other_settings_have_their_own_entry_and_a_changed_dataset_drops_the_old(qemu):
    prepare(qemu)
    prepare(qemu, defrag="never")  # the demand is built with the capture's own settings: the same entry
    assert len(entries(qemu)) == 1
    prepare(qemu, madvised=False)
    prepare(qemu, madvised=False)
    assert len(entries(qemu)) == 2
    # the dataset changes (a part rewritten with one value changed, its times put back: the key is not
    # mtimes alone): its old entries can never be used again
    part = sorted((qemu / "thp_faults").glob("*.parquet"))[0]
    st = part.stat()
    frame = pl.read_parquet(part)
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.col("latency_ns").fill_null(0) + 1)
                               .otherwise(pl.col("latency_ns")).alias("latency_ns"))
    schemas.load("thp_faults").write(schemas.load("thp_faults").conform(frame), part)
    os.utime(part, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = {p.name for p in entries(qemu)}
    prepare(qemu)
    after = entries(qemu)
    assert len(after) == 1 and after[0].name not in before


def test_a_new_cache_format_is_a_new_key(qemu, monkeypatch):
    prepare(qemu)
    [old] = entries(qemu)
    monkeypatch.setattr(cache_mod, "CACHE_FORMAT", cache_mod.CACHE_FORMAT + 1)
    prepare(qemu)
    assert old in entries(qemu) and len(entries(qemu)) == 2


@pytest.mark.parametrize("damage, why", [
    ("flip ops.bin", "ops.bin does not match its checksum"),
    ("flip arrays.bin", "arrays.bin does not match its checksum"),
    ("cut arrays.bin", "arrays.bin is 1000 bytes, not"),
    ("manifest not JSON", "JSONDecodeError"),
    ("no faults.parquet", "FileNotFoundError"),
])
def test_a_damaged_entry_is_rebuilt_with_a_note(qemu, damage, why, without):
    prepare(qemu)
    [entry] = entries(qemu)
    if damage.startswith("flip"):
        with open(entry / damage.split()[1], "r+b") as f:
            f.seek(1234)
            b = f.read(1)
            f.seek(1234)
            f.write(bytes([b[0] ^ 0x40]))
    elif damage == "cut arrays.bin":
        os.truncate(entry / "arrays.bin", 1000)
    elif damage == "manifest not JSON":
        (entry / "manifest.json").write_text('{"format": 1, "files": {')
    else:
        (entry / "faults.parquet").unlink()
    out = text(run("simulate", str(qemu), "--policy", POLICY))
    assert f"note: demand cache {entry} damaged ({why}" in out, out
    assert "): rebuilt" in out
    # the results are those of a fresh build, and the entry is whole again
    sim = tree(qemu / "simulation")
    notes = [k for k in sim if k.endswith("simulation.json")]
    for k in sim:
        if k not in notes:
            assert sim[k] == without[k], k
    again = prepare(qemu)
    assert not [n for n in again.notes if "demand cache" in n]


def test_an_unwritable_dataset_prepares_with_one_note(qemu, monkeypatch):
    def refuse(final):
        raise OSError(30, "Read-only file system", str(final))

    monkeypatch.setattr(cache_mod, "make_tmp", refuse)
    first = prepare(qemu)
    assert [n for n in first.notes if "demand cache" in n] == [
        f"demand cache not written ({qemu / 'cache'}: Read-only file system): the next run prepares the demand again"]
    assert entries(qemu) == []


def test_validate_on_a_read_only_mount(qemu, tmp_path):
    """A real read-only dataset directory (a read-only bind mount; root only): validate answers as before,
    with one note, and nothing is written."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "--bind", str(qemu), str(mnt)], capture_output=True).returncode:
        pytest.skip("needs root to bind-mount")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only")
        before = tree(qemu)
        r = run("validate", str(mnt))
        assert b"Traceback" not in r.stderr, r.stderr
        out = " ".join(r.stdout.decode().split())
        assert out.count("note: demand cache") == 1, out
        assert (f"note: demand cache not written ({mnt / 'cache'}: Read-only file system): the next run prepares "
                "the demand again") in out
        assert tree(qemu) == before
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
