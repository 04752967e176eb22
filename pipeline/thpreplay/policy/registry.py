"""Find policies: every entry point of the group `thpreplay.policies`, built-ins included.

The built-ins are declared in thpreplay's own pyproject.toml exactly like a third-party plugin, so both
go through the same loader. Order is deterministic: built-ins in era order, then plugins by name. A plugin
that fails to import or is not a valid policy stops loading with a one-line PolicyError naming it.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from importlib.metadata import entry_points
from typing import Any

from thpreplay.errors import InputError
from thpreplay.policy import versions
from thpreplay.policy.base import Attempt, Policy, PolicyError, Slowpath, ThpSettings
from thpreplay.policy.builtin import BUILTINS

GROUP = "thpreplay.policies"
_TEXT_ATTRS = ("name", "title", "kernels", "simplifications", "default_defrag")


def _entry_points() -> Iterable[Any]:
    """The installed entry points of the group (tests replace this with fakes)."""
    return entry_points(group=GROUP)


def _check(ep_name: str, obj: Any) -> None:
    """Raise ValueError or TypeError with a short reason if obj is not usable as a policy."""
    for attr in _TEXT_ATTRS:
        if not isinstance(getattr(obj, attr, None), str) or not getattr(obj, attr):
            raise ValueError(f"missing or empty attribute {attr!r}")
    commits = getattr(obj, "commits", None)
    if not isinstance(commits, tuple) or not commits or not all(isinstance(c, str) and c for c in commits):
        raise TypeError("'commits' must be a non-empty tuple of strings")
    if not isinstance(getattr(obj, "slowpath", None), Slowpath):
        raise TypeError("'slowpath' must be a thpreplay.policy.Slowpath")
    if not callable(getattr(obj, "attempts", None)):
        raise ValueError("missing method 'attempts'")
    if obj.name != ep_name:
        raise ValueError(f"policy is named {obj.name!r}; the entry point must have the same name")
    # One call with the era's own default settings must work and return attempts.
    result = obj.attempts(ThpSettings(enabled="always", defrag=obj.default_defrag), True)
    if not isinstance(result, tuple) or not all(isinstance(a, Attempt) for a in result):
        raise TypeError("attempts() must return a tuple of thpreplay.policy.Attempt")


def load_policies(eps: Iterable[Any]) -> list[Policy]:
    """Load and check the given entry points (objects with .name, .value and .load()).

    Returns built-ins in era order, then the others by entry-point name. Raises PolicyError on an entry
    point that cannot be imported, is not a valid policy, or repeats a name.
    """
    loaded: dict[str, Any] = {}
    for ep in sorted(eps, key=lambda e: e.name):
        try:
            obj = ep.load()
            _check(ep.name, obj)
        except Exception as e:  # a plugin's bug: one line, not a traceback
            reason = str(e).splitlines()[0] if str(e) else ""
            raise PolicyError(f"policy plugin {ep.name!r} ({ep.value}): {type(e).__name__}: {reason}".rstrip(": ")) from e
        if obj.name in loaded:
            raise PolicyError(f"policy {obj.name!r} is registered twice (entry point {ep.value})")
        loaded[obj.name] = obj
    era = {p.name: i for i, p in enumerate(BUILTINS)}
    return sorted(loaded.values(), key=lambda p: (0, era[p.name]) if is_builtin(p) else (1, p.name))


@functools.cache
def _installed() -> tuple[Policy, ...]:
    return tuple(load_policies(_entry_points()))


def clear_cache() -> None:
    """Forget the loaded policies (after installing a plugin, or in tests)."""
    _installed.cache_clear()


def is_builtin(policy: Policy) -> bool:
    """Whether the policy is one of thpreplay's own (plugins need not have a `builtin` attribute)."""
    return any(policy is p for p in BUILTINS)


def all_policies() -> list[Policy]:
    """Every installed policy: built-ins in era order, then plugins by name."""
    return list(_installed())


_BUILTIN_NAMES = {p.name: p for p in BUILTINS}


def get_policy(name: str) -> Policy:
    """The installed policy called `name`; PolicyError listing the known names if there is none. A
    built-in's name is answered without loading the plugins (reading every installed package's entry
    points is 10-30 ms of a command's start); a plugin that takes a built-in's name is refused wherever
    the plugins are loaded (`thpreplay policies`, any other name)."""
    if name in _BUILTIN_NAMES:
        return _BUILTIN_NAMES[name]
    for p in _installed():
        if p.name == name:
            return p
    known = ", ".join(p.name for p in _installed())
    raise PolicyError(f"unknown policy {name!r} (known: {known})")


def resolve_kernel(version: str) -> Policy:
    """The built-in policy of a kernel release, e.g. '5.3-rc4', '6.1.0-50-amd64' (see versions.py; its
    warnings: explain_kernel)."""
    return get_policy(versions.explain(version).policy)


# A bundle's (or a dataset's snapshots/) files that name the kernel, most telling first: /proc/version
# has Debian's upstream version, kernel_version is record's reading of it, kernel_release is uname -r.
KERNEL_FILES = ("proc_version", "kernel_version", "kernel_release")
_MAX_KERNEL_FILE = 1 << 16


def _looks_like_path(arg: str) -> bool:
    return "/" in arg or (os.path.exists(arg) and not re.match(r"v?\d+\.\d+", arg))


def _small_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_KERNEL_FILE + 1)
    except OSError as e:
        raise InputError(str(path), f"cannot read: {e.strerror}") from None
    if len(data) > _MAX_KERNEL_FILE or b"\0" in data:
        raise InputError(str(path), "not a kernel version file (binary, or larger than 64 KiB)")
    return data.decode("utf-8", "replace")


def explain_kernel(arg: str) -> versions.Resolution:
    """versions.explain() of a kernel string, or of a bundle or dataset directory or a file holding one
    (proc_version, kernel_version, kernel_release). A bundle's thp_policy (a patched kernel) overrides the
    era its release gives, and says so."""
    if not _looks_like_path(arg):
        return versions.explain(arg)
    path = Path(arg)
    if path.is_dir():
        where = path / "snapshots" if (path / "dataset.json").is_file() else path
        found = [where / name for name in KERNEL_FILES if (where / name).is_file()]
        if not found:
            raise InputError(str(path), f"names no kernel (no {', '.join(KERNEL_FILES)})")
        source = found[0]
    elif path.is_file():
        where, source = path.parent, path
    else:
        raise InputError(str(path), "no such file or directory")
    text = _small_text(source)
    try:
        r = versions.explain(text)
    except PolicyError as e:
        raise InputError(str(source), e.message) from None
    r.parsed = f"{source}: {r.parsed}"
    declared = where / "thp_policy" if path.is_dir() else None
    if declared is not None and declared.is_file():
        name = _small_text(declared).strip()
        get_policy(name)
        if name != r.policy:
            r.policy, r.declared, r.warnings = name, str(declared), []
    return r
