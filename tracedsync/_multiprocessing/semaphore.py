"""`TracedMpSemaphore` and `TracedMpBoundedSemaphore`: multiprocessing's semaphores, subclassed.

Design note. Like the threading semaphores (`tracedsync._threading.semaphore`): the real
semaphore does the counting, blocking and raising; a blocking acquire first tries
``acquire(False)`` and is *contended* only if that fails; the events are the same
(``sem_acquire``, ``sem_release``, ``misuse`` ``over_release``). The books of who holds
permits (``held``, ``for_others``) are this process's: permits taken or given back by other
processes are in their own logs. ``permits`` is the real semaphore's value just after the call
(``get_value()``; null where the platform cannot tell, macOS).

Each is a subclass of multiprocessing's class (a SemLock, as the locks are: `locks.SemLockOriginal`
says how its ``acquire``/``release`` instance attributes follow the level, and how it pickles).
The books and events are threading's semaphore's functions; this module makes its own calls to
the real semaphore (the SemLock's methods, multiprocessing's signatures) and passes its own
permits reader. A blocked acquire's exception is always recorded as an interruption: the
timeout's type was checked before (its value is not: see ``plain`` in `_acquire_blocked`). At
``full``, an uncontended ``acquire()`` and a ``release()`` write native records, as threading's
do.
"""

from __future__ import annotations

import weakref
from multiprocessing import synchronize
from types import CodeType
from typing import Any, ClassVar, cast

from .._core import runtime as rt
from .._core.sites import user_site
from .._core.state import SemaphoreState
from .._threading.common import new_books
from .._threading.semaphore import _acquire_blocked, _booked, _refused, _released, _sem_stats
from .base import given_args, new_state, register_tracing, reset_in_fork_child, untraced
from .locks import SemLockOriginal

RawSemaphore = synchronize.Semaphore
RawBoundedSemaphore = synchronize.BoundedSemaphore
_PLAIN = (bool, int)
_NUMBER = (int, float)


def _permits(st: SemaphoreState) -> int | None:
    try:
        return st.raw._semlock._get_value()  # type: ignore[no-any-return]
    except Exception:  # NotImplementedError on macOS
        return None


class TracedMpSemaphore(SemLockOriginal, RawSemaphore):
    """A traced ``multiprocessing.Semaphore``: same behaviour, plus waits and permits held."""

    __slots__ = ()
    _ts_raw: ClassVar[type] = RawSemaphore
    _ts_kind = "Semaphore"
    _ts_state: SemaphoreState

    def __init__(self, value: int = 1, *, ctx: Any = None, name: str | None = None,
                 _site: tuple[CodeType | None, int] | None = None,
                 _extra: dict[str, Any] | None = None) -> None:
        # (its errors are the original's)
        untraced(cast(Any, self._ts_raw).__init__, self, value, ctx=ctx)
        st = new_state(SemaphoreState, weakref.proxy(self), self._ts_kind, name,
                       _site if _site is not None else user_site(), _extra)
        self._ts_setup(st, None)
        self._ts_bind(st)

    def _ts_setup(self, st: SemaphoreState, shared: Any) -> None:
        st.acquire = self._semlock.acquire  # the real ones: the SemLock's
        st.release = self._semlock.release
        new_books(st)
        st.extra_stats = _extra_stats
        reset_in_fork_child(st, _forget_holders)


class TracedMpBoundedSemaphore(TracedMpSemaphore, RawBoundedSemaphore):
    """A traced ``multiprocessing.BoundedSemaphore``; an over-release is recorded as misuse."""

    __slots__ = ()
    _ts_raw: ClassVar[type] = RawBoundedSemaphore
    _ts_kind = "BoundedSemaphore"


# -- the recording methods (on the class while the level is not off) ----------------------------
def _acquire(self: TracedMpSemaphore, block: bool = True, timeout: float | None = None,
             *args: Any, _depth: int = 1, **kwargs: Any) -> bool:
    """Acquire a permit, exactly as multiprocessing's does, and record it."""
    st = self._ts_state
    level = rt.level
    if not level or args or kwargs:  # off, or not multiprocessing's signature
        return st.acquire(*given_args(block, timeout, args), **kwargs)  # type: ignore[no-any-return]
    if type(block) not in _PLAIN or not (timeout is None or type(timeout) in _NUMBER):
        ok = st.acquire(block, timeout)  # the real one validates (raises) and answers
        return _booked(st, ok, False, 0, block, timeout, _depth + 1, None, _permits)
    if not block or (timeout is not None and timeout <= 0):  # a try: never waits
        ok = st.acquire(block, timeout)
        return _booked(st, ok, not ok, 0, block, timeout, _depth + 1, None, _permits)
    if st.acquire(False):
        return _booked(st, True, False, 0, block, timeout, _depth + 1, None, _permits)
    # In the wait-for graph while blocked (_detect; owners: this process's holders).
    return _acquire_blocked(st, st.acquire, True, timeout, True, _depth + 1, _permits)


def _enter(self: TracedMpSemaphore) -> bool:
    return _acquire(self, True, None, _depth=2)


def _release(self: TracedMpSemaphore) -> None:
    """Release a permit, exactly as multiprocessing's does, and record it."""
    _release_st(self._ts_state, 2)


def _exit(self: TracedMpSemaphore, *exc_info: object) -> None:
    _release_st(self._ts_state, 2)


def _release_st(st: SemaphoreState, fdepth: int) -> None:
    if not rt.level:
        st.release()
        return
    try:
        st.release()
    except ValueError as exc:  # "semaphore or lock released too many times"
        _refused(st, 1, exc, fdepth + 1)
        raise
    _released(st, 1, fdepth + 1, _permits)


register_tracing({TracedMpSemaphore: {"acquire": _acquire, "__enter__": _enter,
                                      "release": _release, "__exit__": _exit}})


def _forget_holders(st: SemaphoreState) -> None:
    # In a forked child, no thread of this process holds a permit (see `base`).
    st.held = {}


def _max_permits(st: SemaphoreState) -> int:
    return st.raw._semlock.maxvalue  # type: ignore[no-any-return]


def _extra_stats(st: SemaphoreState) -> dict[str, Any]:
    return _sem_stats(st, _permits, _max_permits)
