"""The Perfetto trace (Chrome trace-event JSON), drawn while the logs are scanned: one pass.

Design note. Each file's scan writes its trace events to a *part* file as it reads (the
kernel draws what comes from acquires and releases, `RareTrace` the rest); the renderer then
writes the JSON envelope, the thread and process names from the report, and copies the parts
in. Nothing is read twice and no event is held in memory, except the waiting-thread counters,
which need their deltas in time order and are drawn at the end of each file.

What is drawn, per process and thread (the byte layout, identical from the native kernel and
the Python one, is each event on its own line, written ``,\\n{...}`` with keys in this order):

* hold slices: from the acquire that took a lock from depth 0 to the release back to 0
  (``release.ts - hold_ns`` .. ``release.ts``), named after the lock, with the acquiring site;
  a lock released while one taken after it is still held (not last-in-first-out) is drawn as
  an async slice (``b``/``e``), so the thread's slices stay properly nested;
* wait slices: contended acquires (``ts - wait_ns`` .. ``ts``), semaphore, event and barrier
  waits (a barrier wait that its break ended too: ``barrier_broken``), and condition waits
  (from the release of the lock before the wait to the start of its re-acquire, so that they
  nest with the holds: the kernel tells when those happen);
* flow arrows: release → the contended acquire it handed the lock to (the last release of that
  lock by another thread during the wait, as far as the file's order shows it: often the
  ``blocked_by`` thread's, not always), and notify → the wake of each thread it woke;
* counters: the number of threads waiting on each lock and condition.

Times are microseconds (exact decimals) of the monotonic clock; over several hosts, of the
wall clock, and each host's pids are moved by `HOST_PID_STRIDE` so that they stay apart.
"""

from __future__ import annotations

import dataclasses
from typing import IO, Any

import orjson

HOST_PID_STRIDE = 10_000_000
RARE_IDS = 1 << 39  # ids of flows and async slices drawn here, above the kernel's


def us(ns: int) -> str:
    """Nanoseconds as exact microseconds: ``"12.345"``."""
    a = -ns if ns < 0 else ns
    return f"{'-' if ns < 0 else ''}{a // 1000}.{a % 1000:03d}"


def js(s: str) -> str:
    """A JSON string, as the native kernel writes it."""
    return orjson.dumps(s).decode()


@dataclasses.dataclass(frozen=True)
class TraceSpec:
    """Where one file's part goes and how its ids, pids and times are set."""

    path: str
    first_id: int  # ids of this part are above it (unique over the whole trace)
    hosts: tuple[str, ...] = ()  # sorted, when the logs come from several hosts
    append: bool = False  # drawn at the end of ``path`` (one file for all: a serial scan)

    def pid(self, host: str, pid: int) -> int:
        return pid + (self.hosts.index(host) * HOST_PID_STRIDE if host in self.hosts else 0)


def label(kind: str, prim: str, name: Any) -> str:
    """What `labels.Labels.prim` calls a primitive, from its ``created`` event alone."""
    base = f"{kind} {prim}"
    return f"{name} ({base})" if name else base


