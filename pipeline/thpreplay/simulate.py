"""`thpreplay simulate`: replay a dataset's demand under one or more policies and write the outcomes.

Writes DATASET/simulation/ with the tables outcomes, outcome_summary and memory_series, plus
simulation.json (settings, params, policies, demand notes, initial-state assumptions, counters). The
directory is built next to the dataset and swapped in by rename, so a reader sees the old simulation or
the new one, never a mix; a lock file refuses a second simulate of the same dataset while one runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from thpreplay import schemas
from thpreplay.atomic import clean_stale, io_error_reason, make_tmp, replace_dir
from thpreplay.dataset import check, check_simulation, locate_damage, simulating
from thpreplay.errors import InputError, OutputError, ThpreplayError
from thpreplay.kernel.counters import compact_stall_rule
from thpreplay.kernel.gfp import parse_release
from thpreplay.policy.base import PMD_ORDER, Policy, PolicyCrashed, PolicyError, ThpSettings, call_attempts
from thpreplay.policy.registry import all_policies, get_policy, is_builtin, resolve_kernel
from thpreplay.policy.versions import explain
from thpreplay.procfs import selected_setting
from thpreplay.sim import calibrate
from thpreplay.sim import cache as prepared_cache
from thpreplay.sim import demand as demand_mod
from thpreplay.sim import engine, state
from thpreplay.sim import samples as sample_mod
from thpreplay.sim import untraced as untraced_mod
from thpreplay.sim.params import Params, check_samples

SIM_DIR = "simulation"
TABLES = schemas.SIMULATION_TABLES


@dataclass
class Inputs:
    """Everything a replay needs, built once per dataset and shared by every policy."""

    dataset: Path
    settings: ThpSettings
    params: Params
    demand: demand_mod.Demand
    state: state.InitialState
    kernel_release: str | None
    stall_rule: str
    notes: list[str] = field(default_factory=list)
    proactive_phase_ns: int | None = None
    calibration: list[dict] = field(default_factory=list)   # costs measured from the capture (sim/calibrate.py)
    estimates: list = field(default_factory=list)   # the same, as calibrate.Estimate (with their scatter)
    untraced: untraced_mod.Untraced | None = None   # what the start took untraced (sim/untraced.py)


def _metadata(dataset: Path) -> dict:
    meta = state.read_table(dataset, "metadata")
    out = {}
    for k, v in meta.iter_rows():
        try:
            out[k] = json.loads(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def _sysctl(dataset: Path) -> dict[str, str]:
    text = state.snapshot_text(dataset, "vm_sysctl")
    return state.parse_sysctl(text) if text else {}


def check_dataset(dataset: Path) -> None:
    """A dataset this thpreplay can read (dataset.check): its dataset.json names this format version and,
    for every table, the schema version declared in schemas/, and every Parquet part matches it (a
    dataset from another version, or a damaged one, is refused with what to do)."""
    check(dataset)


def captured_settings(dataset: Path, meta: dict | None = None) -> tuple[str | None, str | None]:
    """The capture's own THP (enabled, defrag): from its metadata, else its thp_settings snapshot
    (None where neither says)."""
    meta = _metadata(dataset) if meta is None else meta
    enabled, defrag = meta.get("thp_enabled"), meta.get("thp_defrag")
    if not enabled or not defrag:
        lines = [ln for ln in (state.snapshot_text(dataset, "thp_settings") or "").splitlines() if ln.strip()]
        enabled = enabled or (selected_setting(lines[0]) if lines else None)
        defrag = defrag or (selected_setting(lines[1]) if len(lines) > 1 else None)
    return enabled, defrag


def prepare(dataset: str | Path, *, enabled: str | None = None, defrag: str | None = None,
            madvised: bool | None = None, params: Params | None = None, checked: bool = False) -> Inputs:
    """The replay inputs of a dataset (checked first, unless the caller has just checked this very
    directory: checked=True). A read that fails inside a part whose footer was whole is reported as that
    part's damage."""
    dataset = Path(dataset)
    if not checked:
        check_dataset(dataset)
    try:
        return _prepare(dataset, enabled, defrag, madvised, params)
    except Exception as e:
        if not _reader_error(e):
            raise
        damage = locate_damage(dataset, e)
        if damage is None:
            raise
        raise damage from None


