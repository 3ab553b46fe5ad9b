"""Per-primitive bookkeeping (`PrimState`) and its frozen snapshot (`Statistics`).

A `PrimState` is mutated only by the thread that holds the primitive (owner, depth, hold start)
or through single attribute updates whose races only blur counters, never ownership: the owner
and depth are written after the real acquire succeeds and before the real release, so at any
instant they describe the real lock, seen from its holder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from . import runtime as rt
from .ops import OP_STATS
from .schema import STATS_RENAMES


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
    """Condition, Event and Barrier waits (Barrier: ended, passed or broken)."""
    wait_timeouts: int = 0
    """Waits that timed out (Barrier: the waits whose timeout broke it)."""
    notifies: int = 0
    """notify/notify_all calls (conditions only)."""
    unheard_notifies: int = 0
    """notify/notify_all calls that found no waiter (conditions only)."""
    # -- kind-specific fields: a stats event carries only those of its kind (see KIND_FIELDS) --
    permits: int | None = None
    """Permits available now (semaphores; a snapshot)."""
    max_permits: int | None = None
    """The bound of a BoundedSemaphore: its initial value."""
    releases: int = 0
    """Successful release() calls (semaphores)."""
    held_by: tuple[tuple[int, int], ...] = ()
    """``(ident, permits)`` of each thread holding permits now, oldest first (semaphores)."""
    sets: int = 0
    """set() calls (events)."""
    clears: int = 0
    """clear() calls (events)."""
    flag: bool | None = None
    """Whether the event is set now (events)."""
    parties: int | None = None
    """Threads needed to pass the barrier (barriers)."""
    broken: bool | None = None
    """Whether the barrier is broken now (barriers)."""
    breaks: int = 0
    """Times the barrier went from working to broken: timeouts, aborts, failing actions."""
    broken_waits: int = 0
    """Barrier waits that ended broken (BrokenBarrierError, or the action's own exception)."""
    aborts: int = 0
    """abort() calls (barriers)."""
    resets: int = 0
    """reset() calls (barriers)."""
    reads: int = 0
    """Gets of ``.value`` or of an item, in this process (multiprocessing Values and Arrays)."""
    writes: int = 0
    """Sets of ``.value`` or of an item, in this process (Values and Arrays)."""
    unlocked: int = 0
    """Reads and writes made without the caller holding the value's lock (Values and Arrays)."""
    rmws: int = 0
    """Unsynchronised read-modify-writes seen in this process (Values and Arrays; each one, not
    only the first of its site, which is the one an ``rmw`` event reports)."""

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict (the ``stats`` event's fields, named as here: the event
        calls ``contended`` ``contended_count``, see `schema.STATS_RENAMES`)."""
        return dataclasses.asdict(self)


KIND_FIELDS: dict[str, frozenset[str]] = {
    "Semaphore": frozenset({"permits", "releases", "held_by"}),
    "BoundedSemaphore": frozenset({"permits", "max_permits", "releases", "held_by"}),
    "Event": frozenset({"sets", "clears", "flag"}),
    "Barrier": frozenset({"parties", "broken", "breaks", "broken_waits", "aborts", "resets"}),
    "Value": frozenset({"reads", "writes", "unlocked", "rmws"}),
    "Array": frozenset({"reads", "writes", "unlocked", "rmws"}),
}
"""The kind-specific `Statistics` fields that a ``stats`` event of each kind carries."""
EXTENSION_FIELDS = frozenset().union(*KIND_FIELDS.values())


class PrimState:
    """Live state of one traced primitive. Slots only: read on every traced call."""

    __slots__ = (
        "__weakref__",
        "aborts",
        "acquire",
        "acquisitions",
        "books",
        "break_book",
        "broken_waits",
        "clears",
        "contended",
        "default_timeout",
        "depth",
        "ext",
        "extra_stats",
        "failed",
        "held",
        "hold_ns",
        "kind",
        "lock",
        "lock_state",
        "max_depth",
        "misuse",
        "name",
        "notifies",
        "owner",
        "parties",
        "prim",
        "raw",
        "reentrant",
        "release",
        "releases",
        "reported",
        "resets",
        "restore_ns",
        "sets",
        "t_hold",
        "unheard",
        "wait_ns",
        "wait_timeouts",
        "waiters",
        "waits",
    )

    def __init__(self, raw: Any, prim: str, kind: str, name: str | None) -> None:
        self.raw = raw
        # The real primitive's bound methods (None for one that has no such method).
        self.acquire: Any = getattr(raw, "acquire", None)
        self.release: Any = getattr(raw, "release", None)
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
        # Semaphore, Event and Barrier books, set up by their modules: ``books`` is a raw lock
        # that guards the counters several threads update; ``extra_stats`` returns the kind's
        # own `Statistics` fields (see `KIND_FIELDS`).
        self.books: Any = None
        self.extra_stats: Callable[[PrimState], dict[str, Any]] | None = None
        self.held: dict[int, int] = {}
        self.releases = 0
        self.sets = 0
        self.clears = 0
        self.parties = 0
        self.default_timeout: float | None = None
        self.break_book: Any = None
        self.broken_waits = 0
        self.aborts = 0
        self.resets = 0
        # Kind-specific data of the multiprocessing primitives (see tracedsync/_mp_*.py): the
        # shared owner record of a lock, the books of a Value, the shared break record of a
        # Barrier.
        self.ext: Any = None

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
            **(self.extra_stats(self) if self.extra_stats is not None else {}),
        )

    def report(self) -> None:
        """Record this primitive's counters once (at exit, or when it is collected)."""
        if self.reported:
            return
        self.reported = True
        if rt.level != rt.OFF:
            stats = self.statistics().as_dict()
            del stats["prim"]
            for key in EXTENSION_FIELDS - KIND_FIELDS.get(self.kind, frozenset()):
                del stats[key]
            stats = {STATS_RENAMES.get(k, k): v for k, v in stats.items()}  # schema 2's names
            rt.emit((OP_STATS, rt.now(), rt.get_ident(), self.prim, stats))

    def __del__(self) -> None:
        try:
            self.report()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
