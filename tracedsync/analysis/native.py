"""The native kernel (`_cscan`, built from ``_scan.c`` when a compiler is there): its class,
and its statistics turned into the objects `kernel.PyKernel` hands back."""

from __future__ import annotations

import functools
import os
from array import array
from typing import Any

from .aggregate import Edge, SiteStat
from .hist import Histogram
from .kernel import HotPart

_EMPTY: array[int] = array("q")  # shared, never appended to: folded statistics have no raw values


def _hist(summary: tuple[int, int, int, int, dict[int, int]]) -> Histogram:
    h = Histogram.__new__(Histogram)
    h.count, h.total, h.min, h.max, h.buckets = summary
    return h


def part_from_raw(raw: dict[str, Any]) -> HotPart:
    """A `HotPart` from what ``RawKernel.export_raw`` returns (ids into ``strings``)."""
    strs: list[str] = raw["strings"]
    sites: dict[str, dict[str, SiteStat]] = {}
    for prim, site, func, acq, cont, failed, tmo, restored, depth, w, h, tids in raw["sites"]:
        ss = SiteStat.__new__(SiteStat)
        ss.site, ss.func = strs[site], strs[func] if func >= 0 else None
        ss.waits = ss.holds = _EMPTY
        ss.threads = set()
        ss.acquisitions, ss.contended, ss.failed, ss.timeouts = acq, cont, failed, tmo
        ss.restored, ss.max_depth = restored, depth
        ss.wait, ss.hold = _hist(w), _hist(h)
        ss.tids = set(tids)
        sites.setdefault(strs[prim], {})[strs[site]] = ss
    edges: dict[tuple[str, str], Edge] = {}
    for a, b, count, pairs, tids, gates in raw["edges"]:
        e = Edge()
        e.count = count
        e.sites = {(strs[x], strs[y]): n for x, y, n in pairs}
        e.tids = set(tids)
        e.gates = None if gates is None else {strs[g] for g in gates}
        edges[(strs[a], strs[b])] = e
    timeline = {strs[p]: cells for p, cells in raw["timeline"]}
    ts = raw["ts"]
    return HotPart(
        sites=sites,
        edges=edges,
        timeline_shift=raw["shift"],
        timeline=timeline,
        ts_min=ts[0] if ts else None,
        ts_max=ts[1] if ts else None,
        held=dict(raw["held"]),
        prefix=dict(raw["prefix"]),
        switched=dict(raw["switched"]),
        lines=raw["lines"],
        events=raw["events"],
        acquires=raw["acquires"],
        releases=raw["releases"],
        conds=raw["conds"],
    )


def kernel_class() -> Any:
    """The native kernel's class, or None (not built, or ``TRACEDSYNC_PURE_PYTHON`` set)."""
    if os.environ.get("TRACEDSYNC_PURE_PYTHON"):
        return None
    return _native_class()


@functools.lru_cache(maxsize=1)
def _native_class() -> Any:
    try:
        from . import _cscan
    except ImportError:
        return None

    class NativeKernel(_cscan.RawKernel):
        """`_cscan.RawKernel` with `export` giving a `HotPart`, as `PyKernel.export` does."""

        def export(self) -> HotPart:
            return part_from_raw(self.export_raw())

    return NativeKernel
