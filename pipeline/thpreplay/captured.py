"""What the capturing kernel did, in the shape of an outcome_summary row: the "as captured" row that the
simulate table, the report and the fleet page put above the policies' predictions.

Every figure comes from the capture itself, through the functions `thpreplay validate` compares with
(validate.observed: the trace's THP outcomes, and the bundle's vmstat deltas), and thp_faults' measured
latency. A figure the capture cannot give is None, shown as "—", and `unknown` says why; none is
estimated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from thpreplay.errors import InputError
from thpreplay.sim.state import read_table

LABEL = "as captured"

# why a figure is missing from the captured row (one footnote per reason)
NO_BASE_NODE = "the trace does not say which node a fallback's 4 KiB pages came from"
NO_ACCESS_COST = "access cost is the model's price of a placement, not a measured figure"
NO_LATENCY = "the trace has no page_fault event before the faults' attempts, so no fault latency"
NO_VMSTAT = "the bundle's vmstat snapshots lack this counter"

# outcome_summary column -> the vmstat delta that counts the same thing (validate compares the same pairs)
VMSTAT = {"compact_stall": "compact_stall", "compact_success": "compact_success", "compact_fail": "compact_fail",
          "allocstall": "allocstall", "pgsteal_direct": "pgsteal_direct", "pswpout": "pswpout",
          "numa_miss": "numa_miss"}


@dataclass
class Captured:
    """One outcome_summary-like row of the capture; `unknown` maps a missing column to its reason."""

    row: dict
    unknown: dict[str, str] = field(default_factory=dict)
    latency_source: str = "measured in the trace: from the page fault to the last THP attempt"

    def get(self, column: str):
        return self.row.get(column)

    def footnotes(self, columns) -> list[str]:
        """The reasons for the columns shown that the capture cannot give, each once, in column order."""
        out: list[str] = []
        for c in columns:
            reason = self.unknown.get(c)
            if reason and reason not in out:
                out.append(reason)
        return out


def captured(dataset: str | Path) -> Captured:
    """The capture's own figures (see the module docstring)."""
    from thpreplay.validate import observed

    dataset = Path(dataset)
    obs = observed(dataset)
    faults = read_table(dataset, "thp_faults", ["outcome", "latency_ns"])
    n = faults.height
    hl, hr, fb = obs["huge_local"], obs["huge_remote"], obs["fallback"]
    unknown: dict[str, str] = {}
    nodes = _nodes(dataset)
    # one node: every page is local, fallbacks included; with more, a fallback's node is not in the trace
    if nodes == 1:
        base_local, base_remote, local_share = fb, 0, (hl + fb) / n if n else None
    else:
        base_local = base_remote = local_share = None
        for c in ("base_local", "base_remote", "local_share"):
            unknown[c] = NO_BASE_NODE
    lat = faults["latency_ns"].drop_nulls().cast(pl.Float64) / 1000.0
    if n and lat.len():
        lat_mean, lat_p50, lat_p99 = float(lat.mean()), float(lat.quantile(0.5, "linear")), float(lat.quantile(0.99, "linear"))
    else:
        lat_mean = lat_p50 = lat_p99 = None
        if n:
            for c in ("latency_mean_us", "latency_p50_us", "latency_p99_us"):
                unknown[c] = NO_LATENCY
    row = dict(policy=LABEL, faults=n, huge_local=hl, huge_remote=hr, base=fb, base_local=base_local,
               base_remote=base_remote, failed=None, thp_coverage=(hl + hr) / n if n else None,
               local_share=local_share, latency_mean_us=lat_mean, latency_p50_us=lat_p50, latency_p99_us=lat_p99,
               access_cost_mean=None)
    unknown["access_cost_mean"] = NO_ACCESS_COST
    unknown["failed"] = "the trace does not tell a fault that got no page from a fallback"
    for column, counter in VMSTAT.items():
        row[column] = obs.get(counter)
        if row[column] is None:
            unknown[column] = NO_VMSTAT
    return Captured(row, unknown)


def _nodes(dataset: Path) -> int:
    try:
        topo = read_table(dataset, "topology", ["node", "spanned"])
    except InputError:
        return 0
    return topo.filter(pl.col("spanned") > 0)["node"].n_unique()


def free_huge_snapshots(dataset: str | Path) -> pl.DataFrame:
    """The capture's free huge pages per node at the start and end (its before/after snapshots: blocks of
    order >= 9, an order-10 block counting 2): node, snapshot, free_huge_pages. The trace has nothing in
    between, so the report draws these two points and no line."""
    from thpreplay.validate import HUGE_ORDER

    schema = {"node": pl.Int64, "snapshot": pl.String, "free_huge_pages": pl.Int64}
    try:
        fl = read_table(Path(dataset), "free_lists")
    except InputError:
        return pl.DataFrame(schema=schema)
    fl = fl.filter(pl.col("order") >= HUGE_ORDER)
    by_type = fl.filter(pl.col("migratetype") != "all")
    rows = []
    for snap in ("before", "after"):
        part = by_type.filter(pl.col("snapshot") == snap)
        if part.height == 0:
            part = fl.filter((pl.col("snapshot") == snap) & (pl.col("migratetype") == "all"))
        per_node = part.group_by("node").agg(
            (pl.col("free_blocks") * pl.lit(2, dtype=pl.Int64).pow(pl.col("order") - HUGE_ORDER)).sum()
            .alias("free_huge_pages"))
        rows += [dict(node=int(nd), snapshot=snap, free_huge_pages=int(h)) for nd, h in per_node.iter_rows()]
    return pl.DataFrame(rows, schema=schema).sort("node", "snapshot", descending=[False, True])
