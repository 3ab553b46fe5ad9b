"""Per-primitive bookkeeping, one class per kind, and its frozen snapshot (`Statistics`).

`PrimState` holds what every traced primitive has (its real object, id, kind, name, misuse
count); `LockState`, `ConditionState`, `SemaphoreState`, `EventState`, `BarrierState` and
`ValueState` add their kind's books, as slots (they are read on every traced call).

A `LockState` is mutated only by the thread that holds the lock (owner, depth, hold start) or
through single attribute updates whose races only blur counters, never ownership: the owner and
depth are written after the real acquire succeeds and before the real release, so at any
instant they describe the real lock, seen from its holder. Counters that several threads update
at once (semaphore holders, event sets) are guarded by the state's ``books``, a raw lock held
for a few attribute updates only.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any, Protocol, TypeGuard

from . import runtime as rt
from .native import LOCK_TYPES
from .ops import OP_STATS
from .schema import STATS_RENAMES
from .sites import format_stack


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


_COMMON_ZERO: dict[str, Any] = {
    "acquisitions": 0, "contended": 0, "failed": 0, "max_depth": 0, "wait_ns": 0, "hold_ns": 0,
    "owner": None, "depth": 0, "waits": 0, "wait_timeouts": 0, "notifies": 0,
    "unheard_notifies": 0,
}
"""`Statistics` fields that a kind without them reports as zero (every ``stats`` event has them)."""


def report_stats(st: Any) -> None:
    """Record the ``stats`` event of ``st`` (a state, or a native lock, which is its own): the
    `Statistics` fields of every kind and of its own kind."""
    stats = st.statistics().as_dict()
    del stats["prim"]
    for key in EXTENSION_FIELDS - KIND_FIELDS.get(st.kind, frozenset()):
        del stats[key]
    stats = {STATS_RENAMES.get(k, k): v for k, v in stats.items()}  # schema 2's names
    owner = stats.get("owner")
    if isinstance(owner, int):  # held now (at exit: where is its holder?)
        frame = sys._current_frames().get(owner)
        if frame is not None:
            stats["owner_stack"] = format_stack(frame)
    rt.emit((OP_STATS, rt.now(), rt.get_ident(), st.prim, stats))


class PrimState:
    """What every traced primitive has. Subclassed per kind; see `state_class`."""

    __slots__ = ("__weakref__", "ext", "extra_stats", "kind", "misuse", "name", "prim",
                 "prim_n", "prim_pid", "raw", "reported")

    def __init__(self, raw: Any, prim: str, kind: str, name: str | None) -> None:
        self.raw = raw
        self.prim = prim
        pid, _, n = prim.partition(".")
        # The id as two ints, for the native recorder's records.
        self.prim_pid = int(pid) if pid.isdigit() else 0
        self.prim_n = int(n) if n.isdigit() else 0
        self.kind = kind
        self.name = name
        self.misuse = 0
        self.reported = False
        # ``extra_stats`` returns the kind's own `Statistics` fields that only the primitive's
        # module can compute (a semaphore's permits, an event's flag; see `KIND_FIELDS`).
        self.extra_stats: Callable[[Any], dict[str, Any]] | None = None
        # Data of the multiprocessing primitives (see tracedsync/_multiprocessing/): the shared
        # owner record of a lock, the books of a Value, the shared break record of a Barrier.
        self.ext: Any = None

    COUNTERS: tuple[str, ...] = ("misuse",)
    """The slots that count something (zeroed by `reset_counters`)."""

    def counters(self) -> dict[str, Any]:
        """This kind's common `Statistics` counters (the others are zero)."""
        return {}

    def reset_counters(self) -> None:
        """Zero the counters (a forked child counts its own) and report again at exit."""
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.reported = False

    def statistics(self) -> Statistics:
        return Statistics(
            prim=self.prim,
            kind=self.kind,
            name=self.name,
            misuse=self.misuse,
            **{**_COMMON_ZERO, **self.counters()},
            **(self.extra_stats(self) if self.extra_stats is not None else {}),
        )

    def report(self) -> None:
        """Record this primitive's counters once (at exit, or when it is collected)."""
        if self.reported:
            return
        self.reported = True
        if rt.level != rt.OFF:
            report_stats(self)

    def __del__(self) -> None:
        try:
            self.report()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class LockState(PrimState):
    """A Lock or RLock (threading's or multiprocessing's): holder, depth, hold and wait times."""

    __slots__ = ("acquire", "acquisitions", "contended", "depth", "failed",
                 "hold_ns", "max_depth", "owner", "reentrant", "release", "restore_ns", "t_hold",
                 "wait_ns", "waiters")

    def __init__(self, raw: Any, prim: str, kind: str, name: str | None) -> None:
        super().__init__(raw, prim, kind, name)
        # The real lock's bound methods, fetched once.
        self.acquire: Any = raw.acquire
        self.release: Any = raw.release
        self.owner: int | None = None
        self.depth = 0
        self.t_hold = 0
        self.acquisitions = 0
        self.contended = 0
        self.failed = 0
        self.max_depth = 0
        self.wait_ns = 0
        self.hold_ns = 0
        self.reentrant = False
        self.restore_ns = 0
        """How long the last re-acquire at the end of a condition wait took."""
        self.waiters: list[int] = []
        """Idents of this process's threads blocked in acquire (multiprocessing locks)."""

    COUNTERS = ("misuse", "acquisitions", "contended", "failed", "max_depth", "wait_ns",
                "hold_ns", "restore_ns")

    def counters(self) -> dict[str, Any]:
        return {
            "acquisitions": self.acquisitions, "contended": self.contended,
            "failed": self.failed, "max_depth": self.max_depth, "wait_ns": self.wait_ns,
            "hold_ns": self.hold_ns, "owner": self.owner, "depth": self.depth,
        }


