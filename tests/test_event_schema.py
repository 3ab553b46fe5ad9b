"""The event schema (tracedsync/_core/schema.py) against the code, both ways.

1. Decoding: one sample tuple per op code and variant, decoded field by field (names, order,
   values, types), so that generating the decoders from the table changes no byte of a log.
2. The tables agree with each other and with `Statistics`.
3. Real programs (threading and multiprocessing primitives, misuse, timeouts, deadlocks, lock
   order, long waits and holds, snapshots, a dropped batch, and a spawned child process) are
   recorded with `capture()` or read back from their log files, and every event is checked
   against the table and against the generated JSON Schema: no unknown event or field, every
   required field, the right JSON types. Every event kind, and every field of each, must be
   seen, or be listed below with the reason it is not: the table cannot rot.
4. docs/events.md and docs/events.schema.json are what the table generates.

Deterministic: threads are coordinated with raw Events and by polling a state with a bound
(`until`), never by sleeping; every blocking call has a timeout.
"""

from __future__ import annotations

import ast
import ctypes
import gc
import multiprocessing
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from helpers import clean_env, prim_of, read_jsonl, until
from helpers import join_threads as _join
from helpers import start_thread as _start

import tracedsync
import tracedsync.mp
from tracedsync._core import schema
from tracedsync._core.native import NATIVE
from tracedsync._core.ops import (
    OP_ACQUIRE,
    OP_BARRIER_BROKEN,
    OP_BARRIER_WAIT,
    OP_COND_WAIT,
    OP_COND_WAKE,
    OP_CREATED,
    OP_EVENT_SET,
    OP_EVENT_WAIT,
    OP_GENERIC,
    OP_MISUSE,
    OP_MP_ACQUIRE,
    OP_NOTIFY,
    OP_RELEASE,
    OP_RESTORE,
    OP_RMW,
    OP_SAVE,
    OP_SEM_ACQUIRE,
    OP_SEM_RELEASE,
    OP_SESSION_END,
    OP_STATS,
    OP_THREAD,
    OP_VALUE,
)
from tracedsync._core.state import EXTENSION_FIELDS, Statistics
from tracedsync._core.waits import current
from tracedsync._detect import lockorder as _lockorder
from tracedsync._multiprocessing.locks import waiting_here
from tracedsync._record.decode import Decoder, source
from tracedsync._record.recorder import RECORDER
from tracedsync.testing import capture

Event = dict[str, Any]
LIMIT = 10.0  # seconds: the bound on every wait for a state that must come
CTX = multiprocessing.get_context("spawn")  # any context will do in one process
ROOT = Path(__file__).resolve().parent.parent
RawEvent = threading.Event  # never patched here: the tests' own plumbing is untraced


# -- 1. decoding -------------------------------------------------------------------------------
def _sample_site() -> None:
    """Its code object stands for a call site in the samples."""


CODE = _sample_site.__code__
SITE = f"{CODE.co_filename}:"
FUNC = "_sample_site"

