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
from thpreplay.sim import state
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


# (figure, source, vmstat counter or None): the figures compared, in the order printed
FIGURES = (
    ("huge_local", "trace"), ("huge_remote", "trace"), ("fallback", "trace"),
    ("direct_reclaims", "trace"), ("pages_reclaimed", "trace"),
    ("thp_fault_alloc", "vmstat"), ("thp_fault_fallback", "vmstat"), ("compact_stall", "vmstat"),
    ("compact_success", "vmstat"), ("compact_fail", "vmstat"), ("allocstall", "vmstat"),
    ("pgsteal_direct", "vmstat"), ("pswpout", "vmstat"), ("numa_miss", "vmstat"),
)


def observed(dataset) -> dict[str, int]:
    """What the capturing kernel did: the trace's THP outcomes and direct reclaims, and the vmstat
    deltas the bundle has (a counter the snapshots lack is left out)."""
    faults = read_table(dataset, "thp_faults")
    obs = dict(zip(*faults["outcome"].value_counts().select("outcome", "count").to_dict(as_series=False).values()))
    reclaim = read_table(dataset, "reclaim")
    out = {
        "huge_local": obs.get("huge_local", 0), "huge_remote": obs.get("huge_remote", 0), "fallback": obs.get("fallback", 0),
        "direct_reclaims": reclaim.filter(pl.col("event") == "mm_vmscan_direct_reclaim_begin").height,
        "pages_reclaimed": int(reclaim.filter(pl.col("event") == "mm_vmscan_direct_reclaim_end")["nr_reclaimed"].fill_null(0).sum()),
    }
    vm = _vmstat(dataset)
    if any(k.startswith("allocstall") for k in vm):
        out["allocstall"] = sum(v for k, v in vm.items() if k.startswith("allocstall"))
    for counter in ("thp_fault_alloc", "thp_fault_fallback", "compact_stall", "compact_success", "compact_fail",
                    "pgsteal_direct", "pswpout", "numa_miss"):
        if vm.get(counter) is not None:
            out[counter] = int(vm[counter])
    return out


def simulated(run) -> dict[str, int]:
    """The same figures from one policy's replay."""
    c = run.counters
    sim = run.outcomes["result"].value_counts()
    n = dict(zip(sim["result"].to_list(), sim["count"].to_list()))
    out = {
        "huge_local": n.get("huge_local", 0), "huge_remote": n.get("huge_remote", 0),
        "fallback": n.get("base_local", 0) + n.get("base_remote", 0) + n.get("failed", 0),
        "direct_reclaims": int(c["allocstall"]), "pages_reclaimed": int(c["pgsteal_direct"]),
    }
    for counter in ("thp_fault_alloc", "thp_fault_fallback", "compact_stall", "compact_success", "compact_fail",
                    "allocstall", "pgsteal_direct", "pswpout", "numa_miss"):
        out[counter] = int(c[counter])
    return out


def compare(obs: dict[str, int], sim: dict[str, int]) -> list[Row]:
    return [Row(f, source, obs[f], sim[f]) for f, source in FIGURES if f in obs]


def validate(dataset, *, policy: str | None = None, kernel: str | None = None, tolerance: float = 0.10,
             small: int = 5, params_file: str | None = None) -> Validation:
    params = Params.load(params_file)
    inputs = prepare(dataset, params=params)
    declared = (state.snapshot_text(inputs.dataset, "thp_policy") or "").strip()
    if policy:
        chosen = get_policy(policy)
    elif kernel:
        chosen = resolve_kernel(kernel)
    elif declared:  # a patched kernel: its release names the version it was built from, not its policy
        chosen = get_policy(declared)
    elif inputs.kernel_release:
        chosen = resolve_kernel(inputs.kernel_release)
    else:
        raise ThpreplayError(f"{dataset}: the capture does not say which kernel made it; give --kernel or --policy")
    result = replay(inputs, [chosen])
    rows = compare(observed(inputs.dataset), simulated(result.runs[0]))
    return Validation(chosen.name, inputs.kernel_release, rows, result, tolerance, small)
