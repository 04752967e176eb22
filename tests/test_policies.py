"""THP fault policies: the contract every installed policy keeps, the built-ins against the reference's
tables (each era's alloc_hugepage_direct_gfpmask() and gfp.h), release resolution, the registry's
loader and the `policies` command."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from thpreplay.kernel.gfp import TABLES
from thpreplay.policy import (
    BUILTINS,
    Attempt,
    EraPolicy,
    PolicyError,
    Slowpath,
    ThpSettings,
    get_policy,
    parse_version,
    registry,
    versions,
)
from thpreplay.policy.base import DEFRAG_MODES, ENABLED_MODES, PMD_ORDER, SCOPES
from thpreplay.policy.builtin import THISNODE_NORETRY_5_6

THP = str(Path(sys.executable).parent / "thpreplay")
SAMPLES = Path(__file__).resolve().parents[1] / "sample_traces"
NAMES = ["prefer-local-4.0", "thisnode-4.1", "defrag-modes-4.6", "local-only-4.8", "relaxed-5.3-rc5",
         "rientjes-2019", "two-step-5.4", "thisnode-noretry-5.6", "no-local-reclaim-7.0"]


# ------------------------------------------------------------------------------------------------
# Contract: every installed policy (built-ins and plugins alike)
# ------------------------------------------------------------------------------------------------

def _valid_modes(policy) -> list[str]:
    """The defrag modes the policy's era has: those attempts() does not refuse."""
    modes = []
    for defrag in DEFRAG_MODES:
        try:
            policy.attempts(ThpSettings(enabled="always", defrag=defrag), True)
        except PolicyError:
            continue
        modes.append(defrag)
    return modes


@pytest.fixture(params=registry.all_policies(), ids=lambda p: p.name)
def policy(request):
    return request.param


def test_describes_itself(policy):
    for attr in ("name", "title", "kernels", "simplifications", "default_defrag"):
        assert isinstance(getattr(policy, attr), str) and getattr(policy, attr), attr
    assert policy.commits and all(isinstance(c, str) and c for c in policy.commits)
    assert isinstance(policy.slowpath, Slowpath)
    assert policy.default_defrag in _valid_modes(policy)


def test_attempts_keep_the_contract(policy):
    modes = _valid_modes(policy)
    assert modes
    for enabled in ENABLED_MODES:
        for defrag in modes:
            for madvised in (False, True):
                settings = ThpSettings(enabled=enabled, defrag=defrag)
                got = policy.attempts(settings, madvised)
                where = f"{enabled}/{defrag}/madvised={madvised}"
                assert isinstance(got, tuple) and all(isinstance(a, Attempt) for a in got), where
                assert got == policy.attempts(settings, madvised), where  # deterministic
                if enabled == "never" or (enabled == "madvise" and not madvised):
                    assert got == (), where
                    continue
                assert got and got[0].order == PMD_ORDER, where  # the PMD attempt comes first
                assert all(1 <= a.order <= PMD_ORDER and a.scope in SCOPES for a in got), where
                pmd = [a for a in got if a.order == PMD_ORDER]
                assert 1 <= len(pmd) <= 2, where
                if len(pmd) == 2 and registry.is_builtin(policy):
                    # every era's second PMD call follows one that could reclaim (a plugin may differ)
                    assert pmd[0].direct_reclaim, where


# ------------------------------------------------------------------------------------------------
# Built-ins against the reference's tables
# ------------------------------------------------------------------------------------------------

def test_builtins_are_registered_in_era_order():
    assert [p.name for p in registry.all_policies()][:len(NAMES)] == NAMES
    assert [p.name for p in BUILTINS] == NAMES
    assert all(get_policy(n) is p for n, p in zip(NAMES, BUILTINS))


