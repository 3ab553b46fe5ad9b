"""The Perfetto trace drawn in the same pass as the statistics: once, by either kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_analyze_kernels import workload
from test_analyze_util import Log

from tracedsync.analysis import render_perfetto
from tracedsync.analysis.native import kernel_class
from tracedsync.analysis.scan import scan_file
from tracedsync.analysis.trace import TraceSpec
from tracedsync.cli import main


def _lines(path: Path) -> list[bytes]:
    return sorted(path.read_bytes().split(b",\n"))


@pytest.mark.skipif(kernel_class() is None, reason="native scanner not built")
def test_native_and_python_draw_the_same_trace(tmp_path: Path) -> None:
    """The same events, byte for byte (the order of parts of a file may differ)."""
    path = workload(4, events=800).write(tmp_path)
    for native in (True, False):
        scan_file(path, native=native, trace=TraceSpec(str(tmp_path / f"{native}.part"), 1 << 40))
    assert _lines(tmp_path / "True.part") == _lines(tmp_path / "False.part")


def test_the_cli_reads_each_log_once_and_draws_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-f perfetto: the trace comes from the scan itself (drawing it again would read the logs
    a second time); holds released out of order are async slices, others nest."""

    def no_second_read(*_: object) -> None:
        raise AssertionError("the logs were read again")

    monkeypatch.setattr(render_perfetto, "draw", no_second_read)
    log = Log()
    a, b = log.created(1, name="a"), log.created(2, name="b")
    log.thread(7, "t")
    log.acquire(7, a, "x.py:1")
    log.acquire(7, b, "x.py:2")
    log.release(7, a, hold=2000)  # a before b: not last-in-first-out
    log.release(7, b, hold=1500)
    log.end()
    log.write(tmp_path)
    out = tmp_path / "trace.json"
    assert main(["analyze", str(tmp_path), "-f", "perfetto", "-o", str(out)]) == 0
    events = json.loads(out.read_text())["traceEvents"]
    holds = [e for e in events if e.get("cat") == "hold"]
    assert sorted((e["ph"], e["name"]) for e in holds) == [
        ("X", "b (Lock 100.2)"), ("b", "a (Lock 100.1)"), ("e", "a (Lock 100.1)")]
    assert {e["args"]["name"] for e in events if e["ph"] == "M"} >= {"t"}


def test_a_barrier_wait_ended_by_its_break_is_drawn(tmp_path: Path) -> None:
    """A barrier broken by a timeout: the thread whose wait timed out and the one its break
    woke each get a wait slice (``barrier_broken``, with why); the aborting thread, which did
    not wait, gets none."""
    log = Log()
    bar = log.created(1, "Barrier", name="gate")
    for tid, name in ((7, "late"), (8, "waiter"), (9, "aborter")):
        log.thread(tid, name)
    log.ev("barrier_broken", 8, prim=bar, broken_by=7, why="timeout", waited_ns=4000,
           timeout=None, n_waiting=0, site="x.py:3")
    log.ev("barrier_broken", 7, prim=bar, broken_by=7, why="timeout", waited_ns=5000,
           timeout=0.005, n_waiting=1, site="x.py:4")
    log.ev("barrier_broken", 9, prim=bar, broken_by=9, why="abort", n_waiting=0)
    log.end()
    log.write(tmp_path)
    out = tmp_path / "trace.json"
    assert main(["analyze", str(tmp_path), "-f", "perfetto", "-o", str(out),
                 "--fail-on", "never"]) == 0
    events = json.loads(out.read_text())["traceEvents"]
    waits = sorted((e["tid"], e["dur"], e["args"]["why"]) for e in events
                   if e.get("name", "").startswith("barrier_broken"))
    assert waits == [(7, 5.0, "timeout"), (8, 4.0, "timeout")]


def _two_processes(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir()
    text = workload(5, events=400).text()  # process 100, and the same as process 200
    (logs / "tracedsync-100.jsonl").write_bytes(text)
    (logs / "tracedsync-200.jsonl").write_bytes(
        text.replace(b'"pid":100', b'"pid":200').replace(b'"100.', b'"200.'))
    return logs


def test_drawn_into_the_output_or_copied_from_parts_the_bytes_are_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A serial scan draws straight into the output file (no part, no copy); workers draw
    parts, copied in; to stdout, parts too: the same bytes, valid JSON with the names after
    the events, and no file left beside the output."""
    logs = _two_processes(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    streamed, parts = out / "a.json", out / "b.json"
    assert main(["analyze", str(logs), "-f", "perfetto", "-j1", "-o", str(streamed),
                 "--fail-on", "never"]) == 0
    assert main(["analyze", str(logs), "-f", "perfetto", "-j2", "-o", str(parts),
                 "--fail-on", "never"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(logs), "-f", "perfetto", "-j1", "--fail-on", "never"]) == 0
    printed = capsys.readouterr().out.encode()
    assert streamed.read_bytes() == parts.read_bytes() == printed
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]
    assert printed.startswith(render_perfetto.HEADER + b" \n{")
    events = json.loads(printed)["traceEvents"]
    names = [i for i, e in enumerate(events) if e["ph"] == "M"]
    assert names and names == list(range(len(events) - len(names), len(events)))
    assert {e["pid"] for e in events} == {100, 200}
    assert any(e.get("cat") == "cond" for e in events)  # condition waits drawn, parsed in C


def test_a_trace_without_events_and_a_failed_analysis(tmp_path: Path) -> None:
    """No event drawn: still valid JSON, written the same way streamed or not. A failed
    analysis leaves the output as it was and nothing beside it; the output file is made
    with the permissions an ordinary open would give it."""
    import os

    log = Log()
    log.created(1, name="idle")
    log.end()
    log.write(tmp_path)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["analyze", str(tmp_path), "-f", "perfetto", "-j1", "-o", str(a)]) == 0
    assert main(["analyze", str(tmp_path), "-f", "perfetto", "-j2", "-o", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text())["traceEvents"][0]["ph"] == "M"
    mask = os.umask(0)
    os.umask(mask)
    assert a.stat().st_mode & 0o777 == 0o666 & ~mask
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["analyze", str(empty), "-f", "perfetto", "-j1", "-o", str(a)]) == 2
    assert a.read_bytes() == b.read_bytes()  # untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
