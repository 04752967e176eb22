"""The line prefix in the forms people print it, and values past what a kernel prints.

perf script with other -F field lists (no comm, pid/tid, no cpu, microsecond time, no time), event
lines without any prefix, a pid wider than its column, and numbers past their column's type. The
inputs are tests/data/bad/ files cut from the real `perf script` output of local-6.18-perf (see the
README there). The C prefix cutter and the polars path must read every line the same way.
"""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thpreplay.kernel.events import GFP_BITS, PAGE_ORDER_MAX, EVENTS
from thpreplay.parse import prefix
from thpreplay.parse.text import _gfp_too_wide, detect_format, detect_layout, parse_lines

from test_bad_input import BAD, assert_fails, assert_no_dataset, ingest, metadata, rejects, run_cli, stage, table
from test_parse import PERF

HEADER = ["line", "comm", "pid", "tgid", "cpu", "ts_ns"]


def _first_rows(ds, n=2):
    return table(ds, "page_alloc").sort("line").select(HEADER).head(n).rows()


@pytest.mark.parametrize(
    "name, rows, warning",
    [
        # perf script -F tid,cpu,time,event,trace --ns: no comm column (it was "9779 [000]  112", pid 0)
        ("perf-F-tid-cpu.txt", [(1, None, 9779, None, 0, 1127_791729158), (2, None, 9779, None, 0, 1127_791886221)],
         "perf-F-tid-cpu.txt: no comm column (perf script -F without comm): comm is null, and khugepaged's huge "
         "page allocations cannot be told from page faults'"),
        # -F comm,pid,tid,...: "thpfrag  9779/9779  [000]", time in microseconds (perf's default)
        ("perf-F-pid-tid.txt", [(1, "thpfrag", 9779, 9779, 0, 1127_791729000), (2, "thpfrag", 9779, 9779, 0, 1127_791886000)],
         None),
        # -F comm,tid,time,event,trace --ns: no cpu column
        ("perf-F-no-cpu.txt", [(1, "thpfrag", 9779, None, None, 1127_791729158), (2, "thpfrag", 9779, None, None, 1127_791886221)],
         None),
    ],
    ids=["tid-cpu", "pid-tid", "no-cpu"],
)
def test_perf_field_lists(tmp_path, monkeypatch, name, rows, warning):
    stage(tmp_path, monkeypatch, name)
    ingest(name, "-o", "ds")
    ds = tmp_path / "ds"
    assert rejects(ds) == []
    assert json.loads(metadata(ds)["events"])["page_alloc"] == 9
    assert json.loads(metadata(ds)["events"])["page_fault"] == 4
    assert json.loads(metadata(ds)["trace_formats"]) == {name: "perf"}
    assert _first_rows(ds) == rows
    warnings = json.loads(metadata(ds)["warnings"])
    assert (warning in warnings) if warning else not any("comm" in w for w in warnings)
    # the same events as the standard field list, whatever the columns
    stage(tmp_path, monkeypatch, "perf-symbolic-gfp.txt")
    ingest("perf-symbolic-gfp.txt", "-o", "ref")
    cols = ["line", "pfn", "order", "gfp_flags", "thp_attempt"]
    assert table(ds, "page_alloc").sort("line").select(cols).equals(
        table(tmp_path / "ref", "page_alloc").sort("line").select(cols))
    assert run_cli(["simulate", "ds", "-q"], tmp_path).returncode == 0


def test_time_without_its_colon():
    """A timestamp not followed by ':' reads the same (the fixed-width paths are not used for it)."""
    lines = (BAD / "perf-raw-hex-gfp.txt").read_text().splitlines()
    bare = [re.sub(r"(\d{4}\.\d{9}):", r"\1 ", ln) for ln in lines]
    frames = []
    for text in (lines, bare):
        layout = detect_layout(text, detect_format(text, "t"))
        r = parse_lines(pl.DataFrame({"line": list(range(1, 14)), "text": text}), layout, "t", unterminated_last=False)
        frames.append((layout.fixed, r.tables["page_alloc"], r.rejects.height))
    assert frames[1][0] is None and frames[1][2] == 0
    assert frames[1][1].equals(frames[0][1])


def test_perf_without_time_is_refused(tmp_path):
    """-F comm,tid,cpu,event,trace: no timestamps, so no order to replay in: one line naming file:line."""
    stage(tmp_path, pytest.MonkeyPatch(), "perf-F-no-time.txt")
    proc = run_cli(["ingest", "perf-F-no-time.txt", "-o", "ds"], tmp_path)
    assert_fails(proc, "thpreplay: perf-F-no-time.txt:1: perf script output without the time column: thpreplay "
                       "replays events in time order; print it again with perf script -F comm,tid,cpu,time,event,"
                       "trace --ns")
    assert_no_dataset(tmp_path)


