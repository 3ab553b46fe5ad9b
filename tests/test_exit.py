"""What a user keeps and loses when a process ends abruptly (README, "Limits"): a worker killed
(SIGKILL keeps what was flushed; SIGTERM, which ``Pool.terminate()`` sends, keeps everything
recorded but writes no ``stats``/``session_end``), and a daemon thread still recording at exit
(everything up to the exit's flush). Each scenario runs in a child interpreter; the periodic
flush is an hour unless the scenario needs it, so what is on disk was written by the path
under test."""

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

from tracedsync.cli import main as cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")
TIMEOUT = 120


def _program(tmp_path: Path, code: str) -> Path:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    return script


def _logs(log_dir: Path) -> dict[int, list[dict[str, Any]]]:
    """Every log in ``log_dir`` by pid; every line must be whole JSON."""
    out = {}
    for path in sorted(log_dir.glob("tracedsync-*.jsonl")):
        lines = path.read_bytes().splitlines()
        out[int(path.stem.split("-")[1])] = [json.loads(line) for line in lines]
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
def test_pool_terminate_keeps_what_the_workers_recorded(tmp_path: Path, method: str) -> None:
    """``Pool.terminate()`` (SIGTERM to each worker still running): every task's acquire and
    release is on disk, though the periodic flush never ran; a worker ended by the signal
    writes no session_end (one that had already left on the pool's sentinel does)."""
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, str(_program(tmp_path, POOL_PROGRAM)), method], cwd=tmp_path,
        capture_output=True, text=True, timeout=TIMEOUT,
        env=clean_env(TRACEDSYNC_LOG_DIR=str(logs), TRACEDSYNC_FLUSH_INTERVAL="3600"),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["20"]
    workers = [evs for evs in _logs(logs).values() if "acquire" in _names(evs)]
    assert sum(_names(evs).count("acquire") for evs in workers) == 20
    assert sum(_names(evs).count("release") for evs in workers) == 20


SIGTERM_DURING_FLUSH = """
import os, sys, tracedsync

class Logger:
    # A user's structlog-style logger that is slow on its first event: the parent sends
    # SIGTERM while this process writes its log.
    def __init__(self):
        self.first = True
        self.out = open(sys.argv[1], "a")
    def info(self, event, **fields):
        if self.first:
            self.first = False
            print("in flush", flush=True)
            os.read(0, 1)  # blocked here when SIGTERM arrives
        self.out.write(event + "\\n")
        self.out.flush()
    warning = error = info

tracedsync.configure(logger=Logger(), flush_interval=3600)
lock = tracedsync.Lock(name="L")
for _ in range(100):
    with lock:
        pass
tracedsync.flush()
print("not reached", flush=True)
"""


def test_sigterm_during_a_flush_lets_it_finish_then_dies(tmp_path: Path) -> None:
    """SIGTERM while the main thread writes the log: the write finishes, with every event, and
    then the process dies of SIGTERM (it died at once, losing the batch being written)."""
    written = tmp_path / "written.txt"
    proc = subprocess.Popen(
        [sys.executable, str(_program(tmp_path, SIGTERM_DURING_FLUSH)), str(written)],
        cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=clean_env(TRACEDSYNC_LOG_DIR=str(tmp_path / "logs")),
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == b"in flush\n"
        proc.send_signal(signal.SIGTERM)
        proc.stdin.write(b"x")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
    assert proc.returncode == -signal.SIGTERM, err
    assert b"not reached" not in out
    names = written.read_text().split()
    assert names.count("acquire") == 100 and names.count("release") == 100


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
