"""`TracedBarrier`: ``threading.Barrier`` itself, recording its passes and breaks.

Design note. `TracedBarrier` is a subclass of ``threading.Barrier``: every wait, abort and reset
is ``threading``'s own code, and ``isinstance`` holds; its Condition and Lock are built with the
guard on, so they stay raw even when ``threading`` is patched. At level ``off`` the recording
methods are not on the class (`set_tracing` takes them off), so a barrier costs what
``threading``'s costs. A barrier's waits block (but the last arrival's), so its events are op
tuples: no native record kind.

Who broke it, and why. A thread whose ``wait`` raises BrokenBarrierError learns nothing from the
exception about the cause. The cause is decided inside the barrier, under its lock, in
``Barrier._break``: called by the thread that timed out, by ``abort()``, or by the thread whose
``action`` raised. So `TracedBarrier` overrides ``_break`` with a method that, still under the
barrier's lock and before the state changes, writes ``(ident, why, error)`` to the barrier's
`_BreakBook`, then calls ``threading``'s. Every thread woken by the break re-acquires that lock
before raising, so it reads a cause that is already complete.

``why`` is "abort" when our ``abort()`` is the caller, "action" when our wrapper around the
user's action saw it raise (the wrapper runs under the same lock, just before ``_break``), and
otherwise "timeout" (the only other caller of ``_break`` in ``threading``). A ``_break`` on a
barrier already broken keeps the first cause. ``reset()`` breaks current waiters without
``_break``; we note "reset" as the cause first unless the barrier is already broken. Two breaks
racing (a reset while a timeout breaks it) report whichever cause was noted last.

``n_waiting`` in events is the real ``n_waiting`` read just before the call: a snapshot.

The books and events around the real calls are shared with the multiprocessing barrier
(`barrier_books`; multiprocessing's Barrier subclassed the same way); `_BreakBook` is this
barrier's `BreakCauses`: the cause kept in this process, a break recorded as
``OP_BARRIER_BROKEN``.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType, MethodType
from typing import Any

from .._core import runtime as rt
from .._core.ops import OP_BARRIER_BROKEN
from .._core.registry import new_state
from .._core.sites import user_site
from .._core.state import BarrierState
from . import originals as _originals
from .barrier_books import (
    BROKEN,
    BreakCauses,
    count_broken,
    extra_stats,
    raw_break,
    traced_abort,
    traced_reset,
    traced_wait,
)
from .common import OriginalSubclass, install_methods, new_books, untraced

_getframe = sys._getframe
_get_ident = rt.get_ident
FULL = rt.FULL

RawBarrier = _originals.RawBarrier
BrokenBarrierError = threading.BrokenBarrierError


class _BreakBook(BreakCauses):
    """The causes of one barrier's breaks. Written under the real barrier's lock."""

    __slots__ = ("cause", "count", "pending")

    def __init__(self) -> None:
        self.cause: tuple[int, str, str | None] | None = None
        """``(ident, why, error)`` of the latest break."""
        self.count = 0
        """Breaks so far (a working barrier became broken)."""
        self.pending: dict[int, tuple[str, str | None]] = {}
        """Why a thread is about to call ``_break``, keyed by its ident (abort, action)."""

    def take(self) -> tuple[str, str | None]:
        return self.pending.pop(_get_ident(), ("timeout", None))

    def note(self, why: str, error: str | None) -> None:
        self.cause = (_get_ident(), why, error)
        self.count += 1

    def breaks(self) -> int:
        return self.count

    def mine(self, breaks: int, me: int) -> str | None:
        cause = self.cause
        if self.count != breaks and cause is not None and cause[0] == me:
            return cause[1]
        return None

    def abort(self, raw: Any, me: int) -> None:
        self.pending[me] = ("abort", None)
        try:
            _raw_abort(raw)
        finally:
            self.pending.pop(me, None)

    def reset(self, raw: Any, me: int) -> tuple[int, bool]:
        waiting = raw.n_waiting
        was_broken = raw.broken
        if not was_broken:  # current waiters will be broken by this reset
            self.cause = (me, "reset", None)
        _raw_reset(raw)
        return waiting, was_broken

    def broken(self, st: BarrierState, me: int, t: int, waited: int, arrived: int,
               timeout: float | None, mine: bool, f: FrameType) -> None:
        cause = self.cause
        broken_by, why, error = cause if cause is not None else (None, None, None)
        count_broken(st, waited, mine and why == "timeout")
        rt.emit((OP_BARRIER_BROKEN, t, me, st.prim, broken_by, why, error, waited, arrived,
                 st.default_timeout if timeout is None else timeout, f.f_code, f.f_lineno))

    def aborted(self, st: BarrierState, me: int, t: int, waiting: int, f: FrameType) -> None:
        rt.emit((OP_BARRIER_BROKEN, t, me, st.prim, me, "abort", None, None, waiting, None,
                 f.f_code, f.f_lineno))


def _watch_action(action: Callable[[], None], book: _BreakBook) -> Callable[[], None]:
    """The user's action, noting why the barrier is about to break if it raises."""

    def run_action() -> None:
        try:
            action()
        except BaseException as exc:
            book.pending[_get_ident()] = ("action", repr(exc))
            raise

    return run_action


