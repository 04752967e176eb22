"""trace-cmd's trace.dat (versions 6 and 7, v7 sections uncompressed or zstd/zlib compressed) read natively.

The file's metadata is read here: the initial header (magic 0x17 0x08 0x44 "tracing", version,
endianness, long size, page size; v7: the compression algorithm and the first options section),
header_page (the ring-buffer page header: where `commit` and the data are), the ftrace and event
`format` files (parse/tpformat.py: fields, and the print fmt compiled for the C renderer), the saved
cmdlines (pid -> comm, as trace-cmd report prints comm), and the options (v7: the BUFFER option of the
top instance gives each CPU's data offset and size; v6: the flyrecord offsets after the header).
kallsyms and the trace_printk formats are skipped. The per-CPU ring-buffer pages (v7 compressed:
decompressed chunk by chunk) go to parse/_tracedat.c, which merges the records across CPUs in time
order and prints each as `trace-cmd report -t` does, so that the text pipeline reads them as it reads
a `trace-cmd report` file: the `line` of an event is its line number in `trace-cmd report -t`
output, whose first line is `cpus=N`.

What the reader does not support (a latency trace, another compression, several instances without
the top one, a record of an event type no format describes) is a `Unsupported` naming it: ingest
then prints one line and reads `trace-cmd report -t` text instead when trace-cmd is installed.
A damaged file (truncated, wrong magic, unknown version, a page or record that does not fit, a
section that does not decompress) is an InputError naming the file.

The file is mapped, not read; v7 compressed CPU data is decompressed into unlinked temporary files
that are mapped the same way, so memory does not grow with the trace (disk in $TMPDIR does).
"""

from __future__ import annotations

import contextlib
import io
import mmap
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from thpreplay.errors import InputError
from thpreplay.inputs import Chunk, decompress_to, describe_container, read_chunks
from thpreplay.parse import tpformat

try:
    from thpreplay.parse import _tracedat
except ImportError:  # not built (no compiler): trace.dat goes through trace-cmd report
    _tracedat = None

AVAILABLE = _tracedat is not None
MAGIC = b"\x17\x08\x44tracing"
VERSIONS = (6, 7)
MAX_SECTION_BYTES = 1 << 30      # a metadata section (formats, cmdlines) past this is not one trace-cmd wrote
MAX_CPU_BYTES = 1 << 36          # decompressed data of one CPU
MAX_CHUNK_BYTES = 1 << 28        # one compressed chunk of it, decompressed
MAX_EVENTS = 65536
MAX_OPTIONS = 1 << 16
RENDER_BYTES = 32 << 20          # text per chunk handed to the pipeline
FIRST_BYTES = 2 << 20

# v7 section and option ids (trace-cmd.dat.v7(5); lib/trace-cmd/include/trace-cmd-local.h)
OPT_DONE, OPT_DATE, OPT_CPUSTAT, OPT_BUFFER, OPT_TRACECLOCK, OPT_UNAME, OPT_HOOK, OPT_OFFSET = 0, 1, 2, 3, 4, 5, 6, 7
OPT_CPUCOUNT, OPT_VERSION, OPT_PROCMAPS, OPT_TRACEID, OPT_TIME_SHIFT, OPT_GUEST, OPT_TSC2NSEC = 8, 9, 10, 11, 12, 13, 14
OPT_STRINGS, OPT_HEADER_INFO, OPT_FTRACE_EVENTS, OPT_EVENT_FORMATS = 15, 16, 17, 18
OPT_KALLSYMS, OPT_PRINTK, OPT_CMDLINES, OPT_BUFFER_TEXT = 19, 20, 21, 22
SECTION_COMPRESSED = 1


class Unsupported(Exception):
    """A trace.dat the native reader does not read (the message says what)."""


class _Damaged(Exception):
    """Damage found while reading; becomes an InputError naming the file."""


@dataclass
class RawFormat:
    """An event format file as the trace.dat holds it; parsed (tpformat.parse) when the event is met."""
    system: str
    name: str
    id: int
    text: str


