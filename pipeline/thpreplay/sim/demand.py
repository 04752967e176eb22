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

The demand is built window by window (WINDOW_LINES trace lines at a time), so that memory stays flat in
trace length: each window's tables are read alone, joined with what earlier windows left open (each
task's last reclaim, compaction and page-fault event; huge pages not yet freed; region pages not yet
freed; the first event seen of each pfn), and its ops are appended to an unnamed temporary file.
Region releases are known only once their last free is seen, so they are merged into the op stream in
a second pass over that file. The result does not depend on the window size (tests/test_demand.py).
"""

from __future__ import annotations

import bisect
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl

from thpreplay.errors import InputError, OutputError, SchemaError
from thpreplay.sim.state import read_table
from thpreplay.thp_faults import no_demand_note

OP_ALLOC, OP_FREE, OP_THP, OP_RELEASE, OP_MIGRATE, OP_STEAL = 0, 1, 2, 3, 4, 5
PK_PINNED, PK_ANON, PK_FILE = 0, 1, 2
REGION_PAGES = 512
WINDOW_LINES = 1 << 20

_RECLAIM_PAIR = {"mm_vmscan_direct_reclaim_begin": 1, "mm_vmscan_direct_reclaim_end": -1}
_COMPACTION_PAIR = {"mm_compaction_begin": 1, "mm_compaction_end": -1}

# an op's columns (line orders the stream; the replay core does not read it)
OP_COLUMNS = (("kind", np.int8), ("ts_ns", np.int64), ("line", np.int64), ("pfn", np.int64), ("order", np.int8),
              ("mt", np.int8), ("pkind", np.int8), ("node", np.int16), ("region", np.int64), ("madvised", np.int8))
OP_NAMES = tuple(name for name, _ in OP_COLUMNS)


class Ops:
    """The demand's ops in replay order (line, then kind), read in chunks of columns: held in memory
    (synthetic demands in tests) or in one unnamed temporary file that vanishes when closed (even after a
    kill). The file is a run of blocks, one per append, each holding its rows column after column, so
    that a chunk is one read per column and block into its arrays: no per-op work."""

    def __init__(self, height: int, ts_min: int, ts_max: int, columns: dict[str, np.ndarray] | None = None,
                 file=None, blocks: list[tuple[int, int, dict[str, int]]] | None = None):
        self.height, self.ts_min, self.ts_max = height, ts_min, ts_max
        self._columns, self._file, self._blocks = columns, file, blocks or []  # blocks: (first row, rows, offsets)

    @classmethod
    def of(cls, frame: pl.DataFrame) -> "Ops":
        cols = to_columns(frame)
        ts = cols["ts_ns"]
        return cls(frame.height, int(ts.min()) if len(ts) else 0, int(ts.max()) if len(ts) else 0, columns=cols)

    def __getstate__(self) -> dict:
        # pickled (Dask moving a prepared input to another worker): an open file cannot travel, the columns do
        return dict(height=self.height, ts_min=self.ts_min, ts_max=self.ts_max, _columns=self.read(0, self.height),
                    _file=None, _blocks=[])

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    @property
    def ts_span(self) -> int:
        return self.ts_max - self.ts_min

    def read(self, start: int, count: int, names: tuple[str, ...] = OP_NAMES) -> dict[str, np.ndarray]:
        count = max(0, min(count, self.height - start))
        if self._columns is not None:
            return {name: self._columns[name][start:start + count] for name in names}
        out = {name: np.empty(count, dtype=_DTYPES[name]) for name in names}
        first = bisect.bisect_right(self._blocks, start, key=lambda b: b[0]) - 1
        for row0, rows, offsets in self._blocks[max(first, 0):]:
            lo, hi = max(start, row0), min(start + count, row0 + rows)
            if lo >= hi:
                break
            for name, arr in out.items():
                size = arr.itemsize
                _pread_into(self._file, memoryview(arr[lo - start:hi - start]).cast("B"), offsets[name] + (lo - row0) * size)
        return out

    def chunks(self, size: int, names: tuple[str, ...] = OP_NAMES) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, self.height, size):
            yield self.read(start, size, names)

    def frame(self) -> pl.DataFrame:
        """Every op as one polars frame (tests and small demands)."""
        return pl.DataFrame(self.read(0, self.height))


_DTYPES = dict(OP_COLUMNS)


def to_columns(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    for name, _ in OP_COLUMNS:  # a null would be cast to a silently wrong integer
        if frame[name].null_count():
            line = frame.filter(pl.col(name).is_null())["line"][0]
            raise SchemaError(f"demand: op column {name!r} is null for trace line {line}; a bug, please report it")
    return {name: np.ascontiguousarray(frame[name].to_numpy(), dtype=dtype) for name, dtype in OP_COLUMNS}


def _pread_into(file, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(file.fileno(), [view[done:]], offset + done)
        if n <= 0:
            raise OutputError(f"{file.name}: the demand's op file is shorter than written")
        done += n


class _OpWriter:
    """Appends blocks of op columns to one unnamed file (see _spill_file)."""

    def __init__(self, dataset: Path):
        self.file = _spill_file(dataset)
        self.blocks: list[tuple[int, int, dict[str, int]]] = []
        self.height = self.offset = 0

    def append(self, cols: dict[str, np.ndarray]) -> None:
        rows = len(cols["kind"])
        if not rows:
            return
        offsets = {}
        for name, dtype in OP_COLUMNS:
            data = np.ascontiguousarray(cols[name], dtype=dtype)
            offsets[name] = self.offset
            self.file.write(data.data)
            self.offset += data.nbytes
        self.blocks.append((self.height, rows, offsets))
        self.height += rows

    def finish(self, ts_min: int, ts_max: int) -> Ops:
        self.file.flush()
        return Ops(self.height, ts_min, ts_max, file=self.file, blocks=self.blocks)


def _spill_file(dataset: Path):
    """An unnamed file (about 40 bytes an op) in $THPREPLAY_TMPDIR when set, else next to the dataset (the
    disk the user chose for this data; /tmp is often in memory), else in the system's temporary directory."""
    where = os.environ.get("THPREPLAY_TMPDIR") or dataset
    try:
        return tempfile.TemporaryFile(dir=where, prefix=".demand-")
    except OSError:
        return tempfile.TemporaryFile(prefix="thpreplay-demand-")


