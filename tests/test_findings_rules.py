"""The finding rules of issue 14 on hand-written logs: each case and its twin.

Nested-monitor verdicts from how the holder's wait ended, lock-order events of the recorder,
locks inherited at fork, semaphore holders replayed by native id, Event pulses, hot sites that
matter, tests tied to findings, misuse provoked on purpose, inline suppressions and baselines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_analyze_util import Log

from tracedsync.analysis.analyze import analyze
from tracedsync.analysis.findings import Finding, Options, find_all
from tracedsync.analysis.report import build_report
from tracedsync.analysis.suppress import key, read_baseline, write_baseline


def _find(log: Log | list[Log], tmp_path: Path, **opts: Any) -> list[Finding]:
    logs = log if isinstance(log, list) else [log]
    for one in logs:
        one.write(tmp_path)
    return build_report(analyze([str(tmp_path)], jobs=1), Options(**opts)).findings


def _kind(findings: list[Finding], kind: str) -> list[Finding]:
    return [f for f in findings if f.kind == kind]


# -- nested monitor ----------------------------------------------------------------------------
def _nested(log: Log, ended: str | None) -> None:
    lock = log.created(1, "Lock", site="app.py:1")
    cond = log.created(2, "Condition", site="app.py:2")
    log.thread(7, "holder")
    log.thread(8, "notifier")
    log.ev("cond_wait", 7, prim=cond, lock="100.3", saved_depth=1, timeout=5.0, site="app.py:9")
    log.ev("nested_monitor", 8, prim=lock, name=None, kind="Lock", thread="notifier",
           cond=cond, cond_name=None, cond_lock="100.3", holder=7, holder_thread="holder",
           holder_site="app.py:9", holder_func="f", held_site=None, timeout=5.0,
           stack=["app.py:20 notify"], holder_stack=["app.py:9 wait"], site="app.py:20")
    if ended is not None:
        log.ev("cond_wake", 7, prim=cond, waited_ns=5_000_000, notified=ended == "notified",
               reacquire_ns=0, site="app.py:9")
    log.end()


@pytest.mark.parametrize(("ended", "severity"),
                         [(None, "warning"), ("timeout", "warning"), ("notified", "info")])
def test_nested_monitor_verdict_follows_how_the_wait_ended(
    tmp_path: Path, ended: str | None, severity: str
) -> None:
    """Never ended (the process exited: daemon threads stuck), ended by its timeout: a lockout;
    ended by a notify: only held up. Both threads, both sites and both stacks are named."""
    log = Log()
    _nested(log, ended)
    (f,) = _kind(_find(log, tmp_path), "nested_monitor")
    assert f.severity == severity
    assert f.call_sites[:2] == ["app.py:20", "app.py:9"]
    assert {t["name"] for t in f.threads} == {"holder", "notifier"}
    assert [s["stack"] for s in f.details["stacks"]] == [["app.py:20 notify"], ["app.py:9 wait"]]


def test_a_hung_process_waiting_on_a_condition_holding_a_lock(tmp_path: Path) -> None:
    """Without the event: a log that stops (no session_end) with a thread waiting on a
    Condition while holding another lock is a likely lockout; its twin, holding only the
    condition's own lock (released by the wait), is nothing."""
    log = Log()
    outer = log.created(1, "Lock", site="app.py:1")
    own = log.created(3, "RLock", site="app.py:2")
    cond = log.created(2, "Condition", site="app.py:2", lock=own)
    log.acquire(7, outer, "app.py:8")
    log.acquire(7, own, "app.py:9")
    log.release(7, own, saved_depth=1)
    log.ev("cond_wait", 7, prim=cond, lock=own, saved_depth=1, timeout=None, site="app.py:9")
    (f,) = _kind(_find(log, tmp_path), "nested_monitor")
    assert f.severity == "warning" and f.prims == [outer, cond]
    twin = Log(pid=101)
    own2 = twin.created(3, "RLock", site="app.py:2")
    cond2 = twin.created(2, "Condition", site="app.py:2", lock=own2)
    twin.acquire(7, own2, "app.py:9")
    twin.release(7, own2, saved_depth=1)
    twin.ev("cond_wait", 7, prim=cond2, lock=own2, saved_depth=1, timeout=None,
            site="app.py:9")
    other = tmp_path / "twin"
    other.mkdir()
    assert _kind(_find(twin, other), "nested_monitor") == []


