"""Statistics: histograms, per-primitive/creation-site/call-site figures, merging, round trips."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_analyze_util import Log

from tracedsync.analysis import hist
from tracedsync.analysis.aggregate import Aggregate
from tracedsync.analysis.analyze import analyze
from tracedsync.analysis.hist import Histogram, bucket_high, bucket_low, bucket_of
from tracedsync.analysis.render_json import dumps, loads
from tracedsync.analysis.report import build_report


def test_buckets_are_contiguous_and_narrow() -> None:
    """Every value falls in its bucket; buckets tile the line and are at most 1/16 wide."""
    for v in [*range(0, 300), 10**6, 2**40 + 12345]:
        i = bucket_of(v)
        assert bucket_low(i) <= v <= bucket_high(i)
        assert bucket_high(i) + 1 == bucket_low(i + 1)
        assert bucket_high(i) - bucket_low(i) <= max(1, bucket_low(i) // 16)


def test_percentiles_exact_for_small_values_and_close_for_large() -> None:
    """Below 32 ns percentiles are exact; above, within half a bucket (about 3 %)."""
    h = Histogram()
    h.add_values(list(range(1, 21)))
    assert (h.percentile(0.5), h.percentile(0.95), h.max) == (10, 19, 20)
    rnd = random.Random(1)
    values = [rnd.randrange(1, 10**9) for _ in range(5000)]
    big = Histogram()
    big.add_values(values)
    exact = sorted(values)
    for q in (0.5, 0.95, 0.99):
        want = exact[int(q * len(exact) + 0.999999) - 1]
        assert abs(big.percentile(q) - want) <= want * 0.04
    assert (big.count, big.min, big.max, big.total) == (5000, exact[0], exact[-1], sum(values))


def test_bulk_add_merge_and_json_agree_with_one_by_one() -> None:
    """add_values, add and merge give the same histogram, which survives JSON."""
    rnd = random.Random(2)
    values = [rnd.randrange(0, 10**7) for _ in range(1000)]
    one = Histogram()
    for v in values:
        one.add(v)
    a, b = Histogram(), Histogram()
    a.add_values(values[:300])
    b.add_values(values[300:])
    a.merge(b)
    assert a == one
    assert Histogram.from_dict(orjson.loads(orjson.dumps(one.to_dict()))) == one


def test_merged_sums_parts_alike_native_and_python() -> None:
    """Histogram.merged gives what merging one by one gives, with the native sum and the
    Python one, empty parts skipped, and totals beyond 64 bits summed exactly."""
    rnd = random.Random(3)
    parts = []
    for n in (0, 1, 50, 2000, 0, 7):
        h = Histogram()
        h.add_values([rnd.randrange(0, 10**8) for _ in range(n)])
        parts.append(h)
    one = Histogram()
    for p in parts:
        one.merge(p)
    assert Histogram.merged(parts) == one
    assert Histogram.merged(iter(parts)) == one
    assert Histogram.merged([]) == Histogram()
    assert hist._python_sum_hists(parts) == hist.sum_hists(parts)
    huge = Histogram()
    huge.add_values([2**62, 2**62 + 1])  # a total beyond 64 bits: summed in Python
    both = Histogram.merged([huge, huge])
    assert (both.count, both.total, both.min, both.max) == (4, 2**64 + 2, 2**62, 2**62 + 1)
    assert sum(both.buckets.values()) == 4
    if hist.sum_hists is not hist._python_sum_hists:
        assert hist.sum_hists([huge, huge]) is None


def _workload(tmp_path: Path) -> Log:
    log = Log()
    lock = log.created(1, "RLock", name="accounts", site="app.py:5")
    log.thread(7, "a")
    log.thread(8, "b")
    log.acquire(7, lock, "app.py:10")
    log.acquire(7, lock, "app.py:11", depth=2)
    log.release(7, lock, depth=1)
    log.release(7, lock, hold=5000)  # attributed to app.py:10, the depth-0 acquire
    log.acquire(8, lock, "app.py:20", wait=3000, blocked_by=7)
    log.release(8, lock, hold=700)
    log.acquire(8, lock, "app.py:20", ok=False, dt=10)
    log.ev("sem_acquire", 8, prim="100.9", ok=True, contended=True, wait_ns=400)
    log.ev("mystery", 8, prim="100.9")
    log.end()
    return log


def test_primitive_and_call_site_figures(tmp_path: Path) -> None:
    """Acquisitions, contention, waits, holds by acquiring site, depth, owners, failures."""
    report = build_report(_workload(tmp_path).scan(tmp_path))
    prim = next(r for r in report.primitives if r.key == "100.1")
    assert (prim.label, prim.kind, prim.created_at) == ("accounts (RLock 100.1)", "RLock",
                                                        "app.py:5")
    assert (prim.acquisitions, prim.contended, prim.failed, prim.max_depth) == (3, 1, 1, 2)
    assert prim.contended_share == 0.25
    assert (prim.wait.count, prim.wait.max, prim.hold.count, prim.hold.max) == (1, 3000, 2, 5000)
    assert [(t["tid"], t["name"]) for t in prim.threads] == [(7, "a"), (8, "b")]
    assert prim.processes == [100]
    sites = {r.key: r for r in report.call_sites}
    assert sites["app.py:10"].hold.max == 5000
    assert sites["app.py:11"].hold.count == 0
    assert (sites["app.py:20"].hold.max, sites["app.py:20"].wait.p50) == (700, 3000)
    created = {r.key: r for r in report.creation_sites}
    assert created["RLock@app.py:5"].acquisitions == 3
    other = next(r for r in report.primitives if r.key == "100.9")
    assert other.other_events == {"mystery": 1, "sem_acquire": 1}
    assert other.other_wait.max == 400
    assert report.totals["event_counts"]["mystery"] == 1


def test_condition_figures(tmp_path: Path) -> None:
    """Condition waits, timeouts, notifies and unheard notifies are counted per condition."""
    log = Log()
    lock = log.created(1, "RLock")
    cond = log.created(2, "Condition", lock=lock)
    log.ev("notify", 7, prim=cond, n=1, waiters=0, woken=[], site="app.py:3")
    log.ev("cond_wait", 8, prim=cond, lock=lock, saved_depth=1, timeout=None, site="app.py:4")
    log.ev("notify_all", 7, prim=cond, n=1, waiters=1, woken=[8], site="app.py:5")
    log.ev("cond_wake", 8, prim=cond, waited_ns=10, notified=True, reacquire_ns=0)
    report = build_report(log.scan(tmp_path))
    row = next(r for r in report.primitives if r.key == cond)
    assert (row.cond_waits, row.cond_timeouts, row.notifies, row.unheard_notifies) == (1, 0, 2, 1)


@pytest.mark.parametrize(("schema", "counter"), [(1, "contended"), (2, "contended_count")])
def test_contention_level_uses_the_counters(tmp_path: Path, schema: int, counter: str) -> None:
    """At level contention uncontended acquires are not logged: the stats counters count.
    Schema 1 named the stats counter `contended`; schema 2, `contended_count`."""
    log = Log(level="contention", schema=schema)
    lock = log.created(1)
    log.acquire(7, lock, "app.py:10", wait=50, blocked_by=8)
    log.release(7, lock)
    log.ev("stats", 7, prim=lock, kind="Lock", acquisitions=40, owner=None, **{counter: 3})
    row = build_report(log.scan(tmp_path)).primitives[0]
    assert (row.acquisitions, row.contended, row.counters_only) == (40, 3, True)


def test_merged_files_equal_one_pass_and_jobs_agree(tmp_path: Path) -> None:
    """Aggregates of two files merge to the same report as analysing both; --jobs 2 too;
    and a saved aggregate round-trips through JSON."""
    a = _workload(tmp_path)
    b = Log(pid=200)
    lock_b = b.created(1)
    b.acquire(9, lock_b, "app.py:10", wait=10, blocked_by=1)
    b.release(9, lock_b)
    a.write(tmp_path)
    b.write(tmp_path)
    serial = analyze([str(tmp_path)], jobs=1)
    parallel = analyze([str(tmp_path)], jobs=2)
    assert serial.to_dict() == parallel.to_dict()
    again = Aggregate.from_dict(orjson.loads(orjson.dumps(serial.to_dict())))
    assert again.to_dict() == serial.to_dict()
    site = {r.key: r for r in build_report(serial).call_sites}["app.py:10"]
    assert site.processes == [100, 200]
    assert site.acquisitions == 2


def test_report_round_trips_through_json(tmp_path: Path) -> None:
    """The JSON form rebuilds an equal report."""
    report = build_report(_workload(tmp_path).scan(tmp_path))
    assert loads(dumps(report)) == report



def test_creation_site_survives_a_child_that_only_has_stats(tmp_path: Path) -> None:
    """A forked child knows an inherited lock only from `stats`; merged in either order, the
    report still has the creating process's site."""
    parent = Log(pid=500)
    prim = parent.created(1, "Lock", name="shared", site="app.py:7")
    parent.acquire(500, prim, "app.py:9")
    parent.release(500, prim)
    parent.end()
    child = Log(pid=100)  # tracedsync-100.jsonl sorts first: merged before the parent's file
    child.ev("stats", 100, prim=prim, kind="Lock", name="shared", acquisitions=1, contended=0)
    child.acquire(100, prim, "app.py:12")
    child.release(100, prim)
    child.end()
    parent.write(tmp_path)
    child.write(tmp_path)
    report = build_report(analyze([str(tmp_path)]))
    (row,) = [r for r in report.primitives if r.key == prim]
    assert row.created_at == "app.py:7"
    assert row.acquisitions == 2


