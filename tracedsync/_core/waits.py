"""The wait-for table: which thread of this process is blocked on which traced primitive.

Design note (the concurrency reasoning; read it before changing anything here).

`WAITS` maps a thread's ident to its `Wait`: what it is blocked on, since when, where. A thread
registers *itself* just before it blocks (after its non-blocking try failed) and removes itself
in a ``finally`` once the blocking call returns or raises. Both are single dict operations
(``WAITS[me] = w``, ``WAITS.pop(me, None)``), atomic under the GIL, and only the thread itself
ever writes its key, so the table needs no lock at all; other threads (a checker, the watchdog, a
snapshot) only read it with ``get`` or an atomic ``copy``. Nothing here takes any lock that the
traced program could hold: registering cannot deadlock and costs a few hundred nanoseconds, paid
only by an acquire that is about to block anyway.

Who could end a wait comes from the primitives' own books (`Wait.owners`): a Lock/RLock's
``owner`` (written by the holder after the real acquire and cleared *before* the real release,
so ``owner == U`` means that U really holds it at that instant), every permit holder of a
semaphore, the holder of a condition's lock (only a thread holding it can notify), nobody known
for an Event or a Barrier.

Native waits. A contended acquire of a native Lock/RLock (and a condition wait's re-acquire)
registers in C instead (``_native_src/waits.c``: a slot linked while the thread is blocked, and a
C walk of the native waits that hands over to this table when it may close a cycle or reaches a
wait registered here), so that it blocks untimed at once and makes no Python object. Readers
see those waits through `current`, `lookup` and `any_waiting`, which first enter each native
wait in `WAITS` as a `Wait` (`sync`; the waiting thread then removes it with `forget`, as for
its own registrations). Read `WAITS` directly only for a thread's own entry or for a wait that
this module registered (a condition, a semaphore, ...).

This module is the table and the API the primitives call (they sit above it and below the
detectors). What is *done* with a registration lives in `tracedsync._detect`: the deadlock check
is installed with `set_checker` and runs in the registering thread, which it may stop with an
exception (`DeadlockError`); a walk continues into other processes through `set_remote`.

API for the primitives (all run in the waiting thread):

* ``wait_lock``/``wait_restore``/``wait_cond``/``wait_sem``/``wait_other``: the lock paths'
  shortcuts, and ``waiting(st, owners, *, timeout, what, frame, may_raise)`` for a primitive
  whose holders are known only to itself (``owners`` returns the keys of the threads that could
  end the wait: an ``int`` is a thread of this process, a ``(pid, native_tid)`` pair a thread of
  any process). Each may raise what the checker raises, after unregistering.
* ``forget(me, ok)`` / ``done(ok)``: the thread is no longer blocked (call it in a ``finally``;
  ``ok`` says how the wait ended, when known: a wait that was part of a reported deadlock then
  records its end, `deadlock_end`).
"""

from __future__ import annotations

import _thread
import dataclasses
import os
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from . import runtime as rt
from .ops import OP_GENERIC
from .sites import line_of, user_frame
from .state import ConditionState, PrimState, SemaphoreState, is_lock_state

Key = int | tuple[int, int]
"""A thread: its ident in this process, or ``(pid, native_tid)`` in any process."""

Checker = Callable[[int, bool], None]
"""``checker(ident, may_raise)``: look for a deadlock the wait of ``ident`` just closed."""

_active: dict[int, Any] = threading._active  # type: ignore[attr-defined]


