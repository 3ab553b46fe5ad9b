"""Only the optional C extensions live here; everything else is in pyproject.toml.

``tracedsync._core._native`` is the native recorder: the traced Lock and RLock, per-thread
binary records and the renderer that writes them as JSON lines (docs/architecture.md);
``tracedsync.analysis._cscan`` the analyzer's acquire/release kernel. Both are optional: without
a compiler (or, for the recorder, on a free-threaded interpreter) the build goes on and the
pure-Python code is used.
"""

import glob
import sys

from setuptools import Extension, setup

extra = [] if sys.platform == "win32" else ["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function",
                                             "-fvisibility=hidden"]

setup(
    ext_modules=[
        Extension(
            "tracedsync._core._native",
            sources=sorted(glob.glob("tracedsync/_core/_native_src/*.c")),
            depends=["tracedsync/_core/_native_src/native.h"],
            extra_compile_args=extra,
            optional=True,
        ),
        Extension(
            "tracedsync.analysis._cscan",
            sources=["tracedsync/analysis/_scan.c"],
            extra_compile_args=["-O2"] if sys.platform != "win32" else [],
            optional=True,
        ),
    ],
)
