"""A capture without THP demand is said to be one, in one line, by simulate, validate and report; validate's
tally does not read as a success (exit status 1). The capture is real (tests/data/bundles/host-6.18-no-thp-demand:
a process touching 48 MiB without MADV_HUGEPAGE under THP enabled=madvise)."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from test_bad_input import run_cli
from thpreplay.thp_faults import no_demand_note

DATA = Path(__file__).parent / "data" / "bundles"
NO_DEMAND = DATA / "host-6.18-no-thp-demand"
NOTE = ("the capture holds no THP fault attempts (12,293 page faults; 12,344 page allocations, all of order 0 or 1): "
        "every policy replays it the same way; nothing to compare")


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("nodemand")
    r = run_cli(["ingest", str(NO_DEMAND), "-o", "ds", "-q"], where)
    assert r.returncode == 0, r.stderr
    return where / "ds"


def test_the_note_counts_what_the_capture_holds(ds):
    assert no_demand_note(ds) == NOTE


def test_simulate_says_it_in_one_line(ds):
    r = run_cli(["simulate", str(ds), "--policy", "local-only-4.8", "--policy", "relaxed-5.3-rc5"], ds.parent)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.count(f"note: {NOTE}\n") == 1
    assert "page-fault events" not in out  # the old, wrong note (the table has 12,293 of them)


def test_validate_does_not_read_as_a_success(ds):
    r = run_cli(["validate", str(ds)], ds.parent)
    out = r.stdout.decode()
    assert r.returncode == 1, out
    assert ("nothing validated: the capture holds no THP fault attempts, so no figure above tests the model "
            "(14 of 14 agree)\n") in out
    assert "figures within tolerance" not in out.replace("cost figures within tolerance", "")
    assert f"note: {NOTE}\n" in out


def test_report_says_it(ds):
    assert run_cli(["simulate", str(ds), "--policy", "local-only-4.8", "-q"], ds.parent).returncode == 0
    r = run_cli(["report", str(ds), "-q"], ds.parent)
    assert r.returncode == 0, r.stderr
    page = (ds / "report.html").read_text()
    assert f"note: {html.escape(NOTE)}" in page
    assert ("<p>nothing validated: the capture holds no THP fault attempts, so no figure above tests the model "
            "(14 of 14 agree).</p>") in page


def test_a_capture_with_thp_faults_has_no_such_line(tmp_path):
    assert run_cli(["ingest", str(DATA / "qemu61-hand"), "-o", "ds", "-q"], tmp_path).returncode == 0
    assert no_demand_note(tmp_path / "ds") is None
    r = run_cli(["validate", str(tmp_path / "ds"), "--tolerance", "100"], tmp_path)
    out = r.stdout.decode()
    assert r.returncode == 0 and "nothing validated" not in out and "no THP fault attempts" not in out
    assert "5 of 5 figures within tolerance\n" in out  # the hand-cut bundle has no vmstat snapshots


def test_ingest_says_the_capture_was_limited_to_one_process(tmp_path):
    """The bundle was recorded with -p: its manifest's filter is said in one warning line."""
    r = run_cli(["ingest", str(NO_DEMAND), "-o", "ds"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert ("warning: the capture was limited to pid 20870 (manifest.json filter): page_alloc, page_free and "
            "page_fault hold only its tasks' and the kernel daemons' (kswapd, kcompactd, khugepaged) events; "
            "compaction, reclaim and the vmstat deltas are system-wide\n") in r.stdout.decode()


@pytest.mark.parametrize("manifest, said", [
    ({}, None), ({"filter": None}, None), ({"filter": [1]}, None), ({"filter": {"kind": "x"}}, None),
    ({"filter": {"kind": "pid", "pids": "12"}}, "some processes"),
    ({"filter": {"kind": "pid", "pids": [12, True, "x", 13]}}, "pid 12,13"),
    ({"filter": {"kind": "cgroup", "cgroup": 5}}, "a cgroup"),
    ({"filter": {"kind": "cgroup", "cgroup": "/sys/fs/cgroup/app"}}, "cgroup /sys/fs/cgroup/app"),
    ([], None),
])
def test_a_manifest_filter_of_any_shape_is_read_safely(manifest, said):
    from thpreplay.record import filter_warning

    got = filter_warning(manifest)
    assert (got is None) if said is None else got.startswith(f"the capture was limited to {said} (manifest.json")
