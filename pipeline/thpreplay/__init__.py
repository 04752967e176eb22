"""thpreplay: replay Linux page-allocation traces through per-kernel-era THP policies.

The Python API (docs/python-api.md), for notebooks and scripts:

    import thpreplay as tp
    ds = tp.ingest("sample_traces/qemu-6.1-2node", "out/qemu-6.1-2node", force=True)
    ds.simulate(policies=["local-only-4.8", "relaxed-5.3-rc5"])
    ds.sql("select policy, thp_coverage from outcome_summary")
"""

import sys
import types

from thpreplay.errors import InputError, OutputError, RecordError, SchemaError, ThpreplayError

__version__ = "0.1.0"

# The API's names are loaded on first use (api.py imports polars and DuckDB): the command line, which
# imports this package for every command, does not pay for them.
_API = ("Dataset", "Sweep", "open", "ingest", "open_sweep", "sweep", "policies")

__all__ = [*_API, "ThpreplayError", "InputError", "OutputError", "RecordError", "SchemaError", "__version__"]


# `thpreplay.ingest` and `thpreplay.sweep` are also the modules of those commands, and importing a
# submodule sets the package's attribute to it. So that `tp.ingest(...)` is the API's function whether or
# not the module was imported, and `from thpreplay import sweep` still gives the module, those two
# modules are made callable: calling one calls the API's function of its name.
_CALLABLE_MODULES = ("ingest", "sweep")


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from thpreplay import api

        return getattr(api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        if name in _CALLABLE_MODULES and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _CALLABLE_MODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")  # made callable as it is set (_Package)
    if name in _API:
        from thpreplay import api

        return getattr(api, name)
    raise AttributeError(f"module 'thpreplay' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
