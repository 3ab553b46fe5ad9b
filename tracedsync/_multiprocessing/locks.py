"""`TracedMpLock` and `TracedMpRLock`: multiprocessing's locks behind a recording proxy.

Design note (read `_locks.py`, `_mp_owner.py` and `_mp_base.py` first).

* Behaviour. The real lock (a ``multiprocessing.synchronize.Lock``/``RLock``, a POSIX semaphore
  underneath) does all the work; the proxy calls its ``acquire``/``release`` and returns or
  raises what they do. Arguments other than plain ones (``block`` a bool or int, ``timeout``
  None or a number) go to the real ``acquire`` untouched, so its errors are the original's.
* Contention, as for threading locks: a blocking acquire first tries the real
  ``acquire(False)``; only if that fails is it *contended*: the holder is read from the shared
  owner record (``blocked_by`` = its native thread id, ``blocked_by_pid`` = its pid, possibly
  another process), then the caller blocks with its own timeout.
* Books. This process's books (owner ident, depth, hold start, counters) are written after the
  real acquire succeeds and before the real release, by the holder; the shared owner record is
  written at the same moments (see `_mp_owner`). A lock released by a thread our books do not
  show as its holder (a Lock may be released by any thread, or process) goes to the real lock
  first: its error (ValueError for a Lock released too often, AssertionError for an RLock not
  owned) is recorded as ``misuse`` and raised.
* A non-reentrant Lock that the real semaphore hands to a thread our books still show as its
  holder was released behind our back (by another process, say): that acquire starts a new
  hold at depth 1 rather than nesting.
"""

from __future__ import annotations

import ctypes
import sys
import weakref
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, cast

from .._core import runtime as rt
from .._core.native import NATIVE
from .._core.native_kinds import K_MP_ACQUIRE, K_RELEASE
from .._core.ops import OP_GENERIC, OP_MP_ACQUIRE, OP_RELEASE, OP_SAVE
from .._core.sites import user_frame, user_site
from .._core.state import LockState
from .._core.waits import forget, waiting
from .._threading.locks_py import _misuse
from .._threading.proxy import get_state as _get_any_state
from . import wait_table as _xwaits
from .base import MpProxy, given_args, new_state, reset_in_fork_child
from .owner import DEPTH, OWNER, new_record, owner_word, split

get_state = cast("Callable[[Any], LockState]", _get_any_state)
"""The state of one of this module's proxies (always a `LockState`)."""

_sys_getframe = sys._getframe


def _getframe(depth: int) -> FrameType:
    """The frame ``depth`` levels above the caller; depth 0 (the native hot path's callers,
    which have no Python frame of their own): the user's, by the skip policy."""
    if depth <= 0:
        return user_frame() or _sys_getframe(1)
    return _sys_getframe(depth + 1)


def _deeper(fdepth: int) -> int:
    """``fdepth`` for a callee (0 stays 0: found by the skip policy)."""
    return fdepth + 1 if fdepth > 0 else 0
_rec = None if NATIVE is None else NATIVE.rec
FULL = rt.FULL
_PLAIN = (bool, int)
_NUMBER = (int, float)


class _MpLockBase(MpProxy):
    """Common code of `TracedMpLock` and `TracedMpRLock`. Not for direct use."""

    __slots__ = ()
    _kind = "Lock"
    _reentrant = False

    @classmethod
    def _setup(cls, st: LockState, shared: Any) -> None:
        st.reentrant = cls._reentrant
        if shared is None:  # made here
            st.ext = new_record()
            table = _xwaits.table_for_new_lock()
        else:  # arrived from the process that made it: its owner record and wait table
            st.ext, path = shared
            table = _xwaits.adopt(path)
        st.ext_addr = ctypes.addressof(st.ext)  # for the native hot path
        if table is not None:
            _tables[st] = table
        reset_in_fork_child(st, _forget_holders)

    def _shared(self) -> Any:
        st = get_state(self)
        table = _tables.get(st)
        return st.ext, None if table is None else table.path

    # -- acquire -----------------------------------------------------------------------------
    def acquire(self, block: bool = True, timeout: float | None = None, *args: Any,
                _depth: int = 1, **kwargs: Any) -> bool:
        """Acquire the lock, exactly as multiprocessing's does, and record it."""
        st = get_state(self)
        if args or kwargs:  # not multiprocessing's signature: let the real lock say so
            return st.acquire(*given_args(block, timeout, args), **kwargs)  # type: ignore[no-any-return]
        level = rt.level
        if level and block is True and timeout is None and st.acquire(False):
            _took(st, level, _depth + 1)
            return True
        if not level:
            return st.acquire(block, timeout)  # type: ignore[no-any-return]
        return acquire_slow(st, block, timeout, _depth + 1)

    def __enter__(self) -> bool:
        st = get_state(self)
        level = rt.level
        if level and st.acquire(False):
            _took(st, level, 2)
            return True
        if not level:
            return st.acquire()  # type: ignore[no-any-return]
        return acquire_slow(st, True, None, 2)

    # -- release -----------------------------------------------------------------------------
    def release(self) -> None:
        """Release the lock, exactly as multiprocessing's does, and record it."""
        _release(get_state(self))

    def __exit__(self, *exc_info: object) -> None:
        _release(get_state(self))


