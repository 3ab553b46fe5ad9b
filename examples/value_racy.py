"""The seed's warning: `v.value += 1` without get_lock() is not atomic across processes.

Each `.value` access takes the lock, but the read and the write are two separate critical
sections, so increments are lost. The result is usually below the expected total. (Halfway, each
worker waits for the other at a barrier: however the two processes are scheduled, their updates
overlap in time, which is what can lose one.)

`tracedsync.Value` is a traced `multiprocessing.Value`: run this with logging on and analyse it,
and the `+=` line is reported as an unsynchronised read-modify-write (finding `rmw`)::

    TRACEDSYNC_LOG_DIR=logs python examples/value_racy.py && tracedsync analyze logs
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import tracedsync

N = 10_000


def worker(v: Any, step: int, halfway: Any) -> None:
    for i in range(N):
        if i == N // 2:
            halfway.wait()
        v.value += step  # unsynchronised read-modify-write


def main() -> None:
    counter = tracedsync.Value("i", 0, name="counter")
    halfway = multiprocessing.Barrier(2)
    p1 = multiprocessing.Process(target=worker, args=(counter, 1, halfway))
    p2 = multiprocessing.Process(target=worker, args=(counter, 2, halfway))
    p1.start()
    p2.start()
    p1.join()
    p2.join()
    print("after:", counter.value, "expected:", 3 * N)


if __name__ == "__main__":
    main()
