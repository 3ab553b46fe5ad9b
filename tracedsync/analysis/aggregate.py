"""Mergeable aggregates: everything the findings and reports need, folded from the events.

An `Aggregate` is what one pass over one log file produces (see `scan.py`); aggregates of many
files, made in parallel worker processes or on other machines, combine with `Aggregate.merge`
into one equal to what a single pass over all the files would give, *except* for the state
that only has a meaning within one process (which threads held what at the end, which waits
never ended), which is kept per process in `ProcessEnd` records and never merged.

Everything here is plain data: picklable (workers send it back) and JSON round-trippable
(`to_dict`/`from_dict`, used by ``tracedsync analyze --save-aggregate``).
"""

from __future__ import annotations

import dataclasses
from array import array
from typing import Any

from .hist import Histogram

AGGREGATE_KIND = "tracedsync-aggregate"
AGGREGATE_VERSION = 1
UNKNOWN_SITE = "?"
MAX_EXAMPLES = 8  # site pairs kept per lock-order edge
MAX_THREADS = 64  # threads kept per tally (the count stays exact)
MAX_PROBLEMS = 1000  # problems kept (the count stays exact)
TIMELINE_MAX_BUCKETS = 2048  # per primitive, before the timeline is coarsened
TIMELINE_SHIFT = 20  # initial timeline bucket: 2**20 ns (about 1 ms)

Thread = tuple[int, int]  # (pid, tid)


class SiteStat:
    """Acquisitions of one primitive from one call site (the line that called acquire).

    ``waits`` and ``holds`` collect raw nanosecond values during a scan; `fold` moves them into
    the histograms. ``tids`` are native thread ids of the scanned process, turned into
    (pid, tid) ``threads`` by `fold`.
    """

    __slots__ = (
        "acquisitions",
        "contended",
        "failed",
        "func",
        "hold",
        "holds",
        "max_depth",
        "restored",
        "site",
        "threads",
        "tids",
        "timeouts",
        "wait",
        "waits",
    )

    def __init__(self, site: str, func: str | None = None) -> None:
        self.site = site
        self.func = func
        self.acquisitions = 0
        self.contended = 0
        self.failed = 0
        self.timeouts = 0
        self.restored = 0
        self.max_depth = 0
        self.wait = Histogram()
        self.hold = Histogram()
        self.waits: array[int] = array("q")
        self.holds: array[int] = array("q")
        self.tids: set[int | None] = set()
        self.threads: set[Thread] = set()

    def fold(self, pid_of: dict[int, int], default_pid: int) -> None:
        """Move raw values into the histograms and thread ids into (pid, tid) pairs."""
        if self.waits:
            self.wait.add_values(self.waits)
            self.waits = array("q")
        if self.holds:
            self.hold.add_values(self.holds)
            self.holds = array("q")
        for t in self.tids:
            if t is not None:
                self.threads.add((pid_of.get(t, default_pid), t))
        self.tids = set()

    def merge(self, o: SiteStat) -> None:
        """Add another (folded) stat of the same site."""
        self.func = self.func or o.func
        self.acquisitions += o.acquisitions
        self.contended += o.contended
        self.failed += o.failed
        self.timeouts += o.timeouts
        self.restored += o.restored
        self.max_depth = max(self.max_depth, o.max_depth)
        self.wait.merge(o.wait)
        self.hold.merge(o.hold)
        self.threads |= o.threads

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "func": self.func,
            "acquisitions": self.acquisitions,
            "contended": self.contended,
            "failed": self.failed,
            "timeouts": self.timeouts,
            "restored": self.restored,
            "max_depth": self.max_depth,
            "wait": self.wait.to_dict(),
            "hold": self.hold.to_dict(),
            "threads": sorted(self.threads),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SiteStat:
        s = cls(d["site"], d.get("func"))
        for k in ("acquisitions", "contended", "failed", "timeouts", "restored", "max_depth"):
            setattr(s, k, int(d[k]))
        s.wait = Histogram.from_dict(d["wait"])
        s.hold = Histogram.from_dict(d["hold"])
        s.threads = {(int(p), int(t)) for p, t in d["threads"]}
        return s


