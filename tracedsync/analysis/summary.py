"""The short per-primitive summary: acquisitions, contention, wait and hold totals, max depth.

Built from the log alone (not from in-process counters), so it shows what the log can prove.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from .handlers import barrier_timed_out
from .reader import Event


@dataclasses.dataclass
class PrimSummary:
    """Totals for one primitive, across every process that used it."""

    prim: str
    kind: str = "?"
    name: str | None = None
    site: str | None = None
    acquisitions: int = 0
    contended: int = 0
    failed: int = 0
    wait_ns: int = 0
    hold_ns: int = 0
    max_depth: int = 0
    waits: int = 0
    wait_timeouts: int = 0
    notifies: int = 0
    unheard_notifies: int = 0
    misuse: int = 0
    gets: int = 0
    sets: int = 0
    rmw_sites: dict[str, set[int]] = dataclasses.field(default_factory=dict)
    """Unsynchronised read-modify-write sites -> the pids where they happened."""
    pids: set[int] = dataclasses.field(default_factory=set)
    tids: set[tuple[int, int]] = dataclasses.field(default_factory=set)

    @property
    def label(self) -> str:
        return self.name if self.name else f"{self.kind} {self.prim}"


def summarise(events: Iterable[Event]) -> dict[str, PrimSummary]:
    """Fold events into per-primitive totals, keyed by ``prim``."""
    out: dict[str, PrimSummary] = {}

    def get(prim: str) -> PrimSummary:
        s = out.get(prim)
        if s is None:
            s = out[prim] = PrimSummary(prim)
        return s

    for ev in events:
        prim = ev.get("prim")
        if not isinstance(prim, str):
            continue
        name = ev["event"]
        s = get(prim)
        if name == "created":
            kind, name, site = ev.get("kind"), ev.get("name"), ev.get("site")
            s.kind = kind if isinstance(kind, str) else "?"
            s.name = name if isinstance(name, str) else None
            s.site = site if isinstance(site, str) else None
        elif name == "acquire":
            s.pids.add(ev["pid"])
            if ev.get("ok"):
                s.acquisitions += 1
                s.tids.add((ev["pid"], ev.get("tid") or 0))
                depth = ev.get("depth") or 0
                if isinstance(depth, int) and depth > s.max_depth:
                    s.max_depth = depth
            else:
                s.failed += 1
            if ev.get("contended"):
                s.contended += 1
            wait = ev.get("wait_ns")
            if isinstance(wait, int) and ev.get("contended"):
                s.wait_ns += wait
        elif name == "release":
            hold = ev.get("hold_ns")
            if isinstance(hold, int):
                s.hold_ns += hold
        elif name == "cond_wake":
            s.waits += 1
            if not ev.get("notified"):
                s.wait_timeouts += 1
        elif name == "barrier_wait" or (name == "barrier_broken" and "waited_ns" in ev):
            s.waits += 1  # a barrier's waits, passed or broken (the aborting thread did not)
            if barrier_timed_out(ev):
                s.wait_timeouts += 1
        elif name in ("notify", "notify_all"):
            s.notifies += 1
            if not ev.get("waiters"):
                s.unheard_notifies += 1
        elif name == "misuse":
            s.misuse += 1
        elif name == "value_get":
            s.gets += 1
        elif name == "value_set":
            s.sets += 1
        elif name == "rmw":
            site = ev.get("site")
            s.rmw_sites.setdefault(site if isinstance(site, str) else "?", set()).add(ev["pid"])
    return out


def _short(site: str) -> str:
    """A site relative to the current directory when it is under it."""
    import os

    cwd = os.getcwd() + os.sep
    return site[len(cwd):] if site.startswith(cwd) else site


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f}"


def render_text(summary: dict[str, PrimSummary],
                racing: set[tuple[str, str]] | None = None) -> str:
    """A fixed-width table, one row per primitive, busiest first. ``racing``: the (prim, site)
    of the read-modify-writes that another writer overlapped (analyze's rule); the others are
    noted as what they were, without a claim of lost updates."""
    rows = sorted(summary.values(), key=lambda s: (-s.acquisitions, s.prim))
    head = (
        "primitive",
        "kind",
        "acquired",
        "contended",
        "failed",
        "wait ms",
        "hold ms",
        "max depth",
        "waits",
        "notifies",
    )
    table = [head]
    for s in rows:
        table.append(
            (
                s.label,
                s.kind,
                str(s.acquisitions),
                str(s.contended),
                str(s.failed),
                _ms(s.wait_ns),
                _ms(s.hold_ns),
                str(s.max_depth),
                f"{s.waits}" + (f" ({s.wait_timeouts} timed out)" if s.wait_timeouts else ""),
                f"{s.notifies}"
                + (f" ({s.unheard_notifies} unheard)" if s.unheard_notifies else ""),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    notes = []
    for s in rows:
        if s.gets or s.sets:
            notes.append(f"{s.label}: {s.gets} reads and {s.sets} writes of its value")
        for site, pids in sorted(s.rmw_sites.items()):
            where = (f"{_short(site)} (in {len(pids)} process{'es' if len(pids) != 1 else ''})")
            if racing is None or (s.prim, site) in racing:
                notes.append(f"{s.label}: UNSYNCHRONISED read-modify-write at {where}: the lock "
                             "is not held across the read and the write while another writer "
                             "updates it, so updates are lost")
            else:
                notes.append(f"{s.label}: read-modify-write without the lock at {where}, with "
                             "no other writer at the same time: no update was lost")
    lines = []
    for i, r in enumerate(table):
        lines.append(
            "  ".join(
                c.ljust(w) if j < 2 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)
