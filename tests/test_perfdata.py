"""The native perf.data reader (parse/_perfdata.c, parse/perfdata.py).

Equivalence: every perf.data here gives the same tables through thpreplay's reader as through
`perf script` text (THPREPLAY_PERF_SCRIPT=1), and the reader's text is perf script's, byte for byte.
The captures are real (tests/data/perfdata/README.md); the bundled 6.18 sample is the slow case.
Damaged files are made from them at test time, one per failure mode, and checked through the CLI:
one `thpreplay:` line, no traceback, no dataset.
"""

from __future__ import annotations

import lzma
import os
import shutil
import struct
import subprocess
from pathlib import Path

import polars as pl
import pytest

from test_bad_input import assert_fails, assert_no_dataset, run_cli
from thpreplay.ingest import ingest
from thpreplay.parse import perfdata
from thpreplay.cli import app
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "perfdata"
SAMPLE = ROOT / "sample_traces" / "local-6.18-perf"
PERF = shutil.which("perf")
TABLES = ("page_alloc", "page_free", "extfrag", "compaction", "reclaim", "page_fault", "other_events", "rejects",
          "stacks", "extra_fields", "thp_faults", "topology", "vmstat", "free_lists")
SCRIPT_ARGS = ["script", "-F", "comm,tid,cpu,time,event,trace", "--ns", "-i"]

pytestmark = pytest.mark.skipif(not perfdata.AVAILABLE, reason="the perf.data reader is not built")


def _plain(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name.removesuffix(".xz")
    out.write_bytes(lzma.decompress((DATA / name).read_bytes()))
    return out


def _native_text(path: Path) -> bytes:
    native, why = perfdata.open_native(str(path), path.name)
    assert native is not None, why
    parts = []
    while (part := native.reader.read(perfdata.CHUNK_BYTES))[1]:  # the text route (chunks() types what it can)
        parts.append(part[0])
    return b"".join(parts)


def _tables(ds: Path) -> dict[str, pl.DataFrame]:
    return {t: pl.read_parquet(str(ds / t / "*.parquet")) for t in TABLES}


def _meta(ds: Path) -> dict:
    return dict(pl.read_parquet(str(ds / "metadata" / "*.parquet")).select("key", "value").iter_rows())


def _equivalent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: Path, **kw) -> None:
    ingest([str(source)], tmp_path / "native", **kw)
    monkeypatch.setenv(perfdata.FORCE_ENV, "1")
    ingest([str(source)], tmp_path / "script", **kw)
    monkeypatch.delenv(perfdata.FORCE_ENV)
    native, script = _tables(tmp_path / "native"), _tables(tmp_path / "script")
    for t in TABLES:
        assert native[t].equals(script[t]), t
    assert sum(native[t].height for t in TABLES[:7]) > 0
    mn, ms = _meta(tmp_path / "native"), _meta(tmp_path / "script")
    assert mn.pop("perf_data_native") != "{}" and ms.pop("perf_data_native") == "{}"
    assert mn == ms


@pytest.mark.skipif(PERF is None, reason="perf is not installed (the text side of the comparison)")
@pytest.mark.parametrize("name", ["plain.perf.data.xz", "zstd.perf.data.xz"])
def test_text_is_perf_scripts(tmp_path: Path, name: str) -> None:
    plain = _plain(tmp_path, name)
    expected = subprocess.run([PERF, *SCRIPT_ARGS, str(plain)], capture_output=True, check=True).stdout
    assert _native_text(plain) == expected
    assert expected.count(b"\n") > 500


@pytest.mark.skipif(PERF is None, reason="perf is not installed (the text side of the comparison)")
@pytest.mark.parametrize("name", ["plain.perf.data.xz", "zstd.perf.data.xz"])
def test_tables_equal_perf_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _equivalent(tmp_path, monkeypatch, DATA / name, kernel_release="6.18.44")


