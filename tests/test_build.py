"""The C extensions are in use where they were meant to build.

Both are optional (``optional=True`` in setup.py): without a compiler the install goes on and
the pure-Python code runs. A compile error fails just as silently, and every native-only test
then skips; so CI (``TRACEDSYNC_REQUIRE_NATIVE=1``, set by .ci/run where a C compiler exists)
fails here instead.
"""

from __future__ import annotations

import os
import sys

import pytest

from tracedsync._core.native import NATIVE
from tracedsync.analysis.native import kernel_class

REQUIRED = os.environ.get("TRACEDSYNC_REQUIRE_NATIVE") == "1"
PURE = bool(os.environ.get("TRACEDSYNC_PURE_PYTHON"))
FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()


@pytest.mark.skipif(not REQUIRED or PURE, reason="TRACEDSYNC_REQUIRE_NATIVE=1 not set (CI)")
def test_the_native_recorder_and_scanner_loaded() -> None:
    """The recorder's extension (not on a free-threaded build: it refuses those) and the
    analyzer's kernel both loaded."""
    if not FREE_THREADED:
        assert NATIVE is not None, "tracedsync._core._native did not build or load"
    assert kernel_class() is not None, "tracedsync.analysis._cscan did not build or load"
