"""The kinds of finding, one name each, and the other names they are known by.

One name per concept: a lock-order inversion is ``lock_order``, whether seen per instance
(these very locks) or per class (creation sites: ``details.level``), whether found in the
acquires of the log or by the recorder's ``lock_order=True`` at run time. The other names it has
had or is called by are accepted on input only (``--fail-on``/``--tracedsync-fail-on`` lists,
``# tracedsync: ignore[...]`` comments, baselines): ``order``, ``order_violation`` (the run-time
event's name before schema 3), ``lock_order_class``.
"""

from __future__ import annotations

KINDS = frozenset(
    {
        "deadlock",
        "held_at_end",
        "lock_order",
        "nested_same_class",
        "nested_monitor",
        "lost_wakeup",
        "unfinished_wait",
        "long_hold",
        "long_wait",
        "hot_site",
        "misuse",
        "rmw",
        "permits_held",
        "barrier_broken",
        "dropped_events",
    }
)
"""The ``kind`` of every finding (docs/analysis.md, "Findings")."""

ALIASES = {
    "order": "lock_order",
    "order_violation": "lock_order",
    "lock_order_class": "lock_order",
    "wakeup": "lost_wakeup",
}
"""Other names, accepted on input."""


def canonical(name: str) -> str:
    """The kind a name stands for (itself if it is no alias)."""
    return ALIASES.get(name, name)
