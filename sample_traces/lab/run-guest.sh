#!/bin/bash
# run-guest.sh OUTDIR
#
# Boot a kernel + the capture initramfs in a NUMA QEMU guest (TCG), collect the
# bundle the guest sends on its second serial port, unpack it into OUTDIR and
# compress OUTDIR/trace.txt and kpageflags.before (zstd -19 -> *.zst).
#
# Kernel (environment):
#   KERNEL=PATH   the kernel image to boot (default $LAB_CACHE/kernels/bookworm/vmlinuz,
#                 what fetch-kernel.sh bookworm makes).  A Debian vmlinuz from
#                 fetch-kernel.sh, or a self-built bzImage with everything built in.
#   MODULES=DIR   its lib/modules/<release> directory, for the zram module of
#                 scenario 2 (lab.swap); default: the one fetch-kernel.sh extracted
#                 next to KERNEL (root/lib/modules/* or root/usr/lib/modules/*), if
#                 any; MODULES=none for none.  A self-built kernel needs none
#                 (zram built in).  The modules go into an extra cpio appended to
#                 the initramfs (build-initramfs.sh --modules).
# Guest shape:
#   NODES=2|4     NUMA nodes (default 2).  Memory is split evenly between them and
#                 the guest gets one CPU per node (-smp NODES, CPU n on node n).
#   MEM_MB=MB     total guest RAM (default 2048; run-fidelity.sh uses 1536)
# Workload (passed to guest-init.sh on the kernel command line; see its header):
#   SCENARIO=1..4 lab.scenario=N: the scenario's own defaults.  Unset: the original
#                 defaults FRAG0_MB=800 FRAG1_MB=800 MLOCK0=1 MLOCK1=0 FAULT_MB=576.
#   FRAG0_MB FRAG1_MB MLOCK0 MLOCK1 UNMOV0_MB SWAP_MB FAULT_MB THREADS PIN BUF_KB
#                 explicit overrides (lab.frag0= ... lab.bufkb=); with SCENARIO set,
#                 only the ones given are passed.
# The serial console log and raw data of the run are kept in $LAB_CACHE/runs/
# (RUN_DIR=DIR to choose the directory).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_CACHE=${LAB_CACHE:-$HOME/.cache/thpreplay-lab}
OUTDIR=${1:?usage: run-guest.sh OUTDIR}
NODES=${NODES:-2}
MEM_MB=${MEM_MB:-2048}
SCENARIO=${SCENARIO:-}
TIMEOUT=${TIMEOUT:-1800}
if [ -z "$SCENARIO" ]; then
	FRAG0_MB=${FRAG0_MB:-800}
	FRAG1_MB=${FRAG1_MB:-800}
	MLOCK0=${MLOCK0:-1}
	MLOCK1=${MLOCK1:-0}
	FAULT_MB=${FAULT_MB:-576}
	BUF_KB=${BUF_KB:-32768}
fi
case "$NODES" in 2|4) ;; *) echo "run-guest.sh: NODES must be 2 or 4" >&2; exit 2 ;; esac
if [ $((MEM_MB % NODES)) != 0 ]; then echo "run-guest.sh: MEM_MB=$MEM_MB not divisible by NODES=$NODES" >&2; exit 2; fi

KERNEL=${KERNEL:-$LAB_CACHE/kernels/bookworm/vmlinuz}
BASE_INITRD=$LAB_CACHE/initramfs.cpio.gz
[ -e "$KERNEL" ] || { echo "run-guest.sh: no $KERNEL (run fetch-kernel.sh, or set KERNEL=)" >&2; exit 1; }
[ -e "$BASE_INITRD" ] || { echo "run-guest.sh: no $BASE_INITRD (run build-initramfs.sh)" >&2; exit 1; }
if [ -z "${MODULES:-}" ]; then
	KD=$(dirname "$KERNEL")
	MODULES=$(ls -d "$KD"/root/lib/modules/* "$KD"/root/usr/lib/modules/* 2>/dev/null | head -n1 || true)
	MODULES=${MODULES:-none}
fi

# RUN_DIR: where the run's raw files go (default: a new $LAB_CACHE/runs/<time>-<pid>);
# $LAB_CACHE/runs/last names the latest run, but several callers may share a cache,
# so scripts should pass RUN_DIR rather than read "last"
RUN=${RUN_DIR:-$LAB_CACHE/runs/$(date -u +%Y%m%dT%H%M%SZ)-$$}
mkdir -p "$RUN"
echo "$RUN" > "$LAB_CACHE/runs/last"
CONSOLE=$RUN/console.log
DATA=$RUN/ttyS1.txt

INITRD=$BASE_INITRD
if [ "$MODULES" != none ]; then
	"$HERE/build-initramfs.sh" --modules "$MODULES" "$RUN/modules.cpio.gz"
	cat "$BASE_INITRD" "$RUN/modules.cpio.gz" > "$RUN/initrd.cpio.gz"
	INITRD=$RUN/initrd.cpio.gz
fi

APPEND="console=ttyS0 quiet panic=-1 transparent_hugepage=madvise"
[ -n "$SCENARIO" ] && APPEND+=" lab.scenario=$SCENARIO"
knob() { [ -n "${2:-}" ] && APPEND+=" lab.$1=$2"; return 0; }
knob frag0 "${FRAG0_MB:-}"; knob frag1 "${FRAG1_MB:-}"
knob mlock0 "${MLOCK0:-}"; knob mlock1 "${MLOCK1:-}"
knob unmov0 "${UNMOV0_MB:-}"; knob swap "${SWAP_MB:-}"
knob fault "${FAULT_MB:-}"; knob threads "${THREADS:-}"; knob pin "${PIN:-}"
knob bufkb "${BUF_KB:-}"

QEMU=(qemu-system-x86_64 -accel tcg -m "${MEM_MB}M" -smp "$NODES")
for ((n = 0; n < NODES; n++)); do
	QEMU+=(-object "memory-backend-ram,id=m$n,size=$((MEM_MB / NODES))M"
		-numa "node,nodeid=$n,cpus=$n,memdev=m$n")
done
QEMU+=(-nographic -no-reboot
	-serial mon:stdio -serial "file:$DATA"
	-kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND")
for a in "${QEMU[@]}"; do
	case "$a" in *[[:space:]]*) printf "'%s' " "$a" ;; *) printf '%s ' "$a" ;; esac
done | sed 's/ $//' > "$RUN/qemu-cmdline"; echo >> "$RUN/qemu-cmdline"
echo "run-guest.sh: $(cat "$RUN/qemu-cmdline")"

cat /proc/loadavg > "$RUN/host-loadavg"
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
rm -f "$OUTDIR/trace.txt.zst" "$OUTDIR/kpageflags.before.zst"
zstd -q -19 --rm "$OUTDIR/trace.txt" -o "$OUTDIR/trace.txt.zst"
[ -f "$OUTDIR/kpageflags.before" ] && zstd -q -19 --rm "$OUTDIR/kpageflags.before" -o "$OUTDIR/kpageflags.before.zst"
echo "run-guest.sh: bundle in $OUTDIR ($(du -sh "$OUTDIR" | cut -f1)); run files in $RUN"
