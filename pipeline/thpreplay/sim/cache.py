"""The prepared replay inputs (demand and initial state) kept with the dataset, so that a second simulate,
validate or sweep task on the same capture does not build them again.

Where: DATASET/cache/demand-<dataset key>-<settings key>/ holding
  manifest.json  what the directory holds: every array's file, offset, dtype and shape, each file's size
                 and CRC-32, and the small values (notes, counts, zones, ...)
  ops.bin        the demand's ops, one column after the other (sim/demand.py OP_COLUMNS)
  arrays.bin     the other arrays of the demand and the initial state, back to back
  faults.parquet the demand's THP fault table

The key: the dataset key is a hash of dataset.json and of every file the demand and the initial state are
built from (its tables' Parquet parts and the snapshots): each file's name, size, modification time and
its first and last 64 KiB (a Parquet part's footer, with its row counts and column statistics, is at its
end). The settings key is a hash of what the build is given (THP enabled/defrag as the capture had them,
madvised, the madvise signatures of the capturing kernel's era, vm.compact_unevictable_allowed, the seed)
and of CACHE_FORMAT and the source of the modules that build them (demand.py, state.py, this file):
changing the code invalidates the cache without anyone bumping a number. A dataset re-ingested in place
is a new directory, cache and all.

Nothing in it is trusted: a manifest that does not parse, a file of the wrong size or CRC, an array of
the wrong shape make it rebuilt, with a note. A dataset directory that cannot be written (read-only)
is prepared as before, with one note, and nothing is written. `rm -rf DATASET/cache` clears it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import zlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

from thpreplay.atomic import clean_stale, make_tmp, write_parquet
from thpreplay.sim import demand as demand_mod
from thpreplay.sim import state as state_mod

# Bump when the cached layout changes (the build code's own changes are caught by its source hash).
CACHE_FORMAT = 1
CACHE_DIR = "cache"
# the dataset's tables and files the demand and the initial state read (demand.py, state.py)
_TABLES = ("page_alloc", "page_free", "page_fault", "reclaim", "compaction", "extfrag", "thp_faults", "topology",
           "free_lists", "metadata")
_EDGE = 1 << 16
_CHUNK = 1 << 20

_DEMAND_ARRAYS = ("observed_huge", "used_at_start", "free_at_start", "traced_pages")
_STATE_ARRAYS = ("block_zone", "block_mt", "used", "anon", "file", "mlock", "hint", "zonelists", "distances")


class Damaged(Exception):
    """A cache entry that does not hold what its manifest says."""


def _file_digest(h, path: Path, rel: str) -> None:
    st = path.stat()
    h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    with open(path, "rb") as f:
        h.update(f.read(_EDGE))
        if st.st_size > _EDGE:
            f.seek(max(_EDGE, st.st_size - _EDGE))
            h.update(f.read(_EDGE))


def dataset_key(dataset: Path) -> str:
    h = hashlib.sha256()
    _file_digest(h, dataset / "dataset.json", "dataset.json")
    for sub in (*_TABLES, "snapshots"):
        d = dataset / sub
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file():
                    _file_digest(h, p, f"{sub}/{p.name}")
    return h.hexdigest()[:16]


def _code_digest() -> str:
    h = hashlib.sha256(str(CACHE_FORMAT).encode())
    for mod in (demand_mod, state_mod):
        h.update(Path(mod.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def settings_key(settings: dict) -> str:
    h = hashlib.sha256(_code_digest().encode())
    h.update(json.dumps(settings, sort_keys=True, default=repr).encode())
    return h.hexdigest()[:16]


def _crc(path: Path) -> int:
    # one small buffer read into again: half the time of reading new 4 MiB blocks (page faults, copies)
    crc, buf = 0, bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            crc = zlib.crc32(view[:n], crc)
    return crc


# ------------------------------------------------------------------------------------------- writing


def _write(tmp: Path, demand: demand_mod.Demand, init: state_mod.InitialState) -> None:
    manifest: dict = {"format": CACHE_FORMAT, "arrays": {}, "files": {}}
    ops = demand.ops
    offsets, offset = {}, 0
    with open(tmp / "ops.bin", "wb") as f:
        for name, dtype in demand_mod.OP_COLUMNS:
            offsets[name] = offset
            for chunk in ops.chunks(_CHUNK, (name,)):
                data = np.ascontiguousarray(chunk[name], dtype=dtype)
                f.write(data.data)
                offset += data.nbytes
        f.flush()
        os.fsync(f.fileno())
    manifest["ops"] = dict(height=ops.height, ts_min=ops.ts_min, ts_max=ops.ts_max, offsets=offsets)
    arrays = {**{f"demand.{n}": getattr(demand, n) for n in _DEMAND_ARRAYS},
              **{f"demand.mt{mt}": a for mt, a in demand.pfns_by_migratetype.items()},
              **{f"state.{n}": getattr(init, n) for n in _STATE_ARRAYS}}
    offset = 0
    with open(tmp / "arrays.bin", "wb") as f:
        for name, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            manifest["arrays"][name] = dict(offset=offset, dtype=arr.dtype.str, shape=list(arr.shape))
            f.write(arr.data)
            offset += arr.nbytes
        f.flush()
        os.fsync(f.fileno())
    write_parquet(demand.faults, tmp / "faults.parquet")
    manifest["demand"] = dict(notes=demand.notes, counts=demand.counts, mts=sorted(demand.pfns_by_migratetype))
    manifest["state"] = dict(zones=[asdict(z) for z in init.zones], base_pfn=init.base_pfn, nodes=init.nodes,
                             cpu_node=sorted(init.cpu_node.items()), swap_pages=init.swap_pages,
                             assumptions=init.assumptions, summary=init.summary)
    for name in ("ops.bin", "arrays.bin", "faults.parquet"):
        manifest["files"][name] = dict(size=(tmp / name).stat().st_size, crc32=_crc(tmp / name))
    with open(tmp / "manifest.json", "w") as f:
        json.dump(manifest, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------------------- reading


def _read(entry: Path) -> tuple[demand_mod.Demand, state_mod.InitialState]:
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
            raise Damaged("manifest of another format")
        if set(manifest["files"]) != {"ops.bin", "arrays.bin", "faults.parquet"}:
            raise Damaged("manifest lists other files")
        raw = None
        for name, want in manifest["files"].items():
            path = entry / name
            if path.stat().st_size != want["size"]:
                raise Damaged(f"{name} is {path.stat().st_size} bytes, not {want['size']}")
            if name == "arrays.bin":  # read once: checked, then cut into the arrays
                raw = np.fromfile(path, dtype=np.uint8)
                crc = zlib.crc32(raw) if len(raw) == want["size"] else None
            else:
                crc = _crc(path)
            if crc != want["crc32"]:
                raise Damaged(f"{name} does not match its checksum")
        arrays = {}
        for name, a in manifest["arrays"].items():
            dtype, shape = np.dtype(a["dtype"]), tuple(a["shape"])
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if a["offset"] < 0 or a["offset"] + size > len(raw):
                raise Damaged(f"array {name} lies outside arrays.bin")
            arr = raw[a["offset"]:a["offset"] + size].view(dtype).reshape(shape)
            # a view of the file's one buffer, unless its offset does not suit its type (read as a copy)
            arrays[name] = arr if a["offset"] % dtype.alignment == 0 else arr.copy()
        o = manifest["ops"]
        height = int(o["height"])
        need = sum(height * np.dtype(t).itemsize for _, t in demand_mod.OP_COLUMNS)
        if manifest["files"]["ops.bin"]["size"] != need or set(o["offsets"]) != set(demand_mod.OP_NAMES):
            raise Damaged("ops.bin does not hold the ops its manifest counts")
        faults = pl.read_parquet(entry / "faults.parquet")
        blocks = [(0, height, {k: int(v) for k, v in o["offsets"].items()})] if height else []
        # read in chunks by each policy, as the op file a build writes (an open file outlives a rebuild)
        ops = demand_mod.Ops(height, int(o["ts_min"]), int(o["ts_max"]), file=open(entry / "ops.bin", "rb"),
                             blocks=blocks)
        d, s = manifest["demand"], manifest["state"]
        demand = demand_mod.Demand(
            ops=ops, faults=faults, **{n: arrays[f"demand.{n}"] for n in _DEMAND_ARRAYS},
            pfns_by_migratetype={int(mt): arrays[f"demand.mt{mt}"] for mt in d["mts"]},
            notes=list(d["notes"]), counts=dict(d["counts"]))
        init = state_mod.InitialState(
            zones=[state_mod.Zone(**z) for z in s["zones"]], base_pfn=int(s["base_pfn"]),
            **{n: arrays[f"state.{n}"] for n in _STATE_ARRAYS}, nodes=list(s["nodes"]),
            cpu_node={int(c): int(n) for c, n in s["cpu_node"]}, swap_pages=int(s["swap_pages"]),
            assumptions=list(s["assumptions"]), summary=dict(s["summary"]))
    except Damaged:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pl.exceptions.PolarsError) as e:
        raise Damaged(f"{type(e).__name__}: {e}") from None
    return demand, init


def _publish(tmp: Path, entry: Path) -> None:
    """Rename tmp to entry. A damaged entry there is moved aside first; a whole one that another process
    put there meanwhile is kept (it holds the same), never replaced under a reader."""
    if entry.is_dir() and _damaged(entry):
        old = entry.parent / f".{entry.name}.old-{os.getpid()}"
        os.rename(entry, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(tmp, entry)
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not entry.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _damaged(entry: Path) -> bool:
    try:
        _read(entry)[0].ops._file.close()
        return False
    except Damaged:
        return True


def load_or_build(dataset: Path, settings: dict,
                  build: Callable[[], tuple[demand_mod.Demand, state_mod.InitialState]]
                  ) -> tuple[demand_mod.Demand, state_mod.InitialState, list[str]]:
    """The demand and initial state of the dataset under these settings: from the cache when it holds
    them whole, else built (and kept when the dataset can be written). Returns them and the notes."""
    if os.environ.get("THPREPLAY_NO_CACHE"):
        return (*build(), [])
    notes: list[str] = []
    try:
        dkey = dataset_key(dataset)
    except OSError:
        return (*build(), [])  # a file vanished while it was hashed: the build will say what is wrong
    root = dataset / CACHE_DIR
    entry = root / f"demand-{dkey}-{settings_key(settings)}"
    if entry.is_dir():
        try:
            demand, init = _read(entry)
            return demand, init, notes
        except Damaged as e:
            notes.append(f"demand cache {entry} damaged ({e}): rebuilt")
    demand, init = build()
    try:
        root.mkdir(exist_ok=True)
        clean_stale(entry)
        # entries of this dataset's earlier contents can never be used again
        for old in root.glob("demand-*"):
            if old.is_dir() and not old.name.startswith(f"demand-{dkey}-"):
                shutil.rmtree(old, ignore_errors=True)
        tmp = make_tmp(entry)
        try:
            _write(tmp, demand, init)
            _publish(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as e:
        notes.append(f"demand cache not written ({root}: {e.strerror or e}): the next run prepares the "
                     f"demand again")
    return demand, init, notes
