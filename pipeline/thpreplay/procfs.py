"""Parsers for the /proc and /sys snapshots a capture bundle holds (zoneinfo, buddyinfo, ...).

Each takes the file's text and returns plain rows; they raise InputError naming the file and line
for text they cannot read, so a hand-made bundle with a wrong file gets a clear message.
"""

from __future__ import annotations

import re

from thpreplay.errors import InputError
from thpreplay.kernel.events import CPU_MAX, MAX_NUMNODES

_ZONE_HEAD = re.compile(r"^Node\s+(\d+),\s+zone\s+(\w+)\s*$")
_ZONE_FIELDS = {
    "pages free": "free_pages",
    "min": "wmark_min",
    "low": "wmark_low",
    "high": "wmark_high",
    "boost": "wmark_boost",
    "spanned": "spanned",
    "present": "present",
    "managed": "managed",
}
_ZONE_FIELD_RE = re.compile(r"^\s+(pages free|min|low|high|boost|spanned|present|managed)\s+(\d+)\s*$")
_PROTECTION_RE = re.compile(r"^\s+protection:\s*\(([\d,\s]*)\)\s*$")
_START_PFN_RE = re.compile(r"^\s+start_pfn:\s+(\d+)\s*$")


def parse_zoneinfo(text: str, path: str) -> list[dict]:
    """Zones with pfn span, sizes, watermarks and lowmem reserve, in file order."""
    zones: list[dict] = []
    current: dict | None = None
    for number, line in enumerate(text.splitlines(), 1):
        head = _ZONE_HEAD.match(line)
        if head:
            if int(head.group(1)) >= MAX_NUMNODES:
                raise InputError(path, f"node {head.group(1)}: past MAX_NUMNODES ({MAX_NUMNODES})", line=number)
            current = {"node": int(head.group(1)), "zone": head.group(2), "_line": number}
            zones.append(current)
            continue
        if current is None:
            if line.strip():
                raise InputError(path, "not a /proc/zoneinfo file (expected 'Node N, zone NAME')", line=number)
            continue
        m = _ZONE_FIELD_RE.match(line)
        if m and _ZONE_FIELDS[m.group(1)] not in current:
            current[_ZONE_FIELDS[m.group(1)]] = int(m.group(2))
            continue
        m = _PROTECTION_RE.match(line)
        if m:
            current["lowmem_reserve"] = [int(x) for x in m.group(1).replace(",", " ").split()]
            continue
        m = _START_PFN_RE.match(line)
        if m:
            current["start_pfn"] = int(m.group(1))
    if not zones:
        raise InputError(path, "not a /proc/zoneinfo file (no zones found)")
    for z in zones:
        for need in ("spanned", "present"):
            if need not in z:
                raise InputError(path, f"zone {z['zone']} of node {z['node']} has no {need}", line=z["_line"])
        if "start_pfn" not in z:
            # 6.x leaves start_pfn out for empty zones; any other zone must have one.
            if z["spanned"]:
                raise InputError(path, f"zone {z['zone']} of node {z['node']} has no start_pfn", line=z["_line"])
            z["start_pfn"] = 0
        z.setdefault("managed", z["present"])
        z["end_pfn"] = z["start_pfn"] + z["spanned"]
        del z["_line"]
    return zones


_PAGESET_CPU = re.compile(r"^\s+cpu:\s+(\d+)\s*$")
_PAGESET_FIELD = re.compile(r"^\s+(count|high|batch):\s+(\d+)\s*$")


def parse_pagesets(text: str) -> dict[tuple[int, str], dict[int, dict[str, int]]]:
    """Each zone's per-cpu page lists from /proc/zoneinfo: {(node, zone): {cpu: {count, high, batch}}}.
    Best effort (the lists are a detail of the start, not part of the contract): lines that do not fit
    are passed over, and a zoneinfo without `pagesets` gives {}."""
    out: dict[tuple[int, str], dict[int, dict[str, int]]] = {}
    zone = cpu = None
    for line in text.splitlines():
        head = _ZONE_HEAD.match(line)
        if head:
            zone, cpu = (int(head.group(1)), head.group(2)), None
            continue
        m = _PAGESET_CPU.match(line)
        if m and zone is not None:
            cpu = int(m.group(1))
            out.setdefault(zone, {})[cpu] = {}
            continue
        m = _PAGESET_FIELD.match(line)
        if m and zone is not None and cpu is not None and m.group(1) not in out[zone][cpu]:
            out[zone][cpu][m.group(1)] = int(m.group(2))
    return {z: {c: v for c, v in cpus.items() if len(v) == 3} for z, cpus in out.items()}


