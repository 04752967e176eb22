"""Cost and model parameters: documented defaults, overridable from a TOML file (`--params FILE`).

Defaults come from published measurements (Mel Gorman's thpfioscale runs, Andrea Arcangeli's a8282608c88e
changelog) where they exist; where those only suggest a range, the value chosen is stated. Every value
is one a user can replace, and `simulate` records the values it used in the dataset (simulation/simulation.json).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from thpreplay.errors import InputError, ThpreplayError


# What each number may be, with its unit: (lowest, highest, unit). Times are per event, so a day (8.64e10
# µs) bounds them; the kernel's own ranges bound the sysctls. Anything outside, not a number, NaN or
# infinite is refused with the file and the parameter's name.
US = 86_400e6
RANGES: dict[str, tuple[float, float, str]] = {
    "fault_entry_us": (0, US, "µs"), "thp_prep_us": (0, US, "µs"), "compact_call_us": (0, US, "µs"),
    "scan_ns_per_page": (0, US * 1000, "ns"), "migrate_us_per_page": (0, US, "µs"),
    "sync_light_factor": (0, 1e6, "×"), "reclaim_us_per_page": (0, US, "µs"),
    "swap_out_us_per_page": (0, US, "µs"), "kswapd_us_per_page": (1e-6, US, "µs"),
    "kcompactd_us_per_page": (1e-6, US, "µs"), "kswapd_wake_us": (0, US, "µs"),
    "access_local_huge": (0, 1e6, "×"), "access_local_base": (0, 1e6, "×"), "access_hop1_huge": (0, 1e6, "×"),
    "access_hop1_base": (0, 1e6, "×"), "access_hop2_huge": (0, 1e6, "×"), "access_hop2_base": (0, 1e6, "×"),
    "extfrag_threshold": (0, 1000, "vm.extfrag_threshold"),
    "compact_unevictable_allowed": (0, 1, "vm.compact_unevictable_allowed"),
    "compaction_proactiveness": (0, 100, "vm.compaction_proactiveness"),
    "watermark_boost_factor": (0, 2**31 - 1, "vm.watermark_boost_factor"),
    "compact_contention": (0, 1, "a probability"), "reclaim_round_pages": (1, 2**31 - 1, "pages"),
    "sample_interval_ns": (0, 2**62, "ns"), "seed": (0, 2**53, "an integer"),
}

# Parameters of earlier versions, with what replaced them (a --params file naming one is refused).
REMOVED = {
    "thp_zero_us": "fault latency now ends when the allocation returns, as the trace's does, so zeroing "
                   "is in neither side (see fault_entry_us and thp_prep_us)",
    "base_fault_us": "replaced by fault_entry_us (the time from the page-fault event to the allocation's "
                     "return on the fast path)",
}


@dataclass(frozen=True)
class Params:
    # Fault latency is defined as the trace measures it (schemas: outcomes.latency_ns = thp_faults.latency_ns):
    # from the page-fault event to the return of the fault's last THP allocation attempt:
    #   fault_entry_us (the fault's handling up to the allocator's slowpath: exception entry, VMA lookup,
    #   the fast path's freelist walk) + the slowpath's compaction and reclaim costs + thp_prep_us when a
    #   huge page is returned (post_alloc_hook()'s preparation of the new page, which with init_on_alloc=1,
    #   CONFIG_INIT_ON_ALLOC_DEFAULT_ON, includes zeroing 2 MiB before mm_page_alloc fires).
    # clear_huge_page()'s zeroing after the allocation is in neither side: no event shows it and it is the
    # same for every policy that gives a huge page. `simulate` measures both in the capture
    # (sim/calibrate.py); without page-fault events 1 µs ("a 4K fault is cheap, µs") and 0 stand in.
    fault_entry_us: float = 1.0
    thp_prep_us: float = 0.0
    # Compaction: a fixed cost per call plus per page scanned and migrated. 512 migrated pages at
    # 2 µs make ~1 ms, inside the 0.5-3 ms of a typical async attempt (BAmean-50..99).
    compact_call_us: float = 20.0
    scan_ns_per_page: float = 5.0
    migrate_us_per_page: float = 2.0
    sync_light_factor: float = 2.0       # sync-light waits on page locks and writeback: costlier per page
    # Reclaim: dropping a clean page-cache page, and writing an anon page to swap (no device model:
    # 20 µs per 4 KiB page is ~200 MB/s of swap bandwidth).
    reclaim_us_per_page: float = 1.0
    swap_out_us_per_page: float = 20.0
    # The chance that a migration batch of async direct compaction meets a contended zone or LRU lock
    # (spin_trylock() fails, cc->contended, the run ends COMPACT_CONTENDED at its next pageblock
    # boundary without a free page of the order). It depends on the other CPUs: 0 by default, and
    # `simulate` takes the capture's own rate when its compactions show it (sim/calibrate.py).
    compact_contention: float = 0.0
    # Pages one shrink_node() round of direct reclaim frees before should_continue_reclaim() is asked:
    # sc->nr_to_reclaim, SWAP_CLUSTER_MAX (32), by default. What a round really frees depends on what
    # the kernel's scan meets (referenced and dirty pages, writeback, whole THPs: 20 of them, 10,240
    # pages, a call on the lab's 6.1 swap captures); `simulate` takes the median call of the capture
    # when its calls free more than a page (sim/calibrate.py).
    reclaim_round_pages: int = 32
    # The background daemons' own pace, on their own CPU in trace time: kswapd's time per page it
    # reclaims (as direct reclaim of page cache by default) and kcompactd's per page it migrates
    # (sync-light: migrate_us_per_page x sync_light_factor by default). `simulate` derives both from the
    # capture when it shows the daemons at work (sim/calibrate.py); a --params file wins.
    kswapd_us_per_page: float = 1.0
    kcompactd_us_per_page: float = 4.0
    # From wakeup_kswapd() to kswapd running (the scheduler's wake-up latency, which no capture shows):
    # 0, at once, in the deterministic run; `--samples` draws it within one scheduler slice (kernel/sched.py)
    kswapd_wake_us: float = 0.0
    # Access-cost multipliers relative to a local THP access (AMD Naples, Andrea Arcangeli's
    # a8282608c88e changelog): local 4K +43 %, 1 hop THP +45 %, 1 hop 4K +106 %,
    # 2 hops THP +131 %, 2 hops 4K +224 %. Node distance <= 10 is local, <= 21 one hop, more two.
    access_local_huge: float = 1.00
    access_local_base: float = 1.43
    access_hop1_huge: float = 1.45
    access_hop1_base: float = 2.06
    access_hop2_huge: float = 2.31
    access_hop2_base: float = 3.24
    # vm.extfrag_threshold (default 500): compaction is "not suitable" below this fragmentation index.
    extfrag_threshold: float = 500.0
    # Background work, on by default: kswapd, woken when every zone of an allocation's zonelist is below
    # its low watermark, reclaims the node up to its high watermark; kcompactd compacts when a THP
    # attempt wakes kswapd on a balanced node.
    kswapd: bool = True
    kcompactd: bool = True
    # vm.compact_unevictable_allowed (default 1): 0 makes mlocked pages unmovable for compaction.
    # Read from the bundle's vm_sysctl file when it has one; this value is the fallback.
    compact_unevictable_allowed: int = 1
    # vm.compaction_proactiveness (5.9+, default 20): kcompactd compacts a node in the background when
    # its fragmentation score passes 100 - proactiveness + 10. Read from the bundle's vm_sysctl when it
    # has one; otherwise 20 for a capture from 5.9 or later and 0 before (simulate decides).
    compaction_proactiveness: int = 20
    # The free lists' order at the start of the trace, which fast_isolate_freepages() and
    # fast_find_migrateblock() (5.1+) walk: no capture has it. False (the default): each list holds its
    # blocks in pfn order, the lowest at the tail, as a boot leaves them; true: in a seeded random order,
    # as a long uptime of frees might. Measured on every bundled capture (docs/model.md): 502 figures
    # within with false, 496 with true.
    shuffled_free_lists: bool = False
    # vm.watermark_boost_factor (5.0+, default 15000): a fallback steal raises the zone's watermarks by a
    # pageblock, up to this many ten-thousandths of the high watermark, and wakes kswapd to reclaim it.
    # Read from the bundle's vm_sysctl when it has one; 0 for a capture from before 5.0 (simulate).
    watermark_boost_factor: int = 15000
    # Time-series sampling interval; 0 picks ~200 samples over the trace.
    sample_interval_ns: int = 0
    # Seed of the model's pseudo-random choices (which LRU page reclaim takes, which movable blocks hold
    # which kind of page at the start). Same seed, same result.
    seed: int = 1
    # names the --params file set (they win over the capture's own sysctls)
    explicit: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: str | Path | None) -> Params:
        if path is None:
            return cls()
        import tomllib  # only for a --params file (its import is a few ms of every simulate otherwise)

        from thpreplay.inputs import read_small_text

        try:
            data = tomllib.loads(read_small_text(path, 1 << 20, "a --params file"))
        except tomllib.TOMLDecodeError as e:
            raise InputError(str(path), f"not valid TOML: {e}") from None
        known = {f.name: f for f in fields(cls) if f.name != "explicit"}
        values = {}
        for key, value in data.items():
            if key in REMOVED:
                raise InputError(str(path), f"parameter '{key}' is gone: {REMOVED[key]}")
            if key not in known:
                raise InputError(str(path), f"unknown parameter '{key}' (known: {', '.join(sorted(known))})")
            want = type(getattr(cls(), key))
            if want is bool and not isinstance(value, bool) or want is not bool and isinstance(value, bool):
                raise InputError(str(path), f"parameter '{key}' must be {want.__name__}")
            if want in (int, float) and not isinstance(value, (int, float)):
                raise InputError(str(path), f"parameter '{key}' must be a number")
            if want in (int, float):
                lo, hi, unit = RANGES[key]
                if not (lo <= value <= hi):   # NaN and infinities fail here too
                    raise InputError(str(path), f"parameter '{key}' = {value} is outside {lo:g}..{hi:g} ({unit})")
                if want is int and value != int(value):
                    raise InputError(str(path), f"parameter '{key}' must be a whole number, not {value}")
            values[key] = want(value)
        return cls(**values, explicit=tuple(sorted(values)))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "explicit"}


def check_samples(samples: int | None, seed: int | None) -> None:
    """--samples is a count of replays, at least 1; --seed a whole number Params.seed could hold."""
    if samples is not None and samples < 1:
        raise ThpreplayError(f"--samples must be at least 1, not {samples}")
    if seed is not None and samples is None:
        raise ThpreplayError("--seed needs --samples (the default replay is deterministic; its own seed is the "
                             "--params file's `seed`)")
    if seed is not None and not 0 <= seed <= 2**53:
        raise ThpreplayError(f"--seed must be 0..{2**53}, not {seed}")
