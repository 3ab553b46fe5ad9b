"""Traced multiprocessing Value and Array, in one process: multiprocessing's behaviour (compared
operation by operation with multiprocessing's own objects), the value_get/value_set events, and
the unsynchronised read-modify-write rule."""

from __future__ import annotations

import copy
import ctypes
import multiprocessing
import pickle
import re
import threading
from collections.abc import Callable
from multiprocessing import sharedctypes
from typing import Any

import pytest
from helpers import outcome, prim_of

import tracedsync
import tracedsync.mp
from tracedsync.testing import Captured, capture

CTX = multiprocessing.get_context("spawn")  # any context will do in one process
RawEvent = threading.Event


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double)]


def _line(site: str) -> int:
    return int(site.rsplit(":", 1)[1])


def _lineno() -> int:
    """The line of the caller."""
    import sys

    return sys._getframe(1).f_lineno


def _untraced_repr(r: str) -> str:
    return re.sub(r" traced=\S+?( name='[^']*')?(?=>)", "", re.sub(r"0x[0-9a-f]+", "0x", r))


def _outcome(op: Callable[[Any], Any], obj: Any) -> tuple[Any, ...]:
    return outcome(op, obj, _untraced_repr)


def _setattr(name: str, value: Any) -> Callable[[Any], Any]:
    def op(obj: Any) -> Any:
        setattr(obj, name, value)
        return getattr(obj, name)

    return op


def _setitem(index: Any, value: Any) -> Callable[[Any], Any]:
    def op(obj: Any) -> Any:
        obj[index] = value
        return obj[:]

    return op


def _delitem(obj: Any) -> None:
    del obj[0]


def _with(obj: Any) -> Any:
    with obj:
        again = obj.get_lock().acquire(False)  # an RLock: the holder may take it again
        if again:
            obj.get_lock().release()
        return again


# -- behaviour: the same operations on multiprocessing's objects and on ours ---------------------
VALUE_OPS: dict[str, Callable[[Any], Any]] = {
    "get": lambda v: v.value,
    "set": _setattr("value", 7),
    "set wrong type": _setattr("value", "x"),
    "set float to int": _setattr("value", 1.5),
    "len": len,
    "subscript": lambda v: v[0],
    "missing attribute": lambda v: v.nope,
    "get_obj": lambda v: repr(v.get_obj()),
    "repr": repr,
    "str": str,
    "isinstance Synchronized": lambda v: isinstance(v, sharedctypes.Synchronized),
    "acquire and release": lambda v: (v.acquire(), v.release()),
    "with": _with,
    "pickle outside spawning": pickle.dumps,
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
}


@pytest.mark.parametrize("op", list(VALUE_OPS), ids=list(VALUE_OPS))
def test_value_behaves_like_multiprocessings(op: str) -> None:
    """Each operation on a traced Value returns or raises what it does on multiprocessing's."""
    real = CTX.Value("i", 3)
    traced = tracedsync.Value("i", 3, ctx=CTX)
    assert _outcome(VALUE_OPS[op], traced) == _outcome(VALUE_OPS[op], real)


ARRAY_OPS: dict[str, Callable[[Any], Any]] = {
    "item": lambda a: a[1],
    "negative item": lambda a: a[-1],
    "out of range": lambda a: a[10],
    "bad index type": lambda a: a["x"],
    "slice": lambda a: a[1:3],
    "slice with step": lambda a: a[::2],
    "set item": _setitem(0, 9),
    "set negative item": _setitem(-1, 9),
    "set out of range": _setitem(4, 9),
    "set wrong type": _setitem(0, "x"),
    "set slice": _setitem(slice(0, 2), [7, 8]),
    "set slice of other size": _setitem(slice(0, 2), [7]),
    "delete item": _delitem,
    "len": len,
    "list": list,
    "in": lambda a: (3 in a, 99 in a),
    "reversed": lambda a: list(reversed(a)),
    "value of a non-char array": lambda a: a.value,
    "repr": lambda a: repr(a).split(" object at ")[0],
    "get_obj": lambda a: list(a.get_obj()),
    "isinstance SynchronizedArray": lambda a: isinstance(a, sharedctypes.SynchronizedArray),
    "pickle outside spawning": pickle.dumps,
}


@pytest.mark.parametrize("op", list(ARRAY_OPS), ids=list(ARRAY_OPS))
def test_array_behaves_like_multiprocessings(op: str) -> None:
    """Each operation on a traced Array returns or raises what it does on multiprocessing's."""
    real = CTX.Array("i", [1, 2, 3, 4])
    traced = tracedsync.Array("i", [1, 2, 3, 4], ctx=CTX)
    assert _outcome(ARRAY_OPS[op], traced) == _outcome(ARRAY_OPS[op], real)


