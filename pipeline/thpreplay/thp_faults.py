"""Derive the `thp_faults` table: THP page faults as the kernel lived them, from the raw events.

A THP fault is one task's run of consecutive THP attempts (mm_page_alloc with order >= 2 and an
anonymous-THP gfp mask): each failed attempt (pfn=0) may be followed by another (5.4+: the local
__GFP_THISNODE try, then the all-node try; 6.8+: lower mTHP orders), and the fault ends at a success
or at the task's next other allocation (the 4 KiB fallback) or page fault. The compaction and reclaim
events a task emits before an attempt belong to that attempt (mm_page_alloc fires when
__alloc_pages returns, after its slowpath). See do_huge_pmd_anonymous_page() and
vma_alloc_folio()/alloc_pages_mpol() in mm/huge_memory.c and mm/mempolicy.c.

To keep memory flat in trace size, ingest keeps per chunk only the rows that matter for grouping
(`marker_rows`): THP attempts, the rows right before and after them, and each task's first and
last row in the chunk. That preserves "what came right before/after each attempt" across chunks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import polars as pl

from thpreplay import schemas
from thpreplay.topology import Topology

SLOWPATH_EVENTS = (
    "mm_compaction_try_to_compact_pages",
    "mm_compaction_deferred",
    "mm_compaction_suitable",
    "mm_compaction_begin",
    "mm_compaction_migratepages",
    "mm_vmscan_direct_reclaim_begin",
    "mm_vmscan_direct_reclaim_end",
)
# The events _stalls_per_try reads (a subset of SLOWPATH_EVENTS).
_TRY_EVENTS = (
    "mm_compaction_try_to_compact_pages",
    "mm_compaction_deferred",
    "mm_compaction_suitable",
    "mm_compaction_begin",
    "mm_vmscan_direct_reclaim_begin",
)
_MARKER_COLS = {
    "pid": pl.Int32,
    "tgid": pl.Int32,
    "comm": pl.String,
    "cpu": pl.Int32,
    "ts_ns": pl.Int64,
    "source": pl.String,
    "line": pl.Int64,
    "kind": pl.String,
    "thp": pl.Boolean,
    "success": pl.Boolean,
    "order": pl.Int16,
    "pfn": pl.Int64,
    "node": pl.Int16,
    "gfp_flags": pl.String,
    "gfp_thisnode": pl.Boolean,
    "address": pl.UInt64,
    "region": pl.UInt64,
}


@dataclass
class ChunkMarkers:
    """What one chunk contributes to thp_faults: a few compact rows (see reduce_chunk)."""

    markers: list[pl.DataFrame]
    slowpath: list[pl.DataFrame]
    thp_pids: list[int]


def reduce_chunk(tables: dict[str, pl.DataFrame]) -> ChunkMarkers:
    """Keep, of one chunk's enriched tables, only what grouping faults needs. Stateless, so that it
    runs in the worker that parsed the chunk: THP attempts with the rows right before and after them,
    every task's first and last row (a fault can straddle chunks), and the slowpath events."""
    out = ChunkMarkers([], [], [])
    for table in ("compaction", "reclaim"):
        frame = tables.get(table)
        if frame is None or frame.height == 0:
            continue
        extra = [c for c in ("nr_migrated", "nr_reclaimed", "ret") if c in frame.columns]
        out.slowpath.append(_detach(frame.filter(pl.col("event").is_in(SLOWPATH_EVENTS)).select(
            ["pid", "ts_ns", "source", "line", "event", *extra])))
    sources = []
    alloc = tables.get("page_alloc")
    if alloc is not None and alloc.height:
        sources.append((alloc, "alloc"))
        out.thp_pids = alloc.filter(pl.col("thp_attempt")).get_column("pid").unique().to_list()
    faults = tables.get("page_fault")
    if faults is not None and faults.height:
        sources.append((faults.filter(pl.col("event") == "page_fault_user"), "fault"))
    for f, kind in sources:
        out.markers.append(_detach(_marker_rows(_first_and_last_per_task(f), kind)))
    if out.thp_pids and sources:
        parts = [_marker_rows(f.filter(pl.col("pid").is_in(out.thp_pids)), kind) for f, kind in sources]
        m = pl.concat(parts).sort("pid", "ts_ns", "line")
        same_prev = pl.col("pid") == pl.col("pid").shift(1)
        same_next = pl.col("pid") == pl.col("pid").shift(-1)
        keep = (
            pl.col("thp")
            | (pl.col("thp").shift(1) & same_prev).fill_null(False)
            | (pl.col("thp").shift(-1) & same_next).fill_null(False)
        )
        out.markers.append(_detach(m.filter(keep)))
    return out


