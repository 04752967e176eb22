"""The text parsers on real lines of each era and tool (fragments from the bundled captures and
the TP_printk format strings of each era and perf/trace-cmd's line formats)."""

from __future__ import annotations

import polars as pl
import pytest

from thpreplay.errors import InputError
from thpreplay.parse.text import detect_format, detect_layout, parse_lines

FTRACE_618 = [
    "         thpfrag-9959    [000] .....  1250.574745: mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE",
    "         thpfrag-9959    [000] .....  1250.574824: mm_page_free: page=000000000e055e62 pfn=0x2ae3be order=0",
    "         thpfrag-9959    [000] .....  1250.581506: mm_compaction_begin: zone_start=0x100000 migrate_pfn=0x101c00 free_pfn=0x6181ff zone_end=0x640000, mode=async",
    "         thpfrag-9959    [000] .....  1250.588640: mm_compaction_end: zone_start=0x100000 migrate_pfn=0x1b2220 free_pfn=0x1b2200 zone_end=0x640000, mode=async status=complete",
]
FTRACE_61 = [
    "         thpfrag-364     [000] d..3.    32.040508: mm_page_alloc_extfrag: page=(____ptrval____) pfn=0x1600 alloc_order=9 fallback_order=9 pageblock_order=9 alloc_migratetype=1 fallback_migratetype=2 fragmenting=0 change_ownership=1",
    "         thpfrag-364     [000] .....    33.120408: mm_vmscan_direct_reclaim_end: nr_reclaimed=1",
    "         thpfrag-364     [000] d....    32.133581: page_fault_user: address=0x7f671ce00000 ip=0x401a53 error_code=0x6",
]
PERF = [
    "            perf 13776 [001]  1705.370002300:                    exceptions:page_fault_user: address=0x7fd93e7d5408 ip=0x561e2697f43d error_code=0x7",
    "       perf-exec 13777 [000]  1705.370574653:                             kmem:mm_page_free: page=0x4401a0 pfn=0x4401a0 order=0",
    "            perf 13776 [001]  1705.369949701:                            kmem:mm_page_alloc: page=0x420578 pfn=0x420578 order=0 migratetype=0 gfp_flags=GFP_HIGHUSER|__GFP_ACCOUNT",
]
# 4.x-era ftrace (pid %-5d, 4 latency characters, decimal pfn), as 4.x kernels print it.
FTRACE_4X = [
    "        qemu-kvm-4211  [012] .... 35218.123456: mm_page_alloc: page=00000000a8e5f3c1 pfn=8388608 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE|__GFP_THISNODE",
    "        qemu-kvm-4211  [012] .... 35218.123460: mm_page_alloc: page=          (null) pfn=0 order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE|__GFP_THISNODE",
]


def _parse(lines: list[str], source: str = "t.txt"):
    fmt = detect_format(lines, source)
    layout = detect_layout(lines, fmt)
    frame = pl.DataFrame({"line": list(range(1, len(lines) + 1)), "text": lines}, schema={"line": pl.Int64, "text": pl.String})
    return fmt, parse_lines(frame, layout, source, unterminated_last=False)


def test_ftrace_618_header_and_fields():
    fmt, r = _parse(FTRACE_618)
    assert fmt == "ftrace" and r.rejects.height == 0
    alloc = r.tables["page_alloc"].row(0, named=True)
    assert alloc["comm"] == "thpfrag" and alloc["pid"] == 9959 and alloc["cpu"] == 0
    assert alloc["ts_ns"] == 1250_574745_000 and alloc["pfn"] == 0 and alloc["order"] == 9
    assert alloc["gfp_flags"] == "GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE" and alloc["line"] == 1
    comp = r.tables["compaction"].sort("line")
    assert comp.get_column("zone_end").to_list() == [0x640000, 0x640000]  # the ',' after zone_end is dropped
    assert comp.get_column("mode").to_list() == ["async", "async"]
    assert comp.get_column("status").to_list() == [None, "complete"]
    assert r.tables["page_free"].get_column("pfn").to_list() == [0x2AE3BE]


def test_ftrace_61_extfrag_reclaim_faults():
    fmt, r = _parse(FTRACE_61)
    ext = r.tables["extfrag"].row(0, named=True)
    assert (ext["pfn"], ext["alloc_order"], ext["fallback_migratetype"], ext["change_ownership"]) == (0x1600, 9, 2, True)
    assert r.tables["reclaim"].get_column("nr_reclaimed").to_list() == [1]
    fault = r.tables["page_fault"].row(0, named=True)
    assert fault["address"] == 0x7F671CE00000 and fault["error_code"] == 6


