#!/bin/bash
# build-initramfs.sh
#   Build the capture initramfs into $LAB_CACHE/initramfs.cpio.gz:
#   busybox (static, from the busybox-static package) + thpfrag (static build of
#   ../workload/thpfrag.c) + guest-init.sh as /init.  It holds no kernel
#   modules, so the same file boots every kernel (Debian or self-built).
#
# build-initramfs.sh --modules MODDIR OUT.cpio.gz
#   Build a small extra cpio (gzip) with the modules the guest may load for one
#   kernel: zram and the modules it depends on (read from each module's
#   "depends=" modinfo string), taken from MODDIR (a lib/modules/<release>
#   directory, e.g. $LAB_CACHE/kernels/bookworm/root/lib/modules/6.1.0-50-amd64,
#   or usr/lib/modules/... on trixie).  Modules are decompressed here on the
#   host (.ko.xz / .ko.zst: busybox insmod may not decompress) and put in
#   /lib/modules/ with /lib/modules/load.order (dependencies first), which
#   guest-init.sh insmods.  run-guest.sh appends it to the base initramfs (the
#   kernel unpacks concatenated cpio archives).  When zram is built in, or
#   MODDIR has no zram module, the archive holds only an empty load.order.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_CACHE=${LAB_CACHE:-$HOME/.cache/thpreplay-lab}

if [ "${1:-}" = --modules ]; then
	MODDIR=${2:?usage: build-initramfs.sh --modules MODDIR OUT.cpio.gz}
	OUT=${3:?usage: build-initramfs.sh --modules MODDIR OUT.cpio.gz}
	W=$(mktemp -d)
	trap 'rm -rf "$W"' EXIT
	mkdir -p "$W/lib/modules"
	: > "$W/lib/modules/load.order"
	declare -A DONE=()
	add() { # module name (zram, zsmalloc, lz4_compress ...)
		local name=$1 pat f plain dep
		[ -n "${DONE[$name]:-}" ] && return 0
		DONE[$name]=1
		pat=$(echo "$name" | sed 's/[-_]/[-_]/g')
		f=$(find "$MODDIR" -regextype posix-extended -regex ".*/${pat}\.ko(\.xz|\.zst|\.gz)?" | head -n1)
		if [ -z "$f" ]; then
			echo "build-initramfs.sh: module $name not in $MODDIR (built in?)" >&2
			return 0
		fi
		plain=$W/lib/modules/$name.ko
		case "$f" in
		*.xz) xz -dc "$f" > "$plain" ;;
		*.zst) zstd -q -dc "$f" > "$plain" ;;
		*.gz) gzip -dc "$f" > "$plain" ;;
		*) cp "$f" "$plain" ;;
		esac
		for dep in $(strings "$plain" | sed -n 's/^depends=//p' | tr ',' ' '); do
			add "$dep"
		done
		echo "$name.ko" >> "$W/lib/modules/load.order"
	}
	add zram
	(cd "$W" && find . -print0 | sort -z | cpio --null -o -H newc --owner=0:0 --quiet) | gzip -9 > "$OUT"
	echo "build-initramfs.sh: $OUT: $(tr '\n' ' ' < "$W/lib/modules/load.order")"
	exit 0
fi

BUSYBOX=${BUSYBOX:-/bin/busybox}
WORK=$LAB_CACHE/initramfs
OUT=$LAB_CACHE/initramfs.cpio.gz

if ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
	echo "build-initramfs.sh: $BUSYBOX is not static (apt-get install busybox-static)" >&2
	exit 1
fi

mkdir -p "$LAB_CACHE"
gcc -O2 -Wall -static -pthread -o "$LAB_CACHE/thpfrag" "$HERE/../workload/thpfrag.c"

rm -rf "$WORK"
mkdir -p "$WORK"/{bin,sbin,dev,proc,sys,tmp,bundle,lib/modules}
cp "$BUSYBOX" "$WORK/bin/busybox"
for app in $("$BUSYBOX" --list); do
	[ "$app" = busybox ] || ln -s busybox "$WORK/bin/$app"
done
cp "$LAB_CACHE/thpfrag" "$WORK/bin/thpfrag"
cp "$HERE/guest-init.sh" "$WORK/init"
chmod 755 "$WORK/init" "$WORK/bin/thpfrag"

(cd "$WORK" && find . -print0 | sort -z | cpio --null -o -H newc --owner=0:0 --quiet) | gzip -9 > "$OUT"
echo "build-initramfs.sh: $OUT ($(stat -c %s "$OUT") bytes)"
