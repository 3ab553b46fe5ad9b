"""Putting the byte ranges of one log back together: the result of scanning it in one pass.

Design note. The ranges (`ranges.Part`, in file order) are taken one after the other by a
`Scanner` (the *spine*) that has the file's context, as if it were reading the file:

* its kernel holds each thread's held locks as they stand at the start of the next range;
* a range's deferred records (each thread's first events, `kernel.DEFER_EVENTS` of them) are
  replayed on it, with what the thread really held; for a thread that had more events, the
  range went on from the state it computed by assuming the thread held nothing: that state
  must be what the replay gives, else the range's figures for that thread are wrong, and the
  range is scanned again, in order, by the spine (correct, only slower: this happens when a
  lock is held across more than `DEFER_EVENTS` of one thread's events at a range boundary);
* the range's other lines are then handled in order, with line numbers counted from the start
  of the file; a range marked ``in_order`` (a later session, a reinit) is scanned again too.

A rotated log (several files, `inputs.process_sets`) is one stream: its ranges are numbered
across its files, and the spine moves on to the next file (`Scanner.next_file`) where a range
of it begins; the header that starts a continuing file does not end the process, so it does
not make its range ``in_order``.

The figures of all the ranges that were kept are added up (they do not depend on order: see
`aggregate.py`), so the file's aggregate is the one a single pass gives. The test suite checks
that on files cut at every line.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from .aggregate import Aggregate
from .kernel import simulate
from .ranges import Part
from .scan import Scanner, new_kernel


def _consistent(spine: Any, part: Part) -> bool:
    """Does replaying the part's prefixes on the spine give the state the part assumed?"""
    for tid, assumed in part.hot.switched.items():
        if simulate(spine.held_of(tid), part.hot.prefix.get(tid, [])) != assumed:
            return False
    return True


def stitch(files: str | Sequence[str], parts: list[Part], native: bool | None = None) -> Aggregate:
    """The aggregate of the log ``files`` (one file, or a rotated set in order) from its ranges
    (all of them, any order)."""
    paths = [files] if isinstance(files, str) else list(files)
    parts = sorted(parts, key=lambda p: p.index)
    sc = Scanner(paths[0], new_kernel(native=native))
    sc.in_order = False  # a range's rare lines come after its acquires and releases
    spine = sc.kernel
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for part in parts:
            while sc.path != part.path:  # the next file of a rotated set (one range or more)
                sc.next_file(paths[len(sc.files)])
            if part.in_order or (part.index > 0 and not _consistent(spine, part)):
                sc.scan(part.start, part.end)  # again, in order (see the module docstring)
                continue
            hot = part.hot
            for recs in hot.prefix.values():
                for rec in recs:
                    spine.apply(rec)
            for tid, held in hot.held.items():
                spine.set_held(tid, held)
            sc.absorb(hot)
            counts = sc.agg.event_counts
            for name, n in part.counts.items():
                counts[name] = counts.get(name, 0) + n
            sc.source.events += part.events
            for raw, lineno in zip(part.rare, part.rare_lines, strict=True):
                sc.line(raw, lineno, False)
            if part.tail is not None:
                sc.problem(sc.line_offset + part.tail[0], "truncated last line (no newline)")
            sc.line_offset += part.lines
    finally:
        if was_enabled:
            gc.enable()
    return sc.finish()