class MarkerCollector:
    """Accumulates, chunk by chunk in input order, what reduce_chunk kept."""

    def __init__(self) -> None:
        self.thp_pids: set[int] = set()
        self.markers: list[pl.DataFrame] = []
        self.slowpath: list[pl.DataFrame] = []  # every task's, so compact_stall can be counted too

    def add(self, reduced: ChunkMarkers) -> None:
        self.thp_pids.update(reduced.thp_pids)
        self.markers += reduced.markers
        self.slowpath += reduced.slowpath

    def compact_stalls_all_tasks(self, stall_rule: str) -> int:
        """compact_stall as the kernel counts it, over every task in the trace (not only THP faults)."""
        events = self._slowpath().filter(pl.col("event").is_in(_TRY_EVENTS))
        if events.height == 0:
            return 0
        events = events.sort("pid", "ts_ns", "line").rename({"pid": "_fk"})
        stalls = _stalls_per_try(events, stall_rule)
        return int(stalls.get_column("compact_stalls").sum() or 0)

    def faults(self, topology: Topology, stall_rule: str = "not_skipped") -> pl.DataFrame:
        schema = schemas.load("thp_faults")
        if not self.thp_pids:
            return schema.empty()
        pids = sorted(self.thp_pids)
        markers = (
            pl.concat(self.markers).filter(pl.col("pid").is_in(pids)).unique(["source", "line"])
            .sort("pid", "ts_ns", "line")
        )
        slow = self._slowpath().filter(pl.col("pid").is_in(pids))
        return derive(markers, slow, topology, stall_rule)

    def _slowpath(self) -> pl.DataFrame:
        slow = (
            pl.concat(self.slowpath, how="diagonal_relaxed")
            if self.slowpath
            else pl.DataFrame(schema={"pid": pl.Int32, "ts_ns": pl.Int64, "source": pl.String, "line": pl.Int64,
                                      "event": pl.String})
        )
        for c, t in (("nr_migrated", pl.Int64), ("nr_reclaimed", pl.Int64), ("ret", pl.String)):
            if c not in slow.columns:
                slow = slow.with_columns(pl.lit(None, dtype=t).alias(c))
        return slow


def _first_and_last_per_task(frame: pl.DataFrame) -> pl.DataFrame:
    ends = (
        frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("i"), "pid")
        .group_by("pid")
        .agg(pl.col("i").first().alias("first"), pl.col("i").last().alias("last"))
    )
    rows = pl.concat([ends.get_column("first"), ends.get_column("last")]).unique().sort()
    return frame[rows]


def _detach(frame: pl.DataFrame) -> pl.DataFrame:
    """A compact copy. Rows picked from a chunk's frame (filter, head, tail) are string views into
    the whole chunk's buffers; kept as they are, every chunk would stay in memory to the end of the
    ingest. An IPC round trip copies just the rows (to_arrow/from_arrow does not: measured)."""
    buf = io.BytesIO()
    frame.write_ipc(buf)
    buf.seek(0)
    return pl.read_ipc(buf)


