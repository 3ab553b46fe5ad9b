"""Nested-monitor lockouts: ``nested_monitor``.

A thread holds lock M and waits on Condition C over another lock; the wait releases C's lock,
not M, so a thread that must take M to notify C blocks, and the wait waits for a notify that
cannot come. The recorder reports the moment it forms (a ``nested_monitor`` event: both
threads, both sites, both stacks); the verdict comes from how the holder's wait ended:

* it never did (the log ends with it): a lockout, an error (a warning if the process still
  exited normally: daemon threads stuck at exit);
* its timeout ended it: a lockout that the timeout broke, a warning;
* a notify ended it (a third thread could notify C): the blocked thread was only held up
  behind the wait, an info.

Without the event (a log at level off, or the recorder of an older version), the end of a log
that never ended normally can still show it: a thread waiting on a Condition while holding
another lock is a likely lockout, a warning.
"""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregate
from ..labels import Labels
from . import Finding, Options, make, ms
from .signals import signal_locks


def detect(agg: Aggregate, options: Options, labels: Labels) -> list[Finding]:
    hung = {(e.host, e.pid) for e in agg.ends if not e.ended}
    out: list[Finding] = []
    seen: set[tuple[str, int, Any, Any]] = set()
    for n in agg.facts.notes.get("nested_monitor", []):
        host, pid = str(n.get("host", "")), int(n.get("pid") or 0)
        waiter, holder = (host, pid, n.get("tid")), (host, pid, n.get("holder"))
        seen.add((host, pid, n.get("holder"), n.get("cond")))
        lock, cond = str(n["prim"]), str(n["cond"])
        ended = n.get("ended")
        what = (f"{_who(labels, waiter)} waited at {n.get('site')} for {labels.prim(lock)}, "
                f"held by {_who(labels, holder)}, which was waiting at {n.get('holder_site')} "
                f"on {labels.prim(cond)}")
        if ended is None:
            severity = "error" if (host, pid) in hung else "warning"
            said = (f"Nested-monitor lockout: {what}; that wait releases only the condition's "
                    "own lock, so a notifier that needs the first lock can never reach it, and "
                    "the wait never ended"
                    + (" (the process never exited normally)." if severity == "error"
                       else " (still waiting at exit)."))
        elif not ended.get("notified"):
            severity = "warning"
            waited = ended.get("waited_ns")
            said = (f"Nested-monitor lockout, broken by a timeout: {what}; only the wait's "
                    f"timeout ({n.get('timeout')} s) ended it"
                    + (f", after {ms(int(waited))}" if isinstance(waited, int) else "") + ".")
        else:
            severity = "info"
            said = (f"{what}, and was held up until another thread notified the condition: "
                    "a thread that must take the first lock to notify would lock out.")
        out.append(make(
            "nested_monitor", severity, said, labels,
            sites=[str(n.get("site") or ""), str(n.get("holder_site") or ""),
                   str(n.get("held_site") or "")],
            threads=[(h, p, t) for h, p, t in (waiter, holder) if isinstance(t, int)],
            prims=[lock, cond],
            stacks=[{"thread": _who(labels, waiter), "stack": n.get("stack") or []},
                    {"thread": _who(labels, holder), "stack": n.get("holder_stack") or []}],
            stamps=[[*waiter, n.get("ts")]],
            source="runtime",
        ))
    out.extend(_at_the_end(agg, labels, hung, seen))
    return out


def _who(labels: Labels, t: tuple[str, int, Any]) -> str:
    host, pid, tid = t
    return labels.thread_text(host, pid, tid) if isinstance(tid, int) else str(tid)


def _at_the_end(agg: Aggregate, labels: Labels, hung: set[tuple[str, int]],
                seen: set[tuple[str, int, Any, Any]]) -> list[Finding]:
    """A log that stops (the process hung) with a thread waiting on a Condition while it holds
    another lock (the recorder saw no nested_monitor: none blocked yet, or an older recorder)."""
    out: list[Finding] = []
    signals = signal_locks(agg)
    for end in agg.ends:
        if (end.host, end.pid) not in hung:
            continue
        for tid, waits in sorted(end.waiting.items()):
            holds = [(p, s) for p, s, _ in end.held.get(tid, []) if p not in signals]
            for cond, site, _ in waits:
                if (end.host, end.pid, tid, cond) in seen:
                    continue
                info = agg.prims.get(cond)
                others = [(p, s) for p, s in holds if info is None or p != info.lock]
                if not others:
                    continue
                names = ", ".join(f"{labels.prim(p)} (taken at {s})" for p, s in others)
                out.append(make(
                    "nested_monitor", "warning",
                    f"Likely nested-monitor lockout at the end of the log: "
                    f"{labels.thread_text(end.host, end.pid, tid)} was waiting at {site} on "
                    f"{labels.prim(cond)} while holding {names}; a thread that must take "
                    "those to notify the condition cannot (the process never exited normally).",
                    labels,
                    sites=[site, *(s for _, s in others)],
                    threads=[(end.host, end.pid, tid)],
                    prims=[*(p for p, _ in others), cond],
                    stamps=[[end.host, end.pid, tid, end.last_ts]],
                    source="inferred",
                ))
    return out
