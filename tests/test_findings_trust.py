"""Findings users can trust (issue 14): small correct programs give no finding at warning or
above, and each has a buggy twin that is reported, worded as what happened.

Each program runs traced in a child interpreter (its own log directory, exit counters and
``session_end``), on the native recorder and on the pure-Python one, and its logs are analysed.
Threads are coordinated with events, barriers and bounded polling of a state; a sleep or a
timeout is only ever what the program under test does, never how the test synchronises.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import clean_env

from tracedsync.analysis.analyze import analyze
from tracedsync.analysis.findings import Finding, severity_rank
from tracedsync.analysis.report import build_report

MODES = ["native", "pure"]
TIMEOUT = 60

PRELUDE = """
import os, sys, threading, time
import tracedsync
from tracedsync._core.waits import current
tracedsync.configure(log_dir=sys.argv[1], flush_interval=0.05)

def until(pred, what="a state"):
    deadline = time.monotonic() + 30
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.001)

def blocked(thread, obj=None):
    w = current().get(thread.ident)
    return w is not None and (obj is None or w.st.prim == obj.statistics().prim)
"""


def run(tmp_path: Path, body: str, mode: str) -> list[Finding]:
    """Run ``body`` (after `PRELUDE`) traced in a child; its findings."""
    script = tmp_path / "prog.py"
    script.write_text(PRELUDE + textwrap.dedent(body), encoding="utf-8")
    logs = tmp_path / "logs"
    env = clean_env()
    if mode == "pure":
        env["TRACEDSYNC_PURE_PYTHON"] = "1"
    proc = subprocess.run([sys.executable, str(script), str(logs)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return build_report(analyze([os.fspath(logs)], jobs=1)).findings


def serious(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if severity_rank(f.severity) >= 1]


def one(findings: list[Finding], kind: str) -> Finding:
    matching = [f for f in findings if f.kind == kind]
    assert len(matching) == 1, [(f.kind, f.message) for f in findings]
    return matching[0]


def names(f: Finding) -> set[str]:
    return {t["name"].rsplit("/", 1)[-1] for t in f.threads}


# -- read-modify-write -------------------------------------------------------------------------
OWN_SLOTS = """
import multiprocessing as mp

def work(arr, i):
    for _ in range(50):
        arr[i] += 1                      # only this process writes slot i

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    arr = tracedsync.Array("i", 4, ctx=ctx)
    v = tracedsync.Value("i", 0, ctx=ctx)
    ps = [ctx.Process(target=work, args=(arr, i)) for i in range(4)]
    for p in ps: p.start()
    for p in ps: p.join()
    for _ in range(10):
        v.value += 1                     # alone: every worker has been joined
    assert list(arr) == [50] * 4 and v.value == 10
"""

SHARED_SLOT = """
import multiprocessing as mp

def work(arr, halfway):
    for n in range(50):
        if n == 25:
            halfway.wait(30)             # the two workers' updates overlap in time
        arr[0] += 1

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    arr = tracedsync.Array("i", 4, ctx=ctx)
    halfway = ctx.Barrier(2)
    ps = [ctx.Process(target=work, args=(arr, halfway)) for _ in range(2)]
    for p in ps: p.start()
    for p in ps: p.join()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
@pytest.mark.parametrize("mode", MODES)
def test_own_slots_and_a_value_updated_after_join_are_clean(tmp_path: Path, mode: str) -> None:
    """Each of 4 processes does ``arr[i] += 1`` on its own slot; the parent does
    ``v.value += 1`` alone after joining them: no update can be lost, nothing is reported."""
    assert serious(run(tmp_path, OWN_SLOTS, mode)) == []


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
@pytest.mark.parametrize("mode", MODES)
def test_two_processes_updating_one_slot_are_reported(tmp_path: Path, mode: str) -> None:
    """The twin: two processes doing ``arr[0] += 1`` at the same time: an error at that line,
    naming both processes."""
    f = one(run(tmp_path, SHARED_SLOT, mode), "rmw")
    assert f.severity == "error" and len(f.processes) == 2
    assert f.call_sites[0].endswith(f"prog.py:{_line(SHARED_SLOT, 'arr[0] += 1')}")
    assert "arr (Array" in f.message and "(item [0])" in f.message
    assert "these updates overlap in time" in f.message


def _line(body: str, text: str) -> int:
    lines = (PRELUDE + textwrap.dedent(body)).splitlines()
    (n,) = [i for i, line in enumerate(lines, 1) if text in line]
    return n


# -- semaphores ----------------------------------------------------------------------------------
SIGNAL_SEMAPHORE = """
s = tracedsync.Semaphore(0)
t = threading.Thread(target=s.release, name="signaller")
t.start(); t.join()
s.acquire()                              # the signal: main "holds" a permit for ever, rightly
"""

