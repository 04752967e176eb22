"""Run one policy over a demand: the Python face of the C replay core (sim/_engine.c).

The model (what the core does per op; kernel functions it mirrors are cited in the C source):

- Memory: zones (pfn span, min/low/high watermarks, one lowmem reserve: the largest of the zone's
  protection values, which is what a movable user allocation faces), zonelists by node distance, and
  pageblocks of 512 pages with a migratetype and a used bitmap; free blocks per order (0..9) and
  migratetype are derived from the bitmaps exactly as the buddy allocator would merge them. Order 10
  (two free pageblocks) is not modelled: a free pageblock is the largest unit.
- Used pages are pinned (kernel, unmovable, mlocked when not migratable, huge pages the model
  placed), mlocked (migratable, not reclaimable), anon (migratable, swappable) or file (migratable,
  droppable).
- Small allocations follow the trace's pfn when that range is free in the model ("followed");
  otherwise the allocator places them (__rmqueue with migratetype fallback and stealing; "relocated"),
  preferring free pages the trace never uses: the first zone of the zonelist above its low watermark,
  then (every zone below low) kswapd on the zonelist's nodes and the min watermark, then order-0 direct
  reclaim. A free releases wherever the page is in the model. Pages the kernel migrated
  (freed inside compaction) are marked, and moved by the model only when the trace reuses their pfn.
- A THP fault runs the policy's attempts: fast path at the low watermark, kswapd/kcompactd wake when
  the mask allows, min-watermark retry, async direct compaction, the era's bail-outs, direct reclaim
  (do_try_to_free_pages(): rounds per node while should_continue_reclaim(), a compaction-ready zone
  skipped, page cache first, then anon to swap), then compaction again at the era's priority; deferral
  per zone as mm/compaction.c.
- Direct compaction follows compact_zone() page by page: batches of 32, skip_on_failure for async
  direct compaction, pageblock skip bits, cached scanner positions, the async free scanner's 1-in-32
  sampling and the free-list searches (5.1+); it fails, stalls and defers as the kernel's does
  (docs/model.md).
- kswapd and kcompactd are workers on their own CPU in trace time (kswapd_us_per_page,
  kcompactd_us_per_page): woken as wakeup_kswapd()/wakeup_kcompactd() say (slowpath, THP masks with
  __GFP_KSWAPD_RECLAIM, watermark boosts from the trace's fallback steals), they reclaim and compact at
  their pace, and a fault finds only what they had done by its time. Proactive compaction (5.9+) runs
  on kcompactd's 500 ms timer.
- Reclaim takes page cache, then anon pages to swap, then whole anon THPs (oldest first) to swap.

Simplifications worth knowing: one per-cpu list per zone (not per CPU), no highatomic or CMA reserves, no
node_reclaim (zone_reclaim_mode=0), no memcg, compaction never aborts on lock contention, the free lists
that fast_isolate_freepages/fast_find_migrateblock read hold blocks and start in an assumed order
(params.shuffled_free_lists), reclaim takes LRU pages at random (no ageing), huge pages are never split or
migrated and are reclaimed only after every small LRU page of their node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from thpreplay.kernel.compaction import finish_pageblock_form, free_scanner_sampling
from thpreplay.kernel.gfp import parse_release
from thpreplay.kernel.page_alloc import pcp_free_form
from thpreplay.kernel.vmscan import compaction_ready_form
from thpreplay.policy.base import Policy, ThpSettings, call_attempts
from thpreplay.sim import _engine
from thpreplay.sim.demand import OP_COLUMNS as DEMAND_COLUMNS
from thpreplay.sim.demand import OP_ALLOC, PK_ANON, PK_PINNED, Demand
from thpreplay.sim.params import Params
from thpreplay.sim.state import InitialState
from thpreplay.sim.untraced import MIGRATETYPES

COUNTERS = (
    "thp_fault_alloc", "thp_fault_fallback", "compact_stall", "compact_success", "compact_fail",
    "compact_calls", "compact_deferred", "compact_skipped", "pgmigrate_success", "compact_migrate_scanned",
    "allocstall", "pgsteal_direct", "pgsteal_kswapd", "pswpout", "kswapd_wakes", "kcompactd_wakes",
    "numa_miss", "placed_as_traced", "placed_by_allocator", "small_alloc_failed", "dropped_by_huge_region",
    "synthesized_base_pages", "free_of_unknown_page", "free_of_reclaimed_page", "migratetype_steals",
    "small_allocs", "frees", "thp_faults", "bug_double_alloc", "bug_double_free",
    "relocated_from_huge_page", "relocated_from_traced_page", "relocated_from_other_page", "relocated_outside_zones",
    "migrated_by_kernel", "free_of_migrated_page", "thp_swpout", "compact_free_scanned", "pgmigrate_fail",
    "watermark_boosts", "direct_reclaim_returned",
)
RESULTS = ("huge_local", "huge_remote", "base_local", "base_remote", "failed")
# compaction results in the kernel's order (include/linux/compaction.h, the tracepoint's names);
# NOT_SUITABLE_ZONE reaches callers as SKIPPED
COMPACT_RESULTS = ("not_suitable_zone", "skipped", "deferred", "no_suitable_page", "continue", "complete",
                   "partial_skipped", "contended", "success")
MAX_ATTEMPTS = 8
CHUNK = 1 << 20

# The path of each THP fault as the engine logs it (engine.h ST_*, B_*): int32 steps, kind in the low
# byte, code in the next, node + 1 in the upper half; `why` renders them (outcomes.why, thpreplay explain).
MAX_STEPS = 24   # engine.h
PRIORITIES = {0: "sync-full", 1: "sync-light", 2: "async"}   # enum compact_priority
# Why an attempt ended without a page, in __alloc_pages_slowpath()'s words (docs/policies.md has the eras).
BAIL_REASONS = {
    1: "a __GFP_THISNODE try without direct reclaim fails after the fast path (4.1-4.5)",
    2: "no direct reclaim or compaction for this mask (the defrag setting): the attempt fails",
    3: "costly order and compaction skipped or deferred: no reclaim (5.4, b39d0ee2632d)",
    4: "__GFP_NORETRY and compaction skipped or deferred: no reclaim (5.5+, cc638f329ef6)",
    5: "__GFP_THISNODE|__GFP_NORETRY: fails after the first compaction, never reclaims (9c9828d3ead6)",
    6: "__GFP_NORETRY and compaction deferred: fails (4.8-5.4)",
    7: "__GFP_NORETRY: fails after one round of reclaim and compaction",
    8: "costly order without __GFP_RETRY_MAYFAIL: fails after one round of reclaim and compaction",
}


def _where(node: int) -> str:
    return f"page on node {node}" if node >= 0 else "none"


def _step_text(kind: int, code: int, node: int) -> str:
    if kind == 1:
        scope = "local node only" if code & 1 else "any node"
        mods = ([] if code & 2 else ["no direct reclaim"]) + (["NORETRY"] if code & 4 else [])
        order = "" if node == 9 else f" order {node}"
        return f"try{order} {scope}" + (f" ({', '.join(mods)})" if mods else "") + ":"
    if kind == 2:
        return f"fast path: {_where(node)}"
    if kind == 3:
        return "kswapd woken"
    if kind == 4:
        return f"min watermark: {_where(node)}"
    if kind == 5:
        result = COMPACT_RESULTS[code & 15] if (code & 15) < len(COMPACT_RESULTS) else str(code & 15)
        text = f"compaction {PRIORITIES.get(code >> 4, '?')} {result}"
        return text + (f", {_where(node)}" if node >= 0 else "")
    if kind == 6:
        return "direct reclaim" + (" (swap)" if code else "")
    if kind == 7:
        return f"after reclaim: {_where(node)}"
    if kind == 8:
        return "gives up: " + BAIL_REASONS.get(code, f"reason {code}")
    if kind == 9:
        return "…"
    return f"step {kind}"


# memory_series rows as the engine samples them (engine.h SERIES_W): ts, node, free pages, free
# pageblocks, free blocks per order 0..9, pageblocks unmovable / movable / reclaimable
NORD = 10
SERIES_W = 4 + NORD + 3


def unusable_index(free_blocks: np.ndarray, order: int = 9) -> np.ndarray:
    """The unusable free space index at `order` (Mel Gorman's, as /sys/kernel/debug/extfrag/unusable_index
    has it, mm/vmstat.c unusable_free_index): the share of free pages in blocks too small for the order,
    0 when nothing is free. free_blocks: [rows, orders] free block counts."""
    sizes = 1 << np.arange(free_blocks.shape[1], dtype=np.int64)
    total = (free_blocks * sizes).sum(axis=1)
    usable = (free_blocks[:, order:] * sizes[order:]).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, (total - usable) / np.maximum(total, 1), 0.0)


def series_frame(policy: str, series: np.ndarray) -> pl.DataFrame:
    free_blocks = series[:, 4:4 + NORD]
    return pl.DataFrame({
        "policy": [policy] * len(series), "ts_ns": series[:, 0], "node": series[:, 1].astype(np.int16),
        "free_pages": series[:, 2], "free_huge_pages": series[:, 3],
        "free_blocks": pl.Series(free_blocks.tolist(), dtype=pl.List(pl.Int64)),
        "unusable_index": unusable_index(free_blocks),
        "unmovable_blocks": series[:, 4 + NORD], "movable_blocks": series[:, 5 + NORD],
        "reclaimable_blocks": series[:, 6 + NORD],
    }, schema_overrides={"free_blocks": pl.List(pl.Int64)})


def why_text(steps: np.ndarray) -> str:
    """One fault's steps (int32[MAX_STEPS]) as text: attempts separated by ' | ', steps by ' → '."""
    attempts: list[list[str]] = []
    for v in steps.tolist():
        kind, code, node = v & 0xFF, (v >> 8) & 0xFF, (v >> 16) - 1
        if kind == 0:
            break
        if kind == 1 or not attempts:
            attempts.append([])
        attempts[-1].append(_step_text(kind, code, node))
    return " | ".join(" ".join(a[:1]) + (" " if len(a) > 1 else "") + " → ".join(a[1:]) for a in attempts)


