"""Traced multiprocessing Lock and RLock, in one process: multiprocessing's behaviour (compared
operation by operation), the acquire/release trace with blocked_by/blocked_by_pid, misuse, and
the shared owner record."""

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
from tracedsync._detect import deadlock
from tracedsync._multiprocessing import owner as _mp_owner
from tracedsync._multiprocessing.base import get_state
from tracedsync._multiprocessing.locks import waiting_here
from tracedsync.testing import capture

CTX = multiprocessing.get_context("spawn")  # any context will do in one process
RawEvent = threading.Event
KINDS = ("Lock", "RLock")


def _untraced_repr(r: str) -> str:
    return re.sub(r" traced=\S+?(?=>)", "", r)


def _outcome(op: Callable[[Any], Any], obj: Any) -> tuple[Any, ...]:
    return outcome(op, obj, _untraced_repr)


def _held_twice(lock: Any) -> Any:
    lock.acquire()
    try:
        return lock.acquire(False)
    finally:
        while True:
            try:
                lock.release()
            except (ValueError, AssertionError):
                break


def _repr_held(lock: Any) -> str:
    with lock:
        return repr(lock)


LOCK_OPS: dict[str, Callable[[Any], Any]] = {
    "acquire and release": lambda lk: (lk.acquire(), lk.release()),
    "non-blocking": lambda lk: (lk.acquire(False), lk.release()),
    "with": lambda lk: (lk.__enter__(), lk.__exit__(None, None, None)),
    "again while held": _held_twice,
    "release unlocked": lambda lk: lk.release(),
    "timeout of a wrong type": lambda lk: lk.acquire(timeout="x"),
    "block of a wrong type": lambda lk: lk.acquire(block="x"),
    "threading's keyword": lambda lk: lk.acquire(blocking=False),
    "too many arguments": lambda lk: lk.acquire(True, 1, 2),
    "negative timeout": lambda lk: (lk.acquire(True, -1), lk.release()),
    "repr": repr,
    "repr held": _repr_held,
    "str": str,
    "pickle outside spawning": pickle.dumps,
    "copy": copy.copy,
    "semlock kind": lambda lk: lk._semlock.kind,
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("op", list(LOCK_OPS), ids=list(LOCK_OPS))
def test_lock_behaves_like_multiprocessings(kind: str, op: str) -> None:
    """Each operation on a traced lock returns or raises what it does on multiprocessing's."""
    real = getattr(CTX, kind)()
    traced = getattr(tracedsync.mp, kind)(ctx=CTX)
    assert _outcome(LOCK_OPS[op], traced) == _outcome(LOCK_OPS[op], real)


@pytest.mark.parametrize("kind", KINDS)
def test_created_event(kind: str) -> None:
    """Creation records kind, name, start method and the creating line."""
    with capture() as events:
        lock = getattr(tracedsync.mp, kind)(ctx=CTX, name="jobs")
    (created,) = events.where(event="created", prim=prim_of(lock))
    assert (created["kind"], created["name"], created["start_method"]) == (kind, "jobs", "spawn")
    assert created["site"].startswith(__file__ + ":")


def test_uncontended_acquire_and_release_are_recorded() -> None:
    """acquire, with, and release: ok, depth, not contended, no holder, hold_ns at depth 0."""
    lock = tracedsync.mp.RLock(ctx=CTX)
    with capture() as events, lock:
        lock.acquire()
        lock.release()
    seq = events.where(prim=prim_of(lock))
    assert [(e["event"], e["depth"]) for e in seq] == [
        ("acquire", 1), ("acquire", 2), ("release", 1), ("release", 0)]
    first = seq[0]
    assert first["ok"] is True and first["contended"] is False and first["wait_ns"] == 0
    assert first["blocked_by"] is None and first["blocked_by_pid"] is None
    assert first["blocking"] is True and first["timeout"] is None
    assert first["site"].startswith(__file__ + ":") and seq[1]["site"].startswith(__file__ + ":")
    assert "hold_ns" in seq[3] and "hold_ns" not in seq[2]
    stats = lock.statistics()
    assert (stats.acquisitions, stats.max_depth, stats.owner, stats.depth) == (2, 2, None, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_owner_record_shows_the_holder_while_held(kind: str) -> None:
    """The shared record names this process and thread while held, nobody after."""
    lock = getattr(tracedsync.mp, kind)(ctx=CTX)
    rec = get_state(lock).ext
    with lock:
        assert _mp_owner.read_owner(rec) == (os.getpid(), threading.get_native_id())
        assert rec[_mp_owner.DEPTH] == 1
    assert _mp_owner.read_owner(rec) == (None, None)
    assert rec[_mp_owner.DEPTH] == 0


def _hold_in_thread(lock: Any) -> tuple[threading.Thread, RawEvent, list[int]]:
    """A thread that takes ``lock`` and keeps it until the returned event is set."""
    held, release, native = RawEvent(), RawEvent(), []

    def holder() -> None:
        with lock:
            native.append(threading.get_native_id())
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(30)
    return t, release, native


@pytest.mark.parametrize("kind", KINDS)
def test_failed_try_names_the_holder_thread(kind: str) -> None:
    """A non-blocking try and a timed-out acquire name the holder: native id and pid."""
    lock = getattr(tracedsync.mp, kind)(ctx=CTX)
    t, release, native = _hold_in_thread(lock)
    try:
        with capture() as events:
            assert lock.acquire(False) is False
            assert lock.acquire(True, 0.01) is False
    finally:
        release.set()
        t.join(30)
    tries = events.where(event="acquire", prim=prim_of(lock))
    assert [(e["ok"], e["contended"], e["blocking"], e["timeout"]) for e in tries] == [
        (False, True, False, None), (False, True, True, 0.01)]
    for e in tries:
        assert (e["blocked_by"], e["blocked_by_pid"]) == (native[0], os.getpid())
        assert e["depth"] == 0
    assert tries[1]["wait_ns"] > 0
    assert lock.statistics().failed == 2


def test_contended_acquire_waits_then_gets_it() -> None:
    """A thread blocked on a held lock records contended=True, the holder, and its wait."""
    lock = tracedsync.mp.Lock(ctx=CTX)
    t, release, native = _hold_in_thread(lock)
    got: list[bool] = []
    with capture() as events:
        w = threading.Thread(target=lambda: got.append(lock.acquire(True, 30)))
        w.start()
        until(lambda: waiting_here(lock) == 1)  # w has failed its first try and is blocked
        release.set()
        w.join(30)
        t.join(30)
        lock.release()
    assert got == [True]
    (acq,) = [e for e in events.where(event="acquire", prim=prim_of(lock)) if e["contended"]]
    assert acq["ok"] is True and acq["depth"] == 1 and acq["wait_ns"] > 0
    assert (acq["blocked_by"], acq["blocked_by_pid"]) == (native[0], os.getpid())
    assert lock.statistics().contended == 1


def test_contention_level_writes_only_contended_and_failed(level: None) -> None:
    """At level contention an uncontended acquire/release pair writes nothing."""
    lock = tracedsync.mp.Lock(ctx=CTX)
    tracedsync.configure(level="contention")
    with capture() as events, lock:
        assert lock.acquire(False) is False
    tracedsync.configure(level="full")
    assert [(e["event"], e["ok"]) for e in events.where(prim=prim_of(lock))] == [("acquire", False)]


def test_off_level_records_nothing(level: None) -> None:
    """At level off the lock only behaves."""
    lock = tracedsync.mp.RLock(ctx=CTX)
    tracedsync.configure(level="off")
    with capture() as events, lock, lock:
        pass
    tracedsync.configure(level="full")
    assert events.where(prim=prim_of(lock)) == []


def test_release_of_an_unlocked_lock_is_misuse() -> None:
    """multiprocessing's ValueError is raised and recorded as release_unlocked."""
    lock = tracedsync.mp.Lock(ctx=CTX)
    with capture() as events, pytest.raises(ValueError, match="released too many times"):
        lock.release()
    (misuse,) = events.where(event="misuse", prim=prim_of(lock))
    assert misuse["what"] == "release_unlocked"
    assert misuse["site"].startswith(__file__ + ":")


def test_release_of_an_rlock_by_another_thread_is_misuse() -> None:
    """multiprocessing's AssertionError is raised and recorded as release_unowned."""
    lock = tracedsync.mp.RLock(ctx=CTX)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            lock.release()
        except AssertionError as exc:
            errors.append(exc)

    with capture() as events, lock:
        t = threading.Thread(target=other)
        t.start()
        t.join(30)
    assert [str(e) for e in errors] == ["attempt to release recursive lock not owned by thread"]
    (misuse,) = events.where(event="misuse", prim=prim_of(lock))
    assert misuse["what"] == "release_unowned"
    assert lock.statistics().misuse == 1


def test_a_lock_released_by_another_thread_is_a_release() -> None:
    """A Lock may be released by any thread: recorded as a release by that thread."""
    lock = tracedsync.mp.Lock(ctx=CTX)
    lock.acquire()
    with capture() as events:
        t = threading.Thread(target=lock.release)
        t.start()
        t.join(30)
    (rel,) = events.where(event="release", prim=prim_of(lock))
    assert rel["depth"] == 0 and rel["tid"] != threading.get_native_id()
    assert _mp_owner.read_owner(get_state(lock).ext) == (None, None)
    assert lock.acquire(False)
    lock.release()


# -- runtime deadlock detection (_detect.py) ------------------------------------------------------
@pytest.fixture
def on_deadlock_raise() -> Any:
    """on_deadlock="raise" for the test, put back after it."""
    before = tracedsync.settings().on_deadlock
    tracedsync.configure(on_deadlock="raise")
    yield
    tracedsync.configure(on_deadlock=before)


def test_self_deadlock_on_a_multiprocessing_lock_is_reported(
    on_deadlock_raise: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acquiring a held Lock from its own holder is a cycle of one, found through the owner
    record. Any thread or process may release a multiprocessing Lock (a signal), so the wait is
    reported by the watchdog once it has lasted (here: at once), never raised; its end (the
    signal came) is recorded."""
    monkeypatch.setattr(deadlock, "SIGNAL_WAIT_NS", 0)
    lock = tracedsync.mp.Lock(ctx=CTX, name="self")

    def signal() -> None:
        until(lambda: events.where(event="deadlock"), "the deadlock report")
        lock.release()

    with capture() as events:
        lock.acquire()
        t = threading.Thread(target=signal, daemon=True)
        t.start()
        assert lock.acquire(timeout=30)
        lock.release()
        t.join(30)
    (ev,) = events.where(event="deadlock")
    assert [c["prim"] for c in ev["cycle"]] == [prim_of(lock)]
    assert ev["cycle"][0]["held_by"] == threading.get_native_id()
    assert (ev["action"], ev["detected_by"], ev["certain"]) == ("report", "watchdog", False)
    (end,) = events.where(event="deadlock_end")
    assert end["ok"] is True


def test_two_threads_deadlocked_on_multiprocessing_locks(on_deadlock_raise: None) -> None:
    """A-then-B against B-then-A on multiprocessing locks: the thread closing the cycle gets
    DeadlockError, the other one proceeds."""
    a, b = tracedsync.mp.RLock(ctx=CTX, name="a"), tracedsync.mp.RLock(ctx=CTX, name="b")
    both = threading.Barrier(2)
    caught: list[BaseException] = []
    got_b: list[bool] = []

    def left() -> None:
        with a:
            both.wait(30)
            got_b.append(b.acquire(timeout=30))
            b.release()

    def right() -> None:
        with b:
            both.wait(30)
            until(lambda: waiting_here(b) == 1)
            try:
                a.acquire()  # no timeout: only the DeadlockError can end this
            except tracedsync.DeadlockError as exc:
                caught.append(exc)

    with capture() as events:
        threads = [threading.Thread(target=left), threading.Thread(target=right)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert got_b == [True] and len(caught) == 1
    (ev,) = events.where(event="deadlock")
    assert {c["prim"] for c in ev["cycle"]} == {prim_of(a), prim_of(b)}