def _fmt(attempts) -> str:
    """'local:DN:0x3d24ca all:D:0x1c24ca' -- scope, flags (D direct, K kswapd, N noretry), gfp hex."""
    out = []
    for a in attempts:
        flags = "D" * a.direct_reclaim + "K" * a.kswapd_reclaim + "N" * a.noretry
        out.append(f"{a.scope}:{flags}:{'-' if a.gfp_hex is None else hex(a.gfp_hex)}")
    return " ".join(out)


# (policy, defrag, madvised) -> attempts with enabled=always. From each version's gfp.h (hex), alloc_hugepage_direct_gfpmask() (masks) and the THP allocation path (scope).
GOLDEN = {
    # ≤4.0: one zonelist attempt; GFP_TRANSHUGE carries __GFP_NORETRY and __GFP_NO_KSWAPD
    ("prefer-local-4.0", "always", False): "all:DN:0x4352da",
    ("prefer-local-4.0", "always", True): "all:DN:0x4352da",
    ("prefer-local-4.0", "madvise", False): "all:N:0x4352ca",
    ("prefer-local-4.0", "madvise", True): "all:DN:0x4352da",
    ("prefer-local-4.0", "never", True): "all:N:0x4352ca",
    # 4.1-4.5: the same masks with __GFP_THISNODE
    ("thisnode-4.1", "always", False): "local:DN:0x4752da",
    ("thisnode-4.1", "always", True): "local:DN:0x4752da",
    ("thisnode-4.1", "madvise", False): "local:N:0x4752ca",
    ("thisnode-4.1", "madvise", True): "local:DN:0x4752da",
    # 4.6-4.7
    ("defrag-modes-4.6", "always", False): "local:DN:0x4752ca",
    ("defrag-modes-4.6", "always", True): "local:DN:0x4752ca",
    ("defrag-modes-4.6", "madvise", False): "local:N:0x752ca",
    ("defrag-modes-4.6", "madvise", True): "local:DN:0x4752ca",
    ("defrag-modes-4.6", "defer", True): "local:KN:0x20752ca",
    # 4.8-5.3-rc4, 4.11 column
    ("local-only-4.8", "always", False): "local:DN:0x4752ca",
    ("local-only-4.8", "always", True): "local:D:0x4742ca",
    ("local-only-4.8", "madvise", False): "local::0x742ca",
    ("local-only-4.8", "madvise", True): "local:D:0x4742ca",
    ("local-only-4.8", "defer", True): "local:K:0x10742ca",
    ("local-only-4.8", "defer+madvise", False): "local:K:0x10742ca",
    ("local-only-4.8", "defer+madvise", True): "local:D:0x4742ca",
    # relaxed, 5.3.1 column: direct-reclaim masks go to all nodes
    ("relaxed-5.3-rc5", "always", False): "all:DN:0x1d24ca",
    ("relaxed-5.3-rc5", "always", True): "all:D:0x1c24ca",
    ("relaxed-5.3-rc5", "madvise", False): "local::0x3c20ca",
    ("relaxed-5.3-rc5", "madvise", True): "all:D:0x1c24ca",
    ("relaxed-5.3-rc5", "defer", True): "local:K:0x3c28ca",
    ("relaxed-5.3-rc5", "defer+madvise", True): "all:D:0x1c24ca",
    # 5.4 and the series as posted
    ("two-step-5.4", "always", False): "local:DN:0x3d24ca all:DN:0x1d24ca",
    ("two-step-5.4", "always", True): "local:D:0x3c24ca all:DN:0x1d24ca",
    ("two-step-5.4", "madvise", False): "local::0x3c20ca",
    ("two-step-5.4", "madvise", True): "local:D:0x3c24ca all:DN:0x1d24ca",
    ("two-step-5.4", "defer", True): "local:K:0x3c28ca",
    ("rientjes-2019", "always", False): "local:DN:0x3d24ca all:DN:0x1d24ca",
    ("rientjes-2019", "always", True): "local:D:0x3c24ca all:DN:0x1d24ca",
    ("rientjes-2019", "madvise", False): "local::0x3c20ca",
    ("rientjes-2019", "madvise", True): "local:D:0x3c24ca all:DN:0x1d24ca",
    # cc638f329ef6, 5.8.1 column
    ("thisnode-noretry-5.6", "always", False): "local:DN:0x3d24ca all:DN:0x1d24ca",
    ("thisnode-noretry-5.6", "always", True): "local:DN:0x3d24ca all:D:0x1c24ca",
    ("thisnode-noretry-5.6", "madvise", False): "local:N:0x3d20ca",
    ("thisnode-noretry-5.6", "madvise", True): "local:DN:0x3d24ca all:D:0x1c24ca",
    ("thisnode-noretry-5.6", "defer", False): "local:KN:0x3d28ca",
    ("thisnode-noretry-5.6", "defer+madvise", True): "local:DN:0x3d24ca all:D:0x1c24ca",
    ("thisnode-noretry-5.6", "never", True): "local:N:0x3d20ca",
    # 9c9828d3ead6: same calls; the reference gives no hex for this era
    ("no-local-reclaim-7.0", "always", False): "local:DN:- all:DN:-",
    ("no-local-reclaim-7.0", "always", True): "local:DN:- all:D:-",
    ("no-local-reclaim-7.0", "madvise", False): "local:N:-",
    ("no-local-reclaim-7.0", "madvise", True): "local:DN:- all:D:-",
}


