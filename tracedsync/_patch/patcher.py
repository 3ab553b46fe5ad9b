"""`patch()`, `unpatch()` and `patched()`: zero-code tracing by replacing the factories.

Design note.

* The patch is a table of ``(parent object, attribute name, replacement)`` triples (wrapt's
  ``patches.py`` style). Applying one records what the parent's own ``__dict__`` held under that
  name (or that it held nothing: a method inherited from a base class); undoing puts exactly that
  back (or deletes the attribute), in reverse order. Nothing is rebuilt or looked up again, so
  ``threading.Lock is original`` after `unpatch()`. If someone else replaced one of our
  attributes after us, undo leaves theirs in place and warns instead of clobbering it.
* Each replacement is a shim (`_shim.py`) with a `Hook`; undo also switches the hook off, so a
  shim that escaped the table (``from threading import Lock`` while patched, a class attribute
  that captured it) passes straight through to the original afterwards.
* Thread safety: every change to the table happens under ``_LOCK``, a raw ``_thread.RLock`` (not a
  ``threading`` one: those are what we patch). Each ``setattr`` is atomic, so another thread
  creating a primitive meanwhile gets either the original or a working shim, never a half-made
  state. A forked child gets a new lock (the parent's may have been held by another thread).
* Idempotent: `patch()` with the same request as the one in force changes nothing; a different
  request undoes the current patch and applies the new one, under the same lock hold.

The multiprocessing extension point. When ``tracedsync._multiprocessing.factories`` can be
imported, its factories
``Value``, ``Array``, ``Lock``, ``RLock``, ``Condition``, ``Semaphore``, ``BoundedSemaphore``,
``Event`` and ``Barrier`` (each taking ``ctx=`` a multiprocessing context, None for the default,
and ``name=``) are patched in twice:

* the module functions ``multiprocessing.Lock`` etc. (bound methods of the default context) are
  replaced by shims that call ``_mp.Lock(*args, **kwargs)``;
* the methods of ``multiprocessing.context.BaseContext`` are replaced by shims that call
  ``_mp.Lock(*args, ctx=self, **kwargs)``, so ``multiprocessing.get_context("spawn").Lock()`` is
  traced too (every concrete context inherits these methods).

A factory that accepts a ``_site`` keyword receives the creation site ``(code, lineno)`` of the
user's call; otherwise it must find it itself (`_sites.user_site()` skips tracedsync's frames,
the shim's among them). `_mp` builds the real primitive with ``ctx.Lock()`` or the like: that
call comes from tracedsync's own code, which is never in scope, so the shim hands it the original
and there is no recursion. If ``_mp`` is absent these entries are skipped; a factory it does not
define is skipped alone; an ``_mp`` that fails to import is reported with a warning.

Import time. A ``threading`` shim imports the traced primitive's module at its first traced
call (with tracedsync's guard on, so what that import creates is raw): `patch()` of
``threading`` alone imports no wrapt. ``_mp`` is imported by `patch()` itself (which of its
factories exist decides what is patched), and with it wrapt and multiprocessing.
"""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import importlib
import inspect
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

from .._core import runtime as rt
from .._core.native import NATIVE
from .._record.recorder import RECORDER
from .._threading.condition import TracedCondition
from .._threading.locks import RawLock, RawRLock, new_lock, new_rlock
from .scope import ENV_EXCLUDE, ENV_INCLUDE, Scope, patterns_from_env
from .shims import Builder, Hook, make_shim

if TYPE_CHECKING:  # imported when first used (see "Import time" above)
    from .._threading import barrier, event, locks_py, semaphore  # noqa: F401

__all__ = ["is_patched", "patch", "patched", "unpatch"]

THREADING_KINDS = (
    "Lock",
    "RLock",
    "Condition",
    "Semaphore",
    "BoundedSemaphore",
    "Event",
    "Barrier",
)
MP_KINDS = (*THREADING_KINDS, "Value", "Array")
ALL_TARGETS = tuple(f"threading.{k}" for k in THREADING_KINDS) + tuple(
    f"multiprocessing.{k}" for k in MP_KINDS
)
_MISSING = object()


# -- builders of the traced threading primitives (same signatures as threading's) ---------------
def _site(frame: FrameType) -> tuple[Any, int]:
    return frame.f_code, frame.f_lineno or 0


def _module(name: str) -> Any:
    """``tracedsync._threading.<name>``, imported (untraced) at its first use."""
    found = sys.modules.get(f"tracedsync._threading.{name}")
    return found if found is not None else rt.import_untraced(f"tracedsync._threading.{name}")


def _lock(frame: FrameType, /, *args: Any, **kwargs: Any) -> Any:
    if args or kwargs:  # threading.Lock takes no arguments: let it say so
        return RawLock(*args, **kwargs)
    return new_lock(site=_site(frame))


