"""The report: what ``tracedsync analyze`` found, as plain data that round-trips through JSON.

Built from a merged `Aggregate` by `build_report`; every renderer (text, JSON, HTML, Perfetto)
reads only this object, so a report saved as JSON (``--format json``) renders the same way
later (`Report.from_dict`). Its JSON form is documented, with a JSON Schema, in
docs/analysis.md; `REPORT_VERSION` changes whenever a field changes meaning or disappears.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Iterable
from typing import Any

import orjson

from .._version import __version__
from .aggregate import Aggregate, PrimInfo, SiteStat
from .findings import Finding, Options, find_all
from .hist import BOUNDS, Histogram, bucket_high, bucket_low
from .hosts import host_of_prim, hosts_of, unqualified
from .labels import Labels
from .suppress import split

REPORT_VERSION = 1
_LOW = [lo for lo, _ in BOUNDS]
_HIGH = [hi for _, hi in BOUNDS]
MAX_ROW_THREADS = 64
TIMELINE_COLUMNS = 200
TIMELINE_SERIES = 8


@dataclasses.dataclass
class Dist:
    """A distribution of nanosecond durations: exact count/total/min/max, percentiles within
    about 3 %, and the histogram as ``[low_ns, high_ns, count]`` buckets."""

    count: int = 0
    total: int = 0
    min: int = 0
    max: int = 0
    p50: int = 0
    p95: int = 0
    p99: int = 0
    buckets: list[list[int]] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, h: Histogram) -> Dist:
        s = h.summary()
        lo, hi = _LOW, _HIGH
        try:
            buckets = [[lo[i], hi[i], n] for i, n in sorted(h.buckets.items())]
        except IndexError:  # (a negative index is no error: only values < 0 could make one)
            buckets = [[bucket_low(i), bucket_high(i), n] for i, n in sorted(h.buckets.items())]
        return cls(buckets=buckets, **s)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dist:
        return cls(**d)


@dataclasses.dataclass
class Row:
    """Statistics of one primitive, one creation site or one call site."""

    key: str
    label: str
    kind: str
    func: str | None = None
    created_at: str | None = None
    prims: list[str] = dataclasses.field(default_factory=list)
    acquisitions: int = 0
    contended: int = 0
    failed: int = 0
    timeouts: int = 0
    contended_share: float = 0.0
    max_depth: int = 0
    wait: Dist = dataclasses.field(default_factory=Dist)
    hold: Dist = dataclasses.field(default_factory=Dist)
    threads: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    thread_count: int = 0
    processes: list[int] = dataclasses.field(default_factory=list)
    cond_waits: int = 0
    cond_timeouts: int = 0
    notifies: int = 0
    unheard_notifies: int = 0
    misuse: int = 0
    other_events: dict[str, int] = dataclasses.field(default_factory=dict)
    other_wait: Dist = dataclasses.field(default_factory=Dist)
    other_timeouts: int = 0
    counters_only: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        d = dict(d)
        for k in ("wait", "hold", "other_wait"):
            d[k] = Dist.from_dict(d[k])
        return cls(**d)


@dataclasses.dataclass
class Series:
    """Contended acquisitions of one primitive per timeline column."""

    prim: str
    label: str
    waits: list[int]
    wait_ns: list[int]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Series:
        return cls(**d)


@dataclasses.dataclass
class Timeline:
    """Contention over time: ``series`` of equal-width columns from ``start_ts``."""

    start_ts: int = 0
    column_ns: int = 0
    columns: int = 0
    series: list[Series] = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Timeline:
        d = dict(d)
        d["series"] = [Series.from_dict(s) for s in d["series"]]
        return cls(**d)


@dataclasses.dataclass
class Report:
    """Everything a renderer needs. See the module docstring."""

    version: int = REPORT_VERSION
    tracedsync: str = __version__
    options: dict[str, int] = dataclasses.field(default_factory=dict)
    totals: dict[str, Any] = dataclasses.field(default_factory=dict)
    sources: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    problems: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    problem_count: int = 0
    threads: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    primitives: list[Row] = dataclasses.field(default_factory=list)
    creation_sites: list[Row] = dataclasses.field(default_factory=list)
    call_sites: list[Row] = dataclasses.field(default_factory=list)
    timeline: Timeline = dataclasses.field(default_factory=Timeline)
    findings: list[Finding] = dataclasses.field(default_factory=list)
    suppressed: list[Finding] = dataclasses.field(default_factory=list)
    """Findings an inline comment or the baseline leaves out (`suppress.py`)."""

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON form (a new object: orjson turns the dataclasses into it)."""
        d: dict[str, Any] = orjson.loads(orjson.dumps(self))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """Rebuild a report from `to_dict` output; `ValueError` for a newer version."""
        if not isinstance(d, dict) or "version" not in d:
            raise ValueError("not a tracedsync report")
        if int(d["version"]) > REPORT_VERSION:
            raise ValueError(
                f"report version {d['version']} is newer than this tracedsync reads "
                f"({REPORT_VERSION}); upgrade tracedsync"
            )
        d = dict(d)
        for k in ("primitives", "creation_sites", "call_sites"):
            d[k] = [Row.from_dict(r) for r in d[k]]
        d["timeline"] = Timeline.from_dict(d["timeline"])
        d["findings"] = [Finding.from_dict(f) for f in d["findings"]]
        d["suppressed"] = [Finding.from_dict(f) for f in d.get("suppressed", [])]
        return cls(**d)

    def worst(self) -> str | None:
        """The highest severity among the findings, or None."""
        from .findings import severity_rank

        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=severity_rank)


