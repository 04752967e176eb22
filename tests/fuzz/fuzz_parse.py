"""Coverage-guided fuzzing of the text parsers with atheris (`make fuzz`; not part of `make test`).

The check is tests/fuzz_harness.py: any bytes go through format detection and the parser as ingest
runs them, and must parse (every line in one table or the rejects) or be refused with thpreplay's own
InputError. A crash is written as ./crash-<sha1>; copy it to tests/data/fuzz/ with a name saying what it
is, and tests/test_fuzz_found.py keeps it fixed.

    .venv/bin/python tests/fuzz/fuzz_parse.py -max_total_time=300 tests/fuzz/corpus
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

import polars  # noqa: F401  (imported before instrumentation: atheris' hooks break polars' Python layer)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
with atheris.instrument_imports(include=["thpreplay", "fuzz_harness"]):
    from fuzz_harness import parse_bytes


if __name__ == "__main__":
    atheris.Setup(sys.argv, parse_bytes)
    atheris.Fuzz()