@pytest.mark.parametrize("key", GOLDEN, ids=lambda k: f"{k[0]}-{k[1]}-{'madv' if k[2] else 'plain'}")
def test_golden_attempts(key):
    name, defrag, madvised = key
    got = get_policy(name).attempts(ThpSettings(enabled="always", defrag=defrag), madvised)
    assert _fmt(got) == GOLDEN[key]


def test_every_builtin_has_golden_rows_for_always_and_madvise():
    for name in NAMES:
        for defrag in ("always", "madvise"):
            assert (name, defrag, True) in GOLDEN and (name, defrag, False) in GOLDEN, (name, defrag)


# Bit values to decode the hex: the 4.0 and 5.4 name tables (mmflags.h) and, for 4.6/4.11, the gfp.h constants of those versions.
_BITS_4_6 = {"thisnode": 0x40000, "noretry": 0x1000, "direct": 0x400000}
_LAYOUT = {"prefer-local-4.0": "4.0", "thisnode-4.1": "4.0", "defrag-modes-4.6": _BITS_4_6,
           "local-only-4.8": _BITS_4_6, "relaxed-5.3-rc5": "5.4", "rientjes-2019": "5.4", "two-step-5.4": "5.4",
           "thisnode-noretry-5.6": "5.4"}


@pytest.mark.parametrize("name", list(_LAYOUT))
def test_gfp_hex_agrees_with_the_flags(name):
    """The transcribed hex and the transcribed flags are two copies of the reference: they must agree."""
    policy = get_policy(name)
    layout = _LAYOUT[name]
    for defrag in policy.defrag_modes:
        for madvised in (False, True):
            for a in policy.attempts(ThpSettings(enabled="always", defrag=defrag), madvised):
                assert a.gfp_hex is not None
                if isinstance(layout, str):
                    t = TABLES[layout]
                    bits = {"thisnode": t.bit("thisnode"), "noretry": t.bit("noretry"),
                            "direct": t.bit("direct_reclaim"), "kswapd": t.bit("kswapd_reclaim")}
                else:
                    bits = layout
                where = f"{name} {defrag} madvised={madvised} {hex(a.gfp_hex)}"
                assert bool(a.gfp_hex & bits["thisnode"]) == (a.scope == "local"), where
                assert bool(a.gfp_hex & bits["noretry"]) == a.noretry, where
                assert bool(a.gfp_hex & bits["direct"]) == a.direct_reclaim, where
                if "kswapd" in bits:
                    kswapd_bit = bool(a.gfp_hex & bits["kswapd"])
                    if layout == "4.0":  # __GFP_NO_KSWAPD: set means kswapd is never woken
                        assert kswapd_bit and not a.kswapd_reclaim, where
                    else:
                        assert kswapd_bit == a.kswapd_reclaim, where


