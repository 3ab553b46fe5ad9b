"""Call sites: cheap capture on the hot path, formatting off it.

The hot path stores ``(code, lineno)`` of the caller's frame; the flusher turns them into
``"file:line"`` and a function name, cached per pair. Slow paths (condition waits entered from
``threading.Condition``, creation from a factory) walk out of frames that belong to the standard
library's ``threading`` module or to tracedsync itself, so the site is the user's line.
"""

from __future__ import annotations

import os
import sys
import threading
from types import CodeType, FrameType

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_SKIP_FILES = frozenset({threading.__file__})


def _skipped(filename: str) -> bool:
    return filename in _SKIP_FILES or filename.startswith(_PKG_DIR)


def user_frame() -> FrameType | None:
    """The innermost calling frame that is neither tracedsync's nor ``threading``'s."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _skipped(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def user_site() -> tuple[CodeType | None, int]:
    """``(code, lineno)`` of the innermost user frame, or ``(None, 0)``."""
    frame = user_frame()
    if frame is None:
        return None, 0
    return frame.f_code, frame.f_lineno or 0


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

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], tuple[CodeType, str, str]] = {}

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
