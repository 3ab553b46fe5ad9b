"""Connects the layers, once per process: the only place where a higher layer hands a lower one
what it calls back (see docs/architecture.md, "Layers").

Lower layers never import higher ones. Where one must call up at run time, it owns a small hook
that is set here: the hot path (`_core.runtime`) starts the recorder's flusher and hands it an
overfull buffer; the wait-for table (`_core.waits`) runs the deadlock check and the
nested-monitor watcher; the recorder runs the
detectors' settings hooks after every `configure()` and the watchdog in its flusher loop.
Nothing is connected as a side effect of importing a module, so import order decides nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from ._core import native, runtime, waits
from ._detect import deadlock, lockorder, nested, snapshot, watchdog
from ._record.recorder import RECORDER
from ._threading import condition

_connected = False


def _tracing_methods(settings: Any) -> None:
    """The recording methods of the primitives that have them are on their classes only while
    the level is not off (at off those cost exactly what ``threading``'s and
    ``multiprocessing``'s cost)."""
    on = settings.level != "off"
    condition.set_tracing(on)
    # The others are imported when first used (and then set themselves from the level).
    for name in ("semaphore", "event", "barrier"):
        module = sys.modules.get(f"{__package__}._threading.{name}")
        if module is not None:
            module.set_tracing(on)
    mp_base = sys.modules.get(f"{__package__}._multiprocessing.base")
    if mp_base is not None:  # the multiprocessing classes, and their objects' attributes
        mp_base.set_tracing(on)


def connect() -> None:
    """Connect everything (idempotent; `tracedsync/__init__` calls it)."""
    global _connected
    if _connected:
        return
    _connected = True
    native.install()
    if native.NATIVE is not None:
        runtime.use_native(native.NATIVE)
        waits.set_waker(native.NATIVE.wake_if_idle)
        waits.set_native(native.NATIVE.sync_waits, native.NATIVE.waiting,
                         native.NATIVE.waits_for)
    RECORDER.install()
    waits.set_checker(deadlock.check)
    waits.set_watcher(nested.on_wait)
    for apply in (
        _tracing_methods,
        deadlock.apply_settings,
        lockorder.apply_settings,
        watchdog.apply_settings,
        snapshot.apply_settings,
    ):
        apply(RECORDER.settings)
        RECORDER.config_hooks.append(apply)
    RECORDER.tick_hooks.append(watchdog.tick)
    RECORDER.tick_needed.append(watchdog.needs_ticks)
