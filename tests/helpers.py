"""Small helpers shared by the test modules (imported as ``from helpers import until``: pytest
puts tests/ on sys.path, as it does for ``test_analyze_util``).

Nothing here uses a synchronization primitive: the polling pause is ``time.sleep``, so the
helpers add no events to a capture and work the same while threading is patched.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

LIMIT = 10.0  # seconds: the default bound on a wait for a state that must come
PAUSE = 0.001  # seconds between two looks at the state


def prim_of(obj: Any) -> str:
    """The id that ``obj``'s events carry as ``prim`` (a traced primitive, Value or Array)."""
    return str(obj.statistics().prim)


def until(
    predicate: Callable[[], T | None], what: str = "the awaited state", limit: float = LIMIT
) -> T:
    """Poll for a state the test waits for (not a duration): call ``predicate`` until it returns
    something truthy, and return that. Bounded: after ``limit`` seconds without it, fail the test
    with an AssertionError naming ``what``."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}")
        time.sleep(PAUSE)


def outcome(
    op: Callable[[Any], Any], obj: Any, clean: Callable[[str], str] = str
) -> tuple[Any, ...]:
    """What ``op(obj)`` returns, or the type and message of what it raises: for comparing a
    traced object with the original operation by operation. A returned string goes through
    ``clean`` first (to drop what a traced repr adds)."""
    try:
        result = op(obj)
    except Exception as exc:
        return ("raises", type(exc), str(exc))
    if isinstance(result, str):
        result = clean(result)
    return ("returns", result)


def clean_env(*drop: str, **extra: str) -> dict[str, str]:
    """This process's environment for a child: without tracedsync's own settings
    (``TRACEDSYNC_*``) and the variables named in ``drop``, then with ``extra`` added."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TRACEDSYNC_") and k not in drop}
    env.update(extra)
    return env


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every line of a JSON-lines file (a log as written), parsed."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def start_thread(target: Callable[[], Any], name: str) -> threading.Thread:
    """A daemon thread named ``name`` running ``target``, started."""
    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    return t


def join_threads(*threads: threading.Thread) -> None:
    """Join each of ``threads`` within `LIMIT`; fail naming the one that did not finish."""
    for t in threads:
        t.join(LIMIT)
        assert not t.is_alive(), f"{t.name} did not finish"
