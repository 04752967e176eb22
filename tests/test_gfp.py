"""The gfp tables (kernel/gfp.py) against the kernel sources they come from, era by era.

Each table is built in gfp.py from the era's ___GFP_* bits, GFP_* formulas and printed list. The
expectations here are independent transcriptions: the ___GFP_* lines of each era's include/linux/gfp.h
(GFP_H below), the hex of the tables verified against whole trees before this file existed (reference
tables, kernel-thp-history.md section 8.2), and masks the kernel itself printed next to their names in
mails (printk's %pGg "0x27000c0(GFP_KERNEL|GFP_NOTRACK|0x100000)", perf kmem's header).
"""

import pytest

from thpreplay.kernel import gfp

# ___GFP_* of include/linux/gfp.h (x86-64, !KMEMCHECK, !LOCKDEP, !KASAN_HW_TAGS), era by era, as the sources
# print them. Sources: 2.6.32-3.7: the gfp.h of 3.0.8 (___GFP_NOTRACK 0 without KMEMCHECK) plus ___GFP_MEMALLOC
# 0x2000 (3.6) and ___GFP_NO_KSWAPD (2.6.38); 3.8-3.14: gfp.h with ___GFP_KMEMCG (Glauber Costa's series);
# 4.4: d0164adc89f6's gfp.h hunk and the 4.6.2 tree (0x100000 NOACCOUNT in 4.4, ACCOUNT from 4.5);
# 4.10: the 4.10.1 tree; 4.15: the base of Shakeel Butt's "mm: save two stranding bit in gfp_mask";
# 4.18: its result; 5.1: Alexey Dobriyan's "mm: shuffle GFP_* flags"; 6.1: gfp_types.h of 6.0/6.1.
GFP_H = {
    "2.6.32": """DMA 0x01 HIGHMEM 0x02 DMA32 0x04 MOVABLE 0x08 WAIT 0x10 HIGH 0x20 IO 0x40 FS 0x80 COLD 0x100
        NOWARN 0x200 REPEAT 0x400 NOFAIL 0x800 NORETRY 0x1000 MEMALLOC 0x2000 COMP 0x4000 ZERO 0x8000
        NOMEMALLOC 0x10000 HARDWALL 0x20000 THISNODE 0x40000 RECLAIMABLE 0x80000 NOTRACK 0 NO_KSWAPD 0x400000
        OTHER_NODE 0x800000""",
    "3.8": """DMA 0x01 HIGHMEM 0x02 DMA32 0x04 MOVABLE 0x08 WAIT 0x10 HIGH 0x20 IO 0x40 FS 0x80 COLD 0x100
        NOWARN 0x200 REPEAT 0x400 NOFAIL 0x800 NORETRY 0x1000 MEMALLOC 0x2000 COMP 0x4000 ZERO 0x8000
        NOMEMALLOC 0x10000 HARDWALL 0x20000 THISNODE 0x40000 RECLAIMABLE 0x80000 KMEMCG 0x100000
        NOTRACK 0x200000 NO_KSWAPD 0x400000 OTHER_NODE 0x800000 WRITE 0x1000000""",
    "4.4": """DMA 0x01 HIGHMEM 0x02 DMA32 0x04 MOVABLE 0x08 RECLAIMABLE 0x10 HIGH 0x20 IO 0x40 FS 0x80 COLD 0x100
        NOWARN 0x200 REPEAT 0x400 NOFAIL 0x800 NORETRY 0x1000 MEMALLOC 0x2000 COMP 0x4000 ZERO 0x8000
        NOMEMALLOC 0x10000 HARDWALL 0x20000 THISNODE 0x40000 ATOMIC 0x80000 ACCOUNT 0x100000 NOTRACK 0x200000
        DIRECT_RECLAIM 0x400000 OTHER_NODE 0x800000 WRITE 0x1000000 KSWAPD_RECLAIM 0x2000000""",
    "4.10": """DMA 0x01 HIGHMEM 0x02 DMA32 0x04 MOVABLE 0x08 RECLAIMABLE 0x10 HIGH 0x20 IO 0x40 FS 0x80 COLD 0x100
        NOWARN 0x200 REPEAT 0x400 RETRY_MAYFAIL 0x400 NOFAIL 0x800 NORETRY 0x1000 MEMALLOC 0x2000 COMP 0x4000
        ZERO 0x8000 NOMEMALLOC 0x10000 HARDWALL 0x20000 THISNODE 0x40000 ATOMIC 0x80000 ACCOUNT 0x100000
        NOTRACK 0x200000 DIRECT_RECLAIM 0x400000 WRITE 0x800000 KSWAPD_RECLAIM 0x1000000""",
    "4.15": """DMA 0x01 HIGHMEM 0x02 DMA32 0x04 MOVABLE 0x08 RECLAIMABLE 0x10 HIGH 0x20 IO 0x40 FS 0x80
        NOWARN 0x200 RETRY_MAYFAIL 0x400 NOFAIL 0x800 NORETRY 0x1000 MEMALLOC 0x2000 COMP 0x4000 ZERO 0x8000
        NOMEMALLOC 0x10000 HARDWALL 0x20000 THISNODE 0x40000 ATOMIC 0x80000 ACCOUNT 0x100000
        DIRECT_RECLAIM 0x400000 WRITE 0x800000 KSWAPD_RECLAIM 0x1000000""",
    "4.19": """DMA 0x01 HIGHMEM 0x02 DMA32 0x04 MOVABLE 0x08 RECLAIMABLE 0x10 HIGH 0x20 IO 0x40 FS 0x80 WRITE 0x100
        NOWARN 0x200 RETRY_MAYFAIL 0x400 NOFAIL 0x800 NORETRY 0x1000 MEMALLOC 0x2000 COMP 0x4000 ZERO 0x8000
        NOMEMALLOC 0x10000 HARDWALL 0x20000 THISNODE 0x40000 ATOMIC 0x80000 ACCOUNT 0x100000
        DIRECT_RECLAIM 0x200000 KSWAPD_RECLAIM 0x400000""",
    "5.4": """DMA 0x01 HIGHMEM 0x02 DMA32 0x04 MOVABLE 0x08 RECLAIMABLE 0x10 HIGH 0x20 IO 0x40 FS 0x80 ZERO 0x100
        ATOMIC 0x200 DIRECT_RECLAIM 0x400 KSWAPD_RECLAIM 0x800 WRITE 0x1000 NOWARN 0x2000 RETRY_MAYFAIL 0x4000
        NOFAIL 0x8000 NORETRY 0x10000 MEMALLOC 0x20000 COMP 0x40000 NOMEMALLOC 0x80000 HARDWALL 0x100000
        THISNODE 0x200000 ACCOUNT 0x400000""",
}
GFP_H["4.0"] = GFP_H["2.6.32"].replace("NOTRACK 0 ", "NOTRACK 0x200000 ")
GFP_H["4.6"] = GFP_H["4.8"] = GFP_H["4.4"]
GFP_H["6.1"] = GFP_H["5.4"] + " ZEROTAGS 0x800000"
GFP_H["6.4"] = GFP_H["6.13"] = GFP_H["6.1"].replace("ATOMIC 0x200 ", "")