def _took(st: LockState, level: int, fdepth: int) -> None:
    """Books, owner record and event of an uncontended acquire (the real lock is ours now)."""
    rec = st.ext
    rec[OWNER] = owner_word()  # first: the window in which others see no owner is short
    try:
        me = rt.tls.ident
    except AttributeError:
        me = rt.register_thread()
    t = rt.now()
    if st.reentrant and st.owner == me:
        depth = st.depth + 1
    else:
        st.owner = me
        st.t_hold = t
        depth = 1
    rec[DEPTH] = depth
    st.depth = depth
    st.acquisitions += 1
    if depth > st.max_depth:
        st.max_depth = depth
    if level == FULL:
        if _rec is not None:  # one native record (ok, blocking; no holder, no wait)
            _rec(K_MP_ACQUIRE, st.prim_pid, st.prim_n, 0b101, depth, 0, 0, 0)
            return
        f = _getframe(fdepth)
        rt.emit((OP_MP_ACQUIRE, t, me, st.prim, depth, True, False, 0, None, None, True, None,
                 False, f.f_code, -1 - f.f_lasti))


def _release(st: LockState) -> None:
    """release() of the real lock, with the books, the owner record and the event."""
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
    rec = st.ext
    if depth == 0:
        hold = t - st.t_hold
        owner = st.owner
        word = rec[OWNER]
        st.owner = None
        st.depth = 0
        rec[DEPTH] = 0
        rec[OWNER] = 0  # last before the real release (see _mp_owner)
        try:
            st.release()
        except BaseException as exc:
            rec[OWNER] = word
            rec[DEPTH] = 1
            if isinstance(exc, (ValueError, AssertionError)):
                # Our books were stale: the real lock was not this thread's to release.
                _misuse(st, me, "release_unowned" if st.reentrant else "release_unlocked", exc)
            else:
                st.owner = owner
                st.depth = 1
            raise
        st.hold_ns += hold
    else:
        st.depth = depth
        rec[DEPTH] = depth
        st.release()
    if rt.level == FULL:
        if _rec is not None:
            if hold is None:
                _rec(K_RELEASE, st.prim_pid, st.prim_n, 0, depth, 0, 0, 0)
            else:
                _rec(K_RELEASE, st.prim_pid, st.prim_n, 1, depth, hold, 0, 0)
            return None
        rt.emit((OP_RELEASE, t, me, st.prim, depth, hold))
        if len(rt.buffer) > rt.limit:
            rt.overflow()
    return None


class TracedMpLock(_MpLockBase):
    """A traced ``multiprocessing.Lock``: same behaviour, plus who holds it, seen from every
    process that shares it."""

    __slots__ = ()
    _kind = "Lock"
    _reentrant = False


class TracedMpRLock(_MpLockBase):
    """A traced ``multiprocessing.RLock``: same behaviour, plus its holder and recursion depth,
    seen from every process that shares it."""

    __slots__ = ()
    _kind = "RLock"
    _reentrant = True


_tables: weakref.WeakKeyDictionary[LockState, _xwaits.Table] = weakref.WeakKeyDictionary()
"""A lock's state → the wait table its waits are published in (see `_xwaits`)."""


def _forget_holders(st: LockState) -> None:
    # In a forked child, none of this process's threads holds the lock (see _mp_base).
    st.owner = None
    st.depth = 0
    st.waiters = []


def waiting_here(lock: _MpLockBase) -> int:
    """How many threads of this process are blocked in ``lock.acquire()`` right now."""
    return len(get_state(lock).waiters)


