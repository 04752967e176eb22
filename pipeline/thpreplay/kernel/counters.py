"""How the kernel counts the /proc/vmstat events thpreplay checks a trace against, per version."""

from __future__ import annotations

from thpreplay.kernel.gfp import parse_release

# __alloc_pages_direct_compact() counts COMPACTSTALL after try_to_compact_pages(). Charan Teja Reddy's
# "mm: page_alloc: update the COMPACT[STALL|FAIL] events properly" (Feb 2021, merged for 5.12
# [I: release not checked]) added the early return on COMPACT_SKIPPED; before it, "when compaction is
# skipped or deferred, COMPACT_SKIPPED will be returned but it will still go and update the compaction
# stall" (its description), so every call counted ("every_call"). From 5.12 a call counts unless every
# zone was skipped ("not_skipped"). Verified on the lab's captures: Debian 5.10.x counted 159 stalls for
# 159 calls whose zones were all skipped; Debian 6.1.176 counted 0 for 162 such calls, and 630 for 630
# calls that ran (qemu-6.1-2node).
_NOT_SKIPPED_FROM = (5, 12)


def compact_stall_rule(release: str | None) -> str:
    version = parse_release(release) if release else None
    if version is not None and version < _NOT_SKIPPED_FROM:
        return "every_call"
    return "not_skipped"


# /proc/vmstat's event counters (enum vm_event_item, include/linux/vm_event_item.h, and the NUMA event
# counters of enum numa_stat_item) only grow while the machine is up; its other lines (nr_*, workingset
# nodes, ...) are gauges. Prefixes of the counters, for telling a before/after pair that is swapped or
# spans a reboot.
EVENT_COUNTER_PREFIXES = (
    "pgpg", "pswp", "pgalloc_", "allocstall", "pgskip_", "pgfree", "pgactivate", "pgdeactivate", "pglazyfree",
    "pgfault", "pgmajfault", "pgrefill", "pgreuse", "pgsteal_", "pgscan_", "pgdemote_", "pgpromote_success",
    "pginodesteal", "slabs_scanned", "kswapd_", "pageoutrun", "pgrotated", "drop_pagecache", "drop_slab",
    "oom_kill", "numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local", "numa_other",
    "numa_pte_updates", "numa_huge_pte_updates", "numa_hint_faults", "numa_pages_migrated", "pgmigrate_",
    "thp_migration_", "compact_", "htlb_buddy_alloc_", "unevictable_pgs_", "thp_", "balloon_", "swap_ra",
)


def is_event_counter(name: str) -> bool:
    """A /proc/vmstat line that counts events (never decreases within one boot)."""
    return name.startswith(EVENT_COUNTER_PREFIXES)
