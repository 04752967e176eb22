"""`thpreplay explain DATASET FAULT`: one THP fault's story, as the captured kernel lived it and as each
policy replays it.

The trace's side is the fault's own events, in line order: its page-fault event, every THP attempt
(mm_page_alloc with its gfp mask and, when it got one, the page's pfn and node), and between them the
task's direct compaction (try_to_compact_pages, each zone's compaction_suitable / deferred / begin /
migratepages / end, defer_compaction / defer_reset) and direct reclaim (begin, end with nr_reclaimed).
They are the fault's task's events from the page-fault event (thp_faults.ts_ns) to its last attempt
(thp_faults.last_line), the window thp_faults and `validate` use. The trace's path is summed up in the
model's words too (`trace_why`): per attempt its scope (__GFP_THISNODE: local node only), NORETRY, each
direct compaction call's result (try_to_compact_pages' value: the highest compact_result of its zones,
as validate reconstructs it), direct reclaim, and the page's node.

The model's side is outcomes.why (sim/engine.py formats the engine's steps), with the result, latency
and stall of the fault under each policy: the dataset's stored simulation, or a replay in memory of the
policies asked for (nothing is written).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from thpreplay.dataset import check_simulation, reading
from thpreplay.errors import InputError
from thpreplay.sim.engine import COMPACT_RESULTS, PRIORITIES
from thpreplay.sim.state import read_table
from thpreplay.simulate import SIM_DIR, check_dataset, prepare, replay, select_policies

_RANK = {name: i for i, name in enumerate(COMPACT_RESULTS)}
_TRY, _RECLAIM_BEGIN, _RECLAIM_END = ("mm_compaction_try_to_compact_pages", "mm_vmscan_direct_reclaim_begin",
                                      "mm_vmscan_direct_reclaim_end")


@dataclass
class ModelSide:
    policy: str
    result: str
    node: int | None
    latency_ns: int
    stall_ns: int
    why: str


@dataclass
class Explanation:
    dataset: Path
    fault: dict                 # the thp_faults row
    timeline: pl.DataFrame      # ts_ns, line, text: the trace's events of the fault
    trace_why: str
    models: list[ModelSide] = field(default_factory=list)


def explain(dataset, fault_id: int, policies: list[str] | None = None, kernels: list[str] | None = None) -> Explanation:
    dataset = Path(dataset)
    with reading(dataset):  # not replaced while it is read (dataset.py)
        check_dataset(dataset)
        return _explain(dataset, fault_id, policies, kernels)


def _explain(dataset: Path, fault_id: int, policies, kernels) -> Explanation:
    faults = read_table(dataset, "thp_faults")
    row = faults.filter(pl.col("fault_id") == fault_id)
    if row.height == 0:
        last = faults.height - 1
        raise InputError(str(dataset), f"no THP fault {fault_id} (fault ids are 0..{last})" if last >= 0
                         else "the capture holds no THP fault")
    fault = row.row(0, named=True)
    events = _events(dataset, fault)
    return Explanation(dataset, fault, _timeline(events), _trace_why(events), _models(dataset, fault_id, policies, kernels))


def _events(dataset: Path, fault: dict) -> pl.DataFrame:
    """The fault's task's events from its page-fault event to its last attempt, in line order."""
    pid, start, last = fault["pid"], fault["ts_ns"], fault["last_line"]

    def window(table: str, columns: list[str]) -> pl.DataFrame:
        frame = read_table(dataset, table, columns)
        keep = (pl.col("line") <= last) & (pl.col("ts_ns") >= start)
        keep = keep & (pl.col("pid") == pid if pid is not None else pl.col("pid").is_null())
        return frame.filter(keep)

    parts = [
        window("page_fault", ["ts_ns", "pid", "line", "event", "address"]),
        window("page_alloc", ["ts_ns", "pid", "line", "event", "pfn", "success", "order", "gfp_flags", "gfp_thisnode",
                              "gfp_noretry", "thp_attempt", "node"]).filter(pl.col("thp_attempt")),
        window("compaction", ["ts_ns", "pid", "line", "event", "order", "priority", "mode", "status", "ret", "node",
                              "zone", "nr_migrated", "nr_failed", "consider", "defer_limit", "migrate_pfn",
                              "free_pfn"]),
        window("reclaim", ["ts_ns", "pid", "line", "event", "nr_reclaimed"]).filter(
            pl.col("event").is_in([_RECLAIM_BEGIN, _RECLAIM_END])),
    ]
    events = pl.concat(parts, how="diagonal_relaxed").sort("line")
    # the page fault: the last one before the first attempt (a task faults many 4 KiB pages before)
    first_attempt = events.filter(pl.col("event") == "mm_page_alloc")["line"].min()
    faults_before = events.filter((pl.col("event") == "page_fault_user") & (pl.col("line") < (first_attempt or 0)))
    if faults_before.height:
        events = events.filter((pl.col("line") >= faults_before["line"].max()))
    return events


def _zone(r: dict) -> str:
    parts = [f"node {r['node']}" if r.get("node") is not None else None, r.get("zone")]
    return " ".join(p for p in parts if p) or "a zone"


def _event_text(r: dict) -> str:
    e = r["event"]
    if e == "page_fault_user":
        return f"page fault at {r['address']:#x}" if r.get("address") is not None else "page fault"
    if e == "mm_page_alloc":
        got = f"pfn {r['pfn']:#x} on node {r['node']}" if r.get("success") else "failed"
        return f"THP attempt order {r['order']} ({r['gfp_flags']}): {got}"
    if e == _TRY:
        prio = PRIORITIES.get(r["priority"], r["priority"])
        return f"direct compaction (try_to_compact_pages order {r['order']}, priority {prio})"
    if e == "mm_compaction_suitable":
        return f"  {_zone(r)}: compaction_suitable {r['ret']}"
    if e == "mm_compaction_deferred":
        return f"  {_zone(r)}: deferred (considered {r['consider']} of {r['defer_limit']})"
    if e == "mm_compaction_begin":
        return f"  compaction begins, {r['mode']} (migrate {r['migrate_pfn']:#x}, free {r['free_pfn']:#x})"
    if e == "mm_compaction_migratepages":
        return f"    migrated {r['nr_migrated']}, failed {r['nr_failed']}"
    if e == "mm_compaction_end":
        return f"  compaction ends: {r['status']}"
    if e == "mm_compaction_defer_compaction":
        return f"  {_zone(r)}: compaction deferred from now on"
    if e == "mm_compaction_defer_reset":
        return f"  {_zone(r)}: deferral reset (compaction succeeded)"
    if e == _RECLAIM_BEGIN:
        return "direct reclaim begins"
    if e == _RECLAIM_END:
        return f"direct reclaim ends: {_pages(r['nr_reclaimed'])}"
    return e.removeprefix("mm_")


def _pages(n: int | None) -> str:
    return "? pages" if n is None else f"{n:,} page{'' if n == 1 else 's'}"


def _timeline(events: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame({"ts_ns": events["ts_ns"], "line": events["line"],
                         "text": [_event_text(r) for r in events.iter_rows(named=True)]},
                        schema={"ts_ns": pl.Int64, "line": pl.Int64, "text": pl.String})


def _call_result(call: list[dict]) -> str:
    """try_to_compact_pages' value from its events, as validate.trace_paths reconstructs it."""
    rank = _RANK["skipped"]
    for r in call:
        name = {"mm_compaction_deferred": "deferred", "mm_compaction_end": r.get("status"),
                "mm_compaction_suitable": (r.get("ret") or "").replace("not_suitable_zone", "skipped")}.get(r["event"])
        if name in _RANK:
            rank = max(rank, _RANK[name])
    if sum(r["event"] == "mm_compaction_defer_reset" for r in call) >= 2:
        rank = _RANK["success"]
    return COMPACT_RESULTS[rank]