def test_event_lines_without_prefix(tmp_path, monkeypatch):
    """Event lines as pasted in mails: read, in file order, with null ts/pid/cpu/comm and a warning;
    simulate and validate refuse the dataset in one line; query works."""
    name = stage(tmp_path, monkeypatch, "event-lines.txt")
    ingest(name, "-o", "ds")
    ds = tmp_path / "ds"
    meta = metadata(ds)
    assert json.loads(meta["trace_formats"]) == {name: "events"}
    assert json.loads(meta["untimed_events"]) == 13 and rejects(ds) == []
    assert json.loads(meta["warnings"])[0] == (
        "event-lines.txt: 13 event lines without the task/cpu/time prefix: read in file order with null ts_ns, "
        "pid, cpu and comm; simulate and validate need timestamps and refuse this dataset")
    alloc = table(ds, "page_alloc").sort("line")
    assert alloc.height == 9 and alloc.select(HEADER[1:]).null_count().row(0) == (9, 9, 9, 9, 9)
    assert alloc.get_column("line").to_list() == [1, 2, 3, 4, 5, 8, 10, 11, 13]
    want = ("thpreplay: ds: 13 of its events have no timestamp (event lines without the task/cpu/time prefix): "
            "the replay needs their time order; ingest the trace as perf script or ftrace text with timestamps")
    for command in ("simulate", "validate"):
        assert_fails(run_cli([command, "ds"], tmp_path), want)
    assert run_cli(["query", "ds", "select count(*) from page_fault"], tmp_path).returncode == 0


def test_event_lines_inside_a_timed_trace_are_rejected():
    lines = PERF + ["mm_page_free: page=0x4401a0 pfn=0x4401a0 order=0"]
    layout = detect_layout(lines, detect_format(lines, "t"))
    r = parse_lines(pl.DataFrame({"line": [1, 2, 3, 4], "text": lines}), layout, "t", unterminated_last=False)
    assert r.rejects.select("line", "reason").rows() == [
        (4, "event line without the task/cpu/time prefix the other lines have: it cannot be placed in time")]


def test_key_value_text_is_not_event_lines():
    with pytest.raises(Exception, match="not a recognised trace format"):
        detect_format(["Subject: page allocator", "From: someone"], "mail.txt")


@pytest.mark.parametrize("c_helper", [True, False], ids=["c", "polars"])
def test_pid_wider_than_the_column(tmp_path, monkeypatch, c_helper):
    """pid 4294967396 (2^32 + 100) was stored as 100 by the C cutter; now a counted reject on both paths."""
    if c_helper and not prefix.AVAILABLE:
        pytest.skip("the C helper is not built")
    monkeypatch.setattr(prefix, "AVAILABLE", c_helper)
    name = stage(tmp_path, monkeypatch, "perf-wide-pid.txt")
    ingest(name, "-o", "ds")
    ds = tmp_path / "ds"
    assert [r[1:3] for r in rejects(ds)] == [
        (3, "mm_page_alloc: pid 4294967396 outside -1..4194304 (PID_MAX_LIMIT)"),
        (9, "page_fault_user: pid 4294967396 outside -1..4194304 (PID_MAX_LIMIT)"),
    ]
    assert set(table(ds, "page_alloc").get_column("pid").to_list()) == {9779, 9781}


def test_numbers_past_their_columns_are_rejects(tmp_path, monkeypatch):
    """gfp_flags=0xffffffffffffffff was "internal error: ... i128"; every typed field past its range is a
    counted reject naming the value and the bound."""
    name = stage(tmp_path, monkeypatch, "perf-overflow.txt")
    ingest(name, "-o", "ds")
    assert [r[1:3] for r in rejects(tmp_path / "ds")] == [
        (1, "mm_page_alloc: gfp_flags 0xffffffffffffffff out of range (the kernel's gfp_t is 32 bits)"),
        (2, "mm_page_alloc: gfp_flags 0x100140cca out of range (the kernel's gfp_t is 32 bits)"),
        (3, "mm_page_alloc: order 40000 outside 0..10 (MAX_PAGE_ORDER)"),
        (4, "mm_page_alloc: pfn 4503599629802423 outside 0..1099511627776 (52-bit physical addresses)"),
        (5, "mm_page_alloc: migratetype 99999999999999999999 outside -32768..32767 (int16 column)"),
        (6, "page_fault_user: error_code -1 outside 0..9223372036854775807 (unsigned long, stored as int64)"),
    ]