LEAKED_PERMIT = """
pool = tracedsync.Semaphore(2)
def leak():
    pool.acquire()                       # never released
t = threading.Thread(target=leak, name="leaker")
t.start(); t.join()
after = threading.Thread(target=lambda: None, name="bystander")  # may get leaker's ident
after.start(); after.join()
tracedsync.Lock().acquire(blocking=False)  # (records a thread event for the main thread)
def touch():
    with tracedsync.Lock():
        pass
b = threading.Thread(target=touch, name="bystander2")
b.start(); b.join()
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_semaphore_used_as_a_signal_is_clean(tmp_path: Path, mode: str) -> None:
    """``Semaphore(0)`` released by one thread and acquired by another: balanced (its value at
    exit is its initial value), no finding."""
    assert serious(run(tmp_path, SIGNAL_SEMAPHORE, mode)) == []


@pytest.mark.parametrize("mode", MODES)
def test_a_leaked_permit_names_its_thread_and_sites(tmp_path: Path, mode: str) -> None:
    """The twin: a permit taken and never given back is reported with the thread that took it
    (by name and native id; never a later thread that reused its ident), where it was taken,
    and where the semaphore was created."""
    f = one(run(tmp_path, LEAKED_PERMIT, mode), "permits_held")
    assert f.severity == "warning" and f.count == 1
    assert names(f) == {"leaker"}
    assert f.call_sites == [f"{tmp_path / 'prog.py'}:{_line(LEAKED_PERMIT, 'pool.acquire()')}"]
    assert f"prog.py:{_line(LEAKED_PERMIT, 'pool = ')}" in f.message
    assert "pool (Semaphore" in f.message and "leaker (" in f.message
    assert f.primitives[0]["var"] == "pool"


# -- tries ---------------------------------------------------------------------------------------
TRIES = """
lock = tracedsync.Lock()
sem = tracedsync.Semaphore(1)
with lock, sem:
    assert lock.acquire(timeout=0) is False
    assert lock.acquire(blocking=False) is False
    assert sem.acquire(timeout=0) is False
other = tracedsync.Lock()
with other:                              # a try while holding `other`: no order edge into lock
    if lock.acquire(blocking=False):
        lock.release()
with lock, other:
    pass
"""

SELF_DEADLOCK = """
lock = tracedsync.Lock()
with lock:
    assert lock.acquire(timeout=0.05) is False   # waits for itself, then gives up
"""


@pytest.mark.parametrize("mode", MODES)
def test_tries_are_clean(tmp_path: Path, mode: str) -> None:
    """``acquire(timeout=0)`` and ``acquire(blocking=False)`` of what the thread holds are
    tries: no deadlock, and no lock-order edge."""
    assert serious(run(tmp_path, TRIES, mode)) == []


@pytest.mark.parametrize("mode", MODES)
def test_a_timed_self_deadlock_says_who_gave_up(tmp_path: Path, mode: str) -> None:
    """The twin: a timed acquire of a Lock the thread holds waits for itself: a deadlock,
    worded as what happened (who gave up, after how long)."""
    f = one(run(tmp_path, SELF_DEADLOCK, mode), "deadlock")
    assert f.severity == "error"
    assert "broken by a timeout" in f.message and "MainThread (" in f.message
    assert "gave up after" in f.message and "its timeout, 0.05 s" in f.message


# -- events --------------------------------------------------------------------------------------
EVENT_AS_SLEEP = """
ev = tracedsync.Event()
def waiter():
    ev.wait()                            # woken by the set below
    ev.clear()
    ev.wait(0.05)                        # a timed sleep: times out, rightly
t = threading.Thread(target=waiter, name="waiter")
t.start()
until(lambda: ev._cond._waiters, "the waiter to wait")
ev.set()
t.join()
"""

MISSED_PULSE = """
ev = tracedsync.Event()
ev.set(); ev.clear()                     # a pulse nobody was waiting for...
def waiter():
    ev.wait(0.05)                        # ...and a waiter that comes too late
t = threading.Thread(target=waiter, name="late")
t.start(); t.join()
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_set_that_woke_its_waiter_is_not_lost(tmp_path: Path, mode: str) -> None:
    """A thread waits, is woken by ``set()``, clears, then sleeps with ``wait(0.05)``: the set
    was heard; nothing is reported."""
    assert serious(run(tmp_path, EVENT_AS_SLEEP, mode)) == []


@pytest.mark.parametrize("mode", MODES)
def test_a_pulse_nobody_heard_is_a_lost_wakeup(tmp_path: Path, mode: str) -> None:
    """The twin: ``set(); clear()`` with nobody waiting, then a wait that times out."""
    f = one(run(tmp_path, MISSED_PULSE, mode), "lost_wakeup")
    assert f.severity == "warning" and "late" in names(f)


# -- a Lock used as a signal ---------------------------------------------------------------------
LOCK_AS_SIGNAL = """
done = tracedsync.Lock()
done.acquire()
main = threading.current_thread()
def finish():
    until(lambda: blocked(main, done), "main to wait for the signal")
    done.release()                       # a plain Lock may be released by any thread
t = threading.Thread(target=finish, name="finisher")
t.start()
assert done.acquire(timeout=30)
t.join()
"""

