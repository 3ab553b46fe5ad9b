"""A plain Lock used as a signal is not a deadlock: not reported by its check, never raised."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import tracedsync
from tracedsync.testing import capture


@pytest.fixture
def raising() -> Iterator[None]:
    before = tracedsync.settings().on_deadlock
    tracedsync.configure(on_deadlock="raise")
    yield
    tracedsync.configure(on_deadlock=before)


def test_lock_as_signal_is_neither_reported_nor_raised(raising: None) -> None:
    """A thread re-acquires a Lock it holds, to be released by a helper thread: legal. With
    on_deadlock="raise" the program still works, and the wait's own check reports nothing (the
    watchdog would, had it lasted a second: tests/test_detect_tries.py)."""
    from tracedsync._core.waits import current

    done = tracedsync.Lock(name="done")
    done.acquire()
    main = threading.get_ident()

    def helper() -> None:
        # Release only once the main thread is registered as blocked (the check has run).
        for _ in range(30_000):
            if current().get(main) is not None:
                break
            threading.Event().wait(0.001)
        done.release()  # a plain Lock may be released by any thread

    t = threading.Thread(target=helper)
    with capture() as events:
        t.start()
        assert done.acquire(timeout=30) is True
        done.release()
        t.join(30)
    assert not events.where(event="deadlock")


def test_likely_deadlock_is_a_warning_in_analyze(tmp_path: object) -> None:
    """analyze reports a runtime deadlock with certain=false as a warning, not an error."""
    import json
    import os

    from tracedsync.cli import main

    d = os.fspath(tmp_path)  # type: ignore[call-overload]
    lines = [
        {"event": "session", "ts": 1, "pid": 9, "tid": 9, "schema": 1},
        {"event": "deadlock", "ts": 2, "pid": 9, "tid": 9, "certain": False, "action": "report",
         "cycle": [{"pid": 9, "tid": 9, "prim": "9.1", "site": "app.py:3"}]},
    ]
    with open(os.path.join(d, "tracedsync-9.jsonl"), "w") as fh:
        fh.writelines(json.dumps(x) + "\n" for x in lines)
    out = os.path.join(d, "r.json")
    assert main(["analyze", d, "-f", "json", "-o", out]) == 0  # warnings do not fail by default
    with open(out) as fh:
        (finding,) = [f for f in json.load(fh)["findings"] if f["kind"] == "deadlock"]
    assert finding["severity"] == "warning"
