"""Bad input never gets a traceback: fuzzed logs through `summary` and `analyze`.

Hypothesis builds log directories from a known-good log plus random damage (random bytes,
truncated lines, wrong types, huge values, mixed schema versions). Whatever the damage, the
command exits 0, 1 or 2 without an exception, says what was wrong with a file:line, and the good
events are still counted.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tracedsync import SCHEMA_VERSION  # noqa: E402
from tracedsync.cli import main  # noqa: E402

GOOD_ACQUIRES = 5
_HEADER = {"event": "session", "ts": 1, "pid": 7, "tid": 7, "schema": SCHEMA_VERSION,
           "version": "0", "ppid": 1, "argv": [], "python": "3", "wall_ns": 0, "mono_ns": 1}


def _good_lines() -> list[bytes]:
    evs: list[dict[str, Any]] = [
        _HEADER,
        {"event": "thread", "ts": 2, "pid": 7, "tid": 7, "ident": 70, "name": "main",
         "daemon": False},
        {"event": "created", "ts": 3, "pid": 7, "tid": 7, "prim": "7.1", "kind": "Lock",
         "name": "good", "site": "app.py:1", "func": "f"},
    ]
    ts = 10
    for _ in range(GOOD_ACQUIRES):
        evs.append({"event": "acquire", "ts": ts, "pid": 7, "tid": 7, "prim": "7.1", "depth": 1,
                    "ok": True, "contended": False, "wait_ns": 0, "blocked_by": None,
                    "blocking": True, "timeout": None, "site": "app.py:2", "func": "f"})
        evs.append({"event": "release", "ts": ts + 5, "pid": 7, "tid": 7, "prim": "7.1",
                    "depth": 0, "hold_ns": 5})
        ts += 10
    return [json.dumps(e).encode() + b"\n" for e in evs]


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)
_field_names = st.sampled_from([
    "event", "ts", "pid", "tid", "prim", "depth", "ok", "contended", "wait_ns", "blocked_by",
    "hold_ns", "site", "kind", "name", "schema", "woken", "waiters", "notified", "cycle",
    "saved_depth", "restored", "lock", "n", "count",
])
_event_names = st.sampled_from([
    "acquire", "release", "created", "thread", "cond_wait", "cond_wake", "notify", "notify_all",
    "misuse", "stats", "dropped", "session_end", "deadlock", "sem_acquire", "sem_release",
    "event_set", "event_wait", "barrier_wait", "barrier_broken", "rmw", "value_get",
    "value_set", "long_wait", "order_violation", "lock_order", "nested_monitor",
    "deadlock_end", "test", "no_such_event",
])


@st.composite
def _damaged_object(draw: Any) -> bytes:
    ev = dict(json.loads(draw(st.sampled_from(_good_lines()[2:]))))
    ev["event"] = draw(_event_names)
    for _ in range(draw(st.integers(0, 4))):
        ev[draw(_field_names)] = draw(_values)
    try:
        return json.dumps(ev, allow_nan=True).encode() + b"\n"
    except (ValueError, TypeError):
        return b"{}\n"


_damage = st.one_of(
    st.binary(max_size=200),                                  # random bytes (newlines too)
    _damaged_object(),                                        # right shape, wrong values
    st.sampled_from(_good_lines()).map(lambda b: b[: len(b) // 2] + b"\n"),  # truncated
    st.just(b"[1, 2, 3]\n"), st.just(b"\"just a string\"\n"), st.just(b"\n\n"),
    st.just(b'{"event": "acquire"}\n'),                       # missing fields
)


def _run(args: list[str], capsys: Any) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(damage=st.lists(st.tuples(st.integers(0, 40), _damage), max_size=6),
       torn_tail=st.binary(max_size=30))
def test_damaged_logs_never_traceback_and_keep_good_events(
    damage: list[tuple[int, bytes]], torn_tail: bytes, capsys: Any
) -> None:
    """Damage anywhere in a log: exit 0/1/2, no exception, good acquires still counted."""
    lines = _good_lines()
    for pos, junk in damage:
        # Each piece of damage is whole lines (damage without a newline would corrupt the
        # good line after it, which is then rightly skipped; the torn tail covers that case).
        lines.insert(min(pos, len(lines)), junk if junk.endswith(b"\n") else junk + b"\n")
    data = b"".join(lines) + torn_tail.replace(b"\n", b"")
    with tempfile.TemporaryDirectory() as d:
        Path(d, "tracedsync-7.jsonl").write_bytes(data)
        out_path = os.path.join(d, "report.json")
        code, _, err = _run(["analyze", d, "-f", "json", "-o", out_path], capsys)
        assert code in (0, 1, 2)
        if code == 2:
            assert err.strip(), "exit 2 must say why"
            return
        report = json.loads(Path(out_path).read_text())
        good = [p for p in report["primitives"] if p["key"] == "7.1"]
        assert good, "the valid part of the log was not analysed"
        assert good[0]["acquisitions"] >= GOOD_ACQUIRES
        code, _, err = _run(["summary", d], capsys)
        assert code in (0, 2)


def test_newer_schema_is_a_clear_error(tmp_path: Path, capsys: Any) -> None:
    """A log from a newer schema: exit 2 and a message naming the file and line."""
    header = dict(_HEADER, schema=SCHEMA_VERSION + 1)
    (tmp_path / "tracedsync-7.jsonl").write_bytes(
        json.dumps(header).encode() + b"\n" + b"".join(_good_lines()[1:]))
    for cmd in (["analyze", str(tmp_path)], ["summary", str(tmp_path)]):
        code, _, err = _run(cmd, capsys)
        assert code == 2
        assert "tracedsync-7.jsonl:1" in err and "schema" in err


def test_corrupt_line_reported_with_file_and_line(tmp_path: Path, capsys: Any) -> None:
    """A corrupt line is reported as file:line; the rest is analysed."""
    lines = _good_lines()
    lines.insert(4, b"{not json\n")
    (tmp_path / "tracedsync-7.jsonl").write_bytes(b"".join(lines))
    code, out, err = _run(["summary", str(tmp_path)], capsys)
    assert code == 0
    assert "tracedsync-7.jsonl:5" in err
    assert "good" in out and f" {GOOD_ACQUIRES} " in out
