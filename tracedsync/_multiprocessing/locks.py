"""`TracedMpLock` and `TracedMpRLock`: multiprocessing's Lock and RLock, subclassed, telling
their story.

Design note (read `base`, `owner` and docs/architecture.md, "The native recorder", first).

* Behaviour. Each is a subclass of multiprocessing's class (``multiprocessing.synchronize.Lock``,
  ``RLock``: a POSIX semaphore underneath, the SemLock): every acquire and release is the
  SemLock's own, called with the caller's arguments, returning or raising what it does.
  Arguments other than plain ones (``block`` a bool or int, ``timeout`` None or a number) go to
  the real ``acquire`` untouched, so its errors are the original's. At level off the recording
  methods are not on the class and the instance has multiprocessing's own ``acquire`` and
  ``release`` (`base`): the lock costs what multiprocessing's costs.
* Hot path. With the native recorder, ``acquire``, ``__enter__``, ``release`` and ``__exit__``
  are C methods (``_core/_native_src/mplock.c``) over the lock's `MpLockBooks` (the
  ``_ts_books`` slot): the uncontended acquire with the default arguments (or a plain block
  flag) and the release the books agree with create no Python object. Everything else is the
  Python code below, as is everything in the pure-Python twin.
* Contention, as for threading locks: a blocking acquire first tries the real
  ``acquire(False)``; only if that fails is it *contended*: the holder is read from the shared
  owner record (``blocked_by`` = its native thread id, ``blocked_by_pid`` = its pid, possibly
  another process), then the caller blocks with its own timeout.
* Books. This process's books (owner ident, depth, hold start, counters) are written after the
  real acquire succeeds and before the real release, by the holder; the shared owner record is
  written at the same moments (see `owner`). The state (`MpLockState`, a `LockState`) reads and
  writes the same books: with the native recorder its fields are properties over the C books.
  A lock released by a thread our books do not show as its holder (a Lock may be released by
  any thread, or process) goes to the real lock first: its error (ValueError for a Lock
  released too often, AssertionError for an RLock not owned) is recorded as ``misuse`` and
  raised.
* A non-reentrant Lock that the real semaphore hands to a thread our books still show as its
  holder was released behind our back (by another process, say): that acquire starts a new
  hold at depth 1 rather than nesting.
* A real lock handed to us (``Value(lock=...)``, ``Condition(lock)``) is traced by a new traced
  lock over the same SemLock (`trace_raw_lock`; one per real lock): the two objects are one
  lock. Acquisitions made through the real object are behind our books, as they were behind a
  proxy's.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from multiprocessing import synchronize, util
from operator import attrgetter
from types import CodeType, FrameType
from typing import Any, ClassVar, cast

from .._core import runtime as rt
from .._core.native import NATIVE
from .._core.native_kinds import K_MP_ACQUIRE, K_RELEASE
from .._core.ops import OP_GENERIC, OP_MISUSE, OP_MP_ACQUIRE, OP_RELEASE, OP_SAVE
from .._core.sites import user_frame, user_site
from .._core.state import LockState
from .._core.waits import forget, waiting
from . import wait_table as _xwaits
from .base import (
    MpOriginal,
    _locks,
    assert_spawning,
    attach_state,
    given_args,
    info_of,
    new_state,
    register_tracing,
    reset_in_fork_child,
    tracing,
    untraced,
)
from .owner import DEPTH, OWNER, new_record, owner_word, split

_sys_getframe = sys._getframe
RawLock = synchronize.Lock
RawRLock = synchronize.RLock
_SemLock = synchronize.SemLock
_semlock_getstate: Callable[[Any], Any] = _SemLock.__getstate__  # type: ignore[attr-defined]
_semlock_setstate: Callable[[Any, Any], None] = _SemLock.__setstate__  # type: ignore[attr-defined]


def _getframe(depth: int) -> FrameType:
    """The frame ``depth`` levels above the caller; depth 0 (the native hot path's callers,
    which have no Python frame of their own): the user's, by the skip policy."""
    if depth <= 0:
        return user_frame() or _sys_getframe(1)
    return _sys_getframe(depth + 1)


def _deeper(fdepth: int) -> int:
    """``fdepth`` for a callee (0 stays 0: found by the skip policy)."""
    return fdepth + 1 if fdepth > 0 else 0


