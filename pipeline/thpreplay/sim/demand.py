"""The demand: what the workload did, independent of what the capturing kernel decided.

Built from a dataset into one time-ordered stream of ops for the replay core:

- THP: a THP-eligible fault (one row of `thp_faults`): when, which task, its local node (from the CPU),
  whether the VMA was madvised, and the 2 MiB virtual region it covers. Which of the kernel's attempts
  succeeded, and where the huge page went, are NOT part of it: the model decides those itself.
- ALLOC / FREE: every other page allocation and free, with the pfn the kernel used (a placement hint the
  model follows when that pfn is free in the model), order, migratetype and page kind.
- RELEASE: the end of a THP region's life (its memory is unmapped), so that a huge page the model
  placed, or the 512 base pages it substituted, are freed when the workload freed the memory.

A region's 4 KiB allocations are tied to it with `exceptions:page_fault_user` (the address of the fault
just before each allocation, per task). When the model gives a region a huge page that the kernel did
not, those 4 KiB allocations are dropped; when the model falls back where the kernel got a huge page,
the 4 KiB touches never faulted in the capture, so the model assumes the whole region is touched at
the fault (512 pages). Without page-fault events, a fallback region is approximated as the next 512
movable order-0 allocations of the same task, and the demand says so.

What the kernel did on its own behalf is not demand either. Frees inside direct reclaim (between its
begin/end events on that task) and by kswapd are reclaim, which the model does itself: dropped. Frees
inside compaction and by kcompactd are migrations: the page moved to a place the trace does not show
(compaction takes its target pages without mm_page_alloc). They become MIGRATE ops: the model moves the
page itself, and the workload's later free of an unknown page frees one migrated page (both counted).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from thpreplay.errors import InputError
from thpreplay.sim.state import read_table


OP_ALLOC, OP_FREE, OP_THP, OP_RELEASE, OP_MIGRATE = 0, 1, 2, 3, 4
PK_PINNED, PK_ANON, PK_FILE = 0, 1, 2
REGION_PAGES = 512

_RECLAIM_WINDOW = {"mm_vmscan_direct_reclaim_begin": 1, "mm_vmscan_direct_reclaim_end": -1}
_COMPACTION_WINDOW = {"mm_compaction_begin": 1, "mm_compaction_end": -1}


@dataclass
class Demand:
    ops: pl.DataFrame  # kind, ts_ns, line, pfn, order, mt, pkind, node, region, madvised
    faults: pl.DataFrame  # one row per THP fault: region (= fault index), fault_id, ts_ns, pid, comm, local_node, madvised, order, observed_outcome
    observed_huge: np.ndarray  # int8 per region
    used_at_start: np.ndarray  # pfns the trace shows in use before it began (freed before allocated)
    free_at_start: np.ndarray  # pfns the trace shows free when it began (allocated before freed)
    traced_pages: np.ndarray  # every pfn a small allocation of the trace uses
    pfns_by_migratetype: dict[int, np.ndarray]  # small allocations' pfns, unmovable (0) and reclaimable (2)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _inside(frame: pl.DataFrame, events: pl.DataFrame, window: dict[str, int]) -> pl.Series:
    """Whether each row (by line, per task) falls between a begin and an end event of the window."""
    w = events.filter(pl.col("event").is_in(list(window))).with_columns(
        pl.col("event").replace_strict(window, return_dtype=pl.Int8).alias("dir")).sort("line")
    if not w.height:
        return pl.Series([False] * frame.height)
    joined = frame.select("line", "pid").join_asof(w.select("line", "pid", "dir"), on="line", by="pid", strategy="backward")
    return joined["dir"].fill_null(-1) == 1


def _madvised(enabled: str, defrag: str, override: bool | None) -> pl.Expr:
    """Whether each fault's VMA was madvised. With enabled=madvise only madvised VMAs get THP faults.
    Otherwise the direct-reclaim bit of the fault's masks tells it under defrag=madvise/defer+madvise
    (only madvised VMAs get __GFP_DIRECT_RECLAIM there, reference §1.2): the decoded bit of its first or
    last attempt (column `direct`), else the printed names. Other modes do not show it and the fault is
    taken as madvised (the case the 2019 thread is about), which the notes say."""
    if override is not None:
        return pl.lit(override)
    if enabled == "madvise":
        return pl.lit(True)
    if defrag in ("madvise", "defer+madvise"):
        names = "DIRECT_RECLAIM|GFP_TRANSHUGE$|GFP_TRANSHUGE\\|"
        by_name = pl.col("first_gfp_flags").str.contains(names) | pl.col("last_gfp_flags").str.contains(names)
        return pl.coalesce("direct", by_name)
    return pl.lit(True)


def build(dataset: Path, enabled: str, defrag: str, madvised: bool | None = None) -> Demand:
    with warnings.catch_warnings():
        # join_asof with `by` cannot check sortedness; every frame is sorted on `line` before it is joined
        warnings.filterwarnings("ignore", message="Sortedness of columns cannot be checked")
        return _build(dataset, enabled, defrag, madvised)


def _build(dataset: Path, enabled: str, defrag: str, madvised: bool | None) -> Demand:
    notes: list[str] = []
    counts: dict[str, int] = {}
    alloc = read_table(dataset, "page_alloc", [
        "ts_ns", "line", "pid", "tgid", "cpu", "pfn", "success", "order", "migratetype", "gfp_flags",
        "gfp_direct_reclaim", "thp_attempt", "node", "source"])
    sources = alloc["source"].unique().to_list()
    if len(sources) > 1:
        # events are ordered by their line in the trace; several traces have no common order
        raise InputError(str(dataset), f"simulate replays one trace per dataset; this one holds {len(sources)} "
                         f"({', '.join(sorted(sources))}): ingest each into its own dataset")
    alloc = alloc.drop("source")
    free = read_table(dataset, "page_free", ["ts_ns", "line", "pid", "comm", "pfn", "order"]).filter(pl.col("pfn") > 0)
    faults = read_table(dataset, "thp_faults")
    pfault = read_table(dataset, "page_fault", ["event", "line", "pid", "tgid", "address"]).filter(
        pl.col("event") == "page_fault_user").drop("event")
    reclaim_events = read_table(dataset, "reclaim", ["line", "pid", "event"])
    compaction_events = read_table(dataset, "compaction", ["line", "pid", "event"])

    # -- THP faults: the demand side of each (no outcome, no placement) --
    # the decoded __GFP_DIRECT_RECLAIM bit of each fault's first and last attempt (null if undecoded)
    attempt_bits = alloc.filter(pl.col("thp_attempt")).select("line", "gfp_direct_reclaim")
    faults = faults.join(attempt_bits.rename({"line": "first_line", "gfp_direct_reclaim": "d1"}), on="first_line", how="left")
    faults = faults.join(attempt_bits.rename({"line": "last_line", "gfp_direct_reclaim": "d2"}), on="last_line", how="left")
    faults = faults.with_columns((pl.col("d1") | pl.col("d2")).alias("direct")).drop("d1", "d2")
    faults = faults.drop("region").sort("first_line").with_row_index("region").with_columns(
        pl.col("region").cast(pl.Int64),
        _madvised(enabled, defrag, madvised).fill_null(True).alias("madvised"),
        pl.coalesce("tgid", "pid").alias("mm"),
        (pl.col("address") // (REGION_PAGES * 4096)).cast(pl.Int64).alias("vregion"),
    )
    if enabled not in ("madvise",) and defrag not in ("madvise", "defer+madvise") and madvised is None:
        notes.append(f"defrag={defrag}: whether a fault was madvised is not visible in the trace; taken as madvised")
    fault_ops = faults.select(
        pl.lit(OP_THP, pl.Int8).alias("kind"), "ts_ns", pl.col("first_line").alias("line"),
        pl.lit(-1, pl.Int64).alias("pfn"), pl.col("first_order").cast(pl.Int8).alias("order"),
        pl.lit(1, pl.Int8).alias("mt"), pl.lit(PK_ANON, pl.Int8).alias("pkind"),
        pl.col("local_node").fill_null(0).cast(pl.Int16).alias("node"), "region",
        pl.col("madvised").cast(pl.Int8),
    )

    # -- the kernel's own frees are not demand: reclaim (the model reclaims itself) is dropped; a free
    #    inside compaction or by kcompactd is a migration, replayed as such (MIGRATE) --
    free = free.sort("line")
    free = free.with_columns(
        (_inside(free, reclaim_events, _RECLAIM_WINDOW) | pl.col("comm").str.starts_with("kswapd")).alias("by_reclaim"),
    ).with_columns(
        (_inside(free, compaction_events, _COMPACTION_WINDOW) | pl.col("comm").str.starts_with("kcompactd"))
        .and_(~pl.col("by_reclaim")).alias("by_migration"),
    ).with_columns((pl.col("by_reclaim") | pl.col("by_migration")).alias("kernel_own"))
    counts["frees_by_kernel_reclaim"] = int(free["by_reclaim"].sum())
    counts["frees_by_kernel_migration"] = int(free["by_migration"].sum())

    # -- huge pages the kernel placed: paired with their free only to know when the region ended --
    thp_rows = alloc.filter(pl.col("thp_attempt"))
    small = alloc.filter(~pl.col("thp_attempt") & pl.col("success") & (pl.col("pfn") > 0))
    counts["failed_small_allocations"] = int(alloc.filter(~pl.col("thp_attempt") & ~pl.col("success")).height)
    huge_regions = faults.filter(pl.col("pfn").is_not_null()).select("region", "pfn", pl.col("last_line").alias("line"))
    # only the workload's own frees end a region: a huge page freed inside reclaim was swapped out (or
    # split) by the kernel, a decision the model makes itself
    huge_frees = free.filter((pl.col("order") >= 9) & ~pl.col("kernel_own")).select("pfn", "line").sort("line")
    paired = huge_regions.sort("line").join_asof(
        huge_frees.rename({"line": "free_line"}).with_columns(pl.col("free_line").alias("line")),
        on="line", by="pfn", strategy="forward")
    release_huge = paired.filter(pl.col("free_line").is_not_null()).select("region", pl.col("free_line").alias("line"))
    free = free.join(release_huge.select(pl.col("line"), pl.lit(True).alias("is_huge_release")), on="line", how="left")
    free = free.with_columns(pl.col("is_huge_release").fill_null(False))
    thp_pfn_lines = pl.concat([thp_rows.filter(pl.col("success")).select("line"), release_huge.select("line")])

    # -- 4 KiB allocations of THP regions --
    small = small.sort("line").with_columns(
        pl.when(pl.col("migratetype") != 1).then(pl.lit(PK_PINNED))
        .when(pl.col("gfp_flags").str.contains("__GFP_ZERO") | (pl.col("order") == 0) & pl.col("gfp_flags").str.contains("GFP_HIGHUSER_MOVABLE"))
        .then(pl.lit(PK_ANON)).otherwise(pl.lit(PK_FILE)).cast(pl.Int8).alias("pkind"),
        pl.coalesce("tgid", "pid").alias("mm"),
    )
    anon0 = (pl.col("pkind") == PK_ANON) & (pl.col("order") == 0)
    keyed = faults.filter(pl.col("vregion").is_not_null()).select(
        pl.col("first_line").alias("line"), "mm", "vregion", pl.col("region").alias("thp_region")).sort("line")
    if pfault.height and keyed.height:
        pf = pfault.with_columns(pl.coalesce("tgid", "pid").alias("fmm"),
                                 (pl.col("address") // (REGION_PAGES * 4096)).cast(pl.Int64).alias("vregion")).sort("line")
        small = small.join_asof(pf.select("line", "pid", "vregion"), on="line", by="pid", strategy="backward")
        # the latest THP fault of that (mm, region) before this allocation
        small = small.sort("line").join_asof(keyed, on="line", by=["mm", "vregion"], strategy="backward")
        small = small.with_columns(pl.when(anon0).then(pl.col("thp_region")).otherwise(None).alias("region"))
    elif faults.height:
        notes.append("no page-fault events: 4 KiB pages of a fallback region approximated as the task's next 512 "
                     "movable order-0 allocations")
        by_task = faults.select(pl.col("first_line").alias("line"), pl.col("pid"), pl.col("region").alias("thp_region")).sort("line")
        small = small.join_asof(by_task, on="line", by="pid", strategy="backward")
        small = small.with_columns(
            pl.when(anon0).then(pl.col("thp_region")).otherwise(None).alias("cand"))
        small = small.with_columns(pl.col("line").rank("ordinal").over("cand").alias("rank"))
        small = small.with_columns(pl.when(pl.col("rank") <= REGION_PAGES).then(pl.col("cand")).otherwise(None).alias("region"))
    else:
        small = small.with_columns(pl.lit(None, pl.Int64).alias("region"))
    small = small.with_columns(pl.col("region").cast(pl.Int64))
    counts["region_4k_allocations"] = int(small["region"].is_not_null().sum())

    # a base region ends with the last free of its 4 KiB pages, when every one of them was freed
    small_frees = free.filter(~pl.col("kernel_own") & ~pl.col("is_huge_release")).select("pfn", pl.col("line").alias("free_line")).sort("free_line")
    reg_allocs = small.filter(pl.col("region").is_not_null()).select("pfn", "line", "region").sort("line")
    reg_allocs = reg_allocs.join_asof(small_frees.with_columns(pl.col("free_line").alias("line")), on="line", by="pfn",
                                      strategy="forward")
    base_release = reg_allocs.group_by("region").agg(
        pl.col("free_line").max().alias("line"), pl.col("free_line").null_count().alias("open")
    ).filter(pl.col("open") == 0).select("region", "line")
    observed_huge_regions = set(faults.filter(pl.col("pfn").is_not_null())["region"].to_list())
    base_release = base_release.filter(~pl.col("region").is_in(list(observed_huge_regions)))
    releases = pl.concat([release_huge, base_release]).sort("region")

    # -- ops --
    alloc_ops = small.select(
        pl.lit(OP_ALLOC, pl.Int8).alias("kind"), "ts_ns", "line", "pfn", pl.col("order").cast(pl.Int8),
        pl.col("migratetype").clip(0, 2).cast(pl.Int8).alias("mt"), "pkind",
        pl.col("node").fill_null(-1).cast(pl.Int16).alias("node"), pl.col("region").fill_null(-1),
        pl.lit(0, pl.Int8).alias("madvised"),
    )
    # a small allocation's preferred node is its CPU's node, when the topology gives one
    local = faults.select("cpu", "local_node").unique("cpu")
    if local.height:
        alloc_ops = alloc_ops.with_columns(pl.lit(-1, pl.Int16).alias("node"))
        cpus = small.select("line", "cpu").join(local, on="cpu", how="left")
        alloc_ops = alloc_ops.drop("node").join(cpus.select("line", pl.col("local_node").fill_null(-1).cast(pl.Int16).alias("node")),
                                                on="line", how="left").select(fault_ops.columns)
    free_ops = free.filter(~pl.col("kernel_own") & ~pl.col("is_huge_release")).select(
        pl.lit(OP_FREE, pl.Int8).alias("kind"), "ts_ns", "line", "pfn", pl.col("order").cast(pl.Int8),
        pl.lit(0, pl.Int8).alias("mt"), pl.lit(0, pl.Int8).alias("pkind"), pl.lit(-1, pl.Int16).alias("node"),
        pl.lit(-1, pl.Int64).alias("region"), pl.lit(0, pl.Int8).alias("madvised"),
    )
    migrate_ops = free.filter(pl.col("by_migration") & ~pl.col("is_huge_release")).select(
        pl.lit(OP_MIGRATE, pl.Int8).alias("kind"), "ts_ns", "line", "pfn", pl.col("order").cast(pl.Int8),
        pl.lit(0, pl.Int8).alias("mt"), pl.lit(0, pl.Int8).alias("pkind"), pl.lit(-1, pl.Int16).alias("node"),
        pl.lit(-1, pl.Int64).alias("region"), pl.lit(0, pl.Int8).alias("madvised"),
    )
    ts_of_line = free.select("line", "ts_ns")
    release_ops = releases.join(ts_of_line, on="line", how="left").select(
        pl.lit(OP_RELEASE, pl.Int8).alias("kind"), pl.col("ts_ns").fill_null(0), "line",
        pl.lit(-1, pl.Int64).alias("pfn"), pl.lit(9, pl.Int8).alias("order"), pl.lit(0, pl.Int8).alias("mt"),
        pl.lit(0, pl.Int8).alias("pkind"), pl.lit(-1, pl.Int16).alias("node"), "region",
        pl.lit(0, pl.Int8).alias("madvised"),
    )
    ops = pl.concat([alloc_ops, free_ops, fault_ops, release_ops, migrate_ops]).sort(["line", "kind"])

    # -- evidence about the start: a page's first event --
    first = pl.concat([
        small.select("pfn", "order", "line", pl.lit(True).alias("alloc")),
        # the kernel's own frees (reclaim, migration: isolated free pages released too) say nothing of the start
        free.filter(~pl.col("is_huge_release") & ~pl.col("kernel_own")).select("pfn", "order", "line", pl.lit(False).alias("alloc")),
    ]).filter(pl.col("order") < 9).join(thp_pfn_lines, on="line", how="anti")
    first = first.sort("line").group_by("pfn", maintain_order=True).first()
    pages = first.with_columns(pl.int_ranges(pl.col("pfn"), pl.col("pfn") + pl.lit(2, pl.Int64).pow(pl.col("order")).cast(pl.Int64)).alias("page")).explode("page")
    used_at_start = np.unique(pages.filter(~pl.col("alloc"))["page"].to_numpy())
    free_at_start = np.unique(pages.filter(pl.col("alloc"))["page"].to_numpy())
    span = pl.col("pfn") + pl.lit(2, pl.Int64).pow(pl.col("order")).cast(pl.Int64)
    traced_pages = np.unique(small.filter(pl.col("order") < 9).select(pl.int_ranges("pfn", span).alias("p")).explode("p")["p"].to_numpy())

    observed = np.zeros(faults.height, dtype=np.int8)
    if observed_huge_regions:
        observed[np.array(sorted(observed_huge_regions), dtype=np.int64)] = 1
    fault_table = faults.select(
        "region", "fault_id", "ts_ns", "pid", "comm", "cpu", "local_node", "madvised",
        pl.col("first_order").alias("order"), pl.col("outcome").alias("observed_outcome"),
        pl.col("node").alias("observed_node"),
    )
    counts.update(ops=ops.height, thp_faults=faults.height, releases=releases.height)
    return Demand(ops=ops, faults=fault_table, observed_huge=observed, used_at_start=used_at_start,
                  free_at_start=free_at_start, traced_pages=traced_pages,
                  pfns_by_migratetype={mt: small.filter(pl.col("migratetype") == mt)["pfn"].to_numpy() for mt in (0, 2)},
                  notes=notes, counts=counts)
