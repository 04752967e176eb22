"""Coverage-guided fuzzing of the perf.data reader with atheris (`make fuzz`; not part of `make test`).

Any bytes are written to a file and read by parse/_perfdata.c as ingest reads a perf.data: the reader
must print whole lines or refuse the file with its Error or Unsupported (ingest turns both into one
line). The corpus is seeded with the real captures of tests/data/perfdata. atheris instruments the
Python side only; `make fuzz-asan` runs the C reader under AddressSanitizer and UBSan on damaged
captures (tests/fuzz/fuzz_c.py).

    .venv/bin/python tests/fuzz/fuzz_perfdata.py -max_total_time=300 -max_len=1048576 CORPUS_DIR
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["thpreplay"]):
    from thpreplay.parse import _perfdata

_FD, _PATH = tempfile.mkstemp(prefix="thpreplay-fuzz-", suffix=".perf.data")


def _seeds() -> list[bytes]:
    import lzma
    from pathlib import Path
    data = Path(__file__).resolve().parents[1] / "data" / "perfdata"
    return [lzma.decompress(p.read_bytes()) for p in sorted(data.glob("*.perf.data.xz"))]


SEEDS = _seeds()


def damage(data: bytes) -> bytes:
    """The fuzzer's bytes as patches to a real capture: which capture, then (offset, width, value)
    patches, mostly in the header, attrs and first records, and maybe a cut. atheris sees only the
    Python side's coverage, so raw random bytes would rarely get past the magic."""
    fdp = atheris.FuzzedDataProvider(data)
    seed = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
    data_off = int.from_bytes(seed[40:48], "little")
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        base = fdp.PickValueInList([0, 64, 104, 1024, data_off, data_off + 4096, len(seed) - 65536])
        at = min(max(base + fdp.ConsumeIntInRange(0, 8191), 0), len(seed) - 8)
        width = fdp.PickValueInList([1, 2, 4, 8])
        seed[at:at + width] = fdp.ConsumeInt(width).to_bytes(width, "little", signed=True)
    if fdp.ConsumeBool() and fdp.ConsumeBool():
        seed = seed[: fdp.ConsumeIntInRange(0, len(seed))]
    return bytes(seed)


def read_bytes(data: bytes) -> None:
    with open(_PATH, "wb") as f:
        f.write(damage(data) if len(data) < 4096 else data)
    try:
        reader = _perfdata.Reader(_PATH)
        while True:
            text, lines = reader.read(1 << 20)
            if not text:
                break
            if not text.endswith(b"\n") or text.count(b"\n") != lines:
                raise AssertionError("the reader printed a partial line")
        reader.info()
    except (_perfdata.Error, _perfdata.Unsupported):
        pass


if __name__ == "__main__":
    try:
        atheris.Setup(sys.argv, read_bytes)
        atheris.Fuzz()
    finally:
        os.unlink(_PATH)