# (tuple as the hot path records it, event as the decoder must write it), in stream order: a
# `thread` maps ident 11 to native id 1011, later to 2011; ident 12 is never named.
DECODED = [
    ((OP_THREAD, 100, 11, 1011, "worker", True),
     {"event": "thread", "ts": 100, "pid": 9, "tid": 1011, "ident": 11, "name": "worker",
      "daemon": True}),
    ((OP_CREATED, 101, 11, "9.1", "Lock", "a", CODE, 7, None),
     {"event": "created", "ts": 101, "pid": 9, "tid": 1011, "prim": "9.1", "kind": "Lock",
      "name": "a", "site": SITE + "7", "func": FUNC}),
    ((OP_CREATED, 102, 11, "9.2", "Barrier", None, CODE, 7, {"parties": 2, "timeout": None}),
     {"event": "created", "ts": 102, "pid": 9, "tid": 1011, "prim": "9.2", "kind": "Barrier",
      "name": None, "site": SITE + "7", "func": FUNC, "parties": 2, "timeout": None}),
    ((OP_CREATED, 103, 12, "9.3", "RLock", None, None, 0, {}),
     {"event": "created", "ts": 103, "pid": 9, "tid": 12, "prim": "9.3", "kind": "RLock",
      "name": None}),
    ((OP_ACQUIRE, 104, 11, "9.1", 1, True, False, 0, None, True, -1, CODE, 7),
     {"event": "acquire", "ts": 104, "pid": 9, "tid": 1011, "prim": "9.1", "depth": 1, "ok": True,
      "contended": False, "wait_ns": 0, "blocked_by": None, "blocking": True, "timeout": None,
      "site": SITE + "7", "func": FUNC}),
    ((OP_ACQUIRE, 105, 12, "9.1", 0, False, True, 50, 11, True, 0.5, None, 0),
     {"event": "acquire", "ts": 105, "pid": 9, "tid": 12, "prim": "9.1", "depth": 0, "ok": False,
      "contended": True, "wait_ns": 50, "blocked_by": 1011, "blocking": True, "timeout": 0.5}),
    ((OP_ACQUIRE, 106, 11, "9.1", 1, True, True, 5, 12, False, None, CODE, 8),
     {"event": "acquire", "ts": 106, "pid": 9, "tid": 1011, "prim": "9.1", "depth": 1, "ok": True,
      "contended": True, "wait_ns": 5, "blocked_by": 12, "blocking": False, "timeout": None,
      "site": SITE + "8", "func": FUNC}),
    ((OP_RELEASE, 107, 11, "9.1", 0, 3),
     {"event": "release", "ts": 107, "pid": 9, "tid": 1011, "prim": "9.1", "depth": 0,
      "hold_ns": 3}),
    ((OP_RELEASE, 108, 11, "9.1", 1, None),
     {"event": "release", "ts": 108, "pid": 9, "tid": 1011, "prim": "9.1", "depth": 1}),
    ((OP_SAVE, 109, 11, "9.1", 2, 40, CODE, 7),
     {"event": "release", "ts": 109, "pid": 9, "tid": 1011, "prim": "9.1", "depth": 0,
      "saved_depth": 2, "hold_ns": 40, "site": SITE + "7", "func": FUNC}),
    ((OP_SAVE, 110, 11, "9.1", 2, None, None, 0),
     {"event": "release", "ts": 110, "pid": 9, "tid": 1011, "prim": "9.1", "depth": 0,
      "saved_depth": 2}),
    ((OP_RESTORE, 111, 11, "9.1", 2, 30, True, 12, CODE, 7),
     {"event": "acquire", "ts": 111, "pid": 9, "tid": 1011, "prim": "9.1", "depth": 2, "ok": True,
      "contended": True, "wait_ns": 30, "blocked_by": 12, "blocking": True, "timeout": None,
      "restored": True, "site": SITE + "7", "func": FUNC}),
    ((OP_RESTORE, 111, 11, "9.1", 1, 0, False, None, CODE, 7),
     {"event": "acquire", "ts": 111, "pid": 9, "tid": 1011, "prim": "9.1", "depth": 1, "ok": True,
      "contended": False, "wait_ns": 0, "blocked_by": None, "blocking": True, "timeout": None,
      "restored": True, "site": SITE + "7", "func": FUNC}),
    ((OP_MISUSE, 112, 12, "9.1", "release_unlocked", "release unlocked lock", CODE, 7),
     {"event": "misuse", "ts": 112, "pid": 9, "tid": 12, "prim": "9.1",
      "what": "release_unlocked", "error": "release unlocked lock", "site": SITE + "7",
      "func": FUNC}),
    ((OP_COND_WAIT, 113, 11, "9.4", "9.1", 1, None, CODE, 7),
     {"event": "cond_wait", "ts": 113, "pid": 9, "tid": 1011, "prim": "9.4", "lock": "9.1",
      "saved_depth": 1, "timeout": None, "site": SITE + "7", "func": FUNC}),
    ((OP_COND_WAKE, 114, 11, "9.4", 20, True, 3, CODE, 7),
     {"event": "cond_wake", "ts": 114, "pid": 9, "tid": 1011, "prim": "9.4", "waited_ns": 20,
      "notified": True, "reacquire_ns": 3, "site": SITE + "7", "func": FUNC}),
    ((OP_NOTIFY, 115, 12, "9.4", 1, 2, (11,), False, CODE, 7),
     {"event": "notify", "ts": 115, "pid": 9, "tid": 12, "prim": "9.4", "n": 1, "waiters": 2,
      "woken": [1011], "site": SITE + "7", "func": FUNC}),
    ((OP_NOTIFY, 116, 12, "9.4", 2, 2, (11, 13), True, CODE, 7),
     {"event": "notify_all", "ts": 116, "pid": 9, "tid": 12, "prim": "9.4", "n": 2, "waiters": 2,
      "woken": [1011, 13], "site": SITE + "7", "func": FUNC}),
    ((OP_STATS, 117, 11, "9.5", {"kind": "Semaphore", "name": None, "acquisitions": 1,
      "held_by": ((11, 1), (12, 2))}),
     {"event": "stats", "ts": 117, "pid": 9, "tid": 1011, "prim": "9.5", "kind": "Semaphore",
      "name": None, "acquisitions": 1, "held_by": [{"tid": 1011, "ident": 11, "permits": 1},
      {"tid": 12, "ident": 12, "permits": 2}]}),
    ((OP_STATS, 117, 11, "9.1", {"kind": "Lock", "name": "a", "acquisitions": 3}),
     {"event": "stats", "ts": 117, "pid": 9, "tid": 1011, "prim": "9.1", "kind": "Lock",
      "name": "a", "acquisitions": 3}),
    ((OP_SESSION_END, 119, 11, {"dropped": 0, "written": 9}),
     {"event": "session_end", "ts": 119, "pid": 9, "tid": 1011, "dropped": 0, "written": 9}),
    ((OP_GENERIC, 120, 11, "reinit", {"prim": "9.1"}, CODE, 7),
     {"event": "reinit", "ts": 120, "pid": 9, "tid": 1011, "prim": "9.1", "site": SITE + "7",
      "func": FUNC}),
    ((OP_GENERIC, 121, 11, "long_hold", {"prim": "9.1", "site": "x.py:1"}, None, 0),
     {"event": "long_hold", "ts": 121, "pid": 9, "tid": 1011, "prim": "9.1", "site": "x.py:1"}),
    ((OP_SEM_ACQUIRE, 122, 11, "9.5", True, False, 0, 1, 1, True, None, CODE, 7),
     {"event": "sem_acquire", "ts": 122, "pid": 9, "tid": 1011, "prim": "9.5", "ok": True,
      "contended": False, "wait_ns": 0, "permits": 1, "held": 1, "blocking": True,
      "timeout": None, "site": SITE + "7", "func": FUNC}),
    ((OP_SEM_RELEASE, 123, 11, "9.5", 1, 2, 0, 0, CODE, 7),
     {"event": "sem_release", "ts": 123, "pid": 9, "tid": 1011, "prim": "9.5", "n": 1,
      "permits": 2, "held": 0, "for_others": 0, "site": SITE + "7", "func": FUNC}),
    ((OP_EVENT_SET, 124, 11, "9.6", True, False, CODE, 7),
     {"event": "event_set", "ts": 124, "pid": 9, "tid": 1011, "prim": "9.6", "was_set": False,
      "site": SITE + "7", "func": FUNC}),
    ((OP_EVENT_SET, 125, 11, "9.6", False, True, CODE, 7),
     {"event": "event_clear", "ts": 125, "pid": 9, "tid": 1011, "prim": "9.6", "was_set": True,
      "site": SITE + "7", "func": FUNC}),
    ((OP_EVENT_WAIT, 126, 11, "9.6", True, False, 10, 1.5, CODE, 7),
     {"event": "event_wait", "ts": 126, "pid": 9, "tid": 1011, "prim": "9.6", "result": True,
      "already_set": False, "waited_ns": 10, "timeout": 1.5, "site": SITE + "7", "func": FUNC}),
    ((OP_BARRIER_WAIT, 127, 11, "9.7", 1, 10, 2, 1, None, CODE, 7),
     {"event": "barrier_wait", "ts": 127, "pid": 9, "tid": 1011, "prim": "9.7", "index": 1,
      "waited_ns": 10, "parties": 2, "n_waiting": 1, "timeout": None, "site": SITE + "7",
      "func": FUNC}),
    ((OP_BARRIER_BROKEN, 128, 11, "9.7", 12, "action", "ValueError()", 5, 0, 1.0, CODE, 7),
     {"event": "barrier_broken", "ts": 128, "pid": 9, "tid": 1011, "prim": "9.7", "broken_by": 12,
      "why": "action", "error": "ValueError()", "waited_ns": 5, "timeout": 1.0, "n_waiting": 0,
      "site": SITE + "7", "func": FUNC}),
    ((OP_BARRIER_BROKEN, 129, 11, "9.7", 11, "abort", None, None, 1, None, CODE, 7),
     {"event": "barrier_broken", "ts": 129, "pid": 9, "tid": 1011, "prim": "9.7",
      "broken_by": 1011, "why": "abort", "n_waiting": 1, "site": SITE + "7", "func": FUNC}),
    ((OP_BARRIER_BROKEN, 130, 11, "9.7", None, "timeout", None, 5, 1, None, CODE, 7),
     {"event": "barrier_broken", "ts": 130, "pid": 9, "tid": 1011, "prim": "9.7",
      "broken_by": None, "why": "timeout", "waited_ns": 5, "timeout": None, "n_waiting": 1,
      "site": SITE + "7", "func": FUNC}),
    ((OP_MP_ACQUIRE, 131, 11, "9.8", 1, True, True, 10, 77, 1077, True, None, False, CODE, 7),
     {"event": "acquire", "ts": 131, "pid": 9, "tid": 1011, "prim": "9.8", "depth": 1, "ok": True,
      "contended": True, "wait_ns": 10, "blocked_by": 1077, "blocked_by_pid": 77,
      "blocking": True, "timeout": None, "site": SITE + "7", "func": FUNC}),
    ((OP_MP_ACQUIRE, 132, 11, "9.8", 1, True, False, 0, None, None, True, -1, True, CODE, 7),
     {"event": "acquire", "ts": 132, "pid": 9, "tid": 1011, "prim": "9.8", "depth": 1, "ok": True,
      "contended": False, "wait_ns": 0, "blocked_by": None, "blocked_by_pid": None,
      "blocking": True, "timeout": -1, "restored": True, "site": SITE + "7", "func": FUNC}),
    ((OP_VALUE, 133, 11, "9.9", False, None, True, CODE, 7),
     {"event": "value_get", "ts": 133, "pid": 9, "tid": 1011, "prim": "9.9", "locked": True,
      "site": SITE + "7", "func": FUNC}),
    ((OP_VALUE, 134, 11, "9.9", True, 3, False, CODE, 7),
     {"event": "value_set", "ts": 134, "pid": 9, "tid": 1011, "prim": "9.9", "index": 3,
      "locked": False, "site": SITE + "7", "func": FUNC}),
    ((OP_VALUE, 135, 11, "9.9", True, (0, 4, 1), None, CODE, 7),
     {"event": "value_set", "ts": 135, "pid": 9, "tid": 1011, "prim": "9.9", "index": "0:4",
      "locked": None, "site": SITE + "7", "func": FUNC}),
    ((OP_VALUE, 136, 11, "9.9", False, (0, 4, 2), None, CODE, 7),
     {"event": "value_get", "ts": 136, "pid": 9, "tid": 1011, "prim": "9.9", "index": "0:4:2",
      "locked": None, "site": SITE + "7", "func": FUNC}),
    ((OP_VALUE, 137, 11, "9.9", False, "raw", True, CODE, 7),
     {"event": "value_get", "ts": 137, "pid": 9, "tid": 1011, "prim": "9.9", "field": "raw",
      "locked": True, "site": SITE + "7", "func": FUNC}),
    ((OP_RMW, 138, 11, "9.9", None, CODE, 6, False, CODE, 7),
     {"event": "rmw", "ts": 138, "pid": 9, "tid": 1011, "prim": "9.9", "read_site": SITE + "6",
      "read_func": FUNC, "read_locked": False, "site": SITE + "7", "func": FUNC}),
    ((OP_RMW, 139, 11, "9.9", 2, None, 0, None, CODE, 7),
     {"event": "rmw", "ts": 139, "pid": 9, "tid": 1011, "prim": "9.9", "index": 2,
      "read_site": None, "read_func": None, "read_locked": None, "site": SITE + "7",
      "func": FUNC}),
    ((OP_THREAD, 140, 11, 2011, "again", False),
     {"event": "thread", "ts": 140, "pid": 9, "tid": 2011, "ident": 11, "name": "again",
      "daemon": False}),
    ((OP_ACQUIRE, 141, 11, "9.1", 1, True, False, 0, None, True, -1, CODE, 7),
     {"event": "acquire", "ts": 141, "pid": 9, "tid": 2011, "prim": "9.1", "depth": 1, "ok": True,
      "contended": False, "wait_ns": 0, "blocked_by": None, "blocking": True, "timeout": None,
      "site": SITE + "7", "func": FUNC}),
]