def _bits(text: str) -> dict[str, int]:
    w = text.split()
    return {w[i]: int(w[i + 1], 16) for i in range(0, len(w), 2)}


# The tables as verified against whole trees (4.0 and 4.1.5, 4.19.1 and 4.20.1, 5.3.1/5.4/5.8.1, 6.1.20,
# 6.8.0/6.13.7): name -> hex, kept verbatim from before the tables were built from gfp.h data.
VERIFIED = {
    "4.0": """GFP_TRANSHUGE 0x4352da GFP_HIGHUSER_MOVABLE 0x200da GFP_HIGHUSER 0x200d2 GFP_USER 0x200d0
        GFP_TEMPORARY 0x800d0 GFP_KERNEL 0xd0 GFP_NOFS 0x50 GFP_ATOMIC 0x20 GFP_NOIO 0x10 GFP_HIGH 0x20
        GFP_WAIT 0x10 GFP_IO 0x40 GFP_COLD 0x100 GFP_NOWARN 0x200 GFP_REPEAT 0x400 GFP_NOFAIL 0x800
        GFP_NORETRY 0x1000 GFP_COMP 0x4000 GFP_ZERO 0x8000 GFP_NOMEMALLOC 0x10000 GFP_MEMALLOC 0x2000
        GFP_HARDWALL 0x20000 GFP_THISNODE 0x40000 GFP_RECLAIMABLE 0x80000 GFP_MOVABLE 0x8 GFP_NOTRACK 0x200000
        GFP_NO_KSWAPD 0x400000 GFP_OTHER_NODE 0x800000""",
    "4.19": """GFP_TRANSHUGE 0x2342ca GFP_TRANSHUGE_LIGHT 0x342ca GFP_HIGHUSER_MOVABLE 0x6200ca
        GFP_HIGHUSER 0x6200c2 GFP_USER 0x6200c0 GFP_KERNEL_ACCOUNT 0x7000c0 GFP_KERNEL 0x6000c0 GFP_NOFS 0x600040
        GFP_ATOMIC 0x480020 GFP_NOIO 0x600000 GFP_NOWAIT 0x400000 GFP_DMA 0x1 __GFP_HIGHMEM 0x2 GFP_DMA32 0x4
        __GFP_HIGH 0x20 __GFP_ATOMIC 0x80000 __GFP_IO 0x40 __GFP_FS 0x80 __GFP_NOWARN 0x200
        __GFP_RETRY_MAYFAIL 0x400 __GFP_NOFAIL 0x800 __GFP_NORETRY 0x1000 __GFP_COMP 0x4000 __GFP_ZERO 0x8000
        __GFP_NOMEMALLOC 0x10000 __GFP_MEMALLOC 0x2000 __GFP_HARDWALL 0x20000 __GFP_THISNODE 0x40000
        __GFP_RECLAIMABLE 0x10 __GFP_MOVABLE 0x8 __GFP_ACCOUNT 0x100000 __GFP_WRITE 0x100 __GFP_RECLAIM 0x600000
        __GFP_DIRECT_RECLAIM 0x200000 __GFP_KSWAPD_RECLAIM 0x400000""",
    "5.4": """GFP_TRANSHUGE 0x1c24ca GFP_TRANSHUGE_LIGHT 0x1c20ca GFP_HIGHUSER_MOVABLE 0x100cca
        GFP_HIGHUSER 0x100cc2 GFP_USER 0x100cc0 GFP_KERNEL_ACCOUNT 0x400cc0 GFP_KERNEL 0xcc0 GFP_NOFS 0xc40
        GFP_ATOMIC 0xa20 GFP_NOIO 0xc00 GFP_NOWAIT 0x800 GFP_DMA 0x1 __GFP_HIGHMEM 0x2 GFP_DMA32 0x4
        __GFP_HIGH 0x20 __GFP_ATOMIC 0x200 __GFP_IO 0x40 __GFP_FS 0x80 __GFP_NOWARN 0x2000
        __GFP_RETRY_MAYFAIL 0x4000 __GFP_NOFAIL 0x8000 __GFP_NORETRY 0x10000 __GFP_COMP 0x40000 __GFP_ZERO 0x100
        __GFP_NOMEMALLOC 0x80000 __GFP_MEMALLOC 0x20000 __GFP_HARDWALL 0x100000 __GFP_THISNODE 0x200000
        __GFP_RECLAIMABLE 0x10 __GFP_MOVABLE 0x8 __GFP_ACCOUNT 0x400000 __GFP_WRITE 0x1000 __GFP_RECLAIM 0xc00
        __GFP_DIRECT_RECLAIM 0x400 __GFP_KSWAPD_RECLAIM 0x800""",
}
VERIFIED["6.1"] = VERIFIED["5.4"] + " __GFP_ZEROTAGS 0x800000"
VERIFIED["6.13"] = (VERIFIED["6.1"].replace("GFP_ATOMIC 0xa20", "GFP_ATOMIC 0x820")
                    .replace("GFP_NOWAIT 0x800", "GFP_NOWAIT 0x2800").replace(" __GFP_ATOMIC 0x200", ""))


