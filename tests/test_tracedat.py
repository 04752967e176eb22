"""trace-cmd's trace.dat read natively (parse/tracedat.py, parse/_tracedat.c, parse/tpformat.py).

The captures in tests/data/tracedat/ (README.md there: how they were made) are one real recording in
four encodings: v6, v7 uncompressed, v7 zstd (trace-cmd's default) and v7 zlib. The native reader
prints each as `trace-cmd report -t` prints it, byte for byte, and ingest turns that text into the
same tables as the `trace-cmd report -t` text itself (the text side needs trace-cmd and is skipped
without it). Damaged files fail with one `thpreplay:` line naming the file, through the CLI.
"""

from __future__ import annotations

import lzma
import shutil
import struct
import subprocess
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from test_bad_input import assert_fails, assert_no_dataset, run_cli
from thpreplay import ingest as ingest_mod
from thpreplay.cli import app
from thpreplay.errors import InputError
from thpreplay.parse import tpformat, tracedat

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "tracedat"
TRACE_CMD = shutil.which("trace-cmd")
needs_trace_cmd = pytest.mark.skipif(TRACE_CMD is None, reason="trace-cmd not installed")
needs_c = pytest.mark.skipif(not tracedat.AVAILABLE, reason="parse/_tracedat.c not built")
TABLES = ("page_alloc", "page_free", "extfrag", "compaction", "reclaim", "page_fault", "other_events", "rejects",
          "extra_fields", "thp_faults")


def _plain(tmp_path: Path, name: str) -> Path:
    """A capture as a plain file (the .xz ones are kept compressed in the repository)."""
    src = DATA / name
    if name.endswith(".xz"):
        out = tmp_path / name[:-3]
        out.write_bytes(lzma.decompress(src.read_bytes()))
        return out
    return src


def _rendered(path: Path) -> bytes:
    return b"".join(tracedat.text_blocks(str(path), tracedat.read(path)))


def _tables(dataset: Path) -> dict[str, pl.DataFrame]:
    out = {}
    for t in TABLES:
        parts = sorted((dataset / t).glob("*.parquet"))
        frame = pl.read_parquet(parts) if parts else pl.DataFrame()
        if "source" in frame.columns:
            frame = frame.drop("source")
        out[t] = frame.sort(frame.columns) if frame.height else frame
    return out


@pytest.fixture(scope="module")
def zstd_text(tmp_path_factory) -> bytes:
    return _rendered(DATA / "v7-zstd.dat")


@needs_c
@pytest.mark.parametrize("name", ["v6.dat.xz", "v7-none.dat.xz", "v7-zlib.dat"])
def test_every_encoding_reads_the_same(tmp_path, zstd_text, name):
    """v6, v7 uncompressed and v7 zlib hold the same recording as v7 zstd: the same text, line for line."""
    assert _rendered(_plain(tmp_path, name)) == zstd_text


@needs_c
@needs_trace_cmd
@pytest.mark.parametrize("name", ["v7-zstd.dat", "v6.dat.xz", "v7-none.dat.xz"])
def test_text_is_trace_cmd_report(tmp_path, name):
    path = _plain(tmp_path, name)
    ref = subprocess.run([TRACE_CMD, "report", "-t", str(path)], capture_output=True, check=True).stdout
    assert _rendered(path) == ref


def test_the_captures_hold_what_the_tests_need(zstd_text):
    text = zstd_text.decode()
    assert text.startswith("cpus=2\n")
    for event in ("mm_page_alloc:", "mm_page_free:", "page_fault_user:", "mm_compaction_end:",
                  "mm_compaction_migratepages:"):
        assert event in text
    assert "CPU:1 [" in text or "CPU:0 [" in text  # a page that lost events


