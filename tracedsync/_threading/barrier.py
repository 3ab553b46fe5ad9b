"""`TracedBarrier`: ``threading.Barrier`` behind a proxy that records passes and breaks.

Design note: who broke it, and why.

A thread whose ``wait`` raises BrokenBarrierError learns nothing from the exception about the
cause. The cause is decided inside the real barrier, under its lock, in ``Barrier._break``: called
by the thread that timed out, by ``abort()``, or by the thread whose ``action`` raised. So the
proxy replaces ``_break`` on the real barrier instance (an instance attribute; the class and
everything else are untouched) with a hook that, still under the barrier's lock and before the
state changes, writes ``(ident, why, error)`` to the barrier's `_BreakBook`. Every thread woken
by the break re-acquires that lock before raising, so it reads a cause that is already complete.

``why`` is "abort" when the proxy's ``abort()`` is the caller, "action" when our wrapper around
the user's action saw it raise (the wrapper runs under the same lock, just before ``_break``),
and otherwise "timeout" (the only other caller of ``_break`` in ``threading``). A ``_break`` on a
barrier already broken keeps the first cause. ``reset()`` breaks current waiters without
``_break``; the proxy notes "reset" as the cause first unless the barrier is already broken.
Two breaks racing (a reset while a timeout breaks it) report whichever cause was noted last.

``n_waiting`` in events is the real ``n_waiting`` read just before the call: a snapshot.

The books and events around the real calls are shared with the multiprocessing barrier
(`_barrier_common`); `_BreakBook` is this barrier's `BreakCauses`: the cause kept in this process,
a break recorded as ``OP_BARRIER_BROKEN``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

from .._core import runtime as rt
from .._core.ops import OP_BARRIER_BROKEN
from .._core.registry import new_state
from .._core.sites import user_site
from .._core.state import BarrierState
from .._core.waits import forget, wait_other
from . import originals as _originals
from .barrier_books import (
    BreakCauses,
    count_broken,
    extra_stats,
    install_break_hook,
    traced_abort,
    traced_reset,
    wait_passed,
    wait_raised,
)
from .proxy import TracedProxy, new_books, plain_timeout, untraced
from .proxy import get_state as _get_any_state

get_state = cast("Callable[[Any], BarrierState]", _get_any_state)
"""The state of one of this module's proxies (always a `BarrierState`)."""

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
            raw.abort()
        finally:
            self.pending.pop(me, None)

    def reset(self, raw: Any, me: int) -> tuple[int, bool]:
        waiting = raw.n_waiting
        was_broken = raw.broken
        if not was_broken:  # current waiters will be broken by this reset
            self.cause = (me, "reset", None)
        raw.reset()
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



class BarrierMethods:
    """The methods of the traced Barriers (threading's and multiprocessing's): the real barrier
    does the work, exactly as the original; passes and breaks are recorded (see the design
    note; each barrier's `BreakCauses` says where a break's cause is kept)."""

    __slots__ = ()

    def wait(self, timeout: float | None = None) -> int:
        """Wait until ``parties`` parties wait, exactly as the original; record it."""
        st = get_state(self)
        raw = st.raw
        if not rt.level:
            return raw.wait(timeout)  # type: ignore[no-any-return]
        me = rt.ident()
        breaks = st.break_book.breaks()
        arrived = raw.n_waiting
        t0 = rt.now()
        # In the wait-for graph while waiting (for snapshots and long waits).
        wait_other(me, st, "barrier_wait", timeout if plain_timeout(timeout) else None,
                   _getframe(1))
        try:
            index = raw.wait(timeout)
        except BaseException as exc:
            forget(me)
            wait_raised(st, me, exc, t0, arrived, timeout, breaks)
            raise
        forget(me)
        return wait_passed(st, me, index, t0, arrived, timeout)

    def abort(self) -> None:
        """Break the barrier, exactly as the original's ``abort``; record it."""
        st = get_state(self)
        if not rt.level:
            st.raw.abort()
            return
        traced_abort(st, rt.ident())

    def reset(self) -> None:
        """Return the barrier to its empty state, exactly as the original's ``reset``."""
        st = get_state(self)
        if not rt.level:
            st.raw.reset()
            return
        traced_reset(st, rt.ident())

    @property
    def parties(self) -> int:
        """The number of parties required to pass the barrier."""
        return get_state(self).raw.parties  # type: ignore[no-any-return]

    @property
    def n_waiting(self) -> int:
        """The number of parties waiting at the barrier now."""
        return get_state(self).raw.n_waiting  # type: ignore[no-any-return]

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return get_state(self).raw.broken  # type: ignore[no-any-return]


class TracedBarrier(BarrierMethods, TracedProxy):
    """A traced ``threading.Barrier``: same behaviour, plus each pass and who broke it, and why."""

    __slots__ = ()

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
        raw = untraced(RawBarrier, parties, _watch_action(action, book) if action else action,
                       timeout)
        install_break_hook(raw, book)
        super().__init__(raw)
        code, lineno = _site if _site is not None else user_site()
        st = new_state(BarrierState, raw, "Barrier", name, code, lineno,
                       {"parties": parties, "timeout": timeout})
        new_books(st)
        st.break_book = book
        st.parties = parties
        st.default_timeout = timeout
        st.extra_stats = extra_stats
        self._self_state = st


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
