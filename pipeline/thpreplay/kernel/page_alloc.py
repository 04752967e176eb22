"""How a kernel version's mm/page_alloc.c returns freed order-0 pages from a CPU's per-cpu list (pcp) to
the buddy allocator, for the replay core (sim/page_alloc.c). Like compaction's internals
(thpreplay.kernel.compaction), this follows the captured kernel, not the THP fault policy being replayed.

A page freed with free_unref_page() sits on the freeing CPU's pcp list, invisible to the buddy
allocator (no merging, not in NR_FREE_PAGES), until free_unref_page_commit() finds the list at its
`high` mark and free_pcppages_bulk() returns the oldest pages, or a drain returns them all. How many
pages one overflow returns (nr_pcp_free()) has three forms:

- 1, up to 5.13: `batch` pages.
- 2, 5.14 to 6.6: "mm/page_alloc: scale the number of pages that are batch freed" (Mel Gorman,
  3b12e7e97938): batch << free_factor, free_factor growing by one per overflow and halved by each
  allocation from the list, clamped to [batch, high - batch].
- 3, 6.7 on: "mm: restrict the pcp batch scale factor to avoid too long latency" (Huang Ying,
  52166607ecc9) and the free_count that replaced free_factor: the pages freed since the last
  allocation (at most batch << CONFIG_PCP_BATCH_SCALE_MAX, 5), clamped to [batch, high - batch].
"""

from __future__ import annotations

from thpreplay.kernel.gfp import form_since

PCP_FREE_FORMS = (((6, 7), 3), ((5, 14), 2))


def pcp_free_form(release: str | None) -> int:
    """The form of nr_pcp_free() in `release`'s mm/page_alloc.c; an unknown release is taken as new."""
    return form_since(release, PCP_FREE_FORMS, 1)
