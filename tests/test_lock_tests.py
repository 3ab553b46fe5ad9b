"""CPython's own lock tests (test.lock_tests), bound to the traced primitives.

These check behaviour only (that the traced classes are drop-ins), not the trace. They are
skipped cleanly where the standard library's ``test`` package is not installed.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tracedsync
from tracedsync._threading.locks import wrap_lock

lock_tests = pytest.importorskip("test.lock_tests", reason="CPython's test package is absent")


def _threading_cond_over_traced(lock: Any = None) -> Any:
    return threading.Condition(wrap_lock(tracedsync.RLock() if lock is None else lock))


class TestTracedLock(lock_tests.LockTests):  # type: ignore[misc,name-defined]
    locktype = staticmethod(tracedsync.Lock)


class TestTracedRLock(lock_tests.RLockTests):  # type: ignore[misc,name-defined]
    locktype = staticmethod(tracedsync.RLock)


class TestTracedConditionAsRLock(lock_tests.RLockTests):  # type: ignore[misc,name-defined]
    """A Condition exports its RLock's API, as in CPython's ConditionAsRLockTests."""

    locktype = staticmethod(tracedsync.Condition)

    def test_recursion_count(self) -> None:
        self.skipTest("Condition does not expose _recursion_count()")


class TestTracedCondition(lock_tests.ConditionTests):  # type: ignore[misc,name-defined]
    """Over a traced RLock by default, over a real Lock (wrapped) where the test passes one."""

    condtype = staticmethod(tracedsync.Condition)


class TestThreadingConditionOverTracedRLock(lock_tests.ConditionTests):  # type: ignore[misc,name-defined]
    condtype = staticmethod(_threading_cond_over_traced)


class TestTracedSemaphore(lock_tests.SemaphoreTests):  # type: ignore[misc,name-defined]
    semtype = staticmethod(tracedsync.Semaphore)


class TestTracedBoundedSemaphore(lock_tests.BoundedSemaphoreTests):  # type: ignore[misc,name-defined]
    semtype = staticmethod(tracedsync.BoundedSemaphore)


class TestTracedEvent(lock_tests.EventTests):  # type: ignore[misc,name-defined]
    eventtype = staticmethod(tracedsync.Event)


class TestTracedBarrier(lock_tests.BarrierTests):  # type: ignore[misc,name-defined]
    barriertype = staticmethod(tracedsync.Barrier)


class _AtContention:
    """Run the tests at level contention: the books are kept, only contention is recorded."""

    def setUp(self) -> None:
        self._level_before = tracedsync.settings().level
        tracedsync.configure(level="contention")
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        try:
            super().tearDown()  # type: ignore[misc]
        finally:
            tracedsync.configure(level=self._level_before)


class TestTracedSemaphoreAtContention(_AtContention, lock_tests.SemaphoreTests):  # type: ignore[misc,name-defined]
    semtype = staticmethod(tracedsync.Semaphore)


class TestTracedBoundedSemaphoreAtContention(_AtContention, lock_tests.BoundedSemaphoreTests):  # type: ignore[misc,name-defined]
    semtype = staticmethod(tracedsync.BoundedSemaphore)


class TestTracedEventAtContention(_AtContention, lock_tests.EventTests):  # type: ignore[misc,name-defined]
    eventtype = staticmethod(tracedsync.Event)


class TestTracedBarrierAtContention(_AtContention, lock_tests.BarrierTests):  # type: ignore[misc,name-defined]
    barriertype = staticmethod(tracedsync.Barrier)
