"""Directories that appear whole or not at all."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished directory tmp at final, replacing what is there. Both renames are atomic; in
    between, final is briefly absent (readers see the old or the new content, never a mix)."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