@dataclasses.dataclass
class PrimInfo:
    """What is known of one primitive besides its per-site acquisitions."""

    prim: str
    kind: str = "?"
    name: str | None = None
    site: str | None = None  # creation site
    func: str | None = None
    pid: int | None = None  # creating process
    lock: str | None = None  # a Condition's lock
    cond_waits: int = 0
    cond_timeouts: int = 0
    notifies: int = 0
    unheard_notifies: int = 0
    misuse: int = 0
    events: dict[str, int] = dataclasses.field(default_factory=dict)  # other event names
    other_wait: Histogram = dataclasses.field(default_factory=Histogram)  # sem/event/barrier
    other_timeouts: int = 0
    stats_acquisitions: int = 0  # from `stats` events (in-process counters)
    stats_contended: int = 0
    counters_only: bool = False  # seen only in logs written at level "contention"

    def merge(self, o: PrimInfo) -> None:
        """Add what another file knows of the same primitive."""
        # Only the creating process saw `created`; other processes (a forked child, an attached
        # Value) may know the kind and name from `stats` but not the creation site. Fill each
        # field from whichever file knows it.
        if self.kind == "?":
            self.kind = o.kind
        if self.name is None:
            self.name = o.name
        if self.site is None:
            self.site, self.func = o.site, o.func
        if self.lock is None:
            self.lock = o.lock
        self.pid = self.pid if self.pid is not None else o.pid
        for f in (
            "cond_waits",
            "cond_timeouts",
            "notifies",
            "unheard_notifies",
            "misuse",
            "other_timeouts",
            "stats_acquisitions",
            "stats_contended",
        ):
            setattr(self, f, getattr(self, f) + getattr(o, f))
        for k, v in o.events.items():
            self.events[k] = self.events.get(k, 0) + v
        self.other_wait.merge(o.other_wait)
        self.counters_only = self.counters_only or o.counters_only

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["other_wait"] = self.other_wait.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrimInfo:
        d = dict(d)
        d["other_wait"] = Histogram.from_dict(d["other_wait"])
        return cls(**d)


class Tally:
    """A count of occurrences of one kind of thing, with the threads involved and a few details.

    Used for misuse, read-modify-writes, lost wake-ups, runtime long waits: anything reported as
    "this happened N times at these sites, in these threads".
    """

    __slots__ = ("count", "details", "max_ns", "thread_count", "threads")

    def __init__(self) -> None:
        self.count = 0
        self.max_ns = 0
        self.threads: set[Thread] = set()
        self.thread_count = 0
        self.details: dict[str, Any] = {}

    def hit(self, pid: int, tid: int | None, ns: int = 0) -> None:
        """Count one occurrence by thread ``tid`` of ``pid``."""
        self.count += 1
        if ns > self.max_ns:
            self.max_ns = ns
        if tid is not None and len(self.threads) < MAX_THREADS:
            self.threads.add((pid, tid))

    def merge(self, o: Tally) -> None:
        self.count += o.count
        self.max_ns = max(self.max_ns, o.max_ns)
        for t in o.threads:
            if len(self.threads) >= MAX_THREADS:
                break
            self.threads.add(t)
        for k, v in o.details.items():
            self.details.setdefault(k, v)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "max_ns": self.max_ns,
            "threads": sorted(self.threads),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tally:
        t = cls()
        t.count = int(d["count"])
        t.max_ns = int(d["max_ns"])
        t.threads = {(int(p), int(x)) for p, x in d["threads"]}
        t.details = dict(d["details"])
        return t


class Edge:
    """Lock-order edge A→B: some thread acquired B (first time) while holding A."""

    __slots__ = ("count", "gates", "sites", "threads")

    def __init__(self) -> None:
        self.count = 0
        self.sites: dict[tuple[str, str], int] = {}  # (site that took A, site that took B)
        self.threads: set[Thread] = set()
        # Locks held at *every* occurrence of this edge besides A (a common "gate" lock
        # serialises the threads, so a cycle whose edges all share one cannot deadlock).
        self.gates: set[str] | None = None

    def merge(self, o: Edge) -> None:
        self.count += o.count
        for k, v in o.sites.items():
            if k in self.sites or len(self.sites) < MAX_EXAMPLES:
                self.sites[k] = self.sites.get(k, 0) + v
        for t in o.threads:
            if len(self.threads) >= MAX_THREADS:
                break
            self.threads.add(t)
        if o.gates is not None:
            self.gates = set(o.gates) if self.gates is None else self.gates & o.gates

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sites": [[a, b, n] for (a, b), n in sorted(self.sites.items())],
            "threads": sorted(self.threads),
            "gates": None if self.gates is None else sorted(self.gates),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Edge:
        e = cls()
        e.count = int(d["count"])
        e.sites = {(a, b): int(n) for a, b, n in d["sites"]}
        e.threads = {(int(p), int(t)) for p, t in d["threads"]}
        e.gates = None if d["gates"] is None else set(d["gates"])
        return e