class RareTrace:
    """Draws what comes from the events other than acquire and release; see the module
    docstring. ``kernel`` draws the rest, with the labels given here."""

    def __init__(self, spec: TraceSpec, kernel: Any, out: IO[bytes]) -> None:
        self.spec = spec
        self.kernel = kernel
        self.out = out
        self.pid = 0
        self.offset = 0
        self.next_id = spec.first_id + RARE_IDS
        self.buf: list[str] = []
        self.labels: dict[str, str] = {}
        self.kinds: dict[str, tuple[str, Any]] = {}
        # (tid, cond) -> [wait's ts, lock, start, end or None]
        self.cond_wait: dict[tuple[int, str], list[Any]] = {}
        self.notified: dict[tuple[int, str], list[int]] = {}  # woken thread -> flow ids
        self.deltas: dict[str, list[tuple[int, int]]] = {}
        self.named: dict[str, str] = {}  # prim -> `js` of "cond wait <its name>"

    # -- set up -------------------------------------------------------------------------------
    def session(self, ev: dict[str, Any], host: str) -> None:
        pid = ev.get("pid")
        self.pid = self.spec.pid(host, pid if type(pid) is int else 0)
        wall, mono = ev.get("wall_ns"), ev.get("mono_ns")
        if self.spec.hosts and type(wall) is int and type(mono) is int:
            self.offset = wall - mono
        self.kernel.trace_start(self.pid, self.offset, self.spec.first_id, self.on_cond)

    def on_cond(self, what: int, tid: int, lock: str, ts: int) -> None:
        """The kernel saw a thread release (0) or get back (1) a condition's lock."""
        for (t, _), cw in self.cond_wait.items():
            if t == tid and cw[1] == lock:
                if what == 0:
                    cw[2] = ts + self.offset  # the wait starts once the lock is released
                elif cw[3] is None:
                    cw[3] = ts + self.offset  # ...and ends where the re-acquire starts

    def created(self, ev: dict[str, Any]) -> None:
        prim, kind, name = ev.get("prim"), ev.get("kind"), ev.get("name")
        if not isinstance(prim, str) or not isinstance(kind, str):
            return
        self.kinds[prim] = (kind, name)
        self._label(prim, label(kind, prim, name))
        lock = ev.get("lock")
        if kind == "Condition" and isinstance(lock, str) and lock in self.kinds:
            lk, ln = self.kinds[lock]
            if not ln:
                self._label(lock, f"{label(lk, lock, ln)} (lock of {self.labels[prim]})")

    def _label(self, prim: str, text: str) -> None:
        self.labels[prim] = text
        self.named.pop(prim, None)
        self.kernel.set_label(prim, orjson.dumps(text))

    def name(self, prim: str) -> str:
        return self.labels.get(prim, prim)

    # -- drawing ------------------------------------------------------------------------------
    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def event(self, ev: dict[str, Any]) -> None:
        """Draw what ``ev`` (a handled event other than acquire and release) shows."""
        name = ev.get("event")
        tid, prim, ts = ev.get("tid"), ev.get("prim"), ev.get("ts")
        if type(tid) is not int or not isinstance(prim, str) or type(ts) is not int:
            return
        if name == "cond_wait":
            self.wait(tid, prim, ts, ev.get("lock"))
        elif name == "cond_wake":
            self.wake(tid, prim, ts, ev.get("reacquire_ns"), ev.get("notified"), ev.get("site"))
        elif name in ("notify", "notify_all"):
            self.notify(tid, prim, ts, ev.get("woken"))
        elif name in ("sem_acquire", "event_wait", "barrier_wait", "barrier_broken"):
            # (a barrier_broken with waited_ns: a wait that ended in the break)
            ts += self.offset
            wait = ev.get("wait_ns") if name == "sem_acquire" else ev.get("waited_ns")
            if type(wait) is int and wait > 0:
                pairs = (("site", ev.get("site")), ("why", ev.get("why")))
                args = orjson.dumps({k: v for k, v in pairs if isinstance(v, str)}).decode()
                self.buf.append(
                    f',\n{{"ph":"X","name":{js(name + " " + self.name(prim))},"cat":"wait",'
                    f'"pid":{self.pid},"tid":{tid},"ts":{us(ts - wait)},"dur":{us(wait)},'
                    f'"args":{args}}}'
                )

    # Condition events, from their fields (the native kernel parses them: scan.Scanner.scan).
    def wait(self, tid: int, prim: str, ts: int, lock: Any) -> None:
        ts += self.offset
        self.cond_wait[(tid, prim)] = [ts, lock, ts, None]
        self.deltas.setdefault(prim, []).append((ts, 1))

    def notify(self, tid: int, prim: str, ts: int, woken: Any) -> None:
        ts += self.offset
        for w in woken or ():
            if type(w) is int:
                fid = self._id()
                self.buf.append(self._flow("s", fid, "notify", tid, ts))
                self.notified.setdefault((w, prim), []).append(fid)

    def wake(
        self, tid: int, prim: str, ts: int, reacquire: Any, notified: Any, site: Any
    ) -> None:
        ts += self.offset
        cw = self.cond_wait.pop((tid, prim), None)
        if cw is None:
            return
        start, end = cw[2], cw[3]
        if end is None:
            end = ts - (reacquire if type(reacquire) is int else 0)
        pairs = (("notified", notified), ("site", site))
        args = {k: v for k, v in pairs if v is not None}
        named = self.named.get(prim)
        if named is None:
            named = self.named[prim] = js("cond wait " + self.name(prim))
        self.buf.append(
            f',\n{{"ph":"X","name":{named},"cat":"cond",'
            f'"pid":{self.pid},"tid":{tid},"ts":{us(start)},"dur":{us(max(0, end - start))},'
            f'"args":{orjson.dumps(args).decode()}}}'
        )
        self.deltas.setdefault(prim, []).append((ts, -1))
        flows = self.notified.pop((tid, prim), [])
        if flows and notified:
            self.buf.append(self._flow("f", flows[0], "notify", tid, max(start, end - 1)))

    def _flow(self, ph: str, fid: int, cat: str, tid: int, ts: int) -> str:
        tail = ',"bp":"e"' if ph == "f" else ""
        return (
            f',\n{{"ph":"{ph}","id":{fid},"name":"{cat}","cat":"{cat}","pid":{self.pid},'
            f'"tid":{tid},"ts":{us(ts)}{tail}}}'
        )

    def flush(self) -> None:
        """Write what has been drawn (the kernel's and this one's)."""
        self.out.write(self.kernel.trace_take())
        if self.buf:
            self.out.write("".join(self.buf).encode())
            self.buf = []

    def finish(self) -> None:
        """Draw the counters, write everything."""
        self.flush()
        self.out.write(self.kernel.trace_counters())
        for prim, deltas in sorted(self.deltas.items()):
            n = 0
            name = js("waiting: " + self.name(prim))
            head = f',\n{{"ph":"C","name":{name},"pid":{self.pid},"ts":'
            for ts, d in sorted(deltas):
                n = max(0, n + d)
                self.buf.append(f'{head}{us(ts)},"args":{{"threads":{n}}}}}')
        self.flush()
