"""The trace of Lock and RLock tells the truth: depths, contention, timeouts, misuse."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from helpers import prim_of, until

import tracedsync
from tracedsync.testing import capture

RawEvent = threading.Event


def test_nested_rlock_depth_sequence() -> None:
    """Nested acquires and releases record depths 1, 2, 3, 2, 1, 0 in order."""
    lock = tracedsync.RLock(name="nested")
    with capture() as events, lock:
        lock.acquire()
        with lock:
            pass
        lock.release()
    seq = [(e["event"], e["depth"]) for e in events.where(prim=prim_of(lock))]
    assert seq == [
        ("acquire", 1), ("acquire", 2), ("acquire", 3),
        ("release", 2), ("release", 1), ("release", 0),
    ]
    releases = events.where(prim=prim_of(lock), event="release")
    assert "hold_ns" not in releases[0] and "hold_ns" not in releases[1]
    assert releases[2]["hold_ns"] >= 0
    assert lock.statistics().max_depth == 3


def test_acquire_records_call_site() -> None:
    """An acquire names the user's file and line, for `with` and for acquire()."""
    lock = tracedsync.Lock()
    with capture() as events:
        with lock:  # site A
            pass
        lock.acquire()  # site B
        lock.release()
    acquires = events.where(prim=prim_of(lock), event="acquire")
    assert [a["site"].rsplit(":", 1)[0] for a in acquires] == [__file__, __file__]
    lines = [int(a["site"].rsplit(":", 1)[1]) for a in acquires]
    assert lines[1] == lines[0] + 2
    assert acquires[0]["func"].endswith("test_acquire_records_call_site")


def test_created_event_names_kind_and_site() -> None:
    """Creation records kind, name and the creating line."""
    with capture() as events:
        lock = tracedsync.RLock(name="accounts")
    (created,) = events.where(event="created", prim=prim_of(lock))
    assert created["kind"] == "RLock"
    assert created["name"] == "accounts"
    assert created["site"].startswith(__file__ + ":")


def test_contended_acquire_records_blocked_by() -> None:
    """A thread blocked behind the holder records contended=True and the holder's tid."""
    lock = tracedsync.Lock(name="hot")
    holding = RawEvent()
    release_now = RawEvent()
    holder_tid: list[int] = []

    def holder() -> None:
        with lock:
            holder_tid.append(threading.get_native_id())
            holding.set()
            release_now.wait(10)

    def waiter() -> None:
        assert lock.acquire(timeout=10)
        lock.release()

    with capture() as events:
        h = threading.Thread(target=holder)
        h.start()
        assert holding.wait(10)
        w = threading.Thread(target=waiter)
        w.start()
        # The waiter is blocked (its try failed) once the lock's stats count it as contended
        # only after it gets the lock, so release and let it finish.
        _wait_until_blocked(w)
        release_now.set()
        h.join(10)
        w.join(10)
    acquires = events.where(prim=prim_of(lock), event="acquire")
    contended = [a for a in acquires if a["contended"]]
    assert len(contended) == 1
    (c,) = contended
    assert c["ok"] is True
    assert c["blocked_by"] == holder_tid[0]
    assert c["wait_ns"] > 0
    assert c["timeout"] == 10
    stats = lock.statistics()
    assert stats.contended == 1 and stats.acquisitions == 2


def _wait_until_blocked(thread: threading.Thread) -> None:
    """Wait until ``thread`` is blocked in a lock acquire: it entered the wait-for table, which
    a blocking acquire does after its non-blocking try failed and before it blocks."""
    from tracedsync._core.waits import current

    until(lambda: (thread.ident or 0) in current(), "the thread to block in acquire")


def test_timeout_is_recorded_as_failed_acquire() -> None:
    """A timed-out acquire is an event with ok=False, contended=True and the timeout."""
    lock = tracedsync.Lock()
    lock.acquire()
    results: list[bool] = []
    with capture() as events:
        t = threading.Thread(target=lambda: results.append(lock.acquire(timeout=0.01)))
        t.start()
        t.join(10)
    lock.release()
    assert results == [False]
    (failed,) = events.where(prim=prim_of(lock), event="acquire", ok=False)
    assert failed["contended"] is True
    assert failed["timeout"] == 0.01
    assert failed["wait_ns"] > 0
    assert lock.statistics().failed == 1


def test_failed_nonblocking_acquire_is_recorded() -> None:
    """acquire(False) on a held lock is an event, not silence."""
    lock = tracedsync.Lock()
    with capture() as events:
        lock.acquire()
        assert lock.acquire(False) is False
        lock.release()
    names = [(e["event"], e.get("ok")) for e in events.where(prim=prim_of(lock))]
    assert names == [("acquire", True), ("acquire", False), ("release", None)]
    failed = events.where(prim=prim_of(lock), ok=False)[0]
    assert failed["blocking"] is False and failed["contended"] is True


def test_rlock_release_by_non_owner_raises_and_is_misuse() -> None:
    """Releasing an RLock you do not own raises RuntimeError exactly and records misuse."""
    lock = tracedsync.RLock()
    raw = threading.RLock()
    with pytest.raises(RuntimeError) as expected:
        raw.release()
    with capture() as events, pytest.raises(RuntimeError) as got:
        lock.release()
    assert str(got.value) == str(expected.value)
    (m,) = events.where(event="misuse", prim=prim_of(lock))
    assert m["what"] == "release_unowned"
    assert m["site"].startswith(__file__)
    assert lock.statistics().misuse == 1