def _trace_why(events: pl.DataFrame) -> str:
    """The trace's path in the model's words: ' | ' between attempts, ' → ' between steps."""
    attempts: list[list[str]] = [[]]
    call: list[dict] | None = None

    def close_call():
        nonlocal call
        if call is not None:
            attempts[-1].append(f"compaction {_mode(call)}{_call_result(call)}")
            call = None

    for r in events.iter_rows(named=True):
        e = r["event"]
        if e == _TRY:
            close_call()
            call = [r]
        elif e.startswith("mm_compaction") and call is not None:
            call.append(r)
        elif e == _RECLAIM_BEGIN:
            close_call()
            attempts[-1].append("direct reclaim")
        elif e == _RECLAIM_END:
            if attempts[-1] and attempts[-1][-1] == "direct reclaim":
                attempts[-1][-1] = f"direct reclaim ({_pages(r['nr_reclaimed'])})"
        elif e == "mm_page_alloc":
            close_call()
            scope = "local node only" if r.get("gfp_thisnode") else "any node"
            mods = " (NORETRY)" if r.get("gfp_noretry") else ""
            order = "" if r["order"] == 9 else f" order {r['order']}"
            got = f"page on node {r['node']}" if r.get("success") else "none"
            attempts[-1].insert(0, f"try{order} {scope}{mods}:")
            attempts[-1].append(got)
            attempts.append([])
    return " | ".join(a[0] + " " + " → ".join(a[1:]) for a in attempts if a)


