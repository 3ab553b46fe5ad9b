"""The native scanner against the Python one (the reference): same aggregate, same problems.

Both read the same files: logs as the recorder writes them, lines written any other valid way
(escapes, spaces, extra fields, another key order), and damaged lines, cut into blocks of many
sizes so that lines straddle every block boundary.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_analyze_util import Log

from tracedsync.analysis import feed
from tracedsync.analysis.native import kernel_class
from tracedsync.analysis.scan import scan_file

pytestmark = pytest.mark.skipif(kernel_class() is None, reason="native scanner not built")


def workload(seed: int = 1, events: int = 600, threads: int = 4) -> Log:
    """Random but well-formed: nested and recursive locks, contention, failures, condition
    waits with their release and restored acquire, notifies, a reinit, some rare events."""
    rnd = random.Random(seed)
    log = Log()
    locks = [log.created(i, "RLock" if i % 2 else "Lock", site=f"app.py:{i}") for i in range(6)]
    cond = log.created(9, "Condition", lock=locks[0])
    for t in range(threads):
        log.thread(10 + t, f"w{t}")
    held: dict[int, list[str]] = {10 + t: [] for t in range(threads)}
    for _ in range(events):
        tid = rnd.choice(list(held))
        mine = held[tid]
        r = rnd.random()
        if mine and r < 0.4:
            p = mine.pop(rnd.randrange(len(mine)))  # not always the last: non-LIFO too
            log.release(tid, p, hold=rnd.randrange(0, 10**6))
        elif r < 0.8 and len(mine) < len(locks):
            free = [p for p in locks if p not in mine]
            p = rnd.choice(free)
            wait = rnd.choice([0, 0, rnd.randrange(1, 10**7)])
            if rnd.random() < 0.1:
                log.acquire(tid, p, f"app.py:{100 + rnd.randrange(9)}", ok=False, wait=wait,
                            blocked_by=11)
            else:
                log.acquire(tid, p, f"app.py:{100 + rnd.randrange(9)}", wait=wait,
                            blocked_by=11 if wait else None)
                mine.append(p)
        elif r < 0.85 and mine:
            p = mine[-1]
            log.acquire(tid, p, "app.py:200", depth=2)
            log.release(tid, p, depth=1)
        elif r < 0.92 and locks[0] not in mine:
            log.acquire(tid, locks[0], "app.py:300")
            log.ev("cond_wait", tid, prim=cond, lock=locks[0], saved_depth=1, timeout=None,
                   site="app.py:301")
            log.release(tid, locks[0], saved_depth=1, site="app.py:301")
            log.acquire(tid, locks[0], "app.py:301", restored=True)
            log.ev("cond_wake", tid, prim=cond, waited_ns=5, notified=rnd.random() < 0.7,
                   reacquire_ns=0)
            log.release(tid, locks[0])
        else:
            log.ev("notify", tid, prim=cond, n=1, waiters=rnd.randrange(2), woken=[],
                   site="app.py:400")
    log.ev("reinit", 10, prim=locks[3])
    return log


ODD_BUT_VALID = [
    # escapes, spaces, another key order, extra fields of every JSON type, unicode
    b'{"event": "acquire", "ts": 5, "pid": 100, "tid": 10, "prim": "100.1", "depth": 1, '
    b'"ok": true, "contended": false, "wait_ns": 0, "site": "C:\\\\app.py:3", "func": "f"}',
    b'{"tid":10,"prim":"100.1","event":"release","ts":6,"pid":100,"depth":0,"hold_ns":1,'
    b'"x":[1,2.5e3,{"y":null}],"z":"\\u00e9"}',
    '{"event":"acquire","ts":7,"pid":100,"tid":11,"prim":"100.2","depth":1,"ok":true,'
    '"contended":true,"wait_ns":9,"site":"caf\u00e9.py:1","func":"\u00e9t\u00e9"}'.encode(),
    b'{"event":"release","ts":8,"pid":100,"tid":11,"prim":"100.2","depth":0,"hold_ns":null}',
    b'{"event":"acquire","ts":9,"pid":100,"tid":11,"prim":"100.2","depth":1,"ok":true,'
    b'"contended":false,"site":null,"func":null,"blocking":false,"restored":null}  ',
    b'{"event":"acquire","ts":9,"ts":10,"pid":100,"tid":11,"prim":"100.2","depth":1,'
    b'"ok":false,"contended":false,"blocking":false}',
    b'{"event":"release","ts":9223372036854775807,"pid":100,"tid":11,"prim":"100.2",'
    b'"depth":0}',
]

DAMAGED = [
    b"not json at all",
    b"[1, 2]",
    b'{"event":"acquire","ts":1,"pid":100,"tid":10}',  # no prim
    b'{"event":"acquire","ts":1,"pid":100,"tid":10,"prim":"100.1","depth":1,"ok":1,'
    b'"contended":false}',  # ok is not a bool
    b'{"event":"acquire","ts":1.5,"pid":100,"tid":10,"prim":"100.1","depth":1,"ok":true,'
    b'"contended":false}',
    b'{"event":"acquire","ts":1,"pid":100,"tid":10,"prim":"100.1","ok":true,'
    b'"contended":true}',  # contended without wait_ns
    b'{"event":"release","ts":1,"pid":100,"tid":10,"prim":5,"depth":0}',
    b'{"event":"release","ts":1,"pid":100,"tid":10,"prim":"\xff\xfe","depth":0}',
    b'{"event":"release","ts":1,"pid":100,"tid":10,"prim":"100.1","depth":0,"x":tru}',
    b'{"event":"release","ts":1,"pid":100,"tid":null,"prim":"100.1","depth":0}',
    b'{"event":"acquire","ts":1,"pid":100,"tid":10,"prim":"100.1","depth":1,"ok":true,'
    b'"contended":false,"wait_ns":9223372036854775808}',
    b'{"event": 5, "ts": 1, "pid": 100}',
    b'{"event":"release","ts":99999999999999999999,"pid":100,"tid":11,"prim":"100.2",'
    b'"depth":0}',
    b'{"ts": 1, "pid": 100}',
    b"",
    b"   ",
]


def _write(tmp_path: Path, log: Log, extra: list[bytes], torn: bytes = b"") -> str:
    path = log.write(tmp_path)
    rnd = random.Random(7)
    lines = log.text().split(b"\n")[:-1]
    for raw in extra:
        lines.insert(rnd.randrange(1, len(lines)), raw)
    with open(path, "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n" + torn)
    return path


def _both(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return scan_file(path, native=True).to_dict(), scan_file(path, native=False).to_dict()


@pytest.mark.parametrize("block", [7, 64, 1000, 1 << 20])
def test_native_equals_python_on_a_workload_with_odd_and_damaged_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """Whatever the block size, both scanners give the same aggregate and the same problems,
    with file and line, and every damaged line is one."""
    monkeypatch.setattr(feed, "NATIVE_BLOCK", block)
    monkeypatch.setattr(feed, "PY_CHUNK", block)
    path = _write(tmp_path, workload(), ODD_BUT_VALID + DAMAGED, torn=b'{"event":"rel')
    native, python = _both(path)
    assert native == python
    lines = Path(path).read_bytes().split(b"\n")
    bad = {i for i, raw in enumerate(lines, 1) if raw in DAMAGED and raw.strip()}
    got = {line for p, line, _ in native["problems"]}
    assert got == bad | {len(lines)}  # and the torn last line
    reasons = {lines[line - 1]: reason for _, line, reason in native["problems"] if line in bad}
    assert reasons[b"not json at all"].startswith("not valid JSON")
    assert reasons[b"[1, 2]"] == "not a JSON object"
    assert reasons[DAMAGED[2]] == "missing field 'prim'"
    assert reasons[DAMAGED[3]] == "wrong type for 'ok'"
    assert reasons[DAMAGED[5]] == "missing field 'wait_ns'"
    assert reasons[DAMAGED[10]] == "value out of range for 'wait_ns'"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_native_equals_python_on_random_workloads(tmp_path: Path, seed: int) -> None:
    """Random interleavings of every acquire/release shape give the same aggregate."""
    path = workload(seed, events=1500, threads=6).write(tmp_path)
    native, python = _both(path)
    assert native == python
    assert native["problem_count"] == 0
    assert native["edges"]  # nested locks make lock-order edges


def test_the_odd_lines_are_read_as_their_plain_twins(tmp_path: Path) -> None:
    """A line written another valid way counts exactly like the recorder's own form."""
    base = Log()
    base.created(1)
    plain = tmp_path / "plain"
    odd = tmp_path / "odd"
    plain.mkdir()
    odd.mkdir()
    ev = {"event": "acquire", "ts": 5, "pid": 100, "tid": 10, "prim": "100.1", "depth": 1,
          "ok": True, "contended": True, "wait_ns": 7, "site": "é.py:1", "func": "f"}
    p1 = base.write(plain)
    with open(p1, "ab") as fh:
        fh.write(orjson.dumps(ev) + b"\n")
    p2 = base.write(odd)
    with open(p2, "ab") as fh:
        fh.write(json.dumps(dict(reversed(ev.items())), ensure_ascii=True, indent=None).encode()
                 + b"\n")
    for native in (True, False):
        a, b = scan_file(p1, native=native), scan_file(p2, native=native)
        assert a.sites == b.sites or a.to_dict()["sites"] == b.to_dict()["sites"]
        assert a.sites["100.1"]["é.py:1"].wait.max == 7


