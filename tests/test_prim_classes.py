"""The traced Semaphore, BoundedSemaphore, Event and Barrier are ``threading``'s classes,
subclassed: ``isinstance`` holds, and at level off their methods are ``threading``'s own."""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import prim_of

import tracedsync
from tracedsync.testing import capture

RECORDING: dict[str, tuple[type, type, tuple[str, ...]]] = {
    "Semaphore": (tracedsync.TracedSemaphore, threading.Semaphore,
                  ("acquire", "__enter__", "release", "__exit__")),
    "BoundedSemaphore": (tracedsync.TracedBoundedSemaphore, threading.BoundedSemaphore,
                         ("acquire", "__enter__", "release", "__exit__")),
    "Event": (tracedsync.TracedEvent, threading.Event,
              ("set", "clear", "wait", "_at_fork_reinit")),
    "Barrier": (tracedsync.TracedBarrier, threading.Barrier, ("wait", "abort", "reset", "_break")),
}
"""kind -> (traced class, threading's class, the methods that record)."""

MAKE: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
    "Semaphore": (lambda: tracedsync.Semaphore(2), lambda: threading.Semaphore(2)),
    "BoundedSemaphore": (lambda: tracedsync.BoundedSemaphore(2),
                         lambda: threading.BoundedSemaphore(2)),
    "Event": (tracedsync.Event, threading.Event),
    "Barrier": (lambda: tracedsync.Barrier(2), lambda: threading.Barrier(2)),
}


def _threadings_own(traced: type, raw: type, name: str) -> bool:
    """Whether ``traced.name`` is what ``raw.name`` is: threading's own function."""
    return bool(getattr(traced, name) is getattr(raw, name))


@pytest.mark.parametrize("kind", list(RECORDING))
def test_traced_objects_are_instances_of_threadings_classes(kind: str) -> None:
    traced_cls, raw_cls, _ = RECORDING[kind]
    obj = MAKE[kind][0]()
    assert isinstance(obj, raw_cls) and type(obj) is traced_cls
    assert issubclass(traced_cls, raw_cls)
    if kind == "BoundedSemaphore":
        assert isinstance(obj, threading.Semaphore)


@pytest.mark.parametrize("kind", list(RECORDING))
def test_level_off_leaves_threadings_own_methods(kind: str, level: None) -> None:
    """At off the recording methods are not on the class: every one of them is threading's own
    function. Back at contention or full, they are tracedsync's again."""
    traced_cls, raw_cls, names = RECORDING[kind]
    obj = MAKE[kind][0]()
    assert not any(_threadings_own(traced_cls, raw_cls, name) for name in names)
    tracedsync.configure(level="off")
    for name in names:
        assert _threadings_own(traced_cls, raw_cls, name), name
        assert getattr(obj, name).__func__ is getattr(raw_cls, name)
    for again in ("contention", "full"):
        tracedsync.configure(level=again)
        for name in names:
            assert not _threadings_own(traced_cls, raw_cls, name), (again, name)
            assert getattr(traced_cls, name).__module__.startswith("tracedsync.")


@pytest.mark.parametrize("kind", list(RECORDING))
def test_what_stays_at_every_level(kind: str, level: None) -> None:
    """statistics() and the repr are tracedsync's at every level, off included."""
    tracedsync.configure(level="off")
    obj = MAKE[kind][0]()
    assert isinstance(obj, RECORDING[kind][0])
    assert obj.statistics().kind == kind
    assert repr(obj).startswith(f"<threading.{kind}") and f"traced={prim_of(obj)}" in repr(obj)


def test_objects_made_at_full_behave_and_go_quiet_at_off(level: None) -> None:
    """A semaphore, an event and a barrier made at full, used at off: threading's behaviour, no
    events, no books; at full again they record again."""
    sem = tracedsync.BoundedSemaphore(1)
    evt = tracedsync.Event()
    barrier = tracedsync.Barrier(1)
    prims = {prim_of(sem), prim_of(evt), prim_of(barrier)}
    tracedsync.configure(level="off")
    with capture() as events:
        with sem:
            assert sem.acquire(False) is False
        with pytest.raises(ValueError):
            sem.release()
        evt.set()
        assert evt.wait(0) is True
        evt.clear()
        assert barrier.wait() == 0
    assert [e for e in events if e.get("prim") in prims] == []
    assert sem.statistics().acquisitions == 0 and evt.statistics().sets == 0
    tracedsync.configure(level="full")
    with capture() as events:
        with sem:
            pass
        evt.set()
        assert barrier.wait() == 0
    assert [e["event"] for e in events if e.get("prim") in prims] == [
        "sem_acquire", "sem_release", "event_set", "barrier_wait"]


@pytest.mark.parametrize("kind", list(RECORDING))
def test_copy_deepcopy_and_pickle_do_what_they_do_to_the_original(kind: str) -> None:
    """deepcopy and pickle fail as for the original (its lock cannot be pickled); copy.copy
    gives what it gives for the original: an object of threading's class sharing the
    Condition (untraced)."""
    make_traced, make_raw = MAKE[kind]
    traced, raw = make_traced(), make_raw()
    for fn in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError) as want:
            fn(raw)
        with pytest.raises(TypeError) as got:
            fn(traced)
        assert str(got.value) == str(want.value)
    raw_copy, traced_copy = copy.copy(raw), copy.copy(traced)
    assert type(raw_copy) is type(raw) and type(traced_copy) is type(raw)
    assert raw_copy._cond is raw._cond and traced_copy._cond is traced._cond
    assert set(vars(traced_copy)) == set(vars(raw_copy))