CHAR_OPS: dict[str, Callable[[Any], Any]] = {
    "value": lambda a: a.value,
    "raw": lambda a: a.raw,
    "set value": _setattr("value", b"hi"),
    "set value too long": _setattr("value", b"far too long"),
    "set raw": _setattr("raw", b"abcde"),
    "item": lambda a: a[0],
    "isinstance SynchronizedString": lambda a: isinstance(a, sharedctypes.SynchronizedString),
}


@pytest.mark.parametrize("op", list(CHAR_OPS), ids=list(CHAR_OPS))
def test_char_array_behaves_like_multiprocessings(op: str) -> None:
    """A 'c' Array has value and raw, as multiprocessing's SynchronizedString."""
    real = CTX.Array("c", b"hello")
    traced = tracedsync.Array("c", b"hello", ctx=CTX)
    assert _outcome(CHAR_OPS[op], traced) == _outcome(CHAR_OPS[op], real)


STRUCT_OPS: dict[str, Callable[[Any], Any]] = {
    "fields": lambda p: (p.x, p.y),
    "set field": _setattr("x", 5),
    "set field wrong type": _setattr("x", "no"),
    "value": lambda p: p.value,
    "repr": lambda p: repr(p).split(" object at ")[0],
}


@pytest.mark.parametrize("op", list(STRUCT_OPS), ids=list(STRUCT_OPS))
def test_structure_value_behaves_like_multiprocessings(op: str) -> None:
    """A Value of a ctypes Structure has one property per field, as multiprocessing's."""
    real = CTX.Value(Point, 1, 2.5)
    traced = tracedsync.Value(Point, 1, 2.5, ctx=CTX)
    assert _outcome(STRUCT_OPS[op], traced) == _outcome(STRUCT_OPS[op], real)


@pytest.mark.parametrize("typecode", sorted(sharedctypes.typecode_to_type))
def test_every_typecode(typecode: str) -> None:
    """Every typecode gives a Value with multiprocessing's default and repr."""
    real = CTX.Value(typecode)
    traced = tracedsync.Value(typecode, ctx=CTX)
    assert traced.value == real.value
    assert _untraced_repr(repr(traced)) == _untraced_repr(repr(real))


CREATION: dict[str, Callable[[Any], Any]] = {
    "unknown typecode": lambda m: m.Value("z"),
    "too many initialisers": lambda m: m.Value("i", 1, 2),
    "wrong initialiser": lambda m: m.Value("i", "x"),
    "lock without acquire": lambda m: m.Value("i", lock=0),
    "lock of another kind": lambda m: m.Value("i", lock="lock"),
    "negative array size": lambda m: m.Array("i", -1),
    "array from a bad initialiser": lambda m: m.Array("i", ["x"]),
    "array lock without acquire": lambda m: m.Array("d", 2, lock=object()).value,
    "ctypes type": lambda m: m.Value(ctypes.c_double, 1.5).value,
    "array of a ctypes type": lambda m: m.Array(ctypes.c_short, 3)[:],
    "lock=None": lambda m: m.Value("i", 4, lock=None).value,
}


class _Traced:
    """multiprocessing's module-level Value and Array, traced, with the test's context."""

    @staticmethod
    def Value(*args: Any, **kwargs: Any) -> Any:
        return tracedsync.mp.Value(*args, ctx=CTX, **kwargs)

    @staticmethod
    def Array(*args: Any, **kwargs: Any) -> Any:
        return tracedsync.mp.Array(*args, ctx=CTX, **kwargs)


@pytest.mark.parametrize("case", list(CREATION), ids=list(CREATION))
def test_creation_behaves_like_multiprocessings(case: str) -> None:
    """Creating a Value or Array succeeds or fails as multiprocessing's does, with its error."""
    expected = _outcome(CREATION[case], CTX)
    got = _outcome(CREATION[case], _Traced)
    if expected[0] == "raises" and "object at 0x" in expected[2]:
        expected, got = expected[:2], got[:2]  # the repr of the object differs by address
    assert got == expected


def test_lock_false_is_multiprocessings_raw_ctypes_object() -> None:
    """lock=False returns the raw shared ctypes object (no get_lock, buffer protocol intact)."""
    with capture() as events:
        v = tracedsync.Value("d", 1.5, lock=False, ctx=CTX)
        a = tracedsync.Array("i", [1, 2], lock=False, ctx=CTX)
    assert type(v) is type(CTX.Value("d", lock=False))
    assert not hasattr(v, "get_lock")
    assert bytes(memoryview(a)) == bytes(a) and list(a) == [1, 2]
    assert events.where(event="created") == []


