"""Helpers for testing code that uses tracedsync: capture the recorded events in-process.

>>> import tracedsync
>>> from tracedsync.testing import capture
>>> lock = tracedsync.Lock(name="demo")
>>> with capture() as events:
...     with lock:
...         pass
>>> [e["event"] for e in events.where(prim=lock.statistics().prim)]
['acquire', 'release']
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._record.recorder import RECORDER

__all__ = ["Captured", "capture"]


class Captured(list[dict[str, Any]]):
    """The events recorded while `capture` was active, in recording order."""

    def where(self, **fields: Any) -> list[dict[str, Any]]:
        """The events whose fields equal all of ``fields`` (``event="acquire"``, ``prim=...``)."""
        return [e for e in self if all(e.get(k) == v for k, v in fields.items())]

    def names(self, **fields: Any) -> list[str]:
        """The ``event`` names of `where` (``fields``)."""
        return [e["event"] for e in self.where(**fields)]


@contextmanager
def capture() -> Iterator[Captured]:
    """Collect every event recorded inside the ``with`` block (from any thread).

    Events recorded before the block are flushed first and not included; the block's events
    are flushed when it ends, so the list is complete once the ``with`` statement exits. Events
    still go to the configured sink as well.
    """
    events = Captured()
    RECORDER.add_capture(events)
    try:
        yield events
    finally:
        RECORDER.remove_capture(events)
