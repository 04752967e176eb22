"""The command line's values converted without pydantic (thpreplay/_cli_values.py) are the objects typer's
own adapters give, and what they leave to typer (numbers typed by the user, bad values) says what typer
says; a command given only strings, paths and flags does not import pydantic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import get_origin

import pytest

# a typer that converts values another way: install() changes nothing, and there is nothing to compare
_coercion = pytest.importorskip("typer._coercion")
from typer import core  # noqa: E402
from typer._click.exceptions import BadParameter  # noqa: E402
from typer.models import ArgumentInfo, OptionInfo  # noqa: E402

from thpreplay import _cli_values

_cli_values.install()


def _convert(build, annotation, info, value):
    """(type, value) typer's runtime parameter made by build gives, or ('error', message)."""
    descriptor = _coercion.resolve_type_descriptor(annotation, info)
    param = SimpleNamespace(multiple=get_origin(annotation) is list, nargs=1, get_error_hint=lambda *ctx: "'--x'")
    try:
        got = build(descriptor).coerce(value, param=param, ctx=None)
    except BadParameter as e:
        return ("error", e.format_message())
    return (type(got), [type(v) for v in got] if isinstance(got, list) else None, got)


def _typers_own():
    # the original, kept by install() in its closure
    for cell in core.build_runtime_param.__closure__ or ():
        if callable(cell.cell_contents) and getattr(cell.cell_contents, "__name__", "") == "build_runtime_param":
            return cell.cell_contents
    raise AssertionError("install() did not wrap typer's build_runtime_param")


CASES = [
    (str, OptionInfo(), "no-local-reclaim-7.0"),
    (str, OptionInfo(), "x\udcffy"),  # a non-UTF-8 byte of argv
    (str, OptionInfo(), ""),
    (str, OptionInfo(), None),
    (bool, OptionInfo(), False),
    (bool, OptionInfo(), None),
    (Path, ArgumentInfo(), "/tmp/dataset"),
    (Path, ArgumentInfo(), "rel/dir/"),
    (Path, ArgumentInfo(), ""),
    (Path, ArgumentInfo(), "x\udcffy"),
    (Path, OptionInfo(), None),
    (list[str], OptionInfo(), ("a", "b")),
    (list[str], OptionInfo(), ()),
    (list[str], OptionInfo(), None),
    (list[Path], OptionInfo(), ("d1", "d2/")),
    (float, OptionInfo(), 0.10),  # a default
    (float, OptionInfo(), "0.25"),  # typed: typer's adapter
    (float, OptionInfo(), "1_0"),
    (float, OptionInfo(), "abc"),
    (float, OptionInfo(), None),
    (int, OptionInfo(), 5),
    (int, OptionInfo(), "7"),
    (int, OptionInfo(), "1.5"),
    (int, OptionInfo(min=1), 0),
    (int, OptionInfo(min=1), "0"),
    (int, OptionInfo(min=1), 2),
]


@pytest.mark.parametrize("annotation,info,value", CASES, ids=[f"{a}-{v!r}" for a, _, v in CASES])
def test_same_objects_and_messages_as_typer(annotation, info, value):
    assert _convert(core.build_runtime_param, annotation, info, value) == \
        _convert(_typers_own(), annotation, info, value)


def test_a_path_typer_refuses_is_refused_in_its_words(tmp_path):
    (tmp_path / "f").write_text("")
    info = OptionInfo(dir_okay=False)
    assert _convert(core.build_runtime_param, Path, info, str(tmp_path)) == \
        _convert(_typers_own(), Path, info, str(tmp_path)) == \
        ("error", f"Invalid value for '--x': file '{tmp_path}' is a directory.")


def _modules_after(args: list[str]) -> tuple[int, str]:
    code = ("import sys\nfrom thpreplay.cli import main\nsys.argv = ['thpreplay', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print(code, 'pydantic' in sys.modules, file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k != "THPREPLAY_DEBUG"}
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    return p.stderr.splitlines()[-1], p.stderr


def test_string_and_path_values_do_not_import_pydantic(tmp_path):
    last, _ = _modules_after(["schema", "page_alloc"])
    assert last == "0 False"
    last, err = _modules_after(["simulate", str(tmp_path / "none"), "--policy", "x", "-q"])
    assert last == "1 False", err  # not a dataset: one line, exit 1, and no pydantic on the way


def test_a_number_typed_by_the_user_is_typers_to_check(tmp_path):
    last, err = _modules_after(["validate", str(tmp_path), "--tolerance", "abc"])
    assert last == "2 True"
    assert "Invalid value for '--tolerance'" in err
