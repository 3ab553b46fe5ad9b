"""Runtime detection: deadlocks as they happen, lock-order violations, long waits and holds,
snapshots, and the snapshot signal.

Every test is bounded: each blocking call has a timeout, or ``on_deadlock="raise"`` turns the
deadlock into an exception; threads are joined with a timeout. Threads are coordinated with
barriers, events and bounded polling of a state (never a sleep), and nothing asserts on timing.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, prim_of, until
from helpers import join_threads as _join
from helpers import start_thread as _start

import tracedsync
from tracedsync._core import waits
from tracedsync._core.waits import RemoteWait, current
from tracedsync._detect import deadlock
from tracedsync._detect import lockorder as _lockorder
from tracedsync._detect import watchdog as _watchdog
from tracedsync._record.recorder import RECORDER
from tracedsync._threading import locks as _locks
from tracedsync.testing import capture

RawEvent = threading.Event  # never patched here, but be explicit: test plumbing is untraced
RawBarrier = threading.Barrier
LIMIT = 10.0  # seconds: the bound on every wait for a state that must come


# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _detection_settings() -> Iterator[None]:
    """Put the detection settings (and the flush interval) back after each test."""
    before = tracedsync.settings()
    yield
    tracedsync.configure(
        on_deadlock=before.on_deadlock, lock_order=before.lock_order,
        long_wait=before.long_wait, long_hold=before.long_hold,
        flush_interval=before.flush_interval, snapshot_signal=before.snapshot_signal,
    )


def _func(f: Any) -> str:
    """How stacks name a function (qualified on 3.11+, plain before)."""
    return str(getattr(f.__code__, "co_qualname", f.__code__.co_name))


def _waits_on(thread: threading.Thread, obj: Any, what: str | None = None) -> bool:
    w = current().get(thread.ident or 0)
    return w is not None and w.st.prim == prim_of(obj) and (what is None or w.what == what)


def _on_disk(event: str, **fields: Any) -> list[dict[str, Any]]:
    """The events named ``event`` with ``fields`` in this process's log file, as written."""
    path = Path(tracedsync.log_path())
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # a line being written
        if ev.get("event") == event and all(ev.get(k) == v for k, v in fields.items()):
            out.append(ev)
    return out


def _two_more_ticks() -> None:
    """Wait (bounded) until the flusher has run the watchdog twice more."""
    start = _watchdog.ticks
    until(lambda: _watchdog.ticks >= start + 2, "two more watchdog passes")


def _deadlock_on_disk(*prims: str) -> dict[str, Any]:
    """Wait for the ``deadlock`` event whose cycle is over exactly ``prims`` to be on disk."""
    def find() -> dict[str, Any] | None:
        for ev in _on_disk("deadlock"):
            if {c["prim"] for c in ev["cycle"]} == set(prims):
                return ev
        return None
    return until(find, f"a deadlock event over {prims} in the log file")


# -- deadlocks -----------------------------------------------------------------------------------
def test_ab_ba_deadlock_is_written_to_disk_at_once() -> None:
    """AB-BA: the thread whose acquire closes the cycle writes a `deadlock` event to the log file
    before it blocks, with both threads, both locks, where each waits, and their stacks."""
    a, b = tracedsync.Lock(name="a"), tracedsync.Lock(name="b")
    both = RawBarrier(2)
    results: dict[str, bool] = {}

    def left() -> None:
        with a:
            both.wait(LIMIT)
            results["left"] = b.acquire(timeout=LIMIT)  # blocks until right gives up
            if results["left"]:
                b.release()

    def right() -> None:
        with b:
            both.wait(LIMIT)
            until(lambda: _waits_on(t_left, b), "left to block on b")
            # Closes the cycle: reported, then blocks as the program would, until it times out.
            results["right"] = a.acquire(timeout=0.2)

    t_left = _start(left, "left")
    t_right = _start(right, "right")
    ev = _deadlock_on_disk(prim_of(a), prim_of(b))
    _join(t_left, t_right)
    assert results == {"left": True, "right": False}
    assert ev["action"] == "report" and ev["detected_by"] == "acquire"
    assert ev["tid"] == t_right.native_id and ev["site"].startswith(__file__ + ":")
    first, second = ev["cycle"]
    assert (first["thread"], first["prim"], first["name"]) == ("right", prim_of(a), "a")
    assert (second["thread"], second["prim"], second["name"]) == ("left", prim_of(b), "b")
    assert first["held_by"] == t_left.native_id and second["held_by"] == t_right.native_id
    assert first["tid"] == t_right.native_id and first["pid"] == os.getpid()
    assert first["timeout"] == 0.2 and second["timeout"] == LIMIT
    assert first["stack"][-1].endswith(" " + _func(right))
    assert second["stack"][-1].endswith(" " + _func(left))
    assert all(c["site"].startswith(__file__ + ":") and c["kind"] == "Lock" for c in ev["cycle"])