@dataclass
class Demand:
    ops: Ops  # kind, ts_ns, line, pfn, order, mt, pkind, node, region, madvised (a DataFrame is converted)
    faults: pl.DataFrame  # one row per THP fault: region (= fault index), fault_id, ts_ns, pid, comm, local_node, madvised, order, observed_outcome
    observed_huge: np.ndarray  # int8 per region
    used_at_start: np.ndarray  # pfns the trace shows in use before it began (freed before allocated)
    free_at_start: np.ndarray  # pfns the trace shows free when it began (allocated before freed)
    traced_pages: np.ndarray  # every pfn a small allocation of the trace uses
    pfns_by_migratetype: dict[int, np.ndarray]  # small allocations' pfns, unmovable (0) and reclaimable (2)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.ops, pl.DataFrame):
            self.ops = Ops.of(self.ops)


class _Parts:
    """A table's Parquet parts with the line range each holds (from its statistics), read one window of
    lines at a time: only the parts that overlap the window are opened."""

    def __init__(self, dataset: Path, table: str, columns: list[str]):
        self.files = sorted((dataset / table).glob("*.parquet"))
        if not self.files:
            raise InputError(str(dataset / table), "table missing from the dataset (run thpreplay ingest again)")
        self.columns = columns
        self.ranges = [_line_range(f) for f in self.files]

    def read(self, lo: int, hi: int) -> pl.DataFrame:
        chosen = [str(f) for f, (a, b) in zip(self.files, self.ranges) if b >= lo and a < hi]
        if not chosen:
            return pl.read_parquet(str(self.files[0]), columns=self.columns, n_rows=0, glob=False)
        frame = pl.read_parquet(chosen, columns=self.columns, glob=False)
        return frame.filter((pl.col("line") >= lo) & (pl.col("line") < hi))

    def scan(self) -> pl.LazyFrame:
        return pl.scan_parquet([str(f) for f in self.files], glob=False)


def _line_range(path: Path) -> tuple[int, int]:
    import pyarrow.parquet as pq  # the row groups' statistics; only a build reads them (not a cached demand)

    meta = pq.ParquetFile(path).metadata
    if meta.num_rows == 0:
        return (2**62, -1)  # overlaps no window of lines
    col = meta.schema.names.index("line")
    lo, hi = 2**62, -1
    for g in range(meta.num_row_groups):
        st = meta.row_group(g).column(col).statistics
        if st is None or not st.has_min_max:  # written without statistics: read the column once
            span = pl.scan_parquet(str(path), glob=False).select(pl.col("line").min().alias("a"), pl.col("line").max().alias("b")).collect()
            return (int(span["a"][0]), int(span["b"][0]))
        lo, hi = min(lo, st.min), max(hi, st.max)
    return (lo, hi)