FULL = rt.FULL
_PLAIN = (bool, int)
_NUMBER = (int, float)


# -- the state ------------------------------------------------------------------------------------
BOOK_FIELDS = ("owner", "depth", "t_hold", "acquisitions", "contended", "failed", "max_depth",
               "wait_ns", "hold_ns", "restore_ns", "reentrant")
"""The `LockState` fields that the native books keep (in C, read by the hot path)."""


class MpLockState(LockState):
    """The state of a traced multiprocessing lock: a `LockState` whose books are, with the
    native recorder, the C `MpLockBooks` in ``mpb`` (the fields of `BOOK_FIELDS` are properties
    over them); in the pure-Python twin, its own slots."""

    __slots__ = ("mpb",)

    def __init__(self, raw: Any, prim: str, kind: str, name: str | None) -> None:
        if NATIVE is not None:
            self.mpb = NATIVE.MpLockBooks()
        super().__init__(raw, prim, kind, name)


def _forward(name: str) -> property:
    def put(st: MpLockState, value: Any) -> None:
        setattr(st.mpb, name, value)

    return property(attrgetter(f"mpb.{name}"), put)


if NATIVE is not None:
    for _name in BOOK_FIELDS:
        setattr(MpLockState, _name, _forward(_name))


def _after_fork(lock: Any) -> None:
    lock._semlock._after_fork()  # as SemLock.__init__ registers it


class SemLockOriginal(MpOriginal):
    """What the traced subclasses of multiprocessing's SemLock classes (locks, semaphores)
    share: multiprocessing's ``acquire``/``release`` instance attributes only at level off (see
    `base`), and pickling."""

    __slots__ = ()
    _semlock: Any

    def _make_methods(self) -> None:
        if not tracing():
            _SemLock._make_methods(self)  # type: ignore[attr-defined]

    def __reduce_ex__(self, protocol: Any) -> Any:
        assert_spawning(self._ts_raw)  # (multiprocessing's error, naming its class)
        return (_rebuild_semlock, (type(self), _semlock_getstate(self),
                                   info_of(self._ts_state), self._ts_shared()))

    def _ts_shared(self) -> Any:
        """What a child needs besides the SemLock and the identity (shared memory)."""
        return None

    @staticmethod
    def _ts_state_class() -> Any:
        """The class of this kind's state (None: the kind's own, `state_class`)."""
        return None

    def _ts_setup(self, st: Any, shared: Any) -> None:
        """Prepare a new state for this object (made here, or arrived from the process that
        made it: ``shared`` is then what `_ts_shared` sent)."""

    def _ts_bind(self, st: Any) -> None:
        self._ts_state = st
        self._ts_books = None
        _locks.add(self)


def _rebuild_semlock(cls: type[SemLockOriginal], raw_state: Any, info: Any,
                     shared: Any) -> SemLockOriginal:
    """Unpickling in a child: the same lock or semaphore, under the same id."""
    obj = cls.__new__(cls)
    _semlock_setstate(obj, raw_state)  # (its _make_methods is ours)
    prim, kind, name, extra = info
    st = attach_state(weakref.proxy(obj), prim, kind, name, extra,
                      lambda st: obj._ts_setup(st, shared), obj._ts_state_class())
    obj._ts_bind(st)
    return obj


