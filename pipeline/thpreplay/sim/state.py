"""The model's memory at the start of the trace, rebuilt from the capture's snapshots and the trace.

Sources, in order of authority:
1. zoneinfo (topology table): zones, pfn spans, present pages, watermarks, lowmem reserves.
2. pagetypeinfo (free_lists table, snapshot "before"): free blocks per zone, migratetype and order; its
   "Number of blocks type" section (raw snapshot): pageblocks per migratetype. buddyinfo when there is no
   pagetypeinfo (free blocks per order, all taken as MOVABLE).
3. The trace's evidence: a page whose first event is a free was in use at the start; one whose first
   event is an allocation was free.
4. Per-node meminfo: how the used pages of MOVABLE pageblocks divide into page cache (file), anon and
   mlocked pages (on the unevictable LRU; compaction leaves them when vm.compact_unevictable_allowed=0).

How it is laid out (assumptions, reported by `simulate`):
- whole free pageblocks (free order 9 and 10 blocks) go to blocks the trace never shows in use: first
  blocks the trace fills entirely with small allocations, then blocks it never touches (top of the zone
  down), last partly touched ones;
- pages the trace shows free at the start are free; the remaining free blocks of each order are
  placed in partly used blocks of their migratetype, spread round-robin, at positions that do not merge
  with a neighbour (so the per-order counts come out as the snapshot says);
- pageblock migratetypes: blocks with whole free blocks take the type of that free list; unmovable and
  reclaimable counts go first to blocks where the trace allocates unmovable / reclaimable pages, then
  from the top of the zone down (memblock allocates top-down); the rest are MOVABLE;
- used pages of UNMOVABLE/RECLAIMABLE blocks are pinned. In MOVABLE blocks, the used pages beyond
  meminfo's LRU counts (kernel memory that fell back into movable blocks) are scattered at random in
  aligned runs of 8 pages (slab pages, order 3);
  the LRU pages are mlocked, file and anon in meminfo's amounts, assigned block by block in a seeded
  pseudo-random block order (a process's pages come in runs);
- without snapshots: every zone is taken as all free, all MOVABLE, and the note says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from thpreplay.errors import InputError
from thpreplay.procfs import parse_pagesets

PB = 512
# Peak bytes per modelled page while the initial state is built: about eight per-page numpy bool arrays
# here, plus the replay core's Block (~560 bytes per 512 pages). Measured, rounded up.
MODEL_BYTES_PER_PAGE = 12


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_fits(dataset: Path, npages: int, base: int, end: int, inferred: bool) -> None:
    """A topology the model cannot hold is one line, not a MemoryError or the OOM killer: hostile or
    damaged pfns in a trace without zoneinfo can make the inferred span terabytes wide."""
    need, avail = npages * MODEL_BYTES_PER_PAGE, _available_bytes()
    if avail is None or need <= avail:
        return
    why = (f"inferred from the trace's pfns ({base:#x}..{end:#x}): pass --topology with the capturing machine's "
           "zoneinfo to ingest, or look for damaged pfns" if inferred else "from the bundle's zoneinfo")
    raise InputError(str(dataset / "topology"),
                     f"the zones span {npages:,} pages ({npages * 4096 / 2**40:.1f} TiB), {why}; modelling them "
                     f"needs about {need / 2**30:.0f} GiB and {avail / 2**30:.0f} GiB is available")
KERNEL_RUN = 8
ZONE_TYPES = {"DMA": 0, "DMA32": 1, "Normal": 2, "Movable": 3, "Device": 4, "all": 2}
MT_INDEX = {"Unmovable": 0, "Movable": 1, "Reclaimable": 2, "HighAtomic": 0, "CMA": 1, "Isolate": 1, "all": 1}


def read_table(dataset: Path, table: str, columns: list[str] | None = None) -> pl.DataFrame:
    """A dataset's table; only the given columns when named (Parquet reads no others)."""
    files = sorted((dataset / table).glob("*.parquet"))
    if not files:
        raise InputError(str(dataset / table), "table missing from the dataset (run thpreplay ingest again)")
    try:
        return pl.read_parquet([str(f) for f in files], columns=columns, glob=False)  # a path is a path, not a pattern
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        # damaged inside although its footer was checked (dataset.check): name the part
        from thpreplay.dataset import REINGEST, RESIMULATE, SIM_DIR, damaged_part

        raise damaged_part(files, columns, e, RESIMULATE if dataset.name == SIM_DIR else REINGEST) from None