def test_perf_script_ns_timestamps_and_padded_event_names():
    fmt, r = _parse(PERF)
    assert fmt == "perf"
    assert r.tables["page_fault"].get_column("ts_ns").to_list() == [1705_370002300]
    free = r.tables["page_free"].row(0, named=True)
    assert (free["comm"], free["pid"], free["cpu"], free["event"]) == ("perf-exec", 13777, 0, "mm_page_free")
    assert r.tables["page_alloc"].get_column("pfn").to_list() == [0x420578]


def test_4x_decimal_pfn_and_short_latency():
    fmt, r = _parse(FTRACE_4X)
    a = r.tables["page_alloc"].sort("line")
    assert a.get_column("pfn").to_list() == [8388608, 0]
    assert a.get_column("pid").to_list() == [4211, 4211] and a.get_column("cpu").to_list() == [12, 12]


def test_tgid_column_and_failed_to_parse_payload():
    lines = [
        "         thpfrag-364     (    360) [000] .....    32.133581: page_fault_user: address=0x7f671ce00000 ip=0x401a53 error_code=0x6",
        "         thpfrag-364     (    360) [000] .....    32.135378: mm_page_alloc: [FAILED TO PARSE] pfn=1534487 order=0 gfp_flags=3264 migratetype=0",
    ]
    fmt, r = _parse(lines)
    assert r.rejects.height == 0
    assert r.tables["page_fault"].get_column("tgid").to_list() == [360]
    a = r.tables["page_alloc"].row(0, named=True)
    assert (a["pfn"], a["order"], a["gfp_flags"], a["tgid"]) == (1534487, 0, "3264", 360)
    assert r.failed_to_parse == 1   # counted: ingest says how many lines were read from raw fields


def test_odd_widths_fall_back_to_regex_and_bad_lines_are_rejected():
    lines = FTRACE_618[:2] + [
        "   a comm: with [odd] -bits-77   [001] .....  1250.600000: mm_page_free: page=0 pfn=0x10 order=1",
        "         thpfrag-9959    [000] .....  1250.700000: mm_page_alloc: order=9 migratetype=1 gfp_flags=GFP_TRANSHUGE",
        "this is not a trace line",
        "            perf 13776 [001]  1705.370002300:                    exceptions:page_fault_user: address=0x1 ip=0x2 error_code=0x7",
    ]
    fmt, r = _parse(lines)
    free = r.tables["page_free"].sort("line")
    assert free.get_column("comm").to_list() == ["thpfrag", "a comm: with [odd] -bits"]
    assert r.fallback_rows == 3
    assert r.rejects.select("line", "reason").rows() == [
        (4, "mm_page_alloc: missing field pfn"),
        (5, "not an event line (expected ftrace text)"),
        (6, "perf script line inside a ftrace trace (mixed formats)"),
    ]


def test_noise_and_lost_events_are_not_rejects():
    lines = ["# tracer: nop", "#", "", "CPU:1 [LOST 1234 EVENTS]"] + FTRACE_618[:1]
    fmt, r = _parse(lines)
    assert r.rejects.height == 0 and r.lost_events == 1234 and r.lost_markers == 1
    assert r.tables["page_alloc"].height == 1


def test_a_lost_count_past_int64_is_counted_not_zeroed():
    """[LOST N EVENTS] with N past 2^63 (a corrupt or hostile mark): the count is kept as it is printed,
    never wrapped or dropped to 0, and the other marks still add up."""
    lines = ["CPU:0 [LOST 99999999999999999999 EVENTS]", "CPU:1 [LOST 5 EVENTS]", "CPU 2 [3 EVENTS DROPPED]"] + FTRACE_618[:1]
    fmt, r = _parse(lines)
    assert r.lost_events == 99999999999999999999 + 5 + 3 and r.lost_markers == 3
    assert r.rejects.height == 0


