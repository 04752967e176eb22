"""`thpreplay validate`: replay a capture under its own kernel's policy and compare with what it did.

Observed figures come from two places: the trace itself (thp_faults outcomes, direct reclaim events)
and the bundle's /proc/vmstat deltas. vmstat counts every task, the trace's THP faults only the faults;
the table says which is which. A figure passes when its relative error |sim - obs| / obs is within the
tolerance, or when the absolute difference is at most `small` (default 5: a ±5 band for small counts,
where one fault is many percent).

The 14 FIGURES are the tally (and the exit status). Three further comparisons do not count in it:

Cost figures (COST_FIGURES): what the faults cost the system, compared with the same rule: the vmstat
deltas pgmigrate_success, compact_migrate_scanned, compact_free_scanned, compact_daemon_wake (the
model's kcompactd_wakes) and pgsteal_kswapd against the model's counters, and per node the free huge
pages at the end (`free_huge_pages_nodeN`): observed, the after-snapshot's free blocks of order >= 9 in
every zone of the node (pagetypeinfo, else buddyinfo; an order-10 block counts as 2); simulated, the
last sample of the run's memory_series (free order-9 blocks, order 10 not modelled).

Fault latency (compare_latency): p50 and p99 of latency_ns per placement, the trace's against the
model's, over the faults whose page-fault event the trace has. Both sides measure the same span (the
schemas' definition: the page-fault event to the return of the fault's last THP attempt); the model's is
its calibrated entry cost, plus its compaction and reclaim costs, plus the page's preparation for a huge
page (sim/params.py), so this is where a model that compacts too much, too little or at the wrong price
shows.

Per-fault paths: every THP fault's path through the allocator in the trace against the model's for
the same fault (joined on fault_id). A path is `stage → placement`:

- placement: huge_local, huge_remote, or fallback (the model's base_local, base_remote and failed);
- stage, the first that applies: `reclaimed` (direct reclaim was called for the fault), `compacted`
  (the huge page came from direct compaction), `compact_failed` (direct compaction was called but the
  fault's page, if any, did not come from it), `fast` (neither compaction nor reclaim was called).

Trace side: the fault's compaction and reclaim events are those of its task from the fault's start
(thp_faults.ts_ns) up to its last attempt's line; this is the grouping thp_faults itself uses (the
numbers of try_to_compact_pages and direct_reclaim_begin events per fault equal its compaction_calls
and reclaim_calls). The result of a direct compaction call is reconstructed as try_to_compact_pages
returns it, the largest compact_result of its zones in the kernel's order (skipped < deferred < ...
< complete < partial_skipped < contended < success): mm_compaction_deferred is `deferred`,
mm_compaction_suitable gives its ret (not_suitable_zone reaches the caller as `skipped`),
mm_compaction_end its status, and two mm_compaction_defer_reset events (one from try_to_compact_pages
on COMPACT_SUCCESS, one from __alloc_pages_direct_compact for the page) mean `success` also when no
end event ran (6.4+ returns success without a tracepoint when the watermark is already met). A call
owns the events up to the next call or the next direct reclaim (whose compaction_ready checks are not
the call's); a call with no event of its own is `skipped` (try_to_compact_pages' initial value). A
fault's compaction result is that of its last call. The trace's `compacted` is a huge page whose last
attempt (after the previous THP attempt's line) called compaction and saw it succeed: the last call's
result is success or a defer_reset followed it (__alloc_pages_direct_compact got the page from the
free lists after compaction: the kernel's compact_success).

Model side (outcomes): reclaim_calls > 0 is reclaimed; compaction_succeeded with a huge result is
compacted; compact_result not null (or compaction_attempted > 0) is compact_failed; else fast. The
model's compact_result is the same try_to_compact_pages value for its last call.

Validation.agreement is the fraction of faults whose two paths are equal (the diagonal of
Validation.paths, a confusion frame of trace_path, model_path, faults); Validation.compact_results is
the confusion frame (trace_result, model_result, faults) of the two compaction results over the faults
where both called compaction, and Validation.fault_paths has both sides of every fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from thpreplay.dataset import reading
from thpreplay.errors import InputError, ThpreplayError
from thpreplay.policy.registry import get_policy, resolve_kernel
from thpreplay.sim.params import Params
from thpreplay.sim import state
from thpreplay.sim.engine import COMPACT_RESULTS
from thpreplay.sim.state import read_table
from thpreplay.sim import samples as sample_mod
from thpreplay.simulate import SimulationResult, check_samples, prepare, replay


@dataclass
class Row:
    figure: str
    source: str
    observed: int
    simulated: int
    interval: tuple[float, float] | None = None   # the model's p5..p95 over the samples (--samples)

    def in_interval(self) -> bool | None:
        """The observed value inside the model's 90 % interval (None without samples)."""
        if self.interval is None:
            return None
        return self.interval[0] <= self.observed <= self.interval[1]

    def error(self) -> float:
        return abs(self.simulated - self.observed) / max(self.observed, 1)

    def ok(self, tolerance: float, small: int) -> bool:
        return self.error() <= tolerance or abs(self.simulated - self.observed) <= small