def _typed(ev: Event) -> list[tuple[str, type, Any]]:
    return [(k, type(v), v) for k, v in ev.items()]


def test_decoder_writes_each_layout_field_by_field() -> None:
    """Every sample decodes to exactly its event: the same fields, in the same order, with the
    same values and types (True is not 1)."""
    decode = Decoder(9)
    for item, expected in DECODED:
        assert _typed(decode(item)) == _typed(expected), item


def test_samples_cover_every_op_code() -> None:
    assert {item[0] for item, _ in DECODED} == {op.code for op in schema.OPS}


def _calls_and_literals(code: str) -> tuple[list[str], int]:
    """The functions the generated ``decode`` calls, and how many dict literals it builds."""
    decode = next(n for n in ast.walk(ast.parse(code))
                  if isinstance(n, ast.FunctionDef) and n.name == "decode")
    calls = sorted(ast.unparse(n.func) for n in ast.walk(decode) if isinstance(n, ast.Call))
    return calls, sum(isinstance(n, ast.Dict) for n in ast.walk(decode))


def test_the_bulk_ops_decode_with_one_dict_literal() -> None:
    """`acquire` and `release` are most of every log, and the flusher's cost per event is theirs:
    their generated decoders build the event as one dict literal (release: one of two, taken by
    whether hold_ns is there) and call nothing but the ident map and the call-site cache."""
    ops = {op.code: op for op in schema.OPS}
    assert _calls_and_literals(source(ops[OP_ACQUIRE])) == (
        ["_site", "_tids.get", "_tids.get"], 1)
    assert _calls_and_literals(source(ops[OP_RELEASE])) == (["_tids.get", "_tids.get"], 2)


