"""Terminal output: the ingest summary table and the progress bar for large inputs."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table

from thpreplay.errors import ThpreplayError

if TYPE_CHECKING:  # an annotation only: simulate, validate, report... need none of ingest's modules
    from thpreplay.ingest import IngestSummary


def _size(paths: list[str]) -> int:
    total = 0
    for p in paths:
        try:
            if os.path.isdir(p):
                total += sum(os.path.getsize(os.path.join(p, f)) for f in os.listdir(p))
            elif p != "-":
                total += os.path.getsize(p)
        except OSError:
            pass
    return total


@contextlib.contextmanager
def progress_for(paths: list[str], threshold: int, enabled: bool = True) -> Iterator:
    """A rich progress bar on stderr (counting decompressed bytes read) for inputs above threshold."""
    size = _size(paths)
    if not enabled or size < threshold or not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    with Progress(
        TextColumn("ingest"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task("ingest", total=None)
        yield lambda n: bar.advance(task, n)


def _fmt_ts(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e9:.6f}s"


def print_ingest_summary(s: IngestSummary) -> None:
    console = Console(soft_wrap=True)  # long lines stay whole when piped into files and scripts
    console.print(f"dataset {s.output}", highlight=False)
    table = Table(show_header=True, header_style="bold")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in s.events.items():
        table.add_row(name, f"{n:,}")
    table.add_row("rejects", f"{s.rejects:,}")
    for name, n in s.beside.items():
        table.add_row(name, f"{n:,}")
    table.add_row("thp_faults", f"{s.thp_faults.get('faults', 0):,}")
    console.print(table)
    fmts = ", ".join(sorted(set(s.formats.values())))
    basis = f" ({s.gfp_table_basis})" if s.gfp_table_basis else ""
    console.print(f"lines {s.lines:,}  format {fmts}  gfp table {s.gfp_table}{basis}", highlight=False)
    console.print(f"time {_fmt_ts(s.ts_min_ns)} .. {_fmt_ts(s.ts_max_ns)}", highlight=False)
    console.print(f"nodes {s.nodes} ({s.topology_source})", highlight=False)
    f = s.thp_faults
    line = (
        f"THP faults: {f.get('huge_local', 0)} huge local, {f.get('huge_remote', 0)} huge remote, "
        f"{f.get('fallback', 0)} fallback; PMD thp_fault_alloc {f['thp_fault_alloc']}, "
        f"thp_fault_fallback {f['thp_fault_fallback']}, compact_stall {f['compact_stall']} "
        f"(all tasks {f['compact_stall_all_tasks']})"
    )
    console.print(line, highlight=False)
    if s.vmstat_deltas:
        console.print(
            "vmstat deltas: " + ", ".join(f"{k} {v}" for k, v in s.vmstat_deltas.items()), highlight=False
        )
    for w in s.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)


@contextlib.contextmanager
def progress_counter(label: str, enabled: bool = True) -> Iterator:
    """A rich progress bar on stderr over a known number of items: yields (start(total), advance(n))."""
    if not enabled or not sys.stderr.isatty():
        yield (lambda total: None, None)
        return
    console = Console(stderr=True)
    with Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed:,.0f} events"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)  # the total is known once the demand is built
        yield (lambda total: bar.update(task, total=total), lambda n: bar.advance(task, n))


@contextlib.contextmanager
def sweep_progress(enabled: bool = True) -> Iterator:
    """Yields the sweep's on_event: a bar on stderr (tasks done, failed, remaining) when enabled and
    stderr is a terminal; failed tasks are printed as one line each in any case."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    counts = {"total": 0, "done": 0, "failed": 0}
    bar = None
    if enabled and console.is_terminal:
        bar = Progress(TextColumn("sweep"), BarColumn(),
                       TextColumn("{task.fields[done]:,} done, {task.fields[failed]:,} failed, "
                                  "{task.fields[remaining]:,} remaining"),
                       TimeElapsedColumn(), console=console, transient=True)
        task = bar.add_task("sweep", total=None, done=0, failed=0, remaining=0)

    def on_event(kind: str, value) -> None:
        if kind == "add":
            counts["total"] += value
        elif kind == "done":
            counts["done"] += 1
        elif kind == "failed":
            counts["failed"] += 1
            console.print(f"thpreplay: sweep: {value}", markup=False)
        if bar is not None:
            bar.start()  # at the first task, not before: an error in the arguments shows no bar
            finished = counts["done"] + counts["failed"]
            bar.update(task, total=counts["total"], completed=finished, done=counts["done"], failed=counts["failed"],
                       remaining=counts["total"] - finished)

    try:
        yield on_event
    finally:
        if bar is not None:
            bar.stop()


