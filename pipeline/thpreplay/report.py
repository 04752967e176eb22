"""`thpreplay report`: one self-contained HTML page comparing every simulated policy with the capture.

Charts are drawn by matplotlib (Agg) as inline SVG, so the page needs no network and no JavaScript:
it can be attached to a mailing-list thread or a ticket as is; hovering a bar, point or line shows its
values (SVG <title> tooltips). Sections: the capture (kernel, THP settings, topology), the summary
table, fault outcomes per policy (stacked bars), fault latency percentiles per policy, free huge pages
per node over time (one small panel per policy), and the validation table against the captured kernel
when the capture names its kernel. The capture's own figures ("as captured", captured.py) come first in
the table and in every chart; policies follow in era order (the policy registry's order).
"""

from __future__ import annotations

import html
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
import polars as pl  # noqa: E402

from thpreplay.atomic import write_output  # noqa: E402
from thpreplay.captured import LABEL as CAPTURED, Captured, captured as capture_figures, free_huge_snapshots  # noqa: E402
from thpreplay.dataset import check_simulation, reading  # noqa: E402
from thpreplay.errors import InputError, OutputError, ThpreplayError  # noqa: E402
from thpreplay.report_text import (FIGURES, DELTA_LEGEND, era_order, figure_value, fmt_delta, fmt_figure,  # noqa: E402
                                   fmt_us, in_era_order, interval, row_label, sampled)
from thpreplay.sim.state import read_table  # noqa: E402
from thpreplay.simulate import SIM_DIR, _metadata, check_dataset  # noqa: E402
from thpreplay.sweep import is_sweep  # noqa: E402

RESULT_COLORS = {"huge_local": "#1b7837", "huge_remote": "#7fbf7b", "base_local": "#af8dc3",
                 "base_remote": "#762a83", "failed": "#444444", "fallback": "#9e9ac8"}
RESULT_LABELS = {"huge_local": "huge, local", "huge_remote": "huge, remote", "base_local": "4K fallback, local",
                 "base_remote": "4K fallback, remote", "failed": "no page",
                 "fallback": "4K fallback (node not traced)"}
CAPTURED_COLOR = "#222222"
# one colour per node in the time series (colour-blind safe, Okabe-Ito)
NODE_COLORS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442", "#000000")
NODE_DASHES = ("-", "--", "-.", ":")
plt.rcParams["svg.hashsalt"] = "thpreplay"  # stable ids: the same inputs give the same page
plt.rcParams["font.size"] = 9


@dataclass
class Report:
    path: Path
    summary: pl.DataFrame
    validation: object | None
    captured: Captured | None = None
    sample_figures: dict | None = None   # simulate --samples: each policy's figures per sample


