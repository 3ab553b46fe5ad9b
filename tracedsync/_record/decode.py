"""Hot-path op tuples and their expansion into schema events (see docs/events.md).

The application thread records a plain tuple whose first item is an ``OP_*`` code; all naming
(native thread ids, call-site strings, event names) happens here, in the flusher. Keeping the
tuple layouts next to their decoders is what keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .._core.ops import (
    OP_ACQUIRE,
    OP_BARRIER_BROKEN,
    OP_BARRIER_WAIT,
    OP_COND_WAIT,
    OP_COND_WAKE,
    OP_CREATED,
    OP_DROPPED,
    OP_EVENT_SET,
    OP_EVENT_WAIT,
    OP_GENERIC,
    OP_MISUSE,
    OP_MP_ACQUIRE,
    OP_NOTIFY,
    OP_RELEASE,
    OP_RESTORE,
    OP_RMW,
    OP_SAVE,
    OP_SEM_ACQUIRE,
    OP_SEM_RELEASE,
    OP_SESSION_END,
    OP_STATS,
    OP_THREAD,
    OP_VALUE,
)
from .._core.sites import SiteFormatter

Event = dict[str, Any]


class Decoder:
    """Expands op tuples of one process into event dicts, in stream order.

    It keeps the ident → native thread id map (updated by ``thread`` events, so a reused ident is
    renamed at the right point of the stream) and a call-site cache.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.tids: dict[int, int] = {}
        self.site = SiteFormatter()
        self._table: dict[int, Callable[[tuple[Any, ...]], Event]] = {
            OP_THREAD: self._thread,
            OP_CREATED: self._created,
            OP_ACQUIRE: self._acquire,
            OP_RELEASE: self._release,
            OP_SAVE: self._save,
            OP_RESTORE: self._restore,
            OP_MISUSE: self._misuse,
            OP_COND_WAIT: self._cond_wait,
            OP_COND_WAKE: self._cond_wake,
            OP_NOTIFY: self._notify,
            OP_STATS: self._stats,
            OP_DROPPED: self._dropped,
            OP_SESSION_END: self._session_end,
            OP_GENERIC: self._generic,
            OP_SEM_ACQUIRE: self._sem_acquire,
            OP_SEM_RELEASE: self._sem_release,
            OP_EVENT_SET: self._event_set,
            OP_EVENT_WAIT: self._event_wait,
            OP_BARRIER_WAIT: self._barrier_wait,
            OP_BARRIER_BROKEN: self._barrier_broken,
            OP_MP_ACQUIRE: self._mp_acquire,
            OP_VALUE: self._value,
            OP_RMW: self._rmw,
        }

    def __call__(self, item: tuple[Any, ...]) -> Event:
        return self._table[item[0]](item)

    # -- helpers -----------------------------------------------------------------------------
    def _tid(self, ident: int | None) -> int | None:
        if ident is None:
            return None
        return self.tids.get(ident, ident)

    def _base(self, name: str, item: tuple[Any, ...]) -> Event:
        ident = item[2]
        return {"event": name, "ts": item[1], "pid": self.pid, "tid": self.tids.get(ident, ident)}

    def _with_site(self, ev: Event, code: Any, lineno: int) -> Event:
        site, func = self.site(code, lineno)
        if site is not None:
            ev["site"] = site
            ev["func"] = func
        return ev

    # -- one decoder per op ------------------------------------------------------------------
    def _thread(self, item: tuple[Any, ...]) -> Event:
        _, ts, ident, native, name, daemon = item
        self.tids[ident] = native
        return {
            "event": "thread",
            "ts": ts,
            "pid": self.pid,
            "tid": native,
            "ident": ident,
            "name": name,
            "daemon": daemon,
        }

    def _created(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, kind, name, code, lineno, extra = item
        ev = self._base("created", item)
        ev["prim"] = prim
        ev["kind"] = kind
        ev["name"] = name
        self._with_site(ev, code, lineno)
        if extra:
            ev.update(extra)
        return ev

    # _acquire and _release are the bulk of every log: one dict literal each, no helper calls
    # beyond the call-site cache.
    def _acquire(self, item: tuple[Any, ...]) -> Event:
        (_, ts, ident, prim, depth, ok, contended, wait_ns, blocked_by, blocking, timeout, code,
         ln) = item
        tids = self.tids
        site, func = self.site(code, ln)
        ev = {
            "event": "acquire",
            "ts": ts,
            "pid": self.pid,
            "tid": tids.get(ident, ident),
            "prim": prim,
            "depth": depth,
            "ok": ok,
            "contended": contended,
            "wait_ns": wait_ns,
            "blocked_by": None if blocked_by is None else tids.get(blocked_by, blocked_by),
            "blocking": blocking,
            "timeout": None if timeout is None or timeout < 0 else timeout,
        }
        if site is not None:
            ev["site"] = site
            ev["func"] = func
        return ev

    def _release(self, item: tuple[Any, ...]) -> Event:
        _, ts, ident, prim, depth, hold_ns = item
        if hold_ns is None:
            return {"event": "release", "ts": ts, "pid": self.pid,
                    "tid": self.tids.get(ident, ident), "prim": prim, "depth": depth}
        return {"event": "release", "ts": ts, "pid": self.pid, "tid": self.tids.get(ident, ident),
                "prim": prim, "depth": depth, "hold_ns": hold_ns}

    def _save(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, saved, hold_ns, code, ln = item
        ev = self._base("release", item)
        ev["prim"] = prim
        ev["depth"] = 0
        ev["saved_depth"] = saved
        if hold_ns is not None:
            ev["hold_ns"] = hold_ns
        return self._with_site(ev, code, ln)

    def _restore(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, depth, wait_ns, contended, blocked_by, code, ln = item
        ev = self._base("acquire", item)
        ev["prim"] = prim
        ev["depth"] = depth
        ev["ok"] = True
        ev["contended"] = contended
        ev["wait_ns"] = wait_ns
        ev["blocked_by"] = self._tid(blocked_by)
        ev["blocking"] = True
        ev["timeout"] = None
        ev["restored"] = True
        return self._with_site(ev, code, ln)

    def _misuse(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, what, message, code, ln = item
        ev = self._base("misuse", item)
        ev["prim"] = prim
        ev["what"] = what
        ev["error"] = message
        return self._with_site(ev, code, ln)

    def _cond_wait(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, lock, saved, timeout, code, ln = item
        ev = self._base("cond_wait", item)
        ev["prim"] = prim
        ev["lock"] = lock
        ev["saved_depth"] = saved
        ev["timeout"] = timeout
        return self._with_site(ev, code, ln)

    def _cond_wake(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, waited, notified, reacquire, code, ln = item
        ev = self._base("cond_wake", item)
        ev["prim"] = prim
        ev["waited_ns"] = waited
        ev["notified"] = notified
        ev["reacquire_ns"] = reacquire
        return self._with_site(ev, code, ln)

    def _notify(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, n, waiters, woken, is_all, code, ln = item
        ev = self._base("notify_all" if is_all else "notify", item)
        ev["prim"] = prim
        ev["n"] = n
        ev["waiters"] = waiters
        ev["woken"] = [self._tid(w) for w in woken]
        return self._with_site(ev, code, ln)

    def _stats(self, item: tuple[Any, ...]) -> Event:
        ev = self._base("stats", item)
        ev["prim"] = item[3]
        ev.update(item[4])
        if "held_by" in ev:  # semaphores: (ident, permits) pairs, named by thread here
            ev["held_by"] = [{"tid": self._tid(ident), "ident": ident, "permits": n}
                             for ident, n in ev["held_by"]]
        return ev

    def _dropped(self, item: tuple[Any, ...]) -> Event:
        ev = self._base("dropped", item)
        ev["count"] = item[3]
        return ev

    def _session_end(self, item: tuple[Any, ...]) -> Event:
        ev = self._base("session_end", item)
        ev.update(item[3])
        return ev

    def _generic(self, item: tuple[Any, ...]) -> Event:
        _, _, _, name, fields, code, ln = item
        ev = self._base(name, item)
        ev.update(fields)
        return self._with_site(ev, code, ln)

    def _sem_acquire(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, ok, contended, wait_ns, permits, held, blocking, timeout, code, ln = item
        ev = self._base("sem_acquire", item)
        ev["prim"] = prim
        ev["ok"] = ok
        ev["contended"] = contended
        ev["wait_ns"] = wait_ns
        ev["permits"] = permits
        ev["held"] = held
        ev["blocking"] = blocking
        ev["timeout"] = timeout
        return self._with_site(ev, code, ln)

    def _sem_release(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, n, permits, held, for_others, code, ln = item
        ev = self._base("sem_release", item)
        ev["prim"] = prim
        ev["n"] = n
        ev["permits"] = permits
        ev["held"] = held
        ev["for_others"] = for_others
        return self._with_site(ev, code, ln)

    def _event_set(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, flag, was_set, code, ln = item
        ev = self._base("event_set" if flag else "event_clear", item)
        ev["prim"] = prim
        ev["was_set"] = was_set
        return self._with_site(ev, code, ln)

    def _event_wait(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, result, already_set, waited_ns, timeout, code, ln = item
        ev = self._base("event_wait", item)
        ev["prim"] = prim
        ev["result"] = result
        ev["already_set"] = already_set
        ev["waited_ns"] = waited_ns
        ev["timeout"] = timeout
        return self._with_site(ev, code, ln)

    def _barrier_wait(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, index, waited_ns, parties, n_waiting, timeout, code, ln = item
        ev = self._base("barrier_wait", item)
        ev["prim"] = prim
        ev["index"] = index
        ev["waited_ns"] = waited_ns
        ev["parties"] = parties
        ev["n_waiting"] = n_waiting
        ev["timeout"] = timeout
        return self._with_site(ev, code, ln)

    def _barrier_broken(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, broken_by, why, error, waited_ns, n_waiting, timeout, code, ln = item
        ev = self._base("barrier_broken", item)
        ev["prim"] = prim
        ev["broken_by"] = self._tid(broken_by)
        ev["why"] = why
        if error is not None:
            ev["error"] = error
        if waited_ns is not None:  # absent for the aborting thread, which did not wait
            ev["waited_ns"] = waited_ns
            ev["timeout"] = timeout
        ev["n_waiting"] = n_waiting
        return self._with_site(ev, code, ln)

    def _mp_acquire(self, item: tuple[Any, ...]) -> Event:
        (_, _, _, prim, depth, ok, contended, wait_ns, by_pid, by_tid, blocking, timeout, restored,
         code, ln) = item
        ev = self._base("acquire", item)
        ev["prim"] = prim
        ev["depth"] = depth
        ev["ok"] = ok
        ev["contended"] = contended
        ev["wait_ns"] = wait_ns
        ev["blocked_by"] = by_tid  # a native id already: the holder may be in another process
        ev["blocked_by_pid"] = by_pid
        ev["blocking"] = blocking
        ev["timeout"] = timeout
        if restored:
            ev["restored"] = True
        return self._with_site(ev, code, ln)

    def _value(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, is_set, key, locked, code, ln = item
        ev = self._base("value_set" if is_set else "value_get", item)
        ev["prim"] = prim
        _put_key(ev, key)
        ev["locked"] = locked
        return self._with_site(ev, code, ln)

    def _rmw(self, item: tuple[Any, ...]) -> Event:
        _, _, _, prim, key, read_code, read_ln, read_locked, code, ln = item
        ev = self._base("rmw", item)
        ev["prim"] = prim
        _put_key(ev, key)
        read_site, read_func = self.site(read_code, read_ln)
        ev["read_site"] = read_site
        ev["read_func"] = read_func
        ev["read_locked"] = read_locked
        return self._with_site(ev, code, ln)


def _put_key(ev: Event, key: Any) -> None:
    """What part of a Value or Array was read or written: nothing for ``.value`` of a Value,
    ``index`` (an int, or ``"start:stop"``/``"start:stop:step"`` for a slice, normalised to the
    array's length) for an item, ``field`` for a structure field or a char array's value/raw."""
    if key is None:
        return
    if type(key) is int:
        ev["index"] = key
    elif type(key) is tuple:
        start, stop, step = key
        ev["index"] = f"{start}:{stop}" if step == 1 else f"{start}:{stop}:{step}"
    else:
        ev["field"] = key