def _marker_rows(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """page_alloc or page_fault_user rows in the shape thp_faults groups them in."""
    if kind == "alloc":
        rows = frame.with_columns(pl.lit("alloc").alias("kind"), pl.col("thp_attempt").alias("thp"))
    else:
        rows = frame.with_columns(pl.lit("fault").alias("kind"), pl.lit(False).alias("thp"))
    return _conform(rows)


def _conform(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        [
            pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
            for c, t in _MARKER_COLS.items()
        ]
    )


def derive(markers: pl.DataFrame, slow: pl.DataFrame, topology: Topology, stall_rule: str) -> pl.DataFrame:
    """Group attempts into faults and attach slowpath events. Both inputs sorted by (pid, ts_ns, line).

    stall_rule says which try_to_compact_pages calls the kernel counts as compact_stall (see
    kernel.counters.compact_stall_rule).
    """
    schema = schemas.load("thp_faults")
    same_prev = pl.col("pid") == pl.col("pid").shift(1)
    prev_failed_thp = (same_prev & pl.col("thp").shift(1) & ~pl.col("success").shift(1).fill_null(True)).fill_null(
        False
    )
    m = markers.with_columns(
        (pl.col("thp") & ~prev_failed_thp).alias("_new"),
        pl.when(same_prev & (pl.col("kind").shift(1) == "fault"))
        .then(pl.struct(pl.col("ts_ns").shift(1).alias("fts"), pl.col("address").shift(1).alias("faddr")))
        .alias("_prev_fault"),
    )
    m = m.with_columns(
        pl.when(pl.col("thp")).then(pl.col("_new").cast(pl.Int64).cum_sum()).alias("fault_key")
    )
    attempts = m.filter(pl.col("thp"))
    if attempts.height == 0:
        return schema.empty()

    # Slowpath events belong to the fault of the next marker row of the same task, if that row is a
    # THP attempt (mm_page_alloc is emitted after the slowpath it ran).
    both = pl.concat(
        [
            m.select("pid", "ts_ns", "line", pl.lit(True).alias("_marker"),
                     pl.when(pl.col("thp")).then(pl.col("fault_key")).otherwise(-1).alias("_fk")),
            slow.select("pid", "ts_ns", "line", pl.lit(False).alias("_marker"),
                        pl.lit(None, dtype=pl.Int64).alias("_fk"), "event", "nr_migrated", "nr_reclaimed", "ret"),
        ],
        how="diagonal_relaxed",
    ).sort("pid", "ts_ns", "line")
    both = both.with_columns(pl.col("_fk").backward_fill().over("pid").alias("_fk"))
    events = both.filter(~pl.col("_marker") & (pl.col("_fk") >= 0))
    per_try = _stalls_per_try(events, stall_rule)
    per_fault_events = events.group_by("_fk").agg(
        (pl.col("event") == "mm_compaction_try_to_compact_pages").sum().cast(pl.Int16).alias("compaction_calls"),
        pl.col("nr_migrated").filter(pl.col("event") == "mm_compaction_migratepages").sum().alias("pages_migrated"),
        (pl.col("event") == "mm_vmscan_direct_reclaim_begin").sum().cast(pl.Int16).alias("reclaim_calls"),
        pl.col("nr_reclaimed").filter(pl.col("event") == "mm_vmscan_direct_reclaim_end").sum().alias(
            "pages_reclaimed"
        ),
        pl.col("ts_ns").min().alias("_slow_start"),
    )

    attempts = attempts.with_columns(topology.local_node_expr("cpu").alias("local_node"))
    faults = attempts.group_by("fault_key", maintain_order=True).agg(
        pl.col("pid").first(),
        pl.col("tgid").first(),
        pl.col("comm").first(),
        pl.col("cpu").first(),
        pl.col("local_node").first(),
        pl.col("ts_ns").first().alias("_first_ts"),
        pl.col("ts_ns").last().alias("end_ts_ns"),
        pl.len().cast(pl.Int16).alias("attempts"),
        pl.col("order").first().alias("first_order"),
        pl.col("order").last().alias("final_order"),
        pl.col("success").last().alias("_success"),
        pl.col("node").last().alias("_node"),
        pl.col("pfn").last().alias("_pfn"),
        pl.col("gfp_flags").first().alias("first_gfp_flags"),
        pl.col("gfp_flags").last().alias("last_gfp_flags"),
        pl.col("gfp_thisnode").first().alias("first_thisnode"),
        pl.col("_prev_fault").first().alias("_prev_fault"),
        pl.col("source").first(),
        pl.col("line").first().alias("first_line"),
        pl.col("line").last().alias("last_line"),
    )
    faults = (
        faults.join(per_fault_events, left_on="fault_key", right_on="_fk", how="left", maintain_order="left")
        .join(per_try, left_on="fault_key", right_on="_fk", how="left", maintain_order="left")
        .with_columns(
            pl.col("_prev_fault").struct.field("fts").alias("_fault_ts"),
            pl.col("_prev_fault").struct.field("faddr").alias("address"),
        )
    )
    huge = pl.col("_success")
    remote = huge & pl.col("_node").is_not_null() & pl.col("local_node").is_not_null() & (
        pl.col("_node") != pl.col("local_node")
    )
    faults = faults.with_columns(
        pl.when(~huge).then(pl.lit("fallback")).when(remote).then(pl.lit("huge_remote")).otherwise(
            pl.lit("huge_local")
        ).alias("outcome"),
        pl.when(huge).then(pl.col("_node")).alias("node"),
        pl.when(huge).then(pl.col("_pfn")).alias("pfn"),
        (pl.col("address") // (2 << 20) * (2 << 20)).alias("region"),
        pl.coalesce(pl.col("compaction_calls"), pl.lit(0)).alias("compaction_calls"),
        pl.coalesce(pl.col("compact_stalls"), pl.lit(0)).alias("compact_stalls"),
        pl.coalesce(pl.col("pages_migrated"), pl.lit(0)).alias("pages_migrated"),
        pl.coalesce(pl.col("reclaim_calls"), pl.lit(0)).alias("reclaim_calls"),
        pl.coalesce(pl.col("pages_reclaimed"), pl.lit(0)).alias("pages_reclaimed"),
        pl.when(pl.col("_slow_start").is_not_null())
        .then(pl.col("end_ts_ns") - pl.col("_slow_start"))
        .otherwise(0)
        .alias("stall_ns"),
        (pl.col("end_ts_ns") - pl.col("_fault_ts")).alias("latency_ns"),
        pl.coalesce(pl.col("_fault_ts"), pl.col("_slow_start"), pl.col("_first_ts")).alias("ts_ns"),
    )
    faults = faults.sort("ts_ns", "first_line").with_row_index("fault_id").with_columns(
        pl.col("fault_id").cast(pl.Int64)
    )
    return schema.conform(faults)


def _stalls_per_try(events: pl.DataFrame, stall_rule: str) -> pl.DataFrame:
    """compact_stalls per group `_fk` from its events (sorted by time within the group).

    Each try_to_compact_pages call owns the compaction events up to the next call, the next direct
    reclaim (whose own compaction_suitable checks are not the call's) or the end of the group.
    """
    is_try = pl.col("event") == "mm_compaction_try_to_compact_pages"
    cut = is_try | (pl.col("event") == "mm_vmscan_direct_reclaim_begin")
    events = events.with_columns(
        is_try.cast(pl.Int64).cum_sum().over("_fk").alias("_try"),
        cut.cast(pl.Int64).cum_sum().over("_fk").alias("_seg"),
    )
    tries = events.filter(pl.col("_try") > 0).with_columns(
        pl.col("_seg").first().over("_fk", "_try").alias("_try_seg")
    ).filter(pl.col("_seg") == pl.col("_try_seg"))
    if stall_rule == "every_call":
        counted = is_try
    else:
        counted = pl.col("event").is_in(["mm_compaction_begin", "mm_compaction_deferred"]) | (
            (pl.col("event") == "mm_compaction_suitable") & (pl.col("ret") != "skipped")
        )
    return (
        tries.group_by("_fk", "_try")
        .agg(counted.any().alias("_stall"))
        .group_by("_fk")
        .agg(pl.col("_stall").sum().cast(pl.Int16).alias("compact_stalls"))
    )


def vmstat_view(faults: pl.DataFrame) -> dict[str, int]:
    """The trace's own counts of what /proc/vmstat counts for PMD THP faults (mm/huge_memory.c)."""
    pmd = faults.filter(pl.col("first_order") == 9)
    alloc = pmd.filter((pl.col("outcome") != "fallback") & (pl.col("final_order") == 9)).height
    return {
        "thp_fault_alloc": alloc,
        "thp_fault_fallback": pmd.height - alloc,
        "compact_stall": int(faults.get_column("compact_stalls").sum() or 0),
    }


# The start of the one line simulate, validate and report print for a capture without THP demand.
NO_DEMAND = "the capture holds no THP fault attempts"


def no_demand_note(dataset) -> str | None:
    """One line when the dataset holds no THP fault (no row of thp_faults): every policy replays it the
    same way, so a comparison of policies, or of the model with the kernel, says nothing. None when it
    holds one. The line counts what the capture does hold, e.g. `the capture holds no THP fault attempts
    (294,670 page faults; 301,512 page allocations, none of order 9 or more): every policy replays it the
    same way; nothing to compare`."""
    from pathlib import Path

    dataset = Path(dataset)

    def parts(table: str) -> list[str]:
        return [str(p) for p in sorted((dataset / table).glob("*.parquet"))]

    faults = parts("thp_faults")
    if faults and pl.scan_parquet(faults, glob=False).select(pl.len()).collect().item():
        return None
    said = []
    if pf := parts("page_fault"):
        n = pl.scan_parquet(pf, glob=False).filter(pl.col("event") == "page_fault_user").select(pl.len()).collect().item()
        said.append(f"{n:,} page fault{'' if n == 1 else 's'}")
    if pa := parts("page_alloc"):
        a = pl.scan_parquet(pa, glob=False).select(
            pl.len().alias("n"), (pl.col("order") >= 9).sum().alias("huge"),
            (pl.col("order") >= 2).sum().alias("large")).collect().row(0, named=True)
        if a["huge"]:
            what = f"{a['huge']:,} of order 9 or more, none with the THP fault gfp bits"
        elif a["large"]:
            what = f"none of order 9 or more ({a['large']:,} of order 2 to 8, none a THP fault attempt)"
        else:
            what = "all of order 0 or 1"
        said.append(f"{a['n']:,} page allocation{'' if a['n'] == 1 else 's'}, {what}")
    counts = f" ({'; '.join(said)})" if said else ""
    return f"{NO_DEMAND}{counts}: every policy replays it the same way; nothing to compare"


def has_no_demand(notes: list[str]) -> bool:
    """Whether a replay's notes say its capture holds no THP fault attempt (no_demand_note)."""
    return any(n.startswith(NO_DEMAND) for n in notes)


def validation_tally(v, within: str = "within tolerance") -> str:
    """validate's tally line: `14 of 14 figures within tolerance`; for a capture without THP demand, a
    line that does not read as a success (the figures agree because neither side has a THP fault)."""
    ok, n = len(v.rows) - len(v.failures), len(v.rows)
    if has_no_demand(v.result.inputs.notes):
        return f"nothing validated: {NO_DEMAND}, so no figure above tests the model ({ok} of {n} agree)"
    return f"{ok} of {n} figures {within}"
