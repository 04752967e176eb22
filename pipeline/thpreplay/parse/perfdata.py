"""perf.data files read without perf: the C reader (parse/_perfdata.c) prints the lines that
`perf script -F comm,tid,cpu,time,event,trace --ns` prints for the file, byte for byte, and ingest
parses them as it parses perf's text (same tables, same `line` numbers).

A file the reader does not handle (pipe mode, callchains, AUX data, libtraceevent missing, ...) is
`Unsupported` with the reason: ingest says so in one warning line and runs perf script instead. A
malformed file is an InputError naming it. THPREPLAY_PERF_SCRIPT=1 in the environment makes
ingest use perf script for every perf.data, e.g. to compare the two.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from thpreplay.errors import InputError
from thpreplay.inputs import CHUNK_BYTES, FIRST_CHUNK_BYTES, Chunk

try:
    from thpreplay.parse import _perfdata
except ImportError:  # not built (no compiler): perf script decodes every perf.data
    _perfdata = None

AVAILABLE = _perfdata is not None
FORCE_ENV = "THPREPLAY_PERF_SCRIPT"


@dataclass
class Native:
    """An open perf.data and what its reading found (filled in as it is read)."""

    name: str
    reader: object
    info: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # warnings for the user

    def chunks(self) -> Iterator[Chunk]:
        """Chunks of whole lines, numbered from 1 as perf script's output would be."""
        first_line = 1
        want = FIRST_CHUNK_BYTES
        pending = self._read(want)
        while pending[0]:
            nxt = self._read(CHUNK_BYTES)
            data, lines = pending
            yield Chunk(data, first_line, final=not nxt[0])
            first_line += lines
            pending = nxt
        self.info = self.reader.info()

    def _read(self, want: int) -> tuple[bytes, int]:
        try:
            return self.reader.read(want)
        except _perfdata.Unsupported as e:  # met past the header: too late to hand over to perf script
            raise InputError(self.name, f"perf.data: {e}: thpreplay's reader does not read it; "
                                        f"ingest it with {FORCE_ENV}=1 (perf script)") from None
        except _perfdata.Error as e:
            raise InputError(self.name, f"malformed perf.data: {e}") from None


def forced() -> bool:
    return os.environ.get(FORCE_ENV, "") not in ("", "0")


def open_native(path: str, name: str) -> tuple[Native | None, str]:
    """(reader, "") or (None, why perf script has to decode it). path: a plain perf.data file."""
    if forced():
        return None, ""
    if _perfdata is None:
        return None, "the native perf.data reader is not built"
    try:
        native = Native(name, _perfdata.Reader(path))
        native.info = native.reader.info()
        if native.info["unknown_features"]:  # a newer perf's header sections: each is found by its bit, so skipping is safe
            bits = ", ".join(map(str, native.info["unknown_features"]))
            native.notes.append(f"{name}: perf.data header feature bits thpreplay does not know ({bits}): skipped")
        return native, ""
    except _perfdata.Unsupported as e:
        return None, str(e)
    except _perfdata.Error as e:
        raise InputError(name, f"malformed perf.data: {e}") from None
    except OSError as e:
        raise InputError(name, f"cannot read: {e.strerror}") from None