@pytest.mark.parametrize("name", list(gfp.TABLES))
def test_every_single_bit_name_decodes_to_the_bit_of_its_gfp_h(name):
    t = gfp.TABLES[name]
    source = _bits(GFP_H[name])
    singles = [(n, s, v) for (n, v), s in zip(t.entries, t.symbols) if s.startswith("__GFP_") and s != "__GFP_RECLAIM"]
    assert singles, name
    for printed, symbol, value in singles:
        assert value == source[symbol[len("__GFP_"):]], (name, printed, symbol)
        if printed not in t.duplicates:
            assert gfp.decode(printed, t) == (value, []), (name, printed)


@pytest.mark.parametrize("name", list(VERIFIED))
def test_tables_equal_the_tables_verified_against_whole_trees(name):
    t = gfp.TABLES[name]
    assert [(n, v) for n, v in t.entries] == list(_bits(VERIFIED[name]).items())


@pytest.mark.parametrize("name", list(gfp.TABLES))
def test_render_then_decode_gives_the_mask_back(name):
    t = gfp.TABLES[name]
    masks = {v for _, v in t.entries} | {a | b for _, a in t.entries for _, b in t.entries[::3]}
    for m in sorted(masks):
        printed = gfp.render(m, t)
        back, unknown = gfp.decode(printed, t)
        assert unknown == [] and gfp.render(back, t) == printed, (name, hex(m), printed)
        if not any(n in t.duplicates for n in printed.split("|")):
            assert back == m, (name, hex(m), printed)
        else:  # 4.4: "GFP_ATOMIC" alone is the composite or __GFP_ATOMIC; the decode takes the composite
            assert back in (m, m | t.entries[t.duplicates["GFP_ATOMIC"][0]][1]), (name, hex(m), printed)