def _cond_log() -> tuple[Log, list[bytes]]:
    """Condition events the native kernel parses itself (the recorder's form), and the same
    written other ways, damaged, or around a nested-monitor note (which the Python handlers
    take)."""
    log = Log()
    lock = log.created(1)
    cond = log.created(2, "Condition", lock=lock)
    log.thread(11, "a")
    log.thread(12, "b")
    log.ev("notify", 12, prim=cond, n=1, waiters=0, woken=[], site="app.py:40")  # unheard
    log.ev("cond_wait", 11, prim=cond, lock=lock, saved_depth=1, timeout=0.5, site="app.py:30")
    log.ev("cond_wake", 11, prim=cond, waited_ns=500, notified=False)  # a lost wake-up
    log.ev("notify", 12, prim=cond, n=1, waiters=1, woken=[11], site="app.py:41")
    log.ev("cond_wait", 11, prim=cond, lock=lock, saved_depth=1, timeout=None, site="app.py:31")
    log.ev("cond_wake", 11, prim=cond, waited_ns=9, notified=True)
    log.ev("notify", 12, prim=cond, waiters=None, site="")  # unheard, no site
    log.ev("cond_wait", 12, prim=cond, site=None)
    log.ev("cond_wake", 12, prim=cond, notified=None)  # a timeout, no waited_ns
    log.ev("nested_monitor", 12, holder=11, cond=cond, outer=lock, site="app.py:50")
    log.ev("cond_wait", 11, prim=cond, site="app.py:32")
    log.ev("cond_wake", 11, prim=cond, waited_ns=3, notified=True)  # ends the note
    log.ev("notify_all", 12, prim=cond, n=-1, waiters=0, woken=[], site="app.py:42")
    t = log.ts
    odd = [  # other key orders, escapes, strings for ints, no pid: the Python handlers'
        b'{"tid":11,"event":"cond_wait","ts":%d,"pid":100,"prim":"%s","site":"x.py:1"}'
        % (t + 1, cond.encode()),
        b'{"event":"cond_wake","ts":%d,"tid":11,"prim":"%s","notified":false,"waited_ns":7}'
        % (t + 2, cond.encode()),
        b'{"event":"notify","ts":%d,"pid":100,"tid":12,"prim":"%s","waiters":"2",'
        b'"site":"caf\\u00e9.py:1"}' % (t + 3, cond.encode()),
        b'{"event":"cond_wait","ts":%d,"pid":100,"tid":12,"prim":"%s","site":"\xc3\xa9.py:2"}'
        % (t + 4, cond.encode()),
        b'{"event":"cond_wake","ts":%d,"pid":100,"tid":12,"prim":"%s","notified":1}'
        % (t + 5, cond.encode()),
    ]
    damaged = [
        b'{"event":"cond_wake","ts":%d,"pid":100,"prim":"%s","notified":true}'
        % (t + 6, cond.encode()),  # no tid
        b'{"event":"notify","pid":100,"tid":12,"prim":"%s","waiters":0}' % cond.encode(),
        b'{"event":"cond_wait","ts":1,"pid":100,"tid":12}',  # no prim
    ]
    return log, odd + damaged


