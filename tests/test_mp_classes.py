"""The traced multiprocessing primitives are multiprocessing's own classes, subclassed:
``isinstance`` holds, at level off their methods (and the instance attributes multiprocessing
sets) are multiprocessing's own, and back at contention or full they are tracedsync's; a Value
read or written while its RLock is held does not take it again."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable
from multiprocessing import sharedctypes, synchronize
from typing import Any

import pytest
from helpers import prim_of

import tracedsync
import tracedsync.mp
from tracedsync.testing import capture

CTX = multiprocessing.get_context("spawn")  # any context will do in one process

KINDS: dict[str, tuple[Callable[[], Any], type, tuple[str, ...]]] = {
    "Lock": (lambda: tracedsync.mp.Lock(ctx=CTX), synchronize.Lock,
             ("__enter__", "__exit__")),
    "RLock": (lambda: tracedsync.mp.RLock(ctx=CTX), synchronize.RLock,
              ("__enter__", "__exit__")),
    "Semaphore": (lambda: tracedsync.mp.Semaphore(2, ctx=CTX), synchronize.Semaphore,
                  ("__enter__", "__exit__")),
    "BoundedSemaphore": (lambda: tracedsync.mp.BoundedSemaphore(2, ctx=CTX),
                         synchronize.BoundedSemaphore, ("__enter__", "__exit__")),
    "Condition": (lambda: tracedsync.mp.Condition(ctx=CTX), synchronize.Condition,
                  ("wait", "notify", "notify_all")),
    "Event": (lambda: tracedsync.mp.Event(ctx=CTX), synchronize.Event,
              ("set", "clear", "wait")),
    "Barrier": (lambda: tracedsync.mp.Barrier(1, ctx=CTX), synchronize.Barrier,
                ("wait", "abort", "reset", "_break")),
    "Value": (lambda: tracedsync.Value("i", 0, ctx=CTX), sharedctypes.Synchronized, ("value",)),
    "Array": (lambda: tracedsync.Array("i", 2, ctx=CTX), sharedctypes.SynchronizedArray,
              ("__getitem__", "__setitem__")),
    "CharArray": (lambda: tracedsync.Array("c", b"ab", ctx=CTX),
                  sharedctypes.SynchronizedString, ("value", "raw", "__getitem__")),
}
"""kind -> (a maker, multiprocessing's class, the names whose recording versions the traced
class has while tracing)."""

SEMLOCKS = ("Lock", "RLock", "Semaphore", "BoundedSemaphore")
"""Kinds whose ``acquire``/``release`` multiprocessing sets on the instance (its SemLock's)."""
USERS = ("Condition", "Value", "Array", "CharArray")
"""Kinds whose ``acquire``/``release`` multiprocessing copies from their lock."""


def _theirs(obj: Any, raw_cls: type, name: str) -> bool:
    """Whether ``name`` on ``type(obj)`` is what ``raw_cls`` has: multiprocessing's own."""
    return bool(getattr(type(obj), name) is getattr(raw_cls, name))


@pytest.mark.parametrize("kind", list(KINDS))
def test_traced_objects_are_instances_of_multiprocessings_classes(kind: str) -> None:
    make, raw_cls, _ = KINDS[kind]
    obj = make()
    assert isinstance(obj, raw_cls) and type(obj) is not raw_cls
    assert type(obj).__name__ == raw_cls.__name__  # (errors that name the type read the same)
    assert type(obj).__qualname__.startswith("Traced")
    assert obj.statistics().prim == prim_of(obj)


@pytest.mark.parametrize("kind", list(KINDS))
def test_level_off_leaves_multiprocessings_own_methods(kind: str, level: None) -> None:
    """At off the recording methods are not on the class, and the instance attributes are what
    multiprocessing sets; back at contention or full they are tracedsync's again. Objects made
    at either level follow."""
    make, raw_cls, names = KINDS[kind]
    made_on = make()
    assert not any(_theirs(made_on, raw_cls, name) for name in names)
    tracedsync.configure(level="off")
    made_off = make()
    for obj in (made_on, made_off):
        for name in names:
            assert _theirs(obj, raw_cls, name), name
        if kind in SEMLOCKS:
            assert obj.acquire == obj._semlock.acquire and obj.release == obj._semlock.release
        if kind in USERS:
            assert obj.acquire == obj._lock._semlock.acquire
    for again in ("contention", "full"):
        tracedsync.configure(level=again)
        for obj in (made_on, made_off):
            for name in names:
                assert not _theirs(obj, raw_cls, name), (again, name)
            if kind in SEMLOCKS:
                assert "acquire" not in vars(obj) and "release" not in vars(obj)
                assert obj.acquire != obj._semlock.acquire
            if kind in USERS:
                assert obj.acquire == obj._lock.acquire != obj._lock._semlock.acquire


def test_objects_made_at_off_record_at_full(level: None) -> None:
    """A lock and a Value made at off, used at full, record (their methods followed the
    level)."""
    tracedsync.configure(level="off")
    lock = tracedsync.mp.Lock(ctx=CTX)
    v = tracedsync.Value("i", 0, ctx=CTX)
    tracedsync.configure(level="full")
    with capture() as events:
        with lock:
            pass
        v.value += 1
    assert [e["event"] for e in events.where(prim=prim_of(lock))] == ["acquire", "release"]
    assert [e["event"] for e in events.where(prim=prim_of(v))] == [
        "value_get", "rmw", "value_set"]


def test_value_read_under_its_held_rlock_does_not_take_it_again() -> None:
    """``with v.get_lock(): v.value += 1``: the get and the set are made under the caller's
    holding, which is all the log shows of the lock (no nested acquire/release pairs), and
    they are locked; the RLock's count is the caller's throughout."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    lock = v.get_lock()
    with capture() as events, lock:
        v.value += 1
        assert lock._semlock._count() == 1
        v.value = v.value * 10
    seq = [(e["event"], e.get("depth"), e.get("locked"))
           for e in events if e.get("prim") in (prim_of(v), prim_of(lock))]
    assert seq == [("acquire", 1, None), ("value_get", None, True), ("value_set", None, True),
                   ("value_get", None, True), ("value_set", None, True), ("release", 0, None)]
    assert lock.statistics().acquisitions == 1 and events.where(event="rmw") == []
    assert v.value == 10


def test_value_under_a_plain_lock_it_holds_is_multiprocessings_deadlock() -> None:
    """A Value over a (non-reentrant) Lock read by the Lock's holder blocks, as
    multiprocessing's does: the access takes the lock (here with a timeout, through the lock's
    own acquire, to see it fail)."""
    lock = tracedsync.mp.Lock(ctx=CTX)
    v = tracedsync.Value("i", 0, lock=lock, ctx=CTX)
    with lock:
        assert lock.acquire(True, 0.01) is False  # what v.value would wait for, for ever
    assert v.value == 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_pickle_outside_spawning_fails_as_multiprocessings(kind: str) -> None:
    """Pickling (and so copying) fails outside spawning with multiprocessing's own error."""
    make = KINDS[kind][0]
    raw = {
        "Lock": CTX.Lock, "RLock": CTX.RLock, "Semaphore": lambda: CTX.Semaphore(2),
        "BoundedSemaphore": lambda: CTX.BoundedSemaphore(2), "Condition": CTX.Condition,
        "Event": CTX.Event, "Barrier": lambda: CTX.Barrier(1),
        "Value": lambda: CTX.Value("i", 0), "Array": lambda: CTX.Array("i", 2),
        "CharArray": lambda: CTX.Array("c", b"ab"),
    }[kind]()
    with pytest.raises(RuntimeError) as want:
        pickle.dumps(raw)
    with pytest.raises(RuntimeError) as got:
        pickle.dumps(make())
    assert str(got.value) == str(want.value)


def test_a_structure_value_has_multiprocessings_class_subclassed() -> None:
    """A Value of a ctypes Structure: multiprocessing's class for it (one per Structure),
    subclassed once; its fields record while tracing."""
    import ctypes

    class Pair(ctypes.Structure):
        _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_int)]

    v1 = tracedsync.Value(Pair, 1, 2, ctx=CTX)
    v2 = tracedsync.Value(Pair, 3, 4, ctx=CTX)
    real = CTX.Value(Pair, 5, 6)
    assert type(v1) is type(v2) and isinstance(v1, type(real))
    assert type(v1).__name__ == type(real).__name__ == "SynchronizedPair"
    with capture() as events:
        v1.a = v1.b
    assert [(e["event"], e["field"]) for e in events.where(prim=prim_of(v1))] == [
        ("value_get", "b"), ("value_set", "a")]
    assert (v1.a, v2.a) == (2, 3)