def why_column(steps: np.ndarray, n: int) -> pl.Series:
    """Every fault's `why`, formatting each distinct path once (most faults share a few)."""
    rows = steps.reshape(n, MAX_STEPS)
    if n == 0:
        return pl.Series("why", [], dtype=pl.String)
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    texts = np.array([why_text(r) for r in distinct], dtype=object)
    return pl.Series("why", texts[inverse.ravel()].tolist(), dtype=pl.String)


@dataclass
class Run:
    policy: str
    outcomes: pl.DataFrame
    counters: dict[str, int]
    series: pl.DataFrame


def _plan(policy: Policy, settings: ThpSettings) -> tuple[np.ndarray, np.ndarray]:
    plan = np.zeros((2, MAX_ATTEMPTS, 5), dtype=np.int32)
    nplan = np.zeros(2, dtype=np.int32)
    for madvised in (0, 1):
        attempts = [a for a in call_attempts(policy, settings, bool(madvised)) if a.order == 9]
        # mTHP orders (6.8+) are not replayed: a region is either one PMD huge page or base pages
        for i, a in enumerate(attempts[:MAX_ATTEMPTS]):
            plan[madvised, i] = (a.order, a.scope == "local", a.direct_reclaim, a.kswapd_reclaim, a.noretry)
        nplan[madvised] = min(len(attempts), MAX_ATTEMPTS)
    return plan.ravel(), nplan