def test_slowpath_per_era():
    sp = {p.name: p.slowpath for p in BUILTINS}
    assert [n for n in NAMES if sp[n].thisnode_without_wait_fails] == ["thisnode-4.1"]
    assert [n for n in NAMES if not sp[n].second_compaction_sync] == NAMES[:3]  # <=4.7: async only
    assert [n for n in NAMES if sp[n].bail_skipped_or_deferred == "costly_direct"] == ["rientjes-2019", "two-step-5.4"]
    assert [n for n in NAMES if sp[n].bail_skipped_or_deferred == "if_noretry"] == NAMES[-2:]
    assert [n for n in NAMES if sp[n].bail_thisnode_noretry] == ["no-local-reclaim-7.0"]
    assert [n for n in NAMES if sp[n].bail_deferred_if_noretry] == NAMES[:7]
    assert sp["rientjes-2019"] == sp["two-step-5.4"]  # the series as posted = 5.4 for THP faults


def test_default_defrag_per_era():
    assert [p.default_defrag for p in BUILTINS] == ["always", "always"] + ["madvise"] * 7


def test_mthp_orders_follow_the_pmd_attempts_on_all_nodes():
    got = THISNODE_NORETRY_5_6.attempts(ThpSettings(enabled="always", defrag="madvise", mthp_orders=(6, 4)), True)
    assert _fmt(got) == "local:DN:0x3d24ca all:D:0x1c24ca all:D:- all:D:-"
    assert [a.order for a in got] == [9, 9, 6, 4]
    got = THISNODE_NORETRY_5_6.attempts(ThpSettings(enabled="always", defrag="madvise", mthp_orders=(4,)), False)
    assert [(a.order, a.scope, a.direct_reclaim) for a in got] == [(9, "local", False), (4, "all", False)]


# ------------------------------------------------------------------------------------------------
# Settings the era lacks, and bad settings
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, defrag", [
    ("prefer-local-4.0", "defer"), ("thisnode-4.1", "defer+madvise"), ("defrag-modes-4.6", "defer+madvise"),
])
def test_defrag_mode_missing_in_the_era_is_refused(name, defrag):
    with pytest.raises(PolicyError) as e:
        get_policy(name).attempts(ThpSettings(enabled="always", defrag=defrag), True)
    msg = str(e.value)
    assert name in msg and repr(defrag) in msg and "\n" not in msg


def test_mthp_before_6_8_is_refused():
    with pytest.raises(PolicyError, match="local-only-4.8: .* no anon mTHP"):
        get_policy("local-only-4.8").attempts(ThpSettings(defrag="madvise", mthp_orders=(4,)), True)


