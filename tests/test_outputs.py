"""Outputs that fit where they are read: text tables never lose a column (split by columns to
fit a width; their natural width when written to a file or a pipe, or ``COLUMNS``)."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess
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


# -- the HTML report's contention timeline -------------------------------------------------------
SECOND = 1_000_000_000
WIDE_LABEL = "lock {} WWWWWWWWWWWWWWWWWWWWWWWWWWWWWW MMMMMMMM, a long and wide name"


def _timeline_report(tmp_path: Path, series: int = 9) -> Report:
    """One wait of 1 s on the first lock, then a 1 ms wait on each of the others, 100 ms
    apart: about 2 s of run."""
    log = Log()
    log.thread(7, "holder")
    log.thread(8, "waiter")
    prims = [log.created(i + 1, "Lock", name=WIDE_LABEL.format(i), site=f"app.py:{i + 1}")
             for i in range(series)]
    log.acquire(7, prims[0], "app.py:50")
    log.release(7, prims[0], hold=SECOND - 1000, dt=SECOND - 1000)
    log.acquire(8, prims[0], "app.py:51", wait=SECOND, blocked_by=7, dt=1000)
    log.release(8, prims[0])
    for p in prims[1:]:
        log.acquire(7, p, "app.py:60", dt=SECOND // 10)
        log.release(7, p, hold=1_000_000, dt=1_000_000)
        log.acquire(8, p, "app.py:61", wait=1_000_000, blocked_by=7, dt=10)
        log.release(8, p)
    log.end()
    log.write(tmp_path)
    return build_report(analyze([str(tmp_path)]))


def test_the_timeline_spreads_a_wait_over_the_slices_it_covers(tmp_path: Path) -> None:
    """The 1 s wait is drawn over the half of the run it lasted, at most one slice's worth in
    any slice (it was all in the slice where it ended), and counted once, where it ended."""
    tl = _timeline_report(tmp_path).timeline
    (first,) = [s for s in tl.series if s.label.startswith("lock 0 ")]
    assert sum(first.wait_ns) == SECOND
    assert sum(first.waits) == 1
    assert max(first.wait_ns) <= tl.column_ns
    covered = sum(1 for v in first.wait_ns if v)
    assert abs(covered - SECOND / tl.column_ns) <= 2
    # The short waits each stay within a slice or two.
    for s in tl.series:
        if s is not first and s.prim != "other":
            assert sum(s.wait_ns) == 1_000_000 and sum(1 for v in s.wait_ns if v) <= 2


def test_a_wait_longer_than_the_timeline_keeps_coarsens_it(tmp_path: Path) -> None:
    """A wait of an hour spreads over a coarser timeline, not a bucket per millisecond."""
    from tracedsync.analysis.aggregate import TIMELINE_MAX_BUCKETS

    log = Log()
    lock = log.created(1)
    log.acquire(8, lock, "app.py:2", wait=3600 * SECOND, blocked_by=7, dt=3600 * SECOND)
    log.end()
    agg = log.scan(tmp_path)
    (buckets,) = agg.timeline.values()
    assert 100 < len(buckets) <= TIMELINE_MAX_BUCKETS
    assert sum(w for _, w in buckets.values()) == 3600 * SECOND
    assert sum(n for n, _ in buckets.values()) == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OVERLAP_PROBE = """
<pre id=probe></pre>
<script>
function box(e) { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }
function overlaps(elements) {
  const b = elements.map(box), found = [];
  for (let i = 0; i < b.length; i++)
    for (let j = i + 1; j < b.length; j++)
      if (b[i][0] < b[j][2] - 0.5 && b[j][0] < b[i][2] - 0.5 &&
          b[i][1] < b[j][3] - 0.5 && b[j][1] < b[i][3] - 0.5)
        found.push(elements[i].textContent + " / " + elements[j].textContent);
  return found;
}
const groups = [...document.querySelectorAll("svg")].map(s => [...s.querySelectorAll("text")]);
groups.push([...document.querySelectorAll(".legend li")]);
document.getElementById("probe").textContent = JSON.stringify({
  measured: groups.map(g => g.length), overlaps: groups.flatMap(overlaps)});
</script>
"""


def _chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1200,1600", *args, page.as_uri()],
        check=True, timeout=120, capture_output=True, text=True,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to render the HTML report")
def test_timeline_labels_do_not_overlap_in_a_browser(tmp_path: Path) -> None:
    """Rendered by headless Chromium (a screenshot, then the laid-out page): no two labels of
    a plot, axis ticks and legend entries alike, overlap, with nine series of long, wide
    labels (the legend's estimate of text widths made them overlap)."""
    from tracedsync.analysis.render_html import HtmlRenderer

    logs = tmp_path / "logs"
    logs.mkdir()
    out = io.StringIO()
    HtmlRenderer().render(_timeline_report(logs), out)
    page = tmp_path / "report.html"
    page.write_text(out.getvalue().replace("</body>", OVERLAP_PROBE + "</body>"),
                    encoding="utf-8")
    shot = tmp_path / "report.png"
    _chromium(page, tmp_path / "profile1", f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1200  # the IHDR's width
    dom = _chromium(page, tmp_path / "profile2", "--dump-dom").stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found is not None, dom[-2000:]
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["overlaps"] == []
    assert probe["measured"][0] >= 6  # the timeline's axis labels
    assert probe["measured"][-1] == 9  # the legend: 8 series and "1 other primitives"
