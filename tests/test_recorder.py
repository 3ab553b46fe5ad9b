"""The recorder: files per process, flushing, levels, fork, failing sinks, overflow."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
from helpers import prim_of, read_jsonl

import tracedsync
from tracedsync._core import runtime as rt
from tracedsync._core.native import NATIVE
from tracedsync.testing import capture


def _run(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run ``code`` in a fresh interpreter; return the completed process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_log_file_per_process_with_session_header(tmp_path: Any) -> None:
    """A process writes tracedsync-<pid>.jsonl whose first line is the session header."""
    proc = _run("""
        import os, tracedsync
        lock = tracedsync.Lock(name="x")
        with lock:
            pass
        print(os.getpid())
    """, env={"TRACEDSYNC_LOG_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout)
    events = read_jsonl(tmp_path / f"tracedsync-{pid}.jsonl")
    assert events[0]["event"] == "session" and events[0]["schema"] == tracedsync.SCHEMA_VERSION
    assert events[0]["pid"] == pid and events[0]["ppid"] == os.getpid()
    names = [e["event"] for e in events]
    assert names[-1] == "session_end"
    assert {"thread", "created", "acquire", "release", "stats"} <= set(names)
    assert all(e["pid"] == pid for e in events)


def test_env_level_contention_writes_only_contention_and_counters(tmp_path: Any) -> None:
    """At `contention`, uncontended acquires are not written, counters are (stats at exit)."""
    proc = _run("""
        import tracedsync
        lock = tracedsync.RLock(name="quiet")
        for _ in range(100):
            with lock:
                pass
        assert lock.acquire(False)
        lock.release()
    """, env={"TRACEDSYNC_LOG_DIR": str(tmp_path), "TRACEDSYNC_LEVEL": "contention"})
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.iterdir()
    events = read_jsonl(path)
    assert not [e for e in events if e["event"] in ("acquire", "release")]
    (stats,) = [e for e in events if e["event"] == "stats"]
    assert stats["acquisitions"] == 101 and stats["name"] == "quiet"


def test_level_off_records_nothing(level: None) -> None:
    """At `off` the proxies pass straight through and nothing is recorded."""
    lock = tracedsync.RLock()
    tracedsync.configure(level="off")
    with capture() as events, lock:
        assert lock.acquire(False)
        lock.release()
    tracedsync.configure(level="full")
    assert events == []
    assert lock.statistics().acquisitions == 0


def test_periodic_flush_without_explicit_flush(tmp_path: Any) -> None:
    """The flusher writes within the flush interval while the program keeps running."""
    proc = _run("""
        import os, sys, time, tracedsync
        lock = tracedsync.Lock()
        with lock:
            pass
        path = tracedsync.log_path()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if os.path.exists(path) and b'"acquire"' in open(path, "rb").read():
                os._exit(0)      # no atexit flush: only the flusher can have written it
            time.sleep(0.01)
        os._exit(3)
    """, env={"TRACEDSYNC_LOG_DIR": str(tmp_path), "TRACEDSYNC_FLUSH_INTERVAL": "0.05"})
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_writes_own_file_without_parents_buffer(tmp_path: Any) -> None:
    """After fork the child logs to its own file, without the parent's unflushed events."""
    proc = _run("""
        import os, tracedsync
        tracedsync.configure(flush_interval=60)   # nothing flushed behind our back
        lock = tracedsync.RLock(name="shared")
        with lock:
            pass                                    # buffered in the parent, not yet written
        lock.acquire()                              # held across the fork by this thread
        pid = os.fork()
        if pid == 0:
            lock.release()                          # the forking thread still owns it
            with lock:
                pass
            tracedsync.flush()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        lock.release()
        print(pid, os.getpid(), status)
    """, env={"TRACEDSYNC_LOG_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    child, parent, status = map(int, proc.stdout.split())
    assert status == 0
    child_events = read_jsonl(tmp_path / f"tracedsync-{child}.jsonl")
    parent_events = read_jsonl(tmp_path / f"tracedsync-{parent}.jsonl")
    assert child_events[0]["event"] == "session" and child_events[0]["ppid"] == parent
    assert all(e["pid"] == child for e in child_events)
    assert not [e for e in child_events if e["event"] == "misuse"]
    child_locks = [(e["event"], e["depth"]) for e in child_events
                   if e["event"] in ("acquire", "release")]
    assert child_locks == [("release", 0), ("acquire", 1), ("release", 0)]
    # The child re-registers its thread with its own native id.
    assert [e["tid"] for e in child_events if e["event"] == "thread"] == [child]
    parent_locks = [(e["event"], e["depth"]) for e in parent_events
                    if e["event"] in ("acquire", "release")]
    assert parent_locks == [("acquire", 1), ("release", 0), ("acquire", 1), ("release", 0)]


def test_raising_processor_is_detached_and_program_unharmed(tmp_path: Any) -> None:
    """A user processor that raises is detached; the program runs on and events still land."""
    proc = _run("""
        import tracedsync
        def bad(logger, method, event_dict):
            raise RuntimeError("sink exploded")
        tracedsync.configure(processors=[bad])
        lock = tracedsync.Lock()
        for _ in range(3):
            with lock:
                pass
        tracedsync.flush()
        with lock:
            pass
        print("program finished")
    """, env={"TRACEDSYNC_LOG_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "program finished" in proc.stdout
    assert "sink exploded" in proc.stderr and "detached" in proc.stderr
    (path,) = tmp_path.iterdir()
    assert sum(1 for e in read_jsonl(path) if e["event"] == "acquire") == 4


def test_raising_logger_falls_back_to_file(tmp_path: Any) -> None:
    """A user logger that raises is detached and the events go to the file instead."""
    proc = _run("""
        import tracedsync
        class Bad:
            def info(self, *a, **k):
                raise OSError("logger down")
            warning = error = info
        tracedsync.configure(logger=Bad())
        lock = tracedsync.Lock()
        with lock:
            pass
    """, env={"TRACEDSYNC_LOG_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "logger down" in proc.stderr
    (path,) = tmp_path.iterdir()
    assert any(e["event"] == "acquire" for e in read_jsonl(path))


def test_user_structlog_processors_and_logger(tmp_path: Any) -> None:
    """User processors run on each event; a user structlog logger receives the events."""
    proc = _run("""
        import structlog, tracedsync
        seen = []
        def tag(logger, method, ev):
            ev["service"] = "billing"
            return ev
        tracedsync.configure(processors=[tag])
        with tracedsync.Lock():
            pass
        tracedsync.flush()
        class Collect:
            def msg(self, message):
                seen.append(message)
            info = warning = error = msg
        logger = structlog.wrap_logger(Collect(), processors=[structlog.processors.JSONRenderer()])
        tracedsync.configure(logger=logger)
        with tracedsync.Lock():
            pass
        tracedsync.flush()
        print(sum('"acquire"' in s for s in seen))
    """, env={"TRACEDSYNC_LOG_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == 1
    (path,) = tmp_path.iterdir()
    tagged = [e for e in read_jsonl(path) if e["event"] == "acquire"]
    assert tagged and all(e["service"] == "billing" for e in tagged)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_never_breaks_the_program(tmp_path: Any) -> None:
    """Writes into a full device fail; the program finishes and the loss is reported."""
    proc = _run("""
        import os, tracedsync
        from tracedsync._record.recorder import RECORDER
        from tracedsync._record.sink import Sink
        lock = tracedsync.Lock()
        with lock:
            pass
        RECORDER._sink = Sink("/dev/full")
        for _ in range(10):
            with lock:
                pass
        tracedsync.flush()
        print(RECORDER._sink.dropped_total)
    """, env={"TRACEDSYNC_LOG_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[0]) >= 20
    assert "cannot write /dev/full" in proc.stderr


@pytest.mark.skipif(NATIVE is not None, reason="locks record natively: see the budget test")
def test_overflow_drop_counts_exactly(level: None) -> None:
    """With overflow='drop', every event past the limit is dropped and counted."""
    from tracedsync._record.recorder import RECORDER

    lock = tracedsync.Lock()
    tracedsync.flush()
    tracedsync.configure(buffer_limit=10, overflow="drop")
    before = RECORDER._dropped
    with capture() as events:
        RECORDER._write_lock.acquire()  # hold the flusher off so the buffer fills
        try:
            for _ in range(50):
                with lock:
                    pass
        finally:
            RECORDER._write_lock.release()
    tracedsync.configure(buffer_limit=100_000, overflow="flush")
    dropped = RECORDER._dropped - before
    kept = [e for e in events if e["event"] in ("acquire", "release")]
    noted = sum(e["count"] for e in events if e["event"] == "dropped")
    assert dropped == noted > 0
    assert len(kept) + dropped == 100


def test_guard_makes_factories_return_raw_primitives() -> None:
    """Inside tracedsync's own machinery, the factories hand out untraced primitives."""
    rt.guard.on = True
    try:
        assert type(tracedsync.Lock()) is type(threading.Lock())
        assert type(tracedsync.RLock()) is type(threading.RLock())
        assert type(tracedsync.Condition()) is threading.Condition
    finally:
        rt.guard.on = False
    assert isinstance(tracedsync.Lock(), tracedsync.TracedLock)


def test_flusher_is_invisible_to_threading() -> None:
    """The flusher is a raw thread: threading.enumerate() shows only the program's threads."""
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if "tracedsync" in n.lower()]


def test_configure_rejects_bad_settings() -> None:
    """Bad settings raise ConfigError/TypeError with the valid choices."""
    with pytest.raises(tracedsync.ConfigError, match="level must be one of"):
        tracedsync.configure(level="loud")
    with pytest.raises(TypeError, match="unknown tracedsync setting"):
        tracedsync.configure(colour="red")


def test_bad_environment_is_reported_not_fatal(tmp_path: Any) -> None:
    """A bad TRACEDSYNC_ variable is reported on stderr, named, and ignored; the good ones are
    kept (the log directory here)."""
    proc = _run("""
        import tracedsync
        print(tracedsync.settings().level, tracedsync.settings().log_dir)
    """, env={"TRACEDSYNC_LEVEL": "verbose", "TRACEDSYNC_LOG_DIR": str(tmp_path)})
    assert proc.returncode == 0
    assert proc.stdout.split() == ["full", str(tmp_path)]
    assert "TRACEDSYNC_LEVEL='verbose' (environment variable): level must be one of" in (
        proc.stderr)


def test_logger_taking_traced_locks_does_not_feed_back(tmp_path: Any) -> None:
    """A user logger whose handler takes a traced lock: the flusher's own events are dropped,
    so the log does not grow by itself (structlog and logging take locks too)."""
    proc = _run("""
        import json, os, threading, time, tracedsync
        written = []
        handler_lock = tracedsync.RLock(name="handler")
        class Logger:
            def info(self, event, **kw):
                with handler_lock:          # like logging.Handler.acquire()
                    written.append(event)
            warning = error = info
        tracedsync.configure(logger=Logger(), flush_interval=0.02)
        lock = tracedsync.Lock(name="app")
        for _ in range(10):
            with lock:
                pass
        # Let the background flusher (not this thread) write a few times.
        done = threading.Event()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and written.count("release") < 10:
            done.wait(0.02)
        first = len(written)
        for _ in range(10):
            done.wait(0.02)          # ten more flush intervals with nothing new recorded
        print(first, len(written), written.count("acquire"))
    """, env={"TRACEDSYNC_LOG_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    first, later, acquires = map(int, proc.stdout.split())
    assert later == first, "the log kept growing with the flusher's own events"
    assert acquires == 10


def _with_blocks_within(lock: Any, blocks: int, budget: int) -> list[dict[str, Any]]:
    """``blocks`` `with lock:` blocks with a records budget of ``budget`` bytes and the flusher
    held off (the budget is all there is), captured."""
    from tracedsync._record.recorder import RECORDER

    tracedsync.flush()
    tracedsync.configure(buffer_bytes=budget)
    try:
        with capture() as events:
            RECORDER._write_lock.acquire()
            try:
                for _ in range(blocks):
                    with lock:
                        pass
            finally:
                RECORDER._write_lock.release()
    finally:
        tracedsync.configure(buffer_bytes=64 * 1024 * 1024)
    return events


@pytest.mark.skipif(NATIVE is None, reason="the native recorder's budget")
def test_budget_drops_and_counts_exactly_per_thread(level: None) -> None:
    """Past the records' memory budget, records are dropped, never waited for, and counted
    exactly: one `dropped` event per thread, and every event is either kept or counted."""
    assert NATIVE is not None
    lock = tracedsync.Lock()
    per_chunk = (NATIVE.CHUNK_BYTES - 16) // NATIVE.RECORD_BYTES
    n = 3 * per_chunk
    events = _with_blocks_within(lock, n, NATIVE.CHUNK_BYTES)
    kept = [e for e in events if e["event"] in ("acquire", "release")
            and e["prim"] == prim_of(lock)]
    dropped = [e for e in events if e["event"] == "dropped"]
    assert [e["reason"] for e in dropped] == ["buffer_full"]
    assert dropped[0]["tid"] == threading.get_native_id()
    assert len(kept) + dropped[0]["count"] == 2 * n
    assert len(kept) < 2 * n


@pytest.mark.skipif(NATIVE is None, reason="the native recorder's budget")
def test_a_with_block_takes_one_record_of_the_budget(level: None) -> None:
    """A release right after its acquire turns the acquire's record into a pair: a chunk's
    worth of `with lock:` blocks (two chunks of events) fits in a budget of two chunks, whatever
    the current chunk already held, and nothing is dropped."""
    assert NATIVE is not None
    lock = tracedsync.Lock()
    per_chunk = (NATIVE.CHUNK_BYTES - 16) // NATIVE.RECORD_BYTES
    events = _with_blocks_within(lock, per_chunk, 2 * NATIVE.CHUNK_BYTES)
    assert not [e for e in events if e["event"] == "dropped"]
    kept = [e["event"] for e in events if e.get("prim") == prim_of(lock)]
    assert kept == ["acquire", "release"] * per_chunk
