"""Lock-order inversions: cycles in the graph "A→B = B acquired while holding A", like lockdep.

Checked per instance (these very locks) and per class (all locks created at one source line),
so an inversion between two *instances* of the same two classes (account 1 → account 2 in one
transfer, account 2 → account 1 in another) is found even though no deadlock happened. A cycle
whose every edge was always taken while holding one same other lock (a "gate") cannot deadlock:
it is reported as info.
"""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregate, Edge
from ..graph import cycles
from ..labels import Labels
from . import Finding, Options, make
from .signals import signal_locks


def _edge_details(a: str, b: str, e: Edge, labels: Labels) -> dict[str, Any]:
    return {
        "from": a,
        "to": b,
        "count": e.count,
        "sites": [[sa, sb, n] for (sa, sb), n in sorted(e.sites.items())],
        "threads": [labels.thread(*t) for t in sorted(e.threads)],
    }


def _first_sites(e: Edge) -> str:
    (sa, sb), _ = max(e.sites.items(), key=lambda kv: (kv[1], kv[0]))
    return f"{sa} then {sb}"


def _gate(cycle_edges: list[Edge]) -> set[str]:
    common: set[str] | None = None
    for e in cycle_edges:
        g = e.gates or set()
        common = set(g) if common is None else common & g
    return common or set()


def detect(agg: Aggregate, options: Options, labels: Labels) -> list[Finding]:
    graph: dict[str, list[str]] = {}
    signals = signal_locks(agg)  # no mutual exclusion: their edges order nothing
    for a, b in agg.edges:
        if a not in signals and b not in signals:
            graph.setdefault(a, []).append(b)
    # Instance cycles through the same classes (e.g. every pair of accounts in a transfer that
    # locks "from" then "to") are one mistake: group them into one finding with examples.
    groups: dict[tuple[str, ...], list[list[str]]] = {}
    for cyc in cycles(graph):
        groups.setdefault(_canon([_class(agg, p) for p in cyc]), []).append(cyc)
    out: list[Finding] = []
    for cycs in groups.values():
        out.append(_instance_finding(agg, labels, cycs))
    out.extend(_class_level(agg, labels, {frozenset(c) for c in groups}, signals))
    out.extend(_runtime(agg, labels, out))
    return out


def _runtime(agg: Aggregate, labels: Labels, found: list[Finding]) -> list[Finding]:
    """The recorder's ``lock_order`` events (``lock_order=True``; ``order_violation`` before
    schema 3): the stack of a cycle already found in the acquires, else a finding of its own
    (a log at level contention has no uncontended acquires to find it in)."""
    out: list[Finding] = []
    for n in agg.facts.notes.get("lock_order", []):
        a, b = n.get("held"), n.get("prim")
        if not isinstance(a, str) or not isinstance(b, str):
            continue
        host, pid, tid = str(n.get("host", "")), int(n.get("pid") or 0), n.get("tid")
        who = labels.thread_text(host, pid, tid) if isinstance(tid, int) else "a thread"
        stack = {"thread": f"{who}, taking {labels.prim(b)} at {n.get('site')}",
                 "stack": n.get("stack") or []}
        same = [f for f in found + out if f.details.get("level") == "instance"
                and {a, b} <= set(f.prims)]
        if same:
            same[0].details.setdefault("stacks", []).append(stack)
            continue
        rev = n.get("reverse") or []
        earlier = "; ".join(
            f"{labels.prim(str(e.get('to')))} taken at {e.get('site')} while holding "
            f"{labels.prim(str(e.get('from')))} (taken at {e.get('held_site')})"
            for e in rev if isinstance(e, dict))
        out.append(make(
            "lock_order", "warning",
            f"Lock-order inversion seen at run time: {who} took {labels.prim(b)} at "
            f"{n.get('site')} while holding {labels.prim(a)} (taken at {n.get('held_site')}), "
            f"against the order seen before ({earlier}): threads taking these locks at the "
            "same time can deadlock.",
            labels,
            sites=[str(n.get("site") or ""), str(n.get("held_site") or ""),
                   *(str(e.get("site") or "") for e in rev if isinstance(e, dict))],
            threads=[(host, pid, tid)] if isinstance(tid, int) else [],
            prims=[a, b],
            level="instance",
            source="runtime",
            stacks=[stack],
            stamps=[[host, pid, tid, n.get("ts")]],
        ))
    return out


def _canon(seq: list[str]) -> tuple[str, ...]:
    k = seq.index(min(seq))
    return tuple(seq[k:] + seq[:k])


