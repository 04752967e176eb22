#!/bin/bash
# capture-qemu.sh OUTDIR
#
# The whole capture: fetch the Debian kernel (fetch-kernel.sh), build the
# initramfs (build-initramfs.sh), boot the 2-node QEMU guest and unpack its
# capture bundle into OUTDIR (run-guest.sh), then print the summary numbers
# (summarize.py).  Big files go to $LAB_CACHE (default ~/.cache/thpreplay-lab).
# Host packages: qemu-system-x86 busybox-static cpio zstd gcc libc6-dev.
# Environment: SUITE, KERNEL_PACKAGE (fetch-kernel.sh arguments) and the
# workload knobs of run-guest.sh (FRAG0_MB FRAG1_MB MLOCK0 MLOCK1 FAULT_MB BUF_KB).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUTDIR=${1:?usage: capture-qemu.sh OUTDIR}
export LAB_CACHE=${LAB_CACHE:-$HOME/.cache/thpreplay-lab}

"$HERE/fetch-kernel.sh" "${SUITE:-bookworm}" "${KERNEL_PACKAGE:-linux-image-amd64}"
"$HERE/build-initramfs.sh"
"$HERE/run-guest.sh" "$OUTDIR"
python3 "$HERE/summarize.py" "$OUTDIR"