def test_every_typed_field_of_every_event_survives_hostile_numbers(tmp_path):
    """Each numeric field of each event spec set past int64, to 2^64-1, negative, 40000 and a
    5000-digit number: ingest succeeds, and every such line is a table row or a reject, never an
    internal error (the lines are the 6.1 ftrace form of tests/test_parse.py)."""
    normal = {"int": "1", "pfn": "0x1000", "hex": "0x7f0000001000", "str": "async", "gfp": "GFP_KERNEL", "bool": "0"}
    hostile = ["99999999999999999999", "-1", "40000", "0xffffffffffffffff", "-99999999999999999999", "9" * 5000]
    lines, n = [], 0
    for event, spec in EVENTS.items():
        for key, (_column, kind) in spec.fields.items():
            for v in (hostile if kind != "str" else []) + (["0x100000000", "GFP_KERNEL|0x1ffffffff"] if kind == "gfp" else []):
                payload = " ".join(f"{k}={v if k == key else normal[kd]}" for k, (_c, kd) in spec.fields.items())
                n += 1
                lines.append(f"         thpfrag-364     [000] .....  {100 + n // 1000:5d}.{n % 1000:06d}: {event}: {payload}")
    src = tmp_path / "hostile.txt"
    src.write_text("\n".join(lines) + "\n")
    proc = run_cli(["ingest", "hostile.txt", "-o", "ds", "-q"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen = []
    for t in ("page_alloc", "page_free", "extfrag", "compaction", "reclaim", "page_fault", "other_events", "rejects"):
        seen += table(tmp_path / "ds", t).get_column("line").to_list()
    assert sorted(seen) == list(range(1, n + 1))
    reasons = table(tmp_path / "ds", "rejects").get_column("reason").to_list()
    assert not any("9" * 41 in r for r in reasons)  # a huge value is shown cut, not whole


def test_timestamp_past_int64_names_the_value():
    ok = "         thpfrag-9959    [000] .....  1250.574824: mm_page_free: page=000000000e055e62 pfn=0x2ae3be order=0"
    lines = [ok, ok.replace("1250.574824", "99999999999.574824")]
    layout = detect_layout(lines, detect_format(lines, "t"))
    r = parse_lines(pl.DataFrame({"line": [1, 2], "text": lines}), layout, "t", unterminated_last=False)
    assert r.rejects.select("line", "reason").rows() == [
        (2, "mm_page_free: timestamp 99999999999.574824 past the int64 nanosecond range")]


# ------------------------------------------------------------------------------- boundary properties


@given(st.integers(0, 1 << 80))
def test_gfp_width_boundary(v):
    assert _gfp_too_wide(hex(v)) == (v >> GFP_BITS != 0)
    assert _gfp_too_wide(str(v)) == (v >> GFP_BITS != 0)
    assert _gfp_too_wide(f"GFP_KERNEL|{hex(v)}") == (v >> GFP_BITS != 0)


def _perf_line(pid: str, order: str, ts: str = "1705.369949701") -> str:
    return (f"            perf {pid:>5} [001]  {ts}:                            kmem:mm_page_alloc: page=0x420578 "
            f"pfn=0x420578 order={order} migratetype=0 gfp_flags=GFP_HIGHUSER|__GFP_ACCOUNT")


@settings(max_examples=60, deadline=None)
@given(pid=st.integers(-2, 1 << 40), order=st.integers(-3, 1 << 20))
def test_pid_and_order_boundaries(pid, order):
    lines = [_perf_line("13776", "0")] * 3 + [_perf_line(str(pid), str(order))]
    layout = detect_layout(lines, detect_format(lines, "t"))
    r = parse_lines(pl.DataFrame({"line": [1, 2, 3, 4], "text": lines}), layout, "t", unterminated_last=False)
    accepted = 4 in r.tables["page_alloc"].get_column("line").to_list()
    assert accepted == (-1 <= pid <= 4 * 1024 * 1024 and 0 <= order <= PAGE_ORDER_MAX)


# Characters that move or break the columns the fixed-width paths read.
_MUTATION = st.sampled_from(list(" \t0123456789[]:-.+/x"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 130), st.sampled_from(["set", "insert", "delete"]),
                          _MUTATION), max_size=4))
def test_c_cutter_and_polars_read_mutated_lines_alike(edits):
    """A real perf line with a few characters changed, among unchanged ones: the C prefix cutter
    (parse/_prefix.c) and the polars fixed-width path give the same tables and rejects."""
    if not prefix.AVAILABLE:
        pytest.skip("the C helper is not built")
    lines = [PERF[i % 3] for i in range(4)] * 2
    for which, at, op, ch in edits:
        s = lines[which]
        at = min(at, len(s))
        lines[which] = s[:at] + ch + s[at + 1:] if op == "set" else s[:at] + ch + s[at:] if op == "insert" else s[:at] + s[at + 1:]
    layout = detect_layout(lines[4:], "perf")  # the unchanged half decides the layout
    assert layout.fixed is not None
    data = ("\n".join(lines) + "\n").encode()
    frame = pl.DataFrame({"line": list(range(1, len(lines) + 1)), "text": lines})
    polars_path = parse_lines(frame, layout, "t", unterminated_last=False, all_ascii=True)
    cut = prefix.cut(data, 1, False, layout)
    c_path = parse_lines(cut.rest, layout, "t", unterminated_last=False, all_ascii=True, cut=cut)
    assert sorted(c_path.tables) == sorted(polars_path.tables)
    for t in polars_path.tables:
        assert c_path.tables[t].sort("line").equals(polars_path.tables[t].sort("line")), t
    assert c_path.rejects.equals(polars_path.rejects)
