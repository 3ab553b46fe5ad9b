"""Native waits: a contended acquire (or a condition wait's re-acquire) of a native Lock/RLock
registers in C (``_native_src/waits.c``) and blocks untimed at once; Python readers see it as a
`waits.Wait` (one object per wait), and it is gone once the wait ends, in this process and in a
forked child. The deadlock rules over such waits are tested in test_detect*.py.

Threads are coordinated with events and bounded polling of a state, never sleeps.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from helpers import LIMIT, join_threads, start_thread, until

import tracedsync
from tracedsync._core import runtime as rt
from tracedsync._core import waits
from tracedsync._core.native import NATIVE

pytestmark = pytest.mark.skipif(NATIVE is None, reason="the native recorder is not built")

RawEvent = threading.Event


def _hold(lock: object, held: threading.Event, go: threading.Event) -> None:
    with lock:  # type: ignore[attr-defined]
        held.set()
        go.wait(LIMIT)


@pytest.mark.parametrize("factory", [tracedsync.Lock, tracedsync.RLock])
def test_a_blocked_acquire_is_a_wait_until_it_ends(factory: object) -> None:
    lock = factory(name="contended")  # type: ignore[operator]
    held, go = RawEvent(), RawEvent()
    got: list[bool] = []
    holder = start_thread(lambda: _hold(lock, held, go), "holder")
    assert held.wait(LIMIT)

    def waiter() -> None:
        got.append(lock.acquire())  # WAITER-LINE
        lock.release()

    before = rt.now()
    t = start_thread(waiter, "waiter")
    ident = t.ident or 0
    w = until(lambda: waits.current().get(ident), "the waiter to block")
    assert NATIVE is not None and NATIVE.waiting() == 1
    assert w.st is lock and w.what == "acquire" and w.timeout is None
    assert before <= w.since <= rt.now()
    code, line = w.site()
    assert code is waiter.__code__
    assert "WAITER-LINE" in Path(__file__).read_text(encoding="utf-8").splitlines()[line - 1]
    assert waits.lookup(ident) is w  # one object per wait: the deadlock walk compares them
    assert w.owners() == (holder.ident,)
    go.set()
    join_threads(holder, t)
    assert got == [True]
    assert NATIVE.waiting() == 0 and ident not in waits.current()


def test_a_timed_wait_carries_its_timeout() -> None:
    lock = tracedsync.RLock()
    held, go = RawEvent(), RawEvent()
    holder = start_thread(lambda: _hold(lock, held, go), "holder")
    assert held.wait(LIMIT)
    got: list[bool] = []

    def waiter() -> None:
        got.append(lock.acquire(timeout=LIMIT))
        lock.release()

    t = start_thread(waiter, "waiter")
    w = until(lambda: waits.current().get(t.ident or 0), "the waiter to block")
    assert w.timeout == LIMIT
    go.set()
    join_threads(holder, t)
    assert got == [True]


def test_a_condition_reacquire_is_a_restore_wait() -> None:
    cond = tracedsync.Condition()
    waiting_ident: list[int] = []
    woke: list[bool] = []

    def waiter() -> None:
        with cond:
            waiting_ident.append(threading.get_ident())
            woke.append(cond.wait(LIMIT))

    t = start_thread(waiter, "waiter")
    ident = until(lambda: waiting_ident and waiting_ident[0], "the waiter to start")
    with cond:
        until(lambda: getattr(waits.current().get(ident), "what", None) == "cond_wait",
              "the condition wait")
        cond.notify()
        w = until(lambda: (x := waits.current().get(ident)) is not None and x.what == "restore"
                  and x, "the notified waiter to block on the lock")
        assert w.owners() == (threading.get_ident(),)
    join_threads(t)
    assert woke == [True] and ident not in waits.current()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_has_no_native_waits() -> None:
    lock = tracedsync.Lock()
    held, go = RawEvent(), RawEvent()
    holder = start_thread(lambda: _hold(lock, held, go), "holder")
    assert held.wait(LIMIT)
    t = start_thread(lambda: (lock.acquire(), lock.release()), "waiter")
    until(lambda: NATIVE is not None and NATIVE.waiting() == 1, "the waiter to block")
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = NATIVE is not None and NATIVE.waiting() == 0 and not waits.current()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    go.set()
    join_threads(holder, t)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="no pthread_kill here")
def test_a_signal_handler_during_the_wait_sees_it_and_the_wait_goes_on() -> None:
    """A handler that interrupts a blocked acquire runs with the wait registered (a SIGUSR1
    snapshot shows the thread waiting), and the acquire goes on waiting after it."""
    lock = tracedsync.Lock()
    main = threading.get_ident()
    seen: list[object] = []
    held = RawEvent()

    def handler(signum: int, frame: object) -> None:
        w = waits.current().get(main)
        seen.append(w is not None and w.st is lock and w.what)

    def helper() -> None:
        with lock:
            held.set()
            until(lambda: NATIVE is not None and NATIVE.waiting() == 1, "main to block")
            signal.pthread_kill(main, signal.SIGUSR2)
            until(lambda: seen, "the handler to run")

    previous = signal.signal(signal.SIGUSR2, handler)
    try:
        t = start_thread(helper, "helper")
        assert held.wait(LIMIT)
        assert lock.acquire(timeout=LIMIT)  # blocks until the helper lets go
        join_threads(t)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    lock.release()
    assert seen == ["acquire"]
    assert NATIVE is not None and NATIVE.waiting() == 0 and main not in waits.current()
