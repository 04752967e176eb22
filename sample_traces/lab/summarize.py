#!/usr/bin/env python3
"""summarize.py BUNDLE_DIR: print the numbers quoted in a bundle's README.

vmstat deltas (after - before) of the THP/compaction/NUMA/reclaim counters,
and the order-9 mm_page_alloc events of trace.txt(.zst|.xz) split by the node
whose pfn range (zoneinfo start_pfn/spanned) holds the pfn; pfn=0 events are
failed attempts (pfn is hex, 0x..., from 5.14 and decimal before, e.g. on 5.10).
Uses the zstd / xz command line tools for the trace.  summary() returns the
same numbers for other scripts (fidelity-readme.py).
"""
import collections
import re
import subprocess
import sys
from pathlib import Path

KEYS = re.compile(r"^(thp_fault_alloc|thp_fault_fallback|thp_fault_fallback_charge|"
                  r"compact_stall|compact_success|compact_fail|pgalloc_\w+|numa_miss|"
                  r"numa_foreign|allocstall_\w+|pswpout|pswpin|pgsteal_(kswapd|direct)|pgscan_(kswapd|direct)|"
                  r"pgmigrate_success|compact_migrate_scanned|compact_free_scanned|"
                  r"compact_isolated|compact_daemon_wake|kswapd_low_wmark_hit_quickly|"
                  r"kswapd_high_wmark_hit_quickly|pageoutrun|thp_migration_success)$")


def vmstat(path):
    out = {}
    for line in path.read_text().splitlines():
        k, v = line.split()
        out[k] = int(v)
    return out


def node_ranges(zoneinfo):
    ranges, node = [], None
    for line in zoneinfo.read_text().splitlines():
        m = re.match(r"Node (\d+), zone\s+(\S+)", line)
        if m:
            node = int(m.group(1))
            zone = m.group(2)
            spanned = None
            continue
        m = re.match(r"\s+spanned\s+(\d+)", line)
        if m:
            spanned = int(m.group(1))
        m = re.match(r"\s+start_pfn:\s+(\d+)", line)
        if m and spanned:
            start = int(m.group(1))
            ranges.append((start, start + spanned, node, zone))
    return ranges


def trace_lines(bundle):
    for name, cmd in (("trace.txt", None), ("trace.txt.zst", ["zstd", "-dc"]), ("trace.txt.xz", ["xz", "-dc"])):
        p = bundle / name
        if p.exists():
            if cmd is None:
                yield from p.open()
            else:
                proc = subprocess.Popen(cmd + [str(p)], stdout=subprocess.PIPE, text=True)
                yield from proc.stdout
                proc.wait()
            return
    raise SystemExit("no trace.txt(.zst|.xz) in %s" % bundle)


def summary(bundle):
    """(vmstat deltas, node ranges, order-9 counts {(where, gfp): n}, event counts)"""
    before, after = vmstat(bundle / "vmstat.before"), vmstat(bundle / "vmstat.after")
    deltas = {k: after[k] - before[k] for k in before if KEYS.match(k) and k in after}
    ranges = node_ranges(bundle / "zoneinfo.before")
    counts = collections.Counter()
    events = collections.Counter()
    pat = re.compile(r"mm_page_alloc: .*pfn=(0x[0-9a-f]+|\d+) order=9 .*gfp_flags=(\S+)")
    for line in trace_lines(bundle):
        if not line.startswith("#"):
            ev = re.search(r"\d+\.\d+: (\w+):", line)
            if ev:
                events[ev.group(1)] += 1
        m = pat.search(line)
        if not m:
            continue
        pfn, gfp = int(m.group(1), 0), m.group(2)
        if pfn == 0:
            where = "failed (pfn=0)"
        else:
            where = next(("node %d" % n for lo, hi, n, _ in ranges if lo <= pfn < hi), "unknown")
        counts[(where, gfp)] += 1
    return deltas, ranges, counts, events


def main():
    bundle = Path(sys.argv[1])
    deltas, ranges, counts, events = summary(bundle)
    print("vmstat deltas (after - before):")
    for k, v in deltas.items():
        print("  %-28s %d" % (k, v))
    print("node pfn ranges (zoneinfo start_pfn + spanned):")
    for lo, hi, node, zone in ranges:
        print("  node %d %-7s 0x%x-0x%x" % (node, zone, lo, hi))
    print("order-9 mm_page_alloc events:")
    for (where, gfp), n in sorted(counts.items()):
        print("  %-18s %-50s %d" % (where, gfp, n))
    print("events in trace:")
    for ev, n in events.most_common():
        print("  %-40s %d" % (ev, n))


if __name__ == "__main__":
    main()