def _rlock(frame: FrameType, /, *args: Any, **kwargs: Any) -> Any:
    raw = RawRLock(*args, **kwargs)  # its warnings and errors are threading's
    if NATIVE is None:
        return _module("locks_py").PyTracedRLock(raw, _site=_site(frame))
    return new_rlock(site=_site(frame))


def _condition(frame: FrameType, /, lock: Any = None) -> Any:
    return TracedCondition(lock, _site=_site(frame))


def _semaphore(frame: FrameType, /, value: int = 1) -> Any:
    return _module("semaphore").TracedSemaphore(value, _site=_site(frame))


def _bounded_semaphore(frame: FrameType, /, value: int = 1) -> Any:
    return _module("semaphore").TracedBoundedSemaphore(value, _site=_site(frame))


def _event(frame: FrameType, /) -> Any:
    return _module("event").TracedEvent(_site=_site(frame))


def _barrier(
    frame: FrameType,
    /,
    parties: int,
    action: Callable[[], None] | None = None,
    timeout: float | None = None,
) -> Any:
    return _module("barrier").TracedBarrier(parties, action, timeout, _site=_site(frame))


_THREADING_BUILDERS: dict[str, Builder] = {
    "Lock": _lock,
    "RLock": _rlock,
    "Condition": _condition,
    "Semaphore": _semaphore,
    "BoundedSemaphore": _bounded_semaphore,
    "Event": _event,
    "Barrier": _barrier,
}


# -- builders that delegate to tracedsync._multiprocessing.factories ----------------------------
def _mp_builder(factory: Callable[..., Any], method: bool) -> Builder:
    """``factory(*args, [ctx=self,] [_site=...,] **kwargs)`` for a shim of a function or method."""
    try:
        takes_site = "_site" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_site = False

    def build(frame: FrameType, /, *args: Any, **kwargs: Any) -> Any:
        if method:
            kwargs["ctx"] = args[0]
            args = args[1:]
        if takes_site:
            kwargs["_site"] = _site(frame)
        return factory(*args, **kwargs)

    return build


def _load_mp() -> ModuleType | None:
    was = rt.in_guard()
    rt.guard.on = True  # what importing it creates (wrapt, logging...) is raw
    try:
        return importlib.import_module("tracedsync._multiprocessing.factories")
    except ModuleNotFoundError as exc:
        if exc.name == "tracedsync._multiprocessing.factories":
            return None
        warnings.warn(
            f"tracedsync: multiprocessing primitives not patched: {exc!r}",
            RuntimeWarning,
            stacklevel=4,
        )
    except Exception as exc:
        warnings.warn(
            f"tracedsync: multiprocessing primitives not patched: {exc!r}",
            RuntimeWarning,
            stacklevel=4,
        )
    finally:
        rt.guard.on = was
    return None


# -- the table ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Request:
    """What `patch()` was asked for; equal requests make `patch()` a no-op."""

    targets: frozenset[str]
    include: tuple[str, ...]
    exclude: tuple[str, ...]


@dataclasses.dataclass
class _Slot:
    """One applied triple, with what it replaced."""

    target: str
    parent: Any
    name: str
    original: Any
    replacement: Any
    hook: Hook


@dataclasses.dataclass
class _Applied:
    request: Request
    slots: list[_Slot]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.target for s in self.slots))


def _table(request: Request) -> list[tuple[str, Any, str, Builder]]:
    """The ``(target, parent, name, builder)`` entries for ``request``."""
    table: list[tuple[str, Any, str, Builder]] = []
    for kind in THREADING_KINDS:
        target = f"threading.{kind}"
        if target in request.targets:
            table.append((target, threading, kind, _THREADING_BUILDERS[kind]))
    wanted = [k for k in MP_KINDS if f"multiprocessing.{k}" in request.targets]
    mp = _load_mp() if wanted else None
    if mp is not None:
        import multiprocessing
        import multiprocessing.context

        for kind in wanted:
            factory = getattr(mp, kind, None)
            if not callable(factory):
                continue
            target = f"multiprocessing.{kind}"
            table.append((target, multiprocessing, kind, _mp_builder(factory, method=False)))
            table.append(
                (
                    target,
                    multiprocessing.context.BaseContext,
                    kind,
                    _mp_builder(factory, method=True),
                )
            )
    return table


