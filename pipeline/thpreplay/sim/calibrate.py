"""Cost parameters measured from the capture itself (issue 13 item 2).

The trace shows how long the capturing machine took: direct compaction and kcompactd runs
(mm_compaction_begin .. mm_compaction_end, with mm_compaction_migratepages batches in between), direct
reclaim (mm_vmscan_direct_reclaim_begin .. _end with nr_reclaimed) and kswapd's awake periods
(mm_vmscan_kswapd_wake .. mm_vmscan_kswapd_sleep). `calibrate` turns them into values of the model's
cost parameters (sim/params.py), so that a slow machine (a QEMU TCG guest) is replayed at its own speed
without a hand-made `--params` file.

Rules common to every estimate:
- begin and end events are paired per thread in (ts_ns, line) order: a begin directly followed by an end
  of the same thread is a run; a begin followed by another begin, and an end without its begin (cut off
  at the trace's edges), are ignored, and so is what happens between them;
- per-call and per-page costs of the faulting task are medians (robust to the odd preempted or
  interrupted run) and need at least MIN_SAMPLES samples (MIN_CALLS for compact_call_us), else the
  parameter keeps its default;
- the background threads (kcompactd, kswapd) are given their throughput in trace time instead, a ratio
  of totals: the model uses their cost to spread their work over the trace, and they run a few long
  periods per capture (see _kcompactd, _kswapd);
- a value is floored at MIN_US (the trace clock, 1 µs in ftrace's default format, can be too coarse).

Each Estimate says how many samples it came from and what they were; `calibrate` returns only the
parameters the capture supports (an empty list for a capture without these events). Each also keeps
its samples' scatter as `draw(rng)`: the same statistic over a bootstrap resample of its samples (the
per-event values drawn with replacement; for a ratio of totals, the runs or periods), which
`simulate --samples` uses to draw the cost within what the capture measured (sim/samples.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import polars as pl

from thpreplay.errors import InputError
from thpreplay.sim.params import Params
from thpreplay.sim.state import read_table

MIN_SAMPLES = 3
# compact_call_us needs more: a run that isolates nothing either gives up at once or scans the whole
# zone, two costs 10-100 times apart, and a median of 3-5 such runs is a coin toss (fidelity TCG
# captures of one scenario: 7 µs from 3 runs, 4,650 µs from 4; from 27 or more runs, 47-79 µs)
MIN_CALLS = 10
MIN_US = 0.01
# kswapd_try_to_sleep naps HZ/10 (100 ms whatever HZ is) on a balanced node before it sleeps for good,
# and mm_vmscan_kswapd_sleep is traced only when that nap ran out: a wake..sleep period ends with at
# least 100 ms in which kswapd did no work.
KSWAPD_NAP_NS = 100_000_000

BEGIN, END, MIGRATE = "mm_compaction_begin", "mm_compaction_end", "mm_compaction_migratepages"
RECLAIM_BEGIN, RECLAIM_END = "mm_vmscan_direct_reclaim_begin", "mm_vmscan_direct_reclaim_end"
KSWAPD_WAKE, KSWAPD_SLEEP = "mm_vmscan_kswapd_wake", "mm_vmscan_kswapd_sleep"


@dataclass(frozen=True)
class Estimate:
    param: str          # a Params field name
    value: float
    count: int          # how many samples it came from
    source: str         # short human description of the samples and the statistic
    # the statistic over a bootstrap resample of the samples: draw(rng) -> a value (None: not drawn)
    draw: Callable[[np.random.Generator], float] | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        return dict(param=self.param, value=self.value, count=self.count, source=self.source)


# The draws are small classes, not closures, so that prepared inputs holding them pickle (a sweep's
# workers pass them between processes).
class _BootMedian:
    """A bootstrap median of `values` (x scale - offset, floored; rounded for a count): the scatter."""

    def __init__(self, values, scale: float = 1.0, offset: float = 0.0, floor: float = MIN_US,
                 whole: bool = False):
        self.values, self.scale, self.offset, self.floor, self.whole = (
            np.asarray(values, dtype=np.float64), scale, offset, floor, whole)

    def __call__(self, rng: np.random.Generator) -> float:
        m = float(np.median(rng.choice(self.values, size=len(self.values))))
        return float(max(round(m), 1)) if self.whole else max(m * self.scale - self.offset, self.floor)


class _BootRatio:
    """A bootstrap ratio of totals, resampling the units (runs, periods) that give num and den."""

    def __init__(self, num, den):
        self.num, self.den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)

    def __call__(self, rng: np.random.Generator) -> float:
        k = rng.integers(0, len(self.num), size=len(self.num))
        return max(float(self.num[k].sum()) / max(float(self.den[k].sum()), 1.0), MIN_US)


class _BootShare:
    """A proportion's bootstrap: how many of n trials would succeed at rate p, over n."""

    def __init__(self, n: int, p: float):
        self.n, self.p = n, p

    def __call__(self, rng: np.random.Generator) -> float:
        return float(rng.binomial(self.n, self.p)) / self.n


