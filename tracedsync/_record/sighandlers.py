"""Signal handlers tracedsync installs on the program's behalf, kept out of the program's view;
and the signal masks of tracedsync's own thread and of ``fork()``.

tracedsync installs one handler, the snapshot signal's (SIGUSR1 by default; see
`tracedsync._detect.snapshot`), only from the main thread and only over the default disposition
(``SIG_DFL``; a program's own handler is never replaced). It installs none for SIGTERM (see
`Recorder.install`). Such a handler *stands for the default*: the program should not be able
to tell it is there. So while one is installed, ``signal.getsignal`` and ``signal.signal`` are
wrapped:

* ``signal.getsignal(sig)`` returns ``SIG_DFL`` where the handler in place is ours, and the
  real handler everywhere else;
* ``signal.signal(sig, handler)`` installs the program's handler in place of ours (from then on
  the program's handler is the one that runs) and returns ``SIG_DFL`` as the previous handler
  where it was ours;
* ``signal.signal(sig, SIG_DFL)`` puts ours back and returns what was there (the program's
  handler);
* every other call goes straight through. The wrappers are removed when no handler of ours is
  installed any more.

Limits: code that bound ``getsignal`` or ``signal`` by name before tracedsync was imported
(``from signal import getsignal``), and C code that reads the disposition with ``sigaction``,
see the real handler.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal as _signal
import threading
from collections.abc import Iterator
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
    _guard_forks()
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


_SYNCHRONOUS = frozenset(
    getattr(_signal, name) for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP",
                                        "SIGSYS", "SIGKILL", "SIGSTOP")
    if hasattr(_signal, name)
)


@contextlib.contextmanager
def kept_out_of_new_threads() -> Iterator[None]:
    """Block the asynchronous signals in the calling thread while it starts a thread of
    tracedsync's own (the flusher), which inherits that mask from its first instruction; the
    caller's mask is put back after. So the kernel delivers a signal sent to the process to one
    of the program's own threads, as it would without tracedsync.

    Why: a Python handler runs only in the main thread. A SIGTERM that the kernel hands to the
    flusher while the main thread waits in C (a multiprocessing lock: a ``Pool`` worker after
    ``terminate()``) would run our handler only when that wait ends, perhaps never; without a
    Python handler the default action would have ended the process at once. (Signals a
    thread causes itself, SIGSEGV and the like, stay unblocked.)"""
    if not hasattr(_signal, "pthread_sigmask"):
        yield
        return
    try:
        before = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals() - _SYNCHRONOUS)
    except (OSError, ValueError):  # pragma: no cover
        yield
        return
    try:
        yield
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, before)


# -- fork ----------------------------------------------------------------------------------
_saved_masks: dict[int, set[int]] = {}
_fork_guarded = False


def _guard_forks() -> None:
    """Keep our signals blocked while the process forks (once per process).

    A signal sent to a new child while it is still inside ``fork()`` (multiprocessing starts a
    ``Pool`` worker, and ``terminate()`` sends it SIGTERM at once) would reach Python's C
    handler before CPython clears the inherited pending flags in the child: Python forgets it,
    our handler never runs, and the child lives on, where the default action would have ended
    it. Blocked, the kernel keeps it pending until the child unblocks it, after that reset."""
    global _fork_guarded
    if _fork_guarded or not hasattr(os, "register_at_fork") or not hasattr(
        _signal, "pthread_sigmask"
    ):
        return
    _fork_guarded = True
    os.register_at_fork(
        before=_block_ours, after_in_parent=_restore_mask, after_in_child=_restore_mask
    )


def _block_ours() -> None:
    ours = [s for s in _ours if installed(s)]
    if ours:
        _saved_masks[threading.get_ident()] = _signal.pthread_sigmask(_signal.SIG_BLOCK, ours)


def _restore_mask() -> None:
    mask = _saved_masks.pop(threading.get_ident(), None)
    if mask is not None:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)

