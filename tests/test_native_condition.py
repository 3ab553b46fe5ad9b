"""A traced Condition's notify in C (_native_src/cond.c): every way of calling it behaves as
threading's and is counted the same; the common call writes the same record the Python path
writes, at the caller's line. The condition's records themselves are tested in
test_trace_condition.py (against both hot paths).
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Iterator

import pytest
from helpers import LIMIT, join_threads, outcome, prim_of, start_thread, until

import tracedsync
from tracedsync._core import native_kinds
from tracedsync._core.native import NATIVE
from tracedsync._threading.condition import TracedCondition
from tracedsync.testing import capture

pytestmark = pytest.mark.skipif(NATIVE is None, reason="the native recorder is not built")


@pytest.fixture()
def level() -> Iterator[None]:
    before = tracedsync.settings().level
    yield
    tracedsync.configure(level=before)


def test_the_c_and_python_kind_numbers_agree() -> None:
    assert NATIVE is not None and NATIVE.K_NOTIFY == native_kinds.K_NOTIFY


def test_notify_is_a_method_in_every_form() -> None:
    cond = tracedsync.Condition()
    bound = cond.notify
    assert bound.__self__ is cond and bound.__name__ == "_notify"
    assert list(inspect.signature(bound).parameters) == ["n"]
    assert TracedCondition.notify.__doc__ == inspect.getdoc(bound)
    with cond:
        bound()
        TracedCondition.notify(cond)
        cond.notify(1)
        cond.notify(n=1)
        cond.notify(2)
        cond.notify(0)
        with pytest.raises(TypeError):
            cond.notify(1, 2)  # type: ignore[call-arg]
    assert cond.statistics().notifies == 6 and cond.statistics().unheard_notifies == 6


@pytest.mark.parametrize("lvl", ["contention", "full"])
def test_counts_and_wakes_as_threading_does(lvl: str, level: None) -> None:
    tracedsync.configure(level=lvl)
    cond = tracedsync.Condition()
    ready: list[int] = []
    woke: list[bool] = []

    def waiter() -> None:
        with cond:
            ready.append(1)
            woke.append(cond.wait(LIMIT))

    threads = [start_thread(waiter, f"w{i}") for i in range(2)]
    until(lambda: len(ready) == 2 and len(cond._waiters) == 2,  # type: ignore[attr-defined]
          "both waiters inside wait()")
    with capture() as events:
        with cond:
            cond.notify()
            line = sys._getframe().f_lineno - 1
        until(lambda: len(woke) == 1, "one waiter woken")
        with cond:
            cond.notify()
        join_threads(*threads)
        with cond:
            cond.notify()
    assert woke == [True, True]
    st = cond.statistics()
    assert (st.notifies, st.unheard_notifies) == (3, 1)
    assert cond._ts_state.waiters == []  # type: ignore[attr-defined]
    notes = events.where(event="notify", prim=prim_of(cond))
    if lvl == "full":
        assert [e["waiters"] for e in notes] == [2, 1, 0]
        assert [len(e["woken"]) for e in notes] == [1, 1, 0]
        assert notes[0]["site"] == f"{__file__}:{line}"
    else:  # only the unheard one is recorded at contention, as the Python path does
        assert [e["waiters"] for e in notes] == [0]


def test_a_notify_without_the_lock_raises_threadings_error_and_is_misuse() -> None:
    cond = tracedsync.Condition()
    with capture() as events:
        got = outcome(lambda c: c.notify(), cond)
    assert got == outcome(lambda c: c.notify(), threading.Condition())
    assert got[0] == "raises" and got[1] is RuntimeError
    assert [m["what"] for m in events.where(event="misuse", prim=prim_of(cond))] == [
        "notify_unowned"]
    assert cond.statistics().notifies == 0
