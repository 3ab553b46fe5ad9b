"""``--format text``: tables for the terminal (rich), most important first: findings, then the
busiest primitives, call sites and creation sites, then the lines that had to be skipped."""

from __future__ import annotations

import os
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.measure import Measurement
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


NATURAL_WIDTH = 100_000
"""The width when writing to a file or a pipe without ``COLUMNS``: every table at its natural
width, nothing wrapped or cut."""


def env_columns(environ: dict[str, str] | None = None) -> int | None:
    """``COLUMNS`` from the environment, if it is a usable width."""
    value = (os.environ if environ is None else environ).get("COLUMNS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 20 else None


Column = tuple[str, dict[str, Any]]
"""A header and its `rich.table.Table.add_column` keywords; the keyword ``unit`` (not rich's)
names columns that are printed together when a table is split (``wait p50`` ... ``max``)."""


def print_table(
    c: Console, title: str, columns: list[Column], rows: list[list[Any]], keys: int = 1
) -> None:
    """Print a table that never loses a column. If it does not fit the console's width, the
    columns after the first ``keys`` (the row's identity) go into as many tables as needed,
    each repeating the identity columns, split between units of columns; the identity columns
    fold (wrap) only if they would take more than about half the width. (Rich itself would
    drop the columns that do not fit.)"""
    limits: dict[int, int] = {}

    def build(idx: list[int], heading: str) -> Table:
        # (at least as wide as its title, which would otherwise wrap over a narrow part)
        tab = Table(title=heading, box=box.SIMPLE_HEAD, title_justify="left",
                    min_width=min(len(heading), c.width) if heading else None)
        for i in idx:
            head, kw = columns[i]
            opts = {k: v for k, v in kw.items() if k != "unit"}
            if i in limits:
                opts["max_width"] = limits[i]
            tab.add_column(head, **opts)
        for row in rows:
            tab.add_row(*(row[i] for i in idx))
        return tab

    def natural(idx: list[int]) -> int:
        tab = build(idx, "")
        return Measurement.get(c, c.options.update(max_width=NATURAL_WIDTH), tab).maximum

    width = c.width
    everything = list(range(len(columns)))
    if natural(everything) <= width or len(columns) <= keys + 1:
        c.print(build(everything, title))
        return
    ident = list(range(keys))
    budget = width * 11 // 20
    if natural(ident) > budget:
        wants = {i: natural([i]) for i in ident}
        total = sum(wants.values())
        for i in ident:
            limits[i] = max(10, budget * wants[i] // total - 3)
    units: list[list[int]] = []
    for i in range(keys, len(columns)):
        unit = columns[i][1].get("unit")
        if units and unit is not None and columns[units[-1][-1]][1].get("unit") == unit:
            units[-1].append(i)
        else:
            units.append([i])
    # A unit too wide to share a part with the identity columns is split into its columns.
    units = [piece for unit in units for piece in (
        [[i] for i in unit] if len(unit) > 1 and natural(ident + unit) > width else [unit])]
    parts: list[list[int]] = []
    current: list[int] = []
    for unit in units:
        if current and natural([*ident, *current, *unit]) > width:
            parts.append(current)
            current = list(unit)
        else:
            current += unit
    parts.append(current)
    for n, part in enumerate(parts, 1):
        c.print(build(ident + part, f"{title}, part {n}/{len(parts)}"))


class TextRenderer:
    """Rich tables; ``top`` rows per table. ``width``: the width to fit; by default the
    terminal's when writing to one, else ``COLUMNS`` if set, else each table's natural width.
    A table wider than that is split by columns, never cut (`print_table`). ``brief``: the
    header, the findings, the locks and the call sites only (the end of ``tracedsync run``)."""

    def __init__(
        self, top: int = 15, width: int | None = None, color: bool | None = None,
        brief: bool = False, **_: Any
    ) -> None:
        self.top = top
        self.width = width
        self.color = color
        self.brief = brief

    def render(self, report: Report, out: TextIO) -> None:
        tty = out.isatty() if hasattr(out, "isatty") else False
        width = self.width
        if width is None and not tty:
            width = env_columns() or NATURAL_WIDTH
        console = Console(
            file=out,
            width=width,
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
        if self.brief:
            return
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
        if r.suppressed:
            c.print(Text(f"{len(r.suppressed)} finding(s) suppressed (ignore comments, "
                         "baseline): listed in the JSON report", style="dim"))
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
            what = shorten(f.message)
            if f.tests:
                more = f", +{len(f.tests) - 3}" if len(f.tests) > 3 else ""
                what += f"\ntests: {', '.join(f.tests[:3])}{more}"
            tab.add_row(
                Text(f.severity, style=_STYLE.get(f.severity, "")),
                f.kind,
                what,
                threads or "-",
            )
        c.print(tab)
        self._stacks(c, r)

    def _stacks(self, c: Console, r: Report) -> None:
        """The stacks of the findings that carry them (deadlocks, nested-monitor lockouts,
        locks held at exit), after the table, numbered as the table's rows."""
        for n, f in enumerate(r.findings, 1):
            stacks = stacks_of(f.details)
            if not stacks:
                continue
            c.print(Text(f"Finding {n} ({f.severity} {f.kind}), stacks:", style="bold"))
            for who, frames in stacks:
                c.print(Text(f"  {who}:"))
                shown = frames[-STACK_FRAMES:]
                if len(frames) > len(shown):
                    c.print(Text(f"    ... {len(frames) - len(shown)} outer frame(s)"))
                for frame in shown:
                    c.print(Text(f"    {shorten(frame)}"))

    def _rows(
        self, c: Console, title: str, rows: list[Row], first: str, created: bool = False
    ) -> None:
        if not rows:
            return
        shown = rows[: self.top]
        more = f", top {len(shown)} by wait time" if len(rows) > len(shown) else ""
        columns: list[Column] = [(first, {"overflow": "fold", "min_width": 16})]
        if created:
            columns.append(("created at", {"overflow": "fold", "min_width": 10}))
        columns += [("acq", {"justify": "right", "unit": "acq"}),
                    ("cont.", {"justify": "right", "unit": "acq"})]
        for unit in ("wait", "hold"):
            for head in (f"{unit} p50", "p95", "p99", "max"):
                columns.append((head, {"justify": "right", "no_wrap": True, "unit": unit}))
        columns += [("depth", {"justify": "right", "unit": "who"}),
                    ("thr/proc", {"justify": "right", "unit": "who"})]
        cells: list[list[Any]] = []
        for r in shown:
            row = [shorten(r.label)]
            if created:
                row.append(shorten(r.created_at or "?"))
            row += [
                f"{r.acquisitions:,}" + (f" ({r.failed} failed)" if r.failed else ""),
                _share(r),
                *_cols(r.wait),
                *_cols(r.hold),
                str(r.max_depth or "-"),
                f"{r.thread_count}/{len(r.processes)}",
            ]
            cells.append(row)
        print_table(c, f"{title} ({len(rows)}{more})", columns, cells, keys=2 if created else 1)

    def _conditions(self, c: Console, r: Report) -> None:
        rows = [x for x in r.primitives if x.cond_waits or x.notifies]
        if not rows:
            return
        columns: list[Column] = [
            ("condition", {"overflow": "fold", "min_width": 16}),
            ("created at", {"overflow": "fold", "min_width": 10}),
            *((head, {"justify": "right"}) for head in (
                "waits", "timed out", "notifies", "heard by nobody")),
        ]
        cells = [
            [
                shorten(x.label),
                shorten(x.created_at or "?"),
                f"{x.cond_waits:,}",
                f"{x.cond_timeouts:,}",
                f"{x.notifies:,}",
                f"{x.unheard_notifies:,}",
            ]
            for x in rows[: self.top]
        ]
        print_table(c, f"Conditions ({len(rows)})", columns, cells, keys=2)

    def _other(self, c: Console, r: Report) -> None:
        rows = [x for x in r.primitives if x.other_events]
        if not rows:
            return
        columns: list[Column] = [
            ("primitive", {"overflow": "fold"}),
            ("events", {}),
            ("waits p50/p95/p99/max", {"justify": "right"}),
            ("timeouts", {"justify": "right"}),
        ]
        cells = [
            [
                shorten(x.label),
                ", ".join(f"{k} {v:,}" for k, v in x.other_events.items()),
                _pct(x.other_wait),
                str(x.other_timeouts),
            ]
            for x in rows[: self.top]
        ]
        print_table(c, "Other events per primitive (semaphores, events, barriers, ...)", columns,
                    cells)

    def _problems(self, c: Console, r: Report) -> None:
        if not r.problems:
            return
        c.print(Text(f"Skipped lines ({r.problem_count}):", style="yellow"))
        for p in r.problems[:20]:
            c.print(Text(f"  {p['path']}:{p['line']}: {p['reason']}"))
        if r.problem_count > 20:
            c.print(Text(f"  ... and {r.problem_count - 20} more"))


STACK_FRAMES = 12
"""Innermost frames shown per stack in the text report (the JSON has them all)."""


def stacks_of(details: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """``(whose, frames)`` of every stack a finding's details hold: a deadlock's cycle entries,
    or ``stacks`` (nested-monitor lockouts, locks held at exit)."""
    out: list[tuple[str, list[str]]] = []
    for entry in details.get("cycle") or []:
        if isinstance(entry, dict) and entry.get("stack"):
            who = entry.get("thread") or f"{entry.get('pid')}/{entry.get('tid')}"
            what = f"{who} ({entry.get('pid')}/{entry.get('tid')}), waiting at {entry.get('site')}"
            out.append((what, list(entry["stack"])))
    for entry in details.get("stacks") or []:
        if isinstance(entry, dict) and entry.get("stack"):
            out.append((str(entry.get("thread")), list(entry["stack"])))
    return out


RENDERER = TextRenderer
