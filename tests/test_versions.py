"""Kernel strings -> eras (policy/versions.py), `policies --resolve`'s explanation, and what simulate
stores per kernel asked for and per policy (the `kernel` column, kept results of other policies)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from tests.test_bad_input import assert_fails, run_cli
from thpreplay import schemas
from thpreplay.policy import versions
from thpreplay.policy.base import PolicyError
from thpreplay.policy.registry import explain_kernel
from thpreplay.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_traces"

SPAN_6_12 = ("6.12 spans two eras: thisnode-noretry-5.6 up to 6.12.74, no-local-reclaim-7.0 from 6.12.75; "
             "resolved as 6.12.0: give the point release")
SPAN_4_19 = ("4.19 spans two eras: local-only-4.8 up to 4.19.1, relaxed-5.3-rc5 from 4.19.2; resolved as 4.19.0: "
             "give the point release")

# text -> (distro, policy, lowest upstream version, warnings)
TABLE = {
    # Debian 12 and older: the ABI hides the point release; ABI 50 is 6.1.176 (the bundled capture)
    "6.1.0-50-amd64": ("Debian", "no-local-reclaim-7.0", "6.1.176", []),
    "6.1.0-52-cloud-amd64": ("Debian", "no-local-reclaim-7.0", "6.1.176", []),
    "6.1.0-30-amd64": ("Debian", "thisnode-noretry-5.6", "6.1.0", [
        "6.1.0-30-amd64 spans two eras: thisnode-noretry-5.6 up to 6.1.164, no-local-reclaim-7.0 from 6.1.165; "
        "resolved as 6.1.0: give the upstream version ('Debian 6.1.x-n' in /proc/version, a bundle's "
        "proc_version)"]),
    "5.10.0-32-amd64": ("Debian", "thisnode-noretry-5.6", "5.10.223", []),
    "5.10.0-20-arm64": ("Debian", "thisnode-noretry-5.6", "5.10.0", []),  # at most 5.10.223: before 5.10.253
    "6.12.117+deb13-amd64": ("Debian", "no-local-reclaim-7.0", "6.12.117", []),
    "6.12.12+bpo-amd64": ("Debian", "thisnode-noretry-5.6", "6.12.12", []),
    # Ubuntu: ABI alone, and /proc/version_signature
    "5.15.0-91-generic": ("Ubuntu", "thisnode-noretry-5.6", "5.15.0", [
        "5.15.0-91-generic spans two eras: thisnode-noretry-5.6 up to 5.15.202, no-local-reclaim-7.0 from "
        "5.15.203; resolved as 5.15.0: give the upstream version (the last field of /proc/version_signature)"]),
    "Ubuntu 5.15.0-91.101-generic 5.15.131": ("Ubuntu", "thisnode-noretry-5.6", "5.15.131", []),
    # Ubuntu's /proc/version names only the ABI (the compiler's "(Ubuntu 11.4.0-...)" is not a kernel)
    ("Linux version 5.15.0-91-generic (buildd@lcy02-amd64-045) (gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0, GNU ld "
     "(GNU Binutils for Ubuntu) 2.38) #101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023"): (
        "Ubuntu", "thisnode-noretry-5.6", "5.15.0", [
            "5.15.0-91-generic spans two eras: thisnode-noretry-5.6 up to 5.15.202, no-local-reclaim-7.0 from "
            "5.15.203; resolved as 5.15.0: give the upstream version (the last field of /proc/version_signature)"]),
    "5.4.0-150-generic": ("Ubuntu", "two-step-5.4", "5.4.0", []),  # all of 5.4.y is one era
    # vendor kernels with backports
    "4.18.0-513.el8.x86_64": ("RHEL", "local-only-4.8", "4.18.0", [
        "RHEL backports heavily: 4.18.0-513.el8.x86_64 is 4.18.0 plus many later changes; its THP fault path "
        "may be a later era's (check the trace's THP gfp masks, or pass --policy)"]),
    "5.14.0-362.8.1.el9_3.x86_64": ("RHEL", "thisnode-noretry-5.6", "5.14.0", [
        "RHEL backports heavily: 5.14.0-362.8.1.el9_3.x86_64 is 5.14.0 plus many later changes; its THP fault "
        "path may be a later era's (check the trace's THP gfp masks, or pass --policy)"]),
    "5.14.21-150500.55.39-default": ("SLE", "thisnode-noretry-5.6", "5.14.21", [
        "SUSE backports heavily: 5.14.21-150500.55.39-default is 5.14.21 plus many later changes; its THP fault "
        "path may be a later era's (check the trace's THP gfp masks, or pass --policy)"]),
    # Fedora and Amazon name the upstream version
    "6.5.6-300.fc39.x86_64": ("Fedora", "thisnode-noretry-5.6", "6.5.6", []),
    "6.6.0-0.rc5.41.fc40.x86_64": ("Fedora", "thisnode-noretry-5.6", "6.6-rc5", []),
    "5.10.205-195.807.amzn2.x86_64": ("Amazon Linux", "thisnode-noretry-5.6", "5.10.205", []),
    # plain upstream
    "6.12.75": ("upstream", "no-local-reclaim-7.0", "6.12.75", []),
    "6.12.74": ("upstream", "thisnode-noretry-5.6", "6.12.74", []),
    "6.12": ("upstream", "thisnode-noretry-5.6", "6.12.0", [SPAN_6_12]),
    "4.19": ("upstream", "local-only-4.8", "4.19.0", [SPAN_4_19]),
    "4.19.100": ("upstream", "relaxed-5.3-rc5", "4.19.100", []),
    "5.3": ("upstream", "relaxed-5.3-rc5", "5.3.0", []),  # 5.3.y never changed era: no warning
    "v5.3-rc5": ("upstream", "relaxed-5.3-rc5", "5.3-rc5", []),
    "5.3.0-rc5": ("upstream", "relaxed-5.3-rc5", "5.3-rc5", []),  # uname -r of an -rc
    "5.3-rc4": ("upstream", "local-only-4.8", "5.3-rc4", []),
    "6.18.44-fc-v657": ("upstream", "no-local-reclaim-7.0", "6.18.44", []),
    "7.0": ("upstream", "no-local-reclaim-7.0", "7.0.0", []),
}


@pytest.mark.parametrize("text", TABLE)
def test_resolution_table(text):
    distro, policy, low, warnings = TABLE[text]
    r = versions.explain(text)
    assert (r.distro, r.policy, r.low.point, r.warnings) == (distro, policy, low, warnings)


def test_proc_version_lines_name_the_upstream_version():
    debian = (SAMPLES / "qemu-6.1-2node-kpf" / "proc_version").read_text()
    r = versions.explain(debian)
    assert (r.distro, str(r.low), r.policy, r.warnings) == ("Debian", "6.1.176", "no-local-reclaim-7.0", [])
    # the lab's self-built kernel: "(gcc (Debian 12.2.0-14+deb12u1) ..." is the compiler, not the kernel
    lab = (SAMPLES / "fidelity" / "6.1-relaxed-s3-unmovable" / "proc_version").read_text()
    assert str(versions.explain(lab).low) == "6.1.176"


def test_bundle_thp_policy_overrides_the_release():
    r = explain_kernel(str(SAMPLES / "fidelity" / "6.1-relaxed-s3-unmovable"))
    assert r.policy == "relaxed-5.3-rc5" and r.declared.endswith("6.1-relaxed-s3-unmovable/thp_policy")


@pytest.mark.parametrize("text", ["", "linux", "5", "abc5.4", "6.1rc1"])
def test_unreadable(text):
    with pytest.raises(PolicyError) as e:
        versions.explain(text)
    assert str(e.value) == f"cannot read kernel version {text!r}"


def test_debian_abi_table_matches_the_captures():
    """Each row's source is a real /proc/version of that ABI."""
    for (major, minor), rows in versions.DEBIAN_ABI.items():
        for abi, sub, _source in rows:
            found = [p for p in SAMPLES.rglob("proc_version")
                     if f"Linux version {major}.{minor}.0-{abi}-" in p.read_text()]
            assert found and all(f"Debian {major}.{minor}.{sub}-" in p.read_text() for p in found)


