#!/bin/bash
# run-fidelity.sh [KERNEL...] [SCENARIO...]
#
# The fidelity lab (issue 5): capture one bundle per (kernel, scenario) in a
# NUMA QEMU guest and write it, with a README.md, to
#   $OUT_ROOT/<kernel>-s<N>-<name>/          (OUT_ROOT default: ../fidelity)
# e.g. fidelity/6.1-s1-fragmented-movable.  Existing bundles of the selected
# (kernel, scenario) pairs are replaced; the others are left alone.
#
# KERNEL: 5.10 (Debian bullseye, linux-image-amd64), 6.1 (bookworm), 6.12
#   (trixie): fetched with fetch-kernel.sh into $LAB_CACHE/kernels/<suite>/; or
#   the name of a directory $LAB_CACHE/kernels/<name>/ holding a self-built
#   bzImage (everything built in, no modules; zram built in for scenario 2).
#   Default: 5.10 6.1 6.12.
# SCENARIO: 1..4 (default all; see guest-init.sh):
#   1 fragmented-movable  node 0 fragmented with movable pages, 192 MB MADV_HUGEPAGE
#   2 larger-than-node    130 % of node 0 in MADV_HUGEPAGE, zram swap, node 1 free
#   3 unmovable           pipe pages (unmovable) in every node-0 pageblock, 256 MB
#   4 qemu-threads        1024 MB MADV_HUGEPAGE filled by 4 threads on node 0's CPU
# Environment: LAB_CACHE (default ~/.cache/thpreplay-lab), NODES (2 or 4,
# default 2; with 4 the directory names get a -4node suffix), MEM_MB (total guest
# RAM, default 1536, split evenly between the nodes), OUT_ROOT, RUN.
# RUN=N (N >= 2): a repeated run of the same (kernel, scenario), written to
#   <kernel>-s<N>-<name>-rN/ next to the first one (e.g. 6.1-s1-fragmented-movable-r2),
#   so that a scenario the kernel itself does not repeat exactly can keep several
#   runs (score.py groups them).  Unset, empty or 1: the first run, no suffix.
#   The committed runs 2..5 were made with
#     for r in 2 3 4 5; do RUN=$r nice -n 10 run-fidelity.sh 6.1 1; done   (and 5.10, 6.12,
#   6.1-two-step, 6.1-rientjes), and for scenarios 2-4 on all eight kernels with
#     for r in 2 3 4 5; do RUN=$r nice -n 10 run-fidelity.sh KERNEL 2 3 4; done
#   (about 25 s of guest time per scenario on this 2-core machine; one guest of 96, 6.12 s3 run 3,
#   panicked at boot under TCG and was run again).
# Guests run one at a time.  Every selected pair is attempted; a failed one is
# reported at the end and makes the exit status 1 (nothing is skipped silently).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LAB_CACHE=${LAB_CACHE:-$HOME/.cache/thpreplay-lab}
OUT_ROOT=${OUT_ROOT:-$(cd "$HERE/.." && pwd)/fidelity}
export NODES=${NODES:-2}
export MEM_MB=${MEM_MB:-1536}
export RUN=${RUN:-}
case "$RUN" in
'' | 1) RUN= ;;
*[!0-9]* | 0*) echo "run-fidelity.sh: RUN must be a run number (2, 3, ...), not '$RUN'" >&2; exit 2 ;;
esac

KERNELS=() SCENARIOS=()
for a in "$@"; do
	case "$a" in
	[1-4]) SCENARIOS+=("$a") ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) KERNELS+=("$a") ;;
	esac
done
[ ${#KERNELS[@]} -gt 0 ] || KERNELS=(5.10 6.1 6.12)
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(1 2 3 4)

scenario_name() {
	case "$1" in
	1) echo fragmented-movable ;; 2) echo larger-than-node ;;
	3) echo unmovable ;; 4) echo qemu-threads ;;
	esac
}
suite_of() {
	case "$1" in
	5.10 | bullseye) echo bullseye ;; 6.1 | bookworm) echo bookworm ;;
	6.12 | trixie) echo trixie ;; *) echo "" ;;
	esac
}

set -e
"$HERE/build-initramfs.sh"
set +e

declare -A KIMAGE=()
FAILED=()
for k in "${KERNELS[@]}"; do
	suite=$(suite_of "$k")
	if [ -n "$suite" ]; then
		if ! "$HERE/fetch-kernel.sh" "$suite" linux-image-amd64; then
			FAILED+=("$k: fetch-kernel.sh $suite failed")
			continue
		fi
		KIMAGE[$k]=$LAB_CACHE/kernels/$suite/vmlinuz
	elif [ -e "$LAB_CACHE/kernels/$k/bzImage" ]; then
		KIMAGE[$k]=$LAB_CACHE/kernels/$k/bzImage
	elif [ -e "$LAB_CACHE/kernels/$k/vmlinuz" ]; then
		KIMAGE[$k]=$LAB_CACHE/kernels/$k/vmlinuz
	else
		FAILED+=("$k: unknown kernel (not 5.10/6.1/6.12, no $LAB_CACHE/kernels/$k/bzImage)")
	fi
done

suffix=; [ "$NODES" = 2 ] || suffix=-${NODES}node
[ -z "$RUN" ] || suffix+=-r$RUN
mkdir -p "$OUT_ROOT"
for k in "${KERNELS[@]}"; do
	[ -n "${KIMAGE[$k]:-}" ] || continue
	for n in "${SCENARIOS[@]}"; do
		name=$k-s$n-$(scenario_name "$n")$suffix
		dest=$OUT_ROOT/$name
		stage=$OUT_ROOT/.$name.new
		rm -rf "$stage"
		echo "run-fidelity.sh: === $name (kernel ${KIMAGE[$k]}, scenario $n, $NODES nodes, $MEM_MB MB)"
		run=$LAB_CACHE/runs/$(date -u +%Y%m%dT%H%M%SZ)-$name
		rm -rf "$run"
		if ! RUN_DIR=$run KERNEL=${KIMAGE[$k]} SCENARIO=$n "$HERE/run-guest.sh" "$stage"; then
			FAILED+=("$name: run-guest.sh failed (see $run)")
			rm -rf "$stage"
			continue
		fi
		kdir=$(dirname "${KIMAGE[$k]}")
		[ -s "$kdir/thp_policy" ] && cp "$kdir/thp_policy" "$stage/thp_policy"   # a patched kernel's policy
		if ! python3 "$HERE/fidelity-readme.py" "$stage" "$run" "$name" "$k" "$n" "${KIMAGE[$k]}"; then
			FAILED+=("$name: fidelity-readme.py failed")
			continue
		fi
		rm -rf "$dest"
		mv "$stage" "$dest"
		echo "run-fidelity.sh: $dest ($(du -sh "$dest" | cut -f1))"
	done
done

if [ ${#FAILED[@]} -gt 0 ]; then
	echo "run-fidelity.sh: FAILED:" >&2
	printf '  %s\n' "${FAILED[@]}" >&2
	exit 1
fi
echo "run-fidelity.sh: all done"