def _apply(request: Request) -> _Applied:
    scope = Scope(request.include, request.exclude)
    applied = _Applied(request, [])
    try:
        for target, parent, name, builder in _table(request):
            original = vars(parent).get(name, _MISSING)
            current = getattr(parent, name)  # what callers see now (inherited for a method)
            hook = Hook(current if original is _MISSING else original, builder, scope)
            replacement = make_shim(hook, *_location(parent, name))
            setattr(parent, name, replacement)
            applied.slots.append(_Slot(target, parent, name, original, replacement, hook))
    except BaseException:
        _undo(applied)
        raise
    return applied


def _location(parent: Any, name: str) -> tuple[str, str]:
    """Where the replacement is found: ``("threading", "Lock")``,
    ``("multiprocessing.context", "BaseContext.Lock")``."""
    if isinstance(parent, ModuleType):
        return parent.__name__, name
    return parent.__module__, f"{parent.__qualname__}.{name}"


def _undo(applied: _Applied) -> None:
    for slot in reversed(applied.slots):
        slot.hook.active = False
        now = vars(slot.parent).get(slot.name, _MISSING)
        if now is not slot.replacement:
            warnings.warn(
                f"tracedsync: {getattr(slot.parent, '__name__', slot.parent)}.{slot.name} was "
                "replaced by someone else after patch(); left as it is",
                RuntimeWarning,
                stacklevel=4,
            )
            continue
        if slot.original is _MISSING:
            delattr(slot.parent, slot.name)
        else:
            setattr(slot.parent, slot.name, slot.original)
    applied.slots.clear()


_LOCK = _thread.RLock()
_current: _Applied | None = None


def _renew_lock() -> None:
    global _LOCK
    _LOCK = _thread.RLock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_renew_lock)


def _set(request: Request | None) -> tuple[str, ...]:
    """Make the patch in force the one ``request`` asks for (None: no patch)."""
    global _current
    with _LOCK:
        if _current is not None and request is not None and _current.request == request:
            return _current.names
        if _current is not None:
            old, _current = _current, None
            _undo(old)
        if request is not None:
            _current = _apply(request)
            return _current.names
        return ()


def _targets(primitives: Iterable[str] | None) -> frozenset[str]:
    if primitives is None:
        return frozenset(ALL_TARGETS)
    if isinstance(primitives, str):
        primitives = [primitives]
    out: set[str] = set()
    for p in primitives:
        found = [t for t in ALL_TARGETS if t == p or t.endswith("." + p)]
        if not found:
            raise ValueError(
                f"unknown primitive {p!r}; choose among {', '.join(MP_KINDS)} (both modules) "
                "or a name qualified by threading. or multiprocessing."
            )
        out.update(found)
    return frozenset(out)


def _request(
    primitives: Iterable[str] | None,
    include: Iterable[str] | None,
    exclude: Iterable[str] | None,
) -> Request:
    inc = patterns_from_env(ENV_INCLUDE) if include is None else _patterns(include)
    exc = patterns_from_env(ENV_EXCLUDE) if exclude is None else _patterns(exclude)
    return Request(_targets(primitives), inc, exc)


def _patterns(value: Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


# -- the public functions -------------------------------------------------------------------------
def patch(
    *,
    primitives: Iterable[str] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    **settings: Any,
) -> tuple[str, ...]:
    """Replace ``threading``'s factories (and ``multiprocessing``'s) with traced ones.

    ``primitives``: which to patch, e.g. ``["Lock", "RLock"]`` (both modules) or
    ``["threading.Event"]``; default all. ``include``/``exclude``: module-name patterns that
    widen or narrow the default scope (the user's code is traced, the standard library and
    tracedsync's dependencies are not); default from ``TRACEDSYNC_INCLUDE``/``TRACEDSYNC_EXCLUDE``.
    Other keywords are `tracedsync.configure` settings (``log_dir``, ``level``...).

    Idempotent: patching again with the same arguments changes nothing; with others, the new
    patch replaces the old one. Returns the names patched (``"threading.Lock"``...).
    """
    request = _request(primitives, include, exclude)
    if settings:
        RECORDER.update(**settings)
    return _set(request)


def unpatch() -> None:
    """Put back exactly the objects `patch()` replaced. Does nothing when not patched."""
    _set(None)


def is_patched() -> bool:
    """Whether a patch is in force."""
    return _current is not None


@contextlib.contextmanager
def patched(
    *,
    primitives: Iterable[str] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    **settings: Any,
) -> Iterator[tuple[str, ...]]:
    """`patch()` for the ``with`` block; on exit, the patch (or its absence) in force before.

    Settings given as keywords are restored too.
    """
    request = _request(primitives, include, exclude)
    before_settings = None
    with _LOCK:
        before = _current.request if _current is not None else None
        names = _set(request)
    try:
        if settings:
            before_settings = RECORDER.settings
            RECORDER.update(**settings)
        yield names
    finally:
        _set(before)
        if before_settings is not None:
            RECORDER.configure(before_settings)