def _rmw_log(pairs: int, with_values: bool, pid: int = 300) -> Log:
    """One thread (tid = pid) read-modify-writes a Value ``pairs`` times while another one
    (tid = pid + 1) writes it too; at level contention (no value events), both threads' first
    read-modify-write is all there is."""
    log = Log(pid=pid, level="full" if with_values else "contention")
    prim = log.created(2, "Value", name="counter", site="app.py:3")
    for i in range(pairs):
        if with_values:
            log.ev("value_get", pid, prim=prim, locked=False, site="app.py:9")
        if i == 0:  # the run-time finding comes once per site, before its value_set
            log.ev("rmw", pid, prim=prim, site="app.py:9", read_site="app.py:9",
                   read_locked=False)
            if not with_values:  # the other thread's, at the same line
                log.ev("rmw", pid + 1, prim=prim, site="app.py:9", read_site="app.py:9",
                       read_locked=False)
        if with_values:
            log.ev("value_set", pid + 1, prim=prim, locked=True, site="app.py:12")
            log.ev("value_set", pid, prim=prim, locked=False, site="app.py:9")
    log.end()
    return log


def test_rmw_counted_once_per_occurrence(tmp_path: Path) -> None:
    """At full, the value_get/value_set pairs give the count (the rmw event does not add one);
    with only the rmw events (level contention) each thread's counts once."""
    full = tmp_path / "full"
    full.mkdir()
    _rmw_log(3, with_values=True).write(full)
    (row,) = build_report(analyze([str(full)])).findings
    assert row.kind == "rmw" and row.count == 3 and row.severity == "error"
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    _rmw_log(3, with_values=False).write(quiet)
    (row,) = build_report(analyze([str(quiet)])).findings
    assert row.kind == "rmw" and row.count == 2 and row.severity == "warning"


