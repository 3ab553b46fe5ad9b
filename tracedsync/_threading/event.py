"""`TracedEvent`: ``threading.Event`` behind a proxy that records sets, clears and waits.

Design note. The real event does the work; the proxy reads the flag just before each call
(``was_set`` for set/clear, ``already_set`` for wait) and times the wait. Those reads are
snapshots: another thread may set or clear the flag between the read and the real call, so an
``already_set`` wait can, rarely, have blocked, and the reverse. Counters several threads update
are kept under the primitive's raw ``books`` lock.

The multiprocessing twin (`tracedsync._multiprocessing.event`) shares all of it: both proxies
take their methods from `EventMethods`, so both record the same events from the same code. The
one difference is `EventMethods.register_always`: threading's event enters the wait-for graph
only when the flag is clear (about to block), multiprocessing's on every wait.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, cast

from .._core import runtime as rt
from .._core.ops import OP_EVENT_SET, OP_EVENT_WAIT, OP_GENERIC
from .._core.registry import new_state
from .._core.sites import user_site
from .._core.state import EventState
from .._core.waits import forget, wait_other
from . import originals as _originals
from .proxy import TracedProxy, new_books, plain_timeout, untraced
from .proxy import get_state as _get_any_state

get_state = cast("Callable[[Any], EventState]", _get_any_state)
"""The state of one of this module's proxies (always a `EventState`)."""

_getframe = sys._getframe
FULL = rt.FULL

RawEvent = _originals.RawEvent



class EventMethods:
    """The methods of the traced Events (threading's and multiprocessing's): the real event
    does the work, exactly as the original; each call is recorded."""

    __slots__ = ()
    register_always = False
    """Whether a wait enters the wait-for graph even when the flag is already set."""

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return get_state(self).raw.is_set()  # type: ignore[no-any-return]

    def set(self) -> None:
        """Set the flag and wake every waiter, exactly as the original; record it."""
        _flip(get_state(self), True)

    def clear(self) -> None:
        """Clear the flag, exactly as the original; record it."""
        _flip(get_state(self), False)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or ``timeout`` passes, exactly as the original."""
        return _wait(get_state(self), timeout, self.register_always)


class TracedEvent(EventMethods, TracedProxy):
    """A traced ``threading.Event``: same behaviour, plus who set, cleared and waited."""

    __slots__ = ()

    def __init__(self, *, name: str | None = None, _site: tuple[Any, int] | None = None) -> None:
        raw = untraced(RawEvent)
        super().__init__(raw)
        code, lineno = _site if _site is not None else user_site()
        st = new_state(EventState, raw, "Event", name, code, lineno)
        new_books(st)
        st.extra_stats = _extra_stats
        self._self_state = st

    def _at_fork_reinit(self) -> None:
        st = get_state(self)
        st.raw._at_fork_reinit()
        if rt.level == FULL:
            code, lineno = user_site()
            rt.emit((OP_GENERIC, rt.now(), rt.ident(), "reinit", {"prim": st.prim}, code, lineno))


def _flip(st: EventState, flag: bool) -> None:
    """set() (``flag`` true) or clear() on the real event, then books and record. Called by
    the twins' set and clear (the frame two up is their caller)."""
    raw = st.raw
    level = rt.level
    was = raw.is_set() if level else False
    if flag:
        raw.set()
    else:
        raw.clear()
    if not level:
        return
    with st.books:
        if flag:
            st.sets += 1
        else:
            st.clears += 1
    if rt.level == FULL:
        f = _getframe(2)
        rt.emit((OP_EVENT_SET, rt.now(), rt.ident(), st.prim, flag, was, f.f_code, f.f_lineno))


def _wait(st: EventState, timeout: float | None, always: bool) -> bool:
    """wait(timeout) on the real event, timed, then books and record. Called by the twins'
    wait (the frame two up is their caller). ``always``: enter the wait-for graph even when
    the flag is already set (multiprocessing's twin); else only when about to block."""
    raw = st.raw
    if not rt.level:
        return raw.wait(timeout)  # type: ignore[no-any-return]
    me = rt.ident()
    already = raw.is_set()
    t0 = rt.now()
    try:
        if always or not already:  # in the wait-for graph meanwhile (_detect.py)
            wait_other(me, st, "event_wait", timeout if plain_timeout(timeout) else None,
                       _getframe(2))
        try:
            result = raw.wait(timeout)
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