class Wait:
    """One blocked thread: what it waits for (``st``), how (``what``), since when, where."""

    __slots__ = ("deadlocked", "frame", "ident", "long_reported", "owners_fn", "since", "st",
                 "timeout", "what")

    def __init__(
        self,
        ident: int,
        st: PrimState,
        what: str,
        timeout: float | None,
        frame: FrameType | tuple[Any, int] | None,
        owners_fn: Callable[[], tuple[Key, ...]] | None = None,
    ) -> None:
        self.ident = ident
        self.st = st
        self.what = what
        self.timeout = None if timeout is None or timeout < 0 else timeout
        self.frame = frame
        self.since = rt.now()
        self.owners_fn = owners_fn
        self.long_reported = False
        self.deadlocked = False

    def owners(self) -> tuple[Key, ...]:
        """The threads that could end this wait, now (a snapshot; empty when unknown)."""
        st = self.st
        if self.owners_fn is not None:
            return _normalise(self.owners_fn())
        if is_lock_state(st):  # an acquire, or the re-acquire after a condition wait
            o = st.owner
            return () if o is None else (o,)
        if isinstance(st, ConditionState):
            lock_st = st.lock_state
            o = None if lock_st is None else lock_st.owner
            # Before the real wait has released the lock, its holder is the waiter itself.
            return () if o is None or o == self.ident else (o,)
        if isinstance(st, SemaphoreState):
            return tuple(st.held)  # one C-level copy: atomic under the GIL
        return ()  # Event, Barrier: any thread may end the wait

    def site(self) -> tuple[Any, int]:
        """``(code, line)`` of the user's frame that waits (``(None, 0)`` if unknown)."""
        f = self.frame
        if f is None:
            return None, 0
        if isinstance(f, tuple):  # (code, -(lasti + 1)) from the native recorder's site table
            code, pos = f
            return code, line_of(code, -pos - 1) if pos < 0 else pos
        return f.f_code, f.f_lineno or 0


@dataclasses.dataclass(frozen=True)
class RemoteWait:
    """What a thread of another process waits for, as a `set_remote` lookup describes it."""

    pid: int
    tid: int
    prim: str
    owners: tuple[Key, ...]
    """``(pid, native_tid)`` of the threads that could end the wait."""
    name: str | None = None
    kind: str | None = None
    what: str = "acquire"
    site: str | None = None
    stack: tuple[str, ...] | None = None
    since: int | None = None
    """When the wait began (``time.monotonic_ns``, the same clock in every process)."""
    read_at: int | None = dataclasses.field(default=None, compare=False)
    """When ``owners`` was read, if it may be stale (read by the waiter, not from the lock
    itself): the edge to an owner is trusted only if that owner's own wait began before it."""
    timeout: float | None = None


_WATCHED = frozenset({"acquire", "restore", "cond_wait"})

WAITS: dict[int, Wait] = {}
"""ident → the `Wait` of every thread of this process blocked on a traced primitive now."""

_remote: Callable[[int, int], RemoteWait | None] | None = None
_native_sync: Callable[[], None] | None = None
_native_count: Callable[[], int] | None = None
_native_for: Callable[[int, Any], list[int]] | None = None
_checker: Checker | None = None
_watcher: Callable[[int, Wait], None] | None = None
_waker: Callable[[], None] | None = None
_pid = os.getpid()
_natives: dict[int, int] = {}  # ident → native id, for threads threading does not know
_by_native: dict[int, int] = {}  # native id → ident (for (pid, tid) keys of this process)


def set_waker(waker: Callable[[], None] | None) -> None:
    """Call ``waker`` when a thread starts waiting (the flusher may be asleep, and the
    watchdog has a wait to watch now)."""
    global _waker
    _waker = waker


def set_native(
    sync: Callable[[], None] | None,
    count: Callable[[], int] | None,
    waits_for: Callable[[int, Any], list[int]] | None = None,
) -> None:
    """Read the native recorder's waits too: ``sync()`` enters each in `WAITS` (with
    `_native_wait`), ``count()`` says how many there are, ``waits_for(owner, exclude)`` which
    threads wait for a lock ``owner`` holds (None: none to read)."""
    global _native_sync, _native_count, _native_for
    _native_sync, _native_count, _native_for = sync, count, waits_for