def test_traced_value_and_its_lock_are_traced_proxies() -> None:
    """get_lock() is a traced multiprocessing RLock; the Value names it in its created event."""
    with capture() as events:
        v = tracedsync.Value("i", 0, ctx=CTX, name="hits")
    lock = v.get_lock()
    assert isinstance(lock, tracedsync.mp.TracedMpRLock)
    assert isinstance(v, tracedsync.mp.TracedValue)
    (created,) = events.where(event="created", prim=prim_of(v))
    assert created["kind"] == "Value" and created["name"] == "hits"
    assert created["typecode"] == "i" and created["lock"] == prim_of(lock)
    (lock_created,) = events.where(event="created", prim=prim_of(lock))
    assert lock_created["kind"] == "RLock" and lock_created["name"] == "hits.lock"
    assert lock_created["start_method"] == "spawn"
    assert created["site"] == lock_created["site"]
    assert created["site"].startswith(__file__ + ":")


def test_array_created_event_has_length_and_ctypes_type_name() -> None:
    """An Array made from a ctypes type records its name as the typecode, and its length."""
    with capture() as events:
        a = tracedsync.Array(ctypes.c_short, 5, ctx=CTX)
    (created,) = events.where(event="created", prim=prim_of(a))
    assert (created["kind"], created["typecode"], created["length"]) == ("Array", "c_short", 5)


def test_a_real_multiprocessing_lock_given_is_traced_once() -> None:
    """A real lock handed to two Values becomes one traced lock, shared by both: the same lock
    (a traced lock over the real one's semaphore)."""
    raw = CTX.Lock()
    v1 = tracedsync.Value("i", lock=raw, ctx=CTX)
    v2 = tracedsync.Array("i", 2, lock=raw, ctx=CTX)
    assert isinstance(v1.get_lock(), tracedsync.mp.TracedMpLock)
    assert v1.get_lock() is v2.get_lock()
    assert v1.get_lock()._semlock is raw._semlock
    with raw:
        assert v1.get_lock().acquire(False) is False


def test_a_traced_lock_given_is_used_as_is() -> None:
    """A traced multiprocessing lock handed to a Value is that Value's lock."""
    lock = tracedsync.mp.Lock(ctx=CTX)
    v = tracedsync.Value("i", lock=lock, ctx=CTX)
    assert v.get_lock() is lock


# -- what is recorded ------------------------------------------------------------------------------
def _value_events(events: Captured, v: Any) -> list[dict[str, Any]]:
    return [e for e in events.where(prim=prim_of(v)) if e["event"].startswith("value_")]


def test_get_and_set_record_locked_and_site() -> None:
    """value_get/value_set say whether the caller held the lock, with the caller's line."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    with capture() as events:
        v.value = 1
        line = _lineno() + 1
        with v.get_lock():
            v.value = v.value + 1
    seq = [(e["event"], e["locked"]) for e in _value_events(events, v)]
    assert seq == [("value_set", False), ("value_get", True), ("value_set", True)]
    got = _value_events(events, v)[1]
    assert got["site"] == f"{__file__}:{line + 1}"
    assert "index" not in got and "field" not in got
    assert v.value == 2


def test_access_is_recorded_inside_its_own_critical_section() -> None:
    """The value event lies between the acquire and the release of the value's lock."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    with capture() as events:
        v.value += 1
    names = [e["event"] for e in events
             if e.get("prim") in (prim_of(v), prim_of(v.get_lock())) and e["event"] != "rmw"]
    assert names == ["acquire", "value_get", "release", "acquire", "value_set", "release"]
    acquires = events.where(event="acquire", prim=prim_of(v.get_lock()))
    assert {a["site"] for a in acquires} == {e["site"] for e in _value_events(events, v)}


def test_array_events_carry_normalised_index() -> None:
    """Items are recorded by index (negative ones normalised), slices as start:stop[:step]."""
    a = tracedsync.Array("i", 6, ctx=CTX)
    with capture() as events:
        a[1] = 5
        a[-1] = 6
        a[0:2]
        a[::2]
        a[-2:]
    assert [e["index"] for e in _value_events(events, a)] == [1, 5, "0:2", "0:6:2", "4:6"]


