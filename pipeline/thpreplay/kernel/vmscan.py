"""Which mm/vmscan.c direct-reclaim mechanics a kernel version has, for the replay core (sim/vmscan.c).

Like compaction's internals (thpreplay.kernel.compaction), these follow the captured kernel, not the
THP fault policy being replayed.

compaction_ready() decides whether direct reclaim for a costly order skips a zone because compaction
can already run there (do_try_to_free_pages() then returns 1 if nothing was reclaimed: the
mm_vmscan_direct_reclaim_end events with nr_reclaimed=1 in a compaction-bound capture). Three forms:

- 0, up to 6.4: skip when the order is free at the min watermark (COMPACT_SUCCESS); reclaim when
  compaction_suitable() says COMPACT_SKIPPED (order-0 free below low + compact_gap); otherwise, a
  fragmentation index that says "lack of memory" (COMPACT_NOT_SUITABLE_ZONE) included, skip when
  order-0 free is at least high + compact_gap.
- 1, 6.5 to 6.14: Johannes Weiner's "mm: compaction: have compaction_suitable() return bool"
  (3cf04937529020e149666f56a41ebdeb226b69ed): a fragmentation index at or below
  vm.extfrag_threshold now means "not suitable", so such a zone is reclaimed, not skipped.
- 2, 6.15 on: "mm: compaction: push watermark into compaction_suitable() callers" (Johannes Weiner,
  67914ac08604): one compaction_suitable() call at the high watermark, plus compact_gap and the
  costly-order margin (low - min).
"""

from __future__ import annotations

from thpreplay.kernel.gfp import form_since

COMPACTION_READY_FORMS = (((6, 15), 2), ((6, 5), 1))


def compaction_ready_form(release: str | None) -> int:
    """The form of compaction_ready() in `release`'s mm/vmscan.c; an unknown release is taken as new."""
    return form_since(release, COMPACTION_READY_FORMS, 0)
