"""Findings: what is wrong (or worth a look) in the logs, each with a severity and one sentence.

Every detector is a function ``(aggregate, options, labels) -> list[Finding]`` in a module of
this package; `find_all` runs them all and sorts the result, most severe first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from ..aggregate import Aggregate, Thread
from ..labels import Labels

SEVERITIES = ("info", "warning", "error")


def severity_rank(severity: str) -> int:
    """0 for info, 1 for warning, 2 for error."""
    return SEVERITIES.index(severity)


@dataclasses.dataclass(frozen=True)
class Options:
    """Thresholds of the detectors (the CLI's ``--long-hold``, ``--long-wait``...)."""

    long_hold_ns: int = 100_000_000
    long_wait_ns: int = 100_000_000
    long_severity: str = "info"  # "warning" when the user chose the thresholds
    hot_sites: int = 3  # how many "most waited-on call site" notes to give, at most...
    hot_share: float = 0.05  # ...of sites that waited at least this share of the run's span
    hot_min_ns: int = 1_000_000  # ...and at least this long in all
    baseline: frozenset[str] = frozenset()  # keys of findings to leave out (suppress.py)


@dataclasses.dataclass
class Finding:
    """One thing found. ``message`` is a single sentence saying what is wrong."""

    kind: str
    severity: str
    message: str
    call_sites: list[str] = dataclasses.field(default_factory=list)
    threads: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    processes: list[int] = dataclasses.field(default_factory=list)
    prims: list[str] = dataclasses.field(default_factory=list)
    count: int = 1
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    primitives: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """Each of ``prims`` named: kind, ``name=``, assigned name, creation site (`Labels`)."""
    tests: list[str] = dataclasses.field(default_factory=list)
    """Under pytest: the node ids of the tests running when its events were recorded."""
    key: str = ""
    """What identifies it across runs (kind and sites: `baseline.py`), for baselines."""

    def to_dict(self) -> dict[str, Any]:
        import orjson

        d: dict[str, Any] = orjson.loads(orjson.dumps(self))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(**d)

    def stamps(self) -> list[list[Any]]:
        """When its events were recorded, as far as known: ``[host, pid, tid, ts]`` each."""
        return list(self.details.get("stamps", []))


def make(
    kind: str,
    severity: str,
    message: str,
    labels: Labels,
    *,
    sites: Iterable[str] = (),
    threads: Iterable[Thread] = (),
    prims: Iterable[str] = (),
    count: int = 1,
    **details: Any,
) -> Finding:
    """A finding with de-duplicated, sorted sites, threads, processes and primitives."""
    ths = sorted(set(threads))
    prims = list(dict.fromkeys(prims))
    return Finding(
        kind=kind,
        severity=severity,
        message=message,
        call_sites=list(dict.fromkeys(s for s in sites if s)),
        threads=[labels.thread(*t) for t in ths],
        processes=sorted({t[1] for t in ths}),
        prims=prims,
        count=count,
        details=details,
        primitives=[labels.describe(p) for p in prims],
    )


Detector = Callable[[Aggregate, Options, Labels], list[Finding]]


def find_all(agg: Aggregate, options: Options | None = None) -> list[Finding]:
    """Run every detector; most severe first, then by kind and message (deterministic)."""
    from . import deadlocks, lock_order, misuse, nested, thresholds, wakeups

    opts = options or Options()
    labels = Labels(agg)
    out: list[Finding] = []
    detectors: list[Detector] = [
        deadlocks.detect,
        nested.detect,
        lock_order.detect,
        wakeups.detect,
        misuse.detect,
        thresholds.detect,
    ]
    for det in detectors:
        out.extend(det(agg, opts, labels))
    from ..under_pytest import attribute

    attribute(out, agg)  # the tests they happened in (a traced pytest session)
    for f in out:
        f.details.pop("stamps", None)  # (only for that)
    out.sort(key=lambda f: (-severity_rank(f.severity), f.kind, f.message))
    return out


def ms(ns: int) -> str:
    """A duration for a sentence: ``"12.3 ms"``, ``"2.05 s"``, ``"850 µs"``."""
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.3g} s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.3g} ms"
    if ns >= 1_000:
        return f"{ns / 1e3:.3g} µs"
    return f"{ns} ns"
