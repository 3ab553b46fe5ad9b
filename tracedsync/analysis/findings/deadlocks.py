"""Deadlocks: reported by the recorder at run time, or inferred from how the log ended.

Limits, honestly. The log records an acquire once it has *finished*, so a thread blocked for
ever in ``acquire`` leaves no record of what it is waiting for. What the log does show at its
end is which locks each thread still held (acquires without their release, plus the owners in
the ``stats`` counters written at exit). If thread T holds A, thread U holds B, and the
lock-order graph shows that A's holders go on to take B while B's go on to take A, then T is
probably waiting for U and U for T. Such a cycle among threads is reported as a *likely*
deadlock: an error when the process did not exit normally (no ``session_end``: it hung and was
killed), a warning otherwise (daemon threads stuck at exit). ``long_wait`` events that name the
holder (``blocked_by``) add certain wait-for edges. Runtime ``deadlock`` events are certain.
"""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregate, ProcessEnd, Thread
from ..graph import cycles
from ..labels import Labels
from . import Finding, Options, make, ms
from .signals import signal_locks


def detect(agg: Aggregate, options: Options, labels: Labels) -> list[Finding]:
    out = _runtime(agg, labels)
    # A deadlock the recorder reported at run time is not inferred a second time.
    done = {frozenset((t.get("host", ""), t["pid"], t["tid"]) for t in f.threads) for f in out}
    out.extend(_inferred(agg, labels, done))
    return out


def _runtime(agg: Aggregate, labels: Labels) -> list[Finding]:
    """One finding per cycle, worded as what happened. A cycle across processes is reported
    by each process in it, each with the stacks of its own threads: the reports are merged
    (each thread's stack from whichever report has it), and a cycle counts as often as one
    process reported it. How each wait ended comes from its ``deadlock_end`` (see `_ends`)."""
    seen: dict[Any, Finding] = {}
    reports: dict[Any, dict[Any, int]] = {}
    ends = _ends(agg)
    hung = {(e.host, e.pid) for e in agg.ends if not e.ended}
    for ev in agg.deadlocks:
        members = []
        host = str(ev.get("host", ""))
        for c in ev["cycle"]:
            pid = int(c.get("pid", ev.get("pid") or 0))
            tid = c.get("tid")
            members.append((pid, tid, c.get("prim"), c.get("site")))
        key = tuple(sorted((host, p, t, str(x)) for p, t, x, _ in members))
        by = reports.setdefault(key, {})
        by[ev.get("pid")] = by.get(ev.get("pid"), 0) + 1
        if key in seen:
            seen[key].count = max(by.values())
            _merge_stacks(seen[key].details["cycle"], ev["cycle"])
            continue
        chain = ", ".join(
            f"{labels.thread_text(host, p, t) if isinstance(t, int) else t} waits for "
            f"{labels.prim(x) if isinstance(x, str) else x}" + (f" at {s}" if s else "")
            for p, t, x, s in members
        )
        certain = ev.get("certain", True) is not False
        outcome = [_end_of(ends, host, p, t, x, ev.get("ts")) for p, t, x, _ in members]
        sev, text = _worded(labels, host, members, outcome, chain, certain,
                            any((host, p) in hung for p, *_ in members))
        if sev is None:
            continue
        seen[key] = make(
            "deadlock",
            sev,
            text,
            labels,
            sites=[s for *_, s in members if isinstance(s, str)],
            threads=[(host, p, t) for p, t, *_ in members if isinstance(t, int)],
            prims=[x for _, _, x, _ in members if isinstance(x, str)],
            source="runtime",
            key=key,
            certain=certain,
            ended=[o for o in outcome if o is not None],
            cycle=[dict(c) for c in ev["cycle"]],
            stamps=[[host, p, t, ev.get("ts")] for p, t, *_ in members],
        )
    return list(seen.values())


End = dict[str, Any]


def _ends(agg: Aggregate) -> dict[tuple[str, int, Any, Any], list[End]]:
    """The ``deadlock_end`` events by (host, pid, tid, prim), in time order."""
    out: dict[tuple[str, int, Any, Any], list[End]] = {}
    for e in agg.facts.notes.get("deadlock_end", []):
        key = (str(e.get("host", "")), int(e.get("pid") or 0), e.get("tid"), e.get("prim"))
        out.setdefault(key, []).append(e)
    for items in out.values():
        items.sort(key=lambda e: int(e.get("ts") or 0))
    return out


