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
