"""Call sites: cheap capture on the hot path, formatting off it, and the one frame walker.

The hot path stores ``(code, pos)`` of the caller's frame; the flusher turns them into
``"file:line"`` and a function name, cached per pair (`SiteFormatter`).

The skip policy, one for the whole package. A *site* is the user's line: the innermost frame
whose file is neither tracedsync's own nor the standard library's ``threading`` or
``multiprocessing`` (their Condition, Event, Barrier, Queue and sharedctypes call our primitives
on the user's behalf, so the line that matters is the one that called *them*). `user_frame`
walks out of those frames; every slow path that needs a site (condition waits, creation through
a factory or a patched function, waits, misuse) uses it. A *stack* (`format_stack`, in
``deadlock``, ``long_wait`` and ``snapshot`` events) leaves out only tracedsync's own frames, so
it reads as if the program had called ``threading`` directly.
"""

from __future__ import annotations

import os
import sys
import threading
from types import CodeType, FrameType

from .assigned import assigned_name

PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
"""The tracedsync package's directory, with a trailing separator."""
_THREADING_FILE = threading.__file__
_MP_DIR = os.path.join(os.path.dirname(os.path.abspath(threading.__file__)), "multiprocessing", "")
_STACK_LIMIT = 40


def skip_policy() -> tuple[tuple[str, ...], frozenset[str]]:
    """The skip policy as (file-name prefixes, exact file names), for the native recorder."""
    return (PKG_DIR, _MP_DIR), frozenset({_THREADING_FILE})


def ours(filename: str) -> bool:
    """Whether ``filename`` is one of tracedsync's own files."""
    return filename.startswith(PKG_DIR)


def _walked_out(filename: str) -> bool:
    return filename.startswith(PKG_DIR) or filename == _THREADING_FILE or filename.startswith(
        _MP_DIR)


def user_frame() -> FrameType | None:
    """The innermost calling frame that the skip policy does not walk out of (see the module
    docstring); None if there is none."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _walked_out(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def user_site() -> tuple[CodeType | None, int]:
    """``(code, lineno)`` of `user_frame`, or ``(None, 0)``."""
    frame = user_frame()
    if frame is None:
        return None, 0
    return frame.f_code, frame.f_lineno or 0


def format_stack(frame: FrameType | None, limit: int = _STACK_LIMIT) -> list[str]:
    """``"file:line function"`` per frame, outermost first, without tracedsync's own frames
    (the stack reads as if the program called ``threading`` directly); at most ``limit``
    innermost frames."""
    f = frame
    out: list[str] = []
    while f is not None and len(out) < limit:
        code = f.f_code
        if not code.co_filename.startswith(PKG_DIR):
            name = getattr(code, "co_qualname", code.co_name)
            out.append(f"{code.co_filename}:{f.f_lineno} {name}")
        f = f.f_back
    out.reverse()
    return out


def line_of(code: CodeType, lasti: int) -> int:
    """The line of the instruction at byte offset ``lasti`` in ``code`` (0 if unknown)."""
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line or 0
    return 0


class SiteFormatter:
    """Turns ``(code, pos)`` into ``("file:line", "function")``, with a cache.

    ``pos`` is a line number, or, when negative, ``-(lasti + 1)`` where ``lasti`` is the byte
    offset of the calling instruction (``frame.f_lasti``). The hot paths record the offset: it is
    a plain read, while ``f_lineno`` scans the code's line table on every call.

    The cache is keyed by ``id(code)``: hashing a code object hashes its bytecode and constants,
    which costs more than formatting. Each entry keeps its code object alive, so an id in the
    cache can never be reused by another code object.
    """

    __slots__ = ("_assigned", "_cache")

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], tuple[CodeType, str, str]] = {}
        self._assigned: dict[tuple[str, int], str | None] = {}

    def assigned(self, code: CodeType | None, lineno: int) -> str | None:
        """The name the line at ``(code, lineno)`` assigns to (`assigned.assigned_name`): read
        from the source once per line, for the ``created`` event's ``var``."""
        if code is None:
            return None
        line = lineno if lineno >= 0 else line_of(code, -lineno - 1)
        key = (code.co_filename, line)
        if key in self._assigned:
            return self._assigned[key]
        try:
            name = assigned_name(code.co_filename, line, getattr(code, "co_qualname", None))
        except Exception:  # an unreadable source names nothing, and must not stop a flush
            name = None
        if len(self._assigned) > 100_000:
            self._assigned.clear()
        self._assigned[key] = name
        return name

    def __call__(self, code: CodeType | None, lineno: int) -> tuple[str | None, str | None]:
        if code is None:
            return None, None
        hit = self._cache.get((id(code), lineno))
        if hit is None:
            func = getattr(code, "co_qualname", code.co_name)
            line = lineno if lineno >= 0 else line_of(code, -lineno - 1)
            hit = (code, f"{code.co_filename}:{line}", func)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[(id(code), lineno)] = hit
        return hit[1], hit[2]
