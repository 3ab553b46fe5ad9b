"""Outputs that fit where they are read: text tables never lose a column (split by columns to
fit a width; their natural width when written to a file or a pipe, or ``COLUMNS``)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from test_analyze_util import Log

from tracedsync.analysis.analyze import analyze
from tracedsync.analysis.render_text import TextRenderer, env_columns
from tracedsync.analysis.report import Report, build_report

LONG_SITE = "a_rather_long_package_name/with_a_module_whose_name_is_long_too.py"
HEADERS = ("acq", "cont.", "wait p50", "hold p50", "depth", "thr/proc")


def _report(tmp_path: Path) -> Report:
    log = Log()
    log.thread(7, "worker")
    log.thread(8, "other")
    lock = log.created(1, "RLock", name="the-lock-with-a-long-name", site=f"{LONG_SITE}:1234")
    for _ in range(3):
        log.acquire(7, lock, f"{LONG_SITE}:1240")
        log.acquire(8, lock, f"{LONG_SITE}:1250", wait=123_456, blocked_by=7, dt=100)
        log.release(7, lock, hold=2000)
        log.release(8, lock, hold=3000)
    log.end()
    log.write(tmp_path)
    return build_report(analyze([str(tmp_path)]))


def _text(report: Report, width: int | None = None) -> str:
    out = io.StringIO()
    TextRenderer(width=width).render(report, out)
    return out.getvalue()


def _locks_parts(text: str) -> str:
    """The text of the Locks table(s), up to the next table."""
    start = text.index("Locks (")
    end = text.index("Call sites", start)
    return text[start:end]


def test_piped_tables_keep_their_natural_width(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a terminal, no COLUMNS: one Locks table with every column, sites unbroken (it was
    cut at 160 columns, and the last column lost)."""
    monkeypatch.delenv("COLUMNS", raising=False)
    text = _text(_report(tmp_path))
    locks = _locks_parts(text)
    assert "part 1/" not in locks
    header = next(line for line in locks.splitlines() if "primitive" in line)
    for head in HEADERS:
        assert head in header
    assert f"{LONG_SITE}:1234" in locks  # the creation site, on one line
    assert f"{LONG_SITE}:1250" in text


@pytest.mark.parametrize("how", ["COLUMNS", "width"])
def test_a_narrow_width_splits_tables_without_losing_a_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """80 columns (from COLUMNS, or a terminal's width): every line fits, and every header of
    the Locks table is in one of its parts, each part repeating the row's identity."""
    report = _report(tmp_path)
    if how == "COLUMNS":
        monkeypatch.setenv("COLUMNS", "80")
        text = _text(report)
    else:
        monkeypatch.delenv("COLUMNS", raising=False)
        text = _text(report, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    locks = _locks_parts(text)
    parts = re.findall(r"Locks \(1\), part (\d)/(\d)", locks)
    assert parts and parts[-1][0] == parts[-1][1]
    headers = " ".join(line for line in locks.splitlines() if "primitive" in line)
    for head in HEADERS:
        assert head in headers, head
    assert locks.count("primitive") == len(parts)
    # The waits' and holds' percentiles stay together: p50 to max in one part.
    for unit in ("wait", "hold"):
        line = next(x for x in locks.splitlines() if f"{unit} p50" in x)
        assert line.split(f"{unit} p50")[1].split()[:3] == ["p95", "p99", "max"]


def test_columns_from_the_environment() -> None:
    assert env_columns({"COLUMNS": "132"}) == 132
    assert env_columns({"COLUMNS": "x"}) is None
    assert env_columns({"COLUMNS": "5"}) is None
    assert env_columns({}) is None
