"""`TracedEvent`: ``threading.Event`` itself, recording its sets, clears and waits.

Design note. `TracedEvent` is a subclass of ``threading.Event``: every set, clear and wait is
``threading``'s own code, and ``isinstance`` holds; its Condition and Lock are built with the
guard on, so they stay raw even when ``threading`` is patched. At level ``off`` the recording
methods are not on the class (`set_tracing` takes them off), so an event costs exactly what
``threading``'s costs.

The recording methods read the flag just before each call (``was_set`` for set/clear,
``already_set`` for wait) and time a wait that may block. Those reads are snapshots: another
thread may set or clear the flag between the read and the real call, so an ``already_set`` wait
can, rarely, have blocked, and the reverse. Counters several threads update are kept under the
primitive's raw ``books`` lock.

Records. At ``full``, a set or a clear writes one native record (`K_EVENT_SET`), and so does a
``wait()`` without a timeout that finds the flag set (`K_EVENT_WAIT`): it does not wait, and its
``waited_ns`` is 0 (reading the clock twice would cost two Python ints). A wait that blocks or
has a timeout writes the op tuple, timed, as does the pure-Python twin throughout.

The multiprocessing twin (`tracedsync._multiprocessing.event`, multiprocessing's Event
subclassed) records a wait with `_wait_traced`, given multiprocessing's own ``wait``. The one
difference is its ``always``: threading's event enters the wait-for graph only when the flag is
clear (about to block), multiprocessing's on every wait.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from types import MethodType
from typing import Any

from .._core import runtime as rt
from .._core.native import NATIVE
from .._core.native_kinds import K_EVENT_SET, K_EVENT_WAIT
from .._core.ops import OP_EVENT_SET, OP_EVENT_WAIT, OP_GENERIC
from .._core.registry import new_state
from .._core.sites import user_site
from .._core.state import EventState
from .._core.waits import forget, wait_other
from . import originals as _originals
from .common import OriginalSubclass, install_methods, new_books, plain_timeout, untraced

_getframe = sys._getframe
FULL = rt.FULL
_rec = None if NATIVE is None else NATIVE.rec

RawEvent = _originals.RawEvent
_raw_set = RawEvent.set
_raw_clear = RawEvent.clear
_raw_wait = RawEvent.wait


class TracedEvent(OriginalSubclass, RawEvent):
    """A traced ``threading.Event``: same behaviour, plus who set, cleared and waited."""

    _ts_raw: Any = RawEvent
    _ts_state: EventState

    def __init__(self, *, name: str | None = None, _site: tuple[Any, int] | None = None) -> None:
        untraced(RawEvent.__init__, self)
        code, lineno = _site if _site is not None else user_site()
        st = new_state(EventState, weakref.proxy(self), "Event", name, code, lineno)
        new_books(st)
        st.extra_stats = _extra_stats
        self._ts_state = st


# -- the recording methods (on the class while the level is not off) ----------------------------
def _set(self: TracedEvent) -> None:
    """Set the flag and wake every waiter, exactly as ``threading``'s; record it."""
    level = rt.level
    if not level:
        return _raw_set(self)
    st = self._ts_state
    was = self._flag  # type: ignore[attr-defined]
    _raw_set(self)
    books = st.books
    books.acquire()
    st.sets += 1
    books.release()
    if level == FULL:
        if _rec is not None:  # bits: set, was set
            _rec(K_EVENT_SET, st.prim_pid, st.prim_n, 3 if was else 1, 0, 0, 0, 0)
        else:
            f = _getframe(1)
            rt.emit((OP_EVENT_SET, rt.now(), rt.ident(), st.prim, True, was, f.f_code,
                     f.f_lineno))
    return None


def _clear(self: TracedEvent) -> None:
    """Clear the flag, exactly as ``threading``'s; record it."""
    level = rt.level
    if not level:
        return _raw_clear(self)
    st = self._ts_state
    was = self._flag  # type: ignore[attr-defined]
    _raw_clear(self)
    books = st.books
    books.acquire()
    st.clears += 1
    books.release()
    if level == FULL:
        if _rec is not None:
            _rec(K_EVENT_SET, st.prim_pid, st.prim_n, 2 if was else 0, 0, 0, 0, 0)
        else:
            f = _getframe(1)
            rt.emit((OP_EVENT_SET, rt.now(), rt.ident(), st.prim, False, was, f.f_code,
                     f.f_lineno))
    return None


