"""One pass over one log file, folding its events into an `Aggregate`: the hot loop of analyze.

Design note. Reading is dominated by JSON parsing (``orjson`` builds a dict per line), so the
loop around it must stay cheap: ``acquire`` and ``release`` (the bulk of any log) are handled
inline with locals, without allocating anything per event except what the aggregate keeps
(a raw wait or hold value appended to an ``array``); every other event goes through a
dispatch table. Malformed events are not checked field by field: they raise ``KeyError`` or
``TypeError`` somewhere in the loop, which reports the line and resumes after it.

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
import os
from collections import Counter
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from . import reader
from .aggregate import (
    MAX_EXAMPLES,
    MAX_PROBLEMS,
    MAX_THREADS,
    TIMELINE_MAX_BUCKETS,
    UNKNOWN_SITE,
    Aggregate,
    Edge,
    PrimInfo,
    ProcessEnd,
    SiteStat,
    Source,
    Tally,
    rebin,
)
from .reader import Problem

Event = dict[str, Any]
_get_event = itemgetter("event")

# Event names of the primitives other than Lock/RLock/Condition (figures are counted per
# primitive; waits and timeouts read from the fields these events are expected to carry).
WAIT_FIELDS = ("wait_ns", "waited_ns")


_MAX_VALUE_READS = 100_000  # reads remembered for pairing, per file


class Scanner:
    """Folds the events of one file (fed chunk by chunk) into an `Aggregate`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.agg = Aggregate()
        self.source = Source(path=path)
        self.agg.sources.append(self.source)
        self.problems: list[Problem] = []
        self.pid = 0
        self.pid_of: dict[int, int] = {}  # tid -> pid, from `thread` events
        self.ident_tid: dict[int, int] = {}  # threading ident -> native tid (for `stats`)
        self.held: dict[int | None, dict[str, SiteStat]] = {}  # tid -> prim -> acquiring site
        self.waiting: dict[tuple[int, str], tuple[str, bool]] = {}  # (tid, cond) -> site, lost?
        self.last_notify: dict[str, tuple[int, int, str, int | None]] = {}  # ts, waiters, site
        self.last_set: dict[str, tuple[int, str, int | None]] = {}  # Event: ts, site, tid
        self.last_clear: dict[str, int] = {}  # Event: ts
        # value_get not yet written back: (tid, prim, index, field) -> (site, locked)
        self.value_reads: dict[tuple[Any, ...], tuple[str, bool]] = {}
        # Read-modify-writes: at `full` the value_get/value_set pairs give the count and the
        # run-time `rmw` event (once per site and process, written before its value_set) only
        # makes sure a site is reported; with no value events (`contention`) it is the count.
        self.saw_values = False
        self.rmw_unpaired: set[tuple[str, str]] = set()
        self.owners_at_exit: list[tuple[str, int, int]] = []
        self.session_no = 0
        self.ended = False
        self.last_ts = 0
        self.counters_only = False
        self._handlers: dict[str, Callable[[Event], None]] = {
            "session": self._session,
            "thread": self._thread,
            "created": self._created,
            "cond_wait": self._cond_wait,
            "cond_wake": self._cond_wake,
            "notify": self._notify,
            "notify_all": self._notify,
            "misuse": self._misuse,
            "stats": self._stats,
            "dropped": self._dropped,
            "session_end": self._session_end,
            "reinit": self._reinit,
            "deadlock": self._deadlock,
            "rmw": self._rmw,
            "value_get": self._value_get,
            "value_set": self._value_set,
            "long_wait": self._long,
            "long_hold": self._long,
            "event_set": self._event_set,
            "event_clear": self._event_clear,
            "event_wait": self._event_wait,
            "sem_acquire": self._sem_acquire,
            "barrier_broken": self._barrier_broken,
        }
        self._file_problems = 0  # problems found before the current file (`next_file`)
        self._lines: Any = ()  # line numbers of the chunk being fed
        self._line = 0  # index in it of the event being handled (for handlers' problems)

    # -- the hot loop -------------------------------------------------------------------------
    def feed(self, lines: Any, evs: list[Any]) -> None:
        """Fold one chunk of parsed lines (``lines[i]`` is the line number of ``evs[i]``)."""
        n = len(evs)
        if n == 0:
            return
        self._lines = lines
        self._count(evs)
        sites = self.agg.sites
        held_by = self.held
        handlers = self._handlers
        timeline = self.agg.timeline
        shift = self.agg.timeline_shift
        unknown = self._unknown
        last_tid: Any = None  # the thread whose held-locks table is in ``held``
        held: dict[str, SiteStat] = {}
        start = 0
        while start < n:
            k = start
            try:
                for k in range(start, n):
                    ev = evs[k]
                    name = ev["event"]
                    if name == "acquire":
                        prim = ev["prim"]
                        site = ev.get("site") or UNKNOWN_SITE
                        per = sites.get(prim)
                        if per is None:
                            per = sites[prim] = {}
                        ss = per.get(site)
                        if ss is None:
                            ss = per[site] = SiteStat(site, ev.get("func"))
                        tid = ev["tid"]
                        ss.tids.add(tid)  # those that failed (timed out) waited here too
                        if ev["contended"]:
                            wait = ev["wait_ns"]
                            ss.waits.append(wait)
                            ss.contended += 1
                            tl = timeline.get(prim)
                            if tl is None:
                                tl = timeline[prim] = {}
                            b = ev["ts"] >> shift
                            cell = tl.get(b)
                            if cell is None:
                                tl[b] = [1, wait]
                            else:
                                cell[0] += 1
                                cell[1] += wait
                        if ev["ok"]:
                            ss.acquisitions += 1
                            depth = ev["depth"]
                            if depth > ss.max_depth:
                                ss.max_depth = depth
                            if tid != last_tid:  # consecutive events of one thread: common
                                found = held_by.get(tid)
                                if found is None:
                                    found = held_by[tid] = {}
                                held = found
                                last_tid = tid
                            if prim not in held:
                                if held:
                                    self._edges(held, prim, ss, tid)
                                held[prim] = ss
                            if "restored" in ev:
                                ss.restored += 1
                        else:
                            ss.failed += 1
                            if ev.get("blocking", True):
                                ss.timeouts += 1
                    elif name == "release":
                        if ev["depth"] == 0:
                            tid = ev["tid"]
                            if tid != last_tid:
                                found = held_by.get(tid)
                                if found is None:
                                    found = held_by[tid] = {}
                                held = found
                                last_tid = tid
                            prim = ev["prim"]
                            ss = held.pop(prim, None)
                            hold = ev.get("hold_ns")
                            if hold is not None:
                                if ss is None:
                                    ss = self._site(prim, UNKNOWN_SITE, None)
                                ss.holds.append(hold)
                    else:
                        handler = handlers.get(name)
                        self._line = k
                        last_tid = None  # a handler may change the held-locks tables
                        if handler is None:
                            unknown(ev)
                        else:
                            handler(ev)
            except reader.SchemaError:
                raise
            except Exception as exc:
                self._problem(lines[k], _reason(evs[k], exc))
                last_tid = None
                start = k + 1
                continue
            break
        if len(timeline) and max(len(t) for t in timeline.values()) > TIMELINE_MAX_BUCKETS:
            self._coarsen()

    def _count(self, evs: list[Any]) -> None:
        counts = self.agg.event_counts
        try:
            c: Counter[str] = Counter(map(_get_event, evs))
            # The file is nearly in ts order: its ends bound the span to within microseconds
            # (an exact min/max would cost a pass over every event).
            stamps = [evs[0]["ts"], evs[-1]["ts"]]
            lo, hi = min(stamps), max(stamps)
        except Exception:  # a line without "event" or "ts", or not an object: the good ones
            good = [e for e in evs if isinstance(e, dict) and isinstance(e.get("event"), str)]
            c = Counter(e["event"] for e in good)
            stamps = [e["ts"] for e in good if isinstance(e.get("ts"), int)]
            lo, hi = (min(stamps), max(stamps)) if stamps else (None, None)
        src = self.source
        if isinstance(lo, int) and isinstance(hi, int):
            src.first_ts = lo if src.first_ts is None else min(src.first_ts, lo)
            src.last_ts = hi if src.last_ts is None else max(src.last_ts, hi)
            self.last_ts = max(self.last_ts, hi)
        for name, v in c.items():
            if isinstance(name, str):
                counts[name] = counts.get(name, 0) + v
        src.events += len(evs)

    def _problem(self, line: int, reason: str) -> None:
        self.problems.append(Problem(self.path, line, reason))

    def _coarsen(self) -> None:
        agg = self.agg
        while max(len(t) for t in agg.timeline.values()) > TIMELINE_MAX_BUCKETS:
            agg.timeline = {
                p: rebin(b, agg.timeline_shift, agg.timeline_shift + 1)
                for p, b in agg.timeline.items()
            }
            agg.timeline_shift += 1

    # -- helpers of the hot loop --------------------------------------------------------------
    def _site(self, prim: str, site: str, func: str | None) -> SiteStat:
        per = self.agg.sites.setdefault(prim, {})
        ss = per.get(site)
        if ss is None:
            ss = per[site] = SiteStat(site, func)
        return ss

    def _edges(self, held: dict[str, SiteStat], prim: str, ss: SiteStat, tid: int) -> None:
        """Lock-order edges: every lock this thread holds → ``prim`` (acquired at ``ss``)."""
        edges = self.agg.edges
        for a, ass in held.items():
            key = (a, prim)
            e = edges.get(key)
            if e is None:
                e = edges[key] = Edge()
            e.count += 1
            pair = (ass.site, ss.site)
            n = e.sites.get(pair)
            if n is not None:
                e.sites[pair] = n + 1
            elif len(e.sites) < MAX_EXAMPLES:
                e.sites[pair] = 1
            if len(e.threads) < MAX_THREADS:
                e.threads.add((self.pid_of.get(tid, self.pid), tid))
            if e.gates is None:
                e.gates = {g for g in held if g != a}
            elif e.gates:
                e.gates.intersection_update(held)
                e.gates.discard(a)

    def _prim(self, prim: str) -> PrimInfo:
        info = self.agg.prims.get(prim)
        if info is None:
            info = self.agg.prims[prim] = PrimInfo(prim)
            info.counters_only = self.counters_only
        return info

    def _tally(self, table: dict[Any, Tally], key: Any, ev: Event, ns: int = 0) -> Tally:
        t = table.get(key)
        if t is None:
            t = table[key] = Tally()
        t.hit(ev.get("pid", self.pid), ev.get("tid"), ns)
        return t

    # -- rare events --------------------------------------------------------------------------
    def _session(self, ev: Event) -> None:
        reader.check_session(ev, self.path, self._lineno(), self.problems)
        if self.session_no and not _continues(ev, self.pid):
            self._close_process()  # a later run appended to the same file
        self.session_no += 1
        self.pid = int(ev["pid"])
        self.source.pid = self.pid
        settings = ev.get("settings") or {}
        self.counters_only = isinstance(settings, dict) and settings.get("level") == "contention"
        self.source.sessions.append(
            {
                k: ev.get(k)
                for k in (
                    "ts",
                    "ppid",
                    "process",
                    "argv",
                    "python",
                    "version",
                    "hostname",
                    "wall_ns",
                    "mono_ns",
                )
            }
            | {
                "pid": self.pid,
                "level": settings.get("level") if isinstance(settings, dict) else None,
            }
        )

    def _lineno(self) -> int:
        return int(self._lines[self._line]) if self._lines else 0

    def _thread(self, ev: Event) -> None:
        tid = ev["tid"]
        pid = int(ev["pid"])
        if not self.pid:
            self.pid = pid
            self.source.pid = pid
        self.pid_of[tid] = pid
        ident = ev.get("ident")
        if isinstance(ident, int):
            self.ident_tid[ident] = tid
        self.agg.threads[(pid, tid)] = str(ev.get("name") or tid)

    def _created(self, ev: Event) -> None:
        info = self._prim(ev["prim"])
        info.kind = str(ev.get("kind") or "?")
        info.name = ev.get("name")
        info.site = ev.get("site")
        info.func = ev.get("func")
        info.pid = int(ev["pid"])
        lock = ev.get("lock")
        info.lock = lock if isinstance(lock, str) else None

    def _cond_wait(self, ev: Event) -> None:
        prim = ev["prim"]
        last = self.last_notify.get(prim)
        lost = last is not None and last[1] == 0
        self.waiting[(ev["tid"], prim)] = (ev.get("site") or UNKNOWN_SITE, lost)

    def _cond_wake(self, ev: Event) -> None:
        prim = ev["prim"]
        info = self._prim(prim)
        info.cond_waits += 1
        pending = self.waiting.pop((ev["tid"], prim), None)
        if not ev.get("notified"):
            info.cond_timeouts += 1
            if pending is not None and pending[1]:
                self._lost(ev, prim, pending[0], int(ev.get("waited_ns") or 0))

    def _lost(self, ev: Event, prim: str, wait_site: str, waited: int) -> None:
        last = self.last_notify.get(prim)
        notify_site = last[2] if last else UNKNOWN_SITE
        t = self._tally(self.agg.lost_wakeups, (prim, notify_site, wait_site), ev, waited)
        if last is not None and last[3] is not None and len(t.threads) < MAX_THREADS:
            t.threads.add((self.pid, last[3]))
        t.details.setdefault("still_waiting", 0)

    def _notify(self, ev: Event) -> None:
        prim = ev["prim"]
        info = self._prim(prim)
        info.notifies += 1
        waiters = int(ev.get("waiters") or 0)
        if waiters == 0:
            info.unheard_notifies += 1
        self.last_notify[prim] = (ev["ts"], waiters, ev.get("site") or UNKNOWN_SITE, ev["tid"])

    def _event_set(self, ev: Event) -> None:
        prim = ev["prim"]
        self._count_other(ev)
        site = ev.get("site") or UNKNOWN_SITE
        self.last_set[prim] = (ev["ts"], site, ev.get("tid"))
        waiters = ev.get("waiters")
        if isinstance(waiters, int):
            self.last_notify[prim] = (ev["ts"], waiters, site, ev["tid"])

    def _event_clear(self, ev: Event) -> None:
        self._count_other(ev)
        self.last_clear[ev["prim"]] = ev["ts"]

    def _event_wait(self, ev: Event) -> None:
        """A timed-out wait that began after a set *and* its clear missed that pulse."""
        prim = ev["prim"]
        self._count_other(ev)
        if ev.get("result") is not False and ev.get("timed_out") is not True:
            return
        waited = _waited(ev)
        began = ev["ts"] - waited
        last = self.last_set.get(prim)
        if last is None or last[0] > began:
            return
        cleared = self.last_clear.get(prim)
        unheard = self.last_notify.get(prim)
        if (cleared is not None and last[0] <= cleared <= began) or (
            unheard is not None and unheard[1] == 0 and unheard[0] == last[0]
        ):
            self.last_notify[prim] = (last[0], 0, last[1], last[2])
            self._lost(ev, prim, ev.get("site") or UNKNOWN_SITE, waited)

    def _sem_acquire(self, ev: Event) -> None:
        prim = ev["prim"]
        info = self._prim(prim)
        info.events["sem_acquire"] = info.events.get("sem_acquire", 0) + 1
        if ev.get("contended"):
            info.other_wait.add(int(ev.get("wait_ns") or 0))
        if ev.get("ok") is False and ev.get("blocking", True):
            info.other_timeouts += 1

    def _barrier_broken(self, ev: Event) -> None:
        prim = ev["prim"]
        self._count_other(ev)
        key = (prim, str(ev.get("why") or "?"), ev.get("site") or UNKNOWN_SITE)
        t = self._tally(self.agg.broken, key, ev, _waited(ev))
        by = ev.get("broken_by")
        if isinstance(by, int):
            t.details.setdefault("broken_by", [int(ev.get("pid", self.pid)), by])
        if ev.get("error"):
            t.details.setdefault("error", ev.get("error"))

    def _misuse(self, ev: Event) -> None:
        prim = ev.get("prim") or "?"
        if prim != "?":
            self._prim(prim).misuse += 1
        key = (prim, str(ev.get("what") or "misuse"), ev.get("site") or UNKNOWN_SITE)
        t = self._tally(self.agg.misuse, key, ev)
        t.details.setdefault("error", ev.get("error"))
        t.details.setdefault("func", ev.get("func"))

    def _stats(self, ev: Event) -> None:
        prim = ev["prim"]
        info = self._prim(prim)
        if info.kind == "?" and isinstance(ev.get("kind"), str):
            info.kind = ev["kind"]
            info.name = ev.get("name")
        info.stats_acquisitions += int(ev.get("acquisitions") or 0)
        contended = ev.get("contended_count")
        if contended is None:
            contended = ev.get("contended")  # schema 1 named the counter as acquire's boolean
        info.stats_contended += int(contended or 0)
        owner = ev.get("owner")
        if isinstance(owner, int):
            tid = self.ident_tid.get(owner, owner)
            self.owners_at_exit.append((prim, tid, int(ev.get("depth") or 1)))
        held_by = ev.get("held_by")
        if held_by:
            self.agg.permits_held.append(
                {
                    "prim": prim,
                    "pid": self.pid,
                    "kind": info.kind,
                    "name": info.name,
                    "held_by": _held_by(held_by, self.ident_tid),
                }
            )

    def _dropped(self, ev: Event) -> None:
        self.source.dropped += int(ev.get("count") or 0)

    def _session_end(self, ev: Event) -> None:
        self.ended = True
        self.source.ended = True

    def _reinit(self, ev: Event) -> None:
        prim = ev["prim"]
        self._count_other(ev)
        for held in self.held.values():
            held.pop(prim, None)

    def _deadlock(self, ev: Event) -> None:
        cycle = ev.get("cycle")
        if not isinstance(cycle, list):
            raise TypeError("'cycle' is not a list")
        self.agg.deadlocks.append(
            {
                "pid": ev.get("pid", self.pid),
                "ts": ev.get("ts"),
                "path": self.path,
                "certain": ev.get("certain", True) is not False,
                "cycle": [dict(c) for c in cycle if isinstance(c, dict)],
            }
        )

    def _rmw(self, ev: Event) -> None:
        prim = ev.get("prim") or "?"
        self._count_other(ev)
        key = (prim, ev.get("site") or UNKNOWN_SITE)
        if self.saw_values:
            self.rmw_unpaired.add(key)  # counted by its value_set pair, or once at the end
            t = self.agg.rmw.get(key)
            if t is None:
                t = self.agg.rmw[key] = Tally()
        else:
            t = self._tally(self.agg.rmw, key, ev)
        read = ev.get("read_site")
        if isinstance(read, str):
            t.details.setdefault("read_site", read)

    # The run-time rule (_mp_rmw.py), as far as the log shows it: a thread read an item (the
    # same Value, index or field) and then wrote it, and did not hold the value's lock at the
    # read or at the write. (A lock held at both but released in between is not visible here:
    # the run-time `rmw` event still reports such a site, counted once.) Unknown (`locked`
    # null) is not unsafe.
    def _value_get(self, ev: Event) -> None:
        self.saw_values = True
        self._count_other(ev)
        key = (ev["tid"], ev["prim"], ev.get("index"), ev.get("field"))
        locked = ev.get("locked")
        if locked is None:
            self.value_reads.pop(key, None)
        else:
            if len(self.value_reads) >= _MAX_VALUE_READS:
                self.value_reads.clear()  # reads never written back: forget (at worst a miss)
            self.value_reads[key] = (ev.get("site") or UNKNOWN_SITE, locked is True)

    def _value_set(self, ev: Event) -> None:
        self.saw_values = True
        self._count_other(ev)
        key = (ev["tid"], ev["prim"], ev.get("index"), ev.get("field"))
        read = self.value_reads.pop(key, None)
        locked = ev.get("locked")
        if read is not None and locked is not None and not (read[1] and locked):
            site_key = (ev["prim"], ev.get("site") or UNKNOWN_SITE)
            t = self._tally(self.agg.rmw, site_key, ev)
            t.details.setdefault("read_site", read[0])
            self.rmw_unpaired.discard(site_key)

    def _long(self, ev: Event) -> None:
        prim = ev.get("prim") or "?"
        self._count_other(ev)
        ns = _waited(ev) or int(ev.get("hold_ns") or 0)
        key = (ev["event"], prim, ev.get("site") or UNKNOWN_SITE)
        t = self._tally(self.agg.runtime, key, ev, ns)
        holder = ev.get("blocked_by")
        waits = t.details.setdefault("waits", [])
        if isinstance(holder, int) and isinstance(ev.get("tid"), int) and len(waits) < MAX_THREADS:
            waits.append([int(ev.get("pid", self.pid)), ev["tid"], holder])

    def _unknown(self, ev: Event) -> None:
        """Semaphores, events, barriers, `interrupted` and names we do not know: count them."""
        if "prim" in ev:
            self._count_other(ev)

    def _count_other(self, ev: Event) -> None:
        prim = ev.get("prim")
        if not isinstance(prim, str):
            return
        info = self._prim(prim)
        name = ev["event"]
        info.events[name] = info.events.get(name, 0) + 1
        waited = _waited(ev)
        if waited:
            info.other_wait.add(waited)
        if _timed_out(ev):
            info.other_timeouts += 1

    # -- the end ------------------------------------------------------------------------------
    def _close_process(self) -> None:
        held = {
            tid: [(p, ss.site, 0) for p, ss in hs.items()]
            for tid, hs in self.held.items()
            if hs and tid is not None
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
                    last_ts=self.last_ts,
                )
            )
        self.held.clear()  # in place: feed() holds a reference
        self.waiting = {}
        self.last_notify = {}
        self.last_set = {}
        self.last_clear = {}
        self.value_reads = {}
        for key in self.rmw_unpaired:  # seen at run time by a rule wider than the pairs above
            t = self.agg.rmw[key]
            if t.count == 0:
                t.hit(self.pid, None)
        self.rmw_unpaired = set()
        self.owners_at_exit = []
        self.ended = False

    def next_file(self, path: str) -> None:
        """Go on with the next file of the same process (a rotated set, read oldest first): its
        own `Source`, everything else carried over, as if the files were one."""
        self.source.problems = len(self.problems) - self._file_problems
        self._file_problems = len(self.problems)
        self.path = path
        self.source = Source(path=path, pid=self.pid or None)
        self.agg.sources.append(self.source)

    def finish(self) -> Aggregate:
        """Close the file: record its end state, fold raw values, return the aggregate."""
        self._close_process()
        for per in self.agg.sites.values():
            for ss in per.values():
                ss.fold(self.pid_of, self.pid)
        for prim in self.agg.sites:
            self._prim(prim)
        self.source.problems = len(self.problems) - self._file_problems
        self.agg.problem_count = len(self.problems)
        self.agg.problems = [(p.path, p.line, p.reason) for p in self.problems[:MAX_PROBLEMS]]
        return self.agg


