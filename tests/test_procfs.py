import pytest

from thpreplay import procfs
from thpreplay.errors import InputError

from conftest import SAMPLES


def test_zoneinfo_two_nodes_with_empty_zones():
    text = (SAMPLES / "qemu-6.1-2node" / "zoneinfo.before").read_text()
    zones = procfs.parse_zoneinfo(text, "zoneinfo.before")
    spanned = [(z["node"], z["zone"], z["start_pfn"], z["end_pfn"]) for z in zones if z["spanned"]]
    assert spanned == [(0, "DMA", 1, 0x1000), (0, "DMA32", 0x1000, 0x40000), (1, "DMA32", 0x40000, 0x7FFE0)]
    dma32 = next(z for z in zones if z["node"] == 0 and z["zone"] == "DMA32")
    assert dma32["wmark_min"] < dma32["wmark_low"] < dma32["wmark_high"]
    assert len(dma32["lowmem_reserve"]) == 5


def test_zoneinfo_rejects_other_files():
    with pytest.raises(InputError, match=r"^meminfo:1: not a /proc/zoneinfo file"):
        procfs.parse_zoneinfo("MemTotal: 1 kB\n", "meminfo")


def test_pagetypeinfo_and_buddyinfo_agree_on_totals():
    bundle = SAMPLES / "local-6.18-ftrace"
    pt = procfs.parse_pagetypeinfo((bundle / "pagetypeinfo.before").read_text(), "p")
    bi = procfs.parse_buddyinfo((bundle / "buddyinfo.before").read_text(), "b")
    assert {r["migratetype"] for r in pt} >= {"Unmovable", "Movable", "Reclaimable"}
    assert len(bi) == 3 * 11  # DMA, DMA32, Normal x orders 0..10
    assert all(r["free_blocks"] >= 0 for r in pt + bi)


def test_cpulist_and_settings():
    assert procfs.parse_cpulist("0-3,8,10-11\n", "c") == [0, 1, 2, 3, 8, 10, 11]
    assert procfs.selected_setting("always defer defer+madvise [madvise] never") == "madvise"
    with pytest.raises(InputError, match="not a cpulist"):
        procfs.parse_cpulist("zero", "node0.cpulist")


def test_pagesets_of_a_6_1_guest_and_a_6_18_host():
    """The per-cpu lists (count, high, batch per CPU and zone), from two real zoneinfo files: a 6.1 lab
    guest and a 6.18 host whose lines carry high_min/high_max as well (6.7+, passed over)."""
    guest = procfs.parse_pagesets((SAMPLES / "fidelity" / "6.1-s1-fragmented-movable" / "zoneinfo.before").read_text())
    assert guest[(0, "DMA32")] == {0: {"count": 9577, "high": 10656, "batch": 63},
                                   1: {"count": 107, "high": 10656, "batch": 63}}
    host = procfs.parse_pagesets((SAMPLES / "host-6.18-qemu-prealloc" / "zoneinfo.before").read_text())
    assert host[(0, "DMA")][0] == {"count": 0, "high": 0, "batch": 1}
    assert all(v["high"] >= 0 and v["batch"] > 0 for cpus in host.values() for v in cpus.values())
    assert procfs.parse_pagesets("MemTotal: 1 kB\n") == {}