@pytest.mark.slow
@pytest.mark.skipif(PERF is None, reason="perf is not installed (the text side of the comparison)")
def test_bundled_sample_tables_equal_perf_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _equivalent(tmp_path, monkeypatch, SAMPLE)


def test_compressed_records_counted(tmp_path: Path) -> None:
    native, _ = perfdata.open_native(str(_plain(tmp_path, "zstd.perf.data.xz")), "z")
    lines = sum(c.typed.lines if isinstance(c, perfdata.TypedChunk) else c.data.count(b"\n") for c in native.chunks())
    assert native.info["compressed_records"] > 0 and native.info["samples"] == lines == 706
    assert native.info["osrelease"] == "6.18.44-fc-v1147" and native.info["lost"] == 0


def test_without_perf(tmp_path: Path) -> None:
    """perf is not needed for a file the reader reads."""
    shutil.copyfile(DATA / "plain.perf.data.xz", tmp_path / "p.perf.data.xz")
    proc = _cli_without_perf(["ingest", "p.perf.data.xz", "-o", "ds", "-q", "--kernel-release", "6.18"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert pl.read_parquet(str(tmp_path / "ds" / "page_alloc" / "*.parquet")).height > 0


# ------------------------------------------------------------------------------- fallback and damage


def _cli_without_perf(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    empty = cwd / "empty-bin"
    empty.mkdir(exist_ok=True)
    old = os.environ["PATH"]
    os.environ["PATH"] = str(empty)
    try:
        return run_cli(args, cwd)
    finally:
        os.environ["PATH"] = old


def _cli(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch):
    """The CLI in-process (much faster than the console script; test_without_perf and
    test_callchains_without_perf run the real one), with no perf on PATH."""
    empty = cwd / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PATH", str(empty))
    res = CliRunner().invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res


def _header(data: bytes) -> dict:
    size, attr_size, attrs_off, attrs_size, data_off, data_size = struct.unpack_from("<6Q", data, 8)
    return dict(attr_size=attr_size, attrs_off=attrs_off, data_off=data_off, data_size=data_size)


def _records(data: bytes):
    h = _header(data)
    pos, end = h["data_off"], h["data_off"] + h["data_size"]
    while pos < end:
        rtype, misc, size = struct.unpack_from("<IHH", data, pos)
        yield pos, rtype, size
        pos += size


def _damaged(tmp_path: Path, source: str, damage) -> str:
    data = bytearray(lzma.decompress((DATA / source).read_bytes()))
    damage(data)
    (tmp_path / "bad.perf.data").write_bytes(bytes(data))
    return "bad.perf.data"


def _fails(tmp_path: Path, name: str, message: str, hint: str | None = None, monkeypatch=None) -> None:
    if monkeypatch is None:  # the real console script
        proc = _cli_without_perf(["ingest", name, "-o", "ds"], tmp_path)
        assert_fails(proc, f"thpreplay: {name}: {message}", hint)
    else:
        res = _cli(["ingest", name, "-o", "ds"], tmp_path, monkeypatch)
        assert res.exit_code == 1 and res.stdout == ""
        assert res.stderr.splitlines() == [f"thpreplay: {name}: {message}"] + ([hint] if hint else [])
    assert_no_dataset(tmp_path)


def test_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = lzma.decompress((DATA / "plain.perf.data.xz").read_bytes())
    h = _header(data)
    (tmp_path / "bad.perf.data").write_bytes(data[: h["data_off"] + 1000])
    _fails(tmp_path, "bad.perf.data", f"malformed perf.data: truncated: the data section ({h['data_size']} bytes at "
                                      f"{h['data_off']}) runs past the end of the file ({h['data_off'] + 1000} bytes)",
           monkeypatch=monkeypatch)


def test_truncated_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = lzma.decompress((DATA / "plain.perf.data.xz").read_bytes())
    (tmp_path / "bad.perf.data").write_bytes(data[:40])
    _fails(tmp_path, "bad.perf.data", "malformed perf.data: truncated header (104 bytes)", monkeypatch=monkeypatch)


def test_wrong_magic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that is not PERFILE2 is not taken for a perf.data: it is read as text, and is not text."""
    name = _damaged(tmp_path, "plain.perf.data.xz", lambda d: d.__setitem__(slice(0, 8), b"PERFILE3"))
    res = _cli(["ingest", name, "-o", "ds"], tmp_path, monkeypatch)
    err = res.stderr
    assert res.exit_code == 1 and err.startswith(f"thpreplay: {name}"), err
    assert len(err.splitlines()) <= 2
    assert_no_dataset(tmp_path)


def test_unknown_feature_bits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A feature section of a newer perf is skipped (each section is found by its bit) and named."""
    def damage(d: bytearray) -> None:
        flags = bytearray(d[72:104])
        flags[200 // 8] |= 1 << (200 % 8)
        d[72:104] = flags
    name = _damaged(tmp_path, "plain.perf.data.xz", damage)
    res = _cli(["ingest", name, "-o", "ds", "--kernel-release", "6.18"], tmp_path, monkeypatch)
    assert res.exit_code == 0, res.stderr
    out = " ".join(res.stdout.split())  # the summary wraps long lines
    assert f"warning: {name}: perf.data header feature bits thpreplay does not know (200): skipped" in out


def test_record_size_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def damage(d: bytearray) -> None:
        pos, _, _ = next(_records(bytes(d)))
        struct.pack_into("<H", d, pos + 6, 0)
    _fails(tmp_path, _damaged(tmp_path, "plain.perf.data.xz", damage),
           "malformed perf.data: a record of size 0 (smaller than its header)", monkeypatch=monkeypatch)


def test_record_past_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def damage(d: bytearray) -> None:
        last = list(_records(bytes(d)))[-1]
        struct.pack_into("<H", d, last[0] + 6, 0xFFF8)
    _fails(tmp_path, _damaged(tmp_path, "plain.perf.data.xz", damage),
           f"malformed perf.data: truncated: the last record ({_last_record_bytes()} of its bytes present) runs "
           f"past the data section", monkeypatch=monkeypatch)


def _last_record_bytes() -> int:
    data = lzma.decompress((DATA / "plain.perf.data.xz").read_bytes())
    last = list(_records(data))[-1]
    return last[2]


def test_sample_raw_past_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def damage(d: bytearray) -> None:
        pos = next(p for p, t, _ in _records(bytes(d)) if t == 9)
        # IDENTIFIER IP TID TIME CPU PERIOD, then the raw size
        struct.pack_into("<I", d, pos + 8 + 48, 60000)
    _fails(tmp_path, _damaged(tmp_path, "plain.perf.data.xz", damage),
           "malformed perf.data: a sample's raw data runs past its record", monkeypatch=monkeypatch)


def test_zstd_record_does_not_decompress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def damage(d: bytearray) -> None:
        pos, _, size = next(r for r in _records(bytes(d)) if r[1] == 81)
        d[pos + 8: pos + size] = bytes(size - 8)  # zeros: no zstd frame
    _fails(tmp_path, _damaged(tmp_path, "zstd.perf.data.xz", damage),
           "malformed perf.data: a compressed record does not decompress (zstd: Unknown frame descriptor)",
           monkeypatch=monkeypatch)


def test_attr_without_raw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unsupported, not malformed: perf script would decode it; without perf, one line says why."""
    def damage(d: bytearray) -> None:
        off = _header(bytes(d))["attrs_off"]
        st = struct.unpack_from("<Q", d, off + 24)[0]
        struct.pack_into("<Q", d, off + 24, st & ~(1 << 10))
    _fails(tmp_path, _damaged(tmp_path, "plain.perf.data.xz", damage),
           "perf.data: tracepoint event kmem:mm_page_alloc is sampled without its raw data (PERF_SAMPLE_RAW): "
           "thpreplay's reader does not read that, and perf is not installed to decode it",
           "hint: install perf (Debian: linux-perf)", monkeypatch=monkeypatch)


@pytest.mark.skipif(PERF is None, reason="perf is not installed")
def test_callchains_fall_back_to_perf_script(tmp_path: Path) -> None:
    """perf record -g: perf resolves the frames to symbols, so perf script reads it, and says so once."""
    shutil.copyfile(DATA / "callchain.perf.data.xz", tmp_path / "g.perf.data.xz")
    proc = run_cli(["ingest", "g.perf.data.xz", "-o", "ds", "--kernel-release", "6.18"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.decode().split())  # the summary wraps long lines
    line = ("warning: g.perf.data.xz: events sampled with callchains (perf record -g), whose frames perf resolves "
            "to symbols: thpreplay's perf.data reader does not read that; decoded with perf script")
    assert out.count(line) == 1, out
    assert pl.read_parquet(str(tmp_path / "ds" / "stacks" / "*.parquet")).height > 0


def test_callchains_without_perf(tmp_path: Path) -> None:
    shutil.copyfile(DATA / "callchain.perf.data.xz", tmp_path / "g.perf.data.xz")
    _fails(tmp_path, "g.perf.data.xz",
           "perf.data: events sampled with callchains (perf record -g), whose frames perf resolves to symbols: "
           "thpreplay's reader does not read that, and perf is not installed to decode it",
           "hint: install perf (Debian: linux-perf)")


def test_pipe_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _damaged(tmp_path, "plain.perf.data.xz", lambda d: d.__setitem__(slice(8, 16), struct.pack("<Q", 16)))
    _fails(tmp_path, name, "perf.data: a pipe-mode perf.data (perf record -o -): thpreplay's reader does not read "
                           "that, and perf is not installed to decode it", "hint: install perf (Debian: linux-perf)",
           monkeypatch=monkeypatch)


def test_lost_samples_counted_and_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PERF_RECORD_LOST (here a sample record turned into one, 5 lost) is in lost_events and warned about."""
    def damage(d: bytearray) -> None:
        pos = next(p for p, t, _ in _records(bytes(d)) if t == 9)
        struct.pack_into("<I", d, pos, 2)  # PERF_RECORD_LOST: u64 id, u64 lost (the sample's ip)
        struct.pack_into("<Q", d, pos + 16, 5)
    name = _damaged(tmp_path, "plain.perf.data.xz", damage)
    res = _cli(["ingest", name, "-o", "ds", "--kernel-release", "6.18"], tmp_path, monkeypatch)
    assert res.exit_code == 0, res.stderr
    assert "warning: the kernel dropped 5 events (ring buffer overrun): counts are low" in res.stdout
    meta = _meta(tmp_path / "ds")
    assert meta["lost_events"] == "5"
    assert '"lost": 5' in meta["perf_data_native"] and '"samples": 2009' in meta["perf_data_native"]


def test_kernel_release_from_header(tmp_path: Path) -> None:
    """A bare perf.data names its kernel (HEADER_OSRELEASE): the gfp table and kernel_release follow it."""
    ingest([str(DATA / "plain.perf.data.xz")], tmp_path / "ds")
    meta = _meta(tmp_path / "ds")
    assert meta["kernel_release"] == '"6.18.44-fc-v1147"'
    assert meta["gfp_table_reason"] == '"kernel release 6.18.44-fc-v1147 (perf.data header)"'
    assert '"osrelease": "6.18.44-fc-v1147"' in meta["perf_data_native"]


def test_release_not_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel release with bytes that are not UTF-8 (a damaged header) is read with them replaced."""
    def damage(d: bytearray) -> None:
        at = d.find(b"6.18.44-fc-v1147")
        d[at:at + 4] = b"\xff\xfe.1"
    name = _damaged(tmp_path, "plain.perf.data.xz", damage)
    native, _ = perfdata.open_native(str(tmp_path / name), name)
    assert native.info["osrelease"] == "\ufffd\ufffd.1.44-fc-v1147"
