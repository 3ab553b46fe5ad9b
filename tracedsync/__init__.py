"""tracedsync: drop-in, instrumented replacements for Python's synchronization primitives.

>>> import tracedsync
>>> lock = tracedsync.RLock(name="accounts")
>>> cond = tracedsync.Condition(lock)
>>> counter = tracedsync.Value("i", 0)  # a multiprocessing.Value (more in tracedsync.mp)

Each process writes JSON lines to ``<log_dir>/tracedsync-<pid>.jsonl``; see docs/events.md.

Importing it is cheap (docs/architecture.md, "Import time"): the recorder, the locks and the
condition are loaded at once; the wrapt-based primitives (semaphores, events, barriers), the
multiprocessing ones (``Value``, ``Array``, `tracedsync.mp`) and `patch()` when first used;
structlog only for user processors or a logger; the analysis only by the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any

from . import _wiring
from ._core import runtime as _rt
from ._core.state import Statistics
from ._detect.deadlock import DeadlockError
from ._detect.snapshot import snapshot
from ._record.config import ConfigError, Settings
from ._record.recorder import RECORDER as _RECORDER
from ._threading.condition import Condition, TracedCondition
from ._threading.locks import Lock, RLock, TracedLock, TracedRLock
from ._version import SCHEMA_VERSION, __version__

if _TYPE_CHECKING:
    from . import mp as mp
    from ._patch.patcher import patch, patched, unpatch
    from ._threading.barrier import Barrier, TracedBarrier
    from ._threading.event import Event, TracedEvent
    from ._threading.semaphore import (
        BoundedSemaphore,
        Semaphore,
        TracedBoundedSemaphore,
        TracedSemaphore,
    )
    from .mp import Array, Value

_wiring.connect()

_LAZY: dict[str, str] = {
    **dict.fromkeys(("Barrier", "TracedBarrier"), "tracedsync._threading.barrier"),
    **dict.fromkeys(("Event", "TracedEvent"), "tracedsync._threading.event"),
    **dict.fromkeys(("BoundedSemaphore", "Semaphore", "TracedBoundedSemaphore",
                     "TracedSemaphore"), "tracedsync._threading.semaphore"),
    **dict.fromkeys(("Array", "Value"), "tracedsync.mp"),
    **dict.fromkeys(("patch", "patched", "unpatch"), "tracedsync._patch.patcher"),
    "mp": "tracedsync.mp",
}
"""Public names whose modules are imported when first used: they cost wrapt (and through it
asyncio) or multiprocessing, which a program that does not use them should not pay for."""


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _rt.import_untraced(where)
    value = module if name == "mp" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "SCHEMA_VERSION",
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "ConfigError",
    "DeadlockError",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    "Settings",
    "Statistics",
    "TracedBarrier",
    "TracedBoundedSemaphore",
    "TracedCondition",
    "TracedEvent",
    "TracedLock",
    "TracedRLock",
    "TracedSemaphore",
    "Value",
    "__version__",
    "configure",
    "flush",
    "log_path",
    "patch",
    "patched",
    "settings",
    "snapshot",
    "unpatch",
]


def configure(**settings: Any) -> Settings:
    """Change how tracedsync records; returns the settings now in force.

    Keywords: ``log_dir``, ``level`` (``"full"``, ``"contention"``, ``"off"``),
    ``flush_interval`` (seconds), ``buffer_limit``, ``overflow`` (``"flush"`` or ``"drop"``),
    ``max_log_bytes`` (the cap on this process's log files together, 1 GiB by default, None for
    none: the log rotates over four files, keeping the most recent history), ``processors``
    (structlog processors run before the JSON renderer) and ``logger`` (a structlog logger that
    receives the events instead of the file); runtime detection: ``on_deadlock``
    (``"report"`` or ``"raise"``: raise `DeadlockError` instead of blocking for ever),
    ``lock_order`` (check lock-order inversions online), ``long_wait`` and ``long_hold``
    (seconds, None for off: report waits and holds still going on past them) and
    ``snapshot_signal`` (``"SIGUSR1"``; ``"none"`` for no handler). Defaults come from the
    ``TRACEDSYNC_*``
    environment variables. Events recorded before the call are flushed under the old settings.
    The new settings are exported to the environment so that child processes inherit them.
    """
    return _RECORDER.update(**settings)


def flush() -> None:
    """Write every event recorded so far, by any thread, to the sink now."""
    _RECORDER.flush()


def settings() -> Settings:
    """The settings in force."""
    return _RECORDER.settings


def log_path() -> str:
    """The file this process writes to."""
    return _RECORDER.path
