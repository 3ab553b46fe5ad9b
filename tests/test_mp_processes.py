"""Traced multiprocessing primitives across processes, under every start method: one id in every
process (Process arguments, Pool initializers), each child's own log with its events flushed,
blocked_by/blocked_by_pid naming a holder in another process, and causes seen across processes.

Processes are coordinated with multiprocessing's own (untraced) Events; every blocking call has
a timeout; spawn children are slow to start, so each test starts one child (or one worker).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import prim_of, read_jsonl, until

import tracedsync
import tracedsync.mp
from tracedsync._multiprocessing.locks import waiting_here
from tracedsync.testing import capture

METHODS = multiprocessing.get_all_start_methods()
TIMEOUT = 60


def _log(log_dir: str, pid: int | None) -> list[dict[str, Any]]:
    """The events of process ``pid`` (its own file in the shared log directory)."""
    return read_jsonl(os.path.join(log_dir, f"tracedsync-{pid}.jsonl"))


def _run(ctx: Any, target: Callable[..., Any], *args: Any) -> Any:
    """Start a child running ``target(*args)`` and wait for it (with a timeout)."""
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join(TIMEOUT)
    assert p.exitcode == 0, f"child exit code {p.exitcode}"
    return p


# -- what the children run (module level: spawn and forkserver children import them) -------------
def _use_value_and_lock(v: Any, lock: Any, out: Any) -> None:
    with lock:
        pass
    v.value += 1  # an unsynchronised read-modify-write, in the child
    with v.get_lock():
        v.value += 1
    out.put((prim_of(v), prim_of(lock), prim_of(v.get_lock())))


_POOL_VALUE: Any = None


def _pool_init(v: Any) -> None:
    global _POOL_VALUE
    _POOL_VALUE = v


def _pool_task(x: int) -> tuple[int, str]:
    with _POOL_VALUE.get_lock():
        _POOL_VALUE.value += x
    return os.getpid(), prim_of(_POOL_VALUE)


def _hold_until(lock: Any, held: Any, release: Any, tid: Any) -> None:
    with lock:
        tid.value = threading.get_native_id()
        held.set()
        release.wait(TIMEOUT)


def _break_by_timeout(barrier: Any, tid: Any) -> None:
    tid.value = threading.get_native_id()
    try:
        barrier.wait(0.01)  # the other party arrives only after this process has exited
    except threading.BrokenBarrierError:
        pass


def _notify_and_set(cond: Any, done: Any) -> None:
    with cond:  # free only once the parent waits (it holds the lock until then)
        cond.notify()
    done.set()


# -- tests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_process_arguments_keep_their_ids(method: str, log_dir: str) -> None:
    """A Value and a Lock passed to a child keep their prim ids there; the child writes its own
    log (attached, not created, when pickled), with its events flushed before it exits."""
    ctx = multiprocessing.get_context(method)
    v = tracedsync.mp.Value("i", 0, ctx=ctx, name="shared")
    lock = tracedsync.mp.Lock(ctx=ctx, name="gate")
    out = ctx.SimpleQueue()
    p = _run(ctx, _use_value_and_lock, v, lock, out)
    assert out.get() == (prim_of(v), prim_of(lock), prim_of(v.get_lock()))
    assert v.value == 2
    events = _log(log_dir, p.pid)
    session = events[0]
    assert session["event"] == "session" and session["pid"] == p.pid
    assert session["ppid"] == os.getpid()  # under forkserver too: not the fork server
    assert session["process"] == p.name
    attached = {e["prim"]: e for e in events if e["event"] == "attached"}
    if method == "fork":
        assert attached == {}  # inherited: nothing was pickled
    else:
        assert set(attached) == {prim_of(v), prim_of(lock), prim_of(v.get_lock())}
        assert attached[prim_of(v)]["kind"] == "Value" and attached[prim_of(v)]["name"] == "shared"
        assert attached[prim_of(v)]["typecode"] == "i"
        assert attached[prim_of(v)]["lock"] == prim_of(v.get_lock())
        assert attached[prim_of(lock)]["start_method"] == method
        assert {e["prim"].split(".")[0] for e in attached.values()} == {str(os.getpid())}
    assert [e for e in events if e["event"] == "created"] == []
    mine = {e["event"] for e in events if e.get("prim") == prim_of(lock)}
    assert {"acquire", "release"} <= mine
    (rmw,) = [e for e in events if e["event"] == "rmw"]
    assert rmw["prim"] == prim_of(v) and rmw["func"] == "_use_value_and_lock"
    gets = [e for e in events if e["event"] == "value_get"]
    assert [e["locked"] for e in gets] == [False, True]


@pytest.mark.parametrize("method", METHODS)
def test_pool_initializer_arguments_keep_their_ids(method: str, log_dir: str) -> None:
    """A Value given to a Pool's initializer is the same Value (same id) in the worker."""
    ctx = multiprocessing.get_context(method)
    v = tracedsync.mp.Value("i", 0, ctx=ctx, name="total")
    pool = ctx.Pool(1, initializer=_pool_init, initargs=(v,))
    try:
        results = pool.map_async(_pool_task, [1, 2], chunksize=1).get(TIMEOUT)
    finally:
        pool.close()
        workers = list(pool._pool)  # type: ignore[attr-defined]
        for w in workers:
            w.join(TIMEOUT)
        pool.join()
    assert {prim for _, prim in results} == {prim_of(v)}
    assert v.value == 3
    (pid,) = {pid for pid, _ in results}
    events = _log(log_dir, pid)
    sets = [e for e in events if e["event"] == "value_set"]
    assert [(e["prim"], e["locked"]) for e in sets] == [(prim_of(v), True)] * 2
    attached = [e["prim"] for e in events if e["event"] == "attached"]
    assert attached == ([] if method == "fork" else [prim_of(v.get_lock()), prim_of(v)])


