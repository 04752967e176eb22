#!/usr/bin/env python3
"""fidelity-readme.py BUNDLE RUN_DIR NAME KERNEL SCENARIO KERNEL_IMAGE

Write BUNDLE/README.md for one run-fidelity.sh capture: the command, the kernel
(package, version), the QEMU command line, the guest's wall time, what the
workload did (guest-init.sh's lab.log and workload.log, the ring buffer stats
from the console log) and the key numbers of summarize.py.  RUN_DIR is the
$LAB_CACHE/runs/<time> directory run-guest.sh made.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import summarize  # noqa: E402

SCENARIOS = {
    "1": ("fragmented-movable",
          "Node 0 fragmented with MOVABLE pages, a small MADV_HUGEPAGE workload, node 1 free.",
          "Before tracing, `thpfrag frag auto` on node 0's CPU faults node 0's MemFree + 32 MB of "
          "4 KiB anonymous pages (MADV_NOHUGEPAGE; the last ~32 MB spill to node 1) and "
          "MADV_DONTNEED's every other page: node 0 is left with order-0 holes between in-use "
          "movable (LRU, not mlocked) pages, so compaction can migrate them. Traced: "
          "`thpfrag fault 192` (96 MADV_HUGEPAGE 2 MiB regions) pinned to node 0's CPU. "
          "A local-only policy has to compact (or reclaim) node 0; a relaxed one may take node 1's free blocks."),
    "2": ("larger-than-node",
          "A MADV_HUGEPAGE workload of 130 % of node 0's memory, node 1 free, swap available.",
          "Before tracing, a 1 GiB zram swap device (`/dev/zram0`, the kernel's default compressor; "
          "zram.ko and its dependencies decompressed into the initramfs for Debian kernels) is "
          "switched on; nothing else runs. Traced: `thpfrag fault` of 130 % of node 0's MemTotal "
          "pinned to node 0's CPU. A local-only policy has to reclaim/swap node 0 while node 1 is "
          "free; the others take node 1's blocks once node 0 is full."),
    "3": ("unmovable",
          "Node 0 polluted with UNMOVABLE pages in every pageblock, node 1 free.",
          "Before tracing, `thpfrag unmovable auto --fill 100` on node 0's CPU faults node 0's "
          "MemFree + 32 MB as 4 KiB anonymous pages, MADV_DONTNEED's every 8th page and fills "
          "those holes with pipe buffer pages (1 MiB pipes kept full and open; pipe_write allocates "
          "them with GFP_HIGHUSER|__GFP_ACCOUNT, i.e. unmovable, not migratable, not reclaimable), "
          "then unmaps the anonymous memory. While it runs, vm.min_free_kbytes=1024, "
          "watermark_boost_factor=0, compaction_proactiveness=0 and (6.1+) "
          "percpu_pagelist_high_fraction=1000000 (all back to their boot values before the "
          "snapshots) so that the pipe pages land in the holes instead of in whole stolen blocks "
          "or on node 1 (guest-init.sh says why). Node 0 is then mostly free, but nearly every pageblock holds ~64 pipe "
          "pages: compaction cannot make a 2 MiB block. Traced: `thpfrag fault 256` (128 regions) "
          "pinned to node 0's CPU. A local-only policy falls back to 4 KiB pages after failed "
          "compaction; the others go to node 1."),
    "4": ("qemu-threads",
          "A qemu-like guest-RAM fill: one 1 GiB MADV_HUGEPAGE region touched by 4 threads on node 0's CPU.",
          "No pollution and no swap before tracing. Traced: `thpfrag fault 1024 --threads 4` (512 regions, "
          "interleaved between the threads, so the threads' faults interleave in time) pinned to node 0's "
          "CPU, like the vCPU threads of a VM bound to a node smaller than its RAM (the case of the 2019 "
          "__GFP_THISNODE debate, here without swap). The region is about 1.4 times node 0, so node 0 fills "
          "up: a local-only policy then compacts/reclaims node 0 and falls back to 4 KiB pages, the "
          "others take node 1's blocks."),
}


def read(p, default=""):
    try:
        return Path(p).read_text()
    except OSError:
        return default


def main():
    bundle, run, name, kernel, scen, image = sys.argv[1:7]
    bundle, run = Path(bundle), Path(run)
    lab_cache = os.environ.get("LAB_CACHE", "")
    short, title, what = SCENARIOS[scen]
    kdir = Path(image).parent
    package = read(kdir / "package").strip()
    selfbuilt = Path(image).name == "bzImage"
    if selfbuilt:
        variant = read(kdir / "variant").strip()
        patch = read(kdir / "patch").strip()
        kernel_line = ("Kernel: self-built `%s` from `build-kernel.sh` (%s%s%s; `uname -r`: `%s`), "
                       "everything built in, booted directly with `-kernel`."
                       % (image.replace(lab_cache, "$LAB_CACHE") if lab_cache else image,
                          "source package `%s`" % package if package else "no package file",
                          ", variant `%s`" % variant if variant else "",
                          ", patch `%s`" % patch.splitlines()[0] if patch else ", no patch",
                          read(bundle / "kernel_release").strip()))
    else:
        kernel_line = None
    release = read(bundle / "kernel_release").strip()
    version = read(bundle / "kernel_version").strip()
    qemu_cmd = read(run / "qemu-cmdline").strip()
    if lab_cache:
        qemu_cmd = qemu_cmd.replace(lab_cache, "$LAB_CACHE")
    qemu_cmd = re.sub(r"runs/\d{8}T\d{6}Z[^/]*", "runs/<time>", qemu_cmd)
    runtime = read(run / "runtime").strip()
    console = read(run / "console.log").replace("\r", "")
    ring = [ln.split("lab-init: ", 1)[1] for ln in console.splitlines()
            if re.search(r"lab-init: cpu\d+ entries", ln)]
    tsize = [ln.split("lab-init: ", 1)[1] for ln in console.splitlines() if "lab-init: trace.txt" in ln]
    missing = [ln.split("lab-init: ", 1)[1] for ln in console.splitlines() if "not available" in ln]
    lablog = read(bundle / "lab.log").strip()
    workload = read(bundle / "workload.log").strip()
    traced = re.search(r"traced: uptime (\S+) -> (\S+)", lablog)
    qemu_ver = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    nodes = os.environ.get("NODES", "2")
    mem = os.environ.get("MEM_MB", "1536")
    run_no = os.environ.get("RUN", "") if os.environ.get("RUN", "") not in ("", "1") else ""
    cmd_kernel = kernel

    deltas, ranges, counts, events = summarize.summary(bundle)
    d = lambda k: deltas.get(k, 0)  # noqa: E731
    local = sum(n for (w, g), n in counts.items() if w == "node 0")
    fails = sum(n for (w, g), n in counts.items() if w.startswith("failed"))

    out = []
    out.append("# %s: scenario %s (%s) on the %s kernel, %s-node QEMU guest%s\n"
               % (name, scen, short, kernel if selfbuilt else "Debian " + kernel, nodes,
                  ", run %s" % run_no if run_no else ""))
    out.append(title + "\n")
    if run_no:
        first = name[: -len("-r" + run_no)]
        out.append("Run %s of this scenario on this kernel: the same kernel, guest and workload as `%s` "
                   "(run 1), booted again. The kernel's outcome of this scenario varies from boot to boot, "
                   "so the lab keeps several runs; `score.py` scores `%s` and its `-rN` runs together "
                   "against their range.\n" % (run_no, first, first))
    out.append("A thpreplay capture bundle (no `manifest.json`) made by the fidelity lab: everything "
               "was copied inside a QEMU guest, sent to the host over the guest's second serial port and "
               "unpacked unchanged; the host compressed `trace.txt` and `kpageflags.before` (`zstd -19`). "
               "This README is written by `sample_traces/lab/fidelity-readme.py`.\n")
    out.append("## How it was made\n")
    out.append("From the repository root, with `LAB_CACHE` set to a cache directory outside the repo:\n")
    out.append("    %ssample_traces/lab/run-fidelity.sh %s %s\n" % ("RUN=%s " % run_no if run_no else "", cmd_kernel, scen))
    out.append("(`NODES=%s MEM_MB=%s`, the defaults). It runs `fetch-kernel.sh` (Debian kernels), `build-initramfs.sh`, "
               "`run-guest.sh` with `KERNEL=%s SCENARIO=%s`, and this README's generator.\n"
               % (nodes, mem, image.replace(lab_cache, "$LAB_CACHE") if lab_cache else image, scen))
    if kernel_line:
        out.append("- " + kernel_line)
    else:
        out.append("- Kernel: Debian package `%s` (`uname -r`: `%s`%s), booted directly with `-kernel`."
                   % (package.replace(" ", "` version `", 1) if " " in package else package, release,
                      ", upstream %s" % version if version else ""))
    load = read(run / "host-loadavg").split()
    out.append("- %s, TCG (no KVM), on a %d-CPU host%s." % (
        qemu_ver, os.cpu_count() or 0, " (load average %s when the guest started)" % load[0] if load else ""))
    out.append("- QEMU command line (paths shortened to `$LAB_CACHE`):\n")
    out.append("      " + qemu_cmd + "\n")
    out.append("- Wall time of the guest (boot to power-off): %s." % runtime.replace("run-guest.sh: guest ran ", ""))
    if traced:
        out.append("  Traced interval: guest uptime %s s to %s s (%.2f s)."
                   % (traced.group(1), traced.group(2), float(traced.group(2)) - float(traced.group(1))))
    out.append("")
    out.append("## Workload (guest-init.sh, `lab.scenario=%s`)\n" % scen)
    out.append("THP `enabled=madvise`, `defrag=madvise` (see `thp_settings`), `kernel.numa_balancing=0`; "
               "sysctls at snapshot time in `vm_sysctl`. " + what + "\n")
    out.append("ftrace: `trace_clock` local, the events listed in guest-init.sh"
               + (" (%s)" % "; ".join(missing) if missing else "") + ".\n")
    out.append("`lab.log` (knobs, pollution, swap):\n")
    out.append("\n".join("    " + ln for ln in lablog.splitlines()) + "\n")
    out.append("`workload.log`: `%s` (2 MiB regions, and how many were huge per smaps_rollup before exit).\n" % workload)
    out.append("Ring buffer: " + "; ".join(r.strip() for r in ring) + ". " + "; ".join(tsize) + " (before compression).\n")
    out.append("## Numbers (from `summarize.py`)\n")
    out.append("| counter | delta |\n| --- | --- |")
    keys = ["thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge", "compact_stall",
            "compact_success", "compact_fail", "compact_migrate_scanned", "compact_free_scanned",
            "pgmigrate_success", "numa_miss", "pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd",
            "pgsteal_direct", "pswpout", "pswpin"]
    for k in keys:
        if k in deltas:
            out.append("| %s | %d |" % (k, deltas[k]))
    stalls = {k: v for k, v in deltas.items() if k.startswith("allocstall_")}
    out.append("| allocstall (%s) | %s |" % (" / ".join(k[len("allocstall_"):] for k in stalls),
                                            " / ".join(str(v) for v in stalls.values())))
    out.append("")
    out.append("Node pfn ranges (zoneinfo `start_pfn` + `spanned`): "
               + "; ".join("node %d %s 0x%x-0x%x" % (n, z, lo, hi) for lo, hi, n, z in ranges) + ".\n")
    out.append("order=9 `mm_page_alloc` events in `trace.txt` (the faulting CPU's node is the local node; "
               "in scenarios 1-3 that is node 0):\n")
    out.append("| where | gfp_flags | events |\n| --- | --- | --- |")
    for (where, gfp), n in sorted(counts.items()):
        out.append("| %s | %s | %d |" % (where, gfp.replace("|", "\\|"), n))
    out.append("")
    out.append("Events in the trace: " + ", ".join("%s %d" % (e, n) for e, n in events.most_common()) + ".\n")
    (bundle / "README.md").write_text("\n".join(out))
    print("fidelity-readme.py: %s/README.md (order-9: %d on node 0, %d failed; thp_fault_alloc %d, fallback %d)"
          % (bundle, local, fails, d("thp_fault_alloc"), d("thp_fault_fallback")))


if __name__ == "__main__":
    main()
