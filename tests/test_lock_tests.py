"""The contract: CPython's own lock tests (``test.lock_tests``) against every traced primitive.

The matrix. Each traced threading primitive (Lock, RLock, Condition, also as an RLock,
``threading.Condition`` over a traced RLock, Semaphore, BoundedSemaphore, Event, Barrier) and
each traced multiprocessing one (``tracedsync.mp``: Lock, RLock, Condition, Semaphore,
BoundedSemaphore, Event, Barrier; against the lock tests that apply to multiprocessing's own
primitives, see `MP_NOT_APPLICABLE`) runs CPython's tests in every *cell*: a level (``full``,
``contention``, ``off``) with lock-order checking off or on. Each cell is a set of generated
classes (``TestLock_full``, ``TestMpRLock_off_order``...) whose ``setUpClass`` configures the
cell and whose ``tearDownClass`` puts the previous settings back.

The other axis, the hot path (C or pure Python), is chosen when tracedsync is imported
(``TRACEDSYNC_PURE_PYTHON=1``), so it is one per process: ``tests/lock_matrix.py`` (``make
lock-matrix``, part of ``make test``) runs this file once per path and cell, several at a time.

Environment:

* ``TRACEDSYNC_LOCK_TESTS_CELLS``: the cells to generate, comma-separated (``full``,
  ``contention``, ``off``, ``full_order``, ``contention_order``, ``off_order``), or ``all``
  (the default).
* ``TRACEDSYNC_REQUIRE_LOCK_TESTS=1`` (set by CI): where the standard library's ``test``
  package is missing, fail instead of skipping. Without it a machine without that package (the
  official Docker images, Debian's python3 without ``libpython3.X-testsuite``) skips this file
  with a message saying so.

These tests check behaviour only (that the traced classes are drop-ins), not the trace.
"""

from __future__ import annotations

import os
import unittest
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

import tracedsync
import tracedsync.mp
from tracedsync._threading.locks import SPEEDUPS, wrap_lock

ENV_CELLS = "TRACEDSYNC_LOCK_TESTS_CELLS"
ENV_REQUIRE = "TRACEDSYNC_REQUIRE_LOCK_TESTS"

CELLS: dict[str, tuple[str, bool]] = {
    "full": ("full", False),
    "contention": ("contention", False),
    "off": ("off", False),
    "full_order": ("full", True),
    "contention_order": ("contention", True),
    "off_order": ("off", True),
}
"""Cell name -> (level, lock_order)."""

PATH = "C" if SPEEDUPS else "pure"
"""The hot path of this process."""


def selected_cells(environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """The cells ``TRACEDSYNC_LOCK_TESTS_CELLS`` names (default: all of them)."""
    raw = environ.get(ENV_CELLS, "").strip()
    if not raw or raw == "all":
        return list(CELLS)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in CELLS]
    if unknown:
        raise pytest.UsageError(
            f"{ENV_CELLS}: unknown cell(s) {', '.join(unknown)}; known: {', '.join(CELLS)}, all"
        )
    return names


try:
    from test import lock_tests
except ImportError as exc:
    _MISSING = (
        f"CPython's test package is not installed ({exc}): the lock-test contract was NOT "
        "checked. Install it (Debian/Ubuntu: the libpython3.X-testsuite package; pyenv and "
        "python.org builds include it) to run these tests."
    )
    if os.environ.get(ENV_REQUIRE) == "1":
        pytest.fail(f"{ENV_REQUIRE}=1: {_MISSING}", pytrace=False)
    pytest.skip(_MISSING, allow_module_level=True)