def test_deadlock_error_is_raised_in_the_closing_thread() -> None:
    """With on_deadlock="raise" the closing thread gets DeadlockError instead of blocking; the
    other thread proceeds once it gives its lock back, and the event says "raise"."""
    tracedsync.configure(on_deadlock="raise")
    a, b = tracedsync.RLock(name="a"), tracedsync.RLock(name="b")
    both = RawBarrier(2)
    caught: list[BaseException] = []
    got_b: list[bool] = []

    def left() -> None:
        with a:
            both.wait(LIMIT)
            got_b.append(b.acquire(timeout=LIMIT))
            b.release()

    def right() -> None:
        with b:
            both.wait(LIMIT)
            until(lambda: _waits_on(t_left, b), "left to block on b")
            try:
                a.acquire()  # no timeout: only the DeadlockError can end this
            except tracedsync.DeadlockError as exc:
                caught.append(exc)
                assert a.statistics().owner == t_left.ident  # not taken

    t_left = _start(left, "left")
    t_right = _start(right, "right")
    _join(t_left, t_right)
    assert got_b == [True]
    (exc,) = caught
    assert isinstance(exc, RuntimeError) and isinstance(exc, tracedsync.DeadlockError)
    assert [c["thread"] for c in exc.cycle] == ["right", "left"]
    assert "right waits for RLock" in str(exc) and "'a'" in str(exc)
    again = pickle.loads(pickle.dumps(exc))
    assert (str(again), again.cycle) == (str(exc), exc.cycle)
    ev = _deadlock_on_disk(prim_of(a), prim_of(b))
    assert ev["action"] == "raise"
    assert not current().get(t_right.ident or 0)


def test_three_lock_cycle() -> None:
    """T1 holds A and wants B, T2 holds B and wants C, T3 holds C and wants A: T3 closes the
    cycle and the event lists the three, in wait-for order."""
    tracedsync.configure(on_deadlock="raise")
    a, b, c = (tracedsync.Lock(name=n) for n in "abc")
    all3 = RawBarrier(3)
    caught: list[tracedsync.DeadlockError] = []
    threads: list[threading.Thread] = []

    def worker(mine: Any, want: Any, wait_for: int | None) -> Callable[[], None]:
        def run() -> None:
            with mine:
                all3.wait(LIMIT)
                if wait_for is not None:
                    until(lambda: current().get(threads[wait_for].ident or 0),
                          "the others to block")
                try:
                    # The last to block (t3) has no timeout: only the DeadlockError ends it.
                    if want.acquire(timeout=LIMIT if wait_for is None or wait_for == 0 else -1):
                        want.release()
                except tracedsync.DeadlockError as exc:
                    caught.append(exc)
        return run

    threads.append(_start(worker(a, b, None), "t1"))
    threads.append(_start(worker(b, c, 0), "t2"))
    threads.append(_start(worker(c, a, 1), "t3"))
    _join(*threads)
    (exc,) = caught
    assert [(e["thread"], e["name"]) for e in exc.cycle] == [("t3", "a"), ("t1", "b"), ("t2", "c")]
    tids = [t.native_id for t in threads]
    assert [e["held_by"] for e in exc.cycle] == [tids[0], tids[1], tids[2]]
    _deadlock_on_disk(prim_of(a), prim_of(b), prim_of(c))


