"""Plain Locks used as signals: released by a thread other than the one that took them.

A ``threading.Lock`` may legally be released by any thread, and one is often used as a
one-shot signal: ``done.acquire()``, start a worker that calls ``done.release()`` when it has
finished, ``done.acquire()`` again to wait for it (and keep it). Such a lock is no mutual
exclusion: "held at exit", a hold's length, or a lock-order edge out of it say nothing about a
critical section. The log shows the pattern: a release that brings the lock to depth 0 in a
thread that had not taken it (the kernel charges its hold to the unknown site, ``?``). The
findings that reason about critical sections leave these locks out.
"""

from __future__ import annotations

from ..aggregate import UNKNOWN_SITE, Aggregate


def signal_locks(agg: Aggregate) -> set[str]:
    """The plain Locks released at least once by a thread that had not taken them."""
    out = set()
    for prim, per in agg.sites.items():
        st = per.get(UNKNOWN_SITE)
        info = agg.prims.get(prim)
        if st is not None and st.hold.count and info is not None and info.kind == "Lock":
            out.add(prim)
    return out
