"""Capture bundles: a directory of plain copies of /proc and /sys files plus one trace file.

Layout (every file optional except the trace; `thpreplay record` writes all of them and a manifest):

    manifest.json                    written by `thpreplay record`; informational
    kernel_release                   uname -r
    kernel_version                   the upstream version when uname -r hides it (a distribution ABI name
                                     such as 6.1.0-50-amd64 for 6.1.176); record takes it from /proc/version
    vm_sysctl                        name=value lines of vm sysctls (compact_unevictable_allowed, ...)
    thp_policy                       the thpreplay policy a patched kernel's THP fault path follows, when
                                     its release would resolve to another (the lab's self-built kernels)
    kpageflags.before.zst            /proc/kpageflags (zstd): the flags of every page when recording began
    untraced_start                   "pages=N" (and "why=..."): pages allocated after that snapshot and before
                                     the trace's first event, which neither shows (the lab's guests write
                                     the kpageflags dump into memory then); `simulate --samples` draws how
                                     many of them the model's start lacks
    thp_settings                     transparent_hugepage/enabled, then defrag, then khugepaged/defrag
    zoneinfo[.before|.after]         /proc/zoneinfo        (also buddyinfo, pagetypeinfo, vmstat, meminfo)
    nodeN.cpulist, nodeN.distance    /sys/devices/system/node/nodeN/{cpulist,distance}
    nodeN.vmstat[.before|.after]     /sys/devices/system/node/nodeN/vmstat (also nodeN.meminfo)
    perf.data | trace.txt | perf.txt | ...   the trace: perf.data, or text, plain/.gz/.zst/.xz
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from thpreplay import procfs
from thpreplay.errors import InputError

SNAPSHOTS = ("zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat", "meminfo")
_NODE_FILE = re.compile(r"^node(\d+)\.(cpulist|distance|vmstat|meminfo)(\.before|\.after)?$")
_SNAPSHOT_FILE = re.compile(r"^(%s)(\.before|\.after)?$" % "|".join(SNAPSHOTS))
_KPAGEFLAGS_FILE = re.compile(r"^kpageflags(\.before|\.after)?\.zst$")
_NOT_TRACE = {"manifest.json", "kernel_release", "kernel_version", "thp_settings", "vm_sysctl", "proc_version",
              "thp_policy", "untraced_start"}
_COMPRESSED = (".gz", ".zst", ".xz")


@dataclass
class Bundle:
    path: Path
    trace: Path
    kernel_release: str | None = None
    kernel_version: str | None = None
    thp: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, Path] = field(default_factory=dict)  # e.g. "zoneinfo.before" -> path
    node_files: dict[str, Path] = field(default_factory=dict)  # e.g. "node0.cpulist" -> path
    manifest: dict = field(default_factory=dict)

    def snapshot(self, name: str, when: str = "before") -> Path | None:
        """zoneinfo.before, else the unsuffixed zoneinfo (taken at an unknown time)."""
        return self.snapshots.get(f"{name}.{when}") or (self.snapshots.get(name) if when == "before" else None)

    def cpus_by_node(self) -> dict[int, list[int]]:
        out = {}
        for key, p in self.node_files.items():
            m = _NODE_FILE.match(key)
            if m and m.group(2) == "cpulist":
                out[int(m.group(1))] = procfs.parse_cpulist(read_text(p), str(p))
        return out

    def distances(self) -> dict[int, list[int]]:
        out, paths = {}, {}
        for key, p in self.node_files.items():
            m = _NODE_FILE.match(key)
            if m and m.group(2) == "distance":
                out[int(m.group(1))] = procfs.parse_distance(read_text(p), str(p))
                paths[int(m.group(1))] = str(p)
        procfs.check_distances(out, paths)
        return out


def _is_trace_candidate(name: str) -> bool:
    if name in _NOT_TRACE or _NODE_FILE.match(name) or _SNAPSHOT_FILE.match(name) or _KPAGEFLAGS_FILE.match(name):
        return False
    if name.startswith(".") or name.endswith((".log", ".md", ".json", ".sh")) or name.startswith("README"):
        return False
    base = name
    for ext in _COMPRESSED:
        base = base.removesuffix(ext)
    return base == "perf.data" or base.startswith(("trace", "perf")) or base.endswith((".txt", ".dat"))


def open_bundle(path: Path) -> Bundle:
    if not path.is_dir():
        raise InputError(str(path), "not a directory")
    names = sorted(p.name for p in path.iterdir() if p.is_file())
    candidates = [n for n in names if _is_trace_candidate(n)]
    if not candidates:
        raise InputError(
            str(path),
            "no trace file in bundle",
            hint="a bundle holds one trace: perf.data, or text such as trace.txt or perf.txt (optionally .gz/.zst/.xz)",
        )
    if len(candidates) > 1:
        shown = ", ".join(candidates[:5]) + (f" and {len(candidates) - 5:,} more" if len(candidates) > 5 else "")
        raise InputError(str(path), f"several trace files in bundle: {shown}; keep one")
    bundle = Bundle(path=path, trace=path / candidates[0])
    for n in names:
        if _SNAPSHOT_FILE.match(n):
            bundle.snapshots[n] = path / n
        elif _KPAGEFLAGS_FILE.match(n):
            bundle.snapshots[n.removesuffix(".zst")] = path / n
        elif _NODE_FILE.match(n):
            bundle.node_files[n] = path / n
    release = path / "kernel_release"
    if release.exists():
        bundle.kernel_release = _release(read_text(release), release)
    version = path / "kernel_version"
    if version.exists():
        bundle.kernel_version = _release(read_text(version), version)
    settings = path / "thp_settings"
    if settings.exists():
        lines = [ln for ln in read_text(settings).splitlines() if ln.strip()]
        for key, line in zip(("enabled", "defrag", "khugepaged_defrag"), lines):
            bundle.thp[key] = procfs.selected_setting(line)
    manifest = path / "manifest.json"
    if manifest.exists():
        try:
            bundle.manifest = json.loads(read_text(manifest))
        except json.JSONDecodeError as e:
            raise InputError(str(manifest), f"not valid JSON: {e.msg}", line=e.lineno) from None
        if not isinstance(bundle.manifest, dict):
            raise InputError(str(manifest), f"not a record manifest (a JSON object), but a JSON {type(bundle.manifest).__name__}")
        thp = bundle.manifest.get("thp") or {}
        if not isinstance(thp, dict) or not all(isinstance(v, str) for v in thp.values()):
            raise InputError(str(manifest), "'thp' is not an object of setting names to values")
        recorded = bundle.manifest.get("kernel_release")
        if recorded is not None and not isinstance(recorded, str):
            raise InputError(str(manifest), "'kernel_release' is not a string")
        bundle.kernel_release = bundle.kernel_release or (_release(recorded, manifest) if recorded else None)
        for key, value in thp.items():
            bundle.thp.setdefault(key, value)
    return bundle


def read_text(path: Path) -> str:
    """A bundle's text file, which must be UTF-8 (what the kernel and `record` write): other bytes are a
    one-line error naming the file and line, not a decoding traceback."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"not UTF-8 text (byte 0x{data[e.start]:02x})", line=data[:e.start].count(b"\n") + 1) from None


def _release(text: str, path: Path) -> str | None:
    """A kernel release as `uname -r` prints it: one line of printable ASCII."""
    release = text.strip()
    if not release:
        return None
    if "\n" in release or len(release) > 256 or not release.isascii() or not release.isprintable():
        raise InputError(str(path), f"not a kernel release (one line of printable ASCII, as uname -r prints): {release[:40]!r}")
    return release