# -- lock order seen at run time ---------------------------------------------------------------
def test_a_runtime_lock_order_event_is_a_lock_order_finding(tmp_path: Path) -> None:
    """A log at level contention has no uncontended acquires to see an inversion in; the
    recorder's event (``lock_order``, or ``order_violation`` before schema 3) is one, with
    its stack."""
    for name in ("lock_order", "order_violation"):
        log = Log(level="contention")
        a = log.created(1, site="app.py:1")
        b = log.created(2, site="app.py:2")
        log.thread(7, "t")
        log.ev(name, 7, prim=a, name=None, held=b, held_name=None, held_site="app.py:20",
               reverse=[{"from": a, "from_name": None, "to": b, "to_name": None,
                         "held_site": "app.py:10", "site": "app.py:11", "tid": 8}],
               stack=["app.py:21 f"], site="app.py:21")
        where = tmp_path / name
        where.mkdir()
        (f,) = _kind(_find(log, where), "lock_order")
        assert f.severity == "warning" and f.details["level"] == "instance"
        assert f.details["stacks"][0]["stack"] == ["app.py:21 f"]
        assert "app.py:11" in f.message and "app.py:21" in f.message


# -- held at exit ------------------------------------------------------------------------------
def test_a_lock_inherited_at_fork_is_not_held_at_exit(tmp_path: Path) -> None:
    """A forked child's counters at exit name, as the owner of its parent's lock, the thread
    that held it at the fork (the forking one) or a thread that does not exist there: no
    finding. The twin: a lock the child took itself and kept."""
    parent = Log(pid=100)
    lock = parent.created(1, "RLock", site="pool.py:3")
    parent.end()
    child = Log(pid=200)
    child.thread(200, "MainThread")  # ident 10200: the forking thread, in the child
    mine = child.created(5, "Lock", site="child.py:1")
    child.acquire(200, mine, "child.py:2")
    child.ev("stats", 200, prim=lock, kind="RLock", name=None, owner=10200, depth=1)
    child.ev("stats", 200, prim=mine, kind="Lock", name=None, owner=10200, depth=1)
    child.end()
    (f,) = _kind(_find([parent, child], tmp_path), "held_at_end")
    assert f.prims == [mine]


# -- semaphores -------------------------------------------------------------------------------
def test_permits_held_by_a_thread_whose_ident_was_reused(tmp_path: Path) -> None:
    """Two threads with one ident: the permit is on the one that acquired it (by native id,
    from the events), with where it was acquired, never the later thread."""
    log = Log()
    sem = log.created(1, "Semaphore", site="app.py:1")
    log.lines[-1]["value"] = 2
    log.ev("thread", 7, ident=555, name="leaker", daemon=False)
    log.ev("sem_acquire", 7, prim=sem, ok=True, contended=False, wait_ns=0, permits=1, held=1,
           blocking=True, timeout=None, site="app.py:5")
    log.ev("thread", 8, ident=555, name="bystander", daemon=False)  # the ident, reused
    log.ev("stats", 100, prim=sem, kind="Semaphore", name=None, owner=None, permits=1,
           held_by=[{"tid": 8, "ident": 555, "permits": 1}])
    log.end()
    (f,) = _kind(_find(log, tmp_path), "permits_held")
    assert [t["name"] for t in f.threads] == ["leaker"]
    assert f.call_sites == ["app.py:5"] and "app.py:1" in f.message


def test_a_balanced_semaphore_is_clean_whoever_holds(tmp_path: Path) -> None:
    """The twin: Semaphore(0) released by one thread, acquired by another: value at exit 0,
    initial 0, no finding although the acquirer "holds" a permit."""
    log = Log()
    sem = log.created(1, "Semaphore", site="app.py:1")
    log.lines[-1]["value"] = 0
    log.ev("sem_release", 8, prim=sem, n=1, permits=1, held=0, for_others=0, site="app.py:3")
    log.ev("sem_acquire", 7, prim=sem, ok=True, contended=False, wait_ns=0, permits=0, held=1,
           blocking=True, timeout=None, site="app.py:5")
    log.ev("stats", 100, prim=sem, kind="Semaphore", name=None, owner=None, permits=0,
           held_by=[{"tid": 7, "ident": 10007, "permits": 1}])
    log.end()
    assert _kind(_find(log, tmp_path), "permits_held") == []


