"""`TracedMpEvent`: ``multiprocessing.Event`` behind a proxy that records sets, clears, waits.

Design note. As `_event.py` for threading's Event: the real event does the work, the proxy
reads the flag just before each call (``was_set``, ``already_set``: snapshots, since another
thread or process may flip it at the same instant) and times the wait. Counters are this
process's.
"""

from __future__ import annotations

import sys
from typing import Any

from . import _runtime as rt
from ._detect import forget, wait_other
from ._event import _extra_stats, _flip  # the books and record are threading.Event's
from ._events import OP_EVENT_WAIT, OP_GENERIC
from ._mp_base import MpProxy, get_state, ident
from ._proxy import new_books, plain_timeout
from ._state import PrimState

_getframe = sys._getframe
FULL = rt.FULL


class TracedMpEvent(MpProxy):
    """A traced ``multiprocessing.Event``: same behaviour, plus who set, cleared and waited."""

    __slots__ = ()

    @classmethod
    def _setup(cls, st: PrimState, shared: Any) -> None:
        new_books(st)
        st.extra_stats = _extra_stats

    def is_set(self) -> bool:
        """Whether the flag is set (``multiprocessing.Event.is_set``)."""
        return get_state(self).raw.is_set()  # type: ignore[no-any-return]

    def set(self) -> None:
        """Set the flag and wake every waiter, exactly as multiprocessing's does; record it."""
        st = get_state(self)
        if not rt.level:
            st.raw.set()
            return
        _flip(st, True)

    def clear(self) -> None:
        """Clear the flag, exactly as multiprocessing's does; record it."""
        st = get_state(self)
        if not rt.level:
            st.raw.clear()
            return
        _flip(st, False)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or ``timeout`` passes, exactly as multiprocessing's."""
        st = get_state(self)
        raw = st.raw
        if not rt.level:
            return raw.wait(timeout)  # type: ignore[no-any-return]
        me = ident()
        already = raw.is_set()
        t0 = rt.now()
        try:
            wait_other(me, st, "event_wait", timeout if plain_timeout(timeout) else None,
                       _getframe(1))  # in the wait-for graph while waiting (_detect.py)
            try:
                result = raw.wait(timeout)
            finally:
                forget(me)
        except BaseException as exc:  # KeyboardInterrupt while blocked, or a bad timeout
            if plain_timeout(timeout):
                f = _getframe(1)
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
            f = _getframe(1)
            rt.emit((OP_EVENT_WAIT, t1, me, st.prim, bool(result), already, waited, timeout,
                     f.f_code, f.f_lineno))
        return result  # type: ignore[no-any-return]