class CondCounts:
    """A condition's notify counters (the native recorder keeps them in C instead: its
    ``CondBooks``, which the C ``notify`` updates; see _native_src/cond.c)."""

    __slots__ = ("notifies", "unheard")

    def __init__(self) -> None:
        self.notifies = 0
        self.unheard = 0


class ConditionState(PrimState):
    """A Condition: its lock, waits, notifies, and who waits now (oldest first)."""

    __slots__ = ("books", "lock", "lock_state", "wait_timeouts", "waiters", "waits")

    def __init__(self, raw: Any, prim: str, kind: str, name: str | None) -> None:
        super().__init__(raw, prim, kind, name)
        self.lock: Any = None
        self.lock_state: LockBooks | None = None
        self.waits = 0
        self.wait_timeouts = 0
        self.books: Any = CondCounts()
        """``notifies`` and ``unheard`` (a `CondCounts`, or the native ``CondBooks``)."""
        self.waiters: list[int] = []

    @property
    def notifies(self) -> int:
        """``notify``/``notify_all`` calls."""
        return int(self.books.notifies)

    @notifies.setter
    def notifies(self, value: int) -> None:
        self.books.notifies = value

    @property
    def unheard(self) -> int:
        """Notifies that found no waiter."""
        return int(self.books.unheard)

    @unheard.setter
    def unheard(self, value: int) -> None:
        self.books.unheard = value

    COUNTERS = ("misuse", "waits", "wait_timeouts", "notifies", "unheard")

    def counters(self) -> dict[str, Any]:
        return {"waits": self.waits, "wait_timeouts": self.wait_timeouts,
                "notifies": self.notifies, "unheard_notifies": self.unheard}


