"""analyze on logs written by really running traced code (in a child process, so that each
log has its own directory, its exit counters and its session_end)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import clean_env

from tracedsync.analysis.analyze import analyze
from tracedsync.analysis.report import build_report
from tracedsync.cli import main

PROGRAM = textwrap.dedent(
    """
    import os, sys, threading
    import tracedsync
    tracedsync.configure(log_dir=sys.argv[1])

    a = tracedsync.Lock(name="a")
    b = tracedsync.Lock(name="b")
    cond = tracedsync.Condition(name="ready")
    sem = tracedsync.Semaphore(2, name="pool")
    go = threading.Event()

    def one():  # a then b
        with a:
            with b:
                pass

    def two():  # b then a: the inversion (run one after the other: no deadlock)
        with b:
            with a:
                pass

    for f in (one, two):
        t = threading.Thread(target=f, name=f.__name__)
        t.start()
        t.join()

    # Contention made deterministic with events (no sleeps): the waiter's timed acquire
    # fails while the holder holds the lock; then a notify that is sure to find its waiter.
    holding, tried = threading.Event(), threading.Event()
    def holder():
        with a:
            holding.set()
            tried.wait()
    def waiter():
        holding.wait()
        assert not a.acquire(timeout=0.001)
        tried.set()
    ts = [threading.Thread(target=holder, name="holder"),
          threading.Thread(target=waiter, name="waiter")]
    for t in ts: t.start()
    for t in ts: t.join()
    flag, ready = [], threading.Event()
    def sleeper():
        with cond:
            ready.set()          # the lock is ours until wait() releases it
            while not flag:
                cond.wait()
    t = threading.Thread(target=sleeper, name="sleeper")
    t.start()
    ready.wait()
    with cond:                   # only possible once the sleeper waits
        flag.append(1)
        cond.notify()
    t.join()
    with cond:
        cond.notify()          # nobody waits: the wake-up is lost...
    with cond:
        cond.wait(0.001)       # ...and this wait times out
    with sem:
        pass
    if sys.argv[2] == "hang":
        # A deadlock: each thread holds one lock and wants the other. The log is flushed
        # once both hold their first lock, then the process dies without exiting normally.
        got = [threading.Event(), threading.Event()]
        def left():
            with a:
                got[0].set(); got[1].wait()
                with b: pass
        def right():
            with b:
                got[1].set(); got[0].wait()
                with a: pass
        for f in (left, right):
            threading.Thread(target=f, name=f.__name__, daemon=True).start()
        got[0].wait(); got[1].wait()
        tracedsync.flush()
        os._exit(0)
    """
)


def _run(tmp_path: Path, mode: str) -> Path:
    logs = tmp_path / "logs"
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    subprocess.run([sys.executable, str(script), str(logs), mode], check=True, timeout=60,
                   env=clean_env())
    return logs


def test_real_program_statistics_and_findings(tmp_path: Path) -> None:
    """Inversion, lost wake-up, contention and a semaphore, as the recorder wrote them."""
    report = build_report(analyze([str(_run(tmp_path, "exit"))]))
    assert report.problem_count == 0
    kinds = {f.kind for f in report.findings}
    assert {"lock_order", "lost_wakeup"} <= kinds
    assert "deadlock" not in kinds
    rows = {r.label.split(" (")[0]: r for r in report.primitives}
    assert (rows["a"].contended, rows["a"].failed, rows["a"].wait.count) == (1, 1, 1)
    assert rows["a"].acquisitions == 3
    assert (rows["ready"].cond_waits, rows["ready"].cond_timeouts) == (2, 1)
    assert (rows["ready"].notifies, rows["ready"].unheard_notifies) == (2, 1)
    assert rows["pool"].other_events.get("sem_acquire") == 1
    names = {t["name"] for t in report.threads}
    assert {"one", "two", "holder", "waiter", "sleeper", "MainThread"} <= names


def test_real_deadlock_is_inferred(tmp_path: Path) -> None:
    """A process that deadlocked and died: the end of its log shows the likely deadlock."""
    report = build_report(analyze([str(_run(tmp_path, "hang"))]))
    dead = [f for f in report.findings if f.kind == "deadlock"]
    assert len(dead) == 1 and dead[0].severity == "error"
    assert {t["name"] for t in dead[0].threads} == {"left", "right"}


def test_real_log_through_every_renderer(tmp_path: Path) -> None:
    """The CLI renders a real log in each format; Perfetto gets slices, a notify→wake flow,
    counters and thread names."""
    import json

    logs = _run(tmp_path, "exit")
    for fmt in ("text", "json", "perfetto", "html"):
        out = tmp_path / f"r.{fmt}"
        assert main(["analyze", str(logs), "-f", fmt, "-o", str(out)]) == 0
    trace = json.loads((tmp_path / "r.perfetto").read_text())["traceEvents"]
    phases = {e["ph"] for e in trace}
    assert {"X", "M", "C", "s", "f"} <= phases
    assert any(e["ph"] == "X" and e["cat"] == "wait" for e in trace)
    flows = [e for e in trace if e["ph"] in "sf" and e["name"] == "notify"]
    assert sorted(e["ph"] for e in flows) == ["f", "s"]
    names = {e["args"]["name"] for e in trace if e.get("name") == "thread_name"}
    assert {"holder", "waiter", "sleeper"} <= names


def test_real_log_text_output_mentions_the_sites(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The text output names the program's own call sites."""
    logs = _run(tmp_path, "exit")
    main(["analyze", str(logs), "--no-progress"])
    assert "prog.py:" in capsys.readouterr().out
