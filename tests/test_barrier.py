"""The trace of Barrier: indices, and who broke it and why (timeout, abort, action, reset)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from helpers import prim_of, until

import tracedsync
from tracedsync._core import runtime as rt
from tracedsync.testing import Captured, capture

RawBarrier = threading.Barrier
RawCondition = threading.Condition
RawLockType = type(threading.Lock())
Broken = threading.BrokenBarrierError


class _Waiter:
    """A thread that waits once at ``barrier`` and keeps its outcome and native id."""

    def __init__(self, barrier: Any, timeout: float = 10) -> None:
        self.outcome: list[Any] = []
        self.tid: list[int] = []
        self._barrier = barrier
        self._timeout = timeout
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        self.tid.append(threading.get_native_id())
        try:
            self.outcome.append(self._barrier.wait(self._timeout))
        except BaseException as exc:
            self.outcome.append(type(exc))

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()


def _broken(events: Captured, barrier: Any) -> list[dict[str, Any]]:
    return events.where(prim=prim_of(barrier), event="barrier_broken")


def test_each_pass_records_its_index() -> None:
    """Three threads passing record indices 0, 1 and 2, the parties and the timeout."""
    barrier = tracedsync.Barrier(3, name="phase")
    with capture() as events:
        waiters = [_Waiter(barrier) for _ in range(2)]
        mine = barrier.wait(10)
        for w in waiters:
            w.join()
    indices = sorted([mine] + [w.outcome[0] for w in waiters])
    assert indices == [0, 1, 2]
    passes = events.where(prim=prim_of(barrier), event="barrier_wait")
    assert sorted(e["index"] for e in passes) == [0, 1, 2]
    assert {e["parties"] for e in passes} == {3}
    assert {e["timeout"] for e in passes} == {10}
    (own,) = [e for e in passes if e["tid"] == threading.get_native_id()]
    assert own["index"] == mine and own["site"].startswith(__file__ + ":")
    stats = barrier.statistics()
    assert stats.waits == 3 and stats.broken_waits == 0 and stats.parties == 3


def test_default_timeout_is_the_one_recorded() -> None:
    """A wait without a timeout records the barrier's default timeout."""
    barrier = tracedsync.Barrier(1, timeout=5)
    with capture() as events:
        assert barrier.wait() == 0
    (e,) = events.where(prim=prim_of(barrier), event="barrier_wait")
    assert e["timeout"] == 5 and e["index"] == 0


def test_created_event_carries_parties_and_timeout() -> None:
    """Creation records kind Barrier, parties and the default timeout."""
    with capture() as events:
        barrier = tracedsync.Barrier(4, timeout=2.5, name="b")
    (created,) = events.where(event="created", prim=prim_of(barrier))
    assert (created["kind"], created["parties"], created["timeout"]) == ("Barrier", 4, 2.5)


def test_broken_by_own_timeout_then_found_broken() -> None:
    """The thread whose wait times out broke it; a later arrival finds it broken by that thread."""
    barrier = tracedsync.Barrier(2)
    with capture() as events:
        with pytest.raises(Broken):
            barrier.wait(0.01)
        with pytest.raises(Broken):
            barrier.wait(10)
    first, later = _broken(events, barrier)
    me = threading.get_native_id()
    assert (first["broken_by"], first["why"], first["timeout"]) == (me, "timeout", 0.01)
    assert (later["broken_by"], later["why"], later["timeout"]) == (me, "timeout", 10)
    assert isinstance(first["waited_ns"], int) and "error" not in first
    stats = barrier.statistics()
    assert (stats.breaks, stats.broken_waits, stats.wait_timeouts, stats.broken) == (1, 2, 1, True)


def test_waiter_learns_which_thread_timed_out() -> None:
    """A thread waiting when another's timeout breaks the barrier names that thread."""
    barrier = tracedsync.Barrier(3)
    with capture() as events:
        waiter = _Waiter(barrier)
        until(lambda: barrier.n_waiting == 1)
        with pytest.raises(Broken):
            barrier.wait(0.01)  # the third party never comes
        waiter.join()
    assert waiter.outcome == [Broken]
    (victim,) = [e for e in _broken(events, barrier) if e["tid"] == waiter.tid[0]]
    assert victim["broken_by"] == threading.get_native_id()
    assert victim["why"] == "timeout"
    assert victim["timeout"] == 10


def test_abort_names_the_aborting_thread() -> None:
    """abort() records barrier_abort and barrier_broken; the waiter names the aborting thread."""
    barrier = tracedsync.Barrier(2)
    me = threading.get_native_id()
    with capture() as events:
        waiter = _Waiter(barrier)
        until(lambda: barrier.n_waiting == 1)
        barrier.abort()
        waiter.join()
        barrier.abort()  # already broken: recorded, but it breaks nothing new
    assert waiter.outcome == [Broken]
    aborts = events.where(prim=prim_of(barrier), event="barrier_abort")
    assert [(a["n_waiting"], a["was_broken"], a["tid"]) for a in aborts] == [
        (1, False, me), (0, True, me),
    ]
    broken = _broken(events, barrier)
    assert {(e["tid"], e["broken_by"], e["why"]) for e in broken} == {
        (me, me, "abort"), (waiter.tid[0], me, "abort"),
    }
    (own,) = [e for e in broken if e["tid"] == me]
    assert "waited_ns" not in own
    stats = barrier.statistics()
    assert (stats.aborts, stats.breaks, stats.broken_waits) == (2, 1, 1)


