"""The values the hot path reads, and nothing else.

Every traced method reads ``_runtime.level``, ``_runtime.emit`` and ``_runtime.now`` through this
module (a module attribute read is one specialised instruction), so that `configure()` and `fork`
can swap them without touching the proxies.

Design note: ``emit`` is ``collections.deque.append``, atomic under the GIL, so recording an event
never takes a lock. The thread-local ``tls`` carries the caller's ident; its absence is how the
first event of a thread is noticed (see `ident`).
"""

from __future__ import annotations

import _thread
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .schema import OP_THREAD

OFF = 0
CONTENTION = 1
FULL = 2
LEVELS = {"off": OFF, "contention": CONTENTION, "full": FULL}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}

level: int = FULL
buffer: deque[tuple[Any, ...]] = deque()
emit: Callable[[tuple[Any, ...]], None] = buffer.append
now: Callable[[], int] = time.monotonic_ns
tls = _thread._local()
guard = _thread._local()
"""``guard.on`` is true while tracedsync's own code runs in this thread."""

get_ident = _thread.get_ident
native_ids: dict[int, int] = {}
"""ident -> native id of every thread that registered in this process (or its parent, before a
fork); the decoder prefers what the stream says, this fills in for threads of a forked parent."""


def _nothing() -> None:
    return None


limit: int = 100_000
"""Buffer length past which a recording thread calls `overflow`."""
overflow: Callable[[], None] = _nothing
"""Handle a buffer over ``limit`` (flush without blocking, or drop): the recorder's."""
start: Callable[[], None] = _nothing
"""Make sure this process's flusher runs (called once per new thread): the recorder's."""


attach: Callable[[int, int], None] | None = None
"""The native recorder's ``attach_thread`` (gives the thread its record buffer), if in use."""
_set_native_level: Callable[[int], None] | None = None


def use_native(native: Any) -> None:
    """Record through the native recorder too (called once, by `tracedsync._wiring`)."""
    global attach, _set_native_level
    attach = native.attach_thread
    _set_native_level = native.set_level
    native.set_level(level)


def set_level(new: int) -> None:
    """The recording level, for the Python paths and the native ones."""
    global level
    level = new
    if _set_native_level is not None:
        _set_native_level(new)


def set_recorder_hooks(
    *, on_new_thread: Callable[[], None], on_overflow: Callable[[], None]
) -> None:
    """Install the recorder's `start` and `overflow` (the recorder sits above this module)."""
    global start, overflow
    start = on_new_thread
    overflow = on_overflow


def ident() -> int:
    """Return the caller's ident, emitting a ``thread`` event the first time a thread asks."""
    try:
        return tls.ident  # type: ignore[no-any-return]
    except AttributeError:
        return register_thread()


def register_thread() -> int:
    """Name the calling thread in the log (once per thread, again after fork)."""
    me = get_ident()
    tls.ident = me
    thread = threading._active.get(me)  # type: ignore[attr-defined]
    name = thread.name if thread is not None else f"foreign-{me}"
    daemon = thread.daemon if thread is not None else True
    native = threading.get_native_id()
    native_ids[me] = native
    emit((OP_THREAD, now(), me, native, name, daemon))
    if attach is not None:
        attach(me, native)
    start()
    return me


def reset_after_fork(new_buffer: deque[tuple[Any, ...]]) -> None:
    """Give the child a fresh buffer and thread-local (its threads have new native ids)."""
    global buffer, emit, tls
    buffer = new_buffer
    emit = new_buffer.append
    tls = _thread._local()


def in_guard() -> bool:
    """True while tracedsync's own machinery runs in this thread."""
    return getattr(guard, "on", False)


def import_untraced(name: str) -> Any:
    """``importlib.import_module(name)`` with the guard on: a part of tracedsync imported when
    first used (wrapt and the proxies, the multiprocessing twins, `patch()`), perhaps while
    ``threading`` is patched, creates only raw primitives while it is imported."""
    import importlib

    was = getattr(guard, "on", False)
    guard.on = True
    try:
        return importlib.import_module(name)
    finally:
        guard.on = was