def _reader_error(e: Exception) -> bool:
    """An error of the Parquet readers: polars', or pyarrow's where it was used (the first build of the
    demand reads footers' statistics with it; it is not imported otherwise)."""
    pa = sys.modules.get("pyarrow")
    return isinstance(e, pl.exceptions.PolarsError) or (pa is not None and isinstance(e, pa.ArrowException))


def _prepare(dataset: Path, enabled: str | None, defrag: str | None, madvised: bool | None,
             params: Params | None) -> Inputs:
    params = params or Params()
    meta = _metadata(dataset)
    if meta.get("untimed_events"):  # event lines without a prefix (ingest's "events" format)
        raise InputError(str(dataset), f"{meta['untimed_events']:,} of its events have no timestamp (event lines "
                         f"without the task/cpu/time prefix): the replay needs their time order; ingest the "
                         f"trace as perf script or ftrace text with timestamps")
    notes: list[str] = []
    cap_enabled, cap_defrag = captured_settings(dataset, meta)
    if enabled is None:
        enabled = cap_enabled or "always"
        if not cap_enabled:
            notes.append("THP enabled setting not in the capture: taken as 'always'")
    if defrag is None:
        defrag = cap_defrag or "madvise"
        if not cap_defrag:
            notes.append("THP defrag setting not in the capture: taken as 'madvise' (the default since 4.6)")
    settings = ThpSettings(enabled=enabled, defrag=defrag)
    sysctl = _sysctl(dataset)
    cua = params.compact_unevictable_allowed
    if "compact_unevictable_allowed" in sysctl and "compact_unevictable_allowed" not in params.explicit:
        cua = int(sysctl["compact_unevictable_allowed"])
    release = meta.get("kernel_version") or meta.get("kernel_release")
    overrides = {"compact_unevictable_allowed": cua}   # the replay core reads it (isolate_migratepages_block)
    if "extfrag_threshold" in sysctl:
        overrides["extfrag_threshold"] = float(sysctl["extfrag_threshold"])
    if "compaction_proactiveness" in sysctl:
        overrides["compaction_proactiveness"] = int(sysctl["compaction_proactiveness"])
    elif release and (parse_release(release) or (99, 0)) < (5, 9):
        overrides["compaction_proactiveness"] = 0  # proactive compaction (Nitin Gupta) came with 5.9
    if "watermark_boost_factor" in sysctl:
        overrides["watermark_boost_factor"] = int(sysctl["watermark_boost_factor"])
    elif release and (parse_release(release) or (99, 0)) < (5, 0):
        overrides["watermark_boost_factor"] = 0  # watermark boosting (Mel Gorman, 1c30844d2dfe) came with 5.0
    # costs measured from the capture's own trace (sim/calibrate.py)
    estimates = calibrate.calibrate(dataset)
    overrides.update(calibrate.overrides(estimates, params.explicit))
    notes += [calibrate.describe(e) for e in estimates if e.param not in params.explicit]
    # the capture's own settings apply unless the --params file set the value
    overrides = {k: v for k, v in overrides.items() if k not in params.explicit}
    if overrides:
        params = Params(**{**params.as_dict(), **overrides, "explicit": params.explicit})
    signatures = _madvise_signatures(dataset, release, cap_enabled or enabled, cap_defrag or defrag)

    def build() -> tuple[demand_mod.Demand, state.InitialState]:
        demand = demand_mod.build(dataset, cap_enabled or enabled, cap_defrag or defrag, madvised,
                                  madvise_signatures=signatures)
        return demand, state.build(dataset, demand.used_at_start, demand.free_at_start, demand.pfns_by_migratetype,
                                   cua, params.seed, demand.traced_pages)

    # built once per dataset and settings, kept in DATASET/cache (sim/cache.py: the key is all build() reads)
    demand, init, cache_notes = prepared_cache.load_or_build(dataset, dict(
        enabled=cap_enabled or enabled, defrag=cap_defrag or defrag, madvised=madvised,
        signatures=[sorted(s) for s in signatures] if signatures else None, cua=cua, seed=params.seed), build)
    untraced = untraced_mod.read(dataset)
    if untraced is not None:
        notes.append(untraced.note())
    return Inputs(dataset, settings, params, demand, init, release, compact_stall_rule(release),
                  notes + demand.notes + init.assumptions + cache_notes, kcompactd_timer_phase(dataset),
                  [e.as_dict() for e in estimates], [e for e in estimates if e.param not in params.explicit], untraced)