# -- 2. the tables agree -----------------------------------------------------------------------
def test_op_codes_are_the_module_constants_and_unique() -> None:
    codes = [op.code for op in schema.OPS]
    assert len(set(codes)) == len(codes)
    for op in schema.OPS:
        assert getattr(schema, op.const) == op.code, op.const
        assert len(set(op.layout)) == len(op.layout), op.const


def test_ops_write_only_their_events_fields() -> None:
    """Each op's rules read positions of its layout and write fields its events declare; an op
    without a merged dict writes every required field of its events."""
    common = {f.name for f in schema.COMMON}
    for op in schema.OPS:
        readable = {"ts", "ident", *op.layout}
        for rule in op.rules:
            assert set(rule.src) <= readable, (op.const, rule)
            assert rule.when is None or rule.when in readable, (op.const, rule)
        if op.select is not None:
            assert op.select in op.layout, op.const
        for name in op.events():
            kind = schema.BY_NAME[name]
            assert op.code in kind.ops, (op.const, name)
            declared = {f.name for f in kind.fields}
            written = {w for rule in op.rules for w in rule.writes()}
            assert written <= declared | common, (op.const, name, written - declared)
            if not any(rule.how == "merge" for rule in op.rules):
                always = {w for rule in op.rules if rule.always for w in rule.writes()}
                required = {f.name for f in kind.fields if not f.optional}
                assert required <= always, (op.const, name, required - always)
    for kind in schema.EVENTS:
        for code in kind.ops:
            op = next(op for op in schema.OPS if op.code == code)
            assert op.event is None or kind.name in op.events(), (kind.name, op.const)


