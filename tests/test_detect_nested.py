"""Nested-monitor lockout at run time: a thread blocks on a lock whose holder waits on a
Condition over another lock. Reported once, with both threads, sites and stacks, whichever of
the two moments forms it; never for a holder that is running, or waiting on that very lock's
condition.

Threads are coordinated with bounded polling of the wait-for table and events; the lockout is
ended by a third thread notifying the condition (the test's only way out, by design).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import prim_of, until

import tracedsync
from tracedsync._core.waits import current
from tracedsync._detect import nested
from tracedsync.testing import capture

LIMIT = 10.0


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    nested.reset()
    yield
    nested.reset()


def _waits(thread: threading.Thread, obj: Any, what: str) -> bool:
    w = current().get(thread.ident or 0)
    return w is not None and w.st.prim == prim_of(obj) and w.what == what


def _join(*threads: threading.Thread) -> None:
    for t in threads:
        t.join(LIMIT)
        assert not t.is_alive(), f"{t.name} did not finish"


def _setup() -> tuple[Any, Any, list[int]]:
    return tracedsync.Lock(name="outer"), tracedsync.Condition(name="cond"), []


@pytest.mark.parametrize("order", ["waiter_blocks_last", "holder_waits_last"])
def test_a_nested_monitor_lockout_is_reported_with_both_threads(order: str) -> None:
    """holder: ``with outer: with cond: cond.wait()``; notifier: ``with outer:`` blocks. Found
    when the notifier blocks (the holder already waits) and when the holder starts waiting
    (the notifier already blocked)."""
    outer, cond, flag = _setup()
    holding = threading.Event()

    def holder() -> None:
        with outer:
            holding.set()
            if order == "holder_waits_last":
                until(lambda: _waits(n, outer, "acquire"), "the notifier to block on outer")
            with cond:
                while not flag:
                    cond.wait(LIMIT)  # HOLDER-WAITS

    def notifier() -> None:
        holding.wait(LIMIT)
        if order == "waiter_blocks_last":
            until(lambda: _waits(h, cond, "cond_wait"), "the holder to wait on cond")
        with outer:  # LOCKED-OUT
            pass

    with capture() as events:
        h = threading.Thread(target=holder, name="holder", daemon=True)
        n = threading.Thread(target=notifier, name="notifier", daemon=True)
        h.start()
        n.start()
        until(lambda: events.where(event="nested_monitor"), "the nested_monitor event")
        with cond:  # the way out: a third thread that can notify
            flag.append(1)
            cond.notify()
        _join(h, n)
    (ev,) = events.where(event="nested_monitor")
    assert ev["prim"] == prim_of(outer) and ev["cond"] == prim_of(cond)
    assert (ev["thread"], ev["holder_thread"]) == ("notifier", "holder")
    assert ev["tid"] == n.native_id and ev["holder"] == h.native_id
    assert ev["cond_lock"] == prim_of(cond._lock)  # type: ignore[attr-defined]
    assert ev["site"].endswith(f":{_line_of('# LOCKED-OUT')}")
    assert ev["holder_site"].endswith(f":{_line_of('# HOLDER-WAITS')}")
    assert any("notifier" in frame for frame in ev["stack"])
    assert any("holder" in frame for frame in ev["holder_stack"])
    assert ev["timeout"] == LIMIT


def test_a_holder_that_runs_or_waits_on_its_own_lock_is_no_lockout() -> None:
    """The twins: a thread blocked on a lock whose holder is running, and a condition waited
    on under its own lock only (its notifier takes the outer lock first, as it must): nothing."""
    outer, cond, flag = _setup()
    inside = threading.Event()
    go = threading.Event()

    def runner() -> None:
        with outer:
            inside.set()
            go.wait(LIMIT)  # running, as far as the wait-for table knows (an untraced event)

    def blocked() -> None:
        inside.wait(LIMIT)
        with outer:
            pass

    def waiter() -> None:
        with cond:
            while not flag:
                cond.wait(LIMIT)

    with capture() as events:
        r = threading.Thread(target=runner, name="runner", daemon=True)
        b = threading.Thread(target=blocked, name="blocked", daemon=True)
        w = threading.Thread(target=waiter, name="waiter", daemon=True)
        for t in (r, b, w):
            t.start()
        until(lambda: _waits(b, outer, "acquire"), "blocked to block on outer")
        until(lambda: _waits(w, cond, "cond_wait"), "the waiter to wait")
        go.set()
        with outer, cond:
            flag.append(1)
            cond.notify()
        _join(r, b, w)
    assert events.where(event="nested_monitor") == []


def _line_of(text: str) -> int:
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    before = source[: source.index(text)]
    return before.count("\n") + 1
