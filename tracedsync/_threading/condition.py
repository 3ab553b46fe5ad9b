"""`TracedCondition`: ``threading.Condition`` itself, over a *traced* lock, recording its story.

Design note. `TracedCondition` is a subclass of ``threading.Condition``: every wait and notify is
``threading``'s own code, so behaviour is exactly the original's, and ``isinstance`` holds.
Because it is built over the traced lock, its full release before a wait and its restore after
it go through the traced lock's ``_release_save``/``_acquire_restore`` and are recorded there
with the saved depth; entering and leaving it are the lock's own acquire and release. What this
class adds is the condition's own story: ``cond_wait`` when a wait starts, ``cond_wake`` when it
ends (notified or timed out, time to reacquire the lock), and ``notify``/``notify_all`` with the
number of waiters present and which threads were woken.

At level ``off`` the recording methods are not even there: `set_tracing` takes them off the
class (it is called when the level changes), so a condition costs exactly what
``threading.Condition`` costs. A notify at ``full`` writes one native record (no Python object
for one woken thread); waits, which block anyway, write tuples.

Which threads were woken: ``threading.Condition`` wakes its waiters in FIFO order. We keep a
mirror list of waiting idents, appended under the condition's lock just before the real wait
appends its own waiter (same lock, same order), and popped from the front by notify. A waiter that
times out removes itself. A notify that picks a waiter whose timeout has already expired is
recorded as waking it while that waiter's ``cond_wake`` says ``notified: false``: that is the real
condition's behaviour (the notification is lost) and the log shows it.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

from .._core import runtime as rt
from .._core.native import NATIVE
from .._core.native_kinds import K_NOTIFY
from .._core.ops import OP_COND_WAIT, OP_COND_WAKE, OP_MISUSE, OP_NOTIFY
from .._core.registry import new_state
from .._core.sites import user_site
from .._core.state import ConditionState, LockBooks, Statistics
from .._core.waits import forget, wait_cond
from . import originals as _originals
from .common import install_methods
from .locks import is_traced_lock, lock_state, new_rlock, wrap_lock

RawCondition = _originals.RawCondition
_raw_notify = RawCondition.notify
FULL = rt.FULL
_getframe = sys._getframe
_rec = None if NATIVE is None else NATIVE.rec


class TracedCondition(RawCondition):
    """A traced ``threading.Condition``. ``lock`` may be a traced or a real lock (a real one is
    wrapped, so acquisitions through the condition are recorded), or None for a new traced RLock.
    """

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
        RawCondition.__init__(self, lock)
        lock_st: LockBooks | None = lock_state(lock) if is_traced_lock(lock) else None
        st = new_state(ConditionState, weakref.proxy(self), "Condition", name, site[0], site[1],
                       {"lock": None if lock_st is None else lock_st.prim})
        st.lock = lock
        st.lock_state = lock_st
        if NATIVE is not None:  # the C notify's books (cond.c): the real deque, the mirror
            st.books = NATIVE.CondBooks(self._waiters, st.waiters,  # type: ignore[attr-defined]
                                        st.prim_pid, st.prim_n)
            self._ts_books = st.books
        self._ts_state = st

    def statistics(self) -> Statistics:
        """A snapshot of this condition's counters (its lock has its own)."""
        return self._ts_state.statistics()

    def __repr__(self) -> str:
        st = self._ts_state
        extra = f" traced={st.prim}" + ("" if st.name is None else f" name={st.name!r}")
        return RawCondition.__repr__(self)[:-1] + extra + ">"


# -- the recording methods (on the class while the level is not off) ---------------------------
def _wait(self: TracedCondition, timeout: float | None = None) -> bool:
    """Wait until notified or until ``timeout`` seconds pass, exactly as ``threading``'s."""
    st: ConditionState = self._ts_state
    if not rt.level:
        return RawCondition.wait(self, timeout)
    me = rt.ident()
    code, lineno = user_site()
    lock_st = st.lock_state
    saved = lock_st.depth if lock_st is not None and lock_st.owner == me else 0
    waiters = st.waiters
    waiters.append(me)
    t0 = rt.now()
    rt.emit((OP_COND_WAIT, t0, me, st.prim, None if lock_st is None else lock_st.prim,
             saved, timeout, code, lineno))
    # Runtime detection: in the wait-for graph while waiting (no check here).
    wait_cond(me, st, timeout, (code, lineno))
    try:
        result = RawCondition.wait(self, timeout)
    except BaseException as exc:
        forget(me, None)
        _forget(waiters, me)
        t1 = rt.now()
        if isinstance(exc, RuntimeError) and not _owned(self):
            st.misuse += 1
            rt.emit((OP_MISUSE, t1, me, st.prim, "wait_unowned", str(exc), code, lineno))
        else:
            rt.emit((OP_COND_WAKE, t1, me, st.prim, t1 - t0, False, 0, code, lineno))
        raise
    forget(me, bool(result))
    t1 = rt.now()
    if not result:
        _forget(waiters, me)
        st.wait_timeouts += 1
    st.waits += 1
    reacquire = lock_st.restore_ns if lock_st is not None else 0
    rt.emit((OP_COND_WAKE, t1, me, st.prim, t1 - t0 - reacquire, bool(result), reacquire,
             code, lineno))
    return result


