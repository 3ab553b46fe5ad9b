"""Misuse and unsafe patterns the recorder reports directly, and gaps in the logs themselves.

Misuse (releasing a lock one does not hold, waiting on a condition without its lock), broken
barriers, and lost events (an incomplete log makes every other figure an undercount); with
unsynchronised read-modify-writes of shared values (`rmw`) and semaphore permits never returned
(`permits`).
"""

from __future__ import annotations

from ..aggregate import Aggregate
from ..labels import Labels
from . import Finding, Options, make, permits, rmw

_MISUSE = {
    "release_unowned": "released by a thread that does not own it",
    "release_unlocked": "released while it was not locked",
    "wait_unowned": "waited on without holding its lock",
    "notify_unowned": "notified without holding its lock",
}


def detect(agg: Aggregate, options: Options, labels: Labels) -> list[Finding]:
    out: list[Finding] = []
    for (prim, what, site), t in sorted(agg.misuse.items()):
        said = _MISUSE.get(what, f"misused ({what})")
        out.append(
            make(
                "misuse",
                "error",
                f"{labels.prim(prim)} was {said} at {site} ({t.count} time(s)); this raised "
                f"{t.details.get('error') or 'an error'} in the program.",
                labels,
                sites=[site],
                threads=t.threads,
                prims=[prim],
                count=t.count,
                what=what,
                stamps=t.details.get("stamps", []),
            )
        )
    out.extend(rmw.detect(agg, labels))
    out.extend(permits.detect(agg, labels))
    for (prim, why, site), t in sorted(agg.broken.items()):
        cause = {
            "abort": "abort() was called",
            "timeout": "a wait timed out",
            "action": "the barrier's action raised",
            "reset": "reset() was called while threads waited",
        }.get(why, why)
        out.append(
            make(
                "barrier_broken",
                "warning",
                f"{labels.prim(prim)} was broken ({cause}); {t.count} wait(s) at {site} ended "
                "with BrokenBarrierError.",
                labels,
                sites=[site],
                threads=t.threads,
                prims=[prim],
                count=t.count,
                why=why,
                stamps=t.details.get("stamps", []),
            )
        )
    for src in agg.sources:
        if src.dropped:
            out.append(
                make(
                    "dropped_events",
                    "warning",
                    f"{src.dropped} event(s) of process {src.pid} were lost by the recorder "
                    f"({src.path}); every figure for that process is an undercount.",
                    labels,
                    count=src.dropped,
                    path=src.path,
                )
            )
    return out
