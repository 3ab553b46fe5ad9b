"""What the patch could not reach: primitives made before it that are still alive, by module.

A primitive created before `patch()` stays untraced, and nothing on the hot path can tell. So
this looks once, when asked (at the end of a ``pytest --tracedsync`` session): through the
globals of every module in scope (the modules whose primitives the patch would trace, see
`scope.Scope`), and the attributes of the classes they define, for instances of threading's and
multiprocessing's own primitive classes (not tracedsync's proxies), and for names bound to
threading's original factories (``from threading import RLock`` done before the patch: what
they create is never traced). It reads each module's ``__dict__`` without attribute hooks, so a
lazily loaded module is not loaded by it.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from .._threading.barrier import RawBarrier
from .._threading.condition import RawCondition
from .._threading.event import RawEvent
from .._threading.locks import RawLock, RawRLock
from .._threading.locks_py import _RAW_LOCK_TYPE, _RAW_RLOCK_TYPES
from .._threading.semaphore import RawBoundedSemaphore, RawSemaphore
from .scope import Scope

_MP_KINDS = ("Lock", "RLock", "Condition", "BoundedSemaphore", "Semaphore", "Event", "Barrier")
_ORIGINAL_FACTORIES: dict[int, str] = {
    id(RawLock): "Lock",
    id(RawRLock): "RLock",
    id(RawCondition): "Condition",
    id(RawSemaphore): "Semaphore",
    id(RawBoundedSemaphore): "BoundedSemaphore",
    id(RawEvent): "Event",
    id(RawBarrier): "Barrier",
}
_LIMIT = 10_000  # entries looked at per module: a huge generated module is not worth a pause


@dataclasses.dataclass(frozen=True)
class Untraced:
    """One module's untraced primitives (kind -> count) and original-factory names."""

    module: str
    primitives: dict[str, int]
    factory_names: tuple[str, ...]

    @property
    def count(self) -> int:
        return sum(self.primitives.values())


def _kinds() -> list[tuple[type, str]]:
    """Primitive classes, most derived first (BoundedSemaphore before Semaphore)."""
    kinds: list[tuple[type, str]] = [
        (_RAW_LOCK_TYPE, "Lock"),
        *((t, "RLock") for t in _RAW_RLOCK_TYPES),
        (RawCondition, "Condition"),
        (RawBoundedSemaphore, "BoundedSemaphore"),
        (RawSemaphore, "Semaphore"),
        (RawEvent, "Event"),
        (RawBarrier, "Barrier"),
    ]
    sync = sys.modules.get("multiprocessing.synchronize")
    if sync is not None:
        for name in _MP_KINDS:
            cls = getattr(sync, name, None)
            if isinstance(cls, type):
                kinds.append((cls, f"multiprocessing.{name}"))
    shared = sys.modules.get("multiprocessing.sharedctypes")
    base = getattr(shared, "SynchronizedBase", None)
    if isinstance(base, type):
        kinds.append((base, "multiprocessing.Value/Array"))
    return kinds


def _ours(t: type) -> bool:
    """Is ``t`` one of tracedsync's classes (or a subclass of one)? Some of them subclass
    threading's (TracedCondition is a ``threading.Condition``), and they are traced."""
    return any(c.__module__.partition(".")[0] == "tracedsync" for c in t.__mro__)


def _namespace(module: Any) -> dict[str, Any] | None:
    try:
        ns = object.__getattribute__(module, "__dict__")
    except Exception:
        return None
    return ns if isinstance(ns, dict) else None


def _values(name: str, ns: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    """The module's globals, then the attributes of the classes it defines."""
    items = list(ns.items())[:_LIMIT]
    yield from items
    for key, value in items:
        if isinstance(value, type) and value.__dict__.get("__module__") == name:
            for attr, inner in list(value.__dict__.items())[:_LIMIT]:
                yield f"{key}.{attr}", inner


def untraced(
    scope: Scope | None = None, modules: Mapping[str, Any] | None = None
) -> list[Untraced]:
    """The modules in ``scope`` (default: the default scope) that hold untraced primitives or
    names bound to threading's original factories, most primitives first."""
    scope = scope or Scope()
    kinds = _kinds()
    classes = tuple(cls for cls, _ in kinds)
    out: list[Untraced] = []
    for name, module in list((sys.modules if modules is None else modules).items()):
        if not isinstance(module, ModuleType):
            continue
        ns = _namespace(module)
        if ns is None:
            continue
        filename = ns.get("__file__")
        if not isinstance(filename, str) or not filename:
            # A built-in or frozen module of the standard library (``_thread``...) has no file.
            top = name.partition(".")[0]
            stdlib = (top in getattr(sys, "stdlib_module_names", ())
                      or name in sys.builtin_module_names)
            filename = f"<frozen {name}>" if stdlib else ""
        if not scope.decide(name, filename):
            continue
        found: Counter[str] = Counter()
        names: list[str] = []
        for key, value in _values(name, ns):
            if isinstance(value, type) and value.__module__ == name:
                continue
            if _ORIGINAL_FACTORIES.get(id(value)) is not None and "." not in key:
                names.append(key)
                continue
            t = type(value)  # the real type (a proxy's __class__ may say otherwise)
            if issubclass(t, classes) and not _ours(t):
                kind = next(k for cls, k in kinds if issubclass(t, cls))
                found[kind] += 1
        if found or names:
            out.append(Untraced(name, dict(sorted(found.items())), tuple(names)))
    out.sort(key=lambda u: (-u.count, u.module))
    return out


def describe(found: list[Untraced], remedy: str) -> list[str]:
    """Lines for a terminal: per module, what is not traced; then ``remedy``."""
    if not found:
        return []
    lines: list[str] = []
    total = sum(u.count for u in found)
    if total:
        lines.append(f"tracedsync: not traced: {total} primitive(s) created before tracing "
                     "began, still alive (module globals and class attributes):")
        for u in found:
            if u.count:
                kinds = ", ".join(f"{n} {k}" for k, n in u.primitives.items())
                lines.append(f"  {u.module}: {u.count} ({kinds})")
    named = [u for u in found if u.factory_names]
    if named:
        lines.append("tracedsync: not traced: names bound to threading's own factories before "
                     "tracing began (what they create is not traced):")
        for u in named:
            lines.append(f"  {u.module}: {', '.join(u.factory_names)}")
    lines.append(f"tracedsync: {remedy}")
    return lines
