"""Inputs the coverage-guided fuzzer (tests/fuzz/fuzz_parse.py, `make fuzz`) found to crash the
parsers, kept so they never do again. Each must parse: events or counted rejects, no exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz_harness import parse_bytes

FOUND = sorted((Path(__file__).resolve().parent / "data" / "fuzz").iterdir())


@pytest.mark.parametrize("path", FOUND, ids=[p.name for p in FOUND])
def test_fuzz_finding_parses(path):
    parse_bytes(path.read_bytes())
