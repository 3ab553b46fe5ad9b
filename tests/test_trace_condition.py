"""The trace of Condition waits: full release with the saved depth, restore, wakes, notifies."""

from __future__ import annotations

import threading

import pytest
from helpers import prim_of

import tracedsync
from tracedsync.testing import capture

RawEvent = threading.Event


def test_wait_with_recursively_held_rlock_saves_and_restores_depth() -> None:
    """A wait under a depth-3 RLock records release(saved_depth=3) and acquire(restored, 3)."""
    lock = tracedsync.RLock(name="r")
    cond = tracedsync.Condition(lock, name="c")
    with capture() as events, lock, lock, cond:
        assert cond.wait(timeout=0.001) is False
        assert lock._is_owned()
        assert lock._recursion_count() == 3 if hasattr(lock, "_recursion_count") else True
    seq = [(e["event"], e["depth"], e.get("saved_depth"), e.get("restored"))
           for e in events.where(prim=prim_of(lock))]
    assert seq == [
        ("acquire", 1, None, None), ("acquire", 2, None, None), ("acquire", 3, None, None),
        ("release", 0, 3, None), ("acquire", 3, None, True),
        ("release", 2, None, None), ("release", 1, None, None), ("release", 0, None, None),
    ]
    (wait,) = events.where(event="cond_wait", prim=prim_of(cond))
    (wake,) = events.where(event="cond_wake", prim=prim_of(cond))
    assert wait["saved_depth"] == 3 and wait["lock"] == prim_of(lock) and wait["timeout"] == 0.001
    assert wake["notified"] is False and wake["waited_ns"] >= 0 and wake["reacquire_ns"] >= 0
    assert wait["site"] == wake["site"] and wait["site"].startswith(__file__)
    assert cond.statistics().wait_timeouts == 1


def test_threading_condition_over_traced_lock_records_release_and_restore() -> None:
    """threading.Condition(traced RLock) goes through our _release_save/_acquire_restore."""
    lock = tracedsync.RLock()
    cond = threading.Condition(lock)
    with capture() as events, cond, cond:
        cond.wait(0.001)
    kinds = [(e["event"], e["depth"], e.get("saved_depth"))
             for e in events.where(prim=prim_of(lock))]
    assert ("release", 0, 2) in kinds
    restored = events.where(prim=prim_of(lock), restored=True)
    assert len(restored) == 1 and restored[0]["depth"] == 2
    assert restored[0]["site"].startswith(__file__)


def test_threading_condition_over_traced_plain_lock() -> None:
    """threading.Condition(traced Lock) uses the fallback protocol we implement exactly."""
    lock = tracedsync.Lock()
    cond = threading.Condition(lock)
    with capture() as events:
        with cond:
            assert cond._is_owned()
            cond.wait(0.001)
        assert not cond._is_owned()
    assert events.where(prim=prim_of(lock), event="release", saved_depth=1)
    assert events.where(prim=prim_of(lock), restored=True)


def test_notify_names_the_woken_thread() -> None:
    """notify records waiters=1 and the woken tid; the waiter's wake says notified=True."""
    cond = tracedsync.Condition(name="q")
    waiting = RawEvent()
    tids: list[int] = []
    results: list[bool] = []

    def waiter() -> None:
        with cond:
            tids.append(threading.get_native_id())
            waiting.set()
            results.append(cond.wait(timeout=10))

    with capture() as events:
        t = threading.Thread(target=waiter)
        t.start()
        assert waiting.wait(10)
        with cond:  # the waiter has released the lock inside wait() once we get it
            cond.notify()
        t.join(10)
    assert results == [True]
    (n,) = events.where(event="notify", prim=prim_of(cond))
    assert n["waiters"] == 1 and n["woken"] == tids and n["n"] == 1
    (wake,) = events.where(event="cond_wake", prim=prim_of(cond))
    assert wake["notified"] is True and wake["tid"] == tids[0]


def test_notify_with_no_waiter_is_recorded_as_unheard() -> None:
    """A notify that nobody receives has waiters=0 and counts as unheard."""
    cond = tracedsync.Condition()
    with capture() as events, cond:
        cond.notify()
        cond.notify_all()
    assert [(e["event"], e["waiters"]) for e in events.where(prim=prim_of(cond))
            if e["event"].startswith("notify")] == [("notify", 0), ("notify_all", 0)]
    assert cond.statistics().unheard_notifies == 2


def test_notify_all_wakes_every_waiter_in_order() -> None:
    """notify_all records every waiting tid, in the order they started waiting."""
    cond = tracedsync.Condition()
    arrived = threading.Semaphore(0)
    order: list[int] = []

    def waiter() -> None:
        with cond:
            order.append(threading.get_native_id())
            arrived.release()  # still holding the lock: it is released only inside wait()
            cond.wait(timeout=10)

    with capture() as events:
        threads = [threading.Thread(target=waiter) for _ in range(3)]
        for t in threads:
            t.start()
            assert arrived.acquire(timeout=10)  # one at a time, so the order is known
            with cond:  # getting the lock proves that waiter is inside wait()
                pass
        with cond:
            cond.notify_all()
        for t in threads:
            t.join(10)
    (n,) = events.where(event="notify_all", prim=prim_of(cond))
    assert n["waiters"] == 3 and n["woken"] == order


def test_wait_for_records_each_wait() -> None:
    """wait_for goes through the traced wait and returns the predicate's value."""
    cond = tracedsync.Condition()
    with capture() as events, cond:
        assert cond.wait_for(lambda: False, timeout=0.002) is False
        assert cond.wait_for(lambda: 5) == 5
    waits = events.where(event="cond_wait", prim=prim_of(cond))
    assert waits and all(w["site"].startswith(__file__) for w in waits)


def test_unacquired_wait_and_notify_raise_and_are_misuse() -> None:
    """wait/notify without the lock raise the original RuntimeError and record misuse."""
    cond = tracedsync.Condition()
    with capture() as events:
        with pytest.raises(RuntimeError, match="un-acquired"):
            cond.wait(0.001)
        with pytest.raises(RuntimeError, match="un-acquired"):
            cond.notify()
    assert [m["what"] for m in events.where(event="misuse", prim=prim_of(cond))] == [
        "wait_unowned", "notify_unowned"]


def test_condition_over_real_lock_is_wrapped() -> None:
    """Condition(real Lock) wraps it, so acquisitions through the condition are recorded."""
    raw = threading.Lock()
    cond = tracedsync.Condition(raw)
    with capture() as events, cond:
        assert raw.locked()
    acquires = events.where(event="acquire")
    assert len(acquires) == 1 and acquires[0]["site"].startswith(__file__)
    assert not raw.locked()


def test_notifyall_alias_warns_like_threading() -> None:
    """The deprecated notifyAll warns with DeprecationWarning, as threading's does."""
    cond = tracedsync.Condition()
    with cond, pytest.warns(DeprecationWarning, match="notifyAll"):
        cond.notifyAll()