def _end_of(ends: dict[tuple[str, int, Any, Any], list[End]], host: str, pid: int, tid: Any,
            prim: Any, ts: Any) -> End | None:
    """How the wait of (pid, tid) on ``prim`` in a cycle reported at ``ts`` ended: its first
    ``deadlock_end`` after the report; None if it never ended (or no end was recorded)."""
    for e in ends.get((host, pid, tid, prim), ()):
        if not isinstance(ts, int) or int(e.get("ts") or 0) >= ts:
            return e
    return None


def _worded(labels: Labels, host: str, members: list[tuple[int, Any, Any, Any]],
            outcome: list[End | None], chain: str, certain: bool, hung: bool
            ) -> tuple[str | None, str]:
    """The severity (None: not a finding) and the sentence of a runtime cycle, from how its
    waits ended.

    * Every wait ended with the thread getting what it waited for, and none gave up: something
      outside the cycle ended it (a Lock used as a signal, a semaphore released by a thread
      that held no permit): no deadlock. Not reported if the recorder was unsure (``certain``
      false), an info otherwise.
    * A wait gave up (its timeout expired): the cycle was real and was broken by that timeout:
      who gave up, after how long.
    * A wait never ended (the log stops with it): the threads could not proceed; for an
      unsure cycle (a plain Lock held by its own waiter), a warning if the process hung, an
      info if it exited (a thread still waiting for a signal at exit).
    """
    def who(i: int) -> str:
        p, t, *_ = members[i]
        return labels.thread_text(host, p, t) if isinstance(t, int) else str(t)

    gave_up = [i for i, o in enumerate(outcome) if o is not None and o.get("ok") is False]
    if all(o is not None and o.get("ok") is True for o in outcome):
        if not certain:
            return None, ""
        return "info", (f"A wait cycle at run time ({chain}) ended without a timeout: a thread "
                        "outside it released a plain Lock or semaphore in it.")
    if all(o is not None for o in outcome) and not gave_up:
        waited = max(int((o or {}).get("waited_ns") or 0) for o in outcome)
        return ("error" if certain else "warning"), (
            f"Deadlock at run time: {chain}; the waits ended after up to {ms(waited)}, by an "
            "exception (KeyboardInterrupt, DeadlockError) or as the log does not say.")
    if gave_up:
        parts = []
        for i in gave_up:
            o = outcome[i] or {}
            timeout = o.get("timeout")
            limit = f" (its timeout, {timeout:g} s)" if isinstance(timeout, (int, float)) else ""
            parts.append(f"{who(i)} gave up after {ms(int(o.get('waited_ns') or 0))}{limit}")
        return ("error" if certain else "warning"), (
            f"Deadlock at run time, broken by a timeout: {chain}; " + ", ".join(parts)
            + ", which broke the cycle (without that timeout these threads would have waited "
            "for ever).")
    if certain:
        return "error", (f"Deadlock detected at run time: {chain}; none of these threads can "
                         "proceed.")
    if hung:
        return "warning", (f"Likely deadlock at run time: {chain}; only a thread outside this "
                           "cycle releasing a plain Lock or semaphore in it could end the wait, "
                           "and the process never exited normally.")
    return "info", (f"A thread was still waiting at exit for a primitive it held itself ({chain}):"
                    " a plain Lock used as a signal that never came, or a self-deadlock of a "
                    "daemon thread.")


def _merge_stacks(into: list[dict[str, Any]], other: list[dict[str, Any]]) -> None:
    stacks = {(c.get("pid"), c.get("tid")): c.get("stack") for c in other}
    for c in into:
        if not c.get("stack"):
            stack = stacks.get((c.get("pid"), c.get("tid")))
            if stack:
                c["stack"] = stack


def _held_at_end(end: ProcessEnd, signals: set[str], agg: Aggregate
                 ) -> dict[Thread, dict[str, str]]:
    """What each thread held when the log of ``end``'s process stopped: the locks it took and
    did not release (in the log), and those the recorder's counters at exit name it the owner
    of (at level contention, uncontended acquires are not in the log), but not a lock that the
    thread held when its parent process forked this one and never took here (nothing in this
    process ever held it for a reason)."""
    held: dict[Thread, dict[str, str]] = {}
    for tid, items in end.held.items():
        for prim, site, _ in items:
            if prim not in signals:
                held.setdefault((end.host, end.pid, tid), {})[prim] = site
    for prim, tid, _ in end.owners_at_exit:
        t = (end.host, end.pid, tid)
        if prim in signals or prim in held.get(t, {}):
            continue
        if _made_elsewhere(prim, end.pid) and not _took_here(agg, prim, t):
            continue  # inherited at fork
        held.setdefault(t, {})[prim] = "?"
    return {t: hs for t, hs in held.items() if hs}