def test_condition_lockout_is_a_deadlock() -> None:
    """A thread waits on a condition while holding another lock; the only notifier takes the
    condition's lock, then blocks on that other lock: nobody can notify, so it is a deadlock
    through the condition (T waits on cond, whose lock the notifier holds)."""
    tracedsync.configure(on_deadlock="raise")
    outer = tracedsync.Lock(name="outer")
    inner = tracedsync.Lock(name="inner")
    cond = tracedsync.Condition(inner, name="ready")
    caught: list[tracedsync.DeadlockError] = []
    woke: list[bool] = []

    def waiter() -> None:
        with outer, cond:
            woke.append(cond.wait(timeout=LIMIT))

    def notifier() -> None:
        with cond:
            try:
                outer.acquire()  # held by the waiter, which waits for our notify: raises
            except tracedsync.DeadlockError as exc:
                caught.append(exc)
            cond.notify()

    t_wait = _start(waiter, "waiter")
    until(lambda: _waits_on(t_wait, cond, "cond_wait"), "the waiter to wait on the condition")
    t_notify = _start(notifier, "notifier")
    _join(t_notify, t_wait)
    assert woke == [True]
    (exc,) = caught
    first, second = exc.cycle
    assert (first["thread"], first["prim"], first["what"]) == (
        "notifier", prim_of(outer), "acquire")
    assert (second["thread"], second["prim"], second["what"]) == (
        "waiter", prim_of(cond), "cond_wait")
    assert second["lock"] == prim_of(inner) and second["held_by"] == t_notify.native_id
    assert "whose lock is held by" in str(exc)
    _deadlock_on_disk(prim_of(outer), prim_of(cond))


def test_a_running_holder_is_no_deadlock() -> None:
    """Blocking on a lock whose holder is running (not waiting) reports nothing."""
    lock = tracedsync.Lock()
    holding, done = RawEvent(), RawEvent()

    def holder() -> None:
        with lock:
            holding.set()
            done.wait(LIMIT)

    t_hold = _start(holder, "holder")
    holding.wait(LIMIT)
    with capture() as events:
        t_block = _start(lambda: lock.acquire(timeout=LIMIT) and lock.release(), "blocked")
        until(lambda: _waits_on(t_block, lock), "the second thread to block")
        assert deadlock.find_cycle(t_block.ident or 0) is None
        done.set()
        _join(t_hold, t_block)
    assert not events.where(event="deadlock")
    assert not current().get(t_block.ident or 0)


def test_self_deadlock_on_a_plain_lock() -> None:
    """A thread acquiring a Lock it already holds waits for itself: DeadlockError at once."""
    tracedsync.configure(on_deadlock="raise")
    lock = tracedsync.Lock(name="self")
    with capture() as events, lock, pytest.raises(tracedsync.DeadlockError) as info:
        lock.acquire()
    (ev,) = events.where(event="deadlock")
    assert [c["prim"] for c in ev["cycle"]] == [prim_of(lock)]
    assert [c["prim"] for c in info.value.cycle] == [prim_of(lock)]
    assert ev["cycle"][0]["held_by"] == threading.get_native_id()
    (failed,) = events.where(event="acquire", prim=prim_of(lock), ok=False)
    assert failed["contended"] is True
    (why,) = events.where(event="interrupted", prim=prim_of(lock))
    assert "DeadlockError" in why["error"]


def test_raise_leaves_a_timed_acquire_its_contract() -> None:
    """With on_deadlock="raise", an acquire *with a timeout* that closes a cycle is reported
    and then times out, returning False, as it would without tracedsync."""
    tracedsync.configure(on_deadlock="raise")
    lock = tracedsync.Lock()
    with capture() as events, lock:
        assert lock.acquire(timeout=0.01) is False
    (ev,) = events.where(event="deadlock")
    assert ev["action"] == "report" and ev["cycle"][0]["timeout"] == 0.01