class _Tips:
    """Hover text for SVG elements: an artist gets a gid, and its group a <title> after saving."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, artist, text: str) -> None:
        artist.set_gid(f"tip{len(self.texts)}")
        self.texts.append(text)

    def apply(self, svg: str) -> str:
        def sub(m: re.Match) -> str:
            return f'{m.group(0)}<title>{html.escape(self.texts[int(m.group(1))])}</title>'
        return re.sub(r'<g id="tip(\d+)">', sub, svg)


def _svg(fig, tips: _Tips | None = None) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    return tips.apply(text) if tips else text


def _captured_counts(cap: Captured) -> dict[str, int]:
    """The capture's faults by result: by node when the trace gives the fallbacks' node (one node), else
    its fallbacks as one "node not traced" segment."""
    out = {"huge_local": cap.get("huge_local"), "huge_remote": cap.get("huge_remote")}
    if cap.get("base_local") is None:
        return {**out, "fallback": cap.get("base")}
    return {**out, "base_local": cap.get("base_local"), "base_remote": cap.get("base_remote")}


def _outcome_bars(outcomes: pl.DataFrame, policies: list[str], cap: Captured | None,
                  names: dict[str, str] | None = None, summary: pl.DataFrame | None = None) -> str:
    counts = outcomes.group_by("policy", "result").len()
    rows = ([CAPTURED] if cap else []) + policies
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.3))
    tips = _Tips()
    left = [0] * len(rows)
    n_faults = max(1, int(cap.get("faults") or 0) if cap else 0, *(
        int(counts.filter(pl.col("policy") == p)["len"].sum()) for p in policies))
    for result, color in RESULT_COLORS.items():
        vals: list[int] = []
        for label in rows:
            if label == CAPTURED:
                v = _captured_counts(cap).get(result, 0)
            else:
                v = int(counts.filter((pl.col("policy") == label) & (pl.col("result") == result))["len"].sum())
            vals.append(int(v or 0))
        if not any(vals):
            continue
        bars = ax.barh([(names or {}).get(r, r) for r in rows], vals, left=left, color=color, label=RESULT_LABELS[result],
                       edgecolor="white", linewidth=0.5)
        for bar, label, v, x in zip(bars, rows, vals, left):
            if v:
                tips.add(bar, f"{(names or {}).get(label, label)}: {v:,} {RESULT_LABELS[result]} ({100 * v / n_faults:.1f}% of the faults)")
                if v >= 0.06 * n_faults:  # the count inside the segment when it fits
                    ax.text(x + v / 2, bar.get_y() + bar.get_height() / 2, f"{v:,}", ha="center", va="center",
                            fontsize=7, color="white" if result in ("huge_local", "base_remote", "failed") else "#222")
        left = [a + b for a, b in zip(left, vals)]
    if not tips.texts:  # a capture without THP faults: no bar to draw
        ax.text(0.5, 0.5, "no THP faults in this capture", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title("Fault outcomes: the capture, then each policy")
        return _svg(fig)
    _interval_bars(ax, rows, summary, names, tips)
    ax.invert_yaxis()
    if cap:
        ax.get_yticklabels()[0].set_fontweight("bold")
        ax.axhline(0.5, color="#888", linewidth=0.6)
    ax.set_xlabel("THP faults")
    ax.set_xlim(0, n_faults)
    # just under the axis label: about 0.45 in below the axes, whatever their height
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45 / max(0.32 * len(rows) + 0.5, 1.0)), ncols=3,
              frameon=False, fontsize=8)
    ax.set_title("Fault outcomes: the capture, then each policy")
    return _svg(fig, tips)


def _interval_bars(ax, rows: list[str], summary: pl.DataFrame | None, names: dict[str, str] | None,
                   tips: _Tips) -> None:
    """With simulate --samples: error bars at the two boundaries of each policy's bar that have exact
    percentiles, the end of huge_local (its count) and the end of huge_remote (the huge pages in all,
    thp_coverage x faults), each from p5 to p95 of the samples."""
    if summary is None or "samples" not in summary.columns:
        return
    by = {r["policy"]: r for r in summary.iter_rows(named=True)}
    for y, label in enumerate(rows):
        r = by.get(label)
        if not r or (r.get("samples") or 0) < 2 or r.get("huge_local_p5") is None:
            continue
        bounds = [("huge local", r["huge_local"], r["huge_local_p5"], r["huge_local_p95"])]
        if r.get("thp_coverage_p5") is not None and r.get("thp_coverage") is not None:
            f = r["faults"]
            bounds.append(("huge pages in all", r["thp_coverage"] * f, r["thp_coverage_p5"] * f, r["thp_coverage_p95"] * f))
        for what, x, lo, hi in bounds:
            line = ax.errorbar([x], [y], xerr=[[max(x - lo, 0)], [max(hi - x, 0)]], fmt="none", ecolor="#111",
                               elinewidth=1, capsize=3)
            tips.add(line.lines[2][0], f"{(names or {}).get(label, label)}: {what} {lo:,.0f}-{hi:,.0f} "
                                       f"(p5-p95 of {r['samples']} samples)")


PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
PCT_MARKERS = {"p50": "o", "p90": "s", "p99": "D", "max": "x"}


def latency_percentiles(outcomes: pl.DataFrame, policies: list[str], dataset: Path | None,
                        names: dict[str, str] | None = None) -> list[tuple[str, dict]]:
    """(label, {p50, p90, p99, max} in µs) for the capture (measured, when traced) and each policy."""
    out = []
    if dataset is not None:
        lat = read_table(dataset, "thp_faults", ["latency_ns"])["latency_ns"].drop_nulls()
        if lat.len():
            out.append((CAPTURED, {k: float(lat.quantile(q, "linear")) / 1000 for k, q in PERCENTILES}))
    for p in policies:
        lat = outcomes.filter(pl.col("policy") == p)["latency_ns"].drop_nulls()
        if lat.len():
            out.append(((names or {}).get(p, p), {k: float(lat.quantile(q, "linear")) / 1000 for k, q in PERCENTILES}))
    return out


def _latency_chart(rows: list[tuple[str, dict]]) -> str:
    """A strip of percentiles per row (log scale): p50 to p99 as a bar, p90 and max as marks."""
    fig, ax = plt.subplots(figsize=(9, 0.32 * max(len(rows), 1) + 1.3))
    if not rows:  # a capture without THP faults: nothing to put on a log scale
        ax.text(0.5, 0.5, "no THP faults in this capture", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title("Fault latency per policy")
        return _svg(fig)
    tips = _Tips()
    labels = [label for label, _ in rows]
    for i, (label, pct) in enumerate(rows):
        color = CAPTURED_COLOR if label == CAPTURED else "#4477aa"
        lo, hi = max(pct["p50"], 1.0), max(pct["p99"], 1.0)  # at least 1 µs, for the log scale
        line, = ax.plot([lo, hi], [i, i], color=color, linewidth=4, alpha=0.35, solid_capstyle="butt")
        tips.add(line, f"{label}: " + ", ".join(f"{k} {fmt_us(v)}" for k, v in pct.items()))
        for k, v in pct.items():
            ax.plot([max(v, 1.0)], [i], marker=PCT_MARKERS[k], color=color, markersize=5 if k != "max" else 6,
                    linestyle="none", label=k if i == 0 else None)
    ax.set_yticks(range(len(labels)), labels)
    if labels[0] == CAPTURED:
        ax.get_yticklabels()[0].set_fontweight("bold")
        ax.axhline(0.5, color="#888", linewidth=0.6)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: fmt_us(x)))
    ax.grid(axis="x", color="#ddd", linewidth=0.5)
    ax.set_xlabel("fault latency (log scale): the capture's measured, the policies' estimated by the model")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8, title="percentile")
    ax.set_title("Fault latency percentiles per policy")
    return _svg(fig, tips)


def _panels(series: pl.DataFrame, policies: list[str], snapshots: pl.DataFrame, names: dict[str, str] | None,
            value, snap_value, ylabel: str, title: str, line_tip, snap_tip, ylim=None) -> str:
    """Small multiples: one panel per policy, a line per node of `value(frame)` over time, the capture's
    before/after snapshots (`snap_value(frame)`) as reference marks in every panel (the trace has nothing in
    between). line_tip(policy, node, frame, y) and snap_tip(node, snapshot, v) give the hover texts."""
    nodes = sorted(series["node"].unique().to_list())
    cols = min(3, max(1, len(policies)))
    nrows = -(-len(policies) // cols) if policies else 1
    fig, axes = plt.subplots(nrows, cols, figsize=(9.5, 1.9 * nrows + 0.9), squeeze=False, sharex=True, sharey=True)
    tips = _Tips()
    t0 = series["ts_ns"].min() or 0
    t1 = ((series["ts_ns"].max() or 0) - t0) / 1e9
    for k, ax in enumerate(axes.flat):
        if k >= len(policies):
            ax.set_axis_off()
            continue
        p = policies[k]
        label = (names or {}).get(p, p)
        for j, node in enumerate(nodes):
            s = series.filter((pl.col("policy") == p) & (pl.col("node") == node)).sort("ts_ns")
            color = NODE_COLORS[j % len(NODE_COLORS)]
            x = (s["ts_ns"].to_numpy() - t0) / 1e9
            y = value(s)
            line, = ax.step(x, y, where="post", color=color, linewidth=1.3,
                            linestyle=NODE_DASHES[j % len(NODE_DASHES)])
            if len(y):
                tips.add(line, line_tip(label, node, s, y))
            snap = snapshots.filter(pl.col("node") == node)
            for snapshot, xpos, marker in (("before", 0.0, "o"), ("after", t1, "s")):
                v = snap.filter(pl.col("snapshot") == snapshot)
                if v.height:
                    v = snap_value(v)
                    m, = ax.plot([xpos], [v], marker=marker, color=color, markerfacecolor="white",
                                 markersize=5, linestyle="none", zorder=5, clip_on=False)
                    tips.add(m, snap_tip(node, snapshot, v))
        ax.set_title(label, fontsize=9)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(color="#eee", linewidth=0.5)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in axes[-1, :]:
        ax.set_xlabel("seconds since the start")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=NODE_COLORS[j % len(NODE_COLORS)], linestyle=NODE_DASHES[j % len(NODE_DASHES)],
                      label=f"node {node} (model)") for j, node in enumerate(nodes)]
    handles += [Line2D([], [], marker="o", color="#444", markerfacecolor="white", linestyle="none",
                       label="as captured: before snapshot"),
                Line2D([], [], marker="s", color="#444", markerfacecolor="white", linestyle="none",
                       label="as captured: after snapshot")]
    fig.suptitle(title)
    fig.tight_layout()
    # the legend under the panels: above them it met the title when there is one row of panels
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=min(4, len(handles)),
               frameon=False, fontsize=8)
    return _svg(fig, tips)


def _free_huge(series: pl.DataFrame, policies: list[str], snapshots: pl.DataFrame,
               names: dict[str, str] | None = None) -> str:
    """Free huge pages per node over time, one panel per policy (_panels)."""
    return _panels(
        series, policies, snapshots, names,
        value=lambda s: s["free_huge_pages"].to_numpy(), snap_value=lambda v: int(v["free_huge_pages"][0]),
        ylabel="free 2 MiB blocks", title="Free huge pages per node over time, one panel per policy",
        line_tip=lambda p, node, s, y: (f"{p}, node {node}: {int(y[0]):,} free huge pages at the start, "
                                        f"{int(y.min()):,} at the lowest, {int(y[-1]):,} at the end"),
        snap_tip=lambda node, snapshot, v: f"as captured, node {node}: {v:,} free huge pages in the {snapshot} snapshot")


def latency_by_placement(dataset: Path, outcomes: pl.DataFrame, policies: list[str],
                         names: dict[str, str] | None = None) -> pl.DataFrame:
    """Fault latency by placement, as mmtests' thpchallenge reports it per outcome: a row for the capture
    (measured) and one per policy (the model's), over the same faults (those whose page-fault event the
    trace has, validate's rule), each placement's cell `p50 / p99 (faults)`."""
    timed = read_table(dataset, "thp_faults", ["fault_id", "outcome", "latency_ns"]).filter(
        pl.col("latency_ns").is_not_null())
    placement = pl.when(pl.col("result").str.starts_with("huge")).then(pl.col("result")).otherwise(pl.lit("fallback"))
    sides = [(CAPTURED, timed.select(pl.col("outcome").alias("placement"), "latency_ns"))]
    for p in policies:
        o = outcomes.filter(pl.col("policy") == p).join(timed.select("fault_id"), on="fault_id", how="semi")
        sides.append(((names or {}).get(p, p), o.select(placement.alias("placement"), "latency_ns")))
    rows = []
    for label, frame in sides:
        row = {"policy": label}
        for where in ("huge_local", "huge_remote", "fallback"):
            lat = frame.filter(pl.col("placement") == where)["latency_ns"]
            row[where] = "—" if lat.len() == 0 else (
                f"{fmt_us(float(lat.quantile(0.5, 'linear')) / 1000)} / "
                f"{fmt_us(float(lat.quantile(0.99, 'linear')) / 1000)} ({lat.len():,})")
        rows.append(row)
    return pl.DataFrame(rows, schema={"policy": pl.String, "huge_local": pl.String, "huge_remote": pl.String,
                                      "fallback": pl.String})


def _counted(values: list[str], top: int = 4) -> str:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = "; ".join(f"{k} ({n:,})" for k, n in ranked[:top])
    return text + (f"; {len(ranked) - top} more" if len(ranked) > top else "") if ranked else "—"


def paths_by_policy(dataset: Path, outcomes: pl.DataFrame, policies: list[str],
                    names: dict[str, str] | None = None) -> pl.DataFrame:
    """Why, at a glance: per row (the capture, then each policy) its faults' paths through the allocator
    (stage → placement, validate's words), commonest first, and the slowpath rule that most often ended
    a policy's failed attempt (outcomes.why; the trace does not name its rule: thpreplay explain shows a
    fault's events)."""
    from thpreplay.validate import model_paths, trace_paths

    try:
        captured_paths = trace_paths(dataset)["path"].to_list()
    except (InputError, pl.exceptions.PolarsError):
        captured_paths = []
    rows = [{"policy": CAPTURED, "paths": _counted(captured_paths), "gave up most often": "—"}]
    for p in policies:
        o = outcomes.filter(pl.col("policy") == p)
        reasons = [r.strip() for why in o["why"].to_list() for r in re.findall(r"gives up: ([^|]+)", why)]
        rows.append({"policy": (names or {}).get(p, p), "paths": _counted(model_paths(o)["path"].to_list()),
                     "gave up most often": _counted(reasons, top=1)})
    return pl.DataFrame(rows, schema={"policy": pl.String, "paths": pl.String, "gave up most often": pl.String})

def fragmentation_snapshots(dataset: Path) -> pl.DataFrame:
    """The capture's unusable free space index for order 9 per node, before and after (free_lists; an
    order-10 block counts as two order-9 ones, as the model's series and the fragmentation view count)."""
    try:
        fl = read_table(dataset, "free_lists", ["snapshot", "node", "order", "free_blocks"])
    except InputError:
        return pl.DataFrame(schema={"snapshot": pl.String, "node": pl.Int16, "unusable_index": pl.Float64})
    fl = fl.filter(pl.col("order") <= 10).with_columns(
        pages=pl.col("free_blocks") * pl.lit(2, pl.Int64).pow(pl.col("order").cast(pl.Int64)))
    return fl.group_by("snapshot", "node").agg(
        total=pl.col("pages").sum(), usable=pl.col("pages").filter(pl.col("order") >= 9).sum(),
    ).with_columns(
        unusable_index=pl.when(pl.col("total") > 0).then((pl.col("total") - pl.col("usable")) / pl.col("total"))
        .otherwise(0.0)
    ).select("snapshot", "node", "unusable_index").sort("snapshot", "node")


def _fragmentation(series: pl.DataFrame, policies: list[str], snapshots: pl.DataFrame,
                   names: dict[str, str] | None = None) -> str:
    """The unusable free space index for order 9 (how much of the free memory is in pieces too small for a
    THP) per node over time, one panel per policy (_panels); the hover text adds the pageblocks turned
    unmovable."""
    return _panels(
        series, policies, snapshots, names,
        value=lambda s: 100.0 * s["unusable_index"].to_numpy(),
        snap_value=lambda v: 100.0 * float(v["unusable_index"][0]),
        ylabel="unusable for 2 MiB (%)", ylim=(0, 100),
        title="Fragmentation per node over time: the share of free memory unusable for a huge page",
        line_tip=lambda p, node, s, y: (f"{p}, node {node}: unusable index {y[0]:.1f} % at the start, {y[-1]:.1f} % "
                                        f"at the end; unmovable pageblocks {int(s['unmovable_blocks'][0]):,} → "
                                        f"{int(s['unmovable_blocks'][-1]):,}"),
        snap_tip=lambda node, snapshot, v: f"as captured, node {node}: unusable index {v:.1f} % in the {snapshot} "
                                           "snapshot")


def _cell(text: str, delta: str = "", cls: str = "") -> str:
    d = f"<br><span class='d'>{html.escape(delta)}</span>" if delta else ""
    c = f" class='{cls}'" if cls else ""
    return f"<td{c}>{html.escape(text)}{d}</td>"


def _summary_html(summary: pl.DataFrame, cap: Captured | None) -> str:
    """The summary table: the captured row first, then each policy with its difference from it."""
    head = "<th>policy</th>" + "".join(f"<th>{html.escape(f[1])}</th>" for f in FIGURES)
    rows = []
    ref = cap.row if cap else None
    if ref is not None:
        rows.append("<tr class='cap'><th>" + CAPTURED + "</th>" + "".join(
            _cell(fmt_figure(figure_value(ref, c), kind)) for c, _, _, kind in FIGURES) + "</tr>")
    for r in summary.iter_rows(named=True):
        cells = []
        for c, _, _, kind in FIGURES:
            v = figure_value(r, c)
            iv = interval(r, c, kind)   # p5-p95 over the samples (simulate --samples), under the figure
            cells.append(_cell(fmt_figure(v, kind) + (f" {iv}" if iv else ""),
                               fmt_delta(v, figure_value(ref, c), kind) if ref else ""))
        rows.append(f"<tr><th>{html.escape(row_label(r))}</th>{''.join(cells)}</tr>")
    return (f"<div class='scroll'><table class='summary'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _fmt_cell(column: str, v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "ok" if v else "off"
    if isinstance(v, float):
        if column in ("rel_error",) or column.endswith(("coverage", "share")) or column.startswith(("thp_coverage", "local_share")):
            return f"{100 * v:.1f}%"
        if column.endswith("_us") or "_us_" in column:
            return fmt_us(v)
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(frame: pl.DataFrame, headers: dict[str, str] | None = None, cls: str = "", first_row_class: str = "") -> str:
    headers = headers or {}
    head = "".join(f"<th>{html.escape(headers.get(c, c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows(named=True):
        cells = []
        for c, v in row.items():
            text = _fmt_cell(c, v)
            klass = " class='off'" if c == "ok" and v is False else ""
            cells.append(f"<td{klass}>{html.escape(text)}</td>")
        tr = f"<tr class='{first_row_class}'>" if first_row_class and not rows else "<tr>"
        rows.append(tr + "".join(cells) + "</tr>")
    c = f" class='{cls}'" if cls else ""
    return f"<div class='scroll'><table{c}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1280px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
.scroll{max-width:100%;overflow-x:auto;margin:1em 0}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}
thead th{background:#f2f2f2;text-align:center;white-space:normal;vertical-align:bottom}td,tbody th{vertical-align:top}
summary.note{cursor:pointer;margin:.5em 0}tbody th{text-align:left;background:#fafafa;font-weight:normal}
td:first-child{text-align:left}
table.summary tbody th,table.summary thead th:first-child{position:sticky;left:0;z-index:1}
table.summary thead th:first-child{background:#f2f2f2}
tr.cap th,tr.cap td{font-weight:bold;background:#eef3fa;border-bottom:2px solid #888}
table.prose td{white-space:normal;text-align:left;max-width:44em}
.d{color:#666;font-size:11px}
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}.note{color:#555;font-size:13px}
.off{color:#b00}"""


def _write_page(path: Path, parts: list[str], source: Path) -> None:
    """The page whole or not at all (a failed write keeps the old page), or a one-line error naming it.
    Inside the dataset or sweep it reports on, only an .html file: nothing of theirs is replaced."""
    root = source.resolve()
    if root in path.resolve().parents and path.suffix != ".html":
        raise OutputError(f"{path}: is inside {source}; a report written there must be an .html file")
    write_output(path, lambda tmp: Path(tmp).write_text("".join(parts), encoding="utf-8"))


def _spread(frame: pl.DataFrame, column: str, label: str, title: str, captured_rows: dict[str, dict]) -> str:
    """One dot per capture for every policy and setting (a few captures: no box to draw), each capture in
    its colour; the capture's own figure as a hollow mark on a row of its own at the top."""
    groups = frame.select("policy", "settings").unique(maintain_order=True).rows()
    captures = sorted(frame["capture"].unique().to_list())
    rows = [CAPTURED] + [f"{p}  {s}" for p, s in groups]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(rows) + 1.4))
    tips = _Tips()
    for j, cap in enumerate(captures):
        color = NODE_COLORS[j % len(NODE_COLORS)]
        offset = (j - (len(captures) - 1) / 2) * 0.12  # captures side by side within a row: equal values stay visible
        ref = (captured_rows.get(cap) or {}).get(column)
        if ref is not None:
            m, = ax.plot([100 * ref], [offset], marker="o", markerfacecolor="white", color=color, linestyle="none",
                         markersize=6, label=cap)
            tips.add(m, f"{cap}, as captured: {100 * ref:.1f}%")
        for i, (p, s) in enumerate(groups, start=1):
            v = frame.filter((pl.col("policy") == p) & (pl.col("settings") == s) & (pl.col("capture") == cap))[column]
            v = v.drop_nulls()
            if v.len():
                m, = ax.plot([100 * float(v[0])], [i + offset], marker="o", color=color, linestyle="none", markersize=5,
                             label=None if ref is not None or i > 1 else cap)
                tips.add(m, f"{cap}, {p} {s}: {100 * float(v[0]):.1f}%")
    ax.set_yticks(range(len(rows)), rows)
    ax.get_yticklabels()[0].set_fontweight("bold")
    ax.axhline(0.5, color="#888", linewidth=0.6)
    ax.invert_yaxis()
    ax.set_xlim(-2, 102)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:.0f}%"))
    ax.grid(axis="x", color="#ddd", linewidth=0.5)
    ax.set_xlabel(label)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8, title="capture")
    ax.set_title(title)
    return _svg(fig, tips)


FLEET_FIGURES = ("fleet-coverage", "fleet-local")
FLEET_HEADERS = {"thp_coverage": "THP", "thp_coverage_p50": "THP p50", "thp_coverage_min": "THP worst",
                 "local_share": "local", "local_share_p50": "local p50", "compact_stall": "stalls",
                 "pgsteal_direct": "reclaimed", "pswpout": "swap-outs", "latency_p99_us_p50": "p99 latency p50"}
CAPTURE_COLUMNS = ("huge_local", "huge_remote", "fallback", "thp_coverage", "local_share", "compact_stall",
                   "pgsteal_direct", "pswpout")


def _sort_era(frame: pl.DataFrame) -> pl.DataFrame:
    order = era_order(frame["policy"].unique().to_list())
    rank = {p: i for i, p in enumerate(order)}
    keys = (["capture"] if "capture" in frame.columns else []) + ["_era", "settings"]
    return frame.with_columns(pl.col("policy").replace_strict(rank, return_dtype=pl.Int64).alias("_era")).sort(
        keys, maintain_order=True).drop("_era")


def _capture_table(name: str, rows: pl.DataFrame, cap: Captured | None) -> str:
    """One capture of a sweep: its captured row, then each policy and setting with the difference."""
    spec = {f[0]: f for f in FIGURES}
    head = "<th>policy</th><th>settings</th>" + "".join(f"<th>{html.escape(spec[c][1])}</th>" for c in CAPTURE_COLUMNS)
    out = []
    ref = cap.row if cap else None
    if ref is not None:
        out.append(f"<tr class='cap'><th>{CAPTURED}</th><td></td>" + "".join(
            _cell(fmt_figure(figure_value(ref, c), spec[c][3])) for c in CAPTURE_COLUMNS) + "</tr>")
    for r in rows.iter_rows(named=True):
        cells = [_cell(fmt_figure(figure_value(r, c), spec[c][3]),
                       fmt_delta(figure_value(r, c), figure_value(ref, c), spec[c][3]) if ref else "")
                 for c in CAPTURE_COLUMNS]
        out.append(f"<tr><th>{html.escape(row_label(r))}</th><td>{html.escape(r['settings'])}</td>{''.join(cells)}</tr>")
    return (f"<h3>{html.escape(name)}</h3><div class='scroll'><table class='summary'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(out)}</tbody></table></div>")


def _with_captured(fleet: pl.DataFrame, caps: dict[str, Captured | None]) -> pl.DataFrame:
    """The pooled table with the captures' own figures first (pooled the same way: sums over the captures,
    medians and minimum over them); a figure some capture cannot give is null for the pool."""
    rows = [c.row for c in caps.values() if c is not None and c.row.get("faults")]
    if not rows:
        return fleet

    def total(column):
        vals = [r.get(column) for r in rows]
        return None if any(v is None for v in vals) else sum(vals)

    def quantile(column, q):
        vals = [r.get(column) for r in rows]
        return None if any(v is None for v in vals) else float(pl.Series(vals, dtype=pl.Float64).quantile(q, "linear"))

    faults = total("faults")
    huge = total("huge_local") + total("huge_remote")
    local = total("huge_local") + total("base_local") if total("base_local") is not None else None
    row = {"policy": CAPTURED, "settings": "", "captures": len(rows), "faults": faults, "thp_coverage": huge / faults,
           "local_share": None if local is None else local / faults,
           "thp_coverage_p50": quantile("thp_coverage", 0.5), "thp_coverage_min": quantile("thp_coverage", 0.0),
           "local_share_p50": quantile("local_share", 0.5), "compact_stall": total("compact_stall"),
           "pgsteal_direct": total("pgsteal_direct"), "pswpout": total("pswpout"),
           "latency_p99_us_p50": quantile("latency_p99_us", 0.5)}
    first = pl.DataFrame([{c: row.get(c) for c in fleet.columns}], schema=fleet.schema)
    return pl.concat([first, fleet])


def build_fleet(sweep: str | Path, output: str | Path | None = None) -> Report:
    """The fleet page of a sweep: every policy and setting over the captures (pooled table, one dot per
    capture), then each capture on its own with its captured row."""
    from thpreplay.query import run

    sweep = Path(sweep)
    fleet = _sort_era(run([sweep], "SELECT * FROM fleet_settings"))
    per_capture = run([sweep], "SELECT * FROM outcome_summary WHERE faults > 0")
    if per_capture.is_empty():
        raise InputError(str(sweep), "no finished partition with THP faults in this sweep yet")
    per_capture = _sort_era(per_capture)
    asked = json.loads((sweep / "sweep.json").read_text())
    caps: dict[str, Captured | None] = {}
    for name in sorted(per_capture["capture"].unique().to_list()):
        entry = asked.get("captures", {}).get(name) or {}
        ds = Path(entry["dataset"]) if entry.get("dataset") else None
        if ds is not None and not ds.is_absolute():
            ds = sweep / ds
        try:
            caps[name] = capture_figures(ds) if ds is not None and ds.is_dir() else None
        except ThpreplayError:
            caps[name] = None  # the capture's dataset is gone or damaged: its table has no captured row
    captured_rows = {k: (v.row if v else None) for k, v in caps.items()}
    spread_rows = per_capture.select("capture", "policy", "settings", "thp_coverage", "local_share")
    title = f"thpreplay fleet report: {sweep.resolve().name}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{per_capture['capture'].n_unique():,} captures with THP faults (of {len(asked['captures']):,} "
             f"in the sweep), {fleet.height:,} policy and setting pairs. Pooled figures sum every capture's faults; "
             "the p50 and worst columns are over captures; the first row is the captures' own figures, pooled the same way. "
             "Policies in era order.</p>",
             _table(_with_captured(fleet, caps), FLEET_HEADERS, first_row_class='cap'),
             f"<figure id='fleet-coverage'>{_spread(spread_rows, 'thp_coverage', 'THP coverage (share of the faults)', 'THP coverage per capture', captured_rows)}</figure>",
             f"<figure id='fleet-local'>{_spread(spread_rows, 'local_share', 'local share (share of the faults)', 'Local share per capture', captured_rows)}</figure>",
             "<h2>Per capture</h2>"]
    for name, cap in caps.items():
        parts.append(_capture_table(name, per_capture.filter(pl.col("capture") == name), cap))
    parts.append(f"<p class='note'>{html.escape(DELTA_LEGEND)}</p>")
    parts.append("<p class='note'>Made by thpreplay from the sweep's partitions (thpreplay query SWEEP "
                 "\"select * from fleet_settings\" gives the pooled table).</p></body></html>\n")
    path = Path(output) if output else sweep / "report.html"
    _write_page(path, parts, sweep)
    return Report(path, fleet, None)


def build(dataset: str | Path, output: str | Path | None = None, validate_capture: bool = True) -> Report:
    dataset = Path(dataset)
    if is_sweep(dataset):
        return build_fleet(dataset, output)
    with reading(dataset):  # not replaced while it is read (dataset.py)
        return _build(dataset, output, validate_capture)


def _build(dataset: Path, output: str | Path | None, validate_capture: bool) -> Report:
    check_dataset(dataset)
    sim = dataset / SIM_DIR
    info = check_simulation(dataset)
    if info is None:
        raise InputError(str(dataset), "no simulation in this dataset; run thpreplay simulate first")
    summary = in_era_order(read_table(sim, "outcome_summary"))
    outcomes = read_table(sim, "outcomes")
    series = read_table(sim, "memory_series")
    meta = _metadata(dataset)
    policies = summary["policy"].to_list()
    names = {r["policy"]: row_label(r) for r in summary.iter_rows(named=True)}  # by kernel version where asked so
    cap = capture_figures(dataset)
    validation = None
    if validate_capture:
        from thpreplay.validate import validate

        try:
            validation = validate(dataset)
        except ThpreplayError:
            validation = None  # the capture does not name its kernel: no validation section
    topo = read_table(dataset, "topology").filter(pl.col("spanned") > 0).select(
        "node", "zone", "start_pfn", "end_pfn", "present", "wmark_min", "wmark_low", "wmark_high", "cpus")
    title = f"thpreplay report: {dataset.name}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    kernel, version = meta.get("kernel_release"), meta.get("kernel_version")
    parts.append("<h2>Capture</h2><p>")
    parts.append(f"kernel {html.escape(str(kernel))}" + (f" (upstream {html.escape(version)})" if version else ""))
    parts.append(f"; THP enabled={html.escape(info['settings']['enabled'])} defrag={html.escape(info['settings']['defrag'])}")
    parts.append(f"; {info['demand'].get('thp_faults', 0):,} THP faults, {info['demand'].get('ops', 0):,} demand ops;"
                 f" initial state from {html.escape(str(info['initial_state'].get('source', 'snapshots')))}</p>")
    parts.append(_table(topo))
    notes = info.get("notes", [])
    if notes:  # folded: the summary stays on a laptop's first screen
        parts.append(f"<details><summary class='note'>the model's {len(notes)} notes on this capture (measured "
                     "costs, assumptions)</summary>")
        parts += [f"<p class='note'>note: {html.escape(note)}</p>" for note in notes]
        parts.append("</details>")
    parts.append("<h2>Summary</h2>")
    parts.append(f"<p class='note'>The first row is what the capturing kernel did (from the trace and its vmstat "
                 f"snapshots); under each policy's figure, its difference from it (pp: percentage points; ×: ratio). "
                 f"Policies in era order.</p>")
    parts.append(_summary_html(summary, cap))
    for note in _footnotes(cap):
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append(_changes_html(summary, info.get("sample_figures"), names))
    parts.append(f"<figure id='outcomes'>{_outcome_bars(outcomes, policies, cap, names, summary)}</figure>")
    parts.append(f"<figure id='latency'>{_latency_chart(latency_percentiles(outcomes, policies, dataset, names))}</figure>")
    parts.append(f"<figure id='free-huge'>{_free_huge(series, policies, free_huge_snapshots(dataset), names)}</figure>")
    parts.append(f"<figure id='fragmentation'>{_fragmentation(series, policies, fragmentation_snapshots(dataset), names)}"
                 "</figure>")
    parts.append("<h2>Fault latency by placement</h2><p class='note'>p50 / p99 (faults), from the page-fault event to "
                 "the allocation's return, over the faults whose page-fault event the trace has: the capture measured, "
                 "each policy as the model prices its path (thpreplay explain DATASET FAULT shows one fault's).</p>")
    parts.append(_table(latency_by_placement(dataset, outcomes, policies, names), first_row_class="cap"))
    parts.append("<h2>Why: the faults' paths</h2><p class='note'>Each fault's path through the allocator, stage → "
                 "placement (fast: neither compaction nor reclaim; compacted: the page came from direct compaction; "
                 "compact_failed: compaction was called but gave no page; reclaimed: direct reclaim ran), commonest "
                 "first, and the slowpath rule that most often ended a policy's failed attempt. One fault's full "
                 "story, the kernel's events beside each policy's steps: thpreplay explain DATASET FAULT.</p>")
    parts.append(_table(paths_by_policy(dataset, outcomes, policies, names), cls="prose", first_row_class="cap"))
    if validation is not None:
        parts.append(f"<h2>Validation against the captured kernel ({html.escape(validation.policy)})</h2>")
        parts.append(_table(validation.table(), {"rel_error": "rel. error"}))
        from thpreplay.thp_faults import validation_tally

        within = f"within {100 * validation.tolerance:.0f} % or ±{validation.small}"
        parts.append(f"<p>{html.escape(validation_tally(validation, within))}.</p>")
    parts.append("<p class='note'>Made by thpreplay from the dataset's simulation; the model, its sources and "
                 "simplifications: docs/model.md.</p></body></html>\n")
    path = Path(output) if output else dataset / "report.html"
    _write_page(path, parts, dataset)
    return Report(path, summary, validation, cap, info.get("sample_figures"))


def _changes_html(summary: pl.DataFrame, sample_figures: dict | None, names: dict[str, str]) -> str:
    """With samples: from each era to the next, the changes larger than the spread (changes.py), then the
    whole comparison folded."""
    from thpreplay.changes import kernel_changes, verdicts

    n = sampled(summary)
    if n < 2 or not sample_figures:
        return ""
    changes = kernel_changes(summary, sample_figures)
    lines = verdicts(changes.with_columns(pl.col("policy_a").replace(names), pl.col("policy_b").replace(names)))
    out = [f"<h2>What changed from kernel to kernel</h2><p class='note'>A change is beyond the spread when the two "
           f"policies' 90 % intervals ({n} samples, p5..p95) do not overlap: no draw of what this capture cannot pin "
           f"down brings them together. change_p5..change_p95: the same samples' paired difference.</p><ul>"]
    out += [f"<li>{html.escape(line)}</li>" for line in lines]
    out.append("</ul><details><summary class='note'>every figure of every step</summary>")
    out.append(_table(changes))
    out.append("</details>")
    return "".join(out)


def _footnotes(cap: Captured | None) -> list[str]:
    from thpreplay.report_text import footnotes

    return footnotes(cap)
