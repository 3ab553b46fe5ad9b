"""`tracedsync._patch.survey`: the untraced primitives still alive in module globals."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import types

import tracedsync
from tracedsync._patch.scope import Scope
from tracedsync._patch.survey import Untraced, describe, untraced
from tracedsync._threading.event import RawEvent
from tracedsync._threading.locks import RawLock, RawRLock
from tracedsync._threading.semaphore import RawBoundedSemaphore


def _module() -> types.ModuleType:
    mod = types.ModuleType("userpkg.mod")
    mod.__file__ = "/nowhere/userpkg/mod.py"
    ns = vars(mod)
    # tracedsync's own primitives, some of them subclasses of threading's, are not counted.
    ns.update(TC=tracedsync.Condition(), TR=tracedsync.RLock(), TS=tracedsync.Semaphore(),
              TB=tracedsync.Barrier(1))
    ns.update(A=RawLock(), B=RawRLock(), C=tracedsync.Lock(), D=tracedsync.Event(), E=RawEvent(),
              S=RawBoundedSemaphore(), M=multiprocessing.Lock(), RLock=RawRLock,
              Thread=threading.Thread)

    class Holder:
        lock = RawLock()

    Holder.__module__ = "userpkg.mod"
    ns["Holder"] = Holder
    return mod


def test_raw_primitives_and_original_factories_are_counted_by_module() -> None:
    """Raw primitives in globals and in the attributes of the module's classes are counted by
    kind (tracedsync's proxies are not); a global bound to an original factory is named; the
    standard library (here threading and the built-in _thread) is out of scope."""
    found = untraced(Scope(), {"userpkg.mod": _module(), "threading": threading,
                               "_thread": sys.modules["_thread"]})
    assert found == [Untraced(
        "userpkg.mod",
        {"BoundedSemaphore": 1, "Event": 1, "Lock": 2, "RLock": 1, "multiprocessing.Lock": 1},
        ("RLock",),
    )]
    lines = describe(found, "remedy: do it earlier")
    assert lines[0].startswith("tracedsync: not traced: 6 primitive(s)")
    assert lines[1] == ("  userpkg.mod: 6 (1 BoundedSemaphore, 1 Event, 2 Lock, 1 RLock, "
                        "1 multiprocessing.Lock)")
    assert lines[-2:] == ["  userpkg.mod: RLock", "tracedsync: remedy: do it earlier"]


def test_exclude_and_an_empty_survey() -> None:
    assert untraced(Scope(exclude=["userpkg"]), {"userpkg.mod": _module()}) == []
    assert describe([], "remedy") == []
