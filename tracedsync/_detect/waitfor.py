"""The wait-for graph: which thread waits for which primitive, held by whom; real deadlocks.

Design note (the concurrency reasoning; read it before changing anything here).

The table. `WAITS` maps a thread's ident to its `Wait`: what it is blocked on, since when, where.
A thread registers *itself* just before it blocks (after its non-blocking try failed) and removes
itself in a ``finally`` once the blocking call returns or raises. Both are single dict operations
(``WAITS[me] = w``, ``WAITS.pop(me, None)``), atomic under the GIL, and only the thread itself
ever writes its key, so the table needs no lock at all; other threads (a checker, the watchdog,
a snapshot) only read it with ``get`` or an atomic ``copy``. Nothing here takes any lock that the
traced program could hold, nor any lock at all: registering cannot deadlock and costs a few
hundred nanoseconds, paid only by an acquire that is about to block anyway.

Who holds what comes from the primitives' own books: ``PrimState.owner`` (a Lock/RLock's holder;
written by the holder after the real acquire and cleared *before* the real release, so
``owner == U`` means that U really holds it at that instant) and a semaphore's ``held`` map. A
wait's *owners* are the threads that could end it: the lock's holder; every permit holder of a
semaphore; for a condition wait, the holder of the condition's lock (only a thread holding that
lock can notify, so if its holder is stuck nobody can); nobody known for an Event or a Barrier.

The check. A thread T that is about to block walks from itself: T waits for owners(T's wait),
each of which waits for its own owners, and so on. T is deadlocked when every thread reachable
this way is itself registered as waiting with at least one known owner (nobody reachable is
running, so nobody can release anything; for a lock, one owner each, this is simply a cycle back
to T). T *reports* only when it lies on a cycle itself: a thread stuck behind others' deadlock is
a victim, and the cycle was reported by whoever closed it. Of two threads closing a cycle at
the same time, at least one sees the other: each registers before it checks, so the later check
sees the earlier registration.

No false alarm from a moment-old read. The walk reads other threads' entries one at a time,
while they run. So a cycle found is confirmed by a second pass in reverse discovery order that
must read exactly the same `Wait` objects and owners. For a simple cycle T → U1 → ... → Uk → T
this is a proof: owner(last lock) == T stays true (T is here, checking); then Uk, registered on a
lock T holds, stays blocked; then the lock Uk holds stays held... each confirmed edge stays true
given the ones confirmed before it, so at the end of the pass all hold at once. Limits: a plain
``Lock`` may be released by a thread other than its holder, a semaphore by anyone, and a wait
with a timeout ends by itself; a cycle through those is reported (with each wait's ``timeout``)
but might have resolved.

What is reported. A ``deadlock`` event (OP_GENERIC, decoded in the flusher) with the cycle's
threads, what each waits for and where, and every involved thread's stack from
``sys._current_frames()``; then an immediate *non-blocking* flush (`Recorder.try_flush`): the
write lock may be held by a thread that is itself part of the cycle (a flush running user
processors), so we never wait for it; if it is busy, the flusher writes the event within one
``flush_interval``. With ``on_deadlock="raise"`` the thread that closed the cycle unregisters and
raises `DeadlockError` instead of blocking, if its own wait has no timeout (one with a timeout
keeps its contract: it is reported, then returns False when the timeout expires), and except
for the re-acquire inside ``Condition.wait``, which only reports: failing there would leave the
caller without its lock.

API for other primitives (the multiprocessing locks call these; all run in the waiting thread):

* ``waiting(st, owners, *, timeout=None, what="acquire", frame=None, may_raise=True)``:
  register the calling thread as blocked on primitive ``st`` (its `PrimState`) and check for a
  cycle. ``owners`` is a callable returning the keys of the threads that could end the wait, now:
  an ``int`` is a thread of this process (its ``threading.get_ident()``), a ``(pid, native_tid)``
  pair a thread of any process (this one's own pid is mapped back to the ident). May raise
  `DeadlockError`, after unregistering.
* ``done()``: the calling thread is no longer blocked (call it in a ``finally``).
* ``set_remote(lookup)``: ``lookup(pid, native_tid)`` returns a `RemoteWait` describing what a
  thread of *another* process waits for (from shared records), or None if it is not known to
  wait. Without it, a walk that reaches another process stops there (no report).
"""

from __future__ import annotations

import _thread
import dataclasses
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Any

from .._core import runtime as rt
from .._core.ops import OP_GENERIC
from .._core.state import PrimState
from .._record.config import Settings
from .._record.recorder import RECORDER

Key = int | tuple[int, int]
"""A thread: its ident in this process, or ``(pid, native_tid)`` in any process."""

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_getframe = sys._getframe
_active: dict[int, Any] = threading._active  # type: ignore[attr-defined]
_MAX_WALK = 10_000
_STACK_LIMIT = 40