def _continues(ev: Event, pid: int) -> bool:
    """Whether a ``session`` header continues the process being read rather than starting a
    new one: the same pid, and ``part`` > 0 (the next file of a rotated set, or the file reopened
    by ``configure``)."""
    part = ev.get("part")
    return type(part) is int and part > 0 and ev.get("pid") == pid


def _reason(ev: Any, exc: Exception) -> str:
    if not isinstance(ev, dict):
        return "not a JSON object"
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return f"unusable event ({type(exc).__name__}: {exc})"


def _waited(ev: Event) -> int:
    for f in WAIT_FIELDS:
        v = ev.get(f)
        if isinstance(v, int):
            return v
    return 0


def _timed_out(ev: Event) -> bool:
    return (
        ev.get("ok") is False
        or ev.get("result") is False
        or ev.get("notified") is False
        or ev.get("timed_out") is True
    )


def _held_by(value: Any, ident_tid: dict[int, int]) -> dict[str, int]:
    """A semaphore's ``held_by`` as {tid: permits}: from the recorder's list of
    ``{"tid", "ident", "permits"}`` (or a plain {thread: permits} map, or a list of threads)."""
    out: dict[str, int] = {}
    pairs: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        for item in value:
            if isinstance(item, dict):
                pairs.append((item.get("tid", item.get("ident")), item.get("permits", 1)))
            else:
                pairs.append((item, 1))
    for t, n in pairs:
        key = str(ident_tid.get(t, t)) if isinstance(t, int) else str(t)
        out[key] = out.get(key, 0) + int(n)
    return out


