"""One pass over one log file, folding its events into an `Aggregate`: the hot loop of analyze.

Design note. A log is mostly ``acquire`` and ``release`` lines; they go to a *kernel*
(`kernel.PyKernel`, or the native `_cscan.RawKernel` that also parses the lines), which keeps the
locks each thread holds and the per-(primitive, call site) statistics. Every other line comes
back here (`Scanner.line`), is parsed by orjson and handled by a method of `RareHandlers`.
Malformed events are not checked field by field: a handler raises somewhere, and the line is
reported (file:line) and skipped; an acquire or release is checked before anything is
changed (`hotdecode.hot_problem`), so a bad one changes nothing either.

Ordering. Lines of one file are in recording order, which is each *thread*'s program order but
not a global ``ts`` order. Everything stateful here is per thread (the locks a thread holds,
which call site took them, value reads before writes), except the condition-variable
bookkeeping for lost wake-ups, which is per condition and safe because a notify and a
``cond_wait`` are both recorded while holding the condition's lock.

Hold attribution. A ``release`` that brings the depth to 0 carries ``hold_ns`` but no call site;
the site is the one of the acquire that took that thread from depth 0 to 1, remembered in the
thread's held-locks table (which also yields the lock-order edges: acquiring B for the first
time while holding A adds A→B).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import orjson

from . import reader
from .aggregate import MAX_PROBLEMS, UNKNOWN_SITE, Aggregate, ProcessEnd, Source, Tally
from .feed import feed_bytes
from .handlers import CONDITION_EVENTS, HANDLERS, RareHandlers
from .hosts import qualify
from .hotdecode import HOT_EVENTS, blocking_of, decode_line, hot_problem, usable
from .inputs import size
from .kernel import HotPart, PyKernel
from .native import kernel_class
from .reader import Problem
from .sem_books import SemBooks
from .trace import RareTrace, TraceSpec

Event = dict[str, Any]


def new_kernel(defer: bool = False, native: bool | None = None) -> Any:
    """A kernel: the native one when it is available (or ``native`` is true), else Python's.
    A deferring one keeps `kernel.DEFER_EVENTS` events per thread (read at each call)."""
    from . import kernel

    cls = kernel_class() if native is not False else None
    if native and cls is None:
        raise RuntimeError("the native scanner (tracedsync.analysis._cscan) is not available")
    if cls is None:
        return PyKernel(defer, kernel.DEFER_EVENTS)
    return cls(defer, kernel.DEFER_EVENTS)


def hot_line(kernel: Any, raw: bytes) -> str | None:
    """Give ``raw`` to ``kernel`` if it is a usable acquire or release; its event name if it
    was, else None."""
    try:
        ev = decode_line(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if ev.event not in HOT_EVENTS or not usable(ev):
        return None
    if ev.event == "acquire":
        kernel.acquire(ev.tid, ev.prim, ev.site, ev.func, ev.ts, ev.ok, ev.depth, ev.contended,
                       ev.wait_ns, ev.restored, blocking_of(ev.blocking, ev.timeout),
                       ev.blocked_by)
    else:
        kernel.release(ev.tid, ev.prim, ev.depth, ev.hold_ns, ev.ts, ev.saved_depth)
    return ev.event


class Scanner(RareHandlers):
    """Folds the events of one file into an `Aggregate`: `scan` it, then `finish`."""

    def __init__(self, path: str, kernel: Any = None, trace: TraceSpec | None = None) -> None:
        self.path = path
        self.kernel = kernel if kernel is not None else new_kernel()
        self.trace: RareTrace | None = None
        if trace is not None:
            out = open(trace.path, "ab" if trace.append else "wb")  # noqa: SIM115
            self.trace = RareTrace(trace, self.kernel, out)
            if isinstance(self.kernel, PyKernel):
                self.kernel.one_by_one = True
        self.agg = Aggregate()
        self.source = Source(path=path)
        self.agg.sources.append(self.source)
        self.problems: list[Problem] = []
        self.pid = 0
        self.host: str | None = None
        self.pid_of: dict[int, int] = {}  # tid -> pid, from `thread` events
        self.ident_tid: dict[int, int] = {}  # threading ident -> native tid (for `stats`)
        self.waiting: dict[tuple[int, str], tuple[str, bool]] = {}  # (tid, cond) -> site, lost?
        self.last_notify: dict[str, tuple[int, int, str, int | None]] = {}  # ts, waiters, site
        # Event: ts, site, tid of its last set, and whether a wait saw it
        self.last_set: dict[str, tuple[int, str, int | None, bool]] = {}
        self.last_clear: dict[str, tuple[int, int | None]] = {}  # Event: ts, tid
        # value_get not yet written back: (tid, prim, index, field) -> (site, locked, ts)
        self.value_reads: dict[tuple[Any, ...], tuple[str, bool, int]] = {}
        self.rmw_seen: set[tuple[Any, ...]] = set()  # value_sets whose rmw event was read
        self.sem_books = SemBooks()  # who holds which permits, replayed from the events
        self.ident_tids: dict[int, set[int]] = {}  # ident -> every tid that had it
        self.misuse_notes: dict[tuple[Any, ...], int] = {}
        # nested_monitor notes whose holder's condition wait has not ended yet
        self.nested_pending: dict[tuple[int, str], dict[str, Any]] = {}
        self.test_held: dict[int, set[str]] = {}  # tid -> locks held when its test began
        self.in_order = True  # every line handled where it is (not a byte range's spine)
        # Read-modify-writes: at `full` the value_get/value_set pairs give the count and the
        # run-time `rmw` event (once per site and process, written before its value_set) only
        # makes sure a site is reported; with no value events (`contention`) it is the count.
        self.saw_values = False
        self.rmw_unpaired: set[tuple[str, str]] = set()
        self.owners_at_exit: list[tuple[str, int, int]] = []
        self.session_no = 0
        self.ended = False
        self.ts_min: int | None = None
        self.ts_max: int | None = None
        self.counters_only = False
        self.line_offset = 0  # lines before the part being scanned (byte ranges)
        self.files: list[Source] = [self.source]  # one per file of a rotated set (`next_file`)
        self._file_problems = 0  # problems found before the current file
        self._file_ts: int | None = None  # the largest ts when the current file began
        self._kernel_events = 0  # the kernel's own events already counted in a file's source
        self._line = 0  # the line being handled (for handlers' problems)

    # -- reading ------------------------------------------------------------------------------
    def scan(
        self, start: int = 0, end: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Scan ``path[start:end]`` (whole lines; the whole file by default); returns the
        number of lines read. Raises `reader.SchemaError` for a newer schema, `OSError`."""
        tick = progress
        if self.trace is not None:
            trace = self.trace

            def tick(n: int) -> None:
                trace.flush()  # the part is written as the file is read
                if progress is not None:
                    progress(n)

        # The native kernel parses condition events too and calls their handlers with the
        # fields (no dict; nothing else to do for them but draw them in the trace).
        conds = hasattr(self.kernel, "conds")
        if conds and self.trace is None:
            self.kernel.conds(self.cond_wait, self.cond_wake, self.notify)
        elif conds:
            self.kernel.conds(self._traced_wait, self._traced_wake, self._traced_notify)
        try:
            lines, tail = feed_bytes(self.path, self.kernel, self.line, start, end, tick)
        finally:
            if conds:  # (and no cycle left: the kernel held bound methods of this scanner)
                self.kernel.conds(None, None, None)
        if tail is not None:
            self.problem(self.line_offset + tail[0], "truncated last line (no newline)")
        self.line_offset += lines
        return lines

    def line(self, raw: bytes, lineno: int, maybe_hot: bool) -> None:
        """One line the kernel did not take (``lineno`` counted from the part's start)."""
        name = hot_line(self.kernel, raw) if maybe_hot else None
        if name is not None:
            self.source.events += 1
            self.agg.event_counts[name] = self.agg.event_counts.get(name, 0) + 1
            return
        lineno += self.line_offset
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.problem(lineno, f"not valid JSON ({exc})")
            return
        self.value(value, lineno)

    def value(self, ev: Any, lineno: int) -> None:
        """One parsed line: count it, then hand it to its handler."""
        self.source.events += 1
        if type(ev) is not dict:
            self.problem(lineno, "not a JSON object")
            return
        name = ev.get("event")
        if type(name) is not str:
            self.problem(lineno, "missing field 'event'" if name is None else
                         "wrong type for 'event'")
            return
        counts = self.agg.event_counts
        counts[name] = counts.get(name, 0) + 1
        ts = ev.get("ts")
        if type(ts) is int:
            if self.ts_min is None or ts < self.ts_min:
                self.ts_min = ts
            if self.ts_max is None or ts > self.ts_max:
                self.ts_max = ts
        self._line = lineno
        try:
            if name in HOT_EVENTS:
                reason = hot_problem(ev)
                if reason is not None:
                    self.problem(lineno, reason)
                elif name == "acquire":
                    g = ev.get
                    self.kernel.acquire(ev["tid"], ev["prim"], g("site"), g("func"), ev["ts"],
                                        ev["ok"], g("depth"), ev["contended"], g("wait_ns"),
                                        g("restored"),
                                        blocking_of(g("blocking"), g("timeout")),
                                        g("blocked_by"))
                else:
                    self.kernel.release(ev["tid"], ev["prim"], ev["depth"], ev.get("hold_ns"),
                                        ev["ts"], ev.get("saved_depth"))
                return
            handler = HANDLERS.get(name)
            if handler is None:
                self._unknown(ev)
            else:
                handler(self, ev)
            if self.trace is not None:
                if name == "session" and self.session_no == 1:
                    self.trace.session(ev, self.host or "")
                elif name == "created":
                    self.trace.created(ev)
                else:
                    self.trace.event(ev)
        except reader.SchemaError:
            raise
        except Exception as exc:
            self.problem(lineno, _reason(ev, exc))

    def _traced_wait(self, tid: int, prim: str, site: str | None, ts: int, lock: Any) -> None:
        self.cond_wait(tid, prim, site)
        self.trace.wait(tid, prim, ts, lock)  # type: ignore[union-attr]

    def _traced_wake(
        self, tid: int, prim: str, ts: int, notified: bool | None, waited_ns: int | None,
        pid: int | None, reacquire_ns: int | None, site: str | None,
    ) -> None:
        self.cond_wake(tid, prim, ts, notified, waited_ns, pid)
        self.trace.wake(tid, prim, ts, reacquire_ns, notified, site)  # type: ignore[union-attr]

    def _traced_notify(
        self, tid: int, prim: str, ts: int, waiters: int | None, site: str | None,
        woken: tuple[int, ...] | None,
    ) -> None:
        self.notify(tid, prim, ts, waiters, site)
        self.trace.notify(tid, prim, ts, woken)  # type: ignore[union-attr]

    def next_file(self, path: str) -> None:
        """Go on with the next file of the same process (a rotated set, read oldest first: see
        `inputs.process_sets`): its own `Source`, everything else carried over, as if the files
        were one (a lock held across the rotation stays held)."""
        self._end_file()
        self.path = path
        self.line_offset = 0
        self.source = Source(path=path, pid=self.pid or None)
        self.files.append(self.source)
        self.agg.sources.append(self.source)

    def _end_file(self, size_bytes: int | None = None) -> None:
        """The current file's own figures: its size, its problems, its time range (as far as
        known: a file of a set begins where the one before ended, being written after it)."""
        src = self.source
        n = self.kernel.events  # the events the kernel parsed itself, in this file
        src.events += n - self._kernel_events
        self._kernel_events = n
        src.bytes = size(self.path) if size_bytes is None else size_bytes
        src.problems = len(self.problems) - self._file_problems
        self._file_problems = len(self.problems)
        src.first_ts = self._file_ts
        src.last_ts = self._file_ts = self._last_ts() or None

    def _seen(self, ts: int) -> None:
        if self.ts_min is None or ts < self.ts_min:
            self.ts_min = ts
        if self.ts_max is None or ts > self.ts_max:
            self.ts_max = ts

    def problem(self, line: int, reason: str) -> None:
        self.problems.append(Problem(self.path, line, reason))

    def _lineno(self) -> int:
        return self._line

    # -- the end of a process -----------------------------------------------------------------
    def _close_process(self) -> None:
        held = {
            tid: [(p, site, 0) for p, site in hs]
            for tid, hs in self.kernel.take_held().items()
            if hs
        }
        waiting: dict[int, list[tuple[str, str, bool]]] = {}
        for (tid, prim), (site, lost) in self.waiting.items():
            waiting.setdefault(tid, []).append((prim, site, lost))
            if lost:
                t = self.agg.lost_wakeups.setdefault(
                    (prim, (self.last_notify.get(prim) or (0, 0, UNKNOWN_SITE))[2], site), Tally()
                )
                t.hit(self.pid, tid)
                t.details["still_waiting"] = t.details.get("still_waiting", 0) + 1
        if held or waiting or self.owners_at_exit or not self.ended:
            self.agg.ends.append(
                ProcessEnd(
                    pid=self.pid,
                    path=self.path,
                    ended=self.ended,
                    held=held,
                    waiting=waiting,
                    owners_at_exit=self.owners_at_exit,
                    last_ts=self._last_ts(),
                )
            )
        self.waiting = {}
        self.last_notify = {}
        self.last_set = {}
        self.last_clear = {}
        self.value_reads = {}
        self.rmw_seen = set()
        self.sem_books.clear()
        self.nested_pending = {}
        for key in self.rmw_unpaired:  # seen at run time by a rule wider than the pairs above
            t = self.agg.rmw[key]
            if t.count == 0:
                t.hit(self.pid, None)
        self.rmw_unpaired = set()
        self.owners_at_exit = []
        self.ended = False

    def _last_ts(self) -> int:
        """The largest ``ts`` read so far (0 if none)."""
        k = self.kernel.ts_max
        return max([0, *(t for t in (self.ts_max, k) if t is not None)])

    # -- the end of the file ------------------------------------------------------------------
    def absorb(self, part: HotPart) -> None:
        """Add a kernel's statistics (and what it counted) to the aggregate."""
        agg = self.agg
        for prim, per in part.sites.items():
            mine = agg.sites.setdefault(prim, {})
            for site, st in per.items():
                cur = mine.get(site)
                if cur is None:
                    mine[site] = st
                else:
                    cur.merge(st)
        for key, e in part.edges.items():
            cur_e = agg.edges.get(key)
            if cur_e is None:
                agg.edges[key] = e
            else:
                cur_e.merge(e)
        shifted = Aggregate(timeline_shift=part.timeline_shift, timeline=part.timeline)
        agg._merge_timeline(shifted, take=True)
        named = zip(("acquire", "release", *CONDITION_EVENTS),
                    (part.acquires, part.releases, *part.conds), strict=True)
        for name, n in named:
            if n:
                agg.event_counts[name] = agg.event_counts.get(name, 0) + n
        self.source.events += part.events
        for ts in (part.ts_min, part.ts_max):
            if ts is not None:
                self._seen(ts)

    def finish(self, size_bytes: int | None = None) -> Aggregate:
        """Close the file: record its end state, fold raw values, key it by host, return the
        aggregate."""
        self._close_process()
        if self.trace is not None:
            self.trace.finish()
            self.trace.out.close()
        self._end_file(size_bytes)
        hot = self.kernel.export()
        hot.events = 0  # counted file by file (`_end_file`)
        self.absorb(hot)
        self.files[0].first_ts = self.ts_min  # the first file begins with the set's first ts
        self.source.last_ts = self.ts_max
        threads: dict[int, tuple[str, int, int]] = {}  # one tuple per thread, shared
        pid_of, pid = self.pid_of, self.pid
        for per in self.agg.sites.values():
            for ss in per.values():
                ss.fold()
                if ss.tids:
                    for t in ss.tids:
                        if t not in threads:
                            threads[t] = ("", pid_of.get(t, pid), t)
                    ss.threads.update(map(threads.__getitem__, ss.tids))
                    ss.tids = set()
        for e in self.agg.edges.values():
            e.resolve(pid_of, pid)
        for prim in self.agg.sites:
            self._prim(prim)
        self.agg.problem_count = len(self.problems)
        self.agg.problems = sorted((p.path, p.line, p.reason) for p in self.problems)[
            :MAX_PROBLEMS
        ]
        self.agg.coarsen()
        qualify(self.agg, self.host or "")
        out: Aggregate = self.agg
        return out