@pytest.mark.parametrize("method", METHODS)
def test_blocked_by_names_a_holder_in_another_process(method: str) -> None:
    """While a child holds a Lock, a timed-out try and a blocked thread of the parent record the
    child's thread and pid as blocked_by/blocked_by_pid."""
    ctx = multiprocessing.get_context(method)
    lock = tracedsync.mp.Lock(ctx=ctx)
    held, release = ctx.Event(), ctx.Event()
    tid = ctx.RawValue("q", 0)
    p = ctx.Process(target=_hold_until, args=(lock, held, release, tid))
    p.start()
    got: list[bool] = []
    try:
        assert held.wait(TIMEOUT)
        with capture() as events:
            assert lock.acquire(True, 0.01) is False
            w = threading.Thread(target=lambda: got.append(lock.acquire(True, TIMEOUT)))
            w.start()
            until(lambda: waiting_here(lock) == 1)  # its first try failed; it is blocked
            release.set()
            w.join(TIMEOUT)
    finally:
        release.set()
        p.join(TIMEOUT)
    assert got == [True] and p.exitcode == 0
    lock.release()
    tries = events.where(event="acquire", prim=prim_of(lock))
    assert [(e["ok"], e["contended"]) for e in tries] == [(False, True), (True, True)]
    for e in tries:
        assert (e["blocked_by"], e["blocked_by_pid"]) == (tid.value, p.pid)
    assert tries[1]["wait_ns"] > 0


@pytest.mark.parametrize("method", METHODS)
def test_a_barrier_broken_in_a_child_names_it_in_the_parent(method: str) -> None:
    """A child's wait times out and breaks the barrier; the parent's wait, broken, records the
    child's thread and pid as broken_by/broken_by_pid, and why."""
    ctx = multiprocessing.get_context(method)
    barrier = tracedsync.mp.Barrier(2, ctx=ctx)
    tid = ctx.RawValue("q", 0)
    p = _run(ctx, _break_by_timeout, barrier, tid)
    with capture() as events, pytest.raises(threading.BrokenBarrierError):
        barrier.wait(TIMEOUT)
    (broken,) = events.where(event="barrier_broken", prim=prim_of(barrier))
    assert broken["why"] == "timeout"
    assert (broken["broken_by"], broken["broken_by_pid"]) == (tid.value, p.pid)
    assert barrier.statistics().breaks == 1


@pytest.mark.parametrize("method", METHODS)
def test_condition_notified_from_another_process(method: str, log_dir: str) -> None:
    """A child notifies the parent's wait: notified in the parent, waiters 1 in the child."""
    ctx = multiprocessing.get_context(method)
    cond = tracedsync.mp.Condition(ctx=ctx)
    done = tracedsync.mp.Event(ctx=ctx)
    with capture() as events:
        with cond:
            p = ctx.Process(target=_notify_and_set, args=(cond, done))
            p.start()
            assert cond.wait(TIMEOUT) is True
        assert done.wait(TIMEOUT) is True
    p.join(TIMEOUT)
    assert p.exitcode == 0
    (wake,) = events.where(event="cond_wake", prim=prim_of(cond))
    assert wake["notified"] is True
    child = _log(log_dir, p.pid)
    (note,) = [e for e in child if e["event"] == "notify"]
    assert note["prim"] == prim_of(cond) and note["waiters"] == 1
    (sets,) = [e for e in child if e["event"] == "event_set"]
    assert sets["prim"] == prim_of(done)


@pytest.mark.parametrize(
    "method",
    METHODS,
)
def test_child_log_ends_with_stats_and_session_end(method: str, log_dir: str) -> None:
    """A child's log ends like any process's: counters of its live primitives, session_end."""
    ctx = multiprocessing.get_context(method)
    v = tracedsync.mp.Value("i", 0, ctx=ctx)
    lock = tracedsync.mp.Lock(ctx=ctx)
    with lock:  # counted here, not in the child (under fork too)
        v.value += 1
    out = ctx.SimpleQueue()
    p = _run(ctx, _use_value_and_lock, v, lock, out)
    out.get()
    events = _log(log_dir, p.pid)
    stats = {e["prim"]: e for e in events if e["event"] == "stats"}
    assert stats[prim_of(v)]["reads"] == 2 and stats[prim_of(v)]["rmws"] == 1
    assert stats[prim_of(lock)]["acquisitions"] == 1
    assert events[-1]["event"] == "session_end"
