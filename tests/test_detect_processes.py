"""Deadlocks across processes: multiprocessing locks taken in opposite orders by threads of
different processes, found at run time through the shared wait table (`_xwaits`).

Coordination is by state, never by duration: a process is known to be blocked when its wait
appears in the shared table, a report when it is in the log file; every wait for that is
bounded, and the processes left deadlocked on purpose are terminated at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from typing import Any

import pytest
from helpers import prim_of, until

import tracedsync
import tracedsync.mp
from tracedsync._core import waits
from tracedsync._multiprocessing import owner as _mp_owner
from tracedsync._multiprocessing import wait_table as _xwaits
from tracedsync._multiprocessing.locks import waiting_here
from tracedsync.analysis.analyze import analyze
from tracedsync.analysis.report import build_report
from tracedsync.testing import capture

pytestmark = pytest.mark.skipif(not _xwaits.enabled(), reason="no shared wait table here")

METHODS = multiprocessing.get_all_start_methods()
LIMIT = 30.0


def _deadlocks(log_dir: str, pid: int | None) -> list[dict[str, Any]]:
    path = os.path.join(log_dir, f"tracedsync-{pid}.jsonl")
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and '"deadlock"' in line:
                ev = json.loads(line)
                if ev.get("event") == "deadlock":
                    out.append(ev)
    return out


# -- what the children run (module level: spawn and forkserver children import them) -------------
def _hold_then_take(first: Any, second: Any, held: Any, go: Any, log_dir: str, on: str,
                    out: Any) -> None:
    """Hold ``first``; once told, take ``second`` (no timeout: a deadlock blocks for ever)."""
    tracedsync.configure(log_dir=log_dir, on_deadlock=on, flush_interval=0.02)
    with first:
        held.set()
        go.wait(LIMIT)
        try:
            with second:
                out.put("took")
        except tracedsync.DeadlockError as exc:
            out.put(("raised", str(exc)))


def _in_cycle(first: Any, second: Any, barrier: Any, log_dir: str) -> None:
    """Hold ``first``, wait until every process holds its own, then take ``second``."""
    tracedsync.configure(log_dir=log_dir, on_deadlock="report", flush_interval=0.02)
    with first:
        barrier.wait(LIMIT)
        with second:  # never: the others hold it and wait for ours
            pass


# -- the thread that closes the cycle raises ----------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_abba_across_processes_raises_in_the_thread_that_closes_it(
    method: str, fresh_dir: str
) -> None:
    """The parent holds A, a child holds B and blocks on A; the parent's acquire of B closes the
    cycle and raises DeadlockError (the child, still blocked, is in the cycle with its site);
    once the parent lets go of A, the child takes it: nothing else changed."""
    ctx = multiprocessing.get_context(method)
    before = tracedsync.settings().on_deadlock
    tracedsync.configure(on_deadlock="raise")
    try:
        a = tracedsync.mp.Lock(ctx=ctx, name="a")
        b = tracedsync.mp.Lock(ctx=ctx, name="b")
        held, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
        child = ctx.Process(target=_hold_then_take, args=(b, a, held, go, fresh_dir, "raise", out))
        with a:
            child.start()
            assert held.wait(LIMIT)
            go.set()
            (theirs,) = until(lambda: _xwaits.waits_of(child.pid or 0), "the child to block",
                              limit=LIMIT)
            assert theirs.prim == prim_of(a)
            (seen,) = [o for o in tracedsync.snapshot().other_processes if o.pid == child.pid]
            assert (seen.prim, seen.what, seen.held_by) == (
                prim_of(a), "acquire", (os.getpid(), threading.get_native_id()))
            with capture() as events, pytest.raises(tracedsync.DeadlockError) as info, b:
                pass  # pragma: no cover - the cycle is closed: it raises
        assert out.get(timeout=LIMIT) == "took"
        child.join(LIMIT)
        assert child.exitcode == 0
    finally:
        tracedsync.configure(on_deadlock=before)
        if child.is_alive():  # only if the test failed: never leave it blocked
            child.terminate()
    mine, other = info.value.cycle
    assert (mine["pid"], mine["prim"], mine["held_by_pid"]) == (os.getpid(), prim_of(b), child.pid)
    assert (other["pid"], other["prim"], other["held_by_pid"]) == (child.pid, prim_of(a),
                                                                    os.getpid())
    assert other["site"].endswith(f"{__file__}:{_hold_then_take.__code__.co_firstlineno + 8}")
    assert other["func"] and other["func"].endswith("_hold_then_take")
    assert other["stack"] is None and mine["stack"]  # the child's stack is in the child's log
    (ev,) = [e for e in events if e["event"] == "deadlock"]
    assert (ev["detected_by"], ev["action"], ev["certain"]) == ("acquire", "raise", True)
    assert f"pid {child.pid} tid" in str(info.value)


# -- both processes report, each with its own stacks; analyze merges them ----------------------
def _start_cycle(ctx: Any, locks: list[Any], barrier: Any, fresh_dir: str) -> list[Any]:
    n = len(locks)
    procs = [ctx.Process(target=_in_cycle, args=(locks[i], locks[(i + 1) % n], barrier,
                                                 fresh_dir))
             for i in range(n)]
    for p in procs:
        p.start()
    return procs


def _stop(procs: list[Any]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(LIMIT)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("method", [m for m in ("fork", "spawn") if m in METHODS])
def test_cycle_across_processes_is_reported_by_each(method: str, n: int, fresh_dir: str) -> None:
    """n processes, each holding its own lock and waiting for the next one's: every process
    writes a ``deadlock`` event naming the whole cycle, with its own thread's stack; the
    analyzer makes one finding of them, with every thread's stack."""
    ctx = multiprocessing.get_context(method)
    locks = [tracedsync.mp.Lock(ctx=ctx, name=f"L{i}") for i in range(n)]
    barrier = ctx.Barrier(n)  # alive until the children have it (spawn unpickles it late)
    procs = _start_cycle(ctx, locks, barrier, fresh_dir)
    try:
        reports = until(
            lambda: (lambda got: got if all(got) else None)(
                [_deadlocks(fresh_dir, p.pid) for p in procs]),
            "every process to report the deadlock", limit=LIMIT)
    finally:
        _stop(procs)
    pids = [p.pid for p in procs]
    for i, (ev,) in enumerate(reports):
        assert ev["detected_by"] in ("acquire", "watchdog") and ev["action"] == "report"
        cycle = ev["cycle"]
        assert sorted(c["pid"] for c in cycle) == sorted(pids)
        by_pid = {c["pid"]: c for c in cycle}
        for j, p in enumerate(pids):  # each waits for the next one's lock, held by the next
            assert by_pid[p]["prim"] == prim_of(locks[(j + 1) % n])
            assert by_pid[p]["held_by_pid"] == pids[(j + 1) % n]
        assert by_pid[pids[i]]["stack"]  # its own thread: the stack
        assert all(c["stack"] is None for c in cycle if c["pid"] != pids[i])
    report = build_report(analyze([fresh_dir]))
    (finding,) = [f for f in report.findings if f.kind == "deadlock"]
    assert finding.severity == "error" and finding.count == 1
    assert sorted(finding.processes) == sorted(pids)
    assert all(c["stack"] for c in finding.details["cycle"])


