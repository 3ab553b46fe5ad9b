"""Long holds and waits over the thresholds, runtime long_hold/long_wait reports, hot spots.

Counts over a threshold come from the histograms, so they are exact for whole buckets and may
miss values that share the threshold's own bucket (within 6 % of it); maxima are exact.

A long hold or wait is a fact about time, not a bug: over the default thresholds it is an
``info``; a ``warning`` when the user chose the threshold (``--long-hold``/``--long-wait``,
or the recorder's ``long_hold``/``long_wait`` settings, whose reports are the runtime ones).
A hold released by another thread than the one that took it (its acquiring site is unknown
to the releasing thread: a Lock used as a signal) is no critical section and not reported.
A hot site is noted only when waiting there is a material share of the run: at least
``hot_share`` of its span and ``hot_min_ns`` in all.
"""

from __future__ import annotations

import heapq

from ..aggregate import UNKNOWN_SITE, Aggregate, SiteStat
from ..labels import Labels
from . import Finding, Options, make, ms


def detect(agg: Aggregate, options: Options, labels: Labels) -> list[Finding]:
    out: list[Finding] = []
    every: list[tuple[str, SiteStat]] = [
        (prim, st) for prim, per in agg.sites.items() for st in per.values()
    ]
    sev = options.long_severity
    for prim, st in every:
        if st.hold.max >= options.long_hold_ns and st.site != UNKNOWN_SITE:
            n = st.hold.count_at_least(options.long_hold_ns)
            out.append(
                make(
                    "long_hold",
                    sev,
                    f"{labels.prim(prim)} taken at {st.site} was held for up to {ms(st.hold.max)} "
                    f"({n} of {st.hold.count} holds over {ms(options.long_hold_ns)}), blocking "
                    "every other thread that needs it.",
                    labels,
                    sites=[st.site],
                    threads=st.threads,
                    prims=[prim],
                    count=n,
                    max_ns=st.hold.max,
                )
            )
        if st.wait.max >= options.long_wait_ns:
            n = st.wait.count_at_least(options.long_wait_ns)
            out.append(
                make(
                    "long_wait",
                    sev,
                    f"Threads waited up to {ms(st.wait.max)} for {labels.prim(prim)} at {st.site} "
                    f"({n} of {st.wait.count} waits over {ms(options.long_wait_ns)}).",
                    labels,
                    sites=[st.site],
                    threads=st.threads,
                    prims=[prim],
                    count=n,
                    max_ns=st.wait.max,
                )
            )
    for (kind, prim, site), t in sorted(agg.runtime.items()):
        what = "waited on" if kind == "long_wait" else "held"
        out.append(
            make(
                kind,
                "warning",
                f"The recorder saw {labels.prim(prim)} {what} for {ms(t.max_ns)} at {site} "
                f"({t.count} report(s)).",
                labels,
                sites=[site],
                threads=t.threads,
                prims=[prim],
                count=t.count,
                max_ns=t.max_ns,
                source="runtime",
                stamps=t.details.get("stamps", []),
            )
        )
    floor = max(options.hot_min_ns, int(options.hot_share * _span(agg)))
    hot = heapq.nsmallest(
        options.hot_sites,
        ((prim, st) for prim, st in every if st.contended and st.wait.total >= floor),
        key=lambda x: (-x[1].wait.total, x[0], x[1].site),
    )
    for prim, st in hot:
        total = st.wait.total
        share = st.contended / max(1, st.acquisitions + st.failed)
        out.append(
            make(
                "hot_site",
                "info",
                f"{st.site} spent {ms(total)} waiting for {labels.prim(prim)} "
                f"({st.contended} of {st.acquisitions + st.failed} acquisitions contended, "
                f"{share:.0%}; p99 wait {ms(st.wait.percentile(0.99))}).",
                labels,
                sites=[st.site],
                threads=st.threads,
                prims=[prim],
                count=st.contended,
                total_wait_ns=total,
            )
        )
    return out


def _span(agg: Aggregate) -> int:
    """The run's length: the longest span of one host's logs (clocks of two hosts do not
    compare)."""
    spans: dict[str, list[int]] = {}
    for s in agg.sources:
        if s.first_ts is None or s.last_ts is None:
            continue
        cur = spans.setdefault(s.host, [s.first_ts, s.last_ts])
        cur[0], cur[1] = min(cur[0], s.first_ts), max(cur[1], s.last_ts)
    return max((hi - lo for lo, hi in spans.values()), default=0)
