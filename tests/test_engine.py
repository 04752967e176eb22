"""The replay core's allocator invariants, on small synthetic memories (hypothesis).

Pages are conserved, no page is allocated twice or freed while free, the free lists always match the
bitmaps (the engine's own check recomputes them from scratch), freed buddies merge back, and a replay
is deterministic.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thpreplay.kernel.page_alloc import pcp_free_form
from thpreplay.policy.base import ThpSettings
from thpreplay.policy.registry import all_policies, get_policy
from thpreplay.sim import _engine, engine
from thpreplay.sim.demand import Demand
from thpreplay.sim.params import Params
from thpreplay.sim.state import InitialState, Zone, _histogram, _pack

PB = 512
BLOCKS_PER_NODE = 6
BASE = 4096  # not zero: pfn 0 is never a page here, as on x86


def small_state(used: np.ndarray, kinds: np.ndarray, swap: int = 0, hint: np.ndarray | None = None,
                pcp: tuple[int, int, int] = (0, 0, 0)) -> InitialState:
    """Two nodes of BLOCKS_PER_NODE pageblocks each, one Normal zone per node; pcp = (count, high, batch)
    of each zone's per-cpu list (high 0: none)."""
    nb = 2 * BLOCKS_PER_NODE
    hint = hint if hint is not None else np.zeros(nb * PB, bool)
    zones = [Zone(n, n, "Normal", 2, BASE + n * BLOCKS_PER_NODE * PB, BASE + (n + 1) * BLOCKS_PER_NODE * PB,
                  BLOCKS_PER_NODE * PB, 8, 10, 12, 0, *pcp) for n in (0, 1)]
    zonelists = np.full((2, 64), -1, dtype=np.int32)
    zonelists[0, :2] = [0, 1]
    zonelists[1, :2] = [1, 0]
    return InitialState(
        zones=zones, base_pfn=BASE, block_zone=np.repeat(np.arange(2, dtype=np.int16), BLOCKS_PER_NODE),
        block_mt=np.ones(nb, dtype=np.int8), used=_pack(used), anon=_pack(used & (kinds == 1)),
        file=_pack(used & (kinds == 2)), mlock=_pack(used & (kinds == 3)), hint=_pack(hint),
        zonelists=zonelists.ravel(), distances=np.array([10, 20, 20, 10], dtype=np.int32), nodes=[0, 1],
        cpu_node={0: 0, 1: 1}, swap_pages=swap,
    )


def demand_of(rows: list[tuple], nfaults: int, observed_huge: np.ndarray | None = None) -> Demand:
    cols = [c for c, _ in engine.OP_COLUMNS]
    ops = pl.DataFrame([dict(zip(cols, r)) for r in rows] if rows else None,
                       schema={c: pl.Int64 for c in cols}).with_columns(pl.int_range(pl.len()).alias("line"))
    faults = pl.DataFrame({"region": list(range(nfaults)), "fault_id": list(range(nfaults)),
                           "ts_ns": [0] * nfaults, "pid": [1] * nfaults, "comm": ["t"] * nfaults,
                           "cpu": [0] * nfaults, "local_node": [0] * nfaults, "madvised": [True] * nfaults,
                           "order": [9] * nfaults, "observed_outcome": [None] * nfaults, "observed_node": [None] * nfaults},
                          schema_overrides={"pid": pl.Int32, "local_node": pl.Int16, "observed_outcome": pl.String,
                                            "observed_node": pl.Int16})
    oh = observed_huge if observed_huge is not None else np.zeros(nfaults, dtype=np.int8)
    empty = np.empty(0, dtype=np.int64)
    return Demand(ops=ops, faults=faults, observed_huge=oh.astype(np.int8), used_at_start=empty,
                  free_at_start=empty, traced_pages=empty, pfns_by_migratetype={})


def used_bits(eng) -> np.ndarray:
    return np.unpackbits(np.frombuffer(_engine.used(eng), dtype=np.uint8), bitorder="little").astype(bool)


memories = st.tuples(
    st.integers(0, 2**32 - 1),  # seed of the initial layout
    st.floats(0.0, 0.9),  # how full
)


