"""The seed's first lesson: multiprocessing.Value with get_lock() (the correct version).

`v.value += 1` is a read then a write, each taking the value's lock separately, so two processes
can interleave between them. Holding `get_lock()` across both makes the increment atomic.

`tracedsync.Value` is a traced `multiprocessing.Value`: traced and analysed like
examples/value_racy.py, this version reports no read-modify-write::

    TRACEDSYNC_LOG_DIR=logs python examples/value_get_lock.py && tracedsync analyze logs
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import tracedsync

N = 10_000


def worker(v: Any, step: int) -> None:
    for _ in range(N):
        with v.get_lock():
            v.value += step


def main() -> None:
    counter = tracedsync.Value("i", 0, name="counter")
    print("before:", counter.value)
    p1 = multiprocessing.Process(target=worker, args=(counter, 1))
    p2 = multiprocessing.Process(target=worker, args=(counter, 2))
    p1.start()
    p2.start()
    p1.join()
    p2.join()
    print("after:", counter.value, "expected:", 3 * N)


if __name__ == "__main__":
    main()
