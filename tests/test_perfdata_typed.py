"""The perf.data typed route (parse/perfdata.py, parse/_perfdata.c read_typed) against the text route.

Every perf.data the reader reads is ingested twice: through typed columns (the default), and through
the reader's own text (THPREPLAY_PERF_TEXT=1, which tests/test_perfdata.py shows is perf script's
text byte for byte). Every table must be equal, column by column, and the summary and metadata too.
(The small captures are one round of perf's ordering, so one chunk; the bundled sample makes several.) Damaged copies of a real
capture check that what the text parser rejects or reads another way (an order past MAX_PAGE_ORDER, a
comm with the prefix's own characters) is left to it.
"""

from __future__ import annotations

import lzma
import struct
from pathlib import Path

import polars as pl
import pytest

from thpreplay.ingest import ingest
from thpreplay.parse import perfdata, tpformat

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "perfdata"
SAMPLE = ROOT / "sample_traces" / "local-6.18-perf"
TABLES = ("page_alloc", "page_free", "extfrag", "compaction", "reclaim", "page_fault", "other_events", "rejects",
          "stacks", "extra_fields", "thp_faults", "topology", "vmstat", "free_lists", "metadata")

pytestmark = pytest.mark.skipif(not perfdata.AVAILABLE, reason="the perf.data reader is not built")


def _plain(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name.removesuffix(".xz")
    out.write_bytes(lzma.decompress((DATA / name).read_bytes()))
    return out


def _tables(ds: Path) -> dict[str, pl.DataFrame]:
    return {t: pl.read_parquet(str(ds / t / "*.parquet")) for t in TABLES}


def _both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: Path, rows: int = 100,
               text_env: str = perfdata.TEXT_ENV, **kw) -> dict:
    """Ingest typed and as text; assert equal tables (naming the column that differs) and summaries.
    Returns what the typed route did: typed rows, text lines in typed chunks."""
    monkeypatch.setattr(perfdata, "TYPED_ROWS", rows)
    monkeypatch.setattr(perfdata, "TEXT_FIRST", 50)
    seen = {"typed": 0, "text": 0, "chunks": 0}
    real = perfdata.parse_typed

    def counting(chunk, layout, source_name):
        seen["typed"] += chunk.typed.typed[0]
        seen["text"] += len(chunk.typed.xlines) // 8
        seen["chunks"] += 1
        return real(chunk, layout, source_name)

    monkeypatch.setattr(perfdata, "parse_typed", counting)
    typed = ingest([str(source)], tmp_path / "typed", **kw)
    monkeypatch.setenv(text_env, "1")
    text = ingest([str(source)], tmp_path / "text", **kw)
    monkeypatch.delenv(text_env)
    a, b = _tables(tmp_path / "typed"), _tables(tmp_path / "text")
    for t in TABLES:
        assert a[t].columns == b[t].columns and a[t].schema == b[t].schema, t
        assert a[t].height == b[t].height, t
        for c in a[t].columns:
            assert a[t].get_column(c).equals(b[t].get_column(c)), f"{t}.{c}"
    assert {k: v for k, v in vars(typed).items() if k != "output"} == \
        {k: v for k, v in vars(text).items() if k != "output"}
    return seen


@pytest.mark.parametrize("name", ["plain.perf.data.xz", "zstd.perf.data.xz"])
def test_typed_tables_equal_text_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    seen = _both_ways(tmp_path, monkeypatch, _plain(tmp_path, name), kernel_release="6.18.44")
    assert seen["typed"] > 400  # the typed route did the work (706 events in zstd, 2,010 in plain)


@pytest.mark.slow
def test_bundled_sample_typed_tables_equal_text_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundle (650,000 events; kernel release from the bundle, gfp names, compaction and reclaim)."""
    seen = _both_ways(tmp_path, monkeypatch, SAMPLE, rows=50_000)
    assert seen["chunks"] > 3 and seen["typed"] > 600_000 and seen["text"] > 0  # compaction events stay text (mode=%s, zone=%-8s)


def _records(data: bytes):
    """(offset, type, size) of the data section's records."""
    off, size = struct.unpack_from("<QQ", data, 40)
    p = off
    while p < off + size:
        rtype, _misc, rsize = struct.unpack_from("<IHH", data, p)
        yield p, rtype, rsize
        p += rsize


def _format(path: Path, event: str) -> tuple[int, tpformat.EventFormat]:
    reader = perfdata._perfdata.Reader(str(path))
    for _attr, name, system, text in reader.formats():
        if name.endswith(":" + event):
            return 0, tpformat.parse(text, system)
    raise AssertionError(event)


