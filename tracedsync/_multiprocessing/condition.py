"""`TracedMpCondition`: ``multiprocessing.Condition`` behind a recording proxy.

Design note.

multiprocessing's Condition is three semaphores (sleepers, woken, the wake-up itself) around a
lock; its ``wait`` asserts that the caller owns the lock, releases it as many times as the
caller holds it, waits on the wake-up semaphore and takes the lock back as many times. The
proxy's ``wait`` runs that same algorithm (the same lines in CPython 3.10 to 3.13) on the real
condition's own semaphores, so behaviour is unchanged, but releases and re-takes the lock
through the traced lock's condition protocol: the release is recorded as one ``release`` with
``saved_depth``, the re-take as one ``acquire`` with ``restored`` (contended, with the holder,
if another thread or process had the lock). Around it: ``cond_wait`` and ``cond_wake`` as for
threading's conditions.

``notify``/``notify_all`` are the real ones; the proxy records the number of waiters present
(sleepers minus woken, multiprocessing's own count, as in its repr). Who was woken is not
known: the waiters may be in any process; ``woken`` is absent from these events.

When the condition's lock is not a traced multiprocessing lock (a user's own object),
everything goes to the real condition unrecorded but for ``notify``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .._core import runtime as rt
from .._core.ops import OP_COND_WAIT, OP_COND_WAKE, OP_GENERIC, OP_MISUSE
from .._core.sites import user_site
from .._core.state import ConditionState, LockState
from .._core.waits import forget, wait_cond
from .._threading.proxy import get_state as _get_any_state
from .base import MpProxy
from .locks import _MpLockBase, acquire_restore, release_save

get_state = cast("Callable[[Any], ConditionState]", _get_any_state)
"""The state of one of this module's proxies (always a `ConditionState`)."""
_lock_state = cast("Callable[[Any], LockState]", _get_any_state)

T = TypeVar("T")
_getframe = sys._getframe
_monotonic = time.monotonic


class TracedMpCondition(MpProxy):
    """A traced ``multiprocessing.Condition``: same behaviour, plus its waits and notifies."""

    __slots__ = ()

    @classmethod
    def _setup(cls, st: ConditionState, shared: Any) -> None:
        lock = st.raw._lock
        st.lock = lock
        st.lock_state = _lock_state(lock) if isinstance(lock, _MpLockBase) else None

    # -- the lock API, recorded by the traced lock -------------------------------------------
    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        # multiprocessing's Condition.acquire *is* its lock's acquire: the arguments go to the
        # lock as given (a threading.Lock takes ``blocking``/``timeout=-1``, not ``None``).
        lock = get_state(self).lock
        if isinstance(lock, _MpLockBase):
            return lock.acquire(*args, _depth=2, **kwargs)
        return lock.acquire(*args, **kwargs)  # type: ignore[no-any-return]

    def release(self) -> None:
        get_state(self).lock.release()

    def __enter__(self) -> bool:
        lock = get_state(self).lock
        if isinstance(lock, _MpLockBase):
            return lock.acquire(True, None, _depth=2)
        return lock.__enter__()  # type: ignore[no-any-return]

    def __exit__(self, *exc_info: object) -> None:
        get_state(self).lock.__exit__(*exc_info)

    # -- waiting -----------------------------------------------------------------------------
    def wait(self, timeout: float | None = None, *, _depth: int = 1) -> bool:
        """Wait until notified or until ``timeout`` seconds pass, exactly as multiprocessing's."""
        st = get_state(self)
        raw = st.raw
        lst = cast("LockState | None", st.lock_state)  # a multiprocessing lock's books
        if not rt.level or lst is None:
            return raw.wait(timeout)  # type: ignore[no-any-return]
        semlock = lst.raw._semlock
        me = rt.ident()
        f = _getframe(_depth)
        code, lineno = f.f_code, f.f_lineno
        if __debug__ and not semlock._is_mine():
            error = "must acquire() condition before using wait()"
            st.misuse += 1
            rt.emit((OP_MISUSE, rt.now(), me, st.prim, "wait_unowned", error, code, lineno))
            raise AssertionError(error)
        # multiprocessing.synchronize.Condition.wait, with the lock protocol recorded:
        raw._sleeping_count.release()  # indicate that this thread is going to sleep
        count = semlock._count()
        release_save(lst, count)
        t0 = rt.now()
        rt.emit((OP_COND_WAIT, t0, me, st.prim, lst.prim, count, timeout, code, lineno))
        result = False
        try:
            wait_cond(me, st, timeout, f)  # in the wait-for graph while waiting (_detect.py)
            got: bool | None = None
            try:
                result = got = raw._wait_semaphore.acquire(True, timeout)
            finally:
                forget(me, got)
        finally:
            raw._woken_count.release()  # indicate that this thread has woken
            t1 = rt.now()
            acquire_restore(lst, count)
            st.waits += 1
            if not result:
                st.wait_timeouts += 1
            rt.emit((OP_COND_WAKE, rt.now(), me, st.prim, t1 - t0, bool(result), lst.restore_ns,
                     code, lineno))
        return result  # type: ignore[no-any-return]

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """``multiprocessing.Condition.wait_for``, with each wait recorded."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else _monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - _monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime, _depth=2)
            result = predicate()
        return result

    # -- notifying ---------------------------------------------------------------------------
    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters, exactly as multiprocessing's, and record it."""
        _notify(get_state(self), n, False)

    def notify_all(self) -> None:
        """Wake every waiter, exactly as multiprocessing's, and record it."""
        _notify(get_state(self), sys.maxsize, True)


def _waiters(raw: Any) -> int | None:
    try:
        return raw._sleeping_count.get_value() - raw._woken_count.get_value()  # type: ignore
    except Exception:  # NotImplementedError on macOS (no sem_getvalue)
        return None


def _notify(st: ConditionState, n: int, is_all: bool) -> None:
    raw = st.raw
    if not rt.level:
        raw.notify(n)
        return
    me = rt.ident()
    lst = cast("LockState | None", st.lock_state)
    owned = lst is None or lst.raw._semlock._is_mine()
    present = _waiters(raw)
    try:
        raw.notify(n)
    except AssertionError as exc:
        if not owned:
            st.misuse += 1
            code, lineno = user_site()
            rt.emit((OP_MISUSE, rt.now(), me, st.prim, "notify_unowned", str(exc), code, lineno))
        raise
    st.notifies += 1
    if present == 0:
        st.unheard += 1
    level = rt.level
    if level == rt.FULL or (level and present == 0):
        code, lineno = user_site()
        rt.emit((OP_GENERIC, rt.now(), me, "notify_all" if is_all else "notify",
                 {"prim": st.prim, "n": present if is_all else n, "waiters": present},
                 code, lineno))
