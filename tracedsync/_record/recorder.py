"""The per-process recorder: buffer, flusher thread, flush on demand, fork and exit.

Design note. The application thread only appends a tuple to ``_runtime.buffer`` (a deque; the
append is atomic under the GIL). Everything else happens under ``_write_lock``, a raw
``_thread`` lock that no traced code ever waits on while holding a traced primitive's internals:

* the flusher (a raw ``_thread`` thread, invisible to ``threading.enumerate()``) wakes every
  ``flush_interval`` seconds, drains the deque with ``popleft`` (atomic too), decodes the tuples
  into events and hands them to the sink;
* `flush()` does the same in the caller's thread (blocking on the write lock is safe: the holder
  is the flusher or another flush, neither of which waits on user locks);
* a thread that finds the buffer over its limit flushes only if it gets the write lock without
  blocking, so it can never deadlock with a flusher that is running user processors.

While any of this runs, ``_runtime.guard.on`` is set in that thread, so primitives created by
structlog, logging or user processors from inside the recorder are never traced.

Fork: ``os.register_at_fork`` gives the child a fresh deque (the parent's unflushed events stay
the parent's), a fresh write lock (the parent's may have been held by a thread that does not
exist in the child), a new file, and no flusher until the next event. Exit: ``atexit`` writes
per-primitive counters and ``session_end``; a forked child that leaves through ``os._exit``
(multiprocessing) is caught by ``threading``'s own shutdown hook instead.
"""

from __future__ import annotations

import _thread
import atexit
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._core import runtime as rt
from .._core.diagnostics import report
from .._core.native import NATIVE
from .._core.ops import OP_SESSION_END, OP_STATS
from .._core.registry import report_all
from .._version import SCHEMA_VERSION, __version__
from . import native_flush, sighandlers
from .config import ConfigError, Settings
from .decode import Decoder, Event
from .sink import Sink

_CHUNK = 256
OVERFLOW_SLACK = 4
"""With ``overflow="flush"``, the Python channel drops past this many times its limit."""
IDLE_CHECK = 5.0
"""Seconds an idle flusher sleeps at most (see `Recorder._sleep`)."""


_BOOT_ID: list[str | None] = []


def boot_id() -> str | None:
    """This boot of this machine (Linux's random boot id), read once; None where there is none.

    With the hostname it tells hosts apart in logs analysed together: process ids and the
    monotonic clock mean something only within one boot of one machine."""
    if not _BOOT_ID:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
                _BOOT_ID.append(fh.read().strip() or None)
        except OSError:
            _BOOT_ID.append(None)
    return _BOOT_ID[0]


