"""Which mm/compaction.c mechanics a kernel version has, for the replay core (sim/_engine.c).

Compaction's internals are the kernel's, not the THP fault policy's: a policy era that spans one of
these changes (local-only-4.8 covers 4.8 to 5.3-rc4) takes it from the captured kernel.
"""

from __future__ import annotations

from thpreplay.kernel.gfp import form_since, parse_release

# Mel Gorman, "mm, compaction: sample pageblocks for free pages" (4fca9730c51d, merged for 5.1):
# isolate_freepages() of async compaction looks at one page in COMPACT_CLUSTER_MAX (32) of a pageblock;
# in every mode (sync and sync-light start at 1) the stride resets to 1 after a block that yields free
# pages and doubles (up to 32) after one that yields none. Free pages in a regular pattern the sampling misses (every other page freed, say) are
# invisible to async compaction: its free scanner sets every block's skip bit and meets the migrate
# scanner (COMPACT_PARTIAL_SKIPPED), the failure the lab's fragmented-movable scenario shows.
FREE_SCANNER_SAMPLING_FROM = (5, 1)


def free_scanner_sampling(release: str | None) -> bool:
    """Whether async compaction's free scanner samples pageblocks; an unknown release is taken as new."""
    version = parse_release(release) if release else None
    return version is None or version >= FREE_SCANNER_SAMPLING_FROM


# Where compact_zone() says the last isolated batch was (last_migrated_pfn), which decides whether the
# next iteration finishes its pageblock (cc->rescan, 804d3121ba5f, 5.1; cc->finish_pageblock from 6.3):
# 1 (5.1-6.2): the iteration's start pfn; 2 (6.3+, "mm, compaction: finish scanning the current
# pageblock if requested", f9d7fc1ae334): the start of the pageblock the batch ended in. 0: no rescan.
FINISH_PAGEBLOCK_FORMS = (((6, 3), 2), ((5, 1), 1))


def finish_pageblock_form(release: str | None) -> int:
    """The form of the rescan in `release`'s compact_zone(); an unknown release is taken as new."""
    return form_since(release, FINISH_PAGEBLOCK_FORMS, 0)
