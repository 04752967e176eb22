"""The console script's entry point: a Ctrl-C while the command line is still being imported (typer,
polars, ...) is one line and exit status 130, as a Ctrl-C at any later point is, not a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from thpreplay.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("thpreplay: interrupted\n")
        sys.exit(130)
    cli_main()