@needs_c
@pytest.mark.parametrize("chunk", [None, 1 << 16], ids=["one-chunk", "64KiB-chunks"])
def test_tables_equal_the_trace_cmd_text_path(tmp_path, zstd_text, monkeypatch, chunk):
    """ingest trace.dat == ingest of its `trace-cmd report -t` text: every column of every table (the
    source column names the file); `line` is the line in that text. The text is trace-cmd's own when
    it is installed, else the reader's (equal to it, test_text_is_trace_cmd_report)."""
    if TRACE_CMD:
        text = subprocess.run([TRACE_CMD, "report", "-t", str(DATA / "v7-zstd.dat")], capture_output=True,
                              check=True).stdout
    else:
        text = zstd_text
    (tmp_path / "report.txt").write_bytes(text)
    if chunk:  # many chunks: the pipeline numbers the lines of those after the first
        monkeypatch.setattr(tracedat, "FIRST_BYTES", chunk // 4)
        monkeypatch.setattr(tracedat, "RENDER_BYTES", chunk)
    native = ingest_mod.ingest([str(DATA / "v7-zstd.dat")], tmp_path / "native")
    textual = ingest_mod.ingest([str(tmp_path / "report.txt")], tmp_path / "text")
    a, b = _tables(tmp_path / "native"), _tables(tmp_path / "text")
    for t in TABLES:
        assert a[t].equals(b[t]), t
    assert a["page_alloc"].height > 1000 and a["page_free"].height > 1000 and a["compaction"].height > 10
    assert native.lines == textual.lines and native.lost_events == textual.lost_events > 0
    assert native.formats == {str(DATA / "v7-zstd.dat"): "trace.dat"}
    assert native.gfp_table == textual.gfp_table


@needs_c
def test_lost_events_are_told(tmp_path):
    """A page that stored its count is counted (CPU:0 [70433 EVENTS DROPPED]); one that did not is a warning."""
    summary = ingest_mod.ingest([str(DATA / "v7-zstd.dat")], tmp_path / "ds")
    assert summary.lost_events == 70433
    assert "the kernel dropped 70433 events (ring buffer overrun): counts are low" in summary.warnings
    assert (f"{DATA / 'v7-zstd.dat'}: the ring buffer lost events before 1 page without storing how many "
            f"([EVENTS DROPPED] lines): counts are low") in summary.warnings
    rejects = pl.read_parquet(sorted((tmp_path / "ds" / "rejects").glob("*.parquet")))
    assert rejects.height == 0


@needs_c
def test_compressed_container_and_bundle(tmp_path, zstd_text):
    """a trace.dat.xz, and a capture bundle holding a trace.dat, read as the plain file."""
    plain = ingest_mod.ingest([str(DATA / "v6.dat.xz")], tmp_path / "xz")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copyfile(DATA / "v7-zstd.dat", bundle / "trace.dat")
    in_bundle = ingest_mod.ingest([str(bundle)], tmp_path / "b")
    assert plain.events == in_bundle.events and plain.lines == in_bundle.lines == zstd_text.count(b"\n")


@needs_trace_cmd
def test_without_the_c_reader_trace_cmd_reads_it(tmp_path, monkeypatch):
    """Unsupported (here: the C renderer not built) -> one warning and `trace-cmd report -t`: same tables."""
    native = ingest_mod.ingest([str(DATA / "v7-zstd.dat")], tmp_path / "native")
    monkeypatch.setattr(tracedat, "_tracedat", None)
    fallback = ingest_mod.ingest([str(DATA / "v7-zstd.dat")], tmp_path / "fallback")
    assert fallback.events == native.events and fallback.lines == native.lines
    assert (f"{DATA / 'v7-zstd.dat'}: the native trace.dat reader does not read the C reader (parse/_tracedat.c) "
            f"is not built: read through `trace-cmd report -t`") in fallback.warnings
    a, b = _tables(tmp_path / "native"), _tables(tmp_path / "fallback")
    for t in TABLES:
        assert a[t].equals(b[t]), t


def test_unsupported_without_trace_cmd_is_one_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tracedat, "_tracedat", None)
    monkeypatch.setattr(tracedat.shutil, "which", lambda name: None)
    with pytest.raises(InputError) as e:
        ingest_mod.ingest([str(DATA / "v7-zstd.dat")], tmp_path / "ds")
    assert str(e.value).startswith(f"{DATA / 'v7-zstd.dat'}: the native trace.dat reader does not read the C "
                                   f"reader (parse/_tracedat.c) is not built, and trace-cmd is not installed")
    assert_no_dataset(tmp_path)


# ------------------------------------------------------------------------- damaged files, through the CLI