def test_lock_release_unlocked_raises_and_is_misuse() -> None:
    """Releasing an unlocked Lock raises the original RuntimeError and records misuse."""
    lock = tracedsync.Lock()
    with pytest.raises(RuntimeError) as expected:
        threading.Lock().release()
    with capture() as events, pytest.raises(RuntimeError) as got:
        lock.release()
    assert str(got.value) == str(expected.value)
    assert events.where(event="misuse", prim=prim_of(lock))[0]["what"] == "release_unlocked"


def test_lock_released_by_other_thread_is_not_misuse() -> None:
    """A Lock may be released by another thread: recorded as a release with its hold time."""
    lock = tracedsync.Lock()
    with capture() as events:
        lock.acquire()
        t = threading.Thread(target=lock.release)
        t.start()
        t.join(10)
    assert not events.where(event="misuse")
    rel = events.where(prim=prim_of(lock), event="release")[0]
    assert rel["depth"] == 0 and rel["hold_ns"] >= 0
    assert rel["tid"] != events.where(prim=prim_of(lock), event="acquire")[0]["tid"]


@pytest.mark.parametrize("factory", [threading.Lock, threading.RLock])
def test_argument_errors_are_the_originals(factory: Any) -> None:
    """Bad arguments raise what the real lock raises, and leave it unlocked.

    Values are checked by the real lock, so type and message are the originals'. A wrong number
    of arguments raises the original's type (TypeError) with Python's wording for a Python method.
    """
    traced = tracedsync.Lock() if factory is threading.Lock else tracedsync.RLock()
    raw = factory()
    for args, kwargs in [((False, 1), {}), ((), {"timeout": -100}), ((), {"timeout": 1e100}),
                         ((), {"timeout": "x"})]:
        with pytest.raises(Exception) as want:
            raw.acquire(*args, **kwargs)
        with pytest.raises(want.type) as got:
            traced.acquire(*args, **kwargs)
        assert str(got.value) == str(want.value)
    with pytest.raises(TypeError):
        traced.acquire(1, 2, 3)
    assert traced.acquire(False)
    traced.release()


def test_exception_inside_with_releases_and_propagates() -> None:
    """An exception in a `with` block propagates unchanged and the release is recorded."""
    lock = tracedsync.RLock()
    with capture() as events, pytest.raises(KeyError), lock:
        raise KeyError("x")
    assert [e["event"] for e in events.where(prim=prim_of(lock))] == ["acquire", "release"]
    assert lock.acquire(False)
    lock.release()


def test_repr_shows_state_and_name() -> None:
    """repr keeps the original's state words and adds the name."""
    lock = tracedsync.Lock(name="db")
    assert repr(lock).startswith("<unlocked _thread.lock object")
    assert "name='db'" in repr(lock)
    with lock:
        assert repr(lock).startswith("<locked _thread.lock object")


@pytest.mark.parametrize("make", [tracedsync.Lock, tracedsync.RLock, tracedsync.Condition])
def test_copy_and_pickle_fail_like_the_originals(make: Any) -> None:
    """copy.copy, copy.deepcopy and pickle raise what they raise for the real objects."""
    import copy
    import pickle

    traced = make()
    raw = {tracedsync.Lock: threading.Lock, tracedsync.RLock: threading.RLock,
           tracedsync.Condition: threading.Condition}[make]()
    for fn in (pickle.dumps, copy.deepcopy) + ((copy.copy,) if make is not tracedsync.Condition
                                               else ()):
        with pytest.raises(TypeError) as want:
            fn(raw)
        with pytest.raises(TypeError) as got:
            fn(traced)
        assert str(got.value) == str(want.value)


def test_weakref_to_traced_lock() -> None:
    """Weak references work, as they do for the real locks."""
    import gc
    import weakref

    lock = tracedsync.RLock()
    ref = weakref.ref(lock)
    assert ref() is lock
    del lock
    gc.collect()
    assert ref() is None


def test_at_fork_reinit_resets_books() -> None:
    """_at_fork_reinit unlocks the real lock and our books agree."""
    lock = tracedsync.Lock()
    lock.acquire()
    lock._at_fork_reinit()
    assert lock.statistics().owner is None
    with capture() as events, lock:
        pass
    assert [e["depth"] for e in events.where(prim=prim_of(lock))] == [1, 0]


def test_statistics_snapshot() -> None:
    """statistics() counts acquisitions, max depth and hold time, and is frozen."""
    import dataclasses

    lock = tracedsync.RLock(name="s")
    with lock, lock:
        pass
    s = lock.statistics()
    assert (s.acquisitions, s.max_depth, s.contended, s.failed, s.misuse) == (2, 2, 0, 0, 0)
    assert s.name == "s" and s.kind == "RLock" and s.hold_ns >= 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.acquisitions = 5  # type: ignore[misc]


def test_thread_event_names_threads() -> None:
    """Each thread's first event is preceded by a `thread` event with its name and native id."""
    lock = tracedsync.Lock()
    with capture() as events:
        t = threading.Thread(target=lambda: lock.acquire() and lock.release(), name="worker-7")
        t.start()
        t.join(10)
    (th,) = events.where(event="thread", name="worker-7")
    acq = events.where(prim=prim_of(lock), event="acquire")[0]
    assert acq["tid"] == th["tid"] == t.native_id
    assert events.index(th) < events.index(acq)