def _slowpath(policy: Policy) -> np.ndarray:
    sp = policy.slowpath
    skip_mode = {"never": 0, "costly_direct": 1, "if_noretry": 2}[sp.bail_skipped_or_deferred]
    return np.array([sp.second_compaction_sync, sp.bail_deferred_if_noretry, skip_mode, sp.bail_thisnode_noretry,
                     sp.thisnode_without_wait_fails, sp.min_watermark_retry], dtype=np.int32)


def _params(params: Params, state: InitialState, sample_ns: int, stall_rule: str, policy: Policy,
            release: str | None, proactive_phase_ns: int | None = None) -> np.ndarray:
    p = params
    sampling = getattr(policy, "free_scanner_sampling", None)
    if sampling is None:
        sampling = free_scanner_sampling(release)
    # proactive compaction only for eras that have it (5.9+); None (an era the lab runs on newer kernels)
    # and a plugin without the attribute follow the capture's kernel
    era_proactive = getattr(policy, "proactive_compaction", None)
    if era_proactive is None:   # the capture's kernel decides; an unknown one leaves the era as it was
        version = parse_release(release) if release else None
        era_proactive = version is not None and version >= (5, 9)
    proactive = p.compaction_proactiveness if era_proactive else 0
    return np.array([
        p.compact_call_us, p.scan_ns_per_page, p.migrate_us_per_page,
        p.sync_light_factor, p.reclaim_us_per_page, p.swap_out_us_per_page,
        p.access_local_huge, p.access_local_base, p.access_hop1_huge, p.access_hop1_base,
        p.access_hop2_huge, p.access_hop2_base, p.extfrag_threshold, state.swap_pages, sample_ns,
        float(p.kswapd), float(p.kcompactd), 1.0 if stall_rule == "every_call" else 0.0, float(p.seed),
        float(proactive), float(sampling), p.kswapd_us_per_page, p.kcompactd_us_per_page,
        float(proactive_phase_ns if proactive_phase_ns is not None else -1),
        float(p.watermark_boost_factor), float(compaction_ready_form(release)), float(p.reclaim_round_pages),
        float(p.shuffled_free_lists), float(p.compact_contention), float(p.compact_unevictable_allowed),
        float(pcp_free_form(release)), p.kswapd_wake_us,
        # the rescan came with 5.1 too: an era wholly before it (sampling False) has none
        float(finish_pageblock_form(release) if sampling else 0),
    ], dtype=np.float64)