def test_event_fields_are_unique_and_apart_from_the_common_ones() -> None:
    common = {f.name for f in schema.COMMON}
    assert len({k.name for k in schema.EVENTS}) == len(schema.EVENTS)
    for kind in schema.EVENTS:
        names = [f.name for f in kind.fields]
        assert len(set(names)) == len(names), kind.name
        assert not set(names) & common, kind.name


def test_stats_fields_are_the_statistics_fields() -> None:
    """The stats event carries every `Statistics` field but `prim` (renamed as the schema says);
    the kind-specific ones are optional, the others always there; and, for a held lock whose
    holder is alive, its stack (``owner_stack``)."""
    fields = {f.name: f for f in schema.BY_NAME["stats"].fields}
    attrs = [a.name for a in Statistics.__dataclass_fields__.values() if a.name != "prim"]
    expected = {schema.STATS_RENAMES.get(a, a): a for a in attrs}
    assert set(fields) - {"prim", "owner_stack"} == set(expected)
    assert fields["owner_stack"].optional
    for name, attr in expected.items():
        assert fields[name].optional == (attr in EXTENSION_FIELDS), name


# -- 3. real programs --------------------------------------------------------------------------
Scenario = Callable[[], list[Event]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__.lstrip("_")] = fn
    return fn


def _blocked_on(thread: threading.Thread, obj: Any) -> bool:
    """Whether ``thread`` is blocked on ``obj`` (it is in the wait-for graph)."""
    w = current().get(thread.ident or 0)
    return w is not None and w.st.prim == prim_of(obj)


def _boom() -> None:
    raise ValueError("the barrier's action failed")


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double)]


@scenario
def _locks() -> list[Event]:
    """Lock and RLock: uncontended, nested, a failed try, a timeout, a contended acquire, a
    release by a non-owner and of an unlocked lock, _at_fork_reinit."""
    lock, rlock = tracedsync.Lock(name="lock"), tracedsync.RLock(name="rlock")
    caught: list[BaseException] = []

    def waiter() -> None:
        if rlock.acquire(timeout=LIMIT):
            rlock.release()

    def stranger() -> None:
        try:
            rlock.release()
        except RuntimeError as exc:
            caught.append(exc)

    with capture() as events:
        with lock:
            assert not lock.acquire(blocking=False)
        with rlock, rlock:
            pass
        with rlock:
            t = _start(waiter, "waiter")
            until(lambda: _blocked_on(t, rlock), "the waiter to block on the RLock")
        _join(t)
        with rlock:
            _join(_start(stranger, "stranger"))
        with pytest.raises(RuntimeError):
            lock.release()
        tracedsync.Lock(name="reinit")._at_fork_reinit()
    assert len(caught) == 1
    return events


@scenario
def _conditions() -> list[Event]:
    """A wait that is notified, one that times out, notify_all with nobody waiting, and both
    misuses."""
    cond = tracedsync.Condition(name="cond")
    ready = RawEvent()
    woke: list[bool] = []

    def waiter() -> None:
        with cond:
            ready.set()
            woke.append(cond.wait(LIMIT))

    with capture() as events:
        t = _start(waiter, "cond-waiter")
        assert ready.wait(LIMIT)
        with cond:  # free only once the waiter waits
            cond.notify()
        _join(t)
        with cond:
            cond.notify_all()
            assert not cond.wait(0)
        with pytest.raises(RuntimeError):
            cond.wait(0)
        with pytest.raises(RuntimeError):
            cond.notify()
    assert woke == [True]
    return events


@scenario
def _semaphores() -> list[Event]:
    """Semaphore and BoundedSemaphore: uncontended, a timeout (a wait on itself: a deadlock
    report), a contended acquire, an over-release."""
    sem = tracedsync.Semaphore(1, name="sem")
    bounded = tracedsync.BoundedSemaphore(1, name="bounded")

    def taker() -> None:
        if sem.acquire(timeout=LIMIT):
            sem.release()

    with capture() as events:
        with sem:
            assert not sem.acquire(timeout=0.01)
            t = _start(taker, "taker")
            until(lambda: _blocked_on(t, sem), "the taker to block on the semaphore")
        _join(t)
        with bounded:
            pass
        with pytest.raises(ValueError):
            bounded.release()
    return events