def print_sweep(summary) -> None:
    console = Console(soft_wrap=True, highlight=False)
    console.print(f"sweep {summary.output}: {summary.written:,} partitions written, {summary.skipped:,} skipped "
                  f"(finished before), {len(summary.failures):,} failed", markup=False)
    for reason, n in sorted(summary.refused.items()):
        console.print(f"note: {reason} ({n:,} partition{'' if n == 1 else 's'} left empty)", markup=False)
    console.print(f"tables: {summary.output}/capture=*/policy=*/settings=*/{{outcomes,outcome_summary,memory_series}}"
                  ".parquet", markup=False)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ",.0f") -> str:
    return "—" if x is None else format(x, fmt)


def fmt_us(x: float | None) -> str:
    """A latency in microseconds at a precision that fits its size: 4.9 µs, 390 µs, 7.40 ms, 81.9 ms, 1.31 s."""
    if x is None:
        return "—"
    if x < 10:
        return f"{x:.1f} µs"
    if x < 1000:
        return f"{x:.0f} µs"
    if x < 10_000:
        return f"{x / 1000:.2f} ms"
    if x < 1_000_000:
        return f"{x / 1000:.1f} ms" if x < 100_000 else f"{x / 1000:.0f} ms"
    return f"{x / 1e6:,.2f} s"


# The summary's figures: outcome_summary column (fallback = base_local + base_remote + failed, as validate
# counts it), wide header, narrow header, kind (count, pct, us, cost). One list for the terminal and HTML.
FIGURES = (
    ("huge_local", "huge local", "huge L", "count"),
    ("huge_remote", "huge remote", "huge R", "count"),
    ("fallback", "4K fallback", "4K", "count"),
    ("thp_coverage", "THP", "THP", "pct"),
    ("local_share", "local", "local", "pct"),
    ("latency_mean_us", "mean latency", "mean", "us"),
    ("latency_p99_us", "p99 latency", "p99", "us"),
    ("compact_stall", "compact stalls", "stalls", "count"),
    ("pgsteal_direct", "reclaimed", "recl.", "count"),
    ("pswpout", "swap-outs", "swap", "count"),
    ("access_cost_mean", "access cost", "cost", "cost"),
)
# narrow layout (under the wide table's width): placement figures, then cost figures, one table each
NARROW_GROUPS = (("huge_local", "huge_remote", "fallback", "thp_coverage", "local_share"),
                 ("latency_mean_us", "latency_p99_us", "compact_stall", "pgsteal_direct", "pswpout", "access_cost_mean"))
DELTA_LEGEND = "under each figure: the difference from as captured (pp: % points; ×: ratio)"
INTERVAL_LEGEND = "[p5-p95]: the model's 90 % interval over {n} samples (simulate --samples)"
NARROW_LEGEND = ("huge L/R: a huge page on the local/a remote node; 4K: fell back to 4 KiB pages\n"
                 "THP, local: % of faults; recl.: pages reclaimed directly; cost: access cost")


def figure_value(row: dict, column: str):
    if column == "fallback":
        if "base" in row:
            return row["base"]  # the captured row: the trace counts fallbacks, whatever their node
        parts = [row.get("base_local"), row.get("base_remote"), row.get("failed") or 0]
        return None if parts[0] is None or parts[1] is None else sum(parts)
    return row.get(column)


