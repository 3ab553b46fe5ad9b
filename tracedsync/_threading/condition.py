"""`TracedCondition`: a real ``threading.Condition`` built over a *traced* lock, behind a proxy.

Design note. The real condition does all the waiting and notifying, so behaviour is exactly
``threading``'s. Because it is built over the traced lock, its full release before a wait and
its restore after it go through the traced lock's ``_release_save``/``_acquire_restore`` and are
recorded there with the saved depth. The proxy adds the condition's own story: ``cond_wait`` when
a wait starts, ``cond_wake`` when it ends (notified or timed out, time to reacquire the lock), and
``notify``/``notify_all`` with the number of waiters present and which threads were woken.

Which threads were woken: ``threading.Condition`` wakes its waiters in FIFO order. We keep a
mirror list of waiting idents, appended under the condition's lock just before the real wait
appends its own waiter (same lock, same order), and popped from the front by notify. A waiter that
times out removes itself. A notify that picks a waiter whose timeout has already expired is
recorded as waking it while that waiter's ``cond_wake`` says ``notified: false``: that is the real
condition's behaviour (the notification is lost) and the log shows it.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .._core import runtime as rt
from .._core.ops import OP_COND_WAIT, OP_COND_WAKE, OP_MISUSE, OP_NOTIFY
from .._core.registry import new_state
from .._core.sites import user_site
from .._core.state import ConditionState, LockBooks
from .._core.waits import forget, wait_cond
from .locks import is_traced_lock, lock_state, new_rlock, wrap_lock
from .locks_py import _TracedLockBase
from .proxy import CopiedAsOriginal, StateProxy, get_state

T = TypeVar("T")
RawCondition = threading.Condition
_getframe = sys._getframe
_monotonic = time.monotonic



class TracedCondition(CopiedAsOriginal, StateProxy):
    """A traced ``threading.Condition``. ``lock`` may be a traced or a real lock (a real one is
    wrapped, so acquisitions through the condition are recorded), or None for a new traced RLock.
    """

    __slots__ = ()

    def __init__(
        self,
        lock: Any = None,
        *,
        name: str | None = None,
        _site: tuple[Any, int] | None = None,
    ) -> None:
        site = _site if _site is not None else user_site()
        if lock is None:
            lock = new_rlock(name=None if name is None else f"{name}.lock", site=site)
        else:
            lock = wrap_lock(lock, site=site)
        raw = RawCondition(lock)
        super().__init__(raw)
        lock_st: LockBooks | None = lock_state(lock) if is_traced_lock(lock) else None
        st = new_state(ConditionState, raw, "Condition", name, site[0], site[1],
                       {"lock": None if lock_st is None else lock_st.prim})
        st.lock = lock
        st.lock_state = lock_st
        self._self_state = st

    # -- the lock API, recorded by the traced lock -------------------------------------------
    def __enter__(self) -> bool:
        lock = _get_state(self).lock
        if isinstance(lock, _TracedLockBase):
            return lock.__enter__(2)  # the twin records its caller's caller: the user's line
        return lock.__enter__()  # type: ignore[no-any-return]

    def __exit__(self, *exc_info: object) -> None:
        _get_state(self).lock.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        lock = _get_state(self).lock
        if isinstance(lock, _TracedLockBase):
            return lock.acquire(blocking, timeout, _depth=2)
        # A native lock walks out of this frame by itself (the skip policy).
        return lock.acquire(blocking, timeout)  # type: ignore[no-any-return]

    def release(self) -> None:
        _get_state(self).lock.release()

    # -- waiting -----------------------------------------------------------------------------
    def wait(self, timeout: float | None = None, *, _depth: int = 1) -> bool:
        """Wait until notified or until ``timeout`` seconds pass, exactly as ``threading``'s."""
        st: ConditionState = _get_state(self)
        if not rt.level:
            return st.raw.wait(timeout)  # type: ignore[no-any-return]
        me = rt.ident()
        f = _getframe(_depth)
        code, lineno = f.f_code, f.f_lineno
        lock_st: LockBooks | None = st.lock_state
        saved = lock_st.depth if lock_st is not None and lock_st.owner == me else 0
        waiters = st.waiters
        waiters.append(me)
        t0 = rt.now()
        rt.emit((OP_COND_WAIT, t0, me, st.prim, None if lock_st is None else lock_st.prim,
                 saved, timeout, code, lineno))
        # Runtime detection (_detect.py): in the wait-for graph while waiting (no check here).
        wait_cond(me, st, timeout, f)
        try:
            result = st.raw.wait(timeout)
        except BaseException as exc:
            forget(me)
            _forget(waiters, me)
            t1 = rt.now()
            if isinstance(exc, RuntimeError) and not waiters_owned(st):
                st.misuse += 1
                rt.emit((OP_MISUSE, t1, me, st.prim, "wait_unowned", str(exc), code, lineno))
            else:
                rt.emit((OP_COND_WAKE, t1, me, st.prim, t1 - t0, False, 0, code, lineno))
            raise
        forget(me)
        t1 = rt.now()
        if not result:
            _forget(waiters, me)
            st.wait_timeouts += 1
        st.waits += 1
        reacquire = lock_st.restore_ns if lock_st is not None else 0
        rt.emit((OP_COND_WAKE, t1, me, st.prim, t1 - t0 - reacquire, bool(result), reacquire,
                 code, lineno))
        return result  # type: ignore[no-any-return]

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """``threading.Condition.wait_for``, with each wait recorded."""
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = _monotonic() + waittime
                else:
                    waittime = endtime - _monotonic()
                    if waittime <= 0:
                        break
            self.wait(waittime, _depth=2)
            result = predicate()
        return result

    # -- notifying ---------------------------------------------------------------------------
    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters, exactly as ``threading``'s, and record whom."""
        st: ConditionState = _get_state(self)
        if not rt.level:
            return st.raw.notify(n)  # type: ignore[no-any-return]
        _notify(st, n, False)
        return None

    def notify_all(self) -> None:
        """Wake every waiter, exactly as ``threading``'s, and record whom."""
        st: ConditionState = _get_state(self)
        if not rt.level:
            return st.raw.notify_all()  # type: ignore[no-any-return]
        _notify(st, None, True)
        return None

    def notifyAll(self) -> None:
        """Deprecated alias of `notify_all`, with ``threading``'s warning."""
        warnings.warn("notifyAll() is deprecated, use notify_all() instead",
                      DeprecationWarning, stacklevel=2)
        self.notify_all()

    # -- introspection -----------------------------------------------------------------------
    def __repr__(self) -> str:
        st: ConditionState = _get_state(self)
        r = repr(st.raw)
        extra = f" traced={st.prim}" + ("" if st.name is None else f" name={st.name!r}")
        return r[:-1] + extra + ">"


