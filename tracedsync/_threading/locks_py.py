"""The pure-Python twin of the traced Lock and RLock: wrapt proxies in front of a real lock.

Used where the native recorder is not (no compiler, a free-threaded interpreter,
``TRACEDSYNC_PURE_PYTHON=1``), and, with it, for a real lock that already exists and is wrapped
(`tracedsync._threading.locks.wrap_lock`). `tracedsync._threading.locks` chooses.

Design note (read docs/architecture.md, "The hot path", first).

* Behaviour. Every outcome is the real lock's: we call the real ``acquire``/``release`` and
  return or raise what they do. Arguments other than the plain defaults are handed to the real
  lock before we interpret them, so invalid ones raise the original's errors.
* Contention. A blocking acquire first tries the real ``acquire(False)``. Success is an
  *uncontended* acquire; failure makes it *contended*: we note the owner from our books
  (``blocked_by``), read the clock, and block with the caller's own timeout.
* Books. ``owner``/``depth`` are written after the real acquire succeeds and before the real
  release, i.e. only by the holder, so they never lag behind the real lock as seen by its holder.
  Other threads read them only to fill ``blocked_by`` (a snapshot that may be a moment old).
* Cost. The per-lock state is fetched once per call through the slot descriptor captured at
  import (``self._self_state`` would go through wrapt's ``getattro``); the clock is read once per
  acquire and once per release; nothing else is allocated but the event tuple.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, cast

from .._core import runtime as rt
from .._core.ops import OP_ACQUIRE, OP_GENERIC, OP_MISUSE, OP_RELEASE, OP_RESTORE, OP_SAVE
from .._core.registry import new_state
from .._core.sites import user_site
from .._core.state import LockState
from .._core.waits import forget, wait_lock, wait_restore
from .originals import RAW_LOCK_TYPE, RAW_RLOCK_TYPES, CopiedAsOriginal, RawLock, RawRLock
from .proxy import StateProxy, get_state

_getframe = sys._getframe
_THREADING_FILE = threading.__file__


def _caller(depth: int) -> Any:
    """The frame ``depth`` levels up, or past it if that is ``threading``'s (a Condition's
    ``__enter__`` calls the lock's on the user's behalf)."""
    f = _getframe(depth + 1)
    while f.f_code.co_filename == _THREADING_FILE and f.f_back is not None:
        f = f.f_back
    return f
FULL = rt.FULL
TIMEOUT_MAX = threading.TIMEOUT_MAX

# The real factories, captured before anyone can patch them (`originals`).
_RAW_LOCK_TYPE = RAW_LOCK_TYPE
_RAW_RLOCK_TYPES = RAW_RLOCK_TYPES


class _TracedLockBase(CopiedAsOriginal, StateProxy):
    """Common code of `PyTracedLock` and `PyTracedRLock`. Not for direct use."""

    __slots__ = ()
    _kind = "Lock"
    _reentrant = False

    def __init__(
        self,
        wrapped: Any = None,
        *,
        name: str | None = None,
        _site: tuple[Any, int] | None = None,
    ) -> None:
        if wrapped is None:
            wrapped = self._new_raw()
        super().__init__(wrapped)
        code, lineno = _site if _site is not None else user_site()
        st = new_state(LockState, wrapped, self._kind, name, code, lineno)
        st.reentrant = self._reentrant
        self._self_state = st

    @staticmethod
    def _new_raw() -> Any:
        return RawLock()

    # -- acquire -----------------------------------------------------------------------------
    def acquire(self, blocking: bool = True, timeout: float = -1, *, _depth: int = 1) -> bool:
        """Acquire the lock, exactly as ``threading``'s does, and record it."""
        st: LockState = _get_state(self)
        level = rt.level
        if level and blocking is True and timeout == -1 and st.acquire(False):
            try:
                me = rt.tls.ident
            except AttributeError:
                me = rt.register_thread()
            t = rt.now()
            if st.owner == me:
                depth = st.depth + 1
            else:
                st.owner = me
                st.t_hold = t
                depth = 1
            st.depth = depth
            st.acquisitions += 1
            if depth > st.max_depth:
                st.max_depth = depth
            if level == FULL:
                f = _caller(_depth)
                rt.emit((OP_ACQUIRE, t, me, st.prim, depth, True, False, 0, None, True, -1,
                         f.f_code, -1 - f.f_lasti))
            return True
        return _acquire_slow(st, blocking, timeout, _depth + 1)

    def __enter__(self, _depth: int = 1) -> bool:
        # acquire()'s fast path, written out again: a call would add a Python frame (~60 ns)
        # to every ``with`` on this path.
        st: LockState = _get_state(self)
        level = rt.level
        if level and st.acquire(False):
            try:
                me = rt.tls.ident
            except AttributeError:
                me = rt.register_thread()
            t = rt.now()
            if st.owner == me:
                depth = st.depth + 1
            else:
                st.owner = me
                st.t_hold = t
                depth = 1
            st.depth = depth
            st.acquisitions += 1
            if depth > st.max_depth:
                st.max_depth = depth
            if level == FULL:
                f = _caller(_depth)
                rt.emit((OP_ACQUIRE, t, me, st.prim, depth, True, False, 0, None, True, -1,
                         f.f_code, -1 - f.f_lasti))
            return True
        return _acquire_slow(st, True, -1, _depth + 1)

    # -- release -----------------------------------------------------------------------------
    def release(self) -> None:
        """Release the lock, exactly as ``threading``'s does, and record it."""
        st: LockState = _get_state(self)
        if not rt.level:
            return st.release()  # type: ignore[no-any-return]
        try:
            me = rt.tls.ident
        except AttributeError:
            me = rt.register_thread()
        depth = st.depth
        if depth == 0 or (st.reentrant and st.owner != me):
            return _release_unbooked(st, me)
        depth -= 1
        hold = None
        t = rt.now()
        if depth == 0:
            hold = t - st.t_hold
            st.hold_ns += hold
            owner = st.owner
            st.owner = None
            st.depth = 0
            try:
                st.release()
            except BaseException:
                st.owner = owner
                st.depth = 1
                raise
        else:
            st.depth = depth
            st.release()
        if rt.level == FULL:
            rt.emit((OP_RELEASE, t, me, st.prim, depth, hold))
            if len(rt.buffer) > rt.limit:
                rt.overflow()
        return None

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    # -- the rest of the lock API ------------------------------------------------------------
    def _at_fork_reinit(self) -> None:
        st: LockState = _get_state(self)
        st.raw._at_fork_reinit()
        st.owner = None
        st.depth = 0
        if rt.level == FULL:
            code, lineno = user_site()
            rt.emit((OP_GENERIC, rt.now(), rt.ident(), "reinit", {"prim": st.prim}, code, lineno))

    def __repr__(self) -> str:
        st: LockState = _get_state(self)
        r = repr(st.raw)
        extra = f" traced={st.prim}" + ("" if st.name is None else f" name={st.name!r}")
        return r[:-1] + extra + ">"