# -- building ---------------------------------------------------------------------------------
class _Group:
    """Sums SiteStats (and PrimInfos) into one row (only what a row shows: this runs once per
    primitive and call site of every site's stat, so it is kept lean)."""

    def __init__(self) -> None:
        self.site = SiteStat("")  # its counters and threads (histograms: the lists below)
        self.waits: list[Histogram] = []  # summed once, when the row is made
        self.holds: list[Histogram] = []
        self.prims: dict[str, None] = {}
        self.info = PrimInfo("")
        self.funcs: dict[str, None] = {}

    def add_site(self, prim: str, st: SiteStat) -> None:
        g = self.site
        g.acquisitions += st.acquisitions
        g.contended += st.contended
        g.failed += st.failed
        g.timeouts += st.timeouts
        if st.max_depth > g.max_depth:
            g.max_depth = st.max_depth
        if st.wait.count:
            self.waits.append(st.wait)
        if st.hold.count:
            self.holds.append(st.hold)
        g.threads |= st.threads
        self.prims[prim] = None
        if st.func:
            self.funcs[st.func] = None

    def add_info(self, info: PrimInfo) -> None:
        self.prims[info.prim] = None
        self.info.merge(dataclasses.replace(info, kind="?"))  # counters only

    def wait(self) -> Histogram:
        """The waits summed (once: a group added to another adds the sum)."""
        if len(self.waits) != 1:
            self.waits = [Histogram.merged(self.waits)]
        return self.waits[0]

    def hold(self) -> Histogram:
        """The holds summed (once, as `wait`)."""
        if len(self.holds) != 1:
            self.holds = [Histogram.merged(self.holds)]
        return self.holds[0]

    def add_group(self, o: _Group) -> None:
        """Add another group (its sites and infos, already summed)."""
        self.site.merge(o.site)
        self.waits.extend(o.waits)
        self.holds.extend(o.holds)
        self.prims.update(o.prims)
        self.funcs.update(o.funcs)
        self.info.merge(o.info)


