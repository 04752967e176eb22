"""How the kernel counts the /proc/vmstat events thpreplay checks a trace against, per version."""

from __future__ import annotations

from thpreplay.kernel.gfp import parse_release

# __alloc_pages_direct_compact() counts COMPACTSTALL after try_to_compact_pages(). Up to 5.11 it
# returned early when the result was <= COMPACT_INACTIVE (every zone deferred or skipped), so a
# stall meant compaction ran in some zone ("ran"). Charan Teja Reddy's "mm: page_alloc: update the
# COMPACT[STALL|FAIL] events properly" (Feb 2021, merged for 5.12 [I: release not checked]) returns
# early only on COMPACT_SKIPPED, so a call where a zone was merely deferred counts too
# ("not_skipped"). Verified on the 6.1 QEMU sample: 630 calls, 630 compact_stall.
_NOT_SKIPPED_FROM = (5, 12)


def compact_stall_rule(release: str | None) -> str:
    version = parse_release(release) if release else None
    if version is not None and version < _NOT_SKIPPED_FROM:
        return "ran"
    return "not_skipped"
