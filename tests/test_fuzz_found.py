"""Inputs the fuzzers (tests/fuzz/fuzz_parse.py `make fuzz`, tests/fuzz/fuzz_c.py `make fuzz-asan`) found
to crash or hang the parsers, kept so they never do again. Each must parse, within 30 s: events or
counted rejects, no exception."""

from __future__ import annotations

from pathlib import Path

import signal

import pytest

from fuzz_harness import parse_bytes

FOUND = sorted((Path(__file__).resolve().parent / "data" / "fuzz").iterdir())


@pytest.mark.parametrize("path", FOUND, ids=[p.name for p in FOUND])
def test_fuzz_finding_parses(path):
    def hang(signum, frame):
        raise TimeoutError(f"{path.name}: no answer in 30 s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(30)
    try:
        parse_bytes(path.read_bytes())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
