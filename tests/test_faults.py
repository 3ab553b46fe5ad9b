"""Faults: SIGKILL, SIGTERM, Ctrl-C, fork under held locks, KeyboardInterrupt while blocked.

Each scenario runs in a child interpreter; the parent checks the child's exit and its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")


def _default_sigint() -> None:
    # A job started in the background by a shell without job control (`make test &` in a
    # script, some CI runners) ignores SIGINT, and so would the child: Python then installs no
    # KeyboardInterrupt handler. The child gets the default disposition, as in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(code: str, log_dir: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "TRACEDSYNC_LOG_DIR": str(log_dir), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint if os.name == "posix" else None,
    )


def _events(log_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(log_dir.glob("tracedsync-*.jsonl")):
        for line in path.read_bytes().splitlines():
            out.append(json.loads(line))
    return out


_WAIT_FOR_OWN_LOG = """
    import os, time, tracedsync
    def on_disk(text):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            p = tracedsync.log_path()
            if os.path.exists(p) and text.encode() in open(p, "rb").read():
                return True
            time.sleep(0.01)
        return False
"""


def test_sigkill_keeps_what_the_flusher_wrote(tmp_path: Path) -> None:
    """After SIGKILL, every event the periodic flusher had written is on disk, intact."""
    proc = _start(_WAIT_FOR_OWN_LOG + """
    lock = tracedsync.Lock(name="before-kill")
    for _ in range(50):
        with lock:
            pass
    ok = on_disk('"before-kill"') and on_disk('"release"')
    print("flushed" if ok else "not flushed", flush=True)
    while True:
        with lock:
            pass
    """, tmp_path, TRACEDSYNC_FLUSH_INTERVAL="0.05")
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert line == "flushed", proc.stderr.read() if proc.stderr else ""
    lines = next(tmp_path.glob("tracedsync-*.jsonl")).read_bytes().splitlines(keepends=True)
    complete = [json.loads(x) for x in lines if x.endswith(b"\n")]
    assert complete[0]["event"] == "session"
    assert sum(1 for e in complete if e["event"] == "acquire") >= 50
    assert len([x for x in lines if not x.endswith(b"\n")]) <= 1  # at most one torn line


def test_sigterm_ends_the_process_as_without_tracing(tmp_path: Path) -> None:
    """SIGTERM with no handler of the program's: the default action, at once (tracedsync
    installs no SIGTERM handler); what the periodic flusher wrote is on disk, whole."""
    proc = _start(_WAIT_FOR_OWN_LOG + """
    import signal, threading
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    lock = tracedsync.Lock(name="before-term")
    with lock:
        pass
    print("flushed" if on_disk('"release"') else "not flushed", flush=True)
    threading.Event().wait(60)       # SIGTERM arrives here
    """, tmp_path, TRACEDSYNC_FLUSH_INTERVAL="0.05")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "flushed"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
    names = [e["event"] for e in _events(tmp_path)]
    assert "acquire" in names and "release" in names and "session_end" not in names


def test_program_sigterm_handler_is_kept(tmp_path: Path) -> None:
    """A program that handles SIGTERM itself keeps its handler (we never replace it)."""
    proc = _start("""
    import signal, sys, threading
    got = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: got.set())
    import tracedsync
    with tracedsync.Lock():
        pass
    print("ready", flush=True)
    got.wait(30)
    print("handled" if got.is_set() else "missed", flush=True)
    """, tmp_path)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "handled" and proc.returncode == 0


def test_ctrl_c_flushes(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) ends the program with KeyboardInterrupt; the log is complete."""
    proc = _start("""
    import threading, tracedsync
    lock = tracedsync.Lock(name="before-int")
    with lock:
        pass
    print("ready", flush=True)
    threading.Event().wait(60)
    """, tmp_path, TRACEDSYNC_FLUSH_INTERVAL="3600")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.stderr is not None and "KeyboardInterrupt" in proc.stderr.read()
    names = [e["event"] for e in _events(tmp_path)]
    assert names[-1] == "session_end" and "acquire" in names


def test_keyboard_interrupt_while_blocked_on_lock(tmp_path: Path) -> None:
    """KeyboardInterrupt in a blocked acquire propagates; the failed wait is recorded."""
    proc = _start("""
    import os, signal, threading, tracedsync
    lock = tracedsync.Lock(name="held")
    lock.acquire()
    def interrupt_when_blocked():
        import time
        from tracedsync._core.waits import current   # entered just before blocking
        main = threading.main_thread().ident
        for _ in range(20000):
            if main in current():
                time.sleep(0.05)   # (inside the blocking call, past the registration)
                os.kill(os.getpid(), signal.SIGINT)   # a real signal interrupts the wait
                return
            time.sleep(0.001)
    threading.Thread(target=interrupt_when_blocked).start()
    try:
        lock.acquire(timeout=30)
        print("acquired?!")
    except KeyboardInterrupt:
        print("interrupted", lock.locked())
    lock.release()
    """, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["interrupted", "True"]
    events = _events(tmp_path)
    failed = [e for e in events if e["event"] == "acquire" and not e["ok"]]
    assert len(failed) == 1 and failed[0]["contended"]
    assert [e for e in events if e["event"] == "interrupted"]
    assert not [e for e in events if e["event"] == "misuse"]


def test_keyboard_interrupt_during_condition_wait(tmp_path: Path) -> None:
    """KeyboardInterrupt in Condition.wait: the lock is re-held as threading does, and logged."""
    proc = _start("""
    import os, signal, threading, tracedsync
    cond = tracedsync.Condition(name="c")
    def interrupt_when_waiting():
        import time
        for _ in range(20000):
            with cond:                         # we get the lock only once main is waiting
                if cond._waiters:
                    os.kill(os.getpid(), signal.SIGINT)   # a real signal interrupts the wait
                    return
            time.sleep(0.001)
    threading.Thread(target=interrupt_when_waiting).start()
    with cond:
        try:
            cond.wait(30)
        except KeyboardInterrupt:
            print("interrupted", cond._is_owned())
    """, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["interrupted", "True"]
    events = _events(tmp_path)
    wakes = [e for e in events if e["event"] == "cond_wake"]
    assert len(wakes) == 1 and wakes[0]["notified"] is False
    assert [e for e in events if e.get("restored")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_another_thread_holds_a_lock(tmp_path: Path) -> None:
    """A lock held by another thread at fork stays held in the child: a timed acquire there
    fails (no hang), is recorded with blocked_by = that thread, in the child's own file."""
    proc = _start("""
    import os, threading, tracedsync
    lock = tracedsync.Lock(name="held-at-fork")
    holding, release = threading.Event(), threading.Event()
    def holder():
        with lock:
            holding.set()
            release.wait(30)
    t = threading.Thread(target=holder, name="holder")
    t.start()
    holding.wait(30)
    pid = os.fork()
    if pid == 0:
        ok = lock.acquire(timeout=0.05)
        tracedsync.flush()
        os._exit(0 if ok is False else 3)
    _, status = os.waitpid(pid, 0)
    release.set()
    t.join(30)
    print(pid, os.waitstatus_to_exitcode(status), t.native_id)
    """, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    child, code, holder_tid = map(int, out.split())
    assert code == 0
    child_events = [json.loads(x) for x in
                    (tmp_path / f"tracedsync-{child}.jsonl").read_bytes().splitlines()]
    (failed,) = [e for e in child_events if e["event"] == "acquire"]
    assert failed["ok"] is False and failed["blocked_by"] == holder_tid
