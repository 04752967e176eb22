"""Lines beside events: stack traces (the stacks table) and fields no typed column holds (extra_fields).

Every form is a real capture of this project's host (tests/data/bad/README.md says how each was made):
its frames are rows of `stacks` joined to their event by (source, line), none is a reject; a frame or
stack trace with no event to belong to is a counted reject with its reason.
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from test_hardening import BAD, cli, table
from thpreplay.ingest import ingest

KEYS = ("line", "frame_line", "kind", "depth", "address", "symbol", "offset", "size", "dso", "srcline")


def _ingest(tmp_path: Path, name: str, text: str | None = None) -> Path:
    src = BAD / name
    if text is not None:
        src = tmp_path / name
        src.write_text(text)
    ds = tmp_path / "ds"
    ingest([str(src)], ds)
    return ds


def _rows(ds: Path) -> list[tuple]:
    frame = table(ds, "stacks").sort("line", "frame_line")
    return [tuple(f"{v:x}" if k == "address" and v is not None else v for k, v in zip(KEYS, row))
            for row in frame.select(KEYS).iter_rows()]


def _shape(rows: list[tuple]) -> dict[int, tuple[int, int]]:
    """event line -> (kernel frames, user frames), with depths 0.. in file order checked."""
    out: dict[int, list[int]] = {}
    for r in rows:
        k = out.setdefault(r[0], [0, 0])
        i = 0 if r[2] == "kernel" else 1
        assert r[3] == k[i], r
        k[i] += 1
    return {line: tuple(v) for line, v in out.items()}


def _lines(name: str) -> list[str]:
    return (BAD / name).read_text().splitlines()


def test_ftrace_sym_offset_and_user_stacks_on_two_cpus(tmp_path):
    """bash (CPU 1) and python3 (CPU 0) allocate; python3's stacks come first, then bash's: each stack
    goes to the event of its CPU."""
    ds = _ingest(tmp_path, "stacks-ftrace.txt")
    assert table(ds, "rejects").height == 0
    assert table(ds, "page_alloc")["line"].to_list() == [13, 14]
    rows = _rows(ds)
    assert _shape(rows) == {13: (11, 1), 14: (9, 1)}
    assert rows[0] == (13, 28, "kernel", 0, None, "trace_event_raw_event_mm_page_alloc", 0xb7, 0x110, None, None)
    assert rows[4] == (13, 32, "kernel", 4, None, "pgd_alloc", 0x35, 0x2b0, None, None)
    assert rows[11] == (13, 40, "user", 0, "7f9df9682353", None, None, None, None, None)
    assert rows[16] == (14, 20, "kernel", 4, None, "do_anonymous_page", 0x1ff, 0xaa0, None, None)
    assert rows[21] == (14, 26, "user", 0, "7fd5693af670", None, None, None, None, None)


def test_a_frame_offset_or_size_past_int64_is_unknown(tmp_path):
    """A damaged frame (size 0xffffffffffffffff, found by the fuzzer) keeps its symbol, its size is
    unknown, and nothing else changes (it ended in an internal error)."""
    text = (BAD / "stacks-ftrace.txt").read_text()
    assert text.count("+0xb7/0x110") == 2   # the first frame of both stacks
    ds = _ingest(tmp_path, "stacks-ftrace.txt", text.replace("+0xb7/0x110", "+0xffffffffffffffff/0xffffffffffffffff"))
    (tmp_path / "plain").mkdir()
    rows, plain = _rows(ds), _rows(_ingest(tmp_path / "plain", "stacks-ftrace.txt"))
    damaged = [i for i, r in enumerate(plain) if r[5] == "trace_event_raw_event_mm_page_alloc"]
    assert len(damaged) == 2 and len(rows) == len(plain)
    for i, (got, want) in enumerate(zip(rows, plain)):
        assert got == (want[:6] + (None, None) + want[8:] if i in damaged else want)


def test_ftrace_default_options_print_names_only(tmp_path):
    ds = _ingest(tmp_path, "stacks-ftrace-names.txt")
    assert table(ds, "rejects").height == 0
    rows = _rows(ds)
    assert _shape(rows) == {13: (11, 0), 26: (11, 0)}
    text = _lines("stacks-ftrace-names.txt")
    assert [r[5] for r in rows] == [t.removeprefix(" => ") for t in text if t.startswith(" => ")]
    assert {r[4:5] + r[6:] for r in rows} == {(None, None, None, None, None)}


def test_ftrace_sym_addr_and_sym_userobj(tmp_path):
    ds = _ingest(tmp_path, "stacks-ftrace-symaddr.txt")
    assert table(ds, "rejects").height == 0
    rows = _rows(ds)
    assert _shape(rows) == {13: (14, 1), 31: (9, 2)}
    assert rows[0] == (13, 15, "kernel", 0, "ffffffff815e19d7", "trace_event_raw_event_mm_page_alloc",
                       None, None, None, None)
    assert rows[14] == (13, 30, "user", 0, "7fc3b4d162ec", None, 0xd22ec, None, "/usr/lib/x86_64-linux-gnu/libc.so.6",
                        None)
    assert rows[-2:] == [(31, 43, "user", 0, "7fc4d54907ad", None, None, None, None, None),
                         (31, 44, "user", 1, "7fc4d548fb78", None, None, None, None, None)]


def test_trace_cmd_kernel_stack_and_user_stack(tmp_path):
    """trace-cmd report prints the stacks as kernel_stack/user_stack events: they are not other_events,
    user_stack's first frame is on its own line, and its `=> 0x0` lines are padding, not frames."""
    ds = _ingest(tmp_path, "stacks-trace-cmd.txt")
    assert table(ds, "rejects").height == 0 and table(ds, "other_events").height == 0
    rows = _rows(ds)
    assert _shape(rows) == {2: (11, 1), 23: (12, 1)}
    assert rows[0] == (2, 4, "kernel", 0, "ffffffff815e19d7", "trace_event_raw_event_mm_page_alloc",
                       None, None, None, None)
    assert rows[11] == (2, 15, "user", 0, "7f9df9682353", None, None, None, None, None)
    assert rows[-1] == (23, 37, "user", 0, "7f9df9682353", None, None, None, None, None)


