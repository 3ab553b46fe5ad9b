"""Traced multiprocessing Condition, Semaphore, BoundedSemaphore, Event and Barrier, in one
process (threads as the parties): multiprocessing's behaviour, and their events."""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import outcome, prim_of, until

import tracedsync
import tracedsync.mp
from tracedsync.testing import capture

CTX = multiprocessing.get_context("spawn")  # any context will do in one process
RawEvent = threading.Event


def _untraced_repr(r: str) -> str:
    return re.sub(r" traced=\S+?(?=[>:])", "", re.sub(r"0x[0-9a-f]+", "0x", r))


def _outcome(op: Callable[[Any], Any], obj: Any) -> tuple[Any, ...]:
    return outcome(op, obj, _untraced_repr)


def _release_twice(sem: Any) -> Any:
    sem.acquire()
    sem.release()
    return sem.release()


def _notify_unlocked(c: Any) -> Any:
    return c.notify()


def _wait_unlocked(c: Any) -> Any:
    return c.wait(0)


def _wait_timeout(c: Any) -> Any:
    with c:
        return c.wait(0.001)


def _wait_for_true(c: Any) -> Any:
    with c:
        return c.wait_for(lambda: 42, 0.001)


def _wait_for_false(c: Any) -> Any:
    with c:
        return c.wait_for(lambda: 0, 0.001)


OPS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "semaphore acquire/release": ("Semaphore", lambda s: (s.acquire(), s.release(), s.get_value())),
    "semaphore non-blocking empty": ("Semaphore", lambda s: (s.acquire(), s.acquire(False))),
    "semaphore timeout": ("Semaphore", lambda s: (s.acquire(), s.acquire(True, 0.001))),
    "semaphore repr": ("Semaphore", repr),
    "semaphore pickle": ("Semaphore", pickle.dumps),
    "semaphore bad timeout": ("Semaphore", lambda s: s.acquire(timeout="x")),
    "bounded over-release": ("BoundedSemaphore", _release_twice),
    "bounded repr": ("BoundedSemaphore", repr),
    "condition wait timeout": ("Condition", _wait_timeout),
    "condition wait_for true": ("Condition", _wait_for_true),
    "condition wait_for false": ("Condition", _wait_for_false),
    "condition wait unlocked": ("Condition", _wait_unlocked),
    "condition notify unlocked": ("Condition", _notify_unlocked),
    "condition repr": ("Condition", repr),
    "condition copy": ("Condition", copy.copy),
    "event": ("Event", lambda e: (e.is_set(), e.set(), e.is_set(), e.wait(0), e.clear(),
                                  e.wait(0.001))),
    "event repr": ("Event", lambda e: repr(e).split(" at ")[0]),
    "barrier of one": ("Barrier", lambda b: (b.wait(), b.parties, b.n_waiting, b.broken)),
    "barrier abort": ("Barrier", lambda b: (b.abort(), b.broken)),
    "barrier reset": ("Barrier", lambda b: (b.abort(), b.reset(), b.broken)),
    "barrier repr": ("Barrier", repr),
}


def _make(kind: str, module: Any, **kwargs: Any) -> Any:
    if kind == "Semaphore":
        return module.Semaphore(2, **kwargs)
    if kind == "BoundedSemaphore":
        return module.BoundedSemaphore(1, **kwargs)
    if kind == "Barrier":
        return module.Barrier(1, **kwargs)
    return getattr(module, kind)(**kwargs)


@pytest.mark.parametrize("op", list(OPS), ids=list(OPS))
def test_behaves_like_multiprocessings(op: str) -> None:
    """Each operation returns or raises what it does on multiprocessing's own object."""
    kind, fn = OPS[op]
    real = _make(kind, CTX)
    traced = _make(kind, tracedsync.mp, ctx=CTX)
    assert _outcome(fn, traced) == _outcome(fn, real)