@scenario
def _events_and_barriers() -> list[Event]:
    """Event set/clear/wait; a Barrier passed by two threads, broken by a timeout, reset,
    aborted, and broken by its failing action."""
    evt = tracedsync.Event(name="evt")
    pair = tracedsync.Barrier(2, name="pair")
    lone = tracedsync.Barrier(2, timeout=LIMIT, name="lone")
    aborted = tracedsync.Barrier(2, name="aborted")
    failing = tracedsync.Barrier(1, action=_boom, name="failing")
    with capture() as events:
        evt.set()
        evt.set()
        assert evt.wait(0)
        evt.clear()
        assert not evt.wait(0)
        t = _start(lambda: pair.wait(LIMIT), "pair")
        pair.wait(LIMIT)
        _join(t)
        with pytest.raises(threading.BrokenBarrierError):
            lone.wait(0.01)
        lone.reset()
        aborted.abort()
        with pytest.raises(ValueError):
            failing.wait(LIMIT)
    return events


@scenario
def _detection() -> list[Event]:
    """Deadlocks (raised, which interrupts the acquire; and reported, for a timed wait), a
    lock-order violation, and a recorded snapshot while one thread holds a lock that another
    waits for."""
    lock = tracedsync.Lock(name="self")
    a, b = tracedsync.Lock(name="a"), tracedsync.RLock(name="b")
    holding, done = RawEvent(), RawEvent()

    def holder() -> None:
        with a:
            holding.set()
            done.wait(LIMIT)

    def waiter() -> None:
        if a.acquire(timeout=LIMIT):
            a.release()

    before = tracedsync.settings()
    try:
        with capture() as events:
            tracedsync.configure(on_deadlock="raise")
            with lock, pytest.raises(tracedsync.DeadlockError):
                lock.acquire()
            tracedsync.configure(on_deadlock="report")
            with lock:
                assert not lock.acquire(timeout=0.01)
            tracedsync.configure(lock_order=True)
            _lockorder.reset()
            with a, b:
                pass
            with b, a:
                pass
            tracedsync.configure(lock_order=False)
            t_hold = _start(holder, "holder")
            assert holding.wait(LIMIT)
            t_wait = _start(waiter, "waiter")
            until(lambda: _blocked_on(t_wait, a), "the waiter to block")
            tracedsync.snapshot(record=True)
            done.set()
            _join(t_hold, t_wait)
    finally:
        done.set()
        tracedsync.configure(on_deadlock=before.on_deadlock, lock_order=before.lock_order)
    return events


@scenario
def _nested_monitor_and_tests() -> list[Event]:
    """A nested-monitor lockout forming (ended by a third thread's notify), and the pytest
    plugin's test events."""
    from tracedsync import pytest_plugin
    from tracedsync._detect import nested

    outer, cond = tracedsync.Lock(name="outer"), tracedsync.Condition(name="cond")
    flag: list[int] = []

    def holder() -> None:
        with outer, cond:
            while not flag:
                cond.wait(LIMIT)

    def blocked() -> None:
        until(lambda: _blocked_on(t_hold, cond), "the holder to wait on cond")
        with outer:
            pass

    nested.reset()
    with capture() as events:
        pytest_plugin._record_test("test_x.py::test_one", "start", None)
        t_hold = _start(holder, "holder")
        t_block = _start(blocked, "blocked")
        until(lambda: events.where(event="nested_monitor"), "the nested_monitor event")
        with cond:
            flag.append(1)
            cond.notify()
        _join(t_hold, t_block)
        pytest_plugin._record_test("test_x.py::test_one", "end", "passed")
    return events


@scenario
def _watchdog() -> list[Event]:
    """long_wait and long_hold (with lock_order on, so that long_hold knows where the lock was
    taken), written by the watchdog while the wait and the hold last."""
    lock = tracedsync.Lock(name="slow")
    before = tracedsync.settings()

    def blocked() -> None:
        if lock.acquire(timeout=LIMIT):
            lock.release()

    tracedsync.configure(long_wait=0.05, long_hold=0.05, flush_interval=0.02, lock_order=True)
    try:
        with capture() as events:
            with lock:
                t = _start(blocked, "blocked")
                until(lambda: events.where(event="long_wait", prim=prim_of(lock))
                      and events.where(event="long_hold", prim=prim_of(lock)),
                      "the watchdog's long_wait and long_hold")
            _join(t)
    finally:
        tracedsync.configure(long_wait=before.long_wait, long_hold=before.long_hold,
                             flush_interval=before.flush_interval, lock_order=before.lock_order)
    return events