def _madvise_signatures(dataset: Path, release: str | None, enabled: str,
                        defrag: str) -> tuple[frozenset, frozenset] | None:
    """The gfp signatures (__GFP_THISNODE, __GFP_NORETRY, __GFP_DIRECT_RECLAIM) of THP attempts that only
    a madvised / only a non-madvised VMA makes under `defrag`, in the capturing kernel's era (its declared
    policy for a patched kernel, `thp_policy`), or None when the era's attempts do not tell them apart.
    Under defrag=always (4.8+) only a non-madvised VMA's mask carries __GFP_NORETRY
    (alloc_hugepage_direct_gfpmask())."""
    declared = (state.snapshot_text(dataset, "thp_policy") or "").strip()
    try:
        era = get_policy(declared) if declared else resolve_kernel(release) if release else None
        if era is None:
            return None
        sides = []
        for madvised in (True, False):
            attempts = era.attempts(ThpSettings(enabled=enabled, defrag=defrag), madvised)
            sides.append({(a.scope == "local", a.noretry, a.direct_reclaim) for a in attempts if a.order == PMD_ORDER})
    except ThpreplayError:
        return None
    mad, plain = sides
    if not mad or not plain or mad == plain:
        return None
    return frozenset(mad - plain), frozenset(plain - mad)


def kcompactd_timer_phase(dataset: Path) -> int | None:
    """A trace time at which kcompactd's proactive timer fired, or None. kcompactd checks proactive
    compaction every HPAGE_FRAG_CHECK_INTERVAL_MSEC (500 ms) on its own timer (mm/compaction.c,
    kcompactd()); a run of its that no mm_compaction_kcompactd_wake started (a wake-up is traced within
    microseconds before the work) is a timer run, and the model keeps its checks in that phase. This is
    the machine's clock, not a decision of the kernel's: whether the check compacts is the model's."""
    try:
        c = state.read_table(dataset, "compaction", ["ts_ns", "comm", "event"])
    except InputError:
        return None
    k = c.filter(pl.col("comm").str.starts_with("kcompactd")).sort("ts_ns")
    wakes = k.filter(pl.col("event") == "mm_compaction_kcompactd_wake")["ts_ns"].to_list()
    for ts in k.filter(pl.col("event") == "mm_compaction_begin")["ts_ns"].to_list():
        if not any(0 <= ts - w <= 10_000_000 for w in wakes):
            return int(ts)
    return None


def select_policies(names: list[str] | None, kernels: list[str] | None) -> list[Policy]:
    """The policies asked for by name, then by kernel version (default: every built-in), each once."""
    chosen: list[Policy] = []
    for name in names or []:
        chosen.append(get_policy(name))
    for version in kernels or []:
        chosen.append(resolve_kernel(version))
    if not chosen:
        chosen = [p for p in all_policies() if is_builtin(p)]
    seen, out = set(), []
    for p in chosen:
        if p.name not in seen:
            seen.add(p.name)
            out.append(p)
    return out


