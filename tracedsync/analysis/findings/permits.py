"""Semaphore permits never returned: ``permits_held``, judged per semaphore.

A semaphore leaks when its value at the end of the run is below its initial value: permits
were taken and never given back. Who holds a permit is no proof of a leak (a ``Semaphore(0)``
used as a signal is released by one thread and acquired by another: the acquirer "holds" a
permit for ever, and nothing is wrong), so the rule is the value: the semaphore's last
``stats`` (of all its processes, the latest) against the ``value`` it was created with. The
finding then names who holds the missing permits and where each acquired them (from the
replayed books: `sem_books.py`), threads by name and native id, and where the semaphore was
created. Without its creation (a multiprocessing semaphore whose creating process wrote no
log) or its value (a platform that cannot read it), the recorder's holders decide, as before.
"""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregate, Thread
from ..labels import Labels
from . import Finding, make


def detect(agg: Aggregate, labels: Labels) -> list[Finding]:
    by_prim: dict[str, list[dict[str, Any]]] = {}
    for p in agg.permits_held:
        by_prim.setdefault(p["prim"], []).append(p)
    out: list[Finding] = []
    for prim, entries in sorted(by_prim.items()):
        info = agg.prims.get(prim)
        initial = info.initial if info is not None else None
        last = agg.facts.sem_last.get(prim)
        final = last[1] if last is not None else None
        missing = None if initial is None or final is None else initial - final
        if missing is not None and missing <= 0:
            continue  # every permit taken was given back (by someone)
        holders = _holders(entries)
        if missing is None and not holders:
            continue
        n = missing if missing is not None else sum(h[1] for h in holders)
        who = "; ".join(_holder_text(labels, h) for h in holders[:6]) or "unknown threads"
        if len(holders) > 6:
            who += f"; and {len(holders) - 6} more"
        value = (f"its value was {final} at exit, {initial} when created"
                 if missing is not None else "its holders at exit")
        out.append(make(
            "permits_held",
            "warning",
            f"{n} permit(s) of {labels.prim(prim)} were never returned ({value}): held by "
            f"{who}; a release is missing on some path.",
            labels,
            sites=[s for h in holders for s, _ in h[2]],
            threads=[h[0] for h in holders if isinstance(h[0][2], int)],
            prims=[prim],
            count=n,
            initial=initial,
            final=final,
            holders=[{"thread": labels.thread(*h[0]), "permits": h[1],
                      "acquired_at": [[s, c] for s, c in h[2]], "also": h[3]}
                     for h in holders],
            stamps=[[*h[0], h[4]] for h in holders if h[4] is not None],
        ))
    return out


Holder = tuple[Thread, int, list[tuple[str, int]], list[int], Any]
"""(thread, permits, [(acquire site, count)], other tids with its ident, since ts)"""


def _holders(entries: list[dict[str, Any]]) -> list[Holder]:
    out: list[Holder] = []
    for e in sorted(entries, key=lambda e: (e.get("host", ""), e["pid"], e.get("ts") or 0)):
        host, pid = str(e.get("host", "")), int(e["pid"])
        if e.get("replayed") and e.get("holders") is not None:
            for h in e["holders"]:
                out.append(((host, pid, int(h["tid"])), int(h["permits"]),
                            [(str(s), int(c)) for s, c in h.get("sites", [])], [],
                            h.get("since")))
            continue
        ambiguous = e.get("ambiguous") or {}
        for k, v in sorted((e.get("held_by") or {}).items()):
            tid = int(k) if str(k).isdigit() else -1
            also = [t for t in ambiguous.get(str(k), []) if t != tid]
            out.append(((host, pid, tid), int(v), [], also, e.get("ts")))
    return out


def _holder_text(labels: Labels, h: Holder) -> str:
    (host, pid, tid), permits, sites, also, _ = h
    text = labels.thread_text(host, pid, tid) if tid >= 0 else "a thread"
    if also:
        text += " (or " + ", ".join(labels.thread_text(host, pid, t) for t in also) + \
            ", which had the same ident)"
    where = ", ".join(f"{s}" + (f" ({c}x)" if c > 1 else "") for s, c in sites)
    return f"{text}: {permits}" + (f", acquired at {where}" if where else "")
