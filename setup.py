"""The optional C helper for the line prefix (thpreplay.parse._prefix). If it cannot be built, the
package installs without it and ingest uses its pure-polars path (same results, slower)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "thpreplay.parse._prefix",
            ["pipeline/thpreplay/parse/_prefix.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