def _row(key: str, label: str, kind: str, g: _Group, labels: Labels) -> Row:
    st, info = g.site, g.info
    acq, contended = st.acquisitions, st.contended
    if info.counters_only:  # level "contention": uncontended acquires were not logged
        acq = max(acq, info.stats_acquisitions)
        contended = max(contended, info.stats_contended)
    attempts = acq + st.failed
    threads = sorted(st.threads)
    return Row(
        key=key,
        label=label,
        kind=kind,
        func=", ".join(g.funcs) or None,
        prims=sorted(g.prims),
        acquisitions=acq,
        contended=contended,
        failed=st.failed,
        timeouts=st.timeouts,
        contended_share=round(contended / attempts, 6) if attempts else 0.0,
        max_depth=st.max_depth,
        wait=Dist.of(g.wait()),
        hold=Dist.of(g.hold()),
        threads=[labels.thread(*t) for t in threads[:MAX_ROW_THREADS]],
        thread_count=len(threads),
        processes=sorted({t[1] for t in threads}),
        cond_waits=info.cond_waits,
        cond_timeouts=info.cond_timeouts,
        notifies=info.notifies,
        unheard_notifies=info.unheard_notifies,
        misuse=info.misuse,
        other_events=dict(sorted(info.events.items())),
        other_wait=Dist.of(info.other_wait),
        other_timeouts=info.other_timeouts,
        counters_only=info.counters_only,
    )