def _instance_finding(agg: Aggregate, labels: Labels, cycs: list[list[str]]) -> Finding:
    cyc = cycs[0]
    pairs = list(zip(cyc, cyc[1:] + cyc[:1], strict=True))
    edges = [agg.edges[p] for p in pairs]
    all_edges = [agg.edges[p] for c in cycs for p in zip(c, c[1:] + c[:1], strict=True)]
    gate = set.intersection(
        *(_gate([agg.edges[p] for p in zip(c, c[1:] + c[:1], strict=True)]) for c in cycs)
    )
    names = " → ".join(labels.prim(p) for p in [*cyc, cyc[0]])
    how = "; ".join(
        f"{labels.prim(a)} → {labels.prim(b)} at {_first_sites(e)}"
        for (a, b), e in zip(pairs, edges, strict=True)
    )
    more = f" (and {len(cycs) - 1} more cycle(s) among locks of the same kind)" if cycs[1:] else ""
    if gate:
        sev = "info"
        msg = (
            f"Locks are taken in a cycle ({names}: {how}){more}, but always under "
            f"{', '.join(labels.prim(g) for g in sorted(gate))}, which keeps it safe."
        )
    else:
        sev = "warning"
        msg = (
            f"Lock-order inversion {names} ({how}){more}: threads taking these locks "
            "at the same time can deadlock."
        )
    return make(
        "lock_order",
        sev,
        msg,
        labels,
        sites=[s for e in edges for pair in e.sites for s in pair],
        threads=[t for e in all_edges for t in e.threads],
        prims=[p for c in cycs for p in c],
        count=len(cycs),
        level="instance",
        cycles=cycs,
        edges=[_edge_details(a, b, e, labels) for (a, b), e in zip(pairs, edges, strict=True)],
        gate=sorted(gate),
    )


def _class(agg: Aggregate, prim: str) -> str:
    info = agg.prims.get(prim)
    if info is None or not info.site:
        return prim
    return f"{info.kind} created at {info.site}"


def _class_level(agg: Aggregate, labels: Labels, done: set[frozenset[str]],
                 signals: set[str]) -> list[Finding]:
    cls_edges: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for a, b in agg.edges:
        if a in signals or b in signals:
            continue
        ca, cb = _class(agg, a), _class(agg, b)
        cls_edges.setdefault((ca, cb), []).append((a, b))
    graph: dict[str, list[str]] = {}
    for ca, cb in cls_edges:
        if ca != cb:
            graph.setdefault(ca, []).append(cb)
    out: list[Finding] = []
    for cyc in cycles(graph):
        if frozenset(cyc) in done:  # the instance-level finding already says it
            continue
        pairs = list(zip(cyc, cyc[1:] + cyc[:1], strict=True))
        inst = [cls_edges[p] for p in pairs]
        sample = [agg.edges[i[0]] for i in inst]
        how = "; ".join(
            f"{labels.prim(i[0][0])} → {labels.prim(i[0][1])} at {_first_sites(e)}"
            for i, e in zip(inst, sample, strict=True)
        )
        out.append(
            make(
                "lock_order",
                "warning",
                f"Locks of classes {' → '.join([*cyc, cyc[0]])} are taken in both orders by "
                f"different instances ({how}): the same code on the same instances can deadlock.",
                labels,
                sites=[s for e in sample for pair in e.sites for s in pair],
                threads=[t for e in sample for t in e.threads],
                prims=[p for i in inst for pair in i for p in pair],
                count=min(sum(agg.edges[x].count for x in i) for i in inst),
                level="class",
                classes=cyc,
                edges=[_edge_details(*i[0], agg.edges[i[0]], labels) for i in inst],
            )
        )
    for (ca, cb), same in sorted(cls_edges.items()):
        if ca != cb:
            continue
        taken = set(same)
        if any((b, a) in taken for a, b in taken):
            continue  # already an instance-level inversion
        e = agg.edges[same[0]]
        out.append(
            make(
                "nested_same_class",
                "info",
                f"Two locks of the class {ca} are held at once ({labels.prim(same[0][0])} "
                f"then {labels.prim(same[0][1])} at {_first_sites(e)}): unless instances are "
                "always taken in one fixed order, this can deadlock.",
                labels,
                sites=[s for pair in e.sites for s in pair],
                threads=e.threads,
                prims=[p for pair in same for p in pair],
                count=sum(agg.edges[x].count for x in same),
                classes=[ca],
            )
        )
    return out