def test_failing_action_breaks_the_barrier() -> None:
    """The thread whose action raised gets that exception; both name it, why='action'."""

    def action() -> None:
        raise ValueError("boom")

    barrier = tracedsync.Barrier(2, action=action)
    me = threading.get_native_id()
    with capture() as events:
        waiter = _Waiter(barrier)
        until(lambda: barrier.n_waiting == 1)
        with pytest.raises(ValueError, match="boom"):
            barrier.wait(10)  # the last to arrive runs the action
        waiter.join()
    assert waiter.outcome == [Broken]
    broken = _broken(events, barrier)
    assert {e["tid"] for e in broken} == {me, waiter.tid[0]}
    for e in broken:
        assert (e["broken_by"], e["why"], e["error"]) == (me, "action", "ValueError('boom')")
    stats = barrier.statistics()
    assert (stats.breaks, stats.broken_waits, stats.wait_timeouts) == (1, 2, 0)


def test_reset_breaks_current_waiters() -> None:
    """reset() with a thread waiting: the waiter names the resetting thread, why='reset'."""
    barrier = tracedsync.Barrier(2)
    with capture() as events:
        waiter = _Waiter(barrier)
        until(lambda: barrier.n_waiting == 1)
        barrier.reset()
        waiter.join()
    assert waiter.outcome == [Broken]
    (reset,) = events.where(prim=prim_of(barrier), event="barrier_reset")
    assert (reset["n_waiting"], reset["was_broken"]) == (1, False)
    (victim,) = _broken(events, barrier)
    assert (victim["broken_by"], victim["why"]) == (threading.get_native_id(), "reset")
    stats = barrier.statistics()
    assert (stats.resets, stats.breaks, stats.broken) == (1, 0, False)


def test_contention_level_skips_the_tripping_wait(level: None) -> None:
    """At level contention the last arrival's wait (it never blocks) and resets are not written."""
    barrier = tracedsync.Barrier(1)
    tracedsync.configure(level="contention")
    with capture() as events:
        assert barrier.wait(10) == 0
        barrier.reset()
        barrier.abort()
    assert events.names(prim=prim_of(barrier)) == ["barrier_abort", "barrier_broken"]
    assert barrier.statistics().waits == 1


def test_properties_and_repr_are_the_real_barriers() -> None:
    """parties, n_waiting, broken come from the real barrier; repr keeps its shape."""
    barrier = tracedsync.Barrier(3, name="b")
    assert (barrier.parties, barrier.n_waiting, barrier.broken) == (3, 0, False)
    r = repr(barrier)
    assert r.startswith("<threading.Barrier") and f"traced={prim_of(barrier)}" in r
    assert "name='b'" in r


def test_internals_are_untraced_even_when_threading_is_patched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Condition and Lock inside the real barrier stay raw under a patched threading."""
    monkeypatch.setattr(threading, "Lock", tracedsync.Lock)
    monkeypatch.setattr(threading, "Condition", tracedsync.Condition)
    barrier = tracedsync.Barrier(2)
    assert type(barrier._cond) is RawCondition
    assert type(barrier._cond._lock) is RawLockType


def test_factory_returns_a_raw_barrier_under_the_guard() -> None:
    """Inside tracedsync's own machinery Barrier() is threading's."""
    rt.guard.on = True
    try:
        assert type(tracedsync.Barrier(2)) is RawBarrier
    finally:
        rt.guard.on = False


def test_a_timeout_is_counted_as_one_timeout_by_the_tables(tmp_path: Any) -> None:
    """A barrier broken by one thread's timeout while another waited: analyze's table and the
    summary count one timed-out wait (they said "timeouts 0"), not the woken waiter's."""
    import json

    from tracedsync.analysis.analyze import analyze
    from tracedsync.analysis.report import build_report
    from tracedsync.analysis.summary import render_text, summarise

    with capture() as events:
        barrier = tracedsync.Barrier(3, name="gate")
        waiter = _Waiter(barrier)
        until(lambda: barrier.n_waiting == 1)
        with pytest.raises(Broken):
            barrier.wait(0.01)  # the third party never comes
        waiter.join()
    log = tmp_path / "tracedsync-1.jsonl"
    header = {"event": "session", "ts": 0, "pid": events[0]["pid"], "tid": 0, "schema": 1}
    log.write_text("".join(json.dumps(e) + "\n" for e in [header, *events]), encoding="utf-8")
    (row,) = [r for r in build_report(analyze([str(tmp_path)])).primitives
              if r.label.startswith("gate ")]
    assert row.other_events.get("barrier_broken") == 2
    assert row.other_timeouts == 1
    (s,) = [s for s in summarise(events).values() if s.name == "gate"]
    assert (s.waits, s.wait_timeouts) == (2, 1)
    assert "2 (1 timed out)" in render_text(summarise(events))
