"""The trace.dat reader under AddressSanitizer and UBSan (`make fuzz-asan`, after tests/fuzz/fuzz_c.py).

Run with the sanitized build of parse/_tracedat.c on PYTHONPATH (the make target builds it into
$OUT/asan). The real captures of tests/data/tracedat are damaged the ways a file is damaged (bytes
flipped, numbers at their bounds written over header fields, ring-buffer page headers and entry
headers, the file cut short) and read as ingest reads them; and the event format files they carry are
damaged (print fmt and field lines), compiled by parse/tpformat.py and run by the renderer on random
records; for FUZZ_SECONDS (seed FUZZ_SEED). A
memory error aborts with the sanitizer's report; an exception other than InputError or Unsupported
is written as $FUZZ_OUT/crash-tracedat-<sha1> and fails the run.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import random
import re
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from thpreplay.errors import InputError  # noqa: E402
from thpreplay.parse import tpformat, tracedat  # noqa: E402

BOUNDS = [0, 1, 3, 4, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFF, 0x8000000, 0x7FFFFFFF, 0x80000000, 0xC0000000, 0xFFFFFFFF,
          1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]


def seeds() -> list[bytes]:
    out = []
    for p in sorted((ROOT / "tests" / "data" / "tracedat").iterdir()):
        if p.suffix == ".xz":
            out.append(lzma.decompress(p.read_bytes()))
        elif p.suffix == ".dat":
            out.append(p.read_bytes())
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    d = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(5)
        # half the edits land in the last quarter, where the ring-buffer pages are
        pos = rng.randrange(len(d)) if rng.random() < 0.5 else rng.randrange(len(d) * 3 // 4, len(d))
        if op == 0:
            d[pos] = rng.randrange(256)
        elif op in (1, 2):
            width = 4 if op == 1 else 8
            v = rng.choice(BOUNDS) & ((1 << (8 * width)) - 1)
            if pos + width <= len(d):
                struct.pack_into("<I" if width == 4 else "<Q", d, pos, v)
        elif op == 3:  # an entry header: type_len and delta at a 4-byte boundary of a page
            pos &= ~3
            if pos + 4 <= len(d):
                struct.pack_into("<I", d, pos, rng.choice([0, 1, 28, 29, 30, 31]) | (rng.randrange(1 << 27) << 5))
        else:
            del d[rng.randrange(len(d)):]
            if not d:
                d = bytearray(data[:16])
    return bytes(d)


def once(data: bytes, path: str) -> None:
    with open(path, "wb") as f:
        f.write(data)
    try:
        td = tracedat.read(path)
        for block in tracedat.text_blocks(path, td, block_bytes=1 << 16, first_bytes=1 << 12):
            assert block.endswith(b"\n")
    except (InputError, tracedat.Unsupported):
        pass
    # the typed route (render_typed): typed rows and numbered text, never a memory error
    from thpreplay.parse import perfdata
    try:
        td = tracedat.read(path)
        chunks = tracedat.typed_chunks(path, td, {})
        for chunk in chunks or ():
            if isinstance(chunk, perfdata.TypedChunk):
                t = chunk.typed
                assert t.typed[0] + len(t.xlines) // 8 == t.lines and t.text.count(b"\n") == len(t.xlines) // 8
    except (InputError, tracedat.Unsupported):
        pass


def format_seeds() -> list[str]:
    """The event format files of the captures (every kernel event's, as trace.dat carries them)."""
    td = tracedat.read(ROOT / "tests" / "data" / "tracedat" / "v7-zstd.dat")
    keep = ("kmem", "compaction", "vmscan", "exceptions", "sched", "writeback", "ext4", "block")
    return [raw.text for raw in td.events if raw.system in keep]


def mutate_format(rng: random.Random, text: str) -> str:
    """A format file with its print fmt or a field line damaged."""
    lines = text.split("\n")
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        line = lines[i]
        op = rng.randrange(5)
        if op == 0 and line:
            j = rng.randrange(len(line))
            line = line[:j] + rng.choice("(){}[],?:\"%-+*<>&|!~0123456789xlusdpREC->") + line[j + 1:]
        elif op == 1 and line:
            j = rng.randrange(len(line))
            line = line[:j] + line[j + rng.randint(1, 20):]
        elif op == 2:  # a number at a bound in an offset, size or constant
            line = re.sub(r"\d+", lambda m: rng.choice(["0", "1", "4095", "4096", "65535", "65536",
                                                          "4294967295", "18446744073709551615", m.group()]), line, count=1)
        elif op == 3:
            line = line + line[: rng.randrange(len(line) + 1)]
        else:
            j = rng.randrange(len(line) + 1)
            line = line[:j] + "%" + rng.choice("dusxpcs%") + line[j:]
        lines[i] = line
    return "\n".join(lines)


def format_once(rng: random.Random, text: str) -> None:
    """Compile a (damaged) format and render random records of it through the C renderer."""
    try:
        ev = tpformat.parse(text, "fuzz")
    except tpformat.FormatError:
        return
    pid = ev.field("common_pid")
    if pid is None or pid.size not in (2, 4, 8):
        return
    prog = tpformat.compile_event(ev) or tpformat.failed_program(ev)
    page = 4096
    pages = []
    for _ in range(4):
        body = b""
        while len(body) < 3000:
            n = rng.randint(1, 28)
            rec = bytearray(rng.randbytes(n * 4))
            struct.pack_into("<H", rec, 0, ev.id)
            body += struct.pack("<I", n) + bytes(rec)
        pages.append(struct.pack("<QQ", rng.randrange(1 << 40), len(body)) + body + bytes(page - 16 - len(body)))
    r = tracedat._tracedat.Renderer([(0, b"".join(pages))], 8, 0, page, [ev.id], [(1, b"x")])
    try:
        r.add_plan((ev.id, b"fuzz", *prog.pack(), pid.offset, pid.size))
    except ValueError:
        raise AssertionError("the renderer refused a program tpformat made") from None
    try:
        while r.render(1 << 16):
            pass
    except ValueError:
        pass  # a record shorter than its format says


def main() -> int:
    if not tracedat.AVAILABLE:
        print("fuzz_tracedat_c: parse/_tracedat.c is not built", file=sys.stderr)
        return 1
    seconds = float(os.environ.get("FUZZ_SECONDS", "60"))
    seed = int(os.environ.get("FUZZ_SEED", "1"))
    out = Path(os.environ.get("FUZZ_OUT", "."))
    rng = random.Random(seed)
    pool = seeds()
    formats = format_seeds()
    fd, path = tempfile.mkstemp(prefix="thpreplay-fuzz-", suffix=".dat")
    os.close(fd)
    runs = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            fmt = rng.random() < 0.3
            data = mutate_format(rng, rng.choice(formats)).encode() if fmt else mutate(rng, rng.choice(pool))
            try:
                if fmt:
                    format_once(rng, data.decode())
                else:
                    once(data, path)
            except Exception as e:  # noqa: BLE001 - anything else is a finding
                name = out / f"crash-tracedat-{hashlib.sha1(data).hexdigest()}"
                name.write_bytes(data)
                print(f"fuzz_tracedat_c: {type(e).__name__}: {e} -> {name}", file=sys.stderr)
                return 1
            runs += 1
    finally:
        os.unlink(path)
    print(f"fuzz_tracedat_c: {runs} damaged trace.dat files and event formats read, seed {seed}, {seconds:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
