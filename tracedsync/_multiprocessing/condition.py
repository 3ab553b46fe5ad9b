"""`TracedMpCondition`: ``multiprocessing.Condition``, subclassed, recording its waits and
notifies.

Design note.

multiprocessing's Condition is three semaphores (sleepers, woken, the wake-up itself) around a
lock; its ``wait`` asserts that the caller owns the lock, releases it as many times as the
caller holds it, waits on the wake-up semaphore and takes the lock back as many times. While
tracing, ``wait`` runs that same algorithm (the same lines in CPython 3.10 to 3.13) on the
condition's own semaphores, so behaviour is unchanged, but releases and re-takes the lock
through the traced lock's condition protocol: the release is recorded as one ``release`` with
``saved_depth``, the re-take as one ``acquire`` with ``restored`` (contended, with the holder,
if another thread or process had the lock). Around it: ``cond_wait`` and ``cond_wake`` as for
threading's conditions. ``wait_for`` is multiprocessing's own, which calls ``wait``.

``notify``/``notify_all`` are multiprocessing's; the recording ones note the number of waiters
present (sleepers minus woken, multiprocessing's own count, as in its repr). Who was woken is
not known: the waiters may be in any process; ``woken`` is absent from these events.

Entering and leaving the condition, and its ``acquire``/``release``, are its lock's (the
instance attributes multiprocessing copies from the lock follow the level: `base`). When the
condition's lock is not a traced multiprocessing lock (a user's own object), everything goes
to multiprocessing's code unrecorded but for ``notify``. At level off the recording methods are
not on the class.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from multiprocessing import synchronize
from types import CodeType
from typing import Any, ClassVar, cast

from .._core import runtime as rt
from .._core.native import NATIVE
from .._core.ops import OP_COND_WAIT, OP_COND_WAKE, OP_GENERIC, OP_MISUSE
from .._core.sites import user_frame, user_site
from .._core.state import ConditionState, LockState
from .._core.waits import forget, wait_cond
from .base import (
    MpOriginal,
    _users,
    assert_spawning,
    attach_state,
    info_of,
    new_state,
    register_tracing,
    untraced,
)
from .locks import _MpLockBase, acquire_restore, enter_for, release_save

RawCondition = synchronize.Condition
_raw_wait = RawCondition.wait
_raw_notify = RawCondition.notify
_raw_getstate: Callable[[Any], Any] = RawCondition.__getstate__  # type: ignore[attr-defined]
_raw_setstate: Callable[[Any, Any], None] = RawCondition.__setstate__  # type: ignore[attr-defined]
_getframe = sys._getframe


class TracedMpCondition(MpOriginal, RawCondition):
    """A traced ``multiprocessing.Condition``: same behaviour, plus its waits and notifies."""

    __slots__ = ()
    _ts_raw: ClassVar[type] = RawCondition
    _ts_state: ConditionState
    _lock: Any
    _sleeping_count: Any
    _woken_count: Any
    _wait_semaphore: Any

    def __init__(self, lock: Any, *, ctx: Any = None, name: str | None = None,
                 _site: tuple[CodeType | None, int] | None = None,
                 _extra: dict[str, Any] | None = None) -> None:
        untraced(RawCondition.__init__, self, lock, ctx=ctx)
        st = new_state(ConditionState, weakref.proxy(self), "Condition", name,
                       _site if _site is not None else user_site(), _extra)
        _setup(self, st)
        _bind(self, st)

    def __reduce_ex__(self, protocol: Any) -> Any:
        assert_spawning(RawCondition)  # (multiprocessing's error, naming its class)
        return (_rebuild, (type(self), _raw_getstate(self),
                           info_of(self._ts_state)))


def _setup(cond: TracedMpCondition, st: ConditionState) -> None:
    lock = cond._lock
    st.lock = lock
    st.lock_state = lock._ts_state if isinstance(lock, _MpLockBase) else None


def _bind(cond: TracedMpCondition, st: ConditionState) -> None:
    cond._ts_state = st
    cond._ts_books = None
    _users.add(cond)


def _rebuild(cls: type[TracedMpCondition], state: Any, info: Any) -> TracedMpCondition:
    """Unpickling in a child: the same condition, under the same id."""
    cond = cls.__new__(cls)
    _raw_setstate(cond, state)
    prim, kind, name, extra = info
    st = attach_state(weakref.proxy(cond), prim, kind, name, extra,
                      lambda st: _setup(cond, cast(ConditionState, st)), ConditionState)
    _bind(cond, cast(ConditionState, st))
    return cond


# -- the recording methods (on the class while the level is not off) ----------------------------
def _wait(self: TracedMpCondition, timeout: float | None = None) -> bool:
    """Wait until notified or until ``timeout`` seconds pass, exactly as multiprocessing's."""
    st = self._ts_state
    lst = cast("LockState | None", st.lock_state)  # a multiprocessing lock's books
    if not rt.level or lst is None:
        return _raw_wait(self, timeout)
    semlock = lst.raw._semlock
    me = rt.ident()
    f = user_frame() or _getframe(1)  # (the user's, also through multiprocessing's wait_for)
    code, lineno = f.f_code, f.f_lineno
    if __debug__ and not semlock._is_mine():
        error = "must acquire() condition before using wait()"
        st.misuse += 1
        rt.emit((OP_MISUSE, rt.now(), me, st.prim, "wait_unowned", error, code, lineno))
        raise AssertionError(error)
    # multiprocessing.synchronize.Condition.wait, with the lock protocol recorded:
    self._sleeping_count.release()  # indicate that this thread is going to sleep
    count = semlock._count()
    release_save(lst, count)
    t0 = rt.now()
    rt.emit((OP_COND_WAIT, t0, me, st.prim, lst.prim, count, timeout, code, lineno))
    result = False
    try:
        wait_cond(me, st, timeout, f)  # in the wait-for graph while waiting (_detect)
        got: bool | None = None  # how the wait ended, for a reported deadlock (deadlock_end)
        try:
            result = got = self._wait_semaphore.acquire(True, timeout)
        finally:
            forget(me, got)
    finally:
        self._woken_count.release()  # indicate that this thread has woken
        t1 = rt.now()
        acquire_restore(lst, count)
        st.waits += 1
        if not result:
            st.wait_timeouts += 1
        rt.emit((OP_COND_WAKE, rt.now(), me, st.prim, t1 - t0, bool(result), lst.restore_ns,
                 code, lineno))
    return result  # type: ignore[no-any-return]


