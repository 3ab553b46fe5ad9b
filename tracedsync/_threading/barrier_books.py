"""What `TracedBarrier` (`barrier`) and `TracedMpBarrier` (`_multiprocessing.barrier`) share.

Design note. multiprocessing's Barrier is ``threading.Barrier``'s algorithm over a
multiprocessing Condition, so the two keep the same books around the same calls: the note of
who breaks it in ``_break``, the books and events of a ``wait`` that passed or raised, of
``abort`` and of ``reset``, and the extra statistics. That code is here once, as functions of
the primitive's state, called with tracing on by the two classes' methods.

What differs stays with each barrier. Its methods get the state, take the path without tracing,
and give `traced_wait` the real ``wait``. Its `BreakCauses`, kept in ``st.break_book``, says
where the cause of a break is kept and how a break is recorded: threading's keeps it in this
process and records ``OP_BARRIER_BROKEN``; multiprocessing's keeps it in shared memory, naming
the thread by pid and tid, and records a generic ``barrier_broken``. See each module's note.

Frames: these functions are called by the barrier's method, so the user's frame is
``_getframe(2)`` here; a hook that records an event is given that frame.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from .._core import runtime as rt
from .._core.ops import OP_BARRIER_WAIT, OP_GENERIC
from .._core.state import BarrierState
from .._core.waits import forget, wait_other
from . import originals as _originals
from .common import plain_timeout

_getframe = sys._getframe
FULL = rt.FULL
BrokenBarrierError = threading.BrokenBarrierError
raw_break: Callable[[Any], None] = _originals.RawBarrier.__dict__["_break"]
"""``threading``'s ``Barrier._break``."""
BROKEN = -2  # threading.Barrier._state when broken


class BreakCauses:
    """Where one barrier keeps the causes of its breaks, and how it records them (the hooks of
    the shared code; one per barrier, in ``st.break_book``)."""

    __slots__ = ()

    def take(self) -> tuple[str, str | None]:
        """In ``_break``: ``(why, error)`` of the calling thread, forgotten ("timeout" if it
        said nothing)."""
        raise NotImplementedError

    def note(self, why: str, error: str | None) -> None:
        """In ``_break``, under the barrier's lock: the calling thread breaks a working barrier."""
        raise NotImplementedError

    def breaks(self) -> int:
        """The times the barrier went from working to broken."""
        raise NotImplementedError

    def mine(self, breaks: int, me: int) -> str | None:
        """Why the barrier broke if thread ``me`` broke it since there were ``breaks`` breaks
        ("" if the cause has no name), else None."""
        raise NotImplementedError

    def abort(self, raw: Any, me: int) -> None:
        """The real ``abort``, with "abort" noted for thread ``me``'s ``_break``."""
        raise NotImplementedError

    def reset(self, raw: Any, me: int) -> tuple[int, bool]:
        """The real ``reset``, with "reset" noted if it breaks waiters; ``(n_waiting, broken)``
        just before."""
        raise NotImplementedError

    def broken(self, st: BarrierState, me: int, t: int, waited: int, arrived: int,
               timeout: float | None, mine: bool, f: FrameType) -> None:
        """Books (`count_broken`) and record for a wait that ended with the barrier broken."""
        raise NotImplementedError

    def aborted(self, st: BarrierState, me: int, t: int, waiting: int, f: FrameType) -> None:
        """Record thread ``me``'s ``abort`` breaking the barrier."""
        raise NotImplementedError


def traced_wait(st: BarrierState, wait: Callable[[Any], int], timeout: float | None) -> int:
    """``wait(timeout)``, the real barrier's, with tracing on: in the wait-for graph meanwhile,
    then its books and events."""
    me = rt.ident()
    breaks = st.break_book.breaks()
    arrived = st.raw.n_waiting
    t0 = rt.now()
    # In the wait-for graph while waiting (for snapshots and long waits).
    wait_other(me, st, "barrier_wait", timeout if plain_timeout(timeout) else None,
               _getframe(2))
    try:
        index = wait(timeout)
    except BaseException as exc:
        forget(me)
        _wait_raised(st, me, exc, t0, arrived, timeout, breaks)
        raise
    forget(me)
    return _wait_passed(st, me, index, t0, arrived, timeout)


def _wait_passed(st: BarrierState, me: int, index: int, t0: int, arrived: int,
                 timeout: float | None) -> int:
    """Books and record for a wait that passed with ``index``; returns ``index``."""
    t1 = rt.now()
    with st.books:
        st.waits += 1
        st.wait_ns += t1 - t0
    level = rt.level
    if level == FULL or (level and index != st.parties - 1):
        f = _getframe(3)
        rt.emit((OP_BARRIER_WAIT, t1, me, st.prim, index, t1 - t0, st.parties, arrived,
                 st.default_timeout if timeout is None else timeout, f.f_code, f.f_lineno))
    return index


def _wait_raised(st: BarrierState, me: int, exc: BaseException, t0: int, arrived: int,
                 timeout: float | None, breaks: int) -> None:
    """Books and record for a wait that raised ``exc``; ``breaks`` as before it."""
    t1 = rt.now()
    causes: BreakCauses = st.break_book
    why = causes.mine(breaks, me)
    if isinstance(exc, BrokenBarrierError) or why == "action":
        causes.broken(st, me, t1, t1 - t0, arrived, timeout, why is not None, _getframe(3))
    elif plain_timeout(timeout):
        f = _getframe(3)
        rt.emit((OP_GENERIC, t1, me, "interrupted",
                 {"prim": st.prim, "error": repr(exc)}, f.f_code, f.f_lineno))


def count_broken(st: BarrierState, waited: int, timed_out: bool) -> None:
    """Books of a wait that ended with the barrier broken (``timed_out``: broken by its timeout)."""
    with st.books:
        st.waits += 1
        st.broken_waits += 1
        st.wait_ns += waited
        if timed_out:
            st.wait_timeouts += 1


def traced_abort(st: BarrierState, me: int) -> None:
    """``abort`` with tracing on: the real one, its books and its events."""
    raw = st.raw
    causes: BreakCauses = st.break_book
    breaks = causes.breaks()
    waiting = raw.n_waiting
    was_broken = raw.broken
    causes.abort(raw, me)
    broke = causes.mine(breaks, me) is not None
    with st.books:
        st.aborts += 1
    f = _getframe(2)
    t = rt.now()
    rt.emit((OP_GENERIC, t, me, "barrier_abort",
             {"prim": st.prim, "n_waiting": waiting, "was_broken": was_broken},
             f.f_code, f.f_lineno))
    if broke:
        causes.aborted(st, me, t, waiting, f)


def traced_reset(st: BarrierState, me: int) -> None:
    """``reset`` with tracing on: the real one, its books and its event."""
    waiting, was_broken = st.break_book.reset(st.raw, me)
    with st.books:
        st.resets += 1
    if rt.level == FULL:
        f = _getframe(2)
        rt.emit((OP_GENERIC, rt.now(), me, "barrier_reset",
                 {"prim": st.prim, "n_waiting": waiting, "was_broken": was_broken},
                 f.f_code, f.f_lineno))


def extra_stats(st: BarrierState) -> dict[str, Any]:
    """The barrier's own statistics."""
    causes: BreakCauses = st.break_book
    with st.books:
        return {
            "parties": st.parties,
            "broken": st.raw.broken,
            "breaks": causes.breaks(),
            "broken_waits": st.broken_waits,
            "aborts": st.aborts,
            "resets": st.resets,
        }