@dataclass
class TraceDat:
    version: int
    big_endian: bool
    long_size: int  # user space's, from the header
    page_size: int
    compression: str
    kernel_long: int = 8  # header_page's commit size
    header_data_offset: int = 16
    events: list[RawFormat] = field(default_factory=list)
    comms: dict[int, bytes] = field(default_factory=dict)
    cpus: list[tuple[int, object]] = field(default_factory=list)  # (cpu id, buffer of whole pages)
    ncpus: int = 0
    uname: str = ""
    other_buffers: list[str] = field(default_factory=list)


class _Reader:
    def __init__(self, data, path: str):
        self.d = data
        self.path = path
        self.end = len(data)
        self.e = "<"
        self.comp = "none"

    def need(self, pos: int, n: int, what: str) -> None:
        if n < 0 or pos < 0 or pos + n > self.end:
            raise _Damaged(f"truncated: {what} at byte {pos} needs {n} bytes, the file has {self.end}")

    def u16(self, pos: int, what: str) -> int:
        self.need(pos, 2, what)
        return struct.unpack_from(self.e + "H", self.d, pos)[0]

    def u32(self, pos: int, what: str) -> int:
        self.need(pos, 4, what)
        return struct.unpack_from(self.e + "I", self.d, pos)[0]

    def u64(self, pos: int, what: str) -> int:
        self.need(pos, 8, what)
        return struct.unpack_from(self.e + "Q", self.d, pos)[0]

    def cstr(self, pos: int, what: str, limit: int = 4096) -> tuple[bytes, int]:
        end = self.d.find(b"\0", pos, min(self.end, pos + limit))
        if end < 0:
            raise _Damaged(f"truncated: {what} at byte {pos} has no terminating NUL")
        return bytes(self.d[pos:end]), end + 1

    def bytes_at(self, pos: int, n: int, what: str) -> bytes:
        if n > MAX_SECTION_BYTES:
            raise _Damaged(f"{what} at byte {pos} says {n} bytes, more than a trace.dat holds")
        self.need(pos, n, what)
        return bytes(self.d[pos:pos + n])

    # --- compression (v7) ---
    def decompress(self, blob: bytes, size: int, what: str) -> bytes:
        if size > MAX_SECTION_BYTES:
            raise _Damaged(f"{what} says it decompresses to {size} bytes, more than a trace.dat holds")
        try:
            if self.comp == "zstd":
                # streamed, at most size + 1 bytes: neither the frame nor the header decides the allocation
                reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob))
                parts, got = [], 0
                while got <= size:
                    part = reader.read(min(size + 1 - got, 1 << 24))
                    if not part:
                        break
                    parts.append(part)
                    got += len(part)
                out = b"".join(parts)
            elif self.comp == "zlib":
                d = zlib.decompressobj()
                out = d.decompress(blob, size)
                if d.unconsumed_tail or not d.eof:
                    raise zlib.error("stream does not end where the section says")
            else:
                raise Unsupported(f"compression {self.comp!r}")
        except Unsupported:
            raise
        except Exception as e:  # zstandard.ZstdError, zlib.error: the section is damaged
            raise _Damaged(f"{what} does not decompress ({self.comp}: {e})") from None
        if len(out) != size:
            raise _Damaged(f"{what} decompresses to {len(out)} bytes, its header says {size}")
        return out

    def section(self, pos: int, want_id: int, what: str) -> tuple[bytes, int]:
        """A v7 section at pos: (its data, uncompressed; the offset after it)."""
        sid = self.u16(pos, f"{what} section header")
        flags = self.u16(pos + 2, f"{what} section header")
        size = self.u64(pos + 8, f"{what} section header")
        if sid != want_id:
            raise _Damaged(f"{what}: the section at byte {pos} has id {sid}, expected {want_id}")
        start = pos + 16
        if size > MAX_SECTION_BYTES:
            raise _Damaged(f"{what} section at byte {pos} says {size} bytes, more than a trace.dat holds")
        self.need(start, size, f"{what} section")
        if not flags & SECTION_COMPRESSED:
            return bytes(self.d[start:start + size]), start + size
        csize = self.u32(start, f"{what} compression header")
        usize = self.u32(start + 4, f"{what} compression header")
        if csize + 8 > size:
            raise _Damaged(f"{what}: compressed size {csize} past the section ({size} bytes)")
        return self.decompress(bytes(self.d[start + 8:start + 8 + csize]), usize, f"the {what} section"), start + size


