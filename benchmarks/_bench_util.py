"""What the benchmarks share: the unrolled timed loop of ``with lock`` and emptying the log.

The logs are written to disk as in real use (the flusher's cost is part of what is measured
elsewhere), but a benchmark run records hundreds of millions of events: each timed run empties
its log afterwards, or a full run fills the disk.
"""

from __future__ import annotations

import glob
import os
import time
from typing import Any

import tracedsync


def discard_log() -> None:
    """Flush, then empty this process's log: its current file truncated, the older files of its
    rotated set (``tracedsync-<pid>.1.jsonl``, ...: a file rotates at a quarter of
    ``max_log_bytes``, and one timed run can fill several) deleted."""
    tracedsync.flush()
    path = tracedsync.log_path()
    try:
        os.truncate(path, 0)  # the recorder appends (O_APPEND): safe
    except OSError:
        pass
    stem = path[: -len(".jsonl")] if path.endswith(".jsonl") else path
    for old in glob.glob(glob.escape(stem) + ".*.jsonl"):
        try:
            os.unlink(old)
        except OSError:
            pass


def time_with(lock: Any, loops: int) -> float:
    """Seconds for ``loops`` times ten ``with lock: pass`` (unrolled: the loop's own cost is a
    tenth of what it would be), then the log emptied."""
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        with lock: pass  # noqa: E701
        with lock: pass  # noqa: E701
        with lock: pass  # noqa: E701
        with lock: pass  # noqa: E701
        with lock: pass  # noqa: E701
        with lock: pass  # noqa: E701
        with lock: pass  # noqa: E701
        with lock: pass  # noqa: E701
        with lock: pass  # noqa: E701
        with lock: pass  # noqa: E701
    dt = time.perf_counter() - t0
    discard_log()
    return dt