@scenario
def _multiprocessing() -> list[Event]:
    """multiprocessing's primitives in one process: Value, Array, char Array and Structure
    accesses (with rmws), Lock and RLock (contended, misused), Condition, Semaphore, Event, and
    a Barrier broken by a timeout."""
    v = tracedsync.mp.Value("i", 0, ctx=CTX, name="v")
    arr = tracedsync.mp.Array("i", [1, 2, 3], ctx=CTX, name="arr")
    chars = tracedsync.mp.Array("c", b"ab", ctx=CTX)
    point = tracedsync.mp.Value(Point, ctx=CTX)
    lock = tracedsync.mp.Lock(ctx=CTX, name="mlock")
    rlock = tracedsync.mp.RLock(ctx=CTX)
    cond = tracedsync.mp.Condition(ctx=CTX)
    sem = tracedsync.mp.BoundedSemaphore(1, ctx=CTX)
    evt = tracedsync.mp.Event(ctx=CTX)
    barrier = tracedsync.mp.Barrier(2, ctx=CTX)

    def waiter() -> None:
        if lock.acquire(True, LIMIT):
            lock.release()

    with capture() as events:
        v.value += 1
        with v.get_lock():
            v.value = 5
        arr[0] += 1
        arr[-1] = arr[1]
        assert arr[0:3:2] == [2, 2]
        chars.value = b"x"
        assert chars.raw == b"x\x00"
        point.x += 1
        with rlock, rlock:
            pass
        with lock:
            t = _start(waiter, "mp-waiter")
            until(lambda: waiting_here(lock) == 1, "the waiter to block on the lock")
        _join(t)
        with pytest.raises(ValueError):
            lock.release()
        with cond:
            cond.notify()
            cond.notify_all()
            assert not cond.wait(0)
        with sem:
            pass
        with pytest.raises(ValueError):
            sem.release()
        evt.set()
        assert evt.wait(0)
        evt.clear()
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(0.01)
    return events


@scenario
def _statistics() -> list[Event]:
    """The stats event of every kind, written when the primitive is collected; a semaphore
    still held has held_by, a lock still held its holder's stack."""
    held = tracedsync.Semaphore(2, name="held")
    held.acquire()
    taken = tracedsync.RLock(name="taken")
    taken.acquire()
    prims: list[Any] = [
        tracedsync.Lock(), taken, tracedsync.Condition(), held,
        tracedsync.BoundedSemaphore(2), tracedsync.Event(), tracedsync.Barrier(2),
        tracedsync.mp.Value("i", 0, ctx=CTX), tracedsync.mp.Array("i", 2, ctx=CTX),
    ]
    del held, taken
    with capture() as events:
        prims.clear()
        gc.collect()
    return events


@scenario
def _dropped() -> list[Event]:
    """The flusher held off: records past the native recorder's budget (or, for the
    pure-Python twin, past the buffer limit with overflow="drop") are dropped and a `dropped`
    event counts them."""
    lock = tracedsync.Lock()
    tracedsync.flush()
    before = tracedsync.settings()
    if NATIVE is not None:
        tracedsync.configure(buffer_bytes=NATIVE.CHUNK_BYTES)
        n = 2 * NATIVE.CHUNK_BYTES // NATIVE.RECORD_BYTES
    else:
        tracedsync.configure(buffer_limit=10, overflow="drop")
        n = 20
    try:
        with capture() as events:
            RECORDER._write_lock.acquire()  # hold the flusher off so the buffer fills
            try:
                for _ in range(n):
                    with lock:
                        pass
            finally:
                RECORDER._write_lock.release()
    finally:
        tracedsync.configure(buffer_limit=before.buffer_limit, overflow=before.overflow,
                             buffer_bytes=before.buffer_bytes)
    return events


CHILD_PROGRAM = """
import multiprocessing
import tracedsync
import tracedsync.mp


def child(lock, value, array, sem, barrier):
    with lock:
        value.value += 1  # without value's own lock: an rmw


if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    args = (tracedsync.mp.Lock(ctx=ctx, name="gate"), tracedsync.mp.Value("i", 0, ctx=ctx),
            tracedsync.mp.Array("d", 2, ctx=ctx), tracedsync.mp.Semaphore(2, ctx=ctx),
            tracedsync.mp.Barrier(2, timeout=5.0, ctx=ctx))
    p = ctx.Process(target=child, args=args)
    p.start()
    p.join(60)
    assert p.exitcode == 0, p.exitcode
    with tracedsync.Lock(name="main"):
        pass
"""


def _processes(log_dir: Path) -> list[Event]:
    """A program that passes primitives to a spawned child: both log files, whole (session
    headers, attached, the stats written at exit, session_end)."""
    script = log_dir / "program.py"
    script.write_text(CHILD_PROGRAM, encoding="utf-8")
    env = clean_env(TRACEDSYNC_LOG_DIR=str(log_dir / "logs"))
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=log_dir,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    files = sorted((log_dir / "logs").glob("tracedsync-*.jsonl"))
    assert len(files) == 2, files
    return [ev for f in files for ev in read_jsonl(f)]


