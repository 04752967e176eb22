"""The Python API (thpreplay.api, docs/python-api.md): each call on small real captures, and its errors as
the named exceptions the command line prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

import thpreplay as tp
from thpreplay import sweep as sw
from thpreplay.query import QueryError
from thpreplay.sim.params import Params

DATA = Path(__file__).parent / "data" / "bundles"
HAND = DATA / "qemu61-hand"            # 8 THP faults, two nodes, 6.1 (a hand-cut piece of qemu-6.1-2node)
NO_DEMAND = DATA / "host-6.18-no-thp-demand"
TWO = ["local-only-4.8", "relaxed-5.3-rc5"]


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> tp.Dataset:
    """qemu61-hand ingested and simulated under two policies through the API."""
    d = tp.ingest(HAND, tmp_path_factory.mktemp("api") / "hand")
    d.simulate(policies=TWO)
    return d


def test_the_package_exports_the_api_and_loads_it_only_when_used():
    assert set(tp.__all__) >= {"open", "ingest", "open_sweep", "sweep", "policies", "Dataset", "Sweep",
                               "ThpreplayError", "InputError", "__version__"}
    # `import thpreplay` (every command's first import) does not import polars or DuckDB for the API
    code = "import sys, thpreplay; print('thpreplay.api' in sys.modules, 'duckdb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "False False\n"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        tp.nope  # noqa: B018


def test_ingest_returns_the_dataset_with_what_ingest_printed(ds):
    assert isinstance(ds, tp.Dataset) and ds.path.name == "hand"
    s = ds.ingest_summary
    assert s.thp_faults["faults"] == 8 and s.events["page_alloc"] > 0 and s.rejects == 0
    assert ds.metadata["kernel_release"] == "6.1.0-50-amd64"
    assert repr(ds) == f"<thpreplay.Dataset {str(ds.path)!r} (simulated: local-only-4.8, relaxed-5.3-rc5)>"


def test_table_is_a_lazy_scan_of_the_parts(ds):
    frame = ds.table("thp_faults")
    assert isinstance(frame, pl.LazyFrame)
    assert frame.select(pl.len()).collect().item() == 8
    assert ds.table("page_alloc").collect().height == ds.ingest_summary.events["page_alloc"]
    assert set(ds.tables) == {*tp.api.schemas.ingest_tables(), "outcomes", "outcome_summary", "memory_series"}
    assert sorted(ds.table("outcomes").select("policy").unique().collect()["policy"]) == TWO
    assert ds.summary["policy"].to_list() == TWO


def test_sql_has_the_views_of_thpreplay_query(ds, tmp_path):
    got = ds.sql("select policy, huge_local + huge_remote as huge, faults from policy_coverage order by policy")
    want = ds.summary.select("policy", (pl.col("huge_local") + pl.col("huge_remote")).alias("huge"), "faults")
    assert got.rows() == want.sort("policy").rows()
    changed = ds.sql("select count(*) as n from what_changed('local-only-4.8', 'relaxed-5.3-rc5')").item()
    assert changed == ds.table("outcomes").collect().pivot("policy", index="fault_id", values="result").filter(
        pl.col("local-only-4.8") != pl.col("relaxed-5.3-rc5")).height
    # another dataset beside it: the dataset column tells them apart
    other = tp.ingest(NO_DEMAND, tmp_path / "nodemand")
    both = ds.sql("select dataset, count(*) as faults from thp_faults group by all order by all", other)
    assert both.rows() == [("hand", 8)]  # the other capture has no THP fault
    assert ds.sql("select count(distinct dataset) from page_alloc", other.path).item() == 2


def test_connect_gives_duckdb_relations(ds):
    with ds.connect() as con:
        rel = con.sql("select policy, faults from outcome_summary order by policy")
        assert isinstance(rel, duckdb.DuckDBPyRelation)
        assert rel.fetchall() == [(p, 8) for p in TWO]
        with pytest.raises(duckdb.Error):  # read-only, as thpreplay query is
            con.execute("create table t as select 1")


def test_simulate_returns_the_simulation_result(tmp_path):
    d = tp.ingest(HAND, tmp_path / "d")
    assert repr(d).endswith("(not simulated)>")
    with pytest.raises(tp.InputError) as e:
        d.table("outcomes")
    assert str(e.value) == (f"{d.path}: no simulation in this dataset, so no table 'outcomes'; run Dataset.simulate() "
                            "(thpreplay simulate) first")
    result = d.simulate(kernels=["6.1.176"])
    assert result.summary["policy"].to_list() == ["no-local-reclaim-7.0"]
    assert d.simulation["policies"] == ["no-local-reclaim-7.0"]
    assert d.summary.rows() == result.summary.rows()
    # a second run keeps the first's policy (as thpreplay simulate does); replace=True drops it
    both = d.simulate(policies=["local-only-4.8"]).summary
    assert sorted(both["policy"]) == sorted(d.summary["policy"]) == ["local-only-4.8", "no-local-reclaim-7.0"]
    d.simulate(policies=["local-only-4.8"], replace=True)
    assert d.summary["policy"].to_list() == ["local-only-4.8"]


def test_validate_returns_the_validation_with_its_figures(ds):
    v = ds.validate(tolerance=100)
    assert v.policy == "no-local-reclaim-7.0" and not v.failures
    table = v.table()
    assert isinstance(table, pl.DataFrame) and table.columns[:4] == ["figure", "source", "observed", "simulated"]
    assert table.filter(pl.col("figure") == "huge_local")["observed"].item() == ds.sql(
        "select count(*) from thp_faults where outcome = 'huge_local'").item()


def test_report_writes_the_page(ds, tmp_path):
    path = ds.report(tmp_path / "r.html")
    assert path == tmp_path / "r.html"
    page = path.read_text()
    assert page.startswith("<!doctype html>") and "relaxed-5.3-rc5" in page


def test_policies_lists_what_thpreplay_policies_lists():
    table = tp.policies()
    assert table.columns == ["name", "kernels", "builtin", "commits"]
    cli = subprocess.run([str(Path(sys.executable).parent / "thpreplay"), "policies"], capture_output=True, text=True,
                         check=True).stdout
    names = [line.split()[0] for line in cli.splitlines() if not line.startswith(" ")]
    assert table["name"].to_list() == names
    assert table.filter(pl.col("name") == "relaxed-5.3-rc5")["builtin"].item() is True


def test_open_sweep_queries_a_sweep(ds, tmp_path):
    """A sweep made by the sweep's own task functions in this process (what its Dask workers run)."""
    root = tmp_path / "fleet"
    root.mkdir()
    cap = sw.Capture("hand", str(ds.path), str(ds.path), False)
    sw._record(root, [cap], ["relaxed-5.3-rc5"], None, ["madvise", "never"], Params())
    for defrag in ("madvise", "never"):
        inputs = sw.run_prepare(str(ds.path), "madvise", defrag, Params())
        assert sw.run_simulate(inputs, sw.Task("hand", "relaxed-5.3-rc5", "madvise", defrag), Params(), str(root)) == {}
    fleet = tp.open_sweep(root)
    assert repr(fleet) == f"<thpreplay.Sweep {str(root)!r}>"
    assert fleet.sql("select settings, captures from fleet_settings order by settings").rows() == [
        ("madvise-madvise", 1), ("madvise-never", 1)]
    summary = fleet.table("outcome_summary").select("capture", "settings", "faults").sort("settings").collect()
    assert summary.rows() == [("hand", "madvise-madvise", 8), ("hand", "madvise-never", 8)]
    assert fleet.report().read_text().startswith("<!doctype html>")