def _middle(mine: Any, first: Any, barrier: Any, log_dir: str, out: Any) -> None:
    """Make lock C here (the first process never sees it), start a child that holds C and waits
    for ``first``; hold ``mine`` and wait for C."""
    ctx = multiprocessing.get_context("fork")
    c = tracedsync.mp.Lock(ctx=ctx, name="C")
    child = ctx.Process(target=_in_cycle, args=(c, first, barrier, log_dir))
    child.start()
    out.put((child.pid, prim_of(c)))
    _in_cycle(mine, c, barrier, log_dir)


@pytest.mark.skipif("fork" not in METHODS, reason="needs fork")
def test_cycle_through_a_lock_the_checker_does_not_have(fresh_dir: str) -> None:
    """P1 holds A and waits for B; P2 holds B and waits for C, a lock P2 made after P1 started;
    P2's child P3 holds C and waits for A. P1 cannot read C's owner: it trusts what P2
    published once P2's refreshed read postdates P3's wait, and reports the cycle too."""
    ctx = multiprocessing.get_context("fork")
    a = tracedsync.mp.Lock(ctx=ctx, name="A")
    b = tracedsync.mp.Lock(ctx=ctx, name="B")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    p1 = ctx.Process(target=_in_cycle, args=(a, b, barrier, fresh_dir))
    p1.start()
    p2 = ctx.Process(target=_middle, args=(b, a, barrier, fresh_dir, out))
    p2.start()
    p3_pid, c_prim = out.get(timeout=LIMIT)
    try:
        (ev,) = until(lambda: _deadlocks(fresh_dir, p1.pid), "the first process to report",
                        limit=LIMIT)
    finally:
        os.kill(p3_pid, 15)
        _stop([p1, p2])
    by_pid = {c["pid"]: c for c in ev["cycle"]}
    assert set(by_pid) == {p1.pid, p2.pid, p3_pid}
    assert by_pid[p2.pid]["prim"] == c_prim and by_pid[p2.pid]["held_by_pid"] == p3_pid
    assert by_pid[p3_pid]["prim"] == prim_of(a) and by_pid[p3_pid]["held_by_pid"] == p1.pid