def _mp_identity() -> tuple[str | None, int | None]:
    """multiprocessing's name for this process (``"MainProcess"``, ``"Process-1"``, a pool
    worker's) and the pid of the process that started it (under forkserver, not the fork server
    that forked it); ``(None, None)`` if the program does not use multiprocessing (it is not
    imported for this)."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return None, None
    try:
        parent = mp.parent_process()
        return str(mp.current_process().name), None if parent is None else int(parent.pid)
    except Exception:  # a half-initialised module
        return None, None


def _hostname() -> str:
    """The host's name: ``uname``'s node name, which is what ``socket.gethostname()`` returns on
    POSIX, without importing socket (``import tracedsync`` does not; and a header may be made in
    a signal handler)."""
    uname = getattr(os, "uname", None)
    if uname is not None:
        return str(uname().nodename)
    import socket

    return socket.gethostname()


class Recorder:
    """One per process. Use the module-level `RECORDER`."""

    def __init__(self) -> None:
        try:
            self.settings = Settings.from_env()
        except ConfigError as exc:
            report(f"{exc}; using the defaults")
            self.settings = Settings()
        self._write_lock = _thread.allocate_lock()
        self._start_lock = _thread.allocate_lock()
        self._py_wake = _thread.allocate_lock()
        self._py_wake.acquire()
        self._py_waiting = False
        self._pid = os.getpid()
        self._ppid = os.getppid()
        self._decoder = Decoder(self._pid)
        self._sink: Sink | None = None
        self._flusher_pid: int | None = None
        # Events recorded by the flusher thread itself (a user processor or logger that takes a
        # traced lock) are dropped when decoded: writing them would record more, forever.
        self._flusher_ident: int | None = None
        self._stop = False
        self._closed = False  # set by the exit's last write
        self._ended = False
        self._dropped = 0
        self._dropped_unreported = 0
        self._written = 0
        self._part = 0  # session headers this process has written (`session_header`)
        self.captures: list[list[Event]] = []
        # Runtime detection (_detect.py, _watchdog.py...) plugs in here: ``config_hooks`` get the
        # new settings after every configure(); ``tick_hooks`` run in the flusher thread, just
        # before each periodic flush, so what they record is written in the same tick. A hook
        # that raises is reported once and removed (it must never stop the flusher).
        self.config_hooks: list[Callable[[Settings], None]] = []
        self.tick_hooks: list[Callable[[], None]] = []
        # A tick hook that must run every flush_interval even when nothing is recorded (a
        # thread is blocked: long waits, deadlocks) says so here; otherwise the flusher sleeps.
        self.tick_needed: list[Callable[[], bool]] = []
        rt.set_level(rt.LEVELS[self.settings.level])
        rt.limit = self.settings.buffer_limit
        if NATIVE is not None:
            NATIVE.set_budget(self.settings.buffer_bytes)

    # -- configuration ---------------------------------------------------------------------
    def configure(self, settings: Settings) -> None:
        """Apply ``settings``; events recorded so far are flushed under the old ones first."""
        self.flush()
        with self._locked():
            old = self.settings
            self.settings = settings
            if self._sink is not None and (
                settings.log_dir != old.log_dir
                or settings.processors != old.processors
                or settings.logger is not old.logger
            ):
                self._sink.close()
                self._sink = None
            elif self._sink is not None:
                self._sink.max_bytes = settings.max_log_bytes
        rt.limit = settings.buffer_limit
        if NATIVE is not None:
            NATIVE.set_budget(settings.buffer_bytes)
        rt.set_level(rt.LEVELS[settings.level])
        os.environ.update(settings.to_env())
        for hook in list(self.config_hooks):
            hook(settings)

    def update(self, **changes: Any) -> Settings:
        """`configure` these ``changes`` (see `tracedsync.configure`); the settings now in force."""
        new = self.settings.replace(**changes)
        self.configure(new)
        return new

    @property
    def path(self) -> str:
        """This process's log file."""
        return os.path.join(os.path.abspath(self.settings.log_dir), f"tracedsync-{self._pid}.jsonl")

    # -- the flusher -------------------------------------------------------------------------
    def ensure_started(self) -> None:
        """Start this process's flusher thread if it is not running (cheap when it is)."""
        if self._flusher_pid == self._pid or self._stop:
            return
        with self._start_lock:
            if self._flusher_pid == self._pid:
                return
            self._flusher_pid = self._pid
            with sighandlers.kept_out_of_new_threads():  # signals go to the program's threads
                _thread.start_new_thread(self._run, ())

    def _run(self) -> None:
        rt.guard.on = True
        self._flusher_ident = _thread.get_ident()
        pid = self._pid
        idle = False
        while not self._stop and pid == self._pid:
            try:
                self._sleep(idle)
                if pid != self._pid:  # pragma: no cover - a forked copy cannot exist
                    return
                self._tick()
                idle = self._flush_counted() == 0 and not self._ticks_needed()
            except BaseException as exc:  # never let the flusher die (a processor's DropEvent)
                report(f"the flusher caught {exc!r} and goes on")
                idle = False

    def _sleep(self, idle: bool) -> None:
        """Wait for the next flush: ``flush_interval``, or, after a flush that found nothing
        (``idle``), until something is recorded (the native recorder wakes us at the next
        record; a tuple from the Python channel, through `_emit_and_wake`). An idle program
        costs nothing. A bound of IDLE_CHECK seconds covers an emit that raced our sleep."""
        native = NATIVE
        if native is None:
            # The pure-Python twin sleeps its interval; `wake` cuts it short.
            self._py_waiting = True
            self._py_wake.acquire(timeout=self.settings.flush_interval)
            self._py_waiting = False
            return
        if idle:
            rt.emit = self._emit_and_wake
            if len(rt.buffer):  # recorded while we switched
                rt.emit = rt.buffer.append
            else:
                native.wait_for_work(IDLE_CHECK, True)
                rt.emit = rt.buffer.append
        native.wait_for_work(self.settings.flush_interval)

    @staticmethod
    def _emit_and_wake(item: tuple[Any, ...]) -> None:
        rt.emit = append = rt.buffer.append
        append(item)
        if NATIVE is not None:
            NATIVE.wake()

    def _ticks_needed(self) -> bool:
        return any(need() for need in self.tick_needed)

    def _tick(self) -> None:
        for hook in list(self.tick_hooks):
            try:
                hook()
            except Exception as exc:
                report(f"a periodic check failed and was switched off: {exc!r}")
                try:
                    self.tick_hooks.remove(hook)
                except ValueError:  # pragma: no cover - removed concurrently
                    pass

    # -- flushing ----------------------------------------------------------------------------
    def _locked(self) -> Any:
        return _Guarded(self._write_lock)

    def flush(self) -> None:
        """Write everything recorded so far (in any thread) to the sink."""
        with self._locked():
            self._flush_locked()

    def _flush_counted(self) -> int:
        """`flush`, returning how many events it wrote."""
        with self._locked():
            return self._flush_locked()

    def try_flush(self) -> bool:
        """Flush if the write lock is free right now; never blocks."""
        if not self._write_lock.acquire(False):
            return False
        was = getattr(rt.guard, "on", False)
        rt.guard.on = True
        try:
            self._flush_locked()
        finally:
            rt.guard.on = was
            self._write_lock.release()
        return True

    def overflow(self) -> None:
        """Called by a recording thread that found the Python channel over its limit. It never
        flushes or waits: with ``overflow="flush"`` it wakes the flusher, and drops only past
        four times the limit (so memory stays bounded when the flusher cannot keep up); with
        ``"drop"`` it drops past the limit."""
        limit = rt.limit
        if self.settings.overflow != "drop":
            self.wake()
            limit *= OVERFLOW_SLACK
        # Drop the newest events down to the limit. Each pop removes exactly one event, so the
        # count is exact; it is reported by the next flush as a `dropped` event.
        buf = rt.buffer
        n = 0
        try:
            while len(buf) > limit:
                buf.pop()
                n += 1
        except IndexError:  # pragma: no cover - drained concurrently
            pass
        self._dropped += n
        self._dropped_unreported += n

    def wake(self) -> None:
        """End the flusher's sleep now (never blocks)."""
        if NATIVE is not None:
            NATIVE.wake()
        elif self._py_waiting:
            self._py_waiting = False
            try:
                self._py_wake.release()
            except RuntimeError:  # pragma: no cover - released concurrently
                pass

    def _flush_locked(self) -> int:
        if self._closed:  # after the exit's last write: nothing more is written
            return 0
        if NATIVE is not None:
            return native_flush.flush(self)
        buf = rt.buffer
        n = len(buf)
        written = n
        if not n and not self._dropped_unreported and (self._sink is not None
                                                        or not self.captures):
            return 0
        # Work in chunks: decoding and rendering a few hundred events at a time keeps the
        # rendered bytes small and cache-friendly (rendering 100k events before one join was
        # measured at 5 µs/event and 8 KiB of RSS per event with orjson; 256 at a time, 0.5 µs).
        pop = buf.popleft
        decode = self._decoder
        first = True
        while n > 0:
            take = min(n, _CHUNK)
            n -= take
            events: list[Event] = []
            if first and self._dropped_unreported:
                n_dropped, self._dropped_unreported = self._dropped_unreported, 0
                events.append({"event": "dropped", "ts": rt.now(), "pid": self._pid,
                               "tid": None, "count": n_dropped, "reason": "overflow"})
            first = False
            try:
                # Events recorded by the flusher thread itself are dropped (writing them would
                # record more, forever), but for the `stats` of a primitive that happened to be
                # collected in it (its counters would vanish).
                skip = self._flusher_ident
                for _ in range(take):
                    item = pop()
                    if item[2] == skip and item[0] != OP_STATS:
                        continue
                    try:
                        events.append(decode(item))
                    except Exception as exc:  # pragma: no cover - a decoder bug must not kill us
                        report(f"could not decode {item[:2]!r}: {exc!r}")
            except IndexError:  # pragma: no cover - drained by someone else
                n = 0
            self._write(events)
        if first and self._dropped_unreported:
            n_dropped, self._dropped_unreported = self._dropped_unreported, 0
            self._write([{"event": "dropped", "ts": rt.now(), "pid": self._pid, "tid": None,
                          "count": n_dropped, "reason": "overflow"}])
        return written

    # -- what native_flush uses ----------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self._pid

    @property
    def flusher_ident(self) -> int | None:
        return self._flusher_ident

    @property
    def decoder(self) -> Decoder:
        return self._decoder

    def fast_path(self) -> bool:
        """Whether events may be rendered natively (the default sink; no capture in progress)."""
        s = self.settings
        return not self.captures and not s.processors and s.logger is None

    def open_sink(self) -> Sink:
        """The sink, made if it was not (it writes its file's session header first)."""
        if self._sink is None:
            s = self.settings
            self._sink = Sink(self.path, s.processors, s.logger, max_bytes=s.max_log_bytes,
                              opening=self._opening)
        return self._sink

    def write_events(self, events: list[Event]) -> None:
        """Write ``events`` through the sink (and to captures)."""
        self._write(events)

    def take_overflow_events(self) -> list[Event]:
        """The `dropped` event for tuples dropped on overflow, if any are unreported."""
        if not self._dropped_unreported:
            return []
        n, self._dropped_unreported = self._dropped_unreported, 0
        return [{"event": "dropped", "ts": rt.now(), "pid": self._pid, "tid": None,
                 "count": n, "reason": "overflow"}]

    def dropped_event(self, count: int) -> Event:
        """The `dropped` event for ``count`` events a failed write lost."""
        return self._dropped_event(count)

    def _write(self, events: list[Event]) -> None:
        if not events:
            return
        self.open_sink().write(events, self._dropped_event)
        self._written += len(events)
        for cap in self.captures:
            cap.extend(events)

    def _opening(self, lost: int | None) -> list[Event]:
        """The first events of each file (the sink's ``opening``): its own session header and,
        when a rotation deleted the oldest file to make room for it, a `dropped` event counting
        the events that file held."""
        events = [self.session_header()]
        if lost:
            events.append({"event": "dropped", "ts": rt.now(), "pid": self._pid, "tid": None,
                           "count": lost, "reason": "rotated"})
        self._written += len(events)
        for cap in self.captures:
            cap.extend(events)
        return events

    def _dropped_event(self, count: int) -> Event:
        return {"event": "dropped", "ts": rt.now(), "pid": self._pid, "tid": None,
                "count": count, "reason": "write_failed"}

    def session_header(self) -> Event:
        """The first line of every log file. ``part`` counts the headers this process wrote
        before (0 for its first file; a later one continues the same process's stream: after a
        rotation, or when `configure` reopened the file)."""
        ts = rt.now()
        process, parent = _mp_identity()
        part, self._part = self._part, self._part + 1
        return {
            "event": "session",
            "ts": ts,
            "pid": self._pid,
            "tid": threading.get_native_id(),
            "schema": SCHEMA_VERSION,
            "version": __version__,
            "ppid": parent or self._ppid,
            "process": process,
            "argv": list(sys.argv),
            "orig_argv": list(getattr(sys, "orig_argv", sys.argv)),
            "python": sys.version.split()[0],
            "implementation": sys.implementation.name,
            "executable": sys.executable,
            "hostname": _hostname(),
            "boot_id": boot_id(),
            "wall_ns": time.time_ns(),
            "mono_ns": ts,
            "part": part,
            "settings": self.settings.public(),
        }

    def add_capture(self, events: list[Event]) -> None:
        """Start copying every flushed event into ``events``."""
        self.flush()
        with self._locked():
            self.captures.append(events)

    def remove_capture(self, events: list[Event]) -> None:
        """Flush, then stop copying into ``events``."""
        self.flush()
        with self._locked():
            self.captures = [c for c in self.captures if c is not events]

    # -- exit --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Write counters and ``session_end``, flush. Idempotent per process."""
        if self._ended:
            self.flush()
            return
        self._ended = True
        if rt.level != rt.OFF:
            try:
                report_all()
            except Exception as exc:  # pragma: no cover
                report(f"could not write statistics at exit: {exc!r}")
        # A process that never recorded anything (tracedsync imported, nothing traced) leaves
        # no file behind.
        if self._sink is not None or len(rt.buffer) > 0:
            rt.emit((OP_SESSION_END, rt.now(), rt.get_ident(), {
                "dropped": self._dropped,
                "written": self._written + 1,
            }))
        self.flush()

    def _at_threading_shutdown(self) -> None:
        # multiprocessing children call threading._shutdown() at the end of Process._bootstrap
        # and then leave through os._exit (fork; forkserver before 3.13) without atexit. A
        # forkserver child usually imported tracedsync after its fork, so test for being a
        # multiprocessing child as well as for a changed pid.
        process = sys.modules.get("multiprocessing.process")
        child = process is not None and process.parent_process() is not None
        if os.getpid() != self._main_pid or child:
            self.shutdown()
        else:
            self.flush()

    def _at_exit(self) -> None:
        self._stop = True
        self.shutdown()
        # The last write: under the write lock, so no flush is half done, and none starts after
        # it (a daemon thread may still record and wake the flusher; a write cut short by the
        # process's exit would leave a torn line).
        with self._locked():
            self._closed = True
            if self._sink is not None:
                self._sink.close()

    # -- fork --------------------------------------------------------------------------------
    def _after_fork_child(self) -> None:
        if NATIVE is not None:
            # Every thread buffer's records are the parent's to write; this thread registers
            # again (new native id) at its next record.
            NATIVE.after_fork_child()
            NATIVE.render_after_fork()
            NATIVE.mp_after_fork()
        rt.reset_after_fork(deque())
        self._write_lock = _thread.allocate_lock()
        self._start_lock = _thread.allocate_lock()
        self._py_wake = _thread.allocate_lock()
        self._py_wake.acquire()
        self._py_waiting = False
        self._ppid, self._pid = self._pid, os.getpid()
        parent_tids = self._decoder.tids
        self._decoder = Decoder(self._pid)
        # The parent's threads do not exist here, but the child's events can still name them
        # (blocked_by a lock held at fork): keep their native ids, newer registrations win.
        self._decoder.tids.update(parent_tids)
        self._decoder.tids.update(rt.native_ids)
        if self._sink is not None:
            self._sink.close()  # the parent's descriptor: this child writes its own file
        self._sink = None
        self._flusher_pid = None
        self._flusher_ident = None
        self._ended = False
        self._closed = False
        self._dropped = 0
        self._dropped_unreported = 0
        self._written = 0
        self._part = 0
        self.captures = []

    def install(self) -> None:
        """Register the exit and fork hooks and point the hot path's hooks at this recorder
        (once per process, from `tracedsync._wiring`)."""
        rt.set_recorder_hooks(on_new_thread=self.ensure_started, on_overflow=self.overflow)
        self._main_pid = os.getpid()
        atexit.register(self._at_exit)
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            register(self._at_threading_shutdown)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_child)
        # No SIGTERM handler: a Python handler runs only in the main thread, between bytecodes,
        # so a SIGTERM could wait for ever behind a blocking call (a Pool worker after
        # terminate() hung so) where the default action ends the process at once. SIGTERM
        # ends a traced process exactly as an untraced one; it loses what the flusher had not
        # written yet (README, "Limits").


class _Guarded:
    """``with`` the write lock held and the recursion guard on."""

    __slots__ = ("_lock", "_was")

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self._was = False

    def __enter__(self) -> None:
        self._was = getattr(rt.guard, "on", False)
        rt.guard.on = True
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        rt.guard.on = self._was


RECORDER = Recorder()
"""This process's recorder (its hooks are installed by `tracedsync._wiring.connect`)."""
