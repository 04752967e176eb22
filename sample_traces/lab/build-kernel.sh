#!/bin/bash
# build-kernel.sh [--config-only] [VARIANT...]
#
# Build Linux 6.1 kernels for the lab guests from Debian bookworm's
# linux-source-6.1 package, each with a different THP fault allocation policy:
#
#   built-unpatched  the 6.1 code as Debian ships it (5.4 two-step as tweaked by
#                    cc638f329ef6, plus the stable backport of 9c9828d3ead6):
#                    the control, built with the same config
#   local-only       patches/6.1-local-only.patch: the 4.8..5.3-rc4 policy, one
#                    __GFP_THISNODE attempt on the local node
#   relaxed          patches/6.1-relaxed.patch: the 5.3-rc5..5.3.x policy, no
#                    THP special case: one attempt under the task's mempolicy
#                    with fallback to remote nodes
#   two-step         patches/6.1-two-step.patch: the 5.4 policy (19deb7695e07,
#                    b39d0ee2632d, 76e654cc91bb): a local __GFP_THISNODE
#                    attempt at full effort, then (masks with direct reclaim)
#                    gfp|__GFP_NORETRY on all nodes; 5.4's slowpath checks
#   rientjes         patches/6.1-rientjes.patch: David Rientjes's series as
#                    posted on 4 Sep 2019: two-step without the
#                    __GFP_RETRY_MAYFAIL exemption of the pageblock check
#
# (default: all five).  See KERNELS.md.
#
# The package is fetched with a private apt sources list and state dir under
# the cache (the host's apt configuration is not touched); the mirror is read
# at run time from the host's apt sources (override with DEBIAN_MIRROR=URL).
# The version is the suite's current one; SRC_VERSION=6.1.176-1 pins it (and
# works offline once that .deb is in $LAB_CACHE/src/).  The patches were made
# against 6.1.176-1; a newer package that they do not apply to is an error.
# The tree is configured once (x86_64_defconfig + kernel-config.fragment) and
# built once; each variant then restores the pristine mm/ files, applies its
# patch and rebuilds incrementally.
#
# Outputs ($LAB_CACHE/kernels/6.1-VARIANT/):
#   bzImage   the kernel to boot (KERNEL=.../bzImage MODULES=none run-guest.sh)
#   release   kernel release string (uname -r), e.g. 6.1.176-thpreplay-relaxed
#   package   "linux-source-6.1 VERSION": name and version of the source package
#   variant   the variant name; patch: the patch that was applied (if any)
#   config    the kernel's .config
#   stamp     hash of what went into the build (package version, patch,
#             fragment, compiler, the configure/build part of this script); a variant whose
#             bzImage exists and whose stamp matches is not rebuilt
#             (FORCE=1 rebuilds anyway)
# Work dirs: $LAB_CACHE/src/ (package, unpacked tree), $LAB_CACHE/build/6.1/
# (object dir, make O=), $LAB_CACHE/apt-src/ (private apt state).
#
# Build dependencies (Debian): build-essential flex bison bc libelf-dev
# libssl-dev cpio xz-utils.  JOBS (default 2) and NICE (default 10) set the
# make parallelism and niceness.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_CACHE=${LAB_CACHE:-$HOME/.cache/thpreplay-lab}
SUITE=${SUITE:-bookworm}
PKG=linux-source-6.1
JOBS=${JOBS:-2}
NICE=${NICE:-10}
FRAGMENT=$HERE/kernel-config.fragment
PATCHDIR=$HERE/patches
APTDIR=$LAB_CACHE/apt-src
SRCROOT=$LAB_CACHE/src
OBJ=$LAB_CACHE/build/6.1
OUTROOT=$LAB_CACHE/kernels
ALL_VARIANTS=(built-unpatched local-only relaxed two-step rientjes)

log() { echo "build-kernel.sh: $*"; }
die() { echo "build-kernel.sh: $*" >&2; exit 1; }

CONFIG_ONLY=0
VARIANTS=()
for a in "$@"; do
	case "$a" in
	--config-only) CONFIG_ONLY=1 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	built-unpatched|local-only|relaxed|two-step|rientjes) VARIANTS+=("$a") ;;
	*) die "unknown argument '$a' (variants: ${ALL_VARIANTS[*]})" ;;
	esac
done
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("${ALL_VARIANTS[@]}")

for t in gcc make flex bison bc xz perl; do
	command -v $t >/dev/null || die "missing build tool '$t' (apt-get install build-essential flex bison bc libelf-dev libssl-dev cpio xz-utils)"
done
[ -e /usr/include/libelf.h ] || die "missing libelf-dev"
[ -e /usr/include/openssl/ssl.h ] || die "missing libssl-dev"

# ---------------------------------------------------------------- fetch
source "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh"   # find_mirror, private_apt

mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$SRCROOT" "$OUTROOT"
if [ -n "${SRC_VERSION:-}" ] && ls "$SRCROOT/${PKG}_${SRC_VERSION//:/%3a}_all.deb" >/dev/null 2>&1; then
	VER=$SRC_VERSION   # offline re-run with a known version
