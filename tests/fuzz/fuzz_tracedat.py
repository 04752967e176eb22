"""Coverage-guided fuzzing of the trace.dat reader with atheris (`make fuzz`; not part of `make test`).

Any bytes are written to a file and read as ingest reads a trace.dat (parse/tracedat.py for the
metadata, parse/_tracedat.c for the pages): the reader must print whole lines or refuse the file with
InputError or Unsupported (ingest turns both into one line). Inputs starting with "name:" are an
event format file instead, compiled by parse/tpformat.py (None, or a program the C side accepts).
The corpus is seeded with the captures of tests/data/tracedat. atheris instruments the Python side;
`make fuzz-asan` runs the C renderer under AddressSanitizer and UBSan (tests/fuzz/fuzz_tracedat_c.py).

    .venv/bin/python tests/fuzz/fuzz_tracedat.py -max_total_time=300 -max_len=1048576 CORPUS_DIR
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["thpreplay"]):
    from thpreplay.errors import InputError
    from thpreplay.parse import tpformat, tracedat

_FD, _PATH = tempfile.mkstemp(prefix="thpreplay-fuzz-", suffix=".dat")


def read_bytes(data: bytes) -> None:
    if data.startswith(b"name:"):
        try:
            ev = tpformat.parse(data.decode("utf-8", "replace"), "fuzz")
        except tpformat.FormatError:
            return
        prog = tpformat.compile_event(ev) or tpformat.failed_program(ev)
        if ev.field("common_pid") is not None and tracedat.AVAILABLE:
            pid = ev.field("common_pid")
            if pid.size in (2, 4, 8):
                r = tracedat._tracedat.Renderer([], 8, 0, 4096, [ev.id], [])
                r.add_plan((ev.id, b"fuzz", *prog.pack(), pid.offset, pid.size))  # must not be refused
        return
    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        td = tracedat.read(_PATH)
        for block in tracedat.text_blocks(_PATH, td, block_bytes=1 << 16, first_bytes=1 << 12):
            if not block.endswith(b"\n"):
                raise AssertionError("the reader printed a partial line")
    except (InputError, tracedat.Unsupported):
        pass


if __name__ == "__main__":
    try:
        atheris.Setup(sys.argv, read_bytes)
        atheris.Fuzz()
    finally:
        os.unlink(_PATH)