class DeadlockError(RuntimeError):
    """Raised, with ``on_deadlock="raise"``, in the thread whose blocking acquire would close a
    cycle of threads each waiting for a primitive the next one holds. ``cycle`` is the list the
    ``deadlock`` event carries; the acquire did not take the primitive."""

    def __init__(self, message: str, cycle: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.cycle: list[dict[str, Any]] = [] if cycle is None else cycle

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.cycle))


# -- the table ----------------------------------------------------------------------------------
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
        frame: FrameType | None,
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
        what = self.what
        st = self.st
        if self.owners_fn is not None:
            return _normalise(self.owners_fn())
        if what == "acquire" or what == "restore":
            o = st.owner
            return () if o is None else (o,)
        if what == "cond_wait":
            lock_st = st.lock_state
            o = None if lock_st is None else lock_st.owner
            # Before the real wait has released the lock, its holder is the waiter itself.
            return () if o is None or o == self.ident else (o,)
        if what == "sem_acquire":
            return tuple(st.held)  # one C-level copy: atomic under the GIL
        return ()  # Event, Barrier: any thread may end the wait

    def site(self) -> tuple[Any, int]:
        """``(code, line)`` of the user's frame that waits (``(None, 0)`` if unknown)."""
        f = self.frame
        if f is None:
            return None, 0
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


WAITS: dict[int, Wait] = {}
"""ident → the `Wait` of every thread of this process blocked on a traced primitive now."""

_remote: Callable[[int, int], RemoteWait | None] | None = None
_raise = False
_pid = os.getpid()
_natives: dict[int, int] = {}  # ident → native id, for threads threading does not know
_by_native: dict[int, int] = {}  # native id → ident (for (pid, tid) keys of this process)


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


# -- registration (called by the traced primitives, in the waiting thread) ---------------------
def register(w: Wait, *, check: bool = True, may_raise: bool = True) -> None:
    """Enter ``w`` for its thread and, if ``check``, look for a cycle it closes."""
    me = w.ident
    if me not in _natives and me not in _active:
        _natives[me] = threading.get_native_id()  # a thread threading does not know
    WAITS[me] = w
    if check:
        cycle = find_cycle(me)
        if cycle is not None:
            _deadlock(cycle, me, "acquire", may_raise)


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
    try:
        me = rt.tls.ident
    except AttributeError:
        me = rt.register_thread()
    if frame is None:
        frame = _user_frame()
    register(Wait(me, st, what, timeout, frame, owners), may_raise=may_raise)


def done() -> None:
    """The calling thread is no longer blocked."""
    WAITS.pop(_thread.get_ident(), None)


def forget(me: int) -> None:
    """`done` for a caller that knows its ident (the lock paths)."""
    WAITS.pop(me, None)


def _user_frame() -> FrameType | None:
    f: FrameType | None = _getframe(2)
    while f is not None and (f.f_code.co_filename.startswith(_PKG_DIR)
                             or f.f_code.co_filename == threading.__file__):
        f = f.f_back
    return f


# -- the walk -------------------------------------------------------------------------------
Node = Wait | RemoteWait


def _lookup(key: Key) -> Node | None:
    if isinstance(key, tuple):
        if _remote is None:
            return None
        try:
            return _remote(key[0], key[1])
        except Exception:  # a lookup that fails knows nothing
            return None
    return WAITS.get(key)


def _owners(node: Node) -> tuple[Key, ...]:
    if isinstance(node, RemoteWait):
        return _normalise(node.owners)
    return node.owners()


def find_cycle(start: Key) -> list[tuple[Key, Node]] | None:
    """The cycle through ``start`` if ``start`` is deadlocked and on a cycle, else None.

    Returns ``[(thread, its wait), ...]`` where each thread waits for a primitive that the next
    one holds, and the last one for a primitive ``start`` holds (``start`` first).
    """
    found: dict[Key, tuple[Node, tuple[Key, ...]]] = {}
    order: list[Key] = []
    todo: list[Key] = [start]
    while todo:
        k = todo.pop()
        if k in found:
            continue
        node = _lookup(k)
        if node is None:
            return None  # running (or unknown): it may still release what it holds
        owners = _owners(node)
        if not owners:
            return None  # nobody known: anyone may end the wait
        found[k] = (node, owners)
        order.append(k)
        if len(order) > _MAX_WALK:
            return None
        todo.extend(owners)
    if not any(start in owners for _, owners in found.values()):
        return None  # stuck behind others' deadlock, not part of it
    for k in reversed(order):  # the confirming pass (see the design note)
        node, owners = found[k]
        now = _lookup(k)
        if now is not node and not (isinstance(node, RemoteWait) and now == node):
            return None  # a local wait must be the very same one; a remote one, equal
        if _owners(node) != owners:
            return None
    path = _path_back(start, {k: v[1] for k, v in found.items()})
    cycle = [(k, found[k][0]) for k in path]
    return cycle if _fresh_enough(cycle) else None