# -- the trust rule for a holder read from the table -------------------------------------------
@pytest.mark.parametrize("holder_blocked_first", [True, False])
def test_a_holder_read_before_it_blocked_is_not_trusted(holder_blocked_first: bool) -> None:
    """A holder read from the table (``read_at``) may have released since: the edge counts only
    if that holder's own wait began before the read (a blocked thread releases nothing)."""
    a = tracedsync.Lock(name="a")
    from tracedsync._threading import locks as _locks

    st_a = _locks.lock_state(a)
    p1, p2 = 2**22 + 7, 2**22 + 9  # no such processes here
    me = (os.getpid(), threading.get_native_id())
    read = time.monotonic_ns()
    later = read + (-1000 if holder_blocked_first else 1000)
    remote = {
        (p1, 1): waits.RemoteWait(p1, 1, f"{p1}.1", owners=((p2, 2),), kind="Lock",
                                  since=read - 5000, read_at=read),
        (p2, 2): waits.RemoteWait(p2, 2, f"{p2}.1", owners=(me,), kind="Lock", since=later),
    }
    before = waits._remote
    waits.set_remote(lambda pid, tid: remote.get((pid, tid)))
    try:
        with a, capture() as events:
            waits.waiting(st_a, lambda: ((p1, 1),), may_raise=False)
            waits.done()
    finally:
        waits.set_remote(before)
    found = [e for e in events if e["event"] == "deadlock"]
    assert len(found) == (1 if holder_blocked_first else 0)


# -- the table itself -----------------------------------------------------------------------------
def _publish_in_thread(table: Any, rec: Any, timeout: float | None) -> tuple[Any, Any]:
    """Publish a wait from a new thread; return (what lookup saw while published, after)."""
    seen: list[Any] = []

    def run() -> None:
        tid = threading.get_native_id()
        me = _xwaits.publish(table, "123.45", rec, True, False, timeout, _frame())
        seen.append(_xwaits.lookup(os.getpid(), tid))
        _xwaits.unpublish(me)
        seen.append(_xwaits.lookup(os.getpid(), tid))

    t = threading.Thread(target=run)
    t.start()
    t.join(LIMIT)
    return seen[0], seen[1]


def _frame() -> Any:
    import sys

    return sys._getframe(1)