def test_old_tables_print_gfp_prefixed_single_bits_and_gfp_nowait_for_zero():
    for name in ("2.6.32", "3.8", "4.0", "4.4"):
        t = gfp.TABLES[name]
        assert t.zero == "GFP_NOWAIT" and gfp.decode("GFP_NOWAIT", t) == (0, [])
        assert not any(n.startswith("__GFP_") for n in t.names), name
    assert gfp.TABLES["4.6"].zero == "none" and gfp.TABLES["4.6"].names["GFP_NOWAIT"] == 0x2000000


def test_notrack_is_zero_before_3_8():
    # The kmem format file of a 2.6.39-3.7 kernel (Yocto Project profiling manual): ... {(unsigned long)((
    # gfp_t)0), "GFP_NOTRACK"}, {(unsigned long)(( gfp_t)0x400000u), "GFP_NO_KSWAPD"}, {(unsigned long)((
    # gfp_t)0x800000u), "GFP_OTHER_NODE"} ) : "GFP_NOWAIT"
    t = gfp.TABLES["2.6.32"]
    assert (t.names["GFP_NOTRACK"], t.names["GFP_NO_KSWAPD"], t.names["GFP_OTHER_NODE"]) == (0, 0x400000, 0x800000)
    # a zero entry is printed whenever bits are left when the renderer reaches it
    assert gfp.render(0xD0 | 0x800000, t) == "GFP_KERNEL|GFP_NOTRACK|GFP_OTHER_NODE"
    assert gfp.TABLES["3.8"].names["GFP_NOTRACK"] == 0x200000


@pytest.mark.parametrize("name, printed, mask", [
    # perf kmem stat --page header (Namhyung Kim, linux-kernel 26 Mar 2015, a 4.0-rc kernel): libtraceevent's
    # names for the raw masks
    ("4.0", "GFP_KERNEL|GFP_REPEAT|GFP_ZERO", 0x84D0),
    ("4.0", "GFP_HIGHUSER_MOVABLE|GFP_ZERO", 0x280DA),
    ("4.0", "GFP_KERNEL|GFP_REPEAT|GFP_ZERO|GFP_NOTRACK", 0x2084D0),
    # %pGg in OOM reports of 4.4-rc6/-rc8 next kernels (Tetsuo Handa, linux-mm Dec 2015 / Jan 2016)
    ("4.4", "GFP_KERNEL|GFP_NOTRACK|0x100000", 0x27000C0),
    ("4.4", "GFP_KERNEL|GFP_COMP|GFP_NOTRACK", 0x26040C0),
    # c5c990e8a1fe "mm, page_alloc: print symbolic gfp_flags on allocation failure" (4.6-rc1):
    # "mode:0x2080020(GFP_ATOMIC)"
    ("4.6", "GFP_ATOMIC", 0x2080020),
])
def test_masks_the_kernel_printed_next_to_their_names(name, printed, mask):
    t = gfp.TABLES[name]
    assert gfp.decode(printed, t) == (mask, [])
    assert gfp.render(mask, t) == printed