class _Buf:
    """Sequential reads from bytes (a decompressed section or the v6 header)."""

    def __init__(self, data, e: str, what: str, pos: int = 0):
        self.d, self.e, self.what, self.pos = data, e, what, pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > MAX_SECTION_BYTES or self.pos + n > len(self.d):
            raise _Damaged(f"truncated: {self.what}: {what} needs {n} bytes, {max(0, len(self.d) - self.pos)} left")
        out = self.d[self.pos:self.pos + n]
        self.pos += n
        return bytes(out)

    def u32(self, what: str) -> int:
        return struct.unpack(self.e + "I", self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack(self.e + "Q", self.take(8, what))[0]

    def cstr(self, what: str) -> bytes:
        end = self.d.find(b"\0", self.pos, self.pos + 4096)
        if end < 0:
            raise _Damaged(f"truncated: {self.what}: {what} has no terminating NUL")
        out = bytes(self.d[self.pos:end])
        self.pos = end + 1
        return out


def _header_info(b: _Buf, td: TraceDat) -> None:
    if b.take(12, "header_page tag") != b"header_page\0":
        raise _Damaged(f"{b.what}: no header_page where it belongs")
    hp = b.take(b.u64("header_page size"), "header_page").decode("utf-8", "replace")
    fields = tpformat.parse_header_page(hp)
    if "commit" in fields:
        td.kernel_long = fields["commit"][1]
    if "data" in fields:
        td.header_data_offset = fields["data"][0]
    if td.kernel_long not in (4, 8) or td.header_data_offset != 8 + td.kernel_long:
        raise Unsupported(f"a ring-buffer page header of another layout (commit {td.kernel_long} bytes, "
                          f"data at {td.header_data_offset})")
    if b.take(13, "header_event tag") != b"header_event\0":
        raise _Damaged(f"{b.what}: no header_event where it belongs")
    b.take(b.u64("header_event size"), "header_event")


def _formats(b: _Buf, td: TraceDat, system: str | None) -> None:
    """ftrace formats (system None: count then files) or event formats (count of systems, each named)."""
    systems = 1 if system is not None else b.u32("count of event systems")
    for _ in range(systems):
        name = system if system is not None else b.cstr("event system name").decode("utf-8", "replace")
        count = b.u32(f"count of {name} events")
        for _ in range(count):
            text = b.take(b.u64(f"size of a {name} format"), f"a {name} event format").decode("utf-8", "replace")
            if len(td.events) >= MAX_EVENTS:
                raise _Damaged(f"{b.what}: more than {MAX_EVENTS} event formats")
            try:
                ev_name, ev_id = tpformat.name_and_id(text)
            except tpformat.FormatError as e:
                raise _Damaged(f"{b.what}: {e}") from None
            td.events.append(RawFormat(name, ev_name, ev_id, text))


def _cmdlines(data: bytes, td: TraceDat) -> None:
    for line in data.split(b"\n"):
        pid, _, comm = line.strip().partition(b" ")
        if pid.isdigit() and comm and len(pid) < 12:
            td.comms[int(pid)] = comm[:64]


def _flyrecord_v6(r: _Reader, pos: int, td: TraceDat) -> list[tuple[int, int, int]]:
    cpus = []
    for cpu in range(td.ncpus):
        off = r.u64(pos, "flyrecord CPU offset")
        size = r.u64(pos + 8, "flyrecord CPU size")
        pos += 16
        cpus.append((cpu, off, size))
    return cpus


def read(path: str | Path, data=None, name: str | None = None) -> TraceDat:
    """The metadata and per-CPU data of a trace.dat. data: the file's bytes (else the file is mapped);
    name: the file as messages name it."""
    name = name or str(path)
    try:
        if data is None:
            with open(path, "rb") as f:
                try:
                    data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                except ValueError:  # an empty file cannot be mapped
                    data = b""
        return _read(_Reader(data, name))
    except _Damaged as e:
        raise InputError(name, f"damaged trace.dat: {e}") from None
    except OSError as e:
        raise InputError(name, f"cannot read: {e.strerror}") from None


def _read(r: _Reader) -> TraceDat:
    d = r.d
    if r.end < len(MAGIC) or bytes(d[:len(MAGIC)]) != MAGIC:
        raise _Damaged("wrong magic (not a trace-cmd trace.dat)")
    ver_raw, pos = r.cstr(len(MAGIC), "version", limit=16)
    if not ver_raw.isdigit() or int(ver_raw) not in VERSIONS:
        raise _Damaged(f"file version {ver_raw.decode('ascii', 'replace')!r}: this reader knows versions 6 and 7")
    version = int(ver_raw)
    r.need(pos, 6, "endianness, long size and page size")
    big = d[pos] != 0
    r.e = ">" if big else "<"
    long_size = d[pos + 1]
    page_size = r.u32(pos + 2, "page size")
    pos += 6
    if not 64 <= page_size <= 1 << 24 or page_size & (page_size - 1):
        raise _Damaged(f"page size {page_size} is not a power of two between 64 and 16 MiB")
    td = TraceDat(version, big, long_size, page_size, "none")
    if version == 6:
        cpu_list = _read_v6(r, pos, td)
    else:
        cpu_list = _read_v7(r, pos, td)
    for cpu, data in cpu_list:
        td.cpus.append((cpu, data))
    return td


def _read_v6(r: _Reader, pos: int, td: TraceDat) -> list[tuple[int, object]]:
    b = _Buf(r.d, r.e, "header", pos)
    _header_info(b, td)
    _formats(b, td, "ftrace")
    _formats(b, td, None)
    b.take(b.u32("kallsyms size"), "kallsyms")
    b.take(b.u32("printk formats size"), "printk formats")
    _cmdlines(b.take(b.u64("cmdlines size"), "cmdlines"), td)
    td.ncpus = b.u32("cpu count")
    if td.ncpus > 65536:
        raise _Damaged(f"{td.ncpus} CPUs")
    tag = b.take(10, "data tag")
    if tag == b"options  \0":
        for _ in range(MAX_OPTIONS):
            oid = struct.unpack(r.e + "H", b.take(2, "option id"))[0]
            if oid == OPT_DONE:
                break
            size = b.u32("option size")
            body = b.take(size, "option")
            if oid == OPT_UNAME:
                td.uname = body.rstrip(b"\0").decode("utf-8", "replace")
            elif oid == OPT_BUFFER and len(body) > 8:
                td.other_buffers.append(body[8:].split(b"\0", 1)[0].decode("utf-8", "replace"))
        else:
            raise _Damaged("options without an end")
        tag = b.take(10, "data tag")
    if tag == b"latency  \0":
        raise Unsupported("a latency trace (text from a latency tracer)")
    if tag != b"flyrecord\0":
        raise _Damaged(f"unknown data tag {tag.rstrip(bytes(1))!r} (expected flyrecord)")
    out = []
    for cpu, off, size in _flyrecord_v6(r, b.pos, td):
        if size:
            r.need(off, size, f"CPU {cpu} data")
            out.append((cpu, memoryview(r.d)[off:off + size]))
    return out


def _read_v7(r: _Reader, pos: int, td: TraceDat) -> list[tuple[int, object]]:
    comp, pos = r.cstr(pos, "compression name", limit=64)
    _cver, pos = r.cstr(pos, "compression version", limit=64)
    td.compression = r.comp = comp.decode("ascii", "replace")
    if r.comp not in ("none", "zstd", "zlib"):
        raise Unsupported(f"compression {r.comp!r} (this reader knows zstd and zlib)")
    opt_at = r.u64(pos, "first options offset")
    buffers: list[tuple[str, int, list[tuple[int, int, int]]]] = []
    sections: dict[int, int] = {}
    seen = set()
    n_opts = 0
    while opt_at:
        if opt_at in seen:
            raise _Damaged(f"options sections loop at byte {opt_at}")
        seen.add(opt_at)
        body, _ = r.section(opt_at, 0, "options")
        b = _Buf(body, r.e, "options")
        opt_at = 0
        while True:
            n_opts += 1
            if n_opts > MAX_OPTIONS:
                raise _Damaged("too many options")
            oid = struct.unpack(r.e + "H", b.take(2, "option id"))[0]
            size = b.u32("option size")
            ob = _Buf(b.take(size, "option"), r.e, f"option {oid}")
            if oid == OPT_DONE:
                opt_at = ob.u64("next options offset")
                break
            if oid in (OPT_HEADER_INFO, OPT_FTRACE_EVENTS, OPT_EVENT_FORMATS, OPT_KALLSYMS, OPT_PRINTK, OPT_CMDLINES):
                sections[oid] = ob.u64("section offset")
            elif oid == OPT_BUFFER:
                off = ob.u64("buffer offset")
                name = ob.cstr("buffer name").decode("utf-8", "replace")
                ob.cstr("buffer clock")
                # trace-cmd 3.x writes the buffer's page size here (u32) before the CPU count; the
                # v7 document does not: which one it is shows in the option's length (20 bytes per CPU)
                left = len(ob.d) - ob.pos
                if left >= 8 and (left - 8) % 20 == 0 and \
                        struct.unpack_from(r.e + "I", ob.d, ob.pos + 4)[0] == (left - 8) // 20:
                    if ob.u32("buffer page size") != td.page_size:
                        raise Unsupported(f"buffer {name!r} has pages of another size than the file's")
                count = ob.u32("buffer cpu count")
                if count > 65536:
                    raise _Damaged(f"buffer {name!r}: {count} CPUs")
                cpus = []
                for _ in range(count):
                    cpus.append((ob.u32("cpu id"), ob.u64("cpu data offset"), ob.u64("cpu data size")))
                buffers.append((name, off, cpus))
            elif oid == OPT_BUFFER_TEXT:
                raise Unsupported("a latency trace (text from a latency tracer)")
            elif oid == OPT_CPUCOUNT and size >= 4:
                td.ncpus = ob.u32("cpu count")
            elif oid == OPT_UNAME:
                td.uname = ob.d.rstrip(b"\0").decode("utf-8", "replace")
    for oid, what in ((OPT_HEADER_INFO, "header info"), (OPT_EVENT_FORMATS, "event formats")):
        if oid not in sections:
            raise _Damaged(f"no {what} section")
    body, _ = r.section(sections[OPT_HEADER_INFO], OPT_HEADER_INFO, "header info")
    _header_info(_Buf(body, r.e, "header info section"), td)
    if OPT_FTRACE_EVENTS in sections:
        body, _ = r.section(sections[OPT_FTRACE_EVENTS], OPT_FTRACE_EVENTS, "ftrace formats")
        _formats(_Buf(body, r.e, "ftrace formats section"), td, "ftrace")
    body, _ = r.section(sections[OPT_EVENT_FORMATS], OPT_EVENT_FORMATS, "event formats")
    _formats(_Buf(body, r.e, "event formats section"), td, None)
    if OPT_CMDLINES in sections:
        body, _ = r.section(sections[OPT_CMDLINES], OPT_CMDLINES, "cmdlines")
        b = _Buf(body, r.e, "cmdlines section")
        _cmdlines(b.take(b.u64("cmdlines size"), "cmdlines"), td)
    if not buffers:
        raise _Damaged("no BUFFER option (no trace data)")
    top = [x for x in buffers if x[0] == ""]
    if not top:
        raise Unsupported(f"only instance buffers ({', '.join(repr(x[0]) for x in buffers)}), no top-level buffer")
    td.other_buffers = [x[0] for x in buffers if x[0] != ""]
    _name, off, cpus = top[0]
    # the BUFFER section header (id OPT_BUFFER) sits at off; its flags say whether the data is compressed
    flags = r.u16(off + 2, "buffer section header")
    if r.u16(off, "buffer section header") != OPT_BUFFER:
        raise _Damaged(f"no flyrecord section at byte {off}")
    td.ncpus = td.ncpus or len(cpus)
    out = []
    for cpu, coff, size in cpus:
        if not size:
            continue
        if flags & SECTION_COMPRESSED:
            out.append((cpu, _chunks(r, coff, size, cpu)))
        else:
            r.need(coff, size, f"CPU {cpu} data")
            out.append((cpu, memoryview(r.d)[coff:coff + size]))
    return out


def _chunks(r: _Reader, pos: int, size: int, cpu: int):
    """A CPU's compressed flyrecord data: count, then (compressed size, size, data) chunks. Decompressed
    into an unlinked temporary file that is mapped, so that memory does not grow with the trace."""
    # the size trace-cmd records leaves out the 4-byte chunk count
    end = pos + 4 + size
    r.need(pos, 4 + size, f"CPU {cpu} data")
    count = r.u32(pos, f"CPU {cpu} chunk count")
    pos += 4
    spool = tempfile.TemporaryFile(prefix="thpreplay-", suffix=f".cpu{cpu}")
    total = 0
    for i in range(count):
        if pos + 8 > end:
            raise _Damaged(f"CPU {cpu} data: chunk {i} of {count} runs past its {size} bytes")
        csize = r.u32(pos, "chunk header")
        usize = r.u32(pos + 4, "chunk header")
        pos += 8
        if csize > end - pos:
            raise _Damaged(f"CPU {cpu} data: chunk {i} of {count} runs past its {size} bytes")
        total += usize
        if usize > MAX_CHUNK_BYTES:
            raise _Damaged(f"CPU {cpu} data: chunk {i} says it holds {usize} bytes (trace-cmd writes a few pages)")
        if total > MAX_CPU_BYTES:
            raise _Damaged(f"CPU {cpu} data decompresses past {MAX_CPU_BYTES >> 30} GiB")
        spool.write(r.decompress(bytes(r.d[pos:pos + csize]), usize, f"CPU {cpu} data chunk {i}"))
        pos += csize
    spool.flush()
    with spool:
        return mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) if total else b""


