"""`TracedMpSemaphore` and `TracedMpBoundedSemaphore`: multiprocessing's semaphores, traced.

Design note. Like the threading semaphores (`_semaphore.py`): the real semaphore does the
counting, blocking and raising; a blocking acquire first tries ``acquire(False)`` and is
*contended* only if that fails; the events are the same (``sem_acquire``, ``sem_release``,
``misuse`` ``over_release``). The books of who holds permits (``held``, ``for_others``) are this
process's: permits taken or given back by other processes are in their own logs. ``permits`` is
the real semaphore's value just after the call (``get_value()``; null where the platform cannot
tell, macOS).
"""

from __future__ import annotations

import sys
from typing import Any

from . import _runtime as rt
from ._detect import forget, wait_sem
from ._events import OP_GENERIC, OP_MISUSE, OP_SEM_ACQUIRE, OP_SEM_RELEASE
from ._mp_base import MpProxy, get_state, given_args, ident, reset_in_fork_child
from ._proxy import new_books
from ._semaphore import _take_from_others
from ._state import PrimState

_getframe = sys._getframe
FULL = rt.FULL
_PLAIN = (bool, int)
_NUMBER = (int, float)


def _permits(st: PrimState) -> int | None:
    try:
        return st.raw._semlock._get_value()  # type: ignore[no-any-return]
    except Exception:  # NotImplementedError on macOS
        return None


class TracedMpSemaphore(MpProxy):
    """A traced ``multiprocessing.Semaphore``: same behaviour, plus waits and permits held."""

    __slots__ = ()

    @classmethod
    def _setup(cls, st: PrimState, shared: Any) -> None:
        new_books(st)
        st.extra_stats = _extra_stats
        reset_in_fork_child(st, _forget_holders)

    def acquire(self, block: bool = True, timeout: float | None = None, *args: Any,
                _depth: int = 1, **kwargs: Any) -> bool:
        """Acquire a permit, exactly as multiprocessing's does, and record it."""
        st = get_state(self)
        level = rt.level
        if not level or args or kwargs:  # off, or not multiprocessing's signature
            return st.acquire(*given_args(block, timeout, args), **kwargs)  # type: ignore[no-any-return]
        if type(block) not in _PLAIN or not (timeout is None or type(timeout) in _NUMBER):
            ok = st.acquire(block, timeout)  # the real one validates (raises) and answers
            return _booked(st, ok, False, 0, block, timeout, _depth + 1)
        if not block:
            ok = st.acquire(False)
            return _booked(st, ok, not ok, 0, block, timeout, _depth + 1)
        if st.acquire(False):
            return _booked(st, True, False, 0, block, timeout, _depth + 1)
        t0 = rt.now()
        me = ident()
        try:
            # In the wait-for graph while blocked (_detect.py; owners: this process's holders).
            wait_sem(me, st, timeout, _getframe(_depth))
            try:
                ok = st.acquire(True, timeout)
            finally:
                forget(me)
        except BaseException as exc:  # KeyboardInterrupt while blocked, DeadlockError
            t1 = rt.now()
            _booked(st, False, True, t1 - t0, block, timeout, _depth + 1)
            f = _getframe(_depth)
            rt.emit((OP_GENERIC, t1, ident(), "interrupted", {"prim": st.prim, "error": repr(exc)},
                     f.f_code, f.f_lineno))
            raise
        return _booked(st, ok, True, rt.now() - t0, block, timeout, _depth + 1)

    def __enter__(self) -> bool:
        return self.acquire(True, None, _depth=2)

    def release(self) -> None:
        """Release a permit, exactly as multiprocessing's does, and record it."""
        _release(get_state(self), 2)

    def __exit__(self, *exc_info: object) -> None:
        _release(get_state(self), 2)

    def get_value(self) -> int:
        """The semaphore's value (multiprocessing's ``get_value``)."""
        return get_state(self).raw.get_value()  # type: ignore[no-any-return]


class TracedMpBoundedSemaphore(TracedMpSemaphore):
    """A traced ``multiprocessing.BoundedSemaphore``; an over-release is recorded as misuse."""

    __slots__ = ()


def _booked(st: PrimState, ok: bool, contended: bool, wait: int, block: Any, timeout: Any,
            fdepth: int) -> bool:
    """Books after an acquire, and its event. Returns ``ok``."""
    me = ident()
    with st.books:
        held = st.held
        if ok:
            mine = held.get(me, 0) + 1
            held[me] = mine
            st.acquisitions += 1
        else:
            mine = held.get(me, 0)
            st.failed += 1
        if contended:
            st.contended += 1
            st.wait_ns += wait
    level = rt.level
    if level == FULL or (level and (contended or not ok)):
        f = _getframe(fdepth)
        rt.emit((OP_SEM_ACQUIRE, rt.now(), me, st.prim, bool(ok), contended, wait, _permits(st),
                 mine, bool(block), timeout, f.f_code, f.f_lineno))
    return bool(ok)


def _release(st: PrimState, fdepth: int) -> None:
    if not rt.level:
        st.release()
        return
    try:
        st.release()
    except ValueError as exc:  # "semaphore or lock released too many times"
        if st.kind == "BoundedSemaphore":
            with st.books:
                st.misuse += 1
            f = _getframe(fdepth)
            rt.emit((OP_MISUSE, rt.now(), ident(), st.prim, "over_release", str(exc),
                     f.f_code, f.f_lineno))
        raise
    me = ident()
    held = st.held
    others = 0
    with st.books:
        mine = held.get(me, 0) - 1
        if mine > 0:
            held[me] = mine
        elif mine == 0:
            del held[me]
        else:
            others = _take_from_others(held, me, 1)
            mine = 0
        st.releases += 1
    if rt.level == FULL:
        f = _getframe(fdepth)
        rt.emit((OP_SEM_RELEASE, rt.now(), me, st.prim, 1, _permits(st), mine, others,
                 f.f_code, f.f_lineno))


def _forget_holders(st: PrimState) -> None:
    # In a forked child, no thread of this process holds a permit (see _mp_base).
    st.held = {}


def _extra_stats(st: PrimState) -> dict[str, Any]:
    with st.books:
        held_by = tuple(st.held.items())
        releases = st.releases
    extra: dict[str, Any] = {"permits": _permits(st), "releases": releases, "held_by": held_by}
    if st.kind == "BoundedSemaphore":
        extra["max_permits"] = st.raw._semlock.maxvalue
    return extra
