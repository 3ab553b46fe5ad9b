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

Pickling (multiprocessing pickles callables, e.g. the registry of a ``SyncManager`` imported
while patched, which holds ``threading.Lock``): a shim pickles as "the attribute it replaced",
``threading.Lock``, and unpickles as whatever that attribute is in the receiving process: the
original, or that process's own shim. So the function shim is a callable object with a
``__reduce__`` (a plain function would be pickled by its name and fail once unpatched), and
class shims get the same treatment through ``copyreg``.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import importlib
import inspect
import sys
import types
from collections.abc import Callable
from typing import Any

from .._core import runtime as rt
from .scope import Scope

_getframe = sys._getframe
_HOOK = "_tracedsync_hook"

Builder = Callable[..., Any]
"""``builder(frame, *args, **kwargs)``: the traced primitive for a call made from ``frame``."""


class Hook:
    """One patched factory: what it replaced, how it traces, and whether it is still on."""

    __slots__ = ("active", "original", "scope", "shim", "traced")

    def __init__(self, original: Any, traced: Builder, scope: Scope) -> None:
        self.original = original
        self.traced = traced
        self.scope = scope
        self.active = True
        self.shim: Any = None


def make_shim(hook: Hook, module: str, qualname: str) -> Any:
    """A function or a class standing in for ``hook.original``, found at ``module.qualname``
    (``"threading"``, ``"Lock"``; ``"multiprocessing.context"``, ``"BaseContext.Lock"``)."""
    if isinstance(hook.original, type):
        hook.shim = _class_shim(hook, module, qualname)
    else:
        hook.shim = _function_shim(hook, module, qualname)
    return hook.shim


def resolve(module: str, qualname: str) -> Any:
    """The object at ``module.qualname`` now (how shims are unpickled)."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def hook_of(obj: Any) -> Hook | None:
    """The hook behind a shim, or None for anything else."""
    hook = getattr(obj, _HOOK, None)
    return hook if isinstance(hook, Hook) and hook.shim is obj else None


# -- functions -----------------------------------------------------------------------------------
class FunctionShim:
    """Base of the function shims: binds like a function (so it can be a method) and pickles as
    the attribute it replaced. Each shim is an instance of its own subclass, whose ``__call__`` is
    the deciding function itself (one Python frame per call)."""

    __call__: Callable[..., Any]
    __qualname__: str  # per instance: where the shim is found (its pickled name)

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self if obj is None else types.MethodType(self, obj)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return resolve, (self.__module__, self.__qualname__)

    def __repr__(self) -> str:
        return f"<tracedsync shim of {self.__module__}.{self.__qualname__}>"


def _function_shim(hook: Hook, module: str, qualname: str) -> FunctionShim:
    original = hook.original
    traced = hook.traced
    scope = hook.scope
    cache = scope.cache
    in_guard = rt.in_guard

    def call(*args: Any, **kwargs: Any) -> Any:
        if hook.active:
            frame = _getframe(1)
            code = frame.f_code
            hit = cache.get(id(code))
            if (hit[1] if hit is not None and hit[0] is code else scope.traced(frame)) and (
                not in_guard()
            ):
                return traced(frame, *args, **kwargs)
        return original(*args, **kwargs)

    cls = type("FunctionShim", (FunctionShim,), {"__call__": staticmethod(call)})
    shim: FunctionShim = cls()
    functools.update_wrapper(shim, original)
    shim.__module__ = module
    shim.__qualname__ = qualname
    setattr(shim, _HOOK, hook)
    return shim


# -- classes -------------------------------------------------------------------------------------
class ShimMeta(type):
    """Metaclass of the class shims. A user's subclass of a shim is an ordinary class."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        hook: Hook = cls._tracedsync_hook  # type: ignore[attr-defined]
        if hook.shim is not cls:  # a subclass defined while patched
            return super().__call__(*args, **kwargs)
        if hook.active:
            frame = _getframe(1)
            code = frame.f_code
            scope = hook.scope
            hit = scope.cache.get(id(code))
            if (hit[1] if hit is not None and hit[0] is code else scope.traced(frame)) and (
                not rt.in_guard()
            ):
                return hook.traced(frame, *args, **kwargs)
        return hook.original(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        hook: Hook = cls._tracedsync_hook  # type: ignore[attr-defined]
        if hook.shim is not cls:
            return type.__instancecheck__(cls, obj)
        return isinstance(obj, hook.original)

    def __subclasscheck__(cls, sub: type) -> bool:
        hook: Hook = cls._tracedsync_hook  # type: ignore[attr-defined]
        if hook.shim is not cls:
            return type.__subclasscheck__(cls, sub)
        return issubclass(sub, hook.original)


def _class_shim(hook: Hook, module: str, qualname: str) -> type:
    original: type = hook.original
    ns: dict[str, Any] = {
        "__module__": module,
        "__qualname__": qualname,
        "__doc__": original.__doc__,
        _HOOK: hook,
    }
    with contextlib.suppress(TypeError, ValueError):  # a builtin without a signature
        ns["__signature__"] = inspect.signature(original)
    name = qualname.rpartition(".")[2]
    try:
        return ShimMeta(name, (original,), ns)
    except TypeError:  # not an acceptable base type (``_thread.lock`` on 3.13)
        return ShimMeta(name, (), ns)


def _reduce_class(cls: type) -> tuple[Any, tuple[str, str]]:
    return resolve, (cls.__module__, cls.__qualname__)


copyreg.pickle(ShimMeta, _reduce_class)
