"""A one-line progress indication on stderr for long analyses (files, events, events/s)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Rewrites one stderr line at most ten times a second; `done` leaves the final one."""

    def __init__(self, files: int, total_bytes: int, stream: TextIO | None = None) -> None:
        self.files = files
        self.total_bytes = total_bytes
        self.stream = stream if stream is not None else sys.stderr
        self.files_done = 0
        self.events = 0
        self.bytes_done = 0
        self.t0 = time.monotonic()
        self._last = 0.0

    def add(self, events: int = 0, files: int = 0, nbytes: int = 0) -> None:
        """Count progress; redraw if the last redraw is old enough."""
        self.events += events
        self.files_done += files
        self.bytes_done += nbytes
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.events / max(now - self.t0, 1e-9)
        pct = 100.0 * self.bytes_done / self.total_bytes if self.total_bytes else 100.0
        self.stream.write(
            f"\r\033[Ktracedsync: {self.files_done}/{self.files} files, {pct:5.1f} %, "
            f"{self.events / 1e6:.2f} M events, {rate / 1e6:.2f} M events/s "
        )
        self.stream.flush()

    def done(self) -> None:
        """Draw the final figures and end the line."""
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()