class _Cell(unittest.TestCase):
    """Configures the cell's level and lock-order checking around the class's tests."""

    level: ClassVar[str] = "full"
    lock_order: ClassVar[bool] = False
    _before: ClassVar[tracedsync.Settings]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls._before = tracedsync.settings()
        tracedsync.configure(level=cls.level, lock_order=cls.lock_order)

    @classmethod
    def tearDownClass(cls) -> None:
        tracedsync.configure(level=cls._before.level, lock_order=cls._before.lock_order)
        super().tearDownClass()

    def setUp(self) -> None:
        now = tracedsync.settings()
        assert (now.level, now.lock_order) == (self.level, self.lock_order), now
        super().setUp()


def _skip(reason: str) -> Callable[[Any], None]:
    def test(self: unittest.TestCase) -> None:
        self.skipTest(reason)

    return test


def _threading_cond_over_traced(lock: Any = None) -> Any:
    return __import__("threading").Condition(
        wrap_lock(tracedsync.RLock() if lock is None else lock)
    )


_NO_RECURSION_COUNT = "Condition does not expose _recursion_count() (as in CPython's own tests)"

THREADING_CASES: list[tuple[str, type, dict[str, Any]]] = [
    ("Lock", lock_tests.LockTests, {"locktype": staticmethod(tracedsync.Lock)}),
    ("RLock", lock_tests.RLockTests, {"locktype": staticmethod(tracedsync.RLock)}),
    # A Condition exports its RLock's API, as in CPython's ConditionAsRLockTests.
    ("ConditionAsRLock", lock_tests.RLockTests, {
        "locktype": staticmethod(tracedsync.Condition),
        "test_recursion_count": _skip(_NO_RECURSION_COUNT),
    }),
    # Over a traced RLock by default, over the test's own (real) lock where it passes one.
    ("Condition", lock_tests.ConditionTests, {"condtype": staticmethod(tracedsync.Condition)}),
    ("ThreadingConditionOverTracedRLock", lock_tests.ConditionTests,
     {"condtype": staticmethod(_threading_cond_over_traced)}),
    ("Semaphore", lock_tests.SemaphoreTests, {"semtype": staticmethod(tracedsync.Semaphore)}),
    ("BoundedSemaphore", lock_tests.BoundedSemaphoreTests,
     {"semtype": staticmethod(tracedsync.BoundedSemaphore)}),
    ("Event", lock_tests.EventTests, {"eventtype": staticmethod(tracedsync.Event)}),
    ("Barrier", lock_tests.BarrierTests, {"barriertype": staticmethod(tracedsync.Barrier)}),
]

# What multiprocessing's own primitives do differently from threading's, so that the lock test
# fails against the original as well (checked against the originals on 3.10 to 3.13). Those
# tests say nothing about tracing; every other lock test runs.
_REPR = "multiprocessing's repr is not threading's ('<Lock(owner=...)>')"
_NO_TIMEOUT_CHECK = ("multiprocessing's acquire(False, timeout) and negative timeouts raise no "
                     "ValueError")
_RLOCK_ERRORS = ("multiprocessing's RLock raises AssertionError, not RuntimeError, on a release "
                 "it does not own")
