"""Property tests for the text parsers: any mix of real event lines and garbage.

Whatever the mix, every valid line is parsed into its table with the fields it has when parsed alone,
every other line is rejected with its own line number, noise (blank lines, `#` comments) is neither,
and nothing else happens: no exception, no line counted twice, no line lost. The first half runs the
parser on frames (fast, many examples); the second runs the whole `ingest` on files, through the
C prefix cutter and the chunked reader, with fewer examples.
"""

from __future__ import annotations

import pytest


import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thpreplay.ingest import ingest
from thpreplay.parse.text import detect_format, detect_layout, parse_lines

from test_parse import FTRACE_4X, FTRACE_61, FTRACE_618, PERF

EVENT_TABLES = ("page_alloc", "page_free", "extfrag", "compaction", "reclaim", "page_fault", "other_events")
FTRACE_VALID = FTRACE_618 + FTRACE_61 + [
    "         thpfrag-9959    [000] .....  1250.574800: sched_switch: prev_comm=thpfrag prev_pid=9959 next_comm=swapper",
]
NOISE = ["", "#", "# tracer: nop", "   "]

# Garbage: arbitrary text on one line that is not noise. Real lines cut short or with a damaged
# middle are included: they must be rejected or parsed, never crash, never vanish.
garbage_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    min_size=1, max_size=120,
).filter(lambda s: s.strip() and not s.lstrip().startswith("#"))


def _frame(lines: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"line": list(range(1, len(lines) + 1)), "text": lines},
                        schema={"line": pl.Int64, "text": pl.String})


def _parse(lines: list[str]):
    layout = detect_layout(lines, detect_format(lines, "t"))
    return parse_lines(_frame(lines), layout, "t", unterminated_last=False)


def _alone(line: str) -> dict[str, dict]:
    """The table and fields of one valid line parsed on its own."""
    r = _parse([line])
    assert r.rejects.height == 0
    (name, frame), = [(t, f) for t, f in r.tables.items() if f.height]
    return {name: frame.drop("line").row(0, named=True)}


def _mixes(valid: list[str]):
    item = st.one_of(
        st.sampled_from(valid).map(lambda s: ("valid", s)),
        st.sampled_from(NOISE).map(lambda s: ("noise", s)),
        garbage_text.map(lambda s: ("garbage", s)),
    )
    return st.tuples(st.sampled_from(valid), st.lists(item, max_size=40))


def _check(valid_pool: list[str], first: str, rest: list[tuple[str, str]]) -> None:
    lines = [first] + [s for _, s in rest]
    kinds = ["valid"] + [k for k, _ in rest]
    r = _parse(lines)
    parsed: dict[int, tuple[str, dict]] = {}
    for name, frame in r.tables.items():
        for row in frame.iter_rows(named=True):
            n = row.pop("line")
            assert n not in parsed, f"line {n} parsed twice"
            parsed[n] = (name, row)
    rejected = r.rejects.get_column("line").to_list() if r.rejects.height else []
    assert len(rejected) == len(set(rejected)) and not set(rejected) & set(parsed)
    # garbage that reads as a frame of a perf callchain (a tab, hex digits) is a row of stacks
    frames = set(r.stacks.get_column("frame_line").to_list()) if r.stacks is not None else set()
    assert not frames & (set(parsed) | set(rejected))
    for n, (kind, text) in enumerate(zip(kinds, lines), start=1):
        if kind == "valid":
            (name, fields), = _alone(text).items()
            assert n in parsed and parsed[n][0] == name, (n, text)
            row = parsed[n][1]  # a chunk's frame has the union of its events' fields: the others are null
            assert {k: row.get(k) for k in fields} == fields and all(row[k] is None for k in row.keys() - fields), (n, text)
        elif kind == "noise":
            assert n not in parsed and n not in rejected, (n, text)
        else:  # garbage: rejected with its number, or (rarely) a line that happens to be an event or a frame
            assert (n in rejected) != (n in parsed or n in frames), (n, text)
    assert set(parsed) | set(rejected) | frames == {n for n, k in enumerate(kinds, 1) if k != "noise"}


