"""The trace.dat reader under AddressSanitizer and UBSan (`make fuzz-asan`, after tests/fuzz/fuzz_c.py).

Run with the sanitized build of parse/_tracedat.c on PYTHONPATH (the make target builds it into
$OUT/asan). The real captures of tests/data/tracedat are damaged the ways a file is damaged (bytes
flipped, numbers at their bounds written over header fields, ring-buffer page headers and entry
headers, the file cut short) and read as ingest reads them, for FUZZ_SECONDS (seed FUZZ_SEED). A
memory error aborts with the sanitizer's report; an exception other than InputError or Unsupported
is written as $FUZZ_OUT/crash-tracedat-<sha1> and fails the run.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import random
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from thpreplay.errors import InputError  # noqa: E402
from thpreplay.parse import tracedat  # noqa: E402

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


def main() -> int:
    if not tracedat.AVAILABLE:
        print("fuzz_tracedat_c: parse/_tracedat.c is not built", file=sys.stderr)
        return 1
    seconds = float(os.environ.get("FUZZ_SECONDS", "60"))
    seed = int(os.environ.get("FUZZ_SEED", "1"))
    out = Path(os.environ.get("FUZZ_OUT", "."))
    rng = random.Random(seed)
    pool = seeds()
    fd, path = tempfile.mkstemp(prefix="thpreplay-fuzz-", suffix=".dat")
    os.close(fd)
    runs = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            data = mutate(rng, rng.choice(pool))
            try:
                once(data, path)
            except Exception as e:  # noqa: BLE001 - anything else is a finding
                name = out / f"crash-tracedat-{hashlib.sha1(data).hexdigest()}"
                name.write_bytes(data)
                print(f"fuzz_tracedat_c: {type(e).__name__}: {e} -> {name}", file=sys.stderr)
                return 1
            runs += 1
    finally:
        os.unlink(path)
    print(f"fuzz_tracedat_c: {runs} damaged trace.dat files read, seed {seed}, {seconds:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
