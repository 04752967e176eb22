"""Kernel release -> built-in policy name.

A release string ("5.3-rc4", "4.19.72", "6.1.0-50-amd64", "6.18.44-fc-v657", "7.0-rc1") becomes a
comparable `KernelVersion`; an -rc sorts before its final release (5.3-rc4 < 5.3-rc5 < 5.3 = 5.3.0 <
5.3.1). Anything after the numbers (distribution ABI, flavour, local version) is ignored, and so is a
stable "-rcN" after a sublevel ("5.10.253-rc1" is 5.10.253).

The mapping is two tables: the mainline era boundaries, then stable branches whose later sublevels
took a backport that changes the era. Rows whose basis is a choice rather than a verified fact say so
(see docs/policies.md, "Resolution").

Debian's "6.1.0-50-amd64" names the ABI, not the upstream sublevel (the bundled QEMU capture's
6.1.0-50-amd64 is 6.1.176), so it resolves as 6.1.0; pass the upstream version when it matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from thpreplay.policy.base import PolicyError

FINAL = 10_000  # rc key of a final release or a stable sublevel: after every -rcN

_RELEASE = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?(?=$|[-+_.~ ])", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class KernelVersion:
    major: int
    minor: int
    sublevel: int = 0
    rc: int = FINAL

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}"
        if self.rc != FINAL:
            return f"{base}-rc{self.rc}"
        return f"{base}.{self.sublevel}" if self.sublevel else base


def parse_version(text: str) -> KernelVersion:
    """'5.3-rc4' -> 5.3-rc4; '6.18.44-fc-v657' -> 6.18.44. PolicyError if it is not a release."""
    m = _RELEASE.match(text)
    if not m:
        raise PolicyError(f"cannot read kernel version {text!r}")
    major, minor, sub, rc = (int(g) if g is not None else None for g in m.groups())
    if sub:  # a stable sublevel; a trailing -rcN is a stable release candidate of that sublevel
        return KernelVersion(major, minor, sub)
    return KernelVersion(major, minor, 0, rc if rc is not None else FINAL)


def v(text: str) -> KernelVersion:
    return parse_version(text)


# Mainline: the first release of each era, oldest first. A version belongs to the last row at or below it.
# (first version, policy, basis; docs/policies.md has the evidence behind each basis)
MAINLINE: tuple[tuple[KernelVersion, str, str], ...] = (
    (v("3.19-rc1"), "prefer-local-4.0", "077fcf116c8c, 3.19"),
    (v("4.1-rc1"), "thisnode-4.1", "5265047ac301, committed 14 Apr 2015, the 4.1 merge window"),
    (v("4.6-rc1"), "defrag-modes-4.6", "444eb2a449ef, 4.6 (release inferred)"),
    (v("4.8-rc1"), "local-only-4.8", "2516035499b9 and the 4.8 slowpath (release inferred)"),
    (v("4.20-rc1"), "relaxed-5.3-rc5", "ac5b2c18911f + 89c83fb539f9 (release inferred)"),
    (v("4.20-rc6"), "local-only-4.8", "356ff8a9a78f + 2f0799a0ffc0, Dec 2018: rc6 or rc7; rc6 is a choice"),
    (v("5.3-rc5"), "relaxed-5.3-rc5", "92717d429b38 + a8282608c88e 'made their way into 5.3-rc5'"),
    (v("5.4-rc1"), "two-step-5.4", "merge edf445ad7c8d, the 5.4 merge window"),
    (v("5.5-rc7"), "thisnode-noretry-5.6", ("cc638f329ef6: in -mm after 5.5-rc3, gone from mmotm on 5.5-rc7, "
                                            "so in 5.5 final; rc7 is a choice")),
    (v("7.0-rc1"), "no-local-reclaim-7.0", "9c9828d3ead6, the 7.0 merge window (Feb 2026)"),
)

# Stable branches: (major, minor) -> (first sublevel that changed era, policy, basis).
STABLE: dict[tuple[int, int], tuple[int, str, str]] = {
    (4, 19): (2, "relaxed-5.3-rc5", ("ac5b2c18911f backport 67a19f87a02b: not in 4.19.1, in 4.19.72; 4.19.2 "
                                     "(the first 4.19.y after it reached mainline, Cc: stable) is a choice")),
    (5, 10): (253, "no-local-reclaim-7.0", "9c9828d3ead6 as 91e76e324c00 in 5.10.253-rc1 (failed on 5.10.252)"),
    (5, 15): (203, "no-local-reclaim-7.0", "9c9828d3ead6 as 0eac511c7657 in 5.15.203-rc1 (failed on 5.15.202)"),
    (6, 1): (165, "no-local-reclaim-7.0", "9c9828d3ead6 as a214fd2e81ff, before 'Linux 6.1.165'"),
    (6, 6): (130, "no-local-reclaim-7.0", "9c9828d3ead6 as aa5f25d55cda in 6.6.130-rc1 (failed on 6.6.129)"),
    (6, 12): (75, "no-local-reclaim-7.0", "9c9828d3ead6 as 11165f420b2a, before 'Linux 6.12.75'"),
    (6, 18): (16, "no-local-reclaim-7.0", "9c9828d3ead6 in the 6.18.16-rc1 review, [PATCH 6.18 577/752]"),
    (6, 19): (6, "no-local-reclaim-7.0", "9c9828d3ead6 in the 6.19.6-rc1 review, [PATCH 6.19 646/844]"),
}


def policy_name_for(text: str) -> str:
    """The built-in policy name for a kernel release string (PolicyError if unreadable or too old)."""
    version = parse_version(text)
    name = None
    for first, policy, _basis in MAINLINE:
        if version >= first:
            name = policy
    if name is None:
        raise PolicyError(f"kernel {text} is older than every built-in policy (3.19, 077fcf116c8c)")
    backport = STABLE.get((version.major, version.minor))
    if backport and version.rc == FINAL and version.sublevel >= backport[0]:
        name = backport[1]
    return name
