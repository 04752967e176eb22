"""Tracepoint events thpreplay types, as data: which table each goes to and how its fields parse.

Field names are the printed `name=` keys, matched anywhere in the payload, so the same spec reads
every era's print format (TP_printk of include/trace/events/kmem.h, compaction.h, vmscan.h) and
libtraceevent's `[FAILED TO PARSE] name=value` fallback, whatever the field order. Kinds:
  int  signed integer, decimal or 0x-hex          pfn  as int; 0 means "no page" for mm_page_alloc
  hex  unsigned integer printed as 0x...           str  a word (symbolic value), trailing ',' removed
  gfp  a gfp mask as printed (names or raw hex)    bool 0/1

Event names changed over the eras (docs/kernel-eras.md): 2.6.32-3.2 print mm_page_free_direct and
mm_pagevec_free, renamed mm_page_free and mm_page_free_batched in 3.3 (Konstantin Khlebnikov,
"mm-tracepoint: rename page-free events", linux-mm 11 Nov 2011, <20111111124005.7371.63176.stgit@zurg>).
Print formats of 2.6.32-4.0 differ only in what the fields mean, noted at each event.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EventSpec:
    table: str
    # printed key -> (column, kind)
    fields: dict[str, tuple[str, str]]
    required: tuple[str, ...] = ()
    # columns set to a constant for this event
    constants: dict[str, object] = field(default_factory=dict)


# Ranges of the values a page event can carry (x86-64): a line outside them is rejected with the
# reason, never stored wrapped or replayed. MAX_PAGE_ORDER is 10 (include/linux/mmzone.h); a pfn fits
# the 52-bit physical address space; PID_MAX_LIMIT is 4 Mi (include/linux/threads.h); NR_CPUS is at
# most 8192.
PAGE_ORDER_MAX = 10
PFN_MAX = (1 << 52) >> 12
PID_MAX_LIMIT = 4 * 1024 * 1024
CPU_MAX = 8192
# CONFIG_NODES_SHIFT is at most 10. A snapshot past these bounds is damaged or not from a kernel, and
# would have thpreplay build tables that size (procfs.py).
MAX_NUMNODES = 1 << 10
PAGE_TABLES = ("page_alloc", "page_free", "extfrag")
# gfp_t is an unsigned int (include/linux/types.h, every kernel): a printed mask with a bit past 31
# (0xffffffffffffffff, FAILED TO PARSE's stored -1) is not one the kernel made.
GFP_BITS = 32

# What each numeric column can hold: the C type of the tracepoint field it comes from (TP_STRUCT__entry
# in include/trace/events/kmem.h, compaction.h, vmscan.h, arch/x86/include/asm/trace/exceptions.h,
# 6.1), narrowed to the column's type in schemas/ and to the kernel's own bound where it has one.
# (low, high, why) by column; a line outside is rejected with the reason, never stored wrapped.
_INT16 = (-(1 << 15), (1 << 15) - 1, "int16 column")
_UINT = (0, (1 << 32) - 1, "unsigned int")
_ULONG = (0, (1 << 63) - 1, "unsigned long, stored as int64")
_PFN = (0, PFN_MAX, "52-bit physical addresses")
_ORDER = (0, PAGE_ORDER_MAX, "MAX_PAGE_ORDER")
_U64 = (0, (1 << 64) - 1, "unsigned long")
COLUMN_BOUNDS: dict[str, tuple[int, int, str]] = {
    "pfn": _PFN, "zone_start": _PFN, "migrate_pfn": _PFN, "free_pfn": _PFN, "zone_end": _PFN,
    # compaction and reclaim events print cc->order, which is -1 for a whole-zone (proactive,
    # /proc/sys/vm/compact_memory) compaction; a page is always order 0..MAX_PAGE_ORDER (PAGE_BOUNDS)
    "order": (-1, PAGE_ORDER_MAX, "MAX_PAGE_ORDER; -1: a whole-zone compaction"),
    "alloc_order": _ORDER, "fallback_order": _ORDER, "pageblock_order": _ORDER,
    "order_failed": (-1, PAGE_ORDER_MAX + 1, "MAX_PAGE_ORDER + 1"),
    "migratetype": _INT16, "alloc_migratetype": _INT16, "fallback_migratetype": _INT16, "priority": _INT16,
    "node": (0, MAX_NUMNODES - 1, "MAX_NUMNODES"),
    "consider": _UINT, "defer_limit": _ULONG,
    "nr_migrated": _ULONG, "nr_failed": _ULONG, "nr_scanned": _ULONG, "nr_taken": _ULONG,
    "nr_reclaimed": _ULONG, "error_code": _ULONG,
    "address": _U64, "ip": _U64,
}
PAGE_BOUNDS = {"order": _ORDER}  # in PAGE_TABLES

_ZONE_EVENT = {"node": ("node", "int"), "zone": ("zone", "str"), "order": ("order", "int")}
_DEFER = {
    **_ZONE_EVENT,
    "order_failed": ("order_failed", "int"),
    "consider": ("consider", "int"),
    "limit": ("defer_limit", "int"),
}
_SCANNERS = {
    "zone_start": ("zone_start", "int"),
    "migrate_pfn": ("migrate_pfn", "int"),
    "free_pfn": ("free_pfn", "int"),
    "zone_end": ("zone_end", "int"),
    "mode": ("mode", "str"),
}

# How %p prints a NULL struct page * (vsprintf, padded to 16 in ftrace: "page=          (null)", read as
# "", or all zeros with hashed pointers) or how a tool prints it.
NULL_POINTERS = ("", "(null)", "(nil)", "0", "0x0", "00000000", "0000000000000000")

_FREE = EventSpec("page_free", {"pfn": ("pfn", "pfn"), "order": ("order", "int")}, required=("pfn", "order"))

EVENTS: dict[str, EventSpec] = {
    # kmem
    # A failed allocation prints pfn=0, except before the NULL check in TP_printk (present by 3.3; the
    # 2.6.32 kmem.h prints page_to_pfn(page) unconditionally, a garbage pfn for page NULL): there the
    # printed page= is a NULL pointer (NULL_POINTERS), which ingest turns into pfn 0.
    "mm_page_alloc": EventSpec(
        "page_alloc",
        {
            "page": ("page", "str"),
            "pfn": ("pfn", "pfn"),
            "order": ("order", "int"),
            "migratetype": ("migratetype", "int"),
            "gfp_flags": ("gfp_flags", "gfp"),
        },
        # migratetype is in every kernel's print format since the event came (2.6.33): a line without it is
        # damaged, and the replay needs it (the block a small allocation takes)
        required=("pfn", "order", "migratetype", "gfp_flags"),
    ),
    # Every page block the buddy allocator takes back, with its order, whatever the path: "Since
    # v2.6.33-5426-gc475dab kernel trigger mm_page_free_direct for all freed pages, not only for directly
    # freed" (Khlebnikov's rename). Its 2.6.32-3.2 name:
    "mm_page_free": _FREE,
    "mm_page_free_direct": _FREE,
    # Not here, so kept whole in other_events: mm_page_free_batched and its 2.6.32-3.2 name mm_pagevec_free
    # ("page=%p pfn=%lu order=0 cold=%d"). Since 2.6.34 each page they report is also reported by
    # mm_page_free[_direct] ("For pages freed via page-list we also trigger mm_page_free_batched event",
    # Khlebnikov's rename), and 6.x prints order=0 for a folio of any order: as a free it would count
    # pages twice. (Before c475dab, i.e. 2.6.32/2.6.33, pagevec frees are reported only here, and an
    # order-0 __free_pages() twice as mm_page_free_direct (Li Hong's report, linux-mm 13 Jan 2010,
    # <20100113144917.GA11934@xhl>): a replay of those two releases misses the one and doubles the other.)
    # Before 3.12 (Srivatsa S. Bhat, "mm: Fix the value of fallback_migratetype in alloc_extfrag
    # tracepoint", <20130722184812.9573.16042.stgit@srivatsabhat.in.ibm.com>) fallback_migratetype is the
    # block's type after a steal, and change_ownership = (alloc_migratetype == fallback_migratetype) is
    # computed from it: change_ownership and the orders mean what they mean later, fallback_migratetype
    # equals alloc_migratetype whenever the block changed owner.
    "mm_page_alloc_extfrag": EventSpec(
        "extfrag",
        {
            "pfn": ("pfn", "pfn"),
            "alloc_order": ("alloc_order", "int"),
            "fallback_order": ("fallback_order", "int"),
            "pageblock_order": ("pageblock_order", "int"),
            "alloc_migratetype": ("alloc_migratetype", "int"),
            "fallback_migratetype": ("fallback_migratetype", "int"),
            "fragmenting": ("fragmenting", "bool"),
            "change_ownership": ("change_ownership", "bool"),
        },
        required=("pfn", "alloc_order", "fallback_order", "alloc_migratetype", "fallback_migratetype"),
    ),
    # compaction
    "mm_compaction_try_to_compact_pages": EventSpec(
        "compaction",
        {
            "order": ("order", "int"),
            "gfp_mask": ("gfp_flags", "gfp"),
            "priority": ("priority", "int"),
            "mode": ("priority", "int"),  # 4.0-4.6 print mode=%d in this position
        },
        required=("order",),
    ),
    "mm_compaction_begin": EventSpec("compaction", _SCANNERS, required=("zone_start", "zone_end")),
    "mm_compaction_end": EventSpec(
        "compaction", {**_SCANNERS, "status": ("status", "str")}, required=("status",)
    ),
    "mm_compaction_suitable": EventSpec("compaction", {**_ZONE_EVENT, "ret": ("ret", "str")}),
    "mm_compaction_finished": EventSpec("compaction", {**_ZONE_EVENT, "ret": ("ret", "str")}),
    "mm_compaction_deferred": EventSpec("compaction", _DEFER),
    "mm_compaction_defer_compaction": EventSpec("compaction", _DEFER),
    "mm_compaction_defer_reset": EventSpec("compaction", _DEFER),
    "mm_compaction_kcompactd_wake": EventSpec(
        "compaction", {"nid": ("node", "int"), "order": ("order", "int"), "classzone_idx": ("zone", "str")}
    ),
    "mm_compaction_wakeup_kcompactd": EventSpec(
        "compaction", {"nid": ("node", "int"), "order": ("order", "int"), "classzone_idx": ("zone", "str")}
    ),
    "mm_compaction_kcompactd_sleep": EventSpec("compaction", {"nid": ("node", "int")}),
    "mm_compaction_migratepages": EventSpec(
        "compaction",
        {"nr_migrated": ("nr_migrated", "int"), "nr_failed": ("nr_failed", "int")},
        required=("nr_migrated",),
    ),
    "mm_compaction_isolate_migratepages": EventSpec(
        "compaction", {"nr_scanned": ("nr_scanned", "int"), "nr_taken": ("nr_taken", "int")}
    ),
    "mm_compaction_isolate_freepages": EventSpec(
        "compaction", {"nr_scanned": ("nr_scanned", "int"), "nr_taken": ("nr_taken", "int")}
    ),
    "mm_compaction_fast_isolate_freepages": EventSpec(
        "compaction", {"nr_scanned": ("nr_scanned", "int"), "nr_taken": ("nr_taken", "int")}
    ),
    # vmscan
    "mm_vmscan_direct_reclaim_begin": EventSpec(
        "reclaim", {"order": ("order", "int"), "gfp_flags": ("gfp_flags", "gfp")}, required=("order",)
    ),
    "mm_vmscan_direct_reclaim_end": EventSpec(
        "reclaim", {"nr_reclaimed": ("nr_reclaimed", "int")}, required=("nr_reclaimed",)
    ),
    "mm_vmscan_node_reclaim_begin": EventSpec(
        "reclaim", {"nid": ("node", "int"), "order": ("order", "int"), "gfp_flags": ("gfp_flags", "gfp")}
    ),
    "mm_vmscan_node_reclaim_end": EventSpec("reclaim", {"nr_reclaimed": ("nr_reclaimed", "int")}),
    "mm_vmscan_kswapd_wake": EventSpec(
        "reclaim", {"nid": ("node", "int"), "order": ("order", "int")}, required=("nid",)
    ),
    "mm_vmscan_kswapd_sleep": EventSpec("reclaim", {"nid": ("node", "int")}, required=("nid",)),
    "mm_vmscan_wakeup_kswapd": EventSpec(
        "reclaim", {"nid": ("node", "int"), "order": ("order", "int"), "gfp_flags": ("gfp_flags", "gfp")}
    ),
    # Swap-out / writeback of a reclaimed page: writepage up to 5.x, write_folio in 6.x.
    "mm_vmscan_writepage": EventSpec(
        "reclaim", {"pfn": ("pfn", "pfn"), "flags": ("flags", "str")}, required=("pfn",)
    ),
    "mm_vmscan_write_folio": EventSpec(
        "reclaim", {"pfn": ("pfn", "pfn"), "flags": ("flags", "str")}, required=("pfn",)
    ),
    # exceptions (x86): ties faults to virtual addresses
    "page_fault_user": EventSpec(
        "page_fault",
        {"address": ("address", "hex"), "ip": ("ip", "hex"), "error_code": ("error_code", "int")},
        required=("address",),
    ),
    "page_fault_kernel": EventSpec(
        "page_fault",
        {"address": ("address", "hex"), "ip": ("ip", "hex"), "error_code": ("error_code", "int")},
        required=("address",),
    ),
}

TYPED_TABLES = ("page_alloc", "page_free", "extfrag", "compaction", "reclaim", "page_fault")
EVENT_TABLES = TYPED_TABLES + ("other_events",)

# What `thpreplay record` asks perf for: (subsystem, event) in the order of the ingest issue. Where a
# kernel renamed an event, the alternatives are listed together and the first one present is used.
RECORD_EVENTS: list[tuple[str, tuple[str, ...]]] = [
    ("kmem", ("mm_page_alloc",)),
    ("kmem", ("mm_page_free", "mm_page_free_direct")),
    ("kmem", ("mm_page_alloc_extfrag",)),
    ("compaction", ("mm_compaction_try_to_compact_pages",)),
    ("compaction", ("mm_compaction_begin",)),
    ("compaction", ("mm_compaction_end",)),
    ("compaction", ("mm_compaction_suitable",)),
    ("compaction", ("mm_compaction_deferred",)),
    ("compaction", ("mm_compaction_defer_compaction",)),
    ("compaction", ("mm_compaction_defer_reset",)),
    ("compaction", ("mm_compaction_migratepages",)),
    ("compaction", ("mm_compaction_kcompactd_wake",)),
    ("vmscan", ("mm_vmscan_direct_reclaim_begin",)),
    ("vmscan", ("mm_vmscan_direct_reclaim_end",)),
    ("vmscan", ("mm_vmscan_kswapd_wake",)),
    ("vmscan", ("mm_vmscan_kswapd_sleep",)),
    ("vmscan", ("mm_vmscan_write_folio", "mm_vmscan_writepage")),
    ("exceptions", ("page_fault_user",)),
]