def lock_waits_for(owner: int, exclude: Any) -> list[tuple[int, Wait]]:
    """The waits of this process for a Lock/RLock (an acquire or a condition's re-acquire)
    that thread ``owner`` holds, other than lock ``exclude``. Makes a `Wait` only of the
    native waits that qualify (a condition wait asks this while it holds its lock)."""
    out: list[tuple[int, Wait]] = []
    for ident, w in list(WAITS.items()):
        st = w.st
        if (ident != owner and w.what in ("acquire", "restore") and w.owners_fn is None
                and st is not exclude and is_lock_state(st) and st.owner == owner):
            out.append((ident, w))
    native = _native_for
    if native is not None:
        seen = {ident for ident, _ in out}
        for ident in native(owner, exclude):
            w2 = None if ident in seen else lookup(ident)
            if isinstance(w2, Wait):
                out.append((ident, w2))
    return out


def sync() -> None:
    """Enter every native wait in `WAITS` (see the module docstring)."""
    native = _native_sync
    if native is not None:
        native()


def current() -> dict[int, Wait]:
    """Every thread of this process blocked on a traced primitive now (a copy of `WAITS`, the
    native waits included)."""
    sync()
    return WAITS.copy()


def any_waiting() -> bool:
    """Whether a thread of this process is blocked on a traced primitive now."""
    count = _native_count
    return bool(WAITS) or (count is not None and count() > 0)


def _native_wait(ident: int, lock: PrimState, since: int, code: Any, pos: int,
                 timeout: float | None, what: str) -> Wait:
    """The `Wait` of a native wait (the extension's ``sync_waits`` calls this)."""
    w = Wait(ident, lock, what, timeout, None if code is None else (code, pos))
    w.since = since
    return w


def set_checker(checker: Checker | None) -> None:
    """Run ``checker`` in every thread that registers a wait that can close a cycle (the
    detectors install it; None: registrations are only recorded)."""
    global _checker
    _checker = checker


def set_watcher(watcher: Callable[[int, Wait], None] | None) -> None:
    """Run ``watcher(ident, wait)`` in every thread that registers a lock or condition wait,
    before the checker (the nested-monitor detector; it must not raise)."""
    global _watcher
    _watcher = watcher


def set_remote(lookup: Callable[[int, int], RemoteWait | None] | None) -> None:
    """Let walks continue into other processes: ``lookup(pid, native_tid)`` (see the module
    docstring). None removes it."""
    global _remote
    _remote = lookup


def _normalise(keys: Any) -> tuple[Key, ...]:
    out: list[Key] = []
    for k in keys:
        if isinstance(k, tuple):
            pid, tid = k
            if pid is None or tid is None:
                continue
            if pid == _pid:
                local = _local_ident(tid)
                out.append(local if local is not None else (pid, tid))
            else:
                out.append((pid, tid))
        elif k is not None:
            out.append(k)
    return tuple(out)


def _local_ident(native: int) -> int | None:
    ident = _by_native.get(native)
    if ident is not None and native_id(ident) == native:
        return ident
    for ident, t in list(_active.items()):
        if getattr(t, "native_id", None) == native:
            _by_native[native] = ident
            return ident
    for ident, n in list(_natives.items()):
        if n == native:
            return ident
    return None


def native_id(ident: int) -> int:
    """The native thread id of a thread of this process (the ident itself if unknown)."""
    t = _active.get(ident)
    if t is not None:
        n = getattr(t, "native_id", None)
        if n is not None:
            return n  # type: ignore[no-any-return]
    return _natives.get(ident, ident)


def thread_name(ident: int) -> str:
    t = _active.get(ident)
    return str(t.name) if t is not None else f"foreign-{ident}"


def lookup(key: Key) -> Wait | RemoteWait | None:
    """The wait of thread ``key`` (of this process, or of another through `set_remote`)."""
    if isinstance(key, tuple):
        remote = _remote
        if remote is None:
            return None
        try:
            return remote(key[0], key[1])
        except Exception:  # a lookup that fails knows nothing
            return None
    w = WAITS.get(key)
    if w is None and _native_sync is not None:
        sync()
        w = WAITS.get(key)
    return w


def owners_of(node: Wait | RemoteWait) -> tuple[Key, ...]:
    """The threads that could end ``node`` now, in this process's keys."""
    if isinstance(node, RemoteWait):
        return _normalise(node.owners)
    return node.owners()


