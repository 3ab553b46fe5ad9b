"""Op codes: the first item of every tuple the hot path records (decoded by `_record.decode`).

Declared, with each tuple's layout, in `tracedsync._core.schema`; named here too so that the
primitives import them from a module with nothing else in it.
"""

from .schema import (
    OP_ACQUIRE,
    OP_BARRIER_BROKEN,
    OP_BARRIER_WAIT,
    OP_COND_WAIT,
    OP_COND_WAKE,
    OP_CREATED,
    OP_EVENT_SET,
    OP_EVENT_WAIT,
    OP_GENERIC,
    OP_MISUSE,
    OP_MP_ACQUIRE,
    OP_NOTIFY,
    OP_RELEASE,
    OP_RESTORE,
    OP_RMW,
    OP_SAVE,
    OP_SEM_ACQUIRE,
    OP_SEM_RELEASE,
    OP_SESSION_END,
    OP_STATS,
    OP_THREAD,
    OP_VALUE,
)

__all__ = [
    "OP_ACQUIRE",
    "OP_BARRIER_BROKEN",
    "OP_BARRIER_WAIT",
    "OP_COND_WAIT",
    "OP_COND_WAKE",
    "OP_CREATED",
    "OP_EVENT_SET",
    "OP_EVENT_WAIT",
    "OP_GENERIC",
    "OP_MISUSE",
    "OP_MP_ACQUIRE",
    "OP_NOTIFY",
    "OP_RELEASE",
    "OP_RESTORE",
    "OP_RMW",
    "OP_SAVE",
    "OP_SEM_ACQUIRE",
    "OP_SEM_RELEASE",
    "OP_SESSION_END",
    "OP_STATS",
    "OP_THREAD",
    "OP_VALUE",
]
