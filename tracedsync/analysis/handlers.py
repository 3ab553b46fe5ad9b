"""What the scanner does with every event but acquire and release (the rare ones).

`RareHandlers` is mixed into `scan.Scanner`, which owns the state these methods read and write
(see its ``__init__``). Each handler takes the event as a dict (parsed by orjson) and may raise
on a malformed one: the caller reports the line and goes on. The state kept between events is
per thread (value reads) or per condition (a notify and a ``cond_wait`` are both recorded under
the condition's lock, so their order in the file is their real order).

Threads are recorded as ``("", pid, tid)``: the file's host is filled in when the file is
finished (`hosts.qualify`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import reader
from .aggregate import MAX_THREADS, UNKNOWN_SITE, PrimInfo, Tally
from .caps import keep_smallest
from .hosts import host_info, host_key
from .sem_books import SemBooks

Event = dict[str, Any]
WAIT_FIELDS = ("wait_ns", "waited_ns")
MAX_VALUE_READS = 100_000  # reads remembered for pairing, per file
MAX_MISUSE_NOTES = 64  # occurrences kept whole per (primitive, what, site), per file
SEMAPHORES = ("Semaphore", "BoundedSemaphore")
CONDITION_EVENTS = ("cond_wait", "cond_wake", "notify")
"""Handled by `cond_wait`, `cond_wake` and `notify`, which the native kernel calls with the
fields it parsed (the dict handlers call them too)."""
NOTED = ("deadlock_end", "nested_monitor", "test")
"""Rare events kept whole (`facts.Facts.notes`) for the findings that need them."""
SESSION_FIELDS = ("ts", "ppid", "process", "argv", "python", "version", "hostname", "wall_ns",
                  "mono_ns")


class RareHandlers:
    """The handlers; see the module docstring. Attributes are the Scanner's."""

    # Declared for the type checker; set by Scanner.__init__.
    agg: Any
    source: Any
    kernel: Any
    path: str
    pid: int
    host: str | None
    problems: list[Any]
    pid_of: dict[int, int]
    ident_tid: dict[int, int]
    waiting: dict[tuple[int, str], tuple[str, bool]]
    last_notify: dict[str, tuple[int, int, str, int | None]]
    last_set: dict[str, tuple[int, str, int | None, bool]]
    last_clear: dict[str, tuple[int, int | None]]
    value_reads: dict[tuple[Any, ...], tuple[str, bool, int]]
    rmw_seen: set[tuple[Any, ...]]
    sem_books: SemBooks
    ident_tids: dict[int, set[int]]
    misuse_notes: dict[tuple[Any, ...], int]
    nested_pending: dict[tuple[int, str], dict[str, Any]]
    test_held: dict[int, set[str]]
    in_order: bool
    saw_values: bool
    rmw_unpaired: set[tuple[str, str]]
    owners_at_exit: list[tuple[str, int, int]]
    session_no: int
    ended: bool
    counters_only: bool

    def _lineno(self) -> int:
        raise NotImplementedError

    def _close_process(self) -> None:
        raise NotImplementedError

    def _prim(self, prim: str) -> PrimInfo:
        info = self.agg.prims.get(prim)
        if info is None:
            info = self.agg.prims[prim] = PrimInfo(prim)
            info.counters_only = self.counters_only
        return info  # type: ignore[no-any-return]

    def _tally(self, table: dict[Any, Tally], key: Any, ev: Event, ns: int = 0) -> Tally:
        return self._tally_at(table, key, ev.get("pid", self.pid), ev.get("tid"), ev.get("ts"),
                              ns)

    def _tally_at(
        self, table: dict[Any, Tally], key: Any, pid: Any, tid: Any, ts: Any, ns: int = 0
    ) -> Tally:
        t = table.get(key)
        if t is None:
            t = table[key] = Tally()
        pid = pid if type(pid) is int else self.pid
        t.hit(pid, tid if type(tid) is int else None, ns)
        if type(ts) is int:  # when it happened (the tests it happened in: under_pytest.py)
            t.stamp(["", pid, tid if type(tid) is int else -1, ts])
        return t

    # -- rare events --------------------------------------------------------------------------
    def _session(self, ev: Event) -> None:
        reader.check_session(ev, self.path, self._lineno(), self.problems)
        if self.host is None:  # the file's host: its first session's
            self.host = host_key(ev)
        info = host_info(ev)
        cur = self.agg.hosts.get("")
        if cur is None:
            self.agg.hosts[""] = info
        else:
            cur.merge(info)
        if self.session_no and not continues(ev, self.pid):
            self._close_process()  # a later run appended to the same file
        self.session_no += 1
        self.pid = int(ev["pid"])
        self.source.pid = self.pid
        settings = ev.get("settings") or {}
        self.counters_only = isinstance(settings, dict) and settings.get("level") == "contention"
        session = {k: ev.get(k) for k in SESSION_FIELDS}
        if "boot_id" in ev:
            session["boot_id"] = ev.get("boot_id")
        session["pid"] = self.pid
        session["level"] = settings.get("level") if isinstance(settings, dict) else None
        self.source.sessions.append(session)

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
            self.ident_tids.setdefault(ident, set()).add(tid)
        self.agg.threads[("", pid, tid)] = str(ev.get("name") or tid)
        if isinstance(tid, int) and type(ev.get("ts")) is int:
            self.agg.facts.note("thread_born", {"host": "", "pid": pid, "tid": tid,
                                                "ts": ev["ts"]})

    def _created(self, ev: Event) -> None:
        info = self._prim(ev["prim"])
        info.kind = str(ev.get("kind") or "?")
        info.name = ev.get("name")
        info.site = ev.get("site")
        info.func = ev.get("func")
        info.pid = int(ev["pid"])
        lock = ev.get("lock")
        info.lock = lock if isinstance(lock, str) else None
        var = ev.get("var")
        info.var = var if isinstance(var, str) else None
        value = ev.get("value")
        if info.kind in SEMAPHORES and type(value) is int:
            info.initial = value

    def _attached(self, ev: Event) -> None:
        """A primitive of another process arrived here: what it is (its creation is in the
        other process's log)."""
        self._count_other(ev)
        info = self._prim(ev["prim"])
        if info.kind == "?" and isinstance(ev.get("kind"), str):
            info.kind = ev["kind"]
            info.name = ev.get("name")
        value = ev.get("value")
        if info.kind in SEMAPHORES and type(value) is int and info.initial is None:
            info.initial = value

    # Condition events: the native kernel parses them and calls `cond_wait`, `cond_wake` and
    # `notify` with their fields (what the dict handlers below read from the event).
    def _cond_wait(self, ev: Event) -> None:
        prim = ev["prim"]
        self.cond_wait(ev["tid"], prim, ev.get("site"))

    def cond_wait(
        self, tid: Any, prim: str, site: str | None, ts: Any = None, lock: Any = None
    ) -> None:
        """(``ts`` and ``lock``: the trace's; see scan.Scanner.scan.)"""
        last = self.last_notify.get(prim)
        lost = last is not None and last[1] == 0
        self.waiting[(tid, prim)] = (site or UNKNOWN_SITE, lost)

    def _cond_wake(self, ev: Event) -> None:
        prim = ev["prim"]
        self._prim(prim)
        tid = ev["tid"]
        ts = ev["ts"] if (tid, prim) in self.nested_pending else ev.get("ts")  # (for the note)
        self.cond_wake(tid, prim, ts, ev.get("notified"), ev.get("waited_ns"),
                       ev.get("pid", self.pid))

    def cond_wake(
        self, tid: Any, prim: str, ts: Any, notified: Any, waited_ns: Any, pid: Any,
        reacquire_ns: Any = None, site: Any = None,
    ) -> None:
        """(``reacquire_ns`` and ``site``: the trace's.)"""
        info = self._prim(prim)
        if self.nested_pending:
            note = self.nested_pending.pop((tid, prim), None)
            if note is not None:
                note["ended"] = {"notified": notified is True, "ts": ts, "waited_ns": waited_ns}
        info.cond_waits += 1
        pending = self.waiting.pop((tid, prim), None)
        if not notified:
            info.cond_timeouts += 1
            if pending is not None and pending[1]:
                self._lost(prim, pending[0], int(waited_ns or 0), pid, tid, ts)

    def _lost(
        self, prim: str, wait_site: str, waited: int, pid: Any, tid: Any, ts: Any
    ) -> Tally:
        last = self.last_notify.get(prim)
        notify_site = last[2] if last else UNKNOWN_SITE
        t = self._tally_at(self.agg.lost_wakeups, (prim, notify_site, wait_site), pid, tid, ts,
                           waited)
        if last is not None and last[3] is not None:
            keep_smallest(t.threads, [("", self.pid, last[3])], MAX_THREADS)
        t.details.setdefault("still_waiting", 0)
        return t

    def _notify(self, ev: Event) -> None:
        prim = ev["prim"]
        self.notify(ev["tid"], prim, ev["ts"], ev.get("waiters"), ev.get("site"))

    def notify(
        self, tid: Any, prim: str, ts: Any, waiters: Any, site: str | None, woken: Any = None
    ) -> None:
        """(``woken``: the trace's.)"""
        info = self._prim(prim)
        info.notifies += 1
        n = int(waiters or 0)
        if n == 0:
            info.unheard_notifies += 1
        self.last_notify[prim] = (ts, n, site or UNKNOWN_SITE, tid)

    # An Event's lost pulse: a set that no wait saw (nobody was waiting, and no wait found the
    # flag set before it was cleared), then a clear, then a wait that began after the clear and
    # timed out. A set that woke a waiter, or that a wait found, was heard, whatever that
    # waiter does next (clear, then wait(timeout) as a sleep). A set cleared by the thread
    # that set it is the pulse idiom (`set(); clear()`), which loses the pulse for anyone not
    # yet waiting; cleared by another thread it is unsure: the clearing thread may have done
    # the work the set asked for (`wait(); clear(); work()` loops), so it is noted "unsure".
    def _event_set(self, ev: Event) -> None:
        prim = ev["prim"]
        self._count_other(ev)
        site = ev.get("site") or UNKNOWN_SITE
        self.last_set[prim] = (ev["ts"], site, ev.get("tid"), False)

    def _event_clear(self, ev: Event) -> None:
        self._count_other(ev)
        self.last_clear[ev["prim"]] = (ev["ts"], ev.get("tid"))

    def _event_wait(self, ev: Event) -> None:
        prim = ev["prim"]
        self._count_other(ev)
        last = self.last_set.get(prim)
        if ev.get("result") is True:
            if last is not None and last[0] <= ev["ts"]:
                self.last_set[prim] = (*last[:3], True)  # heard
            return
        if ev.get("result") is not False and ev.get("timed_out") is not True:
            return
        waited = _waited(ev)
        began = ev["ts"] - waited
        if last is None or last[0] > began or last[3]:
            return
        cleared = self.last_clear.get(prim)
        if cleared is None or not last[0] <= cleared[0] <= began:
            return
        self.last_notify[prim] = (last[0], 0, last[1], last[2])
        t = self._lost(prim, ev.get("site") or UNKNOWN_SITE, waited, ev.get("pid", self.pid),
                       ev.get("tid"), ev.get("ts"))
        if cleared[1] != last[2]:
            t.details["unsure"] = int(t.details.get("unsure", 0)) + 1

    def _sem_acquire(self, ev: Event) -> None:
        prim = ev["prim"]
        info = self._prim(prim)
        info.events["sem_acquire"] = info.events.get("sem_acquire", 0) + 1
        if ev.get("contended"):
            info.other_wait.add(int(ev.get("wait_ns") or 0))
        if ev.get("ok") is False and ev.get("blocking", True):
            info.other_timeouts += 1
        if ev.get("ok") is True and isinstance(ev.get("tid"), int):
            self.sem_books.acquired(prim, ev["tid"], ev.get("site") or UNKNOWN_SITE, ev["ts"])

    def _sem_release(self, ev: Event) -> None:
        self._count_other(ev)
        n = ev.get("n")
        if isinstance(ev.get("tid"), int) and type(n) is int:
            self.sem_books.released(ev["prim"], ev["tid"], n)

    def _note(self, ev: Event) -> None:
        """A rare event kept whole for the findings (`facts.Facts.notes`)."""
        self._count_other(ev)
        fields = {k: v for k, v in ev.items() if k != "event"}
        fields["host"] = ""
        fields.setdefault("pid", self.pid)
        self.agg.facts.note(ev["event"], fields)

    def _test(self, ev: Event) -> None:
        """A test started or ended (the pytest plugin). What its thread took during the test and
        still held at its end leaked from it: noted, for the findings about locks held (their
        events carry no time). Only in a file read in order: the held locks of a byte range's
        thread are not known at each of its lines."""
        self._note(ev)
        tid = ev.get("tid")
        if not self.in_order or not isinstance(tid, int):
            return
        held = {p for p, _ in self.kernel.held_of(tid)}
        if ev.get("phase") == "start":
            self.test_held[tid] = held
            return
        leaked = held - self.test_held.pop(tid, held)
        if leaked:
            self.agg.facts.note("test_leak", {"host": "", "pid": ev.get("pid", self.pid),
                                              "tid": tid, "ts": ev["ts"],
                                              "nodeid": ev.get("nodeid"),
                                              "prims": sorted(leaked)})

    def _nested_monitor(self, ev: Event) -> None:
        """A nested-monitor lockout forming; how the holder's condition wait ended is added
        from its ``cond_wake`` (`_cond_wake`), if it comes."""
        self._note(ev)
        note = self.agg.facts.notes["nested_monitor"][-1]
        holder, cond = ev.get("holder"), ev.get("cond")
        if isinstance(holder, int) and isinstance(cond, str):
            self.nested_pending[(holder, cond)] = note

    def _lock_order(self, ev: Event) -> None:
        """A lock-order inversion seen at run time (``lock_order=True``); ``order_violation``
        is its name in logs before schema 3."""
        fields = {k: ev.get(k) for k in ("ts", "pid", "tid", "prim", "held", "held_site",
                                         "site", "reverse", "stack")}
        fields["host"] = ""
        self.agg.facts.note("lock_order", fields)

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
        n = self.misuse_notes.get(key, 0)
        if n < MAX_MISUSE_NOTES:  # each occurrence, for the test it happened in
            self.misuse_notes[key] = n + 1
            self.agg.facts.note("misuse", {"prim": prim, "what": key[1], "site": key[2],
                                           "ts": ev.get("ts"), "pid": ev.get("pid", self.pid),
                                           "tid": ev.get("tid"), "host": ""})

    def _stats(self, ev: Event) -> None:
        prim = ev["prim"]
        info = self._prim(prim)
        if info.kind == "?" and isinstance(ev.get("kind"), str):
            info.kind = ev["kind"]
            info.name = ev.get("name")
        info.stats_acquisitions += int(ev.get("acquisitions") or 0)
        # Schema 2 renamed the counter "contended" to "contended_count".
        contended = ev.get("contended_count", ev.get("contended"))
        info.stats_contended += int(contended or 0)
        owner = ev.get("owner")
        # An owner that is no thread of this process held the lock when the parent forked
        # this one: nobody here can release it, nor ever took it (not "held at exit").
        if isinstance(owner, int) and owner in self.ident_tid:
            tid = self.ident_tid[owner]
            self.owners_at_exit.append((prim, tid, int(ev.get("depth") or 1)))
            stack = ev.get("owner_stack")
            if isinstance(stack, list) and stack:  # where the holder was at exit
                self.agg.facts.note("held_stack", {"prim": prim, "pid": self.pid, "tid": tid,
                                                   "host": "", "ts": ev.get("ts"),
                                                   "stack": stack})
        if info.kind in SEMAPHORES or "held_by" in ev:
            self._sem_stats(prim, info, ev)

    def _sem_stats(self, prim: str, info: PrimInfo, ev: Event) -> None:
        """A semaphore's counters: its value now (the last one of a run is its value at the
        end) and, if permits are held, who holds them and where each was acquired (the
        replayed books at level full; else the recorder's, by ident)."""
        permits = ev.get("permits")
        self.agg.facts.sem_stats(prim, int(ev["ts"]), permits if type(permits) is int else None)
        if info.initial is None and type(ev.get("max_permits")) is int:
            info.initial = ev["max_permits"]
        held_by = ev.get("held_by")
        holders = self.sem_books.holders(prim)
        self.sem_books.forget(prim)
        # The replay is the truth when it accounts for every permit the recorder's books hold
        # (level full, and no events lost or in another process's log); else the books.
        booked = sum(int(x.get("permits") or 0) for x in held_by or [] if isinstance(x, dict))
        replayed = not self.counters_only and sum(h["permits"] for h in holders) == booked
        if not replayed:
            holders = []
        if not holders and not held_by:
            return
        entry: dict[str, Any] = {
            "prim": prim, "pid": self.pid, "host": "", "ts": ev["ts"],
            "kind": info.kind, "name": info.name,
            "permits": permits if type(permits) is int else None,
            "held_by": _held_by(held_by or [], self.ident_tid),
            "holders": holders, "replayed": replayed,
        }
        if not replayed:  # idents a later thread reused: the holder may be either thread
            entry["ambiguous"] = {
                str(tid): sorted(self.ident_tids[i]) for i, tid in
                ((i, self.ident_tid.get(i)) for i in _idents(held_by or []))
                if len(self.ident_tids.get(i, ())) > 1}
        self.agg.permits_held.append(entry)

    def _dropped(self, ev: Event) -> None:
        self.source.dropped += int(ev.get("count") or 0)

    def _session_end(self, ev: Event) -> None:
        self.ended = True
        self.source.ended = True

    def _reinit(self, ev: Event) -> None:
        prim = ev["prim"]
        self._count_other(ev)
        self.kernel.forget(prim)

    def _deadlock(self, ev: Event) -> None:
        cycle = ev.get("cycle")
        if not isinstance(cycle, list):
            raise TypeError("'cycle' is not a list")
        self.agg.deadlocks.append(
            {
                "pid": ev.get("pid", self.pid),
                "host": "",
                "ts": ev.get("ts"),
                "path": self.path,
                "certain": ev.get("certain", True) is not False,
                "cycle": [dict(c) for c in cycle if isinstance(c, dict)],
            }
        )

    # Read-modify-writes. The run-time rule (_multiprocessing/rmw.py), as far as the log shows
    # it: a thread read an item (the same Value, index or field) and then wrote it, and did not
    # hold the value's lock at the read or at the write; the run-time `rmw` event adds the case
    # of a lock held at both but released in between. Unknown (`locked` null) is not unsafe.
    # Whether it can lose an update depends on other writers of the item: every write's time
    # is kept per item and thread (`facts`), and the finding asks whether another thread or
    # process wrote the item while this one read-modified-wrote it.
    def _rmw(self, ev: Event) -> None:
        prim = ev.get("prim") or "?"
        self._count_other(ev)
        site = ev.get("site") or UNKNOWN_SITE
        key = (prim, site)
        read = ev.get("read_site")
        thread = ("", int(ev.get("pid", self.pid)), ev.get("tid"))
        item = _item(ev)
        if self.saw_values or not self.counters_only:
            self.rmw_unpaired.add(key)  # counted by its value_set pair, or once at the end
            t = self.agg.rmw.get(key)
            if t is None:
                t = self.agg.rmw[key] = Tally()
            if isinstance(thread[2], int):  # its value_get is remembered; its value_set follows
                got = self.value_reads.get((thread[2], prim, ev.get("index"), ev.get("field")))
                self.agg.facts.rmw(prim, site, item, thread, got[2] if got else ev["ts"],
                                   ev["ts"], read if isinstance(read, str) else None)
                self.rmw_seen.add((thread[2], prim, ev.get("index"), ev.get("field")))
        else:  # level contention: no value events, only the first rmw of each site
            t = self._tally(self.agg.rmw, key, ev)
            self.agg.facts.note("rmw", {"prim": prim, "site": site, "key": item,
                                        "read_site": read, "ts": ev["ts"], "pid": thread[1],
                                        "tid": thread[2], "host": ""})
        if isinstance(read, str):
            t.details.setdefault("read_site", read)

    def _value_get(self, ev: Event) -> None:
        self.saw_values = True
        self._count_other(ev)
        key = (ev["tid"], ev["prim"], ev.get("index"), ev.get("field"))
        locked = ev.get("locked")
        if locked is None:
            self.value_reads.pop(key, None)
        else:
            if len(self.value_reads) >= MAX_VALUE_READS:
                self.value_reads.clear()  # reads never written back: forget (at worst a miss)
            self.value_reads[key] = (ev.get("site") or UNKNOWN_SITE, locked is True, ev["ts"])

    def _value_set(self, ev: Event) -> None:
        self.saw_values = True
        self._count_other(ev)
        key = (ev["tid"], ev["prim"], ev.get("index"), ev.get("field"))
        thread = ("", int(ev.get("pid", self.pid)), ev["tid"])
        self.agg.facts.wrote(ev["prim"], _item(ev), thread, ev["ts"])
        read = self.value_reads.pop(key, None)
        locked = ev.get("locked")
        seen = key in self.rmw_seen
        self.rmw_seen.discard(key)
        if read is not None and locked is not None and not (read[1] and locked):
            site = ev.get("site") or UNKNOWN_SITE
            site_key = (ev["prim"], site)
            t = self._tally(self.agg.rmw, site_key, ev)
            t.details.setdefault("read_site", read[0])
            self.rmw_unpaired.discard(site_key)
            if not seen:
                self.agg.facts.rmw(ev["prim"], site, _item(ev), thread, read[2], ev["ts"],
                                   read[0])

    def _long(self, ev: Event) -> None:
        prim = ev.get("prim") or "?"
        self._count_other(ev)
        ns = _waited(ev) or int(ev.get("hold_ns") or 0)
        key = (ev["event"], prim, ev.get("site") or UNKNOWN_SITE)
        t = self._tally(self.agg.runtime, key, ev, ns)
        holder = ev.get("blocked_by")
        waits = t.details.setdefault("waits", [])
        if isinstance(holder, int) and isinstance(ev.get("tid"), int) and len(waits) < MAX_THREADS:
            waits.append(["", int(ev.get("pid", self.pid)), ev["tid"], holder])

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