def _notify(self: TracedCondition, n: int = 1) -> None:
    """Wake up to ``n`` waiters, exactly as ``threading``'s, and record whom."""
    level = rt.level
    if not level:
        return _raw_notify(self, n)
    present = len(self._waiters)  # type: ignore[attr-defined]
    st: ConditionState = self._ts_state
    try:
        _raw_notify(self, n)
    except RuntimeError as exc:
        _misuse(st, exc)
        raise
    # (inlined from _notified: the common path, one waiter or none)
    st.notifies += 1
    if present == 0:
        st.unheard += 1
        if _rec is not None:
            _rec(K_NOTIFY, st.prim_pid, st.prim_n, 0, n, 0, 0, 0)
            return None
    elif n == 1 and _rec is not None:
        if level == FULL:
            _rec(K_NOTIFY, st.prim_pid, st.prim_n, 0, 1, present, 1, 0, st.waiters.pop(0))
        else:
            del st.waiters[0]
        return None
    _notified(st, level, n, present, min(n, present), False)
    return None


def _notify_all(self: TracedCondition) -> None:
    """Wake every waiter, exactly as ``threading``'s, and record whom."""
    level = rt.level
    if not level:
        return RawCondition.notify_all(self)
    st: ConditionState = self._ts_state
    present = len(self._waiters)  # type: ignore[attr-defined]
    try:
        RawCondition.notify(self, present)  # what notify_all does (its name is its own)
    except RuntimeError as exc:
        _misuse(st, exc)
        raise
    _notified(st, level, present, present, present, True, True)
    return None


def _notified(st: ConditionState, level: int, n: int, present: int, count: int,
              is_all: bool, books: bool = False) -> None:
    """The record of a notify that woke the first ``count`` waiters (and its books, with
    ``books``)."""
    mirror = st.waiters
    if books:
        st.notifies += 1
        if present == 0:
            st.unheard += 1
    if level != rt.FULL and present:
        del mirror[:count]
        return
    rec = _rec
    if rec is not None:  # one native record; one woken thread costs no Python object
        if count == 1:
            rec(K_NOTIFY, st.prim_pid, st.prim_n, is_all, n, present, 1, 0, mirror.pop(0))
        elif count == 0:
            rec(K_NOTIFY, st.prim_pid, st.prim_n, is_all, n, present, 0, 0)
        else:
            woken = mirror[:count]
            del mirror[:count]
            rec(K_NOTIFY, st.prim_pid, st.prim_n, is_all, n, present, count, 0, *woken)
        return
    woken_t = tuple(mirror[:count])
    del mirror[:count]
    code, lineno = user_site()
    rt.emit((OP_NOTIFY, rt.now(), rt.ident(), st.prim, n, present, woken_t, is_all, code,
             lineno))


def _notify_failed(self: TracedCondition, exc: BaseException) -> None:
    """The C notify's hook: threading's notify raised ``exc`` (a RuntimeError: not owned). An
    error here is dropped by the caller, which raises ``exc``."""
    _misuse(self._ts_state, exc)


# The common notify in C (cond.c): threading's own, then the books and the record.
_notify_method: Any = _notify if NATIVE is None else NATIVE.NotifyMethod(
    _raw_notify, _notify, _notify_failed)
_TRACING = {"wait": _wait, "notify": _notify_method, "notify_all": _notify_all}


def set_tracing(on: bool) -> None:
    """Put the recording methods on `TracedCondition` (or take them off: level ``off``)."""
    install_methods({TracedCondition: _TRACING}, on)


set_tracing(True)


def _owned(cond: TracedCondition) -> bool:
    """Whether the condition's lock is owned by the caller (threading's own test)."""
    try:
        return bool(cond._is_owned())  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover
        return True


def _misuse(st: ConditionState, exc: BaseException) -> None:
    st.misuse += 1
    code, lineno = user_site()
    rt.emit((OP_MISUSE, rt.now(), rt.ident(), st.prim, "notify_unowned", str(exc), code, lineno))


def _forget(waiters: list[int], me: int) -> None:
    try:
        waiters.remove(me)
    except ValueError:
        pass


def Condition(lock: Any = None, *, name: str | None = None) -> TracedCondition:
    """A new traced ``threading.Condition`` over ``lock`` (a new traced RLock if None)."""
    if rt.in_guard():
        return RawCondition(lock)  # type: ignore[return-value]  # our own machinery: untraced
    f = _getframe(1)
    return TracedCondition(lock, name=name, _site=(f.f_code, f.f_lineno))
