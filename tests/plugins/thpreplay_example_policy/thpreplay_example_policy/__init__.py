"""An example policy plugin: take a free huge page from any node before compacting the local one.

A what-if between the 2019 positions: no remote *effort* (no remote compaction or reclaim), but a
free remote huge page is preferred over local compaction; the local node still gets the full
5.6+ effort when no node has a free huge page. Registered through the entry-point group
`thpreplay.policies` in this package's pyproject.toml; see docs/writing-a-policy.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from thpreplay.policy.base import Attempt, PolicyError, Slowpath, ThpSettings

DEFRAG_WITH_DIRECT_RECLAIM = {"always": (True, True), "madvise": (False, True), "defer+madvise": (False, True)}


@dataclass(frozen=True)
class FreeAnywhereFirst:
    name: str = "free-anywhere-first"
    title: str = "a free huge page on any node, then the local node with compaction (example plugin)"
    kernels: str = "none (a what-if; 5.6+ slowpath)"
    commits: tuple[str, ...] = ("cc638f329ef6 mm, thp: tweak reclaim/compaction effort of local-only and all-node allocations",)
    default_defrag: str = "madvise"
    slowpath: Slowpath = Slowpath(second_compaction_sync=True, bail_deferred_if_noretry=False,
                                  bail_skipped_or_deferred="if_noretry", bail_thisnode_noretry=False,
                                  thisnode_without_wait_fails=False)
    simplifications: str = "Attempt 1 has no direct reclaim, so it only looks at free lists (and wakes nobody)."

    def attempts(self, settings: ThpSettings, madvised: bool) -> tuple[Attempt, ...]:
        if settings.enabled == "never" or (settings.enabled == "madvise" and not madvised):
            return ()
        if settings.mthp_orders:
            raise PolicyError(f"policy {self.name}: mTHP orders are not supported")
        direct = DEFRAG_WITH_DIRECT_RECLAIM.get(settings.defrag, (False, False))[int(madvised)]
        first = Attempt(order=9, scope="all", direct_reclaim=False, kswapd_reclaim=False, noretry=True)
        if not direct:
            return (first,)
        return (first, Attempt(order=9, scope="local", direct_reclaim=True, kswapd_reclaim=False, noretry=True))


FREE_ANYWHERE_FIRST = FreeAnywhereFirst()
