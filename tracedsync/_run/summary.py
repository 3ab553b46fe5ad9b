"""The end of a traced run (``tracedsync run``, ``pytest --tracedsync``): where the logs went, a
one-screen report, and which findings should fail the run.

The report is the analyze report (`analysis.report.build_report`) rendered by its text renderer
with a few rows per table, read back from the log directory, so it covers every process of the
run, not only this one.
"""

from __future__ import annotations

import glob
import os
import shlex
import time
from collections.abc import Iterable, Sequence
from typing import TextIO

from ..analysis.findings import Finding
from ..analysis.kinds import ALIASES, KINDS, canonical
from ..analysis.report import Report

BASE_DIR = "tracedsync-logs"
TOP_ROWS = 5

FINDING_KINDS = KINDS
"""The ``kind`` of every finding (docs/analysis.md, "Findings")."""
SEVERITIES = frozenset({"warning", "error"})
"""A name in a fail-on list that selects findings by severity rather than kind."""


def fresh_log_dir(base: str = BASE_DIR) -> str:
    """Create and return a new directory ``<base>/<YYYYmmdd-HHMMSS>[-n]``."""
    os.makedirs(base, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    n = 0
    while True:
        path = os.path.join(base, stamp if n == 0 else f"{stamp}-{n}")
        try:
            os.mkdir(path)
        except FileExistsError:
            n += 1
            continue
        return os.path.abspath(path)


def preload() -> None:
    """Import what the report needs now: at interpreter exit, importing ``concurrent.futures``
    (which analysis uses) fails ("can't register atexit after shutdown")."""
    from ..analysis import analyze, render_text, report  # noqa: F401


def _dirs(log_dirs: str | Sequence[str]) -> list[str]:
    return [log_dirs] if isinstance(log_dirs, str) else list(log_dirs)


def _shown(path: str) -> str:
    """``path`` as the user would type it from here: relative when it is below the current
    directory, else as it is (quoted for a shell when it needs it)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        rel = path
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        rel = path
    return shlex.quote(rel)


def load_report(log_dirs: str | Sequence[str], baseline: str | None = None) -> Report | None:
    """The analyze report of every log in ``log_dirs`` (a directory or several); None when
    there is nothing to read. ``baseline``: a file of findings to leave out (`ValueError`
    if it is not one)."""
    from ..analysis.analyze import NoInputError, analyze
    from ..analysis.findings import Options
    from ..analysis.report import build_report
    from ..analysis.suppress import read_baseline

    keys: frozenset[str] = frozenset()
    if baseline is not None:
        try:
            keys = read_baseline(baseline)
        except OSError as exc:
            raise ValueError(f"cannot read {baseline}: {exc.strerror}") from None

    dirs = [d for d in _dirs(log_dirs) if os.path.isdir(d)]
    if not dirs:
        return None
    try:
        agg = analyze(dirs, jobs=1)
    except (NoInputError, FileNotFoundError):
        return None
    return build_report(agg, Options(baseline=keys))


def render(
    report: Report | None,
    log_dirs: str | Sequence[str],
    out: TextIO,
    width: int | None = None,
    color: bool | None = None,
) -> None:
    """The one-screen report (the findings, the busiest locks and call sites), then where the
    logs are and how to see all of it. ``width`` and
    ``color`` default to what ``out`` is (a terminal or not). With several directories (the
    program moved its logs with ``configure(log_dir=...)``), the report covers them all and
    says so."""
    from ..analysis.render_text import TextRenderer

    dirs = _dirs(log_dirs)
    shown = [_shown(d) for d in dirs]
    where = " ".join(shown)
    if len(dirs) > 1:
        print(f"tracedsync: the program also logged to {' '.join(shown[1:])} (it configured "
              f"log_dir itself): every directory is read", file=out)
    if report is None or not report.totals.get("primitives"):
        written = [_shown(d) for d in dirs
                   if glob.glob(os.path.join(glob.escape(d), "tracedsync-*.jsonl"))]
        if not written:
            print(f"tracedsync: no traced primitive recorded anything: no log was written in "
                  f"{where} (were the primitives created before tracing began?)", file=out)
        else:
            print(f"tracedsync: the logs in {' '.join(written)} hold no traced primitive",
                  file=out)
        return
    TextRenderer(top=TOP_ROWS, width=width, color=color, brief=True).render(report, out)
    print(f"tracedsync: logs in {where}; full report: tracedsync analyze {where}", file=out)


def parse_kinds(text: str | Iterable[str]) -> frozenset[str]:
    """``"deadlock,order,rmw"`` -> the finding kinds (and severities) it names.

    Raises `ValueError` for a name that is neither a kind, an alias nor a severity.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out: set[str] = set()
    for raw in items:
        name = raw.strip()
        if not name:
            continue
        if name in ALIASES:
            out.add(canonical(name))
        elif name in FINDING_KINDS or name in SEVERITIES:
            out.add(name)
        else:
            known = ", ".join(sorted(FINDING_KINDS | set(ALIASES) | SEVERITIES))
            raise ValueError(f"unknown finding kind {name!r} (known: {known})")
    return frozenset(out)


def failing(report: Report | None, kinds: frozenset[str]) -> list[Finding]:
    """The findings, of warning or error severity, that ``kinds`` selects."""
    if report is None or not kinds:
        return []
    return [
        f
        for f in report.findings
        if f.severity in SEVERITIES and (f.kind in kinds or f.severity in kinds)
    ]