# -- Event pulses -----------------------------------------------------------------------------
def test_a_set_cleared_by_another_thread_is_only_an_info(tmp_path: Path) -> None:
    """``wait(); clear(); work()`` loops clear a set another thread made while they worked:
    whether it was lost depends on that work, so it is an info; cleared by the setter (the
    pulse idiom), a warning."""
    for clearer, severity in ((9, "info"), (7, "warning")):
        log = Log()
        ev = log.created(1, "Event", site="app.py:1")
        log.ev("event_set", 7, prim=ev, was_set=False, site="app.py:2")
        log.ev("event_clear", clearer, prim=ev, was_set=True, site="app.py:3")
        log.ev("event_wait", 8, dt=10**6, prim=ev, result=False, already_set=False,
               waited_ns=500, timeout=0.0005, site="app.py:4")
        where = tmp_path / str(clearer)
        where.mkdir()
        (f,) = _kind(_find(log, where), "lost_wakeup")
        assert f.severity == severity


# -- hot sites ---------------------------------------------------------------------------------
def test_hot_sites_only_when_waiting_matters(tmp_path: Path) -> None:
    """1 µs of waiting over a 1 s run is no hot site; half the run is."""
    for wait, expected in ((1_000, []), (500_000_000, ["app.py:10"])):
        log = Log()
        lock = log.created(1)
        log.acquire(7, lock, "app.py:10", wait=wait, blocked_by=8)
        log.release(7, lock, dt=10**9)
        where = tmp_path / str(wait)
        where.mkdir()
        assert [f.call_sites[0] for f in _kind(_find(log, where), "hot_site")] == expected


# -- under pytest ------------------------------------------------------------------------------
def _misuse_in_test(tid: int, outcome: str) -> Log:
    log = Log()
    log.thread(7, "MainThread")
    log.thread(9, "worker")
    lock = log.created(1, site="test_x.py:3")
    log.ev("test", 7, nodeid="test_x.py::test_a", phase="start")
    log.ev("misuse", tid, prim=lock, what="release_unlocked", error="release unlocked lock",
           site="test_x.py:4")
    log.ev("test", 7, nodeid="test_x.py::test_a", phase="end", outcome=outcome)
    log.end()
    return log


@pytest.mark.parametrize(("tid", "outcome", "severity"),
                         [(7, "passed", "info"), (9, "passed", "error"), (7, "failed", "error")])
def test_misuse_provoked_by_a_passing_test(tmp_path: Path, tid: int, outcome: str,
                                          severity: str) -> None:
    """A misuse that raised in the test's own thread, in a test that passed, was provoked on
    purpose (an info); in another thread, or in a failing test, it stays an error. Each names
    the test."""
    (f,) = _kind(_find(_misuse_in_test(tid, outcome), tmp_path), "misuse")
    assert f.severity == severity and f.tests == ["test_x.py::test_a"]


# -- suppressions ------------------------------------------------------------------------------
def _misuse_at(tmp_path: Path, source: str) -> Log:
    src = tmp_path / "code.py"
    src.write_text(source, encoding="utf-8")
    log = Log()
    lock = log.created(1, site=f"{src}:1")
    log.ev("misuse", 7, prim=lock, what="release_unlocked", error="x", site=f"{src}:2")
    log.end()
    return log


@pytest.mark.parametrize(("comment", "kept"), [
    ("", True),
    ("  # tracedsync: ignore[misuse]", False),
    ("  # tracedsync: ignore", False),
    ("  # tracedsync: ignore[rmw, deadlock]", True),
])
def test_an_inline_comment_suppresses_its_kinds(tmp_path: Path, comment: str,
                                                kept: bool) -> None:
    """``# tracedsync: ignore[kind]`` on the acquiring (here: misusing) line leaves the
    finding out of the findings, into the suppressed ones."""
    log = _misuse_at(tmp_path, f"lock = Lock()\nlock.release(){comment}\n")
    log.write(tmp_path)
    report = build_report(analyze([str(tmp_path)], jobs=1))
    assert bool(_kind(report.findings, "misuse")) == kept
    assert bool(_kind(report.suppressed, "misuse")) != kept


