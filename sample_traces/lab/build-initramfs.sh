#!/bin/bash
# build-initramfs.sh: build the capture initramfs into $LAB_CACHE/initramfs.cpio.gz
#   busybox (static, from the busybox-static package) + thpfrag (static build of
#   ../workload/thpfrag.c) + guest-init.sh as /init.  No kernel modules are
#   needed: the guest uses only the serial ports and this initramfs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_CACHE=${LAB_CACHE:-$HOME/.cache/thpreplay-lab}
BUSYBOX=${BUSYBOX:-/bin/busybox}
WORK=$LAB_CACHE/initramfs
OUT=$LAB_CACHE/initramfs.cpio.gz

if ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
	echo "build-initramfs.sh: $BUSYBOX is not static (apt-get install busybox-static)" >&2
	exit 1
fi

mkdir -p "$LAB_CACHE"
gcc -O2 -static -pthread -o "$LAB_CACHE/thpfrag" "$HERE/../workload/thpfrag.c"

rm -rf "$WORK"
mkdir -p "$WORK"/{bin,sbin,dev,proc,sys,tmp,bundle}
cp "$BUSYBOX" "$WORK/bin/busybox"
for app in $("$BUSYBOX" --list); do
	[ "$app" = busybox ] || ln -s busybox "$WORK/bin/$app"
done
cp "$LAB_CACHE/thpfrag" "$WORK/bin/thpfrag"
cp "$HERE/guest-init.sh" "$WORK/init"
chmod 755 "$WORK/init" "$WORK/bin/thpfrag"

(cd "$WORK" && find . -print0 | sort -z | cpio --null -o -H newc --owner=0:0 --quiet) | gzip -9 > "$OUT"
echo "build-initramfs.sh: $OUT ($(stat -c %s "$OUT") bytes)"
