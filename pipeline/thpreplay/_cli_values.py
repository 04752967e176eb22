"""Command-line values converted without pydantic where typer's conversion is the identity.

typer (0.2x) converts every parameter's value with a pydantic TypeAdapter: importing pydantic and
building the adapters is 0.1-0.2 s of every command's start-up, a fifth of a second `thpreplay simulate`
(issue 16). Most of thpreplay's values are strings, paths and flags, which those adapters return as
given (a str as the same str, a Path made from it, a list as a list of them). Those are converted here
to the same objects, by typer's own path function; any other value (a number or text typed for a
number, a list of another type, a value the path function refuses) goes to typer's adapter, built on
first use, so its conversion and its error messages stay typer's. With a typer that converts values in
another way, install() changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

_SLOW = object()


def install() -> None:
    try:
        from typer import _coercion, core
        from typer._param_types import coerce_cli_path
    except ImportError:
        return
    build = getattr(core, "build_runtime_param", None)
    base = getattr(_coercion, "RuntimeParam", None)
    if build is None or base is None or getattr(build, "thpreplay_lazy", False):
        return

    def path_value(value: Any, info: Any, param: Any, ctx: Any) -> Any:
        if type(value) is not str:
            return _SLOW
        try:  # typer's adapter gives coerce_cli_path pydantic's Path(value), which is Path(value)
            return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
        except Exception:  # noqa: BLE001 (typer's own adapter says it, in its words)
            return _SLOW

    def fast(annotation: Any, info: Any, value: Any, param: Any, ctx: Any) -> Any:
        if getattr(info, "parser", None) is not None:
            return _SLOW
        if annotation is str:
            return value if type(value) is str else _SLOW
        if annotation is bool:
            return value if type(value) is bool else _SLOW
        if annotation in (int, float):  # a default of the declared type; a typed number goes to pydantic
            plain = getattr(info, "min", None) is None and getattr(info, "max", None) is None
            return value if plain and type(value) is annotation else _SLOW
        if annotation is Path and getattr(info, "path_type", None) is None:
            return path_value(value, info, param, ctx)
        if get_origin(annotation) is list and isinstance(value, (list, tuple)):
            (item,) = get_args(annotation) or (None,)
            if item not in (str, Path):
                return _SLOW
            out = [fast(item, info, v, param, ctx) for v in value]
            return _SLOW if any(v is _SLOW for v in out) else out
        return _SLOW

    @dataclass(frozen=True)
    class LazyRuntimeParam(base):
        descriptor: Any = None
        built: list = field(default_factory=list)  # typer's own RuntimeParam, once one was needed

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            got = fast(self.annotation, self.parameter_info, value, param, ctx)
            if got is not _SLOW:
                return got
            if not self.built:
                self.built.append(build(self.descriptor))
            return self.built[0]._coerce_value(value, param=param, ctx=ctx)

    def lazy_build(descriptor: Any) -> Any:
        if getattr(descriptor, "file_annotation", None) is not None:
            return build(descriptor)
        return LazyRuntimeParam(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation,
                                descriptor=descriptor)

    lazy_build.thpreplay_lazy = True
    core.build_runtime_param = lazy_build
