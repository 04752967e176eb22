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


def read_bytes(data: bytes) -> None:
    with open(_PATH, "wb") as f:
        f.write(data)
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
