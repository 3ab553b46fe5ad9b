"""`snapshot()`: who holds what and who waits for what, right now, with every thread's stack;
and the signal (SIGUSR1 by default) that writes one to the log.

Design note. A snapshot only reads: the live primitives' books (`_registry.live_states`: a
lock's ``owner``/``depth``/``t_hold``, a semaphore's permit holders), the wait-for table
(`tracedsync._core.waits.current`) and ``sys._current_frames()``, each with single, GIL-atomic
reads and copies.
So it can be taken from any thread, including a signal handler that interrupted a thread in
the middle of tracedsync's own code, and it takes no lock. Being a set of reads made one after
the other, it is a *nearly* instantaneous picture: a thread may let go of a lock between two
reads. Threads that belong to tracedsync itself (the flusher) are left out.

The signal handler. It records a ``snapshot`` event and flushes without blocking
(`Recorder.try_flush`: the interrupted main thread may be holding the recorder's write lock, in
which case the flusher writes the event within one ``flush_interval``). It is installed only:

* from the main thread (Python runs signal handlers there, and only it may install them): at
  import and on each `configure()` made in the main thread;
* over the *default* disposition: a program that set its own handler for that signal keeps it
  (we never chain or clobber), and a program that sets one later simply replaces ours. The
  program does not see ours: ``signal.getsignal`` says ``SIG_DFL`` (`_record.sighandlers`);
* where the signal exists (SIGUSR1 does not on Windows).

Changing ``snapshot_signal`` (or setting it to ``"none"``) puts the default back on the signal we
had taken, if our handler is still the one installed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from .._core import runtime as rt
from .._core.diagnostics import report
from .._core.ops import OP_GENERIC
from .._core.registry import live_states
from .._core.sites import format_stack, ours
from .._core.state import SemaphoreState, is_lock_state
from .._core.waits import current, native_id, thread_name
from .._multiprocessing import wait_table as _xwaits
from .._record import sighandlers
from .._record.config import Settings
from .._record.recorder import RECORDER
from . import deadlock
from .lockorder import acquired_at


@dataclasses.dataclass(frozen=True)
class Held:
    """A primitive a thread holds."""

    prim: str
    name: str | None
    kind: str
    depth: int
    """Recursion depth (RLock), 1 (Lock), or permits held (semaphores)."""
    held_ns: int | None
    """Time since the thread took it (locks; None for semaphores)."""
    site: str | None
    """Where it was taken (known when lock-order checking is on; else None)."""


@dataclasses.dataclass(frozen=True)
class WaitingFor:
    """What a blocked thread waits for."""

    prim: str
    name: str | None
    kind: str
    what: str
    """``acquire``, ``restore`` (re-acquire after a condition wait), ``cond_wait``,
    ``sem_acquire``, ``event_wait`` or ``barrier_wait``."""
    waited_ns: int
    timeout: float | None
    site: str | None
    """Where the thread waits (file:line)."""
    held_by: tuple[int, ...]
    """Native ids of the threads that could end the wait (a lock's holder, permit holders, the
    holder of a condition's lock); empty when unknown."""
    held_by_pid: tuple[int, ...] = ()
    """The process of each of ``held_by`` (a multiprocessing lock's holder may be elsewhere)."""


@dataclasses.dataclass(frozen=True)
class OtherWait:
    """A thread of another process blocked on a multiprocessing lock this process can know of
    (published in the shared wait table)."""

    pid: int
    tid: int
    prim: str
    kind: str | None
    what: str
    waited_ns: int | None
    timeout: float | None
    site: str | None
    """Where it waits (``file:line function``)."""
    held_by: tuple[int, int] | None
    """``(pid, tid)`` of the holder, as last read (it may have changed since)."""


@dataclasses.dataclass(frozen=True)
class ThreadSnapshot:
    """One thread: what it holds, what it waits for, its stack (outermost frame first)."""

    ident: int
    tid: int
    name: str
    alive: bool
    """False for a thread that has exited while still holding something."""
    holds: tuple[Held, ...]
    waiting: WaitingFor | None
    stack: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Who holds what and who waits for what in this process, at ``ts``."""

    ts: int
    pid: int
    threads: tuple[ThreadSnapshot, ...]
    deadlocks: tuple[tuple[int, ...], ...]
    """Cycles of threads (native ids) found deadlocked in the wait-for graph at that moment."""
    other_processes: tuple[OtherWait, ...] = ()
    """Threads of other processes blocked on multiprocessing locks shared with this one."""

    def thread(self, tid: int) -> ThreadSnapshot | None:
        """The entry of the thread with native id ``tid``."""
        for t in self.threads:
            if t.tid == tid:
                return t
        return None

    def as_dict(self) -> dict[str, Any]:
        """Plain data (the ``snapshot`` event's fields)."""
        return dataclasses.asdict(self)


def snapshot(*, record: bool = False) -> Snapshot:
    """Who holds what and who waits for what, right now, with every thread's stack.

    Covers this process's traced primitives (Lock, RLock, Condition, Semaphore,
    BoundedSemaphore, Event, Barrier) and every Python thread but tracedsync's own. With
    ``record=True`` it is also written to the log as a ``snapshot`` event (at once if the
    recorder is idle, else by the flusher within one ``flush_interval``).
    """
    guard = rt.guard
    was = getattr(guard, "on", False)
    guard.on = True
    try:
        snap = _take()
    finally:
        guard.on = was
    if record:
        _record(snap, "api")
    return snap


def _take() -> Snapshot:
    now = rt.now()
    pid = os.getpid()
    frames = sys._current_frames()
    waits = current()
    holds: dict[int, list[Held]] = {}
    for st in live_states():
        if is_lock_state(st):
            owner = st.owner
            if owner is not None:
                holds.setdefault(owner, []).append(Held(
                    st.prim, st.name, st.kind, st.depth, now - st.t_hold if st.t_hold else None,
                    acquired_at(owner, st)))
            continue
        held = st.held if isinstance(st, SemaphoreState) else None
        if held:
            for ident, n in tuple(held.items()):
                holds.setdefault(ident, []).append(
                    Held(st.prim, st.name, st.kind, n, None, None))
    idents = [i for i, f in frames.items() if not _ours(f)]
    idents += [i for i in (*holds, *waits) if i not in frames]
    threads = []
    for ident in sorted(dict.fromkeys(idents), key=_order):
        w = waits.get(ident)
        waiting = None
        if w is not None:
            code, line = w.site()
            owners = w.owners()
            waiting = WaitingFor(
                w.st.prim, w.st.name, w.st.kind, w.what, now - w.since, w.timeout,
                None if code is None else f"{code.co_filename}:{line}",
                tuple(o[1] if isinstance(o, tuple) else native_id(o) for o in owners),
                tuple(o[0] if isinstance(o, tuple) else pid for o in owners))
        threads.append(ThreadSnapshot(
            ident, native_id(ident), thread_name(ident), ident in frames,
            tuple(sorted(holds.get(ident, ()), key=lambda h: -(h.held_ns or 0))),
            waiting, tuple(format_stack(frames.get(ident)))))
    cycles: list[tuple[int, ...]] = []
    for ident in waits:
        cyc = deadlock.find_cycle(ident)
        if cyc is not None:
            tids = tuple(k[1] if isinstance(k, tuple) else native_id(k) for k, _ in cyc)
            if not any(set(tids) == set(c) for c in cycles):
                cycles.append(tids)
    others = tuple(
        OtherWait(r.pid, r.tid, r.prim, r.kind, r.what,
                  None if r.since is None else now - r.since, r.timeout, r.site,
                  r.owners[0] if r.owners and isinstance(r.owners[0], tuple) else None)
        for r in sorted(_xwaits.waits_of(), key=lambda r: (r.pid, r.tid)) if r.pid != pid)
    return Snapshot(now, pid, tuple(threads), tuple(cycles), others)


def _ours(frame: FrameType) -> bool:
    """A thread of tracedsync's own (its outermost frame is in the package: the flusher)."""
    f: FrameType | None = frame
    outer = frame
    while f is not None:
        outer = f
        f = f.f_back
    return ours(outer.f_code.co_filename)


def _order(ident: int) -> tuple[int, str]:
    main = threading.main_thread().ident
    return (0 if ident == main else 1, thread_name(ident))


def _record(snap: Snapshot, reason: str) -> None:
    """Record ``snap`` as a ``snapshot`` event, and flush if the recorder is idle."""
    if not rt.level:
        return  # level "off": nothing is written
    fields = snap.as_dict()
    del fields["ts"], fields["pid"]
    fields["reason"] = reason
    try:
        me = rt.tls.ident
    except AttributeError:
        me = rt.register_thread()
    rt.emit((OP_GENERIC, snap.ts, me, "snapshot", fields, None, 0))
    RECORDER.try_flush()


# -- the signal ----------------------------------------------------------------------------------
_installed: int | None = None  # the signal number whose handler is ours


def _on_signal(signum: int, frame: Any) -> None:
    try:
        _record(snapshot(), f"signal {signal.Signals(signum).name}")
    except Exception as exc:  # pragma: no cover - never let a snapshot kill the program
        report(f"could not write a snapshot: {exc!r}")


def _resolve(name: str) -> int | None:
    if name.lower() in ("", "none"):
        return None
    key = name.upper()
    if not key.startswith("SIG"):
        key = "SIG" + key
    sig = getattr(signal, key, None)
    return int(sig) if sig is not None else None


def install_signal(name: str) -> bool:
    """Install the snapshot handler for signal ``name`` if we may (see the design note);
    give back the one we had, if any. Returns whether our handler is installed now."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return _installed is not None
    want = _resolve(name)
    if _installed is not None and _installed != want:
        sighandlers.uninstall(_installed)
        _installed = None
    if want is None or _installed == want:
        return _installed is not None
    if not sighandlers.install(want, _on_signal):
        return False
    _installed = want
    return True


def apply_settings(settings: Settings) -> None:
    """Install (or give back) the snapshot signal handler as ``snapshot_signal`` says."""
    install_signal(settings.snapshot_signal)
