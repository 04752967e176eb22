"""`thpreplay report`: one self-contained HTML page comparing every simulated policy.

Charts are drawn by matplotlib (Agg) as inline SVG, so the page needs no network and no JavaScript:
it can be attached to a mailing-list thread or a ticket as is. Sections: the capture (kernel, THP
settings, topology), the summary table, fault outcomes per policy (stacked bars), estimated fault
latency per policy (box plots), free huge pages per node over time, and the validation table against
the captured kernel when the capture names its kernel.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
import polars as pl  # noqa: E402

from thpreplay.atomic import write_output  # noqa: E402
from thpreplay.dataset import check_simulation, reading  # noqa: E402
from thpreplay.errors import InputError, OutputError, ThpreplayError  # noqa: E402
from thpreplay.sim.state import read_table  # noqa: E402
from thpreplay.simulate import SIM_DIR, _metadata, check_dataset  # noqa: E402
from thpreplay.sweep import is_sweep  # noqa: E402

RESULT_COLORS = {"huge_local": "#1b7837", "huge_remote": "#7fbf7b", "base_local": "#af8dc3",
                 "base_remote": "#762a83", "failed": "#444444"}
plt.rcParams["svg.hashsalt"] = "thpreplay"  # stable ids: the same inputs give the same page


@dataclass
class Report:
    path: Path
    summary: pl.DataFrame
    validation: object | None


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _outcome_bars(outcomes: pl.DataFrame, policies: list[str]) -> str:
    counts = outcomes.group_by("policy", "result").len()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(policies) + 1.2))
    left = [0] * len(policies)
    for result, color in RESULT_COLORS.items():
        vals = [int(counts.filter((pl.col("policy") == p) & (pl.col("result") == result))["len"].sum()) for p in policies]
        ax.barh(policies, vals, left=left, color=color, label=result)
        left = [a + b for a, b in zip(left, vals)]
    ax.invert_yaxis()
    ax.set_xlabel("THP faults")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title("Fault outcomes per policy")
    return _svg(fig)


def _latency_boxes(outcomes: pl.DataFrame, policies: list[str]) -> str:
    # at least 1 µs each, for the log scale (a fault the model charges nothing is cheaper than that)
    data = [(outcomes.filter(pl.col("policy") == p)["latency_ns"].to_numpy() / 1000.0).clip(1.0) for p in policies]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(policies) + 1.2))
    if not any(len(d) for d in data):  # a capture without THP faults: nothing to put on a log scale
        ax.text(0.5, 0.5, "no THP faults in this capture", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title("Fault latency per policy")
        return _svg(fig)
    ax.boxplot(data, orientation="horizontal", tick_labels=policies, showfliers=True, flierprops={"markersize": 2})
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("estimated fault latency (µs, log scale)")
    ax.set_title("Fault latency per policy")
    return _svg(fig)


def _free_huge(series: pl.DataFrame, policies: list[str]) -> str:
    nodes = sorted(series["node"].unique().to_list())
    fig, axes = plt.subplots(len(nodes), 1, figsize=(9, 2.6 * len(nodes) + 0.6), squeeze=False, sharex=True)
    t0 = series["ts_ns"].min() or 0
    for ax, node in zip(axes[:, 0], nodes):
        for p in policies:
            s = series.filter((pl.col("policy") == p) & (pl.col("node") == node)).sort("ts_ns")
            style = ("-", "--", ":", "-.")[policies.index(p) % 4]  # equal curves stay visible
            ax.step((s["ts_ns"].to_numpy() - t0) / 1e9, s["free_huge_pages"].to_numpy(), where="post", label=p,
                    linewidth=1.2, linestyle=style)
        ax.set_ylabel(f"node {node}\nfree 2 MiB blocks")
    axes[-1, 0].set_xlabel("seconds since the start of the capture")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    axes[0, 0].set_title("Free huge pages per node over time")
    return _svg(fig)


def _table(frame: pl.DataFrame, floats: int = 3) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = []
        for v in row:
            if isinstance(v, float):
                v = f"{v:,.{floats}f}"
            elif isinstance(v, int) and not isinstance(v, bool):
                v = f"{v:,}"
            cells.append(f"<td>{html.escape('' if v is None else str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1240px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left;white-space:nowrap}figure{margin:1.5em 0}.note{color:#555;font-size:13px}
.off{color:#b00}"""


