"""``--format perfetto``: Chrome trace-event JSON for Perfetto (ui.perfetto.dev) or chrome://tracing.

Unlike the other renderers this one needs the events themselves, so it re-reads the log files
named in the report's sources, one file (one process) at a time, sorted by ``ts`` (the recorder
writes each thread in order, but a release may land in the file after the acquire it enabled;
a sliding window of events puts them back in order without holding the whole file).

What it draws, per process and thread (named from ``thread`` events):

* hold slices: from the acquire that took a lock from depth 0 to the release back to 0
  (``release.ts - hold_ns`` .. ``release.ts``), named after the lock, with the acquiring site;
* wait slices: contended acquires (``ts - wait_ns`` .. ``ts``) and condition waits (from the
  release before the wait to the start of the re-acquire, so they nest with the holds);
* flow arrows: release → the contended acquire it handed the lock to (the last release of
  that lock by another thread during the wait; often the ``blocked_by`` thread's, not always,
  as the lock may have changed hands meanwhile), and notify → the wake of each thread it woke;
* counters: the number of threads waiting on each lock and condition.

Timestamps are microseconds of the monotonic clock, as the format wants.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from typing import Any, TextIO

import orjson

from .reader import Problem, read_chunks
from .report import Report

Event = dict[str, Any]


def _us(ns: int) -> float:
    return ns / 1000.0


class _Writer:
    """Streams trace events as one JSON object with a ``traceEvents`` array."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.first = True
        self.count = 0
        out.write('{"displayTimeUnit":"ns","traceEvents":[\n')

    def emit(self, ev: dict[str, Any]) -> None:
        if not self.first:
            self.out.write(",\n")
        self.first = False
        self.out.write(orjson.dumps(ev).decode())
        self.count += 1

    def close(self, meta: dict[str, Any]) -> None:
        self.out.write('\n],"metadata":' + orjson.dumps(meta).decode() + "}\n")


class _Process:
    """Turns the sorted events of one process into trace events."""

    def __init__(self, w: _Writer, labels: dict[str, str], flow_ids: list[int]) -> None:
        self.w = w
        self.labels = labels
        self._ids = flow_ids  # a one-item list: the next flow id, shared across processes
        self.held: dict[tuple[int, str], str] = {}  # (tid, prim) -> acquiring site
        self.last_release: dict[str, tuple[int, int]] = {}  # prim -> (ts, tid) of the last one
        self.cond_wait: dict[tuple[int, str], list[Any]] = {}  # (tid, cond) -> [t0, lock, start]
        self.notified: dict[tuple[int, str], list[tuple[int, int]]] = {}  # woken -> flows
        self.deltas: dict[tuple[int, str], list[tuple[int, int]]] = {}  # counters
        self.cond_lock: dict[str, str] = {}

    def label(self, prim: str) -> str:
        return self.labels.get(prim, prim)

    def slice(self, ev: Event, name: str, cat: str, start: int, end: int, **args: Any) -> None:
        self.w.emit(
            {
                "ph": "X",
                "name": name,
                "cat": cat,
                "pid": ev["pid"],
                "tid": ev["tid"],
                "ts": _us(start),
                "dur": _us(max(0, end - start)),
                "args": {k: v for k, v in args.items() if v is not None},
            }
        )

    def flow(self, pid: int, tid: int, ts: int, phase: str, fid: int, name: str) -> None:
        ev: dict[str, Any] = {
            "ph": phase,
            "id": fid,
            "name": name,
            "cat": name,
            "pid": pid,
            "tid": tid,
            "ts": _us(ts),
        }
        if phase == "f":
            ev["bp"] = "e"
        self.w.emit(ev)

    def next_flow(self) -> int:
        self._ids[0] += 1
        return self._ids[0]

    def handle(self, ev: Event) -> None:
        name = ev.get("event")
        tid = ev.get("tid")
        if not isinstance(tid, int):
            return
        if name == "acquire":
            self._acquire(ev, tid)
        elif name == "release":
            self._release(ev, tid)
        elif name == "created" and isinstance(ev.get("lock"), str):
            self.cond_lock[ev["prim"]] = ev["lock"]
        elif name == "cond_wait":
            self.cond_wait[(tid, ev["prim"])] = [ev["ts"], ev.get("lock"), ev["ts"]]
            self.deltas.setdefault((ev["pid"], ev["prim"]), []).append((ev["ts"], 1))
        elif name == "cond_wake":
            self._wake(ev, tid)
        elif name in ("notify", "notify_all"):
            for w in ev.get("woken") or ():
                if isinstance(w, int):
                    fid = self.next_flow()
                    self.flow(ev["pid"], tid, ev["ts"], "s", fid, "notify")
                    self.notified.setdefault((w, ev["prim"]), []).append((fid, ev["ts"]))
        elif name in ("sem_acquire", "event_wait", "barrier_wait"):
            wait = ev.get("wait_ns") if name == "sem_acquire" else ev.get("waited_ns")
            if isinstance(wait, int) and wait > 0:
                self.slice(
                    ev,
                    f"{name} {self.label(ev['prim'])}",
                    "wait",
                    ev["ts"] - wait,
                    ev["ts"],
                    site=ev.get("site"),
                )

    def _acquire(self, ev: Event, tid: int) -> None:
        prim = ev["prim"]
        ts = ev["ts"]
        wait = ev.get("wait_ns") or 0
        key = (tid, prim)
        if ev.get("restored"):
            for (t, _cond), cw in self.cond_wait.items():
                if t == tid and cw[1] == prim:
                    cw.append(ts - wait)  # the condition wait ends where the re-acquire starts
        if ev.get("contended") and wait > 0:
            self.slice(
                ev,
                f"wait {self.label(prim)}",
                "wait",
                ts - wait,
                ts,
                site=ev.get("site"),
                blocked_by=ev.get("blocked_by"),
            )
            self.deltas.setdefault((ev["pid"], prim), []).extend(((ts - wait, 1), (ts, -1)))
            # The hand-off: the release that let this thread in, i.e. the last release of the
            # lock by another thread during the wait (often, not always, the `blocked_by` one).
            last = self.last_release.get(prim)
            if last is not None and last[1] != tid and ts - wait - 1 <= last[0] <= ts:
                fid = self.next_flow()
                self.flow(ev["pid"], last[1], last[0] - 1, "s", fid, "handoff")
                self.flow(ev["pid"], tid, ts - 1, "f", fid, "handoff")
        if ev.get("ok") and key not in self.held:
            self.held[key] = ev.get("site") or "?"

    def _release(self, ev: Event, tid: int) -> None:
        prim = ev["prim"]
        if ev.get("depth") != 0:
            return
        key = (tid, prim)
        site = self.held.pop(key, None)
        self.last_release[prim] = (ev["ts"], tid)
        hold = ev.get("hold_ns")
        if isinstance(hold, int):
            self.slice(
                ev, self.label(prim), "hold", ev["ts"] - hold, ev["ts"], site=site, prim=prim
            )
        if "saved_depth" in ev:
            for (t, _cond), cw in self.cond_wait.items():
                if t == tid and cw[1] == prim:
                    cw[2] = ev["ts"]  # the condition wait starts once the lock is released

    def _wake(self, ev: Event, tid: int) -> None:
        prim = ev["prim"]
        cw = self.cond_wait.pop((tid, prim), None)
        if cw is None:
            return
        start = cw[2]
        end = cw[3] if len(cw) > 3 else ev["ts"] - (ev.get("reacquire_ns") or 0)
        self.slice(
            ev,
            f"cond wait {self.label(prim)}",
            "cond",
            start,
            end,
            notified=ev.get("notified"),
            site=ev.get("site"),
        )
        self.deltas.setdefault((ev["pid"], prim), []).append((ev["ts"], -1))
        flows = self.notified.pop((tid, prim), [])
        if flows and ev.get("notified"):
            fid, _ = flows[0]
            self.flow(ev["pid"], tid, max(start, end - 1), "f", fid, "notify")

    def counters(self) -> None:
        for (pid, prim), deltas in sorted(self.deltas.items()):
            n = 0
            for ts, d in sorted(deltas):
                n = max(0, n + d)
                self.w.emit(
                    {
                        "ph": "C",
                        "name": f"waiting: {self.label(prim)}",
                        "pid": pid,
                        "ts": _us(ts),
                        "args": {"threads": n},
                    }
                )


