"""Reading logs for analyze: chunked parsing, corrupt and torn lines, newer schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_analyze_util import Log

from tracedsync.analysis import reader
from tracedsync.analysis.reader import Problem, SchemaError, read_chunks
from tracedsync.analysis.scan import scan_file


def _lines(path: Path, chunk: int) -> tuple[list[int], list[object], list[Problem]]:
    problems: list[Problem] = []
    nums: list[int] = []
    vals: list[object] = []
    for ln, vs in read_chunks(str(path), problems, chunk):
        nums.extend(ln)
        vals.extend(vs)
    return nums, vals, problems


def test_chunks_give_every_line_with_its_number(tmp_path: Path) -> None:
    """Small chunks split lines anywhere; every value keeps its own line number."""
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"".join(b'{"event":"x","ts":%d,"pid":1}\n' % i for i in range(50)))
    for chunk in (7, 64, 1 << 20):
        nums, vals, problems = _lines(p, chunk)
        assert nums == list(range(1, 51))
        assert [v["ts"] for v in vals] == list(range(50))  # type: ignore[index]
        assert problems == []


def test_bad_and_blank_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    """A chunk with a bad line falls back to line by line: the bad line is a problem, blank
    lines are skipped, the good ones keep their numbers."""
    p = tmp_path / "b.jsonl"
    p.write_bytes(b'{"a":1}\n\nnot json\n{"a":2}\n{"a":\n')
    nums, vals, problems = _lines(p, 1 << 20)
    assert nums == [1, 4]
    assert vals == [{"a": 1}, {"a": 2}]
    assert [(x.line, x.reason.split(" (")[0]) for x in problems] == [
        (3, "not valid JSON"),
        (5, "not valid JSON"),
    ]
    assert str(problems[0]).startswith(f"{p}:3: ")


def test_torn_last_line_is_reported(tmp_path: Path) -> None:
    """A last line without its newline (a process killed mid-write) is a problem."""
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'{"a":1}\n{"a":2')
    _, vals, problems = _lines(p, 1 << 20)
    assert vals == [{"a": 1}]
    assert [(x.line, x.reason) for x in problems] == [(2, "truncated last line (no newline)")]


def test_scanner_skips_corrupt_events_and_analyses_the_rest(tmp_path: Path) -> None:
    """Corrupt, torn and malformed lines are problems with file:line; the rest is counted."""
    log = Log()
    prim = log.created(1)
    log.acquire(7, prim, "app.py:10")
    log.release(7, prim)
    path = log.write(tmp_path)
    with open(path, "ab") as fh:
        fh.write(b"garbage\n")
        fh.write(b'[1, 2]\n')
        fh.write(b'{"event":"acquire","ts":5,"pid":100,"tid":7}\n')  # no prim
        fh.write(b'{"event":"acquire","ts":6,"pid":100,"tid":7,"prim":"100.1","depth":1,'
                 b'"ok":true,"contended":false,"wait_ns":0,"site":"app.py:11"}\n')
        fh.write(b'{"event":"release","ts":7')
    agg = scan_file(path)
    lines = {(p[1], p[2].split(" (")[0]) for p in agg.problems}
    assert lines == {
        (5, "not valid JSON"),
        (6, "not a JSON object"),
        (7, "missing field 'prim'"),
        (9, "truncated last line"),
    }
    assert all(p[0] == path for p in agg.problems)
    assert agg.problem_count == 4
    assert sum(s.acquisitions for s in agg.sites[prim].values()) == 2


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A session header with a newer schema raises SchemaError naming file and line."""
    p = tmp_path / "tracedsync-1.jsonl"
    p.write_bytes(b'{"event":"session","ts":1,"pid":1,"tid":1,"schema":99}\n')
    with pytest.raises(SchemaError, match=r"tracedsync-1\.jsonl:1: .*schema 99"):
        scan_file(str(p))


def test_read_file_api_still_works(tmp_path: Path) -> None:
    """The one-event-at-a-time reader keeps its API and checks."""
    log = Log()
    log.created(1)
    path = log.write(tmp_path)
    problems: list[Problem] = []
    events = list(reader.read_all([str(tmp_path)], problems))
    assert [e["event"] for e in events] == ["session", "created"]
    assert reader.log_files([str(tmp_path)]) == [path]
    assert problems == []