def test_semaphores_in_the_wait_for_graph() -> None:
    """Two BoundedSemaphore(1) taken in opposite orders: the permit holders are the owners, so
    the cycle is found like a lock's."""
    tracedsync.configure(on_deadlock="raise")
    s1, s2 = tracedsync.BoundedSemaphore(1, name="s1"), tracedsync.BoundedSemaphore(1, name="s2")
    both = RawBarrier(2)
    caught: list[tracedsync.DeadlockError] = []

    def left() -> None:
        with s1:
            both.wait(LIMIT)
            if s2.acquire(timeout=LIMIT):
                s2.release()

    def right() -> None:
        with s2:
            both.wait(LIMIT)
            until(lambda: _waits_on(t_left, s2, "sem_acquire"), "left to block on s2")
            try:
                s1.acquire()  # raises
            except tracedsync.DeadlockError as exc:
                caught.append(exc)

    t_left = _start(left, "left")
    t_right = _start(right, "right")
    _join(t_left, t_right)
    (exc,) = caught
    assert [(c["name"], c["what"]) for c in exc.cycle] == [("s1", "sem_acquire"),
                                                          ("s2", "sem_acquire")]


def test_function_api_with_pid_tid_owners() -> None:
    """The API other primitives use (`waiting`/`done`): owners given as (pid, native tid) of a
    thread of this process are the same thread as its ident, so a cycle through them closes."""
    tracedsync.configure(on_deadlock="raise")
    a = tracedsync.Lock(name="a")
    external = tracedsync.Lock(name="external")  # stands for a primitive tracedsync does not own
    st_external = _locks.lock_state(external)
    both = RawBarrier(2)
    released = RawEvent()
    caught: list[tracedsync.DeadlockError] = []
    holder_tid: list[int] = []

    def left() -> None:
        with a:
            both.wait(LIMIT)
            # "Blocked" on the external primitive, held by `right` by (pid, native tid).
            waits.waiting(st_external, lambda: ((os.getpid(), holder_tid[0]),), timeout=LIMIT)
            try:
                released.wait(LIMIT)
            finally:
                waits.done()

    def right() -> None:
        holder_tid.append(threading.get_native_id())
        both.wait(LIMIT)
        until(lambda: _waits_on(t_left, external), "left to register its wait")
        try:
            a.acquire()  # raises
        except tracedsync.DeadlockError as exc:
            caught.append(exc)
        released.set()

    t_left = _start(left, "left")
    t_right = _start(right, "right")
    _join(t_left, t_right)
    (exc,) = caught
    assert [c["prim"] for c in exc.cycle] == [prim_of(a), prim_of(external)]
    assert not current().get(t_left.ident or 0)


def test_remote_lookup_continues_the_walk_into_another_process() -> None:
    """`set_remote`: a wait whose owner is a thread of another process continues through what
    that process says the thread waits for; the remote entry appears in the cycle as given."""
    tracedsync.configure(on_deadlock="raise")
    a = tracedsync.Lock(name="a")
    st_a = _locks.lock_state(a)
    other_pid = 2**22 + 7  # no such process here
    me = (os.getpid(), threading.get_native_id())

    def lookup(pid: int, tid: int) -> RemoteWait | None:
        if (pid, tid) == (other_pid, 42):
            return RemoteWait(pid, tid, f"{other_pid}.1", owners=(me,), name="theirs", kind="Lock")
        return None

    before = waits._remote
    waits.set_remote(lookup)
    try:
        with a, pytest.raises(tracedsync.DeadlockError) as info:
            waits.waiting(st_a, lambda: ((other_pid, 42),))
    finally:
        waits.set_remote(before)
        waits.done()
    mine, theirs = info.value.cycle
    assert mine["held_by"] == 42 and mine["held_by_pid"] == other_pid
    assert (theirs["pid"], theirs["tid"], theirs["name"]) == (other_pid, 42, "theirs")
    assert theirs["held_by"] == me[1]


# -- lock order ----------------------------------------------------------------------------------
def _forward(a: Any, b: Any) -> None:
    with a:  # noqa: SIM117 - two lines: two call sites
        with b:  # forward: b while holding a
            pass


def _backward(a: Any, b: Any) -> None:
    with b:
        a.acquire(timeout=LIMIT)  # backward: a while holding b
        a.release()


