"""THP fault policies: how each kernel era turns a THP page fault into page-allocator calls.

    from thpreplay.policy import ThpSettings, get_policy, resolve_kernel
    policy = resolve_kernel("5.3-rc4")            # local-only-4.8
    policy.attempts(ThpSettings(enabled="always", defrag="madvise"), madvised=True)

Built-ins and plugins are entry points of the group `thpreplay.policies` (registry.py); the built-ins'
facts are in builtin.py, the release -> policy mapping in versions.py.
"""

from thpreplay.policy.base import Attempt, Policy, PolicyError, Slowpath, ThpSettings
from thpreplay.policy.builtin import BUILTINS, EraPolicy
from thpreplay.policy.registry import all_policies, get_policy, resolve_kernel
from thpreplay.policy.versions import KernelVersion, parse_version

__all__ = [
    "BUILTINS",
    "Attempt",
    "EraPolicy",
    "KernelVersion",
    "Policy",
    "PolicyError",
    "Slowpath",
    "ThpSettings",
    "all_policies",
    "get_policy",
    "parse_version",
    "resolve_kernel",
]