def _order(rows: Iterable[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (-r.wait.total, -r.acquisitions, -r.cond_waits, r.key))


def _rows(agg: Aggregate, labels: Labels) -> tuple[list[Row], list[Row], list[Row]]:
    """Rows per primitive, creation site and call site. Each site's stat is added twice (to
    its primitive's group and its call site's); a creation site's group adds up its
    primitives' groups."""
    by_prim: dict[str, _Group] = {}
    by_created: dict[tuple[str, str], _Group] = {}  # (kind, creation site)
    by_call: dict[str, _Group] = {}
    for prim in sorted(set(agg.prims) | set(agg.sites)):
        info = agg.prims.get(prim) or PrimInfo(prim)
        g = by_prim[prim] = _Group()
        g.add_info(info)
        per = agg.sites.get(prim, {})
        for site in sorted(per):
            st = per[site]
            g.add_site(prim, st)
            call = by_call.get(st.site)
            if call is None:
                call = by_call[st.site] = _Group()
            call.add_site(prim, st)
    prims = []
    for prim, g in by_prim.items():  # first: a creation site's group adds their sums
        info = agg.prims.get(prim) or PrimInfo(prim)
        r = _row(prim, labels.short(prim), info.kind, g, labels)
        r.created_at = info.site
        prims.append(r)
        c = by_created.get((info.kind, info.site or "?"))
        if c is None:
            c = by_created[(info.kind, info.site or "?")] = _Group()
        c.add_group(g)
    created_rows = []
    for (kind, site), g in by_created.items():
        r = _row(f"{kind}@{site}", f"{kind} at {site}", kind, g, labels)
        r.created_at = site
        created_rows.append(r)
    call_rows = []
    for site, g in by_call.items():
        ks = sorted({(agg.prims.get(p) or PrimInfo(p)).kind for p in g.prims})
        call_rows.append(_row(site, site, "/".join(ks), g, labels))
    return _order(prims), _order(created_rows), _order(call_rows)


def _timeline(
    agg: Aggregate, labels: Labels, lo: int | None, hi: int | None, offsets: dict[str, int]
) -> Timeline:
    """Contention per column. Over several hosts, times are wall-clock: each primitive's
    buckets are moved by its host's offset."""
    if not agg.timeline or lo is None or hi is None:
        return Timeline()
    shift = agg.timeline_shift

    def moved(p: str) -> int:
        return offsets.get(host_of_prim(p), 0) if offsets else 0

    first = min((min(b) << shift) + moved(p) for p, b in agg.timeline.items() if b)
    last = max(((max(b) + 1) << shift) - 1 + moved(p) for p, b in agg.timeline.items() if b)
    start = min(lo, first)
    end = max(hi, last)
    width = max(1, (end - start) // TIMELINE_COLUMNS + 1)
    cols = (end - start) // width + 1
    totals = sorted(
        ((sum(w for _, w in b.values()), p) for p, b in agg.timeline.items()), reverse=True
    )
    top = [p for _, p in totals[:TIMELINE_SERIES]]
    rest = [p for _, p in totals[TIMELINE_SERIES:]]
    series = []
    for name, members in [(p, [p]) for p in top] + ([("other", rest)] if rest else []):
        waits = [0] * cols
        wait_ns = [0] * cols
        last_col = cols - 1
        for p in members:
            off = moved(p) - start
            for b, (n, w) in agg.timeline[p].items():
                lo = (b << shift) + off
                i = lo // width
                if 0 <= i < last_col and ((lo + (1 << shift) - 1) // width) == i:
                    waits[i] += n  # the common case: the bucket lies in one column
                    wait_ns[i] += w
                else:
                    _spread(lo + start, lo + start + (1 << shift), n, w, start, width, waits,
                            wait_ns)
        label = labels.short(name) if name != "other" else f"{len(rest)} other primitives"
        series.append(Series(prim=name, label=label, waits=waits, wait_ns=wait_ns))
    return Timeline(start_ts=start, column_ns=width, columns=cols, series=series)


def _spread(
    lo: int, hi: int, n: int, w: int, start: int, width: int, waits: list[int],
    wait_ns: list[int],
) -> None:
    """One timeline bucket ``[lo, hi)`` into the report's columns: its ``n`` waits in the
    column where the bucket ends (waits are counted where they ended), its ``w`` ns of waiting
    shared among the columns it overlaps, in proportion (sums stay exact)."""
    cols = len(waits)
    last = min(cols - 1, max(0, (hi - 1 - start) // width))
    waits[last] += n
    if not w:
        return
    i = min(cols - 1, max(0, (lo - start) // width))
    given = 0
    span = hi - lo
    while i <= last:
        edge = min(hi, start + (i + 1) * width) if i < last else hi
        share = w * (edge - lo) // span - given
        wait_ns[i] += share
        given += share
        i += 1


def build_report(agg: Aggregate, options: Options | None = None) -> Report:
    """Turn a merged aggregate into a report: rows, timeline and findings."""
    # Many objects are made, none in cycles: the cyclic collector would only walk the whole
    # (large) aggregate again and again.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with unqualified(agg) as plain:
            plain.canonical()
            return _build(plain, options)
    finally:
        if was_enabled:
            gc.enable()


def _build(agg: Aggregate, options: Options | None) -> Report:
    opts = options or Options()
    labels = Labels(agg)
    prims, created, calls = _rows(agg, labels)
    hosts = hosts_of(agg)
    # Over several hosts, monotonic clocks do not compare: times become wall-clock times.
    offsets = (
        {h: (agg.hosts[h].offset_ns or 0) if h in agg.hosts else 0 for h in hosts}
        if len(hosts) > 1
        else {}
    )
    firsts = [s.first_ts + offsets.get(s.host, 0) for s in agg.sources if s.first_ts is not None]
    lasts = [s.last_ts + offsets.get(s.host, 0) for s in agg.sources if s.last_ts is not None]
    lo = min(firsts) if firsts else None
    hi = max(lasts) if lasts else None
    pids = {(s.host, s.pid) for s in agg.sources if s.pid is not None}
    totals: dict[str, Any] = {
        "files": len(agg.sources),
        "events": sum(agg.event_counts.values()),
        "processes": len(pids),
        "threads": len(agg.threads),
        "primitives": len(prims),
        "first_ts": lo,
        "last_ts": hi,
        "span_ns": (hi - lo) if lo is not None and hi is not None else 0,
        "event_counts": dict(sorted(agg.event_counts.items())),
    }
    if offsets:
        totals["hosts"] = hosts
        totals["clock"] = "wall"
    findings, suppressed = split(find_all(agg, opts), opts.baseline)
    return Report(
        options={"long_hold_ns": opts.long_hold_ns, "long_wait_ns": opts.long_wait_ns},
        totals=totals,
        sources=[s.to_dict() for s in agg.sources],
        problems=[{"path": p, "line": n, "reason": r} for p, n, r in agg.problems],
        problem_count=agg.problem_count,
        threads=[labels.thread(*t) for t in sorted(agg.threads)],
        primitives=prims,
        creation_sites=created,
        call_sites=calls,
        timeline=_timeline(agg, labels, lo, hi, offsets),
        findings=findings,
        suppressed=suppressed,
    )