def test_perf_callchains_kernel_and_user(tmp_path):
    ds = _ingest(tmp_path, "stacks-perf.txt")
    assert table(ds, "rejects").height == 0
    rows = _rows(ds)
    assert _shape(rows) == {1: (13, 1), 17: (8, 4), 31: (8, 2)}
    assert rows[0] == (1, 2, "kernel", 0, "ffffffff8163bffb", "__alloc_frozen_pages_noprof", 0x26b, None,
                       "[kernel.kallsyms]", None)
    assert rows[13] == (1, 15, "user", 0, "7fc63d6f2ad7", None, None, None, None, None)  # [unknown] ([unknown])
    assert rows[22] == (17, 26, "user", 0, "b0ab6", "__x86_cacheinfo_ifunc", 0x56, None,
                        "/usr/lib/x86_64-linux-gnu/libc.so.6", None)
    assert rows[-1] == (31, 41, "user", 1, "0", None, None, None, None, None)


@pytest.mark.parametrize("name, second, first", [
    ("stacks-perf-ip.txt", 17, (1, 2, "kernel", 0, "ffffffff8163bffb", None, None, None, None, None)),
    ("stacks-perf-sym.txt", 17, (1, 2, "kernel", 0, "ffffffff8163bffb", "__alloc_frozen_pages_noprof",
                                 None, None, None, None)),
    ("stacks-perf-srcline.txt", 30, (1, 2, "kernel", 0, "ffffffff8163bffb", "__alloc_frozen_pages_noprof",
                                     None, None, None, "[kernel.kallsyms][ffffffff8163bffb]")),
])
def test_perf_script_field_choices(tmp_path, name, second, first):
    """-F ip, -F ip,sym and -F ip,sym,srcline: the same two callchains (srcline: one line more a frame)."""
    ds = _ingest(tmp_path, name)
    assert table(ds, "rejects").height == 0
    rows = _rows(ds)
    assert _shape(rows) == {1: (13, 1), second: (14, 1)}
    assert rows[0] == first
    assert [r[4] for r in rows if r[2] == "user"] == ["7fc63d6f2ad7", "7fc63d6f2ad7"]


