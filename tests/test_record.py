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