@pytest.mark.slow  # long: make test-slow runs it
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mixes(FTRACE_VALID))
def test_ftrace_lines_among_garbage(mix):
    _check(FTRACE_VALID, *mix)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mixes(PERF))
def test_perf_script_lines_among_garbage(mix):
    _check(PERF, *mix)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mixes(FTRACE_4X))
def test_4x_lines_among_garbage(mix):
    _check(FTRACE_4X, *mix)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mix=_mixes(FTRACE_VALID), repeat=st.integers(1, 400))
def test_ingest_accounts_for_every_line(tmp_path_factory, mix, repeat):
    """The whole ingest (C prefix cutter, chunked reader, Parquet parts): every non-noise line of the
    file is in exactly one event table or in rejects, and the valid ones are all parsed."""
    first, rest = mix
    body = [first] + [s for _, s in rest]
    kinds = ["valid"] + [k for k, _ in rest]
    lines, line_kinds = body * repeat, kinds * repeat  # long enough for the fixed-width fast path
    d = tmp_path_factory.mktemp("mix")
    src = d / "trace.txt"
    src.write_text("\n".join(lines) + "\n")
    ingest([str(src)], d / "ds")
    seen: list[int] = []
    for t in EVENT_TABLES + ("rejects", "stacks"):
        files = sorted((d / "ds" / t).glob("*.parquet"))
        if files:
            seen += pl.read_parquet(files).get_column("frame_line" if t == "stacks" else "line").to_list()
    assert len(seen) == len(set(seen))
    expected = {n for n, k in enumerate(line_kinds, 1) if k != "noise"}
    assert set(seen) == expected
    valid = {n for n, k in enumerate(line_kinds, 1) if k == "valid"}
    rejected = set(pl.read_parquet(sorted((d / "ds" / "rejects").glob("*.parquet"))).get_column("line").to_list()) \
        if any((d / "ds" / "rejects").glob("*.parquet")) else set()
    assert not valid & rejected


# --- the payload fields read in C (parse/_prefix.c with parse/prefix.py SPECS) -------------------------

def _perf_line(event: str, payload: str) -> str:
    """A perf script line of the layout of PERF (event right-aligned to the same column)."""
    head = PERF[2]
    tc = head.index(": ")
    ec = head.index(": ", tc + 2)
    return head[:tc + 2] + event.rjust(ec - tc - 2) + ": " + payload


# One line of each kind of payload the C reader meets, as 6.x prints them (kmem.h, compaction.h, vmscan.h,
# exceptions.h TP_printk): hex and decimal numbers, negative orders, a ',' after a number, a padded
# %-8s zone, gfp names, words.
PAYLOADS = PERF + [
    _perf_line("kmem:mm_page_alloc_extfrag", "page=0x4401a0 pfn=0x4401a0 alloc_order=0 fallback_order=9 "
               "pageblock_order=9 alloc_migratetype=0 fallback_migratetype=1 fragmenting=1 change_ownership=1"),
    _perf_line("compaction:mm_compaction_begin",
               "zone_start=0x1000 migrate_pfn=0x1000 free_pfn=0x43fe00 zone_end=0x440000, mode=sync"),
    _perf_line("compaction:mm_compaction_end", "zone_start=0x1000 migrate_pfn=0x1200 free_pfn=0x43fe00 "
               "zone_end=0x440000, mode=async status=contended"),
    _perf_line("compaction:mm_compaction_try_to_compact_pages",
               "order=9 gfp_mask=GFP_TRANSHUGE|__GFP_THISNODE priority=1"),
    _perf_line("compaction:mm_compaction_deferred",
               "node=0 zone=Normal   order=9 order_failed=9 consider=1 limit=64"),
    _perf_line("compaction:mm_compaction_suitable", "node=0 zone=Normal   order=-1 ret=continue"),
    _perf_line("compaction:mm_compaction_migratepages", "nr_migrated=12 nr_failed=0"),
    _perf_line("vmscan:mm_vmscan_direct_reclaim_begin", "order=9 gfp_flags=GFP_TRANSHUGE_LIGHT|__GFP_NORETRY"),
    _perf_line("vmscan:mm_vmscan_write_folio", "page=0x4401a0 pfn=0x4401a0 flags=RECLAIM_WB_ANON|RECLAIM_WB_ASYNC"),
    _perf_line("sched:sched_switch", "prev_comm=perf prev_pid=13776 next_comm=swapper/1 next_pid=0"),
]
# What changes how a payload reads: blanks of every kind, '=', ',', signs, hex, keys, long numbers.
_PAYLOAD_EDIT = st.one_of(
    st.sampled_from(list(" \t\r\x0b=,-+x0123456789abcdefABCDEF:|")),
    st.sampled_from(["pfn=", " order=", " page=", "0x", " extra_field=5", "ffffffffffffffff", "18446744073709551615",
                     "99999999999999999999", "  ", "\t\t"]),
)