def continues(ev: Event, pid: int) -> bool:
    """Whether a ``session`` header continues the process being read rather than starting a
    new one: the same pid, and ``part`` > 0 (the next file of a rotated set, or the file
    reopened by ``configure``)."""
    part = ev.get("part")
    return type(part) is int and part > 0 and ev.get("pid") == pid


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
        or barrier_timed_out(ev)
    )


def barrier_timed_out(ev: Event) -> bool:
    """A ``barrier_broken`` written by the thread whose own wait timed out (and so broke it);
    the other threads it woke did not time out, they saw the barrier break."""
    return (
        ev.get("event") == "barrier_broken"
        and ev.get("why") == "timeout"
        and ev.get("broken_by") == ev.get("tid")
        and ev.get("broken_by_pid", ev.get("pid")) == ev.get("pid")
    )


def _item(ev: Event) -> Any:
    """Which item of a Value or Array an event is about: its index (an int, or a slice as a
    string), its field, or None (a Value's ``.value``)."""
    index = ev.get("index")
    return index if index is not None else ev.get("field")


def _idents(value: Any) -> list[int]:
    """The idents of a ``held_by`` list (the recorder's form)."""
    if not isinstance(value, list):
        return []
    return [x["ident"] for x in value if isinstance(x, dict) and isinstance(x.get("ident"), int)]


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


