"""Runtime detection, what it must *not* report, and how a reported wait ends.

A try (``blocking=False``, ``timeout=0``) cannot wait, so it is no wait: no deadlock check, no
wait-for edge and no lock-order edge (lockdep's rule for trylock). A thread waiting for a plain
Lock it holds, while other threads live, may be using the Lock as a signal: its own check
leaves it alone, the watchdog reports it only once it has lasted. Every wait of a reported
cycle records its end (``deadlock_end``): who got the primitive, who gave up.

Each test with its clean (or buggy) twin. Threads are coordinated with events, barriers and
bounded polling of a state, never sleeps; every blocking call has a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import join_threads as _join
from helpers import prim_of, until
from helpers import start_thread as _start

import tracedsync
from tracedsync._core.waits import current
from tracedsync._detect import deadlock
from tracedsync.testing import capture

RawBarrier = threading.Barrier
LIMIT = 10.0


@pytest.fixture(autouse=True)
def _detection_settings() -> Iterator[None]:
    before = tracedsync.settings()
    yield
    tracedsync.configure(on_deadlock=before.on_deadlock, lock_order=before.lock_order)


def _waits_on(thread: threading.Thread, obj: Any) -> bool:
    w = current().get(thread.ident or 0)
    return w is not None and w.st.prim == prim_of(obj)


# -- tries -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"blocking": False}, {"timeout": 0}, {"timeout": 0.0}])
def test_a_try_on_a_lock_it_holds_is_no_deadlock(kwargs: dict[str, Any]) -> None:
    """``acquire(timeout=0)`` (or ``blocking=False``) of a Lock the thread holds fails at once,
    and is no wait: nothing is registered, no deadlock reported, even with on_deadlock="raise"."""
    tracedsync.configure(on_deadlock="raise")
    lock = tracedsync.Lock(name="held")
    with capture() as events, lock:
        assert lock.acquire(**kwargs) is False
    assert not events.where(event="deadlock")
    (failed,) = events.where(event="acquire", prim=prim_of(lock), ok=False)
    assert failed["wait_ns"] == 0


def test_a_blocking_acquire_of_a_lock_it_holds_is_one() -> None:
    """The twin: a timed acquire of a Lock the thread holds (no other thread) is a deadlock."""
    lock = tracedsync.Lock(name="held")
    with capture() as events, lock:
        assert lock.acquire(timeout=0.001) is False
    (ev,) = events.where(event="deadlock")
    assert ev["certain"] is True and [c["prim"] for c in ev["cycle"]] == [prim_of(lock)]


@pytest.mark.parametrize("kind", ["Semaphore", "BoundedSemaphore"])
def test_a_semaphore_try_is_no_deadlock(kind: str) -> None:
    """``acquire(timeout=0)`` of a semaphore whose permits this thread holds (what
    ThreadPoolExecutor does with its idle semaphore) is a try: no deadlock."""
    tracedsync.configure(on_deadlock="raise")
    sem = getattr(tracedsync, kind)(1, name="pool")
    with capture() as events, sem:
        assert sem.acquire(timeout=0) is False
        assert sem.acquire(blocking=False) is False
    assert not events.where(event="deadlock")
    assert [e["ok"] for e in events.where(event="sem_acquire")] == [True, False, False]


def test_a_timed_semaphore_acquire_is_a_wait() -> None:
    """The twin: with a timeout, the same acquire waits, and closes a cycle on itself."""
    sem = tracedsync.Semaphore(1, name="pool")
    with capture() as events, sem:
        assert sem.acquire(timeout=0.001) is False
    (ev,) = events.where(event="deadlock")
    assert ev["cycle"][0]["what"] == "sem_acquire"


def test_multiprocessing_tries_are_no_deadlock() -> None:
    """The same for multiprocessing's Lock and Semaphore (a timeout <= 0 is a try there)."""
    tracedsync.configure(on_deadlock="raise")
    lock = tracedsync.mp.Lock(name="mp")
    sem = tracedsync.mp.Semaphore(1, name="mpsem")
    with capture() as events, lock, sem:
        assert lock.acquire(timeout=0) is False
        assert lock.acquire(False) is False
        assert sem.acquire(timeout=0) is False
        assert sem.acquire(True, -1) is False
    assert not events.where(event="deadlock")


@pytest.mark.parametrize("kwargs", [{"blocking": False}, {"timeout": 0}])
def test_a_try_makes_no_lock_order_edge(kwargs: dict[str, Any]) -> None:
    """Holding A, a *try* of B makes no edge A→B: taking A while holding B later is no
    inversion (a thread that only tries B can never deadlock on it)."""
    tracedsync.configure(lock_order=True)
    a, b = tracedsync.Lock(name="a"), tracedsync.Lock(name="b")
    with capture() as events:
        with a:
            assert b.acquire(**kwargs)
            b.release()
        with b, a:
            pass
    assert not events.where(event="lock_order")


