"""Mergeable aggregates: everything the findings and reports need, folded from the events.

An `Aggregate` is what one pass over one log file produces (see `scan.py`); aggregates of many
files, made in parallel worker processes or on other machines, combine with `Aggregate.merge`
into one equal to what a single pass over all the files would give, *except* for the state
that only has a meaning within one process (which threads held what at the end, which waits
never ended), which is kept per process in `ProcessEnd` records and never merged.

Design note: the merge is a reduction. It is associative and commutative, and pure where it
is called as one (`merged` builds a new aggregate; `merge` changes only the aggregate it is
called on and never keeps a reference to anything of its argument), so any reduction tree
over the same per-file aggregates (serial, a process pool in completion order, a Dask tree)
gives the same result. That rules out "first come" anywhere: capped collections keep their
smallest keys (`caps.py`), a field two files both know is chosen by a rule (the smaller
value, the larger for what only grows), lists are kept sorted.

Identity. Primitive ids (``"pid.n"``) and threads (pid, tid) are unique only within one host
(and one boot of it). Each file's aggregate is keyed by its host when its ``session`` header
names one (see `hosts.py`): primitive ids become ``"pid.n@host"`` and threads
``(host, pid, tid)``; logs of older versions, without a host, keep host ``""``.

Everything here is plain data: picklable (workers send it back) and round-trippable through
`to_dict`/`from_dict` (JSON, or msgpack in shards: `shard.py`).
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Callable, Iterable
from typing import Any

from .caps import count_smallest, keep_smallest, stable_key
from .facts import Facts
from .hist import Histogram

AGGREGATE_KIND = "tracedsync-aggregate"
AGGREGATE_VERSION = 2  # 2: threads (host, pid, tid), hosts, deterministic caps
UNKNOWN_SITE = "?"
MAX_EXAMPLES = 8  # site pairs kept per lock-order edge (the smallest)
MAX_THREADS = 64  # threads kept per tally or edge (the smallest; the count stays exact)
MAX_PROBLEMS = 1000  # problems kept (the first by file and line; the count stays exact)
TIMELINE_MAX_BUCKETS = 2048  # per primitive, before the timeline is coarsened
TIMELINE_SHIFT = 20  # initial timeline bucket: 2**20 ns (about 1 ms)

Thread = tuple[str, int, int]  # (host, pid, tid)


def _min_some(a: Any, b: Any) -> Any:
    """The smaller of two optional values (None only if both are)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b


class SiteStat:
    """Acquisitions of one primitive from one call site (the line that called acquire).

    ``waits`` and ``holds`` collect raw nanosecond values during a scan; `fold` moves them into
    the histograms. ``tids`` are native thread ids of the scanned process, turned into
    (host, pid, tid) ``threads`` by `resolve`.
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
        self.tids: set[int] = set()
        self.threads: set[Thread] = set()

    def fold(self) -> None:
        """Move raw values into the histograms."""
        if self.waits:
            self.wait.add_values(self.waits)
            self.waits = array("q")
        if self.holds:
            self.hold.add_values(self.holds)
            self.holds = array("q")

    def resolve(self, pid_of: dict[int, int], default_pid: int) -> None:
        """Thread ids of one process's file into (host, pid, tid) threads (host ``""``)."""
        for t in self.tids:
            self.threads.add(("", pid_of.get(t, default_pid), t))
        self.tids = set()

    def copy(self) -> SiteStat:
        c = SiteStat.__new__(SiteStat)
        c.site, c.func = self.site, self.func
        c.acquisitions, c.contended, c.failed = self.acquisitions, self.contended, self.failed
        c.timeouts, c.restored, c.max_depth = self.timeouts, self.restored, self.max_depth
        c.wait, c.hold = self.wait.copy(), self.hold.copy()
        c.waits, c.holds = array("q", self.waits), array("q", self.holds)
        c.tids, c.threads = set(self.tids), set(self.threads)
        return c

    def merge(self, o: SiteStat) -> None:
        """Add another stat of the same site (folded, or with raw values and tids)."""
        self.func = _min_some(self.func, o.func)
        self.acquisitions += o.acquisitions
        self.contended += o.contended
        self.failed += o.failed
        self.timeouts += o.timeouts
        self.restored += o.restored
        self.max_depth = max(self.max_depth, o.max_depth)
        self.wait.merge(o.wait)
        self.hold.merge(o.hold)
        if o.waits:  # (new arrays: a folded stat may share an empty one)
            self.waits = self.waits + o.waits
        if o.holds:
            self.holds = self.holds + o.holds
        self.tids |= o.tids
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
        s.threads = {_thread(t) for t in d["threads"]}
        return s


