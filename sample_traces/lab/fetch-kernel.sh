#!/bin/bash
# fetch-kernel.sh [SUITE] [PACKAGE]
#
# Download a Debian kernel image package (default: the kernel that bookworm's
# linux-image-amd64 metapackage points at, i.e. linux-image-6.1.0-N-amd64)
# into the lab cache and extract it.  Uses a private apt sources list and
# state dir under the cache, so the host's apt configuration is not touched.
# The mirror is taken at run time from the host's apt sources (override with
# DEBIAN_MIRROR=URL).
#
# Each suite gets its own directory (so 5.10, 6.1 and 6.12 can sit side by side):
# Outputs (in $LAB_CACHE/kernels/<SUITE>/, e.g. kernels/bullseye, kernels/bookworm,
# kernels/trixie):
#   vmlinuz           the kernel to boot (run-guest.sh KERNEL=...)
#   release           kernel release string (e.g. 6.1.0-37-amd64)
#   package           "name version" of the .deb that was used
#   root/             the extracted package (modules under root/lib/modules)
# The apt lists are kept per suite too ($LAB_CACHE/apt/<SUITE>/).  The one
# keyring /usr/share/keyrings/debian-archive-keyring.gpg (package
# debian-archive-keyring, 2023.3+deb12u2 on a Debian 12 host) holds the 11/bullseye,
# 12/bookworm and 13/trixie archive keys.
set -euo pipefail

SUITE=${1:-bookworm}
PKG=${2:-linux-image-amd64}
LAB_CACHE=${LAB_CACHE:-$HOME/.cache/thpreplay-lab}
APTDIR=$LAB_CACHE/apt/$SUITE
KDIR=$LAB_CACHE/kernels/$SUITE

source "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh"   # find_mirror, private_apt

mkdir -p "$KDIR"
private_apt "$APTDIR" "$SUITE"

# Resolve a metapackage (linux-image-amd64) to the versioned image package.
resolve() {
	local p=$1 dep
	if [[ "$p" =~ ^linux-image-[0-9] ]]; then echo "$p"; return; fi
	# bullseye's metapackage depends on linux-image-5.10.0-N-amd64 (unsigned name);
	# bookworm/trixie's on the same name too; take the first linux-image-<digit> dependency
	dep=$(apt-cache "${APT_OPTS[@]}" depends "$p" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	if [ -z "$dep" ]; then echo "fetch-kernel.sh: cannot resolve $p" >&2; exit 1; fi
	echo "$dep"
}
REAL=$(resolve "$PKG")
VER=$(apt-cache "${APT_OPTS[@]}" show "$REAL" | awk '/^Version:/ {print $2; exit}')
echo "fetch-kernel.sh: $REAL $VER from $SUITE"

DEB=$(ls "$LAB_CACHE"/debs/"${REAL}"_"${VER//:/%3a}"_amd64.deb 2>/dev/null || true)
if [ -z "$DEB" ]; then
	mkdir -p "$LAB_CACHE/debs"
	(cd "$LAB_CACHE/debs" && apt-get "${APT_OPTS[@]}" -qq download "$REAL=$VER")
	DEB=$(ls "$LAB_CACHE"/debs/"${REAL}"_*_amd64.deb | grep -F "_${VER//:/%3a}_" | head -n1)
fi

if [ "$(cat "$KDIR/package" 2>/dev/null || true)" != "$REAL $VER" ] || [ ! -e "$KDIR/vmlinuz" ]; then
	rm -rf "$KDIR/root"
	mkdir -p "$KDIR/root"
	dpkg-deb -x "$DEB" "$KDIR/root"
	VMLINUZ=$(ls "$KDIR"/root/boot/vmlinuz-* | head -n1)
	cp "$VMLINUZ" "$KDIR/vmlinuz"
	basename "$VMLINUZ" | sed 's/^vmlinuz-//' > "$KDIR/release"
	echo "$REAL $VER" > "$KDIR/package"
fi
echo "fetch-kernel.sh: kernel $(cat "$KDIR/release") in $KDIR/vmlinuz"