def _plan(raw: RawFormat) -> tuple:
    try:
        ev = tpformat.parse(raw.text, raw.system)
    except tpformat.FormatError as e:
        raise Unsupported(f"event {raw.name}: {e}") from None
    pid = ev.field("common_pid")
    if pid is None or pid.size not in (2, 4, 8):
        raise Unsupported(f"event {raw.name}: no common_pid field")
    prog = tpformat.compile_event(ev) or tpformat.failed_program(ev)
    code, tables, strings = prog.pack()
    return (ev.id, ev.name.encode("utf-8", "replace"), code, tables, strings, pid.offset, pid.size)


def renderer(td: TraceDat):
    """The C renderer over td's pages. Print programs are compiled when an event is first met (a file
    carries every format of the kernel, a few thousand; a trace uses a few)."""
    if _tracedat is None:
        raise Unsupported("the C reader (parse/_tracedat.c) is not built")
    by_id = {raw.id: raw for raw in td.events}  # the last format of an id wins, as in libtraceevent
    comms = sorted(td.comms.items())
    r = _tracedat.Renderer(td.cpus, td.kernel_long, int(td.big_endian), td.page_size, sorted(by_id), comms)
    return r, by_id


def text_blocks(path: str, td: TraceDat, block_bytes: int = RENDER_BYTES, first_bytes: int = FIRST_BYTES,
                stats: dict | None = None) -> Iterator[bytes]:
    """`trace-cmd report -t` text of the file in blocks of whole lines: `cpus=N`, then the records (the
    first block small, so that what the first chunk decides is known early). stats, when given,
    receives the renderer's counts at the end (records, pages, lost events)."""
    r, by_id = renderer(td)
    parts = [f"cpus={td.ncpus}\n".encode()]
    total, size, done = 0, first_bytes, False
    while not done:
        try:
            block = r.render(size - total)
            if block:
                parts.append(block)
                total += len(block)
            elif r.needed() >= 0:  # an event met for the first time: compile its print fmt, go on
                raw = by_id[r.needed()]
                try:
                    r.add_plan(_plan(raw))
                except ValueError as e:
                    raise Unsupported(f"event {raw.name}: a print format the renderer refused ({e})") from None
            else:
                done = True
        except ValueError as e:
            raise InputError(path, f"damaged trace.dat: {e}") from None
        except MemoryError:
            raise InputError(path, "out of memory while reading the trace.dat records") from None
        if (total >= size or done) and parts:
            yield b"".join(parts)
            parts, total, size = [], 0, block_bytes
    if stats is not None:
        stats.update(r.stats())


