"""Unsynchronised read-modify-writes of shared Values and Arrays, detected as they happen.

Design note.

``v.value += 1`` on a ``multiprocessing.Value`` is a get then a set, each under the value's
lock taken separately: another process can update the value between the two, and its update is
lost. The pattern, in general: a thread reads a value (or an item of an array) and later writes
the same value (same item) without holding the value's lock *across both*. So, per thread:

* every get remembers ``(prim, key) → (site, locked, hold)``, where ``locked`` says whether the
  caller held the value's lock before the get took it, and ``hold`` identifies that holding (the
  lock's ``t_hold``: the instant the caller took it from free to held);
* every set looks up and forgets the entry of the same ``(prim, key)``. If there is one and the
  lock was not held at both moments *by the same holding*, it is a read-modify-write: counted
  every time (``rmws`` in the value's statistics), and recorded as an ``rmw`` event the first
  time its site (the set's line) is seen in this process.

Unknown is not unsafe: when ownership cannot be known (the value's lock is some object without
an owner, or it was taken behind the traced proxy so its holding has no ``t_hold``), nothing is
reported.

Where it runs: the native recorder applies this same rule in C to a Value's ``value`` and an
Array's items by an int index over a traced lock (``mplock.c``: each thread's gets in a table of
its record buffer, this module's ``rmw_found`` counterpart called only to report); this module
is the reference and serves the Python paths (slices, other locks, the pure-Python twin). A get
remembered by one and a set seen by the other do not meet: a missed report, never a false one.

Cost: a thread-local dict per thread, one store per get, one pop per set. It is bounded: a
thread that reads many items it never writes clears it when it passes `_MAX_READS` entries
(forgetting those reads; at worst a missed report, never a false one).

Fork: a child starts with no remembered reads and no reported sites (it is another process, with
its own reports).
"""

from __future__ import annotations

import _thread
import os
from types import CodeType
from typing import Any

_MAX_READS = 64
MAX_READS = _MAX_READS

Read = tuple[CodeType, int, "bool | None", "int | None"]

_tls = _thread._local()
reported: set[tuple[CodeType, int]] = set()
"""Sites (code, line) whose ``rmw`` event this process has written."""


def reads() -> dict[tuple[str, Any], Read]:
    """The calling thread's remembered gets."""
    try:
        return _tls.reads  # type: ignore[no-any-return]
    except AttributeError:
        r: dict[tuple[str, Any], Read] = {}
        _tls.reads = r
        return r


def note_get(prim: str, key: Any, code: CodeType, lineno: int, locked: bool | None,
             hold: int | None) -> None:
    """Remember a get by the calling thread."""
    r = reads()
    if len(r) >= _MAX_READS:
        r.clear()
    r[(prim, key)] = (code, lineno, locked, hold)


def check_set(prim: str, key: Any, locked: bool | None, hold: int | None) -> Read | None:
    """Forget the calling thread's get of ``(prim, key)``; return it if this set completes an
    unsynchronised read-modify-write."""
    got = reads().pop((prim, key), None)
    if got is None:
        return None
    read_locked = got[2]
    if locked is None or read_locked is None:
        return None  # ownership unknown: say nothing
    if locked and read_locked and got[3] == hold:
        return None  # one holding of the lock spans the get and the set
    return got


def _renew_after_fork() -> None:
    global _tls
    _tls = _thread._local()
    reported.clear()


os.register_at_fork(after_in_child=_renew_after_fork)
