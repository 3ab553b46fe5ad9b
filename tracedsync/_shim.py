"""The objects `patch()` puts in place of a factory: they decide per caller, then delegate.

A `Hook` holds the original, the `Scope`, the builder of the traced primitive and an ``active``
flag. Its shim, on each call: if the hook is active, tracedsync's guard is off and the caller's
frame is in scope, returns ``traced(frame, *args, **kwargs)``; otherwise the original's result.
After `unpatch()` the hook is inactive, so a shim that someone kept (``from threading import
Lock`` while patched) keeps working and returns untraced objects.

The shim has the original's shape:

* a function (``threading.RLock``, ``multiprocessing.Lock``, a context's method) gets a function,
  with the original's name, docstring and signature (``__wrapped__``);
* a class (``threading.Event``, ``Condition``...; ``threading.Lock`` on 3.13) gets a class of the
  same name whose metaclass does the deciding, so ``isinstance(x, threading.Event)`` stays true
  for raw and traced events alike, and a subclass defined while patched (``class
  Gate(threading.Event)``) is an ordinary, untraced subclass of the original. The shim
  subclasses the original when the original allows it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

from . import _runtime as rt
from ._scope import Scope

_getframe = sys._getframe
_HOOK = "_tracedsync_hook"

Builder = Callable[..., Any]
"""``builder(frame, *args, **kwargs)``: the traced primitive for a call made from ``frame``."""


class Hook:
    """One patched factory: what it replaced, how it traces, and whether it is still on."""

    __slots__ = ("active", "original", "scope", "traced")

    def __init__(self, original: Any, traced: Builder, scope: Scope) -> None:
        self.original = original
        self.traced = traced
        self.scope = scope
        self.active = True


def make_shim(hook: Hook) -> Any:
    """A function or a class standing in for ``hook.original``."""
    if isinstance(hook.original, type):
        return _class_shim(hook)
    return _function_shim(hook)


def _function_shim(hook: Hook) -> Callable[..., Any]:
    original = hook.original
    traced = hook.traced
    scope = hook.scope
    in_guard = rt.in_guard

    def shim(*args: Any, **kwargs: Any) -> Any:
        if hook.active and not in_guard():
            frame = _getframe(1)
            if scope.traced(frame):
                return traced(frame, *args, **kwargs)
        return original(*args, **kwargs)

    functools.update_wrapper(shim, original)
    setattr(shim, _HOOK, hook)
    return shim


class ShimMeta(type):
    """Metaclass of the class shims. A user's subclass of a shim is an ordinary class."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        hook: Hook | None = cls.__dict__.get(_HOOK)
        if hook is None:
            return super().__call__(*args, **kwargs)
        if hook.active and not rt.in_guard():
            frame = _getframe(1)
            if hook.scope.traced(frame):
                return hook.traced(frame, *args, **kwargs)
        return hook.original(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        hook: Hook | None = cls.__dict__.get(_HOOK)
        if hook is None:
            return type.__instancecheck__(cls, obj)
        return isinstance(obj, hook.original)

    def __subclasscheck__(cls, sub: type) -> bool:
        hook: Hook | None = cls.__dict__.get(_HOOK)
        if hook is None:
            return type.__subclasscheck__(cls, sub)
        return issubclass(sub, hook.original)


def _class_shim(hook: Hook) -> type:
    original: type = hook.original
    ns: dict[str, Any] = {
        "__module__": original.__module__,
        "__qualname__": original.__qualname__,
        "__doc__": original.__doc__,
        _HOOK: hook,
    }
    with contextlib.suppress(TypeError, ValueError):  # a builtin without a signature
        ns["__signature__"] = inspect.signature(original)
    try:
        return ShimMeta(original.__name__, (original,), ns)
    except TypeError:  # not an acceptable base type (``_thread.lock`` on 3.13)
        return ShimMeta(original.__name__, (), ns)


def hook_of(obj: Any) -> Hook | None:
    """The hook behind a shim, or None for anything else."""
    hook = obj.__dict__.get(_HOOK) if isinstance(obj, type) else getattr(obj, _HOOK, None)
    return hook if isinstance(hook, Hook) else None
