"""`TracedMpBarrier`: ``multiprocessing.Barrier``, subclassed, recording passes and breaks.

Design note: who broke it, and why, when the parties are processes.

multiprocessing's Barrier is ``threading.Barrier``'s algorithm over a multiprocessing Condition
and two shared ints. As in threading's (`tracedsync._threading.barrier`), the cause of a break
is decided in ``_break``, called under the barrier's condition lock by the thread that timed
out, by ``abort()``, or by the thread whose ``action`` raised; while tracing, the traced class's
``_break`` notes the cause first, then calls the original's. Since the threads that see the
barrier broken may be in other processes, the cause is written to a small record in shared
memory, allocated with the barrier and sent with it:

    [BREAKS] times the barrier went from working to broken
    [WHO]    owner word (pid << 32 | native tid, see `owner`) of the thread that broke it
    [WHY]    1 timeout, 2 abort, 3 action, 4 reset

It is written under the barrier's condition lock, which every woken waiter re-takes before it
raises, so a waiter reads a complete cause; it reads it after its ``wait`` raised, so a second
break in between (a ``reset`` and a new timeout) would show the later cause. The text of an
action's exception is known only in the process where the action ran (``error`` appears in
that process's events). ``reset()`` notes "reset" under the same lock, only when it breaks
waiters (the barrier was filling and someone was waiting).

The books and events around the real calls are shared with the threading barrier
(`tracedsync._threading.barrier_books`), given multiprocessing's own ``wait``, ``abort`` and
``reset``; `_SharedCauses` is this barrier's `BreakCauses`: the cause kept in the shared record,
a break recorded as a generic ``barrier_broken`` naming the breaker's pid and tid. At level off
the recording methods are not on the class (`base`).

The action given to the barrier is wrapped in a small picklable callable (`_WatchedAction`) that
notes "action" before the exception reaches ``_break``: the action of a multiprocessing barrier
is pickled to children, so it cannot be a closure.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable
from multiprocessing import synchronize
from types import CodeType, FrameType, MethodType
from typing import Any, ClassVar, cast

from .._core import runtime as rt
from .._core.ops import OP_GENERIC
from .._core.sites import user_site
from .._core.state import BarrierState
from .._threading.barrier_books import (
    BROKEN,
    BreakCauses,
    count_broken,
    extra_stats,
    traced_abort,
    traced_reset,
    traced_wait,
)
from .._threading.common import new_books
from .base import MpOriginal, attach_state, info_of, new_state, register_tracing, untraced
from .owner import owner_word, split

_getframe = sys._getframe
_get_ident = threading.get_ident
FULL = rt.FULL
BrokenBarrierError = threading.BrokenBarrierError
RawBarrier = synchronize.Barrier
_raw_wait = RawBarrier.wait
_raw_abort = RawBarrier.abort
_raw_reset = RawBarrier.reset
_raw_break = RawBarrier._break  # type: ignore[attr-defined]
_raw_getstate: Callable[[Any], Any] = RawBarrier.__getstate__  # type: ignore[attr-defined]
_raw_setstate: Callable[[Any, Any], None] = RawBarrier.__setstate__  # type: ignore[attr-defined]

BREAKS, WHO, WHY = 0, 1, 2
_WHY = {"timeout": 1, "abort": 2, "action": 3, "reset": 4}
_WHY_NAME = {v: k for k, v in _WHY.items()}

_pending: dict[tuple[str | None, int], tuple[str, str | None]] = {}
"""(prim, ident) → why this thread is about to call ``_break`` (abort, action), this process."""
_errors: dict[str, str] = {}
"""prim → repr of the exception of the last action that broke it in this process."""


def new_record() -> Any:
    from multiprocessing.sharedctypes import RawArray

    return RawArray("q", 3)


class _WatchedAction:
    """The user's barrier action, noting why the barrier is about to break if it raises."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action
        self.prim: str | None = None

    def __call__(self) -> None:
        try:
            self.action()
        except BaseException as exc:
            _pending[(self.prim, _get_ident())] = ("action", repr(exc))
            raise


def watch(action: Callable[[], Any] | None) -> Callable[[], Any] | None:
    return None if action is None else _WatchedAction(action)


