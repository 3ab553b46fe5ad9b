"""What runtime detection costs: raw locks against traced ones with detection as shipped, with
the watchdog thresholds set, and with lock-order checking on; all measured in one pyperf run.

    python benchmarks/bench_detect.py [--fast] [pyperf options]

Conventions as in bench_locks.py: each figure is the inline cost on the application thread
(the flusher is held off during the timed loop, logs are written after it), and every ratio
divides by the raw figure measured in the same run.

* ``traced`` is the default configuration: the wait-for graph is armed, but it is only entered
  by an acquire that is about to block, so an uncontended acquire pays nothing for it.
* ``+watchdog`` sets ``long_wait`` and ``long_hold``: the watchdog runs in the flusher's loop
  and adds nothing inline.
* ``+lock_order`` turns on lock-order checking, which wraps the lock methods (opt-in).
* "contended: graph check" is what a blocking acquire adds before it blocks (register, walk
  to the holder, unregister) when the holder is running: the only place the deadlock check
  runs.
* "contended mp: publish" is what a blocking multiprocessing-lock acquire adds on top, to be
  visible to other processes' checks (write its slot in the shared wait table, clear it).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from typing import Any

import pyperf
from _bench_util import discard_log, ratio_table, time_with

import tracedsync
import tracedsync.mp

UNROLL = 10
LOG_DIR = os.path.join(tempfile.gettempdir(), "tracedsync-bench-logs")
VARIANTS = ["raw", "traced", "+watchdog", "+lock_order"]


def _configure(variant: str) -> None:
    tracedsync.configure(
        level="full", log_dir=LOG_DIR, flush_interval=3600, buffer_limit=10**9,
        lock_order=variant == "+lock_order",
        long_wait=1.0 if variant == "+watchdog" else None,
        long_hold=1.0 if variant == "+watchdog" else None,
    )


def _make(kind: str, variant: str) -> Any:
    if variant == "raw":
        return threading.RLock() if kind == "rlock" else threading.Lock()
    _configure(variant)
    return tracedsync.RLock() if kind == "rlock" else tracedsync.Lock()


def bench_with(loops: int, kind: str, variant: str) -> float:
    return time_with(_make(kind, variant), loops)


def bench_nested(loops: int, kind: str, variant: str) -> float:
    """``with a, b:`` (b taken while a is held): with lock-order checking, one edge lookup
    per inner acquire."""
    a = _make(kind, variant)
    b = _make(kind, variant)
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        with a, b: pass  # noqa: E701
        with a, b: pass  # noqa: E701
        with a, b: pass  # noqa: E701
        with a, b: pass  # noqa: E701
        with a, b: pass  # noqa: E701
        with a, b: pass  # noqa: E701
        with a, b: pass  # noqa: E701
        with a, b: pass  # noqa: E701
        with a, b: pass  # noqa: E701
        with a, b: pass  # noqa: E701
    dt = time.perf_counter() - t0
    discard_log()
    return dt


def bench_graph_check(loops: int) -> float:
    """Register a wait on a lock held by a running thread, look for a cycle, unregister."""
    from tracedsync._core import waits as _waits
    from tracedsync._threading import locks as _locks

    _configure("traced")
    lock = tracedsync.Lock()
    holding, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            holding.set()
            done.wait()

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    holding.wait()
    st = _locks.lock_state(lock)
    me = threading.get_ident()
    frame = sys._getframe()
    wait_lock, forget = _waits.wait_lock, _waits.forget
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        wait_lock(me, st, -1, frame)
        forget(me)
    dt = time.perf_counter() - t0
    done.set()
    t.join()
    discard_log()
    return dt


def bench_publish(loops: int) -> float:
    """Publish a wait on a multiprocessing lock in the shared table and clear it: what a
    contended multiprocessing acquire adds, besides the graph check, before it blocks."""
    from tracedsync._multiprocessing import base as _mp_base
    from tracedsync._multiprocessing import wait_table as _xwaits

    _configure("traced")
    lock = tracedsync.mp.Lock()
    st = _mp_base.get_state(lock)
    table = _xwaits.table_for_new_lock()
    frame = sys._getframe()
    publish, unpublish = _xwaits.publish, _xwaits.unpublish
    rng = range(loops)
    t0 = time.perf_counter()
    for _ in rng:
        unpublish(publish(table, st.prim, st.ext, False, False, None, frame))
    dt = time.perf_counter() - t0
    discard_log()
    return dt


BENCHES = [
    ("with Lock", bench_with, "lock"),
    ("with RLock", bench_with, "rlock"),
    ("with a, b (Lock)", bench_nested, "lock"),
]


def _xwaits_enabled() -> bool:
    from tracedsync._multiprocessing import wait_table as _xwaits

    return _xwaits.enabled()


def main() -> None:
    runner = pyperf.Runner()
    results: dict[tuple[str, str], float] = {}
    for title, func, kind in BENCHES:
        for variant in VARIANTS:
            bench = runner.bench_time_func(f"{title} [{variant}]", func, kind, variant,
                                           inner_loops=UNROLL)
            if bench is not None and not runner.args.worker:
                results[(title, variant)] = bench.mean()
    check = runner.bench_time_func("contended: graph check", bench_graph_check)
    shared = (runner.bench_time_func("contended mp: publish in the shared table", bench_publish)
              if _xwaits_enabled() else None)
    if runner.args.worker or not results:
        return
    lines = ratio_table([title for title, _, _ in BENCHES], results, VARIANTS)
    if check is not None:
        lines.append("")
        lines.append(f"Contended acquire, added before blocking (register, check, unregister): "
                     f"{check.mean() * 1e9:.0f} ns")
    if shared is not None:
        lines.append(f"Contended multiprocessing acquire, also added before blocking (publish "
                     f"the wait for other processes, clear it): {shared.mean() * 1e9:.0f} ns")
    speedups = "C hot path" if tracedsync._threading.locks.SPEEDUPS else "pure Python"
    lines.append(f"Python {sys.version.split()[0]}, tracedsync {tracedsync.__version__}, "
                 f"{speedups}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
