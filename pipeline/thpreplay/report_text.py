"""Terminal output: the ingest summary table and the progress bar for large inputs."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table

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
    table.add_row("thp_faults", f"{s.thp_faults.get('faults', 0):,}")
    console.print(table)
    fmts = ", ".join(sorted(set(s.formats.values())))
    console.print(f"lines {s.lines:,}  format {fmts}  gfp table {s.gfp_table}", highlight=False)
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