@dataclasses.dataclass
class ProcessEnd:
    """How one process's log ended: what each thread still held, which waits never ended.

    The log records an acquire only once it has finished, so a thread blocked forever in an
    acquire leaves no trace of *what* it waits for; these records (with the lock-order graph)
    are what the deadlock inference can honestly use.
    """

    pid: int
    path: str
    ended: bool  # a session_end was written: the process exited normally
    held: dict[int, list[tuple[str, str, int]]]  # tid -> [(prim, site, depth)] still held
    waiting: dict[int, list[tuple[str, str, bool]]]  # tid -> [(cond prim, site, lost?)]
    owners_at_exit: list[tuple[str, int, int]]  # (prim, tid, depth) from `stats` events
    last_ts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "path": self.path,
            "ended": self.ended,
            "held": [[t, [list(h) for h in hs]] for t, hs in sorted(self.held.items())],
            "waiting": [[t, [list(w) for w in ws]] for t, ws in sorted(self.waiting.items())],
            "owners_at_exit": [list(o) for o in self.owners_at_exit],
            "last_ts": self.last_ts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProcessEnd:
        return cls(
            pid=int(d["pid"]),
            path=str(d["path"]),
            ended=bool(d["ended"]),
            held={int(t): [(p, s, int(n)) for p, s, n in hs] for t, hs in d["held"]},
            waiting={int(t): [(p, s, bool(x)) for p, s, x in ws] for t, ws in d["waiting"]},
            owners_at_exit=[(p, int(t), int(n)) for p, t, n in d["owners_at_exit"]],
            last_ts=int(d["last_ts"]),
        )


@dataclasses.dataclass
class Source:
    """One log file that was read."""

    path: str
    pid: int | None = None
    events: int = 0
    bytes: int = 0
    problems: int = 0
    sessions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    ended: bool = False
    dropped: int = 0
    first_ts: int | None = None
    last_ts: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Source:
        return cls(**d)


def _merge_tallies(mine: dict[Any, Tally], other: dict[Any, Tally]) -> None:
    for k, t in other.items():
        cur = mine.get(k)
        if cur is None:
            mine[k] = t
        else:
            cur.merge(t)


