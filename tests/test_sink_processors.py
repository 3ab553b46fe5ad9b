"""User processors in the flusher: structlog's ``DropEvent`` means what it means in structlog, and
a primitive that dies inside a processor keeps its counters (issue 13, item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from helpers import clean_env, read_jsonl


def _run(code: str, log_dir: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(TRACEDSYNC_LOG_DIR=str(log_dir))
    if "TRACEDSYNC_PURE_PYTHON" in os.environ:  # the suite's mode, in the child too
        env["TRACEDSYNC_PURE_PYTHON"] = os.environ["TRACEDSYNC_PURE_PYTHON"]
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=60)


def _events(log_dir: Path) -> list[dict[str, Any]]:
    (path,) = log_dir.iterdir()
    return read_jsonl(path)


def test_drop_event_drops_that_event_and_writes_the_others(tmp_path: Path) -> None:
    """A processor raising structlog.DropEvent for releases: no release is written, every acquire
    is, nothing is reported, and the processor stays attached for the next batches."""
    proc = _run("""
        import structlog, tracedsync
        seen = []
        def no_releases(logger, method, ev):
            seen.append(ev["event"])
            if ev["event"] == "release":
                raise structlog.DropEvent
            ev["checked"] = True
            return ev
        tracedsync.configure(processors=[no_releases])
        lock = tracedsync.Lock(name="x")
        for _ in range(3):
            with lock:
                pass
        tracedsync.flush()
        for _ in range(2):
            with lock:
                pass
        tracedsync.flush()
        print(seen.count("release"))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # not "a configured processor raised", not "the flusher caught"
    assert int(proc.stdout) == 5  # every release reached the processor, batch after batch
    events = _events(tmp_path)
    assert not [e for e in events if e["event"] == "release"]
    acquires = [e for e in events if e["event"] == "acquire"]
    assert len(acquires) == 5 and all(e["checked"] for e in acquires)
    assert events[0]["event"] == "session" and events[-1]["event"] == "session_end"


def test_a_primitive_collected_in_the_flusher_keeps_its_stats(tmp_path: Path) -> None:
    """At level contention a lock's counters are only in its `stats` event. A user processor,
    running in the flusher thread, drops the lock's last reference: the stats event it records
    there (as the flusher) is written all the same."""
    proc = _run("""
        import _thread, threading, tracedsync
        from tracedsync._record.recorder import RECORDER
        box = []
        dropped = _thread.allocate_lock()
        dropped.acquire()
        def drop_in_flusher(logger, method, ev):
            if box and threading.get_ident() == RECORDER.flusher_ident:
                box.clear()  # the lock's last reference: it is collected here, in the flusher
                dropped.release()
            return ev
        tracedsync.configure(level="contention", processors=[drop_in_flusher])
        lock = tracedsync.Lock(name="victim")
        for _ in range(3):
            with lock:
                pass
        print(lock.statistics().prim)
        box.append(lock)
        del lock
        tracedsync.Lock(name="trigger")  # its `created` event wakes the flusher, which writes it
        assert dropped.acquire(timeout=30), "the flusher never ran the processor"
        assert not box
        tracedsync.flush()
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    prim = proc.stdout.strip()
    stats = [e for e in _events(tmp_path) if e["event"] == "stats" and e["prim"] == prim]
    assert len(stats) == 1, "the stats event of a lock collected in the flusher was dropped"
    assert stats[0]["acquisitions"] == 3 and stats[0]["name"] == "victim"
