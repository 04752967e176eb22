"""`thpreplay validate`: replay a capture under its own kernel's policy and compare with what it did.

Observed figures come from two places: the trace itself (thp_faults outcomes, direct reclaim events)
and the bundle's /proc/vmstat deltas. vmstat counts every task, the trace's THP faults only the faults;
the table says which is which. A figure passes when its relative error |sim - obs| / obs is within the
tolerance, or when the absolute difference is at most `small` (default 5: a ±5 band for small counts,
where one fault is many percent).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from thpreplay.errors import ThpreplayError
from thpreplay.policy.registry import get_policy, resolve_kernel
from thpreplay.sim.params import Params
from thpreplay.sim.state import read_table
from thpreplay.simulate import SimulationResult, prepare, replay


@dataclass
class Row:
    figure: str
    source: str
    observed: int
    simulated: int

    def error(self) -> float:
        return abs(self.simulated - self.observed) / max(self.observed, 1)

    def ok(self, tolerance: float, small: int) -> bool:
        return self.error() <= tolerance or abs(self.simulated - self.observed) <= small


@dataclass
class Validation:
    policy: str
    kernel_release: str | None
    rows: list[Row]
    result: SimulationResult
    tolerance: float
    small: int

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok(self.tolerance, self.small)]

    def table(self) -> pl.DataFrame:
        return pl.DataFrame([
            dict(figure=r.figure, source=r.source, observed=r.observed, simulated=r.simulated,
                 rel_error=round(r.error(), 4), ok=r.ok(self.tolerance, self.small)) for r in self.rows
        ])


def _vmstat(dataset) -> dict[str, int]:
    vm = read_table(dataset, "vmstat").filter((pl.col("scope") == "system") & pl.col("delta").is_not_null())
    return dict(zip(vm["counter"].to_list(), vm["delta"].to_list()))


def validate(dataset, *, policy: str | None = None, kernel: str | None = None, tolerance: float = 0.10,
             small: int = 5, params_file: str | None = None) -> Validation:
    params = Params.load(params_file)
    inputs = prepare(dataset, params=params)
    if policy:
        chosen = get_policy(policy)
    elif kernel:
        chosen = resolve_kernel(kernel)
    elif inputs.kernel_release:
        chosen = resolve_kernel(inputs.kernel_release)
    else:
        raise ThpreplayError(f"{dataset}: the capture does not say which kernel made it; give --kernel or --policy")
    result = replay(inputs, [chosen])
    run = result.runs[0]
    c = run.counters
    sim = run.outcomes["result"].value_counts()
    sim_count = dict(zip(sim["result"].to_list(), sim["count"].to_list()))
    faults = read_table(inputs.dataset, "thp_faults")
    obs = dict(zip(*faults["outcome"].value_counts().select("outcome", "count").to_dict(as_series=False).values()))
    reclaim = read_table(inputs.dataset, "reclaim")
    begins = reclaim.filter(pl.col("event") == "mm_vmscan_direct_reclaim_begin").height
    reclaimed = int(reclaim.filter(pl.col("event") == "mm_vmscan_direct_reclaim_end")["nr_reclaimed"].fill_null(0).sum())
    rows = [
        Row("huge_local", "trace", obs.get("huge_local", 0), sim_count.get("huge_local", 0)),
        Row("huge_remote", "trace", obs.get("huge_remote", 0), sim_count.get("huge_remote", 0)),
        Row("fallback", "trace", obs.get("fallback", 0),
            sim_count.get("base_local", 0) + sim_count.get("base_remote", 0) + sim_count.get("failed", 0)),
        Row("direct_reclaims", "trace", begins, c["allocstall"]),
        Row("pages_reclaimed", "trace", reclaimed, c["pgsteal_direct"]),
    ]
    vm = _vmstat(inputs.dataset)
    allocstall = sum(v for k, v in vm.items() if k.startswith("allocstall"))
    for figure, counter, value in (
        ("thp_fault_alloc", "thp_fault_alloc", vm.get("thp_fault_alloc")),
        ("thp_fault_fallback", "thp_fault_fallback", vm.get("thp_fault_fallback")),
        ("compact_stall", "compact_stall", vm.get("compact_stall")),
        ("compact_success", "compact_success", vm.get("compact_success")),
        ("compact_fail", "compact_fail", vm.get("compact_fail")),
        ("allocstall", "allocstall", allocstall if any(k.startswith("allocstall") for k in vm) else None),
        ("pgsteal_direct", "pgsteal_direct", vm.get("pgsteal_direct")),
        ("numa_miss", "numa_miss", vm.get("numa_miss")),
    ):
        if value is not None:
            rows.append(Row(figure, "vmstat", int(value), int(c[counter])))
    return Validation(chosen.name, inputs.kernel_release, rows, result, tolerance, small)