def _c_reads_as_polars(changed: list[str]) -> None:
    """The changed PAYLOADS lines, then PAYLOADS unchanged (they keep the layout): the fields
    parse/_prefix.c reads and those parse/text.py reads give the same tables, rejects and extra fields,
    whichever lines the C reader leaves to polars."""
    from thpreplay.parse import prefix

    if not prefix.AVAILABLE:
        pytest.skip("the C helper is not built")
    lines = changed + list(PAYLOADS)
    layout = detect_layout(list(PAYLOADS), "perf")
    assert layout.fixed is not None
    data = ("\n".join(lines) + "\n").encode()
    # the polars path's lines as ingest reads them (_lines_frame): a CR an edit leaves at a line's end is
    # a CRLF line end, taken off by both readers (one CR: "\r\r\n" keeps one in the payload)
    frame = pl.read_lines(data, name="text", row_index_name="line", row_index_offset=1).with_columns(
        pl.col("line").cast(pl.Int64))
    polars_path = parse_lines(frame, layout, "t", unterminated_last=False, all_ascii=True)
    cut = prefix.cut(data, 1, False, layout)
    c_path = parse_lines(cut.rest, layout, "t", unterminated_last=False, all_ascii=True, cut=cut)
    assert sorted(c_path.tables) == sorted(polars_path.tables)
    for t in polars_path.tables:
        assert c_path.tables[t].sort("line").equals(polars_path.tables[t].sort("line")), t
    assert c_path.rejects.equals(polars_path.rejects)
    for a, b in ((c_path.extra_fields, polars_path.extra_fields), (c_path.stacks, polars_path.stacks)):
        assert (a is None) == (b is None) and (a is None or a.equals(b))
    # the C reader did read the payloads: every unchanged typed line is clean
    clean = cut.header.filter(pl.col("line") > len(changed)).filter(pl.col("_spec") >= 0)
    assert clean.height and clean.get_column("_clean").all()


@pytest.mark.slow  # a minute: make test-slow runs it
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(PAYLOADS) - 1), st.integers(0, 200),
                          st.sampled_from(["set", "insert", "delete"]), _PAYLOAD_EDIT), max_size=6))
def test_c_payload_fields_read_as_polars_reads_them(edits):
    """Real payloads of every typed event with a few characters changed (after the prefix, which stays
    whole)."""
    lines = list(PAYLOADS)
    tc = PERF[2].index(": ")
    ec = PERF[2].index(": ", tc + 2) + 2
    for which, at, op, text in edits:
        s = lines[which]
        at = ec + min(at, len(s) - ec)
        lines[which] = (s[:at] + text + s[at + len(text):] if op == "set" else s[:at] + text + s[at:] if op == "insert"
                        else s[:at] + s[at + 1:])
    _c_reads_as_polars(lines)


@pytest.mark.parametrize("end", ["\r", "\r\r", " \r", "\t\r\r", "\x0b"])
def test_c_payload_fields_keep_what_precedes_a_crlf(end):
    """A payload ending in blanks or a CR before the line's CRLF: one CR is the line end, the rest is
    payload (other_events keeps it whole), for every event (found by the property test above)."""
    _c_reads_as_polars([line + end for line in PAYLOADS])
