"""The threading and multiprocessing twins of Event and Semaphore share their books and events:
the same events, with the call site on the user's own line, from either twin, and each twin's
own registration in the wait-for graph."""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tracedsync
import tracedsync.mp
from tracedsync._core import waits
from tracedsync.testing import capture

CTX = multiprocessing.get_context("spawn")  # any context will do in one process
RawEvent = threading.Event

EVENTS: dict[str, Callable[[], Any]] = {
    "threading": lambda: tracedsync.Event(),
    "multiprocessing": lambda: tracedsync.mp.Event(ctx=CTX),
}
SEMAPHORES: dict[str, Callable[[int], Any]] = {
    "threading": lambda n: tracedsync.Semaphore(n),
    "multiprocessing": lambda n: tracedsync.mp.Semaphore(n, ctx=CTX),
}
BOUNDED: dict[str, Callable[[int], Any]] = {
    "threading": lambda n: tracedsync.BoundedSemaphore(n),
    "multiprocessing": lambda n: tracedsync.mp.BoundedSemaphore(n, ctx=CTX),
}


def _next_line() -> str:
    """``file:line`` of the line after the caller's."""
    f = sys._getframe(1)
    return f"{f.f_code.co_filename}:{f.f_lineno + 1}"


def _prim(obj: Any) -> str:
    return str(obj.statistics().prim)


def _until(predicate: Callable[[], bool]) -> None:
    """Poll for a state the test waits for (not a duration), for at most 10 s."""
    pause = RawEvent()
    for _ in range(10_000):
        if predicate():
            return
        pause.wait(0.001)
    raise AssertionError("the awaited state never came")


@pytest.fixture
def registered() -> Iterator[list[tuple[str, float | None, int]]]:
    """Each entry into the wait-for graph while the test runs: (what, timeout, line)."""
    seen: list[tuple[str, float | None, int]] = []
    real = waits.register

    def spy(w: Any, **kwargs: Any) -> None:
        seen.append((w.what, w.timeout, w.frame.f_lineno))
        real(w, **kwargs)

    waits.register = spy  # type: ignore[assignment]
    try:
        yield seen
    finally:
        waits.register = real


# -- Event ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("twin", list(EVENTS))
def test_event_sites_are_the_callers_lines(twin: str) -> None:
    """set, clear and wait record the line that called them, with the same fields."""
    evt = EVENTS[twin]()
    with capture() as events:
        set_at = _next_line()
        evt.set()
        wait_at = _next_line()
        assert evt.wait(5) is True
        clear_at = _next_line()
        evt.clear()
        timeout_at = _next_line()
        assert evt.wait(0.001) is False
    seq = events.where(prim=_prim(evt))
    assert [(e["event"], e["site"]) for e in seq] == [
        ("event_set", set_at), ("event_wait", wait_at), ("event_clear", clear_at),
        ("event_wait", timeout_at),
    ]
    assert (seq[0]["was_set"], seq[2]["was_set"]) == (False, True)
    assert (seq[1]["result"], seq[1]["already_set"], seq[1]["timeout"]) == (True, True, 5)
    assert (seq[3]["result"], seq[3]["already_set"], seq[3]["timeout"]) == (False, False, 0.001)
    stats = evt.statistics()
    assert (stats.sets, stats.clears, stats.waits, stats.wait_timeouts) == (1, 1, 2, 1)


