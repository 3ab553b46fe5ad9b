"""Only the optional C extensions live here; everything else is in pyproject.toml.

``tracedsync._core._speedups`` is the C twin of the traced locks' uncontended hot path;
``tracedsync.analysis._cscan`` the analyzer's acquire/release kernel. Both are optional: without
a compiler the build goes on and the pure-Python code is used.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("tracedsync._core._speedups", sources=["tracedsync/_core/_speedups.c"], optional=True),
        Extension(
            "tracedsync.analysis._cscan",
            sources=["tracedsync/analysis/_scan.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ],
)