# The slot's descriptor, read once: calling its __get__ skips wrapt's getattro.
_get_state = cast("Callable[[Any], LockState]", get_state)



def _acquire_slow(st: LockState, blocking: bool, timeout: float, fdepth: int) -> bool:
    """Every acquire that is not an uncontended one with the default arguments."""
    level = rt.level
    if not level:
        return st.acquire(blocking, timeout)  # type: ignore[no-any-return]
    if not blocking or timeout == 0:
        # A try (blocking=False, or timeout=0) never waits: no wait-for edge, no deadlock
        # check. The real lock validates (acquire(False, 1) raises ValueError) and answers.
        ok = st.acquire(blocking, timeout)
        blocked_by = None if ok else st.owner
        return _booked(st, ok, fdepth + 1, blocking, timeout, 0, not ok, blocked_by)
    if timeout != -1 and not (
        type(timeout) in (int, float) and 0 <= timeout <= TIMEOUT_MAX
    ):
        # Invalid (or unusual) timeouts: the real lock raises its own error, or accepts.
        ok = st.acquire(blocking, timeout)
        return _booked(st, ok, fdepth + 1, blocking, timeout, 0, False, None)
    if st.acquire(False):
        return _booked(st, True, fdepth + 1, blocking, timeout, 0, False, None)
    blocked_by = st.owner
    me = rt.ident()
    t0 = rt.now()
    try:
        # Runtime detection (_detect.py): enter the wait-for graph before blocking, leave it
        # when the real acquire returns. wait_lock raises DeadlockError (unregistered already)
        # when this wait closes a cycle and on_deadlock="raise".
        wait_lock(me, st, timeout, _caller(fdepth))
        ok = None
        try:
            ok = st.acquire(True, timeout)
        finally:
            forget(me, ok)
    except BaseException as exc:  # KeyboardInterrupt while blocked, DeadlockError, for two
        wait = rt.now() - t0
        st.contended += 1
        st.wait_ns += wait
        st.failed += 1
        f = _caller(fdepth)
        rt.emit((OP_ACQUIRE, t0 + wait, me, st.prim, st.depth, False, True, wait,
                 blocked_by, True, timeout, f.f_code, f.f_lineno))
        rt.emit((OP_GENERIC, t0 + wait, me, "interrupted",
                 {"prim": st.prim, "error": repr(exc)}, f.f_code, f.f_lineno))
        raise
    wait = rt.now() - t0
    st.contended += 1
    st.wait_ns += wait
    return _booked(st, ok, fdepth + 1, True, timeout, wait, True, blocked_by, t0 + wait)