def _fresh_enough(cycle: list[tuple[Key, Node]]) -> bool:
    """Whether every edge read from a possibly stale record still holds.

    A remote wait's holder may have been read a while ago (``read_at``): it still holds the
    lock if its own wait began before that read, for a blocked thread releases nothing. If
    not, the cycle is left to a later pass, after the holder's process refreshed the read."""
    n = len(cycle)
    for i, (_, node) in enumerate(cycle):
        if isinstance(node, RemoteWait) and node.read_at is not None:
            since = cycle[(i + 1) % n][1].since
            if since is None or since > node.read_at:
                return False
    return True


def _path_back(start: Key, edges: dict[Key, tuple[Key, ...]]) -> list[Key]:
    """The shortest path start → ... → k such that k waits for start (breadth first)."""
    prev: dict[Key, Key] = {}
    queue: deque[Key] = deque([start])
    while queue:
        k = queue.popleft()
        for o in edges.get(k, ()):
            if o == start:
                path = [k]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                path.reverse()
                return path
            if o not in prev:
                prev[o] = k
                queue.append(o)
    return [start]  # pragma: no cover - find_cycle checked that start is on a cycle


# -- reporting ------------------------------------------------------------------------------
def format_stack(frame: FrameType | None, limit: int = _STACK_LIMIT) -> list[str]:
    """``"file:line function"`` per frame, outermost first, without tracedsync's own frames
    (the stack reads as if the program called ``threading`` directly); at most ``limit``
    innermost frames."""
    f = frame
    out: list[str] = []
    while f is not None and len(out) < limit:
        code = f.f_code
        if not code.co_filename.startswith(_PKG_DIR):
            name = getattr(code, "co_qualname", code.co_name)
            out.append(f"{code.co_filename}:{f.f_lineno} {name}")
        f = f.f_back
    out.reverse()
    return out


def _site_text(code: Any, line: int) -> tuple[str | None, str | None]:
    if code is None:
        return None, None
    return f"{code.co_filename}:{line}", getattr(code, "co_qualname", code.co_name)


def describe(
    key: Key, node: Node, holder: Key | None, frames: dict[int, FrameType], now: int
) -> dict[str, Any]:
    """One thread's entry in a ``deadlock`` cycle: who, what it waits for, where, its stack."""
    if isinstance(node, RemoteWait):
        where, _, name = (node.site or "").partition(" ")
        return {
            "pid": node.pid, "tid": node.tid, "prim": node.prim, "name": node.name,
            "kind": node.kind, "what": node.what, "site": where or None, "func": name or None,
            "waited_ns": None if node.since is None else now - node.since,
            "timeout": node.timeout,
            "held_by": _tid_of(holder), "held_by_pid": _pid_of(holder),
            "stack": list(node.stack) if node.stack is not None else None,
        }
    st = node.st
    code, line = node.site()
    site, func = _site_text(code, line)
    entry: dict[str, Any] = {
        "pid": _pid,
        "tid": native_id(node.ident),
        "ident": node.ident,
        "thread": thread_name(node.ident),
        "prim": st.prim,
        "name": st.name,
        "kind": st.kind,
        "what": node.what,
        "site": site,
        "func": func,
        "waited_ns": now - node.since,
        "timeout": node.timeout,
        "held_by": _tid_of(holder),
    }
    if _pid_of(holder) != _pid:
        entry["held_by_pid"] = _pid_of(holder)
    if node.what == "cond_wait" and st.lock_state is not None:
        entry["lock"] = st.lock_state.prim  # a notify needs it; held_by holds it
    entry["stack"] = format_stack(frames.get(node.ident))
    return entry


def _tid_of(key: Key | None) -> int | None:
    if key is None:
        return None
    if isinstance(key, tuple):
        return key[1]
    return native_id(key)


def _pid_of(key: Key | None) -> int | None:
    if key is None:
        return None
    return key[0] if isinstance(key, tuple) else _pid


def cycle_entries(cycle: list[tuple[Key, Node]]) -> list[dict[str, Any]]:
    """The ``cycle`` field of a ``deadlock`` event."""
    frames = sys._current_frames()
    now = rt.now()
    n = len(cycle)
    return [describe(k, node, cycle[(i + 1) % n][0], frames, now)
            for i, (k, node) in enumerate(cycle)]