def kernels_asked(kernels: list[str] | None) -> tuple[dict[str, list[str]], list[str]]:
    """{policy name: the --kernel versions that gave it, in order} and the resolution warnings (a bare
    version that spans two eras, a vendor kernel's backports), one note each."""
    asked: dict[str, list[str]] = {}
    warnings: list[str] = []
    for version in kernels or []:
        r = explain(version)
        names = asked.setdefault(r.policy, [])
        if version not in names:
            names.append(version)
        warnings += [f"--kernel {w}" if w.startswith(version) else f"--kernel {version}: {w}" for w in r.warnings]
    return asked, warnings


def _quantile(values: np.ndarray, q: float) -> float | None:
    return float(np.quantile(values, q)) if len(values) else None


def summarize(run: engine.Run, policy: Policy, settings: ThpSettings, kernel: str | None = None) -> dict:
    o = run.outcomes
    c = run.counters
    n = o.height
    counts = {r: int((o["result"] == r).sum()) for r in engine.RESULTS}
    lat = o["latency_ns"].to_numpy() / 1000.0
    got = o.filter(pl.col("result") != "failed")["access_cost"]
    return dict(
        policy=policy.name, kernels=policy.kernels, kernel=kernel, enabled=settings.enabled, defrag=settings.defrag, faults=n,
        **counts,
        thp_coverage=(counts["huge_local"] + counts["huge_remote"]) / n if n else None,
        local_share=(counts["huge_local"] + counts["base_local"]) / n if n else None,
        latency_mean_us=float(lat.mean()) if n else None,
        latency_p50_us=_quantile(lat, 0.5), latency_p99_us=_quantile(lat, 0.99),
        access_cost_mean=float(got.mean()) if got.len() else None,
        compact_stall=c["compact_stall"], compact_success=c["compact_success"], compact_fail=c["compact_fail"],
        pages_migrated=c["pgmigrate_success"], allocstall=c["allocstall"], pgsteal_direct=c["pgsteal_direct"],
        pgsteal_kswapd=c["pgsteal_kswapd"], pswpout=c["pswpout"], numa_miss=c["numa_miss"],
        placed_as_traced=c["placed_as_traced"], placed_by_allocator=c["placed_by_allocator"],
        dropped_by_huge_region=c["dropped_by_huge_region"], synthesized_base_pages=c["synthesized_base_pages"],
        free_of_unknown_page=c["free_of_unknown_page"], samples=0,
    )


# outcome_summary's figures: each gets <figure>_p5, _p50 and _p95 over the samples (simulate --samples)
SAMPLED_FIGURES = (
    "huge_local", "huge_remote", "base_local", "base_remote", "failed", "thp_coverage", "local_share",
    "latency_mean_us", "latency_p50_us", "latency_p99_us", "access_cost_mean", "compact_stall", "compact_success",
    "compact_fail", "pages_migrated", "allocstall", "pgsteal_direct", "pgsteal_kswapd", "pswpout", "numa_miss",
    "placed_as_traced", "placed_by_allocator", "dropped_by_huge_region", "synthesized_base_pages",
    "free_of_unknown_page",
)


@dataclass
class SimulationResult:
    inputs: Inputs
    runs: list[engine.Run]
    summary: pl.DataFrame           # after write(): every stored policy's row, kept ones included
    kernels: dict[str, list[str]] = field(default_factory=dict)  # policy -> the --kernel versions asked
    madvised: bool | None = None    # the --madvised choice (None: from the capture)
    kept: list[str] = field(default_factory=list)   # stored policies this run kept (write())
    replaced: str | None = None     # why the stored results of other policies were not kept, if they were not
    # with --samples: {"n", "seed", "draws": [what each sample drew], "figures": {policy: [per-sample rows]}}
    samples: dict | None = None