def test_lock_order_event_reported_once_per_site_pair() -> None:
    """A→B then B→A (one thread, no deadlock) is a lock_order event naming both sites; the same
    two sites again, on the same locks or on new ones, report nothing more."""
    tracedsync.configure(lock_order=True)
    _lockorder.reset()
    with capture() as events:
        locks = []
        for _ in range(3):
            a, b = tracedsync.Lock(name="a"), tracedsync.RLock(name="b")
            locks.append((a, b))
            _forward(a, b)
            _backward(a, b)
            _backward(a, b)
    (ev,) = events.where(event="lock_order")
    a, b = locks[0]
    assert (ev["prim"], ev["name"], ev["held"], ev["held_name"]) == (
        prim_of(a), "a", prim_of(b), "b")
    assert ev["func"].endswith("_backward") and ev["held_site"].startswith(__file__)
    assert ev["site"] != ev["held_site"]
    (rev,) = ev["reverse"]
    assert (rev["from"], rev["to"], rev["tid"]) == (
        prim_of(a), prim_of(b), threading.get_native_id())
    assert rev["held_site"].startswith(__file__) and rev["site"] != rev["held_site"]
    assert ev["stack"][-1].endswith("_backward")


def test_lock_order_event_through_a_condition_reacquire() -> None:
    """Re-acquiring a condition's lock at the end of a wait while holding another lock is an
    edge too: B held, wait on a condition over A, then elsewhere A→B."""
    tracedsync.configure(lock_order=True)
    _lockorder.reset()
    a = tracedsync.Lock(name="a")
    b = tracedsync.Lock(name="b")
    cond = tracedsync.Condition(a)
    with capture() as events, cond, b:  # a → b
        cond.wait(0)  # releases a, times out at once, re-acquires a while holding b: b → a
    (ev,) = events.where(event="lock_order")
    assert (ev["prim"], ev["held"]) == (prim_of(a), prim_of(b))
    assert ev["func"] == sys._getframe().f_code.co_name
    assert ev["reverse"][0]["from"] == prim_of(a) and ev["reverse"][0]["to"] == prim_of(b)


def test_lock_order_is_opt_in_and_switches_cleanly() -> None:
    """Off by default: the classes keep the methods _locks.py installed (C or Python); on, they
    are wrapped; off again, exactly the originals are back. Nothing is reported when off."""
    names = ("acquire", "__enter__", "release", "__exit__")
    base = _locks._twin()._TracedLockBase  # the pure-Python twin (imported if it was not)
    original = {n: vars(base)[n] for n in names}
    assert not tracedsync.settings().lock_order and not _lockorder.enabled()
    tracedsync.configure(lock_order=True)
    assert all(vars(base)[n] is not original[n] for n in names)
    tracedsync.configure(lock_order=False)
    assert {n: vars(base)[n] for n in names} == original
    a, b = tracedsync.Lock(), tracedsync.Lock()
    with capture() as events:
        _forward(a, b)
        _backward(a, b)
    assert not events.where(event="lock_order")


def test_held_lists_follow_acquire_and_release() -> None:
    """With lock_order on, a thread's held list has exactly the traced locks it holds, in order,
    including RLock recursion (listed once) and a plain Lock released by another thread."""
    tracedsync.configure(lock_order=True)
    me = threading.get_ident()
    a, b, c = tracedsync.RLock(), tracedsync.Lock(), tracedsync.Lock()

    def held() -> list[str]:
        return [h[0].prim for h in _lockorder._held.get(me, [])]

    with a, a, b:
        assert held() == [prim_of(a), prim_of(b)]
        c.acquire()
        t = _start(c.release, "releaser")
        _join(t)
        assert held() == [prim_of(a), prim_of(b)]
    assert held() == []


# -- watchdog ------------------------------------------------------------------------------------
def test_long_wait_is_reported_while_the_thread_still_waits() -> None:
    """A wait past long_wait is written while the thread is still blocked, with its stack and
    the holder, once per wait."""
    tracedsync.configure(long_wait=0.05, flush_interval=0.02)
    lock = tracedsync.Lock(name="slow")

    def blocked() -> None:
        if lock.acquire(timeout=LIMIT):
            lock.release()

    with lock:
        t = _start(blocked, "blocked")
        (ev,) = until(lambda: _on_disk("long_wait", prim=prim_of(lock)), "a long_wait on disk")
        assert t.is_alive() and _waits_on(t, lock)  # still waiting: we still hold the lock
        _two_more_ticks()  # later passes report nothing new for the same wait
    _join(t)
    tracedsync.flush()
    assert len(_on_disk("long_wait", prim=prim_of(lock))) == 1
    assert ev["tid"] == t.native_id and ev["blocked_by"] == threading.get_native_id()
    assert ev["owners"] == [threading.get_native_id()] and ev["ongoing"] is True
    assert ev["wait_ns"] >= 50_000_000 and ev["what"] == "acquire" and ev["timeout"] == LIMIT
    assert ev["site"].startswith(__file__) and ev["stack"][-1].endswith("blocked")