# --- errors: the named exceptions, with the command line's messages ------------------------------------

def test_open_refuses_what_is_not_a_dataset(tmp_path, ds):
    with pytest.raises(tp.InputError) as e:
        tp.open(tmp_path)
    assert str(e.value) == f"{tmp_path}: not a thpreplay dataset (no dataset.json); make one with thpreplay ingest"
    with pytest.raises(tp.InputError) as e:
        tp.open_sweep(ds.path)
    assert str(e.value) == f"{ds.path}: not a sweep (no sweep.json); make one with thpreplay.sweep() or thpreplay sweep"
    (tmp_path / "sweep.json").write_text("{}")
    with pytest.raises(tp.InputError, match="a sweep directory: open it with thpreplay.open_sweep()"):
        tp.open(tmp_path)
    with pytest.raises(tp.InputError, match="^nope: not a table of a dataset"):
        ds.table("nope")
    with pytest.raises(QueryError, match='^SQL: Binder Error: Referenced column "nope" not found') as e:
        ds.sql("select nope from thp_faults")
    assert isinstance(e.value, tp.ThpreplayError)
    with pytest.raises(QueryError, match="^SQL: CREATE statements are not run; queries are read-only"):
        ds.sql("create table t as select 1")


def test_a_damaged_dataset_raises_the_named_error(tmp_path):
    d = tp.ingest(HAND, tmp_path / "d")
    part = sorted((d.path / "thp_faults").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:-20])  # a copy cut short: no footer
    want = f"{part}: not a whole Parquet file (cut short or damaged); ingest the capture again"
    with pytest.raises(tp.InputError) as e:
        d.table("thp_faults")
    assert str(e.value) == want
    with pytest.raises(tp.InputError) as e:
        tp.open(d.path)
    assert str(e.value) == want


def test_ingest_and_simulate_errors_are_the_commands(tmp_path, ds):
    with pytest.raises(tp.OutputError) as e:
        tp.ingest(HAND, ds.path)
    assert str(e.value) == f"{ds.path}: already exists; use --force to replace it"
    with pytest.raises(tp.ThpreplayError, match="unknown policy 'nope'"):
        ds.simulate(policies=["nope"])
    with pytest.raises(tp.InputError, match="no-such-trace"):
        tp.ingest(tmp_path / "no-such-trace", tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # a Dask local cluster starts (about 15 s on 2 cores)
def test_sweep_runs_a_sweep_and_opens_it(ds, tmp_path):
    fleet = tp.sweep([ds.path], tmp_path / "fleet", policies=["relaxed-5.3-rc5"], workers=1)
    assert isinstance(fleet, tp.Sweep)
    assert fleet.sql("select policy, settings, captures from fleet_settings").rows() == [
        ("relaxed-5.3-rc5", "madvise-madvise", 1)]
