"""Lost wake-ups and waits that never ended.

A notify (or an Event's ``set``) that finds nobody waiting wakes nobody; if the next wait on the
same condition then times out (or never returns), the waiter most likely missed the signal it
was waiting for: it checked its predicate, or started waiting, on the wrong side of the notify.
The scanner pairs each ``cond_wait`` with the last notify of that condition before it (both are
recorded under the condition's lock, so their order in the file is their real order).
"""

from __future__ import annotations

from ..aggregate import Aggregate
from ..labels import Labels
from . import Finding, Options, make, ms


def detect(agg: Aggregate, options: Options, labels: Labels) -> list[Finding]:
    out: list[Finding] = []
    for (prim, notify_site, wait_site), t in sorted(agg.lost_wakeups.items()):
        stuck = int(t.details.get("still_waiting", 0))
        unsure = int(t.details.get("unsure", 0))
        timed_out = t.count - stuck
        parts = []
        if timed_out:
            parts.append(f"{timed_out} wait(s) timed out (longest {ms(t.max_ns)})")
        if stuck:
            parts.append(f"{stuck} wait(s) never returned")
        if unsure and unsure >= timed_out and not stuck:
            severity = "info"
            said = (f"{labels.prim(prim)} was set at {notify_site} while nobody waited and "
                    f"cleared by another thread before any wait saw it, then at {wait_site} "
                    f"{' and '.join(parts)}: lost, unless the clearing thread did the work the "
                    "set asked for.")
        else:
            severity = "error" if stuck else "warning"
            said = (f"Possible lost wake-up on {labels.prim(prim)}: the notify at "
                    f"{notify_site} found no waiter, then at {wait_site} {' and '.join(parts)}; "
                    "the waiter missed the signal.")
        out.append(
            make(
                "lost_wakeup",
                severity,
                said,
                labels,
                sites=[notify_site, wait_site],
                threads=t.threads,
                prims=[prim],
                count=t.count,
                still_waiting=stuck,
                stamps=t.details.get("stamps", []),
            )
        )
    lost = {(p, ws) for p, _, ws in agg.lost_wakeups}
    for end in agg.ends:
        for tid, waits in sorted(end.waiting.items()):
            for prim, site, was_lost in waits:
                if was_lost or (prim, site) in lost:
                    continue
                out.append(
                    make(
                        "unfinished_wait",
                        "info",
                        f"{labels.thread_text(end.host, end.pid, tid)} was still waiting on "
                        f"{labels.prim(prim)} at {site} when the log ended.",
                        labels,
                        sites=[site],
                        threads=[(end.host, end.pid, tid)],
                        prims=[prim],
                    )
                )
    return out
