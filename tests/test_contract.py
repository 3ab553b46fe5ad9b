"""What the contract matrix rests on: the C hot path is really the one tested where it can be
built, and the lock tests cannot vanish from a CI run without failing it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import clean_env

from tracedsync._threading import locks

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def c_compiler() -> str | None:
    """The C compiler this Python builds extensions with, if it is installed along with
    Python's headers; else None."""
    cc = sysconfig.get_config_var("CC")
    if not cc:
        return None
    found = shutil.which(shlex.split(cc)[0])
    header = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    return found if found and os.path.exists(header) else None


def test_the_c_hot_path_is_loaded_where_a_compiler_exists() -> None:
    """With a compiler, the install builds the native recorder (tracedsync._core._native) and
    the traced locks are its C types. TRACEDSYNC_PURE_PYTHON=1 keeps the pure-Python twin."""
    if os.environ.get("TRACEDSYNC_PURE_PYTHON"):
        assert locks.SPEEDUPS is False
        twin = locks._twin()
        assert locks.TracedLock is twin.PyTracedLock
        assert type(vars(twin._TracedLockBase)["acquire"]).__name__ == "function"
        return
    if c_compiler() is None:
        pytest.skip("no C compiler with Python's headers here: the pure-Python path is used")
    assert locks.SPEEDUPS is True, (
        "a C compiler exists but the native recorder did not load: reinstall (pip install -e .) "
        "and look for a build error"
    )
    for cls in (locks.TracedLock, locks.TracedRLock):
        for name in ("acquire", "release", "__enter__", "__exit__"):
            assert type(getattr(cls, name)).__name__ == "method_descriptor", (cls, name)


FAKE_TEST_PACKAGE = '"""Stands in for a standard library without its test package."""\n'


def _lock_tests_without_the_test_package(
    tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "fake"
    (fake / "test").mkdir(parents=True)
    (fake / "test" / "__init__.py").write_text(FAKE_TEST_PACKAGE, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/test_lock_tests.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
        env=clean_env("PYTEST_ADDOPTS", PYTHONPATH=str(fake), **env),
    )


def test_a_missing_test_package_is_a_skip_that_says_so(tmp_path: Path) -> None:
    """On a user's machine without CPython's test package the lock tests are skipped, and the
    skip says that the contract was not checked and how to get the package."""
    proc = _lock_tests_without_the_test_package(tmp_path)
    # 5: pytest's "no tests ran", the status of a run whose only module was skipped
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout
    assert "lock-test contract was NOT checked" in proc.stdout


def test_a_missing_test_package_fails_where_required(tmp_path: Path) -> None:
    """With TRACEDSYNC_REQUIRE_LOCK_TESTS=1 (CI) the same run fails."""
    proc = _lock_tests_without_the_test_package(tmp_path, TRACEDSYNC_REQUIRE_LOCK_TESTS="1")
    assert proc.returncode not in (0, 5), proc.stdout + proc.stderr
    assert "TRACEDSYNC_REQUIRE_LOCK_TESTS=1" in proc.stdout
    assert "lock-test contract was NOT checked" in proc.stdout


def _matrix_without_the_test_package(
    tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "fake"
    (fake / "test").mkdir(parents=True, exist_ok=True)
    (fake / "test" / "__init__.py").write_text(FAKE_TEST_PACKAGE, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "tests/lock_matrix.py", "--cells", "full", "--paths", "pure"],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
        env=clean_env("PYTEST_ADDOPTS", PYTHONPATH=str(fake), **env),
    )


def test_the_matrix_runner_skips_or_fails_without_the_test_package(tmp_path: Path) -> None:
    """``make lock-matrix`` on a machine without the test package: a skip that says so; with
    TRACEDSYNC_REQUIRE_LOCK_TESTS=1 (CI), a failure."""
    proc = _matrix_without_the_test_package(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lock-test contract was NOT checked" in proc.stdout
    proc = _matrix_without_the_test_package(tmp_path, TRACEDSYNC_REQUIRE_LOCK_TESTS="1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 passed, 0 skipped, 1 failed" in proc.stdout