# -- Condition ----------------------------------------------------------------------------------
def test_condition_wait_and_notify_are_recorded() -> None:
    """A wait records the full release (saved_depth), cond_wait, cond_wake and the restored
    acquire; notify records the waiters present."""
    cond = tracedsync.mp.Condition(ctx=CTX, name="ready")
    lock = cond._lock  # the real condition's lock is the traced RLock
    started = RawEvent()
    woke: list[bool] = []

    def waiter() -> None:
        with cond, cond:  # depth 2: the wait releases both levels
            started.set()
            woke.append(cond.wait(30))

    with capture() as events:
        t = threading.Thread(target=waiter)
        t.start()
        assert started.wait(30)
        with cond:  # only once the waiter released the lock in wait()
            cond.notify()
        t.join(30)
    assert woke == [True]
    (wait,) = events.where(event="cond_wait", prim=prim_of(cond))
    assert wait["lock"] == prim_of(lock) and wait["saved_depth"] == 2
    (wake,) = events.where(event="cond_wake", prim=prim_of(cond))
    assert wake["notified"] is True and wake["reacquire_ns"] >= 0
    (note,) = events.where(event="notify", prim=prim_of(cond))
    assert note["n"] == 1 and note["waiters"] == 1 and "woken" not in note
    assert note["site"].startswith(__file__ + ":")
    (save,) = [e for e in events.where(event="release", prim=prim_of(lock)) if "saved_depth" in e]
    assert save["depth"] == 0 and save["saved_depth"] == 2 and save["tid"] == wait["tid"]
    (restore,) = [e for e in events.where(event="acquire", prim=prim_of(lock)) if e.get("restored")]
    assert restore["depth"] == 2 and restore["tid"] == wait["tid"]
    assert wait["site"].startswith(__file__ + ":")
    stats = cond.statistics()
    assert (stats.waits, stats.wait_timeouts, stats.notifies) == (1, 0, 1)


def test_condition_over_a_given_lock_and_a_timed_out_wait() -> None:
    """A real lock given to a Condition is traced; a timed-out wait says notified false."""
    raw = CTX.Lock()
    with capture() as events:
        cond = tracedsync.mp.Condition(raw, ctx=CTX)
        with cond:
            assert cond.wait(0.001) is False
    assert isinstance(cond._lock, tracedsync.mp.TracedMpLock)
    (created,) = events.where(event="created", prim=prim_of(cond))
    assert created["lock"] == prim_of(cond._lock)
    (wake,) = events.where(event="cond_wake", prim=prim_of(cond))
    assert wake["notified"] is False
    assert cond.statistics().wait_timeouts == 1


def test_condition_misuse_is_recorded() -> None:
    """wait and notify without the lock raise multiprocessing's AssertionError, as misuse."""
    cond = tracedsync.mp.Condition(ctx=CTX)
    with capture() as events:
        with pytest.raises(AssertionError):
            cond.wait(0)
        with pytest.raises(AssertionError):
            cond.notify_all()
    assert [e["what"] for e in events.where(event="misuse", prim=prim_of(cond))] == [
        "wait_unowned", "notify_unowned"]


def test_unheard_notify_is_counted() -> None:
    """A notify with nobody waiting: waiters 0, counted as unheard."""
    cond = tracedsync.mp.Condition(ctx=CTX)
    with capture() as events, cond:
        cond.notify_all()
    (note,) = events.where(event="notify_all", prim=prim_of(cond))
    assert note["waiters"] == 0
    assert cond.statistics().unheard_notifies == 1


# -- Semaphores ---------------------------------------------------------------------------------
def test_semaphore_events_and_holders() -> None:
    """sem_acquire/sem_release carry permits and the caller's held count; stats name holders."""
    sem = tracedsync.mp.Semaphore(2, ctx=CTX, name="slots")
    with capture() as events:
        with sem:
            sem.acquire()
            held = sem.statistics().held_by
            sem.release()
        assert sem.acquire(False)
        assert sem.acquire(False)
        assert sem.acquire(False) is False
        sem.release()
        sem.release()
    seq = [(e["event"], e.get("ok"), e["permits"], e["held"])
           for e in events.where(prim=prim_of(sem)) if e["event"].startswith("sem_")]
    assert seq == [
        ("sem_acquire", True, 1, 1), ("sem_acquire", True, 0, 2),
        ("sem_release", None, 1, 1), ("sem_release", None, 2, 0),
        ("sem_acquire", True, 1, 1), ("sem_acquire", True, 0, 2), ("sem_acquire", False, 0, 2),
        ("sem_release", None, 1, 1), ("sem_release", None, 2, 0),
    ]
    assert held == ((threading.get_ident(), 2),)


def test_semaphore_permit_passed_to_another_thread() -> None:
    """A permit released by one thread and taken by another: each records its own books."""
    sem = tracedsync.mp.Semaphore(1, ctx=CTX)
    sem.acquire()
    got: list[bool] = []
    with capture() as events:
        t = threading.Thread(target=lambda: got.append(sem.acquire(True, 30)))
        t.start()
        sem.release()
        t.join(30)
    assert got == [True]
    (acq,) = events.where(event="sem_acquire", prim=prim_of(sem))
    assert acq["ok"] is True and acq["held"] == 1 and acq["tid"] != threading.get_native_id()
    (rel,) = events.where(event="sem_release", prim=prim_of(sem))
    assert rel["held"] == 0 and rel["for_others"] == 0
    assert sem.statistics().held_by == ((t.ident, 1),)


