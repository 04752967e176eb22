#!/bin/sh
# guest-init.sh: /init of the capture initramfs (busybox sh, runs as PID 1).
#
# Takes a thpreplay "capture bundle" of one workload run and sends it, as a
# gzipped tar in base64 between marker lines, over the second serial port
# (ttyS1; the kernel console stays on ttyS0), then powers off.
#
# Knobs, read from the kernel command line (run-guest.sh sets them):
#   lab.scenario=N one of the fidelity scenarios below (sets the defaults of
#                  the knobs; knobs given explicitly still win).  Unset or 0:
#                  the original defaults (what made ../qemu-6.1-2node).
#   lab.frag0=MB   thpfrag frag MB pinned to node 0's CPU (0 = skip; "auto" =
#                  node 0's MemFree + 32 MB, i.e. all of node 0)
#   lab.frag1=MB   thpfrag frag MB pinned to node 1's CPU (0 = skip)
#   lab.mlock0=0|1 node 0's frag with --mlock (likewise lab.mlock1 for node 1);
#                  with either, vm.compact_unevictable_allowed=0 and a raised
#                  vm.max_map_count (every mlocked page is its own VMA): the
#                  mlocked pages cannot be migrated, so compaction there fails
#   lab.unmov0=MB  thpfrag unmovable MB pinned to node 0's CPU (0 = skip; "auto"
#                  as for frag0): pipe buffer pages (unmovable) left in every
#                  pageblock of node 0, the rest of node 0 free
#   lab.swap=MB    zram swap device of MB (disksize; 0 = no swap).  zram comes
#                  from /lib/modules/load.order (modules run-guest.sh appended
#                  for a Debian kernel) or is built in (/sys/block/zram0)
#   lab.fault=MB   thpfrag fault MB (MADV_HUGEPAGE); "N%" = N % of node 0's MemTotal
#   lab.threads=T  thpfrag fault --threads T
#   lab.pin=CPU    CPU the fault runs on ("node0" = node 0's first CPU, the
#                  default; "none" = not pinned: the scheduler spreads threads)
#   lab.bufkb=KB   ftrace buffer_size_kb per CPU
# Scenarios (THP enabled=madvise defrag=madvise in all):
#   1 fragmented-movable: frag0=auto (every other 4 KiB page of node 0 kept,
#     movable), fault=192, node 1 free
#   2 larger-than-node:   fault=130% (of node 0), swap=1024 (zram), node 1 free
#   3 unmovable:          unmov0=auto (pipe pages in every node-0 pageblock),
#                         fault=256, node 1 free
#   4 qemu-threads:       fault=1024 with threads=4 on node 0's CPU (like
#                         vCPU threads bound to a node smaller than the
#                         guest), no pollution, no swap
# NUMA balancing is switched off: it would move pages between the nodes during
# the run, and with it on thpfrag's huge= read 0 although THPs were allocated
# (probably smaps skipping its protnone THP PMDs on this 6.1 kernel).
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
# the initramfs has no /dev/console node (built without root): reopen it now
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1

log() { echo "lab-init: $*"; }

SCENARIO=0
for arg in $(cat /proc/cmdline); do
	case "$arg" in lab.scenario=*) SCENARIO=${arg#*=} ;; esac
done
FRAG0=700 FRAG1=0 MLOCK0=0 MLOCK1=0 UNMOV0=0 SWAP=0 FAULT=256 THREADS=1 PIN=node0 BUFKB=32768
case "$SCENARIO" in
0) ;;
1) FRAG0=auto FAULT=192 ;;
2) FRAG0=0 FAULT=130% SWAP=1024 ;;
3) FRAG0=0 UNMOV0=auto FAULT=256 ;;
4) FRAG0=0 FAULT=1024 THREADS=4 ;;
*) log "unknown lab.scenario=$SCENARIO" ;;
esac
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	lab.frag0=*) FRAG0=${arg#*=} ;;
	lab.frag1=*) FRAG1=${arg#*=} ;;
	lab.mlock0=*) MLOCK0=${arg#*=} ;;
	lab.mlock1=*) MLOCK1=${arg#*=} ;;
	lab.unmov0=*) UNMOV0=${arg#*=} ;;
	lab.swap=*) SWAP=${arg#*=} ;;
	lab.fault=*) FAULT=${arg#*=} ;;
	lab.threads=*) THREADS=${arg#*=} ;;
	lab.pin=*) PIN=${arg#*=} ;;
	lab.bufkb=*) BUFKB=${arg#*=} ;;
	esac
done
# node 0's / node 1's first CPU, node 0's memory (kB)
first_cpu() { cut -d, -f1 /sys/devices/system/node/node$1/cpulist 2>/dev/null | cut -d- -f1; }
CPU0=$(first_cpu 0); CPU1=$(first_cpu 1)
[ -n "$CPU1" ] || CPU1=$CPU0
node0_kb() { awk -v k="$1:" '$3 == k {print $4}' /sys/devices/system/node/node0/meminfo; }
auto_mb() { echo $(( $(node0_kb MemFree) / 1024 + 32 )); }
[ "$PIN" = node0 ] && PIN=$CPU0
case "$FAULT" in *%) FAULT=$(( $(node0_kb MemTotal) * ${FAULT%\%} / 100 / 1024 )) ;; esac
log "scenario=$SCENARIO frag0=$FRAG0 frag1=$FRAG1 mlock0=$MLOCK0 mlock1=$MLOCK1 unmov0=$UNMOV0 swap=$SWAP fault=$FAULT threads=$THREADS pin=$PIN bufkb=$BUFKB cpu0=$CPU0 cpu1=$CPU1"