def pid() -> int:
    """This process's pid (kept up to date across fork)."""
    return _pid


# -- registration (called by the traced primitives, in the waiting thread) ---------------------
def register(w: Wait, *, check: bool = True, may_raise: bool = True) -> None:
    """Enter ``w`` for its thread and, if ``check``, run the checker on it."""
    me = w.ident
    if me not in _natives and me not in _active:
        _natives[me] = threading.get_native_id()  # a thread threading does not know
    WAITS[me] = w
    waker = _waker
    if waker is not None:
        waker()
    watcher = _watcher
    if watcher is not None and w.what in _WATCHED:
        watcher(me, w)
    checker = _checker
    if check and checker is not None:
        checker(me, may_raise)


def waiting(
    st: PrimState,
    owners: Callable[[], Any],
    *,
    timeout: float | None = None,
    what: str = "acquire",
    frame: FrameType | None = None,
    may_raise: bool = True,
) -> None:
    """Register the calling thread as blocked on ``st`` (see the module docstring)."""
    if frame is None:
        frame = user_frame()
    register(Wait(rt.ident(), st, what, timeout, frame, owners), may_raise=may_raise)


def done(ok: bool | None = None) -> None:
    """The calling thread is no longer blocked (see `forget`)."""
    forget(_thread.get_ident(), ok)


def forget(me: int, ok: bool | None = None) -> None:
    """`done` for a caller that knows its ident (the lock paths). ``ok``: how the wait ended, if
    the caller knows: true (it got what it waited for), false (it gave up: a timeout), None
    (an exception, or not known). A wait that was part of a reported deadlock records it (a
    `deadlock_end` event), so that the report can say what happened: who gave up, after how
    long, or that a thread outside the cycle ended it."""
    w = WAITS.pop(me, None)
    if w is not None and w.deadlocked:
        _deadlock_end(w, ok)


def _deadlock_end(w: Wait, ok: bool | None) -> None:
    t = rt.now()
    code, line = w.site()
    fields = {"prim": w.st.prim, "what": w.what, "ok": ok, "waited_ns": t - w.since,
              "timeout": w.timeout}
    rt.emit((OP_GENERIC, t, w.ident, "deadlock_end", fields, code, line))


# -- the lock paths' helpers ----------------------------------------------------------------
def wait_lock(me: int, st: PrimState, timeout: float,
              frame: FrameType | tuple[Any, int] | None) -> None:
    """A Lock/RLock acquire is about to block: register and check (may raise)."""
    register(Wait(me, st, "acquire", timeout, frame))


def wait_restore(me: int, st: PrimState) -> None:
    """The re-acquire at the end of a condition wait is about to block: register and check
    (report only: see the design note)."""
    register(Wait(me, st, "restore", None, user_frame()), may_raise=False)


def wait_cond(me: int, st: PrimState, timeout: float | None,
              frame: FrameType | tuple[Any, int] | None) -> None:
    """A condition wait starts. No check: the waiter still holds the lock a notify needs, so no
    cycle can close here; the thread that later takes that lock and blocks will see it."""
    register(Wait(me, st, "cond_wait", timeout, frame), check=False)


def wait_sem(me: int, st: PrimState, timeout: float | None, frame: FrameType | None) -> None:
    """A semaphore acquire is about to block: register and check (may raise)."""
    register(Wait(me, st, "sem_acquire", timeout, frame))


def wait_other(me: int, st: PrimState, what: str, timeout: float | None,
               frame: FrameType | None) -> None:
    """An Event or Barrier wait: registered for snapshots and long waits; never in a cycle."""
    register(Wait(me, st, what, timeout, frame), check=False)


# -- fork --------------------------------------------------------------------------------------
def _after_fork_child() -> None:
    global _pid
    _pid = os.getpid()
    WAITS.clear()  # the parent's other threads do not exist here; the forking one is running
    _natives.clear()
    _by_native.clear()


os.register_at_fork(after_in_child=_after_fork_child)