else
	private_apt "$APTDIR" "$SUITE" || die "cannot set up apt for $SUITE"
	VER=${SRC_VERSION:-$(apt-cache "${APT_OPTS[@]}" show "$PKG" | awk '/^Version:/ {print $2; exit}')}
	[ -n "$VER" ] || die "no $PKG in $SUITE"
	DEBNAME=${PKG}_${VER//:/%3a}_all.deb
	if [ ! -s "$SRCROOT/$DEBNAME" ]; then
		log "downloading $PKG $VER"
		(cd "$SRCROOT" && apt-get "${APT_OPTS[@]}" -qq download "$PKG=$VER")
	fi
fi
DEB=$SRCROOT/${PKG}_${VER//:/%3a}_all.deb
[ -s "$DEB" ] || die "no $DEB"
log "$PKG $VER ($DEB)"

# ---------------------------------------------------------------- unpack
# $SRCROOT/linux-source-6.1/ is the tree; .thpreplay-package records which
# package it came from; .thpreplay-pristine/ keeps the unpatched copies of every
# file a patch touches.
SRC=$SRCROOT/linux-source-6.1
if [ "$(cat "$SRC/.thpreplay-package" 2>/dev/null || true)" != "$PKG $VER" ]; then
	log "unpacking $PKG $VER into $SRC"
	rm -rf "$SRCROOT/deb" "$SRC" "$OBJ"
	mkdir -p "$SRCROOT/deb"
	dpkg-deb -x "$DEB" "$SRCROOT/deb"
	TARBALL=$(ls "$SRCROOT"/deb/usr/src/linux-source-6.1*.tar.xz | head -n1)
	tar -C "$SRCROOT" -xJf "$TARBALL"
	[ -d "$SRC" ] || die "tarball $TARBALL did not unpack to $SRC"
	rm -rf "$SRCROOT/deb"
	echo "$PKG $VER" > "$SRC/.thpreplay-package"
fi

# files touched by any patch, and their pristine copies
mapfile -t PATCHED_FILES < <(sed -n 's#^+++ [ab]/\([^[:space:]]*\).*#\1#p' "$PATCHDIR"/6.1-*.patch | sort -u)
mkdir -p "$SRC/.thpreplay-pristine"
for f in "${PATCHED_FILES[@]}"; do
	p=$SRC/.thpreplay-pristine/$f
	if [ ! -e "$p" ]; then
		# the tree is still pristine for $f only if no patch has been applied yet
		[ "$(cat "$SRC/.thpreplay-applied" 2>/dev/null || echo built-unpatched)" = built-unpatched ] || die "$f: no pristine copy and the tree is patched; remove $SRC and re-run"
		mkdir -p "$(dirname "$p")"
		cp -p "$SRC/$f" "$p"
	fi
done

# restore the pristine mm/ files (only those that differ, so make's mtimes
# stay put when nothing changes), then apply VARIANT's patch (if any)
set_tree() { # variant
	local v=$1 f patch
	if [ "$(cat "$SRC/.thpreplay-applied" 2>/dev/null || echo built-unpatched)" = "$v" ] &&
		[ "$(cat "$SRC/.thpreplay-applied-sha" 2>/dev/null || true)" = "$(patch_sha "$v")" ]; then
		return
	fi
	for f in "${PATCHED_FILES[@]}"; do
		cmp -s "$SRC/.thpreplay-pristine/$f" "$SRC/$f" || cp "$SRC/.thpreplay-pristine/$f" "$SRC/$f"
	done
	rm -f "$SRC/.thpreplay-applied" "$SRC/.thpreplay-applied-sha"
	patch=$PATCHDIR/6.1-$v.patch
	if [ "$v" != built-unpatched ]; then
		log "applying $(basename "$patch")"
		patch -d "$SRC" -p1 --dry-run -s < "$patch" >/dev/null ||
			die "$(basename "$patch") does not apply to $PKG $VER"
		patch -d "$SRC" -p1 --no-backup-if-mismatch -s < "$patch"
	fi
	echo "$v" > "$SRC/.thpreplay-applied"
	patch_sha "$v" > "$SRC/.thpreplay-applied-sha"
}
patch_sha() { # variant
	if [ "$1" = built-unpatched ]; then echo none; else sha256sum < "$PATCHDIR/6.1-$1.patch" | cut -d' ' -f1; fi
}

# ---------------------------------------------------------------- configure
# x86_64_defconfig + the fragment; kbuild then resolves dependencies
# (olddefconfig).  Every "=y" / "is not set" line of the fragment is checked in
# the result, so a fragment option that Kconfig silently dropped is an error.
MAKE=(nice -n "$NICE" make -C "$SRC" O="$OBJ" ARCH=x86_64 -j"$JOBS"
	KBUILD_BUILD_USER=thpreplay KBUILD_BUILD_HOST=lab)
configure() { # variant
	local v=$1 want got sym val
	mkdir -p "$OBJ"
	if [ ! -e "$OBJ/.config.base" ] || [ "$FRAGMENT" -nt "$OBJ/.config.base" ] ||
		[ "$(cat "$OBJ/.fragment-sha" 2>/dev/null || true)" != "$(sha256sum < "$FRAGMENT")" ]; then
		log "configuring (x86_64_defconfig + $(basename "$FRAGMENT"))"
		"${MAKE[@]}" -s x86_64_defconfig
		KCONFIG_CONFIG="$OBJ/.config" "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OBJ" \
			"$OBJ/.config" "$FRAGMENT" > "$OBJ/merge_config.log"
		"${MAKE[@]}" -s olddefconfig
		cp "$OBJ/.config" "$OBJ/.config.base"
		sha256sum < "$FRAGMENT" > "$OBJ/.fragment-sha"
	fi
	# per-variant release suffix; only files that use CONFIG_LOCALVERSION rebuild
	cp "$OBJ/.config.base" "$OBJ/.config.new"
	"$SRC/scripts/config" --file "$OBJ/.config.new" --set-str LOCALVERSION "-thpreplay-$v" --disable LOCALVERSION_AUTO
	if ! cmp -s "$OBJ/.config.new" "$OBJ/.config"; then mv "$OBJ/.config.new" "$OBJ/.config"; else rm "$OBJ/.config.new"; fi
	"${MAKE[@]}" -s olddefconfig
	# verify
	local bad=0
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*) sym=${line%%=*}; val=${line#*=} ;;
		"# CONFIG_"*" is not set") sym=${line#\# }; sym=${sym%% *}; val=n ;;
		*) continue ;;
		esac
		got=$(grep -E "^$sym=|^# $sym is not set" "$OBJ/.config" || true)
		case "$got" in
		"$sym=$val") ;;
		"# $sym is not set") [ "$val" = n ] || { echo "  $sym: want $val, got n" >&2; bad=1; } ;;
		"") [ "$val" = n ] || { echo "  $sym: want $val, not in .config" >&2; bad=1; } ;;
		*) echo "  $sym: want $val, got ${got#*=}" >&2; bad=1 ;;
		esac
	done < "$FRAGMENT"
	if grep -q '=m$' "$OBJ/.config"; then
		echo "  modules in .config: $(grep '=m$' "$OBJ/.config" | tr '\n' ' ')" >&2; bad=1
	fi
	[ $bad = 0 ] || die "the .config does not match $(basename "$FRAGMENT") (see above)"
}