class _SharedCauses(BreakCauses):
    """The causes of one barrier's breaks, in the shared record ``rec`` (see the note); the
    pending causes and the actions' errors in this process's `_pending` and `_errors`."""

    __slots__ = ("prim", "rec")

    def __init__(self, rec: Any, prim: str) -> None:
        self.rec = rec
        self.prim = prim

    def take(self) -> tuple[str, str | None]:
        return _pending.pop((self.prim, _get_ident()), ("timeout", None))

    def note(self, why: str, error: str | None) -> None:
        rec = self.rec
        rec[WHO] = owner_word()
        rec[WHY] = _WHY[why]
        rec[BREAKS] += 1
        if error is not None:
            _errors[self.prim] = error

    def breaks(self) -> int:
        return self.rec[BREAKS]  # type: ignore[no-any-return]

    def mine(self, breaks: int, me: int) -> str | None:
        rec = self.rec
        if rec[BREAKS] != breaks and rec[WHO] == owner_word():
            return _WHY_NAME.get(rec[WHY], "")
        return None

    def abort(self, raw: Any, me: int) -> None:
        key = (self.prim, _get_ident())
        _pending[key] = ("abort", None)
        try:
            _raw_abort(raw)
        finally:
            _pending.pop(key, None)

    def reset(self, raw: Any, me: int) -> tuple[int, bool]:
        rec = self.rec
        with raw._cond:  # an RLock: the real reset takes it again
            waiting = raw.n_waiting
            was_broken = raw.broken
            if raw._state == 0 and raw._count > 0:  # the waiters will be broken by this reset
                rec[WHO] = owner_word()
                rec[WHY] = _WHY["reset"]
            _raw_reset(raw)
        return waiting, was_broken

    def broken(self, st: BarrierState, me: int, t: int, waited: int, arrived: int,
               timeout: float | None, mine: bool, f: FrameType) -> None:
        rec = self.rec
        pid, tid = split(rec[WHO])
        why = _WHY_NAME.get(rec[WHY])
        count_broken(st, waited, mine and why == "timeout")
        fields: dict[str, Any] = {
            "prim": st.prim, "broken_by": tid, "broken_by_pid": pid, "why": why,
            "waited_ns": waited, "n_waiting": arrived,
            "timeout": st.default_timeout if timeout is None else timeout,
        }
        if mine and why == "action" and st.prim in _errors:
            fields["error"] = _errors[st.prim]
        rt.emit((OP_GENERIC, t, me, "barrier_broken", fields, f.f_code, f.f_lineno))

    def aborted(self, st: BarrierState, me: int, t: int, waiting: int, f: FrameType) -> None:
        pid, tid = split(owner_word())
        rt.emit((OP_GENERIC, t, me, "barrier_broken",
                 {"prim": st.prim, "broken_by": tid, "broken_by_pid": pid, "why": "abort",
                  "n_waiting": waiting}, f.f_code, f.f_lineno))


class TracedMpBarrier(MpOriginal, RawBarrier):
    """A traced ``multiprocessing.Barrier``: same behaviour, plus each pass, and who broke it
    (in which process) and why."""

    __slots__ = ()
    _ts_raw: ClassVar[type] = RawBarrier
    _ts_state: BarrierState
    _action: Any
    _timeout: Any

    def __init__(self, parties: int, action: Callable[[], Any] | None = None,
                 timeout: float | None = None, *, ctx: Any = None, name: str | None = None,
                 _site: tuple[CodeType | None, int] | None = None,
                 _extra: dict[str, Any] | None = None) -> None:
        untraced(RawBarrier.__init__, self, parties, watch(action), timeout, ctx=ctx)
        st = new_state(BarrierState, weakref.proxy(self), "Barrier", name,
                       _site if _site is not None else user_site(), _extra)
        _setup(self, st, None)
        self._ts_state = st
        self._ts_books = None

    def __reduce_ex__(self, protocol: Any) -> Any:
        # multiprocessing's state first: its Condition says whether it may be pickled.
        st = self._ts_state
        return (_rebuild, (type(self), _raw_getstate(self), info_of(st), st.ext))


def _setup(barrier: TracedMpBarrier, st: BarrierState, shared: Any) -> None:
    rec = new_record() if shared is None else shared
    st.ext = rec
    if isinstance(barrier._action, _WatchedAction):
        barrier._action.prim = st.prim
    st.break_book = _SharedCauses(rec, st.prim)
    new_books(st)
    st.parties = barrier.parties
    st.default_timeout = barrier._timeout
    st.extra_stats = extra_stats


def _rebuild(cls: type[TracedMpBarrier], state: Any, info: Any, shared: Any) -> TracedMpBarrier:
    """Unpickling in a child: the same barrier, under the same id."""
    barrier = cls.__new__(cls)
    _raw_setstate(barrier, state)
    prim, kind, name, extra = info
    st = attach_state(weakref.proxy(barrier), prim, kind, name, extra,
                      lambda st: _setup(barrier, cast(BarrierState, st), shared), BarrierState)
    barrier._ts_state = cast(BarrierState, st)
    barrier._ts_books = None
    return barrier


# -- the recording methods (on the class while the level is not off) ----------------------------
def _wait(self: TracedMpBarrier, timeout: float | None = None) -> int:
    """Wait until ``parties`` parties wait, exactly as multiprocessing's; record it."""
    if not rt.level:
        return _raw_wait(self, timeout)
    return traced_wait(self._ts_state, MethodType(_raw_wait, self), timeout)


def _abort(self: TracedMpBarrier) -> None:
    """Break the barrier, exactly as multiprocessing's ``abort``; record it."""
    if not rt.level:
        return _raw_abort(self)
    return traced_abort(self._ts_state, rt.ident())


def _reset(self: TracedMpBarrier) -> None:
    """Return the barrier to its empty state, exactly as multiprocessing's ``reset``."""
    if not rt.level:
        return _raw_reset(self)
    return traced_reset(self._ts_state, rt.ident())


def _break(self: TracedMpBarrier) -> None:
    # multiprocessing's _break (threading's), called under the barrier's lock; first, who
    # breaks it and why.
    causes: BreakCauses = self._ts_state.break_book
    why, error = causes.take()
    if self._state != BROKEN:  # type: ignore[attr-defined]
        causes.note(why, error)
    _raw_break(self)


register_tracing({TracedMpBarrier: {"wait": _wait, "abort": _abort, "reset": _reset,
                                    "_break": _break}})