def layout(seed: int, fullness: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 2 * BLOCKS_PER_NODE * PB
    used = rng.random(n) < fullness
    used[rng.integers(0, 2 * BLOCKS_PER_NODE) * PB:][:PB] = False  # at least one free pageblock, often
    kinds = rng.integers(0, 4, n)
    return used, kinds


op_lists = st.lists(
    st.tuples(st.sampled_from(["alloc", "free", "thp", "release"]), st.integers(0, 2 * BLOCKS_PER_NODE * PB - 1),
              st.integers(0, 3), st.integers(0, 2), st.integers(0, 3), st.integers(0, 1)),
    max_size=300,
)


def to_rows(ops, nfaults: int) -> list[tuple]:
    rows = []
    for i, (what, page, order, mt, pkind, node) in enumerate(ops):
        pfn = BASE + (page & ~((1 << order) - 1))
        if what == "alloc":
            rows.append((0, i, pfn, order, mt, min(pkind, 2), node, -1, 0))
        elif what == "free":
            rows.append((1, i, pfn, order, 0, 0, -1, -1, 0))
        elif what == "thp":
            rows.append((2, i, -1, 9, 1, 1, node, page % nfaults, 1))
        else:
            rows.append((3, i, -1, 9, 0, 0, -1, page % nfaults, 0))
    return rows


# per-cpu lists: none, or (pages at the start, high, batch) with a kernel of each nr_pcp_free() form
pcp_setups = st.sampled_from([((0, 0, 0), None), ((30, 64, 8), "5.10.0"), ((0, 40, 4), "6.1.0"),
                              ((100, 120, 8), "6.12.0"), ((0, 1, 4), "6.1.0")])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(memories, op_lists, st.sampled_from([p.name for p in all_policies()]), st.integers(0, 2000), pcp_setups)
def test_invariants_hold_after_any_demand(memory, ops, policy_name, swap, pcp_setup):
    used, kinds = layout(*memory)
    rng = np.random.default_rng(memory[0])
    # pages "the trace uses later": the model's own placements avoid them when they can
    pcp, release = pcp_setup
    state = small_state(used, kinds, swap, hint=rng.random(used.size) < rng.random(), pcp=pcp)
    nfaults = 8
    demand = demand_of(to_rows(ops, nfaults), nfaults, (rng.random(nfaults) < 0.5).astype(np.int8))
    policy = get_policy(policy_name)
    eng = engine.new_engine(policy, ThpSettings("madvise", "madvise"), demand, state, Params(), "not_skipped",
                            release)
    out = engine.outputs(nfaults)
    engine.feed(eng, demand.ops.frame(), out)
    assert _engine.check(eng) is None
    counters = dict(zip(engine.COUNTERS, _engine.counters(eng)))
    assert counters["bug_double_alloc"] == 0 and counters["bug_double_free"] == 0
    # pages conserved: every page of a zone is free or used, and the zones' free counts say how many
    # (a page on a per-cpu list is used for the buddy allocator; check() ties the lists' counts to their pages)
    zones_free = sum(z[0] for z in _engine.zones(eng))
    assert zones_free == int((~used_bits(eng)).sum())
    assert all(count <= max(pcp[1], pcp[0]) and 0 <= phantom <= pcp[0] for count, phantom in _engine.pcp(eng))


@settings(max_examples=40, deadline=None)
@given(memories, st.lists(st.tuples(st.integers(0, 2 * BLOCKS_PER_NODE * PB - 1), st.integers(0, 4)), max_size=200))
def test_freed_buddies_merge_back(memory, picks):
    """Allocate at free places (as a trace would), free everything: the memory is as it was, and every
    free block has merged with its buddy exactly as before (same histogram per order)."""
    used, kinds = layout(*memory)
    state = small_state(used, kinds)
    before_hist = None
    taken = used.copy()
    rows = []
    for i, (page, order) in enumerate(picks):
        start = page & ~((1 << order) - 1)
        if not taken[start:start + (1 << order)].any():
            taken[start:start + (1 << order)] = True
            rows.append((0, i, BASE + start, order, 1, 0, 0, -1, 0))
    allocs = list(rows)
    rows += [(1, len(picks) + j, r[2], r[3], 0, 0, -1, -1, 0) for j, r in enumerate(reversed(allocs))]
    demand = demand_of(rows, 0)
    eng = engine.new_engine(get_policy("thisnode-noretry-5.6"), ThpSettings("madvise", "madvise"), demand, state,
                            Params(kswapd=False, kcompactd=False, compaction_proactiveness=0), "not_skipped")
    before_hist = _engine.zones(eng)
    engine.feed(eng, demand.ops.read(0, len(allocs)), engine.outputs(0))
    counters = dict(zip(engine.COUNTERS, _engine.counters(eng)))
    assert counters["placed_as_traced"] == len(allocs)
    assert np.array_equal(used_bits(eng), taken)
    engine.feed(eng, demand.ops.read(len(allocs), demand.ops.height), engine.outputs(0))
    assert np.array_equal(used_bits(eng), used)
    assert _engine.zones(eng) == before_hist
    assert _engine.check(eng) is None


def test_histogram_of_the_layout_matches_the_engine():
    """The Python layout builder and the C core count free blocks the same way."""
    used, kinds = layout(7, 0.5)
    state = small_state(used, kinds)
    eng = engine.new_engine(get_policy("thisnode-noretry-5.6"), ThpSettings(), demand_of([], 0), state, Params(),
                            "not_skipped")
    blocks = np.arange(2 * BLOCKS_PER_NODE)
    hist = _histogram(~used, blocks, state.block_mt)
    c_total = np.sum([z[2:] for z in _engine.zones(eng)], axis=0)
    assert list(hist[1, :10]) == list(c_total)


@settings(max_examples=15, deadline=None)
@given(memories, op_lists)
def test_replay_is_deterministic(memory, ops):
    used, kinds = layout(*memory)
    results = []
    for _ in range(2):
        state = small_state(used, kinds, 500)
        demand = demand_of(to_rows(ops, 4), 4, np.array([1, 0, 1, 0], dtype=np.int8))
        run = engine.run(get_policy("local-only-4.8"), ThpSettings("madvise", "madvise"), demand, state, Params(),
                         "not_skipped")
        results.append((run.outcomes, run.counters, run.series))
    assert results[0][0].equals(results[1][0])
    assert results[0][1] == results[1][1]
    assert results[0][2].equals(results[1][2])


def _free_singles(release: str | None, pcp: tuple[int, int, int], nfree: int) -> tuple[np.ndarray, object]:
    """Allocate nfree single pages of an all-free node 0 where a trace would, then free them in order;
    returns which of them are free for the buddy allocator at the end, and the engine."""
    used = np.zeros(2 * BLOCKS_PER_NODE * PB, bool)
    state = small_state(used, np.zeros_like(used, dtype=np.int64), pcp=pcp)
    pages = [2 * i for i in range(nfree)]   # no two of them buddies
    rows = [(0, i, BASE + p, 0, 1, 1, 0, -1, 0) for i, p in enumerate(pages)]
    rows += [(1, nfree + i, BASE + p, 0, 0, 0, -1, -1, 0) for i, p in enumerate(pages)]
    demand = demand_of(rows, 0)
    eng = engine.new_engine(get_policy("thisnode-noretry-5.6"), ThpSettings(), demand, state,
                            Params(kswapd=False, kcompactd=False, compaction_proactiveness=0), "not_skipped", release)
    engine.feed(eng, demand.ops.frame(), engine.outputs(0))
    assert _engine.check(eng) is None
    return ~used_bits(eng)[pages], eng


def test_freed_pages_wait_on_the_per_cpu_list_and_leave_it_oldest_first():
    """free_unref_page_commit() up to 5.13: at the high mark, free_pcppages_bulk() returns `batch` of the
    oldest pages. high 8, batch 2, ten frees: at the 8th the two oldest go (6 left), at the 10th the next
    two: the first four freed pages are free for the buddy allocator, the last six wait."""
    free, eng = _free_singles("5.10.0", (0, 8, 2), 10)
    assert free.tolist() == [True] * 4 + [False] * 6
    assert _engine.pcp(eng)[0] == (6, 0)


def test_the_batch_freed_doubles_from_5_14():
    """3b12e7e97938 (5.14): each overflow without an allocation in between frees batch << free_factor,
    free_factor then growing by one, clamped to [batch, high - batch]. high 8, batch 2: at the 8th free 2
    go (6 left, factor 1), at the 10th 4 go (6 left): six of ten are free."""
    free, eng = _free_singles("6.1.0", (0, 8, 2), 10)
    assert free.tolist() == [True] * 6 + [False] * 4
    assert _engine.pcp(eng)[0] == (4, 0)


def test_pages_on_the_list_at_the_start_leave_first():
    """zoneinfo's count of pages on the list at the start: they are the oldest, and flushing them frees
    nothing the model holds (phantoms). Count 5, high 8, batch 2: the 3rd free flushes two phantoms, the
    5th two more, the 7th the last phantom and the oldest freed page."""
    free, eng = _free_singles("5.10.0", (5, 8, 2), 7)
    assert free.tolist() == [True] + [False] * 6
    assert _engine.pcp(eng)[0] == (6, 0)


@pytest.mark.parametrize("release, form", [
    ("5.10.0-32-amd64", 1), ("5.13.19", 1), ("5.14", 2), ("6.1.176", 2), ("6.6.130", 2),
    ("6.7", 3), ("6.12.75", 3), ("6.18.44-fc-v1147", 3), (None, 3),
])
def test_pcp_free_form_per_release(release, form):
    assert pcp_free_form(release) == form


def test_no_list_without_pagesets():
    free, eng = _free_singles("6.1.0", (0, 0, 0), 5)
    assert free.all() and _engine.pcp(eng)[0] == (0, 0)


def _two_candidate_blocks() -> InitialState:
    """Node 0: block 0 pinned, block 1 anon on every other page (256 to move), block 2 pinned, block 3
    anon on every fourth page (128 to move), blocks 4-5 pinned on every 16th page (the free targets, in
    runs of 15 pages that the free-list search finds); node 1 full. No free pageblock, so a THP fault
    must compact."""
    n = 2 * BLOCKS_PER_NODE * PB
    used = np.ones(n, bool)
    kinds = np.zeros(n, dtype=np.int64)
    b1, b3 = PB, 3 * PB
    used[b1:b1 + PB][1::2] = False
    kinds[b1:b1 + PB] = 1
    used[b3:b3 + PB] = False
    used[b3:b3 + PB][0::4] = True
    kinds[b3:b3 + PB] = 1
    used[4 * PB:6 * PB] = False
    used[4 * PB:6 * PB][0::16] = True
    return small_state(used, kinds)


def _migrated_by_one_fault(state: InitialState) -> int:
    demand = demand_of([(2, 0, -1, 9, 1, 1, 0, 0, 1)], 1)
    eng = engine.new_engine(get_policy("thisnode-noretry-5.6"), ThpSettings("madvise", "madvise"), demand, state,
                            Params(kswapd=False, kcompactd=False, compaction_proactiveness=0), "not_skipped",
                            "6.18.0")
    out = engine.outputs(1)
    engine.feed(eng, demand.ops.frame(), out)
    assert out["result"][0] == 0 and out["compact_ok"][0] == 1   # a local huge page, from compaction
    return int(out["migrated"][0])


def test_compaction_starts_where_a_skip_bit_reset_left_the_scanners():
    """compact_zone() starts at the zone's cached positions: by default the zone's ends (the migrate
    scanner empties block 1, 256 pages); with the positions a reset left before the trace (state.py
    _with_cached_positions) at block 3, it empties block 3 (128 pages)."""
    from dataclasses import replace
    state = _two_candidate_blocks()
    assert _migrated_by_one_fault(state) == 256
    z0 = state.zones[0]
    b3, top = BASE + 3 * PB, z0.end - 1
    state.zones[0] = replace(z0, cached_migrate=b3, cached_free=top, init_migrate=b3, init_free=top)
    assert _migrated_by_one_fault(state) == 128


def test_cached_positions_are_read_only_from_a_reset_marked_first_run(tmp_path):
    """The first mm_compaction_begin of a zone sets the start only when its free position is one
    __reset_isolation_suitable() leaves (one below a pageblock boundary); an aligned one, another zone's
    run, or a dataset without compaction events leave the zone's ends."""
    from thpreplay.sim.state import _with_cached_positions
    zone = Zone(0, 0, "Normal", 2, 0x100000, 0x640000, 0x540000, 8, 10, 12, 0)

    def first_begin(rows):
        d = tmp_path / f"ds{len(list(tmp_path.iterdir()))}"
        (d / "compaction").mkdir(parents=True)
        pl.DataFrame(rows, schema={"ts_ns": pl.Int64, "line": pl.Int64, "event": pl.String, "migrate_pfn": pl.Int64,
                                   "free_pfn": pl.Int64, "zone_start": pl.Int64, "zone_end": pl.Int64},
                     orient="row").write_parquet(d / "compaction" / "part-000001.parquet")
        notes: list[str] = []
        return _with_cached_positions(d, [zone], notes)[0], notes

    z, notes = first_begin([(2, 9, "mm_compaction_begin", 0x104800, 0x63ffff, 0x100000, 0x640000),
                            (1, 5, "mm_compaction_end", 0x104800, 0x63ffff, 0x100000, 0x640000),
                            (3, 20, "mm_compaction_begin", 0x15b600, 0x5b6e00, 0x100000, 0x640000)])
    assert (z.cached_migrate, z.cached_free, z.init_migrate, z.init_free) == (0x104800, 0x63ffff, 0x104800, 0x63ffff)
    assert notes == ["compaction of node 0 Normal starts where the trace's first run shows a skip-bit reset "
                     "left it: migrate scanner 0x104800, free scanner 0x63ffff"]
    for rows in ([(2, 9, "mm_compaction_begin", 0x116200, 0x246600, 0x100000, 0x640000),
                  (3, 9, "mm_compaction_begin", 0x104800, 0x63ffff, 0x100000, 0x640000)],
                 [(2, 9, "mm_compaction_begin", 0x1000, 0xfffff, 0x1000, 0x100000)]):
        z, notes = first_begin(rows)
        assert (z.cached_migrate, z.cached_free, z.init_migrate, z.init_free, notes) == (-1, -1, -1, -1, [])
    assert _with_cached_positions(tmp_path / "none", [zone], []) == [zone]


def test_kswapd_runs_once_its_wake_up_latency_has_passed():
    """Both nodes nearly full of page cache: six order-0 allocations on node 0 take it below its low
    watermark and wake both kswapds (wakeup_kswapd), the trace's last op is 1 ms later. kswapd runs from
    the op that woke it plus kswapd_wake_us: at once or 0.5 ms later it reclaims before the trace ends,
    5 ms later not at all."""
    n = 2 * BLOCKS_PER_NODE * PB
    used = np.ones(n, bool)
    kinds = np.full(n, 2, np.int64)
    free = [BLOCKS_PER_NODE * PB - 1 - i for i in range(14)]
    used[free] = False
    used[[n - 1 - i for i in range(9)]] = False   # node 1 below its low watermark already
    state = small_state(used, kinds)
    rows = [(0, 1000 * i, BASE + p, 0, 1, 2, 0, -1, 0) for i, p in enumerate(free[:6])]
    rows.append((0, 1_000_000, BASE + n - 1, 0, 1, 2, 1, -1, 0))

    def reclaimed(wake_us: float) -> tuple[int, int]:
        run = engine.run(get_policy("no-local-reclaim-7.0"), ThpSettings("always", "madvise"), demand_of(rows, 0),
                         state, Params(kswapd_wake_us=wake_us, kcompactd=False, compaction_proactiveness=0),
                         "not_skipped", release="6.12.0")
        return run.counters["kswapd_wakes"], run.counters["pgsteal_kswapd"]

    now, soon, late = reclaimed(0.0), reclaimed(500.0), reclaimed(5000.0)
    assert now[0] == soon[0] == late[0] == 2
    assert now[1] == soon[1] > 0 and late[1] == 0


@pytest.mark.parametrize("release, cpus, slice_us", [
    ("5.10.0", 2, 6000.0),     # CFS: 6 ms latency x (1 + ilog2 2) / 2 runnable tasks
    ("6.1.0", 1, 3000.0),
    ("6.12.0", 2, 1500.0),     # EEVDF: 0.75 ms base slice x 2
    ("6.18.44", 64, 3000.0),   # the factor stops at 8 CPUs: 1 + ilog2 8 = 4
    (None, 2, 1500.0),
])
def test_the_wake_up_latency_is_bounded_by_the_scheduler_slice(release, cpus, slice_us):
    from thpreplay.kernel.sched import wake_slice_us

    assert wake_slice_us(release, cpus) == slice_us
