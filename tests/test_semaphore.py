"""The trace of Semaphore and BoundedSemaphore: contention, timeouts, holders, over-release."""

from __future__ import annotations

import gc
import glob
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import prim_of, until

import tracedsync
from tracedsync._core import runtime as rt
from tracedsync.testing import capture

RawLockType = type(threading.Lock())
RawCondition = threading.Condition


def _blocked(sem: Any, n: int = 1) -> Callable[[], bool]:
    """True once ``n`` threads wait inside the real semaphore's condition."""
    return lambda: len(sem._cond._waiters) >= n


def test_uncontended_acquire_and_release_are_recorded() -> None:
    """`with` and acquire()/release() record permits left, permits held and the call site."""
    sem = tracedsync.Semaphore(2, name="pool")
    with capture() as events:
        with sem:
            pass
        sem.acquire()
        sem.release()
    seq = events.where(prim=prim_of(sem))
    assert [e["event"] for e in seq] == ["sem_acquire", "sem_release"] * 2
    acq, rel = seq[0], seq[1]
    assert acq["ok"] is True and acq["contended"] is False and acq["wait_ns"] == 0
    assert acq["permits"] == 1 and acq["held"] == 1
    assert acq["blocking"] is True and acq["timeout"] is None
    assert acq["site"].startswith(__file__ + ":")
    assert rel["n"] == 1 and rel["permits"] == 2 and rel["held"] == 0 and rel["for_others"] == 0
    assert rel["site"].startswith(__file__ + ":")
    stats = sem.statistics()
    assert (stats.acquisitions, stats.releases, stats.contended, stats.permits) == (2, 2, 0, 2)


def test_created_event_carries_kind_and_value() -> None:
    """Creation records the kind, the name and the initial value."""
    with capture() as events:
        sem = tracedsync.BoundedSemaphore(5, name="slots")
    (created,) = events.where(event="created", prim=prim_of(sem))
    assert created["kind"] == "BoundedSemaphore"
    assert created["name"] == "slots"
    assert created["value"] == 5
    assert created["site"].startswith(__file__ + ":")


def test_contended_acquire_of_a_blocked_thread() -> None:
    """A thread that finds no permit records contended=True once it gets one."""
    sem = tracedsync.Semaphore(1)
    worker_tid: list[int] = []
    results: list[bool] = []

    def worker() -> None:
        worker_tid.append(threading.get_native_id())
        results.append(sem.acquire(timeout=10))

    with capture() as events:
        assert sem.acquire()
        t = threading.Thread(target=worker)
        t.start()
        until(_blocked(sem))
        sem.release()
        t.join(10)
    assert results == [True]
    (contended,) = [e for e in events.where(prim=prim_of(sem), event="sem_acquire")
                    if e["contended"]]
    assert contended["tid"] == worker_tid[0]
    assert contended["ok"] is True
    assert contended["timeout"] == 10
    assert contended["permits"] == 0 and contended["held"] == 1
    assert isinstance(contended["wait_ns"], int)
    stats = sem.statistics()
    assert stats.contended == 1 and stats.acquisitions == 2


def test_timed_out_and_non_blocking_acquires_fail() -> None:
    """A timeout and a failed non-blocking try are recorded as ok=False and counted."""
    sem = tracedsync.Semaphore(0)
    with capture() as events:
        assert sem.acquire(timeout=0.01) is False
        assert sem.acquire(False) is False
    timed, tried = events.where(prim=prim_of(sem), event="sem_acquire")
    assert timed["ok"] is False and timed["contended"] is True and timed["timeout"] == 0.01
    assert tried["ok"] is False and tried["blocking"] is False and tried["timeout"] is None
    assert timed["held"] == 0 and timed["permits"] == 0
    assert sem.statistics().failed == 2


def test_invalid_arguments_raise_the_originals_errors() -> None:
    """acquire(False, timeout) and release(0) raise threading's ValueErrors, recording nothing."""
    sem = tracedsync.BoundedSemaphore(1)
    with capture() as events:
        with pytest.raises(ValueError, match="can't specify timeout"):
            sem.acquire(False, 1)
        with pytest.raises(ValueError, match="n must be one or more"):
            sem.release(0)
    assert events.where(prim=prim_of(sem)) == []
    with pytest.raises(ValueError):
        tracedsync.Semaphore(-1)


def test_over_release_of_bounded_semaphore_is_misuse() -> None:
    """Releasing a BoundedSemaphore past its value raises ValueError and records misuse."""
    sem = tracedsync.BoundedSemaphore(1)
    with capture() as events, pytest.raises(ValueError, match="released too many times"):
        sem.release()
    (misuse,) = events.where(prim=prim_of(sem))
    assert misuse["event"] == "misuse"
    assert misuse["what"] == "over_release"
    assert misuse["error"] == "Semaphore released too many times"
    assert misuse["site"].startswith(__file__ + ":")
    stats = sem.statistics()
    assert stats.misuse == 1 and stats.releases == 0 and stats.permits == 1


def test_plain_semaphore_may_be_released_past_its_value() -> None:
    """An unbounded semaphore's extra release is legal: recorded as a release, not misuse."""
    sem = tracedsync.Semaphore(1)
    with capture() as events:
        sem.release(2)
    (rel,) = events.where(prim=prim_of(sem))
    assert rel["event"] == "sem_release"
    assert rel["n"] == 2 and rel["permits"] == 3 and rel["for_others"] == 0


