"""What changed from one kernel era to another, and whether it is larger than the spread.

A replay is one draw of what a capture cannot pin down; `simulate --samples N` gives each policy's figures
a 90 % interval (p5..p95 over the samples, sim/samples.py). Two kernels' predictions differ by more than
that chance when their intervals do not overlap: then even the luckiest draw of the one and the unluckiest
of the other keep them apart, which is what a user comparing two kernels on separate boots would see. A
difference whose intervals overlap may be real, but this capture cannot tell it from a boot's luck.

The test is conservative on purpose: both kernels' samples are drawn from the same generator seeds (sample
i of each policy shares its start layout, timer phase and costs), so the difference of a pair of samples
is tighter than either interval; that paired interval is given too (`change_p5`, `change_p95`), as what the
model says of this one capture, but the verdict is the overlap.
"""

from __future__ import annotations

import polars as pl

from thpreplay.sim.samples import quantiles

# (figure, how the report prints it): the figures a kernel upgrade is judged by. fallback is the sum of the
# summary's base_local, base_remote and failed (a fault that got no huge page).
FIGURES = (
    ("huge_local", "count"), ("huge_remote", "count"), ("fallback", "count"), ("compact_stall", "count"),
    ("allocstall", "count"), ("pgsteal_direct", "count"), ("pswpout", "count"), ("latency_p99_us", "us"),
)
COLUMNS = {"policy_a": pl.String, "policy_b": pl.String, "figure": pl.String, "a": pl.Float64, "b": pl.Float64,
           "change": pl.Float64, "a_p5": pl.Float64, "a_p95": pl.Float64, "b_p5": pl.Float64, "b_p95": pl.Float64,
           "change_p5": pl.Float64, "change_p95": pl.Float64, "beyond_spread": pl.Boolean}


def _value(row: dict, figure: str) -> float | None:
    if figure == "fallback":
        parts = [row.get(k) for k in ("base_local", "base_remote", "failed")]
        return None if any(p is None for p in parts) else float(sum(parts))
    v = row.get(figure)
    return None if v is None else float(v)


def kernel_changes(summary: pl.DataFrame, sample_figures: dict | None, pairs: list[tuple[str, str]] | None = None
                   ) -> pl.DataFrame:
    """One row per (pair of policies, figure): both deterministic values, the change, each policy's p5..p95
    over the samples, the paired change's p5..p95 and whether the intervals are apart (null without two
    samples of each). pairs: (a, b) policies; default: each policy and the next in the summary's order."""
    rows = {r["policy"]: r for r in summary.iter_rows(named=True)}
    names = summary["policy"].to_list()
    if pairs is None:
        pairs = list(zip(names, names[1:]))
    per_sample = {p: {s["sample"]: s for s in (sample_figures or {}).get(p, [])} for p in names}
    out = []
    for a, b in pairs:
        if a not in rows or b not in rows:
            continue
        common = sorted(set(per_sample[a]) & set(per_sample[b]))
        for figure, _ in FIGURES:
            va, vb = _value(rows[a], figure), _value(rows[b], figure)
            sa = [_value(per_sample[a][i], figure) for i in common]
            sb = [_value(per_sample[b][i], figure) for i in common]
            qa, qb = quantiles(sa), quantiles(sb)
            qd = quantiles([y - x for x, y in zip(sa, sb) if x is not None and y is not None])
            apart = None
            if None not in (qa["p5"], qb["p5"]):
                apart = qa["p95"] < qb["p5"] or qb["p95"] < qa["p5"]
            out.append(dict(policy_a=a, policy_b=b, figure=figure, a=va, b=vb,
                            change=None if va is None or vb is None else vb - va,
                            a_p5=qa["p5"], a_p95=qa["p95"], b_p5=qb["p5"], b_p95=qb["p95"],
                            change_p5=qd["p5"], change_p95=qd["p95"], beyond_spread=apart))
    return pl.DataFrame(out, schema=COLUMNS)


def verdicts(changes: pl.DataFrame) -> list[str]:
    """One line per pair of policies: the figures whose change is beyond the spread, then how many are not."""
    from thpreplay.report_text import fmt_figure

    kinds = dict(FIGURES)

    def show(value, figure: str) -> str:
        kind = kinds[figure]
        return fmt_figure(int(value) if kind == "count" and value is not None else value, kind)

    lines = []
    for (a, b), group in changes.group_by("policy_a", "policy_b", maintain_order=True):
        if group["beyond_spread"].null_count() == group.height:
            continue
        moved = group.filter(pl.col("beyond_spread") & (pl.col("change") != 0))
        within = group.filter(~pl.col("beyond_spread") & (pl.col("change").abs() > 0)).height
        parts = [f"{r['figure']} {show(r['a'], r['figure'])} → {show(r['b'], r['figure'])}"
                 for r in moved.iter_rows(named=True)]
        head = f"{a} → {b}: "
        head += ("beyond the spread: " + "; ".join(parts)) if parts else "no change beyond the spread"
        if within:
            head += f" ({within} other change{'s' if within != 1 else ''} within it)"
        lines.append(head)
    return lines
