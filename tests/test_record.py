"""`thpreplay record` for real: perf and ftrace backends on this machine's kernel (root needed)."""

from __future__ import annotations

import json
import os
import shutil
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
