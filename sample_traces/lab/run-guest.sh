#!/bin/bash
# run-guest.sh OUTDIR
#
# Boot the cached Debian kernel + capture initramfs in a 2-node NUMA QEMU guest
# (TCG), collect the bundle the guest sends on its second serial port, unpack it
# into OUTDIR and compress OUTDIR/trace.txt (zstd -19 -> trace.txt.zst).
#
# Workload knobs (passed to guest-init.sh on the kernel command line):
#   FRAG0_MB FRAG1_MB MLOCK0 MLOCK1 FAULT_MB BUF_KB    (defaults below)
# The serial console log and raw data of the run are kept in $LAB_CACHE/runs/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_CACHE=${LAB_CACHE:-$HOME/.cache/thpreplay-lab}
OUTDIR=${1:?usage: run-guest.sh OUTDIR}
FRAG0_MB=${FRAG0_MB:-800}
FRAG1_MB=${FRAG1_MB:-800}
MLOCK0=${MLOCK0:-1}
MLOCK1=${MLOCK1:-0}
FAULT_MB=${FAULT_MB:-576}
BUF_KB=${BUF_KB:-32768}
TIMEOUT=${TIMEOUT:-1800}

KERNEL=$LAB_CACHE/kernel/vmlinuz
INITRD=$LAB_CACHE/initramfs.cpio.gz
[ -e "$KERNEL" ] || { echo "run-guest.sh: no $KERNEL (run fetch-kernel.sh)" >&2; exit 1; }
[ -e "$INITRD" ] || { echo "run-guest.sh: no $INITRD (run build-initramfs.sh)" >&2; exit 1; }

RUN=$LAB_CACHE/runs/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"
CONSOLE=$RUN/console.log
DATA=$RUN/ttyS1.txt

APPEND="console=ttyS0 quiet panic=-1 transparent_hugepage=madvise"
APPEND+=" lab.frag0=$FRAG0_MB lab.frag1=$FRAG1_MB lab.mlock0=$MLOCK0 lab.mlock1=$MLOCK1 lab.fault=$FAULT_MB lab.bufkb=$BUF_KB"

QEMU=(qemu-system-x86_64 -accel tcg -m 2G -smp 2
	-object memory-backend-ram,id=m0,size=1G -numa node,nodeid=0,cpus=0,memdev=m0
	-object memory-backend-ram,id=m1,size=1G -numa node,nodeid=1,cpus=1,memdev=m1
	-nographic -no-reboot
	-serial mon:stdio -serial "file:$DATA"
	-kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND")
printf '%q ' "${QEMU[@]}" > "$RUN/qemu-cmdline"; echo >> "$RUN/qemu-cmdline"
echo "run-guest.sh: $(cat "$RUN/qemu-cmdline")"

start=$(date +%s)
timeout "$TIMEOUT" "${QEMU[@]}" < /dev/null 2>&1 | tee "$CONSOLE"
end=$(date +%s)
echo "run-guest.sh: guest ran $((end - start)) s" | tee "$RUN/runtime"

sed -n '/^=====THPREPLAY-BUNDLE-BEGIN=====/,/^=====THPREPLAY-BUNDLE-END=====/p' "$DATA" |
	sed '1d;$d' | tr -d '\r' | base64 -d > "$RUN/bundle.tgz"
want=$(tr -d '\r' < "$CONSOLE" | sed -n 's/.*bundle.tgz [0-9]* bytes, sha256 \([0-9a-f]*\).*/\1/p' | tail -n1)
got=$(sha256sum "$RUN/bundle.tgz" | cut -d' ' -f1)
if [ -z "$want" ] || [ "$want" != "$got" ]; then
	echo "run-guest.sh: bundle checksum mismatch (guest '$want', host '$got')" >&2
	exit 1
fi

mkdir -p "$OUTDIR"
tar -xzf "$RUN/bundle.tgz" -C "$OUTDIR" --strip-components=1 --no-same-owner
# the guest copies keep their /proc modes (e.g. 0400 pagetypeinfo): normalize
find "$OUTDIR" -maxdepth 1 -type f -exec chmod 0644 {} +
rm -f "$OUTDIR/trace.txt.zst"
zstd -q -19 --rm "$OUTDIR/trace.txt" -o "$OUTDIR/trace.txt.zst"
[ -f "$OUTDIR/kpageflags.before" ] && zstd -q -19 --rm "$OUTDIR/kpageflags.before" -o "$OUTDIR/kpageflags.before.zst"
echo "run-guest.sh: bundle in $OUTDIR ($(du -sh "$OUTDIR" | cut -f1)); run files in $RUN"
