"""The Python scanner's fast path against its reference path (no native scanner needed).

The fast path decodes a chunk as typed, interned Structs (`hotdecode.TypedDecoder`) and runs the
inlined loop `PyKernel.feed_typed`; the reference decodes every field as optional (`Hot`) and
applies events one by one (`PyKernel.feed`). Both must give the same aggregate and the same
problems, on any input and whatever the chunk size.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from test_analyze_kernels import DAMAGED, ODD_BUT_VALID, _write, workload
from test_analyze_util import Log

from tracedsync.analysis import feed, hotdecode
from tracedsync.analysis.hotdecode import TypedDecoder, decode_typed
from tracedsync.analysis.kernel import PyKernel
from tracedsync.analysis.scan import scan_file


def _reference(path: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The aggregate of ``path`` through the reference path only."""

    def refuse(self: TypedDecoder, body: Any) -> list[Any]:
        raise msgspec.ValidationError("reference path")

    with monkeypatch.context() as m:
        m.setattr(TypedDecoder, "decode", refuse)
        return scan_file(path, native=False).to_dict()


def _fast(path: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], int]:
    """The aggregate of ``path`` (Python scanner), and how many chunks took the fast loop."""
    typed = 0
    real = PyKernel.feed_typed

    def counted(self: PyKernel, *args: Any) -> None:
        nonlocal typed
        typed += 1
        real(self, *args)

    with monkeypatch.context() as m:
        m.setattr(PyKernel, "feed_typed", counted)
        return scan_file(path, native=False).to_dict(), typed


@pytest.mark.parametrize("chunk", [7, 200, 4096, 65536])
def test_fast_path_equals_reference_with_odd_and_damaged_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(feed, "PY_CHUNK", chunk)
    path = _write(tmp_path, workload(seed=4, events=2000, threads=6), ODD_BUT_VALID + DAMAGED,
                  torn=b'{"event":"acq')
    fast, typed = _fast(path, monkeypatch)
    assert typed > 0
    assert fast == _reference(path, monkeypatch)
    assert fast["problem_count"] == len([d for d in DAMAGED if d.strip()]) + 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_path_equals_reference_on_random_workloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr(feed, "PY_CHUNK", 1024)
    path = workload(seed, events=3000, threads=8).write(tmp_path)
    fast, _ = _fast(path, monkeypatch)
    assert fast == _reference(path, monkeypatch)
    assert fast["edges"]


def test_unknown_events_and_ever_new_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """Chunks with an event name the typed union does not know, and new threads all along (the
    interning decoder fails, learns, and at last gives up): the same aggregate."""
    monkeypatch.setattr(feed, "PY_CHUNK", 512)
    monkeypatch.setattr(hotdecode, "INTERN_FAILURES", 2)
    monkeypatch.setattr(hotdecode, "INTERN_RATE", 4)
    rnd = random.Random(3)
    log = Log()
    locks = [log.created(i, site=f"m.py:{i}") for i in range(4)]
    for t in range(300):
        tid = 1000 + t
        p = locks[rnd.randrange(4)]
        log.acquire(tid, p, f"s.py:{t % 7}", wait=rnd.choice([0, 5]))
        if t % 9 == 0:
            log.ev("future_event", tid, prim=p, x=[1, {"y": None}])
        log.release(tid, p, hold=rnd.randrange(1, 1000))
    path = log.write(tmp_path)
    fast, typed = _fast(path, monkeypatch)
    assert typed > 0
    assert fast == _reference(path, monkeypatch)
    assert fast["event_counts"]["future_event"] == 34


def test_typed_decoder_interns_and_decodes_like_plain() -> None:
    lines = [
        b'{"event":"acquire","ts":1,"pid":1,"tid":7,"prim":"1.1","depth":1,"ok":true,'
        b'"contended":false,"wait_ns":0,"site":"a.py:1","func":"f"}',
        b'{"event":"release","ts":2,"pid":1,"tid":7,"prim":"1.1","depth":0,"hold_ns":1}',
        b'{"event":"thread","ts":2,"pid":1,"tid":7,"name":"x"}',
    ]
    body = b"\n".join(lines)
    dec = TypedDecoder()
    first = dec.decode(body)
    assert dec.types == (hotdecode.Acquire, hotdecode.Release)  # plain, then learnt
    again = dec.decode(body)
    assert dec.types != (hotdecode.Acquire, hotdecode.Release)
    assert [msgspec.structs.asdict(e) for e in again] == [
        msgspec.structs.asdict(e) for e in first
    ]
    assert again[0].prim is again[1].prim and again[0].tid is again[1].tid
    assert again[0].prim is dec.decode(body)[0].prim
    # a new value: decoded plainly (equal values), then learnt
    other = body.replace(b'"1.1"', b'"1.2"')
    got = dec.decode(other)
    assert dec.types == (hotdecode.Acquire, hotdecode.Release)
    assert got[0].prim == "1.2" and dec.failures == 1
    assert dec.decode(other)[1].prim is dec.decode(other)[0].prim
    # what plain decoding rejects, the interning decoder rejects too
    bad = body.replace(b'"ok":true', b'"ok":1')
    for decode in (decode_typed, dec.decode):
        with pytest.raises(msgspec.ValidationError):
            decode(bad)


def test_typed_decoder_gives_up_on_too_many_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hotdecode, "INTERN_VALUES", 10)
    dec = TypedDecoder()
    for i in range(12):
        dec.decode(b'{"event":"release","ts":1,"tid":%d,"prim":"1.%d","depth":0}' % (i, i))
    assert not dec.learning and dec.types == (hotdecode.Acquire, hotdecode.Release)
    assert dec.rebuilds == 5


def test_every_event_of_the_schema_decodes_typed() -> None:
    """A chunk of any events the recorder writes takes the fast path (an event name missing
    from the typed union would send its chunks to the reference path, correct but slower)."""
    from tracedsync._core.schema import EVENTS

    body = b"\n".join(b'{"event":"%s","ts":1,"pid":1,"tid":1}' % k.name.encode()
                      for k in EVENTS if k.name not in ("acquire", "release"))
    assert len(decode_typed(body)) == len(EVENTS) - 2