@dataclass
class LatencyRow:
    """One percentile of fault latency (µs) over the faults of one placement, trace against model.
    Both sides are latency_ns as the schemas define it (the page-fault event to the return of the last
    THP attempt), over the same faults: those whose page-fault event the trace has; each side groups
    them by its own placement (huge_local, huge_remote, fallback; `all` for every one)."""
    placement: str
    stat: str           # p50 or p99
    observed_n: int
    simulated_n: int
    observed: float | None    # µs; None when the side has no such fault
    simulated: float | None

    def error(self) -> float | None:
        if self.observed is None or self.simulated is None:
            return None
        return abs(self.simulated - self.observed) / max(self.observed, 1.0)

    def ok(self, tolerance: float, small: int) -> bool:
        """Within tolerance or ±small µs; a placement only one side has is within when that side's faults
        are at most `small` (the figures' rule for counts)."""
        if self.observed is None or self.simulated is None:
            return max(self.observed_n, self.simulated_n) <= small
        return self.error() <= tolerance or abs(self.simulated - self.observed) <= small


@dataclass
class Validation:
    policy: str
    kernel_release: str | None
    rows: list[Row]
    result: SimulationResult
    tolerance: float
    small: int
    cost_rows: list[Row] = field(default_factory=list)
    path_comparison: PathComparison | None = None
    latency_rows: list[LatencyRow] = field(default_factory=list)
    samples: dict | None = None   # {"n", "seed", "from"}: the replays the intervals are over (--samples)

    @property
    def latency_failures(self) -> list[LatencyRow]:
        return [r for r in self.latency_rows if not r.ok(self.tolerance, self.small)]

    @property
    def failures(self) -> list[Row]:
        """The FIGURES off tolerance (the tally and the exit status; cost figures are not in it)."""
        return [r for r in self.rows if not r.ok(self.tolerance, self.small)]

    @property
    def cost_failures(self) -> list[Row]:
        return [r for r in self.cost_rows if not r.ok(self.tolerance, self.small)]

    @property
    def agreement(self) -> float | None:
        """Fraction of the THP faults whose path in the trace is the model's (None without faults)."""
        return self.path_comparison.agreement if self.path_comparison else None

    @property
    def paths(self) -> pl.DataFrame:
        """Confusion frame of the paths: trace_path, model_path, faults (most faults first)."""
        pc = self.path_comparison
        return pc.confusion if pc else _confusion_schema("trace_path", "model_path")

    @property
    def compact_results(self) -> pl.DataFrame:
        """Confusion frame of the last compaction's result: trace_result, model_result, faults."""
        pc = self.path_comparison
        return pc.compact_results if pc else _confusion_schema("trace_result", "model_result")

    @property
    def fault_paths(self) -> pl.DataFrame:
        """Per fault: fault_id, trace_path, trace_compact_result, model_path, model_compact_result."""
        pc = self.path_comparison
        return pc.faults if pc else pl.DataFrame(schema={
            "fault_id": pl.Int64, "trace_path": pl.String, "trace_compact_result": pl.String,
            "model_path": pl.String, "model_compact_result": pl.String})

    def table(self) -> pl.DataFrame:
        return _table(self.rows, self.tolerance, self.small)

    def cost_table(self) -> pl.DataFrame:
        return _table(self.cost_rows, self.tolerance, self.small)