def replay(inputs: Inputs, policies: list[Policy], progress=None,
           kernels: dict[str, list[str]] | None = None, samples: int | None = None, seed: int = 1) -> SimulationResult:
    """Run every policy. A policy that refuses the settings (a defrag mode its era did not have) is left
    out with a note when others run; alone, its error is the result. kernels: policy -> the kernel
    versions asked for (kernels_asked), the summary's `kernel` column. samples: also replay each policy
    that many times, drawing what the capture cannot pin down from generators seeded by (seed, sample)
    (sim/samples.py), for the summary's percentile columns; the outcomes and the figures themselves stay
    the deterministic run's."""
    check_samples(samples, seed if samples is not None else None)
    kernels = kernels or {}
    runs, rows = [], []
    usable = []
    for policy in policies:
        try:
            call_attempts(policy, inputs.settings, True)
            usable.append(policy)
        except PolicyError as e:
            if len(policies) == 1 or isinstance(e, PolicyCrashed):
                raise
            inputs.notes.append(f"{policy.name} skipped: {e.message}")
    for policy in usable:
        run = engine.run(policy, inputs.settings, inputs.demand, inputs.state, inputs.params, inputs.stall_rule,
                         progress=progress, release=inputs.kernel_release,
                         proactive_phase_ns=inputs.proactive_phase_ns, **untraced_mod.engine_args(inputs.untraced))
        runs.append(run)
        rows.append(summarize(run, policy, inputs.settings, ", ".join(kernels.get(policy.name, [])) or None))
    sampled = None
    if samples:
        sampled = replay_samples(inputs, usable, samples, seed, progress)
        for row in rows:
            per = sampled["figures"][row["policy"]]
            row["samples"] = samples
            for fig in SAMPLED_FIGURES:
                for q, value in sample_mod.quantiles([r[fig] for r in per]).items():
                    row[f"{fig}_{q}"] = value
    table = schemas.load("outcome_summary")
    summary = table.conform(pl.DataFrame(rows, schema_overrides=table.polars(), strict=False)) if rows else table.empty()
    ran = {r.policy for r in runs}
    return SimulationResult(inputs, runs, summary, {k: v for k, v in kernels.items() if k in ran}, samples=sampled)


def replay_samples(inputs: Inputs, policies: list[Policy], n: int, seed: int, progress=None) -> dict:
    """The samples of every policy: what each drew, and each policy's outcome_summary figures per sample."""
    draws: list[dict] = []
    figures: dict[str, list[dict]] = {p.name: [] for p in policies}
    for d, policy, run in sample_mod.runs(inputs, policies, n, seed, progress):
        if not draws or draws[-1]["sample"] != d.sample:
            draws.append(d.as_dict())
        row = summarize(run, policy, inputs.settings)
        figures[policy.name].append(dict(sample=d.sample, **{f: row[f] for f in SAMPLED_FIGURES}))
    return dict(n=n, seed=seed, draws=draws, figures=figures)


# simulation.json keys that must be equal for stored results to be kept beside new ones: what the
# results were computed from (the dataset's demand and initial state, the settings, the parameters after
# calibration, the model's version). Notes and counters are per run.
SAME_INPUTS = ("settings", "madvised", "params", "kernel_release", "compact_stall_rule", "demand", "initial_state",
               "thpreplay", "samples")


def _part(i: int) -> str:
    return f"part-{i:06d}.parquet"


def _record(result: SimulationResult) -> dict:
    """This run's simulation.json, before merging."""
    from thpreplay import __version__

    inp = result.inputs
    names = [r.policy for r in result.runs]
    return json.loads(json.dumps(dict(
        policies=names,
        settings=dict(enabled=inp.settings.enabled, defrag=inp.settings.defrag), madvised=result.madvised,
        kernel_release=inp.kernel_release, compact_stall_rule=inp.stall_rule,
        params=inp.params.as_dict(), calibration=inp.calibration, notes=inp.notes, demand=inp.demand.counts,
        initial_state=inp.state.summary,
        counters={r.policy: r.counters for r in result.runs},
        kernels={name: result.kernels[name] for name in names if name in result.kernels},
        parts={name: _part(i) for i, name in enumerate(names)},
        schemas={name: schemas.load(name).id for name in TABLES},
        thpreplay=__version__,
        # with --samples only (a deterministic run's record is as it was): what each sample drew and each
        # policy's figures per sample (sim/samples.py)
        **(dict(samples=dict(n=result.samples["n"], seed=result.samples["seed"]),
                sample_draws=result.samples["draws"], sample_figures=result.samples["figures"])
           if result.samples else {}),
    )))  # JSON's own types, so that it compares equal to a stored record


