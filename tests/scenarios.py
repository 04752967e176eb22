"""Synthetic scenarios for the replay model: an (InitialState, Demand) pair built directly, no dataset.

A scenario is a NUMA machine with one Normal zone per node, a starting memory layout set page by page
with a few helpers, and a demand of THP faults. Everything is deterministic (seeded numpy).

    m = Machine(nodes=2, mib_per_node=512)   # node 1 stays free
    m.fill(0, file=0.5, anon=0.48)           # node 0: page cache and anon at random until 98 % is in use
    m.pollute(0, per_block=4)                # node 0: 4 pinned (unmovable) pages in every pageblock
    m.set_swap(mib=1024)                     # swap space for anon reclaim
    demand = thp_faults(m, 64)               # 64 MADV_HUGEPAGE faults from a CPU on node 0
    result = replay("local-only-4.8", m.state(), demand)
    result.results(), result.counters, result.check   # outcomes per kind, vmstat-like counters, invariants

(`m.fragment(0)` instead of `fill`: every other page of node 0 a movable anon page.)

Page kinds, as the model knows them (thpreplay.sim.engine): anon (migratable, swappable), file
(migratable, dropped by reclaim), mlock (migratable, not reclaimable) and pinned (used with none of the
three bits: kernel memory, never migrated or reclaimed). Compaction can empty a pageblock only when all
its used pages are migratable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import polars as pl
from thpreplay.kernel.counters import compact_stall_rule
from thpreplay.policy.base import ThpSettings
from thpreplay.policy.registry import get_policy
from thpreplay.sim import _engine, engine
from thpreplay.sim.demand import OP_ALLOC, OP_THP, PK_ANON, REGION_PAGES, Demand
from thpreplay.sim.params import Params
from thpreplay.sim.state import InitialState, Zone, _pack

PB = 512                      # pages per pageblock (order 9)
PAGES_PER_MIB = 256           # 4 KiB pages
ZONE_NORMAL = 2
MADVISE = ThpSettings(enabled="madvise", defrag="madvise")   # qemu's MADV_HUGEPAGE guest RAM


@dataclass
class Machine:
    """A NUMA machine: `nodes` nodes of `mib_per_node` MiB, one Normal zone each, node distances 10/20.

    Watermarks are realistic for the zone size: min = `min_permille` per mille of the zone (0.5 % by
    default, between the kernel's min_free_kbytes for this size and khugepaged's recommended value),
    low = min * 5/4, high = min * 3/2 (the kernel's watermark_scale_factor steps). Memory starts all
    free, all pageblocks MOVABLE, no swap; the helpers below change that. Each helper returns the
    machine, so calls chain.
    """

    nodes: int = 2
    mib_per_node: int = 512
    cpus_per_node: int = 4
    min_permille: int = 5
    seed: int = 1
    base_pfn: int = 1 << 18   # node 0 starts at 1 GiB: pfn arithmetic is checked against a non-zero base
    swap_pages: int = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mib_per_node * PAGES_PER_MIB % PB:
            raise ValueError("mib_per_node must be a multiple of 2 (whole pageblocks)")
        self.rng = np.random.default_rng(self.seed)
        n = self.total_pages
        self.used = np.zeros(n, dtype=bool)
        self.anon = np.zeros(n, dtype=bool)
        self.file = np.zeros(n, dtype=bool)
        self.mlock = np.zeros(n, dtype=bool)
        self.block_mt = np.ones(n // PB, dtype=np.int8)

    # -- geometry --

    @property
    def node_pages(self) -> int:
        return self.mib_per_node * PAGES_PER_MIB

    @property
    def total_pages(self) -> int:
        return self.nodes * self.node_pages

    def span(self, node: int) -> slice:
        """The node's pages, as indexes into the machine's page arrays (page i is pfn base_pfn + i)."""
        if not 0 <= node < self.nodes:
            raise ValueError(f"no node {node}")
        return slice(node * self.node_pages, (node + 1) * self.node_pages)

    @property
    def wmin(self) -> int:
        return self.node_pages * self.min_permille // 1000

    @property
    def wlow(self) -> int:
        return self.wmin * 5 // 4

    @property
    def whigh(self) -> int:
        return self.wmin * 3 // 2

    # -- the start --

    def _set(self, idx: np.ndarray, kind: str) -> None:
        """Make the pages at idx used pages of one kind: anon, file, mlock or pinned."""
        if kind not in ("anon", "file", "mlock", "pinned"):
            raise ValueError(f"unknown page kind {kind!r}")
        self.used[idx] = True
        for name in ("anon", "file", "mlock"):
            getattr(self, name)[idx] = name == kind

    def free_node(self, node: int) -> Machine:
        """Every page of the node free (the default)."""
        s = self.span(node)
        for a in (self.used, self.anon, self.file, self.mlock):
            a[s] = False
        return self

    def fragment(self, node: int, kind: str = "anon", every: int = 2) -> Machine:
        """One used page of `kind` every `every` pages (the others untouched): with the default, half of
        the node is in use and no free block is larger than one page, but every pageblock is
        compactable."""
        s = self.span(node)
        idx = np.arange(s.start, s.stop, every)
        self._set(idx, kind)
        return self

    def fragment_runs(self, node: int, run: int = 64, kind: str = "anon") -> Machine:
        """Used and free runs of `run` pages in turn (used first): half of the node in use, free blocks
        of order log2(run) at most, every pageblock compactable."""
        s = self.span(node)
        idx = np.arange(s.start, s.stop)
        self._set(idx[(idx - s.start) // run % 2 == 0], kind)
        return self

    def fill(self, node: int, *, file: float = 0.0, anon: float = 0.0, mlock: float = 0.0) -> Machine:
        """Page cache, anon and mlocked pages at random free places of the node, until the node holds
        these fractions of its pages (each fraction of the whole node; pages already of that kind count)."""
        s = self.span(node)
        for kind, frac in (("file", file), ("anon", anon), ("mlock", mlock)):
            have = int(getattr(self, kind)[s].sum())
            want = round(frac * self.node_pages) - have
            if want <= 0:
                continue
            free = np.nonzero(~self.used[s])[0] + s.start
            if want > len(free):
                raise ValueError(f"node {node}: only {len(free)} free pages for {want} {kind} pages")
            self._set(self.rng.choice(free, size=want, replace=False), kind)
        return self

    def pollute(self, node: int, per_block: int = 4) -> Machine:
        """`per_block` pinned pages (unmovable kernel allocations that fell back into MOVABLE pageblocks)
        at random places of every pageblock of the node, whatever was there before: no pageblock of the
        node can then be emptied by compaction."""
        s = self.span(node)
        blocks = np.arange(s.start, s.stop, PB)
        offs = np.stack([self.rng.choice(PB, size=per_block, replace=False) for _ in blocks])
        self._set((blocks[:, None] + offs).ravel(), "pinned")
        return self

    def set_swap(self, mib: int) -> Machine:
        """Swap space left for anon reclaim (0: anon pages cannot be reclaimed)."""
        self.swap_pages = mib * PAGES_PER_MIB
        return self

    # -- the model's view --

    def free_pages(self, node: int) -> int:
        return int((~self.used[self.span(node)]).sum())

    def state(self) -> InitialState:
        nn, npn, base = self.nodes, self.node_pages, self.base_pfn
        zones = [Zone(index=n, node=n, name="Normal", type=ZONE_NORMAL, start=base + n * npn,
                      end=base + (n + 1) * npn, present=npn, wmin=self.wmin, wlow=self.wlow, whigh=self.whigh,
                      reserve=0) for n in range(nn)]
        distances = np.full((nn, nn), 20, dtype=np.int32)
        np.fill_diagonal(distances, 10)
        zonelists = np.full((nn, 64), -1, dtype=np.int32)
        for n in range(nn):
            order = sorted(range(nn), key=lambda m: (distances[n, m] if m != n else -1, m))
            zonelists[n, :nn] = order   # one zone per node, zone index = node
        nblocks = self.total_pages // PB
        used = self.used.copy()
        anon = self.anon & used
        file = self.file & used & ~anon
        mlock = self.mlock & used & ~anon & ~file
        return InitialState(
            zones=zones, base_pfn=base, block_zone=np.repeat(np.arange(nn, dtype=np.int16), npn // PB),
            block_mt=self.block_mt.copy(), used=_pack(used), anon=_pack(anon), file=_pack(file),
            mlock=_pack(mlock), hint=_pack(np.zeros(self.total_pages, dtype=bool)),
            zonelists=zonelists.ravel(), distances=distances.ravel(), nodes=list(range(nn)),
            cpu_node={c: c // self.cpus_per_node for c in range(nn * self.cpus_per_node)},
            swap_pages=self.swap_pages, assumptions=["synthetic scenario (tests/scenarios.py)"],
            summary={"pageblocks": int(nblocks), "free_pages": int((~used).sum()),
                     "free_pageblocks": int((~used).reshape(-1, PB).all(axis=1).sum())},
        )


# -- demand --

OPS_SCHEMA = {"kind": pl.Int8, "ts_ns": pl.Int64, "line": pl.Int64, "pfn": pl.Int64, "order": pl.Int8,
              "mt": pl.Int8, "pkind": pl.Int8, "node": pl.Int16, "region": pl.Int64, "madvised": pl.Int8}


def thp_faults(machine: Machine, n: int, *, node: int = 0, madvised: bool = True, touches: bool = False,
               interval_ns: int = 1_000_000, start_ns: int = 1_000_000_000, pid: int = 4242,
               comm: str = "qemu-kvm") -> Demand:
    """A workload of `n` THP faults (2 MiB each) of one task on a CPU of `node`, `interval_ns` apart.

    touches=False: the capture is taken to have backed every region with a huge page (observed_huge=1),
    so when the model falls back, it touches the region's 512 base pages at the fault itself.
    touches=True: the capture fell back on every region, and the demand carries the 512 order-0 anon
    allocations that followed each fault (observed_huge=0); the model drops them when it gives the
    region a huge page. Their trace pfns lie above the machine's memory, so the model places each one
    itself (as a "relocated" page) and each has its own key.
    """
    cpu = node * machine.cpus_per_node
    ts = start_ns + np.arange(n, dtype=np.int64) * interval_ns
    region = np.arange(n, dtype=np.int64)
    per = 1 + (REGION_PAGES if touches else 0)     # ops per fault
    kind = np.full((n, per), OP_ALLOC, dtype=np.int8)
    kind[:, 0] = OP_THP
    op_ts = np.repeat(ts, per).reshape(n, per) + np.arange(per)[None, :] * (interval_ns // (2 * per) or 1)
    phantom = machine.base_pfn + machine.total_pages + region[:, None] * REGION_PAGES + np.arange(per)[None, :] - 1
    pfn = np.where(kind == OP_THP, -1, phantom)
    ops = pl.DataFrame({
        "kind": kind.ravel(), "ts_ns": op_ts.ravel(), "line": np.arange(n * per, dtype=np.int64),
        "pfn": pfn.ravel(), "order": np.where(kind == OP_THP, 9, 0).astype(np.int8).ravel(),
        "mt": np.ones(n * per, dtype=np.int8), "pkind": np.full(n * per, PK_ANON, dtype=np.int8),
        "node": np.full(n * per, node, dtype=np.int16), "region": np.repeat(region, per),
        "madvised": np.where(kind == OP_THP, int(madvised), 0).astype(np.int8).ravel(),
    }, schema=OPS_SCHEMA)
    faults = pl.DataFrame({
        "region": region, "fault_id": region, "ts_ns": ts, "pid": np.full(n, pid, dtype=np.int32),
        "comm": [comm] * n, "cpu": np.full(n, cpu, dtype=np.int32), "local_node": np.full(n, node, dtype=np.int16),
        "madvised": np.full(n, madvised), "order": np.full(n, 9, dtype=np.int8),
        # what the capture saw: never read by the model
        "observed_outcome": ["fallback" if touches else "huge_local"] * n,
        "observed_node": np.full(n, node, dtype=np.int16),
    })
    touched = (ops.filter(pl.col("kind") == OP_ALLOC)["pfn"].to_numpy() if touches else np.empty(0, dtype=np.int64))
    return Demand(
        ops=ops, faults=faults, observed_huge=np.full(n, 0 if touches else 1, dtype=np.int8),
        used_at_start=np.empty(0, dtype=np.int64), free_at_start=np.empty(0, dtype=np.int64),
        traced_pages=np.sort(touched), pfns_by_migratetype={}, notes=["synthetic demand (tests/scenarios.py)"],
        counts={"ops": ops.height, "thp_faults": n, "releases": 0},
    )


# -- running --

# A kernel release of each built-in policy's era, to count compact_stall as that kernel did
# (thpreplay.kernel.counters: before 5.12 a call where every zone was deferred is no stall).
ERA_RELEASE = {
    "prefer-local-4.0": "4.0", "thisnode-4.1": "4.1.5", "defrag-modes-4.6": "4.6.2", "local-only-4.8": "4.19.1",
    "relaxed-5.3-rc5": "5.3.1", "rientjes-2019": "5.3.0", "two-step-5.4": "5.4.0", "thisnode-noretry-5.6": "6.1.20",
    "no-local-reclaim-7.0": "7.0.0",
}
POLICIES = tuple(ERA_RELEASE)   # every built-in, in era order


@dataclass
class Result:
    run: engine.Run
    check: str | None        # _engine.check() after the run: None, or the first broken invariant
    used_before: int         # pages in use at the start and at the end (the engine's own bitmaps)
    used_after: int

    def unbalanced_pages(self) -> int:
        """Pages the engine holds beyond what its counters account for (0 when pages are conserved): the
        demand of thp_faults() has no frees and only order-0 small allocations, so every page in use at
        the end was in use at the start, or is a huge page or a base page the model placed or
        synthesized, less what reclaim took."""
        c = self.counters
        placed = (PB * c["thp_fault_alloc"] + c["synthesized_base_pages"] + c["placed_by_allocator"]
                  + c["placed_as_traced"])
        return self.used_after - (self.used_before + placed - c["pgsteal_direct"] - c["pgsteal_kswapd"])

    @property
    def outcomes(self) -> pl.DataFrame:
        return self.run.outcomes

    @property
    def counters(self) -> dict[str, int]:
        return self.run.counters

    def results(self) -> dict[str, int]:
        """Faults per result (huge_local, huge_remote, base_local, base_remote, failed)."""
        col = self.run.outcomes["result"]
        return {r: int((col == r).sum()) for r in engine.RESULTS}

    def golden(self) -> dict[str, int]:
        """The figures the golden tests pin: results per kind plus the main vmstat-like counters."""
        c = self.counters
        return {**self.results(), **{k: c[k] for k in GOLDEN_COUNTERS}}


GOLDEN_COUNTERS = ("compact_stall", "compact_success", "allocstall", "pgsteal_direct", "pgsteal_kswapd", "pswpout",
                   "pgmigrate_success")


class _KeepEngine:
    """Stands in for the C module inside engine.run() so that the engine it creates can be kept: run()
    itself returns only the outcomes. Everything else goes to the real module."""

    def __init__(self, real):
        self._real = real
        self.engines: list = []

    def __getattr__(self, name):
        return getattr(self._real, name)

    def new(self, *args):
        eng = self._real.new(*args)
        self.engines.append(eng)
        return eng


def replay(policy: str, state: InitialState, demand: Demand, *, settings: ThpSettings = MADVISE,
           params: Params | None = None, stall_rule: str | None = None) -> Result:
    """engine.run() under one named policy, exactly as `simulate` calls it, then the engine's own
    invariant check on the engine it ran. stall_rule: by default the rule of the policy's era."""
    stall_rule = stall_rule or compact_stall_rule(ERA_RELEASE.get(policy))
    keep = _KeepEngine(_engine)
    with mock.patch.object(engine, "_engine", keep):
        run = engine.run(get_policy(policy), settings, demand, state, params or Params(), stall_rule)
    assert len(keep.engines) == 1, "engine.run() is expected to build exactly one engine"
    eng = keep.engines[0]
    return Result(run, _engine.check(eng), _popcount(state.used.view(np.uint8)),
                  _popcount(np.frombuffer(_engine.used(eng), dtype=np.uint8)))


def _popcount(b: np.ndarray) -> int:
    return int(np.unpackbits(b).sum())
