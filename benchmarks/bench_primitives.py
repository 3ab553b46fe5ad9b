"""Overhead of the traced Semaphore, Event and Condition against threading's, in one pyperf run.

    python benchmarks/bench_primitives.py [--fast] [pyperf options]

The uncontended paths of issue 13: ``with sem: pass``, ``sem.acquire(); sem.release()``,
``ev.set(); ev.clear()``, ``ev.wait()`` on an event already set and ``cond.notify()`` with
no waiter (the condition's lock held), raw and traced at each level. Each benchmark runs in
pyperf's worker processes; the ratios printed at the end divide
each traced figure by the raw figure measured in the same run. As in bench_locks.py, the
flusher is held off while a loop is timed and the log is emptied after it: the figures are the
inline cost, what the application thread pays on its own path.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from typing import Any

import pyperf
from _bench_util import discard_log, ratio_table, run_levels, time_inline, time_with

import tracedsync
from tracedsync._core.native import NATIVE

BUDGET = 2 * 1024**3
"""Records' memory for a timed run: it must drop nothing (see bench_locks.py)."""
LOG_DIR = os.path.join(tempfile.gettempdir(), "tracedsync-bench-logs")


def _make(kind: str, level: str) -> Any:
    module: Any = threading
    if level != "raw":
        tracedsync.configure(level=level, log_dir=LOG_DIR, flush_interval=3600,
                             buffer_limit=10**9, buffer_bytes=BUDGET)
        module = tracedsync
    if kind == "semaphore":
        return module.Semaphore(2)
    return module.Condition() if kind == "condition" else module.Event()


def bench_with(loops: int, level: str) -> float:
    return time_with(_make("semaphore", level), loops)


def bench_acquire_release(loops: int, level: str) -> float:
    """``sem.acquire(); sem.release()`` written inline."""
    return time_inline(_make("semaphore", level), loops)


def bench_set_clear(loops: int, level: str) -> float:
    """``ev.set(); ev.clear()`` written inline."""
    ev = _make("event", level)
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        ev.set(); ev.clear()  # noqa: E702
        ev.set(); ev.clear()  # noqa: E702
        ev.set(); ev.clear()  # noqa: E702
        ev.set(); ev.clear()  # noqa: E702
        ev.set(); ev.clear()  # noqa: E702
        ev.set(); ev.clear()  # noqa: E702
        ev.set(); ev.clear()  # noqa: E702
        ev.set(); ev.clear()  # noqa: E702
        ev.set(); ev.clear()  # noqa: E702
        ev.set(); ev.clear()  # noqa: E702
    dt = time.perf_counter() - t0
    discard_log()
    return dt


def bench_wait_set(loops: int, level: str) -> float:
    """``ev.wait()`` on an event already set."""
    ev = _make("event", level)
    ev.set()
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        ev.wait()
        ev.wait()
        ev.wait()
        ev.wait()
        ev.wait()
        ev.wait()
        ev.wait()
        ev.wait()
        ev.wait()
        ev.wait()
    dt = time.perf_counter() - t0
    discard_log()
    return dt


def bench_notify(loops: int, level: str) -> float:
    """``cond.notify()`` with nobody waiting, the condition's lock held (a producer's step)."""
    cond = _make("condition", level)
    rng = range(loops)
    with cond:
        t0 = time.perf_counter()
        for _ in rng:
            cond.notify()
            cond.notify()
            cond.notify()
            cond.notify()
            cond.notify()
            cond.notify()
            cond.notify()
            cond.notify()
            cond.notify()
            cond.notify()
        dt = time.perf_counter() - t0
    discard_log()
    return dt


BENCHES = [
    ("with sem", bench_with),
    ("sem.acquire(); sem.release()", bench_acquire_release),
    ("ev.set(); ev.clear()", bench_set_clear),
    ("ev.wait() (set)", bench_wait_set),
    ("cond.notify() (no waiter)", bench_notify),
]


def main() -> None:
    runner = pyperf.Runner()
    results = run_levels(runner, BENCHES)
    if runner.args.worker or not results:
        return
    lines = ratio_table([title for title, _ in BENCHES], results)
    lines.append(f"Python {sys.version.split()[0]}, tracedsync {tracedsync.__version__}, "
                 f"{'native recorder' if NATIVE is not None else 'pure-Python twin'}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
