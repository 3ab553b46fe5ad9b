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
