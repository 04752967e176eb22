"""Opening trace inputs: compression detected from magic bytes, read in chunks of whole lines."""

from __future__ import annotations

import lzma
import os
import select
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from thpreplay.errors import InputError

MAGIC = {
    b"\x1f\x8b": "gz",
    b"\x28\xb5\x2f\xfd": "zst",
    b"\xfd7zXZ\x00": "xz",
}
PERF_DATA_MAGIC = (b"PERFILE2", b"2ELIFREP")
TRACE_DAT_MAGIC = b"\x17\x08\x44tracing"  # trace-cmd's trace.dat (parse/tracedat.py)
CHUNK_BYTES = 32 << 20
FIRST_CHUNK_BYTES = 2 << 20
# No trace line comes near this: past it without a newline the input is not a text trace (/dev/zero,
# a binary file), and reading on would only fill memory.
MAX_LINE_BYTES = 64 << 20


def _too_long(path: str, line: int | None) -> InputError:
    return InputError(path, f"no newline in {MAX_LINE_BYTES >> 20} MiB: not a text trace", line=line)


@dataclass
class Chunk:
    data: bytes  # whole lines; the last line may lack its newline only at end of input
    first_line: int | None  # 1-based number of the first line in data; None: not counted here
    final: bool
    partial_tail: bool = False  # data ends with the start of a line that the next chunk holds whole


def sniff(head: bytes) -> str:
    """'gz', 'zst', 'xz', 'perf.data', 'trace.dat' or 'plain', from the first bytes of a file."""
    if head[:8] in PERF_DATA_MAGIC:
        return "perf.data"
    if head[:3] == TRACE_DAT_MAGIC[:3]:  # the rest of the magic is checked by the reader, which names damage
        return "trace.dat"
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    return "plain"


class _Watched:
    """A pipe, FIFO or terminal read with a bound on silence (`ingest --input-timeout`): a read that
    sees no byte for `timeout` seconds raises InputError instead of waiting like cat. Reads block
    until n bytes or end of input, as a buffered file's do."""

    def __init__(self, fd: int, path: str, timeout: float, owned: bool):
        self.fd, self.path, self.timeout, self.owned = fd, path, timeout, owned

    def _wait(self) -> None:
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            raise InputError(self.path, f"no data for {self.timeout:g} s (--input-timeout); nothing written")

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        want = n if n >= 0 else 1 << 62
        while want > 0:
            self._wait()
            block = os.read(self.fd, min(want, 1 << 20))
            if not block:
                break
            parts.append(block)
            want -= len(block)
        return b"".join(parts)

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if self.owned:
            os.close(self.fd)
            self.owned = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _watched(path: str, timeout: float) -> _Watched | None:
    """The input as a _Watched stream when it is stdin, a FIFO or a character device; None for a file."""
    if path == "-":
        return _Watched(sys.stdin.fileno(), "-", timeout, owned=False)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        return None
    try:  # a FIFO without a writer: open at once; the first read's wait is the one that is bounded
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
    except OSError as e:
        raise InputError(path, f"cannot open: {e.strerror}") from None
    return _Watched(fd, path, timeout, owned=True)


def _raw_stream(path: str, stall_timeout: float | None = None) -> BinaryIO:
    if stall_timeout is not None and (watched := _watched(path, stall_timeout)) is not None:
        return watched  # type: ignore[return-value]
    if path == "-":
        return sys.stdin.buffer
    p = Path(path)
    if not p.exists():
        raise InputError(path, "no such file")
    if p.is_dir():
        raise InputError(path, "is a directory, not a trace file")
    try:
        return open(p, "rb")
    except OSError as e:
        raise InputError(path, f"cannot open: {e.strerror}") from None