_boot_median, _boot_ratio = _BootMedian, _BootRatio


def describe(e: Estimate) -> str:
    """One line for simulate's notes (printed as `note: ...`)."""
    return f"{e.param} = {_fmt(e.value)} measured in the capture: {e.source}"


def overrides(estimates: list[Estimate], explicit: tuple[str, ...] | list[str] = ()) -> dict[str, float]:
    """The estimates as Params values, except those a --params file set (they win)."""
    defaults = Params()
    return {e.param: type(getattr(defaults, e.param))(e.value) for e in estimates if e.param not in explicit}


def calibrate(dataset) -> list[Estimate]:
    """The cost parameters the capture's own timings support, in Params field order."""
    dataset = Path(dataset)
    out: list[Estimate] = []
    faults = _table(dataset, "thp_faults", ["latency_ns", "stall_ns", "compaction_calls", "reclaim_calls", "outcome"])
    if faults is not None and faults.height:
        out += _fault_entry(faults)
    comp = _table(dataset, "compaction", ["ts_ns", "pid", "comm", "event", "mode", "status", "nr_migrated",
                                          "nr_failed", "line"])
    if comp is not None and comp.height:
        runs, batches = _compaction_runs(comp)
        out += _direct_compaction(runs, batches)
        out += _contention(runs)
        out += _kcompactd(runs, batches)
    rec = _table(dataset, "reclaim", ["ts_ns", "pid", "event", "nr_reclaimed", "line"])
    if rec is not None and rec.height:
        out += _direct_reclaim(rec)
        out += _kswapd(dataset, rec)
    order = {f.name: i for i, f in enumerate(fields(Params))}
    return sorted(out, key=lambda e: (order.get(e.param, len(order)), e.param))


# ---------- reading ----------

def _table(dataset: Path, table: str, columns: list[str]) -> pl.DataFrame | None:
    try:
        return read_table(dataset, table, columns)
    except InputError:
        return None  # calibration is optional: a missing table only means no estimate from it


def _trace_span(dataset: Path, fallback: pl.Series) -> tuple[int, int]:
    """The trace's first and last timestamp (metadata ts_min_ns / ts_max_ns)."""
    meta = _table(dataset, "metadata", ["key", "value"])
    span = {}
    if meta is not None:
        for k, v in meta.filter(pl.col("key").is_in(["ts_min_ns", "ts_max_ns"])).iter_rows():
            try:
                span[k] = int(json.loads(v))
            except (TypeError, ValueError):
                pass
    return span.get("ts_min_ns", int(fallback.min())), span.get("ts_max_ns", int(fallback.max()))


def _vmstat_delta(dataset: Path, counter: str) -> int | None:
    vm = _table(dataset, "vmstat", ["scope", "counter", "delta"])
    if vm is None:
        return None
    row = vm.filter((pl.col("scope") == "system") & (pl.col("counter") == counter) & pl.col("delta").is_not_null())
    return int(row["delta"][0]) if row.height else None


def _kswapd_frees(dataset: Path) -> pl.DataFrame | None:
    """Pages kswapd freed (page_free rows of a kswapd* thread: what it reclaimed), or None when the trace
    has none. Only the matching rows are read (predicate pushed into the Parquet scan)."""
    files = sorted((dataset / "page_free").glob("*.parquet"))
    if not files:
        return None
    try:
        f = (pl.scan_parquet([str(p) for p in files], glob=False)
             .filter(pl.col("comm").str.starts_with("kswapd"))
             .select("pid", "ts_ns", pages=pl.lit(2, pl.Int64).pow(pl.col("order").fill_null(0).cast(pl.Int64)))
             .collect())
    except (OSError, pl.exceptions.PolarsError):
        return None
    return f if f.height else None


