from thpreplay.kernel import gfp


def test_decode_names_with_matching_table():
    t = gfp.TABLES["6.13"]
    mask, unknown = gfp.decode("GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE", t)
    assert unknown == [] and mask == 0x3D24CA  # 5.8.1..6.13.7 madvised attempt 1
    flags = gfp.flag_values(mask, t)
    assert flags["thisnode"] and flags["noretry"] and flags["direct_reclaim"] and flags["comp"]


def test_bit_values_differ_between_eras():
    # gfp.h: __GFP_THISNODE is 0x40000 in 4.19 and 0x200000 from 5.x
    m419, _ = gfp.decode("GFP_TRANSHUGE|__GFP_THISNODE", gfp.TABLES["4.19"])
    m54, _ = gfp.decode("GFP_TRANSHUGE|__GFP_THISNODE", gfp.TABLES["5.4"])
    assert m419 == 0x2742CA and m54 == 0x3C24CA


def test_raw_hex_and_decimal_fallbacks():
    t = gfp.TABLES["6.13"]
    assert gfp.decode("0x140cca", t) == (0x140CCA, [])
    assert gfp.decode("3264", t) == (3264, [])  # [FAILED TO PARSE] prints gfp_t as decimal
    assert gfp.decode("none", t) == (0, [])


def test_unknown_name_gives_no_mask():
    mask, unknown = gfp.decode("__GFP_ATOMIC|GFP_KERNEL", gfp.TABLES["6.13"])  # removed in 6.4
    assert mask is None and unknown == ["__GFP_ATOMIC"]
    assert gfp.flag_values(None, gfp.TABLES["6.13"])["thisnode"] is None


def test_4_0_kswapd_is_inverted():
    t = gfp.TABLES["4.0"]
    mask, _ = gfp.decode("GFP_TRANSHUGE", t)  # contains GFP_NO_KSWAPD
    assert mask == 0x4352DA
    assert gfp.flag_values(mask, t)["kswapd_reclaim"] is False
    assert gfp.flag_values(0xD0, t)["kswapd_reclaim"] is True


def test_table_for_release():
    assert gfp.table_for_release("4.1.5") == "4.0"
    assert gfp.table_for_release("4.19.72") == "4.19"
    assert gfp.table_for_release("5.3.1") == "5.4"
    assert gfp.table_for_release("6.1.0-50-amd64") == "6.1"
    assert gfp.table_for_release("6.18.44-fc") == "6.13"
    assert gfp.table_for_release("garbage") is None


def test_best_table_for_names_prefers_in_order():
    assert gfp.best_table_for_names(["GFP_KERNEL|__GFP_ATOMIC"], ["6.13", "6.1", "5.4"]) == "6.1"
    assert gfp.best_table_for_names(["GFP_TRANSHUGE|GFP_THISNODE"], ["6.13", "4.0"]) == "4.0"
    assert gfp.best_table_for_names(["NOT_A_FLAG"], ["6.13"]) is None