def chunks(path: str, name: str, notes: list[str]) -> Iterator[Chunk]:
    """The trace.dat at path (plain, or in a .gz/.zst/.xz container) as chunks of `trace-cmd report -t`
    text for the text pipeline. What the native reader does not support is one line in notes and the
    text comes from `trace-cmd report -t` when trace-cmd is installed; else an InputError."""
    with contextlib.ExitStack() as stack:
        plain = path
        if describe_container(path) != "trace.dat":
            tmp = stack.enter_context(tempfile.NamedTemporaryFile(prefix="thpreplay-", suffix=".dat"))
            decompress_to(path, tmp)
            tmp.flush()
            plain = tmp.name
        stats: dict = {}
        try:
            td = read(plain, name=name)
            typed = None if text_only() else typed_chunks(name, td, stats)
            if typed is not None:
                yield from typed
                _notes(td, stats, name, notes)
                return
            blocks = text_blocks(name, td, RENDER_BYTES, FIRST_BYTES, stats=stats)
            first = next(blocks)
        except Unsupported as e:
            yield from _fallback(plain, name, str(e), notes)
            return
        line: int | None = 1  # later chunks' first lines are counted by the pipeline (inputs.Chunk)
        pending = first
        try:
            for block in blocks:
                yield Chunk(pending, line, False)
                line = None
                pending = block
        except Unsupported as e:  # an event met late whose format the renderer refused
            raise InputError(name, f"the native trace.dat reader does not read {e}, met partway through the "
                                   f"file; print it with trace-cmd report -t and ingest the text") from None
        yield Chunk(pending, line, True)
        _notes(td, stats, name, notes)