REORDER_WINDOW = 100_000


def in_ts_order(path: str, problems: list[Problem]) -> Iterator[Event]:
    """The events of one file sorted by ``ts``, with bounded memory.

    A file is each thread's program order and close to ``ts`` order overall (threads append
    to one buffer), so a sliding heap of `REORDER_WINDOW` events puts it in order without
    holding the whole file.
    """
    heap: list[tuple[int, int, Event]] = []
    seq = 0
    for _, values in read_chunks(path, problems):
        for ev in values:
            if isinstance(ev, dict) and isinstance(ev.get("ts"), int):
                seq += 1
                if len(heap) < REORDER_WINDOW:
                    heapq.heappush(heap, (ev["ts"], seq, ev))
                else:
                    yield heapq.heappushpop(heap, (ev["ts"], seq, ev))[2]
    while heap:
        yield heapq.heappop(heap)[2]


class PerfettoRenderer:
    """See the module docstring. Problems re-reading the logs are listed in the metadata."""

    def __init__(self, **_: Any) -> None:
        pass

    def render(self, report: Report, out: TextIO) -> None:
        labels = {r.key: r.label for r in report.primitives}
        w = _Writer(out)
        flow_ids = [0]
        problems: list[Problem] = []
        for t in report.threads:
            w.emit(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": t["pid"],
                    "tid": t["tid"],
                    "args": {"name": t["name"]},
                }
            )
        for src in report.sources:
            path = src["path"]
            if src.get("pid") is not None:
                argv = next((s.get("argv") for s in src.get("sessions", []) if s.get("argv")), None)
                name = " ".join(str(a) for a in argv) if argv else os.path.basename(path)
                w.emit(
                    {
                        "ph": "M",
                        "name": "process_name",
                        "pid": src["pid"],
                        "args": {"name": f"{name} ({src['pid']})"},
                    }
                )
            proc = _Process(w, labels, flow_ids)
            try:
                for ev in in_ts_order(path, problems):
                    try:
                        proc.handle(ev)
                    except (KeyError, TypeError, ValueError):
                        continue  # the stats pass already reported malformed events
            except OSError as exc:
                problems.append(Problem(path, 0, f"cannot read the file ({exc})"))
                continue
            proc.counters()
        w.close({"tracedsync": report.tracedsync, "problems": [str(p) for p in problems[:100]]})


RENDERER = PerfettoRenderer
