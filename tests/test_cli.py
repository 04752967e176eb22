"""The command line as users see it: exact messages and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA

THP = str(Path(sys.executable).parent / "thpreplay")
HAND = str(DATA / "bundles" / "qemu61-hand")


def run(*args: str, env: dict | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([THP, *args], capture_output=True, env=env, input=input, timeout=120)


def test_ingest_prints_what_it_read(tmp_path):
    r = run("ingest", HAND, "-o", str(tmp_path / "ds"))
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert "page_alloc" in out and "thp_faults" in out
    assert "format ftrace  gfp table 6.1" in out
    assert "THP faults: 1 huge local, 6 huge remote, 1 fallback" in out
    assert "nodes [0, 1] (bundle zoneinfo.before)" in out


def test_existing_dataset_is_refused_then_replaced_with_force(tmp_path):
    out = tmp_path / "ds"
    assert run("ingest", HAND, "-o", str(out), "-q").returncode == 0
    r = run("ingest", HAND, "-o", str(out), "-q")
    assert r.returncode == 1
    assert r.stderr.decode() == f"thpreplay: {out}: already exists; use --force to replace it\n"
    assert run("ingest", HAND, "-o", str(out), "-q", "--force").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary directories left


def test_usage_errors_exit_2():
    assert run("ingest").returncode == 2
    r = run("record")
    assert r.returncode == 2
    assert r.stderr.decode() == "thpreplay: give -- COMMAND ... or --duration SECONDS\n"


def test_record_refuses_an_existing_bundle(tmp_path):
    r = run("record", "-o", str(tmp_path), "--duration", "0.1")
    assert r.returncode == 1
    assert r.stderr.decode() == f"thpreplay: {tmp_path}: already exists; record never overwrites a bundle\n"


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/sys/kernel/tracing/events/kmem").is_dir(),
                    reason="needs root and tracefs")
def test_record_without_perf_says_so(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = run("record", "-o", str(tmp_path / "b"), "--", "/bin/true", env={**os.environ, "PATH": str(empty)})
    assert r.returncode == 1
    assert r.stderr.decode().splitlines() == [
        "thpreplay: perf is not installed",
        "hint: install perf (Debian: linux-perf) or use --backend ftrace",
    ]
    assert not (tmp_path / "b").exists()


def test_ingest_from_stdin(tmp_path):
    text = (Path(HAND) / "trace.txt").read_bytes()
    r = run("ingest", "-", "-o", str(tmp_path / "ds"), "-q", input=text)
    assert r.returncode == 0, r.stderr.decode()
    meta = {}
    import polars as pl

    for k, v in pl.read_parquet(str(tmp_path / "ds" / "metadata" / "*.parquet")).iter_rows():
        meta[k] = json.loads(v)
    assert meta["inputs"] == ["-"] and meta["events"]["page_alloc"] > 0
    assert meta["topology_source"] == "inferred"


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf not installed")
def test_help_does_not_import_heavy_modules():
    code = "import sys, thpreplay.cli; print('polars' in sys.modules, 'pyarrow' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False False"