@dataclasses.dataclass
class Aggregate:
    """The mergeable result of scanning logs. See the module docstring."""

    sources: list[Source] = dataclasses.field(default_factory=list)
    problems: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)
    problem_count: int = 0
    event_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    prims: dict[str, PrimInfo] = dataclasses.field(default_factory=dict)
    sites: dict[str, dict[str, SiteStat]] = dataclasses.field(default_factory=dict)  # prim→site
    threads: dict[Thread, str] = dataclasses.field(default_factory=dict)  # names
    edges: dict[tuple[str, str], Edge] = dataclasses.field(default_factory=dict)
    ends: list[ProcessEnd] = dataclasses.field(default_factory=list)
    # Tallies keyed by tuples of strings; see findings/ for what each key means.
    misuse: dict[tuple[str, str, str], Tally] = dataclasses.field(default_factory=dict)
    rmw: dict[tuple[str, str], Tally] = dataclasses.field(default_factory=dict)
    lost_wakeups: dict[tuple[str, str, str], Tally] = dataclasses.field(default_factory=dict)
    runtime: dict[tuple[str, str, str], Tally] = dataclasses.field(default_factory=dict)
    broken: dict[tuple[str, str, str], Tally] = dataclasses.field(default_factory=dict)
    deadlocks: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # runtime events
    permits_held: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    timeline_shift: int = TIMELINE_SHIFT
    timeline: dict[str, dict[int, list[int]]] = dataclasses.field(default_factory=dict)

    # -- merging ------------------------------------------------------------------------------
    def merge(self, o: Aggregate) -> None:
        """Add another aggregate (of other files) to this one."""
        self.sources.extend(o.sources)
        room = MAX_PROBLEMS - len(self.problems)
        self.problems.extend(o.problems[: max(0, room)])
        self.problem_count += o.problem_count
        for k, v in o.event_counts.items():
            self.event_counts[k] = self.event_counts.get(k, 0) + v
        for prim, info in o.prims.items():
            cur = self.prims.get(prim)
            if cur is None:
                self.prims[prim] = info
            else:
                cur.merge(info)
        for prim, per in o.sites.items():
            mine = self.sites.setdefault(prim, {})
            for site, st in per.items():
                cur_s = mine.get(site)
                if cur_s is None:
                    mine[site] = st
                else:
                    cur_s.merge(st)
        self.threads.update(o.threads)
        for key, e in o.edges.items():
            cur_e = self.edges.get(key)
            if cur_e is None:
                self.edges[key] = e
            else:
                cur_e.merge(e)
        self.ends.extend(o.ends)
        _merge_tallies(self.misuse, o.misuse)
        _merge_tallies(self.rmw, o.rmw)
        _merge_tallies(self.lost_wakeups, o.lost_wakeups)
        _merge_tallies(self.runtime, o.runtime)
        _merge_tallies(self.broken, o.broken)
        self.deadlocks.extend(o.deadlocks)
        self.permits_held.extend(o.permits_held)
        self._merge_timeline(o)

    def _merge_timeline(self, o: Aggregate) -> None:
        shift = max(self.timeline_shift, o.timeline_shift)
        if shift != self.timeline_shift:
            self.timeline = {
                p: rebin(b, self.timeline_shift, shift) for p, b in self.timeline.items()
            }
            self.timeline_shift = shift
        for prim, buckets in o.timeline.items():
            if o.timeline_shift != shift:
                buckets = rebin(buckets, o.timeline_shift, shift)
            mine = self.timeline.setdefault(prim, {})
            for b, (n, w) in buckets.items():
                cur = mine.get(b)
                if cur is None:
                    mine[b] = [n, w]
                else:
                    cur[0] += n
                    cur[1] += w

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``kind`` first so that a reader can sniff it)."""

        def tallies(d: dict[Any, Tally]) -> list[Any]:
            return [[list(k), t.to_dict()] for k, t in sorted(d.items())]

        return {
            "kind": AGGREGATE_KIND,
            "version": AGGREGATE_VERSION,
            "sources": [s.to_dict() for s in self.sources],
            "problems": [list(p) for p in self.problems],
            "problem_count": self.problem_count,
            "event_counts": dict(sorted(self.event_counts.items())),
            "prims": [self.prims[p].to_dict() for p in sorted(self.prims)],
            "sites": [
                [prim, [self.sites[prim][s].to_dict() for s in sorted(self.sites[prim])]]
                for prim in sorted(self.sites)
            ],
            "threads": [[p, t, n] for (p, t), n in sorted(self.threads.items())],
            "edges": [[a, b, e.to_dict()] for (a, b), e in sorted(self.edges.items())],
            "ends": [e.to_dict() for e in self.ends],
            "misuse": tallies(self.misuse),
            "rmw": tallies(self.rmw),
            "lost_wakeups": tallies(self.lost_wakeups),
            "runtime": tallies(self.runtime),
            "broken": tallies(self.broken),
            "deadlocks": self.deadlocks,
            "permits_held": self.permits_held,
            "timeline_shift": self.timeline_shift,
            "timeline": [
                [p, [[b, n, w] for b, (n, w) in sorted(bs.items())]]
                for p, bs in sorted(self.timeline.items())
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Aggregate:
        """Rebuild an aggregate written by `to_dict`; raises `ValueError` if it is not one."""
        if not isinstance(d, dict) or d.get("kind") != AGGREGATE_KIND:
            raise ValueError("not a tracedsync aggregate")
        if int(d.get("version", 0)) > AGGREGATE_VERSION:
            raise ValueError(
                f"aggregate format {d['version']} is newer than this tracedsync reads "
                f"({AGGREGATE_VERSION}); upgrade tracedsync"
            )

        def tallies(items: list[Any]) -> dict[Any, Tally]:
            return {tuple(k): Tally.from_dict(t) for k, t in items}

        return cls(
            sources=[Source.from_dict(s) for s in d["sources"]],
            problems=[(str(p), int(n), str(r)) for p, n, r in d["problems"]],
            problem_count=int(d["problem_count"]),
            event_counts={str(k): int(v) for k, v in d["event_counts"].items()},
            prims={p["prim"]: PrimInfo.from_dict(p) for p in d["prims"]},
            sites={
                prim: {s["site"]: SiteStat.from_dict(s) for s in per} for prim, per in d["sites"]
            },
            threads={(int(p), int(t)): str(n) for p, t, n in d["threads"]},
            edges={(a, b): Edge.from_dict(e) for a, b, e in d["edges"]},
            ends=[ProcessEnd.from_dict(e) for e in d["ends"]],
            misuse=tallies(d["misuse"]),
            rmw=tallies(d["rmw"]),
            lost_wakeups=tallies(d["lost_wakeups"]),
            runtime=tallies(d["runtime"]),
            broken=tallies(d["broken"]),
            deadlocks=list(d["deadlocks"]),
            permits_held=list(d["permits_held"]),
            timeline_shift=int(d["timeline_shift"]),
            timeline={p: {int(b): [int(n), int(w)] for b, n, w in bs} for p, bs in d["timeline"]},
        )


def rebin(buckets: dict[int, list[int]], old: int, new: int) -> dict[int, list[int]]:
    """Timeline buckets of width 2**old ns regrouped into buckets of width 2**new."""
    out: dict[int, list[int]] = {}
    k = new - old
    for b, (n, w) in buckets.items():
        cur = out.get(b >> k)
        if cur is None:
            out[b >> k] = [n, w]
        else:
            cur[0] += n
            cur[1] += w
    return out