def parse_buddyinfo(text: str, path: str) -> list[dict]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"^Node\s+(\d+),\s+zone\s+(\w+)\s+([\d\s]+)$", line)
        if not m:
            raise InputError(path, "not a /proc/buddyinfo line", line=number)
        for order, count in enumerate(m.group(3).split()):
            rows.append(
                dict(node=int(m.group(1)), zone=m.group(2), migratetype="all", order=order, free_blocks=int(count))
            )
    return rows


def parse_pagetypeinfo(text: str, path: str) -> list[dict]:
    """The 'Free pages count per migrate type at order' section."""
    rows = []
    # Since 5.7 a count above 100000 prints as ">100000" (the kernel stops walking a long list); such a
    # row is kept with capped=True and its lower bound, for the caller to complete from buddyinfo.
    rx = re.compile(r"^Node\s+(\d+),\s+zone\s+(\w+),\s+type\s+(\w+)\s+([\d\s>]+)$")
    for line in text.splitlines():
        m = rx.match(line)
        if m:
            for order, count in enumerate(m.group(4).split()):
                rows.append(
                    dict(
                        node=int(m.group(1)),
                        zone=m.group(2),
                        migratetype=m.group(3),
                        order=order,
                        free_blocks=int(count.lstrip(">")),
                        capped=count.startswith(">"),
                    )
                )
    if not rows and text.strip():
        raise InputError(path, "not a /proc/pagetypeinfo file (no 'Node N, zone Z, type T' rows)")
    return rows


def parse_vmstat(text: str, path: str) -> dict[str, int]:
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise InputError(path, "not a vmstat line ('name value')", line=number)
        out[parts[0]] = int(parts[1])
    return out


def parse_cpulist(text: str, path: str) -> list[int]:
    cpus: list[int] = []
    body = text.strip()
    if not body:
        return cpus
    for part in body.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise InputError(path, f"not a cpulist: {body!r}", line=1)
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if hi >= CPU_MAX or lo > hi:
            raise InputError(path, f"cpulist range {part.strip()}: CPUs are 0..{CPU_MAX - 1} (NR_CPUS)", line=1)
        cpus.extend(range(lo, hi + 1))
    return cpus


def parse_distance(text: str, path: str) -> list[int]:
    try:
        values = [int(x) for x in text.split()]
    except ValueError:
        raise InputError(path, "not a node distance file (numbers separated by spaces)", line=1) from None
    for v in values:  # node_distance() is a u8 (numa_set_distance refuses others, arch/x86/mm/numa.c)
        if not 0 <= v <= 255:
            raise InputError(path, f"node distance {v}: distances are 0..255", line=1)
    return values


def check_distances(distances: dict[int, list[int]], paths: dict[int, str]) -> None:
    """Each node's distance line has one entry per node, in node order, its own being LOCAL_DISTANCE (10),
    as /sys/devices/system/node/nodeN/distance prints them; else the file is named."""
    nodes = sorted(distances)
    for node, row in distances.items():
        if len(row) != len(nodes):
            raise InputError(paths[node], f"{len(row)} distances for the bundle's {len(nodes)} nodes "
                                          f"({', '.join(map(str, nodes))})", line=1)
        own = row[nodes.index(node)]
        if own != 10:
            raise InputError(paths[node], f"node {node}'s distance to itself is {own}, not 10 (LOCAL_DISTANCE)",
                             line=1)


def selected_setting(line: str) -> str:
    """'always [madvise] never' -> 'madvise'; a bare word is returned as is."""
    m = re.search(r"\[([^\]]+)\]", line)
    return m.group(1) if m else line.strip()


def complete_capped(rows: list[dict], buddy: list[dict]) -> list[dict]:
    """Replace pagetypeinfo's ">100000" counts with the exact number buddyinfo implies: the zone's count
    at that order minus the other migratetypes'. Without buddyinfo the lower bound stays."""
    exact = {(r["node"], r["zone"], r["order"]): r["free_blocks"] for r in buddy}
    out = []
    for r in rows:
        r = dict(r)
        if r.pop("capped", False):
            key = (r["node"], r["zone"], r["order"])
            if key in exact:
                others = sum(o["free_blocks"] for o in rows if (o["node"], o["zone"], o["order"]) == key and o is not r
                             and o["migratetype"] != r["migratetype"])
                r["free_blocks"] = max(exact[key] - others, r["free_blocks"])
        out.append(r)
    return out
