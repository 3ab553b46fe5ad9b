"""What a user keeps and loses when a process ends abruptly (README, "Limits"): a worker killed
(SIGKILL or SIGTERM, which ``Pool.terminate()`` sends, end it as they would without tracing:
what the flusher had written stays, no ``stats``, no ``session_end``), and a daemon thread
still recording at exit (everything up to the exit's flush). Each scenario runs in a child
interpreter."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env

from tracedsync.analysis.inputs import process_sets
from tracedsync.cli import main as cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")
TIMEOUT = 30


def _program(tmp_path: Path, code: str) -> Path:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    return script


def _logs(log_dir: Path) -> dict[int, list[dict[str, Any]]]:
    """Every log in ``log_dir`` by pid (a rotated set read as one stream, oldest first: a
    daemon spinning at exit can fill a file's share of the cap); every line must be whole
    JSON."""
    out = {}
    for group in process_sets(str(p) for p in sorted(log_dir.glob("tracedsync-*.jsonl"))):
        pid = int(Path(group[-1]).stem.split("-")[1])
        out[pid] = [json.loads(line) for path in group
                    for line in Path(path).read_bytes().splitlines()]
    return out


def _names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


POOL_PROGRAM = """
import multiprocessing, os, sys, threading
import tracedsync

tracedsync.patch()
lock = None

def init():
    global lock
    lock = threading.Lock()

def task(i):
    with lock:
        pass
    return os.getpid()

if __name__ == "__main__":
    pool = multiprocessing.get_context(sys.argv[1]).Pool(2, initializer=init)
    print(len(pool.map(task, range(20), chunksize=1)), flush=True)
    pool.terminate()
    pool.join()
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_terminate_ends_the_workers_and_keeps_whole_logs(
    tmp_path: Path, method: str
) -> None:
    """``Pool.terminate()`` ends every worker, as without tracing (a worker could stay blocked
    for ever behind tracedsync's SIGTERM handler, and the run hang); every log line is whole,
    and no task is recorded twice."""
    logs = tmp_path / "logs"
    for _ in range(5):  # the hang was a race: a few rounds
        proc = subprocess.run(
            [sys.executable, str(_program(tmp_path, POOL_PROGRAM)), method], cwd=tmp_path,
            capture_output=True, text=True, timeout=TIMEOUT,
            env=clean_env(TRACEDSYNC_LOG_DIR=str(logs)),
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["20"]
    recorded = sum(_names(evs).count("acquire") for evs in _logs(logs).values())
    assert recorded <= 5 * 20


SIGTERM_TO_ANOTHER_THREAD = """
import os, signal, threading, multiprocessing
import tracedsync

with tracedsync.Lock():
    pass
held = multiprocessing.Lock()
held.acquire()  # never released: the acquire below blocks for ever
started = threading.Event()

def other():
    started.set()
    threading.Event().wait(60)

threading.Thread(target=other, daemon=True).start()
assert started.wait(30)
# SIGTERM blocked in the main thread: the kernel hands it to another thread, as it may at any
# time in a program with threads (a Python handler would only be run by the main thread).
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
os.kill(os.getpid(), signal.SIGTERM)
held.acquire()
print("survived", flush=True)
"""


def test_sigterm_to_another_thread_ends_a_blocked_process(tmp_path: Path) -> None:
    """SIGTERM received by a thread other than the main one while the main thread then blocks
    for ever: the process dies of it at once, as without tracing. (With tracedsync's SIGTERM
    handler, which only the main thread runs, it blocked for ever on 3.10 to 3.12.)"""
    proc = subprocess.run(
        [sys.executable, str(_program(tmp_path, SIGTERM_TO_ANOTHER_THREAD))], cwd=tmp_path,
        capture_output=True, text=True, timeout=TIMEOUT,
        env=clean_env(TRACEDSYNC_LOG_DIR=str(tmp_path / "logs")),
    )
    assert proc.returncode == -signal.SIGTERM, proc.stdout + proc.stderr
    assert "survived" not in proc.stdout


KILLED_WORKER = """
import multiprocessing, os, sys, threading, time
import tracedsync

def on_disk(text):
    path = tracedsync.log_path()
    return os.path.exists(path) and text in open(path).read()

def work(conn):
    lock = threading.Lock()
    for _ in range(10):
        with lock:
            pass
    deadline = time.monotonic() + 30
    while not (on_disk('"release"') and time.monotonic() < deadline):
        time.sleep(0.01)
    conn.send(os.getpid())
    threading.Event().wait(60)  # killed here

if __name__ == "__main__":
    tracedsync.patch(flush_interval=0.05)
    parent, child = multiprocessing.Pipe(duplex=False)
    p = multiprocessing.get_context("fork").Process(target=work, args=(child,))
    p.start()
    assert parent.poll(60)
    print(parent.recv(), flush=True)
    p.kill()
    p.join(60)
    print(p.exitcode, flush=True)
"""


def test_a_killed_worker_keeps_what_was_flushed(tmp_path: Path, capsys: Any) -> None:
    """SIGKILL: what the worker's flusher had written stays, whole; no stats, no session_end;
    analyze reads the run."""
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, str(_program(tmp_path, KILLED_WORKER))], cwd=tmp_path,
        capture_output=True, text=True, timeout=TIMEOUT,
        env=clean_env(TRACEDSYNC_LOG_DIR=str(logs)),
    )
    assert proc.returncode == 0, proc.stderr
    pid, status = map(int, proc.stdout.split())
    assert status == -signal.SIGKILL
    names = _names(_logs(logs)[pid])
    assert names.count("acquire") == 10 and names.count("release") == 10
    assert "session_end" not in names and "stats" not in names
    assert cli(["analyze", str(logs), "-f", "json", "-o", str(tmp_path / "r.json")]) in (0, 1)


DAEMON_AT_EXIT = """
import sys, threading
from multiprocessing.sharedctypes import RawValue
import tracedsync

count = RawValue("q", 0)  # untraced: how many acquires the daemon made, read by the parent
lock = tracedsync.Lock(name="spun")
many = threading.Event()

def spin():
    while True:
        with lock:
            count.value += 1
        if count.value == 1000:
            many.set()

threading.Thread(target=spin, daemon=True).start()
assert many.wait(60)
"""


def test_a_daemon_thread_recording_at_exit(tmp_path: Path) -> None:
    """A daemon thread still taking a traced lock at exit: the log is whole and ends the
    session; everything the thread recorded up to the exit's flush is in it (at least the
    1000 acquires made before the main thread left), what it did after is not."""
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, str(_program(tmp_path, DAEMON_AT_EXIT))], cwd=tmp_path,
        capture_output=True, text=True, timeout=TIMEOUT,
        env=clean_env(TRACEDSYNC_LOG_DIR=str(logs), TRACEDSYNC_FLUSH_INTERVAL="3600"),
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    (events,) = _logs(logs).values()
    names = _names(events)
    end = names.index("session_end")
    assert names[:end].count("acquire") >= 1000
    (stats,) = [e for e in events if e["event"] == "stats"]
    assert stats["acquisitions"] >= names[:end].count("acquire")
