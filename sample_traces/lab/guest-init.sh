#!/bin/sh
# guest-init.sh: /init of the capture initramfs (busybox sh, runs as PID 1).
#
# Takes a thpreplay "capture bundle" of one workload run and sends it, as a
# gzipped tar in base64 between marker lines, over the second serial port
# (ttyS1; the kernel console stays on ttyS0), then powers off.
#
# Knobs, read from the kernel command line (run-guest.sh sets them):
#   lab.frag0=MB   thpfrag frag MB pinned to node 0's CPU (0 = skip)
#   lab.frag1=MB   thpfrag frag MB pinned to node 1's CPU (0 = skip)
#   lab.mlock0=0|1 node 0's frag with --mlock (likewise lab.mlock1 for node 1);
#                  with either, vm.compact_unevictable_allowed=0 and a raised
#                  vm.max_map_count (every mlocked page is its own VMA): the
#                  mlocked pages cannot be migrated, so compaction there fails
#   lab.fault=MB   thpfrag fault MB (MADV_HUGEPAGE) pinned to node 0's CPU
#   lab.bufkb=KB   ftrace buffer_size_kb per CPU
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

FRAG0=700 FRAG1=0 MLOCK0=0 MLOCK1=0 FAULT=256 BUFKB=32768
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	lab.frag0=*) FRAG0=${arg#*=} ;;
	lab.frag1=*) FRAG1=${arg#*=} ;;
	lab.mlock0=*) MLOCK0=${arg#*=} ;;
	lab.mlock1=*) MLOCK1=${arg#*=} ;;
	lab.fault=*) FAULT=${arg#*=} ;;
	lab.bufkb=*) BUFKB=${arg#*=} ;;
	esac
done
log "frag0=$FRAG0 frag1=$FRAG1 mlock0=$MLOCK0 mlock1=$MLOCK1 fault=$FAULT bufkb=$BUFKB"

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

# -- fragment memory (before tracing) --
start_frag() { # cpu MB logname mlock
	opt=; [ "$4" = 1 ] && opt=--mlock
	taskset -c "$1" /bin/thpfrag frag "$2" $opt > /tmp/$3.log 2>&1 &
	pid=$!
	while ! grep -q ready /tmp/$3.log 2>/dev/null; do
		if ! kill -0 $pid 2>/dev/null; then log "frag $3 died: $(cat /tmp/$3.log)"; break; fi
		sleep 0.2
	done
	log "frag $3 ($2 MB on cpu $1 mlock=$4): $(cat /tmp/$3.log)"
}
if [ "$FRAG0" != 0 ]; then start_frag 0 "$FRAG0" frag0 "$MLOCK0"; fi
if [ "$FRAG1" != 0 ]; then start_frag 1 "$FRAG1" frag1 "$MLOCK1"; fi
echo 3 > /proc/sys/vm/drop_caches
sync

# -- snapshots --
snap() { # suffix
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
sed -n 's/.*Debian \([0-9]*\.[0-9]*\.[0-9]*\).*/\1/p' /proc/version > $B/kernel_version
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
echo 1 > $T/tracing_on
t0=$(cut -d' ' -f1 /proc/uptime)
taskset -c 0 /bin/thpfrag fault "$FAULT" > $B/workload.log 2>&1 || log "fault exit $?"
echo 0 > $T/tracing_on
t1=$(cut -d' ' -f1 /proc/uptime)
snap after
log "workload: $(cat $B/workload.log) (uptime $t0 -> $t1)"
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
