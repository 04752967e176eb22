"""What a capture's start took untraced: pages allocated after its kpageflags snapshot and before its first
event, which neither shows. The bundle's `untraced_start` file (copied into the dataset's snapshots/)
says how many; the lab's guests write it (a bundle made by hand may too; `thpreplay record` does not:
README, "The start's snapshots and the tracer's own memory"):

    missing=all            the pages were allocated wholly after the snapshot, so the model's start lacks
                           every one of them: the deterministic run and every sample allocate them all
                           (a tracer's ring buffer sized after the snapshot, say).
                           missing=some: the snapshot saw part of them (the lab's guests write
                           the kpageflags dump into memory while reading it, so the pages the dump took
                           before reading their pfn show as used): how many the start lacks is not in the
                           capture, so each sample draws it uniformly from 0 to the count, node by node,
                           and the deterministic run allocates none
    migratetype=unmovable  the pages' kind: unmovable kernel pages (ring buffers: GFP_KERNEL) or movable,
                           swap-backed ones (a tmpfs file's pages)
    node0=768              pages on each node (a ring buffer's pages are on its CPU's node)
    why=...                what took them, one line

The model allocates them one order-0 page at a time, on their node, through its own allocator (so an
unmovable page steals from a movable block as the kernel's fallback does), before the trace's first op,
and never frees them (sim/engine.py untraced_ops). It does not model what their allocation cost: had
the kernel reclaimed or compacted for them, that is not in the trace either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from thpreplay.errors import InputError

FILE = "untraced_start"
MIGRATETYPES = {"unmovable": 0, "movable": 1}   # MIGRATE_UNMOVABLE, MIGRATE_MOVABLE


@dataclass(frozen=True)
class Untraced:
    missing: str                  # "all" or "some"
    migratetype: str              # "unmovable" or "movable"
    pages: dict[int, int]         # node -> pages
    why: str

    @property
    def total(self) -> int:
        return sum(self.pages.values())

    def deterministic(self) -> dict[int, int]:
        """The pages the deterministic run allocates: all of them when the snapshot saw none, else none."""
        return dict(self.pages) if self.missing == "all" else {}

    def draw(self, rng) -> dict[int, int]:
        """A sample's pages: all of them, or for missing=some a uniform 0..N per node (in node order)."""
        if self.missing == "all":
            return dict(self.pages)
        return {node: int(rng.integers(0, n + 1)) for node, n in sorted(self.pages.items())}

    def note(self) -> str:
        where = ", ".join(f"{n:,} on node {node}" for node, n in sorted(self.pages.items()))
        if self.missing == "all":
            return (f"the start lacks {self.total:,} {self.migratetype} pages allocated after the kpageflags "
                    f"snapshot and before the trace ({where}: {self.why}); the model allocates them before the "
                    f"first op ({FILE})")
        return (f"up to {self.total:,} {self.migratetype} pages were allocated after the kpageflags snapshot began "
                f"and before the trace ({where}: {self.why}); the snapshot saw some of them: --samples draws "
                f"how many the start lacks, the deterministic run none ({FILE})")


def engine_args(untraced: Untraced | None, pages: dict[int, int] | None = None) -> dict:
    """engine.run's keywords for the untraced start: the deterministic run's pages, or a sample's."""
    if untraced is None:
        return {}
    return dict(untraced_pages=untraced.deterministic() if pages is None else pages,
                untraced_migratetype=untraced.migratetype)


def parse(text: str, source: str) -> Untraced:
    """The file's text; a line it cannot read is an InputError naming the file and line."""
    fields: dict[str, str] = {}
    pages: dict[int, int] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq:
            raise InputError(source, f"expected name=value, got {line.strip()!r}", i)
        if key.startswith("node") and key[4:].isdigit():
            if not value.isdigit():
                raise InputError(source, f"{key} must be a page count, got {value!r}", i)
            pages[int(key[4:])] = int(value)
        elif key in ("missing", "migratetype", "why"):
            fields[key] = value
        else:
            raise InputError(source, f"unknown name {key!r} (missing, migratetype, nodeN, why)", i)
    if fields.get("missing") not in ("all", "some"):
        raise InputError(source, "missing= must be all or some")
    if fields.get("migratetype") not in MIGRATETYPES:
        raise InputError(source, "migratetype= must be unmovable or movable")
    if not pages:
        raise InputError(source, "no nodeN= line")
    return Untraced(fields["missing"], fields["migratetype"], pages, fields.get("why", ""))


def read(dataset: Path | None) -> Untraced | None:
    """The dataset's untraced start, or None when its bundle had no such file."""
    if dataset is None:
        return None
    p = Path(dataset) / "snapshots" / FILE
    if not p.is_file():
        return None
    return parse(p.read_text(errors="replace"), str(p))


def text(missing: str, migratetype: str, pages: dict[int, int], why: str) -> str:
    """The file's text (record, the lab)."""
    return "".join([f"missing={missing}\n", f"migratetype={migratetype}\n",
                    *(f"node{node}={n}\n" for node, n in sorted(pages.items())), f"why={why}\n"])