def _deadlock(cycle: list[tuple[Key, Node]], me: int, detected_by: str, may_raise: bool) -> None:
    entries = cycle_entries(cycle)
    for _, node in cycle:
        if isinstance(node, Wait):
            node.deadlocked = True
    mine = cycle[0][1]
    certain = _certain(cycle)
    # Raise only instead of an untimed wait: an acquire with a timeout keeps its contract (it
    # returns False when the timeout expires), so it is reported and left to time out. And only
    # when the cycle is certain: a plain Lock or a semaphore may legally be released by a thread
    # outside the cycle (a Lock used as a signal waits on itself by design), so raising there
    # could break a correct program.
    action = "raise" if (
        _raise and may_raise and certain and detected_by == "acquire"
        and isinstance(mine, Wait) and mine.timeout is None
    ) else "report"
    code, line = mine.site() if isinstance(mine, Wait) else (None, 0)
    rt.emit((OP_GENERIC, rt.now(), me, "deadlock",
             {"detected_by": detected_by, "action": action, "certain": certain,
              "cycle": entries}, code, line))
    # Written now if the recorder is idle; never wait for its lock (see the design note).
    entry = WAITS.get(me)
    RECORDER.try_flush()
    if entry is not None and WAITS.get(me) is not entry:
        # A sink processor that took a traced lock in this thread replaced (and removed) our
        # entry; we are still about to block on ours.
        WAITS[me] = entry
    if action == "raise":
        WAITS.pop(me, None)
        raise DeadlockError(deadlock_message(entries), entries)


def _certain(cycle: list[tuple[Key, Node]]) -> bool:
    """Whether nothing outside the cycle can end it.

    Certain when every wait can only be ended by its recorded holder (RLocks, conditions over
    one). A cycle of two or more threads through plain Locks or semaphores is counted as certain
    too: that is the classic deadlock, and a thread outside it releasing one of those locks is
    rare. A thread waiting for a plain Lock it holds itself is certain only when no other thread
    is alive: otherwise it may be the Lock-as-a-signal pattern, where another thread releases it.
    """
    if all(_owned(node) for _, node in cycle):
        return True
    if len(cycle) >= 2:
        return True
    (_, node), = cycle
    if isinstance(node, RemoteWait) or node.owners_fn is not None:
        return False  # a multiprocessing Lock: another process may release it
    return threading.active_count() <= 1


def _owned(node: Node) -> bool:
    """Whether only the recorded holder can end this wait (an RLock, or a condition over one).

    A plain Lock or a semaphore can be released by any thread, so a cycle through one is a
    likely deadlock, not a certain one."""
    if isinstance(node, RemoteWait):
        return node.kind == "RLock"
    st = node.st
    if node.what == "cond_wait":
        return st.lock_state is not None and bool(st.lock_state.reentrant)
    return bool(st.reentrant)


def deadlock_message(entries: list[dict[str, Any]]) -> str:
    """One line naming each thread, what it waits for, and who holds that."""
    parts = []
    for e in entries:
        name = e.get("name")
        what = f"{e.get('kind') or 'primitive'} {e.get('prim')}" + (f" {name!r}" if name else "")
        who = e.get("thread") or f"pid {e.get('pid')} tid {e.get('tid')}"
        where = f" at {e['site']}" if e.get("site") else ""
        held = "whose lock is held by" if e.get("what") == "cond_wait" else "held by"
        by_pid = e.get("held_by_pid")
        by = f"pid {by_pid} tid" if by_pid is not None and by_pid != _pid else "tid"
        parts.append(f"{who} waits for {what}{where}, {held} {by} {e.get('held_by')}")
    return "deadlock: " + "; ".join(parts)


def scan() -> int:
    """Look for cycles that no check at registration saw (the watchdog calls this each tick);
    report each once. Returns how many were found."""
    found = 0
    for ident, w in WAITS.copy().items():
        if w.deadlocked:
            continue
        cycle = find_cycle(ident)
        if cycle is not None:
            _deadlock(cycle, ident, "watchdog", False)
            found += 1
    return found


# -- the lock paths' helpers ----------------------------------------------------------------
def wait_lock(me: int, st: PrimState, timeout: float, frame: FrameType | None) -> None:
    """A Lock/RLock acquire is about to block: register and check (may raise)."""
    register(Wait(me, st, "acquire", timeout, frame))


def wait_restore(me: int, st: PrimState) -> None:
    """The re-acquire at the end of a condition wait is about to block: register and check
    (report only: see the design note)."""
    register(Wait(me, st, "restore", None, _user_frame()), may_raise=False)


def wait_cond(me: int, st: PrimState, timeout: float | None, frame: FrameType | None) -> None:
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


# -- settings and fork ----------------------------------------------------------------------
def _apply(settings: Settings) -> None:
    global _raise
    _raise = settings.on_deadlock == "raise"


def _after_fork_child() -> None:
    global _pid
    _pid = os.getpid()
    WAITS.clear()  # the parent's other threads do not exist here; the forking one is running
    _natives.clear()
    _by_native.clear()


_apply(RECORDER.settings)
RECORDER.config_hooks.append(_apply)
os.register_at_fork(after_in_child=_after_fork_child)