def test_values_the_text_parser_rejects_stay_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An mm_page_alloc order past MAX_PAGE_ORDER (rejected with its reason) and a comm with '[' and ':'
    (the prefix's own characters): the typed route leaves those samples to the text parser."""
    path = _plain(tmp_path, "plain.perf.data.xz")
    data = bytearray(path.read_bytes())
    fmt = _format(path, "mm_page_alloc")[1]
    order = fmt.field("order")
    # plain.perf.data's samples: IDENTIFIER IP TID TIME CPU PERIOD RAW, so the raw data is at body + 48 + 4
    samples = [p for p, t, _ in _records(bytes(data)) if t == 9
               and struct.unpack_from("<H", data, p + 8 + 52)[0] == fmt.id]
    assert len(samples) > 200
    for p in samples[150:160]:  # past the first chunk's text lines and the 64 checked ones
        struct.pack_into("<I", data, p + 8 + 52 + order.offset, 11)
    comms = [p for p, t, _ in _records(bytes(data)) if t == 3]
    data[comms[-1] + 16:comms[-1] + 20] = b"a[:]"
    path.write_bytes(bytes(data))
    _both_ways(tmp_path, monkeypatch, path, kernel_release="6.18.44")
    rejects = pl.read_parquet(str(tmp_path / "typed" / "rejects" / "*.parquet"))
    assert rejects.height == 10
    assert set(rejects.get_column("reason")) == {"mm_page_alloc: order 11 outside 0..10 (MAX_PAGE_ORDER)"}


@pytest.mark.parametrize("comm, typed", [(b"a:bc", True), (b"abc:", False), (b"a: c", False)])
def test_a_comm_with_a_colon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, comm: bytes, typed: bool) -> None:
    """kworker/1:2, memfd:... (a ':' inside the comm): typed. A ':' at the comm's end or before a blank
    makes the ": " the text parser looks for after the time (its lines are read by the regex, counted
    in header_fallback_rows): left to the text parser. The tables are the text route's either way."""
    path = _plain(tmp_path, "plain.perf.data.xz")
    data = bytearray(path.read_bytes())
    for p in [p for p, t, _ in _records(bytes(data)) if t == 3]:  # every task's comm
        data[p + 16:p + 21] = comm + b"\0"
    path.write_bytes(bytes(data))
    seen = _both_ways(tmp_path, monkeypatch, path, kernel_release="6.18.44")
    # of 2,010 samples (the others: the first lines and the checked ones)
    assert (seen["typed"] > 1500) if typed else (seen["typed"] == 0)
    assert set(pl.read_parquet(str(tmp_path / "typed" / "page_alloc" / "*.parquet")).get_column("comm")) == {comm.decode()}


def test_plan_reasons(tmp_path: Path) -> None:
    """Why an event stays text, one line each; the kmem events and the fault are typed."""
    path = _plain(tmp_path, "plain.perf.data.xz")
    native, _ = perfdata.open_native(str(path), "p")
    for _ in native.chunks():
        pass
    typed = {event for event, _spec, _plan in native.plans.values()}
    assert {"mm_page_alloc", "mm_page_free", "page_fault_user"} <= typed
    assert native.untyped["compaction:mm_compaction_suitable"] == "zone is printed with a width, precision or flag"
    assert native.untyped["kmem:mm_page_alloc_extfrag"] == (
        "pageblock_order's expression compares or branches in a way libtraceevent may evaluate otherwise")
    assert all("\n" not in why for why in native.untyped.values())


@pytest.mark.slow
def test_a_plan_libtraceevent_contradicts_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the expression check off, mm_page_alloc_extfrag's fragmenting (a comparison libtraceevent
    evaluates otherwise) is typed from the format; the first samples, checked against libtraceevent's
    text, drop the plan before any typed row, and the tables stay the text route's."""
    monkeypatch.setattr(perfdata, "_plain", lambda node: True)
    seen = _both_ways(tmp_path, monkeypatch, SAMPLE, rows=200_000)
    assert seen["typed"] > 0
    sample = tmp_path / "local.perf.data"
    sample.write_bytes(lzma.decompress((SAMPLE / "perf.data.xz").read_bytes()))
    native, _ = perfdata.open_native(str(sample), "s")
    for _ in native.chunks():
        pass
    assert native.untyped["mm_page_alloc_extfrag"].startswith(
        "typed values differ from libtraceevent's text, so its text is read: fragmenting: ")
    extfrag = pl.read_parquet(str(tmp_path / "typed" / "extfrag" / "*.parquet"))
    assert extfrag.height == 4 and extfrag.get_column("fragmenting").all()  # as libtraceevent prints it


def test_release_without_gfp_table_keeps_the_first_chunk_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A header release that names no gfp table: ingest chooses the table from the first chunk's gfp
    names, so the typed route's first chunk is the text route's own (the same lines, the same choice)."""
    monkeypatch.setattr(perfdata.gfp, "table_for_release", lambda release: None)
    monkeypatch.setattr(perfdata, "FIRST_CHUNK_BYTES", 4096)
    path = _plain(tmp_path, "plain.perf.data.xz")
    native, _ = perfdata.open_native(str(path), "p")
    kinds = [type(c).__name__ for c in native.chunks()]
    assert kinds[0] == "Chunk"
    _both_ways(tmp_path, monkeypatch, path)


def _text(path: Path) -> bytes:
    native, _ = perfdata.open_native(str(path), str(path))
    out = b""
    while (part := native.reader.read(1 << 20))[1]:
        out += part[0]
    return out


@pytest.mark.parametrize("order", ["reversed", "rotated"])
def test_samples_out_of_order_within_a_round(tmp_path: Path, order: str) -> None:
    """The reader orders each round's samples by time: reversed, every sample is a run of its own (more
    than 64 runs: the radix sort); rotated by a third, two runs (merged). Either way the text is the
    file's own, byte for byte."""
    path = _plain(tmp_path, "plain.perf.data.xz")
    data = path.read_bytes()
    off, size = struct.unpack_from("<QQ", data, 40)
    body, seg = [], []

    def close() -> None:
        samples = [r for t, r in seg if t == 9]
        if order == "reversed":
            samples = samples[::-1]
        else:
            samples = samples[len(samples) // 3:] + samples[:len(samples) // 3]
        it = iter(samples)
        body.extend(next(it) if t == 9 else r for t, r in seg)
        seg.clear()

    for p, t, n in _records(data):  # a round ends at FINISHED_ROUND (68); samples stay in their round
        seg.append((t, data[p:p + n]))
        if t == 68:
            close()
    close()
    moved = tmp_path / "moved.perf.data"
    moved.write_bytes(data[:off] + b"".join(body) + data[off + size:])
    assert moved.read_bytes() != data
    assert _text(moved) == _text(path)