def test_long_hold_is_reported_while_still_held() -> None:
    """A lock held past long_hold is reported while still held, with the holder's stack; once
    per hold."""
    tracedsync.configure(long_hold=0.05, flush_interval=0.02)
    lock = tracedsync.RLock(name="hog")
    with lock, lock:
        (ev,) = until(lambda: _on_disk("long_hold", prim=prim_of(lock)), "a long_hold on disk")
        assert lock.statistics().owner == threading.get_ident()
        _two_more_ticks()
    tracedsync.flush()
    assert len(_on_disk("long_hold", prim=prim_of(lock))) == 1
    assert ev["tid"] == threading.get_native_id() and ev["depth"] == 2
    assert ev["hold_ns"] >= 50_000_000 and ev["ongoing"] is True and ev["alive"] is True
    assert any("test_long_hold_is_reported_while_still_held" in f for f in ev["stack"])


def test_watchdog_scan_finds_a_cycle_no_check_saw() -> None:
    """A cycle closed without a check (here: registered with check=False) is found by the
    watchdog's scan and reported once, by "watchdog"."""
    lock = tracedsync.Lock(name="mine")
    st = _locks.lock_state(lock)
    me = threading.get_ident()
    RECORDER.tick_hooks.remove(_watchdog.tick)  # this test is the only scanner
    try:
        with lock, capture() as events:
            waits.register(waits.Wait(me, st, "acquire", None, sys._getframe()), check=False)
            try:
                assert deadlock.scan() == 1
                assert deadlock.scan() == 0
            finally:
                waits.done()
    finally:
        RECORDER.tick_hooks.append(_watchdog.tick)
    (ev,) = events.where(event="deadlock")
    assert ev["detected_by"] == "watchdog" and ev["action"] == "report"


# -- snapshot ------------------------------------------------------------------------------------
def test_snapshot_shows_holders_waiters_and_stacks() -> None:
    """snapshot(): who holds what (depth, since when), who waits for what and for whom, and
    every thread's stack; as_dict() is plain data; record=True writes a snapshot event."""
    a, b = tracedsync.RLock(name="a"), tracedsync.Lock(name="b")
    sem = tracedsync.Semaphore(2, name="pool")
    holding, done = RawEvent(), RawEvent()

    def holder() -> None:
        with b, sem:
            holding.set()
            done.wait(LIMIT)

    def waiter() -> None:
        with a, a:
            if b.acquire(timeout=LIMIT):
                b.release()

    t_hold = _start(holder, "holder")
    holding.wait(LIMIT)
    t_wait = _start(waiter, "waiter")
    until(lambda: _waits_on(t_wait, b), "the waiter to block on b")
    try:
        with capture() as events:
            snap = tracedsync.snapshot(record=True)
    finally:
        done.set()
        _join(t_hold, t_wait)
    w = snap.thread(t_wait.native_id or 0)
    h = snap.thread(t_hold.native_id or 0)
    assert w is not None and h is not None
    assert [(x.prim, x.depth) for x in w.holds] == [(prim_of(a), 2)]
    assert w.waiting is not None and w.waiting.prim == prim_of(b) and w.waiting.what == "acquire"
    assert w.waiting.held_by == (t_hold.native_id,) and w.waiting.site is not None
    assert {(x.prim, x.depth) for x in h.holds} == {(prim_of(b), 1), (prim_of(sem), 1)}
    assert h.waiting is None and w.name == "waiter" and w.alive
    assert w.stack[-1].endswith(" " + _func(waiter))
    assert any(f.endswith(" " + _func(holder)) for f in h.stack)
    assert snap.threads[0].name == "MainThread" and snap.deadlocks == ()
    assert snap.pid == os.getpid()
    data = snap.as_dict()
    assert json.loads(json.dumps(data))["threads"][0]["name"] == "MainThread"
    (ev,) = events.where(event="snapshot")
    assert ev["reason"] == "api" and len(ev["threads"]) == len(snap.threads)


