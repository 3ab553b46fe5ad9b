"""Deadlocks: the walk of the wait-for graph (`tracedsync._core.waits`) and what is reported.

Design note (the concurrency reasoning; read it before changing anything here).

The graph. Threads register their waits in `tracedsync._core.waits` (its design note says why
that needs no lock); `waits.owners_of` names the threads that could end a wait: a lock's holder,
every permit holder of a semaphore, the holder of a condition's lock (only a thread holding it
can notify, so if its holder is stuck nobody can), nobody known for an Event or a Barrier.
`check` is installed there (`tracedsync._wiring`) and runs in every thread that registers a wait
able to close a cycle.

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

A thread waiting for a plain ``Lock`` it holds itself while other threads live may be using
the Lock as a signal (another thread releases it): that wait is reported only once it has
lasted `SIGNAL_WAIT_NS`, by the watchdog (`_signal_wait`), and never raised.

How it ended. Every wait of a reported cycle records its end (`waits.forget`: a
``deadlock_end`` event, with whether it got the primitive or gave up, and after how long), so
that the report says what happened: a cycle broken by a timeout, or ended by a thread outside
it (a Lock used as a signal, a semaphore released by a thread that held no permit).

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

A walk that reaches a thread of another process continues through the lookup that the shared
wait table installs (`waits.set_remote`); without it, the walk stops there (no report).
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from types import FrameType
from typing import Any

from .._core import runtime as rt
from .._core.ops import OP_GENERIC
from .._core.sites import format_stack
from .._core.state import ConditionState, is_lock_state
from .._core.waits import (
    WAITS,
    Key,
    RemoteWait,
    Wait,
    current,
    lookup,
    native_id,
    owners_of,
    pid,
    thread_name,
)
from .._record.config import Settings
from .._record.recorder import RECORDER

_MAX_WALK = 10_000

Node = Wait | RemoteWait

_raise = False


class DeadlockError(RuntimeError):
    """Raised, with ``on_deadlock="raise"``, in the thread whose blocking acquire would close a
    cycle of threads each waiting for a primitive the next one holds. ``cycle`` is the list the
    ``deadlock`` event carries; the acquire did not take the primitive."""

    def __init__(self, message: str, cycle: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.cycle: list[dict[str, Any]] = [] if cycle is None else cycle

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.cycle))


# -- the walk -------------------------------------------------------------------------------
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
        node = lookup(k)
        if node is None:
            return None  # running (or unknown): it may still release what it holds
        owners = owners_of(node)
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
        now = lookup(k)
        if now is not node and not (isinstance(node, RemoteWait) and now == node):
            return None  # a local wait must be the very same one; a remote one, equal
        if owners_of(node) != owners:
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
        "pid": pid(),
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
    if _pid_of(holder) != pid():
        entry["held_by_pid"] = _pid_of(holder)
    if isinstance(st, ConditionState) and st.lock_state is not None:
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
    return key[0] if isinstance(key, tuple) else pid()


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
    entry = WAITS.get(me) if me == threading.get_ident() else None
    RECORDER.try_flush()
    if entry is not None and WAITS.get(me) is not entry:
        # A sink processor that took a traced lock in this thread replaced (and removed) our
        # entry; we are still about to block on ours. (Only our own: another thread's wait,
        # found by the watchdog, may have ended meanwhile.)
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
    if isinstance(st, ConditionState):
        return st.lock_state is not None and st.lock_state.reentrant
    return is_lock_state(st) and st.reentrant


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
        by = f"pid {by_pid} tid" if by_pid is not None and by_pid != pid() else "tid"
        parts.append(f"{who} waits for {what}{where}, {held} {by} {e.get('held_by')}")
    return "deadlock: " + "; ".join(parts)


SIGNAL_WAIT_NS = 1_000_000_000
"""How long a thread must have waited for a plain Lock it holds itself, while other threads
live, before that wait is reported (see `_signal_wait`)."""


def _signal_wait(cycle: list[tuple[Key, Node]]) -> bool:
    """Whether ``cycle`` is one thread waiting for a plain Lock it holds while other threads
    live: the Lock-as-a-signal pattern (another thread will release it) as often as a
    self-deadlock. Its own check does not report it; the watchdog does, once the wait has
    lasted `SIGNAL_WAIT_NS` (a signal that never comes), and `analyze` drops the report if the
    wait then ended by the lock being released (`deadlock_end`)."""
    return len(cycle) == 1 and not _certain(cycle)


def scan() -> int:
    """Look for cycles that no check at registration saw (the watchdog calls this each tick);
    report each once. Returns how many were found."""
    found = 0
    now = rt.now()
    for ident, w in current().items():
        if w.deadlocked:
            continue
        cycle = find_cycle(ident)
        if cycle is None:
            continue
        if _signal_wait(cycle) and now - w.since < SIGNAL_WAIT_NS:
            continue
        _deadlock(cycle, ident, "watchdog", False)
        found += 1
    return found


def check(me: int, may_raise: bool) -> None:
    """The checker `tracedsync._core.waits` runs when thread ``me`` registers a wait that can
    close a cycle: report the cycle it closes, if any (and raise, see the design note); a
    possible signal wait is left to the watchdog (`_signal_wait`)."""
    cycle = find_cycle(me)
    if cycle is not None and not _signal_wait(cycle):
        _deadlock(cycle, me, "acquire", may_raise)


def apply_settings(settings: Settings) -> None:
    """``on_deadlock`` from the settings in force."""
    global _raise
    _raise = settings.on_deadlock == "raise"


