"""Kernel release -> built-in policy name, and why.

A release string ("5.3-rc4", "4.19.72", "6.18.44-fc-v657", "7.0-rc1") becomes a comparable
`KernelVersion`; an -rc sorts before its final release (5.3-rc4 < 5.3-rc5 < 5.3 = 5.3.0 < 5.3.1).

Distribution kernels are read through TEXT_PATTERNS and RELEASE_PATTERNS, tables of regexes (distro,
what a match means): the upstream version is taken from where the distribution puts it (Fedora's and
Debian trixie's release, Debian's /proc/version, Ubuntu's /proc/version_signature). Debian's and Ubuntu's ABI names
("6.1.0-50-amd64", "5.15.0-91-generic") do not say the upstream point release: a few Debian ABIs are
known from real captures (DEBIAN_ABI); otherwise the range it may span is said and, if that range
crosses an era boundary, the result is the era of its lowest version with a warning. RHEL-family and
SLE kernels are their base release plus many backports: resolved as the base, with a warning.

The mapping is two tables: the mainline era boundaries, then stable branches whose later sublevels
took a backport that changes the era. Rows whose basis is a choice rather than a verified fact say so
(see docs/policies.md, "Resolution").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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

    @property
    def point(self) -> str:
        """'6.12.0' for 6.12 itself: the form that says a point release was meant."""
        return str(self) if self.rc != FINAL or self.sublevel else f"{self.major}.{self.minor}.0"


def parse_version(text: str) -> KernelVersion:
    """'5.3-rc4' -> 5.3-rc4; '6.18.44-fc-v657' -> 6.18.44. PolicyError if it is not a release.
    (The leading numbers only; `explain()` reads distribution strings.)"""
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

# Debian's ABI name (linux-image-M.m.0-ABI-flavour) -> the upstream version of a package that carried it,
# from real captures' /proc/version. ABIs only grow, so a higher ABI is at least that version and a lower
# one at most it. (major, minor) -> ((abi, upstream sublevel, source), ...)
DEBIAN_ABI: dict[tuple[int, int], tuple[tuple[int, int, str], ...]] = {
    (5, 10): ((32, 223, "'Debian 5.10.223-1 (2024-08-10)' in sample_traces/fidelity/5.10-*/proc_version"),),
    (6, 1): ((50, 176, "'Debian 6.1.176-1 (2026-07-02)' in sample_traces/qemu-6.1-2node-kpf/proc_version"),),
}

# ------------------------------------------------------------------------------------------ patterns

_DEBIAN_FLAVOURS = (r"(?:cloud-|rt-)?(?:amd64|arm64|686-pae|686|armmp-lpae|armmp|ppc64el|powerpc64le|s390x|riscv64|"
                    r"loong64|marvell|rpi|octeon|4kc-malta|5kc-malta|loongson-3|mips32r2el|mips64r2el)")
_UBUNTU_FLAVOURS = (r"(?:generic(?:-64k|-lpae|-pae)?|lowlatency(?:-64k)?|aws|azure|gcp|gke|gkeop|kvm|oracle|ibm|"
                    r"nvidia(?:-64k|-lowlatency)?|raspi(?:-nolpae)?|intel-iotg|realtime|virtual|server|fips)")
_V = r"v?(?P<major>\d+)\.(?P<minor>\d+)"


@dataclass(frozen=True)
class Pattern:
    """One way a kernel names itself. `kind` says how the match gives the upstream version:
    exact      the groups are the upstream version (sub and rc optional)
    series     only major.minor: the point release was not given
    debian-abi Debian's ABI number, looked up in DEBIAN_ABI
    abi        another distribution's ABI number: the point release is unknown
    abi-unknown  M.m.0-N-flavour of a distribution not known here: likewise
    backports  a vendor kernel: its base release plus backports (RHEL, SLE)
    release    a /proc/version line: its release is read again with the release patterns"""

    distro: str
    regex: re.Pattern
    kind: str
    meaning: str


def _p(distro: str, regex: str, kind: str, meaning: str) -> Pattern:
    return Pattern(distro, re.compile(regex, re.IGNORECASE), kind, meaning)


# Text that is more than a release (searched anywhere in it; the first that matches wins).
TEXT_PATTERNS: tuple[Pattern, ...] = (
    # Debian's package version after the build flags; not the compiler's "(Debian 12.2.0-14...)"
    # (record.kernel_version_of reads the same string)
    _p("Debian", r"(?<!\()\bDebian (?P<major>\d+)\.(?P<minor>\d+)\.(?P<sub>\d+)-\S+ \(\d{4}-\d{2}-\d{2}\)", "exact",
       "the package version in /proc/version"),
    # /proc/version_signature: "Ubuntu 5.15.0-91.101-generic 5.15.131": ABI.upload-flavour, then upstream
    _p("Ubuntu", r"\bUbuntu \d+\.\d+\.\d+-\d+\.\d+-[a-z0-9-]+ (?P<major>\d+)\.(?P<minor>\d+)\.(?P<sub>\d+)\b", "exact",
       "the upstream version at the end of /proc/version_signature"),
    _p("", r"\bLinux version (?P<release>\S+)", "release", "the release of a /proc/version line"),
)

# A release (uname -r), matched whole; the first that matches wins.
RELEASE_PATTERNS: tuple[Pattern, ...] = (
    # trixie and later, and backports: the upstream version is in the release (6.12.117+deb13-amd64)
    _p("Debian", _V + r"\.(?P<sub>\d+)\+(?:deb\d+|bpo)(?:u\d+)?-" + _DEBIAN_FLAVOURS, "exact",
       "Debian 13+ release: upstream version, +debN, flavour"),
    _p("Debian", _V + r"\.0-(?P<abi>\d+)-" + _DEBIAN_FLAVOURS, "debian-abi",
       "Debian 12 and older: major.minor.0-ABI-flavour; the point release is not in it"),
    _p("Ubuntu", _V + r"\.0-(?P<abi>\d+)-" + _UBUNTU_FLAVOURS, "abi",
       "Ubuntu: major.minor.0-ABI-flavour; the point release is in /proc/version_signature"),
    _p("RHEL", _V + r"\.(?P<sub>\d+)-[\d.]+\.el(?P<el>\d+)(?:_\d+)?(?P<uek>uek)?(?:\.\w+)?", "backports",
       "RHEL, CentOS, Rocky, Alma, Oracle: base release-build.elN"),
    _p("SLE", _V + r"\.(?P<sub>\d+)-150\d{3}\.[\d.]+-[a-z0-9]+", "backports",
       "SUSE Linux Enterprise 15: base-150SPx.build-flavour"),
    _p("Fedora", _V + r"\.0-0\.rc(?P<rc>\d+)\.(?:\w+\.)*?fc\d+(?:\.\w+)?", "exact",
       "Fedora rawhide: major.minor.0-0.rcN...fcNN"),
    _p("Fedora", _V + r"\.(?P<sub>\d+)-\d+\.fc\d+(?:\.\w+)?", "exact", "Fedora: upstream version-build.fcNN"),
    _p("Amazon Linux", _V + r"\.(?P<sub>\d+)-[\d.]+\.amzn\d+(?:\.\w+)?", "exact",
       "Amazon Linux: upstream version-build.amznN"),
    _p("", r"(?P<abi_form>\d+\.\d+\.0-\d+-[a-z][a-z0-9-]*)", "abi-unknown",
       "major.minor.0-ABI-flavour of an unknown distribution"),
    _p("upstream", _V + r"(?:\.(?P<sub>\d+))?-rc(?P<rc>\d+)(?P<local>[-+_.~].*)?", "exact",
       "upstream release candidate"),
    _p("upstream", _V + r"\.(?P<sub>\d+)(?P<local>[-+_.~].*)?", "exact", "upstream release (and a local version)"),
    _p("upstream", _V + r"(?P<local>[-+_.~].*)?", "series", "upstream major.minor without a point release"),
)


# What to give instead when the point release is not known (the end of an ambiguity warning).
WHERE_UPSTREAM = {
    "upstream": "give the point release",
    "Debian": "give the upstream version ('Debian {branch}.x-n' in /proc/version, a bundle's proc_version)",
    "Ubuntu": "give the upstream version (the last field of /proc/version_signature)",
    "": "give the upstream version",
}


# ------------------------------------------------------------------------------------------- mapping


def policy_at(version: KernelVersion) -> str | None:
    """The era of one upstream version (None: older than every built-in policy)."""
    name = None
    for first, policy, _basis in MAINLINE:
        if version >= first:
            name = policy
    backport = STABLE.get((version.major, version.minor))
    if name and backport and version.rc == FINAL and version.sublevel >= backport[0]:
        name = backport[1]
    return name


def policy_name_for(text: str) -> str:
    """The built-in policy name for a kernel release string (PolicyError if unreadable or too old)."""
    return explain(text).policy


@dataclass(frozen=True)
class Boundary:
    version: KernelVersion   # first version of the new era
    policy: str              # the era it starts
    basis: str               # the commit / release that makes it
    stable: bool             # a stable-branch backport (on major.minor.y) rather than a mainline row

    def where(self) -> str:
        v = self.version
        return f"{v.point} on {v.major}.{v.minor}.y" if self.stable else f"{v} in mainline"


def era_start(version: KernelVersion) -> Boundary:
    """The boundary that put `version` in its era."""
    backport = STABLE.get((version.major, version.minor))
    if backport and version.rc == FINAL and version.sublevel >= backport[0]:
        return Boundary(KernelVersion(version.major, version.minor, backport[0]), backport[1], backport[2], True)
    row = [r for r in MAINLINE if version >= r[0]][-1]
    return Boundary(row[0], row[1], row[2], False)


def next_boundary(version: KernelVersion) -> Boundary | None:
    """The boundary that ends `version`'s era: a later -rc of its own release, else its stable branch's
    backport, else the next mainline row of another era (None: the newest era)."""
    here = policy_at(version)
    final = KernelVersion(version.major, version.minor)
    if version.rc != FINAL:
        for first, policy, basis in MAINLINE:
            if version < first < final and policy != here:
                return Boundary(first, policy, basis, False)
    backport = STABLE.get((version.major, version.minor))
    if backport and (version.rc != FINAL or version.sublevel < backport[0]) and backport[1] != here:
        return Boundary(KernelVersion(version.major, version.minor, backport[0]), backport[1], backport[2], True)
    for first, policy, basis in MAINLINE:
        if first > final and policy != here:
            return Boundary(first, policy, basis, False)
    return None


# ------------------------------------------------------------------------------------------- explain


@dataclass
class Resolution:
    """How a kernel string was read and which era it falls in."""

    text: str
    distro: str                      # "upstream", "Debian", "Ubuntu", "RHEL", ...
    parsed: str                      # what was read, in words
    low: KernelVersion               # the lowest upstream version it can be
    high: KernelVersion | None       # the highest (== low: exact; None: any point release of low's branch)
    policy: str = ""
    start: Boundary | None = None
    end: Boundary | None = None
    warnings: list[str] = field(default_factory=list)
    declared: str | None = None      # a bundle's thp_policy file that overrides the release's era

    @property
    def exact(self) -> bool:
        return self.high == self.low

    def lines(self) -> list[str]:
        """The explanation `thpreplay policies --resolve` prints under the policy name."""
        out = [f"  parsed: {self.parsed}"]
        s, e = self.start, self.end
        if self.declared:
            out.append(f"  era: {self.policy}, declared by {self.declared} (a patched kernel; its release alone "
                       f"would be {s.policy})")
        else:
            out.append(f"  era: {self.policy} from {s.where()} ({s.basis})")
            out.append(f"  until: {e.where()}, {e.policy} ({e.basis})" if e else "  until: (the newest era)")
        out += [f"  warning: {w}" for w in self.warnings]
        return out


def _upstream(m: re.Match) -> KernelVersion:
    g = m.groupdict()
    sub = int(g["sub"]) if g.get("sub") else 0
    if g.get("rc") and not sub:
        return KernelVersion(int(g["major"]), int(g["minor"]), 0, int(g["rc"]))
    return KernelVersion(int(g["major"]), int(g["minor"]), sub)


def _read(text: str) -> Resolution:
    """Resolution without the era: which pattern, what upstream range."""
    clean = text.strip()
    for pat in TEXT_PATTERNS:
        m = pat.regex.search(clean)
        if not m:
            continue
        if pat.kind == "release":  # the rest of the line names no upstream version: read the release
            return _read(m.group("release"))
        up = _upstream(m)
        return Resolution(text, pat.distro, f"{pat.distro}, upstream {up.point} ({pat.meaning}: {m.group(0)!r})",
                          up, up)
    for pat in RELEASE_PATTERNS:
        m = pat.regex.fullmatch(clean)
        if m:
            return _from_release(text, clean, pat, m)
    raise PolicyError(f"cannot read kernel version {text!r}")


def _from_release(text: str, clean: str, pat: Pattern, m: re.Match) -> Resolution:
    g = m.groupdict()
    if pat.kind == "abi-unknown":
        base = parse_version(clean)
        return Resolution(text, "unknown", f"{clean}: a distribution ABI name, upstream {base}.x (point release "
                          "unknown)", base, None)
    major, minor = int(g["major"]), int(g["minor"])
    base = KernelVersion(major, minor)
    if pat.kind == "exact":
        up = _upstream(m)
        local = (g.get("local") or "").strip()
        what = (f"{pat.distro}, upstream {up.point}" if pat.distro != "upstream" else f"upstream {up.point}")
        return Resolution(text, pat.distro, what + (f" (local version {local!r} ignored)" if local else ""), up, up)
    if pat.kind == "series":
        return Resolution(text, "upstream", f"upstream {major}.{minor} (no point release given)", base, None)
    if pat.kind == "backports":
        up = _upstream(m)
        r = Resolution(text, pat.distro, f"{pat.distro} kernel {clean}, base release {up.point}", up, up)
        vendor = "RHEL" if pat.distro == "RHEL" else "SUSE"
        r.warnings.append(f"{vendor} backports heavily: {clean} is {up.point} plus many later changes; its THP "
                          "fault path may be a later era's (check the trace's THP gfp masks, or pass --policy)")
        return r
    abi = int(g["abi"])
    flavour = clean.rsplit(f"-{abi}-", 1)[-1]
    if pat.kind == "debian-abi":
        low, high, how = base, None, "upstream point release unknown"
        for point_abi, sub, source in DEBIAN_ABI.get((major, minor), ()):
            point = KernelVersion(major, minor, sub)
            if abi == point_abi:
                low = high = point
                how = f"upstream {point} ({source})"
            elif abi > point_abi and point > low:
                low, how = point, f"upstream {point} or later (ABI {point_abi} was {point}: {source})"
            elif abi < point_abi and (high is None or point < high) and low != high:
                high = point
                how = f"upstream {major}.{minor}.0 to {point} (ABI {point_abi} was {point}: {source})"
        return Resolution(text, "Debian", f"Debian ABI {major}.{minor}.0-{abi} ({flavour}): {how}", low, high)
    return Resolution(text, pat.distro, f"{pat.distro} ABI {major}.{minor}.0-{abi} ({flavour}): upstream "
                      f"{major}.{minor}.x, point release unknown", base, None)


def explain(text: str) -> Resolution:
    """Read a kernel string (a release, a distribution release, a /proc/version or version_signature line)
    and find its era: PolicyError if unreadable or older than every built-in policy."""
    r = _read(text)
    name = policy_at(r.low)
    if name is None:
        raise PolicyError(f"kernel {text.strip()} is older than every built-in policy (3.19, 077fcf116c8c)")
    r.policy = name
    r.start = era_start(r.low)
    r.end = next_boundary(r.low)
    if not r.exact and r.end is not None and r.end.stable and (r.high is None or r.end.version <= r.high):
        b = r.end
        before = KernelVersion(b.version.major, b.version.minor, b.version.sublevel - 1)
        how = WHERE_UPSTREAM.get(r.distro, WHERE_UPSTREAM[""]).format(branch=f"{r.low.major}.{r.low.minor}")
        r.warnings.append(f"{r.text.strip()} spans two eras: {name} up to {before.point}, {b.policy} from "
                          f"{b.version.point}; resolved as {r.low.point}: {how}")
    return r