def test_publish_lookup_unpublish() -> None:
    """A published wait reads back as it was written (lock, holder, flags, timeout, site); once
    unpublished it is gone."""
    table = _xwaits.table_for_new_lock()
    assert table is not None
    rec = _mp_owner.new_record()
    rec[_mp_owner.OWNER] = (4242 << 32) | 17
    during, after = _publish_in_thread(table, rec, 1.5)
    assert during.prim == "123.45" and during.owners == ((4242, 17),)
    assert (during.kind, during.what, during.timeout) == ("RLock", "acquire", 1.5)
    assert during.read_at is not None and during.since is not None
    assert during.site.startswith(f"{__file__}:") and during.site.endswith("run")
    assert after is None


def test_a_dead_process_block_is_reclaimed_and_a_full_table_publishes_nothing(
    tmp_path: Any,
) -> None:
    """Blocks claimed by processes that have exited are taken over; when every block belongs to
    a live process, the wait is not published (and nothing fails)."""
    table = _xwaits.Table(os.fspath(tmp_path / "t"), creator=True)
    dead = multiprocessing.get_context("spawn" if "fork" not in METHODS else "fork").Process(
        target=int)
    dead.start()
    dead.join(LIMIT)
    for b in range(_xwaits.BLOCKS):
        _xwaits._Q.pack_into(table.mm, b * 8, dead.pid or 0)
    assert table.free_slot() == _xwaits._HEADERS
    assert _xwaits._HEADS.unpack_from(table.mm, 0)[0] == os.getpid()
    other = os.getppid()  # alive, and not us
    for b in range(_xwaits.BLOCKS):
        _xwaits._Q.pack_into(table.mm, b * 8, other)
    table.blocks = []
    assert table.free_slot() is None


def test_a_slot_being_written_is_not_read(tmp_path: Any) -> None:
    """The seqlock: a slot whose sequence number is odd (a write under way) reads as None."""
    table = _xwaits.Table(os.fspath(tmp_path / "t"), creator=True)
    off = _xwaits._HEADERS
    table.write(off, (0, 5, 1, 2, 3, 4, 5, 0, -1, 0))
    assert table.read_slot(off) is not None
    _xwaits._Q.pack_into(table.mm, off, 7)
    assert table.read_slot(off) is None


def test_a_table_that_is_gone_is_not_adopted(tmp_path: Any) -> None:
    assert _xwaits.adopt(os.fspath(tmp_path / "gone")) is None
    bad = tmp_path / "short"
    bad.write_bytes(b"x" * 10)
    assert _xwaits.adopt(os.fspath(bad)) is None


@pytest.mark.skipif("fork" not in METHODS, reason="needs fork")
def test_a_forked_child_claims_its_own_block() -> None:
    """After fork the parent's blocks stay the parent's: the child's waits go to a block of its
    own."""
    table = _xwaits.table_for_new_lock()
    assert table is not None
    rec = _mp_owner.new_record()
    _publish_in_thread(table, rec, None)  # the parent has a block now
    mine = list(table.blocks)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()

    def child() -> None:
        t = _xwaits._tables[table.path]
        out.put((list(t.blocks), t.free_slot() is not None, list(t.blocks)))

    p = ctx.Process(target=child)
    p.start()
    before, ok, after = out.get(timeout=LIMIT)
    p.join(LIMIT)
    assert before == [] and ok and after and not set(after) & set(mine)


def test_a_failing_table_never_fails_the_acquire(monkeypatch: pytest.MonkeyPatch,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    """If the wait table fails, a contended multiprocessing acquire still blocks and succeeds as
    the original; cross-process detection turns itself off, saying so once on stderr."""
    def broken(*args: Any) -> None:
        raise OSError("the table is gone")

    monkeypatch.setattr(_xwaits, "_publish", broken)
    monkeypatch.setattr(_xwaits, "_broken", False)
    lock = tracedsync.mp.Lock(ctx=multiprocessing.get_context("spawn"))
    got = threading.Event()

    def take() -> None:
        with lock:
            got.set()

    with lock:
        t = threading.Thread(target=take)
        t.start()
        until(lambda: waiting_here(lock), "the thread to block")
    assert got.wait(LIMIT)
    t.join(LIMIT)
    assert _xwaits._broken
    assert capfd.readouterr().err.count("cross-process deadlock detection is off") == 1