T=/sys/kernel/tracing
if ! mount -t tracefs nodev $T 2>/dev/null; then
	mount -t debugfs nodev /sys/kernel/debug
	T=/sys/kernel/debug/tracing
fi

B=/bundle
mkdir -p $B /tmp
mount -t tmpfs tmpfs /tmp

THP=/sys/kernel/mm/transparent_hugepage
echo madvise > $THP/enabled
echo madvise > $THP/defrag
[ -e /proc/sys/kernel/numa_balancing ] && echo 0 > /proc/sys/kernel/numa_balancing
if [ "$MLOCK0" = 1 ] || [ "$MLOCK1" = 1 ]; then
	echo 0 > /proc/sys/vm/compact_unevictable_allowed
	echo 1048576 > /proc/sys/vm/max_map_count
fi

# -- tracing setup (trace_clock local, default options) --
echo 0 > $T/tracing_on
echo local > $T/trace_clock
echo "$BUFKB" > $T/buffer_size_kb
for ev in kmem/mm_page_alloc kmem/mm_page_free kmem/mm_page_alloc_extfrag \
	compaction/mm_compaction_try_to_compact_pages compaction/mm_compaction_begin \
	compaction/mm_compaction_end compaction/mm_compaction_suitable \
	compaction/mm_compaction_deferred compaction/mm_compaction_defer_compaction \
	compaction/mm_compaction_defer_reset compaction/mm_compaction_migratepages \
	compaction/mm_compaction_kcompactd_wake \
	vmscan/mm_vmscan_direct_reclaim_begin vmscan/mm_vmscan_direct_reclaim_end \
	vmscan/mm_vmscan_kswapd_wake vmscan/mm_vmscan_kswapd_sleep \
	vmscan/mm_vmscan_write_folio vmscan/mm_vmscan_writepage \
	exceptions/page_fault_user; do
	if [ -e $T/events/$ev/enable ]; then
		echo 1 > $T/events/$ev/enable
	else
		log "event $ev not available"
	fi
done
echo > $T/trace

