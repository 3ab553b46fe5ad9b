"""A deadlock across processes: two processes move money between the same two accounts, each
taking the accounts' locks in its own order (source first, then destination).

Both hold their source account at the same moment (a barrier makes sure of it, so the bug shows
on every run), then each waits for the other's. Untraced, the program only stalls: bob->alice
gives up after one second and backs off, alice->bob then goes ahead, and bob->alice retries
taking the locks in the one global order. Traced, the process whose wait closes the cycle
writes a `deadlock` event at once, and the other process's watchdog writes its side of the same
cycle, each with its own thread's stack::

    python -m tracedsync run examples/deadlock_processes.py
    tracedsync analyze tracedsync-logs/<run>
"""

from __future__ import annotations

import multiprocessing
from typing import Any


def transfer(name: str, src: Any, dst: Any, both_hold_one: Any, in_order: Any,
             patience: float) -> None:
    with src:
        both_hold_one.wait()
        if dst.acquire(timeout=patience):  # the second lock, in opposite orders: deadlock
            dst.release()
            print(f"{name}: moved the money")
            return
    print(f"{name}: gave up after {patience:g} s (deadlocked), backing off")
    first, second = in_order
    with first, second:  # the fix: every process takes the locks in one global order
        print(f"{name}: moved the money on retry")


def main() -> None:
    alice = multiprocessing.Lock()
    bob = multiprocessing.Lock()
    both_hold_one = multiprocessing.Barrier(2)
    in_order = (alice, bob)
    procs = [
        multiprocessing.Process(
            target=transfer, args=("alice->bob", alice, bob, both_hold_one, in_order, 2.0)),
        multiprocessing.Process(
            target=transfer, args=("bob->alice", bob, alice, both_hold_one, in_order, 1.0)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