def test_snapshot_lists_a_deadlock_in_progress() -> None:
    """A snapshot taken during a (reported) deadlock names the cycle's threads."""
    a, b = tracedsync.Lock(), tracedsync.Lock()
    both = RawBarrier(2)

    def left() -> None:
        a.acquire()
        both.wait(LIMIT)
        if b.acquire(timeout=LIMIT):
            b.release()
        # `a` is released by the main thread (a plain Lock may be): that ends the deadlock.

    def right() -> None:
        with b:
            both.wait(LIMIT)
            until(lambda: _waits_on(t_left, b), "left to block")
            if a.acquire(timeout=LIMIT):  # closes the cycle: reported, then blocks
                a.release()

    t_left = _start(left, "left")
    t_right = _start(right, "right")
    snap = until(lambda: (s := tracedsync.snapshot()).deadlocks and s, "the deadlock")
    a.release()
    _join(t_left, t_right)
    (cycle,) = snap.deadlocks
    assert set(cycle) == {t_left.native_id, t_right.native_id}


_SIGNAL_PROGRAM = textwrap.dedent(
    """
    import sys, threading, time
    import tracedsync
    tracedsync.configure(log_dir=sys.argv[1])
    from tracedsync._core.waits import current
    lock = tracedsync.Lock(name="held")
    holding = threading.Event()
    def holder():
        with lock:
            holding.set()
            while threading.main_thread().ident not in current():  # main blocked on the lock
                time.sleep(0.001)
            print(tracedsync.log_path(), flush=True)
            threading.Event().wait(60)
    threading.Thread(target=holder, name="holder", daemon=True).start()
    holding.wait(60)
    lock.acquire(timeout=60)  # "hung": the parent sends SIGUSR1, then kills us
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 on this platform")
def test_sigusr1_writes_a_snapshot(tmp_path: Path) -> None:
    """A hung process that gets SIGUSR1 writes a snapshot event to its log: the main thread
    waits for the lock, the holder holds it."""
    script = tmp_path / "prog.py"
    script.write_text(_SIGNAL_PROGRAM)
    env = clean_env()
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "logs")],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        log = Path(proc.stdout.readline().strip())
        proc.send_signal(signal.SIGUSR1)

        def snapshot_event() -> dict[str, Any] | None:
            if not log.exists():
                return None
            for line in log.read_text().splitlines():
                if '"snapshot"' in line:
                    ev = json.loads(line)
                    if ev["event"] == "snapshot":
                        return ev  # type: ignore[no-any-return]
            return None

        ev = until(snapshot_event, "the snapshot event in the child's log")
    finally:
        proc.kill()
        proc.wait(LIMIT)
    assert ev["reason"] == "signal SIGUSR1"
    threads = {t["name"]: t for t in ev["threads"]}
    assert threads["MainThread"]["waiting"]["what"] == "acquire"
    assert threads["MainThread"]["waiting"]["held_by"] == [threads["holder"]["tid"]]
    assert [h["name"] for h in threads["holder"]["holds"]] == ["held"]


_HANDLER_PROGRAM = textwrap.dedent(
    """
    import signal, sys
    def mine(signum, frame):
        pass
    if sys.argv[1] == "own":
        signal.signal(signal.SIGUSR1, mine)
    import tracedsync
    from tracedsync._record import sighandlers

    def seen():
        handler = signal.getsignal(signal.SIGUSR1)
        view = ("mine" if handler is mine else "default" if handler is signal.SIG_DFL
                else "other")
        return view + ("+ours" if sighandlers.installed(signal.SIGUSR1) else "")

    print(seen())
    tracedsync.configure(snapshot_signal="none")
    print(seen())
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 on this platform")
@pytest.mark.parametrize(
    ("mode", "env_value", "expected"),
    [("default", None, "default+ours default"), ("own", None, "mine mine"),
     ("default", "none", "default default"), ("default", "", "default default")],
)
def test_signal_handler_is_installed_only_over_the_default(
    tmp_path: Path, mode: str, env_value: str | None, expected: str
) -> None:
    """The handler goes in only over the default disposition, where the program still sees
    SIG_DFL: a program's own handler stays, TRACEDSYNC_SNAPSHOT_SIGNAL=none (or empty) installs
    none, and "none" later gives it back."""
    script = tmp_path / "prog.py"
    script.write_text(_HANDLER_PROGRAM)
    env = clean_env(TRACEDSYNC_LOG_DIR=str(tmp_path / "logs"))
    if env_value is not None:
        env["TRACEDSYNC_SNAPSHOT_SIGNAL"] = env_value
    out = subprocess.run([sys.executable, str(script), mode], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert " ".join(out) == expected


# -- settings ------------------------------------------------------------------------------------
def test_settings_from_environment_and_validation() -> None:
    """The TRACEDSYNC_* variables of the detection settings parse, round-trip through to_env,
    and bad values are refused."""
    s = tracedsync.Settings.from_env({
        "TRACEDSYNC_ON_DEADLOCK": "raise", "TRACEDSYNC_LOCK_ORDER": "1",
        "TRACEDSYNC_LONG_WAIT": "0.5", "TRACEDSYNC_LONG_HOLD": "none",
        "TRACEDSYNC_SNAPSHOT_SIGNAL": "SIGUSR2",
    })
    assert (s.on_deadlock, s.lock_order, s.long_wait, s.long_hold, s.snapshot_signal) == (
        "raise", True, 0.5, None, "SIGUSR2")
    again = tracedsync.Settings.from_env(s.to_env())
    assert (again.on_deadlock, again.lock_order, again.long_wait, again.long_hold,
            again.snapshot_signal) == ("raise", True, 0.5, None, "SIGUSR2")
    assert tracedsync.Settings.from_env(tracedsync.Settings().to_env()).long_wait is None
    assert tracedsync.Settings.from_env({"TRACEDSYNC_SNAPSHOT_SIGNAL": ""}).snapshot_signal == ""
    d = tracedsync.Settings()
    assert (d.on_deadlock, d.lock_order, d.long_wait, d.long_hold, d.snapshot_signal) == (
        "report", False, None, None, "SIGUSR1")
    assert d.replace(long_wait=1.0).replace(long_wait=None).long_wait is None
    for bad in ({"on_deadlock": "panic"}, {"long_wait": 0}, {"long_hold": -1},
                {"lock_order": "yes"}, {"snapshot_signal": "USR 1"}):
        with pytest.raises(tracedsync.ConfigError):
            d.replace(**bad)
    for env in ({"TRACEDSYNC_LOCK_ORDER": "maybe"}, {"TRACEDSYNC_LONG_WAIT": "soon"}):
        errors: list[str] = []
        assert tracedsync.Settings.from_env(env, errors) == d  # ignored, named
        (error,) = errors
        assert error.startswith(next(iter(env)))


def test_no_false_deadlock_under_heavy_contention() -> None:
    """Threads taking random sets of locks always in one global order never deadlock: however
    the walks interleave with acquires and releases (tiny switch interval, so the GIL changes
    hands in the middle of the checks), no deadlock is reported and nothing raises."""
    tracedsync.configure(on_deadlock="raise")
    locks = [tracedsync.Lock() if i % 2 else tracedsync.RLock() for i in range(5)]
    sem = tracedsync.BoundedSemaphore(2)
    errors: list[BaseException] = []
    start = RawBarrier(4)

    def worker(seed: int) -> None:
        import random

        rnd = random.Random(seed)
        start.wait(LIMIT)
        try:
            for _ in range(400):
                chosen = sorted(rnd.sample(range(len(locks)), rnd.randint(1, 3)))
                with sem:
                    for i in chosen:
                        locks[i].acquire()
                    time.sleep(0)  # not synchronisation: give up the GIL while holding them
                    for i in reversed(chosen):
                        locks[i].release()
        except BaseException as exc:  # any error fails the test below
            errors.append(exc)

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with capture() as events:
            threads = [_start(functools.partial(worker, s), f"w{s}") for s in range(4)]
            _join(*threads)
    finally:
        sys.setswitchinterval(before)
    assert not errors
    assert not events.where(event="deadlock")
