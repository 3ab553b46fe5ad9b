"""The native recorder (``tracedsync._core._native``), if it can be used here.

It is an optional C extension (docs/architecture.md, "The native recorder"): without a compiler,
on a free-threaded interpreter, or with ``TRACEDSYNC_PURE_PYTHON=1``, `NATIVE` is None and the
pure-Python twin records instead. `install` connects it to the rest of the core; it is called
once, by `tracedsync._wiring`.
"""

from __future__ import annotations

import _thread
import os
import threading
from types import ModuleType
from typing import Any


def _load() -> ModuleType | None:
    if os.environ.get("TRACEDSYNC_PURE_PYTHON"):
        return None
    try:
        from . import _native
    except ImportError:
        return None
    return _native


NATIVE: ModuleType | None = _load()
"""The extension module, or None where the pure-Python twin is used."""

LOCK_TYPES: tuple[type, ...] = (
    () if NATIVE is None else (NATIVE.NativeLock, NATIVE.NativeRLock)
)
"""The native lock types (each lock is its own state object)."""


def install() -> None:
    """Connect the extension to the runtime (hooks it calls back) and set its skip policy."""
    if NATIVE is None:
        return
    from . import native_kinds, ops, registry, runtime, sites, state, waits

    op_codes = {name: getattr(ops, name) for name in dir(ops) if name.startswith("OP_")}
    NATIVE.install(runtime, waits, sites, state.Statistics, registry.new_native,
                   state.report_stats, op_codes, type(_thread.allocate_lock()),
                   type(threading.RLock()), _thread.allocate_lock)
    NATIVE.set_ops(ops.OP_ACQUIRE, ops.OP_RELEASE)
    native_kinds.install(NATIVE)
    prefixes, files = sites.skip_policy()
    NATIVE.set_skip(prefixes, files)
    NATIVE.set_level(runtime.level)


def native() -> Any:
    """The extension module (for callers that checked `NATIVE` is not None)."""
    return NATIVE