def _notes(td: TraceDat, stats: dict, name: str, notes: list[str]) -> None:
    if td.other_buffers:  # trace-cmd record -B: instances beside the top-level buffer
        notes.append(f"{name}: only the top-level buffer was read, not the instance buffers "
                     f"{', '.join(repr(b) for b in td.other_buffers)}")
    if stats.get("lost_pages_unknown"):
        n = stats["lost_pages_unknown"]
        notes.append(f"{name}: the ring buffer lost events before {n:,} page{'s' if n > 1 else ''} without "
                     f"storing how many ([EVENTS DROPPED] lines): counts are low")


# ---- the typed route (as parse/perfdata.py's: plans, verification and merging are shared) ----
TEXT_ENV = "THPREPLAY_TRACEDAT_TEXT"  # every record printed (no typed route), e.g. to compare


def text_only() -> bool:
    import os
    return os.environ.get(TEXT_ENV, "") not in ("", "0")


@dataclass
class _Typed:
    """What parse/perfdata.py parse_typed reads of its reader: plans by event id, comm strings, gfp texts."""
    plans: dict = field(default_factory=dict)
    comms: list = field(default_factory=list)
    gfp: dict = field(default_factory=dict)
    untyped: dict = field(default_factory=dict)


def typed_chunks(name: str, td: TraceDat, stats: dict, holder: _Typed | None = None) -> Iterator[Chunk] | None:
    """The records as typed chunks (parse/perfdata.py TypedChunk): the events with a typed plan as
    columns, every other record, the lost-events lines and the first TEXT_FIRST records as the text
    `trace-cmd report -t` prints, each numbered with its line of that text. None: no event has a plan
    (the text route)."""
    from thpreplay.kernel.events import EVENTS
    from thpreplay.parse import perfdata
    r, by_id = renderer(td)
    holder = holder if holder is not None else _Typed()
    for eid, raw in by_id.items():
        spec = EVENTS.get(raw.name)
        if spec is None:
            continue
        try:
            built = perfdata.plan(tpformat.parse(raw.text, raw.system), spec)
        except (tpformat.FormatError, tpformat.Unsupported, RecursionError, ValueError, OverflowError, IndexError) as e:
            built = str(e) or type(e).__name__
        if isinstance(built, str):
            holder.untyped[raw.name] = built
            continue
        try:
            r.set_typed(eid, built.slots)
        except ValueError as e:
            holder.untyped[raw.name] = str(e)
            continue
        holder.plans[eid] = (raw.name, spec, built)
    if not holder.plans:
        return None
    return _typed_chunks(name, td, r, by_id, holder, stats)