# ---------- pairing ----------

def _pairs(ev: pl.DataFrame, begin: str, end: str, key: str) -> pl.DataFrame:
    """Rows of `begin` directly followed (per `key`, in (ts_ns, line) order) by `end`, with the end row's
    columns suffixed _end. `ev` must be sorted by key, ts_ns, line."""
    marks = ev.filter(pl.col("event").is_in([begin, end]))
    marks = marks.with_columns(pl.col(c).shift(-1).over(key).alias(f"{c}_end") for c in marks.columns if c != key)
    return marks.filter((pl.col("event") == begin) & (pl.col("event_end") == end))


def _compaction_runs(comp: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Closed compaction runs, one row each (pid, run, comm, mode, dur_us, migrated, batches), and the
    migration batches inside them that moved a page, one row each (pid, run, comm, mode, nr_migrated,
    dt_us = the time since the run's begin or its previous batch that moved a page)."""
    moved = (pl.col("event") == MIGRATE) & (pl.col("nr_migrated").fill_null(0) > 0)
    ev = (comp.filter(pl.col("event").is_in([BEGIN, END, MIGRATE]))
          .sort(["pid", "ts_ns", "line"])
          .with_columns(
              run=(pl.col("event") == BEGIN).cast(pl.Int64).cum_sum().over("pid"),
              # inside a run: the last begin/end before the row is a begin
              inside=pl.when(pl.col("event") != MIGRATE).then(pl.col("event")).forward_fill().over("pid") == BEGIN,
              # the last begin or page-moving batch before the row: a batch whose pages all failed is
              # counted as overhead of the next batch that moves pages
              anchor=pl.when((pl.col("event") == BEGIN) | moved).then(pl.col("ts_ns"))
                       .shift(1).forward_fill().over("pid"),
          ))
    runs = _pairs(ev.select("pid", "ts_ns", "line", "event", "comm", "mode", "run", "status"), BEGIN, END, "pid")
    runs = runs.select("pid", "run", "comm", "mode", status="status_end",
                       dur_us=(pl.col("ts_ns_end") - pl.col("ts_ns")) / 1000.0)
    inside = (ev.filter((pl.col("event") == MIGRATE) & pl.col("inside"))
              .select("pid", "run", "ts_ns", "line", "anchor", nr_migrated=pl.col("nr_migrated").fill_null(0),
                      nr_failed=pl.col("nr_failed").fill_null(0))
              .join(runs.select("pid", "run", "comm", "mode"), on=["pid", "run"], how="inner"))
    per_run = inside.sort(["pid", "ts_ns", "line"]).group_by(["pid", "run"]).agg(
        migrated=pl.col("nr_migrated").sum(), batches=pl.len(),
        last_moved=pl.col("nr_migrated").last() > 0)
    runs = (runs.join(per_run, on=["pid", "run"], how="left")
            .with_columns(pl.col("migrated").fill_null(0), pl.col("batches").fill_null(0),
                          pl.col("last_moved").fill_null(False)))
    batches = (inside.filter(pl.col("nr_migrated") > 0)
               .select("pid", "run", "comm", "mode", "nr_migrated",
                       dt_us=(pl.col("ts_ns") - pl.col("anchor")) / 1000.0))
    return runs, batches


def _kthread(prefix: str) -> pl.Expr:
    return pl.col("comm").str.starts_with(prefix)


def _direct() -> pl.Expr:
    """Direct compaction in async mode: the THP fault path's first attempt. The model charges a sync-light
    compaction these costs times sync_light_factor, so sync runs are left out."""
    return ~_kthread("kcompactd") & ~_kthread("kswapd") & (pl.col("mode") == "async")


# ---------- the estimates ----------

def _fault_entry(faults: pl.DataFrame) -> list[Estimate]:
    """fault_entry_us and thp_prep_us, from the THP faults whose page-fault event the trace has
    (latency_ns as the schemas define it: the page-fault event to the last attempt's return).

    fault_entry_us: the median of latency_ns - stall_ns over the faults that entered the slowpath (a
    compaction or reclaim call): the time before their first slowpath event, i.e. the fault's own
    handling and the fast-path attempt that failed.

    thp_prep_us: the median latency_ns of the faults that got a huge page on the fast path, less
    fault_entry_us (the default when the first estimate is missing), floored at 0: what the kernel did
    between finding the page and returning it. On a kernel with init_on_alloc=1 this is zeroing 2 MiB
    in post_alloc_hook(), which Debian's 5.10, 6.1 and 6.12 kernels do by default
    (CONFIG_INIT_ON_ALLOC_DEFAULT_ON=y; qemu-6.1-2node: 10.9 ms a fault under TCG against a 42 µs entry)."""
    timed = faults.filter(pl.col("latency_ns").is_not_null())
    slow = timed.filter(pl.col("stall_ns") > 0)
    slow = (slow["latency_ns"] - slow["stall_ns"])
    out = []
    entry = Params().fault_entry_us
    if slow.len() >= MIN_SAMPLES:
        entry = max(float(slow.median()) / 1000.0, MIN_US)
        out.append(Estimate("fault_entry_us", entry, slow.len(),
                            f"median time from the page-fault event to the first compaction or reclaim event of "
                            f"{_n(slow.len(), 'THP fault')} that entered the slowpath",
                            _boot_median(slow.to_numpy(), 1 / 1000.0)))
    fast = timed.filter((pl.col("stall_ns") == 0) & (pl.col("compaction_calls") == 0)
                        & (pl.col("reclaim_calls") == 0) & (pl.col("outcome") != "fallback"))["latency_ns"]
    if fast.len() >= MIN_SAMPLES:
        prep = max(float(fast.median()) / 1000.0 - entry, 0.0)
        out.append(Estimate("thp_prep_us", prep, fast.len(),
                            f"median latency of {_n(fast.len(), 'THP fault')} served on the fast path, less "
                            "fault_entry_us (the page's preparation before the allocation returns)",
                            _boot_median(fast.to_numpy(), 1 / 1000.0, entry, 0.0)))
    return out


def _direct_compaction(runs: pl.DataFrame, batches: pl.DataFrame) -> list[Estimate]:
    """compact_call_us and migrate_us_per_page from direct (not kcompactd or kswapd) async compaction.

    compact_call_us: the median duration (begin..end) of the runs that isolated nothing to migrate (no
    migratepages event): the model charges a call that migrates nothing compact_call_us. It includes the
    scanning of such a run, which on a fragmented machine is most of it. A run whose every migration
    failed is not one of them: the model never fails a migration, so its counterpart moves pages, and on
    TCG such runs take 0.2-31 ms (fidelity/6.1-s1-fragmented-movable-r2, -r3: all of their 4-5 runs
    without a moved page are of this kind), a median of which would be no call's cost.

    migrate_us_per_page: the median, over the migration batches of these runs (one
    mm_compaction_migratepages event, up to COMPACT_CLUSTER_MAX = 32 pages or a few large folios), of the
    time since the run's begin or its previous page-moving batch per page migrated. This is the cost of
    finding, isolating and moving a batch, the scanning for it included. Not the per-run
    (duration - compact_call_us) / pages: a run's time after its last batch is scanning that finds nothing
    more (a failure's cost, not a page's), so per run the figure follows how far the scanners went after
    the last batch rather than the pages (local-6.18-ftrace: runs of 2-3 ms moving 2-72 pages, 84 µs a
    page per run, 7 per batch), and subtracting the median no-migration run, which on a fragmented machine
    is a full scan, from short successful runs leaves nothing (local-6.18-kpf: 53 of 124 runs <= 0).
    Pages are nr_migrated, not nr_migrated + nr_failed: the model never fails a migration and charges
    migrate_us_per_page per page it moves, and an async failure is cheap (a locked, dirty or writeback
    page is given up without a copy), so the time of failed batches is counted as overhead of the next
    batch that moves pages.

    scan_ns_per_page is not estimated. The obvious per-run scan count, the distance the scanners moved
    ((end.migrate_pfn - begin.migrate_pfn) + (begin.free_pfn - end.free_pfn)), is not the number of pages
    scanned: pageblocks with the skip bit, the fast_find_migrateblock / fast_isolate_freepages jumps and
    the cached scanner positions are passed over without looking at their pages (on the TCG capture
    fidelity/6.1-s1-fragmented-movable runs of 40-80 µs "cover" 192,000 pfns: 0.2-0.4 ns a page on a
    machine 50-100 times slower than hardware). The real counts (compact_migrate_scanned,
    compact_free_scanned) exist only as capture-wide vmstat totals, shared with kcompactd, and without
    mm_compaction_isolate_* events (not traced by the bundled captures) there is no per-run count.
    Scanning stays inside the two costs above; the model's own scan_ns_per_page x scanned (5 ns a page by
    default) is small beside them."""
    out = []
    direct = runs.filter(_direct())
    calls = direct.filter(pl.col("batches") == 0)["dur_us"]
    if calls.len() >= MIN_CALLS:
        out.append(Estimate("compact_call_us", max(float(calls.median()), MIN_US), calls.len(),
                            f"direct compaction, median duration (begin..end) of {calls.len()} async runs that "
                            "isolated no page to migrate", _boot_median(calls.to_numpy())))
    b = batches.filter(_direct())
    if b.height >= MIN_SAMPLES:
        per_page = (b["dt_us"] / b["nr_migrated"]).median()
        nruns = b.select(pl.struct("pid", "run").n_unique()).item()
        out.append(Estimate("migrate_us_per_page", max(float(per_page), MIN_US), b.height,
                            f"direct compaction, median of {b.height} migration batches in {_n(nruns, 'async run')} "
                            f"(time since the begin or the previous batch, per page migrated; "
                            f"{int(b['nr_migrated'].sum()):,} pages)",
                            _boot_median((b["dt_us"] / b["nr_migrated"]).to_numpy())))
    return out


def _kcompactd(runs: pl.DataFrame, batches: pl.DataFrame) -> list[Estimate]:
    """kcompactd_us_per_page: kcompactd's time per page it migrated, over its closed runs that migrated
    a page: the sum of their durations (begin..end) over the sum of their pages. A ratio of totals, not a
    median of runs: kcompactd runs once or twice per wake-up (one to three runs in each bundled capture),
    each of up to tens of thousands of pages, and the model uses this cost to spread kcompactd's work over
    trace time, which is its throughput, preemption by the faulting task on the same CPU included. A
    median of the runs would let a run of 274 pages in 267 ms stand for one of 44,893 pages in 5.1 s
    (qemu-6.1-2node-kpf). Needs MIN_SAMPLES migration batches in those runs."""
    k = runs.filter(_kthread("kcompactd") & (pl.col("migrated") > 0))
    nbatches = batches.filter(_kthread("kcompactd")).height
    if not k.height or nbatches < MIN_SAMPLES:
        return []
    pages = int(k["migrated"].sum())
    value = float(k["dur_us"].sum()) / pages
    return [Estimate("kcompactd_us_per_page", max(value, MIN_US), nbatches,
                     f"kcompactd, {_n(k.height, 'run')} (begin..end, {_fmt(float(k['dur_us'].sum()) / 1000)} ms) "
                     f"over the {pages:,} pages they migrated in {nbatches} batches",
                     _boot_ratio(k["dur_us"].to_numpy(), k["migrated"].to_numpy()))]


def _direct_reclaim(rec: pl.DataFrame) -> list[Estimate]:
    """reclaim_us_per_page: direct reclaim begin..end per page of its nr_reclaimed, median over the calls
    that reclaimed a page. nr_reclaimed counts slab pages freed by the shrinkers too, and a call's fixed
    work (the shrinker walk, the LRU scan) falls on few pages when it reclaims few: where direct reclaim
    frees 1 page a call (the QEMU 6.1 captures) this is the cost of a call, which the source text shows."""
    ev = (rec.filter(pl.col("event").is_in([RECLAIM_BEGIN, RECLAIM_END]))
          .select("pid", "ts_ns", "line", "event", "nr_reclaimed").sort(["pid", "ts_ns", "line"]))
    calls = _pairs(ev, RECLAIM_BEGIN, RECLAIM_END, "pid").filter(pl.col("nr_reclaimed_end") > 0)
    out = _reclaim_round(calls)
    if calls.height < MIN_SAMPLES:
        return out
    # a per-page cost needs calls that reclaim more than a page: where the median call frees a single
    # page (the slab shrinkers' one, the LRU giving nothing, as on the QEMU 6.1 captures), its time is the
    # call's fixed work, not a page's, and no estimate is made
    if float(calls["nr_reclaimed_end"].median()) <= 1:
        return out
    per_page = ((calls["ts_ns_end"] - calls["ts_ns"]) / 1000.0 / calls["nr_reclaimed_end"]).median()
    return out + [Estimate("reclaim_us_per_page", max(float(per_page), MIN_US), calls.height,
                     f"direct reclaim, median of {calls.height} calls (begin..end) per page reclaimed "
                     f"({int(calls['nr_reclaimed_end'].sum()):,} pages, median "
                     f"{_fmt(float(calls['nr_reclaimed_end'].median()))} a call)",
                     _boot_median(((calls["ts_ns_end"] - calls["ts_ns"]) / 1000.0 / calls["nr_reclaimed_end"]).to_numpy()))]


def _contention(runs: pl.DataFrame) -> list[Estimate]:
    """compact_contention: the chance that a migration batch of async direct compaction met a contended
    lock. compact_lock_irqsave() sets cc->contended when spin_trylock() of the zone or LRU lock fails in
    async mode, and __compact_finished() then ends the run COMPACT_CONTENDED; that depends on what the
    other CPUs were doing, which no trace shows beforehand, so the model draws it per batch at the
    capture's own rate: the async direct runs that ended `contended` after a batch that moved pages,
    over all batches of async direct runs. A run that ended `contended` after a batch whose every page
    failed is the other way to that status (migrate_pages() -ENOMEM before the scanners met: the free
    scanner found nothing), which the model reaches itself, and is not counted."""
    d = runs.filter(_direct())
    batches = int(d["batches"].sum()) if d.height else 0
    if d.height < MIN_CALLS or batches < MIN_CALLS:
        return []
    locked = d.filter((pl.col("status") == "contended") & pl.col("last_moved")).height
    if not locked:
        return []
    return [Estimate("compact_contention", locked / batches, locked,
                     f"async direct compaction, {_n(locked, 'run')} of {d.height:,} ended contended after a batch that "
                     f"moved pages, over their {batches:,} migration batches",
                     _BootShare(batches, locked / batches))]


def _reclaim_round(calls: pl.DataFrame) -> list[Estimate]:
    """reclaim_round_pages: the median nr_reclaimed of the direct reclaim calls that freed more than one
    page. A call that returns 1 mostly freed nothing (do_try_to_free_pages() returns 1 when it stopped
    because compaction was ready) and says nothing about a round's size; one that freed pages did, in
    the kernel's usual case, one shrink_node() round: SWAP_CLUSTER_MAX scanned, less what was referenced
    or under writeback, or whole THPs at a time when anon THPs are swapped out."""
    freed = calls.filter(pl.col("nr_reclaimed_end") > 1)["nr_reclaimed_end"]
    if freed.len() < MIN_SAMPLES:
        return []
    return [Estimate("reclaim_round_pages", float(round(float(freed.median()))), freed.len(),
                     f"direct reclaim, median nr_reclaimed of the {_n(freed.len(), 'call')} that freed more than "
                     f"a page ({int(freed.sum()):,} pages)",
                     _BootMedian(freed.to_numpy(), whole=True))]


def _kswapd(dataset: Path, rec: pl.DataFrame) -> list[Estimate]:
    """kswapd_us_per_page: kswapd's busy time over the pages it reclaimed, summed over its awake periods.

    A period, per kswapd thread (one per node; it traces its own wake and sleep), runs from a wake that
    follows a sleep (or opens the trace) to the next sleep; further wakes inside it (a short nap cut short
    by a new wake-up) do not start another. A sleep with nothing before it closes a period that began
    before the trace (counted from the trace's first event), a wake with nothing after it opens one that
    ends after the trace (counted to its last event).

    Pages, and the busy part of a period, come from kswapd's own frees in the trace (page_free rows of a
    kswapd* thread, 2^order pages each: what it reclaimed): a period is busy from its start to its last
    free. When the trace has no such frees (page_free not traced), pages are the capture's
    pgsteal_kswapd vmstat delta and a period is busy but for the 100 ms nap before a sleep
    (KSWAPD_NAP_NS). The frees are preferred: pgsteal_kswapd counts from the before to the after
    snapshot, which can be much wider than the trace (local-6.18-ftrace: 57,335 pages stolen, 9,236
    freed by kswapd inside the trace), and the nap is 100 ms plus up to a jiffy and timer slack."""
    ev = rec.filter(pl.col("event").is_in([KSWAPD_WAKE, KSWAPD_SLEEP])).select("pid", "ts_ns", "line", "event")
    if not ev.height:
        return []
    t0, t1 = _trace_span(dataset, rec["ts_ns"])
    ev = (ev.sort(["pid", "ts_ns", "line"])
          .with_columns(prev=pl.col("event").shift(1).over("pid"), nxt=pl.col("event").shift(-1).over("pid")))
    wake, sleep = pl.col("event") == KSWAPD_WAKE, pl.col("event") == KSWAPD_SLEEP
    # period starts: a wake after a sleep or first; a sleep first means the period began before the trace
    starts = ev.filter((wake & (pl.col("prev").is_null() | (pl.col("prev") == KSWAPD_SLEEP)))
                       | (sleep & pl.col("prev").is_null()))
    starts = starts.select("pid", start=pl.when(wake).then(pl.col("ts_ns")).otherwise(pl.lit(t0)))
    # period ends: a sleep after a wake or first; a wake last means the period ends after the trace
    ends = ev.filter((sleep & (pl.col("prev").is_null() | (pl.col("prev") == KSWAPD_WAKE)))
                     | (wake & pl.col("nxt").is_null()))
    ends = ends.select("pid", end=pl.when(sleep).then(pl.col("ts_ns")).otherwise(pl.lit(t1)), closed=sleep)
    # starts and ends alternate per thread, in time order: pair them by rank
    rank = pl.int_range(pl.len()).over("pid").alias("k")
    periods = (starts.sort("pid", "start").with_columns(rank)
               .join(ends.sort("pid", "end").with_columns(rank), on=["pid", "k"], how="inner")
               .with_columns(pl.min_horizontal(pl.col("start"), pl.col("end")).alias("start")))
    if not periods.height:
        return []
    awake_ns = int((periods["end"] - periods["start"]).sum())
    n = periods.height
    frees = _kswapd_frees(dataset)
    if frees is not None:
        # each free to the last period of its thread that started before it (both sides sorted by time)
        within = (frees.sort("ts_ns")
                  .join_asof(periods.sort("start").select("pid", "start", "end"), left_on="ts_ns", right_on="start",
                             by="pid", strategy="backward", check_sortedness=False)
                  .filter(pl.col("start").is_not_null() & (pl.col("ts_ns") <= pl.col("end"))))
        per = within.group_by("pid", "start").agg(pages=pl.col("pages").sum(),
                                                  busy=pl.col("ts_ns").max() - pl.col("start").first())
        pages = int(per["pages"].sum()) if per.height else 0
        if pages <= 0:
            return []
        busy_ns = int(per["busy"].sum())
        draw = _boot_ratio(per["busy"].to_numpy() / 1000.0, per["pages"].to_numpy())
        how = f"busy until its last free, {_fmt(busy_ns / 1e6)} ms) over the {pages:,} pages kswapd freed in them"
    else:
        pages = _vmstat_delta(dataset, "pgsteal_kswapd") or 0
        if pages <= 0:
            return []
        naps = periods.select(pl.when(pl.col("closed")).then(
            pl.min_horizontal(pl.col("end") - pl.col("start"), pl.lit(KSWAPD_NAP_NS))).otherwise(0).sum()).item()
        busy_ns = max(awake_ns - int(naps), 0)
        draw = None   # one capture-wide page count: no per-period scatter to draw from
        how = f"less the 100 ms nap before each sleep, {_fmt(busy_ns / 1e6)} ms) over pgsteal_kswapd {pages:,}"
    value = busy_ns / 1000.0 / pages
    return [Estimate("kswapd_us_per_page", max(value, MIN_US), n,
                     f"kswapd, {_n(n, 'awake period')} (wake..sleep, {_fmt(awake_ns / 1e6)} ms; {how}", draw)]


def _n(k: int, what: str) -> str:
    return f"{k} {what}{'' if k == 1 else 's'}"


def _fmt(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"
    return f"{x:.3g}"
