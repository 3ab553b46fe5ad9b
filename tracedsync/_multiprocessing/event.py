"""`TracedMpEvent`: ``multiprocessing.Event``, subclassed, recording sets, clears and waits.

Design note. As for threading's Event (`tracedsync._threading.event`): the real event does the
work (multiprocessing's own methods, called on this object), and the recording methods read
the flag just before each call (``was_set``, ``already_set``: snapshots, since another thread or
process may flip it at the same instant) and time the wait. Counters are this process's. At
level off the recording methods are not on the class (`base`). A wait is recorded by
threading's `_wait_traced`, given multiprocessing's ``wait``; unlike threading's, it enters the
wait-for graph even when the flag is already set. At ``full``, a set or a clear writes one
native record (`K_EVENT_SET`).
"""

from __future__ import annotations

import sys
import weakref
from multiprocessing import synchronize
from types import CodeType, MethodType
from typing import Any, ClassVar

from .._core import runtime as rt
from .._core.native import NATIVE
from .._core.native_kinds import K_EVENT_SET
from .._core.ops import OP_EVENT_SET
from .._core.sites import user_site
from .._core.state import EventState
from .._threading.common import new_books
from .._threading.event import _wait_traced
from .base import MpOriginal, info_of, new_state, register_tracing, untraced

RawEvent = synchronize.Event
_raw_set = RawEvent.set
_raw_clear = RawEvent.clear
_raw_wait = RawEvent.wait
_raw_is_set = RawEvent.is_set
_getframe = sys._getframe
_rec = None if NATIVE is None else NATIVE.rec
FULL = rt.FULL


class TracedMpEvent(MpOriginal, RawEvent):
    """A traced ``multiprocessing.Event``: same behaviour, plus who set, cleared and waited."""

    __slots__ = ()
    _ts_raw: ClassVar[type] = RawEvent
    _ts_state: EventState

    def __init__(self, *, ctx: Any = None, name: str | None = None,
                 _site: tuple[CodeType | None, int] | None = None,
                 _extra: dict[str, Any] | None = None) -> None:
        untraced(RawEvent.__init__, self, ctx=ctx)
        st = new_state(EventState, weakref.proxy(self), "Event", name,
                       _site if _site is not None else user_site(), _extra)
        _setup(st)
        self._ts_state = st
        self._ts_books = None

    def __reduce_ex__(self, protocol: Any) -> Any:
        # multiprocessing's Event pickles its attributes (its Condition says whether it may);
        # ours are sent as the identity.
        state = {k: v for k, v in self.__dict__.items() if k not in _OURS}
        return (_rebuild, (type(self), state, info_of(self._ts_state)))


_OURS = ("_ts_state", "_ts_books")


def _setup(st: EventState) -> None:
    new_books(st)
    st.extra_stats = _extra_stats


def _rebuild(cls: type[TracedMpEvent], state: dict[str, Any], info: Any) -> TracedMpEvent:
    """Unpickling in a child: the same event, under the same id."""
    from .base import attach_state

    event = cls.__new__(cls)
    event.__dict__.update(state)
    prim, kind, name, extra = info
    st = attach_state(weakref.proxy(event), prim, kind, name, extra,
                      lambda st: _setup(st), EventState)  # type: ignore[arg-type]
    event._ts_state = st  # type: ignore[assignment]
    event._ts_books = None
    return event


def _extra_stats(st: EventState) -> dict[str, Any]:
    with st.books:
        return {"sets": st.sets, "clears": st.clears, "flag": _raw_is_set(st.raw)}


# -- the recording methods (on the class while the level is not off) ----------------------------
def _flip(self: TracedMpEvent, flag: bool) -> None:
    """set() (``flag`` true) or clear(), multiprocessing's, then books and record (the frame two
    up is the user's)."""
    st = self._ts_state
    level = rt.level
    was = _raw_is_set(self) if level else False
    if flag:
        _raw_set(self)
    else:
        _raw_clear(self)
    if not level:
        return
    with st.books:
        if flag:
            st.sets += 1
        else:
            st.clears += 1
    if rt.level == FULL:
        if _rec is not None:  # bits: set, was set
            _rec(K_EVENT_SET, st.prim_pid, st.prim_n, (1 if flag else 0) | (2 if was else 0),
                 0, 0, 0, 0)
            return
        f = _getframe(2)
        rt.emit((OP_EVENT_SET, rt.now(), rt.ident(), st.prim, flag, was, f.f_code, f.f_lineno))


def _set(self: TracedMpEvent) -> None:
    """Set the flag and wake every waiter, exactly as multiprocessing's; record it."""
    _flip(self, True)


def _clear(self: TracedMpEvent) -> None:
    """Clear the flag, exactly as multiprocessing's; record it."""
    _flip(self, False)


def _wait(self: TracedMpEvent, timeout: float | None = None) -> bool:
    """Wait until the flag is set or ``timeout`` passes, exactly as multiprocessing's."""
    if not rt.level:
        return _raw_wait(self, timeout)
    return _wait_traced(self._ts_state, MethodType(_raw_wait, self), _raw_is_set(self), timeout,
                        True)


register_tracing({TracedMpEvent: {"set": _set, "clear": _clear, "wait": _wait}})