def _table(rows: list[Row], tolerance: float, small: int) -> pl.DataFrame:
    frame = pl.DataFrame([
        dict(figure=r.figure, source=r.source, observed=r.observed, simulated=r.simulated,
             rel_error=round(r.error(), 4), ok=r.ok(tolerance, small)) for r in rows
    ], schema={"figure": pl.String, "source": pl.String, "observed": pl.Int64, "simulated": pl.Int64,
               "rel_error": pl.Float64, "ok": pl.Boolean})
    if any(r.interval is not None for r in rows):   # validated with samples
        frame = frame.with_columns(
            pl.Series("p5", [r.interval[0] if r.interval else None for r in rows], dtype=pl.Float64),
            pl.Series("p95", [r.interval[1] if r.interval else None for r in rows], dtype=pl.Float64),
            pl.Series("in_interval", [r.in_interval() for r in rows], dtype=pl.Boolean))
    return frame


def _vmstat(dataset) -> dict[str, int]:
    vm = read_table(dataset, "vmstat").filter((pl.col("scope") == "system") & pl.col("delta").is_not_null())
    return dict(zip(vm["counter"].to_list(), vm["delta"].to_list()))


# (figure, source, vmstat counter or None): the figures compared, in the order printed
FIGURES = (
    ("huge_local", "trace"), ("huge_remote", "trace"), ("fallback", "trace"),
    ("direct_reclaims", "trace"), ("pages_reclaimed", "trace"),
    ("thp_fault_alloc", "vmstat"), ("thp_fault_fallback", "vmstat"), ("compact_stall", "vmstat"),
    ("compact_success", "vmstat"), ("compact_fail", "vmstat"), ("allocstall", "vmstat"),
    ("pgsteal_direct", "vmstat"), ("pswpout", "vmstat"), ("numa_miss", "vmstat"),
)


def observed(dataset) -> dict[str, int]:
    """What the capturing kernel did: the trace's THP outcomes and direct reclaims, and the vmstat
    deltas the bundle has (a counter the snapshots lack is left out)."""
    faults = read_table(dataset, "thp_faults")
    obs = dict(zip(*faults["outcome"].value_counts().select("outcome", "count").to_dict(as_series=False).values()))
    reclaim = read_table(dataset, "reclaim")
    out = {
        "huge_local": obs.get("huge_local", 0), "huge_remote": obs.get("huge_remote", 0), "fallback": obs.get("fallback", 0),
        "direct_reclaims": reclaim.filter(pl.col("event") == "mm_vmscan_direct_reclaim_begin").height,
        "pages_reclaimed": int(reclaim.filter(pl.col("event") == "mm_vmscan_direct_reclaim_end")["nr_reclaimed"].fill_null(0).sum()),
    }
    vm = _vmstat(dataset)
    if any(k.startswith("allocstall") for k in vm):
        out["allocstall"] = sum(v for k, v in vm.items() if k.startswith("allocstall"))
    for counter in ("thp_fault_alloc", "thp_fault_fallback", "compact_stall", "compact_success", "compact_fail",
                    "pgsteal_direct", "pswpout", "numa_miss"):
        if vm.get(counter) is not None:
            out[counter] = int(vm[counter])
    return out


