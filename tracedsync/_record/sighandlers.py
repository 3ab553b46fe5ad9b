"""Signal handlers tracedsync installs on the program's behalf, kept out of the program's view.

tracedsync installs two handlers, each only from the main thread and only over the default
disposition (``SIG_DFL``; a program's own handler is never replaced): on SIGTERM, flush the log
and then die of the signal as the default action would (`Recorder`), and on the snapshot signal
(SIGUSR1 by default) write a snapshot (`tracedsync._detect.snapshot`). Such a handler *stands
for the default*: the program should not be able to tell it is there. So while one is
installed, ``signal.getsignal`` and ``signal.signal`` are wrapped:

* ``signal.getsignal(sig)`` returns ``SIG_DFL`` where the handler in place is ours, and the
  real handler everywhere else;
* ``signal.signal(sig, handler)`` installs the program's handler in place of ours (from then on
  the program's handler is the one that runs) and returns ``SIG_DFL`` as the previous handler
  where it was ours;
* ``signal.signal(sig, SIG_DFL)`` puts ours back (ours is the default action plus a flush) and
  returns what was there (the program's handler);
* every other call goes straight through. The wrappers are removed when no handler of ours is
  installed any more.

Limits: code that bound ``getsignal`` or ``signal`` by name before tracedsync was imported
(``from signal import getsignal``), and C code that reads the disposition with ``sigaction``,
see the real handler.
"""

from __future__ import annotations

import functools
import os
import signal as _signal
import threading
from typing import Any

_real_signal = _signal.signal
_real_getsignal = _signal.getsignal
_ours: dict[int, Any] = {}
"""Signal number -> the handler object we installed for it (identity is what we compare)."""


def _number(signalnum: Any) -> int | None:
    try:
        return int(signalnum)
    except (TypeError, ValueError):
        return None


def _is_default(handler: Any) -> bool:
    return isinstance(handler, int) and not isinstance(handler, bool) and (
        handler == int(_signal.SIG_DFL))


@functools.wraps(_real_getsignal)
def getsignal(signalnum: Any) -> Any:
    handler = _real_getsignal(signalnum)
    num = _number(signalnum)
    if num is not None and handler is not None and handler is _ours.get(num):
        return _signal.SIG_DFL
    return handler


@functools.wraps(_real_signal)
def signal(signalnum: Any, handler: Any) -> Any:
    num = _number(signalnum)
    ours = None if num is None else _ours.get(num)
    if ours is None:
        return _real_signal(signalnum, handler)
    previous = _real_signal(signalnum, ours if _is_default(handler) else handler)
    return _signal.SIG_DFL if previous is ours else previous


def _wrap() -> None:
    if _signal.signal is not signal:
        _signal.signal = signal
    if _signal.getsignal is not getsignal:
        _signal.getsignal = getsignal


def _unwrap() -> None:
    # Someone else's wrapper installed after ours is left in place.
    if _signal.signal is signal:
        _signal.signal = _real_signal
    if _signal.getsignal is getsignal:
        _signal.getsignal = _real_getsignal


def install(signum: int, handler: Any) -> bool:
    """Install ``handler`` for ``signum`` if the disposition is the default one and this is
    the main thread; the program keeps seeing ``SIG_DFL``. Returns whether it is installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        current = _real_getsignal(signum)
        if current is not handler and current != _signal.SIG_DFL:
            return False  # the program's own handler (or one set from C): not ours to replace
        _real_signal(signum, handler)
    except (OSError, ValueError, RuntimeError, TypeError):
        return False
    _ours[int(signum)] = handler
    _wrap()
    return True


def uninstall(signum: int) -> None:
    """Stop standing in for the default on ``signum``: if our handler is the one in place, put
    ``SIG_DFL`` back (from the main thread; elsewhere the handler stays, still hidden)."""
    handler = _ours.get(int(signum))
    if handler is None:
        return
    try:
        if _real_getsignal(signum) is handler:
            _real_signal(signum, _signal.SIG_DFL)
    except (OSError, ValueError, RuntimeError):
        return
    del _ours[int(signum)]
    if not _ours:
        _unwrap()


def installed(signum: int) -> bool:
    """Whether our handler is the one in place for ``signum`` (the real disposition)."""
    handler = _ours.get(int(signum))
    return handler is not None and _real_getsignal(signum) is handler


def die_of(signum: int) -> None:
    """Give ``signum`` its default action and send it to this process again: the exit status is
    the one the program would have had without tracedsync."""
    _real_signal(signum, _signal.SIG_DFL)
    _ours.pop(int(signum), None)
    os.kill(os.getpid(), signum)