# -- the slow paths ----------------------------------------------------------------------------
def acquire_slow(st: LockState, block: Any, timeout: Any, fdepth: int) -> bool:
    """Every acquire that is not an uncontended one with the default arguments."""
    if type(block) not in _PLAIN or not (timeout is None or type(timeout) in _NUMBER):
        # Unusual arguments: the real lock validates (raising its own error) and answers.
        ok = st.acquire(block, timeout)
        return _booked(st, ok, _deeper(fdepth), block, timeout, 0, False, None)
    if not block or (timeout is not None and timeout <= 0):
        # A try (multiprocessing takes a timeout <= 0 for one) never waits: not published,
        # not in the wait-for graph.
        ok = st.acquire(block, timeout)
        return _booked(st, ok, _deeper(fdepth), block, timeout, 0, not ok,
                       None if ok else st.ext[OWNER])
    if st.acquire(False):
        return _booked(st, True, _deeper(fdepth), block, timeout, 0, False, None)
    rec = st.ext
    holder = rec[OWNER]
    me = rt.ident()
    waiters = st.waiters
    waiters.append(me)
    t0 = rt.now()
    frame = _getframe(fdepth)
    try:
        # Runtime detection (_detect.py): published for other processes (_xwaits.py), then in
        # this process's wait-for graph while blocked, the holder read from the owner record (a
        # thread of this process or of another). May raise DeadlockError
        # (on_deadlock="raise"), already unregistered.
        shared = _xwaits.publish(_tables.get(st), st.prim, rec, st.reentrant, False,
                                 timeout, frame)
        try:
            waiting(st, lambda: (split(rec[OWNER]),), timeout=timeout, frame=frame)
            ok = None
            try:
                ok = st.acquire(True, timeout)
            finally:
                forget(me, ok)
        finally:
            _xwaits.unpublish(shared)
    except BaseException as exc:  # KeyboardInterrupt while blocked, DeadlockError, for two
        wait = rt.now() - t0
        _forget(waiters, me)
        st.contended += 1
        st.wait_ns += wait
        _booked(st, False, _deeper(fdepth), block, timeout, wait, True, holder, t0 + wait)
        f = _getframe(fdepth)
        rt.emit((OP_GENERIC, t0 + wait, me, "interrupted", {"prim": st.prim, "error": repr(exc)},
                 f.f_code, f.f_lineno))
        raise
    wait = rt.now() - t0
    _forget(waiters, me)
    st.contended += 1
    st.wait_ns += wait
    return _booked(st, ok, _deeper(fdepth), block, timeout, wait, True, holder, t0 + wait)


def _forget(waiters: list[int], me: int) -> None:
    try:
        waiters.remove(me)
    except ValueError:  # pragma: no cover - forgotten by a fork reset
        pass


def _booked(
    st: LockState,
    ok: bool,
    fdepth: int,
    block: Any,
    timeout: Any,
    wait: int,
    contended: bool,
    holder: int | None,
    t: int | None = None,
) -> bool:
    """Update the books and the owner record after a slow-path acquire, record it; ``ok``."""
    rec = st.ext
    if ok:
        rec[OWNER] = owner_word()
    me = rt.ident()
    if t is None:
        t = rt.now()
    if ok:
        if st.reentrant and st.owner == me:
            depth = st.depth + 1
        else:
            st.owner = me
            st.t_hold = t
            depth = 1
        rec[DEPTH] = depth
        st.depth = depth
        st.acquisitions += 1
        if depth > st.max_depth:
            st.max_depth = depth
    else:
        depth = st.depth if st.owner == me else 0
        st.failed += 1
    level = rt.level
    if level == FULL or (level and (contended or not ok)):
        by_pid, by_tid = split(holder or 0)
        f = _getframe(fdepth)
        rt.emit((OP_MP_ACQUIRE, t, me, st.prim, depth, bool(ok), contended, wait, by_pid, by_tid,
                 bool(block), timeout, False, f.f_code, -1 - f.f_lasti))
    return bool(ok)


def _release_unbooked(st: LockState, me: int) -> None:
    """A release our books say is not the caller's to make: the real lock decides."""
    rec = st.ext
    word = rec[OWNER]
    depth = rec[DEPTH]
    frees = not st.reentrant or (st.raw._semlock._is_mine() and st.raw._semlock._count() == 1)
    if frees:  # clear before the real release: afterwards a new holder may already write
        rec[OWNER] = 0
        rec[DEPTH] = 0
    try:
        st.release()
    except (ValueError, AssertionError) as exc:
        if frees:
            rec[OWNER] = word
            rec[DEPTH] = depth
        _misuse(st, me, "release_unowned" if st.reentrant else "release_unlocked", exc)
        raise
    # The real lock disagreed with our books (acquired behind our back, or by another
    # process for a Lock): resync.
    st.owner = None
    st.depth = 0
    if rt.level == FULL:
        rt.emit((OP_RELEASE, rt.now(), me, st.prim, 0, None))


