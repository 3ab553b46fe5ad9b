"""The acquire/release loop of the scanner, in Python: the reference, and the fallback.

Design note. ``acquire`` and ``release`` are the bulk of any log, and the only events whose
handling needs per-thread state across events: the locks each thread holds (with the call site
that took each from depth 0 to 1), which give hold attribution (a release to depth 0 carries
``hold_ns`` but no site: it is charged to the acquiring site) and the lock-order edges (taking B
for the first time while holding A adds A→B, with the other held locks as possible "gates").
A kernel keeps that state and the per-(primitive, call site) statistics; everything else (rare
events, the per-file context) is the `Scanner`'s. `tracedsync.analysis._cscan` is the same
kernel in C, which also parses the lines itself; the test suite runs both on the same inputs
and compares them.

Two ways in. `PyKernel.feed` applies events one by one (`acquire`, `release`, `apply`): the
reference, and what deferring and drawing the trace use. `PyKernel.feed_typed` is the same
thing inlined for the Python scanner's hot path: one loop over a chunk of typed, interned events
(`hotdecode.TypedDecoder`), locals for everything, the common acquire (granted, uncontended) in
a few lines, the thread's held-locks table looked up only when the thread changes; a rarer
acquire goes through `_acquire`. tests/test_analyze_pyscan.py compares the two on the same
inputs.

Events are applied strictly in file order per thread; nothing else here depends on the order
of events (counts add up, histograms get raw values, capped collections keep their smallest
keys, gates intersect), which is what lets one file be cut into byte ranges.

Byte ranges. A range after the first does not know what each thread held when it began. With
``defer=True`` the kernel keeps each thread's first `DEFER_EVENTS` events as records instead of
applying them; past that it computes the thread's held locks as if it had held nothing at the
start, and goes on. `stitch.py` later replays the records with what the thread really held, and
checks that this gives the state the range assumed (else it rescans the range).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import length_hint
from typing import Any

from .aggregate import (
    MAX_EXAMPLES,
    TIMELINE_MAX_BUCKETS,
    TIMELINE_SHIFT,
    UNKNOWN_SITE,
    Edge,
    SiteStat,
    rebin,
)
from .hotdecode import Acquire, Hot, Release, TypedDecoder, blocking_of, usable
from .trace import js, us

DEFER_EVENTS = 1024
ACQ, REL = 0, 1
# (ACQ, tid, prim, site, func, ts, ok, depth, contended, wait_ns, restored, blocking)
# (REL, tid, prim, depth, hold_ns, ts)
Record = tuple[Any, ...]
Held = list[tuple[str, str]]  # (prim, acquiring site), oldest first


@dataclasses.dataclass
class HotPart:
    """What a kernel hands back: statistics (thread ids not yet resolved) and thread state."""

    sites: dict[str, dict[str, SiteStat]]
    edges: dict[tuple[str, str], Edge]
    timeline_shift: int
    timeline: dict[str, dict[int, list[int]]]
    ts_min: int | None
    ts_max: int | None
    held: dict[int, Held]  # what each thread holds now (deferred threads: see below)
    prefix: dict[int, list[Record]]  # defer mode: each thread's first events, not applied
    switched: dict[int, Held]  # defer mode: threads past their prefix: the state assumed there
    lines: int = 0  # native kernel: lines read, events it handled itself, by name
    events: int = 0
    acquires: int = 0
    releases: int = 0
    conds: tuple[int, int, int] = (0, 0, 0)  # native: cond_wait, cond_wake, notify it parsed


def simulate(held: Held, records: list[Record]) -> Held:
    """The held locks after ``records``, starting from ``held`` (state only)."""
    state = dict(held)
    for r in records:
        if r[0] == ACQ:
            if r[6] and r[2] not in state:
                state[r[2]] = r[3] or UNKNOWN_SITE
        elif r[3] == 0:
            state.pop(r[2], None)
    return list(state.items())


def _first_ts(evs: list[Any], types: tuple[type[Any], type[Any]]) -> int | None:
    """The ts of the first usable acquire or release of typed events, if any."""
    for ev in evs:
        cls = type(ev)
        if cls is types[1] or (
            cls is types[0]
            and not (ev.contended and ev.wait_ns is None)
            and not (ev.ok and ev.depth is None)
        ):
            ts: int = ev.ts
            return ts
    return None


class PyKernel:
    """See the module docstring."""

    def __init__(self, defer: bool = False, defer_events: int = DEFER_EVENTS) -> None:
        self.defer_events = defer_events
        self.sites: dict[str, dict[str, SiteStat]] = {}
        self.edges: dict[tuple[str, str], Edge] = {}
        self.timeline: dict[str, dict[int, list[int]]] = {}
        self.shift = TIMELINE_SHIFT
        self.held: dict[int, dict[str, SiteStat]] = {}
        self.ts_min: int | None = None
        self.ts_max: int | None = None
        self.defer = defer
        self.prefix: dict[int, list[Record]] = {}
        self.switched: dict[int, Held] = {}
        self.acquires = 0  # usable events taken by `feed` (counted here, not by the caller)
        self.releases = 0
        self.trace: _Trace | None = None  # the Perfetto trace, once `trace_start` is called
        self._labels: dict[str, str] = {}  # prim -> its name as a JSON string (the trace's)
        self.one_by_one = False  # through `acquire`/`release`, as the trace needs
        self._blocked: Any = None  # blocked_by of the acquire being applied (for the trace)
        self._saved: Any = None  # saved_depth of the release being applied (likewise)
        self._worst: dict[tuple[str, str], tuple[str, str]] = {}  # edge -> its largest pair kept
        self.decoder = TypedDecoder()  # what `feed.feed_chunk` decodes chunks with, for this stream

    @property
    def events(self) -> int:
        """Usable events taken by `feed` so far (as `HotPart.events`)."""
        return self.acquires + self.releases

    # -- one event ----------------------------------------------------------------------------
    def acquire(
        self,
        tid: int,
        prim: str,
        site: str | None,
        func: str | None,
        ts: int,
        ok: bool,
        depth: int | None,
        contended: bool,
        wait_ns: int | None,
        restored: bool | None,
        blocking: bool | None,
        blocked_by: Any = None,
    ) -> None:
        """One usable acquire (see `hotdecode.hot_problem`)."""
        self._seen(ts)
        self._blocked = blocked_by
        rec = (ACQ, tid, prim, site, func, ts, ok, depth, contended, wait_ns, restored, blocking)
        if self.defer and tid not in self.switched:
            self._defer(tid, rec)
        else:
            self.apply(rec)

    def release(
        self, tid: int, prim: str, depth: int, hold_ns: int | None, ts: int, saved: Any = None
    ) -> None:
        """One usable release (``saved``: its saved_depth, for the trace)."""
        self._seen(ts)
        self._saved = saved
        rec = (REL, tid, prim, depth, hold_ns, ts)
        if self.defer and tid not in self.switched:
            self._defer(tid, rec)
        else:
            self.apply(rec)

    def _seen(self, ts: int) -> None:
        if self.ts_min is None or ts < self.ts_min:
            self.ts_min = ts
        if self.ts_max is None or ts > self.ts_max:
            self.ts_max = ts

    def _defer(self, tid: int, rec: Record) -> None:
        buf = self.prefix.setdefault(tid, [])
        buf.append(rec)
        if len(buf) >= self.defer_events:
            state = simulate([], buf)
            self.switched[tid] = state
            self.set_held(tid, state)

    def apply(self, r: Record) -> None:
        """Apply one record (an event, in its thread's order)."""
        if r[0] == ACQ:
            _, tid, prim, site, func, ts, ok, depth, contended, wait, restored, blocking = r
            self._acquire(tid, prim, site or UNKNOWN_SITE, func, ts, ok, depth, contended, wait,
                          restored, blocking)
        elif r[3] == 0:
            self._release0(r[1], r[2], r[4], r[5])

    def _acquire(
        self, tid: int, prim: str, site: str, func: str | None, ts: int, ok: bool,
        depth: int | None, contended: bool, wait: int | None, restored: bool | None,
        blocking: bool | None,
    ) -> None:
        ss = self._site(prim, site, func)
        ss.tids.add(tid)
        if contended:
            assert wait is not None
            ss.waits.append(wait)
            ss.contended += 1
            self._tl(prim, ts, wait)
            if self.trace is not None and wait > 0:
                self.trace.wait(tid, prim, site, ts, wait, self._blocked)
        if ok:
            assert depth is not None
            ss.acquisitions += 1
            if depth > ss.max_depth:
                ss.max_depth = depth
            held = self.held.get(tid)
            if held is None:
                held = self.held[tid] = {}
            if prim not in held:
                if held and blocking is not False:  # a try cannot wait: no edge into it
                    self._edges(held, prim, ss, tid)
                held[prim] = ss
            if restored:
                ss.restored += 1
                if self.trace is not None and self.trace.on_cond is not None:
                    self.trace.on_cond(1, tid, prim, ts - (wait or 0))
        else:
            ss.failed += 1
            if blocking is not False:
                ss.timeouts += 1

    def _release0(self, tid: int, prim: str, hold: int | None, ts: int = 0) -> None:
        held = self.held.get(tid)
        if self.trace is not None:
            order = list(held) if held else []
            lifo = prim not in order or order[-1] == prim
        ss = held.pop(prim, None) if held is not None else None
        if self.trace is not None:
            self.trace.release(tid, prim, hold, ts, ss.site if ss is not None else None, lifo)
            if self._saved is not None and self.trace.on_cond is not None:
                self.trace.on_cond(0, tid, prim, ts)
        if hold is not None:
            if ss is None:
                ss = self._site(prim, UNKNOWN_SITE, None)
            ss.holds.append(hold)

    def _site(self, prim: str, site: str, func: str | None) -> SiteStat:
        per = self.sites.get(prim)
        if per is None:
            per = self.sites[prim] = {}
        ss = per.get(site)
        if ss is None:
            ss = per[site] = SiteStat(site, func)
        elif func is not None and func != ss.func and (ss.func is None or func < ss.func):
            ss.func = func
        return ss

    def _tl(self, prim: str, ts: int, wait: int) -> None:
        """A contended wait that ended at ``ts`` on the timeline: counted in the bucket where it
        ended, its time spread over the buckets it covers (a 1 s wait is not all in its last
        millisecond). A wait longer than the timeline keeps coarsens it first. The result does
        not depend on when coarsening happens: the spread is exact in ns, rebinning sums."""
        start = ts - wait if wait > 0 else ts
        while (ts >> self.shift) - (start >> self.shift) >= TIMELINE_MAX_BUCKETS:
            self.timeline = {
                p: rebin(b, self.shift, self.shift + 1) for p, b in self.timeline.items()
            }
            self.shift += 1
        shift = self.shift
        tl = self.timeline.get(prim)
        if tl is None:
            tl = self.timeline[prim] = {}
        last = ts >> shift
        b = start >> shift
        t = start
        while b <= last:
            edge = ts if b == last else (b + 1) << shift
            cell = tl.get(b)
            if cell is None:
                tl[b] = [int(b == last), edge - t]
            else:
                cell[0] += b == last
                cell[1] += edge - t
            t = edge
            b += 1
        if len(tl) > TIMELINE_MAX_BUCKETS:
            self._coarsen()

    def _coarsen(self) -> None:
        while max(len(t) for t in self.timeline.values()) > TIMELINE_MAX_BUCKETS:
            self.timeline = {
                p: rebin(b, self.shift, self.shift + 1) for p, b in self.timeline.items()
            }
            self.shift += 1

    def _edges(self, held: dict[str, SiteStat], prim: str, ss: SiteStat, tid: int) -> None:
        """Lock-order edges: every lock this thread holds → ``prim`` (acquired at ``ss``)."""
        edges = self.edges
        site = ss.site
        for a, ass in held.items():
            key = (a, prim)
            e = edges.get(key)
            if e is None:
                e = edges[key] = Edge()
            e.count += 1
            pair = (ass.site, site)
            pairs = e.sites
            n = pairs.get(pair)
            if n is not None:
                pairs[pair] = n + 1
            elif len(pairs) < MAX_EXAMPLES:
                pairs[pair] = 1
            else:  # `Edge.add_sites`, knowing the largest pair kept
                worst = self._worst.get(key)
                if worst is None:
                    worst = max(pairs)
                if pair < worst:
                    del pairs[worst]
                    pairs[pair] = 1
                    worst = max(pairs)
                self._worst[key] = worst
            e.tids.add(tid)
            gates = e.gates
            if gates is None:
                e.gates = {g for g in held if g != a}
            elif gates:
                gates.intersection_update(held)
                gates.discard(a)

    # -- many events --------------------------------------------------------------------------
    def feed(self, evs: list[Hot], other: Callable[[int], None]) -> None:
        """Handle the usable acquires and releases of ``evs``, one by one (`acquire`,
        `release`: the reference, and what deferring and drawing the trace need); call
        ``other(k)`` for every other event (in order)."""
        for k, ev in enumerate(evs):
            if ev.event not in ("acquire", "release") or not usable(ev):
                other(k)
                continue
            if ev.event == "acquire":
                self.acquires += 1
                self.acquire(ev.tid, ev.prim, ev.site, ev.func, ev.ts, ev.ok,  # type: ignore[arg-type]
                             ev.depth, ev.contended, ev.wait_ns, ev.restored,  # type: ignore[arg-type]
                             blocking_of(ev.blocking, ev.timeout),
                             getattr(ev, "blocked_by", None))
            else:
                self.releases += 1
                self.release(ev.tid, ev.prim, ev.depth, ev.hold_ns, ev.ts,  # type: ignore[arg-type]
                             getattr(ev, "saved_depth", None))

    def feed_typed(
        self,
        evs: list[Any],
        other: Callable[[int], None],
        types: tuple[type[Any], type[Any]] = (Acquire, Release),
    ) -> None:
        """`feed` for events decoded by `hotdecode.decode_typed` (`Acquire`, `Release`, other
        events' Structs; ``types``: the acquire and release classes, `TypedDecoder.types`),
        inlined: the hot loop of the Python scanner. Not for a deferring kernel or one drawing
        the trace (`feed` then)."""
        if self.defer or self.one_by_one:
            raise RuntimeError("feed_typed: not for a deferring kernel or one drawing a trace")
        sites = self.sites
        held_by = self.held
        acq_t, rel_t = types
        unknown = UNKNOWN_SITE
        n = len(evs)
        lo, hi = self.ts_min, self.ts_max
        if lo is None or hi is None:  # the first usable event's ts (the loop tests a ts against
            lo = hi = _first_ts(evs, types)  # lo only when it is not above hi), or none
            if lo is None or hi is None:
                lo, hi = 2**63, -(2**63)
        last_tid: Any = None  # whose held locks `held` is (the events of a thread come in runs)
        held: dict[str, SiteStat] = {}
        nrel = nother = 0  # (acquires: the rest)
        it = iter(evs)
        for ev in it:
            cls = type(ev)
            if cls is acq_t:
                ok = ev.ok
                depth = ev.depth
                if ok and depth is not None and not ev.contended:  # most acquires
                    prim = ev.prim
                    tid = ev.tid
                    ts = ev.ts
                    if ts > hi:
                        hi = ts
                    elif ts < lo:
                        lo = ts
                    site = ev.site
                    if site is None:
                        site = unknown
                    func = ev.func
                    try:
                        ss = sites[prim][site]
                    except KeyError:
                        ss = self._site(prim, site, func)
                    else:
                        if func != ss.func and func is not None and (
                            ss.func is None or func < ss.func
                        ):
                            ss.func = func
                    ss.tids.add(tid)
                    ss.acquisitions += 1
                    if depth > ss.max_depth:
                        ss.max_depth = depth
                    if tid != last_tid:
                        try:
                            held = held_by[tid]
                        except KeyError:
                            held = held_by[tid] = {}
                        last_tid = tid
                    if prim not in held:
                        if held and blocking_of(ev.blocking, ev.timeout) is not False:
                            self._edges(held, prim, ss, tid)  # (a try cannot wait: no edge)
                        held[prim] = ss
                    if ev.restored:
                        ss.restored += 1
                    continue
                contended = ev.contended
                wait = ev.wait_ns
                if (contended and wait is None) or (ok and depth is None):
                    pass  # unusable: handed back below
                else:  # contended, or failed
                    ts = ev.ts
                    if ts > hi:
                        hi = ts
                    elif ts < lo:
                        lo = ts
                    self._acquire(ev.tid, ev.prim, ev.site or unknown, ev.func, ts, ok, depth,
                                  contended, wait, ev.restored,
                                  blocking_of(ev.blocking, ev.timeout))
                    continue
            elif cls is rel_t:
                nrel += 1
                ts = ev.ts
                if ts > hi:
                    hi = ts
                elif ts < lo:
                    lo = ts
                if ev.depth == 0:
                    tid = ev.tid
                    if tid != last_tid:
                        try:
                            held = held_by[tid]
                        except KeyError:
                            held = held_by[tid] = {}
                        last_tid = tid
                    ss_or_none = held.pop(ev.prim, None)
                    hold = ev.hold_ns
                    if hold is not None:
                        if ss_or_none is None:
                            ss_or_none = self._site(ev.prim, unknown, None)
                        ss_or_none.holds.append(hold)
                continue
            # another event, or an unusable acquire: the caller's, in order
            nother += 1
            if hi >= lo:  # a handler may want to know how far the file went
                self.ts_min, self.ts_max = lo, hi
            other(n - length_hint(it) - 1)  # (its index)
            last_tid = None  # a rare event may change the held-locks tables
        if hi >= lo:
            self.ts_min, self.ts_max = lo, hi
        self.acquires += n - nrel - nother
        self.releases += nrel

    # -- the trace (see trace.py) ---------------------------------------------------------------
    def trace_start(
        self,
        pid: int,
        offset_ns: int,
        first_id: int,
        on_cond: Callable[[int, int, str, int], None] | None = None,
    ) -> None:
        self.trace = _Trace(pid, offset_ns, first_id, self._labels)
        self.trace.on_cond = on_cond

    def set_label(self, prim: str, label: bytes) -> None:
        self._labels[prim] = label.decode()

    def trace_take(self) -> bytes:
        return self.trace.take() if self.trace is not None else b""

    def trace_counters(self) -> bytes:
        return self.trace.counters() if self.trace is not None else b""

    @property
    def next_id(self) -> int:
        return self.trace.next_id if self.trace is not None else 0

    # -- thread state -------------------------------------------------------------------------
    def forget(self, prim: str) -> None:
        """A primitive was re-initialised (after fork): nobody holds it any more."""
        for held in self.held.values():
            held.pop(prim, None)

    def take_held(self) -> dict[int, Held]:
        """What each thread holds (threads holding something), and forget it all."""
        out = {t: [(p, ss.site) for p, ss in hs.items()] for t, hs in self.held.items() if hs}
        self.held.clear()
        return out

    def held_of(self, tid: int) -> Held:
        return [(p, ss.site) for p, ss in self.held.get(tid, {}).items()]

    def set_held(self, tid: int, held: Held) -> None:
        self.held[tid] = {p: self._site(p, s, None) for p, s in held}

    # -- the end ------------------------------------------------------------------------------
    def export(self) -> HotPart:
        """The statistics (values folded into histograms) and the thread state."""
        for per in self.sites.values():
            for ss in per.values():
                ss.fold()
        held = {t: [(p, ss.site) for p, ss in hs.items()] for t, hs in self.held.items()}
        if self.defer:
            held = {t: h for t, h in held.items() if t in self.switched}
        else:
            held = {t: h for t, h in held.items() if h}
        return HotPart(
            sites=self.sites,
            edges=self.edges,
            timeline_shift=self.shift,
            timeline=self.timeline,
            ts_min=self.ts_min,
            ts_max=self.ts_max,
            held=held,
            prefix=self.prefix,
            switched=self.switched,
            events=self.acquires + self.releases,
            acquires=self.acquires,
            releases=self.releases,
        )


class _Trace:
    """What the kernel draws of the Perfetto trace (trace.py says what, the C kernel the same
    way, byte for byte)."""

    def __init__(self, pid: int, offset: int, first_id: int, labels: dict[str, str]) -> None:
        self.pid = pid
        self.offset = offset
        self.next_id = first_id
        self.labels = labels  # prim -> its name as a JSON string
        self.out: list[str] = []
        self.last_release: dict[str, tuple[int, int]] = {}  # prim -> (ts, tid)
        self.pending: dict[str, tuple[int, int, int]] = {}  # prim -> (tid, ts, wait)
        self.deltas: dict[str, list[tuple[int, int]]] = {}
        self.on_cond: Callable[[int, int, str, int], None] | None = None

    def _label(self, prim: str, prefix: str = "") -> str:
        text = self.labels.get(prim) or js(prim)
        return f'"{prefix}{text[1:]}' if prefix else text

    def _flow(self, ph: str, fid: int, tid: int, ts: int) -> str:
        tail = ',"bp":"e"' if ph == "f" else ""
        return (
            f',\n{{"ph":"{ph}","id":{fid},"name":"handoff","cat":"handoff","pid":{self.pid},'
            f'"tid":{tid},"ts":{us(ts + self.offset)}{tail}}}'
        )

    def _handoff(self, rel_tid: int, rel_ts: int, tid: int, ts: int) -> None:
        self.next_id += 1
        self.out.append(self._flow("s", self.next_id, rel_tid, rel_ts - 1))
        self.out.append(self._flow("f", self.next_id, tid, ts - 1))

    def wait(self, tid: int, prim: str, site: str, ts: int, wait: int, blocked: Any) -> None:
        start = ts - wait
        by = f',"blocked_by":{blocked}' if type(blocked) is int and abs(blocked) < 10**18 else ""
        self.out.append(
            f',\n{{"ph":"X","name":{self._label(prim, "wait ")},"cat":"wait","pid":{self.pid},'
            f'"tid":{tid},"ts":{us(start + self.offset)},"dur":{us(wait)},'
            f'"args":{{"site":{js(site)}{by}}}}}'
        )
        self.deltas.setdefault(prim, []).extend(((start, 1), (ts, -1)))
        last = self.last_release.get(prim)
        if last is not None and last[1] != tid and start - 1 <= last[0] <= ts:
            self.pending.pop(prim, None)
            self._handoff(last[1], last[0], tid, ts)
        else:
            self.pending[prim] = (tid, ts, wait)

    def release(
        self, tid: int, prim: str, hold: int | None, ts: int, site: str | None, lifo: bool
    ) -> None:
        if hold is not None:
            start = ts - hold
            where = f'"site":{js(site)},' if site is not None else ""
            args = f',"args":{{{where}"prim":{js(prim)}}}}}'
            common = f'"name":{self._label(prim)},"cat":"hold","pid":{self.pid},"tid":{tid}'
            if lifo:
                self.out.append(
                    f',\n{{"ph":"X",{common},"ts":{us(start + self.offset)},"dur":{us(hold)}'
                    + args
                )
            else:
                self.next_id += 1
                i = self.next_id
                self.out.append(
                    f',\n{{"ph":"b","id":{i},{common},"ts":{us(start + self.offset)}}}'
                    f',\n{{"ph":"e","id":{i},{common},"ts":{us(ts + self.offset)}' + args
                )
        self.last_release[prim] = (ts, tid)
        p = self.pending.get(prim)
        if p is not None and p[0] != tid and p[1] - p[2] - 1 <= ts <= p[1]:
            del self.pending[prim]
            self._handoff(tid, ts, p[0], p[1])

    def take(self) -> bytes:
        out = "".join(self.out).encode()
        self.out = []
        return out

    def counters(self) -> bytes:
        for prim in sorted(self.deltas):
            n = 0
            for ts, d in sorted(self.deltas[prim]):
                n = max(0, n + d)
                self.out.append(
                    f',\n{{"ph":"C","name":{self._label(prim, "waiting: ")},"pid":{self.pid},'
                    f'"ts":{us(ts + self.offset)},"args":{{"threads":{n}}}}}'
                )
        self.deltas = {}
        return self.take()