def _madvised(enabled: str, defrag: str, override: bool | None) -> pl.Expr:
    """Whether each fault's VMA was madvised. With enabled=madvise only madvised VMAs get THP faults.
    Otherwise the direct-reclaim bit of the fault's masks tells it under defrag=madvise/defer+madvise
    (only madvised VMAs get __GFP_DIRECT_RECLAIM there, alloc_hugepage_direct_gfpmask()): the decoded
    bit of its first or last attempt (column `direct`), else the printed names. Other modes do not show it and the fault is
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


def _madvised_by_signatures(madvise_signatures: tuple[frozenset, frozenset] | None) -> pl.Expr | None:
    """Madvised or not from the decoded gfp bits of a fault's first and last attempts (columns t1, n1,
    d1 and t2, n2, d2: __GFP_THISNODE, __GFP_NORETRY, __GFP_DIRECT_RECLAIM), when the capturing
    kernel's era gives the two kinds of VMA attempts that differ (simulate._madvise_signatures): true if one
    is an attempt only madvised VMAs make, false if one only the others make, else null."""
    if madvise_signatures is None:
        return None

    def one_of(signatures: frozenset, k: int) -> pl.Expr:
        hit = pl.lit(False)
        for thisnode, noretry, direct in sorted(signatures):
            hit = hit | ((pl.col(f"t{k}") == thisnode) & (pl.col(f"n{k}") == noretry) & (pl.col(f"d{k}") == direct))
        return hit.fill_null(False)

    only_madvised, only_plain = madvise_signatures
    is_mad = one_of(only_madvised, 1) | one_of(only_madvised, 2)
    is_plain = one_of(only_plain, 1) | one_of(only_plain, 2)
    return pl.when(is_mad & ~is_plain).then(True).when(is_plain & ~is_mad).then(False).otherwise(None)


def build(dataset: Path, enabled: str, defrag: str, madvised: bool | None = None, *,
          window_lines: int = WINDOW_LINES, madvise_signatures: tuple[frozenset, frozenset] | None = None) -> Demand:
    with warnings.catch_warnings():
        # join_asof with `by` cannot check sortedness; every frame is sorted on `line` before it is joined
        warnings.filterwarnings("ignore", message="Sortedness of columns cannot be checked")
        try:
            return _Builder(Path(dataset), enabled, defrag, madvised, madvise_signatures).run(window_lines)
        except OSError as e:
            raise OutputError(f"{dataset}: writing the demand's op file failed: {e.strerror}") from None


def _carry_last(events: pl.DataFrame, value: str) -> pl.DataFrame:
    """Each task's last event (by line), as the rows that open the next window (line -1)."""
    return events.sort("line").group_by("pid").last().select(pl.lit(-1, pl.Int64).alias("line"), "pid", value)


