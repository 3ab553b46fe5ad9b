"""The trace of Event: who set and cleared it, and whether each wait found it set."""

from __future__ import annotations

import threading

import pytest
from helpers import prim_of, until

import tracedsync
from tracedsync._core import runtime as rt
from tracedsync.testing import capture

RawEvent = threading.Event
RawCondition = threading.Condition
RawLockType = type(threading.Lock())


def test_set_and_clear_are_recorded_with_the_previous_flag() -> None:
    """set(), a second set() and clear() record was_set False, True, True."""
    evt = tracedsync.Event(name="ready")
    with capture() as events:
        evt.set()
        evt.set()
        evt.clear()
    seq = events.where(prim=prim_of(evt))
    assert [(e["event"], e["was_set"]) for e in seq] == [
        ("event_set", False), ("event_set", True), ("event_clear", True),
    ]
    assert all(e["tid"] == threading.get_native_id() for e in seq)
    assert all(e["site"].startswith(__file__ + ":") for e in seq)
    stats = evt.statistics()
    assert (stats.sets, stats.clears, stats.flag) == (2, 1, False)


def test_created_event_names_kind() -> None:
    """Creation records kind Event and the name."""
    with capture() as events:
        evt = tracedsync.Event(name="ready")
    (created,) = events.where(event="created", prim=prim_of(evt))
    assert created["kind"] == "Event" and created["name"] == "ready"


def test_wait_on_an_event_already_set() -> None:
    """A wait that finds the flag set records already_set=True and result=True."""
    evt = tracedsync.Event()
    evt.set()
    with capture() as events:
        assert evt.wait(10) is True
    (wait,) = events.where(prim=prim_of(evt), event="event_wait")
    assert wait["already_set"] is True and wait["result"] is True and wait["timeout"] == 10
    assert wait["site"].startswith(__file__ + ":")


def test_wait_that_blocked_until_set() -> None:
    """A thread blocked in wait() records already_set=False and result=True once set."""
    evt = tracedsync.Event()
    worker_tid: list[int] = []
    results: list[bool] = []

    def worker() -> None:
        worker_tid.append(threading.get_native_id())
        results.append(evt.wait(10))

    with capture() as events:
        t = threading.Thread(target=worker)
        t.start()
        until(lambda: len(evt._cond._waiters) == 1)
        evt.set()
        t.join(10)
    assert results == [True]
    (wait,) = events.where(prim=prim_of(evt), event="event_wait")
    assert wait["tid"] == worker_tid[0]
    assert wait["already_set"] is False and wait["result"] is True
    assert isinstance(wait["waited_ns"], int)
    (setter,) = events.where(prim=prim_of(evt), event="event_set")
    assert setter["tid"] == threading.get_native_id()


def test_wait_that_times_out() -> None:
    """A wait that times out records result=False and is counted."""
    evt = tracedsync.Event()
    with capture() as events:
        assert evt.wait(0.01) is False
    (wait,) = events.where(prim=prim_of(evt), event="event_wait")
    assert wait["result"] is False and wait["already_set"] is False and wait["timeout"] == 0.01
    stats = evt.statistics()
    assert stats.waits == 1 and stats.wait_timeouts == 1


def test_contention_level_writes_only_waits_that_blocked(level: None) -> None:
    """At level contention sets, clears and waits on a set event are not written."""
    evt = tracedsync.Event()
    tracedsync.configure(level="contention")
    with capture() as events:
        evt.set()
        assert evt.wait(10) is True
        evt.clear()
        assert evt.wait(0.01) is False
    seq = events.where(prim=prim_of(evt))
    assert [(e["event"], e["result"]) for e in seq] == [("event_wait", False)]
    stats = evt.statistics()
    assert (stats.sets, stats.clears, stats.waits) == (1, 1, 2)


def test_stats_event_carries_the_event_fields() -> None:
    """A collected event's stats event has sets, clears and flag, and no semaphore fields."""
    import gc

    evt = tracedsync.Event()
    prim = prim_of(evt)
    with capture() as events:
        evt.set()
        del evt
        gc.collect()
    (stats,) = events.where(event="stats", prim=prim)
    assert (stats["sets"], stats["clears"], stats["flag"]) == (1, 0, True)
    assert "permits" not in stats and "parties" not in stats


def test_is_set_and_fork_reinit_behave_like_threading() -> None:
    """is_set() answers from the real event; _at_fork_reinit keeps a plain Lock inside."""
    evt = tracedsync.Event()
    assert evt.is_set() is False
    evt.set()
    assert evt.is_set() is True
    evt._at_fork_reinit()
    assert type(evt._cond._lock) is RawLockType
    with pytest.warns(DeprecationWarning):
        assert evt.isSet() is True


def test_internals_are_untraced_even_when_threading_is_patched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Condition and Lock inside the real event stay raw under a patched threading."""
    monkeypatch.setattr(threading, "Lock", tracedsync.Lock)
    monkeypatch.setattr(threading, "Condition", tracedsync.Condition)
    evt = tracedsync.Event()
    assert type(evt._cond) is RawCondition
    assert type(evt._cond._lock) is RawLockType


def test_factory_returns_a_raw_event_under_the_guard() -> None:
    """Inside tracedsync's own machinery Event() is threading's."""
    rt.guard.on = True
    try:
        assert type(tracedsync.Event()) is RawEvent
    finally:
        rt.guard.on = False