def _wait(self: TracedEvent, timeout: float | None = None) -> bool:
    """Wait until the flag is set or ``timeout`` passes, exactly as ``threading``'s."""
    level = rt.level
    if not level:
        return _raw_wait(self, timeout)
    st = self._ts_state
    if timeout is None and self._flag and (  # type: ignore[attr-defined]
            _rec is not None or level != FULL):
        # Set already: threading's wait returns at once (a snapshot: see the note). Recorded
        # at full only: natively (the twin times it, below).
        result = _raw_wait(self)
        books = st.books
        books.acquire()
        st.waits += 1
        books.release()
        if level == FULL and _rec is not None:  # bits: result, already set
            _rec(K_EVENT_WAIT, st.prim_pid, st.prim_n, 3 if result else 2, 0, 0, 0, 0)
        return result
    return _wait_traced(st, MethodType(_raw_wait, self), self._flag,  # type: ignore[attr-defined]
                        timeout, False)


def _at_fork_reinit(self: TracedEvent) -> None:
    _raw_reinit(self)
    if rt.level == FULL:
        code, lineno = user_site()
        rt.emit((OP_GENERIC, rt.now(), rt.ident(), "reinit", {"prim": self._ts_state.prim},
                 code, lineno))


_raw_reinit = RawEvent._at_fork_reinit  # type: ignore[attr-defined]
_TRACING: dict[type, dict[str, Any]] = {
    TracedEvent: {"set": _set, "clear": _clear, "wait": _wait, "_at_fork_reinit": _at_fork_reinit},
}


def set_tracing(on: bool) -> None:
    """Put the recording methods on `TracedEvent` (or take them off: level ``off``)."""
    install_methods(_TRACING, on)


set_tracing(rt.level != rt.OFF)  # (imported when first used: at the level of that moment)


def _wait_traced(st: EventState, wait: Callable[[Any], Any], already: bool,
                 timeout: float | None, always: bool) -> bool:
    """``wait(timeout)``, the real event's, timed, then books and record; ``already``: the flag
    just before. Called by the twins' wait (the frame two up is their caller). ``always``:
    enter the wait-for graph even when the flag is already set (multiprocessing's twin); else
    only when about to block."""
    me = rt.ident()
    t0 = rt.now()
    try:
        if always or not already:  # in the wait-for graph meanwhile (_detect.py)
            wait_other(me, st, "event_wait", timeout if plain_timeout(timeout) else None,
                       _getframe(2))
        try:
            result = wait(timeout)
        finally:
            forget(me)
    except BaseException as exc:  # KeyboardInterrupt while blocked, or a bad timeout
        if plain_timeout(timeout):
            f = _getframe(2)
            rt.emit((OP_GENERIC, rt.now(), me, "interrupted",
                     {"prim": st.prim, "error": repr(exc)}, f.f_code, f.f_lineno))
        raise
    t1 = rt.now()
    waited = t1 - t0
    with st.books:
        st.waits += 1
        if not already:
            st.wait_ns += waited
        if not result:
            st.wait_timeouts += 1
    level = rt.level
    if level == FULL or (level and not already):
        f = _getframe(2)
        rt.emit((OP_EVENT_WAIT, t1, me, st.prim, bool(result), already, waited, timeout,
                 f.f_code, f.f_lineno))
    return result  # type: ignore[no-any-return]


def _extra_stats(st: EventState) -> dict[str, Any]:
    with st.books:
        return {"sets": st.sets, "clears": st.clears, "flag": st.raw.is_set()}


def Event(*, name: str | None = None) -> TracedEvent:
    """A new traced ``threading.Event``; ``name`` labels it in the logs."""
    if rt.in_guard():
        return RawEvent()  # type: ignore[return-value]  # our own machinery: untraced
    f = _getframe(1)
    return TracedEvent(name=name, _site=(f.f_code, f.f_lineno))
