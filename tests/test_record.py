"""`thpreplay record` for real: perf and ftrace backends on this machine's kernel (root needed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from thpreplay import procfs
from thpreplay.ingest import ingest
from thpreplay.record import RecordError, _tracefs, record

from conftest import metadata, read_table


def _tracefs_ready() -> bool:
    """Root, and tracefs mounted or mountable (record mounts it as perf does)."""
    if os.geteuid() != 0:
        return False
    try:
        return (_tracefs() / "events" / "kmem").is_dir()
    except RecordError:
        return False


pytestmark = pytest.mark.skipif(not _tracefs_ready(), reason="needs root and tracefs")
WORKLOAD = ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=1M count=64 2>/dev/null; cat /proc/self/status >/dev/null"]


def _check_bundle(b: Path, trace: str) -> dict:
    names = {p.name for p in b.iterdir()}
    for need in ("manifest.json", "kernel_release", "thp_settings", "node0.cpulist", "node0.distance", trace):
        assert need in names
    for snap in ("zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat", "meminfo", "node0.vmstat", "node0.meminfo"):
        assert f"{snap}.before" in names and f"{snap}.after" in names
    assert "vm_sysctl" in names and "compact_unevictable_allowed=" in (b / "vm_sysctl").read_text()
    # every page's flags at the start (the model's exact layout), as many as the kernel has pfns
    flags = zstandard.ZstdDecompressor().stream_reader(open(b / "kpageflags.before.zst", "rb")).read()
    spans = [z["end_pfn"] for z in procfs.parse_zoneinfo((b / "zoneinfo.before").read_text(), "zoneinfo")]
    assert len(flags) // 8 >= max(spans)
    manifest = json.loads((b / "manifest.json").read_text())
    assert manifest["kernel_release"] == os.uname().release
    assert "kmem:mm_page_alloc" in manifest["events"]
    assert manifest["nodes"]["0"]["zones"]
    return manifest


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf not installed")
def test_record_perf_then_ingest(tmp_path):
    b = tmp_path / "bundle"
    result = record(b, command=WORKLOAD, duration=None, backend="perf", log=lambda m: None)
    assert result.exit_code == 0
    _check_bundle(b, "perf.data")
    ds = tmp_path / "ds"
    ingest([str(b)], ds)
    meta = metadata(ds)
    assert meta["trace_formats"] == {str(b / "perf.data"): "perf"} and meta["rejects"] == 0
    assert read_table(ds, "page_alloc").filter(read_table(ds, "page_alloc")["comm"] == "dd").height > 0


def test_record_ftrace_then_ingest(tmp_path):
    b = tmp_path / "bundle"
    record(b, command=None, duration=0.3, backend="ftrace", buffer_kb=4096, log=lambda m: None)
    manifest = _check_bundle(b, "trace.txt.zst")
    assert manifest["backend"] == "ftrace" and manifest["duration_s"] == 0.3
    ds = tmp_path / "ds"
    ingest([str(b)], ds)
    assert metadata(ds)["trace_formats"] == {str(b / "trace.txt.zst"): "ftrace"}
    # the private tracefs instance is gone
    assert not [p for p in Path("/sys/kernel/tracing/instances").iterdir() if p.name.startswith("thpreplay-")]


def test_ftrace_snapshots_the_start_after_sizing_its_ring_buffer(tmp_path, monkeypatch):
    """The start's snapshots are taken once the private instance's ring buffer has its pages (an
    instance's buffer_size_kb allocates them), before tracing_on: kpageflags shows them in use."""
    import thpreplay.record as rec

    seen = []
    real = rec.snapshot

    def snapshot(bundle, when):
        if when == "before":
            inst = [p for p in (_tracefs() / "instances").iterdir() if p.name.startswith("thpreplay-")]
            seen.append([((p / "buffer_size_kb").read_text().strip(), (p / "tracing_on").read_text().strip())
                         for p in inst])
        real(bundle, when)

    monkeypatch.setattr(rec, "snapshot", snapshot)
    record(tmp_path / "b", command=None, duration=0.2, backend="ftrace", buffer_kb=2048, log=lambda m: None)
    # the kernel rounds the size up to whole sub-buffers; not yet tracing
    assert len(seen) == 1 and len(seen[0]) == 1 and int(seen[0][0][0]) >= 2048 and seen[0][0][1] == "0"
    assert (tmp_path / "b" / "kpageflags.before.zst").is_file()
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["start_snapshot_after_ring_buffer"] is True and manifest["nodes"]["0"]["zones"]


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf not installed")
def test_perf_snapshots_the_start_after_mapping_its_ring_buffers(tmp_path, monkeypatch):
    """perf maps its ring buffers (-m: their pages are allocated then) before it starts the command; the
    start's snapshots are taken after that, with perf's events still off and the command not yet run."""
    import thpreplay.record as rec

    seen = []
    real = rec.snapshot
    ran = tmp_path / "ran"

    def snapshot(bundle, when):
        if when == "before":
            perf = [p for p in Path("/proc").glob("[0-9]*") if str(bundle) in _cmdline(p)]
            maps = [(p / "maps").read_text() for p in perf if _cmdline(p).split("\0")[1:2] == ["record"]]
            seen.append((len(maps), any("[perf_event]" in m for m in maps), ran.exists()))
        real(bundle, when)

    monkeypatch.setattr(rec, "snapshot", snapshot)
    record(tmp_path / "b", command=["sh", "-c", f"echo > {ran}"], duration=None, backend="perf", log=lambda m: None)
    assert seen == [(1, True, False)] and ran.exists()
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["start_snapshot_after_ring_buffer"] is True and manifest["exit_code"] == 0
    # the command's own events are in the trace (the gate's shell exec()s it: one pid)
    ds = tmp_path / "ds"
    ingest([str(tmp_path / "b")], ds)
    assert read_table(ds, "page_alloc").height > 0


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf not installed")
def test_a_perf_without_control_snapshots_before_it_starts_and_says_so(tmp_path, monkeypatch):
    import thpreplay.record as rec

    monkeypatch.setattr(rec, "_perf_has_control", lambda perf: False)
    said = []
    record(tmp_path / "b", command=["true"], duration=None, backend="perf", log=said.append)
    assert said == ["warning: this perf cannot start with its events off (no --control fifo:); the start's "
                    "snapshots are taken before its ring buffers are allocated"]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["start_snapshot_after_ring_buffer"] is False and manifest["exit_code"] == 0


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_text()
    except OSError:
        return ""


THP = str(Path(sys.executable).parent / "thpreplay")
BACKENDS = [pytest.param("perf", marks=pytest.mark.skipif(shutil.which("perf") is None, reason="perf not installed")),
            "ftrace"]
TRACE = {"perf": "perf.data", "ftrace": "trace.txt.zst"}


def _session_has(sid: int, comm: str) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if name == comm and int(rest[3]) == sid:
            return True
    return False


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_ends_the_recording_and_keeps_the_bundle(tmp_path, backend):
    """Ctrl-C at the terminal (SIGINT to the process group) once the recording runs: the bundle keeps what
    was recorded, with its snapshots after and "interrupted" in the manifest; one line; exit 130."""
    b = tmp_path / "bundle"
    p = subprocess.Popen([THP, "record", "-o", str(b), "--duration", "60", "--backend", backend, "--buffer-kb", "4096"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not _session_has(p.pid, "sleep") and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the sleep of --duration runs: the recording has begun
    time.sleep(0.5)
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    m = re.fullmatch(rf"bundle: {re.escape(str(b))}  \({TRACE[backend]}, interrupted after (\d+\.\d) s\)\n", out)
    assert m and 0.3 <= float(m[1]) < 30, out
    assert err == f"thpreplay: interrupted; the bundle keeps the {m[1]} s recorded before it\n"
    manifest = _check_bundle(b, TRACE[backend])
    assert (manifest["interrupted"], manifest["exit_code"]) == (True, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    ds = tmp_path / "ds"
    ingest([str(b)], ds)
    assert read_table(ds, "page_alloc").height > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_full_disk_leaves_no_bundle(tmp_path, backend):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        r = subprocess.run([THP, "record", "-o", str(small / "b"), "--backend", backend, "--buffer-kb", "4096", "--",
                            *WORKLOAD], capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stderr) == (
            1, f"thpreplay: {small}/b: write failed: No space left on device; no bundle written\n")
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
    assert not [p for p in Path("/sys/kernel/tracing/instances").iterdir() if p.name.startswith("thpreplay-")]


# --- a capture limited to one workload (-p, --cgroup, --workload-only) ----------------------------------

# a process that allocates and frees memory, touching every page, for argv[1] seconds or until the file
# argv[1] exists
CHURN = ("import os, sys, time\n"
         "arg = sys.argv[1]\n"
         "end = time.time() + float(arg) if arg.replace('.', '').isdigit() else None\n"
         "while (time.time() < end) if end else not os.path.exists(arg):\n"
         "    b = bytearray(33 << 20)\n"  # above glibc's largest mmap threshold (32 MiB): every round faults
         "    for i in range(0, len(b), 4096): b[i] = 1\n"
         "    del b\n"
         "    time.sleep(0.2)\n")
DAEMON = r"^(kswapd\d*|kcompactd\d*|khugepaged)$"
TASK_TABLES = ("page_alloc", "page_free", "page_fault")


def _tasks(ds: Path) -> dict[str, set[tuple[int, str]]]:
    """(pid, comm) of every row of the task events' tables."""
    return {t: set(read_table(ds, t).select("pid", "comm").unique().iter_rows()) for t in TASK_TABLES}


def _only(tasks: dict, allowed) -> None:
    """Every task event is the workload's (allowed(pid, comm)) or a daemon's, and the workload has some."""
    for table, seen in tasks.items():
        strangers = {(p, c) for p, c in seen if not allowed(p, c) and not re.match(DAEMON, c or "")}
        assert not strangers, (table, sorted(strangers)[:5])
        assert any(allowed(p, c) for p, c in seen), table


def _manifest_filter(b: Path) -> dict:
    flt = json.loads((b / "manifest.json").read_text())["filter"]
    assert flt["filtered_events"] == ["kmem:mm_page_alloc", "kmem:mm_page_free", "exceptions:page_fault_user"]
    assert flt["daemons"] == ["kswapd*", "kcompactd*", "khugepaged"]
    assert "compaction:mm_compaction_begin" in flt["system_wide_events"]
    return flt


@pytest.mark.parametrize("backend", BACKENDS)
def test_record_p_keeps_only_that_process_and_the_daemons(tmp_path, backend):
    """-p PID without a duration: records until the process exits; its threads' allocations, frees and
    page faults and the daemons', nobody else's (the test's own python churns memory too)."""
    stop = tmp_path / "stop"
    # two more threads that only sleep: the filter names every thread (consecutive ids as one range)
    threads = "import threading, time\nfor _ in range(2): threading.Thread(target=time.sleep, args=(120,), daemon=True).start()\n"
    w = subprocess.Popen([sys.executable, "-c", threads + CHURN, str(stop)])
    while len(list(Path(f"/proc/{w.pid}/task").iterdir())) < 3:
        time.sleep(0.01)
    tids = sorted(int(t.name) for t in Path(f"/proc/{w.pid}/task").iterdir())
    b = tmp_path / "b"
    rec = subprocess.Popen([THP, "record", "-o", str(b), "-p", str(w.pid), "--backend", backend, "--buffer-kb", "8192"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = rec.stderr.readline()  # said just before the recording starts
    time.sleep(1.5)
    stop.touch()
    w.wait()
    out, err = rec.communicate(timeout=60)
    assert rec.returncode == 0, first + err
    assert out == f"bundle: {b}  ({TRACE[backend]}, command exit 0)\n"
    assert first == (f"record: kmem:mm_page_alloc, kmem:mm_page_free, exceptions:page_fault_user only of pid {w.pid} (3 threads "
            "when recording began) and the kernel's kswapd, kcompactd, khugepaged; the other events system-wide\n")
    flt = _manifest_filter(b)
    assert (flt["kind"], flt["pids"], flt["threads"], flt["cgroup"]) == ("pid", [w.pid], tids, None)
    ingest([str(b)], tmp_path / "ds")
    _only(_tasks(tmp_path / "ds"), lambda pid, comm: pid in tids)


def _perf_cgroups():
    """The cgroup hierarchy perf filters by, when this machine lets us make a cgroup in it."""
    from thpreplay.record import perf_cgroup_mount

    try:
        mount = perf_cgroup_mount()
    except RecordError:
        return None
    return mount if os.access(mount, os.W_OK) else None


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf not installed")
def test_record_cgroup_keeps_only_its_tasks_and_the_daemons(tmp_path):
    mount = _perf_cgroups()
    assert mount is not None, "no writable cgroup hierarchy for perf on this machine"
    cg = mount / f"thpreplay-test-{os.getpid()}"
    cg.mkdir()
    try:
        stop = tmp_path / "stop"
        w = subprocess.Popen(["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" -c "$1" "$2"', sys.executable,
                              CHURN, str(stop)])
        deadline = time.monotonic() + 10
        while str(w.pid) not in (cg / "cgroup.procs").read_text().split() and time.monotonic() < deadline:
            time.sleep(0.02)
        b = tmp_path / "b"
        r = subprocess.run([THP, "record", "-o", str(b), "--cgroup", str(cg), "--duration", "1.5"],
                           capture_output=True, text=True, timeout=120)
        stop.touch()
        w.wait()
        assert r.returncode == 0, r.stderr
        assert f"only of cgroup {cg} and the kernel's" in r.stderr
    finally:
        cg.rmdir()
    flt = _manifest_filter(b)
    assert (flt["kind"], flt["cgroup"]) == ("cgroup", str(cg))
    ingest([str(b)], tmp_path / "ds")
    _only(_tasks(tmp_path / "ds"), lambda pid, comm: pid == w.pid)


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf not installed")
def test_record_workload_only_keeps_the_command_tree(tmp_path):
    """-- COMMAND --workload-only: the command and its children (a shell running two pythons), in a cgroup
    record makes and removes."""
    assert _perf_cgroups() is not None, "no writable cgroup hierarchy for perf on this machine"
    b = tmp_path / "b"
    script = f'"{sys.executable}" -c "$0" 1 & "{sys.executable}" -c "$0" 1; wait'
    r = subprocess.run([THP, "record", "-o", str(b), "--workload-only", "--", "sh", "-c", script, CHURN],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "only of the command's process tree and the kernel's" in r.stderr
    flt = _manifest_filter(b)
    assert flt["kind"] == "command" and not Path(flt["cgroup"]).exists()
    ingest([str(b)], tmp_path / "ds")
    tasks = _tasks(tmp_path / "ds")
    _only(tasks, lambda pid, comm: comm in ("sh", "python3", Path(sys.executable).name))
    assert len({p for p, c in tasks["page_alloc"] if c != "sh" and not re.match(DAEMON, c)}) == 2  # both pythons


@pytest.mark.parametrize("args, message", [
    (["-p", "1", "--cgroup", "x", "--duration", "1"], "-p, --cgroup and --workload-only each choose the workload: give one"),
    (["--workload-only", "--duration", "1"], "--workload-only records the process tree of -- COMMAND: give the command"),
    (["--cgroup", "x", "--backend", "ftrace", "--duration", "1"],
     "--cgroup needs --backend perf (tracefs filters events by task, not by cgroup); -p works with both"),
    (["-p", "12x"], "-p 12x: give process ids, comma-separated (e.g. -p 1234,5678)"),
    (["-p", "1,999999999"], "-p 1,999999999: no process 999999999; nothing recorded"),
    (["--cgroup", "no-such-cgroup-here", "--duration", "1"], None),
])
def test_record_filter_options_are_checked_before_anything_is_written(tmp_path, args, message):
    r = subprocess.run([THP, "record", "-o", str(tmp_path / "b"), *args], capture_output=True, text=True, timeout=60)
    if message is None:  # the hierarchy's path depends on the machine
        message = f"--cgroup no-such-cgroup-here: no such cgroup (not a directory under "
        assert r.returncode == 1 and r.stderr.startswith(f"thpreplay: {message}"), r.stderr
    else:
        assert (r.returncode, r.stderr) == (1, f"thpreplay: {message}\n")
    assert list(tmp_path.iterdir()) == []
