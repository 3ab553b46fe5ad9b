"""`TracedMpBarrier`: ``multiprocessing.Barrier`` behind a proxy that records passes and breaks.

Design note: who broke it, and why, when the parties are processes.

multiprocessing's Barrier is ``threading.Barrier``'s algorithm over a multiprocessing Condition
and two shared ints. As in threading's (`tracedsync._threading.barrier`), the cause of a break
is decided in ``_break``, called under the barrier's condition lock by the thread that timed
out, by ``abort()``, or by the thread whose ``action`` raised; the proxy puts a hook in the real
barrier's ``_break`` (an instance attribute, installed again in every process that receives the
barrier). Since the threads that see the barrier broken may be in other processes, the cause is
written to a small record in shared memory, allocated with the barrier and sent with it:

    [BREAKS] times the barrier went from working to broken
    [WHO]    owner word (pid << 32 | native tid, see `_mp_owner`) of the thread that broke it
    [WHY]    1 timeout, 2 abort, 3 action, 4 reset

It is written under the barrier's condition lock, which every woken waiter re-takes before it
raises, so a waiter reads a complete cause; it reads it after its ``wait`` raised, so a second
break in between (a ``reset`` and a new timeout) would show the later cause. The text of an
action's exception is known only in the process where the action ran (``error`` appears in
that process's events). ``reset()`` notes "reset" under the same lock, only when it breaks
waiters (the barrier was filling and someone was waiting).

The books and events around the real calls are shared with the threading barrier
(`tracedsync._threading.barrier_books`); `_SharedCauses` is this barrier's `BreakCauses`: the
cause kept in the shared record, a break recorded as a generic ``barrier_broken`` naming the
breaker's pid and tid.

The action given to the barrier is wrapped in a small picklable callable (`_WatchedAction`) that
notes "action" before the exception reaches ``_break``: the action of a multiprocessing barrier
is pickled to children, so it cannot be a closure.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

from .._core import runtime as rt
from .._core.ops import OP_GENERIC
from .._core.state import BarrierState
from .._threading.barrier_books import (
    BreakCauses,
    count_broken,
    extra_stats,
    install_break_hook,
    traced_abort,
    traced_reset,
    traced_wait,
)
from .._threading.common import new_books
from .._threading.proxy import get_state as _get_any_state
from .base import MpProxy
from .owner import owner_word, split

get_state = cast("Callable[[Any], BarrierState]", _get_any_state)
"""The state of one of this module's proxies (always a `BarrierState`)."""

_getframe = sys._getframe
_get_ident = threading.get_ident
FULL = rt.FULL
BrokenBarrierError = threading.BrokenBarrierError

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
            raw.abort()
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
            raw.reset()
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


class BarrierMethods:
    """The methods of the multiprocessing Barrier's proxy: the real barrier does the work,
    exactly as the original; passes and breaks are recorded by the functions threading's barrier
    uses (see the design note; each barrier's `BreakCauses` says where a break's cause is
    kept)."""

    __slots__ = ()

    def wait(self, timeout: float | None = None) -> int:
        """Wait until ``parties`` parties wait, exactly as the original; record it."""
        st = get_state(self)
        raw = st.raw
        if not rt.level:
            return raw.wait(timeout)  # type: ignore[no-any-return]
        return traced_wait(st, raw.wait, timeout)

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


class TracedMpBarrier(BarrierMethods, MpProxy):
    """A traced ``multiprocessing.Barrier``: same behaviour, plus each pass, and who broke it
    (in which process) and why."""

    __slots__ = ()

    @classmethod
    def _setup(cls, st: BarrierState, shared: Any) -> None:
        raw = st.raw
        rec = new_record() if shared is None else shared
        st.ext = rec
        if isinstance(raw._action, _WatchedAction):
            raw._action.prim = st.prim
        st.break_book = causes = _SharedCauses(rec, st.prim)
        install_break_hook(raw, causes)
        new_books(st)
        st.parties = raw.parties
        st.default_timeout = raw._timeout
        st.extra_stats = extra_stats

    def _shared(self) -> Any:
        return get_state(self).ext