def _mode(call: list[dict]) -> str:
    modes = [r["mode"] for r in call if r["event"] == "mm_compaction_begin" and r.get("mode")]
    return f"{modes[0]} " if modes else ""


def _models(dataset: Path, fault_id: int, policies, kernels) -> list[ModelSide]:
    info = check_simulation(dataset)
    if info is not None and not policies and not kernels:
        outcomes = read_table(dataset / SIM_DIR, "outcomes").filter(pl.col("fault_id") == fault_id)
    else:
        inputs = prepare(dataset)
        chosen = select_policies(policies, kernels) if (policies or kernels) else [_capture_policy(inputs)]
        result = replay(inputs, chosen)
        outcomes = pl.concat([r.outcomes.filter(pl.col("fault_id") == fault_id) for r in result.runs],
                             how="diagonal_relaxed")
    return [ModelSide(r["policy"], r["result"], r["node"], r["latency_ns"], r["stall_ns"], r["why"])
            for r in outcomes.iter_rows(named=True)]


def _capture_policy(inputs):
    from thpreplay.policy.registry import get_policy, resolve_kernel
    from thpreplay.sim import state

    declared = (state.snapshot_text(inputs.dataset, "thp_policy") or "").strip()
    if declared:
        return get_policy(declared)
    if inputs.kernel_release:
        return resolve_kernel(inputs.kernel_release)
    raise InputError(str(inputs.dataset), "the capture does not say which kernel made it; give --kernel or --policy")


def _us(ns: int | None) -> str:
    if ns is None:
        return "-"
    us = ns / 1000.0
    return f"{us:.1f} µs" if us < 100 else f"{us:,.0f} µs"


def lines(e: Explanation) -> list[str]:
    """The explanation as plain text lines (the CLI prints them)."""
    f = e.fault
    placed = f"{f['outcome']}" + (f" (node {f['node']}, pfn {f['pfn']:#x})" if f.get("pfn") is not None else "")
    out = [
        f"fault {f['fault_id']} of {e.dataset}: {f['comm'] or '?'} pid {f['pid']} on cpu {f['cpu']} (node "
        f"{f['local_node']}), {f['attempts']} THP attempt(s), trace lines {f['first_line']}..{f['last_line']}",
        "",
        f"as captured: {placed}; latency {_us(f['latency_ns'])}, stall {_us(f['stall_ns'])}",
        f"  why: {e.trace_why or '(no THP attempt in the window)'}",
    ]
    t0 = e.timeline["ts_ns"][0] if e.timeline.height else f["ts_ns"]
    for ts, line, text in e.timeline.iter_rows():
        offset = "" if ts is None or t0 is None else f"+{(ts - t0) / 1000.0:,.1f} µs"
        out.append(f"  {offset:>14}  line {line:<9} {text}")
    for m in e.models:
        where = f" (node {m.node})" if m.node is not None else ""
        out += ["", f"{m.policy}: {m.result}{where}; latency {_us(m.latency_ns)}, stall {_us(m.stall_ns)}",
                f"  why: {m.why}"]
    return out
