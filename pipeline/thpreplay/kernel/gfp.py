"""gfp flag tables: what each kernel era prints for a gfp mask, and the bit each printed name stands for.

A table is made the way the kernel makes it, from two files of one era (docs/kernel-eras.md has the
whole list, with the source of every table):

* the names and their order: show_gfp_flags() in include/trace/events/kmem.h (2.6.32-2.6.35),
  include/trace/events/gfpflags.h (2.6.36-4.5), and __def_gfpflag_names in
  include/trace/events/mmflags.h (4.6 on). Composites come first, then single bits; a zero mask prints
  "GFP_NOWAIT" up to 4.5 and "none" from 4.6;
* the values: the ___GFP_* bits and the GFP_* combinations of include/linux/gfp.h (gfp_types.h from 6.0).

Values are for x86-64 with what distributions build: !CONFIG_KMEMCHECK (before 3.8 __GFP_NOTRACK is 0
then, and still printed), !CONFIG_LOCKDEP, !CONFIG_KASAN_HW_TAGS. The kernel renders greedily in table
order (trace_print_flags_seq: each entry whose bits are all still set is printed and its bits cleared,
leftover bits print as one 0x... number), so decoding walks the printed names in table order too. The
bit values moved several times (e.g. __GFP_THISNODE 0x40000 up to 5.0, 0x200000 from 5.1), so a mask
is decoded with the table of its own kernel only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Version = tuple[int, int]


def _bits(text: str) -> dict[str, int]:
    words = text.split()
    return {words[i]: int(words[i + 1], 16) for i in range(0, len(words), 2)}


# ---------------------------------------------------------------------------------------------------------
# ___GFP_* bits of include/linux/gfp.h, era by era. Bits no table prints (WRITE before 4.6, NOACCOUNT) are
# listed only where they are needed to compute a composite.
# ---------------------------------------------------------------------------------------------------------

# 2.6.32-3.7. 2.6.32-2.6.35 define __GFP_* directly, 2.6.36 adds the ___GFP_* layer with the same values.
# __GFP_NOTRACK is 0x200000 only with CONFIG_KMEMCHECK (#ifdef in gfp.h until Glauber Costa's "make
# __GFP_NOTRACK definition unconditional", merged with the kmem memcg series in 3.8), so 0 here.
# NO_KSWAPD 0x400000 came with THP in 2.6.38; OTHER_NODE 0x800000 in 2.6.39 (78afd5612deb; "2.6.38 doesn't
# have __GFP_OTHER_NODE", akpm on linux-mm, May 2011); MEMALLOC 0x2000 in 3.6 ("mm: introduce __GFP_MEMALLOC").
_B_2_6_32 = _bits("""DMA 0x01 HIGHMEM 0x02 DMA32 0x04 MOVABLE 0x08 WAIT 0x10 HIGH 0x20 IO 0x40 FS 0x80
COLD 0x100 NOWARN 0x200 REPEAT 0x400 NOFAIL 0x800 NORETRY 0x1000 MEMALLOC 0x2000 COMP 0x4000 ZERO 0x8000
NOMEMALLOC 0x10000 HARDWALL 0x20000 THISNODE 0x40000 RECLAIMABLE 0x80000 NOTRACK 0x0 NO_KSWAPD 0x400000
OTHER_NODE 0x800000""")
# 3.8-3.14: NOTRACK unconditional; KMEMCG 0x100000 (kmem memcg, 3.8; removed in 3.15 by "mm: get rid of
# __GFP_KMEMCG"). 3.15-4.3: the same without KMEMCG (4.1 puts the unprinted NOACCOUNT at 0x100000).
_B_3_8 = {**_B_2_6_32, "NOTRACK": 0x200000, "KMEMCG": 0x100000}
_B_3_15 = {k: v for k, v in _B_3_8.items() if k != "KMEMCG"}
# 4.4 (d0164adc89f6 "mm, page_alloc: distinguish between being unable to sleep, unwilling to sleep and
# avoiding waking kswapd", after 016c13daa5c9 moved RECLAIMABLE to 0x10): __GFP_WAIT and __GFP_NO_KSWAPD
# are gone. 0x100000 is NOACCOUNT in 4.4 and ACCOUNT from 4.5; neither is printed before 4.6.
_B_4_4 = _bits("""DMA 0x01 HIGHMEM 0x02 DMA32 0x04 MOVABLE 0x08 RECLAIMABLE 0x10 HIGH 0x20 IO 0x40 FS 0x80
COLD 0x100 NOWARN 0x200 REPEAT 0x400 NOFAIL 0x800 NORETRY 0x1000 MEMALLOC 0x2000 COMP 0x4000 ZERO 0x8000
NOMEMALLOC 0x10000 HARDWALL 0x20000 THISNODE 0x40000 ATOMIC 0x80000 ACCOUNT 0x100000 NOTRACK 0x200000
DIRECT_RECLAIM 0x400000 OTHER_NODE 0x800000 WRITE 0x1000000 KSWAPD_RECLAIM 0x2000000""")
# 4.10: 41b6167e8f74 "mm: get rid of __GFP_OTHER_NODE" moves WRITE and KSWAPD_RECLAIM down (4.10.1's gfp.h).
# 4.13 renames REPEAT to RETRY_MAYFAIL, same bit (dcda9b04713c). 4.12 adds NOLOCKDEP, 0 without LOCKDEP.
_B_4_10 = {**{k: v for k, v in _B_4_4.items() if k != "OTHER_NODE"}, "WRITE": 0x800000, "KSWAPD_RECLAIM": 0x1000000,
           "RETRY_MAYFAIL": 0x400}
# 4.15: __GFP_COLD (453f85d43fa9) and, with kmemcheck, __GFP_NOTRACK are gone; their bits stay empty.
_B_4_15 = {k: v for k, v in _B_4_10.items() if k not in ("COLD", "NOTRACK", "REPEAT")}
# 4.18: Shakeel Butt's "mm: save two stranding bit in gfp_mask" fills the holes.
_B_4_18 = {**_B_4_15, "WRITE": 0x100, "DIRECT_RECLAIM": 0x200000, "KSWAPD_RECLAIM": 0x400000}
# 5.1: Alexey Dobriyan's "mm: shuffle GFP_* flags" (posted 9 Jan 2019, after 5.0-rc1).
_B_5_1 = _bits("""DMA 0x01 HIGHMEM 0x02 DMA32 0x04 MOVABLE 0x08 RECLAIMABLE 0x10 HIGH 0x20 IO 0x40 FS 0x80
ZERO 0x100 ATOMIC 0x200 DIRECT_RECLAIM 0x400 KSWAPD_RECLAIM 0x800 WRITE 0x1000 NOWARN 0x2000
RETRY_MAYFAIL 0x4000 NOFAIL 0x8000 NORETRY 0x10000 MEMALLOC 0x20000 COMP 0x40000 NOMEMALLOC 0x80000
HARDWALL 0x100000 THISNODE 0x200000 ACCOUNT 0x400000""")
_B_6_1 = {**_B_5_1, "ZEROTAGS": 0x800000}
# __GFP_ATOMIC discarded (Mel Gorman's series, posted Nov 2022-Jan 2023); 6.10 turns the bits into an enum
# (772dd0342727c), same values for these flags.
_B_6_4 = {k: v for k, v in _B_6_1.items() if k != "ATOMIC"}


def _composites_wait(b: dict[str, int]) -> dict[str, int]:
    """GFP_* of gfp.h, 2.6.32-4.3 (__GFP_WAIT era)."""
    user = b["WAIT"] | b["IO"] | b["FS"] | b["HARDWALL"]
    hum = user | b["HIGHMEM"] | b["MOVABLE"]
    return {
        "GFP_ATOMIC": b["HIGH"], "GFP_NOIO": b["WAIT"], "GFP_NOFS": b["WAIT"] | b["IO"],
        "GFP_KERNEL": b["WAIT"] | b["IO"] | b["FS"],
        "GFP_TEMPORARY": b["WAIT"] | b["IO"] | b["FS"] | b["RECLAIMABLE"],
        "GFP_USER": user, "GFP_HIGHUSER": user | b["HIGHMEM"], "GFP_HIGHUSER_MOVABLE": hum,
        # 2.6.38 (THP): GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_NOMEMALLOC|__GFP_NORETRY|__GFP_NOWARN|__GFP_NO_KSWAPD
        "GFP_TRANSHUGE": hum | b["COMP"] | b["NOMEMALLOC"] | b["NORETRY"] | b["NOWARN"] | b["NO_KSWAPD"],
    }


def _composites_reclaim(b: dict[str, int], transhuge: str, nowait_nowarn: bool = False) -> dict[str, int]:
    """GFP_* of gfp.h from 4.4 (__GFP_DIRECT_RECLAIM/__GFP_KSWAPD_RECLAIM). transhuge: how GFP_TRANSHUGE is
    made, "4.4" (& ~__GFP_KSWAPD_RECLAIM), "4.6" (& ~__GFP_RECLAIM, 444eb2a449ef) or "4.8" (GFP_TRANSHUGE_LIGHT
    | __GFP_DIRECT_RECLAIM, 2516035499b9)."""
    reclaim = b["DIRECT_RECLAIM"] | b["KSWAPD_RECLAIM"]
    user = reclaim | b["IO"] | b["FS"] | b["HARDWALL"]
    hum = user | b["HIGHMEM"] | b["MOVABLE"]
    c = {
        "__GFP_RECLAIM": reclaim,
        "GFP_ATOMIC": b["HIGH"] | b.get("ATOMIC", 0) | b["KSWAPD_RECLAIM"],
        "GFP_KERNEL": reclaim | b["IO"] | b["FS"], "GFP_KERNEL_ACCOUNT": reclaim | b["IO"] | b["FS"] | b["ACCOUNT"],
        "GFP_NOWAIT": b["KSWAPD_RECLAIM"] | (b["NOWARN"] if nowait_nowarn else 0),
        "GFP_NOIO": reclaim, "GFP_NOFS": reclaim | b["IO"],
        "GFP_TEMPORARY": reclaim | b["IO"] | b["FS"] | b["RECLAIMABLE"],
        "GFP_USER": user, "GFP_DMA": b["DMA"], "GFP_DMA32": b["DMA32"],
        "GFP_HIGHUSER": user | b["HIGHMEM"], "GFP_HIGHUSER_MOVABLE": hum,
    }
    if transhuge == "4.4":
        c["GFP_TRANSHUGE"] = (hum | b["COMP"] | b["NOMEMALLOC"] | b["NORETRY"] | b["NOWARN"]) & ~b["KSWAPD_RECLAIM"]
    elif transhuge == "4.6":
        c["GFP_TRANSHUGE"] = (hum | b["COMP"] | b["NOMEMALLOC"] | b["NORETRY"] | b["NOWARN"]) & ~reclaim
    else:
        c["GFP_TRANSHUGE_LIGHT"] = (hum | b["COMP"] | b["NOMEMALLOC"] | b["NOWARN"]) & ~reclaim
        c["GFP_TRANSHUGE"] = c["GFP_TRANSHUGE_LIGHT"] | b["DIRECT_RECLAIM"]
    return c


# ---------------------------------------------------------------------------------------------------------
# The printed tables, in the kernel's order. A word is a printed name: "GFP_X" a composite of gfp.h,
# "__GFP_X" a bit (or __GFP_RECLAIM), "NAME=X" the name the table prints for the single bit ___GFP_X.
# ---------------------------------------------------------------------------------------------------------

def _drop(printed: str, *names: str) -> str:
    return " ".join(w for w in printed.split() if w not in names)


# show_gfp_flags of 2.6.32 (include/trace/events/kmem.h; gfpflags.h from 2.6.36, blob e3615c0 unchanged to
# 2.6.38), with what later kernels appended: GFP_TRANSHUGE first and GFP_NOTRACK, GFP_NO_KSWAPD,
# GFP_OTHER_NODE last (Mel Gorman, "mm: tracing: Add missing GFP flags to tracing", linux-mm 17 May 2011,
# <20110517094111.GJ5279@suse.de>, in 2.6.39 or 3.0), GFP_MEMALLOC after GFP_NOMEMALLOC (by 3.7, blob
# d6fd8e5). An older kernel prints the subset it has, in the same order, and leftover bits in hex.
_P_OLD = """GFP_TRANSHUGE GFP_HIGHUSER_MOVABLE GFP_HIGHUSER GFP_USER GFP_TEMPORARY GFP_KERNEL GFP_NOFS GFP_ATOMIC
GFP_NOIO GFP_HIGH=HIGH GFP_WAIT=WAIT GFP_IO=IO GFP_COLD=COLD GFP_NOWARN=NOWARN GFP_REPEAT=REPEAT
GFP_NOFAIL=NOFAIL GFP_NORETRY=NORETRY GFP_COMP=COMP GFP_ZERO=ZERO GFP_NOMEMALLOC=NOMEMALLOC
GFP_MEMALLOC=MEMALLOC GFP_HARDWALL=HARDWALL GFP_THISNODE=THISNODE GFP_RECLAIMABLE=RECLAIMABLE
GFP_MOVABLE=MOVABLE GFP_NOTRACK=NOTRACK GFP_NO_KSWAPD=NO_KSWAPD GFP_OTHER_NODE=OTHER_NODE"""
# 3.8-3.14 (blob 1eddbf1557f2): GFP_KMEMCG after GFP_RECLAIMABLE.
_P_3_8 = _P_OLD.replace("GFP_RECLAIMABLE=RECLAIMABLE", "GFP_RECLAIMABLE=RECLAIMABLE GFP_KMEMCG=KMEMCG")
# 4.4-4.5 (blob dde6bf092c8a, d0164adc89f6): __GFP_ATOMIC printed as a second "GFP_ATOMIC" where GFP_WAIT
# was; GFP_DIRECT_RECLAIM and GFP_KSWAPD_RECLAIM where GFP_NO_KSWAPD was.
_P_4_4 = (_P_OLD.replace("GFP_WAIT=WAIT", "GFP_ATOMIC=ATOMIC")
          .replace("GFP_NO_KSWAPD=NO_KSWAPD", "GFP_DIRECT_RECLAIM=DIRECT_RECLAIM GFP_KSWAPD_RECLAIM=KSWAPD_RECLAIM"))
# 4.6: mmflags.h (1f7866b4aebd "mm, tracing: make show_gfp_flags() up to date" and 420adbe9fc1a, blob
# 43cedbf0c759): single bits printed as __GFP_*, composites added.
_P_4_6 = """GFP_TRANSHUGE GFP_HIGHUSER_MOVABLE GFP_HIGHUSER GFP_USER GFP_TEMPORARY GFP_KERNEL_ACCOUNT GFP_KERNEL
GFP_NOFS GFP_ATOMIC GFP_NOIO GFP_NOWAIT GFP_DMA __GFP_HIGHMEM GFP_DMA32 __GFP_HIGH __GFP_ATOMIC __GFP_IO
__GFP_FS __GFP_COLD __GFP_NOWARN __GFP_REPEAT __GFP_NOFAIL __GFP_NORETRY __GFP_COMP __GFP_ZERO
__GFP_NOMEMALLOC __GFP_MEMALLOC __GFP_HARDWALL __GFP_THISNODE __GFP_RECLAIMABLE __GFP_MOVABLE __GFP_ACCOUNT
__GFP_NOTRACK __GFP_WRITE __GFP_RECLAIM __GFP_DIRECT_RECLAIM __GFP_KSWAPD_RECLAIM __GFP_OTHER_NODE"""
# 4.8 (2516035499b9, blob 5a81ab48a2fb): GFP_TRANSHUGE_LIGHT second.
_P_4_8 = _P_4_6.replace("GFP_TRANSHUGE ", "GFP_TRANSHUGE GFP_TRANSHUGE_LIGHT ", 1)
# 4.10-4.14: 41b6167e8f74 drops __GFP_OTHER_NODE (blob 556a0efa8298); 4.13 prints __GFP_RETRY_MAYFAIL where
# __GFP_REPEAT was (dcda9b04713c); 4.14 drops GFP_TEMPORARY (0ee931c4e31a). One table: the names differ,
# the values do not.
_P_4_10 = _drop(_P_4_8, "__GFP_OTHER_NODE").replace("__GFP_REPEAT", "__GFP_REPEAT __GFP_RETRY_MAYFAIL")
# 4.15 on (4.19.1, 5.4 verified): no GFP_TEMPORARY, __GFP_COLD, __GFP_NOTRACK.
_P_4_15 = _drop(_P_4_10, "GFP_TEMPORARY", "__GFP_COLD", "__GFP_NOTRACK", "__GFP_REPEAT")
_P_6_1 = _P_4_15 + " __GFP_ZEROTAGS"
_P_6_4 = _drop(_P_6_1, "__GFP_ATOMIC")


def _entries(printed: str, bits: dict[str, int], comp: dict[str, int]) -> tuple[tuple[str, str, int], ...]:
    """(printed name, symbol of gfp.h it stands for, value) for each word of a printed table."""
    out = []
    for word in printed.split():
        name, _, bit = word.partition("=")
        if bit:
            symbol, value = f"__GFP_{bit}", bits[bit]
        elif name in comp:
            symbol, value = name, comp[name]
        elif name.startswith("__GFP_"):
            symbol, value = name, bits[name[len("__GFP_"):]]
        else:
            raise KeyError(f"gfp table: no value for {name}")
        out.append((name, symbol, value))
    return tuple(out)


@dataclass(frozen=True)
class GfpTable:
    name: str
    first: Version  # first and last kernel (major, minor) this table decodes
    last: Version
    # (printed name, mask) in show_gfp_flags order; a name may appear twice (4.4: GFP_ATOMIC)
    entries: tuple[tuple[str, int], ...]
    symbols: tuple[str, ...]  # what each entry stands for in gfp.h: "GFP_KERNEL", "__GFP_WAIT", ...
    zero: str  # what a zero mask prints
    # The single bits the model reads, by flag (FLAGS + nomemalloc, hardwall)
    flag_bits: dict[str, int]
    source: str
    # up to 4.3 the kernel wakes kswapd unless __GFP_NO_KSWAPD (2.6.38-4.3) is set
    kswapd_inverted: bool = False
    names: dict[str, int] = field(init=False, repr=False, compare=False)  # first entry of each name
    duplicates: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)  # name -> indices

    def __post_init__(self) -> None:
        names: dict[str, int] = {}
        where: dict[str, list[int]] = {}
        for i, (n, v) in enumerate(self.entries):
            names.setdefault(n, v)
            where.setdefault(n, []).append(i)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "duplicates", {n: tuple(ix) for n, ix in where.items() if len(ix) > 1})

    def bit(self, flag: str) -> int:
        return self.flag_bits[flag]

    def kernels(self) -> str:
        a = "2.6.32" if self.first == (2, 6) else ".".join(map(str, self.first))  # 2.6.x: all one table
        b = ".".join(map(str, self.last))
        return f"{a}+" if self.last == (99, 0) else a if a == b else f"{a}-{b}"

    def knows(self, name: str) -> bool:
        return name in self.names or name == self.zero or name == "none"


def _flags_wait(b: dict[str, int]) -> dict[str, int]:
    return dict(thisnode=b["THISNODE"], noretry=b["NORETRY"], direct_reclaim=b["WAIT"],
                kswapd_reclaim=b["NO_KSWAPD"], comp=b["COMP"], movable=b["MOVABLE"],
                nomemalloc=b["NOMEMALLOC"], hardwall=b["HARDWALL"])


def _flags_reclaim(b: dict[str, int]) -> dict[str, int]:
    return dict(thisnode=b["THISNODE"], noretry=b["NORETRY"], direct_reclaim=b["DIRECT_RECLAIM"],
                kswapd_reclaim=b["KSWAPD_RECLAIM"], comp=b["COMP"], movable=b["MOVABLE"],
                nomemalloc=b["NOMEMALLOC"], hardwall=b["HARDWALL"])


def _table(name, first, last, rows, zero, flag_bits, source, **kw) -> GfpTable:
    return GfpTable(name, first, last, tuple((n, v) for n, _, v in rows), tuple(s for _, s, _ in rows), zero,
                    flag_bits, source, **kw)


def _old(name, first, last, bits, printed, source) -> GfpTable:
    return _table(name, first, last, _entries(printed, bits, _composites_wait(bits)), "GFP_NOWAIT",
                  _flags_wait(bits), source, kswapd_inverted=True)


def _new(name, first, last, bits, printed, source, transhuge="4.8", nowait_nowarn=False, zero="none") -> GfpTable:
    comp = _composites_reclaim(bits, transhuge, nowait_nowarn)
    return _table(name, first, last, _entries(printed, bits, comp), zero, _flags_reclaim(bits), source)


_TABLE_LIST = [
    _old("2.6.32", (2, 6), (3, 7), _B_2_6_32, _P_OLD,
         "2.6.32 include/trace/events/kmem.h show_gfp_flags (gfpflags.h from 2.6.36) with the names 2.6.39/3.0 "
         "and 3.7 added; include/linux/gfp.h 2.6.32-3.7, !KMEMCHECK"),
    _old("3.8", (3, 8), (3, 14), _B_3_8, _P_3_8,
         "include/trace/events/gfpflags.h 3.8-3.14 (GFP_KMEMCG); include/linux/gfp.h 3.8 (__GFP_KMEMCG, "
         "__GFP_NOTRACK unconditional)"),
    _old("4.0", (3, 15), (4, 3), _B_3_15, _P_OLD,
         "include/trace/events/gfpflags.h and include/linux/gfp.h of 4.0 and 4.1.5 (verified trees); "
         "gfpflags.h unchanged from 3.15 (\"mm: get rid of __GFP_KMEMCG\") to 4.3"),
    _new("4.4", (4, 4), (4, 5), _B_4_4, _P_4_4,
         "include/trace/events/gfpflags.h and include/linux/gfp.h after d0164adc89f6 (4.4), as in 4.5",
         transhuge="4.4", zero="GFP_NOWAIT"),
    _new("4.6", (4, 6), (4, 7), _B_4_4, _P_4_6,
         "include/trace/events/mmflags.h (420adbe9fc1a) and include/linux/gfp.h of 4.6.2", transhuge="4.6"),
    _new("4.8", (4, 8), (4, 9), _B_4_4, _P_4_8,
         "include/trace/events/mmflags.h and include/linux/gfp.h of 4.8 (2516035499b9), as in 4.9.57"),
    _new("4.10", (4, 10), (4, 14), _B_4_10, _P_4_10,
         "include/trace/events/mmflags.h and include/linux/gfp.h of 4.10.1 (41b6167e8f74); 4.13 "
         "__GFP_RETRY_MAYFAIL, 4.14 no GFP_TEMPORARY"),
    _new("4.15", (4, 15), (4, 17), _B_4_15, _P_4_15,
         "include/trace/events/mmflags.h and include/linux/gfp.h of 4.15 (__GFP_COLD and __GFP_NOTRACK "
         "removed, their bits left empty)"),
    _new("4.19", (4, 18), (5, 0), _B_4_18, _P_4_15,
         "include/trace/events/mmflags.h and include/linux/gfp.h of 4.19.1 and 4.20.1 (verified trees)"),
    _new("5.4", (5, 1), (6, 0), _B_5_1, _P_4_15,
         "include/trace/events/mmflags.h and include/linux/gfp.h of 5.3.1, 5.4 and 5.8.1 (verified trees)"),
    _new("6.1", (6, 1), (6, 3), _B_6_1, _P_6_1,
         "include/trace/events/mmflags.h and include/linux/gfp_types.h of 6.1.20 (verified tree)"),
    _new("6.4", (6, 4), (6, 7), _B_6_4, _P_6_4,
         "6.13.7's table with GFP_NOWAIT before \"gfp: Include __GFP_NOWARN in GFP_NOWAIT\" (posted 9 Nov 2023)"),
    _new("6.13", (6, 8), (99, 0), _B_6_4, _P_6_4,
         "include/trace/events/mmflags.h and include/linux/gfp_types.h of 6.8.0 and 6.13.7 (verified trees)",
         nowait_nowarn=True),
]
TABLES: dict[str, GfpTable] = {t.name: t for t in _TABLE_LIST}
NEWEST = _TABLE_LIST[-1].name

FLAGS = ("thisnode", "noretry", "direct_reclaim", "kswapd_reclaim", "comp", "movable")


def parse_release(release: str) -> tuple[int, int] | None:
    m = re.match(r"\s*(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def form_since(release: str | None, forms: tuple[tuple[tuple[int, int], int], ...], oldest: int) -> int:
    """The form a kernel mechanism has in `release`: `forms` is ((since, form), ...), newest first; a
    release before all of them has `oldest`, an unknown one is taken as new (the first form)."""
    version = parse_release(release) if release else None
    if version is None:
        return forms[0][1]
    return next((form for since, form in forms if version >= since), oldest)


def table_for_version(version: Version) -> str:
    """The table of a kernel (major, minor): the era that contains it, else the nearest one."""
    for t in _TABLE_LIST:
        if version <= t.last:
            return t.name
    return NEWEST


def table_for_release(release: str) -> str | None:
    version = parse_release(release)
    return None if version is None else table_for_version(version)


def decode(printed: str, table: GfpTable) -> tuple[int | None, list[str]]:
    """Decode a printed gfp string ('GFP_TRANSHUGE|__GFP_THISNODE', '0x140cca', '3264') to a mask.

    Names are looked up in table order, as the kernel printed them. A name the table holds twice (4.4's
    GFP_ATOMIC: the composite, then __GFP_ATOMIC alone) takes the entry whose mask the kernel would
    print this way (render), else the one after the previous name.
    Returns (mask, unknown_names); mask is None when any name is unknown to the table.
    """
    text = printed.strip()
    if text in ("", "none", table.zero):
        return 0, []
    tokens = [t.strip() for t in text.split("|")]
    unknown = [t for t in tokens if t not in table.names and not _is_number(t)]
    if unknown:
        return None, unknown
    first = _decode_in_order(tokens, table, {})
    if not table.duplicates or not any(t in table.duplicates for t in tokens):
        return first, []
    # Another reading of a repeated name, if that is the one the kernel prints as `text`.
    for i, t in enumerate(tokens):
        for alt in table.duplicates.get(t, ()):
            mask = _decode_in_order(tokens, table, {i: alt})
            if mask != first and render(mask, table) == text and render(first, table) != text:
                return mask, []
    return first, []


def _is_number(token: str) -> bool:
    return bool(re.fullmatch(r"0x[0-9a-fA-F]+", token)) or token.isdigit()


def _decode_in_order(tokens: list[str], table: GfpTable, forced: dict[int, int]) -> int:
    mask, pos, entries = 0, 0, table.entries
    for i, token in enumerate(tokens):
        if _is_number(token):
            mask |= int(token, 16) if token.startswith("0x") else int(token)
            continue
        hit = forced.get(i)
        if hit is None:
            hit = next((j for j in range(pos, len(entries)) if entries[j][0] == token), None)
        if hit is None:
            hit = next(j for j, e in enumerate(entries) if e[0] == token)
        mask |= entries[hit][1]
        pos = hit + 1
    return mask


def render(mask: int, table: GfpTable) -> str:
    """What the kernel prints for mask with this table (trace_print_flags_seq); for tests and docs."""
    if mask == 0:
        return table.zero
    out = []
    left = mask
    for name, value in table.entries:
        if not left:
            break
        if left & value == value:
            out.append(name)
            left &= ~value
    if left:
        out.append(f"0x{left:x}")
    return "|".join(out)


def flag_values(mask: int | None, table: GfpTable) -> dict[str, bool | None]:
    if mask is None:
        return {f: None for f in FLAGS + ("nomemalloc", "hardwall")}
    out = {f: bool(mask & table.bit(f)) for f in FLAGS + ("nomemalloc", "hardwall")}
    if table.kswapd_inverted:
        out["kswapd_reclaim"] = not out["kswapd_reclaim"]
    return out


def _symbolic(printed: list[str]) -> set[str]:
    names = {t.strip() for p in printed for t in p.split("|")}
    return {n for n in names if n and n != "none" and not n.startswith("0x") and not n.isdigit()}


def best_table_for_names(printed: list[str], preferred: list[str]) -> str | None:
    """The first table (in preference order) that knows every symbolic name printed."""
    names = _symbolic(printed)
    for candidate in preferred:
        if all(TABLES[candidate].knows(n) for n in names):
            return candidate
    return None


# Event names that date a trace: the kernel renamed them (include/trace/events/kmem.h). mm_page_free_direct
# and mm_pagevec_free became mm_page_free and mm_page_free_batched in 3.3 (Konstantin Khlebnikov,
# "mm-tracepoint: rename page-free events", linux-mm 11 Nov 2011).
EVENT_ERAS: dict[str, tuple[Version, Version]] = {
    "mm_page_free_direct": ((2, 6), (3, 2)),
    "mm_pagevec_free": ((2, 6), (3, 2)),
    "mm_page_free": ((3, 3), (99, 0)),
    "mm_page_free_batched": ((3, 3), (99, 0)),
}


@dataclass(frozen=True)
class Choice:
    table: str
    basis: str  # short, for the ingest summary: "kernel release 6.1.0", "from event names and gfp names"
    reason: str  # the whole story, for metadata
    warn: bool = False  # masks are decoded on an assumption: say so


def choose(printed: list[str], events: set[str], older_layout: bool = False) -> Choice:
    """The table for a trace of unknown kernel: from the event names that date it (EVENT_ERAS) and the
    gfp names it prints (a table must know every one). Among the tables left, the newest, or with an
    older_layout hint (ftrace's 4-character latency field, before 6.1) the newest before 6.1.
    """
    lo, hi = (0, 0), (99, 0)
    dated = sorted(e for e in events if e in EVENT_ERAS)
    for e in dated:
        a, b = EVENT_ERAS[e]
        lo, hi = max(lo, a), min(hi, b)
    if lo > hi:  # events of two eras: trust neither
        dated, lo, hi = [], (0, 0), (99, 0)
    names = _symbolic(printed)
    raw = any(t.strip().startswith("0x") or t.strip().isdigit() for p in printed for t in p.split("|"))
    order = list(reversed(_TABLE_LIST))
    if older_layout:
        order = [t for t in order if t.last < (6, 1)] + [t for t in order if t.last >= (6, 1)]
    fits = [t for t in order if t.first <= hi and t.last >= lo]
    known = [t for t in fits if all(t.knows(n) for n in names)]
    by_events = f"event names ({', '.join(dated)})" if dated else ""
    if names and known:
        pick = known[0]
        mine = {p: decode(p, pick)[0] for p in printed}
        differ = [t.name for t in known[1:] if any(decode(p, t)[0] != m for p, m in mine.items())]
        basis = "from event and gfp names" if dated else "from gfp names"
        why = (f"inferred from the printed gfp names{' and the ' + by_events if dated else ''}: the newest table "
               f"that knows every name is {pick.name} (kernels {pick.kernels()})"
               + (f"; tables {', '.join(differ)} know them too with other bit values (pass --kernel-release)"
                  if differ else ""))
        return Choice(pick.name, basis, why)
    if names:
        pick = fits[0] if fits else order[0]
        era = f" of the era of the {by_events}" if dated else ""
        return Choice(pick.name, "assumed: no table knows every gfp name",
                      f"no gfp table{era} knows every printed gfp name: table {pick.name} (kernels {pick.kernels()}) "
                      f"assumed, the names it does not know are not decoded", warn=True)
    if dated:
        pick = fits[0]
        what = "raw hex gfp masks decoded with it" if raw else "no gfp names printed"
        return Choice(pick.name, "from event names", f"inferred from the {by_events}: newest table of that era, "
                      f"{pick.name} (kernels {pick.kernels()}); {what}", warn=raw)
    pick = order[0]
    if raw:
        return Choice(pick.name, "assumed: raw hex masks, no kernel release",
                      f"gfp masks printed as raw hex and no kernel release: decoded with table {pick.name} "
                      f"(kernels {pick.kernels()}), assumed; pass --kernel-release for another kernel", warn=True)
    return Choice(pick.name, "assumed: no gfp names", f"no gfp names and no kernel release: table {pick.name} assumed")