def simulated(run) -> dict[str, int]:
    """The same figures from one policy's replay."""
    c = run.counters
    sim = run.outcomes["result"].value_counts()
    n = dict(zip(sim["result"].to_list(), sim["count"].to_list()))
    out = {
        "huge_local": n.get("huge_local", 0), "huge_remote": n.get("huge_remote", 0),
        "fallback": n.get("base_local", 0) + n.get("base_remote", 0) + n.get("failed", 0),
        "direct_reclaims": int(c["allocstall"]), "pages_reclaimed": int(c["direct_reclaim_returned"]),
    }
    for counter in ("thp_fault_alloc", "thp_fault_fallback", "compact_stall", "compact_success", "compact_fail",
                    "allocstall", "pgsteal_direct", "pswpout", "numa_miss"):
        out[counter] = int(c[counter])
    return out


def compare(obs: dict[str, int], sim: dict[str, int]) -> list[Row]:
    return [Row(f, source, obs[f], sim[f]) for f, source in FIGURES if f in obs]


# The cost figures (not in the tally): figure, source; the model's counter when it has another name.
COST_FIGURES = (
    ("pgmigrate_success", "vmstat"), ("compact_migrate_scanned", "vmstat"), ("compact_free_scanned", "vmstat"),
    ("compact_daemon_wake", "vmstat"), ("pgsteal_kswapd", "vmstat"),
)
# ... followed by free_huge_pages_node0, free_huge_pages_node1, ... (source "snapshot"), one per node
MODEL_COUNTER = {"compact_daemon_wake": "kcompactd_wakes"}
HUGE_ORDER = 9


def observed_costs(dataset) -> dict[str, int]:
    """The cost figures of the capturing kernel: vmstat deltas (those the snapshots have) and the free
    huge pages per node in the after-snapshot (blocks of order >= 9, an order-10 block counted as 2)."""
    vm = _vmstat(dataset)
    out = {f: int(vm[f]) for f, _ in COST_FIGURES if vm.get(f) is not None}
    for node, blocks in sorted(_free_huge_after(dataset).items()):
        out[f"free_huge_pages_node{node}"] = blocks
    return out


def _free_huge_after(dataset) -> dict[int, int]:
    try:
        fl = read_table(dataset, "free_lists")
    except InputError:  # a dataset from before the table
        return {}
    fl = fl.filter((pl.col("snapshot") == "after") & (pl.col("order") >= HUGE_ORDER))
    if fl.height == 0:
        return {}
    by_type = fl.filter(pl.col("migratetype") != "all")
    fl = by_type if by_type.height else fl  # pagetypeinfo when the bundle has it, else buddyinfo
    per_node = fl.group_by("node").agg(
        (pl.col("free_blocks") * pl.lit(2, dtype=pl.Int64).pow(pl.col("order") - HUGE_ORDER)).sum().alias("huge"))
    return dict(zip(per_node["node"].to_list(), per_node["huge"].to_list()))


def simulated_costs(run) -> dict[str, int]:
    """The cost figures of one policy's replay: its counters, and its last memory_series sample per node."""
    c = run.counters
    out = {f: int(c[MODEL_COUNTER.get(f, f)]) for f, _ in COST_FIGURES}
    series = run.series
    if series.height:
        last = series.filter(pl.col("ts_ns") == pl.col("ts_ns").max())
        for node, huge in zip(last["node"].to_list(), last["free_huge_pages"].to_list()):
            out[f"free_huge_pages_node{node}"] = int(huge)
    return out


def compare_costs(obs: dict[str, int], sim: dict[str, int]) -> list[Row]:
    rows = [Row(f, source, obs[f], sim[f]) for f, source in COST_FIGURES if f in obs and f in sim]
    nodes = sorted(int(k.removeprefix("free_huge_pages_node")) for k in obs if k.startswith("free_huge_pages_node"))
    rows += [Row(f"free_huge_pages_node{n}", "snapshot", obs[f"free_huge_pages_node{n}"],
                 sim.get(f"free_huge_pages_node{n}", 0)) for n in nodes]
    return rows