def test_an_alias_in_a_comment_on_the_creating_line(tmp_path: Path) -> None:
    """The creating line counts too, and ``order`` stands for ``lock_order``."""
    src = tmp_path / "code.py"
    src.write_text("a = Lock()  # tracedsync: ignore[order]\nb = Lock()\n", encoding="utf-8")
    log = Log()
    a = log.created(1, site=f"{src}:1")
    b = log.created(2, site=f"{src}:2")
    for first, second, tid in ((a, b, 7), (b, a, 8)):
        log.acquire(tid, first, "x.py:1")
        log.acquire(tid, second, "x.py:2")
        log.release(tid, second)
        log.release(tid, first)
    log.write(tmp_path)
    report = build_report(analyze([str(tmp_path)], jobs=1))
    assert _kind(report.findings, "lock_order") == []
    assert _kind(report.suppressed, "lock_order")[0].details["suppressed"].startswith(
        "ignore comment")


def test_a_baseline_key_survives_a_moved_line_and_another_run(tmp_path: Path) -> None:
    """The key is the kind and the sites' files and line texts: the same after lines moved
    (and in another run, with other pids and ids); another line's finding has another key."""
    import linecache

    first = _misuse_at(tmp_path, "lock = Lock()\nlock.release()\n")
    (f1,) = find_all(first.scan(tmp_path))
    k1 = key(f1)
    src = tmp_path / "code.py"
    src.write_text("\n\nlock = Lock()\nlock.release()\n", encoding="utf-8")  # lines moved
    linecache.checkcache(str(src))
    log = Log(pid=999)
    lock = log.created(4, site=f"{src}:3")
    log.ev("misuse", 3, prim=lock, what="release_unlocked", error="x", site=f"{src}:4")
    moved = tmp_path / "moved"
    moved.mkdir()
    (f2,) = find_all(log.scan(moved))
    assert key(f2) == k1
    other = tmp_path / "other"
    other.mkdir()
    (f3,) = find_all(_misuse_at(other, "lock = Lock()\nlock.release()  # 2\n").scan(other))
    assert key(f3) != k1
    path = tmp_path / "baseline.json"
    f2.key = k1
    assert write_baseline(str(path), [f2]) == 1
    assert read_baseline(str(path)) == {k1}


def test_an_empty_log_names_no_host(tmp_path: Path) -> None:
    """A process killed before its first flush leaves an empty file: it is no second host (the
    report stays on one host's clock, its ids and thread names unqualified)."""
    log = Log()
    log.ev("session", 100, schema=3, version="0.1.0", ppid=1, argv=[], python="3.11.7",
           hostname="box", boot_id="b1", wall_ns=0, mono_ns=0, settings={})
    lock = log.created(1)
    log.thread(7, "worker")
    log.acquire(7, lock, "app.py:1")
    log.end()
    log.lines.pop(0)  # (the builder's own header, without a host)
    log.write(tmp_path)
    (tmp_path / "tracedsync-555.jsonl").write_bytes(b"")
    report = build_report(analyze([str(tmp_path)], jobs=1))
    assert "hosts" not in report.totals
    (f,) = [f for f in report.findings if f.kind == "held_at_end"]
    assert f.prims == [lock] and "worker (100/7)" in f.message


@pytest.mark.parametrize(("ends", "severity", "words"), [
    ([True, True], None, None),  # a thread outside the cycle ended it (certain: false)
    ([False, True], "warning", "gave up after"),
    ([None, None], "warning", "by an exception"),
    ([], "warning", "never exited normally"),
])
def test_a_runtime_cycle_is_worded_by_how_its_waits_ended(
    tmp_path: Path, ends: list[bool | None], severity: str | None, words: str | None
) -> None:
    """An unsure cycle (plain Locks): dropped when every wait got its lock, a warning when one
    gave up, was interrupted, or never ended (here the process hung)."""
    log = Log()
    log.thread(7, "t1")
    log.thread(8, "t2")
    cycle = [{"tid": 7, "pid": 100, "prim": "100.1", "site": "app.py:10", "timeout": 1.0},
             {"tid": 8, "pid": 100, "prim": "100.2", "site": "app.py:20", "timeout": None}]
    log.ev("deadlock", 7, cycle=cycle, certain=False, detected_by="acquire", action="report")
    for (tid, prim), ok in zip(((7, "100.1"), (8, "100.2")), ends, strict=False):
        log.ev("deadlock_end", tid, prim=prim, what="acquire", ok=ok, waited_ns=10**9,
               timeout=1.0 if tid == 7 else None, site="app.py:10")
    found = _kind(_find(log, tmp_path), "deadlock")
    if severity is None:
        assert found == []
        return
    (f,) = found
    assert f.severity == severity and words in f.message