def test_values_no_kernel_prints_are_rejects_with_the_reason():
    """Out of range at the boundary (kernel/events.py): an order past MAX_PAGE_ORDER or below 0, a
    negative pfn, a pid past PID_MAX_LIMIT (even past 32 bits), a timestamp whose nanoseconds would
    wrap int64. Each line is a counted reject naming the value; none is stored or replayed."""
    ok = FTRACE_618[1]
    lines = [
        ok,
        ok.replace("order=0", "order=40"),
        ok.replace("pfn=0x2ae3be", "pfn=-5"),
        ok.replace("order=0", "order=-1"),
        ok.replace("thpfrag-9959 ", "thpfrag-4294967396 "),
        ok.replace("1250.574824", "99999999999.574824"),
    ]
    fmt, r = _parse(lines)
    assert r.tables["page_free"]["line"].to_list() == [1]
    reasons = dict(zip(r.rejects["line"].to_list(), r.rejects["reason"].to_list()))
    assert reasons[2] == "mm_page_free: order 40 outside 0..10 (MAX_PAGE_ORDER)"
    assert reasons[3] == "mm_page_free: pfn -5 outside 0..1099511627776 (52-bit physical addresses)"
    assert reasons[4] == "mm_page_free: order -1 outside 0..10 (MAX_PAGE_ORDER)"
    assert reasons[5] == "mm_page_free: pid 4294967396 outside -1..4194304 (PID_MAX_LIMIT)"
    assert 6 in reasons   # the header does not read: no timestamp is made up
    assert len(reasons) == 5


def test_unknown_events_are_kept():
    lines = FTRACE_618[:1] + [
        "         thpfrag-9959    [000] .....  1250.574800: sched_switch: prev_comm=thpfrag prev_pid=9959 next_comm=swapper",
    ]
    fmt, r = _parse(lines)
    other = r.tables["other_events"].row(0, named=True)
    assert other["event"] == "sched_switch" and other["payload"].startswith("prev_comm=thpfrag")


def test_detect_format_errors_name_the_line():
    with pytest.raises(InputError, match=r"^x:3: not a recognised trace format"):
        detect_format(["# c", "", "garbage", "more garbage"], "x")
    with pytest.raises(InputError, match="empty trace"):
        detect_format(["# only comments", ""], "x")


def test_another_tracers_output_is_named():
    """function_graph output (ftrace's own header says which tracer) is named as unsupported, at the
    header line, not blamed on its first line as an unknown format."""
    lines = ["# tracer: function_graph", "#", "# CPU  DURATION                  FUNCTION CALLS",
             " 0)   0.345 us    |  __alloc_pages();", " 0)   1.234 us    |  compact_zone();"]
    with pytest.raises(InputError) as e:
        detect_format(lines, "fg.txt")
    assert str(e.value) == ("fg.txt:1: the output of ftrace's function_graph tracer, which thpreplay does not read: "
                            "record the kmem, compaction and vmscan events with the nop tracer (thpreplay record, "
                            "perf record, trace-cmd record -e)")


def test_trace_cmd_report_real_output(tmp_path):
    """200 lines of `trace-cmd report` (trace-cmd 3.1.6, kernel 6.18): `cpus=N` header, no latency
    column, padded payloads. Made with: enable the events in tracefs, run dd, `trace-cmd extract`,
    `trace-cmd report | head -200`."""
    from thpreplay.ingest import ingest

    from conftest import DATA, metadata, read_table

    out = tmp_path / "ds"
    ingest([str(DATA / "trace-cmd-report-6.18.txt")], out)
    meta = metadata(out)
    assert list(meta["trace_formats"].values()) == ["trace-cmd"]
    assert meta["rejects"] == 0 and meta["header_fallback_rows"] == 0
    assert meta["events"]["page_alloc"] + meta["events"]["page_fault"] == 199
    first = read_table(out, "page_alloc").row(0, named=True)
    assert (first["comm"], first["pid"], first["cpu"], first["ts_ns"], first["pfn"], first["line"]) == (
        "bash", 20618, 0, 3052_267068_000, 0x6148CA, 2)


def test_timestamp_with_other_precision_still_reads():
    """The fixed path expects the sample's 9 fraction digits; a 6-digit line takes the slower path."""
    odd = "            perf 13776 [001]  1705.370003:                    exceptions:page_fault_user: address=0x1 ip=0x2 error_code=0x7"
    fmt, r = _parse(PERF * 3 + [odd])
    ts = r.tables["page_fault"].sort("line").get_column("ts_ns").to_list()
    assert ts[-1] == 1705_370003_000 and ts[0] == 1705_370002300
    assert r.rejects.height == 0 and r.fallback_rows == 0