def _as_written(events: list[Event]) -> list[Event]:
    """The events as a log line holds them (what the sink's renderer makes of tuples etc.)."""
    return [orjson.loads(orjson.dumps(ev, default=str)) for ev in events]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[Event]]]:
    """Every scenario, run once, its events by scenario name."""
    out = {name: _as_written(run()) for name, run in SCENARIOS.items()}
    out["processes"] = _processes(tmp_path_factory.mktemp("processes"))
    yield out


@pytest.mark.parametrize("name", [*SCENARIOS, "processes"])
def test_recorded_events_follow_the_table(recorded: dict[str, list[Event]], name: str) -> None:
    """No unknown event or field, every required field, every value of its JSON type."""
    events = recorded[name]
    assert events
    bad = [f"{p} in {ev}" for ev in events for p in schema.problems(ev)]
    assert not bad, "\n".join(bad[:20])


def test_recorded_events_follow_the_json_schema(recorded: dict[str, list[Event]]) -> None:
    """The generated JSON Schema is a valid one, and accepts every recorded event."""
    doc = schema.json_schema()
    jsonschema.Draft202012Validator.check_schema(doc)
    validator = jsonschema.Draft202012Validator(doc)
    for events in recorded.values():
        for ev in events:
            kind = doc["$defs"][ev["event"]]  # one definition: errors that name the field
            errors = list(jsonschema.Draft202012Validator(kind).iter_errors(ev))
            assert not errors, (ev, [e.message for e in errors])
            assert validator.is_valid(ev), ev


def test_problems_are_found() -> None:
    """The checker itself: what it reports for wrong events."""
    good = {"event": "dropped", "ts": 1, "pid": 2, "tid": None, "count": 3}
    assert schema.problems(good) == []
    assert schema.problems({**good, "event": "nope"}) == ["unknown event 'nope'"]
    assert schema.problems({**good, "extra": 1}) == ["dropped: unknown field 'extra'"]
    assert schema.problems({**good, "count": True}) == ["dropped.count: True is not int"]
    del good["count"]
    assert schema.problems(good) == ["dropped: missing field 'count'"]
    stats = {"event": "snapshot", "ts": 1, "pid": 2, "tid": 3, "threads": [{"ident": "x"}],
             "deadlocks": [], "other_processes": [], "reason": "api"}
    assert "snapshot.threads[0].ident: 'x' is not int" in schema.problems(stats)
    assert not jsonschema.Draft202012Validator(schema.json_schema()).is_valid(stats)


NOT_PRODUCED: dict[str, str] = {}
"""Event kinds no scenario above produces, each with the reason (none today)."""
FIELDS_NOT_PRODUCED: dict[tuple[str, str], str] = {
    ("long_wait", "lock"): "only for a long wait on a Condition",
}
# (`deadlock_end` is produced by the `detection` scenario's timed self-deadlock.)
"""Optional fields no scenario above produces, each with the reason."""


def test_every_event_kind_and_field_is_produced(recorded: dict[str, list[Event]]) -> None:
    """Each kind of the table, and each of its fields, is seen in some recorded event (or is
    listed with the reason it is not): nothing in the table is left unchecked."""
    seen: dict[str, set[str]] = {}
    for events in recorded.values():
        for ev in events:
            seen.setdefault(ev["event"], set()).update(ev)
    kinds = {k.name for k in schema.EVENTS}
    assert kinds - set(seen) == set(NOT_PRODUCED)
    unseen = {(k.name, f.name) for k in schema.EVENTS if k.name in seen
              for f in k.fields if f.name not in seen[k.name]}
    assert unseen == set(FIELDS_NOT_PRODUCED)


def test_schema_version_is_the_sessions(recorded: dict[str, list[Event]]) -> None:
    sessions = [ev for ev in recorded["processes"] if ev["event"] == "session"]
    assert [ev["schema"] for ev in sessions] == [schema.SCHEMA_VERSION] * 2


def test_stats_event_names_the_counter_contended_count() -> None:
    """Schema 2: the stats event's counter of contended acquisitions is `contended_count`
    (`contended` is the boolean of acquire and sem_acquire); `Statistics.contended` keeps its
    name."""
    lock = tracedsync.Lock(name="counted")
    prim = prim_of(lock)
    with lock:
        assert not lock.acquire(timeout=0.01)  # blocked (on itself), then timed out
    assert lock.statistics().contended == 1
    with capture() as events:
        del lock
        gc.collect()
    (stats,) = events.where(event="stats", prim=prim)
    assert stats["contended_count"] == 1 and "contended" not in stats


# -- 4. the generated docs ---------------------------------------------------------------------
def test_docs_are_what_the_table_generates() -> None:
    """docs/events.md and docs/events.schema.json are up to date (else: `make docs`)."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_events_doc.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