class SemaphoreState(PrimState):
    """A Semaphore or BoundedSemaphore: permits held per thread, acquires, releases."""

    __slots__ = ("acquire", "acquisitions", "books", "contended", "failed", "held", "release",
                 "releases", "wait_ns")

    def __init__(self, raw: Any, prim: str, kind: str, name: str | None) -> None:
        super().__init__(raw, prim, kind, name)
        self.acquire: Any = raw.acquire
        self.release: Any = raw.release
        self.books: Any = None
        self.held: dict[int, int] = {}
        """ident → permits that thread holds now (acquires minus releases)."""
        self.acquisitions = 0
        self.contended = 0
        self.failed = 0
        self.wait_ns = 0
        self.releases = 0

    COUNTERS = ("misuse", "acquisitions", "contended", "failed", "wait_ns", "releases")

    def counters(self) -> dict[str, Any]:
        return {"acquisitions": self.acquisitions, "contended": self.contended,
                "failed": self.failed, "wait_ns": self.wait_ns}


class _WaitedState(PrimState):
    """What an Event and a Barrier share: waits, their time, and the raw ``books`` lock for the
    counters several threads update at once."""

    __slots__ = ("books", "wait_ns", "wait_timeouts", "waits")

    def __init__(self, raw: Any, prim: str, kind: str, name: str | None) -> None:
        super().__init__(raw, prim, kind, name)
        self.books: Any = None
        self.waits = 0
        self.wait_timeouts = 0
        self.wait_ns = 0

    COUNTERS: tuple[str, ...] = ("misuse", "waits", "wait_timeouts", "wait_ns")

    def counters(self) -> dict[str, Any]:
        return {"waits": self.waits, "wait_timeouts": self.wait_timeouts, "wait_ns": self.wait_ns}


class EventState(_WaitedState):
    """An Event: sets, clears, waits."""

    __slots__ = ("clears", "sets")

    def __init__(self, raw: Any, prim: str, kind: str, name: str | None) -> None:
        super().__init__(raw, prim, kind, name)
        self.sets = 0
        self.clears = 0

    COUNTERS = (*_WaitedState.COUNTERS, "sets", "clears")


class BarrierState(_WaitedState):
    """A Barrier: waits, and why it broke (noted under the barrier's own lock)."""

    __slots__ = ("aborts", "break_book", "broken_waits", "default_timeout", "parties", "resets")

    def __init__(self, raw: Any, prim: str, kind: str, name: str | None) -> None:
        super().__init__(raw, prim, kind, name)
        self.parties = 0
        self.default_timeout: float | None = None
        self.break_book: Any = None
        self.broken_waits = 0
        self.aborts = 0
        self.resets = 0

    COUNTERS = (*_WaitedState.COUNTERS, "broken_waits", "aborts", "resets")


class ValueState(PrimState):
    """A multiprocessing Value or Array (its books are in ``ext``)."""

    __slots__ = ()


_CLASSES: dict[str, type[PrimState]] = {
    "Lock": LockState,
    "RLock": LockState,
    "Condition": ConditionState,
    "Semaphore": SemaphoreState,
    "BoundedSemaphore": SemaphoreState,
    "Event": EventState,
    "Barrier": BarrierState,
    "Value": ValueState,
    "Array": ValueState,
}


def state_class(kind: str) -> type[PrimState]:
    """The state class of primitives of ``kind``."""
    return _CLASSES[kind]


class LockBooks(Protocol):
    """What the detectors read of a Lock or RLock's books: a `LockState` (the pure-Python twin,
    and the multiprocessing locks), or a native lock, which is its own state."""

    @property
    def prim(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def owner(self) -> int | None: ...
    @property
    def depth(self) -> int: ...
    @property
    def t_hold(self) -> int: ...
    @property
    def reentrant(self) -> bool: ...
    @property
    def restore_ns(self) -> int: ...


LOCK_STATE_TYPES: tuple[type, ...] = (LockState, *LOCK_TYPES)
"""The classes whose instances are a lock's books."""


def is_lock_state(st: object) -> TypeGuard[LockBooks]:
    """Whether ``st`` is a Lock or RLock's books (Python or native)."""
    return isinstance(st, LOCK_STATE_TYPES)