def test_char_array_value_and_structure_fields_are_fields() -> None:
    """A char Array's value/raw and a Structure's fields are recorded as field."""
    s = tracedsync.Array("c", b"abc", ctx=CTX)
    p = tracedsync.Value(Point, ctx=CTX)
    with capture() as events:
        s.value = b"x"
        _ = s.raw
        p.y = 1.0
        _ = p.x
    assert [e["field"] for e in _value_events(events, s)] == ["value", "raw"]
    assert [(e["event"], e["field"]) for e in _value_events(events, p)] == [
        ("value_set", "y"), ("value_get", "x")]


def test_iteration_records_each_item_at_the_loop_line() -> None:
    """for/in/reversed read item by item, each recorded at the caller's line."""
    a = tracedsync.Array("i", [4, 5, 6], ctx=CTX)
    with capture() as events:
        line = _lineno() + 1
        total = sum(x for x in a)
        found = 5 in a
        back = list(reversed(a))
    assert (total, found, back) == (15, True, [6, 5, 4])
    gets = _value_events(events, a)
    assert [e["index"] for e in gets] == [0, 1, 2, 0, 1, 2, 1, 0]
    assert _line(gets[0]["site"]) == line


def test_stats_count_reads_writes_unlocked_and_rmws() -> None:
    """statistics() of a Value counts its reads, writes, unlocked ones and rmws."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    for _ in range(3):
        v.value += 1
    with v.get_lock():
        v.value += 1
    s = v.statistics()
    assert (s.reads, s.writes, s.unlocked, s.rmws) == (4, 4, 6, 3)
    assert s.kind == "Value"


# -- read-modify-write -----------------------------------------------------------------------------
def test_plus_equals_without_lock_is_an_rmw_at_its_line() -> None:
    """v.value += 1 without get_lock() is reported as rmw, at that line, once per site."""
    v = tracedsync.Value("i", 0, ctx=CTX, name="counter")
    with capture() as events:
        for _ in range(3):
            line = _lineno() + 1
            v.value += 1
    (rmw,) = events.where(event="rmw")
    assert rmw["prim"] == prim_of(v)
    assert rmw["site"] == rmw["read_site"] == f"{__file__}:{line}"
    assert rmw["read_locked"] is False
    assert rmw["func"].endswith("test_plus_equals_without_lock_is_an_rmw_at_its_line")
    assert v.statistics().rmws == 3


def test_holding_the_lock_across_both_is_not_an_rmw() -> None:
    """The correct pattern: get and set within one holding of get_lock()."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    a = tracedsync.Array("i", 2, ctx=CTX)
    with capture() as events:
        with v.get_lock():
            v.value += 1
        with a.get_lock():
            a[0] += 1
        with a:
            a[1] = a[1] + 1
    assert events.where(event="rmw") == []
    assert v.statistics().rmws == a.statistics().rmws == 0


def test_items_are_told_apart_and_many_reads_are_forgotten_not_misreported() -> None:
    """An Array's items are separate: reading item 0 then writing item 1 is no rmw, writing
    item 0 back is. A thread that reads more items than the rule remembers (64) forgets the
    older reads: their writes are missed, never reported falsely. (The C and Python paths keep
    the same rule: this module runs under both.)"""
    a = tracedsync.Array("i", 100, ctx=CTX)

    def body() -> None:  # (in a thread of its own: no read remembered from earlier tests)
        x = a[0]
        a[1] = x
        a[0] = x + 1
        reads = [a[i] for i in range(2, 100)]
        for i in range(2, 100):
            a[i] = reads[i - 2] + 1

    with capture() as events:
        t = threading.Thread(target=body)
        t.start()
        t.join(60)
    assert not t.is_alive()
    # item 0, and of the 98 reads the 34 made after the 64-entry table was last cleared
    assert a.statistics().rmws == 1 + 34
    assert all(e["prim"] == prim_of(a) for e in events.where(event="rmw"))


def test_lock_released_between_read_and_write_is_an_rmw() -> None:
    """Read under the lock, write under it again later: not one holding, so an rmw."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    with capture() as events:
        with v.get_lock():
            x = v.value
        with v.get_lock():
            v.value = x + 1
    (rmw,) = events.where(event="rmw")
    assert rmw["read_locked"] is True


def test_read_outside_the_lock_then_locked_write_is_an_rmw() -> None:
    """A stale read written back under the lock is still a lost-update risk."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    with capture() as events:
        x = v.value
        with v.get_lock():
            v.value = x + 1
    (rmw,) = events.where(event="rmw")
    assert rmw["read_locked"] is False


