"""Findings, each from a small hand-written log: deadlocks, lock order, wake-ups, misuse..."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_analyze_util import Log, kinds

from tracedsync.analysis.findings import Finding, Options, find_all
from tracedsync.analysis.native import kernel_class
from tracedsync.analysis.scan import scan_file


def _find(log: Log, tmp_path: Path, **opts: int) -> list[Finding]:
    return find_all(log.scan(tmp_path), Options(**opts))


def _one(findings: list[Finding], kind: str) -> Finding:
    matching = [f for f in findings if f.kind == kind]
    assert len(matching) == 1, findings
    return matching[0]


def _ab_ba(log: Log) -> tuple[str, str]:
    a = log.created(1, name="a", site="app.py:1")
    b = log.created(2, name="b", site="app.py:2")
    log.thread(7, "t1")
    log.thread(8, "t2")
    log.acquire(7, a, "app.py:10")
    log.acquire(7, b, "app.py:11")
    log.release(7, b)
    log.release(7, a)
    log.acquire(8, b, "app.py:20")
    log.acquire(8, a, "app.py:21")
    log.release(8, a)
    log.release(8, b)
    return a, b


def test_runtime_deadlock_event(tmp_path: Path) -> None:
    """A recorded deadlock event is an error naming its threads, locks and sites."""
    log = Log()
    log.thread(7, "t1")
    cycle = [{"tid": 7, "pid": 100, "prim": "100.1", "site": "app.py:10"},
             {"tid": 8, "pid": 100, "prim": "100.2", "site": "app.py:20"}]
    log.ev("deadlock", 7, cycle=cycle)
    f = _one(_find(log, tmp_path), "deadlock")
    assert f.severity == "error"
    assert f.call_sites == ["app.py:10", "app.py:20"]
    assert [t["tid"] for t in f.threads] == [7, 8]
    assert f.threads[0]["name"] == "t1"
    assert f.message.startswith("Deadlock detected at run time")


def test_deadlock_inferred_from_the_end_of_a_log(tmp_path: Path) -> None:
    """Earlier A→B and B→A nestings, then t1 holding A and t2 holding B when the log stops
    (no session_end: the process hung) is a likely deadlock, an error."""
    log = Log()
    a, b = _ab_ba(log)
    log.acquire(7, a, "app.py:10")
    log.acquire(8, b, "app.py:20")
    found = _find(log, tmp_path)
    f = _one(found, "deadlock")
    assert f.severity == "error"
    assert "Likely deadlock" in f.message and "never exited" in f.message
    assert sorted(t["tid"] for t in f.threads) == [7, 8]
    assert sorted(f.prims) == sorted([a, b])
    assert "held_at_end" not in kinds(found)


def test_lock_order_inversion_without_deadlock(tmp_path: Path) -> None:
    """A→B in one thread and B→A in another is an inversion even though nothing hung."""
    log = Log()
    _ab_ba(log)
    log.end()
    found = _find(log, tmp_path)
    f = _one(found, "lock_order")
    assert f.severity == "warning"
    assert set(f.call_sites) == {"app.py:10", "app.py:11", "app.py:20", "app.py:21"}
    assert sorted(t["tid"] for t in f.threads) == [7, 8]
    assert f.details["edges"][0]["sites"] == [["app.py:10", "app.py:11", 1]]
    assert "deadlock" not in kinds(found)


def test_gate_lock_makes_an_inversion_safe(tmp_path: Path) -> None:
    """When every edge of the cycle was taken under one same gate lock, it is only info."""
    log = Log()
    g = log.created(3, name="gate")
    a = log.created(1, name="a", site="app.py:1")
    b = log.created(2, name="b", site="app.py:2")
    for tid, first, second in ((7, a, b), (8, b, a)):
        log.acquire(tid, g, "app.py:5")
        log.acquire(tid, first, "app.py:10")
        log.acquire(tid, second, "app.py:11")
        log.release(tid, second)
        log.release(tid, first)
        log.release(tid, g)
    f = _one(_find(log, tmp_path), "lock_order")
    assert f.severity == "info"
    assert f.details["gate"] == [g]


def test_class_level_inversion_between_instances(tmp_path: Path) -> None:
    """Instances of two classes nested in both orders, never the same two instances."""
    log = Log()
    a1 = log.created(1, site="accounts.py:1")
    a2 = log.created(2, site="accounts.py:1")
    l1 = log.created(3, site="ledger.py:1")
    l2 = log.created(4, site="ledger.py:1")
    for outer, inner, tid in ((a1, l1, 7), (l2, a2, 8)):
        log.acquire(tid, outer, "x.py:1")
        log.acquire(tid, inner, "x.py:2")
        log.release(tid, inner)
        log.release(tid, outer)
    found = _find(log, tmp_path)
    (f,) = [x for x in found if x.kind == "lock_order"]  # no instance-level one
    assert f.details["level"] == "class"
    assert f.details["classes"] == ["Lock created at accounts.py:1", "Lock created at ledger.py:1"]


def test_lost_wakeup_timed_out_and_still_waiting(tmp_path: Path) -> None:
    """A notify nobody heard, then a wait that times out (warning) or never ends (error)."""
    log = Log()
    lock = log.created(1, "RLock")
    cond = log.created(2, "Condition", lock=lock)
    log.ev("notify", 7, prim=cond, n=1, waiters=0, woken=[], site="app.py:30")
    log.ev("cond_wait", 8, prim=cond, lock=lock, saved_depth=1, timeout=1, site="app.py:40")
    log.ev("cond_wake", 8, prim=cond, waited_ns=10**9, notified=False, reacquire_ns=0)
    f = _one(_find(log, tmp_path), "lost_wakeup")
    assert (f.severity, f.call_sites, f.count) == ("warning", ["app.py:30", "app.py:40"], 1)
    log.ev("cond_wait", 9, prim=cond, lock=lock, saved_depth=1, timeout=None, site="app.py:40")
    f = _one(_find(log, tmp_path), "lost_wakeup")
    assert (f.severity, f.count, f.details["still_waiting"]) == ("error", 2, 1)


def test_heard_notify_is_no_lost_wakeup(tmp_path: Path) -> None:
    """A wait that times out after a notify that *was* heard is not a lost wake-up."""
    log = Log()
    cond = log.created(2, "Condition", lock=None)
    log.ev("notify", 7, prim=cond, n=1, waiters=1, woken=[9], site="app.py:30")
    log.ev("cond_wait", 8, prim=cond, lock=None, saved_depth=1, timeout=1, site="app.py:40")
    log.ev("cond_wake", 8, prim=cond, waited_ns=10, notified=False, reacquire_ns=0)
    log.end()
    assert "lost_wakeup" not in kinds(_find(log, tmp_path))


def test_event_pulse_missed_by_a_waiter(tmp_path: Path) -> None:
    """An Event set and cleared before a wait began, which then timed out."""
    log = Log()
    ev = log.created(1, "Event")
    log.ev("event_set", 7, prim=ev, was_set=False, site="app.py:1")
    log.ev("event_clear", 7, prim=ev, was_set=True, site="app.py:2")
    log.ev("event_wait", 8, dt=10**6, prim=ev, result=False, already_set=False, waited_ns=500,
           timeout=0.0005, site="app.py:3")
    f = _one(_find(log, tmp_path), "lost_wakeup")
    assert f.call_sites == ["app.py:1", "app.py:3"]


def test_long_holds_and_waits_over_thresholds(tmp_path: Path) -> None:
    """Holds and waits over the thresholds are warnings with their maxima."""
    log = Log()
    lock = log.created(1)
    log.acquire(7, lock, "app.py:10")
    log.release(7, lock, hold=5_000_000)
    log.acquire(8, lock, "app.py:20", wait=9_000_000, blocked_by=7)
    log.release(8, lock, hold=10)
    found = _find(log, tmp_path, long_hold_ns=1_000_000, long_wait_ns=1_000_000)
    assert _one(found, "long_hold").details["max_ns"] == 5_000_000
    assert _one(found, "long_wait").call_sites == ["app.py:20"]
    assert _one(found, "hot_site").severity == "info"
    quiet = _find(log, tmp_path, long_hold_ns=10**9, long_wait_ns=10**9)
    assert "long_hold" not in kinds(quiet) and "long_wait" not in kinds(quiet)


def test_a_wait_that_timed_out_names_its_thread(tmp_path: Path) -> None:
    """A long wait that ended in a timeout (the acquire failed) still names the thread that
    waited."""
    log = Log()
    lock = log.created(1)
    log.thread(8, "waiter")
    log.acquire(7, lock, "app.py:10")
    log.acquire(8, lock, "app.py:20", wait=9_000_000, blocked_by=7, ok=False)
    log.release(7, lock, hold=9_000_000)
    found = _find(log, tmp_path, long_hold_ns=10**9, long_wait_ns=1_000_000)
    assert [t["name"] for t in _one(found, "long_wait").threads] == ["waiter"]


def test_misuse_rmw_permits_dropped_and_broken_barrier(tmp_path: Path) -> None:
    """Events the recorder reports directly each become a finding."""
    log = Log()
    lock = log.created(1)
    log.ev("misuse", 7, prim=lock, what="release_unlocked", error="release unlocked lock",
           site="app.py:1")
    log.ev("rmw", 7, prim="100.5", site="app.py:2")  # nobody else wrote 100.5: no finding
    log.ev("value_get", 8, prim="100.6", locked=False, site="app.py:3")
    log.ev("value_set", 9, prim="100.6", locked=True, site="app.py:5")  # (another writer)
    log.ev("value_set", 8, prim="100.6", locked=False, site="app.py:4")
    log.ev("stats", 7, prim="100.7", kind="Semaphore", owner=None,
           held_by=[{"tid": 8, "ident": 10008, "permits": 2}])
    log.ev("dropped", None, count=12)
    log.ev("barrier_broken", 8, prim="100.8", broken_by=7, why="abort", n_waiting=1,
           waited_ns=5, site="app.py:9")
    found = _find(log, tmp_path)
    assert _one(found, "misuse").severity == "error"
    rmw = [f for f in found if f.kind == "rmw"]
    assert [f.call_sites[0] for f in rmw] == ["app.py:4"]
    permits = _one(found, "permits_held")
    assert (permits.count, permits.threads[0]["tid"]) == (2, 8)
    assert _one(found, "dropped_events").count == 12
    assert _one(found, "barrier_broken").details["why"] == "abort"


def test_lock_held_at_exit(tmp_path: Path) -> None:
    """A lock still held when the process exited normally is a warning."""
    log = Log()
    lock = log.created(1)
    log.thread(7, "leaky")
    log.acquire(7, lock, "app.py:10")
    log.end()
    f = _one(_find(log, tmp_path), "held_at_end")
    assert f.severity == "warning" and f.call_sites == ["app.py:10"]


def test_findings_are_sorted_most_severe_first(tmp_path: Path) -> None:
    """Errors come before warnings, warnings before info."""
    log = Log()
    lock = log.created(1)
    log.ev("misuse", 7, prim=lock, what="release_unowned", error="x", site="a.py:1")
    log.acquire(7, lock, "a.py:2", wait=10, blocked_by=8)
    log.release(7, lock, hold=10**9)
    found = _find(log, tmp_path)
    ranks = [("info", "warning", "error").index(f.severity) for f in found]
    assert ranks == sorted(ranks, reverse=True)


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("how", [{"blocking": False}, {"timeout": 0}, {"timeout": 0.0}])
def test_a_try_makes_no_lock_order_edge(tmp_path: Path, native: bool,
                                        how: dict[str, Any]) -> None:
    """Holding a, a *try* of b (blocking=False or timeout=0) that succeeds adds no edge a→b
    (it could not wait): b then a elsewhere is no inversion. Both kernels."""
    if native and kernel_class() is None:
        pytest.skip("native scanner not built")
    log = Log()
    a = log.created(1, name="a", site="app.py:1")
    b = log.created(2, name="b", site="app.py:2")
    log.thread(7, "t1")
    log.thread(8, "t2")
    log.acquire(7, a, "app.py:10")
    log.acquire(7, b, "app.py:11", **how)
    log.release(7, b)
    log.release(7, a)
    log.acquire(8, b, "app.py:20")
    log.acquire(8, a, "app.py:21")
    log.release(8, a)
    log.release(8, b)
    agg = scan_file(log.write(tmp_path), native=native)
    assert list(agg.edges) == [(b, a)]
    assert "lock_order" not in kinds(find_all(agg))


@pytest.mark.parametrize("native", [False, True])
def test_a_timed_acquire_makes_the_edge(tmp_path: Path, native: bool) -> None:
    """The twin: the same with a timed acquire of b (timeout 0.5) is an inversion."""
    if native and kernel_class() is None:
        pytest.skip("native scanner not built")
    log = Log()
    a = log.created(1, name="a", site="app.py:1")
    b = log.created(2, name="b", site="app.py:2")
    log.thread(7, "t1")
    log.thread(8, "t2")
    log.acquire(7, a, "app.py:10")
    log.acquire(7, b, "app.py:11", timeout=0.5)
    log.release(7, b)
    log.release(7, a)
    log.acquire(8, b, "app.py:20")
    log.acquire(8, a, "app.py:21")
    log.release(8, a)
    log.release(8, b)
    agg = scan_file(log.write(tmp_path), native=native)
    assert set(agg.edges) == {(a, b), (b, a)}
    assert "lock_order" in kinds(find_all(agg))