def scan_file(
    path: str, chunk_bytes: int = reader.CHUNK_BYTES, progress: Callable[[int], None] | None = None
) -> Aggregate:
    """Scan one log file into an aggregate; unusable lines become its ``problems``.

    Raises `reader.SchemaError` for a newer schema and `OSError` if the file cannot be read.
    """
    return scan_files([path], chunk_bytes, progress)


def scan_files(
    paths: Sequence[str],
    chunk_bytes: int = reader.CHUNK_BYTES,
    progress: Callable[[int], None] | None = None,
) -> Aggregate:
    """Scan one process's files, in order, as one stream (a rotated set, oldest first:
    `reader.process_sets`); one `Source` per file. Raises as `scan_file`."""
    sc = Scanner(paths[0])
    # Parsing makes millions of short-lived dicts and no reference cycles: the cyclic garbage
    # collector would only walk them again and again (about 10-20 % of the time).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i, path in enumerate(paths):
            if i:
                sc.next_file(path)
            sc.source.bytes = os.path.getsize(path)
            for lines, evs in reader.read_chunks(path, sc.problems, chunk_bytes):
                sc.feed(lines, evs)
                if progress is not None:
                    progress(len(evs))
    finally:
        if was_enabled:
            gc.enable()
    return sc.finish()
