"""The short summary printed by `make demo` and `tracedsync summary`."""

from __future__ import annotations

from tracedsync.analysis.summary import render_text, summarise


def _ev(event: str, **fields: object) -> dict[str, object]:
    return {"event": event, "ts": 1, "pid": 5, "tid": 5, **fields}


def test_counts_acquisitions_waits_and_holds() -> None:
    """Acquisitions, contention, wait and hold totals and max depth come from the events."""
    events = [
        _ev("created", prim="5.1", kind="RLock", name="acc"),
        _ev("acquire", prim="5.1", ok=True, depth=1, contended=True, wait_ns=2_000_000),
        _ev("acquire", prim="5.1", ok=True, depth=2, contended=False, wait_ns=0),
        _ev("release", prim="5.1", depth=1),
        _ev("release", prim="5.1", depth=0, hold_ns=3_000_000),
        _ev("acquire", prim="5.1", ok=False, depth=0, contended=True, wait_ns=1_000_000),
    ]
    (s,) = summarise(events).values()
    assert (s.acquisitions, s.contended, s.failed, s.max_depth) == (2, 2, 1, 2)
    assert (s.wait_ns, s.hold_ns) == (3_000_000, 3_000_000)
    text = render_text(summarise(events))
    assert "acc" in text and "3.000" in text


def test_rmw_and_value_traffic_are_called_out() -> None:
    """An rmw event becomes a line naming the site; value gets and sets are counted."""
    events = [
        _ev("created", prim="5.2", kind="Value", name="counter"),
        _ev("value_get", prim="5.2", locked=False),
        _ev("value_set", prim="5.2", locked=False),
        _ev("rmw", prim="5.2", site="app.py:9", read_site="app.py:9"),
        {**_ev("rmw", prim="5.2", site="app.py:9"), "pid": 6},
    ]
    text = render_text(summarise(events))
    assert "counter: 1 reads and 1 writes of its value" in text
    assert "UNSYNCHRONISED read-modify-write at app.py:9 (in 2 processes)" in text


def test_wrong_types_do_not_break_the_table() -> None:
    """A name or kind of the wrong type is shown as unknown instead of crashing."""
    events = [_ev("created", prim="5.3", kind=["x"], name=True)]
    assert "5.3" in render_text(summarise(events))


# -- the command: exit status like analyze ------------------------------------------------------
def _summary(capsys: object, *paths: str) -> tuple[int, str, str]:
    import pytest

    from tracedsync.cli import main

    assert isinstance(capsys, pytest.CaptureFixture)
    status = main(["summary", *paths])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_summary_of_an_empty_directory_exits_2(tmp_path: object, capsys: object) -> None:
    status, out, err = _summary(capsys, str(tmp_path))
    assert status == 2 and out == ""
    assert "no tracedsync logs found" in err


def test_summary_of_a_binary_file_exits_2_with_few_lines(tmp_path: object, capsys: object) -> None:
    """A file that is not a log: exit 2, twenty problem lines, then how many more (it printed
    hundreds of 'skipped' lines and exited 0)."""
    import os
    import random

    path = os.path.join(str(tmp_path), "tracedsync-1.jsonl")
    rng = random.Random(7)
    with open(path, "wb") as fh:
        fh.write(bytes(rng.randrange(256) for _ in range(100_000)))
    status, out, err = _summary(capsys, path)
    assert status == 2 and out == ""
    lines = err.splitlines()
    assert sum(line.startswith("tracedsync: skipped ") for line in lines) == 20
    assert any(line.startswith("tracedsync: ... ") and "more unusable line(s)" in line
               for line in lines)
    assert lines[-1].startswith("tracedsync: no events could be read")
    assert len(lines) == 22


def test_summary_of_good_logs_exits_0(tmp_path: object, capsys: object) -> None:
    import json
    import os

    path = os.path.join(str(tmp_path), "tracedsync-5.jsonl")
    with open(path, "w") as fh:
        for ev in (_ev("session", schema=1), _ev("created", prim="5.1", kind="Lock", name="L"),
                   _ev("acquire", prim="5.1", ok=True, depth=1)):
            fh.write(json.dumps(ev) + "\n")
        fh.write('{"torn": ')
    status, out, err = _summary(capsys, str(tmp_path))
    assert status == 0 and "L" in out
    assert "truncated last line" in err
    os.remove(path)
    with open(path, "w") as fh:
        fh.write(json.dumps(_ev("session", schema=1)) + "\n")
    assert _summary(capsys, str(tmp_path))[:2] == (0, "no traced primitives in these logs\n")


def test_a_read_modify_write_nobody_overlapped_claims_no_loss() -> None:
    """The twin: with ``racing`` (analyze's rule) not naming the site, the line says what it
    was, without claiming lost updates."""
    events = [
        _ev("created", prim="5.2", kind="Value", name="counter"),
        _ev("rmw", prim="5.2", site="app.py:9", read_site="app.py:9"),
    ]
    text = render_text(summarise(events), racing=set())
    assert "UNSYNCHRONISED" not in text
    assert "counter: read-modify-write without the lock at app.py:9" in text
    assert "no update was lost" in text
    racing = render_text(summarise(events), racing={("5.2", "app.py:9")})
    assert "UNSYNCHRONISED read-modify-write at app.py:9" in racing