# --- per-fault paths ---------------------------------------------------------------------------------

STAGES = ("fast", "compacted", "compact_failed", "reclaimed")
PLACEMENTS = ("huge_local", "huge_remote", "fallback")
_RANK = {name: i for i, name in enumerate(COMPACT_RESULTS)}
_TRY = "mm_compaction_try_to_compact_pages"
_RECLAIM = "mm_vmscan_direct_reclaim_begin"
_RESULT_EVENTS = ("mm_compaction_deferred", "mm_compaction_suitable", "mm_compaction_end")
_DEFER_RESET = "mm_compaction_defer_reset"


@dataclass
class PathComparison:
    """Per-fault paths, trace against model (see the module docstring)."""

    faults: pl.DataFrame  # fault_id, trace_path, trace_compact_result, model_path, model_compact_result
    confusion: pl.DataFrame  # trace_path, model_path, faults (most faults first)
    compact_results: pl.DataFrame  # trace_result, model_result, faults, over faults where both compacted

    @property
    def total(self) -> int:
        return self.faults.height

    @property
    def agreeing(self) -> int:
        return int(self.confusion.filter(pl.col("trace_path") == pl.col("model_path"))["faults"].sum() or 0)

    @property
    def agreement(self) -> float | None:
        return self.agreeing / self.total if self.total else None

    @property
    def compact_total(self) -> int:
        return int(self.compact_results["faults"].sum() or 0)

    @property
    def compact_agreeing(self) -> int:
        cr = self.compact_results
        return int(cr.filter(pl.col("trace_result") == pl.col("model_result"))["faults"].sum() or 0)


def _confusion_schema(a: str, b: str) -> pl.DataFrame:
    return pl.DataFrame(schema={a: pl.String, b: pl.String, "faults": pl.UInt32})


def _path(stage: pl.Expr, placement: pl.Expr) -> pl.Expr:
    return pl.concat_str(stage, pl.lit(" → "), placement)


def _placement(result: pl.Expr) -> pl.Expr:
    return pl.when(result.is_in(["huge_local", "huge_remote"])).then(result).otherwise(pl.lit("fallback"))


def _stage(reclaimed: pl.Expr, compacted: pl.Expr, compaction_called: pl.Expr) -> pl.Expr:
    return (pl.when(reclaimed).then(pl.lit("reclaimed")).when(compacted).then(pl.lit("compacted"))
            .when(compaction_called).then(pl.lit("compact_failed")).otherwise(pl.lit("fast")))