def _write_page(path: Path, parts: list[str], source: Path) -> None:
    """The page whole or not at all (a failed write keeps the old page), or a one-line error naming it.
    Inside the dataset or sweep it reports on, only an .html file: nothing of theirs is replaced."""
    root = source.resolve()
    if root in path.resolve().parents and path.suffix != ".html":
        raise OutputError(f"{path}: is inside {source}; a report written there must be an .html file")
    write_output(path, lambda tmp: Path(tmp).write_text("".join(parts), encoding="utf-8"))


def _spread(frame: pl.DataFrame, column: str, label: str, title: str) -> str:
    """One box per policy and setting: how a figure spreads over the sweep's captures."""
    groups = frame.select("policy", "settings").unique(maintain_order=True).rows()
    data = [frame.filter((pl.col("policy") == p) & (pl.col("settings") == s))[column].drop_nulls().to_numpy()
            for p, s in groups]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(groups) + 1.2))
    ax.boxplot(data, orientation="horizontal", tick_labels=[f"{p}  {s}" for p, s in groups], showfliers=True,
               flierprops={"markersize": 3})
    ax.invert_yaxis()
    ax.set_xlabel(label)
    ax.set_title(title)
    return _svg(fig)


FLEET_FIGURES = ("fleet-coverage", "fleet-local")


def build_fleet(sweep: str | Path, output: str | Path | None = None) -> Report:
    """The fleet page of a sweep: every policy and setting over the captures (pooled table, spreads)."""
    from thpreplay.query import run

    sweep = Path(sweep)
    fleet = run([sweep], "SELECT * FROM fleet_settings")
    per_capture = run([sweep], "SELECT capture, policy, settings, thp_coverage, local_share FROM outcome_summary "
                               "WHERE faults > 0 ORDER BY policy, settings, capture")
    if per_capture.is_empty():
        raise InputError(str(sweep), "no finished partition with THP faults in this sweep yet")
    asked = json.loads((sweep / "sweep.json").read_text())
    title = f"thpreplay fleet report: {sweep.resolve().name}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{per_capture['capture'].n_unique():,} captures with THP faults (of {len(asked['captures']):,} "
             f"in the sweep), {fleet.height:,} policy and setting pairs. Pooled figures sum every capture's faults; "
             "the _p50 and _min columns are over captures.</p>",
             _table(fleet),
             f"<figure id='fleet-coverage'>{_spread(per_capture, 'thp_coverage', 'THP coverage', 'THP coverage over captures')}</figure>",
             f"<figure id='fleet-local'>{_spread(per_capture, 'local_share', 'local share', 'Local share over captures')}</figure>",
             "<p class='note'>Made by thpreplay from the sweep's partitions (thpreplay query SWEEP "
             "\"select * from fleet_settings\" gives the table).</p></body></html>\n"]
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
    summary = read_table(sim, "outcome_summary")
    outcomes = read_table(sim, "outcomes")
    series = read_table(sim, "memory_series")
    meta = _metadata(dataset)
    policies = summary["policy"].to_list()
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
    parts.append(_table(topo, 0))
    for note in info.get("notes", []):
        parts.append(f"<p class='note'>note: {html.escape(note)}</p>")
    parts.append("<h2>Summary</h2>")
    parts.append(_table(summary.select(
        "policy", "huge_local", "huge_remote", "base_local", "base_remote", "failed", "thp_coverage", "local_share",
        "latency_mean_us", "latency_p99_us", "compact_stall", "pgsteal_direct", "pswpout", "access_cost_mean")))
    parts.append(f"<figure id='outcomes'>{_outcome_bars(outcomes, policies)}</figure>")
    parts.append(f"<figure id='latency'>{_latency_boxes(outcomes, policies)}</figure>")
    parts.append(f"<figure id='free-huge'>{_free_huge(series, policies)}</figure>")
    if validation is not None:
        parts.append(f"<h2>Validation against the captured kernel ({html.escape(validation.policy)})</h2>")
        parts.append(_table(validation.table(), 3))
        bad = len(validation.failures)
        parts.append(f"<p>{len(validation.rows) - bad} of {len(validation.rows)} figures within "
                     f"{100 * validation.tolerance:.0f} % or ±{validation.small}.</p>")
    parts.append("<p class='note'>Made by thpreplay from the dataset's simulation; the model, its sources and "
                 "simplifications: docs/model.md.</p></body></html>\n")
    path = Path(output) if output else dataset / "report.html"
    _write_page(path, parts, dataset)
    return Report(path, summary, validation)