SIGNAL_NEVER_SENT = """
from tracedsync._detect import deadlock
deadlock.SIGNAL_WAIT_NS = 0              # report the signal wait at the next watchdog pass
done = tracedsync.Lock()
done.acquire()
idle = threading.Event()
t = threading.Thread(target=idle.wait, name="idle")
t.start()
assert not done.acquire(timeout=0.5)     # nobody releases it: gives up
idle.set(); t.join()
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_lock_used_as_a_signal_is_clean(tmp_path: Path, mode: str) -> None:
    """One thread acquires a Lock it holds; another releases it: no deadlock finding."""
    assert serious(run(tmp_path, LOCK_AS_SIGNAL, mode)) == []


@pytest.mark.parametrize("mode", MODES)
def test_a_signal_that_never_came_is_reported(tmp_path: Path, mode: str) -> None:
    """The twin: the signal never comes and the waiter gives up: a (likely) deadlock, worded
    as what happened."""
    f = one(run(tmp_path, SIGNAL_NEVER_SENT, mode), "deadlock")
    assert f.severity == "warning" and "gave up after" in f.message


# -- deadlocks through timed acquires -------------------------------------------------------------
TIMED_AB_BA = """
a = tracedsync.Lock(name="a")
b = tracedsync.Lock(name="b")
both = threading.Barrier(2)
def one():                               # gives up first
    with a:
        both.wait(30)
        until(lambda: blocked(t2, a), "two to block on a")
        assert not b.acquire(timeout=0.05)
def two():
    with b:
        both.wait(30)
        assert a.acquire(timeout=30)
        a.release()
t2 = threading.Thread(target=two, name="two")
t1 = threading.Thread(target=one, name="one")
t2.start(); t1.start(); t1.join(); t2.join()
"""

SAME_ORDER = """
a = tracedsync.Lock(name="a")
b = tracedsync.Lock(name="b")
both = threading.Barrier(2)
def take():                              # a, then b, in every thread
    both.wait(30)
    with a:
        assert b.acquire(timeout=30)
        b.release()
ts = [threading.Thread(target=take, name=n) for n in ("one", "two")]
for t in ts: t.start()
for t in ts: t.join()
"""


@pytest.mark.parametrize("mode", MODES)
def test_a_deadlock_broken_by_a_timeout_says_who_gave_up(tmp_path: Path, mode: str) -> None:
    """AB-BA with timed acquires: the deadlock is reported as broken by one thread's timeout,
    naming that thread and how long it waited, with both threads' stacks."""
    f = one(run(tmp_path, TIMED_AB_BA, mode), "deadlock")
    assert f.severity == "error" and names(f) == {"one", "two"}
    assert "broken by a timeout" in f.message and "one (" in f.message
    assert "gave up after" in f.message.split(";")[-1]
    assert all(c.get("stack") for c in f.details["cycle"])


@pytest.mark.parametrize("mode", MODES)
def test_the_same_threads_in_one_order_are_clean(tmp_path: Path, mode: str) -> None:
    """The twin: the same two threads taking a then b: nothing."""
    assert serious(run(tmp_path, SAME_ORDER, mode)) == []


def test_the_report_spans_from_the_first_event(tmp_path: Path) -> None:
    """The header's span starts at the first event, not at the session header the recorder
    writes lazily (at its first flush, later)."""
    from test_analyze_util import Log

    log = Log(ts=5_000_000_000)
    lock = log.created(1)
    log.acquire(7, lock, "app.py:1")
    log.release(7, lock, dt=250_000_000)
    log.lines[0]["ts"] = log.lines[1]["ts"] + 200_000_000  # the header, written at a flush
    report = build_report(analyze([log.write(tmp_path)], jobs=1))
    assert report.totals["span_ns"] == 250_000_000 + 1000


@pytest.mark.parametrize("mode", MODES)
def test_the_nested_monitor_example(tmp_path: Path, mode: str) -> None:
    """examples/nested_monitor.py: a lockout broken by the waiter's timeout, named by the
    example's own names, with both lines and both stacks."""
    example = Path(__file__).resolve().parent.parent / "examples" / "nested_monitor.py"
    env = clean_env(TRACEDSYNC_LOG_DIR=str(tmp_path / "logs"))
    if mode == "pure":
        env["TRACEDSYNC_PURE_PYTHON"] = "1"
    proc = subprocess.run([sys.executable, str(example)], env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    findings = build_report(analyze([str(tmp_path / "logs")], jobs=1)).findings
    f = one(findings, "nested_monitor")
    assert f.severity == "warning" and "broken by a timeout" in f.message
    assert "Mailbox._lock (Lock" in f.message and "Mailbox._ready (Condition" in f.message
    assert names(f) == {"taker", "poster"} and len(f.details["stacks"]) == 2
    assert serious(findings) == [f]