def fmt_figure(value, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return _pct(value)
    if kind == "us":
        return fmt_us(value)
    if kind == "cost":
        return f"{value:.2f}"
    return f"{value:,}"


def fmt_delta(value, ref, kind: str) -> str:
    """A policy's figure against the captured one: +12, -3.1 pp, ×2.4 (latency); empty when either is unknown."""
    if value is None or ref is None or kind == "cost":
        return ""
    if kind == "pct":
        d = round(100 * (value - ref), 1)
        return "±0 pp" if d == 0 else f"{d:+.1f} pp"
    if kind == "us":  # latencies span orders of magnitude: a ratio
        if ref <= 0:
            return ""
        r = value / ref
        return f"×{r:.2f}" if r < 10 else f"×{r:,.0f}" if r >= 100 else f"×{r:.1f}"
    d = value - ref
    return "±0" if d == 0 else f"{d:+,}"


def era_order(names: list[str]) -> list[str]:
    """Policies in the registry's order (built-ins by era, then plugins by name); unknown names last."""
    from thpreplay.policy.registry import all_policies

    try:
        rank = {p.name: i for i, p in enumerate(all_policies())}
    except ThpreplayError:
        rank = {}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def in_era_order(summary):
    """The summary's rows in era order (a stable sort: a policy's several rows keep their order)."""
    import polars as pl

    rank = {p: i for i, p in enumerate(era_order(summary["policy"].unique().to_list()))}
    return summary.with_columns(pl.col("policy").replace_strict(rank, return_dtype=pl.Int64).alias("_era")).sort(
        "_era", maintain_order=True).drop("_era")


def row_label(row: dict) -> str:
    """The policy, or the kernel version(s) the user asked for and their policy."""
    kernel = row.get("kernel")
    return f"{kernel} ({row['policy']})" if kernel else row["policy"]


def _short_us(x: float) -> tuple[str, str]:
    """A latency in two or three digits and its unit: an interval's ends (7.6 ms, 390 µs, 1.3 s)."""
    scale, unit = (1e6, "s") if x >= 1e6 else (1e3, "ms") if x >= 1e3 else (1.0, "µs")
    v = x / scale
    return (f"{v:.1f}" if v < 10 else f"{v:,.0f}"), unit


def interval(row: dict, column: str, kind: str) -> str | None:
    """The figure's 90 % interval over the samples, `[p5-p95]` (simulate --samples), or None: no samples,
    or a fallback count whose parts (base_local, base_remote, failed) vary together (a sum's percentiles
    are not the sum of its parts')."""
    if (row.get("samples") or 0) < 2:
        return None
    if column == "fallback":
        parts = ("base_local", "base_remote", "failed")
        if any(row.get(f"{c}_p95") is None for c in parts):
            return None
        varying = [c for c in parts if row[f"{c}_p5"] != 0 or row[f"{c}_p95"] != 0]
        if len(varying) > 1:
            return None
        column = varying[0] if varying else "base_local"
    lo, hi = row.get(f"{column}_p5"), row.get(f"{column}_p95")
    if lo is None or hi is None:
        return None
    if kind == "pct":
        return f"[{100 * lo:.0f}-{100 * hi:.0f}%]"
    if kind == "us":
        (a, ua), (b, ub) = _short_us(lo), _short_us(hi)
        return f"[{a}-{b}{ub}]" if ua == ub else f"[{a}{ua}-{b}{ub}]"
    if kind == "cost":
        return f"[{lo:.2f}-{hi:.2f}]"
    return f"[{round(lo):,}-{round(hi):,}]"


def _cell(row: dict, column: str, kind: str, ref: dict | None) -> str:
    value = figure_value(row, column)
    text = fmt_figure(value, kind)
    iv = interval(row, column, kind) if "samples" in row else None
    if iv is not None or (row.get("samples") or 0) >= 2:
        text += f"\n[dim]{escape(iv or '')}[/dim]"
    delta = fmt_delta(value, figure_value(ref, column), kind) if ref is not None else ""
    return f"{text}\n[dim]{delta}[/dim]" if ref is not None else text


def sampled(summary) -> int:
    """How many samples the summary's percentiles are over (0: none; simulate --samples)."""
    if "samples" not in summary.columns or not summary.height:
        return 0
    return int(summary["samples"].fill_null(0).max() or 0)


def summary_tables(summary, captured=None, width: int | None = None) -> list[Table]:
    """The headline of a simulation: the captured row first, then one row per policy with its difference
    from the captured figures. One table when it fits `width` (None: always), else two narrower ones;
    with sampled intervals under the figures, as many as it takes to fit (figures in order)."""
    summary = in_era_order(summary)
    wide = _summary_table(summary, captured, [f[0] for f in FIGURES], wide=True)
    if width is None or _width(wide) <= width:
        return [wide]
    if sampled(summary) >= 2:
        groups: list[list[str]] = [[]]
        for column in (f[0] for f in FIGURES):
            trial = groups[-1] + [column]
            if groups[-1] and _width(_summary_table(summary, captured, trial, wide=False)) > width:
                groups.append([column])
            else:
                groups[-1] = trial
        return [_summary_table(summary, captured, g, wide=False) for g in groups]
    return [_summary_table(summary, captured, list(group), wide=False) for group in NARROW_GROUPS]


def summary_table(summary, captured=None) -> Table:
    """The wide summary table (one row per policy, the captured row first when given)."""
    return summary_tables(summary, captured)[0]


def _width(table: Table) -> int:
    from rich.measure import Measurement

    console = Console(width=1000)
    return Measurement.get(console, console.options, table).maximum


def _summary_table(summary, captured, columns: list[str], wide: bool) -> Table:
    spec = {f[0]: f for f in FIGURES}
    table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("policy", justify="left", overflow="fold")
    for c in columns:
        table.add_column(spec[c][1] if wide else spec[c][2], justify="right", overflow="fold", no_wrap=False)
    ref = captured.row if captured is not None else None
    if ref is not None:
        table.add_row(f"[bold]{captured.row['policy']}[/bold]",
                      *(fmt_figure(figure_value(ref, c), spec[c][3]) for c in columns), end_section=True)
    for r in summary.iter_rows(named=True):
        table.add_row(row_label(r), *(_cell(r, c, spec[c][3], ref) for c in columns))
    return table


def footnotes(captured, columns=None) -> list[str]:
    """Why a captured figure is "—", and where its latency comes from."""
    if captured is None:
        return []
    columns = columns or [f[0] for f in FIGURES]
    notes = [f"—: {n}" for n in captured.footnotes(columns)]
    if any(c.startswith("latency") for c in columns) and captured.row.get("latency_mean_us") is not None:
        notes.append(LATENCY_NOTE)
    return notes


LATENCY_NOTE = "latency: as captured, measured in the trace; the policies', the model's estimate"


# the fleet table's columns: fleet_settings column, header, kind
FLEET_COLUMNS = (("captures", "captures", "count"), ("faults", "faults", "count"), ("thp_coverage", "THP", "pct"),
                 ("thp_coverage_p50", "THP p50", "pct"), ("thp_coverage_min", "THP min", "pct"),
                 ("local_share", "local", "pct"), ("compact_stall", "stalls", "count"),
                 ("pgsteal_direct", "reclaimed", "count"), ("pswpout", "swap-outs", "count"))
FLEET_NARROW = (("captures", "faults", "thp_coverage", "thp_coverage_p50", "thp_coverage_min", "local_share"),
                ("compact_stall", "pgsteal_direct", "pswpout"))


def fleet_tables(fleet, width: int | None = None) -> list[Table]:
    """The headline of a sweep: one row per policy and setting, pooled over the captures, in the order
    given (the report sorts it by era). One table when it fits `width`, else two with the policy and its
    setting on two lines."""
    wide = _fleet_table(fleet, [c[0] for c in FLEET_COLUMNS], stacked=False)
    if width is None or _width(wide) <= width:
        return [wide]
    return [_fleet_table(fleet, list(group), stacked=True) for group in FLEET_NARROW]


def fleet_table(fleet) -> Table:
    return fleet_tables(fleet)[0]


def _fleet_table(fleet, columns: list[str], stacked: bool) -> Table:
    spec = {c[0]: c for c in FLEET_COLUMNS}
    table = Table(show_header=True, header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("policy / settings" if stacked else "policy", justify="left", overflow="fold")
    if not stacked:
        table.add_column("settings", justify="left", overflow="fold")
    for c in columns:
        table.add_column(spec[c][1], justify="right", overflow="fold")
    for r in fleet.iter_rows(named=True):
        cells = [fmt_figure(r.get(c), spec[c][2]) for c in columns]
        label = row_label(r)
        table.add_row(*([f"{label}\n  {r['settings']}"] if stacked else [label, r["settings"]]), *cells)
    return table


def _wide_console() -> Console:
    """Tables stay whole when piped into files and scripts (rich would wrap them at 80 columns)."""
    console = Console(soft_wrap=True)
    return console if console.is_terminal else Console(soft_wrap=True, width=160)


PIPED_WIDTH = 100  # the summary's width when stdout is not a terminal (COLUMNS overrides): the same bytes every run


def summary_console() -> Console:
    """The terminal's width on a terminal; piped, COLUMNS if set, else PIPED_WIDTH (deterministic)."""
    console = Console(soft_wrap=True)
    if console.is_terminal:
        return console
    try:
        width = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        width = PIPED_WIDTH
    return Console(soft_wrap=True, width=width if width > 0 else PIPED_WIDTH)


CHANGES_HEAD = "beyond the spread (the two 90 % intervals apart), from each era to the next:"


def print_summary(console: Console, summary, captured=None, sample_figures: dict | None = None) -> None:
    """The summary tables at the console's width, a legend when abbreviated, the captured row's notes, and
    with samples, which changes from one era to the next are larger than the spread."""
    tables = summary_tables(summary, captured, console.width)
    for i, t in enumerate(tables):
        if i:
            console.print()
        console.print(t)
    if captured is not None:
        console.print(DELTA_LEGEND, highlight=False, soft_wrap=False)
    n = sampled(summary)
    if n >= 2:
        console.print(INTERVAL_LEGEND.format(n=n), highlight=False, soft_wrap=False, markup=False)
    if len(tables) > 1:
        console.print(NARROW_LEGEND, highlight=False, soft_wrap=False)
    for note in footnotes(captured):
        console.print(note, highlight=False, soft_wrap=False)
    if n >= 2 and sample_figures:
        from thpreplay.changes import kernel_changes, verdicts

        lines = verdicts(kernel_changes(in_era_order(summary), sample_figures))
        if lines:
            console.print(CHANGES_HEAD, highlight=False, soft_wrap=False, markup=False)
            for line in lines:   # wrapped at the console's width, as the tables are
                console.print(f"  {line}", highlight=False, soft_wrap=False, markup=False)


def _captured_or_none(dataset):
    from thpreplay.captured import captured

    try:
        return captured(dataset)
    except ThpreplayError:
        return None


def print_simulation(result) -> None:
    console = summary_console()
    inp = result.inputs
    d = inp.demand.counts
    console.print(f"simulated {inp.dataset}  (enabled={inp.settings.enabled} defrag={inp.settings.defrag}; "
                  f"{d['thp_faults']:,} THP faults, {d['ops']:,} demand ops)", highlight=False)
    print_summary(console, result.summary, _captured_or_none(inp.dataset),
                  result.samples["figures"] if result.samples else None)
    for note in inp.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    console.print(f"tables: {inp.dataset}/simulation/{{outcomes,outcome_summary,memory_series}}", highlight=False)


def print_report_summary(report) -> None:
    """What `thpreplay report` prints: the summary (a dataset's, with its captured row) or the fleet table."""
    console = summary_console()
    if "settings" in report.summary.columns:
        for i, t in enumerate(fleet_tables(report.summary, console.width)):
            if i:
                console.print()
            console.print(t)
    else:
        print_summary(console, report.summary, getattr(report, "captured", None), getattr(report, "sample_figures", None))


def print_validation(v) -> None:
    console = _wide_console()
    console.print(f"validate {v.result.inputs.dataset}: kernel {v.kernel_release or '?'} -> policy {v.policy}; "
                  f"tolerance {100 * v.tolerance:.0f}% or ±{v.small}", highlight=False)
    console.print(_figures_table(v.rows, v.tolerance, v.small))
    from thpreplay.thp_faults import validation_tally

    console.print(validation_tally(v), highlight=False)  # not a success when the capture has no THP demand
    line = interval_tally(v.rows, getattr(v, "samples", None))
    if line:
        console.print(line, highlight=False)
    console.print(agreement_line(v), highlight=False)
    if v.path_comparison is not None and v.path_comparison.total:
        console.print(_confusion_table(v.paths, "trace_path", "model_path", numbered=True))
        pc = v.path_comparison
        if pc.compact_total:
            console.print(f"compaction result agreement: {100 * pc.compact_agreeing / pc.compact_total:.1f} % "
                          f"({pc.compact_agreeing} of {pc.compact_total} faults where both called compaction)",
                          highlight=False)
            console.print(_confusion_table(v.compact_results, "trace_result", "model_result", numbered=False))
    if v.cost_rows:
        console.print("cost figures (not in the tally above)", highlight=False)
        console.print(_figures_table(v.cost_rows, v.tolerance, v.small))
        console.print(f"{len(v.cost_rows) - len(v.cost_failures)} of {len(v.cost_rows)} cost figures within tolerance",
                      highlight=False)
        line = interval_tally(v.cost_rows, getattr(v, "samples", None), "cost figures")
        if line:
            console.print(line, highlight=False)
    if v.latency_rows:
        console.print("fault latency, µs: page-fault event to the allocation's return (not in the tally above)",
                      highlight=False)
        console.print(_latency_table(v.latency_rows, v.tolerance, v.small))
        console.print(f"{len(v.latency_rows) - len(v.latency_failures)} of {len(v.latency_rows)} latency figures "
                      "within tolerance", highlight=False)
    for note in v.result.inputs.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def _us(x: float | None) -> str:
    """µs with sensible precision: 7.0, 48.2, 1,668, and '-' for none."""
    if x is None:
        return "-"
    return f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def _latency_table(rows, tolerance: float, small: int) -> Table:
    table = Table(show_header=True, header_style="bold")
    for name, justify in (("placement", "left"), ("", "left"), ("faults obs/sim", "right"), ("observed", "right"),
                          ("simulated", "right"), ("rel. error", "right"), ("", "left")):
        table.add_column(name, justify=justify)
    for r in rows:
        err = r.error()
        table.add_row(r.placement, r.stat, f"{r.observed_n:,}/{r.simulated_n:,}", _us(r.observed), _us(r.simulated),
                      "-" if err is None else f"{100 * err:.1f}%", "ok" if r.ok(tolerance, small) else "[red]off[/red]")
    return table


def agreement_line(v) -> str:
    """`per-fault path agreement: 87.5 % (84 of 96 faults)`."""
    pc = v.path_comparison
    if pc is None or not pc.total:
        return "per-fault path agreement: no THP faults"
    return f"per-fault path agreement: {100 * pc.agreement:.1f} % ({pc.agreeing} of {pc.total} faults)"


def _figures_table(rows, tolerance: float, small: int) -> Table:
    table = Table(show_header=True, header_style="bold")
    sampled = any(getattr(r, "interval", None) is not None for r in rows)
    for name, justify in (("figure", "left"), ("source", "left"), ("observed", "right"), ("simulated", "right"),
                          ("rel. error", "right"), ("", "left"), *((("p5..p95", "right"), ("in_interval", "left"))
                                                                   if sampled else ())):
        table.add_column(name, justify=justify, overflow="fold")
    for r in rows:
        ok = r.ok(tolerance, small)
        extra = []
        if sampled:
            iv, inside = r.interval, r.in_interval()
            extra = [escape(f"{_bound(iv[0])}..{_bound(iv[1])}") if iv else "—",
                     "—" if inside is None else "yes" if inside else "[red]no[/red]"]
        table.add_row(r.figure, r.source, f"{r.observed:,}", f"{r.simulated:,}", f"{100 * r.error():.1f}%",
                      "ok" if ok else "[red]off[/red]", *extra)
    return table


def _bound(x: float) -> str:
    """An interval's end as it is: whole, or to one decimal (p5 of 20 samples falls between two)."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def interval_tally(rows, samples: dict | None, what: str = "figures") -> str | None:
    """`12 of 14 observed figures inside the model's 90 % interval (p5..p95 of 20 samples, seed 1)`."""
    if not samples:
        return None
    judged = [r for r in rows if r.interval is not None]
    if not judged:
        return f"no interval: {samples['n']} sample{'s' if samples['n'] != 1 else ''} (an interval needs two or more)"
    inside = sum(1 for r in judged if r.in_interval())
    return (f"{inside} of {len(judged)} observed {what} inside the model's 90 % interval (p5..p95 of "
            f"{samples['n']} samples, seed {samples['seed']}; {samples['how']})")


def _confusion_table(confusion, a: str, b: str, numbered: bool) -> Table:
    """Rows the trace's labels, columns the model's; with `numbered`, columns are the rows' numbers (the
    path labels are long), the commonest eight paths and an `other` bucket beyond."""
    from thpreplay.validate import COMPACT_RESULTS, confusion_matrix

    labels, matrix = confusion_matrix(confusion, a, b)
    if not numbered:  # compaction results: the kernel's order
        order = sorted(range(len(labels)), key=lambda i: COMPACT_RESULTS.index(labels[i])
                       if labels[i] in COMPACT_RESULTS else len(COMPACT_RESULTS))
        labels = [labels[i] for i in order]
        matrix = [[matrix[i][j] for j in order] for i in order]
    table = Table(show_header=True, header_style="bold")
    table.add_column(f"trace \\ model", justify="left", overflow="fold")  # a long path folds, never cut
    for i, label in enumerate(labels):
        table.add_column(str(i + 1) if numbered else label, justify="right")
    table.add_column("faults", justify="right")
    for i, label in enumerate(labels):
        cells = [(f"[bold]{n}[/bold]" if i == j else str(n)) if n else "." for j, n in enumerate(matrix[i])]
        table.add_row(f"{i + 1} {label}" if numbered else label, *cells, str(sum(matrix[i])))
    totals = [sum(row[j] for row in matrix) for j in range(len(labels))]
    table.add_row("faults", *(str(t) for t in totals), str(sum(totals)), style="dim")
    return table