def _zones(state: InitialState) -> np.ndarray:
    rows = []
    for z in state.zones:
        b0 = (z.start - state.base_pfn) // 512
        b1 = -(-(z.end - state.base_pfn) // 512)
        # deferral starts clear: (defer_shift, considered, order_failed) = (0, 0, MAX_ORDER); then the
        # cached compaction positions and the last skip-bit reset's (page indexes; -1: the zone's ends)
        def idx(pfn: int) -> int:
            return pfn - state.base_pfn if pfn >= 0 else -1
        rows.append([z.node, z.type, b0, b1, z.wmin, z.wlow, z.whigh, z.reserve, 0, 0, 11, 0,
                     z.pcp_count, z.pcp_high, z.pcp_batch, 0,
                     idx(z.cached_migrate), idx(z.cached_free), idx(z.init_migrate), idx(z.init_free)])
    return np.array(rows, dtype=np.int64).ravel()


def new_engine(policy: Policy, settings: ThpSettings, demand: Demand, state: InitialState, params: Params,
               stall_rule: str, release: str | None = None, proactive_phase_ns: int | None = None):
    """The C engine at the initial state, with the policy's plan loaded (tests drive it op by op)."""
    plan, nplan = _plan(policy, settings)
    sample_ns = params.sample_interval_ns or max(demand.ops.ts_span // 200, 1)
    return _engine.new(
        _zones(state), state.zonelists.astype(np.int32), state.distances.astype(np.int32),
        state.block_zone.astype(np.int16), state.block_mt.astype(np.int8), state.used, state.anon, state.file,
        int(state.base_pfn), int(len(demand.observed_huge)), demand.observed_huge.astype(np.int8), plan, nplan,
        _slowpath(policy), _params(params, state, sample_ns, stall_rule, policy, release, proactive_phase_ns), state.mlock, state.hint,
    )


# the demand's op columns the core reads, in the order _engine.run takes them (all but line)
OP_COLUMNS = tuple((name, dtype) for name, dtype in DEMAND_COLUMNS if name != "line")
ENGINE_COLUMNS = tuple(name for name, _ in OP_COLUMNS)


def outputs(n: int) -> dict[str, np.ndarray]:
    """Per-fault output arrays the engine fills (indexed by region = fault)."""
    return dict(
        result=np.full(n, 4, dtype=np.int8), node=np.full(n, -1, dtype=np.int16), attempts=np.zeros(n, dtype=np.int8),
        compact=np.zeros(n, dtype=np.int16), compact_ok=np.zeros(n, dtype=np.int8), migrated=np.zeros(n, dtype=np.int64),
        scanned=np.zeros(n, dtype=np.int64), reclaimed=np.zeros(n, dtype=np.int64), swapped=np.zeros(n, dtype=np.int64),
        stall=np.zeros(n, dtype=np.int64), access=np.zeros(n, dtype=np.float64),
        compact_result=np.full(n, -1, dtype=np.int8), reclaim_calls=np.zeros(n, dtype=np.int16),
        steps=np.zeros(n * MAX_STEPS, dtype=np.int32),
    )


def feed(eng, ops: dict[str, np.ndarray] | pl.DataFrame, out: dict[str, np.ndarray]) -> None:
    """Replay ops (a chunk of Demand.ops, or a frame with its columns) into the engine."""
    arrays = [np.ascontiguousarray(ops[c], dtype=t) for c, t in OP_COLUMNS]
    _engine.run(eng, *arrays, *out.values())


# keys of the untraced start's pages: below every key the demand uses (pfns >= 0, synthesized pages' keys
# -(region * 512 + i) - 2), so that none is taken for a traced page
UNTRACED_KEY = -(1 << 52)


def untraced_ops(pages: dict[int, int], migratetype: str, ts_ns: int) -> dict[str, np.ndarray]:
    """The untraced start's allocations (sim/untraced.py): pages[node] order-0 pages on each node, unmovable
    kernel pages or movable swap-backed ones, placed by the model's allocator (their keys lie outside every
    zone), never freed."""
    nodes = [node for node, n in sorted(pages.items()) for _ in range(n)]
    k = len(nodes)
    mt = MIGRATETYPES[migratetype]
    return dict(kind=np.full(k, OP_ALLOC, np.int8), ts_ns=np.full(k, ts_ns, np.int64),
                pfn=UNTRACED_KEY - np.arange(k, dtype=np.int64), order=np.zeros(k, np.int8),
                mt=np.full(k, mt, np.int8), pkind=np.full(k, PK_ANON if mt else PK_PINNED, np.int8),
                node=np.array(nodes, np.int16), region=np.full(k, -1, np.int64), madvised=np.zeros(k, np.int8))


def run(policy: Policy, settings: ThpSettings, demand: Demand, state: InitialState, params: Params,
        stall_rule: str, progress=None, release: str | None = None, proactive_phase_ns: int | None = None,
        untraced_pages: dict[int, int] | None = None, untraced_migratetype: str = "unmovable") -> Run:
    """Replay the demand under one policy. Deterministic: same inputs, same outputs. untraced_pages: pages
    per node the start took untraced (sim/untraced.py), allocated before the demand's first op."""
    eng = new_engine(policy, settings, demand, state, params, stall_rule, release, proactive_phase_ns)
    n = len(demand.observed_huge)
    out = outputs(n)
    if untraced_pages and sum(untraced_pages.values()):
        feed(eng, untraced_ops(untraced_pages, untraced_migratetype, demand.ops.ts_min), out)
    for chunk in demand.ops.chunks(CHUNK, ENGINE_COLUMNS):
        feed(eng, chunk, out)
        if progress:
            progress(len(chunk["kind"]))
    counters = dict(zip(COUNTERS, _engine.counters(eng)))
    series = np.frombuffer(_engine.series(eng), dtype=np.int64).reshape(-1, SERIES_W)
    faults = demand.faults
    # latency_ns and stall_ns span what the trace's do (schemas, params.fault_entry_us): the entry cost,
    # the slowpath's costs (the engine's stall) and, for a huge page, its preparation before the
    # allocation returns; a fault without a compaction or reclaim call has no stall, as in the trace
    entry, prep = int(round(params.fault_entry_us * 1000.0)), int(round(params.thp_prep_us * 1000.0))
    huge = out["result"] <= 1   # R_HUGE_LOCAL, R_HUGE_REMOTE
    slow = (out["compact_result"] >= 0) | (out["reclaim_calls"] > 0)
    outcomes = faults.select(
        pl.lit(policy.name).alias("policy"), "fault_id", "ts_ns", "pid", "comm", "local_node", "madvised",
    ).with_columns(
        pl.Series("result", np.array(RESULTS)[out["result"]]),
        pl.Series("node", out["node"]).replace(-1, None).cast(pl.Int16),
        pl.Series("attempts", out["attempts"]).cast(pl.Int16),
        pl.Series("compaction_attempted", out["compact"]).cast(pl.Int16),
        pl.Series("compaction_succeeded", out["compact_ok"].astype(bool)),
        pl.Series("pages_migrated", out["migrated"]),
        pl.Series("pages_scanned", out["scanned"]),
        pl.Series("pages_reclaimed", out["reclaimed"]),
        pl.Series("swap_outs", out["swapped"]),
        pl.Series("stall_ns", out["stall"] + prep * (huge & slow)),
        pl.Series("latency_ns", out["stall"] + entry + prep * huge),
        pl.Series("access_cost", out["access"]),
        faults["observed_outcome"],
        pl.Series("compact_result", [COMPACT_RESULTS[c] if c >= 0 else None for c in out["compact_result"].tolist()],
                  dtype=pl.String),
        pl.Series("reclaim_calls", out["reclaim_calls"]).cast(pl.Int16),
        why_column(out["steps"], n),
    )
    series_df = series_frame(policy.name, series)
    if counters["bug_double_alloc"] or counters["bug_double_free"]:
        raise AssertionError(f"replay core inconsistency under {policy.name}: {counters}")
    return Run(policy.name, outcomes, counters, series_df)