def test_thp_masks_per_era():
    # policy/builtin.py's gfp hex, transcribed from 4.6.2, 4.9.57, 4.11 trees: attempt = mask | __GFP_THISNODE
    assert gfp.decode("GFP_TRANSHUGE", gfp.TABLES["4.6"])[0] | 0x40000 == 0x752CA
    assert gfp.decode("GFP_TRANSHUGE", gfp.TABLES["4.8"])[0] | 0x40000 == 0x4742CA
    assert gfp.decode("GFP_TRANSHUGE_LIGHT|__GFP_KSWAPD_RECLAIM|__GFP_THISNODE", gfp.TABLES["4.10"])[0] == 0x10742CA
    assert gfp.decode("GFP_TRANSHUGE", gfp.TABLES["4.4"])[0] == 0x4352CA  # & ~__GFP_KSWAPD_RECLAIM (d0164adc89f6)
    assert gfp.decode("GFP_TRANSHUGE", gfp.TABLES["4.15"])[0] == 0x4342CA


def test_4_4_prints_gfp_atomic_twice():
    """dde6bf092c8a: {GFP_ATOMIC, "GFP_ATOMIC"} and later {__GFP_ATOMIC, "GFP_ATOMIC"}: the reading is the
    one the kernel renders that way."""
    t = gfp.TABLES["4.4"]
    assert gfp.decode("GFP_ATOMIC", t) == (0x2080020, [])
    assert gfp.decode("GFP_KERNEL|GFP_ATOMIC", t) == (0x24000C0 | 0x80000, [])
    assert gfp.render(0x24000C0 | 0x80000, t) == "GFP_KERNEL|GFP_ATOMIC"


def test_decode_names_with_matching_table():
    t = gfp.TABLES["6.13"]
    mask, unknown = gfp.decode("GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE", t)
    assert unknown == [] and mask == 0x3D24CA  # 5.8.1..6.13.7 madvised attempt 1
    flags = gfp.flag_values(mask, t)
    assert flags["thisnode"] and flags["noretry"] and flags["direct_reclaim"] and flags["comp"]


def test_bit_values_differ_between_eras():
    # gfp.h: __GFP_THISNODE is 0x40000 in 4.19 and 0x200000 from 5.1
    m419, _ = gfp.decode("GFP_TRANSHUGE|__GFP_THISNODE", gfp.TABLES["4.19"])
    m54, _ = gfp.decode("GFP_TRANSHUGE|__GFP_THISNODE", gfp.TABLES["5.4"])
    assert m419 == 0x2742CA and m54 == 0x3C24CA


def test_raw_hex_and_decimal_fallbacks():
    t = gfp.TABLES["6.13"]
    assert gfp.decode("0x140cca", t) == (0x140CCA, [])
    assert gfp.decode("3264", t) == (3264, [])  # [FAILED TO PARSE] prints gfp_t as decimal
    assert gfp.decode("none", t) == (0, [])


def test_unknown_name_gives_no_mask():
    mask, unknown = gfp.decode("__GFP_ATOMIC|GFP_KERNEL", gfp.TABLES["6.13"])  # removed in 6.3/6.4
    assert mask is None and unknown == ["__GFP_ATOMIC"]
    assert gfp.flag_values(None, gfp.TABLES["6.13"])["thisnode"] is None


def test_kswapd_is_inverted_up_to_4_3():
    for name in ("2.6.32", "3.8", "4.0"):
        t = gfp.TABLES[name]
        mask, _ = gfp.decode("GFP_TRANSHUGE", t)  # contains GFP_NO_KSWAPD
        assert mask == 0x4352DA
        assert gfp.flag_values(mask, t)["kswapd_reclaim"] is False
        assert gfp.flag_values(0xD0, t)["kswapd_reclaim"] is True
        assert gfp.flag_values(0xD0, t)["direct_reclaim"] is True  # __GFP_WAIT
    t = gfp.TABLES["4.4"]
    assert gfp.flag_values(gfp.decode("GFP_TRANSHUGE", t)[0], t)["kswapd_reclaim"] is False
    assert gfp.flag_values(gfp.decode("GFP_KERNEL", t)[0], t)["kswapd_reclaim"] is True


