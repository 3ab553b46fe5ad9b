"""Per-primitive bookkeeping (`PrimState`) and its frozen snapshot (`Statistics`).

A `PrimState` is mutated only by the thread that holds the primitive (owner, depth, hold start)
or through single attribute updates whose races only blur counters, never ownership: the owner
and depth are written after the real acquire succeeds and before the real release, so at any
instant they describe the real lock, seen from its holder.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import _runtime as rt
from ._events import OP_STATS


@dataclasses.dataclass(frozen=True)
class Statistics:
    """A snapshot of one traced primitive's counters (see `TracedLock.statistics`)."""

    prim: str
    """tracedsync's id of the primitive (``"<pid>.<n>"``, unique across processes)."""
    kind: str
    name: str | None
    acquisitions: int
    """Successful acquisitions, nested ones included."""
    contended: int
    """Acquisitions that found the primitive held by someone else."""
    failed: int
    """Non-blocking or timed-out acquisitions that did not get the primitive."""
    max_depth: int
    wait_ns: int
    """Total time spent blocked in contended acquisitions."""
    hold_ns: int
    """Total time held, from the first acquire to the release that returned depth to 0."""
    misuse: int
    """Releases by a thread that did not hold the primitive, and other misuse."""
    owner: int | None
    """The ident of the thread that holds it now (None if free)."""
    depth: int
    waits: int = 0
    """Condition waits (conditions only)."""
    wait_timeouts: int = 0
    """Condition waits that timed out (conditions only)."""
    notifies: int = 0
    """notify/notify_all calls (conditions only)."""
    unheard_notifies: int = 0
    """notify/notify_all calls that found no waiter (conditions only)."""

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict (the ``stats`` event's fields)."""
        return dataclasses.asdict(self)


class PrimState:
    """Live state of one traced primitive. Slots only: read on every traced call."""

    __slots__ = (
        "__weakref__",
        "acquire",
        "acquisitions",
        "contended",
        "depth",
        "failed",
        "hold_ns",
        "kind",
        "lock",
        "lock_state",
        "max_depth",
        "misuse",
        "name",
        "notifies",
        "owner",
        "prim",
        "raw",
        "release",
        "reentrant",
        "reported",
        "restore_ns",
        "t_hold",
        "unheard",
        "wait_ns",
        "wait_timeouts",
        "waiters",
        "waits",
    )

    def __init__(self, raw: Any, prim: str, kind: str, name: str | None) -> None:
        self.raw = raw
        self.acquire = getattr(raw, "acquire", None)
        self.release = getattr(raw, "release", None)
        self.prim = prim
        self.kind = kind
        self.name = name
        self.owner: int | None = None
        self.depth = 0
        self.t_hold = 0
        self.acquisitions = 0
        self.contended = 0
        self.failed = 0
        self.max_depth = 0
        self.wait_ns = 0
        self.hold_ns = 0
        self.misuse = 0
        self.waits = 0
        self.wait_timeouts = 0
        self.notifies = 0
        self.unheard = 0
        self.waiters: list[int] = []
        self.reported = False
        self.reentrant = False
        self.restore_ns = 0
        self.lock: Any = None
        self.lock_state: PrimState | None = None

    def statistics(self) -> Statistics:
        return Statistics(
            prim=self.prim,
            kind=self.kind,
            name=self.name,
            acquisitions=self.acquisitions,
            contended=self.contended,
            failed=self.failed,
            max_depth=self.max_depth,
            wait_ns=self.wait_ns,
            hold_ns=self.hold_ns,
            misuse=self.misuse,
            owner=self.owner,
            depth=self.depth,
            waits=self.waits,
            wait_timeouts=self.wait_timeouts,
            notifies=self.notifies,
            unheard_notifies=self.unheard,
        )

    def report(self) -> None:
        """Record this primitive's counters once (at exit, or when it is collected)."""
        if self.reported:
            return
        self.reported = True
        if rt.level != rt.OFF:
            stats = self.statistics().as_dict()
            del stats["prim"]
            rt.emit((OP_STATS, rt.now(), rt.get_ident(), self.prim, stats))

    def __del__(self) -> None:
        try:
            self.report()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