class _MpLockBase(SemLockOriginal):
    """Common code of `TracedMpLock` and `TracedMpRLock`. Not for direct use."""

    __slots__ = ()
    _kind: ClassVar[str] = "Lock"
    _reentrant: ClassVar[bool] = False
    _ts_state: MpLockState
    _semlock: Any

    def __init__(self, *, ctx: Any = None, name: str | None = None,
                 _site: tuple[CodeType | None, int] | None = None,
                 _extra: dict[str, Any] | None = None) -> None:
        untraced(cast(Any, self._ts_raw).__init__, self, ctx=ctx)  # its errors are the original's
        st = new_state(MpLockState, weakref.proxy(self), self._kind, name,
                       _site if _site is not None else user_site(), _extra)
        self._ts_setup(st, None)
        self._ts_bind(st)

    @staticmethod
    def _ts_state_class() -> type[MpLockState]:
        return MpLockState

    def _ts_setup(self, st: MpLockState, shared: Any) -> None:
        # (shared: the owner record and the wait table's path)
        st.acquire = self._semlock.acquire
        st.release = self._semlock.release
        st.reentrant = self._reentrant
        if shared is None:  # made here
            st.ext = new_record()
            table = _xwaits.table_for_new_lock()
        else:
            st.ext, path = shared
            table = _xwaits.adopt(path)
        if NATIVE is not None:
            books = st.mpb
            books.sl_acquire = st.acquire
            books.sl_release = st.release
            books.sl_is_mine = self._semlock._is_mine
            books.record = st.ext
            books.prim_pid = st.prim_pid
            books.prim_n = st.prim_n
        if table is not None:
            _tables[st] = table
        reset_in_fork_child(st, _forget_holders)

    def _ts_bind(self, st: MpLockState) -> None:
        super()._ts_bind(st)
        self._ts_books = st.mpb if NATIVE is not None else None

    def _ts_shared(self) -> Any:
        st = self._ts_state
        table = _tables.get(st)
        return st.ext, None if table is None else table.path


class TracedMpLock(_MpLockBase, RawLock):
    """A traced ``multiprocessing.Lock``: same behaviour, plus who holds it, seen from every
    process that shares it."""

    __slots__ = ()
    _ts_raw: ClassVar[type] = RawLock
    _kind = "Lock"
    _reentrant = False


class TracedMpRLock(_MpLockBase, RawRLock):
    """A traced ``multiprocessing.RLock``: same behaviour, plus its holder and recursion depth,
    seen from every process that shares it."""

    __slots__ = ()
    _ts_raw: ClassVar[type] = RawRLock
    _kind = "RLock"
    _reentrant = True


_tables: weakref.WeakKeyDictionary[LockState, _xwaits.Table] = weakref.WeakKeyDictionary()
"""A lock's state → the wait table its waits are published in (see `wait_table`)."""


def _forget_holders(st: LockState) -> None:
    # In a forked child, none of this process's threads holds the lock (see `base`).
    st.owner = None
    st.depth = 0
    st.waiters = []


def waiting_here(lock: Any) -> int:
    """How many threads of this process are blocked in ``lock.acquire()`` right now."""
    return len(lock._ts_state.waiters)


def _misuse(st: LockState, me: int, what: str, exc: BaseException) -> None:
    st.misuse += 1
    code, lineno = user_site()
    rt.emit((OP_MISUSE, rt.now(), me, st.prim, what, str(exc), code, lineno))


# -- the recording methods (the pure-Python twin's, and the C methods' other arguments) ---------
def acquire(self: _MpLockBase, block: bool = True, timeout: float | None = None, *args: Any,
            **kwargs: Any) -> bool:
    """Acquire the lock, exactly as multiprocessing's does, and record it."""
    st = self._ts_state
    if args or kwargs:  # not multiprocessing's signature: let the real lock say so
        return st.acquire(*given_args(block, timeout, args), **kwargs)  # type: ignore[no-any-return]
    level = rt.level
    if level and block is True and timeout is None and st.acquire(False):
        _took(st, level, 2)
        return True
    if not level:
        return st.acquire(block, timeout)  # type: ignore[no-any-return]
    return acquire_slow(st, block, timeout, 2)


def enter(self: _MpLockBase, fdepth: int = 1) -> bool:
    """``__enter__``: acquire() (``fdepth``: where the user's frame is, for a caller that
    enters on the user's behalf)."""
    st = self._ts_state
    level = rt.level
    if level and st.acquire(False):
        _took(st, level, _deeper(fdepth))
        return True
    if not level:
        return st.acquire()  # type: ignore[no-any-return]
    return acquire_slow(st, True, None, _deeper(fdepth))


def _enter(self: _MpLockBase) -> bool:
    return enter(self, 2)


def release(self: _MpLockBase) -> None:
    """Release the lock, exactly as multiprocessing's does, and record it."""
    release_py(self._ts_state)


def _exit(self: _MpLockBase, *exc_info: object) -> None:
    release_py(self._ts_state)


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
        f = _getframe(fdepth)
        rt.emit((OP_MP_ACQUIRE, t, me, st.prim, depth, True, False, 0, None, None, True, None,
                 False, f.f_code, -1 - f.f_lasti))


