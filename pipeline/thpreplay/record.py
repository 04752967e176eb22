"""`thpreplay record`: capture page-allocation events system-wide into a capture bundle.

The bundle is written into a temporary directory and renamed into place at the end, and an existing
bundle is never overwritten. Two backends:
  perf    `perf record -a -e <events>` into perf.data (the default; read by thpreplay's own reader at ingest)
  ftrace  a private tracefs instance, read out as text into trace.txt.zst (no perf needed; the text
          is rendered by the kernel, so gfp names are right even where perf prints raw hex)
Only the events of kernel/events.py RECORD_EVENTS that this kernel has are enabled; the others are
named in a warning and in the manifest. The start's snapshots are taken once the tracer's ring buffers
hold their pages and before its events are on (_run_ftrace, GATE_SCRIPT for perf).

A capture can be limited to one workload (RecordFilter): `-p PID[,PID]` (those processes' threads),
`--cgroup PATH` (the tasks of a cgroup), or `--workload-only` with `-- COMMAND` (the command's process
tree, run in a cgroup of its own). Only the events that say what a task did (TASK_EVENTS: its page
allocations, frees and page faults) are limited, and the kernel's memory daemons (DAEMONS: kswapd,
kcompactd, khugepaged) keep theirs; compaction, reclaim, extfrag and the daemons' wake-ups are the
allocator's own work and zone state, so they stay system-wide. perf filters per event: a tracepoint
filter on common_pid and comm (the kernel's event filter, the same one tracefs's `filter` files use),
and `-G` per event for a cgroup (the same task event is recorded twice: once in the cgroup, once for
the daemons by comm). The manifest's "filter" says what was limited and how.

A Ctrl-C ends the recording, not the bundle: what was recorded is kept, with snapshots after it and
"interrupted": true in the manifest (_CtrlC). A write that fails (a full disk) leaves no bundle.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from thpreplay import __version__, procfs
from thpreplay.errors import RecordError
from thpreplay.kernel.events import RECORD_EVENTS

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
PROC_SNAPSHOTS = ("zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat", "meminfo")
THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")
NODE_DIR = Path("/sys/devices/system/node")


# The events that say what a task did. A filtered capture keeps them for the workload's tasks and the
# daemons only; every other event is recorded system-wide.
TASK_EVENTS = ("kmem:mm_page_alloc", "kmem:mm_page_free", "kmem:mm_page_free_direct", "exceptions:page_fault_user")
# The kernel threads that reclaim, compact and collapse on everyone's behalf (kswapdN, kcompactdN per node:
# mm/vmscan.c kswapd_run(), mm/compaction.c kcompactd_run(); mm/khugepaged.c): their frees and
# allocations are the allocator's own work on the workload's memory, kept in a filtered capture.
DAEMONS = ("kswapd*", "kcompactd*", "khugepaged")


@dataclass
class RecordFilter:
    """What a capture is limited to. kind: "pid" (threads), "cgroup" (a cgroup's tasks) or "command"
    (the traced command's process tree, in a cgroup record makes)."""

    kind: str
    pids: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    cgroup: str | None = None        # the cgroup as perf names it (relative to its cgroup mount)
    cgroup_path: str | None = None   # the directory

    def daemon_expr(self) -> str:
        return " || ".join(f'comm ~ "{d}"' if "*" in d else f'comm == "{d}"' for d in DAEMONS)

    def pid_expr(self) -> str:
        """The threads (runs of consecutive ids as one range) or the daemons. The kernel takes a filter of
        at most a page (kernel/trace/trace_events_filter.c reads it with strndup_user(.., PAGE_SIZE))."""
        runs: list[list[int]] = []
        for t in sorted(set(self.threads)):
            if runs and t == runs[-1][1] + 1:
                runs[-1][1] = t
            else:
                runs.append([t, t])
        terms = [f"common_pid == {a}" if a == b else f"(common_pid >= {a} && common_pid <= {b})" for a, b in runs]
        expr = " || ".join([*terms, self.daemon_expr()])
        if len(expr) >= 4000:
            raise RecordError(f"-p: {len(self.threads)} threads make a filter longer than the kernel takes; "
                              "put the workload in a cgroup and use --cgroup")
        return expr

    def describe(self) -> str:
        if self.kind == "pid":
            return (f"pid {','.join(map(str, self.pids))} ({len(self.threads)} thread{'s' if len(self.threads) != 1 else ''} "
                    "when recording began)")
        if self.kind == "cgroup":
            return f"cgroup {self.cgroup_path}"
        return "the command's process tree"

    def manifest(self, events: list[str]) -> dict:
        return {"kind": self.kind, "pids": self.pids, "threads": self.threads, "cgroup": self.cgroup_path,
                "filtered_events": [e for e in events if e in TASK_EVENTS], "daemons": list(DAEMONS),
                "system_wide_events": [e for e in events if e not in TASK_EVENTS]}


def parse_pids(text: str) -> list[int]:
    """`-p 1234,5678` -> [1234, 5678]; each must be a running process."""
    pids = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) <= 0:
            raise RecordError(f"-p {text}: give process ids, comma-separated (e.g. -p 1234,5678)")
        if not Path(f"/proc/{int(item)}/task").is_dir():
            raise RecordError(f"-p {text}: no process {int(item)}; nothing recorded")
        if int(item) not in pids:
            pids.append(int(item))
    return pids


def threads_of(pids: list[int]) -> list[int]:
    """Every thread of the processes now (a tracepoint's common_pid is the thread id)."""
    out = []
    for pid in pids:
        try:
            out += sorted(int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if t.name.isdigit())
        except OSError:
            raise RecordError(f"-p: process {pid} exited before recording began; nothing recorded") from None
    return out


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, type, options) of the cgroup file systems."""
    out = []
    for line in (_read(Path("/proc/self/mounts")) or "").splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] in ("cgroup", "cgroup2"):
            out.append((f[1].replace("\\040", " "), f[2], f[3]))
    return out


def perf_cgroup_mount() -> Path:
    """The cgroup hierarchy perf's -G names cgroups in: a v1 hierarchy with the perf_event controller, else
    the v2 one (tools/lib/api/fs/cgroup.c, cgroupfs_find_mountpoint(), perf 6.1)."""
    mounts = _mounts()
    for point, kind, options in mounts:
        if kind == "cgroup" and "perf_event" in options.split(","):
            return Path(point)
    for point, kind, _ in mounts:
        if kind == "cgroup2":
            return Path(point)
    raise RecordError("no cgroup v2 file system is mounted (nor a v1 one with perf_event)",
                      hint="mount one: mount -t cgroup2 none /sys/fs/cgroup")


def cgroup_filter(path: str) -> RecordFilter:
    """--cgroup PATH: a directory of the hierarchy perf uses (absolute, or relative to its mount)."""
    mount = perf_cgroup_mount()
    given = Path(path)
    full = given if given.is_absolute() else mount / given
    try:
        full = full.resolve(strict=True)
    except OSError:
        raise RecordError(f"--cgroup {path}: no such cgroup (not a directory under {mount})") from None
    if not (full / "cgroup.procs").is_file():
        raise RecordError(f"--cgroup {path}: not a cgroup (no cgroup.procs)")
    if full == mount.resolve() or mount.resolve() not in full.parents:
        raise RecordError(f"--cgroup {path}: give a cgroup below {mount}, the hierarchy perf filters by "
                          "(the root cgroup holds every task: record without --cgroup)")
    name = str(full.relative_to(mount.resolve()))
    if "," in name:
        raise RecordError(f"--cgroup {path}: perf cannot name a cgroup with a comma in it")
    return RecordFilter("cgroup", cgroup=name, cgroup_path=str(full))


def _command_cgroup() -> RecordFilter:
    """--workload-only: a new cgroup for the traced command's process tree."""
    mount = perf_cgroup_mount()
    full = mount / f"thpreplay-record-{os.getpid()}"
    try:
        full.mkdir()
    except OSError as e:
        raise RecordError(f"--workload-only: cannot make a cgroup at {full}: {e.strerror}",
                          hint="run as root with a writable cgroup file system, or use -p PID") from None
    return RecordFilter("command", cgroup=full.name, cgroup_path=str(full))


