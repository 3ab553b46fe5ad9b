"""`TracedMpSemaphore` and `TracedMpBoundedSemaphore`: multiprocessing's semaphores, traced.

Design note. Like the threading semaphores (`tracedsync._threading.semaphore`): the real
semaphore does the counting, blocking and raising; a blocking acquire first tries
``acquire(False)`` and is *contended* only if that fails; the events are the same
(``sem_acquire``, ``sem_release``, ``misuse`` ``over_release``). The books of who holds
permits (``held``, ``for_others``) are this process's: permits taken or given back by other
processes are in their own logs. ``permits`` is the real semaphore's value just after the call
(``get_value()``; null where the platform cannot tell, macOS).

The books and events are threading's semaphore's functions; this module makes its own calls to
the real semaphore (multiprocessing's signatures) and passes its own permits reader. A blocked
acquire's exception is always recorded as an interruption: the timeout's type was checked
before (its value is not: see ``plain`` in `_acquire_blocked`). At ``full``, an uncontended
``acquire()`` and a ``release()`` write native records, as threading's do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from .._core import runtime as rt
from .._core.state import SemaphoreState
from .._threading.common import new_books
from .._threading.proxy import get_state as _get_any_state
from .._threading.semaphore import _acquire_blocked, _booked, _refused, _released, _sem_stats
from .base import MpProxy, given_args, reset_in_fork_child

get_state = cast("Callable[[Any], SemaphoreState]", _get_any_state)
"""The state of one of this module's proxies (always a `SemaphoreState`)."""

_PLAIN = (bool, int)
_NUMBER = (int, float)


def _permits(st: SemaphoreState) -> int | None:
    try:
        return st.raw._semlock._get_value()  # type: ignore[no-any-return]
    except Exception:  # NotImplementedError on macOS
        return None


class TracedMpSemaphore(MpProxy):
    """A traced ``multiprocessing.Semaphore``: same behaviour, plus waits and permits held."""

    __slots__ = ()

    @classmethod
    def _setup(cls, st: SemaphoreState, shared: Any) -> None:
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
            return _booked(st, ok, False, 0, block, timeout, _depth + 1, None, _permits)
        if not block or (timeout is not None and timeout <= 0):  # a try: never waits
            ok = st.acquire(block, timeout)
            return _booked(st, ok, not ok, 0, block, timeout, _depth + 1, None, _permits)
        if st.acquire(False):
            return _booked(st, True, False, 0, block, timeout, _depth + 1, None, _permits)
        # In the wait-for graph while blocked (_detect.py; owners: this process's holders).
        return _acquire_blocked(st, st.acquire, True, timeout, True, _depth + 1, _permits)

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


def _release(st: SemaphoreState, fdepth: int) -> None:
    if not rt.level:
        st.release()
        return
    try:
        st.release()
    except ValueError as exc:  # "semaphore or lock released too many times"
        _refused(st, 1, exc, fdepth + 1)
        raise
    _released(st, 1, fdepth + 1, _permits)


def _forget_holders(st: SemaphoreState) -> None:
    # In a forked child, no thread of this process holds a permit (see _mp_base).
    st.held = {}


def _max_permits(st: SemaphoreState) -> int:
    return st.raw._semlock.maxvalue  # type: ignore[no-any-return]


def _extra_stats(st: SemaphoreState) -> dict[str, Any]:
    return _sem_stats(st, _permits, _max_permits)
