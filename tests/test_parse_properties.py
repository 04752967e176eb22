"""Property tests for the text parsers: any mix of real event lines and garbage.

Whatever the mix, every valid line is parsed into its table with the fields it has when parsed alone,
every other line is rejected with its own line number, noise (blank lines, `#` comments) is neither,
and nothing else happens: no exception, no line counted twice, no line lost. The first half runs the
parser on frames (fast, many examples); the second runs the whole `ingest` on files, through the
C prefix cutter and the chunked reader, with fewer examples.
"""

from __future__ import annotations


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
