"""Flushing through the native recorder: its binary records and the Python channel's tuples.

Design note. Called by the recorder with its write lock held (one flush at a time). Under the
GIL: take a snapshot of every thread's records (`_native.collect`), drain the Python channel
(the deque of tuples: thread names, creations, contention, waits, detection), decode those
tuples as always. Then either

* the fast path (the default file sink, no capture in progress): the tuples' events are
  rendered by orjson, one line each, and the snapshot merges them with its records by time,
  renders the records in C and writes everything to the file, with the GIL released; or
* the Python path (user processors, a user logger, `tracedsync.testing.capture`): the records
  become the tuples the pure-Python twin would have recorded, are decoded like the others, and
  the merged events go through the sink's structlog pipeline.

Either way the snapshot is released afterwards: its chunks go back to the free list. Records
that did not fit in the memory budget are reported as one `dropped` event per thread.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from .._core import runtime as rt
from .._core.diagnostics import report
from .._core.native import NATIVE
from .._core.ops import OP_STATS
from .decode import Decoder, Event

if TYPE_CHECKING:
    from .recorder import Recorder

_OPT = orjson.OPT_APPEND_NEWLINE
_dumps = orjson.dumps
_CHUNK = 4096


def drain(decoder: Decoder, skip: int | None) -> list[Event]:
    """Decode everything in the Python channel now. Events recorded by the flusher thread
    itself are dropped (writing them would record more, forever), but for the `stats` of a
    primitive the flusher happened to collect."""
    buf = rt.buffer
    pop = buf.popleft
    events: list[Event] = []
    for _ in range(len(buf)):
        try:
            item = pop()
        except IndexError:  # pragma: no cover - drained concurrently
            break
        if item[2] == skip and item[0] != OP_STATS:
            continue
        try:
            events.append(decoder(item))
        except Exception as exc:  # pragma: no cover - a decoder bug must not stop the flush
            report(f"could not decode {item[:2]!r}: {exc!r}")
    return events


def dropped_events(snapshot: Any, pid: int) -> list[Event]:
    """One `dropped` event per thread whose records did not fit in the budget."""
    now = rt.now()
    return [{"event": "dropped", "ts": now, "pid": pid, "tid": native, "count": count,
             "reason": "buffer_full"} for _ident, native, count in snapshot.dropped]


def flush(rec: Recorder) -> int:
    """One flush (see the module note); returns the number of events written."""
    native = NATIVE
    assert native is not None
    snapshot = native.collect(rec.flusher_ident or 0)
    try:
        events = drain(rec.decoder, rec.flusher_ident)
        events.extend(rec.take_overflow_events())
        events.extend(dropped_events(snapshot, rec.pid))
        if not events and not snapshot.slots:
            return 0
        if rec.fast_path():
            return _render(rec, snapshot, events)
        return _decode_all(rec, snapshot, events)
    finally:
        snapshot.release()


def _render(rec: Recorder, snapshot: Any, events: list[Event]) -> int:
    sink = rec.open_sink()
    carried = sink.pending_dropped
    if carried:  # events a failed write lost: said by the first write that succeeds
        events.insert(0, rec.dropped_event(carried))
    lines = [(ev["ts"], _dumps(ev, default=str, option=_OPT)) for ev in events]
    try:
        fd = sink.native_fd()  # after a rotation if the file has passed its share of the cap
    except OSError as exc:
        sink.failed(exc, len(lines) + snapshot.records)
        return 0
    n, nbytes, err = snapshot.render(lines, fd)
    sink.writer.wrote(int(nbytes), None if err else int(n))
    if err:
        sink.pending_dropped = 0 if carried else sink.pending_dropped
        sink.failed(OSError(err, "write failed"), len(lines) + snapshot.records - n)
        return int(n)
    sink.pending_dropped = 0
    sink.succeeded()
    return int(n)


def _decode_all(rec: Recorder, snapshot: Any, events: list[Event]) -> int:
    decode = rec.decoder
    recorded = (decode(item) for _ts, item in snapshot.as_tuples())
    merged: Iterable[Event] = heapq.merge(events, recorded, key=_ts)
    written = 0
    chunk: list[Event] = []
    for ev in merged:
        chunk.append(ev)
        if len(chunk) >= _CHUNK:
            rec.write_events(chunk)
            written += len(chunk)
            chunk = []
    if chunk:
        rec.write_events(chunk)
        written += len(chunk)
    return written


_ts: Callable[[Event], int] = lambda ev: ev["ts"]  # noqa: E731
