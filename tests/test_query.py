"""`thpreplay query`, `schema` and `report` on the bundled 2-node capture."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from thpreplay import schemas
from thpreplay.simulate import simulate

THP = str(Path(sys.executable).parent / "thpreplay")


def run(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([THP, *args], capture_output=True, input=input, timeout=300)


@pytest.fixture(scope="module")
def simulated(sample_dataset, tmp_path_factory) -> Path:
    ds = tmp_path_factory.mktemp("q") / "qemu"
    shutil.copytree(sample_dataset("qemu-6.1-2node"), ds)
    simulate(ds, policies=["local-only-4.8", "relaxed-5.3-rc5"])
    return ds


def test_views_answer_from_the_tables(simulated):
    r = run("query", str(simulated), "select policy, count(*) as n from outcomes group by 1 order by 1", "--format", "csv")
    assert r.returncode == 0, r.stderr.decode()
    faults = pl.read_parquet(simulated / "thp_faults").height
    assert r.stdout.decode() == f"policy,n\nlocal-only-4.8,{faults}\nrelaxed-5.3-rc5,{faults}\n"
    r = run("query", str(simulated), "select policy, huge_remote from policy_coverage order by 1", "--format", "json")
    rows = json.loads(r.stdout)
    summary = pl.read_parquet(simulated / "simulation" / "outcome_summary").sort("policy")
    assert [(x["policy"], x["huge_remote"]) for x in rows] == list(zip(summary["policy"], summary["huge_remote"]))


def test_sql_from_stdin_or_file_and_parquet_output(simulated, tmp_path):
    sql = "select count(*) as n from page_alloc"
    r = run("query", str(simulated), "-", "--format", "csv", input=sql.encode())
    n = pl.read_parquet(simulated / "page_alloc").height
    assert r.stdout.decode() == f"n\n{n}\n"
    f = tmp_path / "q.sql"
    f.write_text(sql)
    out = tmp_path / "out.parquet"
    r = run("query", str(simulated), "--file", str(f), "--format", "parquet", "-o", str(out))
    assert r.returncode == 0 and r.stdout == b""
    assert pl.read_parquet(out)["n"].to_list() == [n]


def test_several_datasets_and_a_dataset_without_simulation(simulated, sample_dataset, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(sample_dataset("qemu-6.1-2node"), plain)
    shutil.rmtree(plain / "simulation", ignore_errors=True)
    r = run("query", str(simulated), "-d", str(plain), "--format", "csv",
            "select dataset, (select count(*) from outcomes o where o.dataset = t.dataset) as outcomes, count(*) as faults "
            "from thp_faults t group by 1 order by 1")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().splitlines() == ["dataset,outcomes,faults", "plain,0,288", "qemu,576,288"]


def test_errors_are_one_line(simulated, tmp_path):
    r = run("query", str(simulated), "select nope from outcomes")
    assert r.returncode == 1
    assert r.stderr.decode().startswith('thpreplay: SQL: Binder Error: Referenced column "nope" not found')
    assert len(r.stderr.decode().splitlines()) == 1
    r = run("query", str(tmp_path), "select 1")
    assert r.returncode == 1
    assert "not a thpreplay dataset" in r.stderr.decode()
    assert run("query", str(simulated), "select 1", "--format", "xml").returncode == 2
    r = run("query", str(simulated), "select 1", "--format", "parquet")
    assert r.returncode == 1 and r.stderr.decode() == "thpreplay: --format parquet needs -o FILE\n"


def test_queries_are_read_only(simulated, tmp_path):
    """User SQL reads the datasets' tables and nothing else, and writes nothing."""
    part = sorted((simulated / "page_alloc").glob("*.parquet"))[0]
    before = part.read_bytes()
    refused = {
        f"copy (select 1 as a) to '{part}' (use_tmp_file false)": "COPY statements are not run",
        f"copy (select 1) to '{tmp_path}/x.csv'": "COPY statements are not run",
        "create table t as select 1": "CREATE statements are not run",
        "attach ':memory:' as m": "ATTACH statements are not run",
        "set enable_external_access = true": "SET statements are not run",
        "install httpfs": "LOAD statements are not run",  # DuckDB files INSTALL under LOAD
        "select 1; delete from page_alloc": "DELETE statements are not run",
    }
    for sql, message in refused.items():
        r = run("query", str(simulated), sql)
        assert r.returncode == 1, sql
        assert r.stderr.decode() == f"thpreplay: SQL: {message}; queries are read-only (write results with --format and -o)\n"
    r = run("query", str(simulated), "select count(*) from read_csv('/etc/hostname')")
    assert r.returncode == 1
    assert r.stderr.decode().startswith('thpreplay: SQL: Permission Error: Cannot access file "/etc/hostname"')
    assert part.read_bytes() == before and list(tmp_path.iterdir()) == []
    r = run("query", str(simulated), "select 1 as a; select count(*) as n from outcomes", "--format", "csv")
    assert r.returncode == 0 and r.stdout.decode() == f"n\n{2 * pl.read_parquet(simulated / 'thp_faults').height}\n"


