"""simulate / validate --samples N --seed S (sim/samples.py): the model's spread over what a capture
cannot pin down, on a real capture of the lab (6.1, scenario 1, run 2: kcompactd's timer decides much of
it) as it is, with kpageflags, and without them (the bundle less kpageflags.before.zst), so that its
start layout is drawn too."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import SAMPLES
from test_bad_input import _cli, run_cli
from thpreplay.ingest import ingest
from thpreplay.sim import calibrate
from thpreplay.sim import samples as sample_mod
from thpreplay.simulate import SAMPLED_FIGURES, get_policy, prepare, simulate
from thpreplay.validate import validate

POLICY = "no-local-reclaim-7.0"   # the capturing kernel's (6.1.176)
QUANTS = ("p5", "p50", "p95")
CAPTURE = SAMPLES / "fidelity" / "6.1-s1-fragmented-movable-r2"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> dict[str, Path]:
    """The capture ingested as it is ("kpf") and without its kpageflags ("nokpf")."""
    root = tmp_path_factory.mktemp("sampling")
    bundle = root / "bundle"
    shutil.copytree(CAPTURE, bundle)
    (bundle / "kpageflags.before.zst").unlink()
    ingest([str(CAPTURE)], root / "kpf")
    ingest([str(bundle)], root / "nokpf")
    return {"kpf": root / "kpf", "nokpf": root / "nokpf"}


def _copy(ingested, which: str, tmp_path: Path) -> Path:
    ds = tmp_path / which
    shutil.copytree(ingested[which], ds)
    return ds


@pytest.fixture
def qemu(ingested, tmp_path) -> Path:
    """A private copy without kpageflags (simulate writes into the dataset)."""
    return _copy(ingested, "nokpf", tmp_path)


def _sim(ds: Path) -> tuple[bytes, bytes]:
    summary = next((ds / "simulation" / "outcome_summary").glob("*.parquet")).read_bytes()
    return summary, (ds / "simulation" / "simulation.json").read_bytes()


def test_same_seed_same_bytes_other_seed_other_draws(qemu, tmp_path):
    simulate(qemu, policies=[POLICY], samples=3, seed=5)
    first = _sim(qemu)
    simulate(qemu, policies=[POLICY], samples=3, seed=5)
    assert _sim(qemu) == first
    record = json.loads(first[1])
    assert record["samples"] == {"n": 3, "seed": 5}
    draws = record["sample_draws"]
    assert [d["sample"] for d in draws] == [0, 1, 2] and all(d["layout_drawn"] for d in draws)
    assert len({d["seed"] for d in draws}) == 3 and len({d["proactive_phase_ns"] for d in draws}) == 3
    per = record["sample_figures"][POLICY]
    assert len({(r["huge_local"], r["pages_migrated"]) for r in per}) > 1
    # without kpageflags each sample lays the start out anew
    inputs = prepare(qemu)
    a, b = (sample_mod.sample_state(inputs, sample_mod.draw(inputs, i, 5)) for i in (0, 1))
    assert a is not inputs.state and not np.array_equal(a.anon, b.anon)
    other = tmp_path / "other"
    shutil.copytree(qemu, other)
    simulate(other, policies=[POLICY], samples=3, seed=6)
    assert json.loads(_sim(other)[1])["sample_draws"] != draws
    # sample i depends on (seed, i) only: the first three of five are the three
    simulate(other, policies=[POLICY], samples=5, seed=5)
    assert json.loads(_sim(other)[1])["sample_figures"][POLICY][:3] == per
    # another policy with the same samples keeps the stored one; with other samples it replaces it
    assert simulate(other, policies=["local-only-4.8"], samples=5, seed=5).kept == [POLICY]
    assert set(json.loads(_sim(other)[1])["sample_figures"]) == {POLICY, "local-only-4.8"}
    result = simulate(other, policies=["relaxed-5.3-rc5"], samples=2, seed=5)
    assert result.kept == [] and result.replaced.startswith(
        f"the stored results of {POLICY}, local-only-4.8 were simulated with --samples 5 --seed 5: replaced")


def test_percentiles_are_ordered_and_the_figures_stay_the_deterministic_run(qemu, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(qemu, plain)
    simulate(plain, policies=[POLICY])
    simulate(qemu, policies=[POLICY], samples=4, seed=2)
    s = pl.read_parquet(qemu / "simulation" / "outcome_summary").row(0, named=True)
    d = pl.read_parquet(plain / "simulation" / "outcome_summary").row(0, named=True)
    assert s["samples"] == 4 and d["samples"] == 0
    for fig in SAMPLED_FIGURES:
        assert s[fig] == d[fig], fig
        assert all(d[f"{fig}_{q}"] is None for q in QUANTS)
        lo, mid, hi = (s[f"{fig}_{q}"] for q in QUANTS)
        assert lo <= mid <= hi, fig
        per = [r[fig] for r in json.loads((qemu / "simulation" / "simulation.json").read_text())["sample_figures"][POLICY]]
        assert (lo, mid, hi) == tuple(float(np.quantile(per, q)) for q in (0.05, 0.5, 0.95)), fig
    # the per-fault outcomes are the deterministic run's, with or without samples
    a = pl.read_parquet(qemu / "simulation" / "outcomes")
    b = pl.read_parquet(plain / "simulation" / "outcomes")
    assert a.equals(b)
    # a run without --samples writes the record it always did: no sample keys
    assert not {"samples", "sample_draws", "sample_figures"} & set(json.loads((plain / "simulation" / "simulation.json")
                                                                          .read_text()))


def test_one_sample_has_null_percentiles(qemu):
    simulate(qemu, policies=[POLICY], samples=1)
    s = pl.read_parquet(qemu / "simulation" / "outcome_summary").row(0, named=True)
    assert s["samples"] == 1
    assert all(s[f"{f}_{q}"] is None for f in SAMPLED_FIGURES for q in QUANTS)


def test_kpageflags_layout_is_not_drawn(ingested):
    inputs = prepare(ingested["kpf"])
    d = sample_mod.draw(inputs, 0, 1)
    assert not d.layout_drawn and sample_mod.sample_state(inputs, d) is inputs.state
    # the phase falls in the 500 ms after the trace's first op; the costs are drawn, not the --params ones
    t0 = inputs.demand.ops.ts_min
    assert t0 <= d.proactive_phase_ns < t0 + sample_mod.PROACTIVE_PERIOD_NS
    assert set(d.drawn) == {e.param for e in inputs.estimates if e.draw is not None} | {"kswapd_wake_us"}
    assert d.drawn and d == sample_mod.draw(inputs, 0, 1)


def test_calibrated_costs_are_drawn_from_their_own_samples(ingested):
    """Each estimate's draw is a bootstrap of its statistic, scattered around the estimate, and the
    record in simulation.json keeps its four keys."""
    estimates = calibrate.calibrate(ingested["kpf"])
    assert estimates and all(set(e.as_dict()) == {"param", "value", "count", "source"} for e in estimates)
    rng = np.random.default_rng(0)
    for e in estimates:
        if e.draw is None:
            continue
        values = [e.draw(rng) for _ in range(200)]
        assert min(values) > 0, e.param
        # the scatter is around the point estimate: it lies within the draws' range
        assert min(values) <= e.value <= max(values) or e.param == "thp_prep_us", (e.param, e.value, min(values))


def test_validate_says_which_figures_lie_in_the_interval(ingested, tmp_path):
    ds = _copy(ingested, "kpf", tmp_path)
    v = validate(ds, samples=4, seed=1)
    table = v.table()
    assert table.columns[-3:] == ["p5", "p95", "in_interval"]
    for r in table.iter_rows(named=True):
        assert r["in_interval"] == (r["p5"] <= r["observed"] <= r["p95"])
    plain = validate(ds).table()
    assert "in_interval" not in plain.columns    # without samples, the table it always was
    proc = run_cli(["validate", str(ds), "--samples", "4"], tmp_path)
    out = proc.stdout.decode()
    inside = int(table["in_interval"].sum())
    assert (f"{inside} of {table.height} observed figures inside the model's 90 % interval (p5..p95 of 4 samples, "
            "seed 1; validate --samples)") in out.splitlines()
    assert "in_interval" in out and "p5..p95" in out
    # a dataset simulated with samples: validate follows them
    simulate(ds, policies=[POLICY], samples=4, seed=1)
    followed = validate(ds)
    assert followed.samples["n"] == 4 and followed.table()["in_interval"].to_list() == table["in_interval"].to_list()


@pytest.mark.parametrize("args, message", [
    (["--samples", "0"], "thpreplay: --samples must be at least 1, not 0"),
    (["--samples", "-3"], "thpreplay: --samples must be at least 1, not -3"),
    (["--seed", "4"], "thpreplay: --seed needs --samples (the default replay is deterministic; its own seed is "
                      "the --params file's `seed`)"),
    (["--samples", "2", "--seed", "-1"], "thpreplay: --seed must be 0..9007199254740992, not -1"),
])
def test_bad_samples_are_one_line_usage_errors(ingested, tmp_path, args, message):
    ds = ingested["kpf"]
    before = sorted(p.name for p in ds.iterdir())
    for command in ("simulate", "validate") if args == ["--samples", "0"] else ("simulate",):
        proc = run_cli([command, str(ds), *args], tmp_path)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and err.splitlines() == [message] and proc.stdout == b"", (command, err)
    assert sorted(p.name for p in ds.iterdir()) == before


def test_the_table_with_intervals_fits_80_columns(ingested, tmp_path):
    qemu = _copy(ingested, "kpf", tmp_path)
    env = {"COLUMNS": "80", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([*_cli(), "simulate", str(qemu), "--policy", POLICY, "--policy", "local-only-4.8",
                           "--samples", "3"], capture_output=True, env=env, timeout=120)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    lines = out.splitlines()
    # the tables and their legends (not the first line, which names the dataset, nor the notes)
    shown = lines[1:next(i for i, line in enumerate(lines) if line.startswith("note:"))]
    assert max(len(line) for line in shown) <= 80 and "…" not in out
    s = pl.read_parquet(qemu / "simulation" / "outcome_summary").rows_by_key("policy", named=True, unique=True)[POLICY]
    i = next(i for i, line in enumerate(lines) if line.startswith(POLICY + " "))
    assert lines[i + 1].split()[0] == f"[{round(s['huge_local_p5'])}-{round(s['huge_local_p95'])}]"
    assert "[p5-p95]: the model's 90 % interval over 3 samples (simulate --samples)" in lines


def test_a_sweep_partition_with_samples_has_the_simulation_s_percentiles(ingested, tmp_path):
    """sweep --samples: a partition's summary row is simulate --samples' row (the worker's functions, in
    this process; tests/test_sweep.py runs them on Dask), and a sweep made with other samples is refused."""
    from thpreplay.errors import OutputError
    from thpreplay.sim.params import Params
    from thpreplay.sweep import Task, _record, capture_settings, run_prepare, run_simulate

    ds = _copy(ingested, "kpf", tmp_path)
    enabled, defrag = capture_settings(ds)
    task = Task("kpf", POLICY, enabled, defrag)
    root = tmp_path / "sweep"
    sampling = {"n": 3, "seed": 4}
    assert run_simulate(run_prepare(str(ds), enabled, defrag, Params()), task, Params(), str(root), sampling) == {}
    row = pl.read_parquet(task.partition(root) / "outcome_summary.parquet").row(0, named=True)
    simulate(ds, policies=[POLICY], samples=3, seed=4)
    want = pl.read_parquet(ds / "simulation" / "outcome_summary").row(0, named=True)
    assert row["samples"] == 3 and all(row[f"{f}_{q}"] == want[f"{f}_{q}"] for f in SAMPLED_FIGURES for q in QUANTS)
    assert json.loads((task.partition(root) / "task.json").read_text())["samples"] == sampling
    _record(root, [], [POLICY], None, None, Params(), sampling)
    with pytest.raises(OutputError, match=r"made with --samples 3 --seed 4; its partitions would not match"):
        _record(root, [], [POLICY], None, None, Params(), None)


def test_the_report_shows_the_intervals(ingested, tmp_path):
    """The HTML summary gives each figure its [p5-p95]; the outcome bars get error bars with their text."""
    from thpreplay.report import build

    ds = _copy(ingested, "kpf", tmp_path)
    simulate(ds, policies=[POLICY], samples=3, seed=1)
    s = pl.read_parquet(ds / "simulation" / "outcome_summary").row(0, named=True)
    page = build(ds, tmp_path / "r.html", validate_capture=False).path.read_text()
    lo, hi = round(s["huge_local_p5"]), round(s["huge_local_p95"])
    assert f"<td>{s['huge_local']} [{lo}-{hi}]<br>" in page
    assert f"{POLICY}: huge local {s['huge_local_p5']:,.0f}-{s['huge_local_p95']:,.0f} (p5-p95 of 3 samples)" in page


def test_hole_parity_comes_from_the_trace_and_is_drawn_only_where_it_shows_none():
    """Order-0 holes of a start laid out without kpageflags take the pfn parity of the pages the trace
    shows free in their block, else the zone's majority; only a zone with no such page takes the
    default, which the deterministic run keeps even and a sample draws."""
    import numpy as np

    from thpreplay.sim.state import PB, _hole_parity

    known = np.zeros(4 * PB, dtype=bool)
    known[1 * PB + 7] = known[1 * PB + 9] = True        # block 1: odd holes in the trace
    known[2 * PB + 4] = True                            # block 2: an even one
    blocks = np.array([0, 1, 2, 3])
    assert _hole_parity(known, blocks, 4).tolist() == [1, 1, 0, 1]             # zone majority odd
    assert _hole_parity(known, blocks, 4, default=0).tolist() == [1, 1, 0, 1]  # the trace decides
    none = np.zeros(4 * PB, dtype=bool)
    assert _hole_parity(none, blocks, 4).tolist() == [0, 0, 0, 0]
    assert _hole_parity(none, blocks, 4, default=1).tolist() == [1, 1, 1, 1]


def test_a_sample_records_the_hole_parity_it_drew():
    """Drawn last from the sample's own generator: both parities over 40 samples, the same again for
    the same (S, i), and in the record of what each sample drew."""
    from types import SimpleNamespace

    from thpreplay.sim import samples
    from thpreplay.sim.params import Params

    inputs = SimpleNamespace(demand=SimpleNamespace(ops=SimpleNamespace(height=0)), estimates=(),
                             state=SimpleNamespace(summary={"source": "snapshots"}), params=Params())
    draws = [samples.draw(inputs, i, 7) for i in range(40)]
    assert {d.hole_parity for d in draws} == {0, 1}
    assert all(d.as_dict()["hole_parity"] == d.hole_parity for d in draws)
    assert [d.hole_parity for d in draws] == [samples.draw(inputs, i, 7).hole_parity for i in range(40)]


def test_the_untraced_start_is_drawn_from_none_to_all_of_its_pages(ingested, tmp_path):
    """The lab bundle's untraced_start (768 pages on node 0 that guest-init.sh's kpageflags dump took while
    it was read, missing=some) reaches the dataset; each sample draws 0..768 of them, recorded, the same
    again for the same (S, i); a sample that drew k allocates k pages before the first op, and the
    deterministic run allocates none."""
    from thpreplay.sim import engine, untraced

    ds = ingested["kpf"]
    u = untraced.read(ds)
    assert (u.missing, u.migratetype, u.pages) == ("some", "movable", {0: 768}) and u.deterministic() == {}
    inputs = prepare(ds)
    assert inputs.untraced == u and u.note() in inputs.notes
    draws = [sample_mod.draw(inputs, i, 3) for i in range(30)]
    pages = [d.untraced_pages[0] for d in draws]
    assert all(0 <= k <= 768 for k in pages) and len(set(pages)) > 20
    assert pages == [sample_mod.draw(inputs, i, 3).untraced_pages[0] for i in range(30)]
    assert all(d.as_dict()["untraced_pages"] == {"0": d.untraced_pages[0]} for d in draws)

    def start(pages: dict) -> tuple[int, int]:
        run = engine.run(get_policy(POLICY), inputs.settings, inputs.demand, inputs.state, inputs.params,
                         inputs.stall_rule, release=inputs.kernel_release, untraced_pages=pages,
                         untraced_migratetype="movable")
        node0 = run.series.filter(pl.col("node") == 0)["free_pages"]
        return run.counters["small_allocs"], node0[1]   # row 0 is before the first op

    (allocs0, free0), (allocs, free) = start({}), start({0: 500})
    assert (allocs - allocs0, free0 - free) == (500, 500)
    # without the file nothing is drawn
    bare = _copy(ingested, "kpf", tmp_path)
    (bare / "snapshots" / "untraced_start").unlink()
    assert untraced.read(bare) is None
    assert {len(sample_mod.draw(prepare(bare), i, 3).untraced_pages) for i in range(5)} == {0}


def test_pages_the_snapshot_missed_entirely_are_allocated_by_every_run(ingested, tmp_path):
    """missing=all (pages allocated wholly after the snapshot): the deterministic run allocates them, and
    so does every sample, which draws nothing for them; the note says so."""
    from thpreplay.sim import untraced

    ds = _copy(ingested, "kpf", tmp_path)
    (ds / "snapshots" / "untraced_start").write_text(untraced.text("all", "unmovable", {0: 300}, "a test"))
    inputs = prepare(ds)
    assert inputs.untraced.deterministic() == {0: 300}
    assert any(n.startswith("the start lacks 300 unmovable pages") for n in inputs.notes)
    assert {tuple(sample_mod.draw(inputs, i, 3).untraced_pages.items()) for i in range(5)} == {((0, 300),)}
    with_pages = simulate(ds, policies=[POLICY])
    (ds / "snapshots" / "untraced_start").unlink()
    without = simulate(ds, policies=[POLICY], replace=True)
    assert with_pages.runs[0].counters["small_allocs"] - without.runs[0].counters["small_allocs"] == 300


@pytest.mark.parametrize("text, message", [
    ("missing=all\nmigratetype=unmovable\nnode0=12\nnode1=x\n", "untraced_start:4: node1 must be a page count, got 'x'"),
    ("missing=all\nmigratetype=unmovable\nnode0=12\npages 4\n", "untraced_start:4: expected name=value, got 'pages 4'"),
    ("missing=all\nmigratetype=unmovable\nnode0=12\ncpu0=4\n",
     "untraced_start:4: unknown name 'cpu0' (missing, migratetype, nodeN, why)"),
    ("missing=most\nmigratetype=unmovable\nnode0=12\n", "untraced_start: missing= must be all or some"),
    ("missing=all\nmigratetype=reclaimable\nnode0=12\n", "untraced_start: migratetype= must be unmovable or movable"),
    ("missing=all\nmigratetype=unmovable\n", "untraced_start: no nodeN= line"),
])
def test_a_bad_untraced_start_is_a_one_line_error(ingested, tmp_path, text, message):
    ds = _copy(ingested, "kpf", tmp_path)
    (ds / "snapshots" / "untraced_start").write_text(text)
    proc = run_cli(["simulate", str(ds), "--policy", POLICY], tmp_path)
    err = proc.stderr.decode().strip()
    assert proc.returncode != 0 and len(err.splitlines()) == 1 and err.endswith(message), err


def test_kswapd_wake_up_latency_is_drawn_within_one_scheduler_slice(ingested, tmp_path):
    """Drawn last, uniform over [0, one slice) of the capture's kernel (6.1.176: CFS, 2 CPUs: 6 ms), recorded
    with the costs; the deterministic run has none, and a --params value is kept."""
    inputs = prepare(ingested["kpf"])
    assert inputs.params.kswapd_wake_us == 0.0
    wakes = [sample_mod.draw(inputs, i, 3).params.kswapd_wake_us for i in range(40)]
    assert all(0.0 <= w < 6000.0 for w in wakes) and max(wakes) > 3000.0 > min(wakes)
    assert [sample_mod.draw(inputs, i, 3).drawn["kswapd_wake_us"] for i in range(40)] == wakes
    toml = tmp_path / "p.toml"
    toml.write_text("kswapd_wake_us = 250.0\n")
    from thpreplay.sim.params import Params

    fixed = prepare(ingested["kpf"], params=Params.load(toml))
    assert {sample_mod.draw(fixed, i, 3).params.kswapd_wake_us for i in range(5)} == {250.0}