@pytest.mark.parametrize("release, table", [
    ("2.6.32", "2.6.32"), ("2.6.33.3", "2.6.32"), ("3.2.0-4-amd64", "2.6.32"), ("3.7.10", "2.6.32"),
    ("3.8.13", "3.8"), ("3.14.1", "3.8"), ("3.16.0-4-amd64", "4.0"), ("4.1.5", "4.0"), ("4.3", "4.0"),
    ("4.4.0-21-generic", "4.4"), ("4.5.7", "4.4"), ("4.6.2", "4.6"), ("4.7", "4.6"), ("4.9.57", "4.8"),
    ("4.10.1", "4.10"), ("4.14.96", "4.10"), ("4.15.0-20-generic", "4.15"), ("4.17.12", "4.15"),
    ("4.18.0-80.el8", "4.19"), ("4.19.72", "4.19"), ("5.0.4", "4.19"), ("5.1.15", "5.4"), ("5.3.1", "5.4"),
    ("5.10.0-20-amd64", "5.4"), ("6.1.0-50-amd64", "6.1"), ("6.5", "6.4"), ("6.8.0", "6.13"),
    ("6.18.44-fc", "6.13"), ("7.0", "6.13"),
])
def test_table_for_release(release, table):
    assert gfp.table_for_release(release) == table


def test_table_for_release_garbage():
    assert gfp.table_for_release("garbage") is None


def test_best_table_for_names_prefers_in_order():
    assert gfp.best_table_for_names(["GFP_KERNEL|__GFP_ATOMIC"], ["6.13", "6.1", "5.4"]) == "6.1"
    assert gfp.best_table_for_names(["GFP_TRANSHUGE|GFP_THISNODE"], ["6.13", "4.0"]) == "4.0"
    assert gfp.best_table_for_names(["NOT_A_FLAG"], ["6.13"]) is None


def test_choose_from_event_names():
    # mm_page_free_direct was renamed mm_page_free in 3.3: the trace is 2.6.32-3.2
    c = gfp.choose(["GFP_KERNEL"], {"mm_page_alloc", "mm_page_free_direct"})
    assert (c.table, c.basis, c.warn) == ("2.6.32", "from event and gfp names", False)
    assert "mm_page_free_direct" in c.reason
    c = gfp.choose([], {"mm_pagevec_free"})
    assert (c.table, c.basis) == ("2.6.32", "from event names")
    # mm_page_free: 3.3 on; the names decide among those
    assert gfp.choose(["GFP_KERNEL|GFP_REPEAT"], {"mm_page_free"}).table == "4.4"


def test_choose_from_gfp_names():
    assert gfp.choose(["GFP_USER|GFP_ZERO|GFP_NOTRACK"], set()).table == "4.4"  # GFP_ prefix: up to 4.5
    assert gfp.choose(["GFP_USER|GFP_KMEMCG"], set()).table == "3.8"
    assert gfp.choose(["GFP_HIGHUSER_MOVABLE|GFP_WAIT"], set()).table == "4.0"
    c = gfp.choose(["GFP_KERNEL|__GFP_NOWARN|__GFP_REPEAT|__GFP_NOTRACK"], set(), older_layout=True)
    assert c.table == "4.10" and "4.8, 4.6" in c.reason and "--kernel-release" in c.reason
    assert gfp.choose(["GFP_TRANSHUGE|__GFP_THISNODE"], set(), older_layout=True).table == "5.4"
    assert gfp.choose(["GFP_TRANSHUGE|__GFP_THISNODE"], set()).table == "6.13"


def test_choose_says_what_it_assumed():
    c = gfp.choose(["0x140cca"], {"mm_page_alloc"})
    assert c.warn and c.table == "6.13" and c.basis.startswith("assumed")
    assert "raw hex" in c.reason and "table 6.13" in c.reason and "--kernel-release" in c.reason
    c = gfp.choose(["0x4352da"], {"mm_page_free_direct"})
    assert c.warn and c.table == "2.6.32" and "raw hex" in c.reason
    c = gfp.choose(["NOT_A_FLAG|GFP_KERNEL"], set())
    assert c.warn and c.basis == "assumed: no table knows every gfp name"
    c = gfp.choose([], set())
    assert not c.warn and c.basis == "assumed: no gfp names"
