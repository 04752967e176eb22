"""Edge inputs beyond the ingest corpus of test_bad_input.py: each with its exact outcome.

Files are in tests/data/bad/ (README there); the large ones are generated here. Every CLI outcome is
checked as a user sees it: exit status, the exact stderr line, no traceback.
"""

from __future__ import annotations

import pytest

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "data" / "bad"
THP = str(Path(sys.executable).parent / "thpreplay")
HEADER = (BAD / "fragment-6.18.txt").read_text().splitlines()[:12]
EVENT = (BAD / "fragment-6.18.txt").read_text().splitlines()[12]


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "THPREPLAY_DEBUG"}
    e.update(env or {})
    return subprocess.run([THP, *args], capture_output=True, text=True, cwd=cwd, env=e, timeout=600)


def table(ds: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(sorted((ds / name).glob("*.parquet")))


def test_a_10_mib_line_is_one_reject(tmp_path):
    src = tmp_path / "long.txt"
    src.write_text("\n".join(HEADER + [EVENT, "x" * (10 << 20), EVENT]) + "\n")
    r = cli("ingest", str(src), "-o", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr
    assert "warning: 1 lines rejected: see the rejects table" in r.stdout
    rej = table(tmp_path / "ds", "rejects").row(0, named=True)
    assert (rej["line"], rej["reason"], len(rej["raw"])) == (14, "not an event line (expected ftrace text)", 4096)
    assert table(tmp_path / "ds", "page_alloc")["line"].to_list() == [13, 15]


@pytest.mark.slow  # long: make test-slow runs it
def test_a_million_distinct_comm_names(tmp_path):
    src = tmp_path / "comms.txt"
    with open(src, "w") as f:
        f.write("\n".join(HEADER) + "\n")
        for i in range(1_000_000):
            f.write(f"         c{i:06d}-{1000 + i % 60000:<7d} [000] .....  1250.{574824 + i // 100:06d}: "
                    f"mm_page_free: page=000000000e055e62 pfn=0x{0x100000 + i:x} order=0\n")
    r = cli("ingest", str(src), "-o", str(tmp_path / "ds"), "-q")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    free = table(tmp_path / "ds", "page_free")
    assert free.height == 1_000_000 and free["comm"].n_unique() == 1_000_000
    assert table(tmp_path / "ds", "rejects").height == 0


def test_unknown_extra_fields_are_kept(tmp_path):
    r = cli("ingest", str(BAD / "extra-fields.txt"), "-o", str(tmp_path / "ds"), "-q")
    assert r.returncode == 0, r.stderr
    alloc = table(tmp_path / "ds", "page_alloc").sort("line")
    assert alloc.height == 8 and table(tmp_path / "ds", "rejects").height == 0
    assert alloc.row(0, named=True)["pfn"] == 0x16B1CF  # the fields before the extra ones are right
    # the others are rows of extra_fields (tests/test_stacks.py checks them one by one)
    assert table(tmp_path / "ds", "extra_fields").height == 16


def test_only_frees_and_no_thp_faults_simulate_to_nothing(tmp_path):
    ds = tmp_path / "ds"
    assert cli("ingest", str(BAD / "only-frees.txt"), "-o", str(ds), "-q").returncode == 0
    assert table(ds, "page_free").height == 20 and table(ds, "page_alloc").height == 0
    r = cli("simulate", str(ds), "--policy", "two-step-5.4")
    assert r.returncode == 0, r.stderr
    assert "0 THP faults" in r.stdout
    assert table(ds / "simulation", "outcomes").height == 0
    summary = table(ds / "simulation", "outcome_summary").row(0, named=True)
    assert (summary["policy"], summary["faults"], summary["thp_coverage"]) == ("two-step-5.4", 0, None)


def test_a_bundle_without_snapshots_says_what_it_assumed(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copy(BAD / "fragment-6.18.txt", bundle / "trace.txt")
    ds = tmp_path / "ds"
    r = cli("ingest", str(bundle), "-o", str(ds))
    assert r.returncode == 0
    assert "warning: no zoneinfo: a single node was inferred (every pfn on node 0); pass --topology FILE" in r.stdout
    r = cli("simulate", str(ds), "--policy", "two-step-5.4")
    assert r.returncode == 0, r.stderr
    for note in ("note: THP enabled setting not in the capture: taken as 'always'",
                 "note: no free-list snapshot: every zone starts all free, all MOVABLE"):
        assert note in r.stdout


def test_a_pfn_outside_the_topology_is_counted(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "tests" / "data" / "bundles" / "qemu61-hand", bundle)
    lines = (bundle / "trace.txt").read_text().splitlines()
    assert "pfn=0x3938c" in lines[15]
    lines[15] = lines[15].replace("pfn=0x3938c", "pfn=0x7ffffff0")
    (bundle / "trace.txt").write_text("\n".join(lines) + "\n")
    r = cli("ingest", str(bundle), "-o", str(tmp_path / "ds"))
    assert r.returncode == 0
    assert "warning: 1 freed pfns lie outside the topology's zones (node unknown)" in r.stdout
    row = table(tmp_path / "ds", "page_free").filter(pl.col("line") == 16).row(0, named=True)
    assert (row["pfn"], row["node"], row["zone"]) == (0x7FFFFFF0, None, None)


def test_a_dataset_from_another_schema_version_is_refused(tmp_path):
    ds = tmp_path / "ds"
    assert cli("ingest", str(BAD / "fragment-6.18.txt"), "-o", str(ds), "-q").returncode == 0
    info = json.loads((ds / "dataset.json").read_text())
    info["schemas"]["page_alloc"] = "page_alloc.v0"
    (ds / "dataset.json").write_text(json.dumps(info))
    want = f"thpreplay: {ds}: made with schema page_alloc.v0; this thpreplay reads page_alloc.v2: ingest the capture again\n"
    for args in (["simulate", str(ds)], ["query", str(ds), "select 1"], ["validate", str(ds)], ["report", str(ds)]):
        r = cli(*args)
        assert (r.returncode, r.stderr) == (1, want), args
    info["version"] = 2
    (ds / "dataset.json").write_text(json.dumps(info))
    r = cli("simulate", str(ds))
    assert (r.returncode, r.stderr) == (1, f"thpreplay: {ds}: dataset format version 2; this thpreplay reads version 1: "
                                           "ingest the capture again\n")


CRASHY = textwrap.dedent('''
    """A policy plugin with a bug: it raises for faults in VMAs that were not madvised."""
    from thpreplay.policy.builtin import TWO_STEP_5_4 as _BASE


    class Crashy:
        name = "crashy"
        title = "two-step, except that it raises for non-madvised faults"
        kernels = "none"
        commits = ("0000000000000",)
        simplifications = "a test plugin"
        default_defrag = "madvise"
        slowpath = _BASE.slowpath

        def attempts(self, settings, madvised):
            if not madvised:
                raise RuntimeError("no plan for this fault\\nsecond line")
            return _BASE.attempts(settings, madvised)


    CRASHY = Crashy()
''')


def test_a_policy_plugin_that_raises_is_one_line(tmp_path):
    site = tmp_path / "site"
    (site / "crashy_policy-0.dist-info").mkdir(parents=True)
    (site / "crashy_policy.py").write_text(CRASHY)
    (site / "crashy_policy-0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: crashy-policy\nVersion: 0\n")
    (site / "crashy_policy-0.dist-info" / "entry_points.txt").write_text("[thpreplay.policies]\ncrashy = crashy_policy:CRASHY\n")
    env = {"PYTHONPATH": str(site)}
    assert "crashy" in cli("policies", env=env).stdout
    ds = tmp_path / "ds"
    assert cli("ingest", str(BAD / "fragment-6.18.txt"), "-o", str(ds), "-q").returncode == 0
    r = cli("simulate", str(ds), "--policy", "crashy", "--policy", "two-step-5.4", "-q", env=env)
    assert r.returncode == 1
    assert r.stderr == ("thpreplay: policy 'crashy': attempts(always/madvise, madvised=False) raised RuntimeError: "
                        "no plan for this fault\n")
    assert not (ds / "simulation").exists()


def test_kernel_version_comes_from_debians_build_string_only():
    from thpreplay.record import kernel_version_of

    debian = ("Linux version 6.1.0-50-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) "
              "12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)")
    self_built = ("Linux version 6.1.176-thpreplay-local-only (thpreplay@lab) (gcc (Debian 12.2.0-14+deb12u1) 12.2.0, "
                  "GNU ld (GNU Binutils for Debian) 2.40) #7 SMP PREEMPT_DYNAMIC Thu Nov 26 14:03:49 UTC 2026")
    assert kernel_version_of(debian) == "6.1.176"
    assert kernel_version_of(self_built) is None  # not the compiler's 12.2.0


def test_trace_text_and_names_stay_data_in_sql(tmp_path):
    """Nothing from a trace or a path is interpolated into SQL as code: a comm and a dataset directory
    full of quotes and SQL come back as the strings they are."""
    evil = "x';drop--"
    line = EVENT.replace("         thpfrag-9958", f"{evil:>16}-9958")
    src = tmp_path / "evil.txt"
    src.write_text("\n".join(HEADER + [line]) + "\n")
    ds = tmp_path / "it's \"here\"; drop"
    assert cli("ingest", str(src), "-o", str(ds), "-q").returncode == 0
    r = cli("query", str(ds), "select dataset, comm from page_alloc", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == [f"\"it's \"\"here\"\"; drop\",{evil}"]
