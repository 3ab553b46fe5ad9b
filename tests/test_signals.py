"""The program's view of its signal handlers is the one it would have without tracedsync.

tracedsync installs no SIGTERM handler, and stands in for the default action of the snapshot
signal (SIGUSR1: write a snapshot) only where the program left it at ``SIG_DFL``. The program
must not see it: ``signal.getsignal`` says ``SIG_DFL``, the program's own handler replaces ours
and runs, and putting ``SIG_DFL`` back brings ours back. Each scenario runs in a child
interpreter.
"""

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

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
TIMEOUT = 60


def _run(code: str, log_dir: Path, *prefix: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = log_dir.parent / "prog.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    return subprocess.run(
        [sys.executable, *prefix, str(script)],
        env=clean_env(TRACEDSYNC_LOG_DIR=str(log_dir), TRACEDSYNC_FLUSH_INTERVAL="3600", **env),
        capture_output=True, text=True, timeout=TIMEOUT,
    )


def _events(log_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(log_dir.glob("tracedsync-*.jsonl"))
            for line in path.read_bytes().splitlines()]


SIGTERM_PROGRAM = """
import os, signal, threading
import tracedsync

with tracedsync.Lock(name="before-term"):
    pass
print("default:", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
      signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL)
got = threading.Event()
def mine(signum, frame):
    got.set()
previous = signal.signal(signal.SIGTERM, mine)
print("mine:", previous is signal.SIG_DFL, signal.getsignal(signal.SIGTERM) is mine)
os.kill(os.getpid(), signal.SIGTERM)
print("handled" if got.wait(30) else "missed")
print("back:", signal.signal(signal.SIGTERM, previous) is mine,
      signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
os.kill(os.getpid(), signal.SIGTERM)  # the default action: the process dies of it
threading.Event().wait(30)
print("survived")
"""


def test_handlers_look_default_and_the_programs_handler_runs(tmp_path: Path) -> None:
    """getsignal says SIG_DFL for SIGTERM and for the snapshot signal (it returned a tracedsync
    method for SIGTERM); the program's own handler is installed and runs; SIG_DFL put back is
    the default action: the process dies of SIGTERM."""
    proc = _run(SIGTERM_PROGRAM, tmp_path / "logs")
    assert proc.stdout.splitlines() == [
        "default: True True", "mine: True True", "handled", "back: True True"
    ], proc.stderr
    assert proc.returncode == -signal.SIGTERM


def test_handlers_look_default_under_run(tmp_path: Path) -> None:
    """The same under ``tracedsync run``, which imports tracedsync before the program."""
    logs = tmp_path / "logs"
    proc = _run(SIGTERM_PROGRAM, logs, "-m", "tracedsync", "run", "--log-dir", str(logs),
                "--no-summary")
    assert proc.stdout.splitlines()[:2] == ["default: True True", "mine: True True"], (
        proc.stderr)
    assert proc.returncode == -signal.SIGTERM


SNAPSHOT_PROGRAM = """
import os, signal, threading
import tracedsync

with tracedsync.Lock(name="first"):
    pass
got = threading.Event()
def mine(signum, frame):
    got.set()
assert signal.signal(signal.SIGUSR1, mine) is signal.SIG_DFL
os.kill(os.getpid(), signal.SIGUSR1)
print("handled" if got.wait(30) else "missed")
tracedsync.flush()
print("snapshots while mine:", sum('"snapshot"' in line for line in open(tracedsync.log_path())))
assert signal.signal(signal.SIGUSR1, signal.SIG_DFL) is mine
with tracedsync.Lock(name="x"):
    os.kill(os.getpid(), signal.SIGUSR1)  # ours again: a snapshot, written by its handler
print("snapshots after:", sum('"snapshot"' in line for line in open(tracedsync.log_path())))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 on this platform")
def test_snapshot_signal_gives_way_to_the_programs_handler(tmp_path: Path) -> None:
    """The program's SIGUSR1 handler replaces the snapshot handler and is the one that runs;
    SIG_DFL put back brings the snapshot handler back."""
    proc = _run(SNAPSHOT_PROGRAM, tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "handled", "snapshots while mine: 0", "snapshots after: 1"
    ], proc.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 on this platform")
def test_wrappers_pass_everything_else_through() -> None:
    """In this process (tracedsync imported from the main thread): the snapshot handler is in
    place but reported as SIG_DFL; a signal we do not handle round-trips through the wrappers;
    errors are the real ones."""
    from tracedsync._record import sighandlers

    if not sighandlers.installed(signal.SIGUSR1):
        pytest.skip("SIGUSR1 had a handler of its own when tracedsync was imported")
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert signal.signal.__name__ == "signal" and signal.getsignal.__name__ == "getsignal"

    def mine(signum: int, frame: object) -> None:
        pass

    before = signal.getsignal(signal.SIGUSR2)
    assert signal.signal(signal.SIGUSR2, mine) is before
    assert signal.getsignal(signal.SIGUSR2) is mine
    assert signal.signal(signal.SIGUSR2, before) is mine
    assert signal.getsignal(signal.SIGUSR2) is before
    with pytest.raises(TypeError):
        signal.signal(signal.SIGUSR1, "not a handler")
    assert sighandlers.installed(signal.SIGUSR1)
    assert not sighandlers.installed(signal.SIGTERM)  # tracedsync installs none there


def test_the_flusher_thread_blocks_signals(tmp_path: Path) -> None:
    """tracedsync's flusher blocks the signals a program may be sent, from its first
    instruction: the kernel hands them to the program's own threads (Linux: read from
    /proc)."""
    code = """
    import os, threading, tracedsync
    from tracedsync._record.recorder import RECORDER
    with tracedsync.Lock():
        pass
    tids = {t.native_id for t in threading.enumerate()}
    for task in os.listdir("/proc/self/task"):
        status = open(f"/proc/self/task/{task}/status").read()
        blocked = int(status.split("SigBlk:")[1].split()[0], 16)
        print("program" if int(task) in tids else "ours", blocked >> 14 & 1)  # SIGTERM's bit
    """
    if not Path("/proc/self/task").is_dir():
        pytest.skip("no /proc here")
    proc = _run(code, tmp_path / "logs")
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["ours 1", "program 0"]