def _differs(old: dict, new: dict) -> str:
    """What differs between the stored results' inputs and this run's, in a few words."""
    if old.get("settings") != new["settings"]:
        s = old.get("settings") or {}
        return f"other THP settings (enabled={s.get('enabled')} defrag={s.get('defrag')})"
    if old.get("madvised") != new["madvised"]:
        return f"--madvised {({None: 'auto', True: 'yes', False: 'no'}).get(old.get('madvised'), '?')}"
    if old.get("params") != new["params"]:
        keys = sorted(k for k in set(old.get("params") or {}) | set(new["params"])
                      if (old.get("params") or {}).get(k) != new["params"].get(k))
        return "other parameters (" + ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "") + ")"
    if old.get("samples") != new.get("samples"):
        s = old.get("samples")
        return f"--samples {s['n']} --seed {s['seed']}" if s else "no --samples"
    if old.get("thpreplay") != new["thpreplay"]:
        return f"thpreplay {old.get('thpreplay') or 'of an older version'}"
    return "other inputs (" + ", ".join(k for k in SAME_INPUTS if old.get(k) != new.get(k)) + ")"


def _stored(dataset: Path, new: dict) -> tuple[dict | None, str | None]:
    """The stored simulation's record when its other policies can be kept beside this run's, else
    (None, why not; None when there is nothing stored or nothing else to keep)."""
    try:
        old = check_simulation(dataset)
    except InputError as e:
        return None, f"the stored simulation was not kept ({e.message})"
    if old is None:
        return None, None
    others = [p for p in old["policies"] if p not in new["policies"]]
    if not others:
        return None, None
    if any(old.get(k) != new.get(k) for k in SAME_INPUTS):
        return None, (f"the stored results of {', '.join(others)} were simulated with {_differs(old, new)}: "
                      "replaced by this run's (simulate them again with these options to compare)")
    return old, None


def _kept_part(sim: Path, old: dict, table: str, policy: str, tmp: Path) -> None:
    """Put a kept policy's stored part of `table` in the new simulation at tmp/table/: the same file
    (hard-linked: parts are never written in place) or, from a simulation without per-policy parts, its
    rows."""
    name = (old.get("parts") or {}).get(policy)
    dest = tmp / table / _part(old["policies"].index(policy))
    if name and (sim / table / name).is_file():
        try:
            os.link(sim / table / name, dest)
        except OSError:
            shutil.copyfile(sim / table / name, dest)
        return
    frame = state.read_table(sim, table).filter(pl.col("policy") == policy)
    schemas.load(table).write(frame, dest)


