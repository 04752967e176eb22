"""gfp flag name tables (show_gfp_flags, x86-64, !LOCKDEP, !KASAN_HW_TAGS), one per verified kernel.

Source: include/trace/events/mmflags.h (show_gfp_flags) and include/linux/gfp.h (gfp_types.h from 6.0)
of 4.0, 4.19.1, 5.4, 6.1.20 and 6.13.7. Order matters to the kernel's greedy renderer; to
decode we only need name -> mask. Bit values changed over time (e.g. __GFP_THISNODE 0x40000 in 4.19,
0x200000 from 5.x), so a raw hex mask is decoded with the table of the matching kernel only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_T_4_0 = """GFP_TRANSHUGE 0x4352da GFP_HIGHUSER_MOVABLE 0x200da GFP_HIGHUSER 0x200d2 GFP_USER 0x200d0
GFP_TEMPORARY 0x800d0 GFP_KERNEL 0xd0 GFP_NOFS 0x50 GFP_ATOMIC 0x20 GFP_NOIO 0x10 GFP_HIGH 0x20
GFP_WAIT 0x10 GFP_IO 0x40 GFP_COLD 0x100 GFP_NOWARN 0x200 GFP_REPEAT 0x400 GFP_NOFAIL 0x800
GFP_NORETRY 0x1000 GFP_COMP 0x4000 GFP_ZERO 0x8000 GFP_NOMEMALLOC 0x10000 GFP_MEMALLOC 0x2000
GFP_HARDWALL 0x20000 GFP_THISNODE 0x40000 GFP_RECLAIMABLE 0x80000 GFP_MOVABLE 0x8 GFP_NOTRACK 0x200000
GFP_NO_KSWAPD 0x400000 GFP_OTHER_NODE 0x800000"""

_T_4_19 = """GFP_TRANSHUGE 0x2342ca GFP_TRANSHUGE_LIGHT 0x342ca GFP_HIGHUSER_MOVABLE 0x6200ca
GFP_HIGHUSER 0x6200c2 GFP_USER 0x6200c0 GFP_KERNEL_ACCOUNT 0x7000c0 GFP_KERNEL 0x6000c0 GFP_NOFS 0x600040
GFP_ATOMIC 0x480020 GFP_NOIO 0x600000 GFP_NOWAIT 0x400000 GFP_DMA 0x1 __GFP_HIGHMEM 0x2 GFP_DMA32 0x4
__GFP_HIGH 0x20 __GFP_ATOMIC 0x80000 __GFP_IO 0x40 __GFP_FS 0x80 __GFP_NOWARN 0x200
__GFP_RETRY_MAYFAIL 0x400 __GFP_NOFAIL 0x800 __GFP_NORETRY 0x1000 __GFP_COMP 0x4000 __GFP_ZERO 0x8000
__GFP_NOMEMALLOC 0x10000 __GFP_MEMALLOC 0x2000 __GFP_HARDWALL 0x20000 __GFP_THISNODE 0x40000
__GFP_RECLAIMABLE 0x10 __GFP_MOVABLE 0x8 __GFP_ACCOUNT 0x100000 __GFP_WRITE 0x100 __GFP_RECLAIM 0x600000
__GFP_DIRECT_RECLAIM 0x200000 __GFP_KSWAPD_RECLAIM 0x400000"""

_T_5_4 = """GFP_TRANSHUGE 0x1c24ca GFP_TRANSHUGE_LIGHT 0x1c20ca GFP_HIGHUSER_MOVABLE 0x100cca
GFP_HIGHUSER 0x100cc2 GFP_USER 0x100cc0 GFP_KERNEL_ACCOUNT 0x400cc0 GFP_KERNEL 0xcc0 GFP_NOFS 0xc40
GFP_ATOMIC 0xa20 GFP_NOIO 0xc00 GFP_NOWAIT 0x800 GFP_DMA 0x1 __GFP_HIGHMEM 0x2 GFP_DMA32 0x4
__GFP_HIGH 0x20 __GFP_ATOMIC 0x200 __GFP_IO 0x40 __GFP_FS 0x80 __GFP_NOWARN 0x2000
__GFP_RETRY_MAYFAIL 0x4000 __GFP_NOFAIL 0x8000 __GFP_NORETRY 0x10000 __GFP_COMP 0x40000 __GFP_ZERO 0x100
__GFP_NOMEMALLOC 0x80000 __GFP_MEMALLOC 0x20000 __GFP_HARDWALL 0x100000 __GFP_THISNODE 0x200000
__GFP_RECLAIMABLE 0x10 __GFP_MOVABLE 0x8 __GFP_ACCOUNT 0x400000 __GFP_WRITE 0x1000 __GFP_RECLAIM 0xc00
__GFP_DIRECT_RECLAIM 0x400 __GFP_KSWAPD_RECLAIM 0x800"""

_T_6_1 = _T_5_4 + " __GFP_ZEROTAGS 0x800000"

# 6.4 removed __GFP_ATOMIC (GFP_ATOMIC 0xa20 -> 0x820); 6.8 added __GFP_NOWARN to GFP_NOWAIT.
_T_6_13 = (
    _T_6_1.replace("GFP_ATOMIC 0xa20", "GFP_ATOMIC 0x820")
    .replace("GFP_NOWAIT 0x800", "GFP_NOWAIT 0x2800")
    .replace(" __GFP_ATOMIC 0x200", "")
)


def _parse(text: str) -> dict[str, int]:
    words = text.split()
    return {words[i]: int(words[i + 1], 16) for i in range(0, len(words), 2)}


@dataclass(frozen=True)
class GfpTable:
    name: str
    names: dict[str, int]
    # Single-bit flags the model uses, by the name this table prints them with.
    thisnode: str
    noretry: str
    direct_reclaim: str
    kswapd_reclaim: str  # in 4.0 the *absence* of GFP_NO_KSWAPD means kswapd is woken
    comp: str
    movable: str
    nomemalloc: str
    hardwall: str
    kswapd_inverted: bool = False

    def bit(self, flag: str) -> int:
        return self.names[getattr(self, flag)]


_MODERN = dict(
    thisnode="__GFP_THISNODE",
    noretry="__GFP_NORETRY",
    direct_reclaim="__GFP_DIRECT_RECLAIM",
    kswapd_reclaim="__GFP_KSWAPD_RECLAIM",
    comp="__GFP_COMP",
    movable="__GFP_MOVABLE",
    nomemalloc="__GFP_NOMEMALLOC",
    hardwall="__GFP_HARDWALL",
)

TABLES: dict[str, GfpTable] = {
    "4.0": GfpTable(
        "4.0",
        _parse(_T_4_0),
        thisnode="GFP_THISNODE",
        noretry="GFP_NORETRY",
        direct_reclaim="GFP_WAIT",
        kswapd_reclaim="GFP_NO_KSWAPD",
        comp="GFP_COMP",
        movable="GFP_MOVABLE",
        nomemalloc="GFP_NOMEMALLOC",
        hardwall="GFP_HARDWALL",
        kswapd_inverted=True,
    ),
    "4.19": GfpTable("4.19", _parse(_T_4_19), **_MODERN),
    "5.4": GfpTable("5.4", _parse(_T_5_4), **_MODERN),
    "6.1": GfpTable("6.1", _parse(_T_6_1), **_MODERN),
    "6.13": GfpTable("6.13", _parse(_T_6_13), **_MODERN),
}

# Which table decodes which kernel (the bit layouts of gfp.h by version). Versions between verified ones
# take the nearest table that shares its bit layout; those ranges are inferred, not read from a tree.
_VERSION_TABLE = [((4, 6), "4.0"), ((5, 0), "4.19"), ((6, 1), "5.4"), ((6, 4), "6.1"), ((99, 0), "6.13")]

FLAGS = ("thisnode", "noretry", "direct_reclaim", "kswapd_reclaim", "comp", "movable")


def parse_release(release: str) -> tuple[int, int] | None:
    m = re.match(r"\s*(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def table_for_release(release: str) -> str | None:
    version = parse_release(release)
    if version is None:
        return None
    for upper, name in _VERSION_TABLE:
        if version < upper:
            return name
    return "6.13"


def decode(printed: str, table: GfpTable) -> tuple[int | None, list[str]]:
    """Decode a printed gfp string ('GFP_TRANSHUGE|__GFP_THISNODE', '0x140cca', '3264') to a mask.

    Returns (mask, unknown_names); mask is None when any name is unknown to the table.
    """
    text = printed.strip()
    if text in ("", "none"):
        return 0, []
    mask = 0
    unknown = []
    for token in text.split("|"):
        token = token.strip()
        if token in table.names:
            mask |= table.names[token]
        elif re.fullmatch(r"0x[0-9a-fA-F]+", token):
            mask |= int(token, 16)
        elif token.isdigit():
            mask |= int(token)
        else:
            unknown.append(token)
    return (None if unknown else mask), unknown


def flag_values(mask: int | None, table: GfpTable) -> dict[str, bool | None]:
    if mask is None:
        return {f: None for f in FLAGS + ("nomemalloc", "hardwall")}
    out = {f: bool(mask & table.bit(f)) for f in FLAGS + ("nomemalloc", "hardwall")}
    if table.kswapd_inverted:
        out["kswapd_reclaim"] = not out["kswapd_reclaim"]
    return out


def best_table_for_names(printed: list[str], preferred: list[str]) -> str | None:
    """The first table (in preference order) that knows every symbolic name printed."""
    names = {t.strip() for p in printed for t in p.split("|")}
    names = {n for n in names if n and n != "none" and not n.startswith("0x") and not n.isdigit()}
    for candidate in preferred:
        if names <= TABLES[candidate].names.keys():
            return candidate
    return None
