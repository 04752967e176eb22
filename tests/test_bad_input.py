"""`thpreplay ingest` on bad, damaged and unusual input: one test per failure mode.

Every data file under tests/data/bad/ is built from lines of the real captures in sample_traces/
(see tests/data/bad/README.md); binary and compressed inputs (NUL bytes, invalid UTF-8, CRLF,
truncated .gz/.zst/.xz, garbage, a >2 MB chunk-boundary file cut from the real 6.18 capture) are
made at test time in tmp_path.

Error messages are checked through the installed console script in a subprocess, exactly as a user
sees them: exit code, the first stderr line, the optional "hint:" line, no traceback, and no dataset
or hidden temporary directory left behind. Tests that only need the resulting tables run the same
Typer app in-process, which is much faster.
"""

from __future__ import annotations

import gzip
import json
import lzma
import zlib
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import zstandard
from typer.testing import CliRunner

from thpreplay.cli import app

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "data" / "bad"
FRAGMENT = BAD / "fragment-6.18.txt"  # 12 header lines + 28 events (18 mm_page_alloc, 10 page_fault_user)
EVENT_TABLES = ("page_alloc", "page_free", "extfrag", "compaction", "reclaim", "page_fault", "other_events")
TRUNCATED_HINT = "hint: the file was cut short, e.g. by a full disk; re-copy it or decompress what is there by hand"
NOT_A_TRACE = "not a recognised trace format (expected ftrace, trace-cmd report or perf script text)"


# --------------------------------------------------------------------------------------------- helpers


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "thpreplay"
    return [str(script)] if script.exists() else [sys.executable, "-m", "thpreplay"]