stamp_of() { # variant
	{
		echo "$PKG $VER"
		echo "variant $1 patch $(patch_sha "$1")"
		sha256sum < "$FRAGMENT"
		gcc --version | head -n1
		sed -n '/^# ---* configure/,/^# ---* build/p' "$0" | sha256sum
	} | sha256sum | cut -d' ' -f1
}

# ---------------------------------------------------------------- build
write_meta() { # variant outdir
	echo "$PKG $VER" > "$2/package"
	echo "$1" > "$2/variant"
	if [ "$1" = built-unpatched ]; then rm -f "$2/patch"; else cp "$PATCHDIR/6.1-$1.patch" "$2/patch"; fi
	# the thpreplay policy the patched fault path follows; run-fidelity.sh copies it into each bundle
	# (`thp_policy`), so `thpreplay validate` does not take the 6.1 release's own policy
	case "$1" in
	local-only) echo local-only-4.8 > "$2/thp_policy" ;;
	relaxed) echo relaxed-5.3-rc5 > "$2/thp_policy" ;;
	two-step) echo two-step-5.4 > "$2/thp_policy" ;;
	rientjes) echo rientjes-2019 > "$2/thp_policy" ;;
	*) rm -f "$2/thp_policy" ;;
	esac
}
for v in "${VARIANTS[@]}"; do
	out=$OUTROOT/6.1-$v
	st=$(stamp_of "$v")
	if [ "$CONFIG_ONLY" = 0 ] && [ -z "${FORCE:-}" ] && [ -s "$out/bzImage" ] &&
		[ "$(cat "$out/stamp" 2>/dev/null || true)" = "$st" ]; then
		write_meta "$v" "$out"
		log "$v: $out/bzImage is up to date ($(cat "$out/release"))"
		continue
	fi
	set_tree "$v"
	configure "$v"
	if [ "$CONFIG_ONLY" = 1 ]; then
		log "$v: configured ($OBJ/.config)"; continue
	fi
	log "$v: building (make -j$JOBS, nice $NICE)"
	t0=$(date +%s)
	"${MAKE[@]}" bzImage > "$OBJ/build-$v.log" 2>&1 || { tail -n 40 "$OBJ/build-$v.log" >&2; die "$v: build failed (log: $OBJ/build-$v.log)"; }
	t1=$(date +%s)
	rel=$("${MAKE[@]}" -s kernelrelease)
	mkdir -p "$out"
	cp "$OBJ/arch/x86/boot/bzImage" "$out/bzImage.new" && mv "$out/bzImage.new" "$out/bzImage"
	cp "$OBJ/.config" "$out/config"
	echo "$rel" > "$out/release"
	write_meta "$v" "$out"
	echo "$st" > "$out/stamp"
	log "$v: $out/bzImage ($rel) built in $((t1 - t0)) s"
done
# leave the tree unpatched
[ "$CONFIG_ONLY" = 1 ] || set_tree built-unpatched