def write(result: SimulationResult, before_publish=None, replace: bool = False) -> Path:
    """Write the simulation into the dataset, keeping the stored results of policies this run did not
    simulate when they were computed from the same inputs (SAME_INPUTS); otherwise, or with replace=True,
    only this run's remain (result.replaced says why). One part per policy for outcomes and memory_series,
    so a kept policy's parts are its stored files. before_publish() is called just before the directory
    is put in place (simulate's check that the dataset is still the one it read)."""
    dataset = result.inputs.dataset
    sim = dataset / SIM_DIR
    clean_stale(sim)  # what a killed simulate left (the lock makes this one the only writer)
    info = _record(result)
    old, result.replaced = (None, None) if replace else _stored(dataset, info)
    ran = info["policies"]
    order = list(old["policies"]) if old else []
    order += [p for p in ran if p not in order]
    result.kept = [p for p in order if p not in ran]
    try:
        tmp = make_tmp(sim)
    except OSError as e:
        raise OutputError(f"{dataset}: cannot write: {e.strerror}") from None
    try:
        runs = {r.policy: r for r in result.runs}
        summaries = [result.summary]
        if result.kept:
            summaries.insert(0, state.read_table(sim, "outcome_summary").filter(pl.col("policy").is_in(result.kept)))
        table = schemas.load("outcome_summary")
        rank = {p: i for i, p in enumerate(order)}
        summary = table.conform(pl.concat([table.conform(f) for f in summaries]))
        summary = summary.sort(pl.col("policy").replace_strict(rank, return_dtype=pl.Int64), maintain_order=True)
        for name in ("outcomes", "memory_series"):
            (tmp / name).mkdir()
            schema = schemas.load(name)
            if not order:
                schema.write(schema.empty(), tmp / name / _part(0))
            for i, policy in enumerate(order):
                if policy in runs:
                    frame = runs[policy].outcomes if name == "outcomes" else runs[policy].series
                    schema.write(schema.conform(frame), tmp / name / _part(i))
                else:
                    _kept_part(sim, old, name, policy, tmp)
        (tmp / "outcome_summary").mkdir()
        table.write(summary, tmp / "outcome_summary" / _part(0))
        if old:
            notes = info["notes"] + [n for n in old.get("notes", []) if n not in info["notes"]
                                     and not any(n.startswith(f"{p} skipped") for p in ran)]
            info.update(
                policies=order, notes=notes,
                counters={p: (info["counters"] if p in runs else old["counters"])[p] for p in order},
                kernels={p: k for p in order
                         if (k := (info["kernels"] if p in runs else old.get("kernels") or {}).get(p))},
                parts={p: _part(i) for i, p in enumerate(order)},
            )
            if "sample_figures" in info:
                info["sample_figures"] = {p: (info["sample_figures"] if p in runs else old.get("sample_figures", {}))[p]
                                          for p in order}
        (tmp / "simulation.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        if before_publish is not None:
            before_publish()
        replace_dir(tmp, sim)
        result.summary = summary
        return sim
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = io_error_reason(e, dataset) if isinstance(e, Exception) and not isinstance(e, ThpreplayError) else None
        if reason is None:
            raise
        raise OutputError(f"{dataset}: writing the simulation failed: {reason}") from None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def simulate(dataset: str | Path, *, policies: list[str] | None = None, kernels: list[str] | None = None,
             enabled: str | None = None, defrag: str | None = None, madvised: bool | None = None,
             params_file: str | None = None, progress=None, on_start=None, wait: bool = False,
             replace: bool = False, samples: int | None = None, seed: int | None = None) -> SimulationResult:
    """Replay and write DATASET/simulation/, keeping the stored results of other policies computed from
    the same inputs (write(); replace=True keeps none). The dataset is read-locked throughout and its
    simulate lock held (a second simulate is refused, or waits with wait=True); see dataset.py.
    samples, seed: also replay each policy `samples` times, drawing what the capture cannot pin down
    (sim/samples.py; seed defaults to 1), for outcome_summary's p5 / p50 / p95 columns."""
    check_samples(samples, seed)
    dataset = Path(dataset)
    checked = _identity(dataset)   # before the check: a directory put there meanwhile is checked again
    check_dataset(dataset)
    chosen = select_policies(policies, kernels)
    asked, warnings = kernels_asked(kernels)
    params = Params.load(params_file)
    with simulating(dataset, wait=wait) as still_there:
        # the locked directory is the one checked above unless the path was given another since (ingest
        # --force): only then is it checked again
        inputs = prepare(dataset, enabled=enabled, defrag=defrag, madvised=madvised, params=params,
                         checked=checked is not None and _identity(dataset) == checked)
        inputs.notes += warnings
        if on_start:
            on_start(inputs.demand.ops.height * len(chosen) * (1 + (samples or 0)))
        result = replay(inputs, chosen, progress=progress, kernels=asked, samples=samples,
                        seed=1 if seed is None else seed)
        result.madvised = madvised
        write(result, before_publish=still_there, replace=replace)
        return result