def trace_paths(dataset) -> pl.DataFrame:
    """Each THP fault of the trace: fault_id, stage, placement, path, compact_result (null when the
    fault called no direct compaction)."""
    dataset = Path(dataset)
    faults = read_table(dataset, "thp_faults", ["fault_id", "pid", "ts_ns", "first_line", "last_line", "attempts",
                                               "outcome", "compaction_calls", "reclaim_calls"])
    pids = pl.Series(faults["pid"].unique().to_list(), dtype=pl.Int32).implode()
    comp = read_table(dataset, "compaction", ["pid", "ts_ns", "line", "event", "status", "ret"]).filter(
        pl.col("pid").is_in(pids) & pl.col("event").is_in([_TRY, _DEFER_RESET, *_RESULT_EVENTS]))
    recl = read_table(dataset, "reclaim", ["pid", "ts_ns", "line", "event"]).filter(
        pl.col("pid").is_in(pids) & (pl.col("event") == _RECLAIM))
    # where the fault's last attempt starts: after the previous THP attempt of the fault, if it had several
    attempts = read_table(dataset, "page_alloc", ["pid", "line", "thp_attempt"]).filter(
        pl.col("thp_attempt") & pl.col("pid").is_in(pids)).select("pid", pl.col("line").alias("_prev_attempt"))
    windows = (
        faults.select("fault_id", "pid", pl.col("ts_ns").alias("_start"), "last_line", "attempts")
        .sort("last_line")
        .join_asof(attempts.sort("_prev_attempt"), left_on="last_line", right_on="_prev_attempt", by="pid",
                   strategy="backward", allow_exact_matches=False, check_sortedness=False)
        .with_columns(pl.when(pl.col("attempts") > 1).then(pl.col("_prev_attempt")).otherwise(-1)
                      .fill_null(-1).alias("_prev_attempt"))
    )
    events = (
        pl.concat([comp, recl], how="diagonal_relaxed").sort("line")
        .join_asof(windows.select("fault_id", "pid", "_start", "_prev_attempt", pl.col("last_line").alias("line")),
                   on="line", by="pid", strategy="forward", check_sortedness=False)
        .filter(pl.col("fault_id").is_not_null() & (pl.col("ts_ns") >= pl.col("_start")))
        .sort("fault_id", "line")
    )
    is_try = pl.col("event") == _TRY
    events = events.with_columns(
        is_try.cast(pl.Int32).cum_sum().over("fault_id").alias("_call"),
        (is_try | (pl.col("event") == _RECLAIM)).cast(pl.Int32).cum_sum().over("fault_id").alias("_seg"),
    )
    # the last call's own events: from its try_to_compact_pages to the next direct reclaim or the end
    last = events.filter((pl.col("_call") > 0) & (pl.col("_call") == pl.col("_call").max().over("fault_id")))
    last = last.filter(pl.col("_seg") == pl.col("_seg").min().over("fault_id"))
    result_name = (
        pl.when(pl.col("event") == "mm_compaction_deferred").then(pl.lit("deferred"))
        .when(pl.col("event") == "mm_compaction_suitable").then(pl.col("ret").replace("not_suitable_zone", "skipped"))
        .when(pl.col("event") == "mm_compaction_end").then(pl.col("status"))
    )
    rank = result_name.replace_strict(_RANK, default=None, return_dtype=pl.Int32)
    calls = last.group_by("fault_id").agg(
        pl.max_horizontal(rank.max(), pl.lit(_RANK["skipped"])).alias("_rank"),
        (pl.col("event") == _DEFER_RESET).sum().alias("_resets"),
        (pl.col("line").filter(is_try).first() > pl.col("_prev_attempt").first()).alias("_in_last_attempt"),
    ).with_columns(
        pl.when(pl.col("_resets") >= 2).then(pl.lit(_RANK["success"])).otherwise(pl.col("_rank")).alias("_rank")
    ).with_columns(
        pl.col("_rank").replace_strict(dict(enumerate(COMPACT_RESULTS)), return_dtype=pl.String)
        .alias("compact_result"),
    )
    out = faults.join(calls, on="fault_id", how="left").with_columns(
        _placement(pl.col("outcome")).alias("placement"),
    ).with_columns(
        _stage(pl.col("reclaim_calls") > 0,
               (pl.col("placement") != "fallback") & pl.col("_in_last_attempt").fill_null(False)
               & ((pl.col("compact_result") == "success") | (pl.col("_resets") > 0)),
               pl.col("compaction_calls") > 0).alias("stage"),
    ).with_columns(
        pl.when(pl.col("compaction_calls") > 0).then(pl.col("compact_result")).alias("compact_result"),
    )
    return out.select("fault_id", "stage", "placement", _path(pl.col("stage"), pl.col("placement")).alias("path"),
                      "compact_result").sort("fault_id")


