"""The built-in THP fault policies, one per kernel era (docs/policies.md).

Every era is data: the mask `alloc_hugepage_direct_gfpmask()` (4.0/4.1: `alloc_hugepage_gfpmask()`) returns
for each defrag mode and VMA (mm/huge_memory.c), the `__alloc_pages()` calls the hugepage branch of
`alloc_pages_vma()` / `alloc_pages_mpol()` makes with that mask (the `Step`s), the gfp hex of each call where
the era's alloc_hugepage_direct_gfpmask() gives it, and the era's `Slowpath`
(`__alloc_pages_slowpath()`). `EraPolicy.attempts()` only combines
them. Registered as entry points in pyproject.toml (group `thpreplay.policies`), like any plugin.

Model-wide simplifications (each era adds its own): MPOL_DEFAULT only (no interleave, bind or preferred
policies, so the 5.16 nodemask change 338635340669 does not show); x86-64 with 4 KiB pages (PMD order 9);
the memcg charge, khugepaged and `zone_reclaim_mode` are outside the fault policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from thpreplay.policy.base import (
    DEFRAG_MODES,
    PMD_ORDER,
    Attempt,
    PolicyError,
    Slowpath,
    ThpSettings,
    thp_attempted,
)


@dataclass(frozen=True)
class Mask:
    """The gfp mask one defrag mode gives one kind of VMA, as the flags the simulator needs."""

    expr: str  # the kernel's expression, for docs and reports
    direct: bool  # __GFP_DIRECT_RECLAIM (<=4.5: __GFP_WAIT)
    kswapd: bool  # __GFP_KSWAPD_RECLAIM
    noretry: bool  # __GFP_NORETRY
    thisnode: bool = False  # __GFP_THISNODE already in the mask (only the "relaxed" era puts it there)


def _m(expr: str, bits: str) -> Mask:
    """bits: D direct reclaim, K kswapd reclaim, N noretry, T thisnode."""
    return Mask(expr, "D" in bits, "K" in bits, "N" in bits, "T" in bits)


@dataclass(frozen=True)
class Step:
    """One __alloc_pages() call of the THP allocation path, applied to the mask."""

    thisnode: bool  # adds __GFP_THISNODE: only the local node's zones (ZONELIST_NOFALLBACK)
    noretry: bool  # adds __GFP_NORETRY
    only_if_direct: bool  # made only after the previous call failed, and only if the mask has direct reclaim


# ---------------------------------------------------------------------------------------------------------
# Masks per defrag mode and madvise (alloc_hugepage_direct_gfpmask() of each era). Keys: (defrag, madvised).
# ---------------------------------------------------------------------------------------------------------

# 3.19-4.5, alloc_hugepage_gfpmask(): GFP_TRANSHUGE has __GFP_WAIT, __GFP_NORETRY and __GFP_NO_KSWAPD;
# "defrag" (always, or madvise on a madvised VMA) keeps __GFP_WAIT, otherwise it is removed.
MASKS_4_0 = {
    ("always", False): _m("GFP_TRANSHUGE", "DN"),
    ("always", True): _m("GFP_TRANSHUGE", "DN"),
    ("madvise", False): _m("GFP_TRANSHUGE & ~__GFP_WAIT", "N"),
    ("madvise", True): _m("GFP_TRANSHUGE", "DN"),
    ("never", False): _m("GFP_TRANSHUGE & ~__GFP_WAIT", "N"),
    ("never", True): _m("GFP_TRANSHUGE & ~__GFP_WAIT", "N"),
}

# 4.6-4.7, alloc_hugepage_direct_gfpmask(): GFP_TRANSHUGE has __GFP_NORETRY and no reclaim bits; first
# matching rule wins: madvise+madvised, defer, always, anything else.
MASKS_4_6 = {
    ("always", False): _m("GFP_TRANSHUGE|__GFP_DIRECT_RECLAIM", "DN"),
    ("always", True): _m("GFP_TRANSHUGE|__GFP_DIRECT_RECLAIM", "DN"),
    ("defer", False): _m("GFP_TRANSHUGE|__GFP_KSWAPD_RECLAIM", "KN"),
    ("defer", True): _m("GFP_TRANSHUGE|__GFP_KSWAPD_RECLAIM", "KN"),
    ("madvise", False): _m("GFP_TRANSHUGE", "N"),
    ("madvise", True): _m("GFP_TRANSHUGE|__GFP_DIRECT_RECLAIM", "DN"),
    ("never", False): _m("GFP_TRANSHUGE", "N"),
    ("never", True): _m("GFP_TRANSHUGE", "N"),
}

# 4.8+ (2516035499b9 GFP_TRANSHUGE_LIGHT; 21440d7eb904 defer+madvise in 4.11), alloc_hugepage_direct_gfpmask()
# / vma_thp_gfp_mask(): the same rules in 4.11, 4.19, 5.4 ... 6.13. GFP_TRANSHUGE = LIGHT|__GFP_DIRECT_RECLAIM.
MASKS_4_8 = {
    ("always", False): _m("GFP_TRANSHUGE|__GFP_NORETRY", "DN"),
    ("always", True): _m("GFP_TRANSHUGE", "D"),
    ("defer", False): _m("GFP_TRANSHUGE_LIGHT|__GFP_KSWAPD_RECLAIM", "K"),
    ("defer", True): _m("GFP_TRANSHUGE_LIGHT|__GFP_KSWAPD_RECLAIM", "K"),
    ("defer+madvise", False): _m("GFP_TRANSHUGE_LIGHT|__GFP_KSWAPD_RECLAIM", "K"),
    ("defer+madvise", True): _m("GFP_TRANSHUGE_LIGHT|__GFP_DIRECT_RECLAIM", "D"),
    ("madvise", False): _m("GFP_TRANSHUGE_LIGHT", ""),
    ("madvise", True): _m("GFP_TRANSHUGE_LIGHT|__GFP_DIRECT_RECLAIM", "D"),
    ("never", False): _m("GFP_TRANSHUGE_LIGHT", ""),
    ("never", True): _m("GFP_TRANSHUGE_LIGHT", ""),
}

# "relaxed" (ac5b2c18911f + 89c83fb539f9; 5.3-rc5 92717d429b38 + a8282608c88e): this_node (__GFP_THISNODE)
# only in the masks without direct reclaim; alloc_pages_vma() has no hugepage branch (5.3-rc5).
MASKS_RELAXED = {
    ("always", False): _m("GFP_TRANSHUGE|__GFP_NORETRY", "DN"),
    ("always", True): _m("GFP_TRANSHUGE", "D"),
    ("defer", False): _m("GFP_TRANSHUGE_LIGHT|__GFP_KSWAPD_RECLAIM|this_node", "KT"),
    ("defer", True): _m("GFP_TRANSHUGE_LIGHT|__GFP_KSWAPD_RECLAIM|this_node", "KT"),
    ("defer+madvise", False): _m("GFP_TRANSHUGE_LIGHT|__GFP_KSWAPD_RECLAIM|this_node", "KT"),
    ("defer+madvise", True): _m("GFP_TRANSHUGE_LIGHT|__GFP_DIRECT_RECLAIM", "D"),
    ("madvise", False): _m("GFP_TRANSHUGE_LIGHT|this_node", "T"),
    ("madvise", True): _m("GFP_TRANSHUGE_LIGHT|__GFP_DIRECT_RECLAIM", "D"),
    ("never", False): _m("GFP_TRANSHUGE_LIGHT|this_node", "T"),
    ("never", True): _m("GFP_TRANSHUGE_LIGHT|this_node", "T"),
}

# ---------------------------------------------------------------------------------------------------------
# gfp hex of each attempt (x86-64, from each version's gfp.h), per kernel column. Keys: (defrag, madvised).
# ---------------------------------------------------------------------------------------------------------

HEX_4_0 = {("always", False): (0x4352da,), ("always", True): (0x4352da,),
           ("madvise", False): (0x4352ca,), ("madvise", True): (0x4352da,),
           ("never", False): (0x4352ca,), ("never", True): (0x4352ca,)}
HEX_4_1_5 = {("always", False): (0x4752da,), ("always", True): (0x4752da,),
             ("madvise", False): (0x4752ca,), ("madvise", True): (0x4752da,),
             ("never", False): (0x4752ca,), ("never", True): (0x4752ca,)}
HEX_4_6_2 = {("always", False): (0x4752ca,), ("always", True): (0x4752ca,),
             ("defer", False): (0x20752ca,), ("defer", True): (0x20752ca,),
             ("madvise", False): (0x752ca,), ("madvise", True): (0x4752ca,),
             ("never", False): (0x752ca,), ("never", True): (0x752ca,)}
# 4.11 layout (4.9.57 differs only for defer: 0x20742ca; 4.19/4.20 moved bits: see simplifications).
HEX_4_11 = {("always", False): (0x4752ca,), ("always", True): (0x4742ca,),
            ("defer", False): (0x10742ca,), ("defer", True): (0x10742ca,),
            ("defer+madvise", False): (0x10742ca,), ("defer+madvise", True): (0x4742ca,),
            ("madvise", False): (0x742ca,), ("madvise", True): (0x4742ca,),
            ("never", False): (0x742ca,), ("never", True): (0x742ca,)}
HEX_5_3_1 = {("always", False): (0x1d24ca,), ("always", True): (0x1c24ca,),
             ("defer", False): (0x3c28ca,), ("defer", True): (0x3c28ca,),
             ("defer+madvise", False): (0x3c28ca,), ("defer+madvise", True): (0x1c24ca,),
             ("madvise", False): (0x3c20ca,), ("madvise", True): (0x1c24ca,),
             ("never", False): (0x3c20ca,), ("never", True): (0x3c20ca,)}
HEX_5_4 = {("always", False): (0x3d24ca, 0x1d24ca), ("always", True): (0x3c24ca, 0x1d24ca),
           ("defer", False): (0x3c28ca,), ("defer", True): (0x3c28ca,),
           ("defer+madvise", False): (0x3c28ca,), ("defer+madvise", True): (0x3c24ca, 0x1d24ca),
           ("madvise", False): (0x3c20ca,), ("madvise", True): (0x3c24ca, 0x1d24ca),
           ("never", False): (0x3c20ca,), ("never", True): (0x3c20ca,)}
# 5.8.1; identical in 6.1.20, 6.8.0 and 6.13.7.
HEX_5_8_1 = {("always", False): (0x3d24ca, 0x1d24ca), ("always", True): (0x3d24ca, 0x1c24ca),
             ("defer", False): (0x3d28ca,), ("defer", True): (0x3d28ca,),
             ("defer+madvise", False): (0x3d28ca,), ("defer+madvise", True): (0x3d24ca, 0x1c24ca),
             ("madvise", False): (0x3d20ca,), ("madvise", True): (0x3d24ca, 0x1c24ca),
             ("never", False): (0x3d20ca,), ("never", True): (0x3d20ca,)}

# ---------------------------------------------------------------------------------------------------------
# How the allocation path turns the mask into __alloc_pages() calls (alloc_pages_vma / vma_alloc_folio).
# ---------------------------------------------------------------------------------------------------------

# 3.19-4.0: alloc_pages_vma() hugepage branch -> alloc_pages_exact_node(local, gfp): prefers, does not limit.
ONE_CALL_ZONELIST = (Step(thisnode=False, noretry=False, only_if_direct=False),)
# 4.1-5.3-rc4 (5265047ac301; 2f0799a0ffc0 restored it in 4.20): one call with gfp|__GFP_THISNODE.
ONE_CALL_THISNODE = (Step(thisnode=True, noretry=False, only_if_direct=False),)
# relaxed: __alloc_pages_nodemask(gfp, ...) with this_node already decided in the mask.
ONE_CALL_AS_MASKED = (Step(thisnode=False, noretry=False, only_if_direct=False),)
# 5.4 (76e654cc91bb): gfp|__GFP_THISNODE, then, with direct reclaim, gfp|__GFP_NORETRY on all nodes.
TWO_CALLS_5_4 = (Step(thisnode=True, noretry=False, only_if_direct=False),
                 Step(thisnode=False, noretry=True, only_if_direct=True))
# 5.5+ (cc638f329ef6): gfp|__GFP_THISNODE|__GFP_NORETRY, then, with direct reclaim, the bare gfp on all nodes.
TWO_CALLS_5_6 = (Step(thisnode=True, noretry=True, only_if_direct=False),
                 Step(thisnode=False, noretry=False, only_if_direct=True))

# ---------------------------------------------------------------------------------------------------------
# __alloc_pages_slowpath() for order 9.
# ---------------------------------------------------------------------------------------------------------

# 4.0-4.7 old slowpath: faults compact async only; a THP mask fails on deferred (or contended) compaction.
SLOWPATH_OLD = Slowpath(second_compaction_sync=False, bail_deferred_if_noretry=True,
                        bail_skipped_or_deferred="never", bail_thisnode_noretry=False,
                        thisnode_without_wait_fails=False)
# 4.1-4.5: plus, on NUMA, a THISNODE mask without __GFP_WAIT fails right after the fast path
# (the special case 444eb2a449ef removed in 4.6).
SLOWPATH_OLD_THISNODE = Slowpath(second_compaction_sync=False, bail_deferred_if_noretry=True,
                                 bail_skipped_or_deferred="never", bail_thisnode_noretry=False,
                                 thisnode_without_wait_fails=True)
# 4.8-5.3 new slowpath: costly+NORETRY -> fail on DEFERRED, else async; without NORETRY sync-light after reclaim.
SLOWPATH_4_8 = Slowpath(second_compaction_sync=True, bail_deferred_if_noretry=True,
                        bail_skipped_or_deferred="never", bail_thisnode_noretry=False,
                        thisnode_without_wait_fails=False)
# 5.4 (b39d0ee2632d): order >= pageblock_order, __GFP_IO, no __GFP_RETRY_MAYFAIL, SKIPPED/DEFERRED -> fail.
SLOWPATH_5_4 = Slowpath(second_compaction_sync=True, bail_deferred_if_noretry=True,
                        bail_skipped_or_deferred="costly_direct", bail_thisnode_noretry=False,
                        thisnode_without_wait_fails=False)
# 5.5+ (cc638f329ef6): one check, costly+NORETRY: SKIPPED/DEFERRED -> fail, else async.
SLOWPATH_5_6 = Slowpath(second_compaction_sync=True, bail_deferred_if_noretry=False,
                        bail_skipped_or_deferred="if_noretry", bail_thisnode_noretry=False,
                        thisnode_without_wait_fails=False)
# 9c9828d3ead6: inside that check, a __GFP_THISNODE mask fails too (the local attempt never reclaims).
SLOWPATH_7_0 = Slowpath(second_compaction_sync=True, bail_deferred_if_noretry=False,
                        bail_skipped_or_deferred="if_noretry", bail_thisnode_noretry=True,
                        thisnode_without_wait_fails=False)


@dataclass(frozen=True, eq=False)
class EraPolicy:
    """A THP fault policy given entirely by data: masks, calls, gfp hex and slowpath of one kernel era.

    Plugins can build their own (e.g. `dataclasses.replace(THISNODE_NORETRY_5_6, name=..., slowpath=...)`).
    Identity is the object: policies are compared and hashed by `is`, and named by `name`.
    """

    name: str
    title: str
    kernels: str
    commits: tuple[str, ...]
    default_defrag: str
    slowpath: Slowpath
    simplifications: str
    masks: dict[tuple[str, bool], Mask]
    steps: tuple[Step, ...]
    gfp_hex: dict[tuple[str, bool], tuple[int, ...]] | None = None
    mthp: bool = False  # the era can have anon mTHP orders below PMD (6.8+)
    # kcompactd's proactive compaction (vm.compaction_proactiveness, Nitin Gupta, 5.9): True when the
    # era's kernels have it, False when none does, None for an era that ends before 5.9 but whose THP
    # policy the lab runs on newer kernels (its patched 6.1 kernels): the capture's kernel decides
    # (simulate sets proactiveness 0 for a capture before 5.9). The simulator runs it with the capture's
    # setting.
    proactive_compaction: bool | None = False
    # async compaction's free scanner samples pageblocks (4fca9730c51d, 5.1; thpreplay.kernel.compaction):
    # True / False for eras wholly after / before 5.1, None for an era that spans it (follow the capture's
    # kernel). Compaction internals are the kernel's, so the lab's 6.1 kernels patched to an older THP
    # policy still sample.
    free_scanner_sampling: bool | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        modes = {d for d, _ in self.masks}
        for defrag in modes:
            if (defrag, False) not in self.masks or (defrag, True) not in self.masks:
                raise PolicyError(f"policy {self.name}: masks need both madvised and not madvised for {defrag!r}")
        if self.default_defrag not in modes:
            raise PolicyError(f"policy {self.name}: default defrag {self.default_defrag!r} is not one of its modes")
        for key, hexes in (self.gfp_hex or {}).items():
            if key not in self.masks or len(hexes) != len(self._steps_for(self.masks[key])):
                raise PolicyError(f"policy {self.name}: gfp hex for {key} does not match its attempts")

    @property
    def builtin(self) -> bool:
        """True for the nine objects below, False for plugins (even those made from a built-in)."""
        return any(self is p for p in BUILTINS)

    @property
    def defrag_modes(self) -> tuple[str, ...]:
        return tuple(d for d in DEFRAG_MODES if (d, False) in self.masks)

    def mask(self, defrag: str, madvised: bool) -> Mask:
        return self.masks[(defrag, madvised)]

    def _steps_for(self, mask: Mask) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if mask.direct or not s.only_if_direct)

    def attempts(self, settings: ThpSettings, madvised: bool) -> tuple[Attempt, ...]:
        """The THP attempts of one PMD fault under `settings`, then one all-node attempt per mTHP order."""
        key = (settings, madvised)
        if key not in self._cache:
            self._cache[key] = self._attempts(settings, madvised)
        return self._cache[key]

    def _attempts(self, settings: ThpSettings, madvised: bool) -> tuple[Attempt, ...]:
        if (settings.defrag, madvised) not in self.masks:
            raise PolicyError(f"policy {self.name}: defrag mode {settings.defrag!r} does not exist in its kernels "
                              f"({self.kernels}); modes: {', '.join(self.defrag_modes)}")
        if settings.mthp_orders and not self.mthp:
            raise PolicyError(f"policy {self.name}: its kernels ({self.kernels}) have no anon mTHP (6.8+), "
                              f"but mTHP orders {list(settings.mthp_orders)} are set")
        if not thp_attempted(settings, madvised):
            return ()
        mask = self.masks[(settings.defrag, madvised)]
        hexes = (self.gfp_hex or {}).get((settings.defrag, madvised), ())
        out = []
        for i, step in enumerate(self._steps_for(mask)):
            out.append(Attempt(order=PMD_ORDER, scope="local" if (mask.thisnode or step.thisnode) else "all",
                               direct_reclaim=mask.direct, kswapd_reclaim=mask.kswapd,
                               noretry=mask.noretry or step.noretry, gfp_hex=hexes[i] if hexes else None))
        # alloc_anon_folio() (6.8+): vma_thp_gfp_mask() as is, no THISNODE-first call, highest order first.
        for order in settings.mthp_orders:
            out.append(Attempt(order=order, scope="all", direct_reclaim=mask.direct, kswapd_reclaim=mask.kswapd,
                               noretry=mask.noretry))
        return tuple(out)


# ---------------------------------------------------------------------------------------------------------
# The built-ins, in era order. Kernel ranges: see versions.py for how a release maps to one of these.
# ---------------------------------------------------------------------------------------------------------

PREFER_LOCAL_4_0 = EraPolicy(
    name="prefer-local-4.0",
    title="one attempt over the whole zonelist, local node first (no __GFP_THISNODE)",
    kernels="3.19-4.0",
    commits=("077fcf116c8c mm/thp: allocate transparent hugepages on local node",),
    default_defrag="always",
    slowpath=SLOWPATH_OLD,
    masks=MASKS_4_0,
    steps=ONE_CALL_ZONELIST,
    gfp_hex=HEX_4_0,
    simplifications=(
        "The old slowpath's THP heuristic also fails on lock-contended or need_resched-contended compaction; "
        "the model only knows deferral. Kernels before 3.19 (before 077fcf116c8c) are not modelled."),
    free_scanner_sampling=False,
)

THISNODE_4_1 = EraPolicy(
    name="thisnode-4.1",
    title="one attempt limited to the local node (__GFP_THISNODE), default defrag=always",
    kernels="4.1-4.5",
    commits=("5265047ac301 mm, thp: really limit transparent hugepage allocation to local node",),
    default_defrag="always",
    slowpath=SLOWPATH_OLD_THISNODE,
    masks=MASKS_4_0,
    steps=ONE_CALL_THISNODE,
    gfp_hex=HEX_4_1_5,
    simplifications=(
        "As prefer-local-4.0: contended compaction is not modelled. MPOL_PREFERRED's preferred node as the "
        "THP target is not modelled (MPOL_DEFAULT only)."),
    free_scanner_sampling=False,
)

DEFRAG_MODES_4_6 = EraPolicy(
    name="defrag-modes-4.6",
    title="local node only; defrag modes always/defer/madvise/never, default madvise",
    kernels="4.6-4.7",
    commits=("444eb2a449ef mm: thp: set THP defrag by default to madvise and add a stall-free defrag option",),
    default_defrag="madvise",
    slowpath=SLOWPATH_OLD,
    masks=MASKS_4_6,
    steps=ONE_CALL_THISNODE,
    gfp_hex=HEX_4_6_2,
    simplifications=(
        "is_thp_gfp_mask() also fails on contended compaction, not modelled. kcompactd (new in 4.6) is woken "
        "by the defer masks through kswapd; the policy only says which masks wake kswapd."),
    free_scanner_sampling=False,
)

LOCAL_ONLY_4_8 = EraPolicy(
    name="local-only-4.8",
    title="one local-only attempt; madvised faults reclaim the local node, then sync-light compaction",
    kernels="4.8-4.19.1, 4.20, 5.0-5.2, 5.3-rc1..rc4",
    commits=(
        "2516035499b9 mm, thp: remove __GFP_NORETRY from khugepaged and madvised allocations",
        "21440d7eb904 mm, thp: add new defer+madvise defrag option",
        "2f0799a0ffc0 mm, thp: restore node-local hugepage allocations",
    ),
    default_defrag="madvise",
    slowpath=SLOWPATH_4_8,
    masks=MASKS_4_8,
    steps=ONE_CALL_THISNODE,
    gfp_hex=HEX_4_11,
    simplifications=(
        "defer+madvise exists only from 4.11; the policy accepts it for 4.8-4.10 too, where the kernel could "
        "not have been set to it. gfp_hex is the 4.11 layout: 4.9 prints defer as 0x20742ca, and 4.19/4.20 "
        "moved __GFP_DIRECT_RECLAIM (e.g. 0x2742ca for a madvised fault), so match events by flags. "
        "watermark_boost_factor (5.0+) is outside the policy."),
    proactive_compaction=None,
)

RELAXED_5_3_RC5 = EraPolicy(
    name="relaxed-5.3-rc5",
    title="direct-reclaim THP faults allocate from all nodes at once; other masks stay local",
    kernels="4.20-rc1..rc5, 4.19.2+ (ac5b2c18911f backport), 5.3-rc5..5.3.x",
    commits=(
        "ac5b2c18911f mm: thp: relax __GFP_THISNODE for MADV_HUGEPAGE mappings",
        "89c83fb539f9 mm, thp: consolidate THP gfp handling into alloc_hugepage_direct_gfpmask",
        "92717d429b38 Revert \"Revert \"mm, thp: consolidate THP gfp handling into alloc_hugepage_direct_gfpmask\"\"",
        "a8282608c88e Revert \"mm, thp: restore node-local hugepage allocations\"",
    ),
    default_defrag="madvise",
    slowpath=SLOWPATH_4_8,
    masks=MASKS_RELAXED,
    steps=ONE_CALL_AS_MASKED,
    gfp_hex=HEX_5_3_1,
    simplifications=(
        "gfp_hex is the 5.3.1 layout; the 4.19.y backport and 4.20-rc print other hex for the same flags. "
        "The 4.19.y backport adds __GFP_THISNODE in alloc_pages_vma() instead of the mask; for MPOL_DEFAULT "
        "the attempts are the same. MPOL_BIND (no this_node) is not modelled."),
    proactive_compaction=None,
)

RIENTJES_2019 = EraPolicy(
    name="rientjes-2019",
    title="Rientjes' 4-patch series as posted (4 Sep 2019): local attempt, then all nodes with NORETRY",
    kernels="not released: posted for 5.3 on 4 Sep 2019 (merged for 5.4 as two-step-5.4)",
    commits=(  # message ids of the posted patches (@chino.kir.corp.google.com); not commits
        "alpine.DEB.2.21.1909041252590.94813 [patch for-5.3 1/4] Revert \"Revert \"mm, thp: restore node-local hugepage allocations\"\"",
        "alpine.DEB.2.21.1909041253180.94813 [patch for-5.3 2/4] Revert^3 consolidate THP gfp handling",
        "alpine.DEB.2.21.1909041253390.94813 [rfc 3/4] mm, page_alloc: avoid expensive reclaim when compaction may not succeed",
        "alpine.DEB.2.21.1909041253560.94813 [rfc 4/4] mm, page_alloc: allow hugepage fallback to remote nodes when madvised",
    ),
    default_defrag="madvise",
    slowpath=SLOWPATH_5_4,
    masks=MASKS_4_8,
    steps=TWO_CALLS_5_4,
    gfp_hex=HEX_5_4,
    simplifications=(
        "For THP faults the series as posted is the same code as 5.4 merged it (two-step-5.4): 1/4 and 2/4 "
        "are the reverts merged as 19deb7695e07/ac79f78da731, 4/4 is 76e654cc91bb line for line, 3/4 is "
        "b39d0ee2632d before the 5.4-rc __GFP_RETRY_MAYFAIL exemption, which no THP mask has. It was posted "
        "against 5.3-rc, whose gfp bits equal 5.4's; gfp_hex is the 5.4 column."),
    proactive_compaction=None,   # before 5.9; the lab runs it on 6.1, whose kcompactd has it
    free_scanner_sampling=True,
)

TWO_STEP_5_4 = EraPolicy(
    name="two-step-5.4",
    title="local attempt at full effort, then all nodes with NORETRY; pageblock-order bail-out",
    kernels="5.4, 5.4.y, 5.5-rc1..rc6",
    commits=(
        "edf445ad7c8d Merge branch 'hugepage-fallbacks' (hugepatch patches from David Rientjes)",
        "19deb7695e07 Revert \"Revert \"Revert \"mm, thp: consolidate THP gfp handling into alloc_hugepage_direct_gfpmask\"\"\"",
        "b39d0ee2632d mm, page_alloc: avoid expensive reclaim when compaction may not succeed",
        "76e654cc91bb mm, page_alloc: allow hugepage fallback to remote nodes when madvised",
    ),
    default_defrag="madvise",
    slowpath=SLOWPATH_5_4,
    masks=MASKS_4_8,
    steps=TWO_CALLS_5_4,
    gfp_hex=HEX_5_4,
    simplifications=(
        "The second call is __alloc_pages_node() with no policy nodemask; with MPOL_DEFAULT that is all nodes, "
        "as modelled. Where in 5.5-rc cc638f329ef6 landed is not pinned (see versions.py)."),
    proactive_compaction=None,   # before 5.9; the lab runs it on 6.1, whose kcompactd has it
    free_scanner_sampling=True,
)

THISNODE_NORETRY_5_6 = EraPolicy(
    name="thisnode-noretry-5.6",
    title="local attempt with NORETRY (compaction, reclaim only if it ran and failed), then all nodes",
    kernels="5.5-rc7..6.19 (5.5 final; 6.19.y before 6.19.6; stable branches before the 9c9828d3ead6 backport)",
    commits=(
        "cc638f329ef6 mm, thp: tweak reclaim/compaction effort of local-only and all-node allocations",
        "338635340669 mm: mempolicy: fix THP allocations escaping mempolicy restrictions",
        "ddc1a5cbc05d mempolicy: alloc_pages_mpol() for NUMA policy without vma",
    ),
    default_defrag="madvise",
    slowpath=SLOWPATH_5_6,
    masks=MASKS_4_8,
    steps=TWO_CALLS_5_6,
    gfp_hex=HEX_5_8_1,
    mthp=True,
    simplifications=(
        "mTHP orders (6.8+) are accepted for the whole era; before 6.8 the kernel has none. Small mTHP orders "
        "(<= 3) go through the non-costly retry loop and possibly OOM, which the Slowpath (costly orders) does "
        "not describe. The policy nodemask of the second call (5.16+) is not modelled (MPOL_DEFAULT)."),
    proactive_compaction=True,
    free_scanner_sampling=True,
)

NO_LOCAL_RECLAIM_7_0 = EraPolicy(
    name="no-local-reclaim-7.0",
    title="as thisnode-noretry-5.6, but the local attempt never reclaims (9c9828d3ead6)",
    kernels="7.0-rc1+; stable backports 6.19.6+, 6.18.16+, 6.12.75+, 6.6.130+, 6.1.165+, 5.15.203+, 5.10.253+",
    commits=("9c9828d3ead6 mm, page_alloc, thp: prevent reclaim for __GFP_THISNODE THP allocations",),
    default_defrag="madvise",
    slowpath=SLOWPATH_7_0,
    masks=MASKS_4_8,
    steps=TWO_CALLS_5_6,
    gfp_hex=None,  # not in the reference's tables (the patch changes only the slowpath, not the masks)
    mthp=True,
    simplifications=(
        "As thisnode-noretry-5.6. gfp_hex is None: the reference tabulates no kernel of this era, though the "
        "patch leaves the masks of 5.8.1-6.13.7 unchanged. The 5.10/5.15 backports have no mTHP."),
    proactive_compaction=True,
    free_scanner_sampling=True,
)

BUILTINS: tuple[EraPolicy, ...] = (
    PREFER_LOCAL_4_0,
    THISNODE_4_1,
    DEFRAG_MODES_4_6,
    LOCAL_ONLY_4_8,
    RELAXED_5_3_RC5,
    RIENTJES_2019,
    TWO_STEP_5_4,
    THISNODE_NORETRY_5_6,
    NO_LOCAL_RECLAIM_7_0,
)