class _Builder:
    """One pass over the trace, window by window. What crosses windows is held in the `carry_*` frames
    and the per-region arrays; everything else is window-local."""

    def __init__(self, dataset: Path, enabled: str, defrag: str, madvised: bool | None,
                 madvise_signatures: tuple[frozenset, frozenset] | None = None):
        self.dataset = dataset
        self.notes: list[str] = []
        self.counts: dict[str, int] = dict.fromkeys(
            ("frees_by_kernel_reclaim", "frees_by_kernel_migration", "failed_small_allocations",
             "region_4k_allocations"), 0)
        self.alloc = _Parts(dataset, "page_alloc", [
            "ts_ns", "line", "pid", "tgid", "cpu", "pfn", "success", "order", "migratetype", "gfp_flags", "thp_attempt",
            "node"])
        self.free = _Parts(dataset, "page_free", ["ts_ns", "line", "pid", "comm", "pfn", "order"])
        self.pfault = _Parts(dataset, "page_fault", ["event", "line", "pid", "address"])
        self.reclaim = _Parts(dataset, "reclaim", ["line", "pid", "event"])
        self.compaction = _Parts(dataset, "compaction", ["line", "pid", "event"])
        self.extfrag = _Parts(dataset, "extfrag", ["ts_ns", "line", "pfn", "alloc_migratetype", "fallback_order",
                                                   "change_ownership"])
        sources = self.alloc.scan().select(pl.col("source").unique()).collect()["source"].to_list()
        if len(sources) > 1:
            # events are ordered by their line in the trace; several traces have no common order
            raise InputError(str(dataset), f"simulate replays one trace per dataset; this one holds {len(sources)} "
                             f"({', '.join(sorted(sources))}): ingest each into its own dataset")
        self._faults(enabled, defrag, madvised, madvise_signatures)

    # -- THP faults: the demand side of each (no outcome, no placement); small, read whole --
    def _faults(self, enabled: str, defrag: str, madvised: bool | None,
                madvise_signatures: tuple[frozenset, frozenset] | None = None) -> None:
        faults = read_table(self.dataset, "thp_faults")
        # the decoded __GFP_DIRECT_RECLAIM, __GFP_THISNODE and __GFP_NORETRY bits of each fault's first and
        # last attempt (null if undecoded)
        attempts = self.alloc.scan().filter(pl.col("thp_attempt")).select(
            "line", "gfp_direct_reclaim", "gfp_thisnode", "gfp_noretry", "success").collect()
        bits = attempts.select("line", "gfp_direct_reclaim", "gfp_thisnode", "gfp_noretry")
        for k, at in ((1, "first_line"), (2, "last_line")):
            faults = faults.join(bits.rename({"line": at, "gfp_direct_reclaim": f"d{k}", "gfp_thisnode": f"t{k}",
                                              "gfp_noretry": f"n{k}"}), on=at, how="left")
        faults = faults.with_columns((pl.col("d1") | pl.col("d2")).alias("direct"))
        by_mask = _madvised_by_signatures(madvise_signatures) if madvised is None and enabled != "madvise" else None
        faults = faults.drop("region").sort("first_line").with_row_index("region").with_columns(
            pl.col("region").cast(pl.Int64),
            pl.coalesce("tgid", "pid").alias("mm"),
            (pl.col("address") // (REGION_PAGES * 4096)).cast(pl.Int64).alias("vregion"),
        )
        use_mask = by_mask is not None and defrag not in ("madvise", "defer+madvise")
        faults = faults.with_columns((by_mask if use_mask else _madvised(enabled, defrag, madvised)).alias("madvised"))
        unknown = int(faults["madvised"].null_count())
        if use_mask:
            # a fault whose attempts do not tell (the era's first, THISNODE attempt is the same either way
            # and succeeded) takes what its process's other faults show, else what most faults of the
            # capture that show it show, else madvised
            known = faults["madvised"].drop_nulls()
            overall = bool(known.cast(pl.Float64).mean() >= 0.5) if known.len() else True
            faults = faults.with_columns(pl.coalesce(
                "madvised", pl.col("madvised").cast(pl.Float64).mean().over("mm").round().cast(pl.Boolean),
                pl.lit(overall),
            ).alias("madvised"))
            shown = faults.height - unknown
            self.notes.append(f"defrag={defrag}: {shown:,} of {faults.height:,} faults show in their gfp masks whether "
                              f"their VMA was madvised; the others take their process's, else the capture's "
                              f"({int(faults['madvised'].sum()):,} madvised in all)")
        elif enabled not in ("madvise",) and defrag not in ("madvise", "defer+madvise") and madvised is None:
            self.notes.append(f"defrag={defrag}: whether a fault was madvised is not visible in the trace; taken as madvised")
        faults = faults.with_columns(pl.col("madvised").fill_null(True)).drop("d1", "d2", "t1", "t2", "n1", "n2")
        self.faults = faults
        self.fault_ops = faults.select(
            pl.lit(OP_THP, pl.Int8).alias("kind"), "ts_ns", pl.col("first_line").alias("line"),
            pl.lit(-1, pl.Int64).alias("pfn"), pl.col("first_order").cast(pl.Int8).alias("order"),
            pl.lit(1, pl.Int8).alias("mt"), pl.lit(PK_ANON, pl.Int8).alias("pkind"),
            pl.col("local_node").fill_null(0).cast(pl.Int16).alias("node"), "region",
            pl.col("madvised").cast(pl.Int8),
        )
        # huge pages the kernel placed: paired with their free only to know when the region ended
        self.huge_regions = faults.filter(pl.col("pfn").is_not_null()).select(
            "region", "pfn", pl.col("last_line").alias("line")).sort("line")
        self.keyed = faults.filter(pl.col("vregion").is_not_null()).select(
            pl.col("first_line").alias("line"), "mm", "vregion", pl.col("region").alias("thp_region")).sort("line")
        self.by_task = faults.select(pl.col("first_line").alias("line"), "pid", pl.col("region").alias("thp_region")).sort("line")
        # a small allocation's preferred node is its CPU's node, when the topology gives one
        self.local = faults.select("cpu", "local_node").unique("cpu")
        page_faults = self.pfault.scan().filter(pl.col("event") == "page_fault_user").select(pl.len()).collect().item()
        if page_faults and self.keyed.height:
            self.region_mode = "page_fault"
        elif faults.height:
            self.region_mode = "next_512"
            why = (f"none of the {faults.height:,} THP faults has a page fault of its task just before it (of "
                   f"{page_faults:,} page-fault events)" if page_faults else "no page-fault events")
            self.notes.append(f"{why}: 4 KiB pages of a fallback region approximated as the task's next "
                              "512 movable order-0 allocations")
        else:
            self.region_mode = "none"
            self.notes.append(no_demand_note(self.dataset))  # said once, plainly, by simulate, validate and report

    def run(self, window_lines: int) -> Demand:
        n = self.faults.height
        self.region_allocs = np.zeros(n, np.int64)  # a region's 4 KiB allocations ...
        self.region_freed = np.zeros(n, np.int64)   # ... how many of them were freed since
        self.region_last = np.full(n, -1, np.int64)  # the line and time of the last such free
        self.region_last_ts = np.zeros(n, np.int64)
        empty_pid = self.free.read(0, 0).select(pl.lit(-1, pl.Int64).alias("line"), "pid")
        self.carry_reclaim = empty_pid.with_columns(pl.lit(0, pl.Int8).alias("dir"))
        self.carry_compaction = self.carry_reclaim
        self.carry_fault = empty_pid.with_columns(pl.lit(0, pl.Int64).alias("vregion"))
        self.carry_next512 = pl.DataFrame(schema={"cand": pl.Int64, "seen": pl.Int64})
        self.carry_huge = self.huge_regions.clear()
        self.carry_base = pl.DataFrame(schema={"pfn": pl.Int64, "line": pl.Int64, "region": pl.Int64})
        self.first = pl.DataFrame(schema={"pfn": pl.Int64, "order": pl.Int16, "alloc": pl.Boolean})
        self.traced = np.empty(0, np.int64)
        self.by_mt = {0: np.empty(0, np.int64), 2: np.empty(0, np.int64)}
        self.huge_releases: list[pl.DataFrame] = []
        self.ts_min, self.ts_max = 2**63 - 1, -(2**63)

        spill = _OpWriter(self.dataset)
        lines = [*self.alloc.ranges, *self.free.ranges, *((ln, ln) for ln in self.fault_ops["line"])]
        first = min((a for a, b in lines if b >= 0), default=0)
        last = max((b for a, b in lines), default=-1)
        for lo in range(max(first, 0), last + 1, window_lines):
            spill.append(self._window(lo, lo + window_lines))
        releases = self._releases()
        ops = self._merge(spill.finish(0, 0), releases)
        return self._finish(ops, releases)

    def _window(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        free = self._frees(lo, hi)
        release_huge = self._pair_huge(free, lo, hi)
        free = free.with_columns(pl.col("line").is_in(release_huge["line"].implode()).alias("is_huge_release"))
        demand_frees = free.filter(~pl.col("kernel_own") & ~pl.col("is_huge_release"))

        alloc = self.alloc.read(lo, hi)
        self.counts["failed_small_allocations"] += alloc.filter(~pl.col("thp_attempt") & ~pl.col("success")).height
        small = alloc.filter(~pl.col("thp_attempt") & pl.col("success") & (pl.col("pfn") > 0)).sort("line").with_columns(
            pl.when(pl.col("migratetype") != 1).then(pl.lit(PK_PINNED))
            .when(pl.col("gfp_flags").str.contains("__GFP_ZERO") | (pl.col("order") == 0) & pl.col("gfp_flags").str.contains("GFP_HIGHUSER_MOVABLE"))
            .then(pl.lit(PK_ANON)).otherwise(pl.lit(PK_FILE)).cast(pl.Int8).alias("pkind"),
            pl.coalesce("tgid", "pid").alias("mm"),
        )
        small = self._regions(small, lo, hi)
        self._pair_base(small, demand_frees)
        self._evidence(small, demand_frees)

        alloc_ops = small.join(self.local, on="cpu", how="left").select(
            pl.lit(OP_ALLOC, pl.Int8).alias("kind"), "ts_ns", "line", "pfn", pl.col("order").cast(pl.Int8),
            pl.col("migratetype").clip(0, 2).cast(pl.Int8).alias("mt"), "pkind",
            (pl.col("local_node") if self.local.height else pl.col("node")).fill_null(-1).cast(pl.Int16).alias("node"),
            pl.col("region").fill_null(-1), pl.lit(0, pl.Int8).alias("madvised"),
        )
        free_ops = self._page_ops(demand_frees, OP_FREE)
        migrate_ops = self._page_ops(free.filter(pl.col("by_migration") & ~pl.col("is_huge_release")), OP_MIGRATE)
        fault_ops = self.fault_ops.filter((pl.col("line") >= lo) & (pl.col("line") < hi))
        # a fallback of the trace's own small allocations (mm_page_alloc_extfrag): where the kernel took a
        # page from another migratetype's free list; the model boosts the watermarks for it (5.0+) and
        # follows a change of the pageblock's owner (pkind carries change_ownership)
        steal_ops = self.extfrag.read(lo, hi).filter(pl.col("pfn") > 0).select(
            pl.lit(OP_STEAL, pl.Int8).alias("kind"), "ts_ns", "line", "pfn",
            pl.col("fallback_order").clip(0, 10).cast(pl.Int8).alias("order"),
            pl.col("alloc_migratetype").clip(0, 2).cast(pl.Int8).alias("mt"),
            pl.col("change_ownership").cast(pl.Int8).fill_null(0).alias("pkind"), pl.lit(-1, pl.Int16).alias("node"),
            pl.lit(-1, pl.Int64).alias("region"), pl.lit(0, pl.Int8).alias("madvised"),
        )
        ops = pl.concat([alloc_ops, free_ops, fault_ops, migrate_ops, steal_ops]).sort(["line", "kind"])
        if ops.height:
            self.ts_min = min(self.ts_min, ops["ts_ns"].min())
            self.ts_max = max(self.ts_max, ops["ts_ns"].max())
        return to_columns(ops)

    @staticmethod
    def _page_ops(frees: pl.DataFrame, kind: int) -> pl.DataFrame:
        return frees.select(
            pl.lit(kind, pl.Int8).alias("kind"), "ts_ns", "line", "pfn", pl.col("order").cast(pl.Int8),
            pl.lit(0, pl.Int8).alias("mt"), pl.lit(0, pl.Int8).alias("pkind"), pl.lit(-1, pl.Int16).alias("node"),
            pl.lit(-1, pl.Int64).alias("region"), pl.lit(0, pl.Int8).alias("madvised"),
        )

    # -- the kernel's own frees are not demand: reclaim (the model reclaims itself) is dropped; a free
    #    inside compaction or by kcompactd is a migration, replayed as such (MIGRATE) --
    def _frees(self, lo: int, hi: int) -> pl.DataFrame:
        free = self.free.read(lo, hi).filter(pl.col("pfn") > 0).sort("line")
        in_reclaim, self.carry_reclaim = self._inside(free, self.reclaim.read(lo, hi), _RECLAIM_PAIR, self.carry_reclaim)
        in_compaction, self.carry_compaction = self._inside(free, self.compaction.read(lo, hi), _COMPACTION_PAIR,
                                                            self.carry_compaction)
        free = free.with_columns(
            (in_reclaim | pl.col("comm").str.starts_with("kswapd")).alias("by_reclaim"),
        ).with_columns(
            (in_compaction | pl.col("comm").str.starts_with("kcompactd")).and_(~pl.col("by_reclaim")).alias("by_migration"),
        ).with_columns((pl.col("by_reclaim") | pl.col("by_migration")).alias("kernel_own"))
        self.counts["frees_by_kernel_reclaim"] += int(free["by_reclaim"].sum())
        self.counts["frees_by_kernel_migration"] += int(free["by_migration"].sum())
        return free

    @staticmethod
    def _inside(rows: pl.DataFrame, events: pl.DataFrame, pair: dict[str, int],
                carry: pl.DataFrame) -> tuple[pl.Series, pl.DataFrame]:
        """Whether each row (by line, per task) falls between a begin and an end event of the pair;
        `carry` is each task's last such event before this window of lines."""
        w = events.filter(pl.col("event").is_in(list(pair))).select(
            "line", "pid", pl.col("event").replace_strict(pair, return_dtype=pl.Int8).alias("dir"))
        both = pl.concat([carry, w]).sort("line")
        if not both.height:
            return pl.Series([False] * rows.height), carry
        joined = rows.select("line", "pid").join_asof(both, on="line", by="pid", strategy="backward")
        return joined["dir"].fill_null(-1) == 1, _carry_last(both, "dir")

    def _pair_huge(self, free: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
        """Huge pages the trace freed in this window: each observed huge region ends at the first free of
        its pfn at order >= 9 after it was placed. Only the workload's own frees end a region: a huge page
        freed inside reclaim was swapped out (or split) by the kernel, a decision the model makes itself."""
        regions = pl.concat([self.carry_huge, self.huge_regions.filter((pl.col("line") >= lo) & (pl.col("line") < hi))])
        huge_frees = free.filter((pl.col("order") >= 9) & ~pl.col("kernel_own")).select(
            "pfn", pl.col("line").alias("free_line"), pl.col("ts_ns").alias("free_ts"))
        paired = regions.sort("line").join_asof(huge_frees.with_columns(pl.col("free_line").alias("line")),
                                                on="line", by="pfn", strategy="forward")
        self.carry_huge = paired.filter(pl.col("free_line").is_null()).select(self.huge_regions.columns)
        released = paired.filter(pl.col("free_line").is_not_null()).select(
            "region", pl.col("free_line").alias("line"), pl.col("free_ts").alias("ts_ns"))
        self.huge_releases.append(released)
        return released

    # -- 4 KiB allocations of THP regions --
    def _regions(self, small: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
        anon0 = (pl.col("pkind") == PK_ANON) & (pl.col("order") == 0)
        if self.region_mode == "page_fault":
            pf = self.pfault.read(lo, hi).filter(pl.col("event") == "page_fault_user").select(
                "line", "pid", (pl.col("address") // (REGION_PAGES * 4096)).cast(pl.Int64).alias("vregion"))
            pf = pl.concat([self.carry_fault, pf]).sort("line")
            self.carry_fault = _carry_last(pf, "vregion")
            small = small.join_asof(pf, on="line", by="pid", strategy="backward")
            # the latest THP fault of that (mm, region) before this allocation
            small = small.sort("line").join_asof(self.keyed, on="line", by=["mm", "vregion"], strategy="backward")
            small = small.with_columns(pl.when(anon0).then(pl.col("thp_region")).otherwise(None).alias("region"))
        elif self.region_mode == "next_512":
            small = small.join_asof(self.by_task, on="line", by="pid", strategy="backward")
            small = small.with_columns(pl.when(anon0).then(pl.col("thp_region")).otherwise(None).alias("cand"))
            small = small.with_columns(pl.col("line").rank("ordinal").over("cand").cast(pl.Int64).alias("rank"))
            small = small.join(self.carry_next512, on="cand", how="left").with_columns(
                pl.col("rank") + pl.col("seen").fill_null(0))
            seen = small.filter(pl.col("cand").is_not_null()).group_by("cand").agg(pl.col("rank").max().alias("seen"))
            self.carry_next512 = pl.concat([self.carry_next512.join(seen, on="cand", how="anti"), seen])
            small = small.with_columns(pl.when(pl.col("rank") <= REGION_PAGES).then(pl.col("cand")).otherwise(None).alias("region"))
        else:
            small = small.with_columns(pl.lit(None, pl.Int64).alias("region"))
        small = small.with_columns(pl.col("region").cast(pl.Int64)).sort("line")
        self.counts["region_4k_allocations"] += int(small["region"].is_not_null().sum())
        return small

    def _pair_base(self, small: pl.DataFrame, demand_frees: pl.DataFrame) -> None:
        """A base region ends with the last free of its 4 KiB pages, once every one of them was freed:
        each region allocation is paired with the next free of its pfn (in this window or a later one)."""
        reg_allocs = small.filter(pl.col("region").is_not_null()).select("pfn", "line", "region")
        if reg_allocs.height:
            per = reg_allocs.group_by("region").len()
            np.add.at(self.region_allocs, per["region"].to_numpy(), per["len"].to_numpy())
        pending = pl.concat([self.carry_base, reg_allocs]).sort("line")
        frees = demand_frees.select("pfn", pl.col("line").alias("free_line"), pl.col("ts_ns").alias("free_ts"))
        paired = pending.join_asof(frees.with_columns(pl.col("free_line").alias("line")).sort("line"),
                                   on="line", by="pfn", strategy="forward")
        self.carry_base = paired.filter(pl.col("free_line").is_null()).select("pfn", "line", "region")
        done = paired.filter(pl.col("free_line").is_not_null()).group_by("region").agg(
            pl.len().alias("n"), pl.col("free_line").max().alias("last"),
            pl.col("free_ts").sort_by("free_line").last().alias("ts"))
        if done.height:
            r = done["region"].to_numpy()
            np.add.at(self.region_freed, r, done["n"].to_numpy())
            self.region_last[r] = done["last"].to_numpy()  # later windows have later lines
            self.region_last_ts[r] = done["ts"].to_numpy()

    # -- evidence about the start (a page's first event) and the pages the trace uses --
    def _evidence(self, small: pl.DataFrame, demand_frees: pl.DataFrame) -> None:
        events = pl.concat([
            small.select("pfn", "order", "line", pl.lit(True).alias("alloc")),
            # the kernel's own frees (reclaim, migration: isolated free pages released too) say nothing of the start
            demand_frees.select("pfn", "order", "line", pl.lit(False).alias("alloc")),
        ]).filter(pl.col("order") < 9)
        first = events.sort("line").group_by("pfn", maintain_order=True).first().select("pfn", "order", "alloc")
        self.first = pl.concat([self.first, first.join(self.first, on="pfn", how="anti")])
        small = small.filter(pl.col("order") < 9)
        self.traced = _union(self.traced, _pages(small))
        for mt in self.by_mt:
            self.by_mt[mt] = _union(self.by_mt[mt], _unique(small.filter(pl.col("migratetype") == mt)["pfn"].to_numpy()))

    def _releases(self) -> pl.DataFrame:
        """Every region's end: huge regions at their huge page's free, base regions at the last free of their
        4 KiB pages when all were freed (regions where the kernel placed a huge page end only that way)."""
        observed = self.faults["pfn"].is_not_null().to_numpy()
        base = np.flatnonzero((self.region_allocs > 0) & (self.region_freed == self.region_allocs) & ~observed)
        base_release = pl.DataFrame({"region": base, "line": self.region_last[base], "ts_ns": self.region_last_ts[base]},
                                    schema={"region": pl.Int64, "line": pl.Int64, "ts_ns": pl.Int64})
        releases = pl.concat([*self.huge_releases, base_release]).sort("region")
        self.counts["releases"] = releases.height
        return releases

    def _merge(self, main: Ops, releases: pl.DataFrame) -> Ops:
        """The op stream with the releases in place (after the other ops of their line), in a new file."""
        rel = to_columns(releases.sort(["line", "region"]).select(
            pl.lit(OP_RELEASE, pl.Int8).alias("kind"), "ts_ns", "line", pl.lit(-1, pl.Int64).alias("pfn"),
            pl.lit(9, pl.Int8).alias("order"), pl.lit(0, pl.Int8).alias("mt"), pl.lit(0, pl.Int8).alias("pkind"),
            pl.lit(-1, pl.Int16).alias("node"), "region", pl.lit(0, pl.Int8).alias("madvised")))
        nrel = releases.height
        if nrel:
            self.ts_min = min(self.ts_min, int(rel["ts_ns"].min()))
            self.ts_max = max(self.ts_max, int(rel["ts_ns"].max()))
        ts = (self.ts_min, self.ts_max) if main.height + nrel else (0, 0)
        if not nrel:
            return Ops(main.height, *ts, file=main._file, blocks=main._blocks)
        merged = _OpWriter(self.dataset)
        taken = 0
        for start in range(0, main.height, _MERGE_CHUNK):
            chunk = main.read(start, _MERGE_CHUNK)
            end = start + len(chunk["line"])
            upto = nrel if end >= main.height else int(np.searchsorted(rel["line"], main.read(end, 1, ("line",))["line"][0]))
            at = np.searchsorted(chunk["line"], rel["line"][taken:upto], side="right")
            merged.append({name: np.insert(chunk[name], at, rel[name][taken:upto]) for name in OP_NAMES})
            taken = upto
        if taken < nrel:  # no other op at all
            merged.append({name: rel[name][taken:] for name in OP_NAMES})
        main._file.close()
        return merged.finish(*ts)

    def _finish(self, ops: Ops, releases: pl.DataFrame) -> Demand:
        pages = self.first.with_columns(
            pl.int_ranges(pl.col("pfn"), pl.col("pfn") + pl.lit(2, pl.Int64).pow(pl.col("order")).cast(pl.Int64)).alias("page")
        ).explode("page")
        used_at_start = _unique(pages.filter(~pl.col("alloc"))["page"].to_numpy())
        free_at_start = _unique(pages.filter(pl.col("alloc"))["page"].to_numpy())
        faults = self.faults
        observed = faults["pfn"].is_not_null().to_numpy().astype(np.int8)
        fault_table = faults.select(
            "region", "fault_id", "ts_ns", "pid", "comm", "cpu", "local_node", "madvised",
            pl.col("first_order").alias("order"), pl.col("outcome").alias("observed_outcome"),
            pl.col("node").alias("observed_node"),
        )
        self.counts.update(ops=ops.height, thp_faults=faults.height)
        return Demand(ops=ops, faults=fault_table, observed_huge=observed, used_at_start=used_at_start,
                      free_at_start=free_at_start, traced_pages=self.traced, pfns_by_migratetype=self.by_mt,
                      notes=self.notes, counts=self.counts)


_MERGE_CHUNK = 1 << 20


def _pages(small: pl.DataFrame) -> np.ndarray:
    span = pl.col("pfn") + pl.lit(2, pl.Int64).pow(pl.col("order")).cast(pl.Int64)
    return _unique(small.select(pl.int_ranges("pfn", span).alias("p")).explode("p")["p"].to_numpy())


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a sort and a compare: several times faster than np.unique's hashing here)."""
    s = np.sort(values)
    return s[np.concatenate(([True], s[1:] != s[:-1]))] if len(s) else s


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two sorted distinct arrays (a stable sort merges the two runs in linear time)."""
    s = np.sort(np.concatenate((a, b)), kind="stable")
    return s[np.concatenate(([True], s[1:] != s[:-1]))] if len(s) else s
