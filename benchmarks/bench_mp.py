"""Overhead of the traced multiprocessing lock and Value against multiprocessing's, in one pyperf
run.

    python benchmarks/bench_mp.py [--fast] [pyperf options]
    python benchmarks/bench_mp.py --rounds N        (interleaved, for a loaded machine)

The uncontended paths of issue 13, item 6: ``with lock: pass`` and
``lock.acquire(); lock.release()`` written inline on a multiprocessing RLock, ``v.value`` and
``v.value = 1`` on a Value (each takes the Value's RLock), ``a[0]`` on an Array, and the seed's
increment, ``with v.get_lock(): v.value += 1``: raw (multiprocessing's own objects) and traced
at each level. Each benchmark runs in pyperf's worker processes; the ratios printed at the end
divide each traced figure by the raw figure measured in the same run. As in bench_locks.py,
the flusher is held off while a loop is timed (a long flush interval, a budget that drops
nothing) and the log is emptied after it: the figures are the inline cost, what the
application thread pays on its own path.

``--rounds N`` does without pyperf: each round times every operation raw and at each level, a
process per level, one level after the other, and the table gives the median of each round's
ratio to that round's raw figure. On a machine whose load changes while it runs (other work on
its two cores), the ratios of neighbouring runs are steadier than pyperf's means of benchmarks
run one after the other.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from typing import Any

import pyperf
from _bench_util import (
    LEVELS,
    UNROLL,
    discard_log,
    ratio_table,
    run_levels,
    time_inline,
    time_with,
)

import tracedsync
import tracedsync.mp
from tracedsync._core.native import NATIVE

BUDGET = 2 * 1024**3
"""Records' memory for a timed run: it must drop nothing (see bench_locks.py)."""
LOG_DIR = os.path.join(tempfile.gettempdir(), "tracedsync-bench-logs")
CTX = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")


def _configure(level: str) -> None:
    tracedsync.configure(level=level, log_dir=LOG_DIR, flush_interval=3600,
                         buffer_limit=10**9, buffer_bytes=BUDGET)


def _lock(level: str) -> Any:
    if level == "raw":
        return CTX.RLock()
    _configure(level)
    return tracedsync.mp.RLock(ctx=CTX)


def _value(level: str) -> Any:
    if level == "raw":
        return CTX.Value("i", 0)
    _configure(level)
    return tracedsync.mp.Value("i", 0, ctx=CTX)


def _array(level: str) -> Any:
    if level == "raw":
        return CTX.Array("i", 4)
    _configure(level)
    return tracedsync.mp.Array("i", 4, ctx=CTX)


def bench_with(loops: int, level: str) -> float:
    return time_with(_lock(level), loops)


def bench_acquire_release(loops: int, level: str) -> float:
    """``lock.acquire(); lock.release()`` written inline."""
    return time_inline(_lock(level), loops)


def bench_get(loops: int, level: str) -> float:
    """``v.value`` (the Value's lock is taken and released)."""
    v = _value(level)
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        x = v.value
        x = v.value
        x = v.value
        x = v.value
        x = v.value
        x = v.value
        x = v.value
        x = v.value
        x = v.value
        x = v.value
    dt = time.perf_counter() - t0
    discard_log()
    del x
    return dt


def bench_set(loops: int, level: str) -> float:
    """``v.value = 1``."""
    v = _value(level)
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        v.value = 1
        v.value = 1
        v.value = 1
        v.value = 1
        v.value = 1
        v.value = 1
        v.value = 1
        v.value = 1
        v.value = 1
        v.value = 1
    dt = time.perf_counter() - t0
    discard_log()
    return dt


def bench_increment(loops: int, level: str) -> float:
    """The seed's increment: ``with v.get_lock(): v.value += 1``."""
    v = _value(level)
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        with v.get_lock():
            v.value += 1
        with v.get_lock():
            v.value += 1
        with v.get_lock():
            v.value += 1
        with v.get_lock():
            v.value += 1
        with v.get_lock():
            v.value += 1
        with v.get_lock():
            v.value += 1
        with v.get_lock():
            v.value += 1
        with v.get_lock():
            v.value += 1
        with v.get_lock():
            v.value += 1
        with v.get_lock():
            v.value += 1
    dt = time.perf_counter() - t0
    discard_log()
    return dt


def bench_item(loops: int, level: str) -> float:
    """``a[0]`` on an Array."""
    a = _array(level)
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        x = a[0]
        x = a[0]
        x = a[0]
        x = a[0]
        x = a[0]
        x = a[0]
        x = a[0]
        x = a[0]
        x = a[0]
        x = a[0]
    dt = time.perf_counter() - t0
    discard_log()
    del x
    return dt


BENCHES = [
    ("with lock (mp RLock)", bench_with),
    ("lock.acquire(); lock.release() (mp RLock)", bench_acquire_release),
    ("v.value", bench_get),
    ("v.value = 1", bench_set),
    ("with v.get_lock(): v.value += 1", bench_increment),
    ("a[0] (Array)", bench_item),
]


def _one_level(level: str, loops: int) -> None:
    """Time every operation at ``level`` (this process's only level: see `interleaved`)."""
    import json

    print(json.dumps({title: func(loops, level) / (loops * UNROLL) for title, func in BENCHES}))


def interleaved(rounds: int, loops: int = 20_000) -> None:
    """Each operation raw and at each level in turn, ``rounds`` times; median ratios to raw.

    Each level is timed in a process of its own: switching the level puts methods on classes
    and takes them off, and on 3.12+ a class changed too often (about a thousand times) loses
    its version tag, and with it the interpreter's specialised attribute access."""
    import json
    import statistics
    import subprocess

    times: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        row: dict[str, dict[str, float]] = {}
        for level in LEVELS:
            out = subprocess.run([sys.executable, __file__, "--one-level", level, str(loops)],
                                 check=True, capture_output=True, text=True).stdout
            row[level] = json.loads(out.splitlines()[-1])
        for title, _ in BENCHES:
            for level in LEVELS:
                times.setdefault((title, level), []).append(row[level][title])
                ratios.setdefault((title, level), []).append(
                    row[level][title] / row["raw"][title])
    lines = ["", f"| operation (median of {rounds} rounds) | raw | off | contention | full |",
             "|---|---|---|---|---|"]
    for title, _ in BENCHES:
        raw = statistics.median(times[(title, "raw")])
        cells = [f"{raw * 1e9:.0f} ns"]
        for level in LEVELS[1:]:
            t = statistics.median(times[(title, level)])
            cells.append(f"{t * 1e9:.0f} ns ({statistics.median(ratios[(title, level)]):.2f}x)")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines.append(f"Python {sys.version.split()[0]}, tracedsync {tracedsync.__version__}, "
                 f"{'native recorder' if NATIVE is not None else 'pure-Python twin'}")
    print("\n".join(lines))


def main() -> None:
    if "--rounds" in sys.argv:
        interleaved(int(sys.argv[sys.argv.index("--rounds") + 1]))
        return
    if "--one-level" in sys.argv:
        at = sys.argv.index("--one-level")
        _one_level(sys.argv[at + 1], int(sys.argv[at + 2]))
        return
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