# -- the condition protocol (used by TracedMpCondition.wait) -----------------------------------
def release_save(st: LockState, count: int) -> None:
    """Release ``count`` levels (all of the caller's) before a condition wait; recorded as one
    ``release`` to depth 0 with ``saved_depth``."""
    if not rt.level:
        for _ in range(count):
            st.release()
        return
    me = rt.ident()
    t = rt.now()
    hold = t - st.t_hold if st.owner == me else None
    if hold is not None:
        st.hold_ns += hold
    rec = st.ext
    st.owner = None
    st.depth = 0
    rec[OWNER] = 0
    rec[DEPTH] = 0
    for _ in range(count):
        st.release()
    if rt.level == FULL:
        code, lineno = user_site()
        rt.emit((OP_SAVE, t, me, st.prim, count, hold, code, lineno))


def acquire_restore(st: LockState, count: int) -> None:
    """Take back ``count`` levels after a condition wait; recorded as one ``acquire`` with
    ``restored`` and the saved depth (contended if the first try found it held)."""
    if not rt.level:
        for _ in range(count):
            st.acquire()
        return
    me = rt.ident()
    t0 = rt.now()
    contended = not st.acquire(False)
    holder = None
    if contended:
        rec = st.ext
        holder = rec[OWNER]
        shared = _xwaits.publish(_tables.get(st), st.prim, rec, st.reentrant, True, None,
                                 user_frame())
        try:
            waiting(st, lambda: (split(rec[OWNER]),), what="restore", may_raise=False)
            got = None
            try:
                got = st.acquire()
            finally:
                forget(me, got)
        finally:
            _xwaits.unpublish(shared)
    for _ in range(count - 1):
        st.acquire()
    t1 = rt.now()
    wait = t1 - t0 if contended else 0
    st.owner = me
    st.depth = count
    st.t_hold = t1
    st.acquisitions += 1
    st.restore_ns = t1 - t0
    rec = st.ext
    rec[OWNER] = owner_word()
    rec[DEPTH] = count
    if contended:
        st.contended += 1
        st.wait_ns += wait
    if count > st.max_depth:
        st.max_depth = count
    level = rt.level
    if level == FULL or (level and contended):
        by_pid, by_tid = split(holder or 0)
        code, lineno = user_site()
        rt.emit((OP_MP_ACQUIRE, t1, me, st.prim, count, True, contended, wait, by_pid, by_tid,
                 True, None, True, code, lineno))


# -- construction --------------------------------------------------------------------------------
def lock_classes() -> dict[type, type[_MpLockBase]]:
    """multiprocessing's lock classes → the traced proxy class for each."""
    from multiprocessing import synchronize

    return {synchronize.Lock: TracedMpLock, synchronize.RLock: TracedMpRLock}


_wrapped: weakref.WeakValueDictionary[int, _MpLockBase] = weakref.WeakValueDictionary()
"""id(real lock) → its proxy, for real locks handed to us (``Value(lock=...)``, ``Condition``):
one real lock, one traced identity. (A live proxy keeps its real lock alive, so the id is not
reused while the entry exists.)"""


def new_lock(
    raw: Any, name: str | None, site: tuple[CodeType | None, int], method: str | None,
) -> _MpLockBase:
    """Trace the real multiprocessing lock ``raw`` (made by us, or given by the user)."""
    found = _wrapped.get(id(raw))
    if found is not None and found.__wrapped__ is raw:
        return found
    cls = lock_classes()[type(raw)]
    st = new_state(LockState, raw, cls._kind, name, site, {"start_method": method})
    cls._setup(st, None)
    proxy = cls(raw, st)
    _wrapped[id(raw)] = proxy
    return proxy


def is_raw_lock(obj: Any) -> bool:
    """Whether ``obj`` is a real (untraced) multiprocessing Lock or RLock."""
    return not isinstance(obj, MpProxy) and type(obj) in lock_classes()


if NATIVE is not None:  # the uncontended acquire and the release, in C (mplock.c)
    NATIVE.install_mp(_MpLockBase, LockState, acquire_slow, _release, K_MP_ACQUIRE, K_RELEASE)
_enter = _MpLockBase.__enter__
_exit = _MpLockBase.__exit__