def _thread(t: Any) -> Thread:
    """A thread from its JSON form: ``[host, pid, tid]`` (``[pid, tid]`` in version 1)."""
    if len(t) == 2:
        return ("", int(t[0]), int(t[1]))
    return (str(t[0]), int(t[1]), int(t[2]))


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
    var: str | None = None  # the name the creating line assigned it to
    initial: int | None = None  # a semaphore's initial value
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

    _SUMS = (
        "cond_waits",
        "cond_timeouts",
        "notifies",
        "unheard_notifies",
        "misuse",
        "other_timeouts",
        "stats_acquisitions",
        "stats_contended",
    )

    def merge(self, o: PrimInfo) -> None:
        """Add what another file knows of the same primitive."""
        # Only the creating process saw `created`; other processes (a forked child, an attached
        # Value) may know the kind and name from `stats` but not the creation site. Each field
        # is taken from whichever file knows it; if both do (they should agree), the smaller.
        if o.kind != "?" and (self.kind == "?" or o.kind < self.kind):
            self.kind = o.kind
        self.name = _min_some(self.name, o.name)
        if o.site is not None and (
            self.site is None or (o.site, o.func or "") < (self.site, self.func or "")
        ):
            self.site, self.func = o.site, o.func
        self.lock = _min_some(self.lock, o.lock)
        self.var = _min_some(self.var, o.var)
        self.initial = _min_some(self.initial, o.initial)
        self.pid = _min_some(self.pid, o.pid)
        for f in self._SUMS:
            setattr(self, f, getattr(self, f) + getattr(o, f))
        for k, v in o.events.items():
            self.events[k] = self.events.get(k, 0) + v
        self.other_wait.merge(o.other_wait)
        self.counters_only = self.counters_only or o.counters_only

    def copy(self) -> PrimInfo:
        c = dataclasses.replace(self, events=dict(self.events), other_wait=Histogram())
        c.other_wait.merge(self.other_wait)
        return c

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
    "this happened N times at these sites, in these threads". Details are examples: when two
    files give one a different value, the smaller (by its JSON form) is kept; ``still_waiting``
    and ``unsure`` are counts and add up; ``waits`` is a list of examples, the smallest kept.
    """

    __slots__ = ("count", "details", "max_ns", "thread_count", "threads")

    def __init__(self) -> None:
        self.count = 0
        self.max_ns = 0
        self.threads: set[Thread] = set()
        self.thread_count = 0
        self.details: dict[str, Any] = {}

    def hit(self, pid: int, tid: int | None, ns: int = 0) -> None:
        """Count one occurrence by thread ``tid`` of ``pid`` (of this file's host)."""
        self.count += 1
        if ns > self.max_ns:
            self.max_ns = ns
        if tid is not None:
            keep_smallest(self.threads, (("", pid, tid),), MAX_THREADS)

    def stamp(self, stamp: list[Any]) -> None:
        """Keep ``[host, pid, tid, ts]`` of an occurrence (the smallest `MAX_THREADS`)."""
        mine = {tuple(w) for w in self.details.get("stamps", [])}
        if tuple(stamp) in mine:
            return
        keep_smallest(mine, [tuple(stamp)], MAX_THREADS)
        self.details["stamps"] = [list(w) for w in sorted(mine, key=stable_key)]

    def note(self, key: str, value: Any) -> None:
        """Keep ``value`` as the detail ``key`` (the smaller of it and what is there)."""
        cur = self.details.get(key)
        if key not in self.details or stable_key(value) < stable_key(cur):
            self.details[key] = value

    def merge(self, o: Tally) -> None:
        self.count += o.count
        self.max_ns = max(self.max_ns, o.max_ns)
        keep_smallest(self.threads, o.threads, MAX_THREADS)
        for k, v in o.details.items():
            if k in ("still_waiting", "unsure"):
                self.details[k] = int(self.details.get(k, 0)) + int(v)
            elif k == "waits":
                mine = {tuple(w) for w in self.details.get(k, [])}
                keep_smallest(mine, (tuple(w) for w in v), MAX_THREADS)
                self.details[k] = [list(w) for w in sorted(mine)]
            elif k == "stamps":
                for w in v:
                    self.stamp(list(w))
            else:
                self.note(k, v)

    def copy(self) -> Tally:
        t = Tally()
        t.merge(self)
        return t

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
        t.threads = {_thread(x) for x in d["threads"]}
        t.details = dict(d["details"])
        return t


class Edge:
    """Lock-order edge A→B: some thread acquired B (first time) while holding A."""

    __slots__ = ("count", "gates", "sites", "threads", "tids")

    def __init__(self) -> None:
        self.count = 0
        self.sites: dict[tuple[str, str], int] = {}  # (site that took A, site that took B)
        self.threads: set[Thread] = set()
        self.tids: set[int] = set()  # during a scan; `resolve` turns them into threads
        # Locks held at *every* occurrence of this edge besides A (a common "gate" lock
        # serialises the threads, so a cycle whose edges all share one cannot deadlock).
        self.gates: set[str] | None = None

    def add_sites(self, pair: tuple[str, str], n: int = 1) -> None:
        count_smallest(self.sites, pair, n, MAX_EXAMPLES)

    def meet_gates(self, gates: set[str] | None) -> None:
        if gates is not None:
            self.gates = set(gates) if self.gates is None else self.gates & gates

    def resolve(self, pid_of: dict[int, int], default_pid: int) -> None:
        keep_smallest(
            self.threads, (("", pid_of.get(t, default_pid), t) for t in self.tids), MAX_THREADS
        )
        self.tids = set()

    def merge(self, o: Edge) -> None:
        self.count += o.count
        for k, v in o.sites.items():
            self.add_sites(k, v)
        keep_smallest(self.threads, o.threads, MAX_THREADS)
        self.tids |= o.tids
        self.meet_gates(o.gates)

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
        e.threads = {_thread(t) for t in d["threads"]}
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
    host: str = ""

    def sort_key(self) -> tuple[Any, ...]:
        return (self.host, self.pid, self.path, self.last_ts, stable_key(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        d = {
            "pid": self.pid,
            "path": self.path,
            "ended": self.ended,
            "held": [[t, [list(h) for h in hs]] for t, hs in sorted(self.held.items())],
            "waiting": [[t, [list(w) for w in ws]] for t, ws in sorted(self.waiting.items())],
            "owners_at_exit": [list(o) for o in self.owners_at_exit],
            "last_ts": self.last_ts,
        }
        if self.host:
            d["host"] = self.host
        return d

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
            host=str(d.get("host", "")),
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
    host: str = ""

    def sort_key(self) -> tuple[Any, ...]:
        # Biggest files first (the order analyze has always listed them in), then by name.
        return (-self.bytes, self.path, self.host, self.pid or 0, stable_key(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not self.host:
            del d["host"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Source:
        return cls(**d)


@dataclasses.dataclass
class HostInfo:
    """One host (one boot of one machine): its name and how its clock maps to wall time."""

    name: str
    boot_id: str | None = None
    # wall_ns - mono_ns of its sessions: the smallest (sessions of one boot agree to within
    # clock adjustments); None for logs without the pair.
    offset_ns: int | None = None

    def merge(self, o: HostInfo) -> None:
        self.boot_id = _min_some(self.boot_id, o.boot_id)
        self.offset_ns = _min_some(self.offset_ns, o.offset_ns)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostInfo:
        return cls(**d)


def _merge_tallies(mine: dict[Any, Tally], other: dict[Any, Tally], take: bool) -> None:
    for k, t in other.items():
        cur = mine.get(k)
        if cur is None:
            mine[k] = t if take else t.copy()
        else:
            cur.merge(t)


def _sorted_by_json(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=stable_key)


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
    hosts: dict[str, HostInfo] = dataclasses.field(default_factory=dict)
    facts: Facts = dataclasses.field(default_factory=Facts)

    # -- merging ------------------------------------------------------------------------------
    @classmethod
    def merged(cls, parts: Iterable[Aggregate]) -> Aggregate:
        """A new aggregate holding all of ``parts`` (which are left as they were)."""
        out = cls()
        for p in parts:
            out.merge(p)
        return out

    def merge(self, o: Aggregate, take: bool = False) -> None:
        """Add another aggregate (of other files) to this one. ``o`` is not changed and
        nothing of it is kept by reference, unless ``take``: then ``o`` is given up (used up
        by this call, never to be used again) and its parts are adopted rather than copied."""
        self.sources = sorted(
            [
                *self.sources,
                *(
                    s if take else dataclasses.replace(s, sessions=list(s.sessions))
                    for s in o.sources
                ),
            ],
            key=Source.sort_key,
        )
        if o.problems:
            self.problems = sorted([*self.problems, *o.problems])[:MAX_PROBLEMS]
        self.problem_count += o.problem_count
        for k, v in o.event_counts.items():
            self.event_counts[k] = self.event_counts.get(k, 0) + v
        for prim, info in o.prims.items():
            cur = self.prims.get(prim)
            if cur is None:
                self.prims[prim] = info if take else info.copy()
            else:
                cur.merge(info)
        for prim, per in o.sites.items():
            mine = self.sites.get(prim)
            if mine is None and take:
                self.sites[prim] = per
                continue
            if mine is None:
                mine = self.sites[prim] = {}
            for site, st in per.items():
                cur_s = mine.get(site)
                if cur_s is None:
                    mine[site] = st if take else st.copy()
                else:
                    cur_s.merge(st)
        for t, name in o.threads.items():
            cur_n = self.threads.get(t)
            self.threads[t] = name if cur_n is None else min(cur_n, name)
        for key, e in o.edges.items():
            cur_e = self.edges.get(key)
            if cur_e is None:
                if take:
                    self.edges[key] = e
                    continue
                cur_e = self.edges[key] = Edge()
            cur_e.merge(e)
        if o.ends:
            self.ends = sorted(
                [*self.ends, *(e if take else ProcessEnd.from_dict(e.to_dict()) for e in o.ends)],
                key=ProcessEnd.sort_key,
            )
        _merge_tallies(self.misuse, o.misuse, take)
        _merge_tallies(self.rmw, o.rmw, take)
        _merge_tallies(self.lost_wakeups, o.lost_wakeups, take)
        _merge_tallies(self.runtime, o.runtime, take)
        _merge_tallies(self.broken, o.broken, take)
        if o.deadlocks:
            self.deadlocks = _sorted_by_json([*self.deadlocks, *o.deadlocks])
        if o.permits_held:
            self.permits_held = _sorted_by_json([*self.permits_held, *o.permits_held])
        self.facts.merge(o.facts)
        for h, hinfo in o.hosts.items():
            cur_h = self.hosts.get(h)
            if cur_h is None:
                self.hosts[h] = dataclasses.replace(hinfo)
            else:
                cur_h.merge(hinfo)
        self._merge_timeline(o, take)

    def _merge_timeline(self, o: Aggregate, take: bool = False) -> None:
        shift = max(self.timeline_shift, o.timeline_shift)
        if shift != self.timeline_shift:
            self.timeline = {
                p: rebin(b, self.timeline_shift, shift) for p, b in self.timeline.items()
            }
            self.timeline_shift = shift
        for prim, buckets in o.timeline.items():
            if o.timeline_shift != shift:
                buckets = rebin(buckets, o.timeline_shift, shift)
            elif take and prim not in self.timeline:
                self.timeline[prim] = buckets
                continue
            mine = self.timeline.setdefault(prim, {})
            for b, (n, w) in buckets.items():
                cur = mine.get(b)
                if cur is None:
                    mine[b] = [n, w]
                else:
                    cur[0] += n
                    cur[1] += w
        self.coarsen()

    def coarsen(self) -> None:
        """Widen the timeline's buckets until no primitive has more than the maximum.

        The result is the narrowest width at which the whole data fits, however it was split
        and merged (bucket counts only grow as data is added, and shrink as buckets widen).
        """
        while self.timeline and max(len(t) for t in self.timeline.values()) > (
            TIMELINE_MAX_BUCKETS
        ):
            self.timeline = {
                p: rebin(b, self.timeline_shift, self.timeline_shift + 1)
                for p, b in self.timeline.items()
            }
            self.timeline_shift += 1

    def canonical(self) -> None:
        """Put every table in key order (in place; nothing else changes), so that what is
        derived by walking them does not depend on the order the parts were merged in."""
        self.prims = dict(sorted(self.prims.items()))
        self.sites = {p: dict(sorted(self.sites[p].items())) for p in sorted(self.sites)}
        self.threads = dict(sorted(self.threads.items()))
        self.edges = dict(sorted(self.edges.items()))
        for e in self.edges.values():
            e.sites = dict(sorted(e.sites.items()))
        for info in self.prims.values():
            info.events = dict(sorted(info.events.items()))
        self.misuse = dict(sorted(self.misuse.items()))
        self.rmw = dict(sorted(self.rmw.items()))
        self.lost_wakeups = dict(sorted(self.lost_wakeups.items()))
        self.runtime = dict(sorted(self.runtime.items()))
        self.broken = dict(sorted(self.broken.items()))
        self.timeline = {p: dict(sorted(self.timeline[p].items())) for p in sorted(self.timeline)}
        self.event_counts = dict(sorted(self.event_counts.items()))
        self.hosts = dict(sorted(self.hosts.items()))
        for items in self.facts.notes.values():
            items.sort(key=stable_key)

    def copy(self) -> Aggregate:
        """A deep copy (through `merge`)."""
        out = Aggregate(timeline_shift=self.timeline_shift)
        out.merge(self)
        return out

    # -- identities ---------------------------------------------------------------------------
    def rename(self, prim: Callable[[str], str], host: Callable[[str], str]) -> None:
        """Rewrite every primitive id with ``prim`` and every host with ``host``, in place."""

        def th(t: Thread) -> Thread:
            return (host(t[0]), t[1], t[2])

        def tallies(d: dict[Any, Tally], at: int) -> dict[Any, Tally]:
            out: dict[Any, Tally] = {}
            for k, t in d.items():
                k2 = (*k[:at], prim(k[at]), *k[at + 1 :])
                t.threads = {th(x) for x in t.threads}
                if "waits" in t.details:
                    t.details["waits"] = [
                        [host(w[0]), *w[1:]] if len(w) == 4 else w for w in t.details["waits"]
                    ]
                if "stamps" in t.details:
                    t.details["stamps"] = [[host(w[0]), *w[1:]] for w in t.details["stamps"]]
                if k2 in out:
                    out[k2].merge(t)
                else:
                    out[k2] = t
            return out

        for s in self.sources:
            s.host = host(s.host)
        for info in self.prims.values():
            info.prim = prim(info.prim)
            info.lock = prim(info.lock) if info.lock else info.lock
        self.prims = {prim(p): i for p, i in self.prims.items()}
        for per in self.sites.values():
            for st in per.values():
                st.threads = {th(x) for x in st.threads}
        self.sites = {prim(p): per for p, per in self.sites.items()}
        self.threads = {th(t): n for t, n in self.threads.items()}
        for e in self.edges.values():
            e.threads = {th(x) for x in e.threads}
            e.gates = None if e.gates is None else {prim(g) for g in e.gates}
        self.edges = {(prim(a), prim(b)): e for (a, b), e in self.edges.items()}
        for end in self.ends:
            end.host = host(end.host)
            end.held = {t: [(prim(p), s, n) for p, s, n in hs] for t, hs in end.held.items()}
            end.waiting = {
                t: [(prim(p), s, x) for p, s, x in ws] for t, ws in end.waiting.items()
            }
            end.owners_at_exit = [(prim(p), t, n) for p, t, n in end.owners_at_exit]
        self.misuse = tallies(self.misuse, 0)
        self.rmw = tallies(self.rmw, 0)
        self.lost_wakeups = tallies(self.lost_wakeups, 0)
        self.runtime = tallies(self.runtime, 1)
        self.broken = tallies(self.broken, 0)
        for d in self.deadlocks:
            d["host"] = host(str(d.get("host", "")))
            for c in d["cycle"]:
                if isinstance(c.get("prim"), str):
                    c["prim"] = prim(c["prim"])
        for p in self.permits_held:
            p["prim"] = prim(p["prim"])
            p["host"] = host(str(p.get("host", "")))
        self.facts.rename(prim, host)
        self.timeline = {prim(p): b for p, b in self.timeline.items()}
        self.hosts = {host(h): i for h, i in self.hosts.items()}

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
            "threads": [[h, p, t, n] for (h, p, t), n in sorted(self.threads.items())],
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
            "hosts": [[h, self.hosts[h].to_dict()] for h in sorted(self.hosts)],
            "facts": self.facts.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Aggregate:
        """Rebuild an aggregate written by `to_dict` (this version or 1); raises `ValueError`
        if it is not one."""
        if not isinstance(d, dict) or d.get("kind") != AGGREGATE_KIND:
            raise ValueError("not a tracedsync aggregate")
        if int(d.get("version", 0)) > AGGREGATE_VERSION:
            raise ValueError(
                f"aggregate format {d['version']} is newer than this tracedsync reads "
                f"({AGGREGATE_VERSION}); upgrade tracedsync"
            )

        def tallies(items: list[Any]) -> dict[Any, Tally]:
            return {tuple(k): Tally.from_dict(t) for k, t in items}

        def thread_names(items: list[Any]) -> dict[Thread, str]:
            return {_thread(x[:-1]): str(x[-1]) for x in items}

        return cls(
            sources=[Source.from_dict(s) for s in d["sources"]],
            problems=[(str(p), int(n), str(r)) for p, n, r in d["problems"]],
            problem_count=int(d["problem_count"]),
            event_counts={str(k): int(v) for k, v in d["event_counts"].items()},
            prims={p["prim"]: PrimInfo.from_dict(p) for p in d["prims"]},
            sites={
                prim: {s["site"]: SiteStat.from_dict(s) for s in per} for prim, per in d["sites"]
            },
            threads=thread_names(d["threads"]),
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
            hosts={h: HostInfo.from_dict(i) for h, i in d.get("hosts", [])},
            facts=Facts.from_dict(d.get("facts")),
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