# ------------------------------------------------------------------------------------------- the CLI

def _out(args: list[str], tmp_path: Path) -> str:
    r = run_cli(args, tmp_path)
    assert (r.returncode, r.stderr) == (0, b""), r.stderr
    return r.stdout.decode()


def test_cli_resolve_debian_abi(tmp_path):
    assert _out(["policies", "--resolve", "6.1.0-50-amd64"], tmp_path) == (
        "no-local-reclaim-7.0\n"
        "  parsed: Debian ABI 6.1.0-50 (amd64): upstream 6.1.176 ('Debian 6.1.176-1 (2026-07-02)' in "
        "sample_traces/qemu-6.1-2node-kpf/proc_version)\n"
        "  era: no-local-reclaim-7.0 from 6.1.165 on 6.1.y (9c9828d3ead6 as a214fd2e81ff, before 'Linux 6.1.165')\n"
        "  until: (the newest era)\n")


def test_cli_resolve_bare_version_warns(tmp_path):
    assert _out(["policies", "--resolve", "6.12"], tmp_path) == (
        "thisnode-noretry-5.6\n"
        "  parsed: upstream 6.12 (no point release given)\n"
        "  era: thisnode-noretry-5.6 from 5.5-rc7 in mainline (cc638f329ef6: in -mm after 5.5-rc3, gone from "
        "mmotm on 5.5-rc7, so in 5.5 final; rc7 is a choice)\n"
        "  until: 6.12.75 on 6.12.y, no-local-reclaim-7.0 (9c9828d3ead6 as 11165f420b2a, before 'Linux 6.12.75')\n"
        f"  warning: {SPAN_6_12}\n")