def _made_elsewhere(prim: str, pid: int) -> bool:
    head = prim.split("@", 1)[0].split(".", 1)[0]
    return head.isdigit() and int(head) != pid


def _took_here(agg: Aggregate, prim: str, t: Thread) -> bool:
    return any(t in st.threads for st in agg.sites.get(prim, {}).values())


def _inferred(agg: Aggregate, labels: Labels, done: set[Any]) -> list[Finding]:
    held: dict[Thread, dict[str, str]] = {}
    hung: dict[tuple[str, int], bool] = {}
    signals = signal_locks(agg)  # no mutual exclusion: neither "held" nor part of a cycle
    for end in agg.ends:
        for t, hs in _held_at_end(end, signals, agg).items():
            held.setdefault(t, {}).update(hs)
        proc = (end.host, end.pid)
        hung[proc] = hung.get(proc, False) or not end.ended
    then: dict[str, set[str]] = {}  # A -> locks taken while holding A
    for a, b in agg.edges:
        then.setdefault(a, set()).add(b)
    owner = {prim: t for t, hs in held.items() for prim in hs}
    wait_for: dict[Thread, dict[Thread, str]] = {}  # T -> U -> the lock T probably waits for
    for t, hs in held.items():
        for x in hs:
            for y in sorted(then.get(x, ())):  # (sets iterate in a per-process order)
                u = owner.get(y)
                if u is not None and u != t and y not in hs:
                    wait_for.setdefault(t, {})[u] = y
    for (kind, prim, _site), tally in agg.runtime.items():
        if kind == "long_wait":  # the recorder saw T waiting on prim, held by thread b
            for w in tally.details.get("waits", []):
                h, p, t, b = w if len(w) == 4 else ("", *w)
                wait_for.setdefault((h, p, t), {})[(h, p, b)] = prim
    out: list[Finding] = []
    graph = {t: list(us) for t, us in wait_for.items()}
    for cyc in cycles(graph):
        if frozenset(cyc) in done:
            continue
        steps = []
        sites: list[str] = []
        prims: list[str] = []
        for t, u in zip(cyc, cyc[1:] + cyc[:1], strict=True):
            y = wait_for[t][u]
            mine = ", ".join(labels.prim(p) for p in held.get(t, {}))
            steps.append(
                f"{labels.thread_text(*t)} holds {mine or 'nothing'} and "
                f"probably waits for {labels.prim(y)}"
            )
            sites.extend(held.get(t, {}).values())
            prims.append(y)
        procs = {(h, p) for h, p, _ in cyc}
        stuck = any(hung.get(p, False) for p in procs)
        out.append(
            make(
                "deadlock",
                "error" if stuck else "warning",
                "Likely deadlock at the end of the log: "
                + "; ".join(steps)
                + (
                    " (the process never exited normally)."
                    if stuck
                    else " (the process exited, so these were probably daemon threads)."
                ),
                labels,
                sites=[s for s in sites if s != "?"],
                threads=cyc,
                prims=prims,
                source="inferred",
            )
        )
    stacks: dict[tuple[str, int, Any], list[dict[str, Any]]] = {}
    for n in agg.facts.notes.get("held_stack", []):
        key3 = (str(n.get("host", "")), int(n.get("pid") or 0), n.get("tid"))
        stacks.setdefault(key3, []).append(n)
    in_cycle = {
        t for f in out for t in ((x.get("host", ""), x["pid"], x["tid"]) for x in f.threads)
    }
    in_cycle.update(t for threads in done for t in threads)
    for end in agg.ends:
        for t, hs in sorted(_held_at_end(end, signals, agg).items()):
            if t in in_cycle:
                continue
            names = ", ".join(labels.prim(p) for p in hs)
            where = "when the process exited" if end.ended else "at the end of the log"
            out.append(
                make(
                    "held_at_end",
                    "warning" if end.ended else "info",
                    f"{labels.thread_text(*t)} still held {names} {where}"
                    + (
                        "; a release is missing or the thread was stuck."
                        if end.ended
                        else "; the process did not exit normally (killed, crashed or running)."
                    ),
                    labels,
                    sites=[s for s in hs.values() if s != "?"],
                    threads=[t],
                    prims=list(hs),
                    stacks=_held_stacks(labels, t, hs, stacks.get(t, [])),
                )
            )
    return out


def _held_stacks(labels: Labels, t: Thread, held: dict[str, str],
                 notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where the holder of locks held at exit was then (its stack, from the exit ``stats``),
    once per thread (the same stack for each of its locks)."""
    for n in notes:
        if n.get("prim") in held and n.get("stack"):
            return [{"thread": f"{labels.thread_text(*t)}, at exit", "stack": n["stack"]}]
    return []