def _booked(
    st: LockState,
    ok: bool,
    fdepth: int,
    blocking: bool,
    timeout: float,
    wait: int,
    contended: bool,
    blocked_by: int | None,
    t: int | None = None,
) -> bool:
    """Update the books after a slow-path acquire and record it. Returns ``ok``."""
    me = rt.ident()
    if t is None:
        t = rt.now()
    if ok:
        if st.owner == me:
            depth = st.depth + 1
        else:
            st.owner = me
            st.t_hold = t
            depth = 1
        st.depth = depth
        st.acquisitions += 1
        if depth > st.max_depth:
            st.max_depth = depth
    else:
        depth = st.depth if st.owner == me else 0
        st.failed += 1
    level = rt.level
    if level == FULL or (level and (contended or not ok)):
        f = _caller(fdepth)
        rt.emit((OP_ACQUIRE, t, me, st.prim, depth, bool(ok), contended, wait, blocked_by,
                 bool(blocking), timeout, f.f_code, f.f_lineno))
    return ok


def _release_unbooked(st: LockState, me: int) -> None:
    """A release our books say is not the caller's to make: let the real lock decide."""
    try:
        st.release()
    except RuntimeError as exc:
        _misuse(st, me, "release_unowned" if st.reentrant else "release_unlocked", exc)
        raise
    # The real lock disagreed with our books (it was acquired behind our back): resync.
    st.owner = None
    st.depth = 0
    if rt.level == FULL:
        rt.emit((OP_RELEASE, rt.now(), me, st.prim, 0, None))


def _misuse(st: LockState, me: int, what: str, exc: BaseException) -> None:
    st.misuse += 1
    code, lineno = user_site()
    rt.emit((OP_MISUSE, rt.now(), me, st.prim, what, str(exc), code, lineno))


# -- the Condition protocol --------------------------------------------------------------------
def _release_save_booked(st: LockState) -> int:
    """Books for a full release before a condition wait; returns the hold time."""
    t = rt.now()
    hold = t - st.t_hold
    st.hold_ns += hold
    st.owner = None
    st.depth = 0
    return hold


def _record_save(st: LockState, me: int, saved: int, hold: int) -> None:
    if rt.level == FULL:
        code, lineno = user_site()
        rt.emit((OP_SAVE, rt.now(), me, st.prim, saved, hold, code, lineno))


