"""``--format html``: one self-contained page (inline CSS and SVG, no script, no network).

Plots: the distributions of lock waits and holds (log-scaled duration axis, one bar per power
of two, summed over every primitive) and a contention timeline (total wait per time column,
stacked by primitive). Then the findings and the statistics tables.
"""

from __future__ import annotations

import html
import math
from typing import Any, TextIO

from .render_text import dur
from .report import Dist, Report, Row

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#555}table{border-collapse:collapse;margin:4px 0 12px}
th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.sev{font-weight:600;border-radius:3px;padding:1px 6px;color:#fff}
.error{background:#c62828}.warning{background:#ef8f00}.info{background:#1e88e5}
.plots{display:flex;flex-wrap:wrap;gap:24px}svg{background:#fafafa;border:1px solid #ddd}
svg text{font:11px system-ui,sans-serif;fill:#333}.none{color:#2e7d32;font-weight:600}
code{font-size:12px}td.l code{white-space:nowrap}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 18px;margin:6px 0 0;padding:0}
.legend li{display:flex;align-items:center;gap:6px}
.swatch{display:inline-block;width:10px;height:10px;flex:none}
"""
_TICK_PX = 64  # room for one axis label ("1.02ms" at 11px is about 40px wide)
_COLORS = [
    "#1e88e5",
    "#e53935",
    "#43a047",
    "#fb8c00",
    "#8e24aa",
    "#00897b",
    "#6d4c41",
    "#546e7a",
    "#9e9e9e",
]


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _merge(dists: list[Dist]) -> dict[int, int]:
    """Counts per power of two (bucket's bit length) over many distributions."""
    out: dict[int, int] = {}
    for d in dists:
        for low, _high, n in d.buckets:
            k = max(1, low).bit_length()
            out[k] = out.get(k, 0) + n
    return out


def distribution_svg(title: str, counts: dict[int, int], w: int = 520, h: int = 220) -> str:
    """A bar chart of ``counts`` (power of two → count) with a log-scaled duration axis."""
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">'
    head += f'<title>{_e(title)}</title><text x="8" y="16">{_e(title)}</text>'
    if not counts:
        return head + f'<text x="{w // 2 - 30}" y="{h // 2}">no data</text></svg>'
    lo, hi = min(counts), max(counts)
    n = hi - lo + 1
    left, bottom, top = 48, h - 30, 26
    bw = (w - left - 10) / n
    peak = max(counts.values())
    step = max(1, math.ceil(_TICK_PX / bw))  # one label per _TICK_PX: they never touch
    parts = [head]
    for i in range(n):
        c = counts.get(lo + i, 0)
        bh = (bottom - top) * c / peak
        x = left + i * bw
        parts.append(
            f'<rect x="{x:.1f}" y="{bottom - bh:.1f}" width="{max(bw - 1, 1):.1f}" '
            f'height="{bh:.1f}" fill="#1e88e5"><title>{dur(1 << (lo + i - 1))} to '
            f"{dur((1 << (lo + i)) - 1)}: {c:,}</title></rect>"
        )
        if i % step == 0:
            parts.append(f'<text x="{x:.1f}" y="{bottom + 14}">{dur(1 << (lo + i - 1))}</text>')
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{w - 10}" y2="{bottom}" stroke="#999"/>')
    parts.append(f'<text x="4" y="{top + 10}">{peak:,}</text><text x="4" y="{bottom}">0</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(report: Report, w: int = 1060, h: int = 260) -> str:
    """Total wait per column, stacked by primitive, over the run."""
    tl = report.timeline
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">'
    head += "<title>contention timeline</title>"
    head += '<text x="8" y="16">time spent waiting for locks, per time slice</text>'
    if not tl.series or not tl.columns:
        return head + f'<text x="{w // 2 - 60}" y="{h // 2}">no contention recorded</text></svg>'
    left, bottom, top, right = 60, h - 24, 26, 10
    totals = [sum(s.wait_ns[i] for s in tl.series) for i in range(tl.columns)]
    peak = max(max(totals), 1)
    bw = (w - left - right) / tl.columns
    parts = [head]
    for i in range(tl.columns):
        y = float(bottom)
        for k, s in enumerate(tl.series):
            v = s.wait_ns[i]
            if not v:
                continue
            bh = (bottom - top) * v / peak
            y -= bh
            parts.append(
                f'<rect x="{left + i * bw:.1f}" y="{y:.1f}" width="{max(bw, 0.5):.2f}" '
                f'height="{bh:.1f}" fill="{_COLORS[k % len(_COLORS)]}"><title>{_e(s.label)}: '
                f"{dur(v)} waited, {s.waits[i]} wait(s) ended</title></rect>"
            )
    span = tl.columns * tl.column_ns
    for j in range(6):
        x = left + (w - left - right - 30) * j / 5
        parts.append(f'<text x="{x - 10:.1f}" y="{bottom + 14}">{dur(int(span * j / 5))}</text>')
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{w - right}" y2="{bottom}" stroke="#999"/>')
    parts.append(f'<text x="4" y="{top + 10}">{dur(peak)}</text><text x="4" y="{bottom}">0</text>')
    parts.append("</svg>")
    return "".join(parts) + timeline_legend(report)


def timeline_legend(report: Report) -> str:
    """The timeline's legend as an HTML list (laid out by the browser, so its labels never
    overlap, however long or wide they are)."""
    items = []
    for k, s in enumerate(report.timeline.series):
        color = _COLORS[k % len(_COLORS)]
        total = sum(s.wait_ns)
        items.append(
            f'<li><span class=swatch style="background:{color}"></span>{_e(s.label)} '
            f"<span class=sub>({dur(total)})</span></li>"
        )
    return f"<ul class=legend>{''.join(items)}</ul>" if items else ""


def _pct(d: Dist) -> str:
    if not d.count:
        return "<td>-</td>" * 4
    return "".join(f"<td>{dur(v)}</td>" for v in (d.p50, d.p95, d.p99, d.max))


def _table(title: str, rows: list[Row], top: int) -> str:
    rows = [r for r in rows if r.acquisitions or r.failed]
    if not rows:
        return ""
    out = [
        f"<h2>{_e(title)} ({len(rows)})</h2><table><tr><th class=l>name</th>"
        "<th>acquired</th><th>contended</th><th>wait p50</th><th>p95</th><th>p99</th>"
        "<th>max</th><th>hold p50</th><th>p95</th><th>p99</th><th>max</th><th>depth</th>"
        "<th>threads</th></tr>"
    ]
    for r in rows[:top]:
        out.append(
            f"<tr><td class=l><code>{_e(r.label)}</code></td><td>{r.acquisitions:,}</td>"
            f"<td>{r.contended_share:.1%}</td>{_pct(r.wait)}{_pct(r.hold)}"
            f"<td>{r.max_depth}</td><td>{r.thread_count}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _conditions(rows: list[Row], top: int) -> str:
    rows = [r for r in rows if r.cond_waits or r.notifies]
    if not rows:
        return ""
    out = [
        f"<h2>Conditions ({len(rows)})</h2><table><tr><th class=l>name</th>"
        "<th class=l>created at</th><th>waits</th><th>timed out</th><th>notifies</th>"
        "<th>heard by nobody</th></tr>"
    ]
    for r in rows[:top]:
        out.append(
            f"<tr><td class=l><code>{_e(r.label)}</code></td><td class=l><code>"
            f"{_e(r.created_at or '?')}</code></td><td>{r.cond_waits:,}</td>"
            f"<td>{r.cond_timeouts:,}</td><td>{r.notifies:,}</td>"
            f"<td>{r.unheard_notifies:,}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


class HtmlRenderer:
    """See the module docstring; ``top`` rows per table."""

    def __init__(self, top: int = 50, **_: Any) -> None:
        self.top = max(top, 50)

    def render(self, report: Report, out: TextIO) -> None:
        t = report.totals
        parts = [
            "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
            "<title>tracedsync analysis</title>",
            f"<style>{_CSS}</style></head><body>",
            "<h1>tracedsync analysis</h1>",
            f"<div class=sub>{t.get('files', 0)} file(s), {t.get('processes', 0)} process(es), "
            f"{t.get('threads', 0)} thread(s), {t.get('primitives', 0)} primitive(s), "
            f"{t.get('events', 0):,} events over {dur(int(t.get('span_ns') or 0))}"
            + (f"; {report.problem_count} unusable line(s) skipped" if report.problem_count else "")
            + "</div>",
            f"<h2>Findings ({len(report.findings)})</h2>",
        ]
        if report.findings:
            parts.append(
                "<table><tr><th class=l>severity</th><th class=l>kind</th>"
                "<th class=l>what</th><th class=l>threads</th></tr>"
            )
            for f in report.findings:
                threads = ", ".join(f"{x['name']} ({x['pid']}/{x['tid']})" for x in f.threads[:6])
                parts.append(
                    f"<tr><td class=l><span class='sev {_e(f.severity)}'>{_e(f.severity)}"
                    f"</span></td><td class=l>{_e(f.kind)}</td><td class=l>{_e(f.message)}</td>"
                    f"<td class=l>{_e(threads)}</td></tr>"
                )
            parts.append("</table>")
        else:
            parts.append("<p class=none>No findings.</p>")
        parts.append("<h2>Contention over time</h2>")
        parts.append(timeline_svg(report))
        parts.append("<h2>Distributions</h2><div class=plots>")
        parts.append(
            distribution_svg(
                "lock wait times (contended acquires)", _merge([r.wait for r in report.primitives])
            )
        )
        parts.append(
            distribution_svg("lock hold times", _merge([r.hold for r in report.primitives]))
        )
        parts.append("</div>")
        parts.append(_table("Locks", report.primitives, self.top))
        parts.append(_table("Call sites", report.call_sites, self.top))
        parts.append(_table("Creation sites", report.creation_sites, self.top))
        parts.append(_conditions(report.primitives, self.top))
        if report.problems:
            parts.append(f"<h2>Skipped lines ({report.problem_count})</h2><ul>")
            parts.extend(
                f"<li><code>{_e(p['path'])}:{p['line']}</code>: {_e(p['reason'])}</li>"
                for p in report.problems[:100]
            )
            parts.append("</ul>")
        parts.append(
            f"<p class=sub>tracedsync {_e(report.tracedsync)}, report format "
            f"{report.version}</p></body></html>\n"
        )
        out.write("".join(parts))


RENDERER = HtmlRenderer
