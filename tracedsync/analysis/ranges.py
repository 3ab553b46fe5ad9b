"""Scanning one byte range of a log file: the map step for a file too big for one worker.

Design note. A range is scanned without knowing what came before it. Its acquires and releases
go to a kernel; for every range but the first, one in ``defer`` mode (`kernel.py`): each
thread's first events are kept as records, to be replayed by `stitch.py` once what the thread
held at the range's start is known. Every other line (any event but a usable acquire or
release, a bad line) is kept as it was read, with its line number counted from the range's
start: those events need the file's context (its session, the threads named so far, the last
notify of each condition...), which only the stitcher, going through the ranges in order, has.

Two rare events interact with the locks held (a later ``session`` closes the process before,
``reinit`` releases a lock in every thread); a range that has one (a ``session`` other than
the log's first line, or than the header that begins the next file of a rotated set) is marked,
and the stitcher scans it again in order instead.
"""

from __future__ import annotations

import dataclasses
import gc
from array import array
from typing import Any

import orjson

from .feed import feed_bytes
from .kernel import HotPart
from .scan import hot_line, new_kernel


@dataclasses.dataclass
class Part:
    """What scanning one byte range gives (see the module docstring)."""

    path: str
    index: int  # 0 for the range at the start of the log (ranges are counted across its files)
    start: int
    end: int
    hot: HotPart
    lines: int  # lines in the range
    rare: list[bytes]  # the lines the kernel did not take, in order...
    rare_lines: array[int]  # ...and their line numbers, from 1 at the range's start
    tail: tuple[int, bytes] | None  # a torn last line (the end of the file only)
    in_order: bool  # has a later session or a reinit: to be scanned again in order
    events: int = 0  # usable acquires and releases handed to the kernel from Python
    counts: dict[str, int] = dataclasses.field(default_factory=dict)


class _Collector:
    """The ``on_line`` of a range: usable acquires and releases to the kernel, the rest kept."""

    def __init__(self, kernel: Any, index: int, file_start: bool) -> None:
        self.kernel = kernel
        self.index = index
        self.file_start = file_start  # the range begins a file (its first line a header)
        self.rare: list[bytes] = []
        self.rare_lines: array[int] = array("q")
        self.sessions = 0
        self.in_order = False
        self.events = 0
        self.counts: dict[str, int] = {}

    def __call__(self, raw: bytes, lineno: int, maybe_hot: bool) -> None:
        if maybe_hot:
            name = hot_line(self.kernel, raw)
            if name is not None:
                self.events += 1
                self.counts[name] = self.counts.get(name, 0) + 1
                return
        self.rare.append(raw)
        self.rare_lines.append(lineno)
        if b"session" in raw or b"reinit" in raw:  # cheap test first: these are rare
            try:
                ev = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return
            name = ev.get("event") if isinstance(ev, dict) else None
            if name == "session":
                self.sessions += 1
                continuing = (self.sessions == 1 and self.file_start
                              and type(ev.get("part")) is int and ev["part"] > 0)
                if (self.index > 0 or self.sessions > 1) and not continuing:
                    self.in_order = True
            elif name == "reinit":
                self.in_order = True


def scan_part(path: str, index: int, start: int, end: int, native: bool | None = None) -> Part:
    """Scan ``path[start:end]`` (whole lines), range number ``index`` of its log."""
    kernel = new_kernel(defer=index > 0, native=native)
    collect = _Collector(kernel, index, start == 0)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        lines, tail = feed_bytes(path, kernel, collect, start, end)
    finally:
        if was_enabled:
            gc.enable()
    return Part(
        path=path,
        index=index,
        start=start,
        end=end,
        hot=kernel.export(),
        lines=lines,
        rare=collect.rare,
        rare_lines=collect.rare_lines,
        tail=tail,
        in_order=collect.in_order,
        events=collect.events,
        counts=collect.counts,
    )