def snapshot_text(dataset: Path, name: str) -> str | None:
    p = dataset / "snapshots" / name
    return p.read_text(errors="replace") if p.is_file() else None


def parse_block_counts(text: str) -> dict[tuple[int, str], dict[str, int]]:
    """pagetypeinfo's "Number of blocks type" table: (node, zone) -> {migratetype: blocks}."""
    out: dict[tuple[int, str], dict[str, int]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("Number of blocks type"):
            header = line.split()[4:]
            continue
        m = re.match(r"Node\s+(\d+),\s+zone\s+(\S+)\s+([\d\s]+)$", line)
        if header and m:
            counts = [int(x) for x in m.group(3).split()]
            out[(int(m.group(1)), m.group(2))] = dict(zip(header, counts))
    return out


def parse_node_meminfo(text: str) -> dict[str, int]:
    """nodeN/meminfo: field -> pages."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"Node\s+\d+\s+([\w()]+):\s+(\d+)\s*kB", line)
        if m:
            out[m.group(1)] = int(m.group(2)) // 4
    return out


# include/uapi/linux/kernel-page-flags.h
KPF_LRU, KPF_SLAB, KPF_BUDDY, KPF_ANON, KPF_SWAPBACKED, KPF_UNEVICTABLE, KPF_NOPAGE, KPF_PGTABLE = 5, 7, 10, 12, 14, 18, 20, 26


def read_kpageflags(dataset: Path) -> np.ndarray | None:
    p = dataset / "snapshots" / "kpageflags.before.zst"
    if not p.is_file():
        return None
    import zstandard

    with open(p, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    return np.frombuffer(data[: len(data) // 8 * 8], dtype=np.uint64)


def free_from_kpageflags(flags: np.ndarray) -> np.ndarray:
    """Free pages. Kernels since 4.7 flag every page of a free block KPF_BUDDY (stable_page_flags:
    PageBuddy on the head, is_free_buddy_page on the others; 832fc1de01ae), and then the flagged pages
    are exactly the free ones. Older kernels flag the head only: there each head owns the largest aligned
    2^k run (k <= 10) of flagless pages behind it, which over-counts where a flagless kernel page (a pipe
    buffer, vmalloc) sits behind a small free block. Which of the two a dump is, is read from the dump:
    with every page flagged, most free pages have their aligned buddy flagged too; with heads only, two
    free order-0 buddies would have merged, so almost none do."""
    buddy = ((flags >> np.uint64(KPF_BUDDY)) & np.uint64(1)).astype(bool)
    even = buddy[: len(buddy) // 2 * 2]
    paired = int((even[0::2] & even[1::2]).sum()) * 2
    if paired > 0.25 * int(buddy.sum()):
        return buddy.copy()
    nz = flags != 0
    prefix = np.concatenate([[0], np.cumsum(nz)])
    heads = np.nonzero(buddy)[0]
    order = np.zeros(len(heads), dtype=np.int64)
    for k in range(1, 11):
        size = 1 << k
        ok = (heads % size == 0) & (heads + size <= len(flags))
        end = np.minimum(heads + size, len(flags))
        ok &= (prefix[end] - prefix[np.minimum(heads + 1, len(flags))]) == 0
        order[ok & (order == k - 1)] = k
    free = np.zeros(len(flags), dtype=bool)
    for k in range(11):
        h = heads[order == k]
        if len(h):
            free[(h[:, None] + np.arange(1 << k)[None, :]).ravel()] = True
    return free


def parse_sysctl(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip().removeprefix("vm.")] = v.strip()
    return out


@dataclass
class Zone:
    index: int
    node: int
    name: str
    type: int
    start: int
    end: int
    present: int
    wmin: int
    wlow: int
    whigh: int
    reserve: int
    # the per-cpu lists of the node's CPUs for this zone at the start (/proc/zoneinfo pagesets, summed):
    # pages on them, their high mark and batch; 0 when the bundle has none (then no pcp is modelled)
    pcp_count: int = 0
    pcp_high: int = 0
    pcp_batch: int = 0
    # compaction's scanner positions at the start (pfns; -1: the zone's ends, as after boot):
    # compact_cached_migrate_pfn, compact_cached_free_pfn, compact_init_migrate_pfn and
    # compact_init_free_pfn, when the trace's first compaction of the zone shows a skip-bit reset's
    # (_with_cached_positions)
    cached_migrate: int = -1
    cached_free: int = -1
    init_migrate: int = -1
    init_free: int = -1


@dataclass
class InitialState:
    zones: list[Zone]
    base_pfn: int
    block_zone: np.ndarray  # int16, -1 outside every zone
    block_mt: np.ndarray  # int8
    used: np.ndarray  # uint64 [nblocks*8]
    anon: np.ndarray
    file: np.ndarray
    mlock: np.ndarray
    hint: np.ndarray  # pages the trace allocates at some time (placement hint for the model's own pages)
    zonelists: np.ndarray  # int32 [nnodes*64], -1 terminated
    distances: np.ndarray  # int32 [nnodes*nnodes]
    nodes: list[int]
    cpu_node: dict[int, int]
    swap_pages: int
    assumptions: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _with_cached_positions(dataset: Path, zones: list[Zone], assumptions: list[str]) -> list[Zone]:
    """Compaction's scanner positions at the start, where the trace shows them whole. compact_zone()
    (mm/compaction.c, 6.x) starts a run that is not whole-zone at compact_cached_migrate_pfn[sync] and
    compact_cached_free_pfn and traces both (mm_compaction_begin) before the run moves them. A free
    position one below a pageblock boundary is one only __reset_isolation_suitable() leaves (5.1+,
    e332f741a8dd: it walks down from zone_end_pfn - 1 by pageblocks and sets compact_init_free_pfn and
    the cached free pfn to the first suitable block, compact_init_migrate_pfn and both cached migrate
    pfns to the first from below; every later update is pageblock-aligned). So when a zone's first
    begin event shows such a free position, the skip bits were reset before the trace and neither
    position has moved since: the four positions are the ones it shows. Any other first begin shows the
    cached positions without compact_init_*_pfn (which decide a whole-zone run and where
    fast_isolate_freepages() searches deeper), and the model keeps the zone's ends, as after boot."""
    try:
        c = pl.scan_parquet(dataset / "compaction" / "*.parquet").filter(
            pl.col("event") == "mm_compaction_begin").select(
            "ts_ns", "line", "migrate_pfn", "free_pfn", "zone_start", "zone_end").collect()
    except (pl.exceptions.ColumnNotFoundError, pl.exceptions.ComputeError, FileNotFoundError):
        return zones
    c = c.drop_nulls(["migrate_pfn", "free_pfn", "zone_start", "zone_end"]).sort("ts_ns", "line")
    out = []
    for z in zones:
        rows = c.filter((pl.col("zone_start") == z.start) & (pl.col("zone_end") == z.end))
        if rows.height == 0:
            out.append(z)
            continue
        m, f = int(rows["migrate_pfn"][0]), int(rows["free_pfn"][0])
        if f % PB != PB - 1 or not (z.start <= m < f < z.end):
            out.append(z)
            continue
        out.append(replace(z, cached_migrate=m, cached_free=f, init_migrate=m, init_free=f))
        assumptions.append(f"compaction of node {z.node} {z.name} starts where the trace's first run shows a "
                           f"skip-bit reset left it: migrate scanner {m:#x}, free scanner {f:#x}")
    return out


def _cpulist(text: str | None) -> list[int]:
    cpus: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            cpus += list(range(int(a), int(b) + 1))
        else:
            cpus.append(int(part))
    return cpus


def _zones(topo: pl.DataFrame) -> list[Zone]:
    zones = []
    for row in topo.sort("node", "start_pfn").iter_rows(named=True):
        if not row["spanned"] or not row["present"]:
            continue
        reserve = max(row["lowmem_reserve"] or [0])
        zones.append(Zone(len(zones), row["node"], row["zone"], ZONE_TYPES.get(row["zone"], 2), row["start_pfn"],
                          row["end_pfn"], row["present"], row["wmark_min"] or 0, row["wmark_low"] or 0,
                          row["wmark_high"] or 0, reserve))
    return zones


def _with_pagesets(dataset: Path, zones: list[Zone], cpu_node: dict[int, int]) -> list[Zone]:
    """Each zone's per-cpu lists from the bundle's zoneinfo.before: the lists of the CPUs of the zone's
    node, summed into one (the replay core keeps one list per zone; the lab's nodes have one CPU each).
    A zone whose node has no CPU, or a bundle without pagesets, gets none."""
    text = snapshot_text(dataset, "zoneinfo.before")
    if not text:
        return zones
    sets = parse_pagesets(text)
    out = []
    for z in zones:
        cpus = {c: v for c, v in sets.get((z.node, z.name), {}).items() if cpu_node.get(c) == z.node}
        if cpus and all(v["high"] >= v["batch"] > 0 for v in cpus.values()):
            z = replace(z, pcp_count=sum(v["count"] for v in cpus.values()),
                        pcp_high=sum(v["high"] for v in cpus.values()),
                        pcp_batch=max(v["batch"] for v in cpus.values()))
        out.append(z)
    return out


def _place_free_runs(page_free: np.ndarray, page_used_evidence: np.ndarray, blocks: np.ndarray, order: int,
                     count: int, parity: np.ndarray | None = None) -> int:
    """Free `count` blocks of `order` in the given pageblocks (global page array views), at every other
    slot (no two of them buddies, so none merges) whose pages are all used and not known in use,
    round-robin over blocks. Order-0 holes take each block's `parity` (0: even pfns, 1: odd), higher
    orders the even slots. Returns how many fit."""
    if count <= 0 or len(blocks) == 0:
        return 0
    size = 1 << order
    slots = np.arange(0, PB // size, 2)
    # candidate (block, slot) pairs, slot-major so that consecutive picks go to different blocks
    cand_blocks = np.tile(blocks, len(slots))
    cand_slots = np.repeat(slots, len(blocks))
    if order == 0 and parity is not None:
        cand_slots = cand_slots + parity[cand_blocks]
    starts = cand_blocks * PB + cand_slots * size
    idx = starts[:, None] + np.arange(size)[None, :]
    ok = ~page_free[idx].any(axis=1) & ~page_used_evidence[idx].any(axis=1)
    chosen = starts[ok][:count]
    if len(chosen):
        page_free[(chosen[:, None] + np.arange(size)[None, :]).ravel()] = True
    return len(chosen)


def _hole_parity(known_free: np.ndarray, blocks: np.ndarray, nblocks: int, default: int = 0) -> np.ndarray:
    """Per pageblock, the pfn parity (0 even, 1 odd) of the single free pages the trace shows free at the
    start there (the pages it allocates before it frees them): a workload that faulted pages in order
    and freed every other one leaves holes all on one parity, and compaction's free scanner, sampling
    every 2nd..32nd page once a block yields nothing (4fca9730c51d), sees all or none of them. A block
    without such pages takes the majority of the zone's, else `default` (even; a sample draws it)."""
    parity = np.zeros(nblocks, dtype=np.int64)
    if not len(blocks):
        return parity
    pages = known_free[(blocks[:, None] * PB + np.arange(PB)[None, :])]
    odd = pages[:, 1::2].sum(axis=1)
    even = pages[:, 0::2].sum(axis=1)
    zone_odd = int(odd.sum() > even.sum()) if odd.sum() != even.sum() else default
    parity[blocks] = np.where(odd > even, 1, np.where(even > odd, 0, zone_odd))
    return parity


def build(dataset: Path, used_at_start: np.ndarray, free_at_start: np.ndarray, small_mt_pfns: dict[int, np.ndarray],
          compact_unevictable_allowed: int, seed: int, traced_pages: np.ndarray | None = None,
          hole_parity: int = 0) -> InitialState:
    assumptions: list[str] = []
    topo = read_table(dataset, "topology")
    zones = _zones(topo)
    if not zones:
        raise InputError(str(dataset / "topology"), "no zone with pages: the dataset has no usable topology")
    inferred = topo["source"].str.starts_with("inferred").any()
    nodes = sorted({z.node for z in zones})
    base = min(z.start for z in zones) // PB * PB
    end = -(-max(z.end for z in zones) // PB) * PB
    nblocks = (end - base) // PB
    npages = nblocks * PB
    _check_fits(dataset, npages, base, end, bool(inferred))

    # zonelists: own zones highest first, then other nodes by distance (ties by node id)
    dist_rows = {row["node"]: row["distances"] for row in topo.unique("node").iter_rows(named=True)}
    nn = max(nodes) + 1
    distances = np.full((nn, nn), 20, dtype=np.int32)
    for a in range(nn):
        distances[a, a] = 10
        d = dist_rows.get(a)
        if d:
            for b, v in enumerate(d[:nn]):
                distances[a, b] = v
    zonelists = np.full((nn, 64), -1, dtype=np.int32)
    for n in range(nn):
        order = sorted(nodes, key=lambda m: (distances[n, m] if m != n else -1, m))
        zl = [z.index for m in order for z in sorted((z for z in zones if z.node == m), key=lambda z: -z.type)]
        zonelists[n, :len(zl)] = zl[:64]
    cpu_node = {}
    for row in topo.unique("node").iter_rows(named=True):
        for c in _cpulist(row["cpus"]):
            cpu_node[c] = row["node"]
    zones = _with_pagesets(dataset, zones, cpu_node)
    zones = _with_cached_positions(dataset, zones, assumptions)
    for z in zones:
        if z.pcp_high:
            assumptions.append(f"per-cpu list of node {z.node} {z.name}: {z.pcp_count:,} pages at the start, high "
                               f"{z.pcp_high:,}, batch {z.pcp_batch} (zoneinfo); freed pages merge only once flushed")

    block_zone = np.full(nblocks, -1, dtype=np.int16)
    page_in_zone = np.zeros(npages, dtype=bool)
    for z in zones:
        b0, b1 = (z.start - base) // PB, -(-(z.end - base) // PB)
        block_zone[b0:b1] = z.index  # a block straddling two zones belongs to the later one, as pfn order
        page_in_zone[z.start - base:z.end - base] = True
    evidence_used = np.zeros(npages, dtype=bool)
    evidence_free = np.zeros(npages, dtype=bool)
    for arr, target in ((used_at_start, evidence_used), (free_at_start, evidence_free)):
        a = arr[(arr >= base) & (arr < end)] - base
        target[a] = True
    evidence_free &= ~evidence_used
    # pages outside every zone, and holes (spanned - present), are never free
    block_mt = np.ones(nblocks, dtype=np.int8)
    page_free = np.zeros(npages, dtype=bool)

    free_lists = read_table(dataset, "free_lists")
    before = free_lists.filter(pl.col("snapshot") == "before")
    counts_text = snapshot_text(dataset, "pagetypeinfo.before")
    block_counts = parse_block_counts(counts_text) if counts_text else {}
    kpf = read_kpageflags(dataset)
    if kpf is not None and not inferred:
        state = _from_kpageflags(kpf, zones, base, end, block_zone, page_in_zone, block_counts, evidence_used,
                                 evidence_free, compact_unevictable_allowed, dataset, topo, zonelists, distances,
                                 nodes, cpu_node, traced_pages)
        state.assumptions.extend(assumptions)
        return state
    if before.is_empty() or inferred:
        assumptions.append("no free-list snapshot: every zone starts all free, all MOVABLE")
        page_free[:] = page_in_zone & ~evidence_used
    else:
        for z in zones:
            zb = np.nonzero(block_zone == z.index)[0]
            rows = before.filter((pl.col("node") == z.node) & (pl.col("zone") == z.name))
            target = np.zeros((3, 11), dtype=np.int64)
            for r in rows.iter_rows(named=True):
                if r["order"] <= 10:
                    target[MT_INDEX.get(r["migratetype"], 1), r["order"]] += r["free_blocks"]
            # pageblock migratetypes
            bc = block_counts.get((z.node, z.name))
            n_unmov = (bc.get("Unmovable", 0) + bc.get("HighAtomic", 0)) if bc else 0
            n_recl = bc.get("Reclaimable", 0) if bc else 0
            if not bc:
                assumptions.append(f"node {z.node} {z.name}: no pageblock counts; all blocks taken as MOVABLE")
            whole = target[:, 9] + 2 * target[:, 10]
            # blocks that can be wholly free: no page known in use, wholly inside the zone
            zpages = (zb[:, None] * PB + np.arange(PB)[None, :])
            clean = ~evidence_used[zpages].any(axis=1) & page_in_zone[zpages].all(axis=1)
            # Which blocks were the free pageblocks: first those the trace fills entirely with small
            # allocations (all 512 pages free at the start); then blocks the trace never touches (a
            # free pageblock the kernel gave a huge page shows no small allocation either), from the top
            # of the zone down; last the partly touched ones.
            free_score = evidence_free[zpages].sum(axis=1)
            rank = np.where(free_score == PB, 0, np.where(free_score == 0, 1, 2))
            prefer = zb[np.lexsort((-zb, rank))]
            prefer = prefer[clean[np.searchsorted(zb, prefer)]]
            taken = 0
            for mt in (1, 0, 2):
                want = int(whole[mt])
                pick = prefer[taken:taken + want]
                taken += len(pick)
                block_mt[pick] = mt
                for b in pick:
                    page_free[b * PB:(b + 1) * PB] = True
            if taken < whole.sum():
                assumptions.append(f"node {z.node} {z.name}: {int(whole.sum()) - taken} free pageblocks did not fit "
                                   "(the trace shows pages in use everywhere)")
            wholly_free = set(prefer[:taken].tolist())
            rest = np.array([b for b in zb if b not in wholly_free], dtype=np.int64)
            # unmovable / reclaimable blocks: where the trace allocates such pages, then top-down
            for mt, n in ((0, n_unmov - int(whole[0])), (2, n_recl - int(whole[2]))):
                if n <= 0 or not len(rest):
                    continue
                ev = small_mt_pfns.get(mt, np.empty(0, dtype=np.int64))
                ev_blocks = np.unique((ev[(ev >= base) & (ev < end)] - base) // PB)
                in_rest = set(rest.tolist())
                cand = [b for b in ev_blocks if b in in_rest and block_mt[b] == 1]
                chosen = set(cand)
                cand += [b for b in rest[::-1] if block_mt[b] == 1 and b not in chosen]
                block_mt[np.array(cand[:n], dtype=np.int64)] = mt
            # pages known free at the start, then the snapshot's remaining free blocks per order
            for b in rest:
                sl = slice(b * PB, (b + 1) * PB)
                page_free[sl] |= evidence_free[sl] & page_in_zone[sl]
            have = _histogram(page_free, rest, block_mt)
            parity = _hole_parity(evidence_free & page_in_zone, rest, nblocks, hole_parity)
            for mt in (1, 0, 2):
                mblocks = rest[block_mt[rest] == mt]
                for order in range(8, -1, -1):
                    need = int(target[mt, order] - have[mt, order])
                    if need > 0:
                        got = _place_free_runs(page_free, evidence_used, mblocks, order, need, parity)
                        if got < need:
                            # spill into blocks of the other types
                            others = rest[block_mt[rest] != mt]
                            got += _place_free_runs(page_free, evidence_used, others, order, need - got, parity)
                        if got < need:
                            assumptions.append(f"node {z.node} {z.name}: {need - got} free order-{order} blocks did not fit")
            page_free &= page_in_zone

    # kinds of used pages in MOVABLE blocks, from meminfo per node
    anon_bits = np.zeros(npages, dtype=bool)
    file_bits = np.zeros(npages, dtype=bool)
    mlock_bits = np.zeros(npages, dtype=bool)
    rng = np.random.default_rng(seed)
    swap_pages = _swap_pages(dataset)
    movable_page = np.repeat(block_mt == 1, PB) & np.repeat(block_zone >= 0, PB)
    for n in nodes:
        text = snapshot_text(dataset, f"node{n}.meminfo.before")
        info = parse_node_meminfo(text) if text else {}
        nblk = np.nonzero(np.isin(block_zone, [z.index for z in zones if z.node == n]) & (block_mt == 1))[0]
        nblk = nblk[rng.permutation(len(nblk))]
        pages = (nblk[:, None] * PB + np.arange(PB)[None, :]).ravel()
        usable = pages[~page_free[pages] & page_in_zone[pages]]
        if not info:
            assumptions.append(f"node {n}: no meminfo; used pages of MOVABLE blocks taken as anon")
            anon_bits[usable] = True
            continue
        # Used pages beyond meminfo's LRU counts are kernel memory that fell back into movable blocks
        # (slab, page tables): scattered at random, as fallback allocations into the holes of
        # fragmented memory are. The LRU pages then go in block order: unevictable
        # (mlocked), page cache, anon, so that a process's pages come in runs.
        unevictable = info.get("Unevictable", 0)
        file_pages = info.get("Active(file)", 0) + info.get("Inactive(file)", 0)
        anon_pages = info.get("Active(anon)", 0) + info.get("Inactive(anon)", 0)
        n_kernel = max(len(usable) - (unevictable + file_pages + anon_pages), 0)
        if n_kernel:
            # in aligned runs of 8 pages: fallen-back kernel allocations are mostly slab pages of order 3
            groups = np.unique(usable // KERNEL_RUN)
            order = rng.permutation(len(groups))
            member = np.isin(usable // KERNEL_RUN, groups[order])
            rank = np.empty(len(groups), dtype=np.int64)
            rank[order] = np.arange(len(groups))
            by_rank = np.argsort(rank[np.searchsorted(groups, usable // KERNEL_RUN)], kind="stable")
            kernel = by_rank[:n_kernel]
            usable = np.delete(usable, np.sort(kernel)) if member.all() else usable
        k0 = min(len(usable), unevictable)
        k1 = min(len(usable), k0 + file_pages)
        k2 = min(len(usable), k1 + anon_pages)
        mlock_bits[usable[:k0]] = True   # on the unevictable LRU; migratable only if the sysctl allows
        file_bits[usable[k0:k1]] = True
        anon_bits[usable[k1:k2]] = True
    if not compact_unevictable_allowed:
        assumptions.append("vm.compact_unevictable_allowed=0: mlocked pages are not migratable")
    # pages the trace frees (in use at the start) in movable blocks are the workload's: anon
    kinded = anon_bits | file_bits | mlock_bits
    anon_bits |= evidence_used & ~page_free & movable_page & ~kinded

    used = ~page_free
    summary = dict(
        pageblocks=int((block_zone >= 0).sum()),
        free_pages=int(page_free.sum()),
        free_pageblocks=int(page_free.reshape(-1, PB).all(axis=1).sum()),
        snapshot_free_pages=int(topo["free_pages"].fill_null(0).sum()),
        pages_used_at_start_by_trace=int(evidence_used.sum()),
        pages_free_at_start_by_trace=int(evidence_free.sum()),
    )
    return InitialState(
        zones=zones, base_pfn=base, block_zone=block_zone, block_mt=block_mt,
        used=_pack(used), anon=_pack(anon_bits & used), file=_pack(file_bits & used & ~anon_bits),
        mlock=_pack(mlock_bits & used & ~anon_bits & ~file_bits), hint=_pack(_mark(npages, base, end, traced_pages)),
        zonelists=zonelists.ravel(), distances=distances.ravel(), nodes=nodes, cpu_node=cpu_node,
        swap_pages=swap_pages, assumptions=assumptions, summary=summary,
    )


def _swap_pages(dataset: Path) -> int:
    mi = snapshot_text(dataset, "meminfo.before")
    m = re.search(r"SwapFree:\s+(\d+)\s*kB", mi) if mi else None
    return int(m.group(1)) // 4 if m else 0


def _from_kpageflags(kpf, zones, base, end, block_zone, page_in_zone, block_counts, evidence_used, evidence_free,
                     compact_unevictable_allowed, dataset, topo, zonelists, distances, nodes, cpu_node,
                     traced_pages) -> InitialState:
    """The start, page by page, from /proc/kpageflags: free (buddy, and per-cpu-list pages the trace shows
    free), LRU anon / file / unevictable pages, everything else (slab, page tables, other kernel pages)
    pinned. Pageblock migratetypes are
    not in /proc: pagetypeinfo's counts per type go to the blocks holding the most kernel pages."""
    npages = len(block_zone) * PB
    flags = np.zeros(npages, dtype=np.uint64)
    lo, hi = base, min(end, len(kpf))
    flags[: hi - lo] = kpf[lo:hi]
    free = free_from_kpageflags(flags)
    # Free pages on the per-cpu lists carry no flags and no buddy head: where the trace allocates a
    # flagless page before freeing it, it was one of those.
    free |= evidence_free & (flags == 0)
    free &= page_in_zone
    bit = lambda k: ((flags >> np.uint64(k)) & np.uint64(1)).astype(bool)  # noqa: E731
    lru, unevictable = bit(KPF_LRU), bit(KPF_UNEVICTABLE)
    anonish = bit(KPF_ANON) | bit(KPF_SWAPBACKED)
    used = ~free
    anon = used & lru & anonish & ~unevictable
    file = used & lru & ~anonish & ~unevictable
    mlock = used & unevictable   # on the unevictable LRU; the engine migrates them only if allowed
    kernel = used & page_in_zone & ~lru & ~unevictable
    block_mt = np.ones(len(block_zone), dtype=np.int8)
    per_block_kernel = kernel.reshape(-1, PB).sum(axis=1)
    for z in zones:
        bc = block_counts.get((z.node, z.name)) or {}
        zb = np.nonzero(block_zone == z.index)[0]
        by_kernel = zb[np.argsort(-per_block_kernel[zb], kind="stable")]
        n_unmov = bc.get("Unmovable", 0) + bc.get("HighAtomic", 0)
        n_recl = bc.get("Reclaimable", 0)
        block_mt[by_kernel[:n_unmov]] = 0
        block_mt[by_kernel[n_unmov:n_unmov + n_recl]] = 2
    assumptions = ["start from /proc/kpageflags: free, LRU and kernel pages as they were"]
    if not compact_unevictable_allowed:
        assumptions.append("vm.compact_unevictable_allowed=0: mlocked pages are not migratable")
    summary = dict(
        pageblocks=int((block_zone >= 0).sum()), free_pages=int(free.sum()),
        free_pageblocks=int(free.reshape(-1, PB).all(axis=1).sum()),
        snapshot_free_pages=int(topo["free_pages"].fill_null(0).sum()),
        pages_used_at_start_by_trace=int(evidence_used.sum()), pages_free_at_start_by_trace=int(evidence_free.sum()),
        trace_free_but_kpageflags_used=int((evidence_free & used).sum()),
        trace_used_but_kpageflags_free=int((evidence_used & free).sum()),
        kernel_pages_in_movable_blocks=int((kernel & np.repeat(block_mt == 1, PB)).sum()),
        source="kpageflags",
    )
    return InitialState(
        zones=zones, base_pfn=base, block_zone=block_zone, block_mt=block_mt, used=_pack(used), anon=_pack(anon),
        file=_pack(file), mlock=_pack(mlock), hint=_pack(_mark(npages, base, end, traced_pages)),
        zonelists=zonelists.ravel(), distances=distances.ravel(), nodes=nodes, cpu_node=cpu_node,
        swap_pages=_swap_pages(dataset), assumptions=assumptions, summary=summary,
    )


def _mark(npages: int, base: int, end: int, pfns: np.ndarray | None) -> np.ndarray:
    bits = np.zeros(npages, dtype=bool)
    if pfns is not None and len(pfns):
        bits[pfns[(pfns >= base) & (pfns < end)] - base] = True
    return bits


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits, bitorder="little").view(np.uint64)


def _histogram(page_free: np.ndarray, blocks: np.ndarray, block_mt: np.ndarray) -> np.ndarray:
    """Maximal free blocks per (migratetype, order) in the given pageblocks, as the buddy allocator sees them."""
    hist = np.zeros((3, 11), dtype=np.int64)
    if not len(blocks):
        return hist
    level = page_free[(blocks[:, None] * PB + np.arange(PB)[None, :])]
    levels = [level]
    for _ in range(9):
        level = level[:, 0::2] & level[:, 1::2]
        levels.append(level)
    mts = block_mt[blocks]
    for j in range(10):
        cnt = levels[j].sum(axis=1) - (2 * levels[j + 1].sum(axis=1) if j < 9 else 0)
        for mt in range(3):
            hist[mt, j] += int(cnt[mts == mt].sum())
    return hist