class TracedBarrier(OriginalSubclass, RawBarrier):
    """A traced ``threading.Barrier``: same behaviour, plus each pass and who broke it, and why."""

    _ts_raw: Any = RawBarrier
    _ts_state: BarrierState

    def __init__(
        self,
        parties: int,
        action: Callable[[], None] | None = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
        _site: tuple[Any, int] | None = None,
    ) -> None:
        book = _BreakBook()
        untraced(RawBarrier.__init__, self, parties,
                 _watch_action(action, book) if action else action, timeout)
        code, lineno = _site if _site is not None else user_site()
        st = new_state(BarrierState, weakref.proxy(self), "Barrier", name, code, lineno,
                       {"parties": parties, "timeout": timeout})
        new_books(st)
        st.break_book = book
        st.parties = parties
        st.default_timeout = timeout
        st.extra_stats = extra_stats
        self._ts_state = st


# -- the recording methods (on the class while the level is not off) ----------------------------
def _wait(self: TracedBarrier, timeout: float | None = None) -> int:
    """Wait until ``parties`` parties wait, exactly as ``threading``'s; record it."""
    if not rt.level:
        return _raw_wait(self, timeout)
    return traced_wait(self._ts_state, MethodType(_raw_wait, self), timeout)


def _abort(self: TracedBarrier) -> None:
    """Break the barrier, exactly as ``threading``'s ``abort``; record it."""
    if not rt.level:
        return _raw_abort(self)
    return traced_abort(self._ts_state, rt.ident())


def _reset(self: TracedBarrier) -> None:
    """Return the barrier to its empty state, exactly as ``threading``'s ``reset``."""
    if not rt.level:
        return _raw_reset(self)
    return traced_reset(self._ts_state, rt.ident())


def _break(self: TracedBarrier) -> None:
    # threading's _break, called under the barrier's lock; first, who breaks it and why.
    causes: BreakCauses = self._ts_state.break_book
    why, error = causes.take()
    if self._state != BROKEN:  # type: ignore[attr-defined]
        causes.note(why, error)
    raw_break(self)


_raw_wait = RawBarrier.wait
_raw_abort = RawBarrier.abort
_raw_reset = RawBarrier.reset
_TRACING: dict[type, dict[str, Any]] = {
    TracedBarrier: {"wait": _wait, "abort": _abort, "reset": _reset, "_break": _break},
}


def set_tracing(on: bool) -> None:
    """Put the recording methods on `TracedBarrier` (or take them off: level ``off``)."""
    install_methods(_TRACING, on)


set_tracing(rt.level != rt.OFF)  # (imported when first used: at the level of that moment)


def Barrier(
    parties: int,
    action: Callable[[], None] | None = None,
    timeout: float | None = None,
    *,
    name: str | None = None,
) -> TracedBarrier:
    """A new traced ``threading.Barrier``; ``name`` labels it in the logs."""
    if rt.in_guard():
        return RawBarrier(parties, action, timeout)  # type: ignore[return-value]
    f = _getframe(1)
    return TracedBarrier(parties, action, timeout, name=name, _site=(f.f_code, f.f_lineno))