def test_cli_resolve_rhel(tmp_path):
    assert _out(["policies", "--resolve", "4.18.0-513.el8.x86_64"], tmp_path) == (
        "local-only-4.8\n"
        "  parsed: RHEL kernel 4.18.0-513.el8.x86_64, base release 4.18.0\n"
        "  era: local-only-4.8 from 4.8-rc1 in mainline (2516035499b9 and the 4.8 slowpath (release inferred))\n"
        "  until: 4.20-rc1 in mainline, relaxed-5.3-rc5 (ac5b2c18911f + 89c83fb539f9 (release inferred))\n"
        "  warning: RHEL backports heavily: 4.18.0-513.el8.x86_64 is 4.18.0 plus many later changes; its THP fault "
        "path may be a later era's (check the trace's THP gfp masks, or pass --policy)\n")


def test_cli_resolve_bundle(tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(SAMPLES / "qemu-6.1-2node-kpf", bundle, ignore=shutil.ignore_patterns("*.zst", "*.before",
                                                                                           "*.after"))
    assert _out(["policies", "--resolve", "b"], tmp_path) == (
        "no-local-reclaim-7.0\n"
        "  parsed: b/proc_version: Debian, upstream 6.1.176 (the package version in /proc/version: "
        "'Debian 6.1.176-1 (2026-07-02)')\n"
        "  era: no-local-reclaim-7.0 from 6.1.165 on 6.1.y (9c9828d3ead6 as a214fd2e81ff, before 'Linux 6.1.165')\n"
        "  until: (the newest era)\n")


def test_cli_resolve_quiet_warns_on_stderr(tmp_path):
    r = run_cli(["policies", "--resolve", "4.19", "-q"], tmp_path)
    assert (r.returncode, r.stdout.decode(), r.stderr.decode()) == (
        0, "local-only-4.8\n", f"thpreplay: warning: {SPAN_4_19}\n")


def test_cli_resolve_bad_path(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_fails(run_cli(["policies", "--resolve", "./empty"], tmp_path),
                 "thpreplay: empty: names no kernel (no proc_version, kernel_version, kernel_release)")


# ----------------------------------------------------------------------------- simulate: kernels, merging

@pytest.fixture
def qemu(sample_dataset, tmp_path):
    """A private copy of the ingested qemu-6.1-2node capture, without a simulation."""
    ds = tmp_path / "qemu"
    shutil.copytree(sample_dataset("qemu-6.1-2node"), ds)
    shutil.rmtree(ds / "simulation", ignore_errors=True)
    return ds


def _record(ds: Path) -> dict:
    return json.loads((ds / "simulation" / "simulation.json").read_text())


def _summary(ds: Path) -> pl.DataFrame:
    return pl.read_parquet(str(ds / "simulation" / "outcome_summary" / "*.parquet"))


def test_kernel_column_and_record(qemu, tmp_path):
    r = run_cli(["simulate", str(qemu), "--kernel", "6.12", "--kernel", "6.12.0"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"note: --kernel {SPAN_6_12}" in " ".join(r.stdout.decode().split())  # rich may wrap the line
    simulate(qemu, policies=["local-only-4.8"])  # by name: no kernel
    assert _summary(qemu).select("policy", "kernel").rows() == [
        ("thisnode-noretry-5.6", "6.12, 6.12.0"), ("local-only-4.8", None)]
    info = _record(qemu)
    assert info["kernels"] == {"thisnode-noretry-5.6": ["6.12", "6.12.0"]}
    assert info["parts"] == {"thisnode-noretry-5.6": "part-000000.parquet", "local-only-4.8": "part-000001.parquet"}
    q = run_cli(["query", str(qemu), "select policy, kernel from policy_coverage order by policy", "--format", "csv"],
                tmp_path)
    assert q.stdout.decode() == "policy,kernel\nlocal-only-4.8,\nthisnode-noretry-5.6,\"6.12, 6.12.0\"\n"


def test_adding_a_policy_keeps_the_others_byte_for_byte(qemu, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(qemu, both)
    simulate(qemu, policies=["local-only-4.8"])
    result = simulate(qemu, kernels=["6.1.176"])
    assert result.kept == ["local-only-4.8"] and result.replaced is None
    assert result.summary["policy"].to_list() == ["local-only-4.8", "no-local-reclaim-7.0"]
    simulate(both, policies=["local-only-4.8"], kernels=["6.1.176"])
    for table in ("outcomes", "memory_series", "outcome_summary"):
        a = sorted((qemu / "simulation" / table).glob("*.parquet"))
        b = sorted((both / "simulation" / table).glob("*.parquet"))
        assert [p.name for p in a] == [p.name for p in b]
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b)), table
    one, two = _record(qemu), _record(both)
    assert {k: v for k, v in one.items() if k != "notes"} == {k: v for k, v in two.items() if k != "notes"}
    # re-simulating a stored policy replaces only its own results
    again = simulate(qemu, policies=["local-only-4.8"])
    assert again.kept == ["no-local-reclaim-7.0"]
    assert _summary(qemu)["policy"].to_list() == ["local-only-4.8", "no-local-reclaim-7.0"]


def test_other_settings_replace_with_a_note_and_replace_option(qemu, tmp_path):
    simulate(qemu, policies=["local-only-4.8"])
    r = run_cli(["simulate", str(qemu), "--policy", "two-step-5.4", "--defrag", "always"], tmp_path)
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout.decode().splitlines()[-1] == (
        "note: the stored results of local-only-4.8 were simulated with other THP settings (enabled=madvise "
        "defrag=madvise): replaced by this run's (simulate them again with these options to compare)")
    assert _summary(qemu)["policy"].to_list() == ["two-step-5.4"]
    params = tmp_path / "p.toml"
    params.write_text("seed = 7\n")
    result = simulate(qemu, policies=["relaxed-5.3-rc5"], defrag="always", params_file=str(params))
    assert result.replaced == ("the stored results of two-step-5.4 were simulated with other parameters (seed): "
                               "replaced by this run's (simulate them again with these options to compare)")
    simulate(qemu, policies=["two-step-5.4"], defrag="always", params_file=str(params), replace=True)
    assert _summary(qemu)["policy"].to_list() == ["two-step-5.4"]


def test_simulation_without_per_policy_parts_is_split(qemu):
    """A simulation written before per-policy parts (one part with every policy) keeps its rows."""
    simulate(qemu, policies=["local-only-4.8", "relaxed-5.3-rc5"])
    sim = qemu / "simulation"
    before = pl.read_parquet(str(sim / "outcomes" / "*.parquet"))
    for table in ("outcomes", "memory_series"):
        frame = pl.read_parquet(str(sim / table / "*.parquet"))
        for p in (sim / table).glob("*.parquet"):
            p.unlink()
        schemas.load(table).write(frame, sim / table / "part-000000.parquet")
    info = _record(qemu)
    del info["parts"]
    (sim / "simulation.json").write_text(json.dumps(info))
    result = simulate(qemu, policies=["two-step-5.4"])
    assert result.kept == ["local-only-4.8", "relaxed-5.3-rc5"]
    after = pl.read_parquet(str(sim / "outcomes" / "*.parquet"))
    assert after.filter(pl.col("policy") != "two-step-5.4").equals(before)
    assert len(list((sim / "outcomes").glob("*.parquet"))) == 3


@pytest.mark.parametrize("version", [1, 2])
def test_old_outcome_summary_is_refused_then_replaced(qemu, tmp_path, version):
    """A simulation made before the kernel column (outcome_summary.v1) or before the samples' percentile
    columns (v2): query says to simulate again; simulate does, with a note, and keeps nothing from it."""
    simulate(qemu, policies=["local-only-4.8"])
    part = qemu / "simulation" / "outcome_summary" / "part-000000.parquet"
    table = pq.read_table(part)
    table = table.drop_columns([c for c in table.column_names if c == "samples" or c.rsplit("_", 1)[-1] in
                                ("p5", "p50", "p95") and c not in ("latency_p50_us",)]
                               + (["kernel"] if version == 1 else []))
    assert "latency_p50_us" in table.column_names and "huge_local_p5" not in table.column_names
    pq.write_table(table.replace_schema_metadata({schemas.META_KEY: f"outcome_summary.v{version}".encode()}), part)
    assert_fails(run_cli(["query", str(qemu), "select 1"], tmp_path),
                 f"thpreplay: {part}: holds table outcome_summary.v{version}, not outcome_summary.v3; run thpreplay "
                 "simulate again")
    result = simulate(qemu, policies=["two-step-5.4"])
    assert result.replaced == (f"the stored simulation was not kept ({part}: holds table outcome_summary.v{version}, "
                               "not outcome_summary.v3; run thpreplay simulate again)")
    assert _summary(qemu)["policy"].to_list() == ["two-step-5.4"]