def test_condition_events_parsed_natively_agree_with_the_python_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The native kernel hands plain condition events to the handlers as fields, and every
    other form to the dict handlers: same aggregate as the Python scanner, the same lost
    wake-ups, unheard notifies and nested-monitor ending, the same problems."""
    from tracedsync.analysis import handlers

    log, extra = _cond_log()
    path = log.write(tmp_path)
    with open(path, "ab") as fh:
        fh.write(b"\n".join(extra) + b"\n")
    by_dict: list[str] = []
    for name in handlers.CONDITION_EVENTS:
        inner = handlers.HANDLERS[name]

        def counted(scanner: Any, ev: dict[str, Any], inner: Any = inner) -> None:
            by_dict.append(ev["event"])
            inner(scanner, ev)

        monkeypatch.setitem(handlers.HANDLERS, name, counted)
    native = scan_file(path, native=True).to_dict()
    in_c = len(by_dict)
    python = scan_file(path, native=False).to_dict()
    assert native == python
    assert in_c == 6  # another key order, a string for an int, 1 for true; the damaged
    assert len(by_dict) - in_c == 19  # every condition line, in Python
    cond = next(p for p in native["prims"] if p["prim"] == "100.2")
    assert (cond["cond_waits"], cond["cond_timeouts"]) == (6, 3)
    # a notify line reported unusable (no ts) is not counted
    assert (cond["notifies"], cond["unheard_notifies"]) == (5, 3)
    lost = {tuple(key[1:]): t["count"] for key, t in native["lost_wakeups"]}
    assert lost == {("app.py:40", "app.py:30"): 1, ("?", "?"): 1, ("app.py:42", "x.py:1"): 1}
    note = native["facts"]["notes"]["nested_monitor"][0]
    assert note["ended"] == {"notified": True, "ts": log.ts - 1000, "waited_ns": 3}
    assert native["event_counts"]["cond_wait"] == 7  # the damaged one too
    assert [r for _, _, r in native["problems"]] == [
        "missing field 'tid'", "missing field 'ts'", "missing field 'prim'"]