def model_paths(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Each fault of one policy's outcomes: fault_id, stage, placement, path, compact_result."""
    placement = _placement(pl.col("result"))
    stage = _stage(pl.col("reclaim_calls") > 0, pl.col("compaction_succeeded") & (placement != "fallback"),
                   pl.col("compact_result").is_not_null() | (pl.col("compaction_attempted") > 0))
    return outcomes.select(
        "fault_id", stage.alias("stage"), placement.alias("placement"), _path(stage, placement).alias("path"),
        "compact_result",
    ).sort("fault_id")


def compare_paths(trace: pl.DataFrame, outcomes: pl.DataFrame) -> PathComparison:
    """The trace's paths (trace_paths) against a policy's outcomes, fault by fault."""
    model = model_paths(outcomes)
    faults = trace.select("fault_id", pl.col("path").alias("trace_path"),
                          pl.col("compact_result").alias("trace_compact_result")).join(
        model.select("fault_id", pl.col("path").alias("model_path"),
                     pl.col("compact_result").alias("model_compact_result")), on="fault_id", how="inner",
    ).sort("fault_id")
    confusion = _count(faults, "trace_path", "model_path")
    both = faults.filter(pl.col("trace_compact_result").is_not_null() & pl.col("model_compact_result").is_not_null())
    results = _count(both.rename({"trace_compact_result": "trace_result", "model_compact_result": "model_result"}),
                     "trace_result", "model_result")
    return PathComparison(faults, confusion, results)


def _count(frame: pl.DataFrame, a: str, b: str) -> pl.DataFrame:
    return (frame.group_by(a, b).agg(pl.len().cast(pl.UInt32).alias("faults"))
            .sort(["faults", a, b], descending=[True, False, False]))


def confusion_matrix(confusion: pl.DataFrame, a: str, b: str, top: int = 8) -> tuple[list[str], list[list[int]]]:
    """A confusion frame as a square matrix over the `top` commonest labels of either side (counting
    both sides' faults); when there are more labels, the commonest top - 1 and an `other` bucket.
    Returns (labels, rows), rows[i][j] the faults with a = labels[i] and b = labels[j]."""
    weight: dict[str, int] = {}
    for x, y, n in confusion.select(a, b, "faults").iter_rows():
        weight[x] = weight.get(x, 0) + n
        weight[y] = weight.get(y, 0) + n
    ordered = sorted(weight, key=lambda k: (-weight[k], k))
    labels = ordered if len(ordered) <= top else ordered[: top - 1] + ["other"]
    index = {k: i for i, k in enumerate(labels)}
    other = len(labels) - 1
    rows = [[0] * len(labels) for _ in labels]
    for x, y, n in confusion.select(a, b, "faults").iter_rows():
        rows[index.get(x, other)][index.get(y, other)] += n
    return labels, rows


LATENCY_PLACEMENTS = ("huge_local", "huge_remote", "fallback", "all")
LATENCY_STATS = (("p50", 0.5), ("p99", 0.99))


def _percentile(values: pl.Series, q: float) -> float | None:
    return None if values.len() == 0 else float(values.quantile(q, interpolation="linear")) / 1000.0


def compare_latency(faults: pl.DataFrame, outcomes: pl.DataFrame) -> list[LatencyRow]:
    """p50 and p99 fault latency per placement (LATENCY_PLACEMENTS), trace (thp_faults: fault_id, outcome,
    latency_ns) against model (outcomes: fault_id, result, latency_ns), over the faults whose latency the
    trace knows. Placements neither side has are left out."""
    timed = faults.filter(pl.col("latency_ns").is_not_null()).select(
        "fault_id", pl.col("outcome").alias("placement"), "latency_ns")
    model = outcomes.join(timed.select("fault_id"), on="fault_id", how="semi").select(
        "fault_id", _placement(pl.col("result")).alias("placement"), "latency_ns")
    rows = []
    for placement in LATENCY_PLACEMENTS:
        pick = (lambda f: f) if placement == "all" else (lambda f, p=placement: f.filter(pl.col("placement") == p))
        obs, sim = pick(timed)["latency_ns"], pick(model)["latency_ns"]
        if obs.len() == 0 and sim.len() == 0:
            continue
        for stat, q in LATENCY_STATS:
            rows.append(LatencyRow(placement, stat, obs.len(), sim.len(), _percentile(obs, q), _percentile(sim, q)))
    return rows


def validate(dataset, *, policy: str | None = None, kernel: str | None = None, tolerance: float = 0.10,
             small: int = 5, params_file: str | None = None, samples: int | None = None,
             seed: int | None = None) -> Validation:
    """samples, seed: also replay the policy `samples` times as simulate --samples does (sim/samples.py)
    and say of each figure whether the observed value lies in the model's p5..p95. Without them, the
    dataset's stored simulation's --samples and --seed when it was made with samples."""
    check_samples(samples, seed)
    params = Params.load(params_file)
    with reading(dataset):  # not replaced while it is read (dataset.py)
        how = "validate --samples"
        if samples is None:
            stored = stored_samples(dataset)
            if stored:
                samples, seed, how = stored["n"], stored["seed"], "the stored simulation's --samples"
        return _validate(dataset, policy, kernel, tolerance, small, params,
                         dict(n=samples, seed=1 if seed is None else seed, how=how) if samples else None)


def stored_samples(dataset) -> dict | None:
    """The --samples and --seed of the dataset's stored simulation ({"n", "seed"}), or None."""
    import json

    try:
        record = json.loads((Path(dataset) / "simulation" / "simulation.json").read_text())
        s = record.get("samples")
        return dict(n=int(s["n"]), seed=int(s["seed"])) if isinstance(s, dict) and int(s["n"]) >= 1 else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None   # no simulation, or one without samples: nothing to follow


def _intervals(inputs, chosen, sampled: dict) -> tuple[dict, dict]:
    """p5..p95 of the tally's and the cost figures over the samples: ({figure: (p5, p95)}, same for costs)."""
    figs: dict[str, list] = {}
    costs: dict[str, list] = {}
    for _, _, run in sample_mod.runs(inputs, [chosen], sampled["n"], sampled["seed"]):
        for k, v in simulated(run).items():
            figs.setdefault(k, []).append(v)
        for k, v in simulated_costs(run).items():
            costs.setdefault(k, []).append(v)

    def pick(d):
        out = {}
        for k, values in d.items():
            q = sample_mod.quantiles(values)
            if q["p5"] is not None:
                out[k] = (q["p5"], q["p95"])
        return out
    return pick(figs), pick(costs)


def _validate(dataset, policy, kernel, tolerance, small, params, sampled: dict | None = None) -> Validation:
    inputs = prepare(dataset, params=params)
    declared = (state.snapshot_text(inputs.dataset, "thp_policy") or "").strip()
    if policy:
        chosen = get_policy(policy)
    elif kernel:
        chosen = resolve_kernel(kernel)
    elif declared:  # a patched kernel: its release names the version it was built from, not its policy
        chosen = get_policy(declared)
    elif inputs.kernel_release:
        chosen = resolve_kernel(inputs.kernel_release)
    else:
        raise ThpreplayError(f"{dataset}: the capture does not say which kernel made it; give --kernel or --policy")
    result = replay(inputs, [chosen])
    run = result.runs[0]
    rows = compare(observed(inputs.dataset), simulated(run))
    costs = compare_costs(observed_costs(inputs.dataset), simulated_costs(run))
    paths = compare_paths(trace_paths(inputs.dataset), run.outcomes)
    latency = compare_latency(read_table(inputs.dataset, "thp_faults", ["fault_id", "outcome", "latency_ns"]),
                              run.outcomes)
    if sampled:
        figs, cost_iv = _intervals(inputs, chosen, sampled)
        for r in rows:
            r.interval = figs.get(r.figure)
        for r in costs:
            r.interval = cost_iv.get(r.figure)
    return Validation(chosen.name, inputs.kernel_release, rows, result, tolerance, small, costs, paths, latency,
                      sampled)
