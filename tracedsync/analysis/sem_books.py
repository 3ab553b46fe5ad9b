"""Who holds a semaphore's permits, and where each was acquired: the recorder's books, replayed.

Design note. The recorder keeps, per semaphore, the permits each thread holds (acquires minus
releases; a release takes back the caller's own permits first, then other holders', oldest
holder first) and writes what is left in the ``stats`` event at exit (``held_by``). Those books
are keyed by ``threading.get_ident()``, which Python reuses once a thread has exited: a permit
taken by a thread that has exited may be put on a later thread that got the same ident. The
log itself has no such ambiguity: every ``sem_acquire`` and ``sem_release`` carries the native
id of its thread (named in stream order) and its call site. So, for a process logged at level
``full`` (every acquire and release written), `SemBooks` applies the same rule to the events
and knows, for each permit still held, the thread (by native id) and the line that took it.

A thread's own permits are returned last taken, first returned (``with sem:`` nests); taken
from other holders, oldest holder first and that holder's oldest permit first, as the recorder
does.
"""

from __future__ import annotations

from typing import Any

MAX_SITES = 8  # acquire sites kept per holder (the oldest permits); the count stays exact


class SemBooks:
    """Permits held per semaphore and thread (native id), with where each was acquired."""

    def __init__(self) -> None:
        # prim -> tid -> [(site, ts)] of the permits it holds, oldest first (insertion order of
        # the inner dict: the order holders first took a permit, as the recorder's dict)
        self.held: dict[str, dict[int, list[tuple[str, int]]]] = {}

    def acquired(self, prim: str, tid: int, site: str, ts: int) -> None:
        self.held.setdefault(prim, {}).setdefault(tid, []).append((site, ts))

    def released(self, prim: str, tid: int, n: int) -> None:
        holders = self.held.get(prim)
        if not holders:
            return
        mine = holders.get(tid)
        while n and mine:
            mine.pop()
            n -= 1
        if mine is not None and not mine:
            del holders[tid]
        while n and holders:
            oldest = next(iter(holders))
            permits = holders[oldest]
            take = min(n, len(permits))
            del permits[:take]
            n -= take
            if not permits:
                del holders[oldest]

    def holders(self, prim: str) -> list[dict[str, Any]]:
        """``[{tid, permits, sites: [[site, count], ...]}]``, oldest holder first."""
        out = []
        for tid, permits in (self.held.get(prim) or {}).items():
            counts: dict[str, int] = {}
            for site, _ in permits:
                counts[site] = counts.get(site, 0) + 1
            sites = [[s, n] for s, n in list(counts.items())[:MAX_SITES]]
            out.append({"tid": tid, "permits": len(permits), "sites": sites,
                        "since": permits[0][1] if permits else None})
        return out

    def forget(self, prim: str) -> None:
        self.held.pop(prim, None)

    def clear(self) -> None:
        self.held.clear()
