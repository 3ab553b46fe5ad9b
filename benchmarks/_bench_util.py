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


UNROLL = 10
"""Operations per pass of the timed loops below (pyperf's ``inner_loops``)."""
LEVELS = ["raw", "off", "contention", "full"]


def with_blocks(lock: Any, loops: int) -> None:
    """``loops`` times ten ``with lock: pass`` (unrolled: the loop's own cost is a tenth of
    what it would be)."""
    for _ in range(loops):
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


def time_with(lock: Any, loops: int) -> float:
    """Seconds for `with_blocks`, then the log emptied."""
    t0 = time.perf_counter()
    with_blocks(lock, loops)
    dt = time.perf_counter() - t0
    discard_log()
    return dt


def time_inline(obj: Any, loops: int) -> float:
    """Seconds for ``loops`` times ten ``obj.acquire(); obj.release()`` written inline (the
    methods looked up on each call), then the log emptied."""
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        obj.acquire(); obj.release()  # noqa: E702
        obj.acquire(); obj.release()  # noqa: E702
        obj.acquire(); obj.release()  # noqa: E702
        obj.acquire(); obj.release()  # noqa: E702
        obj.acquire(); obj.release()  # noqa: E702
        obj.acquire(); obj.release()  # noqa: E702
        obj.acquire(); obj.release()  # noqa: E702
        obj.acquire(); obj.release()  # noqa: E702
        obj.acquire(); obj.release()  # noqa: E702
        obj.acquire(); obj.release()  # noqa: E702
    dt = time.perf_counter() - t0
    discard_log()
    return dt


def run_levels(runner: Any, benches: list[tuple[Any, ...]]) -> dict[tuple[str, str], float]:
    """Each of ``benches`` (title, function, its arguments before the level...) at every level
    of `LEVELS` in pyperf's ``runner``: {(title, level): mean seconds per operation} (in the
    parent process only; empty in pyperf's workers)."""
    results: dict[tuple[str, str], float] = {}
    for title, func, *args in benches:
        for level in LEVELS:
            bench = runner.bench_time_func(f"{title} [{level}]", func, *args, level,
                                           inner_loops=UNROLL)
            if bench is not None and not runner.args.worker:
                results[(title, level)] = bench.mean()
    return results


def ratio_table(
    titles: list[str], results: dict[tuple[str, str], float], columns: list[str] = LEVELS
) -> list[str]:
    """The Markdown table of `run_levels`' results (or any {(title, column): seconds} whose
    first column is "raw"): each column's time and its ratio to raw."""
    lines = ["", f"| operation | {' | '.join(columns)} |", "|---|" + "---|" * len(columns)]
    for title in titles:
        raw = results[(title, "raw")]
        cells = [f"{raw * 1e9:.0f} ns"]
        for level in columns[1:]:
            t = results[(title, level)]
            cells.append(f"{t * 1e9:.0f} ns ({t / raw:.2f}x)")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return lines