def release_py(st: LockState) -> None:
    """release() of the real lock, with the books, the owner record and the event."""
    if not rt.level:
        return st.release()  # type: ignore[no-any-return]
    try:
        me = rt.tls.ident
    except AttributeError:
        me = rt.register_thread()
    depth = st.depth
    if depth == 0 or (st.reentrant and st.owner != me):
        return release_unbooked(st, me)
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
        rec[OWNER] = 0  # last before the real release (see owner.py)
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
        rt.emit((OP_RELEASE, t, me, st.prim, depth, hold))
        if len(rt.buffer) > rt.limit:
            rt.overflow()
    return None


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
        # Runtime detection (_detect): published for other processes (wait_table), then in
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


def release_unbooked(st: LockState, me: int) -> None:
    """A release our books say is not the caller's to make: the real lock decides."""
    rec = st.ext
    word = rec[OWNER]
    depth = rec[DEPTH]
    semlock = st.raw._semlock
    frees = not st.reentrant or (semlock._is_mine() and semlock._count() == 1)
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


# -- the methods on the class while the level is not off -------------------------------------
if NATIVE is not None:  # the uncontended acquire and the release in C (mplock.c)
    NATIVE.mp_configure({
        "acquire_slow": acquire_slow, "release": release_py,
        "release_unbooked": release_unbooked, "acquire_args": acquire,
        "kind_acquire": K_MP_ACQUIRE, "kind_release": K_RELEASE,
    })
    _METHODS: dict[str, Any] = NATIVE.mp_lock_methods(_MpLockBase)
else:
    _METHODS = {"acquire": acquire, "__enter__": _enter, "release": release, "__exit__": _exit}
register_tracing({_MpLockBase: _METHODS})


def enter_for(lock: Any, fdepth: int) -> Any:
    """``lock.__enter__()`` on the user's behalf (a Condition's, a Value's), the user's frame
    ``fdepth`` above the caller (the C path finds it itself)."""
    if NATIVE is None and isinstance(lock, _MpLockBase) and rt.level:
        return enter(lock, _deeper(fdepth))
    return lock.__enter__()


# -- construction --------------------------------------------------------------------------------
_wrapped: weakref.WeakValueDictionary[int, _MpLockBase] = weakref.WeakValueDictionary()
"""id(real lock) → the traced lock over its SemLock, for real locks handed to us
(``Value(lock=...)``, ``Condition``): one real lock, one traced identity. (The traced lock keeps
its real one alive, so the id is not reused while the entry exists.)"""


def trace_raw_lock(
    raw: Any, name: str | None, site: tuple[CodeType | None, int], method: str | None,
) -> _MpLockBase:
    """The traced lock over the real multiprocessing lock ``raw`` (given by the user): a traced
    lock of the same class over the same SemLock."""
    found = _wrapped.get(id(raw))
    if found is not None and found.__dict__.get("_ts_origin") is raw:
        return found
    cls: type[_MpLockBase] = TracedMpLock if type(raw) is RawLock else TracedMpRLock
    lock = cls.__new__(cls)
    lock.__dict__.update(raw.__dict__)  # _semlock (and _is_fork_ctx where it exists)
    lock.__dict__.pop("acquire", None)
    lock.__dict__.pop("release", None)
    lock._ts_origin = raw  # type: ignore[attr-defined]  # its finalizer unlinks the name
    lock._make_methods()
    util.register_after_fork(lock, _after_fork)
    st = new_state(MpLockState, weakref.proxy(lock), cls._kind, name, site,
                   {"start_method": method})
    lock._ts_setup(st, None)
    lock._ts_bind(st)
    _wrapped[id(raw)] = lock
    return lock


def is_raw_lock(obj: Any) -> bool:
    """Whether ``obj`` is a real (untraced) multiprocessing Lock or RLock."""
    return type(obj) in (RawLock, RawRLock)


def is_traced_mp_lock(obj: Any) -> bool:
    """Whether ``obj`` is a traced multiprocessing Lock or RLock."""
    return isinstance(obj, _MpLockBase)


def lock_books(lock: Any) -> Any:
    """The C books of a traced multiprocessing lock (None in the pure-Python twin)."""
    return lock._ts_books