def _notify(self: TracedMpCondition, n: int = 1) -> None:
    """Wake up to ``n`` waiters, exactly as multiprocessing's, and record it."""
    _notify_n(self, n, False)


def _notify_all(self: TracedMpCondition) -> None:
    """Wake every waiter, exactly as multiprocessing's, and record it."""
    _notify_n(self, sys.maxsize, True)


def _waiters(cond: TracedMpCondition) -> int | None:
    try:
        return cond._sleeping_count.get_value() - cond._woken_count.get_value()  # type: ignore
    except Exception:  # NotImplementedError on macOS (no sem_getvalue)
        return None


def _notify_n(cond: TracedMpCondition, n: int, is_all: bool) -> None:
    st = cond._ts_state
    if not rt.level:
        _raw_notify(cond, n)
        return
    me = rt.ident()
    lst = cast("LockState | None", st.lock_state)
    owned = lst is None or lst.raw._semlock._is_mine()
    present = _waiters(cond)
    try:
        _raw_notify(cond, n)
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


def _enter(self: TracedMpCondition) -> Any:
    # ``with cond:``: the lock's __enter__ on the user's behalf (the pure-Python twin's frames).
    return enter_for(self._lock, 2)


_METHODS: dict[str, Any] = {"wait": _wait, "notify": _notify, "notify_all": _notify_all}
if NATIVE is None:
    _METHODS["__enter__"] = _enter
register_tracing({TracedMpCondition: _METHODS})