def _remove_cgroup(flt: RecordFilter) -> None:
    """The command's cgroup, once it is done: tasks the command left running go back to the root cgroup."""
    full = Path(flt.cgroup_path)
    for _ in range(50):
        for pid in (_read(full / "cgroup.procs") or "").split():
            with contextlib.suppress(OSError):
                (full.parent / "cgroup.procs").write_text(pid)
        try:
            full.rmdir()
            return
        except OSError:
            time.sleep(0.02)


def _join_cgroup(command: list[str], flt: RecordFilter) -> list[str]:
    """The command, started in the filter's cgroup (it joins, then execs the command)."""
    return ["sh", "-c", 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', "sh", flt.cgroup_path, *command]


def _wait_for(pids: list[int]) -> list[str]:
    """A command that ends when every process of pids has exited (-p without --duration)."""
    # a process that has exited but is not yet reaped by its parent (a zombie, state Z) has exited
    return [sys.executable, "-c", "import sys, time\n"
            "def alive(p):\n"
            "    try: return open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] not in 'ZX'\n"
            "    except OSError: return False\n"
            "while any(alive(p) for p in sys.argv[1:]): time.sleep(0.1)",
            *map(str, pids)]


@dataclass
class RecordResult:
    path: Path
    trace_name: str
    exit_code: int | None
    events: list[str]
    missing: list[str]
    interrupted_after: float | None = None  # seconds recorded before a Ctrl-C (the bundle keeps them)
    filter: RecordFilter | None = None


def _mount_tracefs() -> None:
    """Mount tracefs where the kernel offers it and nothing is mounted, as perf does (libapi's
    tracefs__mount): a fresh machine may have it unmounted. Only root can; failures are left to the
    caller's check."""
    target = TRACEFS_CANDIDATES[0]
    if os.geteuid() != 0 or not target.is_dir() or (target / "events").is_dir():
        return
    subprocess.run(["mount", "-t", "tracefs", "nodev", str(target)], capture_output=True, check=False)


def _tracefs() -> Path:
    if not any((p / "events").is_dir() for p in TRACEFS_CANDIDATES):
        _mount_tracefs()
    for p in TRACEFS_CANDIDATES:
        if (p / "events").is_dir():
            if not os.access(p / "events", os.R_OK | os.X_OK):
                raise RecordError(f"{p}: tracepoints are not readable; run as root")
            return p
    raise RecordError(
        "tracefs is not mounted or not permitted (no /sys/kernel/tracing/events)",
        hint="run as root; mount it with: mount -t tracefs nodev /sys/kernel/tracing",
    )


def available_events(tracefs: Path) -> tuple[list[str], list[str]]:
    """(events to record as 'subsys:name', names this kernel lacks)."""
    chosen, missing = [], []
    for subsys, alternatives in RECORD_EVENTS:
        for name in alternatives:
            if (tracefs / "events" / subsys / name).is_dir():
                chosen.append(f"{subsys}:{name}")
                break
        else:
            missing.append(f"{subsys}:{'/'.join(alternatives)}")
    return chosen, missing


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _nodes() -> list[int]:
    if not NODE_DIR.is_dir():
        return []
    return sorted(int(p.name[4:]) for p in NODE_DIR.glob("node[0-9]*"))


def kpageflags_snapshot(bundle: Path, when: str) -> bool:
    """/proc/kpageflags (8 bytes of page flags per pfn, root only), zstd-compressed: which pages are free,
    on an LRU (anon, file, unevictable), slab or page tables, so the model starts from the real layout."""
    try:
        src = open("/proc/kpageflags", "rb")
    except OSError:
        return False
    out = bundle / f"kpageflags.{when}.zst"
    with src, open(out, "wb") as dst:
        with zstandard.ZstdCompressor(level=3).stream_writer(dst) as z:
            while block := src.read(8 << 20):
                z.write(block)
    return True


def snapshot(bundle: Path, when: str) -> None:
    if when == "before":
        kpageflags_snapshot(bundle, when)
    for name in PROC_SNAPSHOTS:
        text = _read(Path("/proc") / name)
        if text is not None:
            (bundle / f"{name}.{when}").write_text(text)
    for node in _nodes():
        for name in ("vmstat", "meminfo"):
            text = _read(NODE_DIR / f"node{node}" / name)
            if text is not None:
                (bundle / f"node{node}.{name}.{when}").write_text(text)


# vm sysctls the model reads or that change what a capture shows
VM_SYSCTLS = ("compact_unevictable_allowed", "compaction_proactiveness", "extfrag_threshold", "min_free_kbytes",
              "watermark_boost_factor", "watermark_scale_factor", "zone_reclaim_mode", "swappiness")


def kernel_version_of(proc_version: str) -> str | None:
    """The upstream version Debian's kernel build string names in /proc/version, "... SMP PREEMPT_DYNAMIC
    Debian 6.1.176-1 (2026-07-02)" -> '6.1.176' (uname -r says 6.1.0-50-amd64). Only that string: the
    compiler's "(Debian 12.2.0-14...)" earlier on the line is not the kernel's version, and a kernel
    built by anyone else names none."""
    m = re.search(r"(?<!\()\bDebian\s+(\d+\.\d+\.\d+)-\S+\s+\(\d{4}-\d{2}-\d{2}\)", proc_version)
    return m.group(1) if m else None


def static_files(bundle: Path) -> dict:
    """kernel_release, thp_settings, nodeN.cpulist/distance; returns what the manifest says of them."""
    release = os.uname().release
    (bundle / "kernel_release").write_text(release + "\n")
    proc_version = _read(Path("/proc/version"))
    if proc_version:
        (bundle / "proc_version").write_text(proc_version)
        upstream = kernel_version_of(proc_version)
        if upstream:
            (bundle / "kernel_version").write_text(upstream + "\n")
    sysctls = [f"{name}={value.strip()}" for name in VM_SYSCTLS if (value := _read(Path("/proc/sys/vm") / name)) is not None]
    (bundle / "vm_sysctl").write_text("\n".join(sysctls) + "\n")
    settings = [_read(THP_DIR / "enabled"), _read(THP_DIR / "defrag"), _read(THP_DIR / "khugepaged" / "defrag")]
    lines = [(s or "").strip() for s in settings]
    (bundle / "thp_settings").write_text("\n".join(lines) + "\n")
    nodes = {}
    for node in _nodes():
        cpulist = _read(NODE_DIR / f"node{node}" / "cpulist") or ""
        distance = _read(NODE_DIR / f"node{node}" / "distance") or ""
        (bundle / f"node{node}.cpulist").write_text(cpulist)
        (bundle / f"node{node}.distance").write_text(distance)
        nodes[str(node)] = {
            "cpus": procfs.parse_cpulist(cpulist, "cpulist"),
            "distances": procfs.parse_distance(distance, "distance"),
        }
    zoneinfo = bundle / "zoneinfo.before"
    if zoneinfo.exists():
        for z in procfs.parse_zoneinfo(zoneinfo.read_text(), str(zoneinfo)):
            spans = nodes.setdefault(str(z["node"]), {}).setdefault("zones", [])
            spans.append({"zone": z["zone"], "start_pfn": z["start_pfn"], "end_pfn": z["end_pfn"]})
    thp = {k: procfs.selected_setting(v) for k, v in zip(("enabled", "defrag", "khugepaged_defrag"), lines) if v}
    return {"kernel_release": release, "thp": thp, "nodes": nodes}


class _CtrlC:
    """SIGINT while record runs: noted, never raised, so that the bundle is finished with what was
    recorded. A Ctrl-C at the terminal reaches perf and the traced command too (they are in its process
    group); a SIGINT sent to record alone is passed on to its own child (perf, or the sleep of
    --duration), so that the recording ends the same way. perf stops and writes perf.data whole."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.child: subprocess.Popen | None = None

    def __call__(self, signum, frame) -> None:
        if self.at is None:
            self.at = time.time()
        self._forward()

    def run(self, args: list[str], own: bool, started: Callable[[subprocess.Popen], None] | None = None,
            **kwargs) -> subprocess.Popen:
        """Start args (passed SIGINT when own), call started(proc) and wait for it. If started raises, the
        child is sent SIGINT and waited for before the exception goes on."""
        with subprocess.Popen(args, **kwargs) as proc:
            if own:
                self.child = proc
                self._forward()
            try:
                if started is not None:
                    try:
                        started(proc)
                    except BaseException:
                        if proc.poll() is None:
                            proc.send_signal(signal.SIGINT)
                        raise
                proc.communicate()
            finally:
                self.child = None
        return proc

    def _forward(self) -> None:
        if self.at is not None and self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGINT)


def perf_event_args(events: list[str], flt: RecordFilter | None) -> list[str]:
    """perf record's -e (--filter) (-G) arguments. A cgroup is given per event (-G's list matches the
    events in order, an empty entry is system-wide), so a task event is recorded twice: in the cgroup, and
    for the daemons by comm."""
    args, cgroups = [], []
    for e in events:
        if flt is None or e not in TASK_EVENTS:
            args += ["-e", e]
            cgroups.append("")
        elif flt.kind == "pid":
            args += ["-e", e, "--filter", flt.pid_expr()]
            cgroups.append("")
        else:
            args += ["-e", e, "-e", e, "--filter", flt.daemon_expr()]
            cgroups += [flt.cgroup, ""]
    if any(cgroups):
        args += ["-G", ",".join(cgroups)]
    return args


# perf starts the traced command (its workload) as soon as its ring buffers are mapped, which is after
# record could take the start's snapshots. So perf starts with its events off (-D -1) and the command
# waits at a gate: the command's shell says it is ready (perf has mapped its buffers by then), record
# takes the snapshots, says "enable" on perf's control fifo (perf-record(1) --control, perf 5.10+),
# waits for perf's "ack", then opens the gate. The shell exec()s the command, so it keeps its pid.
GATE_SCRIPT = 'printf r > "$1" && read go < "$2" && shift 2 && exec "$@"'


def _perf_has_control(perf: str) -> bool:
    """Whether this perf takes --control fifo:CTL,ACK and -D -1 (perf record -h lists its options)."""
    r = subprocess.run([perf, "record", "-h"], capture_output=True, text=True, errors="replace")
    return "fifo:ctl-fifo" in r.stdout + r.stderr


def _read_fifo(fd: int, proc: subprocess.Popen) -> bytes:
    """What a fifo (opened non-blocking) is given next; b"" if perf ended first."""
    while proc.poll() is None:
        if select.select([fd], [], [], 0.05)[0]:
            data = os.read(fd, 64)
            if data:
                return data
            time.sleep(0.05)   # its writer came and went without a word: wait for perf to end
    return b""


def _open_gate(proc: subprocess.Popen, fifos: dict[str, str], before_tracing: Callable[[], None]) -> bool:
    """The sequence of GATE_SCRIPT on record's side. False if perf ended before the command was ready."""
    ready = os.open(fifos["ready"], os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not _read_fifo(ready, proc):
            return False
    finally:
        os.close(ready)
    before_tracing()
    try:   # perf holds both fifos open read-write; if it has just ended, the writer's open fails (ENXIO)
        ctl = os.open(fifos["ctl"], os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    ack = os.open(fifos["ack"], os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.write(ctl, b"enable\n")
        if not _read_fifo(ack, proc):
            return False
    finally:
        os.close(ctl)
        os.close(ack)
    while proc.poll() is None:
        try:
            gate = os.open(fifos["gate"], os.O_WRONLY | os.O_NONBLOCK)
        except OSError:   # ENXIO: the shell has not opened its end yet
            time.sleep(0.01)
            continue
        os.write(gate, b"go\n")
        os.close(gate)
        break
    return True


def _run_perf(bundle: Path, events: list[str], command: list[str], log: Callable[[str], None], ctrl_c: _CtrlC,
              flt: RecordFilter | None, before_tracing: Callable[[], None]) -> tuple[int, bool]:
    """Record with perf; before_tracing() runs once perf's ring buffers are mapped, before its events are
    on (GATE_SCRIPT). Returns the command's exit code and whether the snapshots followed the buffers (not
    with a perf older than --control fifo:, whose snapshots are taken before perf starts)."""
    perf = shutil.which("perf")
    if perf is None:
        raise RecordError("perf is not installed", hint="install perf (Debian: linux-perf) or use --backend ftrace")
    args = [perf, "record", "-a", "-m", "16M", "-o", str(bundle / "perf.data"), *perf_event_args(events, flt)]
    gated = _perf_has_control(perf)
    if not gated:
        log("warning: this perf cannot start with its events off (no --control fifo:); the start's snapshots "
            "are taken before its ring buffers are allocated")
        before_tracing()
    ready = True
    with tempfile.TemporaryDirectory(prefix="thpreplay-perf-") as fifo_dir, \
            tempfile.TemporaryFile("w+", errors="replace") as messages:  # not -q: perf says when it cannot write
        if gated:
            fifos = {name: os.path.join(fifo_dir, name) for name in ("ctl", "ack", "ready", "gate")}
            for path in fifos.values():
                os.mkfifo(path, 0o600)
            args += ["-D", "-1", "--control", f"fifo:{fifos['ctl']},{fifos['ack']}"]
            command = ["sh", "-c", GATE_SCRIPT, "thpreplay-gate", fifos["ready"], fifos["gate"], *command]

            def started(proc: subprocess.Popen) -> None:
                nonlocal ready
                ready = _open_gate(proc, fifos, before_tracing)
        proc = ctrl_c.run(args + ["--", *command], own=True, stderr=messages, started=started if gated else None)
        messages.seek(0)
        err = messages.read()
    if "Permission" in err or "perf_event_paranoid" in err or "No permission" in err:
        raise RecordError(
            "perf may not open the tracepoints (permission denied)",
            hint="run as root, or set kernel.perf_event_paranoid=-1",
        )
    failed = re.search(r"failed to write perf data, error: (.*)", err)
    if failed:  # a full disk, a file-size limit: perf.data is cut short (the reason is perf's words)
        raise OSError(0, failed.group(1).strip())
    own_words = ("[ perf record:", "Events disabled", "Events enabled")
    last = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(own_words)]
    if not (bundle / "perf.data").exists() or not ready:
        if ctrl_c.at is not None:
            raise KeyboardInterrupt
        raise RecordError(f"perf record failed: {last[-1] if last else 'no perf.data written'}")
    if flt is not None and flt.kind != "pid" and "cgroup" in err.lower() and proc.returncode:
        raise RecordError(f"perf cannot filter by cgroup {flt.cgroup_path}: {err.strip().splitlines()[-1]}")
    for ln in err.splitlines():
        if "lost" in ln.lower():
            log(f"warning: perf: {ln.strip()}")
    return proc.returncode, gated


def _control(path: Path, text: str) -> None:
    """Write a tracefs control file; its refusal is a one-line error naming it."""
    try:
        path.write_text(text)
    except OSError as e:
        raise RecordError(f"{path}: {e.strerror}") from None


def _run_ftrace(
    bundle: Path, tracefs: Path, events: list[str], command: list[str], own: bool, buffer_kb: int,
    log: Callable[[str], None], ctrl_c: _CtrlC, flt: RecordFilter | None = None,
    before_tracing: Callable[[], None] | None = None,
) -> tuple[int, dict]:
    """Record through a private tracefs instance. before_tracing() runs once the instance's ring buffer
    has its size (buffer_size_kb allocates every page of it, GFP_KERNEL, on each CPU's node) and just
    before tracing_on: the start snapshots taken there show the buffer's pages in use, as the trace's
    first event finds them; taken before, the model's start would lack them (256 MiB on two CPUs at the
    default --buffer-kb) and the trace would not show them either."""
    instance = tracefs / "instances" / f"thpreplay-{os.getpid()}"
    try:
        instance.mkdir()
    except OSError as e:
        raise RecordError(f"cannot create a tracefs instance at {instance}: {e.strerror}") from None
    try:
        _control(instance / "tracing_on", "0")   # a new instance traces at once: not before the snapshots
        _control(instance / "buffer_size_kb", str(buffer_kb))
        _control(instance / "set_event", "\n".join(events) + "\n")
        if flt is not None:  # -p: the kernel's event filter on the task events (tracefs has no cgroup filter)
            for e in events:
                if e in TASK_EVENTS:
                    _control(instance / "events" / e.replace(":", "/") / "filter", flt.pid_expr())
        if before_tracing is not None:
            before_tracing()
        _control(instance / "trace", "")
        _control(instance / "tracing_on", "1")
        try:
            code = ctrl_c.run(command, own=own).returncode
        finally:
            _control(instance / "tracing_on", "0")
        overruns = {}
        for cpu_dir in sorted((instance / "per_cpu").glob("cpu*")):
            stats = _read(cpu_dir / "stats") or ""
            for ln in stats.splitlines():
                if ln.startswith("overrun:") and int(ln.split()[1]):
                    overruns[cpu_dir.name] = int(ln.split()[1])
        if overruns:
            log(f"warning: ring buffer overruns (events lost): {overruns}; raise --buffer-kb")
        cctx = zstandard.ZstdCompressor(level=10)
        with open(instance / "trace", "rb") as src, open(bundle / "trace.txt.zst", "wb") as dst:
            cctx.copy_stream(src, dst)
        return code, overruns
    finally:
        with contextlib.suppress(OSError):  # rmdir below removes the instance with its events anyway
            (instance / "set_event").write_text("")
        for _ in range(10):
            try:
                instance.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def record(
    output: Path,
    *,
    command: list[str] | None,
    duration: float | None,
    backend: str = "perf",
    buffer_kb: int = 131072,
    log: Callable[[str], None] = print,
    pids: str | list[int] | None = None,
    cgroup: str | None = None,
    workload_only: bool = False,
) -> RecordResult:
    """Record into the bundle `output`. pids (-p), cgroup (--cgroup) or workload_only (the command's
    process tree) limit the task events to that workload and the daemons (RecordFilter); -p without a
    command or a duration records until those processes have exited."""
    output = Path(output)
    # everything that can be checked is checked before anything is written
    if sum((pids is not None, cgroup is not None, workload_only)) > 1:
        raise RecordError("-p, --cgroup and --workload-only each choose the workload: give one")
    if workload_only and not command:
        raise RecordError("--workload-only records the process tree of -- COMMAND: give the command")
    if (cgroup is not None or workload_only) and backend != "perf":
        raise RecordError(f"{'--cgroup' if cgroup is not None else '--workload-only'} needs --backend perf "
                          "(tracefs filters events by task, not by cgroup); -p works with both")
    if command and shutil.which(command[0]) is None:
        raise RecordError(f"{command[0]}: command not found (not an executable file, nor on PATH); nothing recorded")
    if not command and pids is None and (duration is None or not math.isfinite(duration) or duration <= 0):
        raise RecordError(f"--duration {duration}: give a number of seconds above 0")
    if not command and duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise RecordError(f"--duration {duration}: give a number of seconds above 0")
    flt = None
    if pids is not None:
        wanted = parse_pids(pids) if isinstance(pids, str) else parse_pids(",".join(map(str, pids)))
        flt = RecordFilter("pid", pids=wanted)
    elif cgroup is not None:
        flt = cgroup_filter(cgroup)
    if not 1 <= buffer_kb <= 16 * 1024 * 1024:
        raise RecordError(f"--buffer-kb {buffer_kb}: give the ring buffer per CPU in KiB, 1 to 16777216 (16 GiB)")
    if output.exists():
        raise RecordError(f"{output}: already exists; record never overwrites a bundle")
    parent = output.absolute().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise RecordError(f"{output}: cannot create it in {parent}")
    tracefs = _tracefs()
    events, missing = available_events(tracefs)
    if not any(e.startswith("kmem:mm_page_alloc") for e in events):
        raise RecordError("this kernel has no kmem:mm_page_alloc tracepoint; nothing to record")
    if missing:
        log(f"warning: this kernel lacks {', '.join(missing)}; recording without them")
    if flt is not None and flt.kind == "pid":
        run = command or (["sleep", str(duration)] if duration is not None else _wait_for(flt.pids))
    else:
        run = command or ["sleep", str(duration)]

    tmp = parent / f".{output.name}.tmp-{os.getpid()}"
    try:
        tmp.mkdir()
    except OSError as e:
        raise RecordError(f"{output}: cannot create it in {parent}: {e.strerror}") from None
    ctrl_c = _CtrlC()
    old_int = signal.signal(signal.SIGINT, ctrl_c)
    try:
        manifest: dict = {}
        begun = {"at": time.time()}

        def start_snapshots() -> None:
            snapshot(tmp, "before")
            manifest.update(static_files(tmp))   # its node table reads zoneinfo.before
            if ctrl_c.at is not None:  # before anything was recorded
                raise KeyboardInterrupt
            if flt is not None:   # said just before the recording starts
                log(f"record: {', '.join(e for e in events if e in TASK_EVENTS)} only of {flt.describe()} and the "
                    f"kernel's {', '.join(d.rstrip('*') for d in DAEMONS)}; the other events system-wide")
            begun["at"] = time.time()

        if workload_only:
            flt = _command_cgroup()
            run = _join_cgroup(command, flt)
        if flt is not None and flt.kind == "pid":
            flt.threads = threads_of(flt.pids)
        overruns: dict = {}
        try:
            if backend == "perf":
                code, after_buffers = _run_perf(tmp, events, run, log, ctrl_c, flt, before_tracing=start_snapshots)
                trace_name = "perf.data"
            else:
                after_buffers = True
                code, overruns = _run_ftrace(tmp, tracefs, events, run, not command, buffer_kb, log, ctrl_c, flt,
                                             before_tracing=start_snapshots)
                trace_name = "trace.txt.zst"
        finally:
            if flt is not None and flt.kind == "command":
                _remove_cgroup(flt)
        ended = time.time()
        interrupted = ctrl_c.at is not None and ctrl_c.at < ended  # a Ctrl-C after it is too late to matter
        snapshot(tmp, "after")
        manifest.update(
            {
                "format": "thpreplay-bundle",
                "version": 1,
                "thpreplay_version": __version__,
                "backend": backend,
                "trace": trace_name,
                "events": events,
                "events_missing": missing,
                "command": command,
                "duration_s": duration if not command else None,
                "exit_code": None if interrupted else code,  # the command did not end by itself
                "interrupted": interrupted,
                "started_unix": round(begun["at"], 3),
                "ended_unix": round(ended, 3),
                "ring_buffer_overruns": overruns,
                # whether the start's snapshots show the tracer's ring buffers (or predate them: an old perf)
                "start_snapshot_after_ring_buffer": after_buffers,
                # what the capture was limited to (null: every task's events)
                "filter": flt.manifest(events) if flt is not None else None,
            }
        )
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        os.rename(tmp, output)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # writing the bundle: a full disk, a file-size limit, an I/O error
            raise RecordError(f"{output}: write failed: {e.strerror}; no bundle written") from None
        raise
    finally:
        signal.signal(signal.SIGINT, old_int)
    recorded = max(0.0, ctrl_c.at - begun["at"]) if interrupted else None
    return RecordResult(output, trace_name, code, events, missing, interrupted_after=recorded, filter=flt)


def filter_warning(manifest: dict) -> str | None:
    """What ingest says of a bundle whose manifest records a filter (record -p / --cgroup /
    --workload-only), or None. The manifest is informational and may come from anyone: only fields of
    the expected types are used."""
    flt = manifest.get("filter") if isinstance(manifest, dict) else None
    if not isinstance(flt, dict) or flt.get("kind") not in ("pid", "cgroup", "command"):
        return None
    pids = [p for p in flt.get("pids") or [] if isinstance(p, int) and not isinstance(p, bool)] \
        if isinstance(flt.get("pids"), list) else []
    cgroup = flt.get("cgroup") if isinstance(flt.get("cgroup"), str) else None
    who = {"pid": f"pid {','.join(map(str, pids))}" if pids else "some processes",
           "cgroup": f"cgroup {cgroup}" if cgroup else "a cgroup",
           "command": "the recorded command's process tree"}[flt["kind"]]
    return (f"the capture was limited to {who} (manifest.json filter): page_alloc, page_free and page_fault hold "
            "only its tasks' and the kernel daemons' (kswapd, kcompactd, khugepaged) events; compaction, reclaim "
            "and the vmstat deltas are system-wide")