# -- swap (zram), before the pollution so that its setup allocations come first --
LABLOG=$B/lab.log
: > $LABLOG
if [ "$SWAP" != 0 ]; then
	for m in $(cat /lib/modules/load.order 2>/dev/null); do
		insmod /lib/modules/$m >> $LABLOG 2>&1 && log "insmod $m" || log "insmod $m failed"
	done
	i=0
	while [ ! -e /sys/block/zram0 ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
	[ -e /dev/zram0 ] || mknod /dev/zram0 b "$(cut -d: -f1 /sys/block/zram0/dev)" "$(cut -d: -f2 /sys/block/zram0/dev)" 2>/dev/null
	if [ -e /sys/block/zram0 ]; then
		echo "${SWAP}M" > /sys/block/zram0/disksize
		mkswap /dev/zram0 >> $LABLOG 2>&1 && swapon /dev/zram0 || log "swapon /dev/zram0 failed"
		log "zram0 comp_algorithm: $(cat /sys/block/zram0/comp_algorithm)"
	else
		log "no zram0: running without swap"
	fi
fi
echo "swaps.before:" >> $LABLOG; cat /proc/swaps >> $LABLOG

# -- fragment / pollute memory (before tracing) --
wait_ready() { # pid logname what
	while ! grep -q ready /tmp/$2.log 2>/dev/null; do
		if ! kill -0 $1 2>/dev/null; then log "$2 died: $(cat /tmp/$2.log)"; break; fi
		sleep 0.2
	done
	log "$2 ($3): $(cat /tmp/$2.log)"
	echo "$2 ($3): $(cat /tmp/$2.log)" >> $LABLOG
}
start_frag() { # cpu MB logname mlock
	opt=; [ "$4" = 1 ] && opt=--mlock
	mb=$2; [ "$mb" = auto ] && mb=$(auto_mb)
	taskset -c "$1" /bin/thpfrag frag "$mb" $opt > /tmp/$3.log 2>&1 &
	wait_ready $! $3 "frag $mb MB on cpu $1 mlock=$4"
}
if [ "$FRAG0" != 0 ]; then start_frag $CPU0 "$FRAG0" frag0 "$MLOCK0"; fi
if [ "$FRAG1" != 0 ]; then start_frag $CPU1 "$FRAG1" frag1 "$MLOCK1"; fi
if [ "$UNMOV0" != 0 ]; then
	mb=$UNMOV0; [ "$mb" = auto ] && mb=$(auto_mb)
	# While the pipe pages are placed:
	# - vm.min_free_kbytes=1024: an unmovable allocation steals the largest free
	#   block first, and node 0's allocations spill to node 1 at node 0's low
	#   watermark, so whatever free memory node 0 keeps at that point stays as
	#   untouched holes; with the default watermarks (min ~33 MB on a 768 MB node)
	#   that was 1/3 of the blocks, which then became whole free blocks again;
	# - no watermark boosting (a fallback steal boosts the watermarks and wakes
	#   kswapd, which wakes kcompactd) and no proactive compaction: compaction
	#   would gather the anonymous pages into fewer blocks and leave whole free
	#   pageblocks, which the pipe allocations would claim and pack.
	# - vm.percpu_pagelist_high_fraction=1000000 (6.1+; the per-CPU free lists
	#   then hold at most 4 batches): on 6.12 the auto-tuned per-CPU list of node
	#   0's CPU kept ~19,000 of the freed holes (pages freed to the MOVABLE
	#   per-CPU list, out of reach of the unmovable allocations), so the pipe
	#   pages went to node 1 instead.
	# All four are back at their boot values before the snapshots.
	saved=
	for s in min_free_kbytes watermark_boost_factor compaction_proactiveness percpu_pagelist_high_fraction; do
		[ -e /proc/sys/vm/$s ] && saved="$saved $s=$(cat /proc/sys/vm/$s)"
	done
	[ -e /proc/sys/vm/percpu_pagelist_high_fraction ] && echo 1000000 > /proc/sys/vm/percpu_pagelist_high_fraction
	echo 1024 > /proc/sys/vm/min_free_kbytes
	[ -e /proc/sys/vm/watermark_boost_factor ] && echo 0 > /proc/sys/vm/watermark_boost_factor
	[ -e /proc/sys/vm/compaction_proactiveness ] && echo 0 > /proc/sys/vm/compaction_proactiveness
	taskset -c $CPU0 /bin/thpfrag unmovable "$mb" --fill 100 > /tmp/unmov0.log 2>&1 &
	wait_ready $! unmov0 "unmovable $mb MB on cpu $CPU0, sysctls during placement: min_free_kbytes=1024 watermark_boost_factor=0 compaction_proactiveness=0 percpu_pagelist_high_fraction=1000000, then back to$saved"
	for kv in $saved; do echo "${kv#*=}" > /proc/sys/vm/${kv%%=*}; done
fi
echo 3 > /proc/sys/vm/drop_caches
sync

# -- snapshots --
snap() { # suffix
	# fold the per-CPU counter deltas first: on 5.10 the numa_* counters of
	# /proc/vmstat are per-CPU diffs folded only by the 1 s vmstat worker (a
	# snapshot right after the workload missed up to 40 % of numa_miss); 6.x folds
	# them when /proc/vmstat is read
	echo 1 > /proc/sys/vm/stat_refresh 2>/dev/null
	cp /proc/zoneinfo $B/zoneinfo.$1
	cp /proc/buddyinfo $B/buddyinfo.$1
	cp /proc/pagetypeinfo $B/pagetypeinfo.$1
	cp /proc/vmstat $B/vmstat.$1
	cp /proc/meminfo $B/meminfo.$1
	for n in /sys/devices/system/node/node[0-9]*; do
		nn=${n##*/}
		cp $n/vmstat $B/$nn.vmstat.$1
		cp $n/meminfo $B/$nn.meminfo.$1
	done
}
uname -r > $B/kernel_release
cp /proc/version $B/proc_version
# the upstream version Debian's ABI name hides (/proc/version: "... Debian 6.1.176-1 ...")
# (only Debian's own build string " Debian 6.1.176-1 (date)"; a self-built kernel's /proc/version names
# only the compiler, "(Debian 12.2.0-14...)", which is not the kernel's version)
sed -n 's/.* Debian \([0-9]*\.[0-9]*\.[0-9]*\)-[^ ]* ([0-9-]*).*/\1/p' /proc/version > $B/kernel_version
[ -s $B/kernel_version ] || rm -f $B/kernel_version
for s in compact_unevictable_allowed compaction_proactiveness extfrag_threshold min_free_kbytes \
	watermark_boost_factor watermark_scale_factor zone_reclaim_mode swappiness; do
	[ -e /proc/sys/vm/$s ] && echo "$s=$(cat /proc/sys/vm/$s)"
done > $B/vm_sysctl
{ cat $THP/enabled; cat $THP/defrag; cat $THP/khugepaged/defrag; } > $B/thp_settings
for n in /sys/devices/system/node/node[0-9]*; do
	nn=${n##*/}
	cp $n/cpulist $B/$nn.cpulist
	cp $n/distance $B/$nn.distance
done

snap before
# every page's flags (free, LRU anon/file, unevictable, slab...): the model's exact starting layout;
# the host compresses it to kpageflags.before.zst (run-guest.sh)
cat /proc/kpageflags > $B/kpageflags.before
# the dump's pages were allocated in memory while it was read and before tracing: neither shows those
# it took after reading their pfn; the model's samples draw how many (pipeline/thpreplay/sim/untraced.py)
sz=$(wc -c < $B/kpageflags.before)
printf 'missing=some\nmigratetype=movable\nnode0=%d\nwhy=guest-init.sh wrote /proc/kpageflags (%d bytes) into the guest'"'"'s in-memory root file system while reading it, before tracing began\n' \
	$(( (sz + 4095) / 4096 )) "$sz" > $B/untraced_start
echo 1 > $T/tracing_on
t0=$(cut -d' ' -f1 /proc/uptime)
if [ "$PIN" = none ]; then
	/bin/thpfrag fault "$FAULT" --threads "$THREADS" > $B/workload.log 2>&1 || log "fault exit $?"
else
	taskset -c "$PIN" /bin/thpfrag fault "$FAULT" --threads "$THREADS" > $B/workload.log 2>&1 || log "fault exit $?"
fi
echo 0 > $T/tracing_on
t1=$(cut -d' ' -f1 /proc/uptime)
snap after
log "workload: $(cat $B/workload.log) (uptime $t0 -> $t1)"
{
	echo "knobs: scenario=$SCENARIO frag0=$FRAG0 frag1=$FRAG1 mlock0=$MLOCK0 mlock1=$MLOCK1 unmov0=$UNMOV0 swap=$SWAP fault=$FAULT threads=$THREADS pin=$PIN bufkb=$BUFKB"
	echo "traced: uptime $t0 -> $t1"
	echo "swaps.after:"; cat /proc/swaps
	[ -e /sys/block/zram0/mm_stat ] && echo "zram0 mm_stat: $(cat /sys/block/zram0/mm_stat)"
} >> $LABLOG
log "thp_settings: $(tr '\n' ' ' < $B/thp_settings)"

cp $T/trace $B/trace.txt
for s in $T/per_cpu/cpu*/stats; do
	c=${s%/stats}; c=${c##*/}
	log "$c $(grep -E '^(overrun|commit overrun|dropped events|entries):' $s | tr '\n' ' ')"
done
log "trace.txt $(wc -c < $B/trace.txt) bytes, $(wc -l < $B/trace.txt) lines"

# -- send the bundle on ttyS1 --
OUT=/dev/ttyS1
[ -e $OUT ] || mknod $OUT c 4 65
stty -F $OUT raw -echo 115200 2>/dev/null || true
cd /
tar -cf - bundle | gzip -6 > /tmp/bundle.tgz
log "bundle.tgz $(wc -c < /tmp/bundle.tgz) bytes, sha256 $(sha256sum /tmp/bundle.tgz | cut -d' ' -f1)"
{
	echo "=====THPREPLAY-BUNDLE-BEGIN====="
	base64 /tmp/bundle.tgz
	echo "=====THPREPLAY-BUNDLE-END====="
} > $OUT
sync
log "done"
poweroff -f
