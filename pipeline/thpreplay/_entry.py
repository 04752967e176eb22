"""The console script's entry point: a Ctrl-C while the command line is still being imported (typer,
polars, ...) is one line and exit status 130, as a Ctrl-C at any later point is, not a traceback."""

from __future__ import annotations

import os
import sys


def main() -> None:
    # numpy's OpenBLAS starts a thread per core as numpy is imported (40-60 ms of a simulate's start on a
    # 2-core machine under load), and thpreplay does no linear algebra: one thread, unless the user said
    # otherwise. Only read as numpy is first imported, hence here, before any import of the command.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        from thpreplay.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("thpreplay: interrupted\n")
        sys.exit(130)
    cli_main()
