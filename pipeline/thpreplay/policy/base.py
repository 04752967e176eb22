"""What a THP fault policy is: the settings it reads, the attempts it makes, how the slowpath treats them.

A policy turns one PMD THP fault (MPOL_DEFAULT, local node L) into the `__alloc_pages()` calls the kernel
makes for it, in order. The simulator tries them until one succeeds, then falls back to order-0 pages
(`VM_FAULT_FALLBACK`, do_huge_pmd_anonymous_page). How each call behaves inside `__alloc_pages_slowpath()` (compaction
priority, bail-outs) is the era's `Slowpath`.

The built-in policies (builtin.py) are instances of one data-driven class; a plugin may be any object
with the attributes of `Policy` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from thpreplay.errors import ThpreplayError

# /sys/kernel/mm/transparent_hugepage/enabled and .../defrag values, in the kernel's display order.
ENABLED_MODES = ("always", "madvise", "never")
DEFRAG_MODES = ("always", "defer", "defer+madvise", "madvise", "never")
PMD_ORDER = 9  # x86-64, 4 KiB pages
SCOPES = ("local", "all")
BAIL_SKIPPED_OR_DEFERRED = ("never", "costly_direct", "if_noretry")


class PolicyError(ThpreplayError):
    """A policy cannot be found, loaded or used with the given settings."""


class PolicyCrashed(PolicyError):
    """A policy's own code raised (a plugin's bug): reported, never skipped."""


def call_attempts(policy, settings: "ThpSettings", madvised: bool) -> tuple:
    """policy.attempts(), with anything but a PolicyError turned into a one-line PolicyCrashed."""
    try:
        return tuple(policy.attempts(settings, madvised))
    except PolicyError:
        raise
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else ""
        raise PolicyCrashed(f"policy {getattr(policy, 'name', policy)!r}: attempts({settings.enabled}/{settings.defrag}, "
                            f"madvised={madvised}) raised {type(e).__name__}: {reason}".rstrip(": ")) from None


@dataclass(frozen=True)
class ThpSettings:
    """The THP knobs a fault policy reads. Unknown values are refused here; modes an era lacks are
    refused by the policy (`Policy.attempts`)."""

    enabled: str = "always"  # always | madvise | never   (/sys/kernel/mm/transparent_hugepage/enabled)
    defrag: str = "madvise"  # always | defer | defer+madvise | madvise | never
    mthp_orders: tuple[int, ...] = ()  # enabled anon mTHP orders below 9 (6.8+), highest first

    def __post_init__(self) -> None:
        if self.enabled not in ENABLED_MODES:
            raise PolicyError(f"unknown THP enabled mode {self.enabled!r} (expected one of {', '.join(ENABLED_MODES)})")
        if self.defrag not in DEFRAG_MODES:
            raise PolicyError(f"unknown THP defrag mode {self.defrag!r} (expected one of {', '.join(DEFRAG_MODES)})")
        bad = [o for o in self.mthp_orders if not isinstance(o, int) or not 1 <= o < PMD_ORDER]
        if bad:
            raise PolicyError(f"mTHP orders must be 1..{PMD_ORDER - 1}, got {bad}")
        if list(self.mthp_orders) != sorted(set(self.mthp_orders), reverse=True):
            raise PolicyError(f"mTHP orders must be distinct and highest first, got {list(self.mthp_orders)}")


@dataclass(frozen=True)
class Attempt:
    """One __alloc_pages() call of a THP fault (one kmem:mm_page_alloc event)."""

    order: int  # 9 for PMD THP
    scope: str  # "local": __GFP_THISNODE, the local node's zones only; "all": zonelist from the local node
    direct_reclaim: bool  # __GFP_DIRECT_RECLAIM (old kernels: __GFP_WAIT)
    kswapd_reclaim: bool  # __GFP_KSWAPD_RECLAIM (wakes kswapd); False for <=4.5 (__GFP_NO_KSWAPD)
    noretry: bool  # __GFP_NORETRY, tested on the bits (<=4.7 GFP_TRANSHUGE itself contains it)
    gfp_hex: int | None = None  # this attempt's mask, where the era's alloc_hugepage_direct_gfpmask() is known


@dataclass(frozen=True)
class Slowpath:
    """How __alloc_pages_slowpath() treats a costly-order (order > 3) attempt in this era."""

    second_compaction_sync: bool  # after reclaim, SYNC_LIGHT compaction unless the mask has NORETRY (4.8+); False = always async
    bail_deferred_if_noretry: bool  # after the first async compaction: NORETRY and COMPACT_DEFERRED -> fail (4.8-5.4; <=4.7: THP masks fail if deferred)
    bail_skipped_or_deferred: str  # "never" | "costly_direct" (5.4 b39d0ee2632d) | "if_noretry" (5.6+ cc638f329ef6)
    bail_thisnode_noretry: bool  # 9c9828d3ead6: the costly NORETRY block fails a __GFP_THISNODE mask after the first compaction
    thisnode_without_wait_fails: bool  # 4.1-4.5: THISNODE mask without __GFP_WAIT fails at once after the fast path
    min_watermark_retry: bool = True  # the slowpath retries the free list at WMARK_MIN

    def __post_init__(self) -> None:
        if self.bail_skipped_or_deferred not in BAIL_SKIPPED_OR_DEFERRED:
            raise PolicyError(f"Slowpath.bail_skipped_or_deferred must be one of {', '.join(BAIL_SKIPPED_OR_DEFERRED)}, "
                              f"got {self.bail_skipped_or_deferred!r}")


@runtime_checkable
class Policy(Protocol):
    """What the simulator needs from a policy. Built-ins are `thpreplay.policy.builtin.EraPolicy` objects;
    a plugin may subclass or instantiate that class, or provide any object with these attributes."""

    name: str  # stable identifier, e.g. "local-only-4.8"
    title: str  # one line
    kernels: str  # human range, e.g. "4.8-4.19 (early), 4.20, 5.0-5.2, 5.3-rc1..rc4"
    commits: tuple[str, ...]  # e.g. ("5265047ac301 mm, thp: really limit transparent hugepage allocation to local node",)
    default_defrag: str
    slowpath: Slowpath
    simplifications: str  # where the model of this era simplifies

    def attempts(self, settings: ThpSettings, madvised: bool) -> tuple[Attempt, ...]:
        """The THP allocation attempts of one PMD fault, in order; empty when no THP is attempted
        (enabled=never, or enabled=madvise and not madvised). mTHP orders (6.8+) follow the PMD attempts,
        one all-node attempt each with the same flags. Raises PolicyError for settings the era lacks."""
        ...


def thp_attempted(settings: ThpSettings, madvised: bool) -> bool:
    """`enabled` gates whether a fault tries a THP at all (__thp_vma_allowable_orders / transparent_hugepage_enabled)."""
    return settings.enabled == "always" or (settings.enabled == "madvise" and madvised)