def run_cli(args: list[str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """The real console script, as a user runs it (no -q: errors must look the same without it)."""
    env = {k: v for k, v in os.environ.items() if k != "THPREPLAY_DEBUG"}
    return subprocess.run(
        [*_cli(), *args], cwd=cwd, input=stdin if stdin is not None else b"", capture_output=True, env=env,
        timeout=120,
    )


def assert_fails(proc: subprocess.CompletedProcess, first_line: str, hint: str | None = None) -> None:
    err = proc.stderr.decode("utf-8", errors="replace")
    assert "Traceback" not in err, err
    assert proc.returncode == 1, err
    assert err.splitlines() == [first_line] + ([hint] if hint else []), err
    assert proc.stdout == b""


def assert_no_dataset(directory: Path, name: str = "ds") -> None:
    """Atomic output: neither the dataset nor a hidden .NAME.tmp-* / .NAME.old-* directory remains."""
    assert not (directory / name).exists()
    assert sorted(p.name for p in directory.glob(f".{name}.*")) == []


def ingest(*args: str) -> None:
    """In-process `thpreplay ingest ARGS -q`; asserts success."""
    res = CliRunner().invoke(app, ["ingest", *args, "-q"])
    assert res.exit_code == 0, (res.output, res.exception)


def stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, data: bytes | None = None) -> str:
    """Put an input into tmp_path (a copy of tests/data/bad/NAME, or DATA) and work from there, so that
    paths in messages and the `source` column are the short name a user typed."""
    target = tmp_path / name
    if data is None:
        shutil.copyfile(BAD / name, target)
    else:
        target.write_bytes(data)
    monkeypatch.chdir(tmp_path)
    return name


def table(ds: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(str(ds / name / "*.parquet"))


def metadata(ds: Path) -> dict[str, str]:
    return dict(table(ds, "metadata").select("key", "value").iter_rows())


def rejects(ds: Path) -> list[tuple]:
    return table(ds, "rejects").sort("line").select("source", "line", "reason", "raw").rows()


def event_counts(ds: Path) -> dict[str, int]:
    return json.loads(metadata(ds)["events"])


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(data)


def _xz(data: bytes) -> bytes:
    return lzma.compress(data)


# ----------------------------------------------------------------------------- inputs that are refused


@pytest.mark.parametrize("name", ["empty.txt", "header-only.txt"])
def test_empty_file(tmp_path, monkeypatch, name):
    """A 0-byte file, and a real ftrace file whose buffer held no events (header lines only)."""
    stage(tmp_path, monkeypatch, name)
    proc = run_cli(["ingest", name, "-o", "ds"], tmp_path)
    assert_fails(proc, f"thpreplay: {name}: empty trace (no event lines)")
    assert_no_dataset(tmp_path)


def test_missing_file(tmp_path):
    proc = run_cli(["ingest", "no-such-trace.txt", "-o", "ds"], tmp_path)
    assert_fails(proc, "thpreplay: no-such-trace.txt: no such file or directory")
    assert_no_dataset(tmp_path)


def test_directory_without_trace(tmp_path):
    """A capture bundle (real snapshot files of the 6.18 capture) whose trace file is missing."""
    shutil.copytree(BAD / "bundle-no-trace", tmp_path / "bundle-no-trace")
    proc = run_cli(["ingest", "bundle-no-trace", "-o", "ds"], tmp_path)
    assert_fails(
        proc,
        "thpreplay: bundle-no-trace: no trace file in bundle",
        "hint: a bundle holds one trace: perf.data, or text such as trace.txt or perf.txt (optionally .gz/.zst/.xz)",
    )
    assert_no_dataset(tmp_path)


def _two_part_compressed(compress) -> bytes:
    """Lines 1-30 of the fragment as one complete gzip member / zstd frame, then lines 31-40 as a second
    member / frame cut in half: at least 30 lines can be recovered before the stream breaks (a streaming
    decompressor recovers some lines of the cut member too; see _recoverable_lines)."""
    lines = FRAGMENT.read_bytes().splitlines(keepends=True)
    first, rest = b"".join(lines[:30]), b"".join(lines[30:])
    second = compress(rest)
    return compress(first) + second[: len(second) // 2]


def _recoverable_lines(data: bytes, make) -> int:
    """Complete lines a streaming decompressor gets out of a truncated stream (member after member)."""
    out, rest = b"", data
    while rest:
        dec = make()
        out += dec.decompress(rest)
        rest = dec.unused_data if dec.eof else b""
    return out.count(b"\n")


@pytest.mark.parametrize(
    "ext, compress, decompressor",
    [
        ("gz", _gz, lambda: zlib.decompressobj(wbits=31)),
        ("zst", _zst, lambda: zstandard.ZstdDecompressor().decompressobj()),
        ("xz", _xz, lzma.LZMADecompressor),
    ],
)
def test_truncated_stream(tmp_path, ext, compress, decompressor):
    """The error names the last complete line that could be read before the stream breaks."""
    data = _two_part_compressed(compress)
    (tmp_path / f"trace.txt.{ext}").write_bytes(data)
    n = _recoverable_lines(data, decompressor)
    assert n >= 30
    proc = run_cli(["ingest", f"trace.txt.{ext}", "-o", "ds"], tmp_path)
    assert_fails(proc, f"thpreplay: trace.txt.{ext}: compressed stream ends early (truncated .{ext}) after line {n}",
                 TRUNCATED_HINT)
    assert_no_dataset(tmp_path)


def test_binary_garbage(tmp_path):
    """A binary (ELF magic, then random bytes: NULs, invalid UTF-8, a few newlines) given as a trace."""
    data = b"\x7fELF\x02\x01\x01\x00" + random.Random(20240611).randbytes(4088)
    (tmp_path / "garbage.bin").write_bytes(data)
    proc = run_cli(["ingest", "garbage.bin", "-o", "ds"], tmp_path)
    assert_fails(proc, f"thpreplay: garbage.bin:1: {NOT_A_TRACE}")
    assert_no_dataset(tmp_path)


def test_usage_error_without_output(tmp_path):
    shutil.copyfile(FRAGMENT, tmp_path / "trace.txt")
    proc = run_cli(["ingest", "trace.txt"], tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert "Missing option '-o'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.txt"]


# ------------------------------------------------------------------------------------------ the output


def test_output_parent_is_a_regular_file(tmp_path):
    shutil.copyfile(FRAGMENT, tmp_path / "trace.txt")
    (tmp_path / "afile").write_text("not a directory\n")
    proc = run_cli(["ingest", "trace.txt", "-o", "afile/ds"], tmp_path)
    assert_fails(proc, f"thpreplay: afile/ds: parent {tmp_path / 'afile'} is not a directory")
    assert (tmp_path / "afile").read_text() == "not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "trace.txt"]


def test_output_parent_is_a_regular_file_fails_cleanly(tmp_path, monkeypatch):
    """Whatever the wording, the failure itself is right: exit 1, one line naming the output, nothing left."""
    name = stage(tmp_path, monkeypatch, "fragment-6.18.txt")
    (tmp_path / "afile").write_text("not a directory\n")
    res = CliRunner().invoke(app, ["ingest", name, "-o", "afile/ds"])
    assert res.exit_code == 1
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("thpreplay: afile/ds: "), res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", name]


def test_output_under_proc(tmp_path):
    """/proc refuses new directories even for root."""
    shutil.copyfile(FRAGMENT, tmp_path / "trace.txt")
    target = "/proc/thpreplay-test-bad-input-ds"
    try:  # the exact OS wording (ENOENT for root, EACCES otherwise)
        os.mkdir(target + ".probe")
    except OSError as e:
        strerror = e.strerror
    else:  # pragma: no cover
        os.rmdir(target + ".probe")
        pytest.skip("/proc accepted a directory here")
    proc = run_cli(["ingest", "trace.txt", "-o", target], tmp_path)
    assert_fails(proc, f"thpreplay: {target}: cannot write in /proc: {strerror}")
    assert not Path(target).exists()
    assert [p for p in Path("/proc").glob(".thpreplay-test-bad-input-ds.*")] == []


def test_existing_output_refused_then_forced(tmp_path, monkeypatch):
    name = stage(tmp_path, monkeypatch, "fragment-6.18.txt")
    ingest(name, "-o", "ds")
    (tmp_path / "ds" / "KEEP").write_text("old dataset\n")

    proc = run_cli(["ingest", name, "-o", "ds"], tmp_path)
    assert_fails(proc, "thpreplay: ds: already exists; use --force to replace it")
    assert (tmp_path / "ds" / "KEEP").read_text() == "old dataset\n"  # untouched

    ingest(name, "-o", "ds", "--force")
    assert not (tmp_path / "ds" / "KEEP").exists()  # replaced, not merged
    assert event_counts(tmp_path / "ds")["page_alloc"] == 18
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", name]  # no .ds.old-* / .ds.tmp-*


def test_force_with_bad_input_keeps_the_old_dataset(tmp_path, monkeypatch):
    name = stage(tmp_path, monkeypatch, "fragment-6.18.txt")
    ingest(name, "-o", "ds")
    (tmp_path / "ds" / "KEEP").write_text("old dataset\n")
    (tmp_path / "garbage.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00" + random.Random(1).randbytes(2040))
    res = CliRunner().invoke(app, ["ingest", "garbage.bin", "-o", "ds", "--force"])
    assert res.exit_code == 1
    assert res.stderr == f"thpreplay: garbage.bin:1: {NOT_A_TRACE}\n"
    assert (tmp_path / "ds" / "KEEP").read_text() == "old dataset\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", name, "garbage.bin"]


# ------------------------------------------------------------------------- damaged lines become rejects


def test_nul_bytes_inside_a_line(tmp_path, monkeypatch):
    """A run of NUL bytes overwrites the middle of line 14 (as after a crash): that line is rejected,
    every other line is read."""
    data = bytearray(FRAGMENT.read_bytes())
    start = sum(len(x) for x in FRAGMENT.read_bytes().splitlines(keepends=True)[:13])
    data[start + 60: start + 72] = b"\x00" * 12
    name = stage(tmp_path, monkeypatch, "nul.txt", bytes(data))
    ingest(name, "-o", "ds")
    raw = bytes(data).splitlines()[13].decode()
    assert "\x00" in raw
    assert rejects(tmp_path / "ds") == [(name, 14, "NUL byte in line (binary data in a text trace)", raw)]
    alloc = table(tmp_path / "ds", "page_alloc")
    assert alloc.height == 17 and 14 not in alloc.get_column("line").to_list()
    assert table(tmp_path / "ds", "page_fault").height == 10


@pytest.mark.parametrize(
    "source, line_no, pid",
    [("fragment-6.18.txt", 20, 9958), ("perf-symbolic-gfp.txt", 3, 9779)],
    ids=["ftrace", "perf"],
)
def test_non_utf8_comm_is_kept(tmp_path, monkeypatch, source, line_no, pid):
    """A comm with bytes that are not UTF-8 (the kernel prints comm bytes as they are, %16s): the event
    is kept, the bad bytes become U+FFFD, nothing is rejected."""
    lines = (BAD / source).read_bytes().splitlines(keepends=True)
    assert lines[line_no - 1].startswith(b"         thpfrag")
    lines[line_no - 1] = lines[line_no - 1].replace(b"         thpfrag", b"thp\xff\xfefrag".rjust(16), 1)
    name = stage(tmp_path, monkeypatch, "nonutf8.txt", b"".join(lines))
    ingest(name, "-o", "ds")
    ingest(str(BAD / source), "-o", "ref")

    assert rejects(tmp_path / "ds") == []
    alloc, ref = table(tmp_path / "ds", "page_alloc"), table(tmp_path / "ref", "page_alloc")
    assert alloc.height == ref.height
    row = alloc.filter(pl.col("line") == line_no).row(0, named=True)
    assert (row["comm"], row["pid"]) == ("thp\ufffd\ufffdfrag", pid)
    assert row["pfn"] == ref.filter(pl.col("line") == line_no).item(0, "pfn")


def test_line_cut_at_end_of_file(tmp_path, monkeypatch):
    """The last line stops inside gfp_flags with no newline: it would parse as a (wrong) event, so it
    must be a reject; the 39 lines before it are read."""
    data = FRAGMENT.read_bytes()
    assert data.endswith(b"gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_COMP\n")
    cut = data[: data.rindex(b"|__GFP_COMP\n")]
    name = stage(tmp_path, monkeypatch, "cut.txt", cut)
    ingest(name, "-o", "ds")
    partial = cut.splitlines()[-1].decode()
    assert partial.endswith("gfp_flags=GFP_HIGHUSER_MOVABLE")
    assert rejects(tmp_path / "ds") == [
        (name, 40, "line cut mid-way (input does not end with a newline)", partial)
    ]
    assert event_counts(tmp_path / "ds")["page_alloc"] == 17
    assert metadata(tmp_path / "ds")["lines"] == "40"


@pytest.mark.parametrize(
    "name, fmt, bad_lines, reason, events",
    [
        ("mixed-formats.txt", "ftrace", [25, 26], "perf script line inside a ftrace trace (mixed formats)", 18),
        ("mixed-formats-perf.txt", "perf", [7, 8], "ftrace line inside a perf trace (mixed formats)", 10),
    ],
    ids=["perf-in-ftrace", "ftrace-in-perf"],
)
def test_mixed_formats(tmp_path, monkeypatch, name, fmt, bad_lines, reason, events):
    stage(tmp_path, monkeypatch, name)
    ingest(name, "-o", "ds")
    text = lines_of(BAD / name)
    assert rejects(tmp_path / "ds") == [(name, n, reason, text[n - 1]) for n in bad_lines]
    assert sum(event_counts(tmp_path / "ds").values()) == events
    assert json.loads(metadata(tmp_path / "ds")["trace_formats"]) == {name: fmt}


def test_unknown_events_go_to_other_events(tmp_path, monkeypatch):
    name = stage(tmp_path, monkeypatch, "unknown-events.txt")
    ingest(name, "-o", "ds")
    assert rejects(tmp_path / "ds") == []
    other = table(tmp_path / "ds", "other_events").sort("line")
    assert other.select("line", "ts_ns", "cpu", "pid", "comm", "event", "payload").rows() == [
        (25, 1250574100000, 1, 0, "<idle>", "sched_wakeup", "comm=thpfrag pid=9959 prio=120 target_cpu=000"),
        (26, 1250574101000, 0, 9958, "thpfrag", "mm_page_pcpu_drain",
         "page=00000000f43b0716 pfn=0x29fbd4 order=0 migratetype=1"),
        (27, 1250574102000, 0, 12, "kworker/0:1", "workqueue_execute_start",
         "work struct 000000007c5e2b90: function vmstat_update"),
    ]
    assert other.get_column("source").unique().to_list() == [name]
    counts = event_counts(tmp_path / "ds")
    assert counts["other_events"] == 3 and sum(counts.values()) == 19


def test_events_with_missing_fields(tmp_path, monkeypatch):
    name = stage(tmp_path, monkeypatch, "missing-fields.txt")
    ingest(name, "-o", "ds")
    text = lines_of(BAD / name)
    expected = [
        (1, "mm_page_alloc: missing field pfn"),
        (6, "mm_compaction_end: missing field status"),
        (10, "mm_page_alloc: missing field gfp_flags"),
        (12, "mm_compaction_try_to_compact_pages: missing field order"),
    ]
    assert rejects(tmp_path / "ds") == [(name, n, reason, text[n - 1]) for n, reason in expected]
    ds = tmp_path / "ds"
    assert table(ds, "page_alloc").get_column("line").sort().to_list() == [8, 9]
    assert table(ds, "page_fault").get_column("line").sort().to_list() == [2, 11]
    assert table(ds, "compaction").get_column("line").sort().to_list() == [3, 4, 5, 7, 13, 14, 15]
    assert metadata(ds)["rejects"] == "4"


def test_timestamps_backwards_across_cpus(tmp_path, monkeypatch):
    """6.1 guest lines where CPU 1's events arrive late (trace_pipe style): time steps back twice."""
    name = stage(tmp_path, monkeypatch, "ts-backwards.txt")
    ingest(name, "-o", "ds")
    ds = tmp_path / "ds"
    meta = metadata(ds)
    assert meta["ts_backwards"] == "2"
    assert (meta["ts_min_ns"], meta["ts_max_ns"]) == ("31723684000", "31727912000")
    assert rejects(ds) == []
    counts = event_counts(ds)
    assert (counts["page_alloc"], counts["page_free"], counts["page_fault"]) == (10, 4, 4)
    free = table(ds, "page_free").sort("line")
    assert free.select("line", "cpu", "ts_ns").rows() == [
        (19, 1, 31726144000), (20, 1, 31726233000), (22, 1, 31726236000), (23, 1, 31726238000),
    ]


def test_timestamps_backwards_at_a_chunk_boundary(tmp_path, monkeypatch):
    """The first ~2.3 MB of the real 6.18 capture (no backward step in it), with one line just after the
    first input chunk made a late CPU 1 event 1 us older than the chunk's last line: one backward step."""
    from thpreplay import inputs

    first_chunk = getattr(inputs, "FIRST_CHUNK_BYTES", 2 << 20)
    with (ROOT / "sample_traces/local-6.18-ftrace/trace.txt.zst").open("rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read(first_chunk + (256 << 10))
    lines = data[: data.rindex(b"\n") + 1].splitlines(keepends=True)
    k = data[:first_chunk].count(b"\n")  # lines in the first chunk of a plain file
    stamp = re.compile(rb"\] \S+ +(\d+)\.(\d{6}): ")
    last = stamp.search(lines[k - 1])
    assert last and b"[000]" in lines[k + 1] and stamp.search(lines[k + 1])
    older = int(last.group(1)) * 10**6 + int(last.group(2)) - 1
    new_ts = f"{older // 10**6}.{older % 10**6:06d}".encode()
    m = stamp.search(lines[k + 1])
    lines[k + 1] = (lines[k + 1][: m.start(1)] + new_ts + lines[k + 1][m.end(2):]).replace(b"[000]", b"[001]", 1)
    name = stage(tmp_path, monkeypatch, "boundary.txt", b"".join(lines))
    ingest(name, "-o", "ds")
    meta = metadata(tmp_path / "ds")
    assert (meta["rejects"], meta["ts_backwards"]) == ("0", "1")


# ------------------------------------------------------------------------ unusual but valid line forms


@pytest.mark.parametrize("source", ["fragment-6.18.txt", "perf-symbolic-gfp.txt"], ids=["ftrace", "perf"])
def test_crlf_line_endings_parse_like_lf(tmp_path, monkeypatch, source):
    data = (BAD / source).read_bytes()
    stage(tmp_path, monkeypatch, "lf.txt", data)
    stage(tmp_path, monkeypatch, "crlf.txt", data.replace(b"\n", b"\r\n"))
    ingest("lf.txt", "-o", "lf")
    ingest("crlf.txt", "-o", "crlf")
    assert rejects(tmp_path / "crlf") == []
    for t in EVENT_TABLES:
        a = table(tmp_path / "lf", t).drop("source")
        b = table(tmp_path / "crlf", t).drop("source")
        assert a.equals(b), t
    assert metadata(tmp_path / "crlf")["lines"] == metadata(tmp_path / "lf")["lines"]


def test_failed_to_parse_payload(tmp_path, monkeypatch):
    """libtraceevent's fallback prints the raw fields: decimal pfn and gfp_flags, and pfn -1UL (the
    stored value for "no page") for a failed attempt."""
    name = stage(tmp_path, monkeypatch, "failed-to-parse.perf.txt")
    ingest(name, "-o", "ds")
    assert rejects(tmp_path / "ds") == []
    alloc = table(tmp_path / "ds", "page_alloc").sort("line")
    assert alloc.height == 6
    cols = ["line", "ts_ns", "comm", "pid", "cpu", "pfn", "success", "order", "migratetype", "gfp_flags",
            "gfp_mask", "gfp_direct_reclaim", "gfp_kswapd_reclaim", "gfp_thisnode", "thp_attempt"]
    got = alloc.filter(pl.col("line").is_in([3, 4])).select(cols).rows()
    assert got == [
        (3, 1127792725400, "thpfrag", 9779, 0, 1534487, True, 0, 0, "3264", 0xCC0, True, True, False, False),
        (4, 1127792725500, "thpfrag", 9779, 0, None, False, 9, 1, "3941578", 0x3C24CA, True, False, True, True),
    ]


def test_pfn0_failed_attempt(tmp_path, monkeypatch):
    """A real failed THP attempt on the 6.1 guest (page=0000000000000000 pfn=0x0) stays a row."""
    name = stage(tmp_path, monkeypatch, "pfn0-failed.txt")
    ingest(name, "-o", "ds")
    assert rejects(tmp_path / "ds") == []
    alloc = table(tmp_path / "ds", "page_alloc").sort("line")
    assert alloc.get_column("line").to_list() == [1, 8, 9, 10]
    cols = ["line", "pfn", "success", "order", "gfp_flags", "gfp_thisnode", "gfp_noretry", "thp_attempt", "node"]
    assert alloc.filter(pl.col("order") == 9).select(cols).rows() == [
        (8, None, False, 9, "GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE", True, True, True, None),
        (9, 0x79000, True, 9, "GFP_TRANSHUGE", False, False, True, 0),
    ]


def test_4x_style_lines(tmp_path, monkeypatch):
    """4.x ftrace: 4 latency characters, 5-wide pid, decimal pfn, and "(null)" padded to 16 for the
    page of a failed attempt (pfn=0)."""
    name = stage(tmp_path, monkeypatch, "ftrace-4x.txt")
    ingest(name, "-o", "ds")
    ds = tmp_path / "ds"
    assert rejects(ds) == []
    cols = ["line", "comm", "pid", "tgid", "cpu", "ts_ns", "pfn", "success", "order", "migratetype",
            "gfp_thisnode", "thp_attempt"]
    assert table(ds, "page_alloc").sort("line").select(cols).rows() == [
        (12, "qemu-kvm", 4211, None, 12, 35218123456000, 8388608, True, 9, 1, True, True),
        (13, "qemu-kvm", 4211, None, 12, 35218123470000, None, False, 9, 1, True, True),
    ]
    assert table(ds, "page_free").select("line", "pid", "pfn", "order").rows() == [(14, 4211, 8388608, 9)]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("record-tgid.txt", [(5 + i, 9958, 9958, 0) for i in range(6)] + [(11, 9958, None, 0)]),
        ("record-tgid-4x.txt", [(1, 4211, 4211, 12)]),
    ],
    ids=["6.x-(%7d)", "4.x-(%5d)"],
)
def test_record_tgid_column(tmp_path, monkeypatch, name, expected):
    """ftrace with options/record-tgid: "(   9958)" (6.x), "( 4211)" (4.x), "(-------)" for unknown."""
    stage(tmp_path, monkeypatch, name)
    ingest(name, "-o", "ds")
    ds = tmp_path / "ds"
    assert rejects(ds) == []
    assert table(ds, "page_alloc").sort("line").select("line", "pid", "tgid", "cpu").rows() == expected
    assert metadata(ds)["has_tgid"] == "true"


def test_perf_script_raw_hex_gfp(tmp_path, monkeypatch):
    """perf script printing gfp_flags as raw hex (no flag names): the masks and flags are the same as for
    the symbolic names of the same real lines."""
    stage(tmp_path, monkeypatch, "perf-raw-hex-gfp.txt")
    stage(tmp_path, monkeypatch, "perf-symbolic-gfp.txt")
    ingest("perf-raw-hex-gfp.txt", "-o", "hex")
    ingest("perf-symbolic-gfp.txt", "-o", "sym")
    assert rejects(tmp_path / "hex") == []
    hexed = table(tmp_path / "hex", "page_alloc").sort("line")
    sym = table(tmp_path / "sym", "page_alloc").sort("line")
    printed = hexed.get_column("gfp_flags").to_list()
    assert all(v.startswith("0x") for v in printed)
    assert hexed.get_column("gfp_mask").to_list() == [int(v, 16) for v in printed]
    flags = ["gfp_mask", *[c for c in sym.columns if c.startswith("gfp_") and c not in ("gfp_flags", "gfp_mask")],
             "thp_attempt", "pfn", "order", "success"]
    assert hexed.select(flags).equals(sym.select(flags))
    thp = hexed.filter(pl.col("order") == 9).select("gfp_flags", "gfp_mask", "gfp_thisnode", "gfp_noretry",
                                                     "thp_attempt").rows()
    assert thp == [("0x3d24ca", 0x3D24CA, True, True, True)] * 2
    assert json.loads(metadata(tmp_path / "hex")["gfp_unknown_names"]) == []


# ------------------------------------------------------------------------ compressed input and stdin


@pytest.mark.parametrize(
    "ext, compress",
    [
        ("gz", _gz),
        ("zst", _zst),
        ("xz", _xz),
    ],
)
def test_complete_compressed_input_reads_like_plain(tmp_path, monkeypatch, ext, compress):
    """The control for the truncated-stream tests: the whole fragment, compressed, reads like the text."""
    name = stage(tmp_path, monkeypatch, f"trace.txt.{ext}", compress(FRAGMENT.read_bytes()))
    ingest(name, "-o", "ds")
    ingest(str(FRAGMENT), "-o", "ref")
    for t in ("page_alloc", "page_fault"):
        assert table(tmp_path / "ds", t).drop("source").equals(table(tmp_path / "ref", t).drop("source")), t


def test_stdin(tmp_path):
    proc = run_cli(["ingest", "-", "-o", "ds"], tmp_path, stdin=FRAGMENT.read_bytes())
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    ds = tmp_path / "ds"
    alloc = table(ds, "page_alloc")
    assert alloc.height == 18 and alloc.get_column("source").unique().to_list() == ["-"]
    assert json.loads(metadata(ds)["inputs"]) == ["-"]
    assert json.loads(metadata(ds)["trace_formats"]) == {"-": "ftrace"}
    assert rejects(ds) == []


def test_empty_stdin(tmp_path):
    proc = run_cli(["ingest", "-", "-o", "ds"], tmp_path, stdin=b"")
    assert_fails(proc, "thpreplay: -: empty trace (no event lines)")
    assert_no_dataset(tmp_path)
