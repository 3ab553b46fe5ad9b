"""What the benchmarks share: the unrolled timed loop of ``with lock`` and emptying the log.

The logs are written to disk as in real use (the flusher's cost is part of what is measured
elsewhere), but a benchmark run records hundreds of millions of events: each timed run empties
its log afterwards, or a full run fills the disk.
"""

from __future__ import annotations

import os
import time
from typing import Any

import tracedsync


def discard_log() -> None:
    """Flush, then empty this process's log."""
    tracedsync.flush()
    try:
        os.truncate(tracedsync.log_path(), 0)  # the recorder appends (O_APPEND): safe
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