def _damaged(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "bad.dat"
    p.write_bytes(data)
    return p


def _v6(tmp_path: Path) -> tuple[bytearray, int]:
    """The v6 capture and the file offset of CPU 0's first page."""
    d = bytearray(lzma.decompress((DATA / "v6.dat.xz").read_bytes()))
    i = d.index(b"flyrecord\0") + 10
    return d, struct.unpack_from("<Q", d, i)[0]


def _fails(tmp_path: Path, data: bytes, message: str) -> None:
    """The CLI's stderr is exactly one line (in-process: the console script costs seconds per start;
    test_truncated runs the real one)."""
    path = _damaged(tmp_path, data)
    res = CliRunner().invoke(app, ["ingest", str(path), "-o", str(tmp_path / "ds")])
    assert res.exit_code == 1, (res.output, res.exception)
    assert res.stderr == f"thpreplay: {path}: {message}\n"
    assert res.stdout == ""
    assert_no_dataset(tmp_path)


def test_truncated(tmp_path):
    data = (DATA / "v7-zstd.dat").read_bytes()
    path = _damaged(tmp_path, data[:100_000])
    proc = run_cli(["ingest", str(path), "-o", str(tmp_path / "ds")], tmp_path)
    assert_fails(proc, f"thpreplay: {path}: damaged trace.dat: truncated: options section header at byte 133080 "
                       f"needs 2 bytes, the file has 100000")
    assert_no_dataset(tmp_path)


def test_wrong_magic(tmp_path):
    data = (DATA / "v7-zstd.dat").read_bytes()
    _fails(tmp_path, data[:9] + b"X" + data[10:], "damaged trace.dat: wrong magic (not a trace-cmd trace.dat)")


def test_unknown_version(tmp_path):
    data = (DATA / "v7-zstd.dat").read_bytes()
    assert data[10:12] == b"7\0"
    _fails(tmp_path, data[:10] + b"9" + data[11:],
           "damaged trace.dat: file version '9': this reader knows versions 6 and 7")


@needs_c
def test_corrupted_page_header(tmp_path):
    d, page = _v6(tmp_path)
    struct.pack_into("<Q", d, page + 8, 0x7FF_FFFF)  # commit: more data than a page holds
    _fails(tmp_path, bytes(d), "damaged trace.dat: cpu 0 page 0: page header says 134217727 data bytes, past the "
                               "4096-byte page")


@needs_c
def test_record_length_past_the_page(tmp_path):
    d, page = _v6(tmp_path)
    size = struct.unpack_from("<Q", d, page + 8)[0] & 0x7FF_FFFF
    struct.pack_into("<II", d, page + 16, 0, 0x10_0000)  # type_len 0: the length word says 1 MiB
    _fails(tmp_path, bytes(d), f"damaged trace.dat: cpu 0 page 0: record at byte 0 is 1048572 bytes, past the page "
                               f"data ({size} bytes)")


def test_compressed_section_that_does_not_decompress(tmp_path):
    d = bytearray((DATA / "v7-zstd.dat").read_bytes())
    # the event formats section (id 18): its zstd frame's magic overwritten
    pos = 18  # magic, "7\0", endianness, long size, page size; then the compression name and version
    pos = d.index(b"\0", d.index(b"\0", pos) + 1) + 1 + 8  # and the first options offset
    while struct.unpack_from("<H", d, pos)[0] != 18:
        pos += 16 + struct.unpack_from("<Q", d, pos + 8)[0]
    start = pos + 16 + 8
    assert d[start:start + 4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    d[start:start + 4] = b"\xa5" * 4
    path = _damaged(tmp_path, bytes(d))
    res = CliRunner().invoke(app, ["ingest", str(path), "-o", str(tmp_path / "ds")])
    err = res.stderr
    assert res.exit_code == 1 and len(err.splitlines()) == 1, (res.output, res.exception)
    assert err.startswith(f"thpreplay: {path}: damaged trace.dat: the event formats section does not decompress "
                          f"(zstd: "), err
    assert_no_dataset(tmp_path)


def test_on_stdin_is_refused(tmp_path):
    res = CliRunner().invoke(app, ["ingest", "-", "-o", str(tmp_path / "ds")], input=(DATA / "v7-zstd.dat").read_bytes())
    assert res.exit_code == 1 and res.stderr == ("thpreplay: -: is a trace-cmd trace.dat; give it as a file (not on "
                                                 "stdin or a pipe)\n"), (res.output, res.exception)


# ------------------------------------------------------------------------------ print fmt compilation


def _event(fields: str, fmt: str) -> tpformat.EventFormat:
    text = ("name: test\nID: 7\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
            "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n" + fields + f"\nprint fmt: {fmt}\n")
    return tpformat.parse(text, "test")


def test_print_fmt_outside_the_subset_prints_failed_to_parse():
    ev = _event("\tfield:unsigned long x;\toffset:8;\tsize:8;\tsigned:0;", '"x=%lu", some_helper(REC->x)')
    assert tpformat.compile_event(ev) is None
    prog = tpformat.failed_program(ev)
    assert prog.strings[0] == b"[FAILED TO PARSE]" and b" x=" in prog.strings


def test_deep_expression_is_refused_not_a_crash():
    ev = _event("\tfield:int x;\toffset:8;\tsize:4;\tsigned:1;", '"x=%d", ' + "(" * 5000 + "REC->x" + ")" * 5000)
    assert tpformat.compile_event(ev) is None


def test_flag_table_constants_are_evaluated():
    ev = _event("\tfield:unsigned long f;\toffset:8;\tsize:8;\tsigned:0;",
                '"f=%s", __print_flags(REC->f, "|", {( unsigned long)((( gfp_t)((((1UL))) << (10)))), "A"}, '
                '{0x2u, "B"})')
    prog = tpformat.compile_event(ev)
    assert prog is not None and prog.tables == [2, 1024, 1, 2, 2]


@needs_c
def test_every_program_tpformat_makes_is_one_the_renderer_takes():
    """Found by fuzzing: a __data_loc field of a size the kernel never writes (1) made a program the C
    side refused. Now the print fmt is not compiled and the FAILED TO PARSE program leaves it out."""
    ev = _event("\tfield:__data_loc char[] name;\toffset:8;\tsize:1;\tsigned:0;", '"n=%s", __get_str(name)')
    assert tpformat.compile_event(ev) is None
    r = tracedat._tracedat.Renderer([], 8, 0, 4096, [ev.id], [])
    r.add_plan((ev.id, b"test", *tpformat.failed_program(ev).pack(), 4, 4))
