"""Only the optional C extension lives here; everything else is in pyproject.toml.

``tracedsync._core._speedups`` is the C twin of the traced locks' uncontended hot path. It is
optional: without a compiler the build goes on and the pure-Python methods are used.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("tracedsync._core._speedups", sources=["tracedsync/_core/_speedups.c"], optional=True),
    ],
)