_get_state = cast("Callable[[Any], ConditionState]", get_state)


def waiters_owned(st: ConditionState) -> bool:
    """Whether the condition's lock is owned by the caller (threading's own test)."""
    try:
        return bool(st.raw._is_owned())
    except Exception:  # pragma: no cover
        return True


def _forget(waiters: list[int], me: int) -> None:
    try:
        waiters.remove(me)
    except ValueError:
        pass


def _notify(st: ConditionState, n: int | None, is_all: bool) -> None:
    raw = st.raw
    me = rt.ident()
    present = len(raw._waiters)
    try:
        if is_all:
            raw.notify_all()
        else:
            raw.notify(n)
    except RuntimeError as exc:
        st.misuse += 1
        code, lineno = user_site()
        rt.emit((OP_MISUSE, rt.now(), me, st.prim, "notify_unowned", str(exc), code, lineno))
        raise
    count = present if is_all else min(n or 0, present)
    woken = tuple(st.waiters[:count])
    del st.waiters[:count]
    st.notifies += 1
    if present == 0:
        st.unheard += 1
    level = rt.level
    if level == rt.FULL or (level and present == 0):
        code, lineno = user_site()
        rt.emit((OP_NOTIFY, rt.now(), me, st.prim, present if is_all else n, present, woken,
                 is_all, code, lineno))


def Condition(lock: Any = None, *, name: str | None = None) -> TracedCondition:
    """A new traced ``threading.Condition`` over ``lock`` (a new traced RLock if None)."""
    if rt.in_guard():
        return RawCondition(lock)  # type: ignore[return-value]  # our own machinery: untraced
    f = _getframe(1)
    return TracedCondition(lock, name=name, _site=(f.f_code, f.f_lineno))