@pytest.mark.parametrize("kwargs, message", [
    ({"enabled": "sometimes"}, "unknown THP enabled mode 'sometimes'"),
    ({"defrag": "[madvise]"}, "unknown THP defrag mode '[madvise]'"),
    ({"mthp_orders": (9,)}, "mTHP orders must be 1..8"),
    ({"mthp_orders": (2, 4)}, "highest first"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(PolicyError, match=re.escape(message)):
        ThpSettings(**kwargs)


# ------------------------------------------------------------------------------------------------
# Release -> policy
# ------------------------------------------------------------------------------------------------

RESOLVE = {
    # from the brief
    "5.3-rc4": "local-only-4.8",
    "5.3-rc5": "relaxed-5.3-rc5",
    "5.3.1": "relaxed-5.3-rc5",
    "5.4": "two-step-5.4",
    "6.1.0-50-amd64": "no-local-reclaim-7.0",  # Debian ABI 50 is 6.1.176 (versions.DEBIAN_ABI)
    "4.0": "prefer-local-4.0",
    "7.0-rc1": "no-local-reclaim-7.0",
    "4.20": "local-only-4.8",
    "4.20-rc3": "relaxed-5.3-rc5",
    "3.19": "prefer-local-4.0",
    # era edges
    "3.19-rc1": "prefer-local-4.0",
    "4.0.9": "prefer-local-4.0",
    "4.1-rc1": "thisnode-4.1",
    "4.5.7": "thisnode-4.1",
    "4.6": "defrag-modes-4.6",
    "4.7.10": "defrag-modes-4.6",
    "4.8": "local-only-4.8",
    "4.14.300": "local-only-4.8",
    "4.20-rc5": "relaxed-5.3-rc5",
    "4.20-rc6": "local-only-4.8",
    "5.2.21": "local-only-4.8",
    "5.3": "relaxed-5.3-rc5",
    "5.3.18": "relaxed-5.3-rc5",
    "5.4-rc1": "two-step-5.4",
    "5.4.290": "two-step-5.4",
    "5.4.0-150-generic": "two-step-5.4",
    "5.5-rc6": "two-step-5.4",
    "5.5-rc7": "thisnode-noretry-5.6",
    "5.5": "thisnode-noretry-5.6",
    "6.19": "thisnode-noretry-5.6",
    "v6.8": "thisnode-noretry-5.6",
    "7.0": "no-local-reclaim-7.0",
    # 4.19.y: the ac5b2c18911f backport (4.19.1 no, 4.19.72 yes; 4.19.2 chosen)
    "4.19": "local-only-4.8",
    "4.19.1": "local-only-4.8",
    "4.19.2": "relaxed-5.3-rc5",
    "4.19.72": "relaxed-5.3-rc5",
    # stable backports of 9c9828d3ead6
    "5.10.252": "thisnode-noretry-5.6",
    "5.10.253": "no-local-reclaim-7.0",
    "5.10.253-rc1": "no-local-reclaim-7.0",
    "5.15.202": "thisnode-noretry-5.6",
    "5.15.203": "no-local-reclaim-7.0",
    "6.1.164": "thisnode-noretry-5.6",
    "6.1.165": "no-local-reclaim-7.0",
    "6.1.176-1": "no-local-reclaim-7.0",
    "6.6.129": "thisnode-noretry-5.6",
    "6.6.130": "no-local-reclaim-7.0",
    "6.12.74": "thisnode-noretry-5.6",
    "6.12.75": "no-local-reclaim-7.0",
    "6.18.15": "thisnode-noretry-5.6",
    "6.18.16": "no-local-reclaim-7.0",
    # the development VM: 6.18.44 is past the 6.18.16 backport; its own trace agrees (test below)
    "6.18.44-fc-v657": "no-local-reclaim-7.0",
    "6.19.5": "thisnode-noretry-5.6",
    "6.19.6": "no-local-reclaim-7.0",
}


@pytest.mark.parametrize("release", RESOLVE)
def test_resolve_kernel(release):
    assert registry.resolve_kernel(release).name == RESOLVE[release]


def test_versions_order_rc_before_final():
    order = ["5.3-rc4", "5.3-rc5", "5.3", "5.3.1", "5.3.10", "5.4-rc1", "5.10"]
    keys = [parse_version(r) for r in order]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert parse_version("5.3") == parse_version("5.3.0")
    assert str(parse_version("6.18.44-fc-v657")) == "6.18.44" and str(parse_version("7.0-rc1")) == "7.0-rc1"


def test_version_tables_are_ordered_and_name_builtins():
    firsts = [first for first, _, _ in versions.MAINLINE]
    assert firsts == sorted(firsts)
    names = {p for _, p, _ in versions.MAINLINE} | {p for _, p, _ in versions.STABLE.values()}
    assert names <= set(NAMES) and "rientjes-2019" not in names  # never released


@pytest.mark.parametrize("text", ["", "linux", "5", "abc5.4", "5.x", "6.1rc1"])
def test_unreadable_version(text):
    with pytest.raises(PolicyError) as e:
        registry.resolve_kernel(text)
    assert str(e.value) == f"cannot read kernel version {text!r}"


def test_too_old_version():
    with pytest.raises(PolicyError, match="older than every built-in policy"):
        registry.resolve_kernel("3.10.0-1160.el7.x86_64")


def _thisnode_attempts_after_failed_compaction(trace: Path) -> tuple[int, int]:
    """(THISNODE attempts whose compaction ran and failed, how many of them entered direct reclaim)."""
    ran, reclaimed = 0, 0
    open_attempts: dict[str, dict] = {}
    text = zstandard.ZstdDecompressor().stream_reader(trace.open("rb")).read().decode()
    for line in text.splitlines():
        m = re.match(r"\s*\S.*?-(\d+)\s+\[", line)
        if not m or ("order=9" not in line and "mm_compaction_end" not in line and "direct_reclaim" not in line):
            continue
        pid = m.group(1)
        if "mm_compaction_try_to_compact_pages" in line and "__GFP_THISNODE" in line:
            open_attempts[pid] = {"ran": False, "reclaim": False}
        elif pid in open_attempts:
            state = open_attempts[pid]
            if "mm_compaction_end" in line:
                state["ran"] = True
            elif "mm_vmscan_direct_reclaim_begin" in line:
                state["reclaim"] = True
            elif "mm_page_alloc:" in line and "__GFP_THISNODE" in line and "pfn=0x0 " in line:
                ran += state["ran"]
                reclaimed += state["ran"] and state["reclaim"]
                del open_attempts[pid]
    return ran, reclaimed


@pytest.mark.parametrize("bundle", ["local-6.18-ftrace", "qemu-6.1-2node"])
def test_captured_kernels_do_not_reclaim_in_the_local_attempt(bundle):
    """Basis of the 6.18.16 / 6.1.165 rows: on the bundled 6.18.44 and Debian 6.1.176 captures, local
    __GFP_THISNODE|__GFP_NORETRY attempts whose compaction ran and failed never enter reclaim, as
    9c9828d3ead6 makes them; without it they would (the cc638f329ef6 caveat in docs/policies.md)."""
    ran, reclaimed = _thisnode_attempts_after_failed_compaction(SAMPLES / bundle / "trace.txt.zst")
    assert ran >= 20 and reclaimed == 0


# ------------------------------------------------------------------------------------------------
# Registry: the loader on fake entry points
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class FakeEntryPoint:
    name: str
    value: str
    target: object = None
    error: Exception | None = None

    def load(self):
        if self.error is not None:
            raise self.error
        return self.target


def _builtin_eps() -> list[FakeEntryPoint]:
    return [FakeEntryPoint(p.name, f"thpreplay.policy.builtin:{p.name}", p) for p in BUILTINS]


MY_POLICY = dataclasses.replace(THISNODE_NORETRY_5_6, name="example-local-first", title="an example plugin")


def test_loader_puts_builtins_in_era_order_then_plugins_by_name():
    zeta = dataclasses.replace(MY_POLICY, name="zeta")
    eps = [FakeEntryPoint("zeta", "zeta_pkg:P", zeta), *reversed(_builtin_eps()),
           FakeEntryPoint("example-local-first", "example_pkg:P", MY_POLICY)]
    assert [p.name for p in registry.load_policies(eps)] == NAMES + ["example-local-first", "zeta"]


class _Raises:
    """Looks like a policy until attempts() is called."""

    name = "raises"
    title = kernels = simplifications = "x"
    default_defrag = "madvise"
    commits = ("0000000 nothing",)
    slowpath = THISNODE_NORETRY_5_6.slowpath

    def attempts(self, settings, madvised):
        raise RuntimeError("boom\nsecond line")


@pytest.mark.parametrize("ep, message", [
    (FakeEntryPoint("broken", "broken_pkg:P", error=ImportError("No module named 'broken_pkg'")),
     "policy plugin 'broken' (broken_pkg:P): ImportError: No module named 'broken_pkg'"),
    (FakeEntryPoint("notapolicy", "pkg:X", object()),
     "policy plugin 'notapolicy' (pkg:X): ValueError: missing or empty attribute 'name'"),
    (FakeEntryPoint("raises", "pkg:R", _Raises()),
     "policy plugin 'raises' (pkg:R): RuntimeError: boom"),
    (FakeEntryPoint("other-name", "pkg:P", MY_POLICY),
     ("policy plugin 'other-name' (pkg:P): ValueError: policy is named 'example-local-first'; "
      "the entry point must have the same name")),
    (FakeEntryPoint("bad-slowpath", "pkg:P", dataclasses.replace(MY_POLICY, name="bad-slowpath", slowpath=None)),
     "policy plugin 'bad-slowpath' (pkg:P): TypeError: 'slowpath' must be a thpreplay.policy.Slowpath"),
])
def test_a_bad_plugin_is_one_line_naming_it(ep, message):
    with pytest.raises(PolicyError) as e:
        registry.load_policies([*_builtin_eps(), ep])
    assert str(e.value) == message


def test_duplicate_names_are_refused():
    eps = [*_builtin_eps(), FakeEntryPoint("two-step-5.4", "copycat:P", dataclasses.replace(MY_POLICY, name="two-step-5.4"))]
    with pytest.raises(PolicyError, match="policy 'two-step-5.4' is registered twice"):
        registry.load_policies(eps)


def test_installed_plugins_are_found_through_the_entry_point_group(monkeypatch):
    monkeypatch.setattr(registry, "_entry_points",
                        lambda: [*_builtin_eps(), FakeEntryPoint("example-local-first", "example_pkg:P", MY_POLICY)])
    registry.clear_cache()
    try:
        assert [p.name for p in registry.all_policies()] == NAMES + ["example-local-first"]
        assert get_policy("example-local-first") is MY_POLICY
        with pytest.raises(PolicyError) as e:
            get_policy("linux-9.9")
        assert str(e.value) == f"unknown policy 'linux-9.9' (known: {', '.join(NAMES)}, example-local-first)"
    finally:
        monkeypatch.undo()
        registry.clear_cache()


def test_a_plugin_built_from_a_builtin_passes_the_contract():
    assert isinstance(MY_POLICY, EraPolicy) and MY_POLICY is not THISNODE_NORETRY_5_6
    assert not MY_POLICY.builtin and not registry.is_builtin(MY_POLICY)
    assert all(p.builtin and registry.is_builtin(p) for p in BUILTINS)
    assert MY_POLICY.attempts(ThpSettings(), True) == THISNODE_NORETRY_5_6.attempts(ThpSettings(), True)


# ------------------------------------------------------------------------------------------------
# The `policies` command
# ------------------------------------------------------------------------------------------------

def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([THP, *args], check=False, capture_output=True, text=True, timeout=120)


def test_cli_resolve_quiet_prints_only_the_name():
    r = run("policies", "--resolve", "5.3-rc4", "-q")
    assert (r.returncode, r.stdout, r.stderr) == (0, "local-only-4.8\n", "")


def test_cli_lists_every_builtin_with_kernels_and_commits():
    r = run("policies")
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith(" ")]
    assert names[:len(NAMES)] == NAMES  # installed plugins follow, by name
    assert "cc638f329ef6 mm, thp: tweak reclaim/compaction effort" in r.stdout
    assert "5.5-rc7..6.19" in r.stdout


@pytest.mark.parametrize("release, message", [
    ("linux-next", "thpreplay: cannot read kernel version 'linux-next'\n"),
    ("2.6.32", "thpreplay: kernel 2.6.32 is older than every built-in policy (3.19, 077fcf116c8c)\n"),
], ids=["unreadable", "too-old"])
def test_cli_bad_version_is_one_line(release, message):
    r = run("policies", "--resolve", release)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", message)
