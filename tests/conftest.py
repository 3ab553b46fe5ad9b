"""Shared fixtures: logs go to a temporary directory; the flusher is running before any test."""

from __future__ import annotations

import faulthandler
import os
import sys
import tempfile
from collections.abc import Iterator

import pytest

import tracedsync

faulthandler.enable(file=sys.stderr)

_LOG_DIR = tempfile.mkdtemp(prefix="tracedsync-test-logs-")


def pytest_configure(config: pytest.Config) -> None:
    tracedsync.configure(log_dir=_LOG_DIR, level="full")
    # Start this process's flusher now: CPython's lock_tests count threads around each test.
    with tracedsync.Lock():
        pass
    tracedsync.flush()


def pytest_unconfigure(config: pytest.Config) -> None:
    # The session's own log (every test's events) is large and of no use afterwards.
    import shutil

    tracedsync.flush()
    shutil.rmtree(_LOG_DIR, ignore_errors=True)


@pytest.fixture
def log_dir() -> str:
    """The directory the test session's own process logs to."""
    return _LOG_DIR


@pytest.fixture
def level() -> Iterator[None]:
    """Restore the level after a test that changes it."""
    before = tracedsync.settings()
    yield
    tracedsync.configure(level=before.level, overflow=before.overflow,
                         buffer_limit=before.buffer_limit)


@pytest.fixture
def fresh_dir(tmp_path: object) -> str:
    return os.fspath(tmp_path)  # type: ignore[arg-type]


# -- nothing left patched ------------------------------------------------------------------------
_PATCHABLE = ("Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier")


def _patchable_now() -> dict[str, object]:
    import multiprocessing
    import multiprocessing.context
    import threading

    now: dict[str, object] = {}
    for name in _PATCHABLE:
        now[f"threading.{name}"] = getattr(threading, name)
    for name in (*_PATCHABLE, "Value", "Array"):
        now[f"multiprocessing.{name}"] = getattr(multiprocessing, name)
        now[f"BaseContext.{name}"] = vars(multiprocessing.context.BaseContext).get(name)
    return now


_ORIGINALS = _patchable_now()


def _left_patched() -> list[str]:
    from tracedsync._patch import patcher as _patch

    now = _patchable_now()
    changed = [k for k, v in _ORIGINALS.items() if now[k] is not v]
    if _patch.is_patched():
        changed.append("tracedsync._patch.patcher (a patch is in force)")
    return changed


@pytest.fixture(autouse=True)
def _nothing_left_patched() -> Iterator[None]:
    """Every test starts and ends with threading and multiprocessing unpatched."""
    before = _left_patched()
    if before:
        tracedsync.unpatch()
        pytest.fail(f"patched before the test: {before}")
    yield
    after = _left_patched()
    if after:
        tracedsync.unpatch()
        pytest.fail(f"left patched by the test: {after}")