def test_a_blocking_acquire_makes_the_lock_order_edge() -> None:
    """The twin: a blocking (or timed) acquire of B while holding A makes A→B, and B then A
    is reported."""
    tracedsync.configure(lock_order=True)
    a, b = tracedsync.Lock(name="a"), tracedsync.Lock(name="b")
    with capture() as events:
        with a:
            assert b.acquire(timeout=1)
            b.release()
        with b, a:
            pass
    (ev,) = events.where(event="lock_order")
    assert (ev["held"], ev["prim"]) == (prim_of(b), prim_of(a))


# -- a Lock used as a signal ------------------------------------------------------------------
def _signal(lock: Any, released: list[bool], wait_for: Callable[[], object]) -> None:
    until(wait_for, "the signal's waiter to be where the test wants it")
    released.append(True)
    lock.release()


def test_a_lock_used_as_a_signal_is_no_deadlock() -> None:
    """The main thread holds a Lock and acquires it again; another thread releases it (a legal
    use of a plain Lock): its check reports nothing."""
    lock = tracedsync.Lock(name="signal")
    main = threading.current_thread()
    released: list[bool] = []
    with capture() as events:
        lock.acquire()
        t = _start(lambda: _signal(lock, released, lambda: _waits_on(main, lock)), "releaser")
        assert lock.acquire(timeout=LIMIT)
        lock.release()
        _join(t)
    assert released and not events.where(event="deadlock")
    assert not events.where(event="deadlock_end")


def test_a_signal_that_does_not_come_is_reported_and_its_end_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The twin: a signal wait that lasts (here: any wait, the threshold set to 0) is reported
    by the watchdog, as uncertain; when the signal does come, ``deadlock_end`` says it got the
    lock (so analyze drops the report)."""
    monkeypatch.setattr(deadlock, "SIGNAL_WAIT_NS", 0)
    lock = tracedsync.Lock(name="signal")
    released: list[bool] = []
    with capture() as events:
        lock.acquire()
        t = _start(lambda: _signal(lock, released, lambda: events.where(event="deadlock")),
                   "releaser")
        assert lock.acquire(timeout=LIMIT)
        lock.release()
        _join(t)
    (ev,) = events.where(event="deadlock")
    assert ev["detected_by"] == "watchdog" and ev["certain"] is False
    (end,) = events.where(event="deadlock_end")
    assert end["ok"] is True and end["prim"] == prim_of(lock) and end["what"] == "acquire"


# -- how a reported cycle ended ---------------------------------------------------------------
def test_a_deadlock_broken_by_a_timeout_records_who_gave_up() -> None:
    """AB-BA with timed acquires: one thread's timeout expires (it gives up, ok false) and the
    other then gets its lock (ok true); both ends are recorded with how long they waited."""
    a, b = tracedsync.Lock(name="a"), tracedsync.Lock(name="b")
    both = RawBarrier(2)
    got: dict[str, bool] = {}

    def one() -> None:  # short timeout: gives up
        with a:
            both.wait(LIMIT)
            until(lambda: _waits_on(t2, a), "two to block on a")
            got["one"] = b.acquire(timeout=0.05)

    def two() -> None:  # long timeout: gets a once one gives up and releases it
        with b:
            both.wait(LIMIT)
            got["two"] = a.acquire(timeout=LIMIT)
            if got["two"]:
                a.release()

    with capture() as events:
        t2 = _start(two, "two")
        t1 = _start(one, "one")
        _join(t1, t2)
    assert got == {"one": False, "two": True}
    (ev,) = events.where(event="deadlock")
    assert {c["prim"] for c in ev["cycle"]} == {prim_of(a), prim_of(b)}
    ends = {e["prim"]: e for e in events.where(event="deadlock_end")}
    assert ends[prim_of(b)]["ok"] is False and ends[prim_of(a)]["ok"] is True
    assert ends[prim_of(b)]["timeout"] == 0.05


def test_a_semaphore_wait_in_a_cycle_records_how_it_ended() -> None:
    """A timed acquire of a semaphore whose only permit this thread holds: a deadlock, and its
    end, given up (ok false)."""
    sem = tracedsync.Semaphore(1, name="one")
    with capture() as events, sem:
        assert sem.acquire(timeout=0.01) is False
    assert events.where(event="deadlock")
    (end,) = events.where(event="deadlock_end")
    assert end["ok"] is False and end["what"] == "sem_acquire" and end["timeout"] == 0.01