def test_bounded_over_release_is_misuse() -> None:
    """Releasing a BoundedSemaphore past its bound raises ValueError, recorded as misuse."""
    sem = tracedsync.mp.BoundedSemaphore(1, ctx=CTX)
    with capture() as events, pytest.raises(ValueError, match="released too many times"):
        sem.release()
    (misuse,) = events.where(event="misuse", prim=prim_of(sem))
    assert misuse["what"] == "over_release" and misuse["site"].startswith(__file__ + ":")
    assert sem.statistics().max_permits == 1


# -- Event --------------------------------------------------------------------------------------
def test_event_set_clear_and_waits_are_recorded() -> None:
    """event_set/event_clear with was_set; event_wait with result and already_set."""
    evt = tracedsync.mp.Event(ctx=CTX, name="go")
    with capture() as events:
        assert evt.wait(0.001) is False
        evt.set()
        evt.set()
        assert evt.wait(30) is True
        evt.clear()
    seq = [(e["event"], e.get("was_set"), e.get("result"), e.get("already_set"))
           for e in events.where(prim=prim_of(evt))]
    assert seq == [
        ("event_wait", None, False, False), ("event_set", False, None, None),
        ("event_set", True, None, None), ("event_wait", None, True, True),
        ("event_clear", True, None, None),
    ]
    s = evt.statistics()
    assert (s.sets, s.clears, s.flag, s.waits, s.wait_timeouts) == (2, 1, False, 2, 1)


# -- Barrier ------------------------------------------------------------------------------------
def test_barrier_passes_are_recorded() -> None:
    """Each party records barrier_wait with its index."""
    barrier = tracedsync.mp.Barrier(2, ctx=CTX)
    indexes: list[int] = []
    with capture() as events:
        t = threading.Thread(target=lambda: indexes.append(barrier.wait(30)))
        t.start()
        indexes.append(barrier.wait(30))
        t.join(30)
    assert sorted(indexes) == [0, 1]
    waits = events.where(event="barrier_wait", prim=prim_of(barrier))
    assert sorted(e["index"] for e in waits) == [0, 1]
    assert all(e["parties"] == 2 and e["timeout"] == 30 for e in waits)


def test_barrier_timeout_names_who_broke_it() -> None:
    """A wait that times out breaks the barrier: why timeout, broken_by its thread and pid."""
    barrier = tracedsync.mp.Barrier(2, ctx=CTX)
    with capture() as events:
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(0.001)
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(30)  # arrives after the break
    first, second = events.where(event="barrier_broken", prim=prim_of(barrier))
    for e in (first, second):
        assert e["why"] == "timeout"
        assert (e["broken_by"], e["broken_by_pid"]) == (threading.get_native_id(), os.getpid())
    s = barrier.statistics()
    assert (s.breaks, s.broken_waits, s.wait_timeouts, s.broken) == (1, 2, 1, True)


def test_barrier_abort_and_reset_are_recorded() -> None:
    """abort() breaks it (why abort); reset() while a thread waits breaks that wait (why reset)."""
    barrier = tracedsync.mp.Barrier(2, ctx=CTX)
    errors: list[BaseException] = []

    def party() -> None:
        try:
            barrier.wait(30)
        except threading.BrokenBarrierError as exc:
            errors.append(exc)

    with capture() as events:
        barrier.abort()
        barrier.reset()
        t = threading.Thread(target=party)
        t.start()
        until(lambda: barrier.n_waiting == 1)
        barrier.reset()
        t.join(30)
    assert len(errors) == 1
    names = [(e["event"], e.get("why")) for e in events.where(prim=prim_of(barrier))]
    assert names == [("barrier_abort", None), ("barrier_broken", "abort"),
                     ("barrier_reset", None), ("barrier_reset", None),
                     ("barrier_broken", "reset")]


def _fail() -> None:
    raise KeyError("no")


def test_barrier_action_that_raises() -> None:
    """The action's exception breaks the barrier: why action, with the error's repr."""
    barrier = tracedsync.mp.Barrier(1, action=_fail, ctx=CTX)
    with capture() as events, pytest.raises(KeyError):
        barrier.wait(30)
    (broken,) = events.where(event="barrier_broken", prim=prim_of(barrier))
    assert broken["why"] == "action" and broken["error"] == "KeyError('no')"