def _pairs_log(accesses: list[tuple[str, dict[str, Any]]]) -> Log:
    log = Log(pid=400)
    prim = log.created(2, "Array", name="a", site="app.py:3")
    for name, fields in accesses:
        log.ev(name, 400, prim=prim, site="app.py:9", **fields)
    log.end()
    return log


@pytest.mark.parametrize(("accesses", "count"), [
    # another item: no read-modify-write of either
    ([("value_get", {"locked": False, "index": 0}), ("value_set", {"locked": False, "index": 1})],
     0),
    # the same item
    ([("value_get", {"locked": False, "index": 0}), ("value_set", {"locked": False, "index": 0})],
     1),
    # read without the lock, written with it: the update can still be lost
    ([("value_get", {"locked": False}), ("value_set", {"locked": True})], 1),
    # read with it, written without it
    ([("value_get", {"locked": True}), ("value_set", {"locked": False})], 1),
    # held at both
    ([("value_get", {"locked": True}), ("value_set", {"locked": True})], 0),
    # unknown is not unsafe
    ([("value_get", {"locked": None}), ("value_set", {"locked": False})], 0),
])
def test_rmw_pairs_follow_the_run_time_rule(
    tmp_path: Path, accesses: list[tuple[str, dict[str, Any]]], count: int
) -> None:
    """The analyzer pairs a value_get with the value_set of the same item, and counts it when
    the lock was not held at the read or at the write, as the run-time rule does."""
    _pairs_log(accesses).write(tmp_path)
    rmws = analyze([str(tmp_path)]).facts.rmws
    assert sum(span[2] for per in rmws.values() for span in per.values()) == count
