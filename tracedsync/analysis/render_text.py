"""``--format text``: tables for the terminal (rich), most important first: findings, then the
busiest primitives, call sites and creation sites, then the lines that had to be skipped."""

from __future__ import annotations

import os
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .report import Dist, Report, Row

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def dur(ns: int) -> str:
    """A short duration: ``"850ns"``, ``"12.3µs"``, ``"4.56ms"``, ``"2.1s"``."""
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3g}ms"
    return f"{ns / 1e9:.3g}s"


def _pct(d: Dist) -> str:
    if not d.count:
        return "-"
    return f"{dur(d.p50)} / {dur(d.p95)} / {dur(d.p99)} / {dur(d.max)}"


def _cols(d: Dist) -> list[str]:
    if not d.count:
        return ["-", "", "", ""]
    return [dur(d.p50), dur(d.p95), dur(d.p99), dur(d.max)]


def shorten(text: str, cwd: str | None = None) -> str:
    """Paths under the current directory written relative to it (sites get long)."""
    here = (cwd if cwd is not None else os.getcwd()).rstrip(os.sep) + os.sep
    return text.replace(here, "") if len(here) > 1 else text


def _share(r: Row) -> str:
    return f"{r.contended_share:.1%}" if r.acquisitions or r.failed else "-"


class TextRenderer:
    """Rich tables; ``top`` rows per table, ``width`` columns when not writing to a terminal."""

    def __init__(
        self, top: int = 15, width: int | None = None, color: bool | None = None, **_: Any
    ) -> None:
        self.top = top
        self.width = width
        self.color = color

    def render(self, report: Report, out: TextIO) -> None:
        tty = out.isatty() if hasattr(out, "isatty") else False
        console = Console(
            file=out,
            width=self.width or (None if tty else 160),
            force_terminal=self.color if self.color is not None else None,
            no_color=self.color is False or not tty,
            highlight=False,
            soft_wrap=False,
        )
        self._header(console, report)
        self._findings(console, report)
        locks = [r for r in report.primitives if r.acquisitions or r.failed]
        self._rows(console, "Locks", locks, first="primitive", created=True)
        self._rows(
            console, "Call sites (where acquire was called)", report.call_sites, first="call site"
        )
        self._rows(
            console,
            "Creation sites (all locks created on one line)",
            [r for r in report.creation_sites if r.acquisitions or r.failed],
            first="created at",
        )
        self._conditions(console, report)
        self._other(console, report)
        self._problems(console, report)

    def _header(self, c: Console, r: Report) -> None:
        t = r.totals
        span = dur(int(t.get("span_ns") or 0))
        c.print(
            Text(
                f"tracedsync analyze: {t.get('files', 0)} file(s), {t.get('processes', 0)} "
                f"process(es), {t.get('threads', 0)} thread(s), {t.get('primitives', 0)} "
                f"primitive(s), {t.get('events', 0):,} events over {span}",
                style="bold",
            )
        )
        if r.problem_count:
            c.print(
                Text(
                    f"{r.problem_count} unusable line(s) skipped (listed at the end)",
                    style="yellow",
                )
            )

    def _findings(self, c: Console, r: Report) -> None:
        if not r.findings:
            c.print(Text("No findings.", style="green"))
            return
        tab = Table(
            title=f"Findings ({len(r.findings)})",
            box=box.SIMPLE_HEAD,
            title_justify="left",
            expand=False,
        )
        tab.add_column("severity", no_wrap=True)
        tab.add_column("kind", no_wrap=True)
        tab.add_column("what", ratio=3)
        tab.add_column("threads", ratio=1)
        for f in r.findings:
            threads = ", ".join(f"{t['name']} ({t['pid']}/{t['tid']})" for t in f.threads[:4])
            if len(f.threads) > 4:
                threads += f", +{len(f.threads) - 4}"
            tab.add_row(
                Text(f.severity, style=_STYLE.get(f.severity, "")),
                f.kind,
                shorten(f.message),
                threads or "-",
            )
        c.print(tab)

    def _rows(
        self, c: Console, title: str, rows: list[Row], first: str, created: bool = False
    ) -> None:
        if not rows:
            return
        shown = rows[: self.top]
        more = f", top {len(shown)} by wait time" if len(rows) > len(shown) else ""
        tab = Table(title=f"{title} ({len(rows)}{more})", box=box.SIMPLE_HEAD, title_justify="left")
        tab.add_column(first, overflow="fold", min_width=24)
        if created:
            tab.add_column("created at", overflow="fold", min_width=12)
        tab.add_column("acq", justify="right")
        tab.add_column("cont.", justify="right")
        for head in ("wait p50", "p95", "p99", "max", "hold p50", "p95", "p99", "max"):
            tab.add_column(head, justify="right", no_wrap=True)
        tab.add_column("depth", justify="right")
        tab.add_column("thr/proc", justify="right")
        for r in shown:
            cells = [shorten(r.label)]
            if created:
                cells.append(shorten(r.created_at or "?"))
            cells += [
                f"{r.acquisitions:,}" + (f" ({r.failed} failed)" if r.failed else ""),
                _share(r),
                *_cols(r.wait),
                *_cols(r.hold),
                str(r.max_depth or "-"),
                f"{r.thread_count}/{len(r.processes)}",
            ]
            tab.add_row(*cells)
        c.print(tab)

    def _conditions(self, c: Console, r: Report) -> None:
        rows = [x for x in r.primitives if x.cond_waits or x.notifies]
        if not rows:
            return
        tab = Table(title=f"Conditions ({len(rows)})", box=box.SIMPLE_HEAD, title_justify="left")
        tab.add_column("condition", overflow="fold", min_width=24)
        tab.add_column("created at", overflow="fold", min_width=12)
        for head in ("waits", "timed out", "notifies", "heard by nobody"):
            tab.add_column(head, justify="right")
        for x in rows[: self.top]:
            tab.add_row(
                shorten(x.label),
                shorten(x.created_at or "?"),
                f"{x.cond_waits:,}",
                f"{x.cond_timeouts:,}",
                f"{x.notifies:,}",
                f"{x.unheard_notifies:,}",
            )
        c.print(tab)

    def _other(self, c: Console, r: Report) -> None:
        rows = [x for x in r.primitives if x.other_events]
        if not rows:
            return
        tab = Table(
            title="Other events per primitive (semaphores, events, barriers, ...)",
            box=box.SIMPLE_HEAD,
            title_justify="left",
        )
        tab.add_column("primitive", overflow="fold")
        tab.add_column("events")
        tab.add_column("waits p50/p95/p99/max", justify="right")
        tab.add_column("timeouts", justify="right")
        for x in rows[: self.top]:
            ev = ", ".join(f"{k} {v:,}" for k, v in x.other_events.items())
            tab.add_row(shorten(x.label), ev, _pct(x.other_wait), str(x.other_timeouts))
        c.print(tab)

    def _problems(self, c: Console, r: Report) -> None:
        if not r.problems:
            return
        c.print(Text(f"Skipped lines ({r.problem_count}):", style="yellow"))
        for p in r.problems[:20]:
            c.print(Text(f"  {p['path']}:{p['line']}: {p['reason']}"))
        if r.problem_count > 20:
            c.print(Text(f"  ... and {r.problem_count - 20} more"))


RENDERER = TextRenderer
