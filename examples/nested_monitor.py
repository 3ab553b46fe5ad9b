"""A nested-monitor lockout: a thread waits on a Condition while holding another lock.

`Mailbox.take()` holds `self._lock` while it waits on `self._ready` (whose own lock is another
one: the wait releases that one, not `self._lock`). `Mailbox.post()` must take `self._lock`
before it can notify `self._ready`, so it blocks, and the waiter waits for a notify that cannot
come. Here the wait has a timeout, so the program recovers after a second (the post then goes
through); without one it would hang for ever. Run it traced and analyse it::

    TRACEDSYNC_LOG_DIR=logs python examples/nested_monitor.py && tracedsync analyze logs

and the lockout is reported with both threads, both lines, both stacks and the primitives by
the names this file gives them (``Mailbox._lock``, ``Mailbox._ready``).
"""

from __future__ import annotations

import threading

import tracedsync


class Mailbox:
    def __init__(self) -> None:
        self._lock = tracedsync.Lock()
        self._ready = tracedsync.Condition()
        self._items: list[str] = []

    def take(self, timeout: float) -> str | None:
        with self._lock, self._ready:  # self._lock stays held across the wait: the mistake
            if not self._items:
                self._ready.wait(timeout)
            return self._items.pop() if self._items else None

    def post(self, item: str) -> None:
        with self._lock, self._ready:
            self._items.append(item)
            self._ready.notify()


def main() -> None:
    box = Mailbox()
    got: list[str | None] = []
    taker = threading.Thread(target=lambda: got.append(box.take(timeout=1.0)), name="taker")
    taker.start()
    while not box._ready._waiters:  # type: ignore[attr-defined]  # the taker waits
        threading.Event().wait(0.001)
    poster = threading.Thread(target=box.post, args=("letter",), name="poster")
    poster.start()
    taker.join()
    poster.join()
    print("taker got:", got[0], "(the post came after the taker gave up)")


if __name__ == "__main__":
    main()