_NO_THREADING_INTERNALS = "multiprocessing's locks have no threading-only internals"
_RLOCK_NOT_APPLICABLE = {
    "test_different_thread": _RLOCK_ERRORS,
    "test_release_unacquired": _RLOCK_ERRORS,
    "test_repr": _REPR,
    "test_locked_repr": _REPR,
    "test_timeout": _NO_TIMEOUT_CHECK,
    "test__is_owned": _NO_THREADING_INTERNALS + " (_is_owned)",
    "test_recursion_count": _NO_THREADING_INTERNALS + " (_recursion_count)",
    "test_release_save_unacquired": _NO_THREADING_INTERNALS + " (_release_save)",
}
_SEM_NOT_APPLICABLE = {
    "test_repr": _REPR,
    "test_acquire_timeout": _NO_TIMEOUT_CHECK,
    "test_multirelease": "multiprocessing's Semaphore.release() takes no count",
    "test_constructor": "multiprocessing's Semaphore(-1) raises OSError, not ValueError",
}
MP_NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "Lock": {
        "test_repr": _REPR,
        "test_locked_repr": _REPR,
        "test_timeout": _NO_TIMEOUT_CHECK,
        "test_at_fork_reinit": _NO_THREADING_INTERNALS + " (_at_fork_reinit)",
        "test_state_after_timeout": "multiprocessing's Lock has no locked()",
    },
    "RLock": _RLOCK_NOT_APPLICABLE,
    "ConditionAsRLock": _RLOCK_NOT_APPLICABLE,
    "Condition": {
        "test_unacquired_wait": "multiprocessing's Condition raises AssertionError, not "
                                "RuntimeError, on a wait without the lock",
        "test_unacquired_notify": "multiprocessing's Condition raises AssertionError, not "
                                  "RuntimeError, on a notify without the lock",
    },
    "Semaphore": _SEM_NOT_APPLICABLE,
    "BoundedSemaphore": _SEM_NOT_APPLICABLE,
    "Event": {
        "test_repr": _REPR,
        "test_at_fork_reinit": _NO_THREADING_INTERNALS + " (_at_fork_reinit)",
        "test_set_and_clear": "multiprocessing's Event.wait() returns the flag as it is when the "
                              "waiter wakes, so a set() soon followed by clear() returns False",
    },
    "Barrier": {
        "test_repr": _REPR,
        "test_constructor": "multiprocessing's Barrier(0) raises no ValueError",
    },
}

MP_CASES: list[tuple[str, type, dict[str, Any]]] = [
    ("Lock", lock_tests.LockTests, {"locktype": staticmethod(tracedsync.mp.Lock)}),
    ("RLock", lock_tests.RLockTests, {"locktype": staticmethod(tracedsync.mp.RLock)}),
    ("ConditionAsRLock", lock_tests.RLockTests,
     {"locktype": staticmethod(tracedsync.mp.Condition)}),
    ("Condition", lock_tests.ConditionTests, {"condtype": staticmethod(tracedsync.mp.Condition)}),
    ("Semaphore", lock_tests.SemaphoreTests, {"semtype": staticmethod(tracedsync.mp.Semaphore)}),
    ("BoundedSemaphore", lock_tests.BoundedSemaphoreTests,
     {"semtype": staticmethod(tracedsync.mp.BoundedSemaphore)}),
    ("Event", lock_tests.EventTests, {"eventtype": staticmethod(tracedsync.mp.Event)}),
    ("Barrier", lock_tests.BarrierTests, {"barriertype": staticmethod(tracedsync.mp.Barrier)}),
]


def _generate(cells: list[str]) -> dict[str, type]:
    """The test classes of ``cells``, by name."""
    out: dict[str, type] = {}
    for cell in cells:
        level, order = CELLS[cell]
        for prefix, cases, not_applicable in (
            ("Test", THREADING_CASES, {}),
            ("TestMp", MP_CASES, MP_NOT_APPLICABLE),
        ):
            for kind, base, body in cases:
                attrs: dict[str, Any] = {
                    "level": level,
                    "lock_order": order,
                    "__module__": __name__,
                    "__qualname__": f"{prefix}{kind}_{cell}",
                    **body,
                }
                for test, reason in not_applicable.get(kind, {}).items():
                    if hasattr(base, test):
                        attrs[test] = _skip(reason)
                name = f"{prefix}{kind}_{cell}"
                out[name] = type(name, (_Cell, base), attrs)
    return out


GENERATED = _generate(selected_cells())
globals().update(GENERATED)


def test_the_matrix_is_generated() -> None:
    """Every selected cell has a class per traced primitive, and the cells configure what they
    say (the generated classes are what pytest collects above)."""
    cells = selected_cells()
    assert len(GENERATED) == len(cells) * (len(THREADING_CASES) + len(MP_CASES))
    for cls in GENERATED.values():
        assert issubclass(cls, _Cell) and (cls.level, cls.lock_order) in CELLS.values()
