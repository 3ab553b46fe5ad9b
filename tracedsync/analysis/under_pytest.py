"""Findings of a traced pytest session: the tests they happened in, and misuse a test provoked.

Design note. The pytest plugin writes a ``test`` event as each test starts and ends (node id,
outcome, the thread running it), whenever the session is traced. `tests_of` turns them into
intervals, per host (one monotonic clock: events of the session's child processes compare
too), and each finding is tied to the tests whose interval holds one of its events' times (its
``stamps``: `Finding.stamps`). A finding made from counters only (lock order, long holds and
waits, hot sites, held at exit) has no event times: a lock held at exit is tied to the test
that took it and still held it at its end (``test_leak``, noted by the scanner at each test's
end); otherwise a finding is tied to the tests during which its threads other than the one
running the tests first appeared, if any.

Misuse a test provokes on purpose (``with pytest.raises(RuntimeError): lock.release()``) is no
bug of the code under test. The rule, sound on what the log shows: an occurrence is *expected*
when it happened in the thread that was running a test, during that test, and that test passed
(the original's exception was raised, as a misuse always is, and the test caught it, or it
would have failed). A misuse in another thread (a worker's exception is printed, and the test
may still pass) or in a test that failed is not. A misuse finding whose every occurrence is
expected becomes an ``info``, with the tests named; one occurrence not expected keeps it an
error.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

from .aggregate import Aggregate
from .findings import Finding


@dataclasses.dataclass(frozen=True)
class TestRun:
    """One test as it ran: when, in which thread, and how it ended."""

    __test__ = False  # not a test class, whatever its name

    start: int
    end: int
    nodeid: str
    outcome: str | None
    pid: int
    tid: int | None


def tests_of(agg: Aggregate) -> dict[str, list[TestRun]]:
    """The tests by host, in time order (a test without its end event lasts to the end)."""
    open_: dict[tuple[str, int, str], dict[str, Any]] = {}
    runs: dict[str, list[TestRun]] = {}
    notes = sorted(agg.facts.notes.get("test", []), key=lambda n: int(n.get("ts") or 0))
    for n in notes:
        host, pid, nodeid = str(n.get("host", "")), int(n.get("pid") or 0), str(n.get("nodeid"))
        if n.get("phase") == "start":
            open_[(host, pid, nodeid)] = n
            continue
        start = open_.pop((host, pid, nodeid), None)
        if start is not None:
            runs.setdefault(host, []).append(TestRun(
                int(start["ts"]), int(n["ts"]), nodeid, n.get("outcome"), pid, start.get("tid")))
    for (host, pid, nodeid), n in open_.items():
        runs.setdefault(host, []).append(TestRun(int(n["ts"]), 2**63 - 1, nodeid, None, pid,
                                                 n.get("tid")))
    for items in runs.values():
        items.sort(key=lambda r: (r.start, r.nodeid))
    return runs


def test_at(runs: list[TestRun], ts: int) -> TestRun | None:
    """The test running at ``ts`` (tests of one session do not overlap)."""
    i = bisect.bisect_right([r.start for r in runs], ts) - 1
    if i >= 0 and runs[i].start <= ts <= runs[i].end:
        return runs[i]
    return None


def attribute(findings: list[Finding], agg: Aggregate) -> None:
    """Fill each finding's ``tests``; downgrade misuse that tests provoked on purpose."""
    runs = tests_of(agg)
    if not runs:
        return
    born = _threads_born(agg)
    for f in findings:
        found: dict[str, TestRun] = {}
        for host, _pid, _tid, ts in f.stamps():
            r = test_at(runs.get(str(host), []), int(ts)) if isinstance(ts, int) else None
            if r is not None:
                found[r.nodeid] = r
        for n in agg.facts.notes.get("test_leak", []):  # a lock a test took and kept
            if set(n.get("prims") or ()) & set(f.prims) and any(
                    (t.get("pid"), t.get("tid")) == (n.get("pid"), n.get("tid"))
                    for t in f.threads):
                r = test_at(runs.get(str(n.get("host", "")), []), int(n.get("ts") or 0))
                if r is not None:
                    found[r.nodeid] = r
        if not f.stamps() and not found:
            for t in f.threads:
                host = str(t.get("host", ""))
                ts = born.get((host, t["pid"], t["tid"]))
                r = test_at(runs.get(host, []), ts) if ts is not None else None
                if r is not None and not _runs_tests(runs.get(host, []), t["pid"], t["tid"]):
                    found[r.nodeid] = r
        f.tests = sorted(found)
        if f.kind == "misuse":
            _expected(f, agg, runs)


def _runs_tests(runs: list[TestRun], pid: int, tid: int) -> bool:
    return any(r.pid == pid and r.tid == tid for r in runs)


def _threads_born(agg: Aggregate) -> dict[tuple[str, int, int], int]:
    """When each thread first recorded something (its ``thread`` event, kept as a note)."""
    out: dict[tuple[str, int, int], int] = {}
    for n in agg.facts.notes.get("thread_born", []):
        key = (str(n.get("host", "")), int(n.get("pid") or 0), int(n.get("tid") or 0))
        ts = int(n.get("ts") or 0)
        if key not in out or ts < out[key]:
            out[key] = ts
    return out


def _expected(f: Finding, agg: Aggregate, runs: dict[str, list[TestRun]]) -> None:
    prim, what, site = f.prims[0] if f.prims else None, f.details.get("what"), f.call_sites
    occurrences = [n for n in agg.facts.notes.get("misuse", [])
                   if n.get("prim") == prim and n.get("what") == what
                   and [n.get("site")] == site]
    if not occurrences or len(occurrences) < f.count:
        return  # some occurrences were not kept: cannot vouch for them
    tests = set()
    for n in occurrences:
        r = test_at(runs.get(str(n.get("host", "")), []), int(n.get("ts") or 0))
        if r is None or r.outcome != "passed" or r.tid != n.get("tid") or r.pid != n.get("pid"):
            return
        tests.add(r.nodeid)
    f.severity = "info"
    f.details["expected"] = True
    f.message += (f" It raised in the thread running {', '.join(sorted(tests))}, which passed: "
                  "provoked on purpose (pytest.raises, assertRaises), not counted as a bug.")
