#!/bin/bash
# capture-qemu.sh OUTDIR
#
# The whole capture: fetch the Debian kernel (fetch-kernel.sh), build the
# initramfs (build-initramfs.sh), boot the 2-node QEMU guest and unpack its
# capture bundle into OUTDIR (run-guest.sh), then print the summary numbers
# (summarize.py).  Big files go to $LAB_CACHE (default ~/.cache/thpreplay-lab).
# Host packages: qemu-system-x86 busybox-static cpio zstd gcc libc6-dev binutils.
# Environment: SUITE (default bookworm), KERNEL_PACKAGE (fetch-kernel.sh
# arguments; the kernel booted is $LAB_CACHE/kernels/$SUITE/vmlinuz) and the
# knobs of run-guest.sh (NODES MEM_MB SCENARIO FRAG0_MB FRAG1_MB MLOCK0 MLOCK1
# UNMOV0_MB SWAP_MB FAULT_MB THREADS PIN BUF_KB).  For the fidelity scenarios
# on several kernels see run-fidelity.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUTDIR=${1:?usage: capture-qemu.sh OUTDIR}
export LAB_CACHE=${LAB_CACHE:-$HOME/.cache/thpreplay-lab}

SUITE=${SUITE:-bookworm}
"$HERE/fetch-kernel.sh" "$SUITE" "${KERNEL_PACKAGE:-linux-image-amd64}"
"$HERE/build-initramfs.sh"
KERNEL=$LAB_CACHE/kernels/$SUITE/vmlinuz "$HERE/run-guest.sh" "$OUTDIR"
python3 "$HERE/summarize.py" "$OUTDIR"