HANDLERS: dict[str, Callable[[RareHandlers, Event], None]] = {
    "session": RareHandlers._session,
    "thread": RareHandlers._thread,
    "created": RareHandlers._created,
    "attached": RareHandlers._attached,
    "cond_wait": RareHandlers._cond_wait,
    "cond_wake": RareHandlers._cond_wake,
    "notify": RareHandlers._notify,
    "notify_all": RareHandlers._notify,
    "misuse": RareHandlers._misuse,
    "stats": RareHandlers._stats,
    "dropped": RareHandlers._dropped,
    "session_end": RareHandlers._session_end,
    "reinit": RareHandlers._reinit,
    "deadlock": RareHandlers._deadlock,
    "rmw": RareHandlers._rmw,
    "value_get": RareHandlers._value_get,
    "value_set": RareHandlers._value_set,
    "long_wait": RareHandlers._long,
    "long_hold": RareHandlers._long,
    "event_set": RareHandlers._event_set,
    "event_clear": RareHandlers._event_clear,
    "event_wait": RareHandlers._event_wait,
    "sem_acquire": RareHandlers._sem_acquire,
    "sem_release": RareHandlers._sem_release,
    "barrier_broken": RareHandlers._barrier_broken,
    "deadlock_end": RareHandlers._note,
    "nested_monitor": RareHandlers._nested_monitor,
    "test": RareHandlers._test,
    "lock_order": RareHandlers._lock_order,
    "order_violation": RareHandlers._lock_order,  # its name before schema 3
}
"""The handler of each event, a function of (scanner, event): no bound methods kept, which
would tie a scanner in a reference cycle (freed only by the cyclic collector, which the command
line turns off)."""