class _Peekable:
    """Wraps a stream so that the first bytes can be inspected and then read again (stdin too)."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.head = raw.read(16)

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if 0 <= n < len(self.head):
                out, self.head = self.head[:n], self.head[n:]
                return out
            out, self.head = self.head, b""
            if n < 0:
                return out + self.raw.read()
            return out + self.raw.read(n - len(out))
        return self.raw.read(n)


class _Truncated(Exception):
    def __init__(self, kind: str):
        self.kind = kind


def _stream_blocks(src: _Peekable, make, kind: str) -> Iterator[bytes]:
    """Decompress member after member (gzip and xz files may be concatenations), yielding output as
    it comes, so that what precedes a truncation is still read and counted."""
    dec = make()
    pending = b""
    while True:
        block = pending or src.read(1 << 20)
        pending = b""
        if not block:
            break
        out = dec.decompress(block)
        if out:
            yield out
        if dec.eof:
            pending = dec.unused_data
            dec = make()
            if not pending:
                nxt = src.read(1 << 20)
                if not nxt:
                    return
                pending = nxt
    if not dec.eof:
        raise _Truncated(kind)


def _decompressed_blocks(src: _Peekable, kind: str) -> Iterator[bytes]:
    if kind == "plain":
        while block := src.read(CHUNK_BYTES):
            yield block
        return
    make = {
        "zst": lambda: zstandard.ZstdDecompressor().decompressobj(),
        "gz": lambda: zlib.decompressobj(wbits=31),
        "xz": lambda: lzma.LZMADecompressor(),
    }[kind]
    yield from _stream_blocks(src, make, kind)


def describe_kind(path: str) -> str:
    """What a file on disk holds: 'perf.data', 'trace.dat' or 'text' (each plain or compressed)."""
    with _raw_stream(path) as f:
        src = _Peekable(f)
        kind = sniff(src.head)
        if kind in ("perf.data", "trace.dat", "plain"):
            return "text" if kind == "plain" else kind
        try:
            first = next(_decompressed_blocks(src, kind), b"")
        except (_Truncated, OSError, EOFError, lzma.LZMAError, zlib.error, zstandard.ZstdError):
            return "text"  # read_chunks reports the damage with a line number
        inner = sniff(first[:16])
        return inner if inner in ("perf.data", "trace.dat") else "text"


def describe_container(path: str) -> str:
    """The outer container of a file: 'perf.data', 'gz', 'zst', 'xz' or 'plain'."""
    with _raw_stream(path) as f:
        return sniff(f.read(16))


def decompress_to(path: str, target: BinaryIO) -> None:
    """Write the decompressed content of path (e.g. perf.data.xz) to an open file."""
    with _raw_stream(path) as f:
        src = _Peekable(f)
        kind = sniff(src.head)
        try:
            for block in _decompressed_blocks(src, "plain" if kind in ("perf.data", "trace.dat") else kind):
                target.write(block)
        except _Truncated as t:
            raise InputError(path, f"compressed stream ends early (truncated .{t.kind})") from None


def _plain_file_chunks(raw: BinaryIO, chunk_bytes: int, first_bytes: int, path: str = "?") -> Iterator[Chunk]:
    """Chunks of a plain seekable file: read, note where the last line starts, seek back there.

    Neither copied nor counted here (that would hold the GIL while the parsers wait for it): a chunk
    keeps its cut-off tail (the reader drops that row) and its first line number is left for the
    reader to derive from the previous chunk's row count.
    """
    raw.seek(0)
    pos, target = 0, first_bytes
    first: int | None = 1
    while True:
        block = raw.read(target)
        if len(block) < target:
            yield Chunk(block, first, True)
            return
        cut = block.rfind(b"\n")
        if cut < 0:  # a line longer than the chunk: read a bigger one
            if target >= MAX_LINE_BYTES:
                raise _too_long(path, first)   # the line's number is known only in the first chunk
            raw.seek(pos)
            target *= 2
            continue
        yield Chunk(block, first, False, partial_tail=cut != len(block) - 1)
        first = None
        pos += cut + 1
        raw.seek(pos)
        target = chunk_bytes


def read_chunks(
    path: str, chunk_bytes: int = CHUNK_BYTES, stream: BinaryIO | None = None, first_bytes: int = FIRST_CHUNK_BYTES,
    stall_timeout: float | None = None,
) -> Iterator[Chunk]:
    """Yield the decompressed input as chunks of whole lines, numbered from 1.

    The first chunk is small (first_bytes) so that what it decides (format, gfp table) is known early.
    `stream` reads from an open stream (e.g. perf script's stdout) named `path` in messages.
    `stall_timeout` bounds the silence of a pipe, FIFO or stdin (None: wait for it like cat).
    Raises InputError for a missing file, a truncated or corrupt compressed stream (naming the last
    complete line), or a perf.data file (which must go through `perf script` first).
    """
    raw = stream if stream is not None else _raw_stream(path, stall_timeout)
    try:
        src = _Peekable(raw)
        kind = sniff(src.head)
        if kind == "perf.data":
            raise InputError(path, "is a perf.data file; decode it with perf script first")
        if kind == "trace.dat":  # a file is read by parse/tracedat.py; this is one on stdin or a pipe
            raise InputError(path, "is a trace-cmd trace.dat; give it as a file (not on stdin or a pipe)")
        if kind == "plain" and stream is None and raw is not sys.stdin.buffer and raw.seekable():
            yield from _plain_file_chunks(raw, chunk_bytes, min(first_bytes, chunk_bytes), path)
            return
        parts: list[bytes] = []
        size = 0
        line = 1
        target = min(first_bytes, chunk_bytes)
        try:
            for block in _decompressed_blocks(src, kind):
                parts.append(block)
                size += len(block)
                if size < target:
                    continue
                buf = b"".join(parts)
                cut = buf.rfind(b"\n")
                if cut < 0:  # one very long line so far: keep reading
                    if len(buf) > MAX_LINE_BYTES:
                        raise _too_long(path, line)
                    parts = [buf]
                    continue
                data, rest = buf[: cut + 1], buf[cut + 1 :]
                yield Chunk(data, line, False)
                line += data.count(b"\n")
                parts, size = ([rest], len(rest)) if rest else ([], 0)
                target = chunk_bytes
        except _Truncated as t:
            done = line - 1 + sum(p.count(b"\n") for p in parts)
            raise InputError(
                path,
                f"compressed stream ends early (truncated .{t.kind}) after line {done}",
                hint="the file was cut short, e.g. by a full disk; re-copy it or decompress what is there by hand",
            ) from None
        except (OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as e:
            raise InputError(path, f"corrupt .{kind} stream after line {line - 1}: {e}") from None
        yield Chunk(b"".join(parts), line, True)
    finally:
        if stream is None and raw is not sys.stdin.buffer:
            raw.close()  # a _Watched stdin is not closed (owned=False)


def read_small_text(path: str | Path, limit: int, what: str) -> str:
    """A small text file an option names (`--file` SQL, `--params` TOML; '-' is stdin): UTF-8 and at most
    limit bytes, else a one-line InputError naming it. A device or a pipe that never ends (/dev/zero) is
    refused at the limit, not read into memory."""
    name = str(path)
    try:
        if name == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
    except OSError as e:
        raise InputError(name, f"cannot read: {e.strerror}") from None
    if len(data) > limit:
        raise InputError(name, f"more than {limit >> 20} MiB: too large for {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(name, f"not UTF-8 text (byte 0x{data[e.start]:02x})", line=data[:e.start].count(b"\n") + 1) from None
