"""The native recorder: its records render exactly as the Python decoder would write them,
its buffers survive their threads and a fork, its flusher sleeps when nothing is recorded."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import LIMIT, prim_of, read_jsonl, until

import tracedsync
from tracedsync._core import native_kinds as nk
from tracedsync._core import runtime as rt
from tracedsync._core.native import NATIVE
from tracedsync._core.ops import OP_THREAD
from tracedsync._record.decode import Decoder
from tracedsync._record.recorder import RECORDER

pytestmark = pytest.mark.skipif(NATIVE is None, reason="the native recorder is not in use")


@contextlib.contextmanager
def _flusher_held() -> Iterator[None]:
    RECORDER._write_lock.acquire()
    try:
        yield
    finally:
        RECORDER._write_lock.release()


def _both_ways(record: Any) -> tuple[list[bytes], list[bytes]]:
    """Record with ``record()``, then render one snapshot both ways: in C, and through the
    op tuples and the Python decoder. The flusher is held off meanwhile (its write lock), so
    that the snapshot has every record and the Python channel every `thread` event."""
    assert NATIVE is not None
    tracedsync.flush()
    # Hold the flusher off (it flushes under this lock): otherwise it may drain the `thread`
    # events read below, or collect the records, while ``record()`` runs.
    with _flusher_held():
        record()
        decoder = Decoder()
        decoder.tids.update(rt.native_ids)  # every thread registered so far, as the recorder's
        for item in list(rt.buffer):  # and the Python channel's new `thread` events
            if item[0] == OP_THREAD:
                decoder(item)
        snap = NATIVE.collect(0)
        try:
            c_lines = _rendered(snap)
            decoder.tids.update({threading.get_ident(): threading.get_native_id()})
            py_lines = [orjson.dumps(decoder(t)) for _ts, t in snap.as_tuples()]
        finally:
            snap.release()
    return c_lines, py_lines


def _rendered(snap: Any) -> list[bytes]:
    """The snapshot rendered in C (to a file, as the flusher does): its lines, checked to be
    as many as it has events."""
    fd, path = tempfile.mkstemp()
    try:
        try:
            n, _nbytes, err = snap.render([], fd)
        finally:
            os.close(fd)
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    finally:
        os.unlink(path)
    assert err == 0 and n == len(lines) == snap.records
    return lines


def test_every_kind_renders_as_the_decoder_writes_it() -> None:
    """Each record kind, rendered in C, is byte for byte what the decoder writes from the op
    tuple the kind stands for (a thread without a `thread` event keeps its ident)."""
    assert NATIVE is not None
    me = threading.get_ident()
    rec = NATIVE.rec

    def record() -> None:
        rec(nk.K_NOTIFY, 123, 4, 0, 1, 2, 1, 0, me)
        rec(nk.K_NOTIFY, 123, 4, 1, 3, 3, 3, 0, me, 5, me)
        rec(nk.K_NOTIFY, 123, 4, 0, 1, 0, 0, 0)
        rec(nk.K_SEM_ACQUIRE, 123, 5, 0b101, 0, 2, 1, 0)
        rec(nk.K_SEM_RELEASE, 123, 5, 0, 1, 3, 0, 0)
        rec(nk.K_EVENT_SET, 123, 6, 0b01, 0, 0, 0, 0)
        rec(nk.K_EVENT_SET, 123, 6, 0b10, 0, 0, 0, 0)
        rec(nk.K_EVENT_WAIT, 123, 6, 0b11, 0, 0, 0, 0)
        rec(nk.K_VALUE, 123, 7, 0b001, 0, 0, 0, 0)
        rec(nk.K_VALUE, 123, 7, 0b110, 5, 0, 0, 0)
        rec(nk.K_MP_ACQUIRE, 123, 8, 0b0101, 1, 0, 0, 0)
        rec(nk.K_MP_ACQUIRE, 123, 8, 0b11111, 1, 1000, 77, 88)

    c_lines, py_lines = _both_ways(record)
    assert len(c_lines) == 12
    assert c_lines == py_lines
    events = [orjson.loads(line) for line in c_lines]
    assert [e["event"] for e in events[:3]] == ["notify", "notify_all", "notify"]
    assert events[1]["woken"] == [threading.get_native_id(), 5, threading.get_native_id()]
    assert events[-1]["blocked_by_pid"] == 77 and events[-1]["restored"] is True


def test_lock_records_render_as_the_decoder_writes_them() -> None:
    """Acquires (uncontended and contended), nested ones and releases with and without a
    hold, in C and through the decoder: the same bytes."""
    lock = tracedsync.RLock(name="r")
    holding, release_now = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            holding.set()
            release_now.wait(LIMIT)

    def record() -> None:
        with lock, lock:
            pass
        t = threading.Thread(target=holder)
        t.start()
        assert holding.wait(LIMIT)
        threading.Timer(0.05, release_now.set).start()  # ends the holder's hold, not a sync
        with lock:  # contended: a record with its wait and the holder
            pass
        t.join(LIMIT)

    c_lines, py_lines = _both_ways(record)
    assert c_lines == py_lines
    events = [orjson.loads(line) for line in c_lines if b'"prim":"' + prim_of(lock).encode()
              in line]
    contended = [e for e in events if e["event"] == "acquire" and e["contended"]]
    assert len(contended) == 1 and contended[0]["wait_ns"] > 0
    assert contended[0]["blocked_by"] not in (None, threading.get_native_id())


def _tuples_of(prims: set[str], items: list[Any]) -> list[Any]:
    return [t for t in items if any(isinstance(x, str) and x in prims for x in t)]


def test_semaphore_and_event_common_paths_are_native_records() -> None:
    """At full, a semaphore's uncontended acquires and its releases, an event's sets and clears
    and a wait that finds it set each write one native record and no op tuple; C renders them
    as the decoder writes the tuples they stand for."""
    sem = tracedsync.BoundedSemaphore(3, name="s")
    evt = tracedsync.Event(name="e")
    prims = {prim_of(sem), prim_of(evt)}
    tuples: list[Any] = []

    def record() -> None:
        before = len(rt.buffer)
        with sem:
            assert sem.acquire() is True
            assert sem.acquire(False) is True
            sem.release()
            sem.release()
        evt.set()
        evt.set()
        assert evt.wait() is True
        evt.clear()
        evt.clear()
        tuples.extend(_tuples_of(prims, list(rt.buffer)[before:]))

    c_lines, py_lines = _both_ways(record)
    assert c_lines == py_lines
    assert tuples == []
    events = [orjson.loads(line) for line in c_lines]
    mine = [e for e in events if e.get("prim") in prims]
    assert all(e["site"].startswith(__file__ + ":") for e in mine)
    assert all(e["tid"] == threading.get_native_id() for e in mine)
    sem_seq = [(e["event"], e.get("n"), e["permits"], e["held"]) for e in mine
               if e["prim"] == prim_of(sem)]
    assert sem_seq == [
        ("sem_acquire", None, 2, 1), ("sem_acquire", None, 1, 2), ("sem_acquire", None, 0, 3),
        ("sem_release", 1, 1, 2), ("sem_release", 1, 2, 1), ("sem_release", 1, 3, 0),
    ]
    acquires = [e for e in mine if e["event"] == "sem_acquire"]
    assert [e["blocking"] for e in acquires] == [True, True, False]
    assert all(e["ok"] and not e["contended"] and e["wait_ns"] == 0 and e["timeout"] is None
               for e in acquires)
    assert all(e["for_others"] == 0 for e in mine if e["event"] == "sem_release")
    evt_seq = [(e["event"], e.get("was_set"), e.get("already_set")) for e in mine
               if e["prim"] == prim_of(evt)]
    assert evt_seq == [("event_set", False, None), ("event_set", True, None),
                       ("event_wait", None, True), ("event_clear", True, None),
                       ("event_clear", False, None)]
    (wait,) = [e for e in mine if e["event"] == "event_wait"]
    assert wait["result"] is True and wait["waited_ns"] == 0 and wait["timeout"] is None
    stats = sem.statistics()
    assert (stats.acquisitions, stats.releases, stats.held_by) == (3, 3, ())
    assert (evt.statistics().sets, evt.statistics().clears, evt.statistics().waits) == (2, 2, 1)


def test_other_semaphore_and_event_paths_are_op_tuples() -> None:
    """A timeout (a float no record holds), a failed acquire, an over-release and a wait that
    blocks or may time out are op tuples, as before."""
    sem = tracedsync.BoundedSemaphore(1)
    evt = tracedsync.Event()
    prims = {prim_of(sem), prim_of(evt)}
    tuples: list[Any] = []

    def record() -> None:
        before = len(rt.buffer)
        assert sem.acquire(timeout=5) is True
        assert sem.acquire(False) is False
        sem.release()
        with pytest.raises(ValueError):
            sem.release()
        assert evt.wait(0.001) is False
        evt.set()
        assert evt.wait(5) is True
        tuples.extend(_tuples_of(prims, list(rt.buffer)[before:]))

    c_lines, py_lines = _both_ways(record)
    assert c_lines == py_lines
    natives = [orjson.loads(line) for line in c_lines]
    assert [e["event"] for e in natives if e.get("prim") in prims] == [
        "sem_release", "event_set"]
    decoder = Decoder()
    decoder.tids.update(rt.native_ids)
    events = [decoder(t) for t in tuples]
    assert [(e["event"], e.get("ok"), e.get("timeout")) for e in events] == [
        ("sem_acquire", True, 5), ("sem_acquire", False, None), ("misuse", None, None),
        ("event_wait", None, 0.001), ("event_wait", None, 5)]


def test_the_c_path_is_in_use_where_it_builds() -> None:
    """tracedsync.Lock() is the native type (the suite runs the twin with
    TRACEDSYNC_PURE_PYTHON=1)."""
    assert NATIVE is not None
    assert isinstance(tracedsync.Lock(), NATIVE.NativeLock)
    assert isinstance(tracedsync.RLock(), NATIVE.NativeRLock)


def test_a_thread_buffer_outlives_its_thread_until_written() -> None:
    """A thread that recorded and exited: its records are written by the next flush, and its
    buffer is then freed."""
    assert NATIVE is not None
    lock = tracedsync.Lock()
    tracedsync.flush()
    before = NATIVE.buffer_info()["threads"]

    def worker() -> None:
        for _ in range(3):
            with lock:
                pass

    from tracedsync.testing import capture

    with capture() as events:
        t = threading.Thread(target=worker)
        t.start()
        t.join(LIMIT)
    assert len(events.where(prim=prim_of(lock), event="acquire")) == 3
    until(lambda: NATIVE.buffer_info()["threads"] <= before, "the dead thread's buffer freed")


def test_fork_child_writes_only_its_own_records(tmp_path: Path) -> None:
    """The parent's unwritten records stay the parent's; the child names its thread again."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    prog = textwrap.dedent("""
        import os, sys, tracedsync
        lock = tracedsync.Lock(name="x")
        for _ in range(5):
            with lock:
                pass
        pid = os.fork()
        if pid == 0:
            with lock:
                pass
            tracedsync.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        tracedsync.flush()
        print(pid)
    """)
    out = subprocess.run([sys.executable, "-c", prog], env={
        **os.environ, "TRACEDSYNC_LOG_DIR": str(tmp_path)}, capture_output=True, text=True,
        timeout=LIMIT, check=True).stdout
    child = int(out.split()[-1])
    logs = {int(p.name.split("-")[1].split(".")[0]): read_jsonl(p) for p in tmp_path.iterdir()}
    acquires = {pid: [e for e in evs if e["event"] == "acquire"] for pid, evs in logs.items()}
    assert len(acquires[child]) == 1
    assert len([e for pid, a in acquires.items() if pid != child for e in a]) == 5
    threads = [e for e in logs[child] if e["event"] == "thread"]
    assert len(threads) == 1 and threads[0]["tid"] == child


def test_an_idle_flusher_sleeps_until_something_is_recorded() -> None:
    """After a flush that found nothing, the flusher waits without a timeout; the next record
    wakes it."""
    assert NATIVE is not None
    tracedsync.configure(flush_interval=0.01)
    lock = tracedsync.Lock()
    with lock:
        pass
    until(lambda: NATIVE.buffer_info()["idle"], "the flusher idle")
    with lock:
        pass
    until(lambda: NATIVE.buffer_info()["pending"] == 0, "the new records written")


def test_a_pair_renders_as_its_two_events_in_time_order() -> None:
    """A release right after its acquire shares the acquire's record (a pair): rendered as the
    two events, in C and through the decoder alike, the release at its own time, after what
    other threads recorded while the lock was held; a snapshot taken between the two keeps
    them apart (a record in a snapshot is never changed)."""
    assert NATIVE is not None
    outer, inner = tracedsync.Lock(name="outer"), tracedsync.Lock(name="inner")
    taken, done = threading.Event(), threading.Event()

    def other() -> None:
        assert taken.wait(LIMIT)
        with inner:
            pass
        done.set()

    def record() -> None:
        t = threading.Thread(target=other)
        t.start()
        with outer:
            taken.set()
            assert done.wait(LIMIT)
        t.join(LIMIT)

    c_lines, py_lines = _both_ways(record)
    assert c_lines == py_lines
    events = [orjson.loads(line) for line in c_lines]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    names = {prim_of(outer): "outer", prim_of(inner): "inner"}
    mine = [(e["event"], names[e["prim"]]) for e in events if e.get("prim") in names]
    assert mine == [("acquire", "outer"), ("acquire", "inner"), ("release", "inner"),
                    ("release", "outer")]
    release = next(e for e in events if e["event"] == "release" and e["prim"] == prim_of(outer))
    assert release["hold_ns"] > 0 and release["depth"] == 0

    def one_snapshot() -> list[dict[str, Any]]:
        assert NATIVE is not None
        snap = NATIVE.collect(0)
        try:
            return [orjson.loads(line) for line in _rendered(snap)
                    if b'"prim":"' + prim_of(outer).encode() in line]
        finally:
            snap.release()

    tracedsync.flush()
    with _flusher_held():
        outer.acquire()
        first = one_snapshot()
        outer.release()
        second = one_snapshot()
    assert [e["event"] for e in first] == ["acquire"]
    assert [e["event"] for e in second] == ["release"] and second[0]["hold_ns"] > 0
