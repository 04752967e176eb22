"""C parts of thpreplay.

- thpreplay.sim._engine, the replay core (required: the simulator has no pure-Python fallback, a
  per-event Python loop would be ~100x slower).
- thpreplay.parse._prefix, an optional helper for the line prefix. If it cannot be built, the package
  installs without it and ingest uses its pure-polars path (same results, slower).
- thpreplay.parse._tracedat, the optional trace.dat reader's record renderer.
- thpreplay.parse._perfdata, the optional perf.data reader.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "thpreplay.sim._engine",
            ["pipeline/thpreplay/sim/_engine.c"],
            # one translation unit: _engine.c #includes the model's files, split along the kernel's
            # (page_alloc.c, vmscan.c, compaction.c); listed here so that a change to one rebuilds it
            depends=[f"pipeline/thpreplay/sim/{f}" for f in ("engine.h", "page_alloc.c", "vmscan.c", "compaction.c")],
            extra_compile_args=["-O2"],
        ),
        Extension(
            "thpreplay.parse._prefix",
            ["pipeline/thpreplay/parse/_prefix.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        # the trace.dat record renderer (parse/tracedat.py); without it a trace.dat is read through
        # `trace-cmd report`
        Extension(
            "thpreplay.parse._tracedat",
            ["pipeline/thpreplay/parse/_tracedat.c"],
            depends=["pipeline/thpreplay/parse/tpprog.h"],   # the numeric programs' arithmetic, with _perfdata.c
            extra_compile_args=["-O2"],
            optional=True,
        ),
        # the perf.data reader (parse/perfdata.py); it loads libtraceevent and libzstd at run time, so it
        # builds without their headers. Without it a perf.data is read through `perf script`
        Extension(
            "thpreplay.parse._perfdata",
            ["pipeline/thpreplay/parse/_perfdata.c"],
            depends=["pipeline/thpreplay/parse/tpprog.h"],
            extra_compile_args=["-O2"],
            libraries=["dl"],
            optional=True,
        ),
    ]
)
