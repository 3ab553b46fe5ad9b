"""The seed's Condition producer/consumer, modernised to Python 3 and traced.

10 consumers each take 5 items; 5 producers each make 10. Consumers wait on the condition while
the queue is empty; each producer notifies one waiter per item. Set DEMO_SPEED=0.1 to run it ten
times faster (the sleeps only pace the demo; they are not synchronisation).
"""

from __future__ import annotations

import os
import threading
import time

import tracedsync

CONSUMER_COUNT = 10
PRODUCER_COUNT = CONSUMER_COUNT // 2
SPEED = float(os.environ.get("DEMO_SPEED", "1"))

queue: list[int] = []
cv = tracedsync.Condition(name="cv")
item_id = 0


class Consumer(threading.Thread):
    def __init__(self, ident: int) -> None:
        super().__init__(name=f"consumer-{ident}")
        self.id = ident

    def run(self) -> None:
        for _ in range(5):
            with cv:
                while not queue:
                    print(f"consumer({self.id}) waiting...")
                    cv.wait()
                print(f"consumer({self.id}) -> item({queue.pop(0)})")
            time.sleep(0.5 * SPEED)


class Producer(threading.Thread):
    def __init__(self, ident: int) -> None:
        super().__init__(name=f"producer-{ident}")

    def run(self) -> None:
        global item_id
        for _ in range(10):
            with cv:
                item_id += 1
                queue.append(item_id)
                cv.notify()
            time.sleep(0.7 * SPEED)


def main() -> None:
    threads: list[threading.Thread] = [Consumer(i) for i in range(CONSUMER_COUNT)]
    threads += [Producer(i) for i in range(PRODUCER_COUNT)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print("<End>")


if __name__ == "__main__":
    main()
