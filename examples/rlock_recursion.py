"""The seed's RLock note: a function that takes the lock and calls itself.

With a plain Lock the recursive call would block forever on the lock its own thread holds; an
RLock counts the recursion instead and returns at once. The trace shows the depth going up and
back down, and `max depth` in the summary.
"""

from __future__ import annotations

import threading

import tracedsync

lock = tracedsync.RLock(name="tree")


def total(node: dict[str, object]) -> int:
    """Sum a tree's values while holding the lock at every level."""
    with lock:
        children = node.get("children", [])
        assert isinstance(children, list)
        return int(node["value"]) + sum(total(c) for c in children)  # type: ignore[call-overload]


def main() -> None:
    tree = {"value": 1, "children": [
        {"value": 2, "children": [{"value": 3}, {"value": 4, "children": [{"value": 5}]}]},
    ]}
    results: list[int] = []
    workers = [threading.Thread(target=lambda: results.append(total(tree))) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print("totals:", results)


if __name__ == "__main__":
    main()