def _blocked(call: Callable[[], Any], registered: list[Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``call`` in a thread and return once it is in the wait-for graph (its results
    are in the list once the thread is joined)."""
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.append(call()))
    t.start()
    _until(lambda: bool(registered))
    return t, results


@pytest.mark.parametrize("twin", list(EVENTS))
def test_event_wait_blocked_records_the_waiters_line(
    twin: str, registered: list[tuple[str, float | None, int]],
) -> None:
    """A wait that blocked records already_set False at the waiting thread's line."""
    evt = EVENTS[twin]()
    with capture() as events:
        at = _next_line()
        t, results = _blocked(lambda: evt.wait(30), registered)
        evt.set()
        t.join(30)
    (wait,) = events.where(prim=_prim(evt), event="event_wait")
    assert results == [True] and wait["site"] == at and wait["already_set"] is False
    assert registered == [("event_wait", 30, int(at.rsplit(":", 1)[1]))]


@pytest.mark.parametrize("twin", list(EVENTS))
def test_event_bad_timeout_raises_the_originals_error(twin: str) -> None:
    """A timeout the real event refuses raises its error, unrecorded as an interruption."""
    evt = EVENTS[twin]()
    with capture() as events, pytest.raises(TypeError):
        evt.wait("x")
    assert events.where(prim=_prim(evt)) == []
    assert not any(e["event"] == "interrupted" for e in events)


def test_event_wait_graph_registration_differs_between_twins(
    registered: list[tuple[str, float | None, int]],
) -> None:
    """threading's twin enters the wait-for graph only when the flag is clear (about to
    block); multiprocessing's enters it on every wait. Both at the caller's line."""
    evt, mp_evt = tracedsync.Event(), tracedsync.mp.Event(ctx=CTX)
    evt.set()
    mp_evt.set()
    evt.wait(1)
    line = sys._getframe().f_lineno + 1
    mp_evt.wait(1)
    assert registered == [("event_wait", 1, line)]
    registered.clear()
    evt.clear()
    mp_evt.clear()
    line = sys._getframe().f_lineno + 1
    evt.wait(0.001)
    mp_evt.wait(0.001)
    assert registered == [("event_wait", 0.001, line), ("event_wait", 0.001, line + 1)]
    assert not waits.WAITS


# -- Semaphore ------------------------------------------------------------------------------------
@pytest.mark.parametrize("twin", list(SEMAPHORES))
def test_semaphore_sites_are_the_callers_lines(twin: str) -> None:
    """with, acquire (uncontended, non-blocking, timed out) and release: the caller's line."""
    sem = SEMAPHORES[twin](1)
    with capture() as events:
        with_at = _next_line()
        with sem:
            pass
        acquire_at = _next_line()
        sem.acquire()
        failed_at = _next_line()
        assert sem.acquire(False) is False
        timeout_at = _next_line()
        assert sem.acquire(True, 0.001) is False
        release_at = _next_line()
        sem.release()
    # (the timed acquire of its own permit is also a reported deadlock, and its end)
    seq = [e for e in events.where(prim=_prim(sem)) if e["event"] != "deadlock_end"]
    assert [(e["event"], e["site"]) for e in seq] == [
        ("sem_acquire", with_at), ("sem_release", with_at), ("sem_acquire", acquire_at),
        ("sem_acquire", failed_at), ("sem_acquire", timeout_at), ("sem_release", release_at),
    ]
    fields = [(e["ok"], e["contended"], e["permits"], e["held"], e["blocking"], e["timeout"])
              for e in seq if e["event"] == "sem_acquire"]
    assert fields == [(True, False, 0, 1, True, None), (True, False, 0, 1, True, None),
                      (False, True, 0, 1, False, None), (False, True, 0, 1, True, 0.001)]
    assert [(e["n"], e["permits"], e["held"], e["for_others"])
            for e in seq if e["event"] == "sem_release"] == [(1, 1, 0, 0), (1, 1, 0, 0)]
    stats = sem.statistics()
    assert (stats.acquisitions, stats.failed, stats.contended, stats.releases) == (2, 2, 2, 2)


@pytest.mark.parametrize("twin", list(SEMAPHORES))
def test_contended_acquire_records_the_waiters_line(
    twin: str, registered: list[tuple[str, float | None, int]],
) -> None:
    """A blocked acquire is in the wait-for graph (at its own line, with its timeout) and
    records contended at that line."""
    sem = SEMAPHORES[twin](1)
    sem.acquire()
    with capture() as events:
        at = _next_line()
        t, results = _blocked(lambda: sem.acquire(True, 30), registered)
        sem.release()
        t.join(30)
    assert results == [True]
    assert registered == [("sem_acquire", 30, int(at.rsplit(":", 1)[1]))]
    (acquired,) = events.where(prim=_prim(sem), event="sem_acquire")
    (released,) = events.where(prim=_prim(sem), event="sem_release")
    assert acquired["site"] == at and acquired["timeout"] == 30
    assert acquired["contended"] is True and acquired["ok"] is True and acquired["held"] == 1
    assert (released["held"], released["for_others"]) == (0, 0)
    assert not waits.WAITS


@pytest.mark.parametrize("twin", list(BOUNDED))
def test_over_release_is_misuse_at_the_callers_line(twin: str) -> None:
    """Releasing a full BoundedSemaphore raises the original's ValueError; misuse at the line."""
    sem = BOUNDED[twin](1)
    with capture() as events:
        with pytest.raises(ValueError):
            release_at = _next_line()
            sem.release()
        with pytest.raises(ValueError):
            exit_at = _next_line()
            sem.__exit__(None, None, None)
    misuse = events.where(prim=_prim(sem), event="misuse")
    assert [(e["what"], e["site"]) for e in misuse] == [("over_release", release_at),
                                                      ("over_release", exit_at)]
    assert sem.statistics().misuse == 2


def test_release_n_takes_from_the_other_holders() -> None:
    """threading's release(n) past the caller's own permits takes the rest from the others."""
    sem = tracedsync.Semaphore(3)
    done = RawEvent()

    def holder() -> None:
        sem.acquire()
        sem.acquire()
        done.set()

    t = threading.Thread(target=holder)
    t.start()
    t.join(30)
    assert done.is_set()
    sem.acquire()
    with capture() as events:
        at = _next_line()
        sem.release(3)
    (rel,) = events.where(prim=_prim(sem))
    assert (rel["n"], rel["held"], rel["for_others"], rel["site"]) == (3, 0, 2, at)
    assert sem.statistics().held_by == ()