def test_summary_and_no_rejects_through_the_cli(tmp_path):
    r = cli("ingest", str(BAD / "stacks-ftrace.txt"), "-o", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr
    assert re.search(r"│ stacks +│ +22 │\n│ extra_fields +│ +0 │", r.stdout), r.stdout
    assert "rejected" not in r.stdout


def test_frames_with_no_event_before_them_are_rejects(tmp_path):
    """A file cut in the middle of a stack (it starts with 10 frames): those frames are rejects with
    the reason, told to the user; the next event's stack is kept."""
    r = cli("ingest", str(BAD / "stacks-stray.txt"), "-o", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr
    assert "warning: 10 lines rejected: see the rejects table" in r.stdout
    rej = table(tmp_path / "ds", "rejects").sort("line")
    assert rej["line"].to_list() == list(range(13, 23))
    assert set(rej["reason"]) == {"stack frame with no event before it"}
    assert _shape(_rows(tmp_path / "ds")) == {23: (11, 0)}


def test_a_stack_trace_with_no_event_on_its_cpu_is_a_reject(tmp_path):
    """stacks-ftrace.txt without python3's event (line 14, CPU 0): its stack traces have no event
    on CPU 0 (bash's on CPU 1 is not theirs)."""
    text = _lines("stacks-ftrace.txt")
    del text[13]
    ds = _ingest(tmp_path, "stacks-ftrace.txt", "\n".join(text) + "\n")
    rej = table(ds, "rejects").sort("line")
    assert rej["line"].to_list() == list(range(14, 26))
    assert set(rej["reason"]) == {"stack trace with no event before it on CPU 0"}
    assert _shape(_rows(ds)) == {13: (11, 1)}


def test_a_stack_trace_of_another_task_is_a_reject(tmp_path):
    text = _lines("stacks-ftrace.txt")
    assert "python3-18189" in text[14]
    text[14] = text[14].replace("python3-18189", "python3-18190")
    ds = _ingest(tmp_path, "stacks-ftrace.txt", "\n".join(text) + "\n")
    rej = table(ds, "rejects").sort("line")
    assert rej["line"].to_list() == list(range(15, 25))
    assert set(rej["reason"]) == {"stack trace of pid 18190 after an event of pid 18189 on CPU 0 (line 14)"}
    assert _shape(_rows(ds)) == {13: (11, 1), 14: (0, 1)}


def test_nested_event_between_an_event_and_its_stack(tmp_path):
    """E1 E2 S2 S1 on one CPU (an event and its stack recorded between another event and its stack):
    the second stack after E2 is E1's. Made from stacks-ftrace-names.txt by moving E2 and its stack
    before E1's stack."""
    text = _lines("stacks-ftrace-names.txt")
    e1, s1, e2s2 = text[12], text[13:25], text[25:]
    ds = _ingest(tmp_path, "stacks-ftrace-names.txt", "\n".join(text[:12] + [e1] + e2s2 + s1) + "\n")
    assert table(ds, "rejects").height == 0
    rows = _rows(ds)
    assert _shape(rows) == {13: (11, 0), 14: (11, 0)}
    assert [r[5] for r in rows if r[0] == 14][4] == "__pud_alloc" and [r[5] for r in rows if r[0] == 13][4] == "pgd_alloc"


@pytest.mark.parametrize("name", ["stacks-ftrace.txt", "stacks-trace-cmd.txt", "stacks-perf.txt"])
@pytest.mark.parametrize("c_prefix", [True, False])
def test_chunk_boundaries_change_no_stack(tmp_path, monkeypatch, name, c_prefix):
    """The file's events 40 times over, read in chunks of 2 KiB (stacks cut at every boundary, and
    events on one CPU whose stack is in the next chunk): the same rows as in one chunk."""
    import thpreplay.ingest as ingest_module
    from thpreplay.inputs import read_chunks
    from thpreplay.parse import prefix

    lines = _lines(name)
    head = 12 if name == "stacks-ftrace.txt" else 1 if name == "stacks-trace-cmd.txt" else 0
    src = tmp_path / name
    src.write_text("\n".join(lines[:head] + lines[head:] * 40) + "\n")
    if not c_prefix:
        monkeypatch.setattr(prefix, "AVAILABLE", False)
    ingest([str(src)], tmp_path / "one")
    monkeypatch.setattr(ingest_module, "read_chunks", functools.partial(read_chunks, chunk_bytes=2 << 10,
                                                                        first_bytes=1 << 10))
    ingest([str(src)], tmp_path / "many")
    assert len(list((tmp_path / "many" / "stacks").glob("*.parquet"))) > 20
    one, many = _rows(tmp_path / "one"), _rows(tmp_path / "many")
    (tmp_path / "single").mkdir()
    assert len(one) == 40 * len(_rows(_ingest(tmp_path / "single", name)))
    assert many == one
    assert table(tmp_path / "many", "rejects").height == 0


def test_query_which_code_path_allocated(tmp_path):
    ds = _ingest(tmp_path, "stacks-ftrace.txt")
    r = cli("query", str(ds), "select a.comm, a.pfn, s.symbol from page_alloc a join stacks s using (source, line) "
            "where s.kind = 'kernel' and s.depth = 4 order by a.line", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["comm,pfn,symbol", "bash,1905908,pgd_alloc", "python3,4996934,do_anonymous_page"]


def test_extra_fields_are_kept(tmp_path):
    """Vendor fields appended to mm_page_alloc: a row each in extra_fields; the known fields stay in
    page_alloc's columns and are not repeated there."""
    r = cli("ingest", str(BAD / "extra-fields.txt"), "-o", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr
    assert "rejected" not in r.stdout
    extra = table(tmp_path / "ds", "extra_fields")
    assert extra.columns == ["source", "line", "event", "key", "value"]
    assert extra.select("line", "event", "key", "value").rows() == [
        (n, "mm_page_alloc", k, v) for n in range(13, 21) for k, v in (("extra_field", "5"), ("another", "0x10"))]
    alloc = table(tmp_path / "ds", "page_alloc").sort("line")
    assert alloc.height == 8 and alloc.row(0, named=True)["pfn"] == 0x16B1CF
    q = cli("query", str(tmp_path / "ds"), "select a.pfn, e.value from page_alloc a join extra_fields e "
            "using (source, line) where e.key = 'another' order by a.line limit 1", "--format", "csv")
    assert q.stdout.splitlines() == ["pfn,value", "1487311,0x10"]


def test_extra_field_values_run_to_the_next_key(tmp_path):
    """A field whose value has blanks (compaction's `range=(0x.. ~ 0x..)` form) stays whole; a
    trailing ',' goes; fields of other events than typed ones are not read (other_events keeps them)."""
    text = _lines("extra-fields.txt")
    text[12] = text[12].replace(" extra_field=5 another=0x10", " vendor_range=(0x100 ~ 0x200) tail=7,")
    ds = _ingest(tmp_path, "extra-fields.txt", "\n".join(text[:13]) + "\n")
    assert table(ds, "extra_fields").select("line", "key", "value").rows() == [
        (13, "vendor_range", "(0x100 ~ 0x200)"), (13, "tail", "7")]


def test_ftrace_4_9_sym_offset_with_sym_addr(tmp_path):
    """Mel Gorman's 4.9-rc5 traces (tests/data/bad/README.md, kernel eras): `func+0x60/0x8d <address>`."""
    ds = _ingest(tmp_path, "ftrace-4.9-stacktrace.txt")
    assert table(ds, "rejects").height == 0
    rows = _rows(ds)
    assert _shape(rows) == {1: (16, 0), 19: (19, 0)}
    assert rows[0] == (1, 3, "kernel", 0, "ffffffff812101c3", "kmalloc_large_node", 0x60, 0x8d, None, None)
    assert rows[-1] == (19, 39, "kernel", 18, "ffffffff8178e7af", "return_from_SYSCALL_64", 0, 0x6a, None, None)


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf is needed to decode perf.data")
def test_perf_data_recorded_with_callchains(tmp_path):
    """A perf.data of `perf record -g` (capture A, xz): ingest asks perf script for the frames too. The
    addresses are the capture's whatever the machine that decodes it (symbols come from its kallsyms)."""
    ds = tmp_path / "ds"
    ingest([str(BAD / "stacks-perf.data.xz")], ds)
    assert table(ds, "rejects").height == 0 and table(ds, "page_alloc").height == 39
    rows = _rows(ds)
    assert len(rows) == 491
    (tmp_path / "text").mkdir()
    text = _rows(_ingest(tmp_path / "text", "stacks-perf-ip.txt"))  # the capture's first two samples as text
    assert [r[2:5] for r in rows[:len(text)]] == [r[2:5] for r in text]


STACK_FILES = ["stacks-ftrace.txt", "stacks-trace-cmd.txt", "stacks-perf.txt", "stacks-perf-srcline.txt"]
_garbage = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                   min_size=1, max_size=60).filter(lambda s: s.strip() and not s.lstrip().startswith("#"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(STACK_FILES), cuts=st.lists(st.tuples(st.integers(0, 60), _garbage | st.just(" => x")),
                                                        max_size=6), drop=st.sets(st.integers(0, 60), max_size=4))
def test_stacks_among_garbage(name, cuts, drop):
    """Real stack captures with lines dropped and garbage (or stray frames) inserted anywhere: no
    exception; every line is at most one of an event, a reject, a frame; every frame is a row of
    stacks or a reject."""
    from thpreplay.parse.text import detect_format, detect_layout, parse_lines

    lines = [ln for i, ln in enumerate(_lines(name)) if i not in drop or i == 0]
    for at, text in sorted(cuts, reverse=True):
        lines.insert(min(at, len(lines)), text)
    # the files hold two or three events: with every event line dropped there is no trace left to read
    # (that is refused in one line, tests/test_bad_input.py)
    assume(any(re.search(r"[\s:]mm_\w+: ", ln) for ln in lines if not ln.lstrip().startswith("=>")))
    fmt = detect_format(lines, "t")
    frame = pl.DataFrame({"line": list(range(1, len(lines) + 1)), "text": lines}, schema={"line": pl.Int64, "text": pl.String})
    r = parse_lines(frame, detect_layout(lines, fmt), "t", unterminated_last=False)
    events = [n for f in r.tables.values() for n in f["line"].to_list()]
    rejected = r.rejects["line"].to_list() if r.rejects.height else []
    frames = r.stacks["frame_line"].to_list() if r.stacks is not None else []
    seen = events + rejected + frames
    assert len(seen) == len(set(seen))
    if r.stacks is not None:
        assert set(r.stacks["line"].to_list()) <= set(events) | set(rejected)
    for n, text in enumerate(lines, 1):
        if text.lstrip().startswith("=>") and not text.lstrip().startswith("=> 0"):
            assert (n in frames) != (n in rejected), (n, text)