def _restore_booked(st: LockState, me: int, depth: int, t0: int, blocked_by: int | None) -> None:
    t1 = rt.now()
    wait = t1 - t0
    st.owner = me
    st.depth = depth
    st.t_hold = t1
    st.acquisitions += 1
    st.restore_ns = wait
    contended = blocked_by is not None and blocked_by != me
    if contended:
        st.contended += 1
        st.wait_ns += wait
    if depth > st.max_depth:
        st.max_depth = depth
    level = rt.level
    if level == FULL or (level and contended):
        code, lineno = user_site()
        rt.emit((OP_RESTORE, t1, me, st.prim, depth, wait, contended, blocked_by, code, lineno))


class PyTracedLock(_TracedLockBase):
    """A traced ``threading.Lock``: same behaviour, plus a record of who holds it and who waits.

    It also offers the Condition protocol (``_is_owned``, ``_release_save``,
    ``_acquire_restore``) with the exact semantics ``threading.Condition`` falls back to for a
    plain lock, so waits on a condition over it are recorded.
    """

    __slots__ = ()
    _kind = "Lock"
    _reentrant = False

    def _is_owned(self) -> bool:
        # threading.Condition's fallback: "owned" means locked by anyone.
        st: LockState = _get_state(self)
        return st.raw.locked()  # type: ignore[no-any-return]

    def _release_save(self) -> None:
        st: LockState = _get_state(self)
        if not rt.level:
            return st.release()  # type: ignore[no-any-return]
        me = rt.ident()
        if st.depth == 0:
            return _release_unbooked(st, me)
        owner = st.owner
        hold = _release_save_booked(st)
        try:
            st.release()
        except BaseException:
            st.owner, st.depth = owner, 1
            raise
        _record_save(st, me, 1, hold)
        return None

    def _acquire_restore(self, state: Any) -> None:
        st: LockState = _get_state(self)
        if not rt.level:
            st.acquire()
            return
        me = rt.ident()
        blocked_by = st.owner
        t0 = rt.now()
        if not st.acquire(False):
            # About to block: in the wait-for graph meanwhile (_detect.py; reported, never
            # raised: failing here would leave Condition.wait's caller without the lock).
            wait_restore(me, st)
            got = None
            try:
                got = st.acquire()
            finally:
                forget(me, got)
        _restore_booked(st, me, 1, t0, blocked_by)


class PyTracedRLock(_TracedLockBase):
    """A traced ``threading.RLock``: same behaviour, plus ownership and recursion depth."""

    __slots__ = ()
    _kind = "RLock"
    _reentrant = True

    @staticmethod
    def _new_raw() -> Any:
        return RawRLock()

    def _is_owned(self) -> bool:
        st: LockState = _get_state(self)
        return st.raw._is_owned()  # type: ignore[no-any-return]

    def _release_save(self) -> Any:
        st: LockState = _get_state(self)
        if not rt.level:
            return st.raw._release_save()
        me = rt.ident()
        if st.owner != me or st.depth == 0:
            try:
                return st.raw._release_save()
            except RuntimeError as exc:
                _misuse(st, me, "release_unowned", exc)
                raise
        saved = st.depth
        hold = _release_save_booked(st)
        try:
            state = st.raw._release_save()
        except BaseException:
            st.owner, st.depth = me, saved
            raise
        _record_save(st, me, saved, hold)
        return state

    def _acquire_restore(self, state: Any) -> None:
        st: LockState = _get_state(self)
        if not rt.level:
            st.raw._acquire_restore(state)
            return
        me = rt.ident()
        blocked_by = st.owner
        t0 = rt.now()
        if blocked_by is None or blocked_by == me:
            st.raw._acquire_restore(state)
        else:
            # Held by another thread as far as our books say: about to block, so in the
            # wait-for graph meanwhile (_detect.py; reported, never raised, as for PyTracedLock).
            wait_restore(me, st)
            got = None
            try:
                st.raw._acquire_restore(state)
                got = True
            finally:
                forget(me, got)
        _restore_booked(st, me, state[0], t0, blocked_by)