def test_array_items_pair_by_normalised_index() -> None:
    """a[-1] read then a[n-1] written is an rmw; another item written is not."""
    a = tracedsync.Array("i", 3, ctx=CTX)
    with capture() as events:
        x = a[0]
        a[1] = x  # another item: no rmw
        y = a[-1]
        a[2] = y + 1  # the same item: rmw
    (rmw,) = events.where(event="rmw")
    assert rmw["index"] == 2


def test_writes_pair_only_with_the_same_threads_reads() -> None:
    """Another thread's unlocked read does not make this thread's write an rmw."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    with capture() as events:
        t = threading.Thread(target=lambda: v.value)
        t.start()
        t.join(10)
        v.value = 5
    assert events.where(event="rmw") == []


def test_a_write_without_a_read_is_not_an_rmw() -> None:
    """Blind writes and reads never written back are not reported."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    with capture() as events:
        v.value = 1
        v.value = 2
        _ = v.value
    assert events.where(event="rmw") == []


def test_contention_level_reports_rmw_without_value_events(level: None) -> None:
    """At level contention: no value_get/value_set, but the rmw is still reported."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    tracedsync.configure(level="contention")
    with capture() as events:
        v.value += 1
    tracedsync.configure(level="full")
    assert [e["event"] for e in events.where(prim=prim_of(v))] == ["rmw"]


def test_off_level_records_nothing(level: None) -> None:
    """At level off the Value only behaves: nothing is recorded."""
    v = tracedsync.Value("i", 0, ctx=CTX)
    a = tracedsync.Array("i", 2, ctx=CTX)
    tracedsync.configure(level="off")
    with capture() as events:
        v.value += 1
        a[0] += 2
        assert (v.value, a[:]) == (1, [2, 0])
    tracedsync.configure(level="full")
    assert events.where(prim=prim_of(v)) == [] and events.where(prim=prim_of(a)) == []


class _OpaqueLock:
    """A lock object with acquire/release and nothing else (multiprocessing accepts it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, *args: Any) -> bool:
        return self._lock.acquire(*args)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_unknown_ownership_is_null_and_never_an_rmw() -> None:
    """With a lock that cannot tell its owner, locked is null and no rmw is claimed."""
    v = tracedsync.Value("i", 0, lock=_OpaqueLock(), ctx=CTX)
    with capture() as events:
        v.value += 1
    assert [e["locked"] for e in _value_events(events, v)] == [None, None]
    assert events.where(event="rmw") == []


def test_threading_lock_given_is_traced_and_answers_for_its_owner() -> None:
    """A threading RLock handed to a Value is traced; held, it makes accesses locked."""
    v = tracedsync.Value("i", 0, lock=threading.RLock(), ctx=CTX)
    assert isinstance(v.get_lock(), tracedsync.TracedRLock)
    with capture() as events:
        with v.get_lock():
            v.value += 1
        v.value += 1
    assert [e["locked"] for e in _value_events(events, v)] == [True, True, False, False]
    assert len(events.where(event="rmw")) == 1


def test_lock_taken_behind_the_proxy_still_counts_as_held() -> None:
    """Holding the real multiprocessing lock directly is seen (the semaphore knows its owner)."""
    raw = CTX.RLock()
    v = tracedsync.Value("i", 0, lock=raw, ctx=CTX)
    with capture() as events, raw:
        v.value += 1
    assert [e["locked"] for e in _value_events(events, v)] == [True, True]
    assert events.where(event="rmw") == []


def test_patched_multiprocessing_gives_traced_values_and_locks() -> None:
    """Under tracedsync.patched(), multiprocessing's own factories (module functions and context
    methods) return these traced objects, created at the caller's line."""
    wanted = ["multiprocessing.Value", "multiprocessing.Lock"]
    with tracedsync.patched(primitives=wanted), capture() as events:
        line = _lineno() + 1
        v = multiprocessing.Value("i", 0)
        lock = CTX.Lock()
        q = CTX.SimpleQueue()  # multiprocessing's own internals stay untraced
    assert isinstance(v, tracedsync.mp.TracedValue)
    assert isinstance(lock, tracedsync.mp.TracedMpLock)
    assert not isinstance(q._rlock, tracedsync.mp.TracedMpLock)
    created = {e["prim"]: e for e in events.where(event="created")}
    assert set(created) == {prim_of(v), prim_of(v.get_lock()), prim_of(lock)}
    assert created[prim_of(v)]["site"] == f"{__file__}:{line}"
    assert created[prim_of(lock)]["site"] == f"{__file__}:{line + 1}"
    assert created[prim_of(lock)]["start_method"] == "spawn"
