"""Overhead of traced locks against the raw primitives, measured in one pyperf run.

    python benchmarks/bench_locks.py [--fast] [pyperf options]

Each benchmark runs in pyperf's worker processes; the ratios printed at the end divide each
traced figure by the raw figure measured in the same run. Logs go to a temporary directory
and are written after each timed loop: the figures are the *inline* cost, what the application
thread pays on its own path. The flusher's CPU per event (decode, render, write) is measured
separately; in a real program it runs in a background thread and shares the GIL.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from typing import Any

import pyperf
from _bench_util import (
    discard_log,
    ratio_table,
    run_levels,
    time_inline,
    time_with,
    with_blocks,
)

import tracedsync
from tracedsync._core.native import NATIVE

BUDGET = 2 * 1024**3
"""Records' memory for the inline benchmarks: a timed run must drop nothing (a dropped record
costs less than a written one), and each run's records are flushed after it."""
LOG_DIR = os.path.join(tempfile.gettempdir(), "tracedsync-bench-logs")


def _make(kind: str, level: str) -> Any:
    if level == "raw":
        return threading.RLock() if kind == "rlock" else threading.Lock()
    # The inline cost is measured with the flusher held off (it would take the GIL from the
    # timed thread); the flusher's own cost per event is `bench_flush_cost`, measured apart.
    tracedsync.configure(level=level, log_dir=LOG_DIR, flush_interval=3600,
                         buffer_limit=10**9, buffer_bytes=BUDGET)
    return tracedsync.RLock() if kind == "rlock" else tracedsync.Lock()


def bench_with(loops: int, kind: str, level: str) -> float:
    return time_with(_make(kind, level), loops)


def bench_acquire_release(loops: int, kind: str, level: str) -> float:
    lock = _make(kind, level)
    acquire = lock.acquire
    release = lock.release
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        acquire(); release()  # noqa: E702
        acquire(); release()  # noqa: E702
        acquire(); release()  # noqa: E702
        acquire(); release()  # noqa: E702
        acquire(); release()  # noqa: E702
        acquire(); release()  # noqa: E702
        acquire(); release()  # noqa: E702
        acquire(); release()  # noqa: E702
        acquire(); release()  # noqa: E702
        acquire(); release()  # noqa: E702
    dt = time.perf_counter() - t0
    discard_log()
    return dt


def bench_inline(loops: int, kind: str, level: str) -> float:
    """``lock.acquire(); lock.release()`` written inline: the method looked up on each call."""
    return time_inline(_make(kind, level), loops)


def bench_end_to_end(loops: int, kind: str, level: str) -> float:
    """200,000 ``with lock: pass`` then ``flush()``: the events on disk (the flusher's work is
    part of the figure, as it is part of a traced program's)."""
    total = 0.0
    for _ in range(loops):
        lock = _make(kind, level)
        if level != "raw":
            tracedsync.flush()
            discard_log()
        t0 = time.perf_counter()
        with_blocks(lock, 20_000)
        if level != "raw":
            tracedsync.flush()
        total += time.perf_counter() - t0
        if level != "raw":
            discard_log()
    return total


def bench_flush_cost(loops: int) -> float:
    """CPU to decode, render and write one recorded event (the flusher's share)."""
    tracedsync.configure(level="full", log_dir=LOG_DIR, flush_interval=3600, buffer_bytes=BUDGET)
    lock = tracedsync.RLock()
    total = 0.0
    for _ in range(loops):
        for _ in range(500):
            with lock:
                pass  # 1000 events
        t0 = time.process_time()
        tracedsync.flush()
        total += time.process_time() - t0
        discard_log()
    return total


BENCHES = [
    ("with RLock", bench_with, "rlock"),
    ("bound acquire/release RLock", bench_acquire_release, "rlock"),
    ("inline lock.acquire(); lock.release() RLock", bench_inline, "rlock"),
    ("with Lock", bench_with, "lock"),
    ("bound acquire/release Lock", bench_acquire_release, "lock"),
    ("inline lock.acquire(); lock.release() Lock", bench_inline, "lock"),
]


def main() -> None:
    runner = pyperf.Runner()
    results = run_levels(runner, BENCHES)
    e2e: dict[tuple[str, str], float] = {}
    for kind in ("lock", "rlock"):
        for level in ("raw", "full"):
            bench = runner.bench_time_func(f"end to end: 200k with {kind}, then flush() [{level}]",
                                           bench_end_to_end, kind, level)
            if bench is not None and not runner.args.worker:
                e2e[(kind, level)] = bench.mean()
    flush = runner.bench_time_func("flusher CPU per event", bench_flush_cost, inner_loops=1000)
    if runner.args.worker or not results:
        return
    lines = ratio_table([title for title, *_ in BENCHES], results)
    for kind in ("lock", "rlock"):
        if (kind, "full") in e2e:
            raw, full = e2e[(kind, "raw")], e2e[(kind, "full")]
            lines.append(f"End to end, 200k `with {kind}` then flush(), events on disk: "
                         f"raw {raw * 1e3:.1f} ms, full {full * 1e3:.1f} ms ({full / raw:.2f}x)")
    if flush is not None:
        lines.append("")
        lines.append(f"Flusher CPU per recorded event (decode + render + write): "
                     f"{flush.mean() * 1e6:.2f} µs")
    lines.append(f"Python {sys.version.split()[0]}, tracedsync {tracedsync.__version__}, "
                 f"{'native recorder' if NATIVE is not None else 'pure-Python twin'}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