def _typed_chunks(name, td, r, by_id, holder, stats) -> Iterator[Chunk]:
    from thpreplay.parse import perfdata
    head = f"cpus={td.ncpus}\n".encode()

    def rendered(render, *args):
        """render(*args) with the renderer's errors as one line naming the file."""
        try:
            return render(*args)
        except ValueError as e:
            raise InputError(name, f"damaged trace.dat: {e}") from None
        except MemoryError:
            raise InputError(name, "out of memory while reading the trace.dat records") from None

    def add_needed_plan() -> None:
        """The event the renderer met for the first time: its print fmt compiled, so that it goes on."""
        raw = by_id[r.needed()]
        try:
            r.add_plan(_plan(raw))
        except (ValueError, Unsupported) as e:
            raise InputError(name, f"the native trace.dat reader does not read event {raw.name}: a print format "
                                   f"the renderer refused ({e}), met among the records; print it with "
                                   f"trace-cmd report -t and ingest the text") from None

    def read(text_first: int, lines_before: int = 1):
        while True:
            out = rendered(r.render_typed, perfdata.TYPED_ROWS, text_first, lines_before)
            if out[0] or r.needed() < 0:
                return out
            add_needed_plan()

    def typed(out):
        lines, rows, text, xl, comms, gfps, ts = out
        holder.comms += comms
        for key, mask, printed in gfps:
            holder.gfp.setdefault(key, {})[mask] = printed
        return perfdata.Typed(text, lines, rows, xl, len(holder.comms), holder.gfp, ts, holder)

    # the first chunk is the text route's own (FIRST_BYTES of text): without a kernel release the gfp
    # table is chosen from it, so the typed route must choose from the same lines
    parts, total = [head], 0
    while total < FIRST_BYTES:
        block = rendered(r.render, FIRST_BYTES - total)
        if block:
            parts.append(block)
            total += len(block)
        elif r.needed() >= 0:
            add_needed_plan()
        else:
            break
    first = b"".join(parts)
    before = first.count(b"\n")
    nxt = read(0, before)
    yield Chunk(first, 1, not nxt[0])
    if not nxt[0]:
        stats.update(r.stats())
        return
    pending = typed(nxt)
    line = 1 + before
    while pending.lines:
        nxt = read(0)
        done = not nxt[0]
        yield perfdata.TypedChunk(pending.text, line, final=done, typed=pending, text_bytes=pending.lines * 130)
        line += pending.lines
        if done:
            break
        pending = typed(nxt)
    stats.update(r.stats())
    for eid, why in r.typed_dropped().items():
        holder.untyped[holder.plans[eid][0]] = f"typed values differ from the printed text, so its text is read: {why}"


def _fallback(path: str, name: str, what: str, notes: list[str]) -> Iterator[Chunk]:
    """`trace-cmd report -t` text, for what the native reader does not read."""
    tc = shutil.which("trace-cmd")
    if tc is None:
        raise InputError(name, f"the native trace.dat reader does not read {what}, and trace-cmd is not installed "
                               f"to print it", hint="install trace-cmd, or run `trace-cmd report -t` where it is "
                                                    "and ingest the text")
    notes.append(f"{name}: the native trace.dat reader does not read {what}: read through `trace-cmd report -t`")
    with contextlib.ExitStack() as stack:
        errfile = stack.enter_context(tempfile.TemporaryFile())
        proc = subprocess.Popen([tc, "report", "-t", path], stdout=subprocess.PIPE, stderr=errfile,
                                stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            yield from read_chunks(name, stream=proc.stdout)
        finally:
            proc.stdout.close()
            code = proc.wait()
            errfile.seek(0)
            err = errfile.read().decode(errors="replace")
    if code != 0:
        last = [ln for ln in err.splitlines() if ln.strip()]
        raise InputError(name, f"trace-cmd report failed (exit {code}): {last[-1] if last else 'no message'}")
