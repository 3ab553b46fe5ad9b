"""Renderers: text, JSON (against its documented schema), Perfetto, self-contained HTML."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from test_analyze_util import Log

from tracedsync.analysis.renderers import NAMES, get_renderer
from tracedsync.analysis.report import Report, build_report
from tracedsync.analysis.report_schema import REPORT_SCHEMA

DOCS = Path(__file__).resolve().parent.parent / "docs" / "analysis.md"


def _report(tmp_path: Path) -> Report:
    log = Log()
    log.thread(7, "producer")
    log.thread(8, "consumer")
    lock = log.created(1, "RLock", name="queue-lock", site="q.py:1")
    cond = log.created(2, "Condition", name="items", site="q.py:2", lock=lock)
    log.acquire(7, lock, "q.py:10")
    log.release(7, lock, hold=2000)
    log.acquire(8, lock, "q.py:20", wait=1500, blocked_by=7, dt=100)
    log.ev("cond_wait", 8, prim=cond, lock=lock, saved_depth=1, timeout=None, site="q.py:21")
    log.release(8, lock, saved_depth=1, hold=500, site="q.py:21")
    log.acquire(7, lock, "q.py:10")
    log.ev("notify", 7, prim=cond, n=1, waiters=1, woken=[8], site="q.py:11")
    log.release(7, lock, hold=800)
    log.acquire(8, lock, "q.py:21", restored=True)
    log.ev("cond_wake", 8, prim=cond, waited_ns=4000, notified=True, reacquire_ns=100,
           site="q.py:21")
    log.release(8, lock, hold=300)
    log.ev("misuse", 8, prim=lock, what="release_unowned", error="<bad>", site="q.py:30")
    log.end()
    log.write(tmp_path)
    from tracedsync.analysis.analyze import analyze

    return build_report(analyze([str(tmp_path)]))


def _render(report: Report, fmt: str) -> str:
    buf = io.StringIO()
    get_renderer(fmt).render(report, buf)
    return buf.getvalue()


def _validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """A small JSON Schema checker: the keywords REPORT_SCHEMA uses."""
    if "$ref" in schema:
        schema = REPORT_SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], where
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        py = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
              "boolean": bool, "null": type(None)}
        assert any(isinstance(value, py[n]) for n in names), (where, value, names)
    if isinstance(value, dict):
        for k in schema.get("required", []):
            assert k in value, f"{where}.{k} missing"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                _validate(v, props[k], f"{where}.{k}")
            elif isinstance(extra, dict):
                _validate(v, extra, f"{where}.{k}")
            else:
                assert extra is not False, f"{where}.{k} not in the schema"
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            _validate(v, schema["items"], f"{where}[{i}]")


def test_renderers_are_chosen_by_name() -> None:
    """The four names resolve; an unknown one is a KeyError."""
    assert NAMES == ("text", "json", "perfetto", "html")
    with pytest.raises(KeyError):
        get_renderer("pdf")


def test_json_matches_the_documented_schema(tmp_path: Path) -> None:
    """The JSON output validates against REPORT_SCHEMA, which docs/analysis.md shows."""
    data = json.loads(_render(_report(tmp_path), "json"))
    _validate(data, REPORT_SCHEMA)
    assert data["version"] == 1
    docs = DOCS.read_text(encoding="utf-8")
    block = re.search(r"<!-- schema -->\n```json\n(.*?)```", docs, re.S)
    assert block is not None, "docs/analysis.md lost its schema block"
    assert json.loads(block.group(1)) == REPORT_SCHEMA


def test_text_shows_findings_and_tables(tmp_path: Path) -> None:
    """The terminal output names the finding, the primitives and the call sites."""
    out = _render(_report(tmp_path), "text")
    assert "misuse" in out and "queue-lock (RLock 100.1)" in out
    assert "Call sites" in out and "q.py:20" in out and "Creation sites" in out


def test_perfetto_slices_flows_counters_and_names(tmp_path: Path) -> None:
    """Holds, waits and condition waits as slices, hand-off and notify flows, waiter counters,
    thread names; slices of one thread nest properly."""
    trace = json.loads(_render(_report(tmp_path), "perfetto"))["traceEvents"]
    by = {ph: [e for e in trace if e["ph"] == ph] for ph in "XsfCM"}
    cats = {e["cat"] for e in by["X"]}
    assert cats == {"hold", "wait", "cond"}
    assert {(e["name"], e["ph"]) for e in by["s"] + by["f"]} == {
        ("handoff", "s"), ("handoff", "f"), ("notify", "s"), ("notify", "f")}
    handoff = {e["ph"]: e for e in by["s"] + by["f"] if e["name"] == "handoff"}
    assert (handoff["s"]["tid"], handoff["f"]["tid"]) == (7, 8)
    assert {e["args"]["name"] for e in by["M"]} >= {"producer", "consumer"}
    assert max(e["args"]["threads"] for e in by["C"]) == 1
    for tid in (7, 8):
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in by["X"] if e["tid"] == tid)
        for (_, e1), (s2, e2) in itertools.pairwise(spans):
            assert s2 >= e1 - 1e-6 or e2 <= e1 + 1e-6, (tid, spans)


def test_html_is_self_contained(tmp_path: Path) -> None:
    """One file: inline SVG plots, no script, no external resource, text escaped."""
    page = _render(_report(tmp_path), "html")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<svg") == 3
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "&lt;bad&gt;" not in page or "<bad>" not in page
    assert "queue-lock" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to render the HTML report")
def test_html_opens_in_a_real_browser(tmp_path: Path) -> None:
    """Headless Chromium renders the report to a non-empty screenshot."""
    page = tmp_path / "report.html"
    page.write_text(_render(_report(tmp_path), "html"), encoding="utf-8")
    shot = tmp_path / "out.png"
    profile = tempfile.mkdtemp(dir=tmp_path)
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", f"--screenshot={shot}",
         "--window-size=1200,1600", page.as_uri()],
        check=True, timeout=120, capture_output=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(shot) > 10_000  # a blank page compresses to far less


def test_perfetto_reorders_a_release_written_after_the_acquire_it_enabled(
    tmp_path: Path,
) -> None:
    """The releaser may append its record after the waiter's acquire: the trace still draws
    the hand-off from that release (events are put back in ts order)."""
    log = Log()
    lock = log.created(1)
    log.acquire(7, lock, "a.py:1")
    rel = log.ev("release", 7, prim=lock, depth=0, hold_ns=500)
    log.acquire(8, lock, "a.py:2", wait=1500, blocked_by=7)  # waited across the release
    log.lines[-1], log.lines[-2] = log.lines[-2], log.lines[-1]  # acquire written first
    assert log.lines[-1] is rel
    log.write(tmp_path)
    from tracedsync.analysis.analyze import analyze

    trace = json.loads(_render(build_report(analyze([str(tmp_path)])), "perfetto"))
    flows = [e for e in trace["traceEvents"] if e.get("name") == "handoff"]
    assert sorted((e["ph"], e["tid"]) for e in flows) == [("f", 8), ("s", 7)]