def _reason(ev: Any, exc: Exception) -> str:
    if not isinstance(ev, dict):
        return "not a JSON object"
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return f"unusable event ({type(exc).__name__}: {exc})"


def scan_file(
    path: str,
    progress: Callable[[int], None] | None = None,
    native: bool | None = None,
    trace: TraceSpec | None = None,
) -> Aggregate:
    """Scan one log file into an aggregate; unusable lines become its ``problems``.

    ``progress`` is called with the number of bytes read, block by block. ``native``: force
    the native kernel (True) or the Python one (False); by default the native one when built.
    ``trace``: also draw the Perfetto trace of the file, in the same pass (`trace.py`).
    Raises `reader.SchemaError` for a newer schema and `OSError` if the file cannot be read.
    """
    return scan_files([path], progress, native, trace)


def scan_files(
    paths: Sequence[str],
    progress: Callable[[int], None] | None = None,
    native: bool | None = None,
    trace: TraceSpec | None = None,
) -> Aggregate:
    """Scan one process's files, in order, as one stream (a rotated set, oldest first:
    `inputs.process_sets`), one `Source` per file; otherwise as `scan_file`."""
    sc = Scanner(paths[0], new_kernel(native=native), trace)
    # Parsing makes many short-lived objects and no reference cycles: the cyclic garbage
    # collector would only walk them again and again (about 10-20 % of the time).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i, path in enumerate(paths):
            if i:
                sc.next_file(path)
            sc.scan(progress=progress)
    finally:
        if was_enabled:
            gc.enable()
    return sc.finish()