def test_schema_documents_every_table():
    r = run("schema")
    text = r.stdout.decode()
    for table in schemas.all_tables():
        assert f"{table} ({schemas.load(table).id})" in text
    assert "policy_coverage (view)" in text
    r = run("schema", "nosuch")
    assert r.returncode == 1 and r.stderr.decode().startswith("thpreplay: unknown table 'nosuch'")


def test_report_is_one_self_contained_page(simulated, tmp_path):
    out = tmp_path / "r.html"
    r = run("report", str(simulated), "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().splitlines()[-1] == f"report: {out}"
    page = out.read_text()
    for figure in ("outcomes", "latency", "free-huge", "fragmentation"):
        assert f"<figure id='{figure}'><svg" in page
    assert "<script" not in page and "<link" not in page and "src=" not in page  # nothing to fetch
    assert "Validation against the captured kernel (no-local-reclaim-7.0)" in page
    assert "local-only-4.8" in page and "relaxed-5.3-rc5" in page
    again = tmp_path / "again.html"
    assert run("report", str(simulated), "-o", str(again), "-q").returncode == 0
    assert again.read_bytes() == out.read_bytes()  # deterministic


def test_report_needs_a_simulation(sample_dataset, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(sample_dataset("qemu-6.1-2node"), plain)
    shutil.rmtree(plain / "simulation", ignore_errors=True)
    r = run("report", str(plain))
    assert r.returncode == 1
    assert r.stderr.decode() == f"thpreplay: {plain}: no simulation in this dataset; run thpreplay simulate first\n"


def test_the_example_plugin_is_installed_and_simulates(simulated):
    """tests/plugins/thpreplay_example_policy, installed by make venv (docs/writing-a-policy.md)."""
    r = run("policies")
    assert "free-anywhere-first" in r.stdout.decode()
    r = run("simulate", str(simulated), "--policy", "free-anywhere-first", "--policy", "local-only-4.8", "-q")
    assert r.returncode == 0, r.stderr.decode()
    summary = pl.read_parquet(simulated / "simulation" / "outcome_summary")
    got = dict(zip(summary["policy"], summary["huge_remote"]))
    assert got["free-anywhere-first"] > got["local-only-4.8"]  # it takes remote free huge pages first


def test_a_directory_name_with_glob_characters_is_a_name(tmp_path):
    """A dataset named run[1] beside run1: every reader takes the name as it is (polars with glob off,
    DuckDB with the characters escaped), so run[1] never reads run1's parts, and the query sandbox
    still refuses anything else."""
    from conftest import DATA
    odd, plain = tmp_path / "run[1]", tmp_path / "run1"
    assert run("ingest", str(DATA / "bundles" / "qemu61-hand"), "-o", str(odd), "-q").returncode == 0
    assert run("ingest", str(DATA / "trace-cmd-report-6.18.txt"), "-o", str(plain), "-q").returncode == 0
    want = {d: pl.read_parquet(sorted((d / "page_alloc").glob("*.parquet")), glob=False).height for d in (odd, plain)}
    assert want[odd] != want[plain]
    for d in (odd, plain):
        r = run("query", str(d), "select count(*) as n from page_alloc", "--format", "csv")
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout.decode().splitlines() == ["n", str(want[d])]
    r = run("simulate", str(odd), "-q", "--policy", "no-local-reclaim-7.0")
    assert r.returncode == 0, r.stderr.decode()
    r = run("query", str(odd), "select faults from outcome_summary", "--format", "csv")
    assert r.stdout.decode().splitlines() == ["faults", "8"]
    r = run("query", str(odd), f"select count(*) from read_parquet('{plain}/page_alloc/*.parquet')")
    assert r.returncode == 1 and "Permission Error" in r.stderr.decode()