def test_statistics_name_the_threads_holding_permits() -> None:
    """held_by lists each holder's ident and permits, oldest holder first."""
    sem = tracedsync.BoundedSemaphore(3)
    worker_ident: list[int] = []

    def worker() -> None:
        worker_ident.append(threading.get_ident())
        assert sem.acquire(timeout=10)

    sem.acquire()
    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    sem.acquire()
    stats = sem.statistics()
    assert stats.held_by == ((threading.get_ident(), 2), (worker_ident[0], 1))
    assert stats.permits == 0 and stats.max_permits == 3


def test_release_by_another_thread_is_counted_for_others() -> None:
    """A release by a thread holding no permit takes back the oldest holder's (a hand-off)."""
    sem = tracedsync.Semaphore(1)
    t = threading.Thread(target=lambda: sem.acquire(timeout=10))
    t.start()
    t.join(10)
    with capture() as events:
        sem.release()
    (rel,) = events.where(prim=prim_of(sem), event="sem_release")
    assert rel["for_others"] == 1 and rel["held"] == 0
    assert sem.statistics().held_by == ()


def test_stats_event_of_collected_semaphore_reports_holders() -> None:
    """A collected semaphore's stats event names holders by tid and carries only its fields."""
    sem = tracedsync.BoundedSemaphore(2)
    lock = tracedsync.Lock()
    prim, lock_prim = prim_of(sem), prim_of(lock)
    with capture() as events:
        sem.acquire()
        del sem, lock
        gc.collect()
    (stats,) = events.where(event="stats", prim=prim)
    assert stats["kind"] == "BoundedSemaphore"
    assert stats["held_by"] == [
        {"tid": threading.get_native_id(), "ident": threading.get_ident(), "permits": 1}
    ]
    assert stats["permits"] == 1 and stats["max_permits"] == 2 and stats["releases"] == 0
    assert "sets" not in stats and "parties" not in stats
    (lock_stats,) = events.where(event="stats", prim=lock_prim)
    assert "permits" not in lock_stats and "held_by" not in lock_stats


def test_permits_held_at_exit_are_reported(tmp_path: Any) -> None:
    """A process that exits holding permits says so in the stats event it writes at exit."""
    code = textwrap.dedent("""
        import threading, tracedsync
        sem = tracedsync.BoundedSemaphore(2, name="pool")
        sem.acquire()
        print(sem.statistics().prim, threading.get_native_id())
    """)
    env = {**os.environ, "TRACEDSYNC_LOG_DIR": str(tmp_path), "TRACEDSYNC_LEVEL": "full"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    prim, tid = proc.stdout.split()
    (path,) = glob.glob(os.path.join(tmp_path, "tracedsync-*.jsonl"))
    with open(path, encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh]
    (stats,) = [e for e in lines if e["event"] == "stats" and e["prim"] == prim]
    assert stats["name"] == "pool"
    assert stats["permits"] == 1
    assert [h["tid"] for h in stats["held_by"]] == [int(tid)]
    assert stats["held_by"][0]["permits"] == 1


def test_contention_level_writes_only_contended_and_failed(level: None) -> None:
    """At level contention, uncontended acquires and releases are counted but not written."""
    sem = tracedsync.Semaphore(1)
    tracedsync.configure(level="contention")
    with capture() as events, sem:
        assert sem.acquire(False) is False
    names = events.names(prim=prim_of(sem))
    assert names == ["sem_acquire"]
    assert events.where(prim=prim_of(sem))[0]["ok"] is False
    stats = sem.statistics()
    assert (stats.acquisitions, stats.releases, stats.failed) == (1, 1, 1)


def test_level_off_records_nothing(level: None) -> None:
    """At level off the semaphore behaves the same and records nothing."""
    sem = tracedsync.BoundedSemaphore(1)
    tracedsync.configure(level="off")
    with capture() as events:
        with sem:
            assert sem.acquire(False) is False
        with pytest.raises(ValueError):
            sem.release()
    assert events.where(prim=prim_of(sem)) == []


def test_internals_are_untraced_even_when_threading_is_patched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Condition and Lock inside the real semaphore stay raw under a patched threading."""
    monkeypatch.setattr(threading, "Lock", tracedsync.Lock)
    monkeypatch.setattr(threading, "Condition", tracedsync.Condition)
    sem = tracedsync.Semaphore(1)
    assert type(sem._cond) is RawCondition
    assert type(sem._cond._lock) is RawLockType
    assert rt.in_guard() is False


def test_factories_return_raw_semaphores_under_the_guard() -> None:
    """Inside tracedsync's own machinery the factories hand out the real classes."""
    rt.guard.on = True
    try:
        assert type(tracedsync.Semaphore()) is threading.Semaphore
        assert type(tracedsync.BoundedSemaphore()) is threading.BoundedSemaphore
    finally:
        rt.guard.on = False


def test_repr_keeps_the_original_shape() -> None:
    """The repr is threading's, with the traced id and name inserted."""
    sem = tracedsync.BoundedSemaphore(3, name="pool")
    r = repr(sem)
    assert r.startswith("<threading.BoundedSemaphore")
    assert f"traced={prim_of(sem)}" in r and "name='pool'" in r
    if sys.version_info >= (3, 11):
        assert r.endswith(": value=3/3>")
